// Package catalogtest is the conformance suite every retrieval.Catalog passes: the
// embedded Bolt catalog and the PostgreSQL one run the same tests.
package catalogtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/hxp-ai/hxp/retrieval"
)

// Run runs the suite; open returns an empty catalog for one test (closed by the
// caller's cleanup).
func Run(t *testing.T, open func(t *testing.T) retrieval.Catalog) {
	ctx := context.Background()
	t.Run("FileRoundTrip", func(t *testing.T) {
		c := open(t)
		f, content := sampleFile("key-a", 1), []byte("hello\x01 bytes kept exactly\n")
		must(t, c.PutFile(ctx, f, content))
		got, err := c.File(ctx, "key-a", f.ID)
		must(t, err)
		if !reflect.DeepEqual(got, f) {
			t.Errorf("File = %+v, want %+v", got, f)
		}
		b, err := c.Content(ctx, "key-a", f.ID)
		must(t, err)
		if !bytes.Equal(b, content) {
			t.Errorf("Content = %q, want %q", b, content)
		}
		must(t, c.DeleteFile(ctx, "key-a", f.ID))
		if _, err := c.File(ctx, "key-a", f.ID); !errors.Is(err, retrieval.ErrNotFound) {
			t.Errorf("File after delete: %v, want ErrNotFound", err)
		}
		if _, err := c.Content(ctx, "key-a", f.ID); !errors.Is(err, retrieval.ErrNotFound) {
			t.Errorf("Content after delete: %v, want ErrNotFound", err)
		}
		if err := c.DeleteFile(ctx, "key-a", f.ID); !errors.Is(err, retrieval.ErrNotFound) {
			t.Errorf("second delete: %v, want ErrNotFound", err)
		}
	})
	t.Run("Isolation", func(t *testing.T) {
		c := open(t)
		f := sampleFile("key-a", 1)
		must(t, c.PutFile(ctx, f, []byte("x")))
		st := sampleStore("key-a", 1)
		must(t, c.PutStore(ctx, st))
		vf := sampleStoreFile(st, f.ID, "")
		must(t, c.PutStoreFile(ctx, vf))
		b := &retrieval.FileBatch{ID: "vsfb_1", Object: "vector_store.files_batch", VectorStoreID: st.ID, Owner: "key-a", Status: "in_progress"}
		must(t, c.PutBatch(ctx, b))
		for _, other := range []string{"key-b", ""} {
			checks := map[string]error{}
			_, checks["File"] = c.File(ctx, other, f.ID)
			_, checks["Content"] = c.Content(ctx, other, f.ID)
			checks["DeleteFile"] = c.DeleteFile(ctx, other, f.ID)
			_, checks["Store"] = c.Store(ctx, other, st.ID)
			checks["DeleteStore"] = c.DeleteStore(ctx, other, st.ID)
			_, checks["StoreFile"] = c.StoreFile(ctx, other, st.ID, f.ID)
			checks["DeleteStoreFile"] = c.DeleteStoreFile(ctx, other, st.ID, f.ID)
			_, checks["Batch"] = c.Batch(ctx, other, st.ID, b.ID)
			for name, err := range checks {
				if !errors.Is(err, retrieval.ErrNotFound) {
					t.Errorf("%s by %q: %v, want ErrNotFound", name, other, err)
				}
			}
			for name, n := range map[string]int{"Files": len(list(c.Files(ctx, other))), "Stores": len(list(c.Stores(ctx, other))),
				"StoreFiles": len(list(c.StoreFiles(ctx, other, st.ID)))} {
				if n != 0 {
					t.Errorf("%s of %q lists %d of key-a's objects", name, other, n)
				}
			}
		}
		if _, err := c.StoreFile(ctx, "key-a", st.ID, f.ID); err != nil {
			t.Errorf("the owner lost its store file after other keys' deletes: %v", err)
		}
	})
	t.Run("ListsInIDOrder", func(t *testing.T) {
		c := open(t)
		for _, i := range []int{3, 1, 2} {
			must(t, c.PutFile(ctx, sampleFile("key-a", i), []byte("x")))
			must(t, c.PutStore(ctx, sampleStore("key-a", i)))
		}
		must(t, c.PutFile(ctx, sampleFile("key-b", 9), []byte("x")))
		files, err := c.Files(ctx, "key-a")
		must(t, err)
		stores, err := c.Stores(ctx, "key-a")
		must(t, err)
		var ids []string
		for _, f := range files {
			ids = append(ids, f.ID)
		}
		for _, s := range stores {
			ids = append(ids, s.ID)
		}
		want := []string{"file-1", "file-2", "file-3", "vs_1", "vs_2", "vs_3"}
		if !reflect.DeepEqual(ids, want) {
			t.Errorf("listed %v, want %v", ids, want)
		}
	})
	t.Run("StoreFilesAndBatches", func(t *testing.T) {
		c := open(t)
		st, other := sampleStore("key-a", 1), sampleStore("key-a", 2)
		must(t, c.PutStore(ctx, st))
		must(t, c.PutStore(ctx, other))
		a, b := sampleStoreFile(st, "file-2", "vsfb_1"), sampleStoreFile(st, "file-1", "")
		must(t, c.PutStoreFile(ctx, a))
		must(t, c.PutStoreFile(ctx, b))
		must(t, c.PutStoreFile(ctx, sampleStoreFile(other, "file-1", "")))
		got, err := c.StoreFile(ctx, "key-a", st.ID, "file-2")
		must(t, err)
		if !reflect.DeepEqual(got, a) {
			t.Errorf("StoreFile = %+v, want %+v (batch and attributes kept)", got, a)
		}
		files, err := c.StoreFiles(ctx, "key-a", st.ID)
		must(t, err)
		if len(files) != 2 || files[0].ID != "file-1" || files[1].ID != "file-2" {
			t.Errorf("StoreFiles = %+v, want file-1 then file-2", files)
		}
		a.Status, a.Chunks, a.UsageBytes = retrieval.StatusCompleted, 7, 700
		must(t, c.PutStoreFile(ctx, a))
		if got, _ := c.StoreFile(ctx, "key-a", st.ID, a.ID); got == nil || got.Status != retrieval.StatusCompleted || got.Chunks != 7 {
			t.Errorf("replaced store file = %+v", got)
		}
		fb := &retrieval.FileBatch{ID: "vsfb_1", Object: "vector_store.files_batch", CreatedAt: 5, VectorStoreID: st.ID, Owner: "key-a", Status: "in_progress"}
		must(t, c.PutBatch(ctx, fb))
		if got, err := c.Batch(ctx, "key-a", st.ID, fb.ID); err != nil || !reflect.DeepEqual(got, fb) {
			t.Errorf("Batch = %+v, %v; want %+v", got, err, fb)
		}
		counts, err := c.Counts(ctx)
		must(t, err)
		if counts.Completed != 1 || counts.InProgress != 2 || counts.Total != 3 {
			t.Errorf("Counts = %+v, want 1 completed and 2 in progress", counts)
		}
		must(t, c.DeleteStoreFile(ctx, "key-a", st.ID, b.ID))
		if _, err := c.StoreFile(ctx, "key-a", st.ID, b.ID); !errors.Is(err, retrieval.ErrNotFound) {
			t.Errorf("StoreFile after delete: %v", err)
		}
		must(t, c.DeleteStore(ctx, "key-a", st.ID))
		if _, err := c.StoreFile(ctx, "key-a", st.ID, a.ID); !errors.Is(err, retrieval.ErrNotFound) {
			t.Errorf("a deleted store's file remains: %v", err)
		}
		if _, err := c.Batch(ctx, "key-a", st.ID, fb.ID); !errors.Is(err, retrieval.ErrNotFound) {
			t.Errorf("a deleted store's batch remains: %v", err)
		}
		if files, _ := c.StoreFiles(ctx, "key-a", other.ID); len(files) != 1 {
			t.Errorf("deleting one store touched another's files: %+v", files)
		}
	})
	t.Run("Unfinished", func(t *testing.T) {
		c := open(t)
		sa, sb := sampleStore("key-a", 1), sampleStore("", 2)
		must(t, c.PutStore(ctx, sa))
		must(t, c.PutStore(ctx, sb))
		running, anon := sampleStoreFile(sa, "file-1", ""), sampleStoreFile(sb, "file-2", "")
		done := sampleStoreFile(sa, "file-3", "")
		done.Status = retrieval.StatusCompleted
		for _, f := range []*retrieval.VectorStoreFile{running, anon, done} {
			must(t, c.PutStoreFile(ctx, f))
		}
		left, err := c.Unfinished(ctx)
		must(t, err)
		got := map[string]string{}
		for _, f := range left {
			got[f.VectorStoreID+"/"+f.ID] = f.Owner
		}
		want := map[string]string{"vs_1/file-1": "key-a", "vs_2/file-2": ""}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Unfinished = %v, want %v (with owners)", got, want)
		}
		must(t, c.Check(ctx))
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func list[T any](v []T, _ error) []T { return v }

func sampleFile(owner string, i int) *retrieval.File {
	return &retrieval.File{ID: fmt.Sprintf("file-%d", i), Object: "file", Bytes: 1, CreatedAt: int64(1700000000 + i),
		Filename: fmt.Sprintf("doc%d.md", i), Purpose: "assistants", Status: "processed", ContentType: retrieval.TypeMarkdown, Owner: owner}
}

func sampleStore(owner string, i int) *retrieval.VectorStore {
	days := int64(1700000000 + i)
	return &retrieval.VectorStore{ID: fmt.Sprintf("vs_%d", i), Object: "vector_store", CreatedAt: days, Name: "docs",
		ExpiresAfter: &retrieval.ExpiresAfter{Anchor: "last_active_at", Days: 7}, LastActiveAt: days,
		Metadata: map[string]string{"team": "a"}, EmbeddingModel: "tiny", Dimensions: 64, Owner: owner}
}

func sampleStoreFile(st *retrieval.VectorStore, fileID, batch string) *retrieval.VectorStoreFile {
	return &retrieval.VectorStoreFile{ID: fileID, Object: "vector_store.file", CreatedAt: 1700000001, VectorStoreID: st.ID,
		Status:           retrieval.StatusInProgress,
		ChunkingStrategy: retrieval.Chunking{Type: "static", Static: &retrieval.Static{MaxChunkSizeTokens: 800, ChunkOverlapTokens: 400}},
		Attributes:       map[string]any{"lang": "en", "year": 2024.0, "public": true}, BatchID: batch, Owner: st.Owner}
}
