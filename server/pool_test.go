package server

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/service"
)

// fakeNode is a real HTTP peer standing in for a remote hxp node whose behaviour the
// test switches: healthy (OpenAI-shaped answers), failing (500 on everything) or
// busy (429).
type fakeNode struct {
	url  string
	mode atomic.Value // "ok", "fail", "busy"
	hits atomic.Int64 // model requests (health checks not counted)
}

func startFakeNode(t testing.TB, model string) *fakeNode {
	t.Helper()
	n := &fakeNode{}
	n.mode.Store("ok")
	h := func(ctx *fasthttp.RequestCtx) {
		mode := n.mode.Load().(string)
		path := string(ctx.Path())
		if path != "/v1/models/"+model {
			n.hits.Add(1)
		}
		switch {
		case mode == "fail":
			writeError(ctx, &APIError{Status: 500, Type: typeServer, Message: "node is broken"}, "")
		case mode == "busy":
			writeError(ctx, &APIError{Status: 429, Type: typeRateLimit, Code: "overloaded", Message: "busy", RetryAfter: time.Second}, "")
		case path == "/v1/models/"+model:
			writeJSON(ctx, 200, ModelCard{ID: model, Object: "model", OwnedBy: "hxp", Status: "ready", ContextLength: 512})
		case path == "/tokenize":
			writeJSON(ctx, 200, TokenizeResponse{Tokens: []int32{1, 2}, Count: 2, MaxModelLen: 512})
		default:
			writeError(ctx, badRequest("", "fake node serves /tokenize only"), "")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	n.url = "http://" + ln.Addr().String()
	return n
}

// rawNode is a TCP peer that answers each connection with handle: for upstreams
// that break the HTTP exchange itself.
func rawNode(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var req fasthttp.Request
				if req.Read(br) != nil {
					return
				}
				handle(c)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func mustRemote(t testing.TB, url string, models ...string) *Remote {
	t.Helper()
	r, err := NewRemote(RemoteOptions{URL: url, Models: models, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func startPool(t testing.TB, p *Pool, links ...Middleware) string {
	t.Helper()
	p.Start()
	t.Cleanup(p.Close)
	return serve(t, "gateway", func() *Gateway {
		g, err := NewGateway(Options{Log: testLog(), Middleware: links}, p)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}, HTTPConfig{})
}

func statsOf(p *Pool, upstream string) UpstreamStats {
	for _, s := range p.Stats() {
		if s.Upstream == upstream {
			return s
		}
	}
	return UpstreamStats{}
}

func TestCircuitBreakerOpensOnAFailingUpstreamAndClosesOnRecovery(t *testing.T) {
	_, listener := sharedModel(t)
	flaky := startFakeNode(t, "tiny")
	clk := newFakeClock()
	p := NewPool(PoolOptions{Breaker: BreakerConfig{FailureThreshold: 2, OpenFor: 10 * time.Second}, HealthInterval: -1, Now: clk.now})
	p.Add("tiny", mustRemote(t, listener, "tiny"))
	p.Add("tiny", mustRemote(t, flaky.url, "tiny"))
	url := startPool(t, p)
	flakyName := strings.TrimSuffix(flaky.url, "/")

	flaky.mode.Store("fail")
	for i := 0; statsOf(p, flakyName).Breaker != "open"; i++ {
		if i > 20 {
			t.Fatalf("breaker never opened: %+v", p.Stats())
		}
		// Every request succeeds: a failed attempt is retried on the healthy node.
		if r := post(t, url+"/tokenize", tokenizeBody("tiny")); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	if s := statsOf(p, flakyName); s.Failed != 2 || s.Opens != 1 {
		t.Fatalf("flaky upstream: %+v", s)
	}
	// While open, the failing node gets no traffic.
	hits := flaky.hits.Load()
	for i := 0; i < 10; i++ {
		if r := post(t, url+"/tokenize", tokenizeBody("tiny")); r.status != 200 {
			t.Fatalf("with the breaker open: %d %s", r.status, r.body)
		}
	}
	if flaky.hits.Load() != hits {
		t.Fatalf("open breaker let %d requests through", flaky.hits.Load()-hits)
	}
	// Still failing after open_for: the probe fails and the breaker opens again.
	clk.add(10 * time.Second)
	waitFor(t, "a failed probe", func() bool {
		post(t, url+"/tokenize", tokenizeBody("tiny"))
		return statsOf(p, flakyName).Opens == 2
	})
	// Recovered: after open_for one probe succeeds and the breaker closes.
	flaky.mode.Store("ok")
	clk.add(10 * time.Second)
	if got := statsOf(p, flakyName).Breaker; got != "half-open" {
		t.Fatalf("after open_for: %s", got)
	}
	waitFor(t, "a successful probe", func() bool {
		if r := post(t, url+"/tokenize", tokenizeBody("tiny")); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		return statsOf(p, flakyName).Breaker == "closed"
	})
	// Closed again: least outstanding requests with round-robin ties spread the load.
	before := flaky.hits.Load()
	for i := 0; i < 10; i++ {
		post(t, url+"/tokenize", tokenizeBody("tiny"))
	}
	if got := flaky.hits.Load() - before; got < 3 || got > 7 {
		t.Fatalf("recovered node got %d of 10 requests", got)
	}
}

func TestActiveHealthChecksTakeAFailingNodeOutOfRotation(t *testing.T) {
	_, listener := sharedModel(t)
	node := startFakeNode(t, "tiny")
	p := NewPool(PoolOptions{HealthInterval: -1})
	p.Add("tiny", mustRemote(t, listener, "tiny"))
	nodeRemote := mustRemote(t, node.url, "tiny")
	p.Add("tiny", nodeRemote)
	url := startPool(t, p)
	node.mode.Store("fail")
	p.CheckHealth()
	if s := statsOf(p, node.url); s.Healthy || s.Breaker != "closed" {
		t.Fatalf("after a failed check: %+v", s)
	}
	hits := node.hits.Load()
	for i := 0; i < 6; i++ {
		if r := post(t, url+"/tokenize", tokenizeBody("tiny")); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	if node.hits.Load() != hits {
		t.Fatal("an unhealthy node got traffic while a healthy one was there")
	}
	node.mode.Store("ok")
	p.CheckHealth()
	if !statsOf(p, node.url).Healthy {
		t.Fatal("recovered node still out of rotation")
	}
	if c := nodeRemote.Models(); len(c) != 1 || c[0].Status != "ready" || c[0].ContextLength != 512 {
		t.Fatalf("remote card from the health check: %+v", c)
	}
}

func TestFallbacksAndRetriesBeforeTheFirstByte(t *testing.T) {
	svc, _ := sharedModel(t)
	// "dead": nothing listens there. "early": accepts and hangs up before answering.
	// "cut": sends the response head and one event, then hangs up mid-stream.
	deadURL := "http://127.0.0.1:" + itoa(freePort(t))
	earlyURL := rawNode(t, func(net.Conn) {})
	cutURL := rawNode(t, func(c net.Conn) {
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
		ev := "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n"
		c.Write([]byte(itox(len(ev)) + "\r\n" + ev + "\r\n"))
	})
	busy := startFakeNode(t, "busy")
	busy.mode.Store("busy")
	p := NewPool(PoolOptions{HealthInterval: -1, Fallbacks: map[string][]string{
		"dead": {"tiny"}, "early": {"tiny"}, "cut": {"tiny"}, "busy": {"tiny"},
	}})
	p.Add("tiny", NewLocal(svc, Options{}))
	p.Add("dead", mustRemote(t, deadURL, "dead"))
	p.Add("early", mustRemote(t, earlyURL, "early"))
	p.Add("cut", mustRemote(t, cutURL, "cut"))
	p.Add("busy", mustRemote(t, busy.url, "busy"))
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	keys := NewStaticKeys([]StaticKey{
		{Hash: HashKey("secret-any"), Tenant: Tenant{ID: "any"}},
		{Hash: HashKey("secret-dead-only"), Tenant: Tenant{ID: "dead-only", Models: []string{"dead"}}},
	}, nil)
	url := startPool(t, p, &KeyAuth{Store: keys}, Scope{})
	anyKey := bearer("secret-any")

	for _, model := range []string{"dead", "early", "busy"} {
		var c ChatCompletion
		r := post(t, url+"/v1/chat/completions", chatBody(model, 2, nil), anyKey...)
		r.json(t, &c)
		if r.status != 200 || c.Model != "tiny" || r.header.Get(FallbackHeader) != "tiny" {
			t.Errorf("%s: %d %q %s", model, r.status, r.header.Get(FallbackHeader), r.body)
		}
	}
	// A key may fall back only to models it may use: the failed attempt's error stands.
	r := post(t, url+"/v1/chat/completions", chatBody("dead", 2, nil), bearer("secret-dead-only")...)
	if r.status != 502 || *r.apiErr(t).Code != "upstream_unavailable" {
		t.Errorf("fallback outside the key's scope: %d %s", r.status, r.body)
	}
	// Once a stream's first byte reached the client there is no retry and no fallback.
	steps := svc.Stats().Steps
	r = post(t, url+"/v1/chat/completions", chatBody("cut", 2, map[string]any{"stream": true}), anyKey...)
	if r.status != 200 || r.header.Get(FallbackHeader) != "" || !strings.Contains(string(r.body), `"role":"assistant"`) ||
		strings.Contains(string(r.body), "[DONE]") {
		t.Errorf("stream cut after its first event: %d %q %s", r.status, r.header.Get(FallbackHeader), r.body)
	}
	if svc.Stats().Steps != steps {
		t.Error("a stream cut after its first byte was retried on the fallback")
	}
}

func TestRemoteRelaysStreamsAndUsage(t *testing.T) {
	_, listener := sharedModel(t)
	rec := &memLedger{}
	keys := NewStaticKeys([]StaticKey{{Hash: HashKey("secret-relay"), Tenant: Tenant{ID: "relay"}}}, nil)
	p := NewPool(PoolOptions{HealthInterval: -1})
	p.Add("tiny", mustRemote(t, listener, "tiny"))
	url := startPool(t, p, &KeyAuth{Store: keys}, UsageLog{Ledger: rec})
	key := bearer("secret-relay")

	// A stream without include_usage: the gateway asks the node for usage, records it
	// and strips it from what the client sees.
	r := post(t, url+"/v1/chat/completions", chatBody("tiny", 3, map[string]any{"stream": true}), key...)
	text, finish, usage := chatStream(t, r.body)
	if r.status != 200 || text == "" || finish == "" || usage != nil || strings.Contains(string(r.body), "usage") {
		t.Fatalf("relayed stream: %d %q %q %s", r.status, text, finish, r.body)
	}
	// With include_usage the usage chunk is relayed.
	r = post(t, url+"/v1/chat/completions", chatBody("tiny", 3, map[string]any{"stream": true,
		"stream_options": map[string]any{"include_usage": true}}), key...)
	if _, _, usage := chatStream(t, r.body); usage == nil || usage.CompletionTokens == 0 {
		t.Fatalf("usage chunk not relayed: %s", r.body)
	}
	// Non-streamed, and a node's 4xx relayed as is.
	var c ChatCompletion
	post(t, url+"/v1/chat/completions", chatBody("tiny", 3, nil), key...).json(t, &c)
	bad := post(t, url+"/v1/chat/completions", chatBody("tiny", 3, map[string]any{"temperature": 9}), key...)
	if bad.status != 400 || *bad.apiErr(t).Param != "temperature" {
		t.Fatalf("node's 400: %d %s", bad.status, bad.body)
	}
	recs := rec.all()
	if len(recs) != 4 {
		t.Fatalf("%d ledger records for 4 requests", len(recs))
	}
	for i, rc := range recs[:3] {
		if rc.PromptTokens == 0 || rc.CompletionTokens == 0 || rc.StatusCode != 200 || rc.KeyID != "relay" {
			t.Errorf("record %d: %+v", i, rc)
		}
	}
	if recs[2].CompletionTokens != c.Usage.CompletionTokens || recs[3].StatusCode != 400 {
		t.Errorf("records %+v, response usage %+v", recs, c.Usage)
	}
}

// memLedger records usage in memory.
type memLedger struct {
	mu   sync.Mutex
	recs []postgres.UsageRecord
}

func (m *memLedger) Record(r postgres.UsageRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, r)
}

func (m *memLedger) all() []postgres.UsageRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]postgres.UsageRecord(nil), m.recs...)
}

func itoa(n int) string { return strconv.Itoa(n) }

func itox(n int) string { return strconv.FormatInt(int64(n), 16) }

// A model that is still loading answers 503: the pool neither opens its breaker nor
// hides the model's own answer, so it serves as soon as the load is done.
func TestLoadingModelDoesNotOpenTheBreaker(t *testing.T) {
	svc := service.New(modelConfig(t, "late"), testLog(), service.Options{})
	t.Cleanup(svc.Close)
	p := NewPool(PoolOptions{HealthInterval: -1, Breaker: BreakerConfig{FailureThreshold: 2}})
	p.Add("late", NewLocal(svc, Options{}))
	url := startPool(t, p)
	for i := 0; i < 5; i++ {
		r := post(t, url+"/tokenize", tokenizeBody("late"))
		if r.status != 503 || *r.apiErr(t).Code != "model_not_ready" || r.header.Get("Retry-After") == "" {
			t.Fatalf("while loading: %d %s", r.status, r.body)
		}
	}
	if err := svc.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := post(t, url+"/tokenize", tokenizeBody("late")); r.status != 200 {
		t.Fatalf("after the load: %d %s", r.status, r.body)
	}
	if s := p.Stats()[0]; s.Opens != 0 {
		t.Fatalf("breaker opened on a loading model: %+v", s)
	}
}
