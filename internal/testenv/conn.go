package testenv

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// Unread returns how many of the bytes sent on c its other end has not read yet, from the
// kernel's table of TCP sockets (/proc/net/tcp). Both ends must be on this host over IPv4
// (loopback). A test uses it to know that a server has accepted a connection and read a
// request begun on it, which nothing else the server does shows.
func Unread(c net.Conn) (int, error) {
	local, lok := c.LocalAddr().(*net.TCPAddr)
	remote, rok := c.RemoteAddr().(*net.TCPAddr)
	if !lok || !rok || local.IP.To4() == nil || remote.IP.To4() == nil {
		return 0, fmt.Errorf("testenv: unread: %s to %s is not an IPv4 TCP connection", c.LocalAddr(), c.RemoteAddr())
	}
	// The other end's socket: its local address is c's remote one and the other way round.
	theirs, ours := procTCPAddr(remote), procTCPAddr(local)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, fmt.Errorf("testenv: unread: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[1] != theirs || fields[2] != ours {
			continue
		}
		_, rx, ok := strings.Cut(fields[4], ":")
		n, err := strconv.ParseInt(rx, 16, 64)
		if !ok || err != nil {
			return 0, fmt.Errorf("testenv: unread: bad queue field %q in /proc/net/tcp", fields[4])
		}
		return int(n), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("testenv: unread: %w", err)
	}
	return 0, fmt.Errorf("testenv: unread: no socket of %s connected to %s (closed?)", c.RemoteAddr(), c.LocalAddr())
}

// procTCPAddr is a as /proc/net/tcp writes it: the IPv4 address as a 32-bit number in the
// host's byte order, then the port, both in hex.
func procTCPAddr(a *net.TCPAddr) string {
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(a.IP.To4()), a.Port)
}
