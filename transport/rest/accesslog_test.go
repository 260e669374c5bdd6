package rest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/internal/testenv"
)

// accessLine returns the access-log line of a request id in a captured log, or nil.
// Every line of the log must be JSON without duplicate keys.
func accessLine(t *testing.T, logs *testenv.Buffer, id string) map[string]any {
	t.Helper()
	for _, m := range testenv.JSONLogLines(t, logs.String()) {
		if m["request_id"] == id && m["message"] == "request" {
			return m
		}
	}
	return nil
}

// The access log has one line per request with the request id (echoed in
// x-request-id), model, tokens in and out, TTFT, duration and status, written when a
// stream has ended; the prompt appears only with log.prompts, the user field never.
func TestAccessLogFields(t *testing.T) {
	const secret = "Tell me a story about the sea."
	const user = "user-Zq8vXw3K"
	for _, prompts := range []bool{false, true} {
		log, logs := captureLog()
		fake := &infertest.Fake{Reply: "one two three four five six seven", Delay: time.Millisecond}
		url := serveFake(t, fake, Options{Log: log, LogPrompts: prompts})
		const maxTokens = 5
		body := chatBody("fake", maxTokens, map[string]any{"user": user})
		r := post(t, url+chatPath, body, "X-Request-Id", "plain-1")
		if r.status != 200 || r.header.Get("X-Request-Id") != "plain-1" {
			t.Fatalf("chat: %d, x-request-id %q", r.status, r.header.Get("X-Request-Id"))
		}
		body["stream"] = true
		s := post(t, url+chatPath, body, "X-Request-Id", "stream-1")
		if s.status != 200 || s.header.Get("X-Request-Id") != "stream-1" {
			t.Fatalf("stream: %d", s.status)
		}
		bad := post(t, url+chatPath, chatBody("other-model", maxTokens, nil))
		badID := bad.header.Get("X-Request-Id")
		if bad.status != 404 || len(badID) != 24 {
			t.Fatalf("unknown model: %d, generated id %q", bad.status, badID)
		}
		probe := do(t, "GET", url+"/health", nil, "X-Request-Id", "probe-1")
		if probe.status != 200 {
			t.Fatalf("/health: %d", probe.status)
		}

		var lines []map[string]any
		waitFor(t, "the access-log lines", func() bool {
			lines = []map[string]any{accessLine(t, logs, "plain-1"), accessLine(t, logs, "stream-1"), accessLine(t, logs, badID), accessLine(t, logs, "probe-1")}
			return lines[0] != nil && lines[1] != nil && lines[2] != nil && lines[3] != nil
		})
		for i, l := range lines[:2] {
			if l["level"] != "info" || l["method"] != "POST" || l["path"] != chatPath || l["status"] != 200.0 ||
				l["model"] != "fake" || l["completion_tokens"] != float64(maxTokens) || l["finish"] != "length" {
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
		if l := lines[2]; l["level"] != "warn" || l["status"] != 404.0 || l["error_code"] != "model_not_found" || l["error_type"] != "invalid_request_error" {
			t.Errorf("error line: %v", l)
		}
		// Probes (/health, /metrics) every few seconds would drown the log at info.
		if l := lines[3]; l["level"] != "debug" || l["path"] != "/health" || l["status"] != 200.0 {
			t.Errorf("probe line: %v", l)
		}
		if got := strings.Contains(logs.String(), "story about the sea"); got != prompts {
			t.Errorf("log.prompts %v: prompt text in the log = %v\n%s", prompts, got, logs.String())
		}
		if leaks := testenv.SecretLeaks(logs.String(), user); leaks != nil {
			t.Errorf("log.prompts %v: the request's user field is in the log: %v\n%s", prompts, leaks, logs.String())
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
		{`{"model": "m", "user": "u"}`, ``},
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

// A callback registered after the request finished (a stream that ended before the
// access log link registered its line) still runs, once.
func TestOnFinishAfterTheRequestFinished(t *testing.T) {
	ri := &RequestInfo{}
	before := 0
	ri.OnFinish(func(*RequestInfo) { before++ })
	ri.FinishRequest()
	after := 0
	ri.OnFinish(func(*RequestInfo) { after++ })
	ri.FinishRequest()
	if before != 1 || after != 1 {
		t.Errorf("callbacks ran %d (registered before) and %d (after) times, want 1 and 1", before, after)
	}
}
