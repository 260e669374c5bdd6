// Package loadgen is HXP's HTTP load generator for OpenAI-compatible endpoints, used
// by `hxp bench` and the gateway overhead benchmark. It sends one request body either
// from a fixed number of workers (closed loop) or at a fixed rate (open loop), bounded
// by a duration or a request count, and measures latency, and for streams the time to
// first token and the inter-token latency. It only talks to loopback addresses: it is
// a benchmark, not a traffic generator for other people's servers.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Config describes one load run.
type Config struct {
	// URL is the endpoint, e.g. http://127.0.0.1:8000/v1/chat/completions.
	URL string
	// Body is the JSON body sent with every request.
	Body []byte
	// Bodies, when set, replaces Body: request i sends Bodies[i % len(Bodies)] (different
	// prompts for concurrent requests, so that no server reuses one's prompt for another).
	Bodies [][]byte
	// Headers are sent with every request (Authorization, ...).
	Headers map[string]string
	// Concurrency is the number of closed-loop workers (each sends its next request when
	// the last one is complete); used when Rate is 0. Default 1.
	Concurrency int
	// Rate is the open-loop request rate per second: requests start on schedule
	// whether or not earlier ones are complete (at most MaxInflight at once).
	Rate float64
	// MaxInflight bounds the requests in flight at a fixed rate (default 1024); a
	// request that would exceed it counts as dropped.
	MaxInflight int
	// Duration bounds the run; Requests bounds it by count. One of them must be set.
	Duration time.Duration
	// Requests is the number of requests to send (0: until Duration).
	Requests int
	// Timeout bounds each request (default 5m).
	Timeout time.Duration
}

// Result is what a run measured.
type Result struct {
	// Sent counts the requests sent; OK those answered 2xx completely.
	Sent, OK int
	// Dropped counts open-loop requests not sent because MaxInflight were in flight.
	Dropped int
	// Status counts the answers per HTTP status (0: transport error).
	Status map[int]int
	// Errors holds up to 10 distinct error descriptions.
	Errors []string
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
	// Latency is the full request time of each successful request.
	Latency Durations
	// TTFT is each successful stream's time to its first content event.
	TTFT Durations
	// ITL holds the gaps between consecutive content events of streams.
	ITL Durations
	// Tokens counts generated tokens (usage.completion_tokens when reported, otherwise
	// content events of streams).
	Tokens int
}

// Rate is the achieved rate of successful requests per second.
func (r Result) Rate() float64 { return float64(r.OK) / r.Elapsed.Seconds() }

// TokensPerSecond is the generated tokens per second of wall time.
func (r Result) TokensPerSecond() float64 { return float64(r.Tokens) / r.Elapsed.Seconds() }

// Durations are latency samples.
type Durations []time.Duration

// Percentile returns the p-th percentile (0..100, nearest rank), or 0 when empty.
func (d Durations) Percentile(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append(Durations(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p/100*float64(len(s)) + 0.5)
	return s[min(max(i-1, 0), len(s)-1)]
}

// Merge adds another result's counts and samples (elapsed times add up).
func (r *Result) Merge(o Result) {
	r.Sent += o.Sent
	r.OK += o.OK
	r.Dropped += o.Dropped
	if r.Status == nil {
		r.Status = map[int]int{}
	}
	for k, v := range o.Status {
		r.Status[k] += v
	}
	for _, e := range o.Errors {
		r.addError(e)
	}
	r.Elapsed += o.Elapsed
	r.Latency = append(r.Latency, o.Latency...)
	r.TTFT = append(r.TTFT, o.TTFT...)
	r.ITL = append(r.ITL, o.ITL...)
	r.Tokens += o.Tokens
}

func (r *Result) addError(e string) {
	for _, x := range r.Errors {
		if x == e {
			return
		}
	}
	if len(r.Errors) < 10 {
		r.Errors = append(r.Errors, e)
	}
}

// Summary is a one-paragraph report.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "requests %d ok %d", r.Sent, r.OK)
	if r.Dropped > 0 {
		fmt.Fprintf(&b, " dropped %d", r.Dropped)
	}
	fmt.Fprintf(&b, " in %s (%.1f req/s)\n", r.Elapsed.Round(time.Millisecond), r.Rate())
	codes := make([]int, 0, len(r.Status))
	for c := range r.Status {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		fmt.Fprintf(&b, "  status %d: %d\n", c, r.Status[c])
	}
	line := func(name string, d Durations) {
		if len(d) > 0 {
			fmt.Fprintf(&b, "  %-8s p50 %-10s p90 %-10s p99 %-10s max %s\n", name, ms(d.Percentile(50)), ms(d.Percentile(90)),
				ms(d.Percentile(99)), ms(d.Percentile(100)))
		}
	}
	line("latency", r.Latency)
	line("ttft", r.TTFT)
	line("itl", r.ITL)
	if r.Tokens > 0 {
		fmt.Fprintf(&b, "  tokens %d (%.1f tok/s)\n", r.Tokens, r.TokensPerSecond())
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d.Nanoseconds())/1e6) }

// CheckLoopback returns an error unless rawURL is http(s) to a loopback address.
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("loadgen: %q is not an http(s) URL", rawURL)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("loadgen: %s is not a loopback address; hxp bench only loads servers on this machine", host)
	}
	return nil
}

// Client sends the requests of runs against one endpoint; reuse it across runs to
// keep connections warm.
type Client struct {
	cfg    Config
	hc     *fasthttp.HostClient
	stream bool
	sent   atomic.Uint64 // requests started, to pick from Bodies
}

