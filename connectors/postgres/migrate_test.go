package postgres

import (
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	ctx := testCtx(t)
	pgdb := testenv.SharedPostgres(t)
	want, err := loadMigrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}

	// Several gateways starting at once against an empty database.
	const n = 4
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(ctx, pgdb.URL(), Options{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(dbs[i].Close)
	}

	// And once more after that: nothing left to apply, nothing applied twice.
	db := openDB(ctx, t, pgdb.URL())
	var rows, distinct, maxVersion int
	err = db.pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT version), max(version) FROM schema_migrations").
		Scan(&rows, &distinct, &maxVersion)
	if err != nil {
		t.Fatal(err)
	}
	if rows != len(want) || distinct != len(want) || maxVersion != want[len(want)-1].version {
		t.Fatalf("schema_migrations: %d rows, %d distinct, max %d; want %d migrations up to %d",
			rows, distinct, maxVersion, len(want), want[len(want)-1].version)
	}
	if err := db.Health(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLoadMigrationsRejectsBadFiles(t *testing.T) {
	cases := map[string]fstest.MapFS{
		"positive number":  {"migrations/abc_x.sql": {Data: []byte("SELECT 1")}},
		"NNNN_description": {"migrations/0001.sql": {Data: []byte("SELECT 1")}},
		"share version": {
			"migrations/0001_a.sql": {Data: []byte("SELECT 1")},
			"migrations/01_b.sql":   {Data: []byte("SELECT 1")},
		},
	}
	for want, fsys := range cases {
		_, err := loadMigrations(fsys)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
	}
	migs, err := loadMigrations(fstest.MapFS{
		"migrations/0010_b.sql": {Data: []byte("B")},
		"migrations/0002_a.sql": {Data: []byte("A")},
		"migrations/README":     {Data: []byte("ignored")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(migs) != 2 || migs[0].version != 2 || migs[1].version != 10 {
		t.Fatalf("order: %+v", migs)
	}
}

func TestOpenFailsClearlyWithoutServer(t *testing.T) {
	ctx := testCtx(t)
	_, err := Open(ctx, "postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", Options{})
	if err == nil {
		t.Fatal("Open succeeded without a server")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
	_, err = Open(ctx, "postgres://u:hunter2@[::1", Options{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad URL: err = %v", err)
	}
}
