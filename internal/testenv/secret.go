package testenv

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
)

// secretFragment is how many consecutive characters of a secret count as a leak: enough that
// a random secret's fragments never occur by chance, few enough to catch a prefix ("hxp-3fQ…")
// or a truncated echo.
const secretFragment = 6

// SecretLeaks returns the ways text echoes secret, or nil when it does not. It looks for the
// secret and any secretFragment consecutive characters of it (a prefix, a suffix, a truncated
// echo), and for fragments of twice that length of its usual encodings: Go quoting (%q, JSON
// strings), URL query and path escaping, base64 (standard and URL alphabets, padded or not)
// and hex. Use a random-looking secret of at least secretFragment characters, so that its
// fragments cannot occur in text by chance.
func SecretLeaks(text, secret string) []string {
	quoted := strconv.Quote(secret)
	forms := []struct {
		name, s string
		frag    int
		fold    bool // compare without case
	}{
		{"the secret", secret, secretFragment, false},
		{"the secret quoted", quoted[1 : len(quoted)-1], secretFragment, false}, // the quotes are no leak
		{"the secret URL-escaped (query)", url.QueryEscape(secret), secretFragment, false},
		{"the secret URL-escaped (path)", url.PathEscape(secret), secretFragment, false},
		{"the secret in base64", base64.RawStdEncoding.EncodeToString([]byte(secret)), 2 * secretFragment, false},
		{"the secret in URL base64", base64.RawURLEncoding.EncodeToString([]byte(secret)), 2 * secretFragment, false},
		{"the secret in hex", hex.EncodeToString([]byte(secret)), 2 * secretFragment, true},
	}
	var leaks []string
	lower := strings.ToLower(text)
	for _, f := range forms {
		hay := text
		if f.fold {
			hay = lower
		}
		if frag, ok := fragmentIn(hay, f.s, f.frag); ok {
			leaks = append(leaks, f.name+" ("+strconv.Quote(frag)+")")
		}
	}
	return leaks
}

// fragmentIn returns the first n-character fragment of s (all of s when it is shorter) that
// occurs in text.
func fragmentIn(text, s string, n int) (string, bool) {
	if len(s) <= n {
		return s, s != "" && strings.Contains(text, s)
	}
	for i := 0; i+n <= len(s); i++ {
		if strings.Contains(text, s[i:i+n]) {
			return s[i : i+n], true
		}
	}
	return "", false
}
