package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// recordingTB captures Fatalf and Skipf, ending the goroutine as the real ones do.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recordingTB) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// callRequire runs requireBinary for a binary that does not exist.
func callRequire() *recordingTB {
	r := &recordingTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		requireBinary(r, "hxp-no-such-server", "/nonexistent/hxp-no-such-server")
	}()
	<-done
	return r
}

func TestMissingBinaryFailsWithInstructions(t *testing.T) {
	t.Setenv(SkipEnv, "")
	r := callRequire()
	if r.skip != "" || !strings.Contains(r.fatal, "scripts/test-deps.sh") || !strings.Contains(r.fatal, "hxp-no-such-server") {
		t.Fatalf("fatal %q, skip %q; want a failure naming the binary and scripts/test-deps.sh", r.fatal, r.skip)
	}
}

func TestMissingBinarySkipsOnlyWhenAsked(t *testing.T) {
	t.Setenv(SkipEnv, "1")
	r := callRequire()
	if r.fatal != "" || !strings.Contains(r.skip, SkipEnv) {
		t.Fatalf("fatal %q, skip %q; want a skip", r.fatal, r.skip)
	}
}
