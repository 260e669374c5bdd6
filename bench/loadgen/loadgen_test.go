package loadgen

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestPercentile(t *testing.T) {
	var d Durations
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Millisecond)
	}
	if d.Percentile(50) != 50*time.Millisecond || d.Percentile(99) != 99*time.Millisecond || d.Percentile(100) != 100*time.Millisecond {
		t.Fatalf("p50 %s p99 %s max %s", d.Percentile(50), d.Percentile(99), d.Percentile(100))
	}
	if (Durations{}).Percentile(50) != 0 {
		t.Fatal("empty")
	}
}

func TestCheckLoopback(t *testing.T) {
	for url, ok := range map[string]bool{
		"http://127.0.0.1:8000/v1": true, "http://localhost:1": true, "https://[::1]:8443/x": true, "http://127.3.2.1": true,
		"http://10.0.0.1:8000": false, "http://example.com": false, "ftp://127.0.0.1": false, "127.0.0.1:8000": false,
	} {
		if err := CheckLoopback(url); (err == nil) != ok {
			t.Errorf("%s: %v", url, err)
		}
	}
}

// serveSSE answers every request with a three-token stream and a usage chunk.
func serveSSE(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for _, tok := range []string{"a", "b", "c"} {
				w.WriteString(`data: {"choices":[{"index":0,"delta":{"content":"` + tok + `"}}]}` + "\n\n")
				w.Flush()
				time.Sleep(time.Millisecond)
			}
			w.WriteString(`data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}` + "\n\ndata: [DONE]\n\n")
			w.Flush()
		})
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

func TestRunStreamsClosedAndOpenLoop(t *testing.T) {
	base := serveSSE(t)
	c, err := NewClient(Config{URL: base + "/v1/chat/completions", Body: []byte(`{"stream":true}`), Concurrency: 3, Requests: 12})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Run(context.Background())
	if r.Sent != 12 || r.OK != 12 || r.Tokens != 36 || len(r.TTFT) != 12 || len(r.ITL) != 24 || r.Status[200] != 12 {
		t.Fatalf("closed loop: %+v", r)
	}
	o, _ := NewClient(Config{URL: base + "/x", Body: []byte(`{}`), Rate: 200, Requests: 20})
	if r := o.Run(context.Background()); r.Sent != 20 || r.OK != 20 || r.Dropped != 0 {
		t.Fatalf("open loop: %+v", r)
	}
	if _, err := NewClient(Config{URL: base}); err == nil {
		t.Fatal("a run without a bound was accepted")
	}
}

// TestBodies: with Bodies set, the requests of a run send each body in turn.
func TestBodies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		seen[string(ctx.PostBody())]++
		mu.Unlock()
		ctx.SetBodyString(`{"usage":{"completion_tokens":1}}`)
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	c, err := NewClient(Config{URL: "http://" + ln.Addr().String() + "/x", Bodies: [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`), []byte(`{"c":3}`)},
		Concurrency: 2, Requests: 9})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Run(context.Background()); r.OK != 9 || r.Tokens != 9 {
		t.Fatalf("run: %+v", r)
	}
	if seen[`{"a":1}`] != 3 || seen[`{"b":2}`] != 3 || seen[`{"c":3}`] != 3 || len(seen) != 3 {
		t.Errorf("bodies received: %v, want each of the 3 three times", seen)
	}
}
