package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	grpct "github.com/hxp-ai/hxp/transport/grpc"
	"github.com/hxp-ai/hxp/transport/grpc/hxpv1"
	"github.com/hxp-ai/hxp/transport/rest"
)

// BenchmarkGRPCvsREST measures the added latency of the gRPC front end against REST
// for a short completion (4 tokens at temperature 0 on the tiny model), both over
// loopback in front of the same service, requests alternating so that both see the
// same machine load. It reports each front end's p50 and p99 and the ratios
// (gRPC / REST) of the same run.
func BenchmarkGRPCvsREST(b *testing.B) {
	ctx := context.Background()
	core := tinyCore(b, 2, 256)
	log := zerolog.New(io.Discard) // both access logs are written, then dropped

	l := rest.NewListener("tiny", rest.New(core, rest.Options{Log: log}).Handler(),
		rest.HTTPConfig{ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxBodyBytes: 1 << 20}, zerolog.Nop())
	if err := l.Listen("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	l.Serve(nil)
	defer func() { _ = l.Shutdown(ctx) }()
	url := "http://" + l.Addr().String() + "/v1/completions"
	body := []byte(`{"model":"tiny","prompt":"the quick brown fox","max_tokens":4,"temperature":0}`)

	gs := grpct.New(core, grpct.Options{Log: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	defer func() { _ = gs.Shutdown(ctx) }()
	conn, err := gogrpc.NewClient(ln.Addr().String(), gogrpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	api := hxpv1.NewInferenceClient(conn)
	maxTok, temp := int32(4), 0.0
	req := &hxpv1.CompleteRequest{Model: "tiny", Prompt: []*hxpv1.Prompt{{Prompt: &hxpv1.Prompt_Text{Text: "the quick brown fox"}}},
		MaxTokens: &maxTok, Temperature: &temp}

	client := &http.Client{}
	viaREST := func() time.Duration {
		start := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("REST: %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	viaGRPC := func() time.Duration {
		start := time.Now()
		if _, err := api.Complete(ctx, req); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	viaREST() // warm both paths (connections, prompt cache)
	viaGRPC()
	var restLat, grpcLat Latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		restLat.Add(viaREST())
		grpcLat.Add(viaGRPC())
	}
	b.StopTimer()
	for _, p := range []struct {
		name string
		pct  float64
	}{{"p50", 50}, {"p99", 99}} {
		r, g := restLat.Percentile(p.pct), grpcLat.Percentile(p.pct)
		b.ReportMetric(ms(r), "rest_"+p.name+"_ms")
		b.ReportMetric(ms(g), "grpc_"+p.name+"_ms")
		b.ReportMetric(float64(g)/float64(r), "grpc/rest_"+p.name)
	}
}
