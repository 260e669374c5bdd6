package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
	"github.com/hxp-ai/hxp/transport/rest"
)

// The tenancy tests run whole servers with their tenancy (keys, scope, limits,
// budgets, ledger, response cache) against real PostgreSQL and Redis servers
// (internal/testenv) and real model services on the tiny generated model; a second
// server stands in for a remote node.

func TestKeyAuthBypassAttempts(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	g := start(t, setup{edit: func(c *config.Config) {
		c.Auth.KeyAuth = config.KeyAuth{Required: true, Keys: []config.StaticKey{staticKey("static-a", "static-secret-aaaa", nil, 0, 0)}}
		c.Postgres.URL = pg.URL()
	}})
	ctx := testCtx(t)
	valid, _, err := g.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, rk, _ := g.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "bob"})
	if err := g.ten.DB.RevokeKey(ctx, rk.ID); err != nil {
		t.Fatal(err)
	}
	expired, ek, _ := g.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "carol", ExpiresAt: time.Now().Add(time.Hour)})
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1", ek.ID); err != nil {
		t.Fatal(err)
	}
	wrong := valid[:len(valid)-1] + string("ab"[0]+(valid[len(valid)-1]&1)) // same id, other secret
	body, err := json.Marshal(tokenizeBody("tiny"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		hdrs [][2]string
		want int
	}{
		{"valid", [][2]string{{"Authorization", "Bearer " + valid}}, 200},
		{"lower-case header and scheme", [][2]string{{"authorization", "bearer " + valid}}, 200},
		{"static hashed key", [][2]string{{"Authorization", "Bearer static-secret-aaaa"}}, 200},
		{"missing", nil, 401},
		{"empty", [][2]string{{"Authorization", ""}}, 401},
		{"basic scheme", [][2]string{{"Authorization", "Basic " + valid}}, 401},
		{"no scheme", [][2]string{{"Authorization", valid}}, 401},
		{"wrong secret, right id", [][2]string{{"Authorization", "Bearer " + wrong}}, 401},
		{"key with suffix", [][2]string{{"Authorization", "Bearer " + valid + "x"}}, 401},
		{"key with trailing word", [][2]string{{"Authorization", "Bearer " + valid + " admin"}}, 401},
		{"prefix of a key", [][2]string{{"Authorization", "Bearer " + valid[:20]}}, 401},
		{"revoked", [][2]string{{"Authorization", "Bearer " + revoked}}, 401},
		{"expired", [][2]string{{"Authorization", "Bearer " + expired}}, 401},
		{"valid and invalid headers", [][2]string{{"Authorization", "Bearer " + valid}, {"Authorization", "Bearer x"}}, 401},
		{"key in another header", [][2]string{{"X-Api-Key", valid}}, 401},
		{"key in the query", nil, 401},
	}
	for _, c := range cases {
		url := g.gw + "/tokenize"
		if c.name == "key in the query" {
			url += "?api_key=" + valid
		}
		r := rawRequest(t, "POST", url, body, c.hdrs)
		if r.status != c.want {
			t.Errorf("%s: status %d, want %d: %s", c.name, r.status, c.want, r.body)
			continue
		}
		if c.want == 401 {
			e := r.apiErr(t)
			if e.Type != "authentication_error" || e.Code == nil || *e.Code != "invalid_api_key" || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 body %s, WWW-Authenticate %q", c.name, r.body, r.header.Get("WWW-Authenticate"))
			}
		}
	}
	// Every refusal looks the same to the client, whatever the reason.
	a := rawRequest(t, "POST", g.gw+"/tokenize", body, [][2]string{{"Authorization", "Bearer " + revoked}})
	b := rawRequest(t, "POST", g.gw+"/tokenize", body, [][2]string{{"Authorization", "Bearer " + wrong}})
	if !bytes.Equal(a.body, b.body) {
		t.Errorf("revoked and wrong keys are told apart: %s vs %s", a.body, b.body)
	}
	// Every model route and the model list need a key; health does not.
	for _, p := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/detokenize"} {
		if r := post(t, g.gw+p, tokenizeBody("tiny")); r.status != 401 {
			t.Errorf("POST %s without key: %d", p, r.status)
		}
	}
	if r := do(t, "GET", g.gw+"/v1/models", nil); r.status != 401 {
		t.Errorf("GET /v1/models without key: %d", r.status)
	}
	if r := do(t, "GET", g.gw+"/health", nil); r.status != 200 {
		t.Errorf("GET /health: %d", r.status)
	}
	// Keys and prompts never reach the logs; key ids may.
	logs := g.logs.String()
	for _, secret := range []string{valid, revoked, expired, wrong, "static-secret-aaaa", "the quiet prompt text"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain a secret or a prompt: %q", secret)
		}
	}
	if !strings.Contains(logs, rk.ID) {
		t.Errorf("the refusal of key %s is not logged by id", rk.ID)
	}
}

