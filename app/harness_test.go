package app

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
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
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
)

// The app tests run whole servers (App) on loopback ports: real model services on the
// generated tiny model (internal/testmodel), real PostgreSQL, Redis and Prometheus
// (internal/testenv), and net/http as the client, an independent reader of the wire
// format. Everything a test asserts goes through HTTP, the registry or the logs.

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

// server is an App serving on loopback, with its logs.
type server struct {
	*App
	gw   string // the gateway's base URL
	own  string // the first model listener's base URL ("" when no model has a port)
	ten  *tenancy.Tenancy
	logs *testenv.Buffer // every log line of the app and its tenancy, debug level, JSON
}

// setup describes a server to start.
type setup struct {
	// models are tiny-model services by name; the first gets its own listener. nil is
	// one model named "tiny"; an empty, non-nil slice is none (a gateway of upstreams).
	models []string
	// service are the options of the model services (step hooks, stall threshold).
	service service.Options
	// edit changes the config before defaults and validation.
	edit func(*config.Config)
	// tenancy, when set, changes the tenancy settings that the config does not hold
	// (the ledger's intervals) before the tenancy is opened.
	tenancy func(*tenancy.Config)
	// grace is the shutdown grace at the test's end (default 5s).
	grace time.Duration
	// app, when set, changes the App's options before it is built.
	app func(*Options)
}

// start builds, starts and loads a server; it is shut down when the test ends.
func start(t testing.TB, s setup) *server {
	t.Helper()
	if s.models == nil {
		s.models = []string{"tiny"}
	}
	cfg := &config.Config{Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Postgres:  config.Postgres{SpoolPath: filepath.Join(t.TempDir(), "usage.spool")}, // not the working directory
		Retrieval: config.Retrieval{DataDir: t.TempDir()}}
	for i, name := range s.models {
		m := modelConfig(t, name)
		if i == 0 {
			m.Port = freePort(t)
		}
		cfg.Models = append(cfg.Models, m)
	}
	grpcAddr := "127.0.0.1:0" // every test's gRPC front end on a port of its own
	cfg.GRPC.Listen = &grpcAddr
	if s.edit != nil {
		s.edit(cfg)
	}
	cores := max(1, len(cfg.Models)) // each model's one core
	cfg.ApplyDefaults(cores)
	if ps := cfg.Validate(config.Options{HostCores: cores}); ps != nil {
		t.Fatal(ps)
	}
	logs := &testenv.Buffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel)
	srv := &server{logs: logs}
	// As hxp serve does: the tenancy of the config, opened before the app.
	tc := tenancy.FromConfig(cfg, log)
	if s.tenancy != nil {
		s.tenancy(&tc)
	}
	srv.ten = openTenancy(t, tc)
	opts := Options{Log: log, Tenancy: srv.ten, Validate: config.Options{HostCores: cores}}
	if s.app != nil {
		s.app(&opts)
	}
	group := service.NewGroup(cfg.Models, log, s.service)
	a, err := New(cfg, group, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	grace := s.grace
	if grace == 0 {
		grace = 5 * time.Second
	}
	t.Cleanup(func() { _ = a.Shutdown(grace) })
	if err := a.WaitLoaded(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	srv.App = a
	addrs := a.Addrs()
	srv.gw = "http://" + addrs[0].String()
	if len(addrs) > 1 {
		srv.own = "http://" + addrs[1].String()
	}
	return srv
}

// openTenancy opens the tenancy of tc; it is closed when the test ends, after the app
// that uses it.
func openTenancy(t testing.TB, tc tenancy.Config) *tenancy.Tenancy {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ten, err := tenancy.Open(ctx, tc)
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

// metric returns the value of the sample of name in g whose labels include want,
// and whether there is one.
func metric(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// counter is metric's value, 0 when the series does not exist yet.
func counter(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	v, _ := metric(t, g, name, want)
	return v
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
		t.Fatalf("response %d is not JSON (%v): %s", r.status, err, r.body)
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
		t.Fatalf("no error object in %d %s", r.status, r.body)
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
	return send(t, http.DefaultClient, req)
}

func send(t testing.TB, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
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
	return send(t, http.DefaultClient, req)
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

// chatStream joins the content deltas of a streamed chat completion and returns the
// text, the finish reason and the usage chunk (if any).
func chatStream(t testing.TB, body []byte) (text, finish string, usage *openai.Usage) {
	t.Helper()
	evs := sseEvents(t, body)
	var b strings.Builder
	for i, ev := range evs[:len(evs)-1] {
		var c struct {
			Object  string
			Choices []struct {
				Delta        openai.ChatDelta
				FinishReason *string `json:"finish_reason"`
			}
			Usage *openai.Usage
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil || c.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %d is not a chat.completion.chunk: %q", i, ev)
		}
		if c.Usage != nil {
			usage = c.Usage
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

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
