package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// BenchmarkHTTPOverhead measures what the HTTP layer adds to a generation: each
// iteration runs the same greedy 16-token chat request straight through the service
// (the baseline) and through a model listener, non-streamed and streamed, alternately,
// and reports each variant's time and its ratio to the baseline.
func BenchmarkHTTPOverhead(b *testing.B) {
	svc := service.New(modelConfig(b, "bench"), testLog(), service.Options{})
	if err := svc.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	url := serveModel(b, svc, Options{})
	body, _ := json.Marshal(chatBody("bench", 16, nil))
	streamBody, _ := json.Marshal(chatBody("bench", 16, map[string]any{"stream": true}))
	p, err := openai.DecodeChat(body, openai.Limits{MaxN: 1})
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]engine.ChatMessage, len(p.Messages))
	for i, m := range p.Messages {
		msgs[i] = engine.ChatMessage{Role: m.Role, Content: m.Content}
	}
	text, err := svc.RenderChat(msgs)
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{}
	postBody := func(data []byte) {
		resp, err := client.Post(url+"/v1/chat/completions", "application/json", bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	var direct, plain, stream time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		toks, err := svc.Tokenize(text, true, true)
		if err != nil {
			b.Fatal(err)
		}
		ch, err := svc.Submit(context.Background(), sched.Request{Prompt: toks, MaxTokens: 16, Sampling: p.Sampling})
		if err != nil {
			b.Fatal(err)
		}
		for range ch {
		}
		t1 := time.Now()
		postBody(body)
		t2 := time.Now()
		postBody(streamBody)
		t3 := time.Now()
		direct += t1.Sub(t0)
		plain += t2.Sub(t1)
		stream += t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(direct.Microseconds())/n, "direct-µs/op")
	b.ReportMetric(float64(plain.Microseconds())/n, "http-µs/op")
	b.ReportMetric(float64(stream.Microseconds())/n, "sse-µs/op")
	b.ReportMetric(float64(plain)/float64(direct), "http/direct")
	b.ReportMetric(float64(stream)/float64(direct), "sse/direct")
}
