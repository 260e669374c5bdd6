package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// RemoteOptions configure a Remote upstream. Zero fields take the defaults.
type RemoteOptions struct {
	// URL is the node's base URL (http:// or https://host:port), its gateway or a
	// model's own listener.
	URL string
	// Models are the models requested from this node.
	Models []string
	// APIKey is sent as the bearer token: a node-to-node key that the remote node
	// accepts as internal (no limits, no ledger there). Never the client's key.
	APIKey string
	// Timeout bounds a whole request, a streamed response included (default 10m).
	Timeout time.Duration
	// ConnectTimeout bounds dialing the node (default 2s).
	ConnectTimeout time.Duration
	// WriteTimeout bounds each write of a stream to the client (default 10m).
	WriteTimeout time.Duration
	// MaxConns bounds the connections to the node (default 1024).
	MaxConns int
	// MaxResponseBytes bounds a non-streamed response (default 64 MiB).
	MaxResponseBytes int
	// TLS configures https URLs (nil: the system roots).
	TLS *tls.Config
}

// Remote is the Upstream of another hxp node, reached over HTTP: the gateway sends
// the client's request on (with the node key instead of the client's key, and the
// model it routed to) and relays the answer, streams event by event. Until the first
// byte of a response body has arrived nothing is sent to the client, so a failed
// attempt (connection refused or reset, timeout, 5xx) leaves the response to the
// balancer to retry elsewhere; after that the stream is the client's.
type Remote struct {
	opts   RemoteOptions
	base   string // scheme://host:port plus any path prefix, without a trailing slash
	client *fasthttp.HostClient

	mu    sync.Mutex
	cards map[string]ModelCard // from the last health checks
}

// NewRemote returns the upstream of the node at opts.URL.
func NewRemote(opts RemoteOptions) (*Remote, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("server: remote upstream %q: want http(s)://host:port without credentials", opts.URL)
	}
	if len(opts.Models) == 0 {
		return nil, fmt.Errorf("server: remote upstream %s: no models", u.Host)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 2 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Minute
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 1024
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 64 << 20
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	connect := opts.ConnectTimeout
	r := &Remote{
		opts: opts,
		base: u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/"),
		client: &fasthttp.HostClient{
			Addr:                addr,
			Name:                "hxp-gateway",
			IsTLS:               u.Scheme == "https",
			TLSConfig:           opts.TLS,
			MaxConns:            opts.MaxConns,
			MaxIdleConnDuration: 30 * time.Second, // below the nodes' idle timeout
			StreamResponseBody:  true,
			Dial: func(addr string) (net.Conn, error) {
				return fasthttp.DialTimeout(addr, connect)
			},
			RetryIfErr: retryStaleConn,
		},
		cards: map[string]ModelCard{},
	}
	return r, nil
}

// retryStaleConn resends a request once when a pooled connection turned out to be
// closed by the node before it answered: nothing reached the client yet.
func retryStaleConn(_ *fasthttp.Request, attempts int, err error) (bool, bool) {
	stale := errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	return false, stale && attempts < 2
}

// URL is the node's base URL, for logs and stats.
func (r *Remote) URL() string { return r.base }

// Models implements Upstream: the configured models with the state the last health
// checks found (status "unknown" before the first).
func (r *Remote) Models() []ModelCard {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ModelCard, 0, len(r.opts.Models))
	for _, m := range r.opts.Models {
		c, ok := r.cards[m]
		if !ok {
			c = ModelCard{ID: m, Object: "model", OwnedBy: "hxp", Status: "unknown"}
		}
		out = append(out, c)
	}
	return out
}

