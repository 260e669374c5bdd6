package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// LedgerOptions configures a Ledger. Only SpoolPath is required.
type LedgerOptions struct {
	// SpoolPath is the local file that holds records while PostgreSQL is unreachable (and
	// when the queue overflows). It must not be shared with another ledger; it is locked.
	SpoolPath string
	// QueueSize bounds the records waiting in memory; 0 means 10000. Beyond it Record writes
	// to the spool instead of waiting.
	QueueSize int
	// BatchSize is the most records written in one COPY; 0 means 1000.
	BatchSize int
	// FlushInterval is the longest a record waits in memory before its batch is written;
	// 0 means 1 second.
	FlushInterval time.Duration
	// RetryInterval is how often the database is tried again while it is down, replaying the
	// spool when it answers; 0 means 5 seconds.
	RetryInterval time.Duration
	// WriteTimeout bounds one batch write; 0 means 10 seconds.
	WriteTimeout time.Duration
	// Logger receives the ledger's logs; the zero value uses the DB's logger.
	Logger *zerolog.Logger
}

// withDefaults fills in the zero fields.
func (o LedgerOptions) withDefaults() LedgerOptions {
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 5 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	return o
}

// LedgerStats counts what a Ledger has done since it was created.
type LedgerStats struct {
	// Queued is the number of records waiting in memory now.
	Queued int
	// Written is the number of records inserted into the database (duplicates not counted).
	Written uint64
	// Spooled is the number of records written to the spool file.
	Spooled uint64
	// Replayed is the number of spooled records committed to the database by a replay
	// (duplicates included).
	Replayed uint64
	// Dropped is the number of records lost: rejected by the database one by one, recorded
	// after Close, or failing to reach both the database and the spool.
	Dropped uint64
	// SpoolPending is true while the spool holds records not yet replayed.
	SpoolPending bool
	// DatabaseDown is true while the last write to the database failed.
	DatabaseDown bool
}

// Ledger records usage asynchronously: Record queues a record without blocking, a background
// goroutine writes batches with COPY, and records that cannot reach the database go to the
// spool file and are replayed when it answers again. Every record is written to the database
// or to the spool before Close returns, and request ids make every write idempotent.
type Ledger struct {
	db    *DB
	opts  LedgerOptions
	log   zerolog.Logger
	spool *spool

	mu     sync.RWMutex // guards closed and sends on queue
	closed bool
	queue  chan UsageRecord
	flush  chan chan struct{}

	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc
	done   chan struct{}

	written, spooled, replayed, dropped atomic.Uint64
	dbDown                              atomic.Bool
}

// NewLedger starts a ledger writing to db. Records left in the spool by an earlier run are
// replayed in the background.
func (db *DB) NewLedger(opts LedgerOptions) (*Ledger, error) {
	opts = opts.withDefaults()
	sp, err := openSpool(opts.SpoolPath)
	if err != nil {
		return nil, fmt.Errorf("postgres: ledger: %w", err)
	}
	log := db.base // its own component, not the connection's (a log line has one component)
	if opts.Logger != nil {
		log = *opts.Logger
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Ledger{
		db:     db,
		opts:   opts,
		log:    log.With().Str("component", "ledger").Logger(),
		spool:  sp,
		queue:  make(chan UsageRecord, opts.QueueSize),
		flush:  make(chan chan struct{}),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go l.run()
	return l, nil
}

// Record queues one request's usage. It never waits for the database: when the queue is full
// the record is appended to the spool file instead. Safe for concurrent use.
func (l *Ledger) Record(rec UsageRecord) {
	rec.normalize(time.Now(), newRequestID)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		l.log.Error().Str("request_id", rec.RequestID).Msg("usage recorded after ledger close; dropped")
		return
	}
	select {
	case l.queue <- rec:
		return
	default:
	}
	l.toSpool([]UsageRecord{rec}, "queue full")
}

// Flush waits until every record queued before the call is in the database or the spool.
func (l *Ledger) Flush(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case l.flush <- reply:
	case <-l.done:
		return errors.New("postgres: ledger: flush: ledger closed")
	case <-ctx.Done():
		return fmt.Errorf("postgres: ledger: flush: %w", ctx.Err())
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("postgres: ledger: flush: %w", ctx.Err())
	}
}

// Close stops accepting records, writes what is queued to the database (or, failing that, to
// the spool) and closes the spool. When ctx ends first, pending database writes are cancelled
// and their records spooled, so nothing queued is lost either way.
func (l *Ledger) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()

	select {
	case <-l.done:
	case <-ctx.Done():
		l.cancel()
		<-l.done
	}
	l.cancel()
	if err := l.spool.close(); err != nil {
		return fmt.Errorf("postgres: ledger: close spool: %w", err)
	}
	return nil
}

// Stats returns the ledger's counters.
func (l *Ledger) Stats() LedgerStats {
	return LedgerStats{
		Queued:       len(l.queue),
		Written:      l.written.Load(),
		Spooled:      l.spooled.Load(),
		Replayed:     l.replayed.Load(),
		Dropped:      l.dropped.Load(),
		SpoolPending: l.spool.pending(),
		DatabaseDown: l.dbDown.Load(),
	}
}

// toSpool appends records to the spool, counting them as dropped if even that fails.
func (l *Ledger) toSpool(recs []UsageRecord, why string) {
	if err := l.spool.append(recs); err != nil {
		l.dropped.Add(uint64(len(recs)))
		l.log.Error().Err(err).Int("records", len(recs)).Str("reason", why).Msg("usage records lost: spool write failed")
		return
	}
	l.spooled.Add(uint64(len(recs)))
	l.log.Debug().Int("records", len(recs)).Str("reason", why).Msg("usage records spooled")
}

// newRequestID makes an id for a record that came without one.
func newRequestID() string {
	s, err := randomBase62(24)
	if err != nil {
		return fmt.Sprintf("ledger-%d", time.Now().UnixNano())
	}
	return "ledger-" + s
}
