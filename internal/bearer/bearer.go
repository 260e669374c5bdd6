// Package bearer holds what every transport reads the same way from a request's
// metadata: the API key of an "Authorization: Bearer KEY" header (HTTP header or
// gRPC metadata) and a client's request id. One parser, so that REST, gRPC and
// GraphQL accept and refuse exactly the same keys.
package bearer

import "strings"

// MaxKeyLength bounds a presented key; longer values are refused unread.
const MaxKeyLength = 512

// Token is the key of a request whose Authorization values are values: exactly one
// value, the scheme "Bearer" in any case, one or more spaces, then a token of visible
// ASCII. Surrounding spaces and tabs are ignored; two values, an empty token or a
// token with inner whitespace or control characters are refused.
func Token(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	v := strings.Trim(values[0], " \t")
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" || len(tok) > MaxKeyLength {
		return "", false
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return "", false
		}
	}
	return tok, true
}

// MaxRequestIDLength bounds a client's request id.
const MaxRequestIDLength = 64

// ValidRequestID reports whether a client's request id may be kept (and logged): 1 to
// 64 characters of [A-Za-z0-9._-].
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLength {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
