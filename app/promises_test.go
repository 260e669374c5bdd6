package app

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/health"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/transport/rest"
)

// Promises of the README that only a whole server can keep: errors of remote
// upstreams, the database outage, the two-step token charge, the shared in-process
// cache and its ledger rows, secrets kept out of the logs, clients that hang up on the
// gateway, and what a server shutting down answers.

// randomSecret is a random-looking secret with a readable prefix.
func randomSecret(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// silentNode is a TCP listener that accepts connections and never answers; it
// returns its URL and the number of connections accepted so far.
func silentNode(t testing.TB) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			accepted.Add(1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String(), &accepted
}

// remoteGateway starts a gateway without models of its own that routes model "far"
// to the nodes at urls, with the given routing settings and no active health checks.
func remoteGateway(t testing.TB, routing config.Routing, urls ...string) *server {
	t.Helper()
	return start(t, setup{models: []string{}, edit: func(c *config.Config) {
		for _, u := range urls {
			c.Upstreams = append(c.Upstreams, config.Upstream{Model: "far", URL: u})
		}
		routing.HealthInterval = config.Duration(-1)
		c.Routing = routing
	}})
}

// A remote node that accepts the request and never answers: 504 upstream_timeout
// once routing.timeout has passed, streamed or not.
func TestUpstreamTimeout504(t *testing.T) {
	url, accepted := silentNode(t)
	g := remoteGateway(t, config.Routing{Timeout: config.Duration(300 * time.Millisecond), Retries: -1}, url)
	for _, stream := range []bool{false, true} {
		r := post(t, g.gw+"/v1/chat/completions", chatBody("far", 4, map[string]any{"stream": stream}))
		r.wantErr(t, 504, "service_unavailable_error", "upstream_timeout")
	}
	if n := accepted.Load(); n == 0 {
		t.Fatal("the silent node never got a connection: the 504 is not a timeout of an answer")
	}
}

// Every node of a model refuses connections: the first request finds both failing
// (502), which opens both breakers; the next is refused at once with 503
// upstream_unavailable and a Retry-After within the breakers' open time.
func TestEveryBreakerOpen503(t *testing.T) {
	down1, down2 := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	g := remoteGateway(t, config.Routing{Breaker: config.Breaker{Failures: 1, OpenFor: config.Duration(time.Minute)}}, down1, down2)
	post(t, g.gw+"/v1/chat/completions", chatBody("far", 4, nil)).wantErr(t, 502, "service_unavailable_error", "upstream_unavailable")
	for _, u := range []string{down1, down2} {
		if v := counter(t, g.Registry(), "hxp_upstream_breaker_state", map[string]string{"model": "far", "upstream": u}); v != 2 {
			t.Errorf("breaker of %s: state %v, want 2 (open)", u, v)
		}
	}
	r := post(t, g.gw+"/v1/chat/completions", chatBody("far", 4, nil))
	r.wantErr(t, 503, "service_unavailable_error", "upstream_unavailable")
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s <= 0 || s > 60 {
		t.Errorf("Retry-After %q with every breaker open for a minute", r.header.Get("Retry-After"))
	}
}

// While PostgreSQL is down: a key never seen cannot be checked (503
// auth_unavailable, Retry-After), a key seen before keeps working, the "postgres"
// health check fails at level high (degraded, still ready), and the database
// password of the URL never reaches the logs.
func TestPostgresDown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	password := randomSecret(t, "pw")
	dbURL := strings.Replace(pg.URL(), "@", ":"+password+"@", 1) // the test cluster trusts local connections
	g := start(t, setup{edit: func(c *config.Config) { c.Auth.Required, c.Postgres.URL = true, dbURL }})
	ctx := testCtx(t)
	known, _, err := g.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "known"})
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, err := g.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "unknown"})
	if err != nil {
		t.Fatal(err)
	}
	if r := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(known)...); r.status != 200 {
		t.Fatalf("with the database up: %d %s", r.status, r.body)
	}
	if c, ok := g.Health().RunOnce(ctx).Check("postgres"); !ok || c.Level != health.High || c.Status != health.StatusPass {
		t.Fatalf("postgres check with the database up: %+v (registered %v)", c, ok)
	}
	detail := func() map[string]any {
		var d struct{ Checks []map[string]any }
		do(t, "GET", g.gw+"/health/details", nil, bearer(known)...).json(t, &d) // behind auth
		for _, c := range d.Checks {
			if c["name"] == "postgres" {
				return c
			}
		}
		t.Fatalf("/health/details has no postgres check: %+v", d)
		return nil
	}
	if c := detail(); c["level"] != "high" || c["status"] != "pass" {
		t.Errorf("/health/details postgres check: %v", c)
	}

	pg.Stop()
	r := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(unknown)...)
	r.wantErr(t, 503, "service_unavailable_error", "auth_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("auth_unavailable without Retry-After")
	}
	if r := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(known)...); r.status != 200 {
		t.Errorf("a cached key while the database is down: %d %s", r.status, r.body)
	}
	if c, _ := g.Health().RunOnce(ctx).Check("postgres"); c.Status != health.StatusFail || c.LastError == "" {
		t.Errorf("postgres check with the database down: %+v", c)
	}
	if c := detail(); c["status"] != "fail" {
		t.Errorf("/health/details postgres check with the database down: %v", c)
	}
	ready := do(t, "GET", g.gw+"/health/ready", nil)
	var rr ReadyResponse
	ready.json(t, &rr)
	if ready.status != 200 || rr.Health != health.Degraded {
		t.Errorf("ready with the database down: %d %+v", ready.status, rr)
	}
	// The rows of the outage go to the spool (and the failed writes to the logs).
	if err := g.ten.Ledger.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := g.ten.Ledger.Stats(); st.Spooled == 0 {
		t.Errorf("ledger stats %+v: nothing spooled while the database was down", st)
	}
	logs := g.logs.String()
	if !strings.Contains(logs, "failed to connect") {
		t.Fatalf("no database error in the logs to check for the password: %s", tail(logs, 1000))
	}
	if leaks := testenv.SecretLeaks(logs, password); leaks != nil {
		t.Errorf("the database password reached the logs: %v", leaks)
	}
}

