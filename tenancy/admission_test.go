package tenancy

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/limits"
)

// The admission tests run the tenancy against real PostgreSQL and Redis servers
// (internal/testenv) in front of fake models (infertest.Fake): no cgo.

// opened is a tenancy with its logs, kept at debug level so that tests can check what
// never reaches them.
type opened struct {
	*Tenancy
	logs *testenv.Buffer
}

func openTenancy(t testing.TB, cfg Config) *opened {
	t.Helper()
	logs := &testenv.Buffer{}
	cfg.Log = zerolog.New(logs).Level(zerolog.DebugLevel)
	if cfg.Postgres.URL != "" && cfg.Postgres.SpoolPath == "" {
		cfg.Postgres.SpoolPath = filepath.Join(t.TempDir(), "usage.spool")
	}
	if cfg.Ledger.FlushInterval == 0 {
		cfg.Ledger.FlushInterval = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ten, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ten.Close(ctx)
	})
	return &opened{Tenancy: ten, logs: logs}
}

func staticKey(id, secret string, models []string, rpm, tpm int) config.StaticKey {
	h := HashKey(secret)
	return config.StaticKey{ID: id, SHA256: hex.EncodeToString(h[:]), Models: models, RPM: rpm, TPM: tpm}
}

var requestSeq atomic.Int64

// as returns a context of a request of c, with a request id of its own.
func as(c *infer.Caller) context.Context {
	ctx := infer.WithRequestID(context.Background(), fmt.Sprintf("req-%d", requestSeq.Add(1)))
	if c != nil {
		ctx = infer.WithCaller(ctx, c)
	}
	return ctx
}

// login authenticates secret, failing the test on an error.
func (o *opened) login(t testing.TB, secret string) *infer.Caller {
	t.Helper()
	c, err := o.Authenticate(context.Background(), secret)
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	return c
}

func chatReq(model, content string) *infer.ChatRequest {
	return &infer.ChatRequest{Model: model, Messages: []chat.Message{{Role: "user", Content: content}}, GenParams: infer.GenParams{N: 1}}
}

// chatOnce runs a chat request to its end.
func chatOnce(svc infer.Service, ctx context.Context, r *infer.ChatRequest) (*infer.Result, error) {
	g, err := svc.Chat(ctx, r)
	if err != nil {
		return nil, err
	}
	return g.Collect()
}

func tokenize(svc infer.Service, ctx context.Context, model string) (*infer.Tokens, error) {
	return svc.Tokenize(ctx, &infer.TokenizeRequest{Model: model, Prompt: "the quiet prompt text"})
}

// kindOf is err's kind and code, for messages.
func kindOf(err error) string {
	if err == nil {
		return "ok"
	}
	e := infer.AsError(err, "")
	return e.Kind.String() + "/" + e.Code
}

// models serves several fake models by name.
type models []*infertest.Fake

func (m models) pick(model string) (*infertest.Fake, error) {
	for _, f := range m {
		if f.Model == model {
			return f, nil
		}
	}
	return nil, infer.ModelNotFound(model)
}

func (m models) Models(ctx context.Context) []infer.Model {
	var out []infer.Model
	for _, f := range m {
		out = append(out, f.Models(ctx)...)
	}
	return out
}

func (m models) Chat(ctx context.Context, r *infer.ChatRequest) (*infer.Generation, error) {
	f, err := m.pick(r.Model)
	if err != nil {
		return nil, err
	}
	return f.Chat(ctx, r)
}

func (m models) Complete(ctx context.Context, r *infer.CompletionRequest) (*infer.Generation, error) {
	f, err := m.pick(r.Model)
	if err != nil {
		return nil, err
	}
	return f.Complete(ctx, r)
}

func (m models) Embed(ctx context.Context, r *infer.EmbedRequest) (*infer.Embeddings, error) {
	f, err := m.pick(r.Model)
	if err != nil {
		return nil, err
	}
	return f.Embed(ctx, r)
}

func (m models) Tokenize(ctx context.Context, r *infer.TokenizeRequest) (*infer.Tokens, error) {
	f, err := m.pick(r.Model)
	if err != nil {
		return nil, err
	}
	return f.Tokenize(ctx, r)
}

func (m models) Detokenize(ctx context.Context, r *infer.DetokenizeRequest) (*infer.Text, error) {
	f, err := m.pick(r.Model)
	if err != nil {
		return nil, err
	}
	return f.Detokenize(ctx, r)
}

func (m models) ApplyTemplate(ctx context.Context, r *infer.ApplyTemplateRequest) (*infer.RenderedPrompt, error) {
	f, err := m.pick(r.Model)
	if err != nil {
		return nil, err
	}
	return f.ApplyTemplate(ctx, r)
}

// ops run one request of each operation for a model. for model and returns its error and the fake's calls.
var ops = map[string]func(svc infer.Service, ctx context.Context, model string) error{
	"chat": func(svc infer.Service, ctx context.Context, model string) error {
		_, err := chatOnce(svc, ctx, chatReq(model, "x"))
		return err
	},
	"complete": func(svc infer.Service, ctx context.Context, model string) error {
		g, err := svc.Complete(ctx, &infer.CompletionRequest{Model: model, Prompts: []infer.Prompt{{Text: "x"}}, GenParams: infer.GenParams{N: 1}})
		if err == nil {
			_, err = g.Collect()
		}
		return err
	},
	"embed": func(svc infer.Service, ctx context.Context, model string) error {
		_, err := svc.Embed(ctx, &infer.EmbedRequest{Model: model, Inputs: []infer.Prompt{{Text: "x"}}})
		return err
	},
	"tokenize": func(svc infer.Service, ctx context.Context, model string) error {
		_, err := tokenize(svc, ctx, model)
		return err
	},
	"apply-template": func(svc infer.Service, ctx context.Context, model string) error {
		_, err := svc.ApplyTemplate(ctx, &infer.ApplyTemplateRequest{Model: model, Messages: []chat.Message{{Role: "user", Content: "x"}}})
		return err
	},
	"detokenize": func(svc infer.Service, ctx context.Context, model string) error {
		_, err := svc.Detokenize(ctx, &infer.DetokenizeRequest{Model: model, Tokens: []engine.Token{104, 105}})
		return err
	},
}

