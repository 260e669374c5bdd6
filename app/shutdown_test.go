package app

import (
	"context"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/limits"
	"github.com/hxp-ai/hxp/tenancy"
)

// A gateway shut down as hxp serve does it (Shutdown, then the tenancy's Close) leaves
// nothing behind: every request's ledger row is in PostgreSQL, though the ledger would
// have waited an hour to write them, and Redis' request bucket holds exactly the requests
// admitted, though the gateway held more units leased ahead of demand.
func TestShutdownFlushesTheLedgerAndRefundsLeases(t *testing.T) {
	pg, rd := testenv.SharedPostgres(t), testenv.SharedRedis(t)
	horizon := config.Duration(time.Second) // the longest lease horizon: leases live 5 s
	g := start(t, setup{
		edit: func(c *config.Config) {
			c.Auth.Required, c.Postgres.URL, c.Redis.URL, c.Redis.LeaseHorizon = true, pg.URL(), rd.URL(), &horizon
		},
		tenancy: func(tc *tenancy.Config) { tc.Ledger.FlushInterval = time.Hour },
	})
	ctx := testCtx(t)
	// 500 ms a request: with more than one taken, the bucket does not refill to full (where
	// its debt would stop falling) during the test.
	const rpm = 120
	secret, key, err := g.ten.DB.CreateKey(ctx, postgres.KeySpec{Name: "drain", RPM: rpm})
	if err != nil {
		t.Fatal(err)
	}
	bucket := newRequestBucket(t, rd.URL(), limits.Key(key.ID, "tiny"), rpm)

	send := func() {
		if r := post(t, g.gw+"/tokenize", tokenizeBody("tiny"), bearer(secret)...); r.status != 200 {
			t.Errorf("request refused: %d %s", r.status, r.body)
		}
	}
	send() // the key's first request leases nothing
	ref := bucket.read(ctx)
	const workers, each = 4, 5
	const total = 1 + workers*each
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				send()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// What the test relies on: nothing written yet, and units held beyond those used.
	if recs := usageRecords(t, pg.URL(), key.ID); len(recs) != 0 {
		t.Fatalf("%d ledger rows before the shutdown; the ledger should wait for its hour", len(recs))
	}
	var held float64
	waitFor(t, "the gateway to hold leased units", func() bool { // a refill may be on its way
		held = bucket.read(ctx).unitsSince(ref) - (total - 1)
		return held > 0
	})
	t.Logf("%v units leased and not used at the shutdown", held)

	if err := g.Shutdown(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.ten.Close(cctx); err != nil {
		t.Fatal(err)
	}

	if recs := usageRecords(t, pg.URL(), key.ID); len(recs) != total {
		t.Errorf("%d ledger rows after the shutdown for %d requests", len(recs), total)
	}
	if used := bucket.read(ctx).unitsSince(ref); used != total-1 {
		t.Errorf("after the shutdown Redis' bucket counts %v requests taken since the first; %d were admitted", used, total-1)
	}
}

// usageRecords reads a key's ledger rows through a connection of its own.
func usageRecords(t *testing.T, url, keyID string) []postgres.UsageRecord {
	t.Helper()
	ctx := testCtx(t)
	db, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.UsageRecords(ctx, postgres.UsageFilter{KeyID: keyID}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// requestBucket reads a key's request bucket in Redis, as the limiter's script stores it: a
// hash of the debt "r" in µs at the time "at" in Redis' µs.
type requestBucket struct {
	t        *testing.T
	rdb      *goredis.Client
	key      string
	interval float64 // µs a request adds to the debt
}

// bucketState is the bucket's debt at a time.
type bucketState struct{ debt, at, interval float64 }

func newRequestBucket(t *testing.T, url, key string, rpm int) *requestBucket {
	t.Helper()
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return &requestBucket{t: t, rdb: rdb, key: "hxp:rl:" + key, interval: float64(time.Minute.Microseconds()) / float64(rpm)}
}

func (b *requestBucket) read(ctx context.Context) bucketState {
	b.t.Helper()
	h, err := b.rdb.HGetAll(ctx, b.key).Result()
	if err != nil {
		b.t.Fatal(err)
	}
	debt, err1 := strconv.ParseFloat(h["r"], 64)
	at, err2 := strconv.ParseFloat(h["at"], 64)
	if err1 != nil || err2 != nil {
		b.t.Fatalf("bucket %s: %v (a full bucket has no hash)", b.key, h)
	}
	return bucketState{debt: debt, at: at, interval: b.interval}
}

// unitsSince returns the requests taken from the bucket since s, less those given back: the
// debt falls by a µs each µs, and does not reach zero (where it would stop) while requests
// come faster than they refill.
func (s bucketState) unitsSince(from bucketState) float64 {
	return math.Round((s.debt+s.at-from.debt-from.at)/s.interval*1000) / 1000
}
