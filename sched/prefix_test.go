package sched

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hxp-ai/hxp/engine"
)

func toks(v ...int) []engine.Token {
	out := make([]engine.Token, len(v))
	for i, t := range v {
		out[i] = engine.Token(t)
	}
	return out
}

// prefixOp is one change of the index in a table test.
type prefixOp struct {
	op   string // set, append, truncate
	slot int
	toks []engine.Token
	n    int
}

// TestPrefixIndex applies each case's operations, then checks what every slot holds,
// the longest match of each query, and the tree's invariants.
func TestPrefixIndex(t *testing.T) {
	type query struct {
		prompt []engine.Token
		slots  []int // acceptable answers (any slot holding the longest prefix)
		n      int
	}
	cases := []struct {
		name    string
		ops     []prefixOp
		queries []query
	}{
		{name: "empty", queries: []query{{toks(1, 2), []int{-1}, 0}}},
		{
			name: "one slot",
			ops:  []prefixOp{{op: "set", slot: 0, toks: toks(1, 2, 3)}},
			queries: []query{
				{toks(1, 2, 3, 4), []int{0}, 3},
				{toks(1, 2, 9), []int{0}, 2},
				{toks(1, 2), []int{0}, 2},
				{toks(7), []int{-1}, 0},
			},
		},
		{
			name: "shared system prompt, different questions",
			ops: []prefixOp{
				{op: "set", slot: 0, toks: toks(1, 2, 3, 4, 10, 11)},
				{op: "set", slot: 1, toks: toks(1, 2, 3, 4, 20)},
				{op: "set", slot: 2, toks: toks(5, 6)},
			},
			queries: []query{
				{toks(1, 2, 3, 4, 30, 31), []int{0, 1}, 4},
				{toks(1, 2, 3, 4, 20, 21), []int{1}, 5},
				{toks(5, 6, 7), []int{2}, 2},
			},
		},
		{
			name: "generation appends to a shared path",
			ops: []prefixOp{
				{op: "set", slot: 0, toks: toks(1, 2, 3)},
				{op: "set", slot: 1, toks: toks(1, 2, 3)},
				{op: "append", slot: 0, toks: toks(4)},
				{op: "append", slot: 0, toks: toks(5)},
				{op: "append", slot: 1, toks: toks(6)},
			},
			queries: []query{
				{toks(1, 2, 3, 4, 5, 6), []int{0}, 5},
				{toks(1, 2, 3, 6), []int{1}, 4},
				{toks(1, 2, 3, 9), []int{0, 1}, 3},
			},
		},
		{
			name: "append to an empty slot",
			ops:  []prefixOp{{op: "append", slot: 1, toks: toks(8, 9)}},
			queries: []query{
				{toks(8, 9, 10), []int{1}, 2},
			},
		},
		{
			name: "truncate inside an edge and to nothing",
			ops: []prefixOp{
				{op: "set", slot: 0, toks: toks(1, 2, 3, 4, 5)},
				{op: "set", slot: 1, toks: toks(1, 2, 3, 4, 5)},
				{op: "truncate", slot: 0, n: 2},
				{op: "truncate", slot: 1, n: 0},
			},
			queries: []query{
				{toks(1, 2, 3, 4, 5), []int{0}, 2},
			},
		},
		{
			name: "a freed slot is never an answer",
			ops: []prefixOp{
				{op: "set", slot: 0, toks: toks(1, 2, 3, 4)},
				{op: "set", slot: 1, toks: toks(1, 2)},
				{op: "set", slot: 0, toks: nil},
			},
			queries: []query{
				{toks(1, 2, 3, 4), []int{1}, 2},
			},
		},
		{
			name: "truncate past the end is a no-op",
			ops: []prefixOp{
				{op: "set", slot: 0, toks: toks(1, 2)},
				{op: "truncate", slot: 0, n: 5},
			},
			queries: []query{{toks(1, 2, 3), []int{0}, 2}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newPrefixIndex(4)
			want := make([][]engine.Token, 4)
			for _, o := range c.ops {
				apply(x, want, o)
				checkPrefixIndex(t, x, want)
			}
			for _, q := range c.queries {
				slot, n := x.Longest(q.prompt)
				if n != q.n || !slices.Contains(q.slots, slot) {
					t.Errorf("Longest(%v) = slot %d, %d tokens; want one of %v, %d", q.prompt, slot, n, q.slots, q.n)
				}
			}
		})
	}
}

