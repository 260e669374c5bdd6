package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// logSink collects log lines from the listener's goroutines.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// line returns the access-log line of a request id, or nil.
func (s *logSink) line(t *testing.T, id string) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if m["request_id"] == id && m["message"] == "request" {
			return m
		}
	}
	return nil
}

// The access log has one line per request with the request id (echoed in
// x-request-id), model, tokens in and out, TTFT, duration and status, written when a
// stream has ended; the prompt appears only with log.prompts.
func TestAccessLogFields(t *testing.T) {
	svc, _ := sharedModel(t)
	const secret = "Tell me a story about the sea."
	for _, prompts := range []bool{false, true} {
		logs := &logSink{}
		url := serve(t, "tiny", func() *Gateway {
			return NewModelListener(svc, Options{Log: zerolog.New(logs), LogPrompts: prompts})
		}, HTTPConfig{})
		const maxTokens = 5
		r := post(t, url+"/v1/chat/completions", chatBody("tiny", maxTokens, nil), "X-Request-Id", "plain-1")
		if r.status != 200 || r.header.Get("X-Request-Id") != "plain-1" {
			t.Fatalf("chat: %d, x-request-id %q", r.status, r.header.Get("X-Request-Id"))
		}
		s := post(t, url+"/v1/chat/completions", chatBody("tiny", maxTokens, map[string]any{"stream": true}), "X-Request-Id", "stream-1")
		if s.status != 200 || s.header.Get("X-Request-Id") != "stream-1" {
			t.Fatalf("stream: %d", s.status)
		}
		bad := post(t, url+"/v1/chat/completions", chatBody("other-model", maxTokens, nil))
		badID := bad.header.Get("X-Request-Id")
		if bad.status != 404 || len(badID) != 24 {
			t.Fatalf("unknown model: %d, generated id %q", bad.status, badID)
		}

		var lines []map[string]any
		waitFor(t, "the access-log lines", func() bool {
			lines = []map[string]any{logs.line(t, "plain-1"), logs.line(t, "stream-1"), logs.line(t, badID)}
			return lines[0] != nil && lines[1] != nil && lines[2] != nil
		})
		for i, l := range lines[:2] {
			if l["level"] != "info" || l["method"] != "POST" || l["path"] != "/v1/chat/completions" || l["status"] != 200.0 ||
				l["model"] != "tiny" || l["completion_tokens"] != float64(maxTokens) || l["finish"] != "length" {
				t.Errorf("line %d: %v", i, l)
			}
			pt, _ := l["prompt_tokens"].(float64)
			ttft, _ := l["ttft_ms"].(float64)
			dur, _ := l["duration_ms"].(float64)
			if pt <= 0 || ttft <= 0 || dur < ttft {
				t.Errorf("line %d: prompt_tokens %v ttft_ms %v duration_ms %v", i, pt, ttft, dur)
			}
		}
		if lines[1]["stream"] != true {
			t.Errorf("stream line: %v", lines[1])
		}
		if l := lines[2]; l["level"] != "warn" || l["status"] != 404.0 || l["error_code"] != "model_not_found" {
			t.Errorf("error line: %v", l)
		}
		if got := strings.Contains(logs.String(), "story about the sea"); got != prompts {
			t.Errorf("log.prompts %v: prompt text in the log = %v\n%s", prompts, got, logs.String())
		}
		if prompts {
			p, _ := lines[0]["prompt"].(string)
			var msgs []map[string]any
			if err := json.Unmarshal([]byte(p), &msgs); err != nil || len(msgs) != 2 || msgs[1]["content"] != secret {
				t.Errorf("logged prompt %q: %v", p, err)
			}
		} else if _, ok := lines[0]["prompt"]; ok {
			t.Errorf("prompt logged without log.prompts: %v", lines[0])
		}
	}
}

func TestPromptOf(t *testing.T) {
	long := strings.Repeat("é", maxLoggedPrompt) // two bytes each: the cut falls inside one
	for _, c := range []struct{ body, want string }{
		{`{"messages": [ {"role":"user", "content":"hi"} ]}`, `[{"role":"user","content":"hi"}]`},
		{`{"messages": null, "prompt": "once"}`, `"once"`},
		{`{"input": ["a", "b"]}`, `["a","b"]`},
		{`{"model": "m"}`, ``},
		{`not json`, ``},
	} {
		if got := promptOf([]byte(c.body)); got != c.want {
			t.Errorf("promptOf(%s) = %q, want %q", c.body, got, c.want)
		}
	}
	got := promptOf([]byte(`{"prompt":"` + long + `"}`))
	if !strings.HasSuffix(got, "...(truncated)") || len(got) > maxLoggedPrompt+len("...(truncated)") || !utf8.ValidString(got) {
		t.Errorf("long prompt: %d bytes, valid UTF-8 %v, ends %q", len(got), utf8.ValidString(got), got[len(got)-20:])
	}
}
