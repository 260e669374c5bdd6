package rest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/route"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
)

// newPool is the gateway's router over local model services, without background
// health checks.
func newPool(t testing.TB, svcs ...*service.Service) *route.Pool {
	t.Helper()
	p := route.NewPool(route.Options{HealthInterval: -1})
	for _, s := range svcs {
		if err := p.AddLocal(infer.NewLocal(s)); err != nil {
			t.Fatal(err)
		}
	}
	p.Start()
	t.Cleanup(p.Close)
	return p
}

// The gateway routes by the request's model between two model services.
func TestGatewayRouting(t *testing.T) {
	alpha := newService(t, modelConfig(t, "alpha"), service.Options{})
	beta := newService(t, modelConfig(t, "beta"), service.Options{})
	url := serve(t, "gateway", New(newPool(t, alpha, beta), Options{}), HTTPConfig{})

	var list openai.ModelList
	do(t, "GET", url+"/v1/models", nil).json(t, &list)
	if len(list.Data) != 2 || list.Data[0].ID != "alpha" || list.Data[1].ID != "beta" {
		t.Fatalf("models %+v", list.Data)
	}
	for _, target := range []*service.Service{alpha, beta} {
		other := alpha
		if target == alpha {
			other = beta
		}
		idle := func() bool { return !alpha.Stats().Busy && !beta.Stats().Busy }
		waitFor(t, "idle models", idle)
		tSteps, oSteps := target.Stats().Steps, other.Stats().Steps
		var c openai.ChatCompletion
		r := post(t, url+chatPath, chatBody(target.Name(), 3, nil))
		r.json(t, &c)
		if r.status != 200 || c.Model != target.Name() {
			t.Fatalf("%s: %d %s", target.Name(), r.status, r.body)
		}
		waitFor(t, "idle models", idle) // the stats snapshot follows the last step
		if target.Stats().Steps == tSteps || other.Stats().Steps != oSteps {
			t.Errorf("request for %s ran on the wrong model (steps %d->%d, other %d->%d)",
				target.Name(), tSteps, target.Stats().Steps, oSteps, other.Stats().Steps)
		}
	}
	// Every model endpoint routes; tokenize goes to beta.
	if r := post(t, url+"/tokenize", map[string]any{"model": "beta", "prompt": "hi"}); r.status != 200 {
		t.Errorf("tokenize via gateway: %d %s", r.status, r.body)
	}
	r := post(t, url+chatPath, chatBody("", 3, nil))
	if e := r.apiErr(t); r.status != 400 || e.Param == nil || *e.Param != "model" {
		t.Errorf("no model: %d %s", r.status, r.body)
	}
	r = post(t, url+"/v1/embeddings", map[string]any{"model": "gamma", "input": "x"})
	r.wantErr(t, 404, "invalid_request_error", "model_not_found")
	// A model's own listener serves only that model.
	aurl := serveModel(t, alpha, Options{})
	if r := post(t, aurl+chatPath, chatBody("beta", 3, nil)); r.status != 404 {
		t.Errorf("alpha's listener answered for beta: %d", r.status)
	}
	if r := post(t, aurl+chatPath, chatBody("", 3, nil)); r.status != 200 {
		t.Errorf("alpha's listener without model: %d %s", r.status, r.body)
	}
}

func TestGatewayRejectsDuplicateModels(t *testing.T) {
	svc, _ := sharedModel(t)
	p := route.NewPool(route.Options{HealthInterval: -1})
	if err := p.AddLocal(infer.NewLocal(svc)); err != nil {
		t.Fatal(err)
	}
	if err := p.AddLocal(infer.NewLocal(svc)); err == nil {
		t.Error("two local upstreams for one model accepted")
	}
}