// Check asks the node for model's card (GET /v1/models/ID) and remembers it; it
// returns an error unless the model is ready there.
func (r *Remote) Check(ctx context.Context, model string) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(r.base + "/v1/models/" + url.PathEscape(model))
	req.Header.SetMethod(fasthttp.MethodGet)
	if r.opts.APIKey != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, "Bearer "+r.opts.APIKey)
	}
	timeout := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	status := "unreachable"
	err := r.client.DoTimeout(req, resp, timeout)
	var body []byte
	if err == nil {
		body, err = readBody(resp, 1<<20)
	}
	switch {
	case err != nil:
		err = fmt.Errorf("health check %s: %w", r.base, err)
	case resp.StatusCode() != fasthttp.StatusOK:
		status = "unavailable"
		err = fmt.Errorf("health check %s: model %s: HTTP %d", r.base, model, resp.StatusCode())
	default:
		var c ModelCard
		if jerr := json.Unmarshal(body, &c); jerr != nil || c.ID != model {
			err = fmt.Errorf("health check %s: model %s: unexpected answer", r.base, model)
			status = "unavailable"
			break
		}
		r.mu.Lock()
		r.cards[model] = c
		r.mu.Unlock()
		if c.Status != "" && c.Status != "ready" {
			return fmt.Errorf("health check %s: model %s is %s", r.base, model, c.Status)
		}
		return nil
	}
	r.mu.Lock()
	c, ok := r.cards[model]
	if !ok {
		c = ModelCard{ID: model, Object: "model", OwnedBy: "hxp"}
	}
	c.Status = status
	r.cards[model] = c
	r.mu.Unlock()
	return err
}

// Upstream failures, as the balancer sees them: each is a 5xx that may be retried on
// another upstream because nothing was sent to the client yet.
func upstreamError(_ string, err error) *APIError {
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout() {
		return &APIError{Status: fasthttp.StatusGatewayTimeout, Type: typeUnavailable, Code: "upstream_timeout",
			Message: "the upstream node did not answer in time"}
	}
	return &APIError{Status: fasthttp.StatusBadGateway, Type: typeUnavailable, Code: "upstream_unavailable",
		Message: "the upstream node could not be reached", RetryAfter: time.Second}
}

// Serve implements Upstream.
func (r *Remote) Serve(ctx *fasthttp.RequestCtx, op Op, model string) {
	info := infoOf(ctx)
	body, stripUsage, err := forwardBody(ctx.PostBody(), model, op)
	if err != nil {
		writeError(ctx, err, "")
		return
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	release := func() {
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	req.SetRequestURI(r.base + op.String())
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if r.opts.APIKey != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, "Bearer "+r.opts.APIKey)
	}
	if info != nil {
		req.Header.Set("X-Request-Id", info.ID)
	}
	req.SetBodyRaw(body)
	if err := r.client.DoTimeout(req, resp, r.opts.Timeout); err != nil {
		release()
		writeError(ctx, upstreamError(r.base, err), "")
		return
	}
	if resp.StatusCode() == fasthttp.StatusOK && bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream")) {
		r.relayStream(ctx, resp, release, stripUsage)
		return
	}
	defer release()
	out, err := readBody(resp, r.opts.MaxResponseBytes)
	if err != nil {
		writeError(ctx, upstreamError(r.base, err), "")
		return
	}
	status := resp.StatusCode()
	if ra := resp.Header.Peek("Retry-After"); len(ra) > 0 {
		ctx.Response.Header.SetBytesV("Retry-After", ra)
	}
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(resp.Header.ContentType())
	ctx.SetBody(out)
	if info != nil {
		noteResponse(info, status, out)
	}
}