func TestScopeEscapeThroughEveryRoute(t *testing.T) {
	// beta has its own listener.
	g := start(t, setup{models: []string{"beta", "tiny"}, edit: func(c *config.Config) {
		c.Auth.KeyAuth = config.KeyAuth{Required: true, Keys: []config.StaticKey{
			staticKey("only-tiny", "secret-only-tiny", []string{"tiny"}, 0, 0),
			staticKey("everything", "secret-everything", nil, 0, 0),
		}}
	}})
	scoped, all := bearer("secret-only-tiny"), bearer("secret-everything")

	bodies := map[string]func(model string) map[string]any{
		"/v1/chat/completions": func(m string) map[string]any { return chatBody(m, 2, nil) },
		"/v1/completions": func(m string) map[string]any {
			return map[string]any{"model": m, "prompt": "x", "max_tokens": 2}
		},
		"/v1/embeddings": func(m string) map[string]any { return map[string]any{"model": m, "input": "x"} },
		"/tokenize":      func(m string) map[string]any { return map[string]any{"model": m, "prompt": "x"} },
		"/detokenize":    func(m string) map[string]any { return map[string]any{"model": m, "tokens": []int{1}} },
	}
	for path, body := range bodies {
		if r := post(t, g.gw+path, body("tiny"), scoped...); r.status != 200 {
			t.Errorf("%s for an allowed model: %d %s", path, r.status, r.body)
		}
		if r := post(t, g.gw+path, body("beta"), all...); r.status != 200 {
			t.Errorf("%s for beta with an unrestricted key: %d %s", path, r.status, r.body)
		}
		denied := post(t, g.gw+path, body("beta"), scoped...)
		missing := post(t, g.gw+path, body("gamma"), scoped...)
		if denied.status != 404 || *denied.apiErr(t).Code != "model_not_found" {
			t.Errorf("%s for a model outside the key's scope: %d %s", path, denied.status, denied.body)
		}
		// A forbidden model is indistinguishable from a missing one.
		if strings.ReplaceAll(string(denied.body), "beta", "gamma") != string(missing.body) {
			t.Errorf("%s: forbidden %s vs missing %s", path, denied.body, missing.body)
		}
	}
	// Body tricks: duplicate keys (the last wins, for the links as for the router),
	// case and whitespace variants of the name.
	for _, raw := range []string{
		`{"model":"tiny","model":"beta","prompt":"x"}`,
		`{"model":"beta","prompt":"x","model":"beta"}`,
		`{"model":"Beta","prompt":"x"}`,
		`{"model":"beta ","prompt":"x"}`,
		`{"model":"be\u0074a","prompt":"x"}`,
	} {
		r := rawRequest(t, "POST", g.gw+"/tokenize", []byte(raw), [][2]string{{"Authorization", scoped[1]}})
		if r.status != 404 {
			t.Errorf("%s: %d %s", raw, r.status, r.body)
		}
	}
	// The model list shows only what the key may use; another model's card is a 404.
	var list openai.ModelList
	do(t, "GET", g.gw+"/v1/models", nil, scoped...).json(t, &list)
	if len(list.Data) != 1 || list.Data[0].ID != "tiny" {
		t.Errorf("scoped /v1/models: %+v", list.Data)
	}
	do(t, "GET", g.gw+"/v1/models", nil, all...).json(t, &list)
	if len(list.Data) != 2 {
		t.Errorf("unrestricted /v1/models: %+v", list.Data)
	}
	if r := do(t, "GET", g.gw+"/v1/models/beta", nil, scoped...); r.status != 404 {
		t.Errorf("GET /v1/models/beta: %d", r.status)
	}
	if r := do(t, "GET", g.gw+"/v1/models/tiny", nil, scoped...); r.status != 200 {
		t.Errorf("GET /v1/models/tiny: %d", r.status)
	}
	// beta's own listener: a request without a model is a request for beta.
	betaURL := g.own
	if r := post(t, betaURL+"/tokenize", map[string]any{"prompt": "x"}, scoped...); r.status != 404 {
		t.Errorf("beta's listener without a model: %d %s", r.status, r.body)
	}
	if r := post(t, betaURL+"/tokenize", map[string]any{"prompt": "x"}, all...); r.status != 200 {
		t.Errorf("beta's listener, unrestricted key: %d %s", r.status, r.body)
	}
}

