package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/health"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/retrieval"
	"github.com/hxp-ai/hxp/transport/rest"
	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
	"github.com/hxp-ai/hxp/vector/qdrant"
)

// retrievalStack is the files and vector stores API: the service, its catalog and its
// vector index, opened by New and closed at Shutdown.
type retrievalStack struct {
	svc     *retrieval.Service
	cat     retrieval.Catalog
	idx     vector.Index
	metrics *retrieval.Metrics
	log     zerolog.Logger
}

// openRetrieval opens the API's storage: the catalog in PostgreSQL when db is set,
// else in retrieval.data_dir (created on demand); the vector index embedded under
// data_dir or on Qdrant. Embeddings go through front (admission included), so they
// are charged to the key that asked. It returns nil when the section is off.
func openRetrieval(cfg config.Retrieval, front infer.Service, db *postgres.DB, obs *observability, log zerolog.Logger) (*retrievalStack, error) {
	if !cfg.On() {
		log.Info().Msg("retrieval: off (retrieval.enabled: false)")
		return nil, nil
	}
	log = log.With().Str("component", "retrieval").Logger()
	r := &retrievalStack{log: log}
	var err error
	where := "PostgreSQL"
	if db != nil {
		r.cat = db.Catalog()
	} else {
		where = filepath.Join(cfg.DataDir, retrieval.BoltFile)
		if r.cat, err = retrieval.OpenBolt(where); err != nil {
			return nil, fmt.Errorf("retrieval.data_dir: %w (one server per data directory; set another data_dir or retrieval.enabled: false)", err)
		}
	}
	switch cfg.Backend {
	case "qdrant":
		r.idx, err = qdrant.Open(qdrant.Options{URL: cfg.Qdrant.URL, APIKeyFile: cfg.Qdrant.APIKeyFile, TLS: cfg.Qdrant.TLS})
		if err != nil {
			err = fmt.Errorf("retrieval.qdrant: %w", err)
		}
	default:
		r.idx, err = embedded.Open(cfg.DataDir, embedded.Options{MaxPoints: cfg.MaxPoints})
		if err != nil {
			err = fmt.Errorf("retrieval.data_dir: %w", err)
		}
	}
	if err != nil {
		_ = r.cat.Close()
		return nil, err
	}
	r.idx = vector.Observed(r.idx, cfg.Backend)
	r.metrics = retrieval.NewMetrics(r.cat)
	if err := r.observe(obs, db == nil); err != nil {
		_ = r.close()
		return nil, err
	}
	r.svc = retrieval.New(retrieval.Options{Catalog: r.cat, Index: r.idx, Models: front, DefaultModel: cfg.EmbeddingModel,
		MaxFileBytes: cfg.MaxFileBytes, Workers: cfg.Workers, Log: log, Metrics: r.metrics})
	log.Info().Str("catalog", where).Str("backend", cfg.Backend).Str("data_dir", cfg.DataDir).
		Str("embedding_model", orFirst(cfg.EmbeddingModel)).Msg("retrieval: files and vector stores API on /v1/files and /v1/vector_stores")
	return r, nil
}

func orFirst(model string) string {
	if model == "" {
		return "(the first model that can embed)"
	}
	return model
}

// observe registers the metrics and the health checks: the vector index, and the
// embedded catalog (PostgreSQL has its own check). Their loss degrades retrieval
// only: Medium.
func (r *retrievalStack) observe(obs *observability, embeddedCatalog bool) error {
	if err := obs.register(append(vector.Collectors(), r.metrics)...); err != nil {
		return err
	}
	checks := []health.Check{{Name: "vector_index", Level: health.Medium, Timeout: 2 * time.Second, Retries: 1,
		Interval: 10 * time.Second, Run: r.idx.Check}}
	if embeddedCatalog {
		checks = append(checks, health.Check{Name: "retrieval_catalog", Level: health.Medium, Timeout: 2 * time.Second,
			Interval: 10 * time.Second, Run: r.cat.Check})
	}
	for _, c := range checks {
		if err := obs.health.Register(c); err != nil {
			return fmt.Errorf("app: %w", err)
		}
	}
	return nil
}

// start finishes the ingestions a previous run left unfinished; called once the
// models have loaded, since ingestion embeds.
func (r *retrievalStack) start() {
	if r == nil {
		return
	}
	if err := r.svc.Start(context.Background()); err != nil {
		r.log.Error().Err(err).Msg("retrieval: resume unfinished ingestions")
	}
}

// stop ends the ingestions in progress (their files stay in_progress and are taken up
// again at the next start).
func (r *retrievalStack) stop() {
	if r != nil {
		r.svc.Close()
	}
}

// close releases the index and the catalog.
func (r *retrievalStack) close() error {
	if r == nil {
		return nil
	}
	return errors.Join(r.idx.Close(), r.cat.Close())
}

// gatewayHTTP is the gateway's HTTP limits: its body limit fits an upload.
func gatewayHTTP(hc rest.HTTPConfig, cfg config.Retrieval) rest.HTTPConfig {
	if cfg.On() && cfg.BodyBytes() > hc.MaxBodyBytes {
		hc.MaxBodyBytes = cfg.BodyBytes()
	}
	return hc
}
