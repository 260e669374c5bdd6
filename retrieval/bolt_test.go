package retrieval_test

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/hxp-ai/hxp/retrieval"
	"github.com/hxp-ai/hxp/retrieval/catalogtest"
)

// TestBoltConformance runs the catalog suite on the embedded Bolt catalog.
func TestBoltConformance(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) retrieval.Catalog {
		c, err := retrieval.OpenBolt(filepath.Join(t.TempDir(), "catalog.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	})
}

// A second process (or a second open in this one) cannot open a catalog in use: it
// fails with the path instead of corrupting it.
func TestBoltRefusesASecondOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "catalog.db")
	c, err := retrieval.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := retrieval.OpenBolt(path); err == nil {
		t.Fatal("a second OpenBolt of a catalog in use succeeded")
	}
}

// Backup copies the whole catalog from one read transaction and lists its store files:
// the copy opens as a catalog holding the same objects.
func TestBoltBackupCopiesTheCatalog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := retrieval.OpenBolt(filepath.Join(dir, retrieval.BoltFile))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.PutStore(ctx, &retrieval.VectorStore{ID: "vs_1", Owner: "k"}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{retrieval.StatusCompleted, retrieval.StatusInProgress} {
		f := &retrieval.VectorStoreFile{ID: "file-" + st, VectorStoreID: "vs_1", Status: st, Owner: "k"}
		if err := c.PutStoreFile(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	seen := map[string]string{}
	n, err := c.Backup(&buf, func(f *retrieval.VectorStoreFile) { seen[f.ID] = f.Owner + "/" + f.Status })
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("Backup: %d bytes reported, %d written, %v", n, buf.Len(), err)
	}
	want := map[string]string{"file-completed": "k/completed", "file-in_progress": "k/in_progress"}
	if !maps.Equal(seen, want) {
		t.Errorf("visited %v, want %v", seen, want)
	}
	copyPath := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cp, err := retrieval.OpenBolt(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	files, err := cp.StoreFiles(ctx, "k", "vs_1")
	if err != nil || len(files) != 2 {
		t.Fatalf("the copy lists %d store files (%v), want 2", len(files), err)
	}
}