// The node key (between a gateway and its remote node) and the request's "user"
// never reach either server's logs, debug lines included.
func TestNodeKeyAndUserNeverLogged(t *testing.T) {
	nodeKey, user := randomSecret(t, "nk"), randomSecret(t, "user")
	node := start(t, setup{edit: func(c *config.Config) { c.Auth.Required, c.Auth.NodeKey = true, nodeKey }})
	gw := start(t, setup{models: []string{}, edit: func(c *config.Config) {
		c.Auth.NodeKey, c.Auth.APIKeys = nodeKey, []string{"client-key-of-the-test"}
		c.Upstreams = []config.Upstream{{Model: "tiny", URL: node.gw}}
	}})
	for _, stream := range []bool{false, true} {
		body := chatBody("tiny", 3, map[string]any{"user": user, "stream": stream})
		if r := post(t, gw.gw+"/v1/chat/completions", body, bearer("client-key-of-the-test")...); r.status != 200 {
			t.Fatalf("through the remote node (stream %v): %d %s", stream, r.status, r.body)
		}
	}
	// The node refuses a wrong node key, and logs that refusal too.
	if r := post(t, node.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(nodeKey+"x")...); r.status != 401 {
		t.Fatalf("a wrong node key: %d", r.status)
	}
	logs := gw.logs.String() + node.logs.String()
	if !strings.Contains(logs, `"status":200`) {
		t.Fatalf("no access log lines to check: %s", tail(logs, 500))
	}
	for name, secret := range map[string]string{"node key": nodeKey, "user": user} {
		if leaks := testenv.SecretLeaks(logs, secret); leaks != nil {
			t.Errorf("the %s reached the logs: %v", name, leaks)
		}
	}
}

