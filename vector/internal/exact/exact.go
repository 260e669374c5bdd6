// Package exact holds the two steps of an exact (brute-force) vector search, shared by the
// embedded index and the Qdrant stand-in: the dot product of normalized vectors (their
// cosine) and the selection of the k best-scoring items.
package exact

import (
	"container/heap"
	"sort"
)

// Item is one scored candidate: Ref is the caller's reference (an index into its arrays).
type Item struct {
	Ref   int
	Score float32
}

// TopK holds at most k items, the worst at the root. The zero value is not usable: make
// one with New.
type TopK struct {
	k     int
	items []Item
}

// NewTopK returns a TopK that keeps the k best items (k >= 1).
func NewTopK(k int) *TopK { return &TopK{k: k, items: make([]Item, 0, min(k, 1024))} }

// Offer considers one item.
func (h *TopK) Offer(ref int, score float32) {
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
func (h *TopK) Merge(o *TopK) {
	for _, it := range o.items {
		h.Offer(it.Ref, it.Score)
	}
}

// Sorted returns the items best first (ties by Ref, for a stable order); the heap is spent.
func (h *TopK) Sorted() []Item {
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

type minHeap TopK

func (m *minHeap) Len() int           { return len(m.items) }
func (m *minHeap) Less(i, j int) bool { return m.items[i].Score < m.items[j].Score }
func (m *minHeap) Swap(i, j int)      { m.items[i], m.items[j] = m.items[j], m.items[i] }
func (m *minHeap) Push(x any)         { m.items = append(m.items, x.(Item)) }
func (m *minHeap) Pop() any {
	it := m.items[len(m.items)-1]
	m.items = m.items[:len(m.items)-1]
	return it
}

// Dot returns the dot product of a and b (len(b) >= len(a)): the cosine of two normalized
// vectors.
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}
