package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/tenancy"
)

// seeded is what seed put into a database.
type seeded struct {
	secrets map[string]string // key id -> secret, of active keys
	revoked string            // secret of a revoked key
}

// seed creates keys (one revoked) and traffic through the real ledger, plus bulk ledger
// rows, in the database at url.
func seed(ctx context.Context, t *testing.T, url string, bulk int) seeded {
	t.Helper()
	db, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := seeded{secrets: map[string]string{}}
	for i, spec := range []postgres.KeySpec{
		{Name: "alpha", RPM: 60, MonthlyTokenBudget: 1_000_000},
		{Name: "beta", AllowedModels: []string{"phi-3-mini"}, TPM: 5000, Weight: 2, Priority: "batch"},
		{Name: "gone"},
	} {
		secret, k, err := db.CreateKey(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if err := db.RevokeKey(ctx, k.ID); err != nil {
				t.Fatal(err)
			}
			s.revoked = secret
			continue
		}
		s.secrets[k.ID] = secret
	}
	led, err := db.NewLedger(postgres.LedgerOptions{SpoolPath: filepath.Join(t.TempDir(), "spool")})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for id := range s.secrets {
		for j := range 25 {
			n++
			led.Record(postgres.UsageRecord{KeyID: id, Model: "phi-3-mini", PromptTokens: 10 + j, CompletionTokens: n,
				LatencyMS: 40, StatusCode: 200, CreatedAt: time.Now().Add(-time.Duration(j) * time.Minute)})
		}
	}
	if err := led.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if bulk > 0 {
		execSQL(ctx, t, url, fmt.Sprintf(`INSERT INTO usage_records (request_id, key_id, model, prompt_tokens,
			completion_tokens, latency_ms, status_code, created_at)
			SELECT 'bulk-' || g, 'key-' || (g %% 7), 'model-a', g %% 1000, g %% 333, 17, 200, now() - g * interval '1 second'
			FROM generate_series(1, %d) g`, bulk))
	}
	return s
}

