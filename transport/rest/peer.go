package rest

import (
	"net"
	"sync"
	"time"
)

// peerCheckEvery is how often a running generation checks that its client is still
// connected.
const peerCheckEvery = 100 * time.Millisecond

// watchPeer calls gone once when the client at the other end of conn has closed the
// connection (or it failed), checking every interval without reading from it, so a
// pipelined request stays where it is. It returns a stop function that waits until
// the watcher has let go of the connection; call it before the connection is used for
// anything else. A connection without a file descriptor (an in-memory pipe) is not
// watched; generation then ends only when a write to the client fails.
//
// This is what lets a non-streamed request whose client gave up (a timeout, Ctrl-C)
// free its slot instead of generating to max_tokens for nobody, and a stream that is
// still queued or evaluating its prompt end before its first token. A client that
// half-closes its side after sending the request counts as gone.
func watchPeer(conn net.Conn, interval time.Duration, gone func()) (stop func()) {
	probe := peerProbe(conn)
	if probe == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if probe() {
					gone()
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}
