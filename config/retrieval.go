package config

import (
	"net/url"
	"strings"
)

// Retrieval configures OpenAI's files and vector stores API (/v1/files,
// /v1/vector_stores) on the gateway. The catalog (files, stores, their metadata) is
// in PostgreSQL when postgres.url is set, else in an embedded file under data_dir;
// the chunks' vectors are in the embedded index under data_dir or in Qdrant.
type Retrieval struct {
	// Enabled serves the API. Unset means true; HXP_RETRIEVAL_ENABLED=false turns it
	// off.
	Enabled *bool `yaml:"enabled"`
	// DataDir holds the embedded catalog and vector index, created on demand
	// (default "hxp-data", relative to the working directory; one server per
	// directory).
	DataDir string `yaml:"data_dir"`
	// Backend is the vector index: embedded (default: exact search in this process,
	// no service) or qdrant.
	Backend string `yaml:"backend"`
	// Qdrant is the Qdrant server of backend qdrant.
	Qdrant Qdrant `yaml:"qdrant"`
	// EmbeddingModel embeds the stores created without embedding_model; "" (default)
	// is the first served model that can embed.
	EmbeddingModel string `yaml:"embedding_model"`
	// MaxFileBytes is the largest upload (default 32 MiB). The gateway accepts request
	// bodies up to this size plus 1 MiB of form overhead when it exceeds
	// server.max_body_bytes.
	MaxFileBytes int64 `yaml:"max_file_bytes"`
	// MaxPoints bounds the embedded index's chunks, all stores together (0: the
	// index's default, 500,000).
	MaxPoints int `yaml:"max_points"`
	// Workers is how many files are ingested at once (default 2).
	Workers int `yaml:"workers"`
}

// Qdrant is a Qdrant server reached over gRPC.
type Qdrant struct {
	// URL is host:port of Qdrant's gRPC API, or a grpc://, http:// or https:// URL
	// (https: TLS); the port defaults to 6334.
	URL string `yaml:"url"`
	// APIKeyFile holds the API key (never in the YAML or the logs).
	APIKeyFile string `yaml:"api_key_file"`
	// TLS connects with TLS (implied by an https URL).
	TLS bool `yaml:"tls"`
}

// Retrieval defaults and bounds.
const (
	DefaultRetrievalDataDir  = "hxp-data"
	DefaultRetrievalBackend  = "embedded"
	DefaultMaxFileBytes      = 32 << 20
	DefaultRetrievalWorkers  = 2
	maxRetrievalFileBytes    = 1 << 30
	maxRetrievalWorkers      = 64
	retrievalFormOverhead    = 1 << 20
	retrievalBackendEmbedded = "embedded"
	retrievalBackendQdrant   = "qdrant"
)

// On reports whether the API is served.
func (r Retrieval) On() bool { return r.Enabled == nil || *r.Enabled }

// BodyBytes is the request body size the gateway must accept for uploads.
func (r Retrieval) BodyBytes() int { return int(r.MaxFileBytes) + retrievalFormOverhead }

func (r *Retrieval) applyDefaults() {
	if r.DataDir == "" {
		r.DataDir = DefaultRetrievalDataDir
	}
	if r.Backend == "" {
		r.Backend = DefaultRetrievalBackend
	}
	if r.MaxFileBytes == 0 {
		r.MaxFileBytes = DefaultMaxFileBytes
	}
	if r.Workers == 0 {
		r.Workers = DefaultRetrievalWorkers
	}
}

// validateRetrieval checks the retrieval section (only when it is on).
func validateRetrieval(add func(path, format string, args ...any), r Retrieval) {
	if !r.On() {
		return
	}
	if strings.TrimSpace(r.DataDir) == "" {
		add("retrieval.data_dir", "is empty; name a directory for the embedded catalog and index (default %q)", DefaultRetrievalDataDir)
	}
	switch r.Backend {
	case retrievalBackendEmbedded:
	case retrievalBackendQdrant:
		if r.Qdrant.URL == "" {
			add("retrieval.qdrant.url", "missing: backend qdrant needs the server's gRPC address (e.g. localhost:6334)")
		} else if strings.Contains(r.Qdrant.URL, "://") {
			if u, err := url.Parse(r.Qdrant.URL); err != nil || u.Host == "" {
				add("retrieval.qdrant.url", "%q is not host:port or a URL with a host", r.Qdrant.URL)
			}
		}
	default:
		add("retrieval.backend", "%q is not a backend; use embedded or qdrant", r.Backend)
	}
	if r.MaxFileBytes < 1 || r.MaxFileBytes > maxRetrievalFileBytes {
		add("retrieval.max_file_bytes", "%d is out of range (1 to %d; default %d)", r.MaxFileBytes, maxRetrievalFileBytes, DefaultMaxFileBytes)
	}
	if r.MaxPoints < 0 {
		add("retrieval.max_points", "%d is negative; 0 means the embedded index's default", r.MaxPoints)
	}
	if r.Workers < 1 || r.Workers > maxRetrievalWorkers {
		add("retrieval.workers", "%d is out of range (1 to %d; default %d)", r.Workers, maxRetrievalWorkers, DefaultRetrievalWorkers)
	}
}
