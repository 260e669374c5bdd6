package retrieval

import "slices"

// page cuts one page of items (ascending id order) for p: newest first unless asc,
// after and before exclusive cursors compared by id (ids sort by creation, so a
// deleted cursor still pages correctly).
func page[T any](items []T, id func(*T) string, p ListParams) *List[T] {
	if p.Desc {
		items = slices.Clone(items)
		slices.Reverse(items)
	}
	// beyond reports whether a is past b in the listing's order.
	beyond := func(a, b string) bool {
		if p.Desc {
			return a < b
		}
		return a > b
	}
	out := &List[T]{Object: "list", Data: []T{}}
	for i := range items {
		k := id(&items[i])
		if p.After != "" && !beyond(k, p.After) || p.Before != "" && !beyond(p.Before, k) {
			continue
		}
		if len(out.Data) == p.Limit {
			out.HasMore = true
			break
		}
		out.Data = append(out.Data, items[i])
	}
	if n := len(out.Data); n > 0 {
		first, last := id(&out.Data[0]), id(&out.Data[n-1])
		out.FirstID, out.LastID = &first, &last
	}
	return out
}
