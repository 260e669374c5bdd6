package sched

import "github.com/hxp-ai/hxp/engine"

// prefixIndex is a radix tree over the token ids whose KV the slots hold: each slot's
// cached tokens are one path from the root, and the slots holding the same prefix
// share its nodes. Longest answers, in time proportional to the prompt, which slot
// holds the longest prefix of a prompt, so that a request on a cold slot can copy
// those cells from another slot instead of evaluating them again (the approach of
// SGLang's RadixAttention and TGI v3's prefix cache, at the granularity of slots).
//
// Invariants: every node but the root has a non-empty edge and either holds the end
// of at least one slot or has at least two children (a node with one child and no
// ends is merged into it; one with neither is removed), so the tree never holds
// more nodes than twice the number of slots. Children are kept in a slice: the
// fan-out is bounded by the number of slots.
type prefixIndex struct {
	root prefixNode
	at   []*prefixNode // per slot: the node its tokens end at; nil when it holds none
}

type prefixNode struct {
	edge   []engine.Token // tokens from the parent to this node
	depth  int            // tokens from the root to the end of edge
	parent *prefixNode
	kids   []*prefixNode // distinct first tokens
	ends   []int         // slots whose tokens end exactly here
}

func newPrefixIndex(slots int) *prefixIndex {
	return &prefixIndex{at: make([]*prefixNode, slots)}
}

// Longest returns the slot holding the longest prefix of prompt and that prefix's
// length; (-1, 0) when no slot shares even the first token.
func (x *prefixIndex) Longest(prompt []engine.Token) (slot, n int) {
	nd, n := x.descend(prompt)
	if nd == &x.root {
		return -1, 0
	}
	for len(nd.ends) == 0 { // a node without ends has children (invariant)
		nd = nd.kids[0]
	}
	return nd.ends[0], n
}

// descend follows prompt from the root and returns the last node it entered and how
// many tokens of prompt matched (the match may end inside that node's edge).
func (x *prefixIndex) descend(prompt []engine.Token) (*prefixNode, int) {
	nd, i := &x.root, 0
	for i < len(prompt) {
		kid := nd.kid(prompt[i])
		if kid == nil {
			break
		}
		m := commonPrefix(kid.edge, prompt[i:])
		nd, i = kid, i+m
		if m < len(kid.edge) {
			break
		}
	}
	return nd, i
}

// Set makes slot hold exactly toks (copied).
func (x *prefixIndex) Set(slot int, toks []engine.Token) {
	x.detach(slot)
	x.insert(&x.root, slot, toks)
}

// Append records that slot now also holds toks after what it held.
func (x *prefixIndex) Append(slot int, toks ...engine.Token) {
	if len(toks) == 0 {
		return
	}
	nd := x.at[slot]
	if nd != nil && len(nd.kids) == 0 && len(nd.ends) == 1 {
		// The slot alone holds this leaf: extend its edge in place.
		nd.edge = append(nd.edge, toks...)
		nd.depth += len(toks)
		return
	}
	if nd == nil {
		nd = &x.root
	} else {
		nd.ends = removeInt(nd.ends, slot)
	}
	x.insert(nd, slot, toks)
	x.tidy(nd)
}

// Truncate makes slot hold only its first n tokens (n no more than it holds).
func (x *prefixIndex) Truncate(slot, n int) {
	nd := x.at[slot]
	if nd == nil || n >= nd.depth {
		return
	}
	nd.ends = removeInt(nd.ends, slot)
	if n == 0 {
		x.at[slot] = nil
		x.tidy(nd)
		return
	}
	up := nd
	for up.depth-len(up.edge) >= n { // the node whose edge holds position n-1
		up = up.parent
	}
	if up.depth > n {
		up = x.split(up, len(up.edge)-(up.depth-n))
	}
	up.ends = append(up.ends, slot)
	x.at[slot] = up
	x.tidy(nd)
}

// Len returns how many tokens slot holds.
func (x *prefixIndex) Len(slot int) int {
	if nd := x.at[slot]; nd != nil {
		return nd.depth
	}
	return 0
}

// Tokens returns what slot holds (tests and debugging).
func (x *prefixIndex) Tokens(slot int) []engine.Token {
	nd := x.at[slot]
	if nd == nil {
		return nil
	}
	out := make([]engine.Token, nd.depth)
	for ; nd != &x.root; nd = nd.parent {
		copy(out[nd.depth-len(nd.edge):nd.depth], nd.edge)
	}
	return out
}

// insert adds slot's end at toks below nd, splitting an edge where toks leaves it.
func (x *prefixIndex) insert(nd *prefixNode, slot int, toks []engine.Token) {
	for len(toks) > 0 {
		kid := nd.kid(toks[0])
		if kid == nil {
			kid = &prefixNode{edge: append([]engine.Token(nil), toks...), depth: nd.depth + len(toks), parent: nd}
			nd.kids = append(nd.kids, kid)
			nd, toks = kid, nil
			break
		}
		m := commonPrefix(kid.edge, toks)
		if m < len(kid.edge) {
			kid = x.split(kid, m)
		}
		nd, toks = kid, toks[m:]
	}
	if nd == &x.root {
		x.at[slot] = nil
		return
	}
	nd.ends = append(nd.ends, slot)
	x.at[slot] = nd
}

// split cuts nd's edge after m tokens (0 < m < len(edge)) and returns the new node
// holding the first m; nd becomes its only child.
func (x *prefixIndex) split(nd *prefixNode, m int) *prefixNode {
	p := nd.parent
	mid := &prefixNode{edge: nd.edge[:m:m], depth: nd.depth - len(nd.edge) + m, parent: p, kids: []*prefixNode{nd}}
	for i, k := range p.kids {
		if k == nd {
			p.kids[i] = mid
		}
	}
	nd.edge, nd.parent = nd.edge[m:], mid
	return mid
}

// detach removes slot's end from the tree.
func (x *prefixIndex) detach(slot int) {
	nd := x.at[slot]
	if nd == nil {
		return
	}
	nd.ends = removeInt(nd.ends, slot)
	x.at[slot] = nil
	x.tidy(nd)
}

// tidy restores the invariants at nd and above after an end or a child left it.
func (x *prefixIndex) tidy(nd *prefixNode) {
	for nd != &x.root && len(nd.ends) == 0 {
		switch len(nd.kids) {
		case 0: // nothing below: remove it, then look at its parent
			p := nd.parent
			for i, k := range p.kids {
				if k == nd {
					p.kids = append(p.kids[:i], p.kids[i+1:]...)
					break
				}
			}
			nd = p
		case 1: // one child: merge it into nd
			kid := nd.kids[0]
			nd.edge = append(nd.edge[:len(nd.edge):len(nd.edge)], kid.edge...)
			nd.depth, nd.kids, nd.ends = kid.depth, kid.kids, kid.ends
			for _, k := range nd.kids {
				k.parent = nd
			}
			for _, s := range nd.ends {
				x.at[s] = nd
			}
			return
		default:
			return
		}
	}
}

func (nd *prefixNode) kid(t engine.Token) *prefixNode {
	for _, k := range nd.kids {
		if k.edge[0] == t {
			return k
		}
	}
	return nil
}

func removeInt(s []int, v int) []int {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}
