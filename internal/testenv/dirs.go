package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// dirPrefix names the temporary directories this package creates, followed by the pid of the
// test binary that owns them, so that directories left behind by a crashed test binary can be
// recognised and removed.
const dirPrefix = "hxp-testenv-"

var sweepOnce sync.Once

// newServerDir creates a temporary directory for one server. Unlike t.TempDir it can be
// entered by another user (PostgreSQL runs as the postgres user) and it can outlive a single
// test (shared servers).
func newServerDir(name string) (string, error) {
	sweepOnce.Do(sweepStaleDirs)
	dir, err := os.MkdirTemp("", dirPrefix+strconv.Itoa(os.Getpid())+"-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("create %s directory: %w", name, err)
	}
	// Others may traverse but not list it; the server's own subdirectories keep it private.
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("chmod %s: %w", dir, err)
	}
	return dir, nil
}

// sweepStaleDirs removes directories left by test binaries that are no longer running (for
// example because they were killed before their cleanup ran).
func sweepStaleDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), dirPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			os.RemoveAll(m)
		}
	}
}
