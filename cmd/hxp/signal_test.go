package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/internal/testmodel"
)

// streamTokens is the max_tokens of the stream kept in flight: on the one CPU core the
// harness gives the bench model, generating them takes seconds.
const streamTokens = 200

// TestShutdownSignals sends real SIGTERMs to `hxp serve` while a stream is in flight. The
// first stops the listener; requests on connections opened before it get 503
// shutting_down (/health too) while the stream goes on. With one signal the stream runs to
// its end and the process exits 0 after it; a second signal ends the process at once,
// long before its 10-minute grace, cutting the stream.
func TestShutdownSignals(t *testing.T) {
	bin := hxpBinary(t)
	model := testmodel.Path(t, "bench") // the tiny model would finish the stream at once
	env := []string{"HXP_SERVER_SHUTDOWN_GRACE=10m"}

	t.Run("OneSignalDrains", func(t *testing.T) {
		srv := startServe(t, bin, model, env)
		st := srv.drainWithStream(t)
		if last, err := st.rest(); err != nil || !strings.Contains(last, `"finish_reason":"length"`) {
			t.Fatalf("the stream in flight, after %d tokens: last event %s, %v; want finish_reason length and [DONE]", st.tokens, last, err)
		}
		if err := srv.wait(t); err != nil {
			t.Fatalf("hxp serve exited with %v after draining; want exit status 0", err)
		}
		if !strings.Contains(srv.logs.String(), `"shutdown complete"`) {
			t.Error("no shutdown log line")
		}
	})

	t.Run("SecondSignalEndsAtOnce", func(t *testing.T) {
		srv := startServe(t, bin, model, env)
		st := srv.drainWithStream(t)
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err := srv.wait(t) // a hang guard far below the grace
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("hxp serve after a second SIGTERM: %v; want it killed by the signal", err)
		}
		if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Fatalf("hxp serve after a second SIGTERM: %v; want it killed by SIGTERM", err)
		}
		if last, err := st.rest(); err == nil {
			t.Fatalf("the stream ended with [DONE] after %d tokens (last event %s): the second signal waited for it", st.tokens, last)
		}
	})
}

// drainWithStream starts a stream, begins a /health on a keep-alive connection and a
// completion on a new one, sends SIGTERM and waits until the listener refuses new
// connections. It then requires 503 shutting_down on both open connections, and one more
// token of the stream after them; it returns the stream.
func (s *served) drainWithStream(t *testing.T) *sseStream {
	t.Helper()
	body := fmt.Sprintf(`{"model":"tiny","prompt":"Once upon a time","max_tokens":%d,"temperature":0,"stream":true}`, streamTokens)
	resp, err := http.Post(s.gw+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	st := &sseStream{r: bufio.NewReader(resp.Body)}
	st.token(t) // in flight

	addr := strings.TrimPrefix(s.gw, "http://")
	// A keep-alive connection (it has had an answer) and a new one, each with a request
	// begun.
	health := "GET /health HTTP/1.1\r\nHost: hxp\r\n\r\n"
	keepAlive := testenv.Dial(t, addr)
	if resp, b := keepAlive.Do(t, health); resp.StatusCode != 200 {
		t.Fatalf("/health before SIGTERM: %d %s", resp.StatusCode, b)
	}
	keepAlive.Begin(t, health, len(health)-2) // all but the blank line
	completion := `{"model":"tiny","prompt":"Hi","max_tokens":2}`
	head := fmt.Sprintf("POST /v1/completions HTTP/1.1\r\nHost: hxp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(completion))
	fresh := testenv.Dial(t, addr)
	fresh.Begin(t, head+completion, len(head)+5) // the head and some of the body

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the gateway to stop accepting", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if resp, b := keepAlive.Finish(t); resp.StatusCode != 503 || !strings.Contains(string(b), "shutting_down") {
		t.Fatalf("/health on a connection open before SIGTERM: %d %s; want 503 shutting_down", resp.StatusCode, b)
	}
	if resp, b := fresh.Finish(t); resp.StatusCode != 503 || !strings.Contains(string(b), "shutting_down") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a completion on a connection open before SIGTERM: %d %v %s; want 503 shutting_down with Retry-After", resp.StatusCode, resp.Header, b)
	}
	st.token(t) // still streaming after the 503s
	return st
}

// wait waits for the process to exit (a hang guard of a minute) and returns how it ended.
func (s *served) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.exited:
		s.exitSeen = true
		return err
	case <-time.After(time.Minute):
		t.Fatal("hxp serve did not exit")
		return nil
	}
}

// sseStream reads a completion stream's events and counts its tokens.
type sseStream struct {
	r      *bufio.Reader
	tokens int
}

// next returns the next event's data.
func (s *sseStream) next() (string, error) {
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
			return data, nil
		}
	}
}

// token requires the next event to be a token (no error, no finish) and counts it.
func (s *sseStream) token(t *testing.T) {
	t.Helper()
	data, err := s.next()
	var ev struct {
		Choices []struct {
			Text         string
			FinishReason *string `json:"finish_reason"`
		}
	}
	if err != nil || json.Unmarshal([]byte(data), &ev) != nil || len(ev.Choices) != 1 || ev.Choices[0].FinishReason != nil {
		t.Fatalf("want a token of the stream, got %q, %v", data, err)
	}
	s.tokens++
}

// rest reads the stream to its end and returns its last event before [DONE]: an error when
// the stream ends without [DONE].
func (s *sseStream) rest() (string, error) {
	var last string
	for {
		data, err := s.next()
		if err != nil {
			return last, fmt.Errorf("the stream ended without [DONE]: %w", err)
		}
		if data == "[DONE]" {
			return last, nil
		}
		if !strings.Contains(data, `"finish_reason":"`) {
			s.tokens++
		}
		last = data
	}
}