// countStatus sends n requests concurrently, alternating between urls, and counts
// the answers by status.
func countStatus(t *testing.T, n int, urls []string, body any, hdr []string, check func(response)) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := post(t, urls[i%len(urls)]+"/tokenize", body, hdr...)
			if check != nil {
				check(r)
			}
			mu.Lock()
			counts[r.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return counts
}

func TestRateLimitsSharedByTwoGateways(t *testing.T) {
	rd := testenv.SharedRedis(t)
	auth := config.KeyAuth{Keys: []config.StaticKey{staticKey("k5", "secret-rpm-five", nil, 5, 0)}}
	shared := setup{edit: func(c *config.Config) { c.Auth.KeyAuth, c.Redis.URL = auth, rd.URL() }}
	a, b := start(t, shared), start(t, shared)
	var bad atomic.Int32
	counts := countStatus(t, 24, []string{a.gw, b.gw}, tokenizeBody("tiny"), bearer("secret-rpm-five"), func(r response) {
		ok := r.header.Get("X-Ratelimit-Limit-Requests") == "5" && r.header.Get("X-Ratelimit-Reset-Requests") != ""
		if r.status == 429 {
			e := r.apiErr(t)
			ok = ok && e.Type == "rate_limit_error" && e.Code != nil && *e.Code == "rate_limit_exceeded" &&
				r.header.Get("Retry-After") != "" && r.header.Get("X-Ratelimit-Remaining-Requests") == "0"
		}
		if !ok {
			bad.Add(1)
			t.Logf("unexpected answer %d %v %s", r.status, r.header, r.body)
		}
	})
	if counts[200] != 5 || counts[429] != 19 {
		t.Fatalf("24 requests at 5 rpm over two gateways: %v; want exactly 5 admitted", counts)
	}
	if bad.Load() > 0 {
		t.Fatal("answers without the rate-limit headers")
	}
	// Without Redis each gateway limits on its own: twice the admissions.
	alone := setup{edit: func(c *config.Config) { c.Auth.KeyAuth = auth }}
	c, d := start(t, alone), start(t, alone)
	if counts := countStatus(t, 24, []string{c.gw, d.gw}, tokenizeBody("tiny"), bearer("secret-rpm-five"), nil); counts[200] != 10 {
		t.Fatalf("in-process limiters: %v; want 5 per gateway", counts)
	}
}

