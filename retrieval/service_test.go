package retrieval_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/retrieval"
)

// A store past its expires_after reads status expired and refuses attaches and
// searches (400 vector_store_expired) until an update, which is activity, revives it.
func TestExpiredStore(t *testing.T) {
	ctx := context.Background()
	cat, err := retrieval.OpenBolt(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	rs := retrieval.New(retrieval.Options{Catalog: cat})
	defer rs.Close()
	old := time.Now().Add(-72 * time.Hour).Unix()
	st := &retrieval.VectorStore{ID: "vs_old", Object: "vector_store", CreatedAt: old, LastActiveAt: old, Metadata: map[string]string{},
		ExpiresAfter: &retrieval.ExpiresAfter{Anchor: "last_active_at", Days: 2}, EmbeddingModel: "tiny", Dimensions: 8}
	if err := cat.PutStore(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, err := rs.Store(ctx, "vs_old")
	if err != nil || got.Status != retrieval.StatusExpired || got.ExpiresAt == nil || *got.ExpiresAt != old+2*86400 {
		t.Fatalf("expired store = %+v, %v", got, err)
	}
	expired := func(err error) bool {
		var e *infer.Error
		return errors.As(err, &e) && e.Kind == infer.InvalidArgument && e.Code == "vector_store_expired" && e.Param == "vector_store_id"
	}
	if _, err := rs.Attach(ctx, "vs_old", &retrieval.AttachRequest{FileID: "file-1"}); !expired(err) {
		t.Errorf("attach to an expired store: %v", err)
	}
	if _, err := rs.Search(ctx, "vs_old", &retrieval.SearchRequest{Query: []byte(`"q"`)}); !expired(err) {
		t.Errorf("search of an expired store: %v", err)
	}
	name := "revived"
	up, err := rs.UpdateStore(ctx, "vs_old", &retrieval.UpdateStoreRequest{Name: &name})
	if err != nil || up.Status != retrieval.StatusCompleted || up.Name != "revived" {
		t.Fatalf("update of an expired store = %+v, %v", up, err)
	}
	if _, err := rs.Attach(ctx, "vs_old", &retrieval.AttachRequest{FileID: "file-1"}); expired(err) || err == nil {
		t.Errorf("after the update the attach still fails as expired, or finds a file that does not exist: %v", err)
	}
}
