package config

import "time"

// Responses configures the stored conversations of the Responses API (POST
// /v1/responses with store: true): in PostgreSQL when postgres.url is set, in a
// bounded in-process store otherwise.
type Responses struct {
	// Retention is how long a stored response is kept (default 720h, 30 days;
	// HXP_RESPONSES_RETENTION); a background sweep removes older ones.
	Retention Duration `yaml:"retention"`
	// MaxStored bounds the in-process store's responses (default 10000); the least
	// recently used are dropped beyond it. PostgreSQL keeps every one until swept.
	MaxStored int `yaml:"max_stored"`
	// MaxStoredBytes bounds the in-process store's JSON (default 256 MiB).
	MaxStoredBytes int64 `yaml:"max_stored_bytes"`
}

// Responses defaults and bounds.
const (
	DefaultResponsesRetention      = 30 * 24 * time.Hour
	DefaultResponsesMaxStored      = 10000
	DefaultResponsesMaxStoredBytes = 256 << 20
	minResponsesRetention          = time.Minute
)

func (r *Responses) applyDefaults() {
	if r.Retention == 0 {
		r.Retention = Duration(DefaultResponsesRetention)
	}
	if r.MaxStored == 0 {
		r.MaxStored = DefaultResponsesMaxStored
	}
	if r.MaxStoredBytes == 0 {
		r.MaxStoredBytes = DefaultResponsesMaxStoredBytes
	}
}

// validateResponses checks the responses section.
func validateResponses(add func(path, format string, args ...any), r Responses) {
	if r.Retention.D() < minResponsesRetention {
		add("responses.retention", "%s is too short; use at least %s (default %s)", r.Retention.D(), minResponsesRetention, DefaultResponsesRetention)
	}
	if r.MaxStored < 1 {
		add("responses.max_stored", "%d must be at least 1", r.MaxStored)
	}
	if r.MaxStoredBytes < 1<<20 {
		add("responses.max_stored_bytes", "%d is too small; use at least 1048576 (1 MiB)", r.MaxStoredBytes)
	}
}
