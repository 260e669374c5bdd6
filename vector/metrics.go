package vector

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Index metrics, labelled by backend (embedded, qdrant). They measure the index alone,
// hence hxp_vector_index_*: retrieval's hxp_vector_* measure the API around it (a
// search there includes the query's embedding). Register Collectors with the
// process's registry; Observed records them.
var (
	vectorBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

	mUpsert = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_vector_index_upsert_seconds",
		Help: "Duration of one vector index upsert (all its batches).", Buckets: vectorBuckets}, []string{"backend"})
	mSearch = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_vector_index_search_seconds",
		Help: "Duration of one vector index search.", Buckets: vectorBuckets}, []string{"backend"})
	mUpserted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_vector_index_upserted_points_total",
		Help: "Points written to the vector index (replacements included)."}, []string{"backend"})
	mPoints = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_vector_index_points",
		Help: "Points held by the vector index, all stores together (refreshed after each write and health check)."}, []string{"backend"})
	mErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_vector_index_errors_total",
		Help: "Vector index calls that failed for another reason than invalid input, by operation."}, []string{"backend", "op"})
)

// Collectors returns the vector index metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{mUpsert, mSearch, mUpserted, mPoints, mErrors}
}

// Observed wraps an index so that its calls are measured under the backend label.
func Observed(x Index, backend string) Index {
	return &observed{Index: x, backend: backend,
		upsert: mUpsert.WithLabelValues(backend), search: mSearch.WithLabelValues(backend),
		upserted: mUpserted.WithLabelValues(backend), points: mPoints.WithLabelValues(backend)}
}

type observed struct {
	Index
	backend  string
	upsert   prometheus.Observer
	search   prometheus.Observer
	upserted prometheus.Counter
	points   prometheus.Gauge
}

func (o *observed) Upsert(ctx context.Context, points []Point) error {
	start := time.Now()
	err := o.Index.Upsert(ctx, points)
	o.upsert.Observe(time.Since(start).Seconds())
	if o.failed("upsert", err) {
		return err
	}
	o.upserted.Add(float64(len(points)))
	o.refresh(ctx)
	return nil
}

func (o *observed) Search(ctx context.Context, q Query) ([]Hit, error) {
	start := time.Now()
	hits, err := o.Index.Search(ctx, q)
	o.search.Observe(time.Since(start).Seconds())
	o.failed("search", err)
	return hits, err
}

func (o *observed) DeleteFile(ctx context.Context, storeID, fileID string) error {
	err := o.Index.DeleteFile(ctx, storeID, fileID)
	if !o.failed("delete", err) {
		o.refresh(ctx)
	}
	return err
}

func (o *observed) DeleteStore(ctx context.Context, storeID string) error {
	err := o.Index.DeleteStore(ctx, storeID)
	if !o.failed("delete", err) {
		o.refresh(ctx)
	}
	return err
}

func (o *observed) Check(ctx context.Context) error {
	err := o.Index.Check(ctx)
	if !o.failed("check", err) {
		o.refresh(ctx)
	}
	return err
}

// failed reports whether err is an error, counting it unless it is the caller's.
func (o *observed) failed(op string, err error) bool {
	if err == nil {
		return false
	}
	if !errors.Is(err, ErrInvalid) {
		mErrors.WithLabelValues(o.backend, op).Inc()
	}
	return true
}

// refresh sets the points gauge; a failure leaves the last value.
func (o *observed) refresh(ctx context.Context) {
	if n, err := o.Index.Count(ctx, ""); err == nil {
		o.points.Set(float64(n))
	}
}
