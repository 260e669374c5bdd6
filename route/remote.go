package route

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
)

// RemoteOptions configure a Remote. Zero fields take the defaults.
type RemoteOptions struct {
	// URL is the node's base URL (http:// or https://host:port, optionally with a
	// path prefix), its gateway or a model's own listener.
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
	// MaxConns bounds the connections to the node (default 1024).
	MaxConns int
	// MaxResponseBytes bounds a non-streamed response and each event of a stream
	// (default 64 MiB).
	MaxResponseBytes int
	// TLS configures https URLs (nil: the system roots).
	TLS *tls.Config
}

// Remote is the infer.Service of another hxp node, reached over HTTP with the OpenAI
// wire format: the typed request is encoded (openai.ChatRequestOf...), sent with the
// node key, and the answer decoded back into the core's types. Generations always
// stream from the node, with usage: a call returns once the node's first event has
// arrived, so a node that fails before that (refused, reset, timed out, an error
// answer) is a failed attempt that the pool may retry elsewhere, and after that the
// generation is the caller's. Cancelling the call's context (the client left) aborts
// the request to the node.
type Remote struct {
	opts   RemoteOptions
	base   string // scheme://host:port plus any path prefix, without a trailing slash
	client *http.Client

	mu    sync.Mutex
	cards map[string]infer.Model // from the last health checks
}

var _ infer.Service = (*Remote)(nil)

// NewRemote returns the service of the node at opts.URL.
func NewRemote(opts RemoteOptions) (*Remote, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("route: remote upstream %q: want http(s)://host:port[/prefix] without credentials, query or fragment", opts.URL)
	}
	if len(opts.Models) == 0 {
		return nil, fmt.Errorf("route: remote upstream %s: no models; list the models to request from it", u.Host)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 2 * time.Second
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 1024
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 64 << 20
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     opts.TLS,
		TLSHandshakeTimeout: opts.ConnectTimeout,
		MaxConnsPerHost:     opts.MaxConns,
		MaxIdleConnsPerHost: min(opts.MaxConns, 256),
		IdleConnTimeout:     30 * time.Second, // below the nodes' idle timeout
		DisableCompression:  true,             // SSE events must arrive as they are sent
	}
	return &Remote{
		opts:   opts,
		base:   u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/"),
		client: &http.Client{Transport: transport},
		cards:  map[string]infer.Model{},
	}, nil
}

// URL is the node's base URL, for logs and stats.
func (r *Remote) URL() string { return r.base }

// Close closes the idle connections to the node.
func (r *Remote) Close() { r.client.CloseIdleConnections() }

// Models implements infer.Service: the configured models with the state the last
// health checks found (status "unknown" before the first).
func (r *Remote) Models(context.Context) []infer.Model {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]infer.Model, 0, len(r.opts.Models))
	for _, m := range r.opts.Models {
		c, ok := r.cards[m]
		if !ok {
			c = infer.Model{ID: m, Status: "unknown"}
		}
		out = append(out, c)
	}
	return out
}

// Check asks the node for model's card (GET /v1/models/ID) and remembers it; it
// returns an error unless the model is ready there.
func (r *Remote) Check(ctx context.Context, model string) error {
	var card openai.ModelCard
	err := r.do(ctx, http.MethodGet, "/v1/models/"+url.PathEscape(model), nil, func(resp *http.Response) error {
		return r.readJSON(resp, &card)
	})
	status := "unreachable"
	switch {
	case err == nil && card.ID != model:
		status = "unavailable"
		err = fmt.Errorf("health check %s: model %s: the node answered for %q", r.base, model, card.ID)
	case err == nil:
		c := infer.Model{ID: card.ID, Created: time.Unix(card.Created, 0), Status: card.Status, ContextLength: card.ContextLength,
			ChatTemplate: card.ChatTemplate}
		if c.Status == "" {
			c.Status = "ready"
		}
		r.remember(c)
		if !c.Ready() {
			return fmt.Errorf("health check %s: model %s is %s", r.base, model, c.Status)
		}
		return nil
	default:
		if e := (*infer.Error)(nil); errors.As(err, &e) && e.Kind != infer.UpstreamFailed && e.Kind != infer.DeadlineExceeded {
			status = "unavailable" // the node answered, with an error
		}
		err = fmt.Errorf("health check %s: model %s: %w", r.base, model, err)
	}
	r.mu.Lock()
	c, ok := r.cards[model]
	if !ok {
		c = infer.Model{ID: model}
	}
	r.mu.Unlock()
	c.Status = status
	r.remember(c)
	return err
}

