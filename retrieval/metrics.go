package retrieval

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exports ingestion and search to Prometheus (labels are fixed words, never
// ids or content):
//
//   - hxp_vector_chunks_embedded_total: chunks embedded and stored
//   - hxp_vector_ingest_seconds{status}: one file's ingestion, completed or failed
//   - hxp_vector_search_seconds: one search, the query's embedding included
//   - hxp_vector_files{status}: files attached to stores, by status (read from the
//     catalog at each scrape)
//
// The index itself (upsert and search latency, points held) is measured by the
// vector package's hxp_vector_index_* (vector.Observed).
type Metrics struct {
	chunks prometheus.Counter
	ingest *prometheus.HistogramVec
	search prometheus.Histogram
	files  *prometheus.Desc
	cat    Catalog
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics returns the metrics of a service over cat.
func NewMetrics(cat Catalog) *Metrics {
	return &Metrics{
		chunks: prometheus.NewCounter(prometheus.CounterOpts{Name: "hxp_vector_chunks_embedded_total",
			Help: "Document chunks embedded and stored in a vector index."}),
		ingest: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_vector_ingest_seconds",
			Help: "Time to chunk, embed and store one file, by outcome.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)},
			[]string{"status"}),
		search: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hxp_vector_search_seconds",
			Help: "Time to answer one vector store search, the query's embedding included.", Buckets: prometheus.DefBuckets}),
		files: prometheus.NewDesc("hxp_vector_files", "Files attached to vector stores, by ingestion status.", []string{"status"}, nil),
		cat:   cat,
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.chunks.Describe(ch)
	m.ingest.Describe(ch)
	m.search.Describe(ch)
	ch <- m.files
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.chunks.Collect(ch)
	m.ingest.Collect(ch)
	m.search.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := m.cat.Counts(ctx)
	if err != nil {
		return // the scrape goes on without the gauge
	}
	for _, s := range []struct {
		name string
		n    int
	}{{StatusInProgress, c.InProgress}, {StatusCompleted, c.Completed}, {StatusFailed, c.Failed}, {StatusCancelled, c.Cancelled}} {
		ch <- prometheus.MustNewConstMetric(m.files, prometheus.GaugeValue, float64(s.n), s.name)
	}
}

func (m *Metrics) embedded(n int) {
	if m != nil {
		m.chunks.Add(float64(n))
	}
}

func (m *Metrics) ingested(status string, d time.Duration) {
	if m != nil {
		m.ingest.WithLabelValues(status).Observe(d.Seconds())
	}
}

func (m *Metrics) searched(d time.Duration) {
	if m != nil {
		m.search.Observe(d.Seconds())
	}
}