func TestAuthenticateKeysFromTheDatabaseAndTheConfig(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	o := openTenancy(t, Config{
		Auth:      config.KeyAuth{Required: true, Keys: []config.StaticKey{staticKey("static-a", "static-secret-aaaa", []string{"tiny"}, 3, 0)}, NodeKey: "node-secret-zzzz"},
		PlainKeys: []string{"plain-secret-pppp"},
		Postgres:  config.Postgres{URL: pg.URL()},
	})
	ctx := context.Background()
	valid, vk, err := o.DB.CreateKey(ctx, postgres.KeySpec{Name: "alice", AllowedModels: []string{"tiny"}, RPM: 5, TPM: 50, MonthlyTokenBudget: 99})
	if err != nil {
		t.Fatal(err)
	}
	revoked, rk, _ := o.DB.CreateKey(ctx, postgres.KeySpec{Name: "bob"})
	if err := o.DB.RevokeKey(ctx, rk.ID); err != nil {
		t.Fatal(err)
	}
	expired, ek, _ := o.DB.CreateKey(ctx, postgres.KeySpec{Name: "carol", ExpiresAt: time.Now().Add(time.Hour)})
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1", ek.ID); err != nil {
		t.Fatal(err)
	}
	wrong := valid[:len(valid)-1] + string("ab"[0]+(valid[len(valid)-1]&1)) // same id, other secret
	c := o.login(t, valid)
	want := infer.Caller{ID: vk.ID, Name: "alice", Models: []string{"tiny"}, RPM: 5, TPM: 50, Budget: 99, Weight: 1}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("database key: %+v, want %+v", *c, want)
	}
	if c := o.login(t, "static-secret-aaaa"); c.ID != "static-a" || c.RPM != 3 || c.Internal {
		t.Errorf("static key: %+v", c)
	}
	if c := o.login(t, "plain-secret-pppp"); !strings.HasPrefix(c.ID, "static-") || len(c.Models) != 0 {
		t.Errorf("plain key: %+v", c)
	}
	if c := o.login(t, "node-secret-zzzz"); !c.Internal {
		t.Errorf("node key: %+v", c)
	}
	// Every refusal is the same answer, whatever the reason.
	wantErr := &infer.Error{Kind: infer.Unauthenticated, Code: "invalid_api_key", Message: "invalid API key"}
	for name, secret := range map[string]string{"revoked": revoked, "expired": expired, "wrong secret, right id": wrong,
		"suffix": valid + "x", "prefix": valid[:20], "empty": "", "near node key": "node-secret-zzz"} {
		c, err := o.Authenticate(ctx, secret)
		if c != nil || !reflect.DeepEqual(err, error(wantErr)) {
			t.Errorf("%s: %+v, %#v", name, c, err)
		}
	}
	// Keys never reach the logs; key ids may.
	secretPart := func(s string) string { return s[len(postgres.KeyPrefix)+postgres.KeyIDLength:] }
	for _, secret := range []string{secretPart(valid), secretPart(revoked), secretPart(expired), secretPart(wrong),
		"static-secret-aaaa", "plain-secret-pppp", "node-secret-zzzz"} {
		if leaks := testenv.SecretLeaks(o.logs.String(), secret); leaks != nil {
			t.Errorf("the logs echo a key: %v", leaks)
		}
	}
	if !strings.Contains(o.logs.String(), rk.ID) {
		t.Errorf("the refusal of key %s is not logged by id", rk.ID)
	}
}

func TestAuthenticateWhileTheDatabaseIsDown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	o := openTenancy(t, Config{Auth: config.KeyAuth{Required: true, CacheTTL: config.Duration(time.Millisecond)}, Postgres: config.Postgres{URL: pg.URL()}})
	known, _, err := o.DB.CreateKey(context.Background(), postgres.KeySpec{Name: "known"})
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, err := o.DB.CreateKey(context.Background(), postgres.KeySpec{Name: "unknown"})
	if err != nil {
		t.Fatal(err)
	}
	o.login(t, known)
	pg.Kill()
	// The known key stays valid (its cache entry is past its TTL: this is the stale
	// answer); a key never seen cannot be checked: retry later, not "invalid".
	if c, err := o.Authenticate(context.Background(), known); err != nil || c.Name != "known" {
		t.Fatalf("known key with the database down: %+v, %v", c, err)
	}
	_, err = o.Authenticate(context.Background(), unknown)
	want := &infer.Error{Kind: infer.Unavailable, Code: "auth_unavailable", RetryAfter: time.Second,
		Message: "the API key could not be checked now; retry later"}
	if !reflect.DeepEqual(err, error(want)) {
		t.Fatalf("unknown key with the database down: %#v", err)
	}
	if leaks := testenv.SecretLeaks(o.logs.String(), unknown[len(postgres.KeyPrefix)+postgres.KeyIDLength:]); leaks != nil {
		t.Fatalf("the logs echo a key: %v", leaks)
	}
}

func TestScopeOnEveryMethodAndInModels(t *testing.T) {
	tiny, beta := &infertest.Fake{Model: "tiny"}, &infertest.Fake{Model: "beta"}
	o := openTenancy(t, Config{Auth: config.KeyAuth{Required: true, Keys: []config.StaticKey{
		staticKey("only-tiny", "secret-only-tiny", []string{"tiny"}, 0, 0),
		staticKey("everything", "secret-everything", nil, 0, 0),
	}}})
	svc := o.Admit(models{tiny, beta})
	scoped, all := o.login(t, "secret-only-tiny"), o.login(t, "secret-everything")
	for op, run := range ops {
		if err := run(svc, as(scoped), "tiny"); err != nil {
			t.Errorf("%s for an allowed model: %v", op, err)
		}
		if err := run(svc, as(all), "beta"); err != nil {
			t.Errorf("%s for beta with an unrestricted key: %v", op, err)
		}
		before := beta.Calls(op)
		denied := run(svc, as(scoped), "beta")
		missing := run(svc, as(all), "gamma") // the model service's own answer
		if beta.Calls(op) != before {
			t.Errorf("%s: a request outside the key's scope reached the model", op)
		}
		// A forbidden model is indistinguishable from a missing one.
		var de, me *infer.Error
		if !errors.As(denied, &de) || !errors.As(missing, &me) {
			t.Fatalf("%s: errors %v, %v", op, denied, missing)
		}
		dc := *de
		dc.Message = strings.ReplaceAll(dc.Message, "beta", "gamma")
		if !reflect.DeepEqual(&dc, me) || de.Kind != infer.NotFound || de.Code != "model_not_found" {
			t.Errorf("%s: forbidden %#v vs missing %#v", op, de, me)
		}
	}
	// The model list shows only what the key may use.
	if ms := svc.Models(as(scoped)); len(ms) != 1 || ms[0].ID != "tiny" {
		t.Errorf("scoped Models: %+v", ms)
	}
	if ms := svc.Models(as(all)); len(ms) != 2 {
		t.Errorf("unrestricted Models: %+v", ms)
	}
	// A model's own listener: a request without a model is a request for its model.
	own := o.Admit(beta)
	if err := ops["tokenize"](own, as(scoped), ""); infer.KindOf(err) != infer.NotFound {
		t.Errorf("beta's listener without a model, scoped key: %v", err)
	}
	if err := ops["tokenize"](own, as(all), ""); err != nil {
		t.Errorf("beta's listener without a model, unrestricted key: %v", err)
	}
	// Requests without a caller pass.
	if err := ops["chat"](svc, as(nil), "beta"); err != nil {
		t.Errorf("no caller: %v", err)
	}
}

