package tenancy

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// UsageSource reports the tokens a key used this calendar month (UTC), from the
// usage ledger; *postgres.DB implements it.
type UsageSource interface {
	UsageThisMonth(ctx context.Context, keyID string) (int64, error)
}

// BudgetOptions tune Budgets. Zero fields take the defaults.
type BudgetOptions struct {
	// Refresh is how often a key's monthly usage is read again from the ledger while
	// the key is in use (default 15s). Usage recorded by other gateways is seen after
	// their ledger flush plus this interval.
	Refresh time.Duration
	// FlushLag is how long this gateway's own records may take to reach the ledger
	// (default 3s): local usage that recent is added to the ledger's figure.
	FlushLag time.Duration
	// Timeout bounds one ledger query (default 5s).
	Timeout time.Duration
	// Log receives ledger errors.
	Log zerolog.Logger
}

// Budgets enforces monthly token budgets from the usage ledger without making a
// request wait on the database: each key's usage is cached and refreshed in the
// background, and this gateway's own usage since the last refresh is added to it.
// A key not seen before is admitted while its usage is fetched. Budgets are thus
// enforced within about one refresh interval (plus the other gateways' ledger
// flush): a key may overshoot its budget by what it uses in that time.
type Budgets struct {
	src  UsageSource
	opts BudgetOptions
	now  func() time.Time

	mu sync.Mutex
	m  map[string]*budgetEntry
}

// budgetEntry is one key's cached usage. All fields are guarded by Budgets.mu.
type budgetEntry struct {
	month    int       // year*12+month of base
	base     int64     // tokens this month according to the ledger
	known    bool      // base has been read at least once this month
	fetched  time.Time // when the query behind base started
	tried    time.Time // when the last query started
	fetching bool
	local    []secondTokens // this gateway's usage, per second, recent first pruned
}

type secondTokens struct {
	sec    int64
	tokens int64
}

// NewBudgets returns budgets over src.
func NewBudgets(src UsageSource, opts BudgetOptions) *Budgets {
	if opts.Refresh <= 0 {
		opts.Refresh = 15 * time.Second
	}
	if opts.FlushLag <= 0 {
		opts.FlushLag = 3 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	return &Budgets{src: src, opts: opts, now: time.Now, m: map[string]*budgetEntry{}}
}

func monthOf(t time.Time) int {
	t = t.UTC()
	return t.Year()*12 + int(t.Month())
}

// entry returns keyID's entry, reset at a new month. mu is held.
func (b *Budgets) entry(keyID string, now time.Time) *budgetEntry {
	e := b.m[keyID]
	if e == nil {
		e = &budgetEntry{month: monthOf(now)}
		b.m[keyID] = e
	}
	if mo := monthOf(now); e.month != mo {
		*e = budgetEntry{month: mo, fetching: e.fetching}
	}
	return e
}

// Used returns the tokens keyID has used this month as far as known, and whether the
// ledger's figure is known yet. It starts a background refresh when the figure is
// missing or older than the refresh interval.
func (b *Budgets) Used(keyID string) (int64, bool) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(keyID, now)
	wait := b.opts.Refresh
	if !e.known {
		wait = time.Second // retry a failed first read soon
	}
	if !e.fetching && now.Sub(e.tried) >= wait {
		e.fetching, e.tried = true, now
		go b.refresh(keyID, now)
	}
	used := e.base
	from := e.fetched.Add(-b.opts.FlushLag).Unix()
	if !e.known {
		from = 0
	}
	for _, s := range e.local {
		if s.sec >= from {
			used += s.tokens
		}
	}
	return used, e.known
}

// Add counts tokens used by keyID on this gateway.
func (b *Budgets) Add(keyID string, tokens int64) {
	if tokens <= 0 {
		return
	}
	now := b.now()
	sec := now.Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(keyID, now)
	if n := len(e.local); n > 0 && e.local[n-1].sec == sec {
		e.local[n-1].tokens += tokens
		return
	}
	e.local = append(e.local, secondTokens{sec: sec, tokens: tokens})
}

// refresh reads keyID's usage from the ledger; started is when it was asked for.
func (b *Budgets) refresh(keyID string, started time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	used, err := b.src.UsageThisMonth(ctx, keyID)
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(keyID, b.now())
	e.fetching = false
	if err != nil {
		b.opts.Log.Warn().Err(err).Str("key_id", keyID).Msg("budget: reading usage failed; using the cached figure")
		return
	}
	if monthOf(started) != e.month {
		return // the month turned during the query
	}
	e.base, e.known, e.fetched = used, true, started
	// Local usage older than what the ledger figure covers is no longer needed.
	from := started.Add(-b.opts.FlushLag).Unix()
	kept := e.local[:0]
	for _, s := range e.local {
		if s.sec >= from {
			kept = append(kept, s)
		}
	}
	e.local = kept
}

// MonthStart is the start of t's calendar month in UTC: the period of the monthly
// budgets, and the admin usage report's default start.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// nextMonth returns how long until the next calendar month in UTC.
func nextMonth(now time.Time) time.Duration {
	return MonthStart(now).AddDate(0, 1, 0).Sub(now)
}

// Forget drops keyID's cached usage, so that its next request reads the ledger again
// (after a budget reset elsewhere).
func (b *Budgets) Forget(keyID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, keyID)
}

// Flush drops every key's cached usage.
func (b *Budgets) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.m)
}
