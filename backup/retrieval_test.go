package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/retrieval"
	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
	"github.com/hxp-ai/hxp/vector/qdrant"
	"github.com/hxp-ai/hxp/vector/qdrant/qdranttest"
)

const (
	testOwner = "key_owner"
	testStore = "vs_backup"
	testDim   = 8
)

// testFiles are the seeded store's files: two completed, one still being ingested
// (its first points written, the catalog still in_progress).
var testFiles = []struct {
	id     string
	status string
}{{"file-a", retrieval.StatusCompleted}, {"file-b", retrieval.StatusCompleted}, {"file-c", retrieval.StatusInProgress}}

// seedRetrieval writes a vector store with testFiles into cat and their points (five
// chunks each, random vectors) into idx.
func seedRetrieval(ctx context.Context, t *testing.T, cat retrieval.Catalog, idx vector.Index) {
	t.Helper()
	if err := cat.PutStore(ctx, &retrieval.VectorStore{ID: testStore, Object: "vector_store", Name: "docs", Status: "completed",
		EmbeddingModel: "m", Dimensions: testDim, Owner: testOwner}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var points []vector.Point
	for i, f := range testFiles {
		content := []byte("content of " + f.id)
		if err := cat.PutFile(ctx, &retrieval.File{ID: f.id, Object: "file", Bytes: int64(len(content)), CreatedAt: int64(i),
			Filename: f.id + ".txt", Purpose: "assistants", Status: "processed", ContentType: "text/plain", Owner: testOwner}, content); err != nil {
			t.Fatal(err)
		}
		if err := cat.PutStoreFile(ctx, &retrieval.VectorStoreFile{ID: f.id, Object: "vector_store.file", VectorStoreID: testStore,
			Status: f.status, Attributes: map[string]any{"n": float64(i), "lang": "en"}, Owner: testOwner}); err != nil {
			t.Fatal(err)
		}
		for c := range 5 {
			v := make([]float32, testDim)
			for j := range v {
				v[j] = rng.Float32()*2 - 1
			}
			points = append(points, vector.Point{ID: vector.ChunkID(testStore, f.id, c), StoreID: testStore, FileID: f.id, Chunk: c,
				Text: fmt.Sprintf("chunk %d of %s\nwith \"quotes\"", c, f.id), Attributes: map[string]any{"n": float64(i), "lang": "en"}, Vector: v})
		}
	}
	if err := idx.Upsert(ctx, points); err != nil {
		t.Fatal(err)
	}
}

// retrievalState is what a client sees of the seeded store: the files list, the store's
// files and the results of a few searches.
type retrievalState struct {
	Files      []retrieval.File
	StoreFiles []retrieval.VectorStoreFile
	Hits       [][]vector.Hit
}

func readRetrieval(ctx context.Context, t *testing.T, cat retrieval.Catalog, idx vector.Index) retrievalState {
	t.Helper()
	var s retrievalState
	var err error
	if s.Files, err = cat.Files(ctx, testOwner); err != nil {
		t.Fatal(err)
	}
	if s.StoreFiles, err = cat.StoreFiles(ctx, testOwner, testStore); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 4 {
		q := make([]float32, testDim)
		for j := range q {
			q[j] = rng.Float32()*2 - 1
		}
		hits, err := idx.Search(ctx, vector.Query{StoreID: testStore, Vector: q, Limit: 20, ScoreThreshold: -1})
		if err != nil {
			t.Fatal(err)
		}
		s.Hits = append(s.Hits, hits)
	}
	return s
}

// sameRetrieval compares the restored state with the source's, leaving out the
// in_progress file's points (left out of the archive) and comparing scores within 1e-6.
func sameRetrieval(t *testing.T, src, got retrievalState) {
	t.Helper()
	if !reflect.DeepEqual(src.Files, got.Files) {
		t.Errorf("files differ:\nsource   %+v\nrestored %+v", src.Files, got.Files)
	}
	if !reflect.DeepEqual(src.StoreFiles, got.StoreFiles) {
		t.Errorf("store files differ:\nsource   %+v\nrestored %+v", src.StoreFiles, got.StoreFiles)
	}
	for i := range src.Hits {
		var want []vector.Hit
		for _, h := range src.Hits[i] {
			if h.FileID != "file-c" {
				want = append(want, h)
			}
		}
		if len(want) != len(got.Hits[i]) {
			t.Fatalf("search %d: %d hits restored, want %d", i, len(got.Hits[i]), len(want))
		}
		for j, w := range want {
			g := got.Hits[i][j]
			if g.ID != w.ID || g.Text != w.Text || g.FileID != w.FileID || g.Chunk != w.Chunk ||
				!reflect.DeepEqual(g.Attributes, w.Attributes) || math.Abs(float64(g.Score-w.Score)) > 1e-6 {
				t.Errorf("search %d hit %d: restored %+v, want %+v", i, j, g, w)
			}
		}
	}
}

func openEmbedded(t *testing.T, dir string) vector.Index {
	t.Helper()
	x, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func openBolt(t *testing.T, dir string) *retrieval.Bolt {
	t.Helper()
	c, err := retrieval.OpenBolt(filepath.Join(dir, retrieval.BoltFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func openQdrant(t *testing.T) vector.Index {
	t.Helper()
	srv := qdranttest.Start(t, qdranttest.Options{})
	x, err := qdrant.Open(qdrant.Options{URL: srv.Addr, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// unfinished checks that the restored catalog still has file-c to ingest: the restart
// recovery (retrieval.Service.Start) takes it up.
func unfinished(ctx context.Context, t *testing.T, cat retrieval.Catalog) {
	t.Helper()
	u, err := cat.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 1 || u[0].ID != "file-c" {
		t.Errorf("unfinished after restore: %+v, want file-c", u)
	}
}

func TestVectorStoresRoundTripWithPostgres(t *testing.T) {
	ctx := testCtx(t)
	srcURL := emptyDB(ctx, t)
	src, err := postgres.Open(ctx, srcURL, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	srcIdx := openEmbedded(t, t.TempDir())
	seedRetrieval(ctx, t, src.Catalog(), srcIdx)
	before := readRetrieval(ctx, t, src.Catalog(), srcIdx)

	out := filepath.Join(t.TempDir(), "b.tar.zst")
	m, err := Create(ctx, out, Options{PostgresURL: srcURL, Retrieval: &Retrieval{Index: srcIdx}})
	if err != nil {
		t.Fatal(err)
	}
	if p := partNamed(m, pointsName); p == nil || p.Rows != 10 {
		t.Fatalf("points part %+v, want 10 rows (the completed files' chunks)", p)
	}

	dstURL := emptyDB(ctx, t)
	dstIdx := openEmbedded(t, t.TempDir())
	if _, err := Restore(ctx, out, RestoreOptions{PostgresURL: dstURL, Retrieval: &Retrieval{Index: dstIdx}}); err != nil {
		t.Fatal(err)
	}
	dst, err := postgres.Open(ctx, dstURL, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	sameRetrieval(t, before, readRetrieval(ctx, t, dst.Catalog(), dstIdx))
	unfinished(ctx, t, dst.Catalog())
}

func TestVectorStoresRoundTripWithoutPostgres(t *testing.T) {
	for _, backend := range []string{"embedded", "qdrant"} {
		t.Run(backend, func(t *testing.T) {
			ctx := testCtx(t)
			open := func() vector.Index {
				if backend == "qdrant" {
					return openQdrant(t)
				}
				return openEmbedded(t, t.TempDir())
			}
			srcDir := t.TempDir()
			srcCat, srcIdx := openBolt(t, srcDir), open()
			seedRetrieval(ctx, t, srcCat, srcIdx)
			before := readRetrieval(ctx, t, srcCat, srcIdx)
			srcCat.Close() // Create opens the catalog file itself.

			out := filepath.Join(t.TempDir(), "b.tar.zst")
			src := &Retrieval{Index: srcIdx, CatalogPath: filepath.Join(srcDir, retrieval.BoltFile)}
			if _, err := Create(ctx, out, Options{Retrieval: src}); err != nil {
				t.Fatal(err)
			}
			dstDir := t.TempDir()
			dst := &Retrieval{Index: open(), CatalogPath: filepath.Join(dstDir, retrieval.BoltFile)}
			if _, err := Restore(ctx, out, RestoreOptions{Retrieval: dst}); err != nil {
				t.Fatal(err)
			}
			dstCat := openBolt(t, dstDir)
			sameRetrieval(t, before, readRetrieval(ctx, t, dstCat, dst.Index))
			unfinished(ctx, t, dstCat)
			dstCat.Close()

			// A second restore into the now full target is refused and changes nothing.
			if _, err := Restore(ctx, out, RestoreOptions{Retrieval: dst}); !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("restore into a non-empty target: %v, want ErrNotEmpty", err)
			}
			// With --force it replaces the target's content.
			if _, err := Restore(ctx, out, RestoreOptions{Retrieval: dst, Force: true}); err != nil {
				t.Fatalf("forced restore: %v", err)
			}
			dstCat = openBolt(t, dstDir)
			sameRetrieval(t, before, readRetrieval(ctx, t, dstCat, dst.Index))
		})
	}
}

func partNamed(m *Manifest, name string) *Part {
	for i := range m.Parts {
		if m.Parts[i].Name == name {
			return &m.Parts[i]
		}
	}
	return nil
}

func TestDamagedVectorsPartIsRefusedAndChangesNothing(t *testing.T) {
	ctx := testCtx(t)
	srcDir := t.TempDir()
	srcCat, srcIdx := openBolt(t, srcDir), openEmbedded(t, t.TempDir())
	seedRetrieval(ctx, t, srcCat, srcIdx)
	srcCat.Close()
	out := filepath.Join(t.TempDir(), "b.tar.zst")
	if _, err := Create(ctx, out, Options{Retrieval: &Retrieval{Index: srcIdx, CatalogPath: filepath.Join(srcDir, retrieval.BoltFile)}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		reseal bool
		edit   func([]byte) []byte
	}{
		{"truncated", false, func(b []byte) []byte { return b[:len(b)/2] }},
		{"altered", false, func(b []byte) []byte { b[10] ^= 1; return b }},
		// A forged archive whose manifest agrees with the data: the last line is not a
		// point, found after a first batch of points was written (which is deleted again).
		{"forged", true, func(b []byte) []byte {
			return append(bytes.Repeat(b, restoreBatch/10+1), "{\"id\": 1}\n"...)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.tar.zst")
			editArchive(t, out, bad, pointsName, c.reseal, c.edit)
			dstDir := t.TempDir()
			dst := &Retrieval{Index: openEmbedded(t, t.TempDir()), CatalogPath: filepath.Join(dstDir, retrieval.BoltFile)}
			_, err := Restore(ctx, bad, RestoreOptions{Retrieval: dst})
			if err == nil {
				t.Fatal("a damaged archive was restored")
			}
			if !c.reseal && !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v is not ErrCorrupt", err)
			}
			if n, err := dst.Index.Count(ctx, ""); err != nil || n != 0 {
				t.Errorf("the target index holds %d points after a refused restore (%v)", n, err)
			}
			if entries, _ := os.ReadDir(dstDir); len(entries) != 0 {
				t.Errorf("the target data directory holds %v after a refused restore", entries)
			}
		})
	}
}