// Tokens are charged in two steps: the estimate (body bytes / 4) at admission,
// visible in the answer's own x-ratelimit-remaining-tokens, then the difference to
// the real usage once the response is complete, visible in the next answer's.
func TestTPMChargedInTwoSteps(t *testing.T) {
	const tpm = 600 // refills 10 tokens a second
	g := start(t, setup{edit: func(c *config.Config) { c.Auth.Keys = []config.StaticKey{staticKey("tpm", "secret-tpm", nil, 0, tpm)} }})
	key := bearer("secret-tpm")
	remaining := func(r response) int {
		t.Helper()
		n, err := strconv.Atoi(r.header.Get("X-Ratelimit-Remaining-Tokens"))
		if r.status != 200 || err != nil || r.header.Get("X-Ratelimit-Limit-Tokens") != strconv.Itoa(tpm) {
			t.Fatalf("answer %d without token headers: %v %s", r.status, r.header, r.body)
		}
		return n
	}
	probe := func() int { return remaining(post(t, g.gw+"/tokenize", tokenizeBody("tiny"), key...)) } // costs no tokens
	if n := probe(); n != tpm {
		t.Fatalf("a fresh key has %d tokens left, want %d", n, tpm)
	}
	body := chatBody("tiny", 48, nil)
	var estimate int // the admission's estimate: the messages' text bytes / 4
	for _, m := range body["messages"].([]map[string]any) {
		estimate += len(m["content"].(string))
	}
	estimate /= 4
	sent := time.Now()
	r := post(t, g.gw+"/v1/chat/completions", body, key...)
	if n := remaining(r); n != tpm-estimate {
		t.Fatalf("the chat's own answer has %d tokens left, want %d - %d (the estimate)", n, tpm, estimate)
	}
	var out struct {
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		}
	}
	r.json(t, &out)
	used := out.Usage.TotalTokens
	if used <= estimate+10 {
		t.Fatalf("usage %d is too close to the estimate %d to tell the steps apart", used, estimate)
	}
	// The second step lands after the response: wait until the bucket shows more
	// than the estimate taken, then check it took exactly the usage (less what refilled).
	var after int
	waitFor(t, "the usage to be charged", func() bool { after = probe(); return after < tpm-estimate })
	refilled := int(time.Since(sent)*tpm/time.Minute) + 1
	if after < tpm-used || after > tpm-used+refilled {
		t.Errorf("%d tokens left after a request that used %d of %d (at most %d refilled since)", after, used, tpm, refilled)
	}
}

// With cache.shared and no Redis, the in-process cache answers one key's request
// from another key's entry; the hit runs no model and is a ledger row with zero
// tokens, the miss a row with the real usage.
func TestSharedInProcessCacheAndLedger(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	g := start(t, setup{
		edit: func(c *config.Config) {
			c.Postgres.URL = pg.URL()
			c.Auth.Keys = []config.StaticKey{staticKey("cache-a", "secret-shared-a", nil, 0, 0), staticKey("cache-b", "secret-shared-b", nil, 0, 0)}
			c.Cache = config.Cache{Enabled: true, Shared: true}
		},
	})
	svc := g.Group().Get("tiny")
	miss := post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 4, nil), bearer("secret-shared-a")...)
	if miss.status != 200 || miss.header.Get(rest.CacheHeader) != "miss" {
		t.Fatalf("first request: %d %q %s", miss.status, miss.header.Get(rest.CacheHeader), miss.body)
	}
	hit := cachedAnswer(t, svc, func() response { // key b, key a's entry
		return post(t, g.gw+"/v1/chat/completions", chatBody("tiny", 4, nil), bearer("secret-shared-b")...)
	})
	var a, b struct {
		Choices []struct{ Message struct{ Content string } }
	}
	miss.json(t, &a)
	hit.json(t, &b)
	if hit.status != 200 || len(b.Choices) != 1 || b.Choices[0].Message.Content != a.Choices[0].Message.Content {
		t.Fatalf("hit %d %s, stored %s", hit.status, hit.body, miss.body)
	}
	ctx := testCtx(t)
	if err := g.ten.Ledger.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows := func(key string) []postgres.UsageRecord {
		recs, err := g.ten.DB.UsageRecords(ctx, postgres.UsageFilter{KeyID: key}, 100)
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	if ra := rows("cache-a"); len(ra) != 1 || ra[0].StatusCode != 200 || ra[0].PromptTokens == 0 || ra[0].CompletionTokens != 4 {
		t.Errorf("the miss's ledger rows: %+v", ra)
	}
	rb := rows("cache-b")
	if len(rb) == 0 {
		t.Fatal("the hit has no ledger row")
	}
	last := rb[0] // a hit; earlier misses of b (before a's entry was stored) are real
	for _, r := range rb {
		if r.CreatedAt.After(last.CreatedAt) {
			last = r
		}
	}
	if last.StatusCode != 200 || last.PromptTokens != 0 || last.CompletionTokens != 0 || last.Model != "tiny" {
		t.Errorf("the hit's ledger row: %+v", last)
	}
}

