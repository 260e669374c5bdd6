// Package vectortest is the behaviour every vector.Index must show, as a test suite that
// each implementation runs against itself: the embedded index, the Qdrant backend against
// its in-process stand-in, and the Qdrant backend against a real Qdrant when
// HXP_TEST_QDRANT_URL is set. Every subtest uses stores of its own (random ids), so the
// suite may run against a server that other runs share.
package vectortest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/vector"
)

// Factory returns the index a subtest uses; each subtest calls it once. It may return the
// same index (or indexes on the same server) to several subtests: they never share stores.
type Factory func(t *testing.T) vector.Index

// Run runs the whole suite as parallel subtests.
func Run(t *testing.T, newIndex Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, vector.Index)
	}{
		{"RanksByCosine", testRanksByCosine},
		{"Limit", testLimit},
		{"ScoreThreshold", testScoreThreshold},
		{"ComparisonFilters", testComparisonFilters},
		{"CompoundFilters", testCompoundFilters},
		{"StoresAreIsolated", testStoresAreIsolated},
		{"DeleteFile", testDeleteFile},
		{"DeleteStore", testDeleteStore},
		{"CountAndScroll", testCountAndScroll},
		{"ScrollStopsOnError", testScrollStopsOnError},
		{"DimensionMismatchRefused", testDimensionMismatch},
		{"InvalidInputRefused", testInvalidInput},
		{"ReupsertReplaces", testReupsertReplaces},
		{"LargeUpsertIsBatched", testLargeUpsert},
		{"ConcurrentUpserts", testConcurrentUpserts},
		{"ConcurrentFirstUpsertsAgreeOnDimension", testConcurrentFirstDimension},
		{"EmptyStore", testEmptyStore},
		{"Check", func(t *testing.T, x vector.Index) {
			if err := x.Check(ctxFor(t)); err != nil {
				t.Fatalf("Check: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newIndex(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a store id no other subtest or run uses, and deletes the store when
// the test ends (for a shared server).
func newStore(t *testing.T, x vector.Index) string {
	id := "vs_" + vector.NewID()
	t.Cleanup(func() { _ = x.DeleteStore(context.Background(), id) })
	return id
}

// pt makes point chunk of file in store with vector v.
func pt(store, file string, chunk int, v []float32, attrs map[string]any) vector.Point {
	return vector.Point{ID: vector.ChunkID(store, file, chunk), StoreID: store, FileID: file, Chunk: chunk,
		Text: fmt.Sprintf("%s chunk %d", file, chunk), Attributes: attrs, Vector: v}
}

func upsert(ctx context.Context, t *testing.T, x vector.Index, pts ...vector.Point) {
	t.Helper()
	if err := x.Upsert(ctx, pts); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
}

func search(ctx context.Context, t *testing.T, x vector.Index, q vector.Query) []vector.Hit {
	t.Helper()
	hits, err := x.Search(ctx, q)
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	for i := 1; i < len(hits); i++ {
		if hits[i].Score > hits[i-1].Score {
			t.Fatalf("hits not best first: %v before %v", hits[i-1].Score, hits[i].Score)
		}
	}
	return hits
}

func count(ctx context.Context, t *testing.T, x vector.Index, store string) int {
	t.Helper()
	n, err := x.Count(ctx, store)
	if err != nil {
		t.Fatalf("Count(%s): %v", store, err)
	}
	return n
}

// chunksOf returns the hits' chunk numbers in order.
func chunksOf(hits []vector.Hit) []int {
	out := make([]int, len(hits))
	for i, h := range hits {
		out[i] = h.Chunk
	}
	return out
}

// unit returns the dim-dimensional vector at angle a (radians) in the plane of the first
// two axes: its cosine with unit(0) is cos(a).
func unit(dim int, a float64) []float32 {
	v := make([]float32, dim)
	v[0], v[1] = float32(math.Cos(a)), float32(math.Sin(a))
	return v
}

func cosine(a, b []float32) float64 {
	var d, na, nb float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return d / math.Sqrt(na*nb)
}

const dim = 8

func testRanksByCosine(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	// Chunk i is at angle i*0.3 from the query; chunk 2 is scaled by 5 (cosine ignores
	// length); chunk 7 points away (negative cosine).
	var pts []vector.Point
	for i := range 7 {
		v := unit(dim, float64(i)*0.3)
		if i == 2 {
			for j := range v {
				v[j] *= 5
			}
		}
		pts = append(pts, pt(s, "file-a", i, v, nil))
	}
	pts = append(pts, pt(s, "file-a", 7, unit(dim, 2.5), nil))
	// Shuffle the insertion order so that ranking is not insertion order.
	slices.Reverse(pts)
	upsert(ctx, t, x, pts...)

	q := unit(dim, 0)
	for j := range q {
		q[j] *= 0.5
	}
	hits := search(ctx, t, x, vector.Query{StoreID: s, Vector: q, Limit: 10, ScoreThreshold: -1})
	if got, want := chunksOf(hits), []int{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("ranking %v, want %v", got, want)
	}
	for _, h := range hits {
		want := math.Cos(float64(h.Chunk) * 0.3)
		if h.Chunk == 7 {
			want = math.Cos(2.5)
		}
		if math.Abs(float64(h.Score)-want) > 1e-4 {
			t.Errorf("chunk %d scored %v, want cosine %v", h.Chunk, h.Score, want)
		}
		if h.StoreID != s || h.FileID != "file-a" || h.Text != fmt.Sprintf("file-a chunk %d", h.Chunk) ||
			h.ID != vector.ChunkID(s, "file-a", h.Chunk) {
			t.Errorf("hit payload %+v", h.Point)
		}
		if h.Vector != nil {
			t.Errorf("hit carries its vector")
		}
	}
}

func testLimit(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	var pts []vector.Point
	for i := range 20 {
		pts = append(pts, pt(s, "f", i, unit(dim, float64(i)*0.05), nil))
	}
	upsert(ctx, t, x, pts...)
	for _, limit := range []int{1, 3, 20, 50} {
		hits := search(ctx, t, x, vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: limit})
		want := min(limit, 20)
		if len(hits) != want {
			t.Fatalf("limit %d: %d hits, want %d", limit, len(hits), want)
		}
		for i, h := range hits {
			if h.Chunk != i {
				t.Fatalf("limit %d: hit %d is chunk %d, want the %d-th closest", limit, i, h.Chunk, i)
			}
		}
	}
}

func testScoreThreshold(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	// Cosines with the query: 1, cos(1)≈0.54, cos(1.4)≈0.17, cos(2)≈-0.42, cos(3)≈-0.99.
	angles := []float64{0, 1, 1.4, 2, 3}
	var pts []vector.Point
	for i, a := range angles {
		pts = append(pts, pt(s, "f", i, unit(dim, a), nil))
	}
	upsert(ctx, t, x, pts...)
	for _, tc := range []struct {
		threshold float32
		want      []int
	}{
		{0.5, []int{0, 1}},
		{0.1, []int{0, 1, 2}},
		{0, []int{0, 1, 2}}, // the zero value leaves out negative similarities
		{-0.5, []int{0, 1, 2, 3}},
		{-1, []int{0, 1, 2, 3, 4}},
		{0.9999, []int{0}},
	} {
		hits := search(ctx, t, x, vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: 10, ScoreThreshold: tc.threshold})
		if got := chunksOf(hits); !slices.Equal(got, tc.want) {
			t.Errorf("threshold %v: chunks %v, want %v", tc.threshold, got, tc.want)
		}
	}
}

// filterFixture stores six points with attributes (one with none) in a new store, all at
// the same distance from the query so that only the filter decides.
func filterFixture(ctx context.Context, t *testing.T, x vector.Index) string {
	s := newStore(t, x)
	attrs := []map[string]any{
		{"lang": "en", "year": 2019.0, "draft": false},
		{"lang": "de", "year": 2020.0, "draft": true},
		{"lang": "en", "year": 2021.0, "draft": true},
		{"lang": "fr", "year": 2022.5, "draft": false},
		{"lang": "en", "year": 2024, "draft": false, "team": "search"}, // an int reads as a number
		nil,
	}
	var pts []vector.Point
	for i, a := range attrs {
		pts = append(pts, pt(s, "f", i, unit(dim, 0.1), a))
	}
	upsert(ctx, t, x, pts...)
	return s
}

// matching returns the sorted chunks of the store's points that match f.
func matching(ctx context.Context, t *testing.T, x vector.Index, s string, f *vector.Filter) []int {
	t.Helper()
	got := chunksOf(search(ctx, t, x, vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: 100, Filter: f}))
	sort.Ints(got)
	return got
}

func testComparisonFilters(t *testing.T, x vector.Index) {
	ctx := ctxFor(t)
	s := filterFixture(ctx, t, x)
	for _, tc := range []struct {
		f    vector.Filter
		want []int
	}{
		{vector.Filter{Type: vector.Eq, Key: "lang", Value: "en"}, []int{0, 2, 4}},
		{vector.Filter{Type: vector.Eq, Key: "year", Value: 2020.0}, []int{1}},
		{vector.Filter{Type: vector.Eq, Key: "year", Value: 2024}, []int{4}},
		{vector.Filter{Type: vector.Eq, Key: "year", Value: 2022.5}, []int{3}},
		{vector.Filter{Type: vector.Eq, Key: "draft", Value: true}, []int{1, 2}},
		{vector.Filter{Type: vector.Eq, Key: "lang", Value: "es"}, []int{}},
		{vector.Filter{Type: vector.Eq, Key: "year", Value: "2020"}, []int{}},      // a string is not a number
		{vector.Filter{Type: vector.Ne, Key: "lang", Value: "en"}, []int{1, 3, 5}}, // missing differs
		{vector.Filter{Type: vector.Ne, Key: "draft", Value: false}, []int{1, 2, 5}},
		{vector.Filter{Type: vector.Ne, Key: "year", Value: 2021}, []int{0, 1, 3, 4, 5}},
		{vector.Filter{Type: vector.Gt, Key: "year", Value: 2020}, []int{2, 3, 4}},
		{vector.Filter{Type: vector.Gte, Key: "year", Value: 2020}, []int{1, 2, 3, 4}},
		{vector.Filter{Type: vector.Lt, Key: "year", Value: 2021}, []int{0, 1}},
		{vector.Filter{Type: vector.Lte, Key: "year", Value: 2021.0}, []int{0, 1, 2}},
		{vector.Filter{Type: vector.Gt, Key: "lang", Value: 1}, []int{}}, // a string is not a number
		{vector.Filter{Type: vector.In, Key: "lang", Value: []any{"de", "fr"}}, []int{1, 3}},
		{vector.Filter{Type: vector.In, Key: "lang", Value: []string{"en"}}, []int{0, 2, 4}},
		{vector.Filter{Type: vector.In, Key: "year", Value: []any{2019.0, 2022.5, 1999}}, []int{0, 3}},
		{vector.Filter{Type: vector.Nin, Key: "lang", Value: []any{"en", "de"}}, []int{3, 5}},
		{vector.Filter{Type: vector.Nin, Key: "year", Value: []float64{2019, 2020}}, []int{2, 3, 4, 5}},
		{vector.Filter{Type: vector.Eq, Key: "team", Value: "search"}, []int{4}},
	} {
		if got := matching(ctx, t, x, s, &tc.f); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("%s %s %v: chunks %v, want %v", tc.f.Key, tc.f.Type, tc.f.Value, got, tc.want)
		}
	}
}

func testCompoundFilters(t *testing.T, x vector.Index) {
	ctx := ctxFor(t)
	s := filterFixture(ctx, t, x)
	eq := func(k string, v any) vector.Filter { return vector.Filter{Type: vector.Eq, Key: k, Value: v} }
	for _, tc := range []struct {
		name string
		f    vector.Filter
		want []int
	}{
		{"and", vector.Filter{Type: vector.And, Filters: []vector.Filter{eq("lang", "en"), eq("draft", false)}}, []int{0, 4}},
		{"or", vector.Filter{Type: vector.Or, Filters: []vector.Filter{eq("lang", "de"), eq("lang", "fr")}}, []int{1, 3}},
		{"and of or", vector.Filter{Type: vector.And, Filters: []vector.Filter{
			{Type: vector.Or, Filters: []vector.Filter{eq("lang", "en"), eq("lang", "fr")}},
			{Type: vector.Gte, Key: "year", Value: 2021},
		}}, []int{2, 3, 4}},
		{"or of and", vector.Filter{Type: vector.Or, Filters: []vector.Filter{
			{Type: vector.And, Filters: []vector.Filter{eq("lang", "en"), eq("draft", true)}},
			{Type: vector.Lt, Key: "year", Value: 2020},
		}}, []int{0, 2}},
		{"and with ne", vector.Filter{Type: vector.And, Filters: []vector.Filter{
			{Type: vector.Ne, Key: "lang", Value: "en"}, {Type: vector.Nin, Key: "year", Value: []any{2020}},
		}}, []int{3, 5}},
		{"single", vector.Filter{Type: vector.Or, Filters: []vector.Filter{eq("draft", true)}}, []int{1, 2}},
	} {
		if got := matching(ctx, t, x, s, &tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: chunks %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testStoresAreIsolated(t *testing.T, x vector.Index) {
	ctx := ctxFor(t)
	a, b := newStore(t, x), newStore(t, x)
	// The same file id and vectors in both stores; b's are closer to the query.
	upsert(ctx, t, x, pt(a, "f", 0, unit(dim, 0.5), nil), pt(a, "f", 1, unit(dim, 0.6), nil))
	upsert(ctx, t, x, pt(b, "f", 0, unit(dim, 0), nil), pt(b, "f", 1, unit(dim, 0.1), nil), pt(b, "f", 2, unit(dim, 0.2), nil))
	for store, n := range map[string]int{a: 2, b: 3} {
		hits := search(ctx, t, x, vector.Query{StoreID: store, Vector: unit(dim, 0), Limit: 10})
		if len(hits) != n {
			t.Fatalf("store %s: %d hits, want %d", store, len(hits), n)
		}
		for _, h := range hits {
			if h.StoreID != store || h.ID != vector.ChunkID(store, "f", h.Chunk) {
				t.Fatalf("search of %s returned %s's point %s", store, h.StoreID, h.ID)
			}
		}
		if c := count(ctx, t, x, store); c != n {
			t.Fatalf("Count(%s) = %d, want %d", store, c, n)
		}
	}
	if hits := search(ctx, t, x, vector.Query{StoreID: "vs_" + vector.NewID(), Vector: unit(dim, 0), Limit: 10}); len(hits) != 0 {
		t.Fatalf("a store never written has %d hits", len(hits))
	}
}

func testDeleteFile(t *testing.T, x vector.Index) {
	ctx := ctxFor(t)
	a, b := newStore(t, x), newStore(t, x)
	for i := range 3 {
		upsert(ctx, t, x, pt(a, "keep", i, unit(dim, 0.1*float64(i)), nil), pt(a, "drop", i, unit(dim, 0.05), nil),
			pt(b, "drop", i, unit(dim, 0), nil))
	}
	if err := x.DeleteFile(ctx, a, "drop"); err != nil {
		t.Fatalf("DeleteFile: %v", err)
	}
	hits := search(ctx, t, x, vector.Query{StoreID: a, Vector: unit(dim, 0), Limit: 10})
	if len(hits) != 3 {
		t.Fatalf("%d hits after deleting a file, want the other file's 3", len(hits))
	}
	for _, h := range hits {
		if h.FileID != "keep" {
			t.Fatalf("deleted file's chunk %d still found", h.Chunk)
		}
	}
	if c := count(ctx, t, x, b); c != 3 {
		t.Fatalf("deleting a file of store a removed %d points of store b's file of the same id", 3-c)
	}
	if err := x.DeleteFile(ctx, a, "never-there"); err != nil {
		t.Fatalf("DeleteFile of an absent file: %v", err)
	}
}

func testDeleteStore(t *testing.T, x vector.Index) {
	ctx := ctxFor(t)
	a, b := newStore(t, x), newStore(t, x)
	for i := range 4 {
		upsert(ctx, t, x, pt(a, "f", i, unit(dim, 0.1), nil), pt(b, "f", i, unit(dim, 0.1), nil))
	}
	if err := x.DeleteStore(ctx, a); err != nil {
		t.Fatalf("DeleteStore: %v", err)
	}
	if c := count(ctx, t, x, a); c != 0 {
		t.Fatalf("deleted store counts %d points", c)
	}
	if hits := search(ctx, t, x, vector.Query{StoreID: a, Vector: unit(dim, 0), Limit: 10}); len(hits) != 0 {
		t.Fatalf("deleted store has %d hits", len(hits))
	}
	if c := count(ctx, t, x, b); c != 4 {
		t.Fatalf("other store counts %d points after a delete, want 4", c)
	}
	// A deleted store may be used again, even with another dimension.
	upsert(ctx, t, x, pt(a, "g", 0, unit(dim*2, 0), nil))
	if c := count(ctx, t, x, a); c != 1 {
		t.Fatalf("reused store counts %d", c)
	}
}

func testCountAndScroll(t *testing.T, x vector.Index) {
	ctx := ctxFor(t)
	s := newStore(t, x)
	want := map[string]vector.Point{}
	var pts []vector.Point
	for i := range 30 {
		v := unit(dim, float64(i)*0.1)
		v[2+i%6] = float32(i) // a third axis, so that vectors differ in more than angle
		p := pt(s, fmt.Sprintf("file-%d", i%3), i, v, map[string]any{"n": float64(i), "tag": "t"})
		pts = append(pts, p)
		want[p.ID] = p
	}
	upsert(ctx, t, x, pts...)
	if c := count(ctx, t, x, s); c != 30 {
		t.Fatalf("Count = %d, want 30", c)
	}
	if all := count(ctx, t, x, ""); all < 30 {
		t.Fatalf("Count of every store = %d, less than one store's 30", all)
	}
	seen := map[string]bool{}
	err := x.Scroll(ctx, s, func(p vector.Point) error {
		w, ok := want[p.ID]
		if !ok {
			return fmt.Errorf("scroll returned unknown point %s of store %s", p.ID, p.StoreID)
		}
		if seen[p.ID] {
			return fmt.Errorf("scroll returned %s twice", p.ID)
		}
		seen[p.ID] = true
		if p.StoreID != s || p.FileID != w.FileID || p.Chunk != w.Chunk || p.Text != w.Text ||
			p.Attributes["n"] != w.Attributes["n"] || p.Attributes["tag"] != "t" {
			return fmt.Errorf("point %s payload %+v, want %+v", p.ID, p, w)
		}
		if len(p.Vector) != dim || math.Abs(cosine(p.Vector, w.Vector)-1) > 1e-5 {
			return fmt.Errorf("point %s vector %v is not the stored direction %v", p.ID, p.Vector, w.Vector)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 30 {
		t.Fatalf("scroll returned %d points, want 30", len(seen))
	}
	// Scrolling every store includes this one's points.
	inAll := 0
	if err := x.Scroll(ctx, "", func(p vector.Point) error {
		if p.StoreID == s {
			inAll++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inAll != 30 {
		t.Fatalf("scroll of every store returned %d of this store's points, want 30", inAll)
	}
}

func testScrollStopsOnError(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	for i := range 5 {
		upsert(ctx, t, x, pt(s, "f", i, unit(dim, 0.1), nil))
	}
	stop := errors.New("stop")
	calls := 0
	err := x.Scroll(ctx, s, func(vector.Point) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Scroll = %v after %d calls, want fn's error after 1", err, calls)
	}
}

func wantInvalid(t *testing.T, what string, err error, field string) {
	t.Helper()
	if !errors.Is(err, vector.ErrInvalid) {
		t.Fatalf("%s: %v, want an error wrapping ErrInvalid", what, err)
	}
	if field != "" && !strings.Contains(err.Error(), field) {
		t.Fatalf("%s: %q does not name %s", what, err, field)
	}
}

func testDimensionMismatch(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	upsert(ctx, t, x, pt(s, "f", 0, unit(dim, 0), nil))
	err := x.Upsert(ctx, []vector.Point{pt(s, "f", 1, unit(dim+1, 0), nil)})
	wantInvalid(t, "upsert of another dimension", err, "points[0].vector")
	err = x.Upsert(ctx, []vector.Point{pt(s, "f", 2, unit(dim, 0), nil), pt(s, "f", 3, unit(4, 0), nil)})
	wantInvalid(t, "upsert of mixed dimensions", err, "points[1].vector")
	_, err = x.Search(ctx, vector.Query{StoreID: s, Vector: unit(4, 0), Limit: 1})
	wantInvalid(t, "search with another dimension", err, "vector")
	if c := count(ctx, t, x, s); c != 1 {
		t.Fatalf("a refused upsert stored points: count %d, want 1", c)
	}
	// Another store may have another dimension.
	o := newStore(t, x)
	upsert(ctx, t, x, pt(o, "f", 0, unit(4, 0), nil))
	if hits := search(ctx, t, x, vector.Query{StoreID: o, Vector: unit(4, 0), Limit: 1}); len(hits) != 1 {
		t.Fatalf("store of dimension 4: %d hits", len(hits))
	}
}

func testInvalidInput(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	p := pt(s, "f", 0, unit(dim, 0), nil)
	for _, tc := range []struct {
		name  string
		edit  func(*vector.Point)
		field string
	}{
		{"empty vector", func(p *vector.Point) { p.Vector = nil }, "points[0].vector"},
		{"zero vector", func(p *vector.Point) { p.Vector = make([]float32, dim) }, "points[0].vector"},
		{"NaN", func(p *vector.Point) { p.Vector[3] = float32(math.NaN()) }, "points[0].vector"},
		{"bad id", func(p *vector.Point) { p.ID = "chunk-1" }, "points[0].id"},
		{"no store", func(p *vector.Point) { p.StoreID = "" }, "points[0].store_id"},
		{"no file", func(p *vector.Point) { p.FileID = "" }, "points[0].file_id"},
		{"attribute", func(p *vector.Point) { p.Attributes = map[string]any{"x": []int{1}} }, "points[0].attributes.x"},
	} {
		q := p
		q.Vector = slices.Clone(p.Vector)
		tc.edit(&q)
		wantInvalid(t, tc.name, x.Upsert(ctx, []vector.Point{q}), tc.field)
	}
	upsert(ctx, t, x, p)
	for _, tc := range []struct {
		name  string
		q     vector.Query
		field string
	}{
		{"no store", vector.Query{Vector: unit(dim, 0), Limit: 1}, "store_id"},
		{"empty vector", vector.Query{StoreID: s, Limit: 1}, "vector"},
		{"limit 0", vector.Query{StoreID: s, Vector: unit(dim, 0)}, "limit"},
		{"limit too large", vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: vector.MaxLimit + 1}, "limit"},
		{"unknown filter", vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: 1,
			Filter: &vector.Filter{Type: "like", Key: "a", Value: "b"}}, "filters.type"},
		{"gt on a string", vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: 1,
			Filter: &vector.Filter{Type: vector.And, Filters: []vector.Filter{{Type: vector.Gt, Key: "a", Value: "b"}}}}, "filters.filters[0].value"},
		{"in without a list", vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: 1,
			Filter: &vector.Filter{Type: vector.In, Key: "a", Value: "b"}}, "filters.value"},
		{"empty or", vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: 1,
			Filter: &vector.Filter{Type: vector.Or}}, "filters.filters"},
	} {
		_, err := x.Search(ctx, tc.q)
		wantInvalid(t, tc.name, err, tc.field)
	}
}

func testReupsertReplaces(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	upsert(ctx, t, x, pt(s, "f", 0, unit(dim, 0), map[string]any{"v": "old"}), pt(s, "f", 1, unit(dim, 1), nil))
	// Chunk 0 again: another text, attributes and direction.
	p := pt(s, "f", 0, unit(dim, 2), map[string]any{"v": "new"})
	p.Text = "replaced"
	upsert(ctx, t, x, p)
	if c := count(ctx, t, x, s); c != 2 {
		t.Fatalf("count %d after re-upsert, want 2", c)
	}
	hits := search(ctx, t, x, vector.Query{StoreID: s, Vector: unit(dim, 2), Limit: 1})
	if len(hits) != 1 || hits[0].Chunk != 0 || hits[0].Text != "replaced" || hits[0].Attributes["v"] != "new" || hits[0].Score < 0.999 {
		t.Fatalf("re-upserted point not replaced: %+v", hits)
	}
	if f := matching(ctx, t, x, s, &vector.Filter{Type: vector.Eq, Key: "v", Value: "old"}); len(f) != 0 {
		t.Fatalf("old attributes still match: %v", f)
	}
}

func testLargeUpsert(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	const n = 1000 // several batches for a backend that batches
	pts := make([]vector.Point, n)
	for i := range pts {
		pts[i] = pt(s, "big", i, unit(dim, float64(i)/n), nil)
	}
	upsert(ctx, t, x, pts...)
	if c := count(ctx, t, x, s); c != n {
		t.Fatalf("count %d, want %d", c, n)
	}
	hits := search(ctx, t, x, vector.Query{StoreID: s, Vector: unit(dim, 1), Limit: 1})
	if len(hits) != 1 || hits[0].Chunk != n-1 {
		t.Fatalf("closest to the last point: %+v", hits)
	}
}

func testConcurrentUpserts(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	const writers, batches, size = 8, 10, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				var pts []vector.Point
				for i := range size {
					chunk := (b*size + i)
					pts = append(pts, pt(s, fmt.Sprintf("w%d", w), chunk, unit(dim, float64(w)*0.1+float64(chunk)*0.001), nil))
				}
				if err := x.Upsert(ctx, pts); err != nil {
					errs <- err
					return
				}
				// Searches run between the writes.
				if _, err := x.Search(ctx, vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: 5}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Upsert or Search: %v", err)
	}
	if c := count(ctx, t, x, s); c != writers*batches*size {
		t.Fatalf("count %d after concurrent upserts, want %d", c, writers*batches*size)
	}
	for w := range writers {
		n := 0
		if err := x.Scroll(ctx, s, func(p vector.Point) error {
			if p.FileID == fmt.Sprintf("w%d", w) {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != batches*size {
			t.Fatalf("writer %d: %d points stored, want %d", w, n, batches*size)
		}
	}
}

func testConcurrentFirstDimension(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	// Eight writers race to put the store's first points, half of dimension dim and half
	// of dim+2: those of one dimension succeed, the others are refused, and the store
	// holds one dimension.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := map[int]int{}
	for w := range 8 {
		d := dim + 2*(w%2)
		wg.Go(func() {
			err := x.Upsert(ctx, []vector.Point{pt(s, fmt.Sprintf("w%d", w), 0, unit(d, 0.1), nil)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok[d]++
			case !errors.Is(err, vector.ErrInvalid):
				t.Errorf("writer %d: %v, want success or ErrInvalid", w, err)
			}
		})
	}
	wg.Wait()
	if len(ok) != 1 {
		t.Fatalf("upserts of both dimensions succeeded: %v", ok)
	}
	for d, n := range ok {
		if n != 4 || count(ctx, t, x, s) != 4 {
			t.Fatalf("%d writers of dimension %d succeeded, store counts %d; want 4 and 4", n, d, count(ctx, t, x, s))
		}
	}
}

func testEmptyStore(t *testing.T, x vector.Index) {
	ctx, s := ctxFor(t), newStore(t, x)
	if hits := search(ctx, t, x, vector.Query{StoreID: s, Vector: unit(dim, 0), Limit: 5}); len(hits) != 0 {
		t.Fatalf("empty store: %d hits", len(hits))
	}
	if c := count(ctx, t, x, s); c != 0 {
		t.Fatalf("empty store counts %d", c)
	}
	if err := x.DeleteStore(ctx, s); err != nil {
		t.Fatalf("DeleteStore of an empty store: %v", err)
	}
	if err := x.Upsert(ctx, nil); err != nil {
		t.Fatalf("Upsert of no points: %v", err)
	}
}