// The body of a gateway request is decoded once, whatever sits behind the transport:
// authentication, admission (scope, limits, the ledger's record), the response cache
// (its key is computed from the decoded request), the router and the model. A request
// refused before its handler (no key) is not decoded at all (metrics only peek at its
// model).
func TestGatewayDecodesTheBodyOnce(t *testing.T) {
	svc, _ := sharedModel(t)
	ten := keyTenancy(t, tenancy.Config{Cache: config.Cache{Enabled: true},
		Auth: config.KeyAuth{Keys: []config.StaticKey{staticKey("team-a", "secret-decode-once", []string{"tiny"}, 1000, 1000000)}}})
	gw := New(ten.Admit(ten.Cache(newPool(t, svc))), Options{Auth: ten, Metrics: NewMetrics()})
	url := serve(t, "gateway", gw, HTTPConfig{})
	key := bearer("secret-decode-once")

	for _, tc := range []struct {
		name   string
		path   string
		body   map[string]any
		hdr    []string
		status int
		cache  string
	}{
		{"chat", chatPath, chatBody("tiny", 4, nil), key, 200, "miss"},
		{"chat again, from the cache", chatPath, chatBody("tiny", 4, nil), key, 200, "hit"},
		{"streamed chat", chatPath, chatBody("tiny", 4, map[string]any{"stream": true}), key, 200, ""},
		{"completion", cmplPath, map[string]any{"model": "tiny", "prompt": "The sea", "max_tokens": 3, "temperature": 0}, key, 200, "miss"},
		{"embeddings", "/v1/embeddings", map[string]any{"model": "tiny", "input": "the sea"}, key, 200, "miss"},
		{"tokenize", "/tokenize", tokenizeBody("tiny"), key, 200, ""},
		{"refused by validation", chatPath, chatBody("tiny", 4, map[string]any{"n": 99}), key, 400, ""},
	} {
		// The cache stores a result in the background: ask again until it answers.
		waitFor(t, tc.name+" answered", func() bool {
			before := openai.Decoded()
			r := post(t, url+tc.path, tc.body, tc.hdr...)
			if n := openai.Decoded() - before; n != 1 {
				t.Fatalf("%s: the body was decoded %d times, want once", tc.name, n)
			}
			if tc.cache == "hit" && r.status == 200 && r.header.Get(CacheHeader) == "miss" {
				return false
			}
			if r.status != tc.status || r.header.Get(CacheHeader) != tc.cache {
				t.Fatalf("%s: %d cache %q, want %d %q: %s", tc.name, r.status, r.header.Get(CacheHeader), tc.status, tc.cache, r.body)
			}
			return true
		})
	}
	before := openai.Decoded()
	if r := post(t, url+chatPath, chatBody("tiny", 4, nil)); r.status != 401 {
		t.Fatalf("no key: %d %s", r.status, r.body)
	}
	if n := openai.Decoded() - before; n != 0 {
		t.Errorf("a request refused by auth was decoded %d times, want never", n)
	}
}

