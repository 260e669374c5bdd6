package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
)

// Options tunes the connection pool. The zero value is usable.
type Options struct {
	// MaxConns caps the pool's connections; 0 means pgxpool's default (max(4, CPUs)).
	MaxConns int32
	// ConnectTimeout bounds each new connection; 0 means 5 seconds.
	ConnectTimeout time.Duration
	// Logger receives the connector's logs; the zero value discards them.
	Logger zerolog.Logger
}

// DB is a connection pool to HXP's PostgreSQL database with the schema migrated. It is safe
// for concurrent use.
type DB struct {
	pool *pgxpool.Pool
	log  zerolog.Logger // component "postgres"
	base zerolog.Logger // the caller's logger, for components of their own (the ledger)
}

// Open connects to the database at url (a postgres:// URL or a key=value DSN), checks that it
// answers, and applies pending migrations. The URL may carry a password; it is never logged.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors may quote the URL, password included: do not wrap them.
		return nil, errors.New("postgres: invalid connection URL")
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: create pool: %w", err)
	}
	db := &DB{pool: pool, log: opts.Logger.With().Str("component", "postgres").Logger(), base: opts.Logger}
	if err := db.Health(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	db.log.Info().Str("host", cfg.ConnConfig.Host).Uint16("port", cfg.ConnConfig.Port).
		Str("database", cfg.ConnConfig.Database).Msg("postgres connected")
	return db, nil
}

// Health checks that the database answers a query.
func (db *DB) Health(ctx context.Context) error {
	var one int
	if err := db.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("postgres: health check: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned. Close a Ledger built
// on the DB first.
func (db *DB) Close() {
	db.pool.Close()
}
