package sched

import (
	"strings"
	"unicode/utf8"
)

// textOut turns a stream of token bytes into text that is safe to send: complete,
// valid UTF-8 (a character split across tokens is held until complete; bytes that
// can never form one become U+FFFD), with any stop string cut and a text that might
// still become a stop string held back until it is known not to.
type textOut struct {
	stops   []string
	pending []byte // an incomplete UTF-8 sequence at the end of the bytes so far
	held    string // valid text that may be the start of a stop string
	matched string // the stop string that ended the stream, once found
}

// push adds the bytes of one token. It returns the text that may be sent now and
// whether a stop string was found (then text is everything before it and the
// stream must end).
func (o *textOut) push(b []byte) (text string, stopped bool) {
	o.pending = append(o.pending, b...)
	var sb strings.Builder
	sb.WriteString(o.held)
	i := 0
	for i < len(o.pending) {
		if !utf8.FullRune(o.pending[i:]) {
			break // wait for the rest of the character
		}
		r, size := utf8.DecodeRune(o.pending[i:])
		sb.WriteRune(r) // an invalid byte decodes as RuneError, size 1: U+FFFD
		i += size
	}
	o.pending = append(o.pending[:0], o.pending[i:]...)
	s := sb.String()
	if cut, stop, ok := o.findStop(s); ok {
		o.held, o.matched = "", stop
		return s[:cut], true
	}
	keep := o.stopPrefixLen(s)
	o.held = s[len(s)-keep:]
	return s[:len(s)-keep], false
}

// flush ends the stream: held text is released, incomplete bytes become U+FFFD.
func (o *textOut) flush() string {
	s := o.held + strings.ToValidUTF8(string(o.pending), "\uFFFD")
	o.held, o.pending = "", o.pending[:0]
	return s
}

// findStop returns the index of the earliest stop string in s, and that string.
func (o *textOut) findStop(s string) (int, string, bool) {
	best, stop := -1, ""
	for _, st := range o.stops {
		if i := strings.Index(s, st); i >= 0 && (best < 0 || i < best) {
			best, stop = i, st
		}
	}
	return best, stop, best >= 0
}

// stopPrefixLen is the length of the longest suffix of s that is a proper prefix
// of a stop string.
func (o *textOut) stopPrefixLen(s string) int {
	keep := 0
	for _, st := range o.stops {
		for k := min(len(st)-1, len(s)); k > keep; k-- {
			if strings.HasSuffix(s, st[:k]) {
				keep = k
				break
			}
		}
	}
	return keep
}