// The chain order is explicit: request id, access log, metrics, recover, CORS, auth,
// each link there only when configured.
func TestChainOrder(t *testing.T) {
	fake := &infertest.Fake{}
	if got := strings.Join(New(fake, Options{}).Chain().Names(), ","); got != "request-id,access-log,recover" {
		t.Errorf("bare chain %s", got)
	}
	ten := keyTenancy(t, tenancy.Config{}, "secret-chain-1")
	log, logs := captureLog()
	s := New(fake, Options{Log: log, Auth: ten, CORS: CORS{Origins: []string{"https://app.example.com"}}, Metrics: NewMetrics()})
	want := "request-id,access-log,metrics,recover,cors,key-auth"
	if got := strings.Join(s.Chain().Names(), ","); got != want {
		t.Errorf("chain %s, want %s", got, want)
	}
	// The order shows: a refused key is answered after the request id and logged.
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/v1/models")
	ctx.Request.Header.Set("X-Request-Id", "refused-1")
	s.Handler()(&ctx)
	if ctx.Response.StatusCode() != 401 || string(ctx.Response.Header.Peek("X-Request-Id")) != "refused-1" {
		t.Errorf("no key: %d, x-request-id %q", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Request-Id"))
	}
	if l := accessLine(t, logs, "refused-1"); l == nil || l["status"] != 401.0 || l["error_code"] != "invalid_api_key" {
		t.Errorf("refused request's log line: %v\n%s", l, logs.String())
	}
	// Without auth every request passes.
	var open fasthttp.RequestCtx
	open.Request.SetRequestURI("/v1/models")
	New(fake, Options{}).Handler()(&open)
	if open.Response.StatusCode() != 200 {
		t.Errorf("a server without auth refused a request: %d", open.Response.StatusCode())
	}
}

// Extra routes (health, metrics, admin) are mounted and may replace built-ins.
func TestExtraRoutes(t *testing.T) {
	s := fakeListener(&infertest.Fake{}, Options{Routes: []Route{
		{Method: "GET", Path: "/health/ready", Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ready") }},
		{Method: "GET", Path: "/health", Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("custom") }},
	}})
	for path, want := range map[string]string{"/health/ready": "ready", "/health": "custom"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(path)
		s.Handler()(&ctx)
		if string(ctx.Response.Body()) != want {
			t.Errorf("%s = %q", path, ctx.Response.Body())
		}
	}
}

func TestRequestIDLink(t *testing.T) {
	var seen string
	h := Chain{RequestID{}}.Then(func(ctx *fasthttp.RequestCtx) { seen = infoOf(ctx).ID })
	for _, tc := range []struct {
		in   string
		keep bool
	}{{"abc-123_x.y", true}, {"", false}, {"has space", false}, {strings.Repeat("a", 65), false}} {
		var ctx fasthttp.RequestCtx
		if tc.in != "" {
			ctx.Request.Header.Set("X-Request-Id", tc.in)
		}
		h(&ctx)
		got := string(ctx.Response.Header.Peek("X-Request-Id"))
		if got != seen || got == "" || (got == tc.in) != tc.keep {
			t.Errorf("in %q: header %q, info %q", tc.in, got, seen)
		}
	}
}

func TestRecoverLink(t *testing.T) {
	var buf bytes.Buffer
	h := Chain{RequestID{}, Recover{Log: zerolog.New(&buf)}}.Then(func(*fasthttp.RequestCtx) { panic("kaboom") })
	var ctx fasthttp.RequestCtx
	h(&ctx)
	if ctx.Response.StatusCode() != 500 || !bytes.Contains(ctx.Response.Body(), []byte(`"type":"server_error"`)) {
		t.Errorf("panic answered %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if len(ctx.Response.Header.Peek("X-Request-Id")) == 0 || !strings.Contains(buf.String(), "kaboom") {
		t.Errorf("request id or log missing: %s", buf.String())
	}
}

func TestAuthLink(t *testing.T) {
	ten := keyTenancy(t, tenancy.Config{}, "k-12345678")
	ok := func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(204) }
	h := newKeyAuth(ten, []string{"/health"}, zerolog.Nop()).Wrap(ok)
	for _, tc := range []struct {
		path, auth string
		status     int
	}{
		{"/v1/models", "", 401}, {"/v1/models", "Bearer k-12345678", 204}, {"/v1/models", "bearer k-12345678", 204},
		{"/v1/models", "Bearer   k-12345678 ", 204}, {"/v1/models", "Basic k-12345678", 401}, {"/v1/models", "Bearer k-1234567", 401},
		{"/v1/models", "Bearer k-1234 5678", 401}, {"/v1/models", "Bearer", 401}, {"/health", "", 204}, {"/admin/keys", "", 204},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(tc.path)
		if tc.auth != "" {
			ctx.Request.Header.Set("Authorization", tc.auth)
		}
		h(&ctx)
		if ctx.Response.StatusCode() != tc.status {
			t.Errorf("%s %q: %d, want %d", tc.path, tc.auth, ctx.Response.StatusCode(), tc.status)
		}
	}
	// A CORS preflight carries no key and passes to the CORS link's answer.
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("OPTIONS")
	ctx.Request.SetRequestURI("/v1/models")
	h(&ctx)
	if ctx.Response.StatusCode() != 204 {
		t.Errorf("preflight: %d", ctx.Response.StatusCode())
	}
}

func TestHealthWhileDraining(t *testing.T) {
	s := fakeListener(&infertest.Fake{}, Options{})
	s.SetDraining()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/health")
	s.Handler()(&ctx)
	if ctx.Response.StatusCode() != 503 || !bytes.Contains(ctx.Response.Body(), []byte(`"shutting_down"`)) {
		t.Errorf("/health while draining: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}