// noteResponse copies the usage (or the error kind) of a relayed JSON response into
// the request's info, for the access log, the ledger and the limits.
func noteResponse(info *RequestInfo, status int, body []byte) {
	var v struct {
		Usage *Usage `json:"usage"`
		Error *struct {
			Type string  `json:"type"`
			Code *string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil {
		return
	}
	if v.Usage != nil && status < 400 {
		info.PromptTokens, info.CompletionTokens = v.Usage.PromptTokens, v.Usage.CompletionTokens
		if d := v.Usage.PromptTokensDetails; d != nil {
			info.CachedTokens = d.CachedTokens
		}
	}
	if v.Error != nil {
		info.ErrType = v.Error.Type
		if v.Error.Code != nil {
			info.ErrCode = *v.Error.Code
		}
	}
}

// readBody reads a (streamed) response body of at most limit bytes.
func readBody(resp *fasthttp.Response, limit int) ([]byte, error) {
	s := resp.BodyStream()
	if s == nil {
		return resp.Body(), nil
	}
	defer resp.CloseBodyStream()
	b, err := io.ReadAll(io.LimitReader(s, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return b, nil
}

// forwardBody is the body sent to the node: the client's, with "model" set to the
// model routed to (a fallback, or the default of a model listener), and for a stream
// without stream_options.include_usage, usage requested so that the gateway learns
// the tokens; stripUsage then tells the relay to remove it again.
func forwardBody(body []byte, model string, op Op) (out []byte, stripUsage bool, err error) {
	var obj map[string]json.RawMessage
	if err := unmarshalBody(body, &obj); err != nil {
		return nil, false, err
	}
	changed := false
	var sent string
	if raw, ok := obj["model"]; !ok || json.Unmarshal(raw, &sent) != nil || sent != model {
		obj["model"], _ = json.Marshal(model)
		changed = true
	}
	var stream bool
	if (op == OpChat || op == OpCompletions) && json.Unmarshal(obj["stream"], &stream) == nil && stream {
		var so map[string]json.RawMessage
		if raw, ok := obj["stream_options"]; ok && string(raw) != "null" {
			if json.Unmarshal(raw, &so) != nil {
				return body, false, nil // let the node report it
			}
		}
		var include bool
		if json.Unmarshal(so["include_usage"], &include) != nil || !include {
			if so == nil {
				so = map[string]json.RawMessage{}
			}
			so["include_usage"] = json.RawMessage("true")
			obj["stream_options"], _ = json.Marshal(so)
			changed, stripUsage = true, true
		}
	}
	if !changed {
		return body, false, nil
	}
	out, err = json.Marshal(obj)
	if err != nil {
		return nil, false, fmt.Errorf("forward request: %w", err)
	}
	return out, stripUsage, nil
}

// relayStream relays an SSE response once its first byte has arrived; a node that
// fails before that is a failed attempt like any other.
func (r *Remote) relayStream(ctx *fasthttp.RequestCtx, resp *fasthttp.Response, release func(), stripUsage bool) {
	info := infoOf(ctx)
	br := bufio.NewReaderSize(resp.BodyStream(), 16<<10)
	if _, err := br.Peek(1); err != nil {
		_ = resp.CloseBodyStream()
		release()
		writeError(ctx, upstreamError(r.base, err), "")
		return
	}
	startSSE(ctx, info)
	conn := ctx.Conn()
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer func() {
			_ = resp.CloseBodyStream() // a client that left interrupts the node's stream
			release()
			if info != nil {
				info.FinishRequest()
			}
		}()
		relayEvents(br, w, conn, r.opts.WriteTimeout, stripUsage, info)
	})
}

// relayEvents copies SSE events from br to w, flushing after each event, until the
// stream ends or the client is gone. It reads the usage chunk into info and removes
// it (and the "usage":null members) when the client did not ask for usage.
func relayEvents(br *bufio.Reader, w *bufio.Writer, conn net.Conn, writeTimeout time.Duration, stripUsage bool, info *RequestInfo) {
	var ev []byte
	first := true
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimRight(line, "\r\n")) > 0 {
			ev = append(ev, line...)
			if err == nil {
				continue
			}
		}
		if len(ev) > 0 {
			out, keep := inspectEvent(ev, stripUsage, info)
			ev = ev[:0]
			if keep {
				if first && info != nil && info.TTFT == 0 {
					info.TTFT = time.Since(info.Start)
				}
				first = false
				if conn != nil && writeTimeout > 0 {
					_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
				}
				w.Write(out)
				w.WriteString("\n")
				if w.Flush() != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

var (
	dataPrefix = []byte("data: ")
	nullUsage  = []byte(`,"usage":null`)
)

// inspectEvent looks at one event (its lines, without the blank line that ends it).
func inspectEvent(ev []byte, stripUsage bool, info *RequestInfo) ([]byte, bool) {
	if !bytes.HasPrefix(ev, dataPrefix) {
		return ev, true
	}
	payload := bytes.TrimSpace(ev[len(dataPrefix):])
	if bytes.Contains(payload, []byte(`"usage":{`)) || bytes.HasPrefix(payload, []byte(`{"error"`)) {
		var v struct {
			Choices []json.RawMessage `json:"choices"`
		}
		if json.Unmarshal(payload, &v) == nil && info != nil {
			noteResponse(info, fasthttp.StatusOK, payload)
		}
		if stripUsage && bytes.Contains(payload, []byte(`"usage":{`)) && len(v.Choices) == 0 {
			return nil, false
		}
	}
	if stripUsage && bytes.Contains(ev, nullUsage) {
		ev = bytes.ReplaceAll(ev, nullUsage, nil)
	}
	return ev, true
}
