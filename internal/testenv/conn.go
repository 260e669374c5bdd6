package testenv

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
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

// Begun is an HTTP/1.1 request sent in part on a connection of its own, which the server
// has accepted and read that part of: it waits for the rest. A test begins requests before
// a shutdown to see how the server answers connections that were open before it.
type Begun struct {
	c    net.Conn
	rest string
}

// BeginRequest dials addr, sends the first cut bytes of raw (a whole request) and waits
// until the server has read them. The connection is closed when the test ends.
func BeginRequest(t testing.TB, addr, raw string, cut int) *Begun {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, raw[:cut]); err != nil {
		t.Fatal(err)
	}
	// A connection still in the listener's queue when the server closes it is reset;
	// one whose bytes are read is the server's.
	WaitFor(t, "the server to read a request begun", func() bool {
		n, err := Unread(c)
		return err == nil && n == 0
	})
	return &Begun{c: c, rest: raw[cut:]}
}

// Finish sends the rest of the request and returns the answer, its body read.
func (b *Begun) Finish(t testing.TB) (*http.Response, []byte) {
	t.Helper()
	if _, err := io.WriteString(b.c, b.rest); err != nil {
		t.Fatalf("the connection of a request begun was closed: %v", err)
	}
	_ = b.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(b.c), nil)
	if err != nil {
		t.Fatalf("no answer to a request begun: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer to a request begun: %v", err)
	}
	return resp, body
}

// WaitFor polls cond until it holds, failing the test after 30 seconds: a guard against a
// hang, not a timing assertion.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
