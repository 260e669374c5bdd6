package rest

import (
	"github.com/valyala/fasthttp"

	bearerauth "github.com/hxp-ai/hxp/internal/bearer"
)

// bearerToken is the key of the request's one Authorization header, parsed by the
// parser every transport shares (bearerauth.Token).
func bearerToken(h *fasthttp.RequestHeader) (string, bool) {
	all := h.PeekAll(fasthttp.HeaderAuthorization)
	values := make([]string, len(all))
	for i, v := range all {
		values[i] = string(v)
	}
	return bearerauth.Token(values)
}
