package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SkipEnv is the environment variable that, set to 1, turns a missing server binary into a
// skipped test instead of a failed one.
const SkipEnv = "HXP_TEST_SKIP_SERVICES"

// startTimeout bounds how long a server may take to become ready.
const startTimeout = 30 * time.Second

// stopTimeout bounds how long a graceful stop may take before the server is killed.
const stopTimeout = 10 * time.Second

// requireBinary returns the path of a server binary, failing the test (or skipping it when
// SkipEnv is set) when the binary is not installed.
func requireBinary(t testing.TB, name string, candidates ...string) string {
	t.Helper()
	path, err := findBinary(name, candidates...)
	if err == nil {
		return path
	}
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("testenv: %v (skipped because %s=1)", err, SkipEnv)
	}
	t.Fatalf("testenv: %v: run scripts/test-deps.sh to install the test servers (or set %s=1 to skip these tests)", err, SkipEnv)
	return ""
}

// findBinary looks for an executable at the given absolute candidates, then on PATH.
func findBinary(name string, candidates ...string) (string, error) {
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found (looked in %s and on PATH)", name, strings.Join(candidates, ", "))
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. The port is released before it
// is returned, so another process could take it; servers retry with a new port when binding
// fails.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is one run of a server binary. Its output goes to a log file so that the tail can
// be quoted when the server fails, even after it has exited.
type process struct {
	name    string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done is closed
}

// startProcess starts a server binary in its own process group. cred, when not nil, runs it
// as another user. The process is sent SIGKILL if the test binary dies, so that no server
// outlives the tests.
func startProcess(name, logPath string, cred *syscall.Credential, bin string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: cred,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited, with its exit error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// signal sends sig to the whole process group, so that a server's worker processes receive it
// too.
func (p *process) signal(sig syscall.Signal) {
	if done, _ := p.exited(); done {
		return
	}
	// A negative pid addresses the process group created by Setpgid.
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop asks the server to exit with sig and waits; it falls back to SIGKILL after
// stopTimeout.
func (p *process) stop(sig syscall.Signal) {
	p.signal(sig)
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	p.kill()
}

// kill sends SIGKILL to the server and every process it started, and waits until they are
// gone. Its children are found through /proc rather than the process group because
// PostgreSQL's backends leave it (they call setsid); a backend that outlived its postmaster
// would keep the shared memory attached and a restart would refuse to run. The server is
// stopped (SIGSTOP) first so that it cannot fork while its children are collected.
func (p *process) kill() {
	if done, _ := p.exited(); done {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	desc := descendants(pid)
	for _, d := range desc {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-p.done
	waitGone(desc, stopTimeout)
}

// logTail returns the last lines of the server's log for error messages.
func (p *process) logTail() string {
	return tailFile(p.logPath, 30)
}

// tailFile returns the last n lines of a file, or a note saying why it cannot.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logContains reports whether the server's log contains s.
func (p *process) logContains(s string) bool {
	b, err := os.ReadFile(p.logPath)
	return err == nil && bytes.Contains(b, []byte(s))
}

// errNotReady is returned by a readiness probe that should be retried.
var errNotReady = errors.New("not ready")

// waitReady polls probe until it returns nil, the process exits or the deadline passes. The
// error names the server and quotes its log.
func (p *process) waitReady(probe func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for {
		if done, exitErr := p.exited(); done {
			return fmt.Errorf("%s exited before it was ready (%v); log tail:\n%s", p.name, exitErr, p.logTail())
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		last = probe(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (last probe: %v); log tail:\n%s", p.name, startTimeout, last, p.logTail())
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// addrInUse reports whether a failed start was caused by the port being taken.
func (p *process) addrInUse() bool {
	return p.logContains("Address already in use") || p.logContains("address already in use")
}