func TestRateLimitLeasesFromRedis(t *testing.T) {
	// A key far from its limits is admitted mostly from each gateway's lease, with the
	// headers of every answer, and the lease is counted in the metrics.
	rd := testenv.SharedRedis(t)
	hot := setup{edit: func(c *config.Config) {
		c.Auth.Keys = []config.StaticKey{staticKey("hot", "secret-hot", nil, 100000, 10_000_000)}
		c.Redis.URL = rd.URL()
	}}
	gws := []*server{start(t, hot), start(t, hot)}
	const workers, each = 4, 15
	var wg sync.WaitGroup
	var bad atomic.Int32
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := post(t, gws[w%2].gw+"/tokenize", tokenizeBody("tiny"), bearer("secret-hot")...)
				rem, err := strconv.Atoi(r.header.Get("X-Ratelimit-Remaining-Requests"))
				if r.status != 200 || r.header.Get("X-Ratelimit-Limit-Requests") != "100000" || err != nil || rem < 0 || rem >= 100000 ||
					r.header.Get("X-Ratelimit-Remaining-Tokens") == "" || r.header.Get("X-Ratelimit-Reset-Requests") == "" {
					bad.Add(1)
					t.Logf("unexpected answer %d %v %s", r.status, r.header, r.body)
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d answers refused or without sensible rate-limit headers", bad.Load())
	}
	var fromLease, fromRedis float64
	for _, g := range gws {
		reg := g.Registry()
		fromLease += counter(t, reg, "hxp_ratelimit_lease_decisions_total", map[string]string{"source": "lease"})
		fromRedis += counter(t, reg, "hxp_ratelimit_lease_decisions_total", map[string]string{"source": "redis"})
		if _, ok := metric(t, reg, "hxp_ratelimit_lease_calls_total", map[string]string{"call": "refill", "result": "ok"}); !ok {
			t.Error("no hxp_ratelimit_lease_calls_total{call=refill,result=ok}")
		}
	}
	if fromLease+fromRedis < workers*each || fromLease == 0 || fromRedis == 0 {
		t.Fatalf("%v decisions from leases, %v after a Redis call, for %d requests", fromLease, fromRedis, workers*each)
	}
}

func TestRedisDownFailOpenOrClosed(t *testing.T) {
	rd := testenv.StartRedis(t)
	failing := func(mode string) setup {
		return setup{edit: func(c *config.Config) {
			c.Auth.Keys = []config.StaticKey{staticKey("k3", "secret-rpm-three", nil, 3, 0)}
			c.Redis = config.Redis{URL: rd.URL(), FailMode: mode, Timeout: config.Duration(200 * time.Millisecond)}
		}}
	}
	open, closed := start(t, failing("open")), start(t, failing("closed"))
	key := bearer("secret-rpm-three")
	if r := post(t, closed.gw+"/tokenize", tokenizeBody("tiny"), key...); r.status != 200 {
		t.Fatalf("with redis up: %d %s", r.status, r.body)
	}
	rd.Kill()
	// Fail open: the in-process limiter takes over, with the same limits.
	var got []int
	for i := 0; i < 4; i++ {
		got = append(got, post(t, open.gw+"/tokenize", tokenizeBody("tiny"), key...).status)
	}
	if fmt.Sprint(got) != "[200 200 200 429]" {
		t.Fatalf("fail open with redis down: %v; want the local limiter's 3 admissions", got)
	}
	// Fail closed: 503 with Retry-After.
	r := post(t, closed.gw+"/tokenize", tokenizeBody("tiny"), key...)
	if r.status != 503 || *r.apiErr(t).Code != "rate_limiter_unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("fail closed with redis down: %d %s", r.status, r.body)
	}
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fail-closed gateway to use redis again", func() bool {
		return post(t, closed.gw+"/tokenize", tokenizeBody("tiny"), key...).status == 200
	})
	if !strings.Contains(closed.logs.String(), "fail closed") || !strings.Contains(open.logs.String(), "in-process limiter") {
		t.Error("the outage and the chosen behaviour are not logged")
	}
}

