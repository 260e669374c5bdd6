package bearer

import (
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	long := strings.Repeat("k", MaxKeyLength)
	for _, c := range []struct {
		values []string
		want   string
		ok     bool
	}{
		{[]string{"Bearer sk-abc"}, "sk-abc", true},
		{[]string{"bearer sk-abc"}, "sk-abc", true},
		{[]string{" \tBEARER   sk-abc \t"}, "sk-abc", true},
		{[]string{"Bearer " + long}, long, true},
		{nil, "", false},
		{[]string{"Bearer a", "Bearer b"}, "", false},
		{[]string{"Basic sk-abc"}, "", false},
		{[]string{"Bearer"}, "", false},
		{[]string{"Bearer "}, "", false},
		{[]string{"Bearer sk abc"}, "", false},
		{[]string{"Bearer sk\x01abc"}, "", false},
		{[]string{"Bearer sk-ä"}, "", false},
		{[]string{"Bearer " + long + "k"}, "", false},
		{[]string{"sk-abc"}, "", false},
	} {
		got, ok := Token(c.values)
		if got != c.want || ok != c.ok {
			t.Errorf("Token(%q) = %q, %v; want %q, %v", c.values, got, ok, c.want, c.ok)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"abc-123_X.y":           true,
		strings.Repeat("a", 64): true,
		"":                      false,
		strings.Repeat("a", 65): false,
		"has space":             false,
		"new\nline":             false,
		"é":                     false,
		"../etc":                false,
	} {
		if got := ValidRequestID(id); got != want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}
