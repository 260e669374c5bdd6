package rest

import (
	"context"
	"strings"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
	bearerauth "github.com/hxp-ai/hxp/internal/bearer"
)

// adminPrefix starts every admin API path; keyAuth leaves these paths to the admin
// routes, which check their own key.
const adminPrefix = "/admin/"

// keyAuth is the auth link: every request except public paths, CORS preflights and
// the admin API must carry "Authorization: Bearer KEY" (or "x-api-key: KEY") with a
// key the authenticator accepts (401 otherwise, one answer for missing, malformed,
// wrong, revoked and expired keys, in Anthropic's format on its paths). The caller is
// kept for the handlers (callerOf).
type keyAuth struct {
	auth   Authenticator
	public map[string]bool
	log    zerolog.Logger
}

func newKeyAuth(a Authenticator, public []string, log zerolog.Logger) *keyAuth {
	k := &keyAuth{auth: a, public: map[string]bool{}, log: log}
	for _, p := range public {
		k.public[p] = true
	}
	return k
}

// Name implements Middleware.
func (*keyAuth) Name() string { return "key-auth" }

// errMissingKey is the 401 of a request without a well-formed key.
var errMissingKey = &infer.Error{Kind: infer.Unauthenticated, Code: "invalid_api_key",
	Message: "missing or malformed API key; send it as \"Authorization: Bearer KEY\""}

// headerAPIKey is Anthropic's key header.
const headerAPIKey = "X-Api-Key"

// apiKey is the key an Anthropic Messages request presents: "Authorization: Bearer
// KEY", or Anthropic's "x-api-key: KEY" (accepted on the Anthropic paths only; other
// paths take the bearer token alone, so a key in any other header is never a key). Both are read by the one parser every transport shares (the
// x-api-key value as a bearer token's), so both accept and refuse the same keys; a
// request with both must present the same key in each.
func apiKey(h *fasthttp.RequestHeader) (string, bool) {
	xs := h.PeekAll(headerAPIKey)
	if len(xs) == 0 {
		return bearerToken(h)
	}
	key, ok := bearerauth.Token([]string{"Bearer " + string(xs[0])})
	if !ok || len(xs) != 1 {
		return "", false
	}
	if len(h.PeekAll(fasthttp.HeaderAuthorization)) > 0 {
		if b, ok := bearerToken(h); !ok || b != key {
			return "", false
		}
	}
	return key, true
}

// Wrap implements Middleware.
func (k *keyAuth) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		if k.public[path] || strings.HasPrefix(path, adminPrefix) || ctx.IsOptions() {
			next(ctx)
			return
		}
		fail := writeError
		if isAnthropicPath(path) {
			fail = writeAnthropicError
		}
		secret, ok := bearerToken(&ctx.Request.Header)
		if isAnthropicPath(path) { // Anthropic's clients send x-api-key; only there
			secret, ok = apiKey(&ctx.Request.Header)
		}
		if !ok {
			fail(ctx, errMissingKey)
			return
		}
		c, err := k.auth.Authenticate(context.Background(), secret)
		if err != nil {
			fail(ctx, err)
			return
		}
		ctx.SetUserValue(callerKey, c)
		next(ctx)
	}
}

const callerKey = "hxp.caller"

// callerOf returns the authenticated caller of a request, or nil.
func callerOf(ctx *fasthttp.RequestCtx) *infer.Caller {
	c, _ := ctx.UserValue(callerKey).(*infer.Caller)
	return c
}