func TestLedgerCompleteWhenPostgresDiesMidLoad(t *testing.T) {
	pg := testenv.StartPostgres(t)
	g := start(t, setup{
		edit: func(c *config.Config) { c.Auth.Required, c.Postgres.URL = true, pg.URL() },
		tenancy: func(tc *tenancy.Config) {
			tc.Ledger = postgres.LedgerOptions{FlushInterval: 20 * time.Millisecond, RetryInterval: 100 * time.Millisecond, WriteTimeout: time.Second}
		},
	})
	ctx := testCtx(t)
	secret, key, err := g.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "load"})
	if err != nil {
		t.Fatal(err)
	}
	const total, workers = 48, 4
	var sent, failed atomic.Int32
	var chats atomic.Int32
	killAt, restartAt := int32(total/3), int32(2*total/3)
	var phase sync.Mutex // held while the server is killed or restarted
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := sent.Add(1)
				if n > total {
					return
				}
				switch n {
				case killAt:
					phase.Lock()
					pg.Kill()
					phase.Unlock()
				case restartAt:
					phase.Lock()
					if err := pg.Start(); err != nil {
						t.Error(err)
					}
					phase.Unlock()
				}
				var r response
				if n%2 == 0 {
					chats.Add(1)
					r = post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(secret)...)
				} else {
					r = post(t, g.gw+"/tokenize", tokenizeBody("tiny"), bearer(secret)...)
				}
				if r.status != 200 {
					failed.Add(1)
					t.Errorf("request %d failed: %d %s", n, r.status, r.body)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed while PostgreSQL was down", failed.Load())
	}
	var recs []postgres.UsageRecord
	waitFor(t, "every request in the ledger", func() bool {
		recs, err = g.ten.DB.UsageRecords(ctx, postgres.UsageFilter{KeyID: key.ID}, 1000)
		return err == nil && len(recs) >= total
	})
	if len(recs) != total {
		t.Fatalf("ledger has %d records for %d requests", len(recs), total)
	}
	st := g.ten.Ledger.Stats()
	if st.Spooled == 0 || st.Dropped != 0 {
		t.Fatalf("ledger stats %+v: nothing went through the spool, or records were dropped", st)
	}
	ids := map[string]bool{}
	withTokens := 0
	for _, r := range recs {
		if r.Model != "tiny" || r.StatusCode != 200 || r.RequestID == "" || ids[r.RequestID] {
			t.Fatalf("bad record %+v", r)
		}
		ids[r.RequestID] = true
		if r.PromptTokens > 0 && r.CompletionTokens > 0 {
			withTokens++
		}
	}
	if withTokens != int(chats.Load()) {
		t.Fatalf("%d records with tokens for %d chat requests", withTokens, chats.Load())
	}
}

func TestBudgetRefusesAKeyOverItsMonthlyTokens(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	budgeted := setup{edit: func(c *config.Config) { c.Auth.Required, c.Postgres.URL = true, pg.URL() }}
	g := start(t, budgeted)
	ctx := testCtx(t)
	secret, _, err := g.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "small", MonthlyTokenBudget: 20})
	if err != nil {
		t.Fatal(err)
	}
	// A chat costs its prompt (tens of tokens with the template) plus 2.
	if r := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(secret)...); r.status != 200 {
		t.Fatalf("first request: %d %s", r.status, r.body)
	}
	before := time.Now()
	r := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(secret)...)
	after := time.Now()
	r.wantErr(t, 429, "insufficient_quota", "insufficient_quota")
	// Retry-After is the start of next month (UTC), in whole seconds rounded up, from
	// some moment between sending and receiving.
	next := tenancy.MonthStart(before).AddDate(0, 1, 0)
	wait, err := strconv.Atoi(r.header.Get("Retry-After"))
	if at := time.Duration(wait) * time.Second; err != nil || after.Add(at).Before(next) || !before.Add(at).Before(next.Add(time.Second)) {
		t.Errorf("Retry-After %q over budget; the next month starts in %s", r.header.Get("Retry-After"), next.Sub(before).Round(time.Second))
	}
	// Another gateway learns the usage from the ledger.
	other := start(t, budgeted)
	if err := g.ten.Ledger.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other gateway to refuse the key", func() bool {
		return post(t, other.gw+"/tokenize", tokenizeBody("tiny"), bearer(secret)...).status == 429
	})
}