// countResults runs n tokenize requests concurrently, alternating between services,
// and counts the answers by kind; check sees each answer.
func countResults(t *testing.T, n int, svcs []infer.Service, c *infer.Caller, check func(*infer.Tokens, error)) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := tokenize(svcs[i%len(svcs)], as(c), "tiny")
			if check != nil {
				check(v, err)
			}
			mu.Lock()
			counts[kindOf(err)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return counts
}

func TestRateLimitsSharedByTwoGateways(t *testing.T) {
	rd := testenv.SharedRedis(t)
	cfg := Config{Auth: config.KeyAuth{Keys: []config.StaticKey{staticKey("k5", "secret-rpm-five", nil, 5, 0)}}, Redis: config.Redis{URL: rd.URL()}}
	a, b := openTenancy(t, cfg), openTenancy(t, cfg)
	fake := &infertest.Fake{Model: "tiny"}
	svcs := []infer.Service{a.Admit(fake), b.Admit(fake)}
	var bad atomic.Int32
	counts := countResults(t, 24, svcs, a.login(t, "secret-rpm-five"), func(v *infer.Tokens, err error) {
		var q *infer.Quota
		if err == nil {
			q = v.Quota
		} else {
			var e *infer.Error
			if !errors.As(err, &e) || e.Kind != infer.RateLimited || e.Code != "rate_limit_exceeded" || e.RetryAfter <= 0 ||
				!strings.Contains(e.Message, "rate limit reached for k5 on model tiny") {
				bad.Add(1)
				t.Logf("unexpected refusal %#v", err)
				return
			}
			q = e.Quota
			if q != nil && q.Requests.Remaining != 0 {
				bad.Add(1)
			}
		}
		if q == nil || q.Requests.Limit != 5 || q.Requests.Reset <= 0 || q.Tokens.Limit != 0 {
			bad.Add(1)
			t.Logf("quota %+v", q)
		}
	})
	if counts["ok"] != 5 || counts["rate_limited/rate_limit_exceeded"] != 19 {
		t.Fatalf("24 requests at 5 rpm over two gateways: %v; want exactly 5 admitted", counts)
	}
	if bad.Load() > 0 {
		t.Fatal("answers without the quota or with the wrong refusal")
	}
	if fake.Calls("tokenize") != 5 {
		t.Fatalf("%d requests reached the model, want the 5 admitted", fake.Calls("tokenize"))
	}
	// Without Redis each gateway limits on its own: twice the admissions.
	c, d := openTenancy(t, Config{Auth: cfg.Auth}), openTenancy(t, Config{Auth: cfg.Auth})
	if counts := countResults(t, 24, []infer.Service{c.Admit(fake), d.Admit(fake)}, c.login(t, "secret-rpm-five"), nil); counts["ok"] != 10 {
		t.Fatalf("in-process limiters: %v; want 5 per gateway", counts)
	}
}

