package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// run is the ledger's writer goroutine: it batches queued records, writes them, falls back to
// the spool while the database is down and replays the spool when it is back.
func (l *Ledger) run() {
	defer close(l.done)
	tick := time.NewTicker(l.opts.FlushInterval)
	defer tick.Stop()
	batch := make([]UsageRecord, 0, l.opts.BatchSize)
	// The zero time makes the first tick try to replay what an earlier run left behind.
	var lastTry time.Time

	flushBatch := func() {
		if len(batch) == 0 {
			return
		}
		l.writeOrSpool(batch, &lastTry)
		batch = batch[:0]
	}
	for {
		select {
		case rec, ok := <-l.queue:
			if !ok {
				flushBatch()
				return
			}
			batch = append(batch, rec)
			if len(batch) >= l.opts.BatchSize {
				flushBatch()
			}
		case reply := <-l.flush:
			// Everything queued before Flush was called is in the channel now.
			for drained := false; !drained; {
				select {
				case rec, ok := <-l.queue:
					if !ok {
						drained = true
						break
					}
					batch = append(batch, rec)
					if len(batch) >= l.opts.BatchSize {
						flushBatch()
					}
				default:
					drained = true
				}
			}
			flushBatch()
			close(reply)
		case <-tick.C:
			flushBatch()
			if l.spool.pending() && time.Since(lastTry) >= l.opts.RetryInterval {
				lastTry = time.Now()
				l.replay()
			}
		}
	}
}

// writeOrSpool writes a batch to the database unless it is known to be down (and not due for
// a retry); whatever is not written goes to the spool.
func (l *Ledger) writeOrSpool(batch []UsageRecord, lastTry *time.Time) {
	if l.dbDown.Load() && time.Since(*lastTry) < l.opts.RetryInterval {
		l.toSpool(batch, "database down")
		return
	}
	*lastTry = time.Now()
	n, err := l.write(batch)
	if err != nil {
		l.markDown(err)
		l.toSpool(batch, "database write failed")
		return
	}
	l.written.Add(uint64(n))
	l.markUp()
	if l.spool.pending() {
		l.replay()
	}
}

// markDown records that the database failed, logging only the transition.
func (l *Ledger) markDown(err error) {
	if !l.dbDown.Swap(true) {
		l.log.Warn().Err(err).Msg("usage ledger cannot write to postgres; spooling records locally")
	}
}

// markUp records that the database answered, logging only the transition.
func (l *Ledger) markUp() {
	if l.dbDown.Swap(false) {
		l.log.Info().Msg("usage ledger writing to postgres again")
	}
}

// replay writes spooled records to the database, file by file, removing each file once all of
// it is committed. A failure leaves the file for the next try: writes are idempotent.
func (l *Ledger) replay() {
	for l.ctx.Err() == nil {
		path, err := l.spool.takeForReplay()
		if err != nil {
			l.log.Error().Err(err).Msg("usage spool replay")
			return
		}
		if path == "" {
			return
		}
		recs, bad, err := readSpoolFile(path)
		if err != nil {
			l.log.Error().Err(err).Msg("usage spool replay")
			return
		}
		if bad > 0 {
			l.dropped.Add(uint64(bad))
			l.log.Warn().Int("lines", bad).Msg("usage spool: undecodable lines skipped")
		}
		for start := 0; start < len(recs); start += l.opts.BatchSize {
			end := min(start+l.opts.BatchSize, len(recs))
			n, err := l.write(recs[start:end])
			if err != nil {
				l.markDown(err)
				return
			}
			l.written.Add(uint64(n))
			l.replayed.Add(uint64(end - start))
		}
		l.markUp()
		if err := l.spool.doneReplay(path); err != nil {
			l.log.Error().Err(err).Msg("usage spool replay")
			return
		}
		l.log.Info().Int("records", len(recs)).Msg("usage spool replayed")
	}
}

// write stores a batch and returns how many records were new. A batch the database rejects as
// bad data is retried record by record, and only the rejected records are dropped; any other
// error (the database is unreachable) is returned so the batch can be spooled.
func (l *Ledger) write(recs []UsageRecord) (int64, error) {
	n, err := l.copyBatch(recs)
	if err == nil || !isDataError(err) || len(recs) == 1 {
		if err != nil && isDataError(err) {
			l.dropped.Add(1)
			l.log.Error().Err(err).Str("request_id", recs[0].RequestID).Msg("usage record rejected by postgres; dropped")
			return 0, nil
		}
		return n, err
	}
	var total int64
	for i := range recs {
		n, err := l.write(recs[i : i+1])
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// isDataError reports whether the server refused the data itself (SQLSTATE classes 22 and
// 23), as opposed to being unreachable.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	class := pgErr.Code[:2]
	return class == "22" || class == "23"
}

// usageColumns are the columns the ledger writes, in copy order.
var usageColumns = []string{"request_id", "key_id", "model", "prompt_tokens", "completion_tokens", "latency_ms", "status_code", "created_at"}

// copyBatch copies records into a session-local staging table and moves them into
// usage_records in one transaction, skipping request ids already present. COPY itself cannot
// skip conflicts; the staging table lets a batch replayed after a partial write insert only
// what is missing.
func (l *Ledger) copyBatch(recs []UsageRecord) (int64, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.WriteTimeout)
	defer cancel()
	var inserted int64
	err := pgx.BeginFunc(ctx, l.db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS usage_stage (
			request_id text, key_id text, model text, prompt_tokens integer,
			completion_tokens integer, latency_ms integer, status_code smallint,
			created_at timestamptz) ON COMMIT DELETE ROWS`); err != nil {
			return fmt.Errorf("create staging table: %w", err)
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"usage_stage"}, usageColumns,
			pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
				r := &recs[i]
				return []any{r.RequestID, r.KeyID, r.Model, int32(r.PromptTokens), int32(r.CompletionTokens),
					int32(r.LatencyMS), int16(r.StatusCode), r.CreatedAt}, nil
			}))
		if err != nil {
			return fmt.Errorf("copy usage records: %w", err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO usage_records
			(request_id, key_id, model, prompt_tokens, completion_tokens, latency_ms, status_code, created_at)
			SELECT request_id, key_id, model, prompt_tokens, completion_tokens, latency_ms, status_code, created_at
			FROM usage_stage
			ON CONFLICT (request_id) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("insert usage records: %w", err)
		}
		inserted = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: ledger: write %d records: %w", len(recs), err)
	}
	return inserted, nil
}