// TestPrefixIndexRandom checks the index against a plain per-slot model over many
// random operations on a small alphabet (many shared prefixes, splits and merges).
func TestPrefixIndexRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const slots = 6
	x := newPrefixIndex(slots)
	want := make([][]engine.Token, slots)
	randToks := func(n int) []engine.Token {
		out := make([]engine.Token, n)
		for i := range out {
			out[i] = engine.Token(r.IntN(3))
		}
		return out
	}
	for i := 0; i < 5000; i++ {
		o := prefixOp{slot: r.IntN(slots)}
		switch r.IntN(4) {
		case 0:
			o.op = "set"
			// Often a copy of another slot's prefix plus a suffix, as the scheduler does.
			src := want[r.IntN(slots)]
			o.toks = append(slices.Clone(src[:r.IntN(len(src)+1)]), randToks(r.IntN(4))...)
		case 1, 2:
			o.op, o.toks = "append", randToks(1+r.IntN(2))
		case 3:
			o.op, o.n = "truncate", r.IntN(len(want[o.slot])+1)
		}
		apply(x, want, o)
		checkPrefixIndex(t, x, want)
		q := randToks(r.IntN(12))
		slot, n := x.Longest(q)
		best := 0
		for _, w := range want {
			best = max(best, commonPrefix(w, q))
		}
		if n != best || (n > 0 && commonPrefix(want[slot], q) != n) || (n == 0 && slot != -1) {
			t.Fatalf("op %d: Longest(%v) = slot %d, %d; want %d tokens (slots hold %v)", i, q, slot, n, best, want)
		}
	}
}

func apply(x *prefixIndex, want [][]engine.Token, o prefixOp) {
	switch o.op {
	case "set":
		x.Set(o.slot, o.toks)
		want[o.slot] = slices.Clone(o.toks)
	case "append":
		x.Append(o.slot, o.toks...)
		want[o.slot] = append(want[o.slot], o.toks...)
	case "truncate":
		x.Truncate(o.slot, o.n)
		want[o.slot] = want[o.slot][:min(o.n, len(want[o.slot]))]
	default:
		panic(o.op)
	}
}

// checkPrefixIndex verifies what each slot holds and the tree's invariants.
func checkPrefixIndex(t *testing.T, x *prefixIndex, want [][]engine.Token) {
	t.Helper()
	for s, w := range want {
		if got := x.Tokens(s); !slices.Equal(got, w) {
			t.Fatalf("slot %d holds %v, want %v", s, got, w)
		}
		if x.Len(s) != len(w) {
			t.Fatalf("slot %d: Len %d, want %d", s, x.Len(s), len(w))
		}
	}
	var walk func(nd *prefixNode)
	walk = func(nd *prefixNode) {
		if nd != &x.root {
			if len(nd.edge) == 0 || nd.depth != nd.parent.depth+len(nd.edge) {
				t.Fatalf("node %v: edge or depth broken", nd.edge)
			}
			if len(nd.ends) == 0 && len(nd.kids) < 2 {
				t.Fatalf("node %v at depth %d has no ends and %d children", nd.edge, nd.depth, len(nd.kids))
			}
		}
		first := map[engine.Token]bool{}
		for _, k := range nd.kids {
			if k.parent != nd || first[k.edge[0]] {
				t.Fatalf("node %v: child %v has a wrong parent or a duplicate first token", nd.edge, k.edge)
			}
			first[k.edge[0]] = true
			walk(k)
		}
		for _, s := range nd.ends {
			if x.at[s] != nd {
				t.Fatalf("slot %d ends at a node it does not point to", s)
			}
		}
	}
	walk(&x.root)
}

// BenchmarkPrefixIndex measures what the index adds to the decode loop: one Append per
// generated token of each of 16 slots sharing a 1,500-token prefix, and one Longest per
// admitted 1,524-token prompt.
func BenchmarkPrefixIndex(b *testing.B) {
	const slots = 16
	shared := make([]engine.Token, 1500)
	for i := range shared {
		shared[i] = engine.Token(i % 997)
	}
	fresh := func() *prefixIndex {
		x := newPrefixIndex(slots)
		for s := 0; s < slots; s++ {
			x.Set(s, append(slices.Clone(shared), engine.Token(2000+s)))
		}
		return x
	}
	b.Run("append", func(b *testing.B) {
		x := fresh()
		for i := 0; i < b.N; i++ {
			if i%4096 == 0 && i > 0 { // keep the sequences within a context's length
				b.StopTimer()
				x = fresh()
				b.StartTimer()
			}
			x.Append(i%slots, engine.Token(i))
		}
	})
	b.Run("longest", func(b *testing.B) {
		x := fresh()
		prompt := append(slices.Clone(shared), toks(3000, 3001, 3002)...)
		for i := 0; i < b.N; i++ {
			if _, n := x.Longest(prompt); n != len(shared) {
				b.Fatalf("matched %d", n)
			}
		}
	})
}
