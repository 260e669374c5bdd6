// Package grammar builds GBNF grammars (llama.cpp's grammar format) that constrain a
// model's output: a JSON Schema → GBNF converter that refuses what it cannot enforce,
// a Builder that composes schema rules under a caller's own root (tool-call formats),
// literal escaping, and the grammar of one JSON object (JSONObject).
//
// Grammars are built as small expression trees and rendered to text at the end, so the
// same tree can be printed, inspected and, in tests, walked to generate or recognise
// strings. The package is pure Go; engine hands the text to llama.cpp.
package grammar

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// expr is a GBNF expression: lit, class, seq, alt, rep, ref or raw.
type expr interface{ isExpr() }

// lit matches its text exactly.
type lit string

// class matches one code point in (or, when neg, outside) its inclusive ranges.
type class struct {
	neg    bool
	ranges [][2]rune
}

// seq matches its items one after another; the empty seq matches "".
type seq []expr

// alt matches any one of its alternatives.
type alt []expr

// rep matches e between min and max times; max < 0 is unbounded.
type rep struct {
	e        expr
	min, max int
}

// ref names a rule.
type ref string

// raw is GBNF text written by a caller (Builder.SetRoot, Builder.AddRule).
type raw string

func (lit) isExpr()   {}
func (class) isExpr() {}
func (seq) isExpr()   {}
func (alt) isExpr()   {}
func (rep) isExpr()   {}
func (ref) isExpr()   {}
func (raw) isExpr()   {}

// chars returns a class of the given single code points and ranges ("a-z" style pairs).
func chars(neg bool, ranges ...rune) class {
	c := class{neg: neg}
	for i := 0; i+1 < len(ranges); i += 2 {
		c.ranges = append(c.ranges, [2]rune{ranges[i], ranges[i+1]})
	}
	return c
}

// cat is the sequence of xs, with nested sequences flattened.
func cat(xs ...expr) expr {
	var s seq
	for _, x := range xs {
		if inner, ok := x.(seq); ok {
			s = append(s, inner...)
		} else {
			s = append(s, x)
		}
	}
	if len(s) == 1 {
		return s[0]
	}
	return s
}

// opt is e?.
func opt(e expr) expr { return rep{e: e, min: 0, max: 1} }

// Literal returns s as a GBNF string literal ("..." with escapes), for use in the
// GBNF text given to Builder.SetRoot or Builder.AddRule.
func Literal(s string) string {
	var w strings.Builder
	writeLit(&w, s)
	return w.String()
}

func writeLit(w *strings.Builder, s string) {
	w.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			w.WriteString(`\"`)
		case '\\':
			w.WriteString(`\\`)
		default:
			writeRune(w, r)
		}
	}
	w.WriteByte('"')
}

// writeRune writes r, escaping control characters and invalid code points.
func writeRune(w *strings.Builder, r rune) {
	switch {
	case r == '\n':
		w.WriteString(`\n`)
	case r == '\r':
		w.WriteString(`\r`)
	case r == '\t':
		w.WriteString(`\t`)
	case r < 0x20 || r == 0x7f:
		fmt.Fprintf(w, `\x%02X`, r)
	case r == utf8.RuneError || r > utf8.MaxRune:
		fmt.Fprintf(w, `\u%04X`, utf8.RuneError)
	default:
		w.WriteRune(r)
	}
}

func writeClassRune(w *strings.Builder, r rune) {
	switch r {
	case ']', '[', '\\':
		w.WriteByte('\\')
		w.WriteRune(r)
	case '-', '^':
		fmt.Fprintf(w, `\x%02X`, r)
	default:
		if r > 0xffff {
			fmt.Fprintf(w, `\U%08X`, r)
			return
		}
		if r >= 0x80 && r <= 0x9f || r >= 0xd800 && r <= 0xdfff {
			fmt.Fprintf(w, `\u%04X`, r)
			return
		}
		writeRune(w, r)
	}
}

// writeList renders items joined by sep, in parentheses when there are several and
// the list is nested; inner says whether the items themselves are nested.
func writeList(w *strings.Builder, items []expr, sep string, nested, inner bool) {
	if len(items) == 1 {
		write(w, items[0], nested)
		return
	}
	if nested {
		w.WriteString("( ")
	}
	for i, x := range items {
		if i > 0 {
			w.WriteString(sep)
		}
		write(w, x, inner)
	}
	if nested {
		w.WriteString(" )")
	}
}

// write renders e; nested reports whether e is inside a sequence or repetition, where
// alternatives need parentheses.
func write(w *strings.Builder, e expr, nested bool) {
	switch e := e.(type) {
	case lit:
		writeLit(w, string(e))
	case class:
		w.WriteByte('[')
		if e.neg {
			w.WriteByte('^')
		}
		for _, r := range e.ranges {
			writeClassRune(w, r[0])
			if r[1] != r[0] {
				w.WriteByte('-')
				writeClassRune(w, r[1])
			}
		}
		w.WriteByte(']')
	case ref:
		w.WriteString(string(e))
	case raw:
		w.WriteString("( ")
		w.WriteString(string(e))
		w.WriteString(" )")
	case seq:
		if len(e) == 0 {
			w.WriteString(`""`)
			return
		}
		writeList(w, e, " ", nested, true)
	case alt:
		writeList(w, e, " | ", nested, false)
	case rep:
		if s, ok := e.e.(seq); ok && len(s) > 1 {
			w.WriteString("( ")
			write(w, s, false)
			w.WriteString(" )")
		} else if _, ok := e.e.(rep); ok {
			w.WriteString("( ")
			write(w, e.e, false)
			w.WriteString(" )")
		} else {
			write(w, e.e, true)
		}
		switch {
		case e.min == 0 && e.max == 1:
			w.WriteByte('?')
		case e.min == 0 && e.max < 0:
			w.WriteByte('*')
		case e.min == 1 && e.max < 0:
			w.WriteByte('+')
		case e.max < 0:
			fmt.Fprintf(w, "{%d,}", e.min)
		case e.min == 1 && e.max == 1:
		case e.min == e.max:
			fmt.Fprintf(w, "{%d}", e.min)
		default:
			fmt.Fprintf(w, "{%d,%d}", e.min, e.max)
		}
	default:
		panic(fmt.Sprintf("grammar: unknown expression %T", e))
	}
}
