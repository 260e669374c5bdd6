// Package topk keeps the k best-scoring items of a stream: the selection step of an exact
// (brute-force) vector search, shared by the embedded index and the Qdrant stand-in.
package topk

import (
	"container/heap"
	"sort"
)

// Item is one scored candidate: Ref is the caller's reference (an index into its arrays).
type Item struct {
	Ref   int
	Score float32
}

// Heap holds at most K items, the worst at the root. The zero value is not usable: make
// one with New.
type Heap struct {
	k     int
	items []Item
}

// New returns a Heap that keeps the k best items (k >= 1).
func New(k int) *Heap { return &Heap{k: k, items: make([]Item, 0, min(k, 1024))} }

// Offer considers one item.
func (h *Heap) Offer(ref int, score float32) {
	if len(h.items) < h.k {
		heap.Push((*minHeap)(h), Item{ref, score})
		return
	}
	if score > h.items[0].Score {
		h.items[0] = Item{ref, score}
		heap.Fix((*minHeap)(h), 0)
	}
}

// Merge offers every item of o.
func (h *Heap) Merge(o *Heap) {
	for _, it := range o.items {
		h.Offer(it.Ref, it.Score)
	}
}

// Sorted returns the items best first (ties by Ref, for a stable order); the heap is spent.
func (h *Heap) Sorted() []Item {
	out := h.items
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].Ref < out[j].Ref
	})
	h.items = nil
	return out
}

type minHeap Heap

func (m *minHeap) Len() int           { return len(m.items) }
func (m *minHeap) Less(i, j int) bool { return m.items[i].Score < m.items[j].Score }
func (m *minHeap) Swap(i, j int)      { m.items[i], m.items[j] = m.items[j], m.items[i] }
func (m *minHeap) Push(x any)         { m.items = append(m.items, x.(Item)) }
func (m *minHeap) Pop() any {
	it := m.items[len(m.items)-1]
	m.items = m.items[:len(m.items)-1]
	return it
}
