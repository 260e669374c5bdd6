package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/bench/loadgen"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/route"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
	"github.com/hxp-ai/hxp/transport/rest"
)

// BenchmarkGatewayOverhead measures what the gateway adds to a request: key auth
// (PostgreSQL key, cached), scope, RPM/TPM limits in Redis (leased ahead of demand,
// limits.Leased: most requests are admitted from units already taken), the usage ledger
// (async COPY to PostgreSQL), the router and, for the scale-out path, the hop to a
// remote node. Five paths serve the same model service:
//
//	direct    the model's own listener, no links (the baseline)
//	gateway   the gateway with every tenancy link, routing to the local service
//	gw-exact  the same with leasing off: one Redis call per request (lease_horizon: 0)
//	gw-nordb  the same without Redis: limits in the process (keys, ledger in PostgreSQL)
//	remote    the gateway routing to the model listener over HTTP (another node)
//
// At a fixed rate the paths are loaded at the same time, each at that rate, so that
// they share the machine's noise. Reported: p50/p99 latency of each, the latency each
// gateway path adds, and the highest rate each path holds alone (achieved >= 97% of
// the offered rate, no errors). Client, servers, PostgreSQL and Redis share the
// machine's cores.
//
//	go test -run '^$' -bench GatewayOverhead -benchtime 1x ./bench/
func BenchmarkGatewayOverhead(b *testing.B) {
	ctx := context.Background()
	cfg := config.Model{Name: "tiny", Path: testmodel.Path(b, "tiny"), CPUCores: 1, Parallel: 8, CtxPerSeq: 256, Batch: 256,
		QueueSize: 1024, TargetLatencyMS: 1000}
	c := &config.Config{Models: []config.Model{cfg}}
	c.ApplyDefaults(1)
	svc := service.New(c.Models[0], zerolog.Nop(), service.Options{})
	if err := svc.Load(ctx); err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	log := zerolog.New(io.Discard) // the access log is written, then dropped
	hc := rest.HTTPConfig{ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxBodyBytes: 1 << 20}
	listen := func(name string, h *rest.Server) string {
		l := rest.NewListener(name, h.Handler(), hc, zerolog.Nop())
		if err := l.Listen("127.0.0.1:0"); err != nil {
			b.Fatal(err)
		}
		l.Serve(nil)
		b.Cleanup(func() { _ = l.Shutdown(ctx) })
		return "http://" + l.Addr().String()
	}
	direct := listen("tiny", rest.New(infer.NewLocal(svc), rest.Options{Log: log, DefaultModel: "tiny"}))

	pgURL := testenv.SharedPostgres(b).URL()
	ten, err := tenancy.Open(ctx, tenancy.Config{
		Auth:     config.KeyAuth{Required: true, CacheTTL: config.Duration(time.Minute)},
		Postgres: config.Postgres{URL: pgURL, SpoolPath: filepath.Join(b.TempDir(), "usage.spool")},
		Redis:    config.Redis{URL: testenv.SharedRedis(b).URL(), FailMode: "open", Timeout: config.Duration(250 * time.Millisecond)},
		Log:      log,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer ten.Close(ctx)
	// Limits high enough never to refuse: they are checked on every request.
	secret, _, err := ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "bench", RPM: 1 << 30, TPM: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	// The same tenancy with leasing off: one Redis call decides every request (the
	// exact limiter leasing replaces; measured beside it in the same run).
	exact := config.Duration(0)
	tenExact, err := tenancy.Open(ctx, tenancy.Config{
		Auth:     config.KeyAuth{Required: true, CacheTTL: config.Duration(time.Minute)},
		Postgres: config.Postgres{URL: pgURL, SpoolPath: filepath.Join(b.TempDir(), "usage3.spool")},
		Redis: config.Redis{URL: testenv.SharedRedis(b).URL(), FailMode: "open", Timeout: config.Duration(250 * time.Millisecond),
			LeaseHorizon: &exact},
		Log: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer tenExact.Close(ctx)
	// The same tenancy without Redis: limits in the process, keys and ledger in
	// PostgreSQL.
	tenNoRedis, err := tenancy.Open(ctx, tenancy.Config{
		Auth:     config.KeyAuth{Required: true, CacheTTL: config.Duration(time.Minute)},
		Postgres: config.Postgres{URL: pgURL, SpoolPath: filepath.Join(b.TempDir(), "usage2.spool")},
		Log:      log,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer tenNoRedis.Close(ctx)
	gateway := func(ten *tenancy.Tenancy, add func(p *route.Pool) error) string {
		pool := route.NewPool(route.Options{HealthInterval: 5 * time.Second})
		if err := add(pool); err != nil {
			b.Fatal(err)
		}
		pool.Start()
		b.Cleanup(pool.Close)
		g := rest.New(ten.Admit(ten.Cache(pool)), rest.Options{Log: log, Auth: ten, Routes: rest.AdminRoutes(ten.Admin(), log)})
		return listen("gateway", g)
	}
	addLocal := func(p *route.Pool) error { return p.AddLocal(infer.NewLocal(svc)) }
	local := gateway(ten, addLocal)
	perCall := gateway(tenExact, addLocal)
	noRedis := gateway(tenNoRedis, addLocal)
	rem, err := route.NewRemote(route.RemoteOptions{URL: direct, Models: []string{"tiny"}})
	if err != nil {
		b.Fatal(err)
	}
	remote := gateway(ten, func(p *route.Pool) error { return p.AddRemote("tiny", rem) })

	paths := []struct{ name, base string }{{"direct", direct}, {"gateway", local}, {"gw-exact", perCall}, {"gw-nordb", noRedis}, {"remote", remote}}
	auth := map[string]string{"Authorization": "Bearer " + secret}
	tokenize, _ := json.Marshal(map[string]any{"model": "tiny", "prompt": "The quick brown fox jumps over the lazy dog."})
	chat, _ := json.Marshal(map[string]any{"model": "tiny", "max_tokens": 1, "temperature": 0.7,
		"messages": []map[string]string{{"role": "user", "content": "Say one word."}}})

	client := func(base, endpoint string, body []byte, rate float64, d time.Duration) *loadgen.Client {
		cl, err := loadgen.NewClient(loadgen.Config{URL: base + endpoint, Body: body, Headers: auth, Rate: rate,
			Duration: d, MaxInflight: 512, Timeout: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		cl.Run(ctx) // warm the connections
		return cl
	}
	// together loads every path at once, each at rate, so that they share the same
	// noise of the machine, for rounds runs of one second.
	together := func(endpoint string, body []byte, rate float64, rounds int) []loadgen.Result {
		out := make([]loadgen.Result, len(paths))
		clients := make([]*loadgen.Client, len(paths))
		for i, p := range paths {
			clients[i] = client(p.base, endpoint, body, rate, time.Second)
		}
		for r := 0; r < rounds; r++ {
			var wg sync.WaitGroup
			res := make([]loadgen.Result, len(paths))
			for i := range paths {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i] = clients[i].Run(ctx)
				}()
			}
			wg.Wait()
			for i := range paths {
				out[i].Merge(res[i])
			}
		}
		return out
	}
	report := func(label string, res []loadgen.Result) {
		var lines []string
		for i, p := range paths {
			r := res[i]
			p50, p99 := r.Latency.Percentile(50), r.Latency.Percentile(99)
			line := fmt.Sprintf("%-8s %-8s ok %5d/%-5d p50 %7.3fms p99 %7.3fms", label, p.name, r.OK, r.Sent, msf(p50), msf(p99))
			if i > 0 {
				add50, add99 := p50-res[0].Latency.Percentile(50), p99-res[0].Latency.Percentile(99)
				line += fmt.Sprintf("  added p50 %+.3fms p99 %+.3fms", msf(add50), msf(add99))
				b.ReportMetric(msf(add50), label+"_"+p.name+"_added_p50_ms")
				b.ReportMetric(msf(add99), label+"_"+p.name+"_added_p99_ms")
			}
			if r.OK != r.Sent {
				line += fmt.Sprintf("  errors %v %v", r.Status, r.Errors)
			}
			lines = append(lines, line)
		}
		b.Log("\n" + strings.Join(lines, "\n"))
	}

	for i := 0; i < b.N; i++ {
		report("tokenize", together("/tokenize", tokenize, 200, 15))
		report("chat", together("/v1/chat/completions", chat, 25, 10))
		// The highest tokenize rate each path holds alone: achieved >= 97% of the offered
		// rate, no errors, nothing dropped.
		var line []string
		for _, p := range paths {
			held := 0.0
			for _, rate := range []float64{1000, 2000, 3000, 4000, 5000, 6000, 8000} {
				r := client(p.base, "/tokenize", tokenize, rate, 2*time.Second).Run(ctx)
				if r.OK != r.Sent || r.Dropped > 0 || r.Rate() < 0.97*rate {
					break
				}
				held = rate
			}
			line = append(line, fmt.Sprintf("%s %.0f req/s", p.name, held))
			b.ReportMetric(held, "held_"+p.name+"_req/s")
		}
		b.Log("highest tokenize rate held: " + strings.Join(line, ", "))
	}
}

func msf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
