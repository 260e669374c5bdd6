package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// The integration harness: real services on a generated tiny model, real fasthttp
// listeners on loopback, and net/http as the client (an independent reader of the
// wire format).

func TestMain(m *testing.M) {
	engine.SetLogger(testLog())
	testenv.Main(m) // runs the tests, then stops the shared PostgreSQL and Redis
}

// testLog is quiet unless HXP_TEST_LOG=1.
func testLog() zerolog.Logger {
	if os.Getenv("HXP_TEST_LOG") == "1" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

// modelConfig is a small config entry for the tiny model.
func modelConfig(t testing.TB, name string) config.Model {
	m := config.Model{Name: name, Path: testmodel.Path(t, "tiny"), CPUCores: 1, Parallel: 4, CtxPerSeq: 512, Batch: 256,
		QueueSize: 64, TargetLatencyMS: 1000}
	c := &config.Config{Models: []config.Model{m}}
	c.ApplyDefaults(1)
	return c.Models[0]
}

// newService loads a service; it is closed when the test ends.
func newService(t testing.TB, cfg config.Model, opts service.Options) *service.Service {
	t.Helper()
	s := service.New(cfg, testLog(), opts)
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// serve runs handler on a loopback listener and returns its base URL.
func serve(t testing.TB, name string, h func() *Gateway, hc HTTPConfig) string {
	t.Helper()
	if hc.MaxBodyBytes == 0 {
		hc.MaxBodyBytes = 1 << 20
	}
	if hc.ReadTimeout == 0 {
		hc.ReadTimeout, hc.WriteTimeout, hc.IdleTimeout = 10*time.Second, time.Minute, time.Minute
	}
	l := NewListener(name, h().Handler(), hc, testLog())
	if err := l.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	l.Serve(nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	return "http://" + l.Addr().String()
}

// serveModel serves one backend on its own listener.
func serveModel(t testing.TB, b Backend, opts Options) string {
	t.Helper()
	opts.Log = testLog()
	return serve(t, b.Name(), func() *Gateway { return NewModelListener(b, opts) }, HTTPConfig{})
}

// shared is one loaded tiny model served on a listener, shared by the tests that do
// not need their own.
var shared struct {
	svc *service.Service
	url string
}

func sharedModel(t *testing.T) (*service.Service, string) {
	t.Helper()
	if shared.svc == nil {
		s := service.New(modelConfig(t, "tiny"), testLog(), service.Options{})
		if err := s.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		shared.svc = s
		l := NewListener("tiny", NewModelListener(s, Options{Log: testLog()}).Handler(),
			HTTPConfig{ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxBodyBytes: 1 << 20}, testLog())
		if err := l.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		l.Serve(nil)
		shared.url = "http://" + l.Addr().String()
	}
	return shared.svc, shared.url
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response is not JSON (%v): %s", err, r.body)
	}
}

// apiErr decodes an OpenAI error body.
func (r response) apiErr(t testing.TB) errorObject {
	t.Helper()
	var e struct {
		Error *errorObject `json:"error"`
	}
	r.json(t, &e)
	if e.Error == nil {
		t.Fatalf("no error object in %s", r.body)
	}
	return *e.Error
}

func do(t testing.TB, method, url string, body any, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func post(t testing.TB, url string, body any, hdr ...string) response {
	t.Helper()
	return do(t, "POST", url, body, hdr...)
}

// sseEvents splits an SSE body into its data payloads, failing on any framing error:
// every event is exactly "data: PAYLOAD\n\n".
func sseEvents(t testing.TB, body []byte) []string {
	t.Helper()
	var out []string
	rest := string(body)
	for rest != "" {
		ev, after, ok := strings.Cut(rest, "\n\n")
		if !ok {
			t.Fatalf("SSE event not terminated by a blank line: %q", rest)
		}
		if !strings.HasPrefix(ev, "data: ") || strings.Contains(ev, "\n") {
			t.Fatalf("SSE event is not one data line: %q", ev)
		}
		out = append(out, strings.TrimPrefix(ev, "data: "))
		rest = after
	}
	if len(out) == 0 || out[len(out)-1] != "[DONE]" {
		t.Fatalf("SSE stream does not end with [DONE]: %q", body)
	}
	return out
}

// chatText joins the content deltas of a streamed chat completion, checks the chunks'
// shape, and returns the text, the finish reason and the usage chunk (if any).
func chatStream(t testing.TB, body []byte) (text, finish string, usage *Usage) {
	t.Helper()
	evs := sseEvents(t, body)
	var b strings.Builder
	for i, ev := range evs[:len(evs)-1] {
		var c struct {
			ID, Object, Model string
			Choices           []struct {
				Index        int
				Delta        ChatDelta
				FinishReason *string `json:"finish_reason"`
			}
			Usage *Usage
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("chunk %d is not JSON: %q", i, ev)
		}
		if c.Object != "chat.completion.chunk" || !strings.HasPrefix(c.ID, "chatcmpl-") {
			t.Fatalf("chunk %d has object %q id %q", i, c.Object, c.ID)
		}
		if i == 0 && (len(c.Choices) != 1 || c.Choices[0].Delta.Role != "assistant") {
			t.Fatalf("first chunk does not carry the assistant role: %s", ev)
		}
		if c.Usage != nil {
			if len(c.Choices) != 0 {
				t.Fatalf("usage chunk has choices: %s", ev)
			}
			usage = c.Usage
			continue
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				b.WriteString(*ch.Delta.Content)
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return b.String(), finish, usage
}

// freePort returns a port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds, failing after a generous deadline (a hang
// guard, not a timing assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// finishedCount reads the scheduler's hxp_generations_total for a model and reason.
func finishedCount(t testing.TB, model string, reason sched.FinishReason) float64 {
	t.Helper()
	return schedCounter(t, "hxp_generations_total", map[string]string{"model": model, "finish": string(reason)})
}

// schedCounter reads the scheduler counter name's series with the given labels (0 if
// it has none yet).
func schedCounter(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := sched.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// chatBody is a greedy chat request.
func chatBody(model string, maxTokens int, extra map[string]any) map[string]any {
	b := map[string]any{
		"model":       model,
		"messages":    []map[string]any{{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a story about the sea."}},
		"max_tokens":  maxTokens,
		"temperature": 0,
	}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func fmtBody(v any) string { b, _ := json.Marshal(v); return fmt.Sprintf("%s", b) }

var _ = bufio.NewReader
