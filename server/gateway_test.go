package server

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/service"
)

// The gateway routes by the request's model between two model services.
func TestGatewayRouting(t *testing.T) {
	alpha := newService(t, modelConfig(t, "alpha"), service.Options{})
	beta := newService(t, modelConfig(t, "beta"), service.Options{})
	url := serve(t, "gateway", func() *Gateway {
		g, err := NewGateway(Options{Log: testLog()}, NewLocal(alpha, Options{}), NewLocal(beta, Options{}))
		if err != nil {
			t.Fatal(err)
		}
		return g
	}, HTTPConfig{})

	var list ModelList
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
		var c ChatCompletion
		r := post(t, url+"/v1/chat/completions", chatBody(target.Name(), 3, nil))
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
	r := post(t, url+"/v1/chat/completions", chatBody("", 3, nil))
	if e := r.apiErr(t); r.status != 400 || *e.Param != "model" {
		t.Errorf("no model: %d %s", r.status, r.body)
	}
	r = post(t, url+"/v1/embeddings", map[string]any{"model": "gamma", "input": "x"})
	if e := r.apiErr(t); r.status != 404 || *e.Code != "model_not_found" {
		t.Errorf("unknown model: %d %s", r.status, r.body)
	}
	// A model's own listener serves only that model.
	aurl := serveModel(t, alpha, Options{})
	if r := post(t, aurl+"/v1/chat/completions", chatBody("beta", 3, nil)); r.status != 404 {
		t.Errorf("alpha's listener answered for beta: %d", r.status)
	}
	if r := post(t, aurl+"/v1/chat/completions", chatBody("", 3, nil)); r.status != 200 {
		t.Errorf("alpha's listener without model: %d %s", r.status, r.body)
	}
}

func TestGatewayRejectsDuplicateModels(t *testing.T) {
	svc, _ := sharedModel(t)
	if _, err := NewGateway(Options{}, NewLocal(svc, Options{}), NewLocal(svc, Options{})); err == nil {
		t.Error("two upstreams for one model accepted")
	}
}

// The chain order is explicit: request id, access log, recover, auth, extra links.
func TestChainOrder(t *testing.T) {
	svc, _ := sharedModel(t)
	var order []string
	extra := recordLink{name: "limits", order: &order}
	g := NewModelListener(svc, Options{Middleware: []Middleware{extra, recordLink{name: "cache", order: &order}}})
	want := []string{"request-id", "access-log", "recover", "auth", "limits", "cache"}
	if got := strings.Join(g.Chain().Names(), ","); got != strings.Join(want, ",") {
		t.Errorf("chain %s, want %s", got, strings.Join(want, ","))
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/health")
	g.Handler()(&ctx)
	if strings.Join(order, ",") != "limits,cache" || ctx.Response.StatusCode() != 200 {
		t.Errorf("extra links ran %v, status %d", order, ctx.Response.StatusCode())
	}
}

type recordLink struct {
	name  string
	order *[]string
}

func (l recordLink) Name() string { return l.name }
func (l recordLink) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { *l.order = append(*l.order, l.name); next(ctx) }
}

// Extra routes (the health package's) are mounted and may replace built-ins.
func TestExtraRoutes(t *testing.T) {
	svc, _ := sharedModel(t)
	g := NewModelListener(svc, Options{Routes: []Route{
		{Method: "GET", Path: "/health/ready", Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ready") }},
		{Method: "GET", Path: "/health", Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("custom") }},
	}})
	for path, want := range map[string]string{"/health/ready": "ready", "/health": "custom"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(path)
		g.Handler()(&ctx)
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
	ok := func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(204) }
	h := NewAuth([]string{"k-12345678"}, []string{"/health"}).Wrap(ok)
	for _, tc := range []struct {
		path, auth string
		status     int
	}{
		{"/v1/models", "", 401}, {"/v1/models", "Bearer k-12345678", 204}, {"/v1/models", "bearer k-12345678", 204},
		{"/v1/models", "Basic k-12345678", 401}, {"/v1/models", "Bearer k-1234567", 401}, {"/health", "", 204},
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
	// Without keys everything passes.
	var ctx fasthttp.RequestCtx
	NewAuth(nil, nil).Wrap(ok)(&ctx)
	if ctx.Response.StatusCode() != 204 {
		t.Error("keyless auth blocked a request")
	}
}

func TestHealthWhileDraining(t *testing.T) {
	svc, _ := sharedModel(t)
	g := NewModelListener(svc, Options{})
	g.SetDraining()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/health")
	g.Handler()(&ctx)
	if ctx.Response.StatusCode() != 503 || !bytes.Contains(ctx.Response.Body(), []byte(`"shutting_down"`)) {
		t.Errorf("/health while draining: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}
