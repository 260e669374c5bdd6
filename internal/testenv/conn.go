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

// Conn is a client's connection to an HTTP/1.1 server, for requests written by hand:
// whole ones (Do), or one begun (Begin) and finished later (Finish), to see how the server
// answers a connection that was open before a change such as a shutdown. A connection that
// has had an answer from Do is a keep-alive one.
type Conn struct {
	c    net.Conn
	br   *bufio.Reader
	rest string // of the request begun
}

// Dial connects to addr; the connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{c: c, br: bufio.NewReader(c)}
}

// Do sends raw, a whole request, and returns the answer, its body read.
func (c *Conn) Do(t testing.TB, raw string) (*http.Response, []byte) {
	t.Helper()
	c.rest = raw
	return c.Finish(t)
}

// Begin sends the first cut bytes of raw, a whole request, and waits until the server has
// read them: a connection still in the listener's queue when the server closes it would
// be reset, and one waiting between requests may be closed; this one has a request begun.
func (c *Conn) Begin(t testing.TB, raw string, cut int) {
	t.Helper()
	if _, err := io.WriteString(c.c, raw[:cut]); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the server to read a request begun", func() bool {
		n, err := Unread(c.c)
		return err == nil && n == 0
	})
	c.rest = raw[cut:]
}

// Finish sends the rest of the request begun and returns the answer, its body read.
func (c *Conn) Finish(t testing.TB) (*http.Response, []byte) {
	t.Helper()
	if _, err := io.WriteString(c.c, c.rest); err != nil {
		t.Fatalf("the server closed the connection of a request: %v", err)
	}
	c.rest = ""
	_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("no answer on the connection: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
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
