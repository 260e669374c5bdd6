package embedded_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
	"github.com/hxp-ai/hxp/vector/vectortest"
)

func openTemp(t *testing.T, opts embedded.Options) *embedded.Index {
	t.Helper()
	x, err := embedded.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

func TestConformance(t *testing.T) {
	vectortest.Run(t, func(t *testing.T) vector.Index { return openTemp(t, embedded.Options{}) })
}

func point(store, file string, chunk int, v ...float32) vector.Point {
	return vector.Point{ID: vector.ChunkID(store, file, chunk), StoreID: store, FileID: file, Chunk: chunk, Text: "t", Vector: v}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	x, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	must(t, x.Upsert(ctx, []vector.Point{point("a", "f", 0, 1, 0), point("a", "f", 1, 0, 1), point("a", "g", 0, 1, 1)}))
	must(t, x.Upsert(ctx, []vector.Point{point("b", "f", 0, 3, 4, 0)}))
	must(t, x.DeleteFile(ctx, "a", "g"))
	must(t, x.Close())
	if _, err := x.Count(ctx, "a"); !errors.Is(err, embedded.ErrClosed) {
		t.Fatalf("Count after Close: %v, want ErrClosed", err)
	}

	y, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer y.Close()
	for store, want := range map[string]int{"a": 2, "b": 1, "": 3} {
		if n, err := y.Count(ctx, store); err != nil || n != want {
			t.Fatalf("Count(%q) after reopen = %d, %v; want %d", store, n, err, want)
		}
	}
	hits, err := y.Search(ctx, vector.Query{StoreID: "b", Vector: []float32{3, 4, 0}, Limit: 1})
	if err != nil || len(hits) != 1 || hits[0].Score < 0.9999 {
		t.Fatalf("search after reopen: %+v, %v", hits, err)
	}
	// The store's dimension survives the reopen.
	if err := y.Upsert(ctx, []vector.Point{point("b", "f", 1, 1, 0)}); !errors.Is(err, vector.ErrInvalid) {
		t.Fatalf("upsert of another dimension after reopen: %v, want ErrInvalid", err)
	}
}

func TestMaxPoints(t *testing.T) {
	ctx := context.Background()
	x := openTemp(t, embedded.Options{MaxPoints: 3})
	must(t, x.Upsert(ctx, []vector.Point{point("a", "f", 0, 1, 0), point("a", "f", 1, 0, 1)}))
	err := x.Upsert(ctx, []vector.Point{point("a", "f", 2, 1, 1), point("a", "f", 3, 1, 2)})
	if !errors.Is(err, vector.ErrFull) || !strings.Contains(err.Error(), "max_points") {
		t.Fatalf("upsert beyond max_points: %v, want ErrFull naming max_points", err)
	}
	if n, _ := x.Count(ctx, ""); n != 2 {
		t.Fatalf("a refused upsert stored points: %d", n)
	}
	// Replacing points does not grow the index; filling it to the bound is allowed.
	must(t, x.Upsert(ctx, []vector.Point{point("a", "f", 0, 2, 1), point("a", "f", 1, 1, 2), point("a", "f", 2, 1, 1)}))
	if _, err := embedded.Open(t.TempDir(), embedded.Options{MaxPoints: -1}); err == nil || !strings.Contains(err.Error(), "max_points") {
		t.Fatalf("negative max_points: %v", err)
	}
}

func TestOneProcessPerDirectory(t *testing.T) {
	dir := t.TempDir()
	x, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	// bbolt's lock is per open file description: a second Open in this process stands in
	// for another process.
	if _, err := embedded.Open(dir, embedded.Options{LockTimeout: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Open of the directory: %v, want a lock error", err)
	}
}

func TestSearchLargeStoreInParallelParts(t *testing.T) {
	// Above the size from which a search is split across the CPUs, the parts' results must
	// merge into the exact answer, computed here in float64.
	ctx := context.Background()
	x := openTemp(t, embedded.Options{})
	const n, dim, k = 20000, 16, 10
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() []float32 {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		return v
	}
	pts := make([]vector.Point, n)
	for i := range pts {
		pts[i] = point("big", "f", i, random()...)
	}
	must(t, x.Upsert(ctx, pts))
	q := random()
	type scored struct {
		chunk int
		score float64
	}
	want := make([]scored, n)
	for i, p := range pts {
		var d, np, nq float64
		for j := range q {
			d += float64(p.Vector[j]) * float64(q[j])
			np += float64(p.Vector[j]) * float64(p.Vector[j])
			nq += float64(q[j]) * float64(q[j])
		}
		want[i] = scored{i, d / math.Sqrt(np*nq)}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].score > want[j].score })
	hits, err := x.Search(ctx, vector.Query{StoreID: "big", Vector: q, Limit: k, ScoreThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != k {
		t.Fatalf("%d hits, want %d", len(hits), k)
	}
	for i, h := range hits {
		if h.Chunk != want[i].chunk || math.Abs(float64(h.Score)-want[i].score) > 1e-5 {
			t.Fatalf("hit %d: chunk %d score %v, want chunk %d score %v", i, h.Chunk, h.Score, want[i].chunk, want[i].score)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestScrollMayCallTheIndex(t *testing.T) {
	// fn deletes a file on its first call: no deadlock, and the deleted points of the
	// pages not yet copied are skipped.
	ctx := context.Background()
	x := openTemp(t, embedded.Options{})
	var pts []vector.Point
	for i := range 3000 {
		pts = append(pts, point("s", []string{"a", "b"}[i%2], i, 1, float32(i)))
	}
	must(t, x.Upsert(ctx, pts))
	calls, seenB := 0, 0
	err := x.Scroll(ctx, "s", func(p vector.Point) error {
		if calls++; calls == 1 {
			if err := x.DeleteFile(ctx, "s", "b"); err != nil {
				return err
			}
		}
		if p.FileID == "b" {
			seenB++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// At most the first page (1024 points) was copied before the delete.
	if calls < 1500 || calls > 1500+1024 || seenB > 1024 {
		t.Fatalf("%d points scrolled, %d of the deleted file: want file a's 1500 and at most one page of b's", calls, seenB)
	}
}
