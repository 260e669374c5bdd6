package rest

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerProbe returns a check of whether conn's peer has closed it (POLLRDHUP, POLLHUP
// or POLLERR, polled without waiting and without reading), or nil when conn has no
// file descriptor. TLS connections are checked on the connection beneath.
func peerProbe(conn net.Conn) func() bool {
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() bool {
		var revents int16
		err := raw.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
			if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
				revents = fds[0].Revents
			}
		})
		// A closed descriptor (the server shut the connection) is gone too.
		return err != nil || revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	}
}