// NewClient checks cfg and prepares its connection pool.
func NewClient(cfg Config) (*Client, error) {
	if err := CheckLoopback(cfg.URL); err != nil {
		return nil, err
	}
	if cfg.Duration <= 0 && cfg.Requests <= 0 {
		return nil, errors.New("loadgen: set a duration or a request count")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 1024
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	u, _ := url.Parse(cfg.URL)
	addr := u.Host
	if u.Port() == "" {
		addr += map[string]string{"http": ":80", "https": ":443"}[u.Scheme]
	}
	var probe struct {
		Stream bool `json:"stream"`
	}
	if len(cfg.Bodies) > 0 {
		cfg.Body = cfg.Bodies[0]
	}
	_ = json.Unmarshal(cfg.Body, &probe)
	return &Client{cfg: cfg, stream: probe.Stream, hc: &fasthttp.HostClient{
		Addr: addr, IsTLS: u.Scheme == "https", MaxConns: cfg.MaxInflight + cfg.Concurrency,
		StreamResponseBody: true, ReadTimeout: cfg.Timeout,
	}}, nil
}

// Run runs the load of c's config until its duration or count is reached or ctx ends.
func (c *Client) Run(ctx context.Context) Result {
	if c.cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Duration)
		defer cancel()
	}
	var mu sync.Mutex
	res := Result{Status: map[int]int{}}
	record := func(s sample) {
		mu.Lock()
		defer mu.Unlock()
		res.Status[s.status]++
		if s.err != "" {
			res.addError(s.err)
			return
		}
		res.OK++
		res.Latency = append(res.Latency, s.latency)
		if s.ttft > 0 {
			res.TTFT = append(res.TTFT, s.ttft)
		}
		res.ITL = append(res.ITL, s.itl...)
		res.Tokens += s.tokens
	}
	var wg sync.WaitGroup
	start := time.Now()
	budget := c.cfg.Requests
	if c.cfg.Rate > 0 {
		interval := time.Duration(float64(time.Second) / c.cfg.Rate)
		sem := make(chan struct{}, c.cfg.MaxInflight)
		next := start
		for i := 0; budget == 0 || i < budget; i++ {
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
			}
			if ctx.Err() != nil {
				break
			}
			next = next.Add(interval)
			res.Sent++
			select {
			case sem <- struct{}{}:
			default:
				res.Dropped++
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				record(c.one())
				<-sem
			}()
		}
	} else {
		var sentMu sync.Mutex
		take := func() bool {
			sentMu.Lock()
			defer sentMu.Unlock()
			if ctx.Err() != nil || budget > 0 && res.Sent >= budget {
				return false
			}
			res.Sent++
			return true
		}
		for w := 0; w < c.cfg.Concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for take() {
					record(c.one())
				}
			}()
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// sample is one request's measurements.
type sample struct {
	status  int
	err     string
	latency time.Duration
	ttft    time.Duration
	itl     []time.Duration
	tokens  int
}

// one sends one request and reads its answer to the end.
func (c *Client) one() sample {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.cfg.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	for k, v := range c.cfg.Headers {
		req.Header.Set(k, v)
	}
	reqBody := c.cfg.Body
	if n := uint64(len(c.cfg.Bodies)); n > 0 {
		reqBody = c.cfg.Bodies[(c.sent.Add(1)-1)%n]
	}
	req.SetBodyRaw(reqBody)
	start := time.Now()
	if err := c.hc.DoTimeout(req, resp, c.cfg.Timeout); err != nil {
		return sample{err: err.Error()}
	}
	s := sample{status: resp.StatusCode()}
	body := resp.BodyStream()
	if body == nil {
		body = bytes.NewReader(resp.Body())
	}
	defer resp.CloseBodyStream()
	if s.status/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(body, 300))
		s.err = fmt.Sprintf("HTTP %d: %s", s.status, bytes.TrimSpace(b))
		return s
	}
	if bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream")) {
		c.readStream(body, start, &s)
	} else {
		b, err := io.ReadAll(body)
		if err != nil {
			s.err = err.Error()
			return s
		}
		s.tokens = completionTokens(b)
	}
	s.latency = time.Since(start)
	return s
}

// readStream reads SSE events, timing the content events.
func (c *Client) readStream(body io.Reader, start time.Time, s *sample) {
	br := bufio.NewReaderSize(body, 16<<10)
	var last time.Time
	events, usageTokens := 0, -1
	for {
		line, err := br.ReadBytes('\n')
		if p, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data: ")); ok && !bytes.Equal(p, []byte("[DONE]")) {
			now := time.Now()
			if bytes.Contains(p, []byte(`"error"`)) && bytes.HasPrefix(p, []byte(`{"error"`)) {
				s.err = "stream error: " + string(p)
				return
			}
			if t := completionTokens(p); t > 0 {
				usageTokens = t
			}
			if bytes.Contains(p, []byte(`"content":"`)) || bytes.Contains(p, []byte(`"text":"`)) {
				if events == 0 {
					s.ttft = now.Sub(start)
				} else {
					s.itl = append(s.itl, now.Sub(last))
				}
				last = now
				events++
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.err = err.Error()
			}
			break
		}
	}
	s.tokens = events
	if usageTokens >= 0 {
		s.tokens = usageTokens
	}
}

// completionTokens reads usage.completion_tokens from a JSON body (0 without usage).
func completionTokens(b []byte) int {
	if !bytes.Contains(b, []byte(`"completion_tokens"`)) {
		return 0
	}
	var v struct {
		Usage *struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(b, &v) != nil || v.Usage == nil {
		return 0
	}
	return v.Usage.CompletionTokens
}
