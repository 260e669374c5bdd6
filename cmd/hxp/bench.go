package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/hxp-ai/hxp/bench/loadgen"
)

func init() {
	register(command{
		name:    "bench",
		summary: "load a local OpenAI-compatible endpoint: latency, TTFT, ITL, tok/s",
		run:     runBench,
	})
}

var benchPaths = map[string]string{
	"chat":        "/v1/chat/completions",
	"completions": "/v1/completions",
	"embeddings":  "/v1/embeddings",
	"tokenize":    "/tokenize",
}

func runBench(args []string) error {
	fs := newFlags("bench", "--model NAME [--url http://127.0.0.1:8000] [--rate N | --concurrency N] [--duration D | --requests N] [flags]")
	base := fs.String("url", "http://127.0.0.1:8000", "server base URL (loopback only)")
	endpoint := fs.String("endpoint", "chat", "chat, completions, embeddings or tokenize")
	model := fs.String("model", "", "model to request (required unless --body-file)")
	prompt := fs.String("prompt", "Write a short story about a lighthouse keeper.", "prompt text")
	maxTokens := fs.Int("max-tokens", 64, "max_tokens of generation requests")
	temperature := fs.Float64("temperature", 0, "temperature of generation requests")
	stream := fs.Bool("stream", true, "stream generation requests (measures TTFT and ITL)")
	bodyFile := fs.String("body-file", "", "send this JSON body instead of one built from the flags")
	concurrency := fs.Int("concurrency", 1, "closed-loop workers (when --rate is 0)")
	rate := fs.Float64("rate", 0, "open-loop requests per second (0: closed loop)")
	duration := fs.Duration("duration", 0, "run this long (default 10s unless --requests)")
	requests := fs.Int("requests", 0, "send this many requests")
	timeout := fs.Duration("timeout", 5*time.Minute, "per-request timeout")
	key := fs.String("key", "", "API key (default $HXP_API_KEY)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	path, ok := benchPaths[*endpoint]
	if !ok {
		return fmt.Errorf("%w: --endpoint %q is not one of chat, completions, embeddings, tokenize", errUsage, *endpoint)
	}
	var body []byte
	if *bodyFile != "" {
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			return err
		}
		if !json.Valid(b) {
			return fmt.Errorf("%w: %s is not JSON", errUsage, *bodyFile)
		}
		body = b
	} else {
		if *model == "" {
			return fmt.Errorf("%w: --model is required", errUsage)
		}
		req := map[string]any{"model": *model}
		switch *endpoint {
		case "chat":
			req["messages"] = []map[string]string{{"role": "user", "content": *prompt}}
		case "completions":
			req["prompt"] = *prompt
		case "embeddings":
			req["input"] = *prompt
		case "tokenize":
			req["prompt"] = *prompt
		}
		if *endpoint == "chat" || *endpoint == "completions" {
			req["max_tokens"] = *maxTokens
			req["temperature"] = *temperature
			if *stream {
				req["stream"] = true
				req["stream_options"] = map[string]bool{"include_usage": true}
			}
		}
		body, _ = json.Marshal(req)
	}
	if *duration == 0 && *requests == 0 {
		*duration = 10 * time.Second
	}
	if *key == "" {
		*key = os.Getenv("HXP_API_KEY")
	}
	hdr := map[string]string{}
	if *key != "" {
		hdr["Authorization"] = "Bearer " + *key
	}
	c, err := loadgen.NewClient(loadgen.Config{URL: strings.TrimSuffix(*base, "/") + path, Body: body, Headers: hdr,
		Concurrency: *concurrency, Rate: *rate, Duration: *duration, Requests: *requests, Timeout: *timeout})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	mode := fmt.Sprintf("%d workers", *concurrency)
	if *rate > 0 {
		mode = fmt.Sprintf("%.1f req/s", *rate)
	}
	fmt.Fprintf(os.Stderr, "hxp bench: POST %s%s, %s\n", strings.TrimSuffix(*base, "/"), path, mode)
	res := c.Run(ctx)
	fmt.Print(res.Summary())
	if res.OK == 0 {
		return fmt.Errorf("no request succeeded")
	}
	return nil
}
