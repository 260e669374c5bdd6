package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/retrieval"
	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
)

// BenchmarkIngestion: one document chunked (static, 100 tokens, 20 of overlap),
// embedded and stored through retrieval.Service on the tiny model and the embedded
// index, against the same chunks only embedded (the same batches of 16 through the
// same service) in the same run: chunks/s of each and the pipeline's overhead ratio
// (tokenizing, detokenizing each chunk, the index's fsynced upserts, the catalog).
// Then the latency of a search (the query's embedding included) in the store.
func BenchmarkIngestion(b *testing.B) {
	ctx := context.Background()
	core := tinyCore(b, 4, 512)
	dir := b.TempDir()
	cat, err := retrieval.OpenBolt(filepath.Join(dir, "catalog.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	idx, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	rs := retrieval.New(retrieval.Options{Catalog: cat, Index: idx, Models: core, Workers: 1, Log: zerolog.Nop()})
	defer rs.Close()

	var doc strings.Builder
	for i := 0; doc.Len() < 40_000; i++ {
		fmt.Fprintf(&doc, "Paragraph %d: the survey boat logged tide gauge %d at %d centimetres near buoy %d.\n", i, i%97, (i*37)%500, i%13)
	}
	store, err := rs.CreateStore(ctx, &retrieval.CreateStoreRequest{EmbeddingModel: "tiny"})
	if err != nil {
		b.Fatal(err)
	}
	static := &retrieval.ChunkingRequest{Type: "static", Static: &retrieval.Static{MaxChunkSizeTokens: 100, ChunkOverlapTokens: 20}}
	var ingest, embedOnly time.Duration
	chunks := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := rs.Upload(ctx, fmt.Sprintf("doc%d.txt", i), "assistants", "", []byte(doc.String()))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := rs.Attach(ctx, store.ID, &retrieval.AttachRequest{FileID: f.ID, ChunkingStrategy: static}); err != nil {
			b.Fatal(err)
		}
		var vf *retrieval.VectorStoreFile
		for vf == nil || vf.Status == retrieval.StatusInProgress {
			time.Sleep(2 * time.Millisecond)
			if vf, err = rs.StoreFile(ctx, store.ID, f.ID); err != nil {
				b.Fatal(err)
			}
		}
		ingest += time.Since(start)
		if vf.Status != retrieval.StatusCompleted {
			b.Fatalf("ingestion %s: %+v", vf.Status, vf.LastError)
		}
		chunks += vf.Chunks
		// The same chunks, embedded only.
		texts := make([]infer.Prompt, vf.Chunks)
		err = idx.Scroll(ctx, store.ID, func(p vector.Point) error {
			if p.FileID == f.ID && p.Chunk < len(texts) {
				texts[p.Chunk] = infer.Prompt{Text: p.Text} // in the file's order, as ingested
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		for j := 0; j < len(texts); j += 16 {
			if _, err := core.Embed(ctx, &infer.EmbedRequest{Model: "tiny", Inputs: texts[j:min(j+16, len(texts))]}); err != nil {
				b.Fatal(err)
			}
		}
		embedOnly += time.Since(start)
	}
	b.StopTimer()
	var search Latencies
	for i := 0; i < 50; i++ {
		q := fmt.Sprintf(`{"query":"tide gauge %d near buoy %d","max_num_results":5}`, i%97, i%13)
		var r retrieval.SearchRequest
		if err := retrieval.Decode([]byte(q), &r); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := rs.Search(ctx, store.ID, &r); err != nil {
			b.Fatal(err)
		}
		search.Add(time.Since(start))
	}
	b.ReportMetric(float64(chunks)/ingest.Seconds(), "ingest_chunks/s")
	b.ReportMetric(float64(chunks)/embedOnly.Seconds(), "embed_only_chunks/s")
	b.ReportMetric(ingest.Seconds()/embedOnly.Seconds(), "pipeline_overhead_x")
	b.ReportMetric(float64(chunks)/float64(b.N), "chunks/doc")
	b.ReportMetric(ms(search.Percentile(50)), "search_p50_ms")
	b.ReportMetric(ms(search.Percentile(99)), "search_p99_ms")
	b.ReportMetric(0, "ns/op")
}
