package health

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// A check unregistered while the registry runs stops running, leaves the reports and
// its status series, and its name can be registered again; a dependency or an unknown
// name cannot be unregistered.
func TestUnregister(t *testing.T) {
	r := NewRegistry(zerolog.Nop())
	var runs atomic.Int64
	counting := func(context.Context) error { runs.Add(1); return nil }
	mustRegister(t, r,
		Check{Name: "model:a", Level: Critical, Interval: 10 * time.Millisecond, Run: counting},
		Check{Name: "base", Level: Low, Run: pass},
		Check{Name: "top", Level: Low, DependsOn: []string{"base"}, Run: pass})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	eventually(t, "model:a to pass", func() bool {
		c, ok := r.Report().Check("model:a")
		return ok && c.Status == StatusPass && runs.Load() > 1
	})
	if n := testutil.CollectAndCount(r, "hxp_health_check_status"); n != 3 {
		t.Fatalf("%d status series, want 3", n)
	}

	if err := r.Unregister("model:a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Report().Check("model:a"); ok {
		t.Error("the report still has the unregistered check")
	}
	if n := testutil.CollectAndCount(r, "hxp_health_check_status"); n != 2 {
		t.Errorf("%d status series after Unregister, want 2", n)
	}
	// Its loop has ended: at most a run already under way completes.
	after := runs.Load()
	time.Sleep(50 * time.Millisecond) // five intervals of the removed check
	if got := runs.Load(); got > after+1 {
		t.Errorf("the unregistered check ran %d more times", got-after)
	}

	if err := r.Unregister("base"); err == nil || !strings.Contains(err.Error(), `dependency of "top"`) {
		t.Errorf("unregistering a dependency: %v", err)
	}
	if err := r.Unregister("nope"); err == nil {
		t.Error("unregistering an unknown check succeeded")
	}
	mustRegister(t, r, Check{Name: "model:a", Level: Critical, Run: pass})
	eventually(t, "the re-registered check to pass", func() bool {
		c, ok := r.Report().Check("model:a")
		return ok && c.Status == StatusPass
	})
}