func TestRateLimitLeasesFromRedis(t *testing.T) {
	// A key far from its limits is admitted mostly from each gateway's lease, with a
	// quota on every answer, and the lease is counted in the metrics.
	rd := testenv.SharedRedis(t)
	cfg := Config{Auth: config.KeyAuth{Keys: []config.StaticKey{staticKey("hot", "secret-hot", nil, 100000, 10_000_000)}}, Redis: config.Redis{URL: rd.URL()}}
	gws := []*opened{openTenancy(t, cfg), openTenancy(t, cfg)}
	fake := &infertest.Fake{Model: "tiny"}
	c := gws[0].login(t, "secret-hot")
	const workers, each = 4, 15
	var wg sync.WaitGroup
	var bad atomic.Int32
	for w := range workers {
		wg.Go(func() {
			svc := gws[w%2].Admit(fake)
			for range each {
				v, err := tokenize(svc, as(c), "tiny")
				if err != nil || v.Quota == nil || v.Quota.Requests.Limit != 100000 || v.Quota.Requests.Remaining < 0 ||
					v.Quota.Requests.Remaining >= 100000 || v.Quota.Tokens.Limit != 10_000_000 {
					bad.Add(1)
					t.Logf("unexpected answer %v %+v", err, v)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d answers refused or without a sensible quota", bad.Load())
	}
	var fromLease, fromRedis float64
	for _, g := range gws {
		col := g.Collector()
		fromLease += gatherValue(t, col, "hxp_ratelimit_lease_decisions_total", map[string]string{"source": "lease"})
		fromRedis += gatherValue(t, col, "hxp_ratelimit_lease_decisions_total", map[string]string{"source": "redis"})
		gatherValue(t, col, "hxp_ratelimit_lease_calls_total", map[string]string{"call": "refill", "result": "ok"})
	}
	if fromLease+fromRedis < workers*each || fromLease == 0 || fromRedis == 0 {
		t.Fatalf("%v decisions from leases, %v after a Redis call, for %d requests", fromLease, fromRedis, workers*each)
	}
}

func TestTokensChargedInTwoSteps(t *testing.T) {
	o := openTenancy(t, Config{Auth: config.KeyAuth{Keys: []config.StaticKey{staticKey("t", "secret-tpm", nil, 0, 1000)}}})
	clk := newFakeClock()
	o.limiter.local = limits.NewMemory(clk.now) // a stopped clock: buckets do not refill
	fake := &infertest.Fake{Model: "tiny", Reply: "one two three four five six seven eight nine ten"}
	svc := o.Admit(fake)
	c := o.login(t, "secret-tpm")
	tokensLeft := func() int64 {
		v, err := tokenize(svc, as(c), "tiny")
		if err != nil {
			t.Fatal(err)
		}
		return v.Quota.Tokens.Remaining
	}
	// The tokenizer is charged as a request, without tokens.
	if left := tokensLeft(); left != 1000 {
		t.Fatalf("after a tokenize: %d tokens left, want 1000", left)
	}
	// A chat of 400 bytes is estimated at 100 tokens at admission; the fake reports
	// 100 prompt and 10 completion tokens when it ends, and the 10 are charged then.
	g, err := svc.Chat(as(c), chatReq("tiny", strings.Repeat("x", 400)))
	if err != nil {
		t.Fatal(err)
	}
	if g.Quota == nil || g.Quota.Tokens.Remaining != 900 {
		t.Fatalf("at admission: quota %+v, want 900 tokens left", g.Quota)
	}
	res, err := g.Collect()
	if err != nil || res.Usage.Total() != 110 || res.Quota.Tokens.Remaining != 900 {
		t.Fatalf("collected: %+v, %v", res, err)
	}
	waitFor(t, "the completion tokens to be charged", func() bool { return tokensLeft() == 890 })
	// An estimate never exceeds the limit: a prompt of 1M tokens costs at most 1000 at
	// admission, so it is refused as over the limit now, not as too large.
	_, err = svc.Chat(as(c), chatReq("tiny", strings.Repeat("x", 4_000_000)))
	var e *infer.Error
	if !errors.As(err, &e) || e.Kind != infer.RateLimited || e.RetryAfter <= 0 || e.Quota.Tokens.Remaining != 890 ||
		!strings.Contains(e.Message, "rate limit reached for t on model tiny (limits: 0 requests, 1000 tokens per minute)") {
		t.Fatalf("a huge request: %#v", err)
	}
	// A failed request gives its estimate back.
	fake.Err = infer.Errorf(infer.Unavailable, "", "draining")
	if _, err := svc.Chat(as(c), chatReq("tiny", strings.Repeat("x", 400))); infer.KindOf(err) != infer.Unavailable {
		t.Fatalf("failing model: %v", err)
	}
	fake.Err = nil
	waitFor(t, "the estimate of a failed request to be refunded", func() bool { return tokensLeft() == 890 })
}

func TestRedisDownFailOpenOrClosed(t *testing.T) {
	rd := testenv.StartRedis(t)
	auth := config.KeyAuth{Keys: []config.StaticKey{staticKey("k3", "secret-rpm-three", nil, 3, 0)}}
	open := openTenancy(t, Config{Auth: auth, Redis: config.Redis{URL: rd.URL(), FailMode: "open", Timeout: config.Duration(200 * time.Millisecond)}})
	closed := openTenancy(t, Config{Auth: auth, Redis: config.Redis{URL: rd.URL(), FailMode: "closed", Timeout: config.Duration(200 * time.Millisecond)}})
	fake := &infertest.Fake{Model: "tiny"}
	c := open.login(t, "secret-rpm-three")
	if _, err := tokenize(closed.Admit(fake), as(c), "tiny"); err != nil {
		t.Fatalf("with redis up: %v", err)
	}
	rd.Kill()
	// Fail open: the in-process limiter takes over, with the same limits.
	var got []string
	for range 4 {
		_, err := tokenize(open.Admit(fake), as(c), "tiny")
		got = append(got, kindOf(err))
	}
	if fmt.Sprint(got) != "[ok ok ok rate_limited/rate_limit_exceeded]" {
		t.Fatalf("fail open with redis down: %v; want the local limiter's 3 admissions", got)
	}
	// Fail closed: Unavailable with a retry hint.
	_, err := tokenize(closed.Admit(fake), as(c), "tiny")
	var e *infer.Error
	if !errors.As(err, &e) || e.Kind != infer.Unavailable || e.Code != "rate_limiter_unavailable" || e.RetryAfter != 2*time.Second {
		t.Fatalf("fail closed with redis down: %#v", err)
	}
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fail-closed gateway to use redis again", func() bool {
		_, err := tokenize(closed.Admit(fake), as(c), "tiny")
		return err == nil
	})
	if !strings.Contains(closed.logs.String(), "fail closed") || !strings.Contains(open.logs.String(), "in-process limiter") {
		t.Error("the outage and the chosen behaviour are not logged")
	}
	if v := gatherValue(t, closed.Collector(), "hxp_ratelimit_decisions_total", map[string]string{"result": "unavailable"}); v < 1 {
		t.Errorf("unavailable decisions = %v, want at least 1", v)
	}
}

// records flushes o's ledger and returns keyID's records by request id.
func (o *opened) records(t testing.TB, keyID string) map[string]postgres.UsageRecord {
	t.Helper()
	ctx := context.Background()
	if err := o.Ledger.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := o.DB.UsageRecords(ctx, postgres.UsageFilter{KeyID: keyID}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]postgres.UsageRecord{}
	for _, r := range recs {
		out[r.RequestID] = r
	}
	return out
}

func TestLedgerRecordsServedAndRefusedRequests(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	o := openTenancy(t, Config{Auth: config.KeyAuth{Required: true, NodeKey: "node-secret-ledger"}, Postgres: config.Postgres{URL: pg.URL()}})
	secret, key, err := o.DB.CreateKey(context.Background(), postgres.KeySpec{Name: "ledger", AllowedModels: []string{"tiny"}, RPM: 3})
	if err != nil {
		t.Fatal(err)
	}
	tiny := &infertest.Fake{Model: "tiny", Reply: "a b c"}
	svc := o.Admit(models{tiny, {Model: "beta"}})
	c := o.login(t, secret)
	type want struct {
		status, prompt, completion int
		model                      string
	}
	wants := map[string]want{}
	run := func(w want, f func(ctx context.Context) error) {
		ctx := as(c)
		if err := f(ctx); infer.KindOf(err).HTTPStatus() != w.status && !(err == nil && w.status == 200) {
			t.Fatalf("request for status %d: %v", w.status, err)
		}
		wants[infer.RequestIDFrom(ctx)] = w
	}
	start := time.Now()
	run(want{200, 5, 3, "tiny"}, func(ctx context.Context) error { // 20 bytes: 5 prompt tokens
		_, err := chatOnce(svc, ctx, chatReq("tiny", strings.Repeat("y", 20)))
		return err
	})
	run(want{200, 0, 0, "tiny"}, func(ctx context.Context) error { _, err := tokenize(svc, ctx, "tiny"); return err })
	run(want{404, 0, 0, "beta"}, func(ctx context.Context) error { _, err := tokenize(svc, ctx, "beta"); return err })
	tiny.Err = infer.Errorf(infer.Unavailable, "", "draining")
	run(want{503, 0, 0, "tiny"}, func(ctx context.Context) error { _, err := tokenize(svc, ctx, "tiny"); return err })
	tiny.Err = nil
	run(want{429, 0, 0, "tiny"}, func(ctx context.Context) error { _, err := tokenize(svc, ctx, "tiny"); return err })
	// Requests without a caller and of the node key are neither limited nor recorded.
	node := o.login(t, "node-secret-ledger")
	for range 5 {
		if _, err := tokenize(svc, as(nil), "tiny"); err != nil {
			t.Fatal(err)
		}
		if _, err := tokenize(svc, as(node), "tiny"); err != nil {
			t.Fatal(err)
		}
	}
	var recs map[string]postgres.UsageRecord
	waitFor(t, "the ledger records", func() bool { recs = o.records(t, key.ID); return len(recs) >= len(wants) })
	all, _ := o.DB.UsageRecords(context.Background(), postgres.UsageFilter{}, 1000)
	if len(all) != len(wants) {
		t.Fatalf("%d records in the ledger, want %d (one per request of the key)", len(all), len(wants))
	}
	for id, w := range wants {
		r, ok := recs[id]
		if !ok {
			t.Errorf("request %s not recorded", id)
			continue
		}
		if r.StatusCode != w.status || r.PromptTokens != w.prompt || r.CompletionTokens != w.completion || r.Model != w.model ||
			r.KeyID != key.ID || r.LatencyMS < 0 || r.CreatedAt.Before(start.Add(-time.Second)) {
			t.Errorf("request %s: record %+v, want %+v", id, r, w)
		}
	}
}

func TestLedgerRecordsAGenerationLeftMidway(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	o := openTenancy(t, Config{Auth: config.KeyAuth{Required: true}, Postgres: config.Postgres{URL: pg.URL()}})
	secret, key, err := o.DB.CreateKey(context.Background(), postgres.KeySpec{Name: "leaver"})
	if err != nil {
		t.Fatal(err)
	}
	fake := &infertest.Fake{Model: "tiny", Reply: strings.Repeat("w ", 50), Delay: time.Millisecond}
	ctx := as(o.login(t, secret))
	g, err := o.Admit(fake).Chat(ctx, chatReq("tiny", "abcdefgh"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range g.Events() {
		if n++; n == 3 {
			break // the client leaves
		}
	}
	var recs map[string]postgres.UsageRecord
	waitFor(t, "the record", func() bool { recs = o.records(t, key.ID); return len(recs) == 1 })
	r := recs[infer.RequestIDFrom(ctx)]
	if r.StatusCode != 499 || r.PromptTokens != 2 || r.CompletionTokens < 3 || r.CompletionTokens >= 50 {
		t.Fatalf("record of a generation left after 3 events: %+v", r)
	}
}

func TestBudgetRefusesACallerOverItsMonthlyTokens(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	cfg := Config{Auth: config.KeyAuth{Required: true}, Postgres: config.Postgres{URL: pg.URL()}}
	o := openTenancy(t, cfg)
	secret, _, err := o.DB.CreateKey(context.Background(), postgres.KeySpec{Name: "small", MonthlyTokenBudget: 20})
	if err != nil {
		t.Fatal(err)
	}
	fake := &infertest.Fake{Model: "tiny"}
	svc := o.Admit(fake)
	c := o.login(t, secret)
	// 100 bytes: 25 prompt tokens plus 3: over the budget of 20 after one request.
	if _, err := chatOnce(svc, as(c), chatReq("tiny", strings.Repeat("z", 100))); err != nil {
		t.Fatalf("first request: %v", err)
	}
	var err2 error
	var before, after time.Time
	waitFor(t, "the budget to refuse", func() bool {
		before = time.Now()
		_, err2 = chatOnce(svc, as(c), chatReq("tiny", "again"))
		after = time.Now()
		return err2 != nil
	})
	var e *infer.Error
	if !errors.As(err2, &e) || e.Kind != infer.QuotaExceeded || e.Code != "insufficient_quota" ||
		!strings.HasPrefix(e.Message, "this key has used its monthly budget of 20 tokens (") ||
		e.RetryAfter > nextMonth(before) || e.RetryAfter < nextMonth(after) {
		t.Fatalf("over budget: %#v", err2)
	}
	// Another gateway learns the usage from the ledger.
	other := openTenancy(t, cfg)
	if err := o.Ledger.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other gateway to refuse the key", func() bool {
		_, err := tokenize(other.Admit(fake), as(c), "tiny")
		return infer.KindOf(err) == infer.QuotaExceeded
	})
	if v := gatherValue(t, o.Collector(), "hxp_ratelimit_decisions_total", map[string]string{"result": "over_budget"}); v < 1 {
		t.Errorf("over_budget decisions = %v", v)
	}
}

// fallback serves its fake's model under another name, as a router's fallback does.
type fallback struct {
	*infertest.Fake
	as string
}

func (f fallback) Chat(ctx context.Context, r *infer.ChatRequest) (*infer.Generation, error) {
	g, err := f.Fake.Chat(ctx, r)
	if g != nil {
		g.Model = f.as
	}
	return g, err
}

// toolCaller answers every chat with reasoning, text and a tool call, in pieces.
type toolCaller struct{ *infertest.Fake }

func (f toolCaller) Chat(ctx context.Context, r *infer.ChatRequest) (*infer.Generation, error) {
	if _, err := f.Fake.Chat(ctx, r); err != nil { // counts the call
		return nil, err
	}
	evs := []infer.Event{
		{Reasoning: "the user wants "}, {Reasoning: "the weather"}, {Text: "Checking."},
		{ToolCalls: []infer.ToolCallDelta{{Index: 0, ID: "call_1", Name: "weather", Arguments: `{"city":`}}},
		{ToolCalls: []infer.ToolCallDelta{{Index: 0, Arguments: `"Oslo"}`}}},
		{Done: true, Finish: infer.FinishToolCalls},
	}
	return infer.NewGeneration(infer.Served{Model: "tiny"}, 1, func() {}, func(emit func(infer.Event) bool) infer.Usage {
		for _, ev := range evs {
			if !emit(ev) {
				break
			}
		}
		return infer.Usage{PromptTokens: 9, CompletionTokens: 6}
	}), nil
}

// failingStore is a CacheStore that cannot answer.
type failingStore struct{}

func (failingStore) Get(context.Context, string) ([]byte, bool, error) {
	return nil, false, errors.New("cache down")
}
func (failingStore) Add(context.Context, string, []byte, time.Duration) error {
	return errors.New("cache down")
}

func TestResponseCache(t *testing.T) {
	rd := testenv.SharedRedis(t)
	for _, store := range []string{"redis", "memory"} {
		t.Run(store, func(t *testing.T) {
			cfg := Config{Auth: config.KeyAuth{Keys: []config.StaticKey{staticKey("a", "secret-cache-a", nil, 0, 0), staticKey("b", "secret-cache-b", nil, 0, 0)}},
				Cache: config.Cache{Enabled: true, TTL: config.Duration(time.Minute)}}
			if store == "redis" {
				cfg.Redis = config.Redis{URL: rd.URL()}
			}
			o := openTenancy(t, cfg)
			fake := &infertest.Fake{Model: "tiny", Reply: "the sea was calm"}
			svc := o.Cache(fake)
			a, b := o.login(t, "secret-cache-a"), o.login(t, "secret-cache-b")
			req := func() *infer.ChatRequest {
				r := chatReq("tiny", "Tell me a story about the sea.")
				r.MaxTokens, r.N = 4, 2
				return r
			}
			miss, err := chatOnce(svc, as(a), req())
			if err != nil || miss.Cache != infer.CacheMiss || miss.Usage.Total() == 0 {
				t.Fatalf("first request: %+v, %v", miss, err)
			}
			// The same request (another random seed: the client chose none) is a hit: the
			// same answer (id, choices, usage), without the model.
			var hit *infer.Result
			waitFor(t, "the stored answer", func() bool {
				r := req()
				r.Sampling.Seed = 99
				hit, err = chatOnce(svc, as(a), r)
				return err == nil && hit.Cache == infer.CacheHit
			})
			calls := fake.Calls("chat")
			again, err := chatOnce(svc, as(a), req())
			if err != nil || fake.Calls("chat") != calls {
				t.Fatal("a cache hit ran the model")
			}
			// Misses while the first answer was being stored may have replaced the entry:
			// hits agree with each other on the answer's identity.
			if again.ID != hit.ID || !again.Created.Equal(hit.Created) {
				t.Errorf("two hits of one entry: ids %s and %s", hit.ID, again.ID)
			}
			if hit.Model != "tiny" || hit.Usage != miss.Usage ||
				!reflect.DeepEqual(texts(hit), texts(miss)) || hit.Choices[1].Finish != infer.FinishStop {
				t.Fatalf("hit %+v, stored %+v", hit, miss)
			}
			// Another key does not see a's entries; a changed parameter is another entry.
			if r, _ := chatOnce(svc, as(b), req()); r.Cache != infer.CacheMiss {
				t.Errorf("other caller: %v", r.Cache)
			}
			other := req()
			other.MaxTokens = 5
			if r, _ := chatOnce(svc, as(a), other); r.Cache != infer.CacheMiss {
				t.Errorf("other max_tokens: %v", r.Cache)
			}
			// Sampled and streamed requests are not cacheable.
			sampled, streamed := req(), req()
			sampled.Sampling.Temperature = 0.8
			streamed.Stream = true
			for name, r := range map[string]*infer.ChatRequest{"sampled": sampled, "streamed": streamed} {
				for range 2 {
					calls := fake.Calls("chat")
					if res, err := chatOnce(svc, as(a), r); err != nil || res.Cache != infer.CacheNone || fake.Calls("chat") != calls+1 {
						t.Errorf("%s: %+v, %v", name, res, err)
					}
				}
			}
			// A fixed seed makes a sampled request cacheable; completions and embeddings
			// are cached too.
			seeded := req()
			seeded.Sampling.Temperature, seeded.Sampling.Seed, seeded.SeedFixed = 0.8, 7, true
			chatOnce(svc, as(a), seeded)
			waitFor(t, "seeded hit", func() bool { r, _ := chatOnce(svc, as(a), seeded); return r.Cache == infer.CacheHit })
			complete := &infer.CompletionRequest{Model: "tiny", Prompts: []infer.Prompt{{Text: "once"}, {Tokens: []engine.Token{1, 2}, IsTokens: true}}, GenParams: infer.GenParams{N: 1}}
			runComplete := func() *infer.Result {
				g, err := svc.Complete(as(a), complete)
				if err != nil {
					t.Fatal(err)
				}
				r, err := g.Collect()
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			first := runComplete()
			waitFor(t, "completion hit", func() bool { return runComplete().Cache == infer.CacheHit })
			if r := runComplete(); !reflect.DeepEqual(texts(r), texts(first)) || len(r.Choices) != 2 {
				t.Errorf("completion hit %+v vs %+v", r, first)
			}
			emb := &infer.EmbedRequest{Model: "tiny", Inputs: []infer.Prompt{{Text: "cache me"}, {Text: "and me too"}}}
			e1, err := svc.Embed(as(a), emb)
			if err != nil || e1.Cache != infer.CacheMiss {
				t.Fatalf("embeddings: %+v, %v", e1, err)
			}
			var e2 *infer.Embeddings
			waitFor(t, "embeddings hit", func() bool { e2, _ = svc.Embed(as(a), emb); return e2.Cache == infer.CacheHit })
			if !reflect.DeepEqual(e2.Vectors, e1.Vectors) || e2.Usage != e1.Usage || e2.Model != "tiny" {
				t.Errorf("embeddings hit %+v vs %+v", e2, e1)
			}
			// The tokenizer is not cached.
			if v, err := tokenize(svc, as(a), "tiny"); err != nil || v.Cache != infer.CacheNone {
				t.Errorf("tokenize: %+v, %v", v, err)
			}
		})
	}
}

func texts(r *infer.Result) []string {
	var out []string
	for _, c := range r.Choices {
		out = append(out, c.Text)
	}
	return out
}

func TestResponseCacheSharedFallbackAndOutage(t *testing.T) {
	o := openTenancy(t, Config{Auth: config.KeyAuth{Keys: []config.StaticKey{staticKey("a", "secret-shared-a", nil, 0, 0), staticKey("b", "secret-shared-b", nil, 0, 0)}},
		Cache: config.Cache{Enabled: true, Shared: true}})
	fake := &infertest.Fake{Model: "tiny"}
	svc := o.Cache(fake)
	a, b := o.login(t, "secret-shared-a"), o.login(t, "secret-shared-b")
	chatOnce(svc, as(a), chatReq("tiny", "shared"))
	waitFor(t, "another caller's hit with cache.shared", func() bool {
		r, _ := chatOnce(svc, as(b), chatReq("tiny", "shared"))
		return r.Cache == infer.CacheHit
	})
	// A fallback's answer is not stored under the model asked for.
	fb := o.Cache(fallback{Fake: &infertest.Fake{Model: "tiny"}, as: "backup"})
	for range 3 {
		r, err := chatOnce(fb, as(a), chatReq("tiny", "fallback"))
		if err != nil || r.Cache != infer.CacheMiss || r.Model != "backup" {
			t.Fatalf("fallback: %+v, %v", r, err)
		}
	}
	// A failed or abandoned generation is not stored.
	failing := &infertest.Fake{Model: "tiny", EventErr: infer.Errorf(infer.Internal, "", "boom")}
	fs := o.Cache(failing)
	for range 3 {
		if r, err := chatOnce(fs, as(a), chatReq("tiny", "failing")); err == nil || r.Cache != infer.CacheMiss {
			t.Fatalf("failing generation: %+v, %v", r, err)
		}
	}
	// Reasoning and tool calls are replayed as they were collected.
	tools := toolCaller{&infertest.Fake{Model: "tiny"}}
	ts := o.Cache(tools)
	first, err := chatOnce(ts, as(a), chatReq("tiny", "weather in Oslo?"))
	if err != nil || len(first.Choices[0].ToolCalls) != 1 {
		t.Fatalf("tool call: %+v, %v", first, err)
	}
	var again *infer.Result
	waitFor(t, "the tool call's hit", func() bool {
		again, _ = chatOnce(ts, as(a), chatReq("tiny", "weather in Oslo?"))
		return again.Cache == infer.CacheHit
	})
	first.Served, again.Served = infer.Served{}, infer.Served{}
	for i := range first.Choices {
		first.Choices[i].TTFT = 0
	}
	if !reflect.DeepEqual(first, again) {
		t.Fatalf("replayed %+v, collected %+v", again, first)
	}
	calls := tools.Calls("chat")
	chatOnce(ts, as(a), chatReq("tiny", "weather in Oslo?"))
	if tools.Calls("chat") != calls {
		t.Fatal("a hit ran the model")
	}
	// A store that cannot answer is a miss, never a failure.
	down := &responseCache{next: fake, store: failingStore{}, counters: &o.counters, log: o.cfg.Log}
	for range 2 {
		if r, err := chatOnce(down, as(a), chatReq("tiny", "outage")); err != nil || r.Cache != infer.CacheMiss {
			t.Fatalf("store down: %+v, %v", r, err)
		}
		if e, err := down.Embed(as(a), &infer.EmbedRequest{Model: "tiny", Inputs: []infer.Prompt{{Text: "x"}}}); err != nil || e.Cache != infer.CacheMiss {
			t.Fatalf("store down, embeddings: %+v, %v", e, err)
		}
	}
	if hits := gatherValue(t, o.Collector(), "hxp_response_cache_total", map[string]string{"result": "hit"}); hits < 1 {
		t.Errorf("hits = %v", hits)
	}
	// Without cache.enabled, Cache is the service itself.
	if plain := openTenancy(t, Config{}); plain.Cache(fake) != infer.Service(fake) {
		t.Error("Cache wraps the service without a cache")
	}
}

func TestCacheHitsAreLedgerRowsWithZeroTokens(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	o := openTenancy(t, Config{Auth: config.KeyAuth{Required: true}, Postgres: config.Postgres{URL: pg.URL()},
		Cache: config.Cache{Enabled: true}})
	secret, key, err := o.DB.CreateKey(context.Background(), postgres.KeySpec{Name: "cached", RPM: 100})
	if err != nil {
		t.Fatal(err)
	}
	fake := &infertest.Fake{Model: "tiny"}
	svc := o.Admit(o.Cache(fake)) // as the front ends wire it
	c := o.login(t, secret)
	first := as(c)
	if r, err := chatOnce(svc, first, chatReq("tiny", "abcdefgh")); err != nil || r.Cache != infer.CacheMiss || r.Quota == nil {
		t.Fatalf("miss: %+v, %v", r, err)
	}
	var hitCtx context.Context
	waitFor(t, "a hit", func() bool {
		hitCtx = as(c)
		r, err := chatOnce(svc, hitCtx, chatReq("tiny", "abcdefgh"))
		return err == nil && r.Cache == infer.CacheHit && r.Quota != nil && r.Quota.Requests.Limit == 100
	})
	var recs map[string]postgres.UsageRecord
	waitFor(t, "the records", func() bool { recs = o.records(t, key.ID); return len(recs) >= 2 })
	if r := recs[infer.RequestIDFrom(first)]; r.StatusCode != 200 || r.PromptTokens != 2 || r.CompletionTokens != 3 {
		t.Errorf("miss record %+v", r)
	}
	if r := recs[infer.RequestIDFrom(hitCtx)]; r.StatusCode != 200 || r.PromptTokens != 0 || r.CompletionTokens != 0 || r.Model != "tiny" {
		t.Errorf("hit record %+v", r)
	}
}

func TestAdmin(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	o := openTenancy(t, Config{Auth: config.KeyAuth{Required: true, AdminKey: "admin-secret-123"}, Postgres: config.Postgres{URL: pg.URL()}})
	a := o.Admin()
	if a == nil || !a.Authorize("admin-secret-123") || a.Authorize("admin-secret-12") || a.Authorize("") {
		t.Fatal("Authorize does not check the admin key")
	}
	ctx := context.Background()
	created, err := a.CreateKey(ctx, postgres.KeySpec{Name: "team-x", AllowedModels: []string{"tiny"}, RPM: 100, MonthlyTokenBudget: 100000})
	if err != nil || !strings.HasPrefix(created.Secret, "hxp-") || created.ID == "" || created.RPM != 100 {
		t.Fatalf("create: %+v, %v", created, err)
	}
	_, err = a.CreateKey(ctx, postgres.KeySpec{Name: "", RPM: -1})
	if e := infer.AsError(err, ""); e == nil || e.Kind != infer.InvalidArgument || e.Param == "" || !strings.Contains(e.Message, e.Param) {
		t.Fatalf("invalid spec: %#v", err)
	}
	// The new key works, and its use shows in the usage report.
	c := o.login(t, created.Secret)
	if _, err := tokenize(o.Admit(&infertest.Fake{Model: "tiny"}), as(c), "tiny"); err != nil {
		t.Fatal(err)
	}
	keys, err := a.ListKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != created.ID {
		t.Fatalf("list: %+v, %v", keys, err)
	}
	if k, err := a.GetKey(ctx, created.ID); err != nil || k.Name != "team-x" {
		t.Fatalf("get: %+v, %v", k, err)
	}
	if err := o.Ledger.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	since := MonthStart(time.Now())
	rep, err := a.Usage(ctx, postgres.UsageFilter{KeyID: created.ID, Since: since})
	if err != nil || len(rep.Data) != 1 || rep.Data[0].Requests != 1 || rep.Total.Requests != 1 || !rep.Since.Equal(since) {
		t.Fatalf("usage: %+v, %v", rep, err)
	}
	if rep, err := a.Usage(ctx, postgres.UsageFilter{KeyID: "nobody"}); err != nil || rep.Data == nil || len(rep.Data) != 0 {
		t.Fatalf("empty usage: %+v, %v", rep, err)
	}
	// Revoking takes effect at once on this gateway (its key cache is told).
	k, err := a.RevokeKey(ctx, created.ID)
	if err != nil || !k.Disabled {
		t.Fatalf("revoke: %+v, %v", k, err)
	}
	if _, err := o.Authenticate(ctx, created.Secret); infer.KindOf(err) != infer.Unauthenticated {
		t.Fatalf("revoked key: %v", err)
	}
	for name, err := range map[string]error{
		"get":    func() error { _, err := a.GetKey(ctx, "nope"); return err }(),
		"revoke": func() error { _, err := a.RevokeKey(ctx, "nope"); return err }(),
	} {
		if e := infer.AsError(err, ""); e == nil || e.Kind != infer.NotFound || e.Code != "key_not_found" {
			t.Errorf("%s of an unknown key: %#v", name, err)
		}
	}
	if leaks := testenv.SecretLeaks(o.logs.String(), "admin-secret-123"); leaks != nil {
		t.Fatalf("the admin key reached the logs: %v", leaks)
	}
	if strings.Contains(o.logs.String(), created.Secret) {
		t.Fatal("a created key reached the logs")
	}
	// Without a database every method says so; without an admin key there is none.
	nodb := openTenancy(t, Config{Auth: config.KeyAuth{AdminKey: "admin-secret-456"}})
	if _, err := nodb.Admin().ListKeys(ctx); infer.AsError(err, "").Code != "no_database" || infer.KindOf(err) != infer.Unavailable {
		t.Fatalf("no database: %#v", err)
	}
	if openTenancy(t, Config{}).Admin() != nil {
		t.Fatal("an admin service without an admin key")
	}
}

func TestAdminDatabaseDown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	o := openTenancy(t, Config{Auth: config.KeyAuth{AdminKey: "admin-secret-789"}, Postgres: config.Postgres{URL: pg.URL()}})
	pg.Kill()
	_, err := o.Admin().ListKeys(context.Background())
	if e := infer.AsError(err, ""); e.Kind != infer.Unavailable || e.Code != "database_unavailable" || e.RetryAfter != time.Second {
		t.Fatalf("database down: %#v", err)
	}
}

// gatherValue returns the value of the sample of name whose labels include want.
func gatherValue(t *testing.T, c prometheus.Collector, name string, want map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
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
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no sample %s%v", name, want)
	return 0
}

func TestMetrics(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	o := openTenancy(t, Config{Auth: config.KeyAuth{Keys: []config.StaticKey{staticKey("m", "secret-metrics", nil, 2, 0)}},
		Postgres: config.Postgres{URL: pg.URL()}, Cache: config.Cache{Enabled: true}})
	svc := o.Admit(o.Cache(&infertest.Fake{Model: "tiny"}))
	c := o.login(t, "secret-metrics")
	for range 3 {
		tokenize(svc, as(c), "tiny")
	}
	col := o.Collector()
	if v := gatherValue(t, col, "hxp_ratelimit_decisions_total", map[string]string{"result": "allowed"}); v != 2 {
		t.Errorf("allowed = %v", v)
	}
	if v := gatherValue(t, col, "hxp_ratelimit_decisions_total", map[string]string{"result": "limited"}); v != 1 {
		t.Errorf("limited = %v", v)
	}
	waitFor(t, "three written records", func() bool {
		o.Ledger.Flush(context.Background())
		return gatherValue(t, col, "hxp_ledger_records_total", map[string]string{"outcome": "written"}) == 3
	})
	if v := gatherValue(t, col, "hxp_ledger_spool_pending", nil); v != 0 {
		t.Errorf("spool pending = %v", v)
	}
	if v := gatherValue(t, col, "hxp_response_cache_total", map[string]string{"result": "miss"}); v != 0 {
		t.Errorf("tokenize counted by the cache: %v", v)
	}
}
