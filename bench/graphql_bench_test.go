package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/transport/graphql"
	"github.com/hxp-ai/hxp/transport/rest"
)

// BenchmarkGraphQLvsREST measures the added latency of the GraphQL front end against
// REST for a short completion (4 tokens at temperature 0 on the tiny model): both on
// one gateway over loopback (GraphQL mounted at /graphql as the app mounts it), in
// front of the same service, requests alternating so that both see the same machine
// load. It reports each front end's p50 and p99 and the ratios (GraphQL / REST) of
// the same run.
func BenchmarkGraphQLvsREST(b *testing.B) {
	ctx := context.Background()
	core := tinyCore(b, 2, 256)
	log := zerolog.New(io.Discard) // the access log is written, then dropped

	gql := graphql.New(core, graphql.Options{Log: log})
	l := rest.NewListener("gateway", rest.New(core, rest.Options{Log: log, Routes: gql.Routes()}).Handler(),
		rest.HTTPConfig{ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxBodyBytes: 1 << 20}, zerolog.Nop())
	if err := l.Listen("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	l.Serve(nil)
	defer func() { _ = l.Shutdown(ctx) }()
	base := "http://" + l.Addr().String()
	restBody := []byte(`{"model":"tiny","prompt":"the quick brown fox","max_tokens":4,"temperature":0}`)
	gqlBody := []byte(`{"query":"mutation { completion(input: {model: \"tiny\", prompt: \"the quick brown fox\", maxTokens: 4, temperature: 0}) { choices { text finishReason } usage { promptTokens completionTokens } } }"}`)

	client := &http.Client{}
	send := func(path string, body []byte) time.Duration {
		start := time.Now()
		resp, err := client.Post(base+path, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(out), `"errors"`) {
			b.Fatalf("%s: %d %s", path, resp.StatusCode, out)
		}
		return time.Since(start)
	}
	send("/v1/completions", restBody) // warm both paths (connections, prompt cache)
	send(graphql.Path, gqlBody)
	var restLat, gqlLat Latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		restLat.Add(send("/v1/completions", restBody))
		gqlLat.Add(send(graphql.Path, gqlBody))
	}
	b.StopTimer()
	for _, p := range []struct {
		name string
		pct  float64
	}{{"p50", 50}, {"p99", 99}} {
		r, g := restLat.Percentile(p.pct), gqlLat.Percentile(p.pct)
		b.ReportMetric(ms(r), "rest_"+p.name+"_ms")
		b.ReportMetric(ms(g), "graphql_"+p.name+"_ms")
		b.ReportMetric(float64(g)/float64(r), "graphql/rest_"+p.name)
	}
}