// A client that hangs up on a non-streamed request to the gateway frees its slot:
// the generation is cancelled long before max_tokens, and the request is counted
// as 499.
func TestClientHangUpOnTheGateway(t *testing.T) {
	const model, maxTokens = "hangup", 400
	g := start(t, setup{models: []string{model}, service: service.Options{StepHook: func() { time.Sleep(10 * time.Millisecond) }}})
	sc, reg := g.Group().Get(model).Scheduler(), g.Registry()
	// The scheduler's counters are the process's: count from here.
	cancelled := map[string]string{"model": model, "finish": "cancelled"}
	cancelled0 := counter(t, reg, "hxp_generations_total", cancelled)
	tokens0 := counter(t, reg, "hxp_generated_tokens_total", map[string]string{"model": model})
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b, _ := json.Marshal(chatBody(model, maxTokens, nil))
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: hxp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	waitFor(t, "the request to run", func() bool { return sc.Stats().Running == 1 })
	conn.Close()
	waitFor(t, "the slot to be freed", func() bool { return sc.Stats().InFlight == 0 })
	waitFor(t, "the 499 to be counted", func() bool {
		return counter(t, reg, "hxp_requests_total", map[string]string{"model": model, "status": "499"}) == 1
	})
	if n := counter(t, reg, "hxp_generations_total", cancelled) - cancelled0; n != 1 {
		t.Errorf("%v generations cancelled, want 1", n)
	}
	if n := counter(t, reg, "hxp_generated_tokens_total", map[string]string{"model": model}) - tokens0; n >= maxTokens {
		t.Errorf("%v tokens generated for a client that left: the generation ran to max_tokens", n)
	}
	if !strings.Contains(g.logs.String(), `"status":499`) {
		t.Errorf("no access log line with status 499: %s", tail(g.logs.String(), 500))
	}
}

// During a shutdown with a request in flight, a request that arrives on a
// connection opened before it (keep-alive: the connection stays open) gets 503:
// /health says shutting_down, a model request shutting_down with Retry-After; the
// request in flight completes.
func TestShutdownAnswers503WhileARequestRuns(t *testing.T) {
	const model = "draining"
	var (
		mu   sync.Mutex
		gate chan struct{} // while set, every scheduler step waits for it to close
	)
	hook := func() {
		mu.Lock()
		g := gate
		mu.Unlock()
		if g != nil {
			<-g
		}
	}
	g := start(t, setup{models: []string{model}, service: service.Options{StepHook: hook}, grace: 30 * time.Second})
	mu.Lock()
	gate = make(chan struct{})
	mu.Unlock()
	release := sync.OnceFunc(func() {
		mu.Lock()
		close(gate)
		gate = nil
		mu.Unlock()
	})
	defer release()
	addr := strings.TrimPrefix(g.gw, "http://")

	// The request in flight: held in its first step until the 503s are seen.
	inflight := make(chan response, 1)
	go func() {
		b, _ := json.Marshal(chatBody(model, 4, nil))
		resp, err := http.Post(g.gw+"/v1/chat/completions", "application/json", bytes.NewReader(b))
		if err != nil {
			inflight <- response{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		inflight <- response{status: resp.StatusCode, body: body}
	}()
	sc := g.Group().Get(model).Scheduler()
	waitFor(t, "the request to reach the model", func() bool { return sc.Stats().InFlight == 1 })

	// Two connections open before the shutdown, a keep-alive one (it has had an answer) and
	// a new one, each with a request begun.
	health := "GET /health HTTP/1.1\r\nHost: hxp\r\n\r\n"
	keepAlive := testenv.Dial(t, addr)
	if resp, b := keepAlive.Do(t, health); resp.StatusCode != 200 {
		t.Fatalf("/health before the shutdown: %d %s", resp.StatusCode, b)
	}
	keepAlive.Begin(t, health, len(health)-2) // all but the blank line
	chat, _ := json.Marshal(chatBody(model, 2, nil))
	head := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: hxp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(chat))
	fresh := testenv.Dial(t, addr)
	fresh.Begin(t, head+string(chat), len(head)+10) // the head and some of the body

	done := make(chan error, 1)
	go func() { done <- g.Shutdown(30 * time.Second) }()
	waitFor(t, "the gateway to stop accepting", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	finish := func(c *testenv.Conn) response {
		t.Helper()
		resp, body := c.Finish(t)
		return response{status: resp.StatusCode, header: resp.Header, body: body}
	}
	h := finish(keepAlive)
	var hr rest.HealthResponse
	h.json(t, &hr)
	if h.status != 503 || hr.Status != "shutting_down" {
		t.Errorf("/health during the shutdown: %d %s", h.status, h.body)
	}
	r := finish(fresh)
	r.wantErr(t, 503, "service_unavailable_error", "shutting_down")
	if r.header.Get("Retry-After") == "" {
		t.Error("shutting_down without Retry-After")
	}

	release()
	if r := <-inflight; r.status != 200 || !strings.Contains(string(r.body), `"finish_reason":"length"`) {
		t.Errorf("the request in flight: %d %s", r.status, r.body)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
