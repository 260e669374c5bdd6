package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestUsageQueries(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	l := newLedger(t, db, fastLedger(t))

	now := time.Now().UTC()
	monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	recs := []UsageRecord{
		{RequestID: "u1", KeyID: "ka", Model: "m1", PromptTokens: 10, CompletionTokens: 5, LatencyMS: 100, StatusCode: 200, CreatedAt: monthStart.Add(time.Second)},
		{RequestID: "u2", KeyID: "ka", Model: "m1", PromptTokens: 20, CompletionTokens: 0, LatencyMS: 300, StatusCode: 500, CreatedAt: now},
		{RequestID: "u3", KeyID: "ka", Model: "m2", PromptTokens: 1, CompletionTokens: 1, LatencyMS: 10, StatusCode: 200, CreatedAt: now},
		{RequestID: "u4", KeyID: "ka", Model: "m1", PromptTokens: 1000, CompletionTokens: 1000, LatencyMS: 10, StatusCode: 200, CreatedAt: monthStart.Add(-time.Second)},
		{RequestID: "u5", KeyID: "kb", Model: "m1", PromptTokens: 7, CompletionTokens: 0, LatencyMS: 10, StatusCode: 200, CreatedAt: now},
	}
	for _, r := range recs {
		l.Record(r)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	got, err := db.UsageThisMonth(ctx, "ka")
	if err != nil {
		t.Fatal(err)
	}
	if got != 15+20+2 {
		t.Fatalf("UsageThisMonth(ka) = %d, want 37 (last month's record excluded)", got)
	}
	if got, err := db.UsageThisMonth(ctx, "nobody"); err != nil || got != 0 {
		t.Fatalf("UsageThisMonth(nobody) = %d, %v", got, err)
	}

	sums, err := db.Usage(ctx, UsageFilter{KeyID: "ka", Since: monthStart})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 {
		t.Fatalf("Usage = %+v, want m1 and m2", sums)
	}
	m1 := sums[0]
	if m1.Model != "m1" || m1.Requests != 2 || m1.Errors != 1 || m1.PromptTokens != 30 || m1.CompletionTokens != 5 ||
		m1.TotalTokens != 35 || m1.AvgLatencyMS != 200 {
		t.Fatalf("m1 summary = %+v", m1)
	}
	all, err := db.Usage(ctx, UsageFilter{Model: "m1"})
	if err != nil || len(all) != 2 || all[0].KeyID != "ka" || all[0].Requests != 3 || all[1].KeyID != "kb" {
		t.Fatalf("Usage(model m1) = %+v, %v", all, err)
	}

	rows, err := db.UsageRecords(ctx, UsageFilter{KeyID: "ka", Until: monthStart}, 10)
	if err != nil || len(rows) != 1 || rows[0].RequestID != "u4" || rows[0].StatusCode != 200 {
		t.Fatalf("UsageRecords before this month = %+v, %v", rows, err)
	}
	rows, err = db.UsageRecords(context.Background(), UsageFilter{}, 2)
	if err != nil || len(rows) != 2 {
		t.Fatalf("UsageRecords limit 2 = %+v, %v", rows, err)
	}
}

// TestUsageThisMonthWhileDatabaseDown: the budget's figure comes from UsageThisMonth. With
// PostgreSQL stopped it fails, naming the key, instead of reporting zero usage (which would
// lift every budget); once the server is back the same figure returns.
func TestUsageThisMonthWhileDatabaseDown(t *testing.T) {
	ctx := testCtx(t)
	pg := testenv.StartPostgres(t) // its own server: the test stops it
	db, err := Open(ctx, pg.URL(), Options{ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	l := newLedger(t, db, fastLedger(t))
	for i := range 3 {
		l.Record(UsageRecord{RequestID: fmt.Sprint("down-", i), KeyID: "kdown", Model: "m", PromptTokens: 10,
			CompletionTokens: 5, StatusCode: 200, CreatedAt: time.Now().UTC()})
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := db.UsageThisMonth(ctx, "kdown"); err != nil || got != 45 {
		t.Fatalf("before the outage: %d, %v; want 45", got, err)
	}

	pg.Stop()
	got, err := db.UsageThisMonth(ctx, "kdown")
	if err == nil || !strings.Contains(err.Error(), "usage this month of key kdown") {
		t.Fatalf("PostgreSQL down: %d, %v; want an error naming the key", got, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("UsageThisMonth did not return before the test's deadline: %v", ctx.Err())
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "the usage figure after PostgreSQL restarted", func() (bool, string) {
		got, err := db.UsageThisMonth(ctx, "kdown")
		return err == nil && got == 45, fmt.Sprintf("%d, %v", got, err)
	})
}