func (r *Remote) remember(c infer.Model) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cards[c.ID] = c
}

// Chat implements infer.Service.
func (r *Remote) Chat(ctx context.Context, req *infer.ChatRequest) (*infer.Generation, error) {
	w := openai.ChatRequestOf(req)
	w.Stream, w.StreamOptions = true, &openai.StreamOptions{IncludeUsage: true}
	return r.generate(ctx, "/v1/chat/completions", w, req.Model, max(req.N, 1), openai.KindChat)
}

// Complete implements infer.Service.
func (r *Remote) Complete(ctx context.Context, req *infer.CompletionRequest) (*infer.Generation, error) {
	w := openai.CompletionRequestOf(req)
	w.Stream, w.StreamOptions = true, &openai.StreamOptions{IncludeUsage: true}
	return r.generate(ctx, "/v1/completions", w, req.Model, max(len(req.Prompts), 1)*max(req.N, 1), openai.KindCompletion)
}

// Embed implements infer.Service.
func (r *Remote) Embed(ctx context.Context, req *infer.EmbedRequest) (*infer.Embeddings, error) {
	var resp struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
		Usage openai.Usage `json:"usage"`
	}
	if err := r.post(ctx, "/v1/embeddings", openai.EmbeddingRequestOf(req), &resp); err != nil {
		return nil, err
	}
	out := &infer.Embeddings{Served: infer.Served{Model: req.Model}, Vectors: make([][]float32, len(req.Inputs)),
		Usage: infer.Usage{PromptTokens: resp.Usage.PromptTokens}}
	for _, d := range resp.Data {
		if d.Index < 0 || d.Index >= len(out.Vectors) || out.Vectors[d.Index] != nil {
			return nil, badAnswer(fmt.Errorf("embedding index %d of %d inputs", d.Index, len(req.Inputs)))
		}
		out.Vectors[d.Index] = d.Embedding
	}
	for i, v := range out.Vectors {
		if v == nil {
			return nil, badAnswer(fmt.Errorf("no embedding for input %d", i))
		}
	}
	return out, nil
}

// Tokenize implements infer.Service.
func (r *Remote) Tokenize(ctx context.Context, req *infer.TokenizeRequest) (*infer.Tokens, error) {
	var resp openai.TokenizeResponse
	if err := r.post(ctx, "/tokenize", openai.TokenizeRequestOf(req), &resp); err != nil {
		return nil, err
	}
	toks := make([]engine.Token, len(resp.Tokens))
	for i, t := range resp.Tokens {
		toks[i] = engine.Token(t)
	}
	return &infer.Tokens{Served: infer.Served{Model: req.Model}, Tokens: toks, MaxModelLen: resp.MaxModelLen}, nil
}

// Detokenize implements infer.Service.
func (r *Remote) Detokenize(ctx context.Context, req *infer.DetokenizeRequest) (*infer.Text, error) {
	var resp openai.DetokenizeResponse
	if err := r.post(ctx, "/detokenize", openai.DetokenizeRequestOf(req), &resp); err != nil {
		return nil, err
	}
	return &infer.Text{Served: infer.Served{Model: req.Model}, Text: resp.Prompt}, nil
}

// ApplyTemplate implements infer.Service (POST /apply-template).
func (r *Remote) ApplyTemplate(ctx context.Context, req *infer.ApplyTemplateRequest) (*infer.RenderedPrompt, error) {
	var resp openai.ApplyTemplateResponse
	if err := r.post(ctx, "/apply-template", openai.ApplyTemplateRequestOf(req), &resp); err != nil {
		return nil, err
	}
	return &infer.RenderedPrompt{Served: infer.Served{Model: req.Model}, Prompt: resp.Prompt}, nil
}

