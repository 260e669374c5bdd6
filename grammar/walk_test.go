package grammar

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// This file holds two small interpreters of the expression trees, used by the tests:
// a recognizer (does the grammar accept a string) and a generator (random strings the
// grammar accepts). Both read the Builder's rules, never the rendered text, so a
// separate test parses the text with llama.cpp (engine tests).

type memoKey struct {
	rule string
	pos  int
}

type recognizer struct {
	rules map[string]expr
	s     string
	memo  map[memoKey][]int
}

// accepts reports whether the rule named start matches all of s.
func accepts(t *testing.T, b *Builder, start, s string) bool {
	t.Helper()
	r := &recognizer{rules: b.rules, s: s, memo: map[memoKey][]int{}}
	return slices.Contains(r.match(ref(start), 0), len(s))
}

// match returns every position where e can end when it starts at pos.
func (r *recognizer) match(e expr, pos int) []int {
	switch e := e.(type) {
	case lit:
		if strings.HasPrefix(r.s[pos:], string(e)) {
			return []int{pos + len(e)}
		}
		return nil
	case class:
		c, n := utf8.DecodeRuneInString(r.s[pos:])
		if n == 0 || c == utf8.RuneError && n == 1 || inClass(e, c) == e.neg {
			return nil
		}
		return []int{pos + n}
	case seq:
		cur := []int{pos}
		for _, x := range e {
			var next []int
			for _, p := range cur {
				next = union(next, r.match(x, p))
			}
			cur = next
		}
		return cur
	case alt:
		var out []int
		for _, x := range e {
			out = union(out, r.match(x, pos))
		}
		return out
	case rep:
		var out []int
		cur := []int{pos}
		if e.min == 0 {
			out = []int{pos}
		}
		seen := map[int]bool{pos: true}
		for n := 1; e.max < 0 || n <= e.max; n++ {
			var next []int
			for _, p := range cur {
				next = union(next, r.match(e.e, p))
			}
			if n >= e.min {
				out = union(out, next)
			}
			fresh := false
			for _, p := range next {
				if !seen[p] {
					seen[p], fresh = true, true
				}
			}
			if len(next) == 0 || n >= e.min && !fresh {
				break
			}
			cur = next
		}
		return out
	case ref:
		k := memoKey{string(e), pos}
		if v, ok := r.memo[k]; ok {
			return v
		}
		r.memo[k] = nil // left recursion matches nothing
		v := r.match(r.rules[string(e)], pos)
		r.memo[k] = v
		return v
	}
	panic("recognizer: unsupported expression")
}

func inClass(c class, x rune) bool {
	for _, r := range c.ranges {
		if x >= r[0] && x <= r[1] {
			return true
		}
	}
	return false
}

func union(a, b []int) []int {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(a, x)
		}
	}
	return a
}

// generator draws random strings from a grammar.
type generator struct {
	rules map[string]expr
	rng   *rand.Rand
	depth int
}

// pool are the code points tried for negated classes.
var pool = []rune("aZ0 ~é日\x7f/\"\\\n\x01-😀")

// gen writes a random string matched by e; false when it recursed too deep.
func (g *generator) gen(w *strings.Builder, e expr) bool {
	switch e := e.(type) {
	case lit:
		w.WriteString(string(e))
	case class:
		if e.neg {
			var ok []rune
			for _, r := range pool {
				if !inClass(e, r) {
					ok = append(ok, r)
				}
			}
			w.WriteRune(ok[g.rng.IntN(len(ok))])
			return true
		}
		r := e.ranges[g.rng.IntN(len(e.ranges))]
		w.WriteRune(r[0] + rune(g.rng.IntN(int(r[1]-r[0])+1)))
	case seq:
		for _, x := range e {
			if !g.gen(w, x) {
				return false
			}
		}
	case alt:
		return g.gen(w, e[g.rng.IntN(len(e))])
	case rep:
		hi := e.max
		if hi < 0 || hi > e.min+3 {
			hi = e.min + 3
		}
		for range e.min + g.rng.IntN(hi-e.min+1) {
			if !g.gen(w, e.e) {
				return false
			}
		}
	case ref:
		if g.depth > 40 {
			return false
		}
		g.depth++
		defer func() { g.depth-- }()
		return g.gen(w, g.rules[string(e)])
	default:
		panic("generator: unsupported expression")
	}
	return true
}

// sample returns a random string of rule start, retrying draws that recursed too deep.
func sample(t *testing.T, b *Builder, start string, rng *rand.Rand) string {
	t.Helper()
	for range 100 {
		var w strings.Builder
		g := &generator{rules: b.rules, rng: rng}
		if g.gen(&w, ref(start)) {
			return w.String()
		}
	}
	t.Fatalf("rule %s: every draw recursed too deep", start)
	return ""
}
