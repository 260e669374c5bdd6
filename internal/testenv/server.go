package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// server is the lifecycle shared by every server this package runs: a directory, a port that
// stays the same across restarts, and the current process.
type server struct {
	name    string
	dir     string
	port    int
	stopSig syscall.Signal
	// launch starts the binary listening on port, writing its log to logPath.
	launch func(port int, logPath string) (*process, error)
	// ready returns nil once the server answers.
	ready func(ctx context.Context) error

	mu   sync.Mutex
	proc *process
}

// maxPortTries is how often a first start picks a new port when the chosen one was taken.
const maxPortTries = 3

// start launches the server and waits until it is ready. On its first start the server picks a
// free port, trying another one when the port was taken in the meantime; later starts reuse
// the port.
func (s *server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		if done, _ := s.proc.exited(); !done {
			return fmt.Errorf("%s is already running", s.name)
		}
	}
	logPath := filepath.Join(s.dir, s.name+".log")
	fixedPort := s.port != 0
	var lastErr error
	for try := 0; try < maxPortTries; try++ {
		if !fixedPort {
			port, err := freePort()
			if err != nil {
				return err
			}
			s.port = port
		}
		proc, err := s.launch(s.port, logPath)
		if err != nil {
			return err
		}
		s.proc = proc
		err = proc.waitReady(s.ready)
		if err == nil {
			return nil
		}
		proc.kill()
		lastErr = err
		if fixedPort || !proc.addrInUse() {
			break
		}
		// Truncate the log so that the next try's tail is its own.
		_ = os.Truncate(logPath, 0)
	}
	return lastErr
}

// stop shuts the server down gracefully; it is a no-op when the server is not running.
func (s *server) stop() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		p.stop(s.stopSig)
	}
}

// kill sends SIGKILL to the server and its children and waits for them to exit.
func (s *server) kill() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// running reports whether the server's process is alive.
func (s *server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	done, _ := s.proc.exited()
	return !done
}

// logTail returns the end of the server's log.
func (s *server) logTail() string {
	return tailFile(filepath.Join(s.dir, s.name+".log"), 30)
}

// destroy kills the server and removes its directory.
func (s *server) destroy() {
	s.stop()
	if err := os.RemoveAll(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "testenv: remove %s: %v\n", s.dir, err)
	}
}
