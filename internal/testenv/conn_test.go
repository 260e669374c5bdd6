package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestUnread(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Not accepted yet: the bytes wait in the server's socket all the same.
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := Unread(c); err != nil || n != 5 {
		t.Fatalf("before the server read: Unread = %d, %v; want 5", n, err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	if n, err := Unread(c); err != nil || n != 2 {
		t.Fatalf("after the server read 3 bytes: Unread = %d, %v; want 2", n, err)
	}
	// The server's side of the connection, seen from it: nothing sent, nothing unread.
	if n, err := Unread(s); err != nil || n != 0 {
		t.Fatalf("the other way: Unread = %d, %v; want 0", n, err)
	}
	// Closed with bytes unread, the server's socket resets the connection and is gone.
	s.Close()
	if _, err := Unread(c); err == nil {
		t.Error("Unread of a connection whose other end is gone: no error")
	}
}

func TestConn(t *testing.T) {
	// The server answers each request with its body and the client's address.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.RemoteAddr, b)
	}))
	defer srv.Close()
	c := Dial(t, srv.Listener.Addr().String())
	resp, first := c.Do(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("Do: %d %s", resp.StatusCode, first)
	}
	post := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	c.Begin(t, post, len(post)-3)
	resp, second := c.Finish(t)
	from, _, _ := strings.Cut(string(first), " ")
	if resp.StatusCode != 200 || string(second) != from+" hello" {
		t.Fatalf("the request begun, on the same connection as %q: %d %q", first, resp.StatusCode, second)
	}
}
