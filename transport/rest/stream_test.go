package rest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// A client that goes away mid-stream cancels its generation: the slot is freed and
// the scheduler counts a cancelled generation.
func TestDisconnectCancels(t *testing.T) {
	cfg := modelConfig(t, "leaver")
	svc := newService(t, cfg, service.Options{StepHook: func() { time.Sleep(2 * time.Millisecond) }})
	url := serveModel(t, svc, Options{})
	const maxTokens = 400
	// Precondition: this greedy request runs to max_tokens, so only a cancel ends it early.
	var c openai.ChatCompletion
	post(t, url+"/v1/chat/completions", chatBody("leaver", maxTokens, nil)).json(t, &c)
	if c.Choices[0].FinishReason != "length" {
		t.Fatalf("precondition: greedy run stopped early (%s after %d tokens)", c.Choices[0].FinishReason, c.Usage.CompletionTokens)
	}
	before := finishedCount(t, "leaver", sched.FinishCancelled)

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := fmtBody(chatBody("leaver", maxTokens, map[string]any{"stream": true}))
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	rd := bufio.NewReader(conn)
	for chunks := 0; chunks < 3; {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			chunks++
		}
	}
	waitFor(t, "the stream to run", func() bool { return svc.Stats().Running == 1 })
	conn.Close()
	waitFor(t, "the slot to be freed", func() bool { st := svc.Stats(); return st.Running == 0 && st.Queued == 0 })
	if got := finishedCount(t, "leaver", sched.FinishCancelled); got != before+1 {
		t.Errorf("cancelled generations %v -> %v, want one more", before, got)
	}
}

// 32 concurrent streams on 4 slots all complete, with the same greedy text as one
// request alone.
func TestConcurrentStreams(t *testing.T) {
	_, url := sharedModel(t)
	var ref openai.ChatCompletion
	post(t, url+"/v1/chat/completions", chatBody("tiny", 16, nil)).json(t, &ref)
	want := ref.Choices[0].Message.Content
	const n = 32
	var wg sync.WaitGroup
	texts := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := json.Marshal(chatBody("tiny", 16, map[string]any{"stream": true}))
			resp, err := http.Post(url+"/v1/chat/completions", "application/json", bytes.NewReader(b))
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			if resp.StatusCode != 200 {
				errs[i] = fmt.Errorf("status %d: %s", resp.StatusCode, buf.Bytes())
				return
			}
			texts[i], _, _ = chatStream(t, buf.Bytes())
		}()
	}
	wg.Wait()
	for i := range texts {
		if errs[i] != nil {
			t.Errorf("stream %d: %v", i, errs[i])
		} else if texts[i] != want {
			t.Errorf("stream %d: %q, want %q", i, texts[i], want)
		}
	}
}

// The access log line of a stream is written when the stream ends, with its token
// counts, and never contains the prompt.
func TestAccessLogOfStream(t *testing.T) {
	log, logs := captureLog()
	url := serveFake(t, &infertest.Fake{}, Options{Log: log})
	r := post(t, url+chatPath, chatBody("fake", 5, map[string]any{"stream": true}), "X-Request-Id", "client-id-1")
	if r.header.Get("X-Request-Id") != "client-id-1" {
		t.Errorf("x-request-id %q", r.header.Get("X-Request-Id"))
	}
	var line map[string]any
	waitFor(t, "the access log line", func() bool {
		line = accessLine(t, logs, "client-id-1")
		return line != nil
	})
	for k, want := range map[string]any{"request_id": "client-id-1", "model": "fake", "status": 200.0, "stream": true, "path": chatPath,
		"completion_tokens": 3.0, "finish": "stop"} {
		if line[k] != want {
			t.Errorf("log %s = %v, want %v", k, line[k], want)
		}
	}
	if line["prompt_tokens"] == nil || line["duration_ms"] == nil {
		t.Errorf("log line lacks token counts: %v", line)
	}
	if strings.Contains(logs.String(), "story") {
		t.Errorf("log contains prompt text: %s", logs.String())
	}
}

