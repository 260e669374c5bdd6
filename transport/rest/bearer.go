package rest

import (
	"strings"

	"github.com/valyala/fasthttp"
)

// maxKeyLength bounds a presented key; longer values are refused unread.
const maxKeyLength = 512

// bearerToken is the one parser of API keys in requests: the key of the request's one
// Authorization header, the scheme "Bearer" in any case, one or more spaces, then a
// token of visible ASCII. Surrounding spaces and tabs are ignored; two Authorization
// headers, an empty token or a token with inner whitespace or control characters are
// refused.
func bearerToken(h *fasthttp.RequestHeader) (string, bool) {
	all := h.PeekAll(fasthttp.HeaderAuthorization)
	if len(all) != 1 {
		return "", false
	}
	v := strings.Trim(string(all[0]), " \t")
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" || len(tok) > maxKeyLength {
		return "", false
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return "", false
		}
	}
	return tok, true
}
