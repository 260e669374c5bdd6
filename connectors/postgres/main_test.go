package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testCtx returns a context that ends with the test or after 45 seconds.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openDB opens url and closes the DB when the test ends.
func openDB(ctx context.Context, t *testing.T, url string) *DB {
	t.Helper()
	db, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// waitUntil polls cond every 20ms until it is true or the context ends.
func waitUntil(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; last state: %s", what, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// countRows returns count(*) of usage_records.
func countRows(ctx context.Context, t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM usage_records").Scan(&n); err != nil {
		t.Fatalf("count usage_records: %v", err)
	}
	return n
}
