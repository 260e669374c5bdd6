package sched

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// feed pushes pieces through a textOut and returns what would be streamed, split by
// push, and whether a stop string ended it.
func feed(stops []string, pieces ...string) (chunks []string, stopped bool) {
	o := textOut{stops: stops}
	for _, p := range pieces {
		s, st := o.push([]byte(p))
		chunks = append(chunks, s)
		if st {
			return chunks, true
		}
	}
	return append(chunks, o.flush()), false
}

func TestTextOutUTF8(t *testing.T) {
	euro := "€" // 3 bytes
	chunks, _ := feed(nil, "a", euro[:1], euro[1:2], euro[2:], "b")
	if strings.Join(chunks, "") != "a€b" {
		t.Fatalf("joined %q", chunks)
	}
	for _, c := range chunks {
		if !utf8.ValidString(c) {
			t.Fatalf("invalid chunk %q in %q", c, chunks)
		}
	}
	if chunks[1] != "" || chunks[2] != "" || chunks[3] != "€" {
		t.Errorf("partial character streamed early: %q", chunks)
	}
	// Invalid bytes become U+FFFD; a truncated character at the end too.
	chunks, _ = feed(nil, "x\xff", "y", euro[:2])
	if got := strings.Join(chunks, ""); got != "x\uFFFDy\uFFFD" {
		t.Errorf("invalid bytes: %q", got)
	}
	// A 4-byte emoji split in every possible way.
	emoji := "🙂"
	for cut := 1; cut < 4; cut++ {
		chunks, _ = feed(nil, emoji[:cut], emoji[cut:])
		if chunks[0] != "" || strings.Join(chunks, "") != emoji {
			t.Errorf("cut %d: %q", cut, chunks)
		}
	}
}

func TestTextOutStopStrings(t *testing.T) {
	cases := []struct {
		name   string
		stops  []string
		pieces []string
		want   string
		stop   bool
	}{
		{"whole", []string{"END"}, []string{"abc", "END", "x"}, "abc", true},
		{"split across tokens", []string{"END"}, []string{"ab", "E", "N", "Dzz"}, "ab", true},
		{"inside a token", []string{"<stop>"}, []string{"hello<st", "op>world"}, "hello", true},
		{"false start released", []string{"END"}, []string{"E", "N", "x"}, "ENx", false},
		{"false start at end released", []string{"END"}, []string{"abc", "EN"}, "abcEN", false},
		{"earliest of several", []string{"zz", "b"}, []string{"a", "bzz"}, "a", true},
		{"multibyte stop", []string{"é!"}, []string{"caf", "é", "!"}, "caf", true},
		{"newline stop", []string{"\n\n"}, []string{"line1\n", "\nline2"}, "line1", true},
	}
	for _, c := range cases {
		chunks, stopped := feed(c.stops, c.pieces...)
		got := strings.Join(chunks, "")
		if got != c.want || stopped != c.stop {
			t.Errorf("%s: got %q stopped=%v, want %q stopped=%v (chunks %q)", c.name, got, stopped, c.want, c.stop, chunks)
		}
		// No streamed chunk may contain a stop string or end with its start, unless
		// that text was later released as not-a-stop.
		for _, ch := range chunks {
			for _, s := range c.stops {
				if strings.Contains(ch, s) {
					t.Errorf("%s: chunk %q leaks stop %q", c.name, ch, s)
				}
			}
		}
	}
}

// TestTextOutMatchedStop: the stop string that ended the stream is reported (the
// earliest in the text, not the first listed), and none when none was found.
func TestTextOutMatchedStop(t *testing.T) {
	for _, c := range []struct {
		stops  []string
		pieces []string
		want   string
	}{
		{[]string{"zz", "b"}, []string{"a", "bzz"}, "b"},
		{[]string{"END", "\n\n"}, []string{"x\n", "\ny END"}, "\n\n"},
		{[]string{"END"}, []string{"E", "N", "x"}, ""},
	} {
		o := textOut{stops: c.stops}
		for _, p := range c.pieces {
			if _, st := o.push([]byte(p)); st {
				break
			}
		}
		if o.matched != c.want {
			t.Errorf("stops %q, pieces %q: matched %q, want %q", c.stops, c.pieces, o.matched, c.want)
		}
	}
}
