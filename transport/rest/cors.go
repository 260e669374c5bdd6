package rest

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
)

// CORS answers browsers' cross-origin checks for the configured origins: preflight
// requests (OPTIONS with Access-Control-Request-Method) get 204 with the allowed
// methods and headers, before auth (preflights carry no key); other requests from an
// allowed origin get Access-Control-Allow-Origin and the exposed headers. Requests
// from other origins get no CORS headers, so browsers block their answers. Without
// origins configured the link is not in the chain.
type CORS struct {
	// Origins are the allowed origins ("https://app.example.com"); "*" allows any.
	Origins []string
	// Headers are the request headers a browser may send (default Authorization,
	// Content-Type, X-Request-Id, and Anthropic's X-Api-Key and Anthropic-Version).
	Headers []string
	// MaxAge is how long a browser may cache a preflight answer (default 10m).
	MaxAge time.Duration
}

// Name implements Middleware.
func (CORS) Name() string { return "cors" }

// corsExposed are the response headers a browser script may read.
const corsExposed = "X-Request-Id, Retry-After, X-Hxp-Cache, X-Hxp-Fallback, X-Ratelimit-Limit-Requests, X-Ratelimit-Limit-Tokens, " +
	"X-Ratelimit-Remaining-Requests, X-Ratelimit-Remaining-Tokens, X-Ratelimit-Reset-Requests, X-Ratelimit-Reset-Tokens"

// Wrap implements Middleware.
func (c CORS) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	headers := c.Headers
	if len(headers) == 0 {
		headers = []string{"Authorization", "Content-Type", "X-Request-Id", "X-Api-Key", "Anthropic-Version"}
	}
	allowHeaders := strings.Join(headers, ", ")
	maxAge := c.MaxAge
	if maxAge <= 0 {
		maxAge = 10 * time.Minute
	}
	any := slices.Contains(c.Origins, "*")
	return func(ctx *fasthttp.RequestCtx) {
		origin := string(ctx.Request.Header.Peek("Origin"))
		if origin == "" {
			next(ctx)
			return
		}
		allowed := any || slices.Contains(c.Origins, origin)
		h := &ctx.Response.Header
		h.Add("Vary", "Origin")
		preflight := ctx.IsOptions() && len(ctx.Request.Header.Peek("Access-Control-Request-Method")) > 0
		if preflight {
			if !allowed {
				writeError(ctx, &infer.Error{Kind: infer.PermissionDenied, Code: "origin_not_allowed",
					Message: "this origin may not call the API (server.cors)"})
				return
			}
			h.Set("Access-Control-Allow-Origin", allowOrigin(any, origin))
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", allowHeaders)
			h.Set("Access-Control-Max-Age", strconv.Itoa(int(maxAge/time.Second)))
			ctx.SetStatusCode(fasthttp.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", allowOrigin(any, origin))
			h.Set("Access-Control-Expose-Headers", corsExposed)
		}
		next(ctx)
	}
}

func allowOrigin(any bool, origin string) string {
	if any {
		return "*"
	}
	return origin
}
