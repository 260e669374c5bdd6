package testenv

import (
	"io"
	"net"
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
