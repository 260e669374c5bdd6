package rest

import (
	"context"
	"strings"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
)

// adminPrefix starts every admin API path; keyAuth leaves these paths to the admin
// routes, which check their own key.
const adminPrefix = "/admin/"

// keyAuth is the auth link: every request except public paths, CORS preflights and
// the admin API must carry "Authorization: Bearer KEY" with a key the authenticator
// accepts (401 otherwise, one answer for missing, malformed, wrong, revoked and
// expired keys). The caller is kept for the handlers (callerOf).
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

// errMissingKey is the 401 of a request without a well-formed bearer token.
var errMissingKey = &infer.Error{Kind: infer.Unauthenticated, Code: "invalid_api_key",
	Message: "missing or malformed API key; send it as \"Authorization: Bearer KEY\""}

// Wrap implements Middleware.
func (k *keyAuth) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		if k.public[path] || strings.HasPrefix(path, adminPrefix) || ctx.IsOptions() {
			next(ctx)
			return
		}
		secret, ok := bearerToken(&ctx.Request.Header)
		if !ok {
			writeError(ctx, errMissingKey)
			return
		}
		c, err := k.auth.Authenticate(context.Background(), secret)
		if err != nil {
			writeError(ctx, err)
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
