package vector_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
	"github.com/hxp-ai/hxp/vector/qdrant"
	"github.com/hxp-ai/hxp/vector/qdrant/qdranttest"
)

// benchDim is the embedding size of the benchmarks (all-MiniLM-L6-v2 and the like).
const benchDim = 384

// benchBackends are the indexes benchmarked: the embedded one, and the Qdrant backend
// against the in-process stand-in (which measures the backend's requests and gRPC, not
// Qdrant's own search).
var benchBackends = []struct {
	name string
	open func(b *testing.B) vector.Index
}{
	{"embedded", func(b *testing.B) vector.Index {
		x, err := embedded.Open(b.TempDir(), embedded.Options{MaxPoints: 1_000_000})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = x.Close() })
		return x
	}},
	{"qdrant-standin", func(b *testing.B) vector.Index {
		srv := qdranttest.Start(b, qdranttest.Options{})
		x, err := qdrant.Open(qdrant.Options{URL: srv.Addr})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = x.Close() })
		return x
	}},
}

func randomVector(rng *rand.Rand) []float32 {
	v := make([]float32, benchDim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func randomBatch(rng *rand.Rand, store string, first, n int) []vector.Point {
	pts := make([]vector.Point, n)
	for i := range pts {
		chunk := first + i
		file := fmt.Sprintf("file-%d", chunk/50)
		pts[i] = vector.Point{ID: vector.ChunkID(store, file, chunk), StoreID: store, FileID: file, Chunk: chunk,
			Text: "a chunk of text of about the length that retrieval returns, repeated to a few hundred bytes. " +
				"a chunk of text of about the length that retrieval returns, repeated to a few hundred bytes.",
			Attributes: map[string]any{"lang": []string{"en", "de"}[chunk%2], "year": float64(2000 + chunk%25)},
			Vector:     randomVector(rng)}
	}
	return pts
}

// BenchmarkVectorUpsert measures upsert throughput: one op is one call of 256 points.
func BenchmarkVectorUpsert(b *testing.B) {
	const batch = 256
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			x := be.open(b)
			rng := rand.New(rand.NewPCG(1, 1))
			batches := make([][]vector.Point, b.N)
			for i := range batches {
				batches[i] = randomBatch(rng, "bench", i*batch, batch)
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if err := x.Upsert(ctx, batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "points/s")
		})
	}
}

// BenchmarkVectorSearch measures the latency of one search (top 10, no filter, and with a
// filter matching half the points) in a store of 10k and 100k vectors; it reports the
// 50th and 99th percentiles.
func BenchmarkVectorSearch(b *testing.B) {
	// The filled indexes live as long as this function's b: a sub-benchmark runs more than
	// once, and its filters share one index.
	filled := map[string]vector.Index{}
	outer := b
	for _, be := range benchBackends {
		for _, size := range []int{10_000, 100_000} {
			for _, filtered := range []bool{false, true} {
				name := fmt.Sprintf("%s/%dk", be.name, size/1000)
				if filtered {
					name += "/filter"
				}
				b.Run(name, func(b *testing.B) {
					x := fill(outer, filled, be.name, be.open, size)
					q := vector.Query{StoreID: "bench", Limit: 10}
					if filtered {
						q.Filter = &vector.Filter{Type: vector.Eq, Key: "lang", Value: "en"}
					}
					benchSearch(b, x, q)
				})
			}
		}
	}
}

// fill returns the index of backend holding size points in store "bench", made once.
func fill(b *testing.B, filled map[string]vector.Index, backend string, open func(*testing.B) vector.Index, size int) vector.Index {
	key := fmt.Sprintf("%s/%d", backend, size)
	if x, ok := filled[key]; ok {
		return x
	}
	x := open(b)
	rng := rand.New(rand.NewPCG(2, uint64(size)))
	ctx := context.Background()
	for first := 0; first < size; first += 5000 {
		if err := x.Upsert(ctx, randomBatch(rng, "bench", first, min(5000, size-first))); err != nil {
			b.Fatal(err)
		}
	}
	filled[key] = x
	return x
}

func benchSearch(b *testing.B, x vector.Index, q vector.Query) {
	rng := rand.New(rand.NewPCG(3, 3))
	queries := make([][]float32, 64)
	for i := range queries {
		queries[i] = randomVector(rng)
	}
	lat := make([]time.Duration, 0, b.N)
	ctx := context.Background()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		q.Vector = queries[i%len(queries)]
		start := time.Now()
		hits, err := x.Search(ctx, q)
		lat = append(lat, time.Since(start))
		if err != nil || len(hits) != q.Limit {
			b.Fatalf("search: %d hits, %v", len(hits), err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}

// cpuTime returns the CPU time the process has used (user and system): on a machine
// shared with other work, the cost of an operation that wall-clock latency overstates.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
