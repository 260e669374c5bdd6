package backup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/retrieval"
	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/qdrant"
	"github.com/hxp-ai/hxp/vector/qdrant/qdranttest"
)

// TestBackupMemoryDoesNotGrowWithRows backs up a ledger of 10k rows and one of 1M rows
// in child processes and compares their peak RSS: streaming means the million rows
// cost no more memory than the ten thousand. It takes about a minute on two cores, so
// it runs only with HXP_BACKUP_1M=1.
func TestBackupMemoryDoesNotGrowWithRows(t *testing.T) {
	if os.Getenv("HXP_BACKUP_1M") != "1" {
		t.Skip("set HXP_BACKUP_1M=1 to measure the peak RSS of a 1M-row backup")
	}
	ctx := testCtx(t)
	src := emptyDB(ctx, t)
	peak := func(rows int) int64 {
		out := filepath.Join(t.TempDir(), "hxp.tar.zst")
		kib := childBackup(ctx, t, "HXP_BACKUP_CHILD_URL="+src, "HXP_BACKUP_CHILD_OUT="+out)
		m, err := Verify(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m.Tables() {
			if p.Table == "usage_records" && p.Rows != int64(rows) {
				t.Fatalf("usage_records rows = %d, want %d", p.Rows, rows)
			}
		}
		st, _ := os.Stat(out)
		t.Logf("%d ledger rows: peak RSS %.1f MiB, archive %.1f MiB", rows, float64(kib)/1024, float64(st.Size())/(1<<20))
		return kib * 1024
	}
	bulk := func(from, to int) {
		execSQL(ctx, t, src, `INSERT INTO usage_records (request_id, key_id, model, prompt_tokens, completion_tokens,
			latency_ms, status_code, created_at)
			SELECT 'bulk-' || g, 'key-' || (g % 97), 'model-a', g % 1000, g % 333, 17, 200, now() - g * interval '1 second'
			FROM generate_series(`+itoa(from)+`, `+itoa(to)+`) g`)
	}
	bulk(1, 10_000)
	small := peak(10_000)
	bulk(10_001, 1_000_000)
	large := peak(1_000_000)
	samePeak(t, "1M/10k ledger rows", small, large)
}

// samePeak fails when the larger backup's peak RSS exceeds the smaller's by more than
// 32 MiB: a streaming backup's memory does not grow with the data.
func samePeak(t *testing.T, what string, small, large int64) {
	t.Helper()
	t.Logf("peak RSS ratio %s: %.2f", what, float64(large)/float64(small))
	if large > small+32<<20 {
		t.Errorf("peak RSS grew from %d to %d bytes (%s): the backup is not streaming", small, large, what)
	}
}

// TestBackupChild is the child process of the memory tests: it backs up the database
// of HXP_BACKUP_CHILD_URL, or the Qdrant of HXP_BACKUP_CHILD_QDRANT with the catalog
// file HXP_BACKUP_CHILD_CATALOG.
func TestBackupChild(t *testing.T) {
	url, out := os.Getenv("HXP_BACKUP_CHILD_URL"), os.Getenv("HXP_BACKUP_CHILD_OUT")
	addr := os.Getenv("HXP_BACKUP_CHILD_QDRANT")
	if url == "" && addr == "" {
		t.Skip("child process of the memory tests")
	}
	opts := Options{PostgresURL: url}
	if addr != "" {
		x, err := qdrant.Open(qdrant.Options{URL: addr})
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		opts.Retrieval = &Retrieval{Index: x, CatalogPath: os.Getenv("HXP_BACKUP_CHILD_CATALOG")}
	}
	if _, err := Create(testCtx(t), out, opts); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			fmt.Println(peakPrefix + strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "VmHWM:"), "kB")))
		}
	}
}

// peakPrefix starts the child's line with its peak RSS in KiB.
const peakPrefix = "backup child peak RSS KiB: "

// childBackup runs TestBackupChild in a child process with env and returns the child's
// own peak RSS (VmHWM) in KiB. The rusage of the wait is no measure here: Linux
// counts into it the peak of the parent's memory, which the child shares until exec.
func childBackup(ctx context.Context, t *testing.T, env ...string) int64 {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBackupChild$")
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child backup: %v\n%s", err, b)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, peakPrefix); ok {
			kib, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("child backup: %q: %v", l, err)
			}
			return kib
		}
	}
	t.Fatalf("child backup printed no peak RSS:\n%s", b)
	return 0
}

// TestBackupMemoryDoesNotGrowWithPoints backs up 10k and then 200k points (dimension
// 64) of one file from Qdrant (the stand-in, in this process) in child processes and
// compares their peak RSS: the points are scrolled page by page into the spool file.
// It runs only with HXP_BACKUP_1M=1.
func TestBackupMemoryDoesNotGrowWithPoints(t *testing.T) {
	if os.Getenv("HXP_BACKUP_1M") != "1" {
		t.Skip("set HXP_BACKUP_1M=1 to measure the peak RSS of a 200k-point backup")
	}
	ctx := testCtx(t)
	srv := qdranttest.Start(t, qdranttest.Options{})
	x, err := qdrant.Open(qdrant.Options{URL: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	dir := t.TempDir()
	cat := openBolt(t, dir)
	if err := cat.PutStoreFile(ctx, &retrieval.VectorStoreFile{ID: "file-1", VectorStoreID: testStore,
		Status: retrieval.StatusCompleted, Owner: testOwner}); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	fill := func(from, to int) {
		batch := make([]vector.Point, 0, 1000)
		for i := from; i < to; i++ {
			v := make([]float32, 64)
			for j := range v {
				v[j] = rng.Float32()*2 - 1
			}
			batch = append(batch, vector.Point{ID: vector.ChunkID(testStore, "file-1", i), StoreID: testStore, FileID: "file-1",
				Chunk: i, Text: "chunk " + itoa(i), Vector: v})
			if len(batch) == cap(batch) || i == to-1 {
				if err := x.Upsert(ctx, batch); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
		}
	}
	peak := func(points int) int64 {
		out := filepath.Join(t.TempDir(), "hxp.tar.zst")
		kib := childBackup(ctx, t, "HXP_BACKUP_CHILD_QDRANT="+srv.Addr, "HXP_BACKUP_CHILD_OUT="+out,
			"HXP_BACKUP_CHILD_CATALOG="+filepath.Join(dir, retrieval.BoltFile))
		m, err := Verify(out)
		if err != nil {
			t.Fatal(err)
		}
		if p := partNamed(m, pointsName); p == nil || p.Rows != int64(points) {
			t.Fatalf("points part %+v, want %d rows", p, points)
		}
		st, _ := os.Stat(out)
		t.Logf("%d points: peak RSS %.1f MiB, archive %.1f MiB", points, float64(kib)/1024, float64(st.Size())/(1<<20))
		return kib * 1024
	}
	fill(0, 10_000)
	small := peak(10_000)
	fill(10_000, 200_000)
	large := peak(200_000)
	samePeak(t, "200k/10k points", small, large)
}

func itoa(n int) string { return strconv.Itoa(n) }