// post sends body as JSON and decodes a 200 answer into out.
func (r *Remote) post(ctx context.Context, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	return r.do(ctx, http.MethodPost, path, body, func(resp *http.Response) error { return r.readJSON(resp, out) })
}

// do sends a request to the node and hands a 200 answer to use; any other answer
// is the node's error, and a failure to get one is the pool's retryable kind.
// The response body is closed when do returns.
func (r *Remote) do(ctx context.Context, method, path string, body any, use func(*http.Response) error) error {
	resp, err := r.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return use(resp)
}

// send sends a request and returns a 200 answer with its body open.
func (r *Remote) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, &infer.Error{Kind: infer.Internal, Message: "internal error: encoding the request for the upstream node", Err: err}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return nil, &infer.Error{Kind: infer.Internal, Message: "internal error: building the request for the upstream node", Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	id := infer.RequestIDFrom(ctx)
	if id != "" {
		req.Header.Set("X-Request-Id", id)
	} else {
		id = openai.NewID()
	}
	// Nothing reached the client yet: a request that met a pooled connection the node
	// had just closed may be sent again, which net/http does for idempotent requests.
	req.Header.Set("Idempotency-Key", id)
	if r.opts.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.opts.APIKey)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, r.failure(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, r.answerError(ctx, resp)
	}
	return resp, nil
}

// answerError is the node's error answer as the core's error: the kind is the node's.
func (r *Remote) answerError(ctx context.Context, resp *http.Response) error {
	var eb openai.ErrorBody
	b, err := r.readAll(ctx, resp.Body)
	if err != nil {
		return err
	}
	if json.Unmarshal(b, &eb) != nil || eb.Error.Message == "" {
		e := openai.ErrorFrom(resp.StatusCode, openai.ErrorBody{})
		e.Message = fmt.Sprintf("the upstream node answered HTTP %d", resp.StatusCode)
		return e
	}
	e := openai.ErrorFrom(resp.StatusCode, eb)
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// readJSON decodes a 200 answer's body into out.
func (r *Remote) readJSON(resp *http.Response, out any) error {
	b, err := r.readAll(resp.Request.Context(), resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return badAnswer(err)
	}
	return nil
}

// readAll reads a body of at most MaxResponseBytes.
func (r *Remote) readAll(ctx context.Context, body io.Reader) ([]byte, error) {
	limit := r.opts.MaxResponseBytes
	b, err := io.ReadAll(io.LimitReader(body, int64(limit)+1))
	if err != nil {
		return nil, r.failure(ctx, err)
	}
	if len(b) > limit {
		return nil, badAnswer(fmt.Errorf("response larger than %d bytes", limit))
	}
	return b, nil
}

// failure classifies a failure to get an answer: the caller's own cancellation, a
// timeout (DeadlineExceeded), or a node that could not be reached or broke the
// exchange (UpstreamFailed); the last two may be retried elsewhere.
func (r *Remote) failure(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return infer.ErrClientGone
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &infer.Error{Kind: infer.DeadlineExceeded, Code: "upstream_timeout", Message: "the upstream node did not answer in time",
			Err: fmt.Errorf("remote %s: %w", r.base, err)}
	}
	return &infer.Error{Kind: infer.UpstreamFailed, Code: "upstream_unavailable", Message: "the upstream node could not be reached",
		RetryAfter: time.Second, Err: fmt.Errorf("remote %s: %w", r.base, err)}
}

// badAnswer is a node's answer that is not what the wire format promises.
func badAnswer(err error) error {
	return &infer.Error{Kind: infer.UpstreamFailed, Code: "upstream_bad_answer", Message: "the upstream node sent an answer that could not be read",
		RetryAfter: time.Second, Err: err}
}

// isEventStream reports whether resp is a server-sent event stream.
func isEventStream(resp *http.Response) bool {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return err == nil && mt == "text/event-stream"
}