func TestResponseCache(t *testing.T) {
	rd := testenv.SharedRedis(t)
	g := start(t, setup{edit: func(c *config.Config) {
		c.Auth.Keys = []config.StaticKey{staticKey("a", "secret-cache-a", nil, 0, 0), staticKey("b", "secret-cache-b", nil, 0, 0)}
		c.Redis.URL, c.Cache = rd.URL(), config.Cache{Enabled: true, TTL: config.Duration(time.Minute)}
	}})
	svc := g.Group().Get("tiny")
	a, b := bearer("secret-cache-a"), bearer("secret-cache-b")
	steps := svc.Stats().Steps
	miss := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 4, nil), a...)
	if miss.status != 200 || miss.header.Get(rest.CacheHeader) != "miss" {
		t.Fatalf("first request: %d %q %s", miss.status, miss.header.Get(rest.CacheHeader), miss.body)
	}
	if svc.Stats().Steps == steps {
		t.Fatal("the miss did not run the model")
	}
	// The same request, keys in another order and spaced differently, is a hit.
	same := []byte(`{ "temperature": 0, "max_tokens": 4, "messages": [{"role":"system","content":"You are terse."},` +
		`{"role":"user","content":"Tell me a story about the sea."}], "model": "tiny", "user": "someone" }`)
	hit := cachedAnswer(t, svc, func() response {
		return rawRequest(t, "POST", g.gw+"/v1/chat/completions", same, [][2]string{{"Authorization", a[1]}})
	})
	if hit.status != 200 || !bytes.Equal(hit.body, miss.body) {
		t.Fatalf("hit: %d %s, stored %s", hit.status, hit.body, miss.body)
	}
	// Another key does not see a's entries; a changed parameter is another entry.
	if r := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 4, nil), b...); r.header.Get(rest.CacheHeader) != "miss" {
		t.Errorf("other tenant: %q", r.header.Get(rest.CacheHeader))
	}
	if r := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 5, nil), a...); r.header.Get(rest.CacheHeader) != "miss" {
		t.Errorf("other max_tokens: %q", r.header.Get(rest.CacheHeader))
	}
	// Sampled and streamed requests are not cacheable: no header.
	for name, body := range map[string]map[string]any{
		"sampled":  chatBody("tiny", 2, map[string]any{"temperature": 0.8}),
		"streamed": chatBody("tiny", 2, map[string]any{"stream": true}),
	} {
		if r := post(t, g.gw+"/v1/chat/completions", body, a...); r.status != 200 || r.header.Get(rest.CacheHeader) != "" {
			t.Errorf("%s: %d %q", name, r.status, r.header.Get(rest.CacheHeader))
		}
	}
	// A fixed seed makes a sampled request cacheable; embeddings always are.
	seeded := chatBody("tiny", 3, map[string]any{"temperature": 0.8, "seed": 7})
	post(t, g.gw+"/v1/chat/completions", seeded, a...)
	waitFor(t, "seeded hit", func() bool {
		return post(t, g.gw+"/v1/chat/completions", seeded, a...).header.Get(rest.CacheHeader) == "hit"
	})
	emb := map[string]any{"model": "tiny", "input": "cache me"}
	post(t, g.gw+"/v1/embeddings", emb, a...)
	waitFor(t, "embeddings hit", func() bool {
		return post(t, g.gw+"/v1/embeddings", emb, a...).header.Get(rest.CacheHeader) == "hit"
	})
}

// cachedAnswer waits until send is answered from the cache, then sends it once more
// and checks that this hit ran no model step (a miss while the entry was being stored
// may have).
func cachedAnswer(t testing.TB, svc *service.Service, send func() response) response {
	t.Helper()
	waitFor(t, "the stored answer", func() bool { return send().header.Get(rest.CacheHeader) == "hit" })
	steps := svc.Stats().Steps
	hit := send()
	if hit.header.Get(rest.CacheHeader) != "hit" || svc.Stats().Steps != steps {
		t.Fatalf("a cache hit ran the model, or a stored answer was lost: %q %d %s", hit.header.Get(rest.CacheHeader), hit.status, hit.body)
	}
	return hit
}