// An error in the middle of a stream (after its 200 header) is sent as an error event,
// and the stream still ends with [DONE]; the access log records the error's status.
// Without a stream the same error is the response.
func TestStreamErrorEndsWithDone(t *testing.T) {
	log, logs := captureLog()
	fail := &infer.Error{Kind: infer.Unavailable, Code: "shutting_down", Message: "the model is shutting down; retry on another node"}
	url := serveFake(t, &infertest.Fake{EventErr: fail}, Options{Log: log})
	r := post(t, url+chatPath, chatBody("fake", 8, map[string]any{"stream": true}), "X-Request-Id", "broken-1")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", r.status, r.header.Get("Content-Type"))
	}
	evs := sseEvents(t, r.body) // framing checked, [DONE] last
	if len(evs) < 3 {
		t.Fatalf("events %q", evs)
	}
	var text strings.Builder
	for _, ev := range evs[:len(evs)-2] {
		var c openai.ChatChunk
		if err := json.Unmarshal([]byte(ev), &c); err != nil || c.Object != "chat.completion.chunk" {
			t.Fatalf("chunk before the error %q (%v)", ev, err)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				text.WriteString(*ch.Delta.Content)
			}
			if ch.FinishReason != nil {
				t.Errorf("a failed choice has a finish reason: %s", ev)
			}
		}
	}
	if text.String() != "hello " {
		t.Errorf("text before the error %q, want the first word", text.String())
	}
	e := response{status: 503, body: []byte(evs[len(evs)-2])}.wantErr(t, 503, "service_unavailable_error", "shutting_down")
	if e.Message != fail.Message {
		t.Errorf("error event message %q", e.Message)
	}
	var line map[string]any
	waitFor(t, "the access log line", func() bool {
		line = accessLine(t, logs, "broken-1")
		return line != nil
	})
	if line["status"] != 200.0 || line["error_status"] != 503.0 || line["error_code"] != "shutting_down" || line["stream"] != true {
		t.Errorf("log line of a failed stream: %v", line)
	}

	r = post(t, url+chatPath, chatBody("fake", 8, nil))
	r.wantErr(t, 503, "service_unavailable_error", "shutting_down")
}

// A client that gives up on a non-streamed request (a timeout, Ctrl-C) cancels its
// generation: fasthttp gives the handler no signal, so the connection is watched. The
// request counts as 499 and the slot is free long before max_tokens.
func TestDisconnectCancelsNonStreamed(t *testing.T) {
	cfg := modelConfig(t, "leaver-json")
	svc := newService(t, cfg, service.Options{StepHook: func() { time.Sleep(2 * time.Millisecond) }})
	m := NewMetrics()
	log, logs := captureLog()
	url := serveModel(t, svc, Options{Metrics: m, Log: log})
	const maxTokens = 400 // ~1 s of steps: only a cancel ends it early (as TestDisconnectCancels checks)
	before := finishedCount(t, "leaver-json", sched.FinishCancelled)

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := fmtBody(chatBody("leaver-json", maxTokens, nil))
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: leaver-1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	waitFor(t, "the request to run", func() bool { return svc.Stats().Running == 1 })
	conn.Close()
	waitFor(t, "the slot to be freed", func() bool { st := svc.Stats(); return st.Running == 0 && st.Queued == 0 })
	if got := finishedCount(t, "leaver-json", sched.FinishCancelled); got != before+1 {
		t.Errorf("cancelled generations %v -> %v, want one more", before, got)
	}
	waitFor(t, "the request to be counted as 499", func() bool {
		return testutil.ToFloat64(m.requests.WithLabelValues("leaver-json", "499")) == 1
	})
	var l map[string]any
	waitFor(t, "the access log line", func() bool { l = accessLine(t, logs, "leaver-1"); return l != nil })
	if l["status"] != 499.0 || l["error_code"] != "client_closed_request" {
		t.Errorf("access log of the request whose client left: %v", l)
	}

	// A client that stays gets its answer: watching does not cut anyone off.
	var c openai.ChatCompletion
	post(t, url+"/v1/chat/completions", chatBody("leaver-json", 8, nil)).json(t, &c)
	if c.Usage.CompletionTokens != 8 {
		t.Errorf("a client that stayed got %d tokens, want 8", c.Usage.CompletionTokens)
	}
}

// A stream whose client leaves while it waits in the queue ends at admission without
// evaluating its prompt or generating a token: without watching, its first token
// would be the first moment a write could fail.
func TestDisconnectWhileQueued(t *testing.T) {
	cfg := modelConfig(t, "leaver-queued")
	cfg.Parallel = 1
	svc := newService(t, cfg, service.Options{StepHook: func() { time.Sleep(2 * time.Millisecond) }})
	url := serveModel(t, svc, Options{})
	before := finishedCount(t, "leaver-queued", sched.FinishCancelled)
	generated := func() float64 {
		return schedCounter(t, "hxp_generated_tokens_total", map[string]string{"model": "leaver-queued"})
	}
	tokensBefore := generated()

	// The only slot is busy for ~1 s.
	const busyTokens = 400
	busy := make(chan response, 1)
	go func() { busy <- post(t, url+"/v1/chat/completions", chatBody("leaver-queued", busyTokens, nil)) }()
	waitFor(t, "the first request to run", func() bool { return svc.Stats().Running == 1 })

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := fmtBody(chatBody("leaver-queued", 400, map[string]any{"stream": true}))
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	waitFor(t, "the stream to queue", func() bool { return svc.Stats().Queued == 1 })
	conn.Close()
	if r := <-busy; r.status != 200 {
		t.Fatalf("the request that stayed: %d %s", r.status, r.body)
	}
	waitFor(t, "the queued stream to be cancelled", func() bool {
		return finishedCount(t, "leaver-queued", sched.FinishCancelled) == before+1
	})
	if got := generated() - tokensBefore; got != busyTokens {
		t.Errorf("%v tokens generated, want the busy request's %d alone: the stream that left was run", got, busyTokens)
	}
}
