package route

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/internal/breaker"
	"github.com/hxp-ai/hxp/limits/limitstest"
	"github.com/hxp-ai/hxp/service"
)

func newClock() *limitstest.Clock {
	return limitstest.NewClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
}

// addFake adds a fake as a member named name; local members' breakers never open.
func addFake(t testing.TB, p *Pool, name string, f *infertest.Fake, local bool) {
	t.Helper()
	if err := p.add(&member{svc: f, model: f.Models(context.Background())[0].ID, name: name, local: local,
		check: func(context.Context) error {
			if f.Status != "" && f.Status != "ready" {
				return fmt.Errorf("%s is %s", name, f.Status)
			}
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
}

func addRemote(t testing.TB, p *Pool, url, model string) {
	t.Helper()
	if err := p.AddRemote(model, mustRemote(t, url, model)); err != nil {
		t.Fatal(err)
	}
}

func newPool(t testing.TB, opts Options) *Pool {
	t.Helper()
	if opts.HealthInterval == 0 {
		opts.HealthInterval = -1
	}
	p := NewPool(opts)
	t.Cleanup(p.Close)
	return p
}

func statsOf(p *Pool, upstream string) UpstreamStats {
	for _, s := range p.Stats() {
		if s.Upstream == upstream {
			return s
		}
	}
	return UpstreamStats{}
}

func tokenize(p *Pool, model string) error {
	_, err := p.Tokenize(context.Background(), &infer.TokenizeRequest{Model: model, Prompt: "hi"})
	return err
}

func TestLeastInflightWithRoundRobinTies(t *testing.T) {
	p := newPool(t, Options{})
	a, b := &infertest.Fake{Model: "m", Delay: time.Hour}, &infertest.Fake{Model: "m", Delay: time.Hour}
	addFake(t, p, "a", a, true)
	addFake(t, p, "b", b, true)
	// Nothing in flight: ties alternate.
	for i := 0; i < 10; i++ {
		if err := tokenize(p, "m"); err != nil {
			t.Fatal(err)
		}
	}
	if a.Calls("tokenize") != 5 || b.Calls("tokenize") != 5 {
		t.Fatalf("ties: a %d, b %d of 10", a.Calls("tokenize"), b.Calls("tokenize"))
	}
	// A generation stays in flight until it ends: the other member takes the rest.
	g, err := p.Chat(context.Background(), chatReq("m", 1))
	if err != nil {
		t.Fatal(err)
	}
	busy, idle := a, b
	if b.Calls("chat") == 1 {
		busy, idle = b, a
	}
	for i := 0; i < 4; i++ {
		if err := tokenize(p, "m"); err != nil {
			t.Fatal(err)
		}
	}
	if busy.Calls("tokenize") != 5 || idle.Calls("tokenize") != 9 {
		t.Fatalf("with a generation in flight on one member: busy %d, idle %d tokenize calls", busy.Calls("tokenize"), idle.Calls("tokenize"))
	}
	var inflight int64
	for _, s := range p.Stats() {
		inflight += s.Inflight
	}
	if inflight != 1 {
		t.Fatalf("in flight %d, want the one generation: %+v", inflight, p.Stats())
	}
	ended := make(chan struct{})
	g.OnEnd(func(infer.Summary) { close(ended) }) // runs after the pool's hook
	g.Close()
	<-ended
	for _, s := range p.Stats() {
		if s.Inflight != 0 {
			t.Fatalf("after the generation ended: %+v", p.Stats())
		}
	}
}

// Only retryable kinds go to another member; the last error stands.
func TestRetriesOnRetryableKindsOnly(t *testing.T) {
	for _, k := range []infer.Kind{infer.Overloaded, infer.Unavailable, infer.UpstreamFailed, infer.DeadlineExceeded,
		infer.InvalidArgument, infer.ContextOverflow, infer.NotFound, infer.Internal, infer.Cancelled} {
		p := newPool(t, Options{Retries: 5})
		var fakes []*infertest.Fake
		for i := range 3 {
			f := &infertest.Fake{Model: "m", Fail: func(string) error { return &infer.Error{Kind: k, Message: fmt.Sprint(i)} }}
			addFake(t, p, fmt.Sprint(i), f, true)
			fakes = append(fakes, f)
		}
		_, err := p.Chat(context.Background(), chatReq("m", 1))
		calls := 0
		for _, f := range fakes {
			calls += f.Calls("chat")
		}
		want := 1
		if k.Retryable() {
			want = 3 // each member once, though 5 retries are allowed
		}
		if e := kindOf(t, err); e.Kind != k || calls != want {
			t.Errorf("%s: %d calls, error %+v; want %d calls", k, calls, e, want)
		}
	}
	// A member that answers after others failed serves the request.
	p := newPool(t, Options{})
	busy := &infertest.Fake{Model: "m", Err: &infer.Error{Kind: infer.Overloaded, Message: "busy"}}
	addFake(t, p, "busy", busy, true)
	addFake(t, p, "ok", &infertest.Fake{Model: "m"}, true)
	for i := 0; i < 4; i++ {
		if err := tokenize(p, "m"); err != nil {
			t.Fatal(err)
		}
	}
	if busy.Calls("tokenize") == 0 || statsOf(p, "busy").Served != uint64(busy.Calls("tokenize")) {
		t.Errorf("busy member: %d calls, %+v", busy.Calls("tokenize"), statsOf(p, "busy"))
	}
	// Retries: -1 tries one member only.
	p = newPool(t, Options{Retries: -1})
	f1, f2 := &infertest.Fake{Model: "m", Err: busy.Err}, &infertest.Fake{Model: "m", Err: busy.Err}
	addFake(t, p, "1", f1, true)
	addFake(t, p, "2", f2, true)
	if err := tokenize(p, "m"); err == nil || f1.Calls("tokenize")+f2.Calls("tokenize") != 1 {
		t.Errorf("retries -1: %v after %d calls", err, f1.Calls("tokenize")+f2.Calls("tokenize"))
	}
}

// A returned generation is final: its failure later is not retried, on the same
// model or a fallback.
func TestNoRetryAfterAGenerationWasReturned(t *testing.T) {
	p := newPool(t, Options{Fallbacks: map[string][]string{"m": {"fb"}}})
	broken := errors.New("broke mid-way")
	a, b := &infertest.Fake{Model: "m", EventErr: broken}, &infertest.Fake{Model: "m", EventErr: broken}
	fb := &infertest.Fake{Model: "fb"}
	addFake(t, p, "a", a, true)
	addFake(t, p, "b", b, true)
	addFake(t, p, "fb", fb, true)
	// A remote node that cuts its stream after the first event, as a member of its own model.
	cut := `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}`
	addRemote(t, p, scripted(t, []string{cut}, true), "cut")
	p.opts.Fallbacks["cut"] = []string{"fb"}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err := p.Chat(context.Background(), chatReq("m", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Collect(); !errors.Is(err, broken) {
		t.Fatalf("collect: %v", err)
	}
	g, err = p.Chat(context.Background(), chatReq("cut", 1))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := g.Collect(); kindOf(t, err).Kind != infer.UpstreamFailed || res.Model != "cut" {
		t.Fatalf("cut stream: %+v %v", res, err)
	}
	if n := a.Calls("chat") + b.Calls("chat"); n != 1 || fb.Calls("chat") != 0 {
		t.Fatalf("a failed generation was retried: %d calls to m, %d to its fallback", n, fb.Calls("chat"))
	}
}

func TestBreakerOpensOnAFailingRemoteAndClosesOnRecovery(t *testing.T) {
	good := startNode(t, &infertest.Fake{Model: "m"})
	flaky := startNode(t, &infertest.Fake{Model: "m"})
	clk := newClock()
	p := newPool(t, Options{Breaker: breakerCfg(2), Now: clk.Now})
	addRemote(t, p, good.url, "m")
	addRemote(t, p, flaky.url, "m")

	flaky.mode.Store("hangup")
	for i := 0; statsOf(p, flaky.url).Breaker != "open"; i++ {
		if i > 20 {
			t.Fatalf("breaker never opened: %+v", p.Stats())
		}
		// Every request succeeds: a failed attempt is retried on the good node.
		if err := tokenize(p, "m"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if s := statsOf(p, flaky.url); s.Failed != 2 || s.Opens != 1 {
		t.Fatalf("flaky upstream: %+v", s)
	}
	// While open, the failing node gets no traffic.
	hits := flaky.hits.Load()
	for i := 0; i < 10; i++ {
		if err := tokenize(p, "m"); err != nil {
			t.Fatalf("with the breaker open: %v", err)
		}
	}
	if flaky.hits.Load() != hits {
		t.Fatalf("open breaker let %d requests through", flaky.hits.Load()-hits)
	}
	// Still failing after open_for: the probe fails and the breaker opens again.
	clk.Add(10 * time.Second)
	for i := 0; statsOf(p, flaky.url).Opens != 2; i++ {
		if i > 20 {
			t.Fatalf("failed probe did not reopen: %+v", p.Stats())
		}
		tokenize(p, "m")
	}
	// Recovered: after open_for one probe succeeds and the breaker closes.
	flaky.mode.Store("ok")
	clk.Add(10 * time.Second)
	if got := statsOf(p, flaky.url).Breaker; got != "half-open" {
		t.Fatalf("after open_for: %s", got)
	}
	for i := 0; statsOf(p, flaky.url).Breaker != "closed"; i++ {
		if i > 20 {
			t.Fatalf("successful probe did not close: %+v", p.Stats())
		}
		if err := tokenize(p, "m"); err != nil {
			t.Fatal(err)
		}
	}
	// Closed again: ties alternate between the nodes.
	before := flaky.hits.Load()
	for i := 0; i < 10; i++ {
		tokenize(p, "m")
	}
	if got := flaky.hits.Load() - before; got != 5 {
		t.Fatalf("recovered node got %d of 10 requests", got)
	}
}

func breakerCfg(failures int) breaker.Config {
	return breaker.Config{FailureThreshold: failures, OpenFor: 10 * time.Second}
}

// A remote's internal error counts against its breaker but is not retried; the
// same errors from a local member never open its breaker, nor does a local model
// that is loading.
func TestBreakersCountRemoteFailuresOnly(t *testing.T) {
	n1, n2 := startNode(t, &infertest.Fake{Model: "m"}), startNode(t, &infertest.Fake{Model: "m"})
	n1.mode.Store("fail")
	n2.mode.Store("fail")
	p := newPool(t, Options{Breaker: breakerCfg(1)})
	addRemote(t, p, n1.url, "m")
	addRemote(t, p, n2.url, "m")
	if err := tokenize(p, "m"); kindOf(t, err).Kind != infer.Internal || n1.hits.Load()+n2.hits.Load() != 1 {
		t.Fatalf("internal error: %v after %d attempts", err, n1.hits.Load()+n2.hits.Load())
	}
	opened := 0
	for _, s := range p.Stats() {
		opened += s.Opens
	}
	if opened != 1 {
		t.Fatalf("a remote's internal error did not open its breaker: %+v", p.Stats())
	}

	p = newPool(t, Options{Breaker: breakerCfg(1)})
	for i, k := range []infer.Kind{infer.Internal, infer.UpstreamFailed, infer.DeadlineExceeded} {
		addFake(t, p, fmt.Sprint(i), &infertest.Fake{Model: fmt.Sprint("local-", i), Err: &infer.Error{Kind: k}}, true)
	}
	loading := infer.NewLocal(loadingBackend{name: "late"})
	if err := p.AddLocal(loading); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		for j := 0; j < 3; j++ {
			tokenize(p, fmt.Sprint("local-", j))
		}
		err := tokenize(p, "late")
		if e := kindOf(t, err); e.Kind != infer.Unavailable || e.Code != "model_not_ready" {
			t.Fatalf("loading model: %+v", e)
		}
	}
	for _, s := range p.Stats() {
		if s.Opens != 0 || s.Breaker != "closed" {
			t.Fatalf("a local member's breaker opened: %+v", s)
		}
	}
	if s := statsOf(p, "local"); s.Model != "late" || s.Served != 5 {
		t.Fatalf("loading local member: %+v", s)
	}
	if m := p.Models(context.Background()); m[3].ID != "late" || m[3].Status != "loading" {
		t.Fatalf("models %+v", m)
	}
}

// loadingBackend is a model still loading: Local asks it only for its name and state.
type loadingBackend struct {
	infer.Backend
	name string
}

func (b loadingBackend) Name() string         { return b.name }
func (b loadingBackend) Ready() error         { return fmt.Errorf("model %s: %w", b.name, service.ErrNotReady) }
func (b loadingBackend) State() service.State { return service.StateLoading }
func (b loadingBackend) SeqCtx() int          { return 0 }
func (b loadingBackend) Created() time.Time   { return time.Unix(1, 0) }

func TestFallbacksLimitedByTheCallersModels(t *testing.T) {
	busy := &infertest.Fake{Model: "busy", Err: &infer.Error{Kind: infer.Overloaded, Message: "busy"}}
	tiny := &infertest.Fake{Model: "tiny"}
	p := newPool(t, Options{Fallbacks: map[string][]string{"dead": {"other", "tiny"}, "busy": {"tiny"}}})
	addFake(t, p, "local", tiny, true)
	addFake(t, p, "local", busy, true)
	addFake(t, p, "other", &infertest.Fake{Model: "other", Err: &infer.Error{Kind: infer.Unavailable, Message: "draining"}}, true)
	addRemote(t, p, closedURL(t), "dead")
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	anyone := infer.WithCaller(context.Background(), &infer.Caller{ID: "any"})
	for _, model := range []string{"dead", "busy"} {
		g, err := p.Chat(anyone, chatReq(model, 1))
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		g.Close()
		if g.Model != "tiny" || tiny.Last().(*infer.ChatRequest).Model != "tiny" {
			t.Errorf("%s: served by %q; the fallback was asked for %q", model, g.Model, tiny.Last().(*infer.ChatRequest).Model)
		}
	}
	// Other results report the fallback too.
	if tk, err := p.Tokenize(anyone, &infer.TokenizeRequest{Model: "busy", Prompt: "x"}); err != nil || tk.Model != "tiny" {
		t.Errorf("tokenize fallback: %+v %v", tk, err)
	}
	// A caller may fall back only to models it may use: the last failure stands.
	calls := tiny.Calls("chat")
	deadOnly := infer.WithCaller(context.Background(), &infer.Caller{ID: "d", Models: []string{"dead", "other"}})
	_, err := p.Chat(deadOnly, chatReq("dead", 1))
	if e := kindOf(t, err); e.Kind != infer.Unavailable || e.Message != "draining" || tiny.Calls("chat") != calls {
		t.Errorf("fallback outside the caller's models: %+v", e)
	}
	deadOnly = infer.WithCaller(context.Background(), &infer.Caller{ID: "d", Models: []string{"dead"}})
	_, err = p.Chat(deadOnly, chatReq("dead", 1))
	if e := kindOf(t, err); e.Kind != infer.UpstreamFailed || e.Code != "upstream_unavailable" {
		t.Errorf("no fallback allowed: %+v", e)
	}
	// Unknown and missing models.
	if _, err := p.Chat(anyone, chatReq("nope", 1)); kindOf(t, err).Kind != infer.NotFound {
		t.Errorf("unknown model: %v", err)
	}
	if _, err := p.Chat(anyone, chatReq("", 1)); kindOf(t, err).Param != "model" || !strings.Contains(err.Error(), "GET /v1/models") {
		t.Errorf("no model: %v", err)
	}
	for _, fbs := range []map[string][]string{{"x": {"tiny"}}, {"tiny": {"tiny"}}, {"tiny": {"x"}}} {
		bad := NewPool(Options{Fallbacks: fbs})
		addFake(t, bad, "local", tiny, true)
		if err := bad.Validate(); err == nil {
			t.Errorf("fallbacks %v accepted", fbs)
		}
	}
}

func TestUpstreamUnavailableWhileBreakersAreOpen(t *testing.T) {
	clk := newClock()
	n1, n2 := startNode(t, &infertest.Fake{Model: "m"}), startNode(t, &infertest.Fake{Model: "m"})
	n1.mode.Store("hangup")
	n2.mode.Store("hangup")
	p := newPool(t, Options{Breaker: breakerCfg(1), Now: clk.Now})
	addRemote(t, p, n1.url, "m")
	tokenize(p, "m") // opens n1's breaker
	clk.Add(3 * time.Second)
	addRemote(t, p, n2.url, "m")
	tokenize(p, "m") // opens n2's breaker: 10s from now, n1's 7s
	err := tokenize(p, "m")
	if e := kindOf(t, err); e.Kind != infer.Unavailable || e.Code != "upstream_unavailable" || e.RetryAfter != 7*time.Second {
		t.Fatalf("all breakers open: %+v", e)
	}
	clk.Add(6*time.Second + 500*time.Millisecond)
	if e := kindOf(t, tokenize(p, "m")); e.RetryAfter != time.Second {
		t.Fatalf("retry after under a second: %+v, want 1s", e)
	}
}

// Active health checks take a failing node out of rotation and bring it back; the
// node's card is what Models reports.
func TestHealthChecksTakeAFailingMemberOutOfRotation(t *testing.T) {
	good := &infertest.Fake{Model: "m"}
	node := startNode(t, good)
	other := startNode(t, &infertest.Fake{Model: "m"})
	p := newPool(t, Options{})
	nodeRemote := mustRemote(t, node.url, "m")
	if err := p.AddRemote("m", nodeRemote); err != nil {
		t.Fatal(err)
	}
	addRemote(t, p, other.url, "m")
	if m := p.Models(context.Background()); len(m) != 1 || m[0].Status != "unknown" {
		t.Fatalf("models before any check: %+v", m)
	}
	node.mode.Store("fail")
	p.CheckHealth()
	if s := statsOf(p, node.url); s.Healthy || s.Breaker != "closed" {
		t.Fatalf("after a failed check: %+v", s)
	}
	if c := nodeRemote.Models(context.Background()); c[0].Status != "unavailable" {
		t.Fatalf("card of a failing node: %+v", c)
	}
	hits := node.hits.Load()
	for i := 0; i < 6; i++ {
		if err := tokenize(p, "m"); err != nil {
			t.Fatal(err)
		}
	}
	if node.hits.Load() != hits {
		t.Fatal("an unhealthy node got traffic while a healthy one was there")
	}
	// The last resort: with every member out of rotation, they still serve.
	other.mode.Store("fail")
	p.CheckHealth()
	other.mode.Store("ok")
	node.mode.Store("hangup") // retried on the other when tried first
	if err := tokenize(p, "m"); err != nil {
		t.Fatalf("unhealthy members as a last resort: %v", err)
	}
	node.mode.Store("ok")
	p.CheckHealth()
	if !statsOf(p, node.url).Healthy {
		t.Fatal("recovered node still out of rotation")
	}
	if c := nodeRemote.Models(context.Background()); len(c) != 1 || c[0].Status != "ready" || c[0].ContextLength != 4096 {
		t.Fatalf("remote card from the health check: %+v", c)
	}
	if m := p.Models(context.Background()); m[0].Status != "ready" || m[0].ContextLength != 4096 {
		t.Fatalf("pool models: %+v", m)
	}
	// A model that is not ready on the node fails its check too.
	good.Status = "loading"
	p.CheckHealth()
	if statsOf(p, node.url).Healthy {
		t.Fatal("a node whose model is loading passed its check")
	}
	if err := mustRemote(t, closedURL(t), "m").Check(context.Background(), "m"); err == nil {
		t.Fatal("check of an unreachable node passed")
	}
	// The background loop runs the checks until Close.
	loop := NewPool(Options{HealthInterval: time.Millisecond})
	f := &infertest.Fake{Model: "x", Status: "failed"}
	addFake(t, loop, "local", f, true)
	loop.Start()
	for statsOf(loop, "local").Healthy {
		time.Sleep(time.Millisecond)
	}
	loop.Close()
}

func TestCollectorExportsTheMembersState(t *testing.T) {
	clk := newClock()
	n := startNode(t, &infertest.Fake{Model: "m"})
	n.mode.Store("hangup")
	p := newPool(t, Options{Breaker: breakerCfg(1), Now: clk.Now})
	addFake(t, p, "local", &infertest.Fake{Model: "m", Delay: time.Hour}, true)
	addRemote(t, p, n.url, "m")
	tokenize(p, "m")
	tokenize(p, "m") // one of the two reached the node and opened its breaker
	g, err := p.Chat(context.Background(), chatReq("m", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	want := fmt.Sprintf(`
# HELP hxp_upstream_breaker_state Circuit breaker state: 0 closed, 1 half-open, 2 open.
# TYPE hxp_upstream_breaker_state gauge
hxp_upstream_breaker_state{model="m",upstream="local"} 0
hxp_upstream_breaker_state{model="m",upstream=%[1]q} 2
# HELP hxp_upstream_healthy 1 when the upstream passed its last active health check.
# TYPE hxp_upstream_healthy gauge
hxp_upstream_healthy{model="m",upstream="local"} 1
hxp_upstream_healthy{model="m",upstream=%[1]q} 1
# HELP hxp_upstream_inflight Requests in progress on the upstream.
# TYPE hxp_upstream_inflight gauge
hxp_upstream_inflight{model="m",upstream="local"} 1
hxp_upstream_inflight{model="m",upstream=%[1]q} 0
`, n.url)
	if err := testutil.CollectAndCompare(NewCollector(p), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
