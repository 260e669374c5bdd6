package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/internal/testenv"
)

// fastLedger returns ledger options with short intervals, so outages are noticed and
// recovered from quickly.
func fastLedger(t *testing.T) LedgerOptions {
	return LedgerOptions{
		SpoolPath:     filepath.Join(t.TempDir(), "usage.spool"),
		BatchSize:     100,
		FlushInterval: 20 * time.Millisecond,
		RetryInterval: 100 * time.Millisecond,
		WriteTimeout:  2 * time.Second,
	}
}

func newLedger(t *testing.T, db *DB, opts LedgerOptions) *Ledger {
	t.Helper()
	l, err := db.NewLedger(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// rec builds a record with a request id from i.
func rec(prefix string, i int) UsageRecord {
	return UsageRecord{
		RequestID:        fmt.Sprintf("%s-%d", prefix, i),
		KeyID:            "key1",
		Model:            "phi-3-mini",
		PromptTokens:     10,
		CompletionTokens: i % 7,
		LatencyMS:        100 + i,
		StatusCode:       200,
	}
}

// checkExactlyOnce asserts that usage_records holds exactly the ids prefix-0..n-1.
func checkExactlyOnce(ctx context.Context, t *testing.T, db *DB, prefix string, n int) {
	t.Helper()
	var rows, distinct, minI, maxI int
	err := db.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT request_id),
		COALESCE(min(split_part(request_id, '-', 2)::int), -1), COALESCE(max(split_part(request_id, '-', 2)::int), -1)
		FROM usage_records WHERE request_id LIKE $1`, prefix+"-%").Scan(&rows, &distinct, &minI, &maxI)
	if err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n || minI != 0 || maxI != n-1 {
		t.Fatalf("usage_records for %s: %d rows, %d distinct, ids %d..%d; want %d rows, ids 0..%d", prefix, rows, distinct, minI, maxI, n, n-1)
	}
}

func TestLedgerWritesEveryRecord(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	opts := fastLedger(t)
	opts.FlushInterval = time.Hour // only BatchSize and Close flush
	l := newLedger(t, db, opts)

	const n = 1050
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 4 {
				l.Record(rec("w", i))
			}
		}()
	}
	wg.Wait()
	l.Record(rec("w", 3)) // a duplicate request id counts once
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(ctx, t, db, "w", n)
	st := l.Stats()
	if st.Written != n || st.Spooled != 0 || st.Dropped != 0 || st.SpoolPending {
		t.Fatalf("stats = %+v", st)
	}
	// A record after Close is counted as dropped, not lost silently.
	l.Record(rec("late", 0))
	if l.Stats().Dropped != 1 {
		t.Fatalf("record after close: stats = %+v", l.Stats())
	}
}

func TestLedgerFlush(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	opts := fastLedger(t)
	opts.FlushInterval = time.Hour
	l := newLedger(t, db, opts)
	for i := range 7 {
		l.Record(rec("f", i))
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(ctx, t, db, "f", 7)
}

func TestLedgerSurvivesPostgresCrash(t *testing.T) {
	ctx := testCtx(t)
	pg := testenv.StartPostgres(t)
	db := openDB(ctx, t, pg.URL())
	l := newLedger(t, db, fastLedger(t))

	const n = 3000
	for i := range n {
		l.Record(rec("c", i))
		switch i {
		case 1000:
			// Let some batches land, then crash the server mid-stream.
			waitUntil(ctx, t, "first batches written", func() (bool, string) {
				st := l.Stats()
				return st.Written > 0, fmt.Sprintf("%+v", st)
			})
			pg.Kill()
		case 2000:
			// Some records must have gone to the spool while the server was down.
			waitUntil(ctx, t, "records spooled during the outage", func() (bool, string) {
				st := l.Stats()
				return st.Spooled > 0 && st.DatabaseDown, fmt.Sprintf("%+v", st)
			})
			if err := pg.Start(); err != nil {
				t.Fatal(err)
			}
		}
		if i%100 == 0 {
			time.Sleep(time.Millisecond) // spread the stream over the outage
		}
	}
	waitUntil(ctx, t, "all records in postgres", func() (bool, string) {
		st := l.Stats()
		if st.SpoolPending || st.Queued > 0 {
			return false, fmt.Sprintf("%+v", st)
		}
		if err := l.Flush(ctx); err != nil {
			return false, err.Error()
		}
		got := countRows(ctx, t, db)
		return got == n && !l.Stats().SpoolPending, fmt.Sprintf("%d rows, %+v", got, l.Stats())
	})
	checkExactlyOnce(ctx, t, db, "c", n)
	if st := l.Stats(); st.Dropped != 0 || st.Spooled == 0 || st.Replayed != st.Spooled {
		t.Fatalf("stats = %+v", st)
	}
}

func TestLedgerSpoolReplayAfterRestart(t *testing.T) {
	ctx := testCtx(t)
	pg := testenv.StartPostgres(t)
	db := openDB(ctx, t, pg.URL())
	opts := fastLedger(t)

	// The database goes away; a "process" records usage and shuts down.
	pg.Stop()
	l1, err := db.NewLedger(opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 250
	for i := range n {
		l1.Record(rec("r", i))
	}
	if err := l1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := l1.Stats(); st.Spooled != n || st.Written != 0 || !st.SpoolPending {
		t.Fatalf("first ledger stats = %+v", st)
	}

	// The next process starts with the database back: the spool is replayed.
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	db2 := openDB(ctx, t, pg.URL())
	l2 := newLedger(t, db2, opts)
	waitUntil(ctx, t, "spool replayed", func() (bool, string) {
		st := l2.Stats()
		return !st.SpoolPending && st.Replayed == n, fmt.Sprintf("%+v", st)
	})
	checkExactlyOnce(ctx, t, db2, "r", n)
	for _, suffix := range []string{"", ".replay"} {
		fi, err := os.Stat(opts.SpoolPath + suffix)
		if err == nil && fi.Size() > 0 {
			t.Fatalf("%s still holds %d bytes", opts.SpoolPath+suffix, fi.Size())
		}
	}
}

func TestLedgerReplayAfterPartialWriteCountsOnce(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	opts := fastLedger(t)

	// Records p-0..p-9 reached the database ...
	l1 := newLedger(t, db, opts)
	for i := range 10 {
		l1.Record(rec("p", i))
	}
	if err := l1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// ... but a crash left them in a spool as well, with p-10..p-14 and a torn last line.
	var lines []string
	for i := range 15 {
		r := rec("p", i)
		r.CreatedAt = time.Now()
		lines = append(lines, fmt.Sprintf(`{"request_id":%q,"key_id":"key1","model":"m","prompt_tokens":1,"completion_tokens":2,"latency_ms":3,"status_code":200,"created_at":%q}`,
			r.RequestID, r.CreatedAt.Format(time.RFC3339Nano)))
	}
	torn := strings.Join(lines, "\n") + "\n" + `{"request_id":"p-99","key`
	if err := os.WriteFile(opts.SpoolPath+".replay", []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	l2 := newLedger(t, db, opts)
	waitUntil(ctx, t, "spool replayed", func() (bool, string) {
		st := l2.Stats()
		return !st.SpoolPending && st.Replayed == 15, fmt.Sprintf("%+v", st)
	})
	checkExactlyOnce(ctx, t, db, "p", 15)
	if st := l2.Stats(); st.Written != 5 || st.Dropped != 1 {
		t.Fatalf("stats = %+v; want 5 new rows written and the torn line dropped", st)
	}
}

func TestLedgerQueueOverflowGoesToSpool(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	opts := fastLedger(t)
	opts.QueueSize = 2
	opts.FlushInterval = time.Hour
	opts.BatchSize = 1000
	opts.RetryInterval = 20 * time.Millisecond
	l := newLedger(t, db, opts)
	const n = 50
	for i := range n {
		l.Record(rec("o", i))
	}
	if st := l.Stats(); st.Spooled == 0 {
		t.Fatalf("a full queue did not spill to the spool: %+v", st)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The spilled records are replayed by the next ledger on the same spool.
	l2 := newLedger(t, db, opts)
	waitUntil(ctx, t, "overflow replayed", func() (bool, string) {
		got := countRows(ctx, t, db)
		return got == n && !l2.Stats().SpoolPending, fmt.Sprintf("%d rows, %+v", got, l2.Stats())
	})
	checkExactlyOnce(ctx, t, db, "o", n)
}

func TestLedgerSpoolIsExclusive(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	opts := fastLedger(t)
	newLedger(t, db, opts)
	if _, err := db.NewLedger(opts); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second ledger on one spool: err = %v", err)
	}
	if _, err := db.NewLedger(LedgerOptions{}); err == nil {
		t.Fatal("ledger without a spool path accepted")
	}
}

func TestLedgerDropsOnlyRecordsPostgresRejects(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	l := newLedger(t, db, fastLedger(t))
	good1, good2 := rec("d", 0), rec("d", 1)
	bad := rec("bad", 0)
	bad.Model = "nul\x00byte" // bypasses normalize: PostgreSQL refuses NUL in text
	for _, r := range []*UsageRecord{&good1, &good2} {
		r.normalize(time.Now(), newRequestID)
	}
	bad.CreatedAt = time.Now()
	n, err := l.write([]UsageRecord{good1, bad, good2})
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if n != 2 || l.Stats().Dropped != 1 {
		t.Fatalf("inserted %d, stats %+v; want 2 inserted and 1 dropped", n, l.Stats())
	}
	checkExactlyOnce(ctx, t, db, "d", 2)
}

func TestRecordNormalize(t *testing.T) {
	r := UsageRecord{Model: "a\x00b\xff", PromptTokens: -3, StatusCode: 1 << 20, LatencyMS: -1}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	r.normalize(now, func() string { return "gen" })
	if r.RequestID != "gen" || r.Model != "ab\uFFFD" || r.PromptTokens != 0 || r.StatusCode != 32767 ||
		r.LatencyMS != 0 || !r.CreatedAt.Equal(now) || r.CreatedAt.Location() != time.UTC {
		t.Fatalf("normalized = %+v", r)
	}
}

// The ledger logs as its own component: a line carries one "component" key (the
// connection's logger has one too; zerolog would write both).
func TestLedgerLogLinesHaveOneComponent(t *testing.T) {
	ctx := testCtx(t)
	logs := &testenv.Buffer{}
	db, err := Open(ctx, testenv.SharedPostgres(t).URL(), Options{MaxConns: 2, Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := db.NewLedger(fastLedger(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Close(ctx)
	l.Record(rec("after-close", 1)) // logged and dropped
	lines := testenv.JSONLogLines(t, logs.String())
	found := false
	for _, line := range lines {
		if line["message"] == "usage recorded after ledger close; dropped" {
			found = line["component"] == "ledger"
		}
	}
	if !found {
		t.Fatalf("no ledger line with component ledger:\n%s", logs.String())
	}
}
