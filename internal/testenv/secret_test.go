package testenv

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestSecretLeaks(t *testing.T) {
	const secret = "hxp-Kq3vX9/zLp7+Wm2R\tyT"
	clean := "auth.api_keys: key 1 is shorter than 8 characters or contains whitespace; request id 4b7f3a9c0d1e"
	if leaks := SecretLeaks(clean, secret); leaks != nil {
		t.Fatalf("clean text: %v", leaks)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"verbatim", "bad key " + secret + " here", "the secret"},
		{"prefix", "bad key hxp-Kq3v...", "the secret"},
		{"suffix", "key ending in Wm2R\tyT", "the secret"},
		{"quoted", fmt.Sprintf("bad key %q", secret), "the secret quoted"},
		{"query escaped", "GET /v1?key=" + url.QueryEscape(secret), "the secret URL-escaped (query)"},
		{"path escaped", "GET /keys/" + url.PathEscape(secret), "the secret URL-escaped (path)"},
		{"base64", "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(secret)), "the secret in base64"},
		{"base64 of a longer string", "Basic " + base64.StdEncoding.EncodeToString([]byte(secret+":x")), "the secret in base64"},
		{"URL base64", "token=" + base64.URLEncoding.EncodeToString([]byte(secret)), "the secret in URL base64"},
		{"hex, upper case", "key bytes " + strings.ToUpper(hex.EncodeToString([]byte(secret))), "the secret in hex"},
	} {
		leaks := strings.Join(SecretLeaks(tc.text, secret), "; ")
		if !strings.Contains(leaks, tc.want) {
			t.Errorf("%s: leaks %q, want %s", tc.name, leaks, tc.want)
		}
	}
	if leaks := SecretLeaks("key abc1 refused", "abc1"); leaks == nil {
		t.Error("a secret shorter than a fragment, verbatim: no leak found")
	}
}
