package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/vector/embedded"
)

// envKillChild makes this test binary a child server over the data directory it
// names (TestRetrievalKillChild), for the kill test.
const envKillChild = "HXP_TEST_RETRIEVAL_CHILD_DIR"

// TestRetrievalKillChild is the server the kill test runs in a child process: the
// tiny model and retrieval over the given data directory; it prints its gateway URL
// and serves until it is killed. Skipped in a normal run.
func TestRetrievalKillChild(t *testing.T) {
	dir := os.Getenv(envKillChild)
	if dir == "" {
		t.Skip("the kill test's child server (run by TestRetrievalSurvivesAKillMidIngestion)")
	}
	s := start(t, setup{edit: func(c *config.Config) { c.Retrieval.DataDir = dir; c.Retrieval.Workers = 1 }})
	fmt.Printf("GATEWAY %s\n", s.gw)
	select {} // until SIGKILL
}

// A server killed (SIGKILL) while it ingests a file leaves it in_progress with part
// of its chunks stored. The next start deletes those chunks and ingests the file again:
// every file ends completed (or failed), and a completed file has exactly the chunks
// of an uninterrupted ingestion of the same file, never a half-indexed one reported
// completed. A file completed before the kill stays completed, untouched.
func TestRetrievalSurvivesAKillMidIngestion(t *testing.T) {
	if os.Getenv(envKillChild) != "" {
		t.Skip("inside the child")
	}
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestRetrievalKillChild$", "-test.count=1")
	child.Env = append(os.Environ(), envKillChild+"="+dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})
	gw := ""
	sc := bufio.NewScanner(out)
	for gw == "" && sc.Scan() {
		gw, _ = strings.CutPrefix(sc.Text(), "GATEWAY ")
	}
	if gw == "" {
		t.Fatalf("the child never printed its gateway: %v", sc.Err())
	}
	go func() { // keep draining the child's output
		for sc.Scan() {
		}
	}()

	c := sdkClient(gw, "")
	ctx := testCtx(t)
	static := sdk.FileChunkingStrategyParamUnion{OfStatic: &sdk.StaticFileChunkingStrategyObjectParam{
		Static: sdk.StaticFileChunkingStrategyParam{MaxChunkSizeTokens: 100, ChunkOverlapTokens: 20}}}
	store, err := c.VectorStores.New(ctx, sdk.VectorStoreNewParams{Name: sdk.String("killed")}, option.WithJSONSet("embedding_model", "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	small := upload(t, c, "small.txt", "A short note that is ingested before the kill.")
	if _, err := c.VectorStores.Files.New(ctx, store.ID, sdk.VectorStoreFileNewParams{FileID: small.ID, ChunkingStrategy: static}); err != nil {
		t.Fatal(err)
	}
	if got := waitIngested(t, c, store.ID, small.ID); got.Status != sdk.VectorStoreFileStatusCompleted {
		t.Fatalf("small file: %+v", got)
	}
	before := chunksEmbedded(t, gw)
	var text strings.Builder
	for i := 0; text.Len() < 100_000; i++ {
		fmt.Fprintf(&text, "Paragraph %d of the survey: tide gauge %d read %d centimetres above datum at station %d.\n", i, i%97, (i*37)%500, i%13)
	}
	big := upload(t, c, "big.txt", text.String())
	if _, err := c.VectorStores.Files.New(ctx, store.ID, sdk.VectorStoreFileNewParams{FileID: big.ID, ChunkingStrategy: static}); err != nil {
		t.Fatal(err)
	}
	// Kill as soon as some of the big file's chunks are stored.
	waitFor(t, "the big file's first chunks", func() bool { return chunksEmbedded(t, gw) >= before+32 })
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killed = true
	partial := countStore(t, dir, store.ID)
	if partial <= 1 {
		t.Fatalf("the kill left %d points: it did not happen mid-ingestion", partial)
	}

	s := start(t, setup{edit: func(cfg *config.Config) { cfg.Retrieval.DataDir = dir }})
	c = sdkClient(s.gw, "")
	got := waitIngested(t, c, store.ID, big.ID)
	if got.Status != sdk.VectorStoreFileStatusCompleted {
		t.Fatalf("after the restart the big file is %s: %+v", got.Status, got.LastError)
	}
	if again, err := c.VectorStores.Files.Get(ctx, store.ID, small.ID); err != nil || again.Status != sdk.VectorStoreFileStatusCompleted {
		t.Fatalf("the small file after the restart: %+v, %v", again, err)
	}
	// The same file ingested without interruption, for comparison.
	clean, err := c.VectorStores.New(ctx, sdk.VectorStoreNewParams{Name: sdk.String("clean")}, option.WithJSONSet("embedding_model", "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.VectorStores.Files.New(ctx, clean.ID, sdk.VectorStoreFileNewParams{FileID: big.ID, ChunkingStrategy: static}); err != nil {
		t.Fatal(err)
	}
	if ref := waitIngested(t, c, clean.ID, big.ID); ref.Status != sdk.VectorStoreFileStatusCompleted || ref.UsageBytes != got.UsageBytes {
		t.Fatalf("uninterrupted ingestion: %s, %d bytes; after the kill %d bytes", ref.Status, ref.UsageBytes, got.UsageBytes)
	}
	reported := func(store, file string) int {
		f, err := c.VectorStores.Files.Get(ctx, store, file)
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ Chunks int }
		if err := json.Unmarshal([]byte(f.RawJSON()), &v); err != nil {
			t.Fatal(err)
		}
		return v.Chunks
	}
	bigChunks, smallChunks := reported(store.ID, big.ID), reported(store.ID, small.ID)
	if bigChunks != reported(clean.ID, big.ID) || bigChunks <= partial {
		t.Fatalf("after the kill the big file reports %d chunks, uninterrupted %d (the kill left %d points)", bigChunks, reported(clean.ID, big.ID), partial)
	}
	if err := s.Shutdown(5e9); err != nil {
		t.Fatal(err)
	}
	if n := countStore(t, dir, store.ID); n != bigChunks+smallChunks {
		t.Fatalf("the index holds %d points of the killed store; its files report %d + %d chunks", n, bigChunks, smallChunks)
	}
	if n := countStore(t, dir, clean.ID); n != bigChunks {
		t.Fatalf("the index holds %d points of the clean store, want %d", n, bigChunks)
	}
}

// chunksEmbedded reads hxp_vector_chunks_embedded_total from a server's /metrics.
func chunksEmbedded(t *testing.T, gw string) float64 {
	t.Helper()
	r := do(t, "GET", gw+"/metrics", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, "hxp_vector_chunks_embedded_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// countStore opens the embedded index of dir (no server holds it) and counts a
// store's points.
func countStore(t *testing.T, dir, store string) int {
	t.Helper()
	idx, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	n, err := idx.Count(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
