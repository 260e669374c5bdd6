package vector_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
	"github.com/hxp-ai/hxp/vector/vectortest"
)

func TestObservedRecordsMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, c := range vector.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	inner, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Metrics are package-level: a label of this run's own keeps -count=2 exact.
	backend := "embedded-test-" + vector.NewID()[:8]
	x := vector.Observed(inner, backend)
	defer x.Close()
	ctx := context.Background()
	pts := []vector.Point{
		{ID: vector.NewID(), StoreID: "s", FileID: "f", Vector: []float32{1, 0}},
		{ID: vector.NewID(), StoreID: "s", FileID: "g", Vector: []float32{0, 1}},
	}
	if err := x.Upsert(ctx, pts); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Search(ctx, vector.Query{StoreID: "s", Vector: []float32{1, 1}, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Search(ctx, vector.Query{StoreID: "s", Vector: []float32{1, 1, 1}, Limit: 1}); !errors.Is(err, vector.ErrInvalid) {
		t.Fatalf("search of another dimension: %v", err)
	}
	if got := gauge(t, reg, backend, "hxp_vector_index_points"); got != 2 {
		t.Fatalf("hxp_vector_index_points = %v after upserting 2", got)
	}
	if err := x.DeleteFile(ctx, "s", "f"); err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, reg, backend, "hxp_vector_index_points"); got != 1 {
		t.Fatalf("hxp_vector_index_points = %v after deleting a file of 1 point", got)
	}
	for name, want := range map[string]uint64{"hxp_vector_index_upsert_seconds": 1, "hxp_vector_index_search_seconds": 2} {
		if got := histogramCount(t, reg, backend, name); got != want {
			t.Errorf("%s count %d, want %d", name, got, want)
		}
	}
	if n := testutil.CollectAndCount(reg, "hxp_vector_index_errors_total"); n != 0 {
		t.Errorf("invalid input counted as index errors (%d series)", n)
	}
	if got := series(t, reg, backend, "hxp_vector_index_upserted_points_total")[0].GetCounter().GetValue(); got != 2 {
		t.Errorf("hxp_vector_index_upserted_points_total = %v, want 2", got)
	}
}

// series returns the metric family name's series of backend.
func series(t *testing.T, reg *prometheus.Registry, backend, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "backend" && l.GetValue() == backend {
					out = append(out, m)
				}
			}
		}
	}
	if len(out) != 1 {
		t.Fatalf("%s: %d series for backend %s", name, len(out), backend)
	}
	return out
}

func gauge(t *testing.T, reg *prometheus.Registry, backend, name string) float64 {
	return series(t, reg, backend, name)[0].GetGauge().GetValue()
}

func histogramCount(t *testing.T, reg *prometheus.Registry, backend, name string) uint64 {
	return series(t, reg, backend, name)[0].GetHistogram().GetSampleCount()
}

// TestObservedConformance proves the wrapper changes no behaviour.
func TestObservedConformance(t *testing.T) {
	vectortest.Run(t, func(t *testing.T) vector.Index {
		x, err := embedded.Open(t.TempDir(), embedded.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = x.Close() })
		return vector.Observed(x, "embedded-conformance")
	})
}