// Two hosts sharing PostgreSQL and Redis: host A has no model of its own and routes
// to host B with the node key. Each request is limited and recorded once.
func TestScaleOutTwoHostsShareLimitsAndLedger(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	rd := testenv.SharedRedis(t)
	shared := func(c *config.Config) {
		c.Auth.Required, c.Auth.NodeKey = true, "node-key-shared-secret"
		c.Postgres.URL, c.Redis.URL = pg.URL(), rd.URL()
	}
	ledger := func(tc *tenancy.Config) { tc.Ledger.FlushInterval = 20 * time.Millisecond }
	b := start(t, setup{edit: shared, tenancy: ledger})
	a := start(t, setup{models: []string{}, tenancy: ledger, edit: func(c *config.Config) {
		shared(c)
		c.Upstreams = []config.Upstream{{Model: "tiny", URL: b.gw}}
	}})
	ctx := testCtx(t)
	secret, key, err := a.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "scale", RPM: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for i, url := range []string{a.gw, b.gw, a.gw, a.gw, b.gw, a.gw} {
		r := post(t, url+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(secret)...)
		got = append(got, r.status)
		if i == 0 && (r.status != 200 || !strings.Contains(string(r.body), `"chat.completion"`)) {
			t.Fatalf("through host A: %d %s", r.status, r.body)
		}
	}
	if fmt.Sprint(got) != "[200 200 200 200 429 429]" {
		t.Fatalf("statuses %v: the limit of 4 is not shared, or A's requests were counted twice", got)
	}
	// A client cannot use the node key's privileges without the node key itself.
	if r := post(t, b.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer("node-key-shared-secre")...); r.status != 401 {
		t.Fatalf("a near node key: %d", r.status)
	}
	var recs []postgres.UsageRecord
	waitFor(t, "six ledger rows", func() bool {
		recs, err = a.ten.DB.UsageRecords(ctx, postgres.UsageFilter{KeyID: key.ID}, 100)
		return err == nil && len(recs) >= 6
	})
	all, _ := a.ten.DB.UsageRecords(ctx, postgres.UsageFilter{}, 100)
	if len(recs) != 6 || len(all) != 6 {
		t.Fatalf("%d rows for the key, %d in all, for 6 requests", len(recs), len(all))
	}
	withTokens := 0
	for _, r := range recs {
		if r.StatusCode == 200 && r.CompletionTokens > 0 {
			withTokens++
		}
	}
	if withTokens != 4 {
		t.Fatalf("%d rows with tokens, want the 4 served (A learns the tokens from B's answer): %+v", withTokens, recs)
	}
	if strings.Contains(b.logs.String(), secret) || strings.Contains(a.logs.String(), secret) {
		t.Fatal("a client key reached a log")
	}
}

func TestTenancyMetrics(t *testing.T) {
	g := start(t, setup{edit: func(c *config.Config) {
		c.Auth.Keys = []config.StaticKey{staticKey("m", "secret-metrics", nil, 2, 0)}
		c.Cache.Enabled = true
	}})
	for i := 0; i < 3; i++ {
		post(t, g.gw+"/tokenize", tokenizeBody("tiny"), bearer("secret-metrics")...)
	}
	c := g.Registry()
	if v := counter(t, c, "hxp_ratelimit_decisions_total", map[string]string{"result": "allowed"}); v != 2 {
		t.Errorf("allowed = %v", v)
	}
	if v := counter(t, c, "hxp_ratelimit_decisions_total", map[string]string{"result": "limited"}); v != 1 {
		t.Errorf("limited = %v", v)
	}
	if v := counter(t, c, "hxp_upstream_healthy", map[string]string{"model": "tiny", "upstream": "local"}); v != 1 {
		t.Errorf("healthy = %v", v)
	}
	if v := counter(t, c, "hxp_upstream_breaker_state", map[string]string{"model": "tiny", "upstream": "local"}); v != 0 {
		t.Errorf("breaker = %v", v)
	}
}
