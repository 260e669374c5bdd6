package rest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
)

// The test harness: real fasthttp listeners on loopback with net/http as the client
// (an independent reader of the wire format), in front of either infertest.Fake (the
// wire format, errors, auth, headers, logs: no model needed) or real services on the
// generated tiny model (the generation path: determinism, streams, logprobs, stops,
// embeddings, the tokenizer, cancellation).

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

// captureLog is a debug-level JSON logger into a buffer, for tests of what is (and is
// never) logged.
func captureLog() (zerolog.Logger, *testenv.Buffer) {
	buf := &testenv.Buffer{}
	return zerolog.New(buf).Level(zerolog.DebugLevel), buf
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

// testHTTP are the listener limits of the tests, unless a test sets its own.
func testHTTP(hc HTTPConfig) HTTPConfig {
	if hc.MaxBodyBytes == 0 {
		hc.MaxBodyBytes = 1 << 20
	}
	if hc.ReadTimeout == 0 {
		hc.ReadTimeout, hc.WriteTimeout, hc.IdleTimeout = 10*time.Second, time.Minute, time.Minute
	}
	return hc
}

// listen starts a Listener for h on loopback (not yet serving); it is shut down when
// the test ends.
func listen(t testing.TB, name string, h *Server, hc HTTPConfig, log zerolog.Logger) *Listener {
	t.Helper()
	l := NewListener(name, h.Handler(), testHTTP(hc), log)
	if err := l.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	return l
}

// serve runs s on a loopback listener and returns its base URL.
func serve(t testing.TB, name string, s *Server, hc HTTPConfig) string {
	t.Helper()
	l := listen(t, name, s, hc, testLog())
	l.Serve(nil)
	return "http://" + l.Addr().String()
}

// modelListener is a model's own listener: the Server of one local model with that
// model as its default.
func modelListener(svc *service.Service, opts Options) *Server {
	opts.DefaultModel = svc.Name()
	return New(infer.NewLocal(svc), opts)
}

// serveModel serves one model service on its own listener.
func serveModel(t testing.TB, svc *service.Service, opts Options) string {
	t.Helper()
	return serve(t, svc.Name(), modelListener(svc, opts), HTTPConfig{})
}

// fakeListener is a model's own listener over a fake model.
func fakeListener(f *infertest.Fake, opts Options) *Server {
	opts.DefaultModel = f.Models(context.Background())[0].ID
	return New(f, opts)
}

// serveFake serves a fake model on its own listener.
func serveFake(t testing.TB, f *infertest.Fake, opts Options) string {
	t.Helper()
	return serve(t, "fake", fakeListener(f, opts), HTTPConfig{})
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
		l := NewListener("tiny", modelListener(s, Options{Log: testLog()}).Handler(), testHTTP(HTTPConfig{}), testLog())
		if err := l.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		l.Serve(nil)
		shared.url = "http://" + l.Addr().String()
	}
	return shared.svc, shared.url
}

// keyTenancy is a tenancy that requires one of keys (static plain keys, no database);
// cfg may add settings (a cache, an admin key, a database).
func keyTenancy(t testing.TB, cfg tenancy.Config, keys ...string) *tenancy.Tenancy {
	t.Helper()
	cfg.PlainKeys = append(cfg.PlainKeys, keys...)
	cfg.Auth.Required = true
	if cfg.Postgres.URL != "" && cfg.Postgres.SpoolPath == "" {
		cfg.Postgres.SpoolPath = filepath.Join(t.TempDir(), "usage.spool")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ten, err := tenancy.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ten.Close(ctx)
	})
	return ten
}

// staticKey is a hashed config key with a scope and limits.
func staticKey(id, secret string, models []string, rpm, tpm int) config.StaticKey {
	h := tenancy.HashKey(secret)
	return config.StaticKey{ID: id, SHA256: hex.EncodeToString(h[:]), Models: models, RPM: rpm, TPM: tpm}
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

func tokenizeBody(model string) map[string]any {
	return map[string]any{"model": model, "prompt": "the quiet prompt text"}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
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
func (r response) apiErr(t testing.TB) openai.ErrorObject {
	t.Helper()
	var e struct {
		Error *openai.ErrorObject `json:"error"`
	}
	r.json(t, &e)
	if e.Error == nil {
		t.Fatalf("no error object in %s", r.body)
	}
	return *e.Error
}

// wantErr fails unless r is an OpenAI error with this status, type and code ("" for
// a null code).
func (r response) wantErr(t testing.TB, status int, typ, code string) openai.ErrorObject {
	t.Helper()
	e := r.apiErr(t)
	got := ""
	if e.Code != nil {
		got = *e.Code
	}
	if r.status != status || e.Type != typ || got != code || e.Message == "" {
		t.Errorf("got %d type %q code %q, want %d %q %q: %s", r.status, e.Type, got, status, typ, code, r.body)
	}
	return e
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
	return send(t, req)
}

func send(t testing.TB, req *http.Request) response {
	t.Helper()
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

// rawRequest sends a request with exactly the given header lines (net/http's header
// setters would normalise some of them away).
func rawRequest(t testing.TB, method, url string, body []byte, headers [][2]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		req.Header[h[0]] = append(req.Header[h[0]], h[1])
	}
	return send(t, req)
}

// sseEvents splits an SSE body into its data payloads, failing on any framing error:
// every event is exactly "data: PAYLOAD\n\n", and the last one is [DONE].
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

// chatStream joins the content deltas of a streamed chat completion, checks the
// chunks' shape, and returns the text, the finish reason and the usage chunk (if any).
func chatStream(t testing.TB, body []byte) (text, finish string, usage *openai.Usage) {
	t.Helper()
	evs := sseEvents(t, body)
	var b strings.Builder
	for i, ev := range evs[:len(evs)-1] {
		var c struct {
			ID, Object, Model string
			Choices           []struct {
				Index        int
				Delta        openai.ChatDelta
				FinishReason *string `json:"finish_reason"`
			}
			Usage *openai.Usage
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

// waitFor is testenv.WaitFor: a hang guard, not a timing assertion.
var waitFor = testenv.WaitFor

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

func fmtBody(v any) string { b, _ := json.Marshal(v); return string(b) }