func execSQL(ctx context.Context, t *testing.T, url, sql string) {
	t.Helper()
	conn, err := connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// ledgerState summarises the ledger and keys, to compare a source and a restore.
func ledgerState(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	var s string
	query(ctx, t, url, `SELECT (SELECT count(*) FROM usage_records) || ' rows, ' ||
		(SELECT coalesce(sum(prompt_tokens), 0) FROM usage_records) || ' prompt, ' ||
		(SELECT coalesce(sum(completion_tokens), 0) FROM usage_records) || ' completion, ' ||
		(SELECT coalesce(string_agg(key_id || ':' || n, ',' ORDER BY key_id), '') FROM
			(SELECT key_id, sum(prompt_tokens + completion_tokens) n FROM usage_records GROUP BY key_id) k) || '; keys ' ||
		(SELECT coalesce(string_agg(id || ':' || encode(secret_hash, 'hex') || ':' || weight || ':' || priority ||
			':' || disabled, ',' ORDER BY id), '') FROM api_keys)`, &s)
	return s
}

// authenticate checks every seeded key against the database at url through the tenancy.
func authenticate(ctx context.Context, t *testing.T, url string, s seeded) {
	t.Helper()
	ten, err := tenancy.Open(ctx, tenancy.Config{Postgres: config.Postgres{URL: url, SpoolPath: filepath.Join(t.TempDir(), "spool")}})
	if err != nil {
		t.Fatal(err)
	}
	defer ten.Close(ctx)
	for id, secret := range s.secrets {
		c, err := ten.Authenticate(ctx, secret)
		if err != nil {
			t.Errorf("key %s does not authenticate after the restore: %v", id, err)
			continue
		}
		if c.ID != id {
			t.Errorf("key %s authenticates as %s", id, c.ID)
		}
	}
	if _, err := ten.Authenticate(ctx, s.revoked); err == nil {
		t.Error("the revoked key authenticates after the restore")
	}
}

// emptyDB returns the URL of a new, migrated, empty database.
func emptyDB(ctx context.Context, t *testing.T) string {
	t.Helper()
	url := testenv.SharedPostgres(t).URL()
	db, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	return url
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	src := testenv.SharedPostgres(t).URL()
	keys := seed(ctx, t, src, 5000)
	want := ledgerState(ctx, t, src)

	out := filepath.Join(t.TempDir(), "hxp.tar.zst")
	cfg := &config.Config{Postgres: config.Postgres{URL: "postgres://hxp:hunter2@db/hxp"}}
	var seen []string
	m, err := Create(ctx, out, Options{PostgresURL: src, Config: cfg, Progress: func(part string, done, total int64) {
		if done == total && (len(seen) == 0 || seen[len(seen)-1] != part) {
			seen = append(seen, part)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tables()) < 2 || m.Parts[len(m.Parts)-1].Name != configName {
		t.Fatalf("manifest parts = %+v, want every table then config.yaml", m.Parts)
	}
	for _, p := range m.Tables() {
		if p.Table == "usage_records" && p.Rows != 5050 {
			t.Errorf("usage_records rows = %d, want 5050", p.Rows)
		}
		if p.Table == "api_keys" && p.Rows != 3 {
			t.Errorf("api_keys rows = %d, want 3", p.Rows)
		}
	}
	if len(seen) != len(m.Tables()) {
		t.Errorf("progress completed parts %v, want one per table", seen)
	}
	if _, err := Verify(out); err != nil {
		t.Fatalf("Verify of a fresh archive: %v", err)
	}
	for _, e := range readEntries(t, out) {
		if strings.Contains(string(e.data), "hunter2") {
			t.Errorf("entry %s holds the database password", e.name)
		}
	}

	dst := testenv.SharedPostgres(t).URL() // a database without even the schema
	if _, err := Restore(ctx, out, RestoreOptions{PostgresURL: dst}); err != nil {
		t.Fatal(err)
	}
	if got := ledgerState(ctx, t, dst); got != want {
		t.Errorf("restored state\n%s\nwant\n%s", got, want)
	}
	authenticate(ctx, t, dst, keys)
	// New ledger rows continue after the restored ids.
	seed(ctx, t, dst, 0)
}

func TestRestoreRefusesNonEmptyTargetWithoutForce(t *testing.T) {
	ctx := testCtx(t)
	src := testenv.SharedPostgres(t).URL()
	keys := seed(ctx, t, src, 100)
	out := filepath.Join(t.TempDir(), "hxp.tar.zst")
	if _, err := Create(ctx, out, Options{PostgresURL: src}); err != nil {
		t.Fatal(err)
	}
	want := ledgerState(ctx, t, src)

	execSQL(ctx, t, src, "DELETE FROM usage_records WHERE id % 2 = 0")
	changed := ledgerState(ctx, t, src)
	_, err := Restore(ctx, out, RestoreOptions{PostgresURL: src})
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore into a non-empty database: %v, want ErrNotEmpty naming --force", err)
	}
	if got := ledgerState(ctx, t, src); got != changed {
		t.Fatalf("a refused restore changed the database:\n%s\nwant\n%s", got, changed)
	}
	if _, err := Restore(ctx, out, RestoreOptions{PostgresURL: src, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := ledgerState(ctx, t, src); got != want {
		t.Errorf("forced restore\n%s\nwant\n%s", got, want)
	}
	authenticate(ctx, t, src, keys)
}

func TestDamagedArchivesAreRefusedAndChangeNothing(t *testing.T) {
	ctx := testCtx(t)
	src := testenv.SharedPostgres(t).URL()
	seed(ctx, t, src, 2000)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar.zst")
	if _, err := Create(ctx, good, Options{PostgresURL: src, Config: &config.Config{}}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	ledger := tablePartName("usage_records")
	flipData := func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }
	cases := []struct {
		name string
		make func(path string)
		want string
	}{
		{"truncated", func(p string) { os.WriteFile(p, raw[:len(raw)*2/3], 0o600) }, "truncated"},
		{"cut after the manifest", func(p string) {
			es := readEntries(t, good)
			writeEntries(t, p, es[:3])
		}, "truncated"},
		{"compressed byte altered", func(p string) {
			b := append([]byte(nil), raw...)
			b[len(b)/2] ^= 0x40
			os.WriteFile(p, b, 0o600)
		}, ""},
		{"data byte altered", func(p string) { editArchive(t, good, p, ledger, false, flipData) }, "sha256"},
		{"manifest byte altered", func(p string) {
			editArchive(t, good, p, manifestName, false, func(b []byte) []byte {
				return []byte(strings.Replace(string(b), `"rows": 2050`, `"rows": 2051`, 1))
			})
		}, "manifest.sha256"},
		{"manifest and its checksum forged", func(p string) {
			editArchive(t, good, p, manifestName, false, func(b []byte) []byte {
				return []byte(strings.Replace(string(b), `"rows": 2050`, `"rows": 2051`, 1))
			})
			es := readEntries(t, p)
			es[1].data = []byte(sha256Hex(es[0].data) + "  manifest.json\n")
			writeEntries(t, p, es)
		}, "rows"},
		{"extra entry", func(p string) {
			es := readEntries(t, good)
			writeEntries(t, p, append(es, entry{"evil.sql", []byte("DROP TABLE api_keys;\n")}))
		}, "not in the manifest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.tar.zst")
			tc.make(path)
			_, err := Verify(path)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v, want ErrCorrupt mentioning %q", err, tc.want)
			}
			dst := emptyDB(ctx, t)
			before := ledgerState(ctx, t, dst)
			if _, err := Restore(ctx, path, RestoreOptions{PostgresURL: dst}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Restore: %v, want ErrCorrupt", err)
			}
			if got := ledgerState(ctx, t, dst); got != before {
				t.Errorf("a refused restore changed the target: %s", got)
			}
		})
	}
}

// TestRestoreIsOneTransaction restores a forged archive whose checksums agree but whose
// ledger breaks a constraint: the forced restore fails at COPY, and the target keeps
// its rows (the TRUNCATE and the tables loaded before were rolled back).
func TestRestoreIsOneTransaction(t *testing.T) {
	ctx := testCtx(t)
	src := testenv.SharedPostgres(t).URL()
	seed(ctx, t, src, 300)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.tar.zst"), filepath.Join(dir, "bad.tar.zst")
	if _, err := Create(ctx, good, Options{PostgresURL: src}); err != nil {
		t.Fatal(err)
	}
	editArchive(t, good, bad, tablePartName("usage_records"), true, func(b []byte) []byte {
		// A second copy of the first row: request_id is unique.
		first, _, _ := strings.Cut(string(b), "\n")
		return append(b, []byte(first+"\n")...)
	})
	if _, err := Verify(bad); err != nil {
		t.Fatalf("the forged archive should be self-consistent: %v", err)
	}
	before := ledgerState(ctx, t, src)
	_, err := Restore(ctx, bad, RestoreOptions{PostgresURL: src, Force: true})
	if err == nil || !strings.Contains(err.Error(), "usage_records") {
		t.Fatalf("Restore: %v, want a COPY error naming usage_records", err)
	}
	if got := ledgerState(ctx, t, src); got != before {
		t.Errorf("a failed restore changed the target:\n%s\nwant\n%s", got, before)
	}
}
