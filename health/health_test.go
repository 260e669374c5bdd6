package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/internal/testenv"
)

func pass(context.Context) error { return nil }

func mustRegister(t *testing.T, r *Registry, cs ...Check) {
	t.Helper()
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			t.Fatalf("Register(%s): %v", c.Name, err)
		}
	}
}

func result(t *testing.T, rep Report, name string) CheckResult {
	t.Helper()
	c, ok := rep.Check(name)
	if !ok {
		t.Fatalf("no result for %q", name)
	}
	return c
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTimeoutHonoured(t *testing.T) {
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r, Check{Name: "slow", Level: High, Timeout: 100 * time.Millisecond, Run: func(ctx context.Context) error {
		<-ctx.Done() // a well-behaved check that would otherwise hang
		return ctx.Err()
	}})
	start := time.Now()
	rep := r.RunOnce(context.Background())
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("RunOnce took %v with a 100ms timeout", d)
	}
	c := result(t, rep, "slow")
	if c.Status != StatusFail || c.LastError != "timed out after 100ms" || c.Latency < 100*time.Millisecond {
		t.Fatalf("result %+v", c)
	}
}

func TestHungCheckIsAbandonedNotPiledUp(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r, Check{Name: "stuck", Level: High, Timeout: 30 * time.Millisecond, Run: func(context.Context) error {
		calls.Add(1)
		<-release // ignores its context entirely
		return nil
	}})
	start := time.Now()
	c := result(t, r.RunOnce(context.Background()), "stuck")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RunOnce waited %v for a check that ignores its context", d)
	}
	if c.Status != StatusFail || !strings.Contains(c.LastError, "timed out") {
		t.Fatalf("first run %+v", c)
	}
	// While the first call is stuck, later runs fail at once without calling Run again.
	c = result(t, r.RunOnce(context.Background()), "stuck")
	if c.Status != StatusFail || c.LastError != ErrHung.Error() || calls.Load() != 1 || c.ConsecutiveFailures != 2 {
		t.Fatalf("second run %+v, calls %d", c, calls.Load())
	}
	close(release)
	eventually(t, "the stuck call to return", func() bool {
		return result(t, r.RunOnce(context.Background()), "stuck").Status == StatusPass
	})
	if calls.Load() != 2 {
		t.Errorf("Run called %d times, want 2", calls.Load())
	}
}

func TestRetriesWithBackoff(t *testing.T) {
	var calls atomic.Int32
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r, Check{Name: "flaky", Level: Critical, Retries: 2, Backoff: 20 * time.Millisecond, Run: func(context.Context) error {
		if calls.Add(1) < 3 {
			return errors.New("connection refused")
		}
		return nil
	}})
	start := time.Now()
	c := result(t, r.RunOnce(context.Background()), "flaky")
	if c.Status != StatusPass || c.Attempts != 3 || calls.Load() != 3 {
		t.Fatalf("result %+v after %d calls", c, calls.Load())
	}
	// Backoff 20ms then 40ms between the three attempts.
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("three attempts took %v, want >= 60ms of backoff", d)
	}
}

func TestFailThenRecoverTransitions(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	logs := &testenv.Buffer{}
	r := NewRegistry(zerolog.New(logs))
	mustRegister(t, r, Check{Name: "db", Level: Critical, Retries: 1, Backoff: time.Millisecond, Run: func(context.Context) error {
		if down.Load() {
			return errors.New("dial tcp: connection refused")
		}
		return nil
	}})
	r.MarkReady()
	for i := 1; i <= 2; i++ {
		c := result(t, r.RunOnce(context.Background()), "db")
		if c.Status != StatusFail || c.ConsecutiveFailures != i || c.Attempts != 2 || !c.LastSuccess.IsZero() ||
			c.LastError != "dial tcp: connection refused" {
			t.Fatalf("run %d: %+v", i, c)
		}
		if ok, rep := r.Ready(); ok || rep.Status != Unhealthy {
			t.Fatalf("run %d: ready=%v status=%s with the critical check failing", i, ok, rep.Status)
		}
	}
	down.Store(false)
	before := time.Now()
	rep := r.RunOnce(context.Background())
	c := result(t, rep, "db")
	if c.Status != StatusPass || c.ConsecutiveFailures != 0 || c.LastError != "" || c.LastSuccess.Before(before) || c.Attempts != 1 {
		t.Fatalf("after recovery: %+v", c)
	}
	if !rep.Ready || rep.Status != Healthy {
		t.Fatalf("after recovery: ready=%v status=%s", rep.Ready, rep.Status)
	}

	// One transition to fail (unknown -> fail; fail -> fail is not a transition), one to pass.
	want := `
# HELP hxp_health_transitions_total Health check status changes, by the status changed to.
# TYPE hxp_health_transitions_total counter
hxp_health_transitions_total{check="db",to="fail"} 1
hxp_health_transitions_total{check="db",to="pass"} 1
# HELP hxp_health_check_status 1 when the health check passed at its latest run, 0 when it failed or was skipped.
# TYPE hxp_health_check_status gauge
hxp_health_check_status{check="db",level="critical"} 1
`
	if err := testutil.CollectAndCompare(r, strings.NewReader(want), "hxp_health_transitions_total", "hxp_health_check_status"); err != nil {
		t.Fatal(err)
	}
	// Five attempts (2 + 2 + 1) were timed.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "hxp_health_check_duration_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != 5 {
				t.Errorf("duration samples = %d, want 5", n)
			}
		}
	}

	// Every line is JSON without duplicate keys: the check's level must not collide with the
	// line's own. The failure of a critical check logs at error, its recovery at info.
	lines := testenv.JSONLogLines(t, logs.String())
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want the 2 transitions:\n%s", len(lines), logs.String())
	}
	wantLines := []map[string]any{
		{"level": "error", "check": "db", "check_level": "critical", "from": "unknown", "to": "fail",
			"error": "dial tcp: connection refused", "consecutive_failures": float64(1), "message": "health check status changed"},
		{"level": "info", "check": "db", "check_level": "critical", "from": "fail", "to": "pass",
			"message": "health check status changed"},
	}
	for i, w := range wantLines {
		if fmt.Sprint(lines[i]) != fmt.Sprint(w) {
			t.Errorf("log line %d:\n got %v\nwant %v", i+1, lines[i], w)
		}
	}
}

func TestDependencyChainSkipsDependents(t *testing.T) {
	var order []string
	var mu sync.Mutex
	ran := func(name string, err error) func(context.Context) error {
		return func(context.Context) error {
			time.Sleep(10 * time.Millisecond)
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return err
		}
	}
	r := NewRegistry(zerolog.Nop())
	// Registered out of order: C depends on B, B on A.
	mustRegister(t, r,
		Check{Name: "C", Level: Medium, DependsOn: []string{"B"}, Run: ran("C", nil)},
		Check{Name: "B", Level: High, DependsOn: []string{"A"}, Run: ran("B", errors.New("B is down"))},
		Check{Name: "A", Level: Critical, Run: ran("A", nil)},
	)
	rep := r.RunOnce(context.Background())
	if got := strings.Join(order, ","); got != "A,B" {
		t.Fatalf("ran %s, want A then B and not C", got)
	}
	if a, b, c := result(t, rep, "A"), result(t, rep, "B"), result(t, rep, "C"); a.Status != StatusPass || b.Status != StatusFail ||
		c.Status != StatusSkipped || c.LastError != `dependency "B" is fail` || c.ConsecutiveFailures != 0 {
		t.Fatalf("A %+v\nB %+v\nC %+v", a, b, c)
	}
	// B is high: degraded, not unhealthy.
	if rep.Status != Degraded {
		t.Errorf("status %s, want degraded", rep.Status)
	}
}

// TestIndependentChecksRunInParallel: each check blocks until the test releases it, so all
// four can have started only if they run at the same time; run one after another, the first
// would wait for ever (until its timeout, which fails it).
func TestIndependentChecksRunInParallel(t *testing.T) {
	r := NewRegistry(zerolog.Nop())
	started, release := make(chan string, 4), make(chan struct{})
	for i := range 4 {
		name := fmt.Sprint("c", i)
		mustRegister(t, r, Check{Name: name, Level: Low, Timeout: time.Minute, Run: func(ctx context.Context) error {
			started <- name
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Report, 1)
	go func() { done <- r.RunOnce(ctx) }()
	running := map[string]bool{}
	for len(running) < 4 {
		select {
		case name := <-started:
			running[name] = true
		case rep := <-done:
			t.Fatalf("RunOnce returned with only %v started: %+v", running, rep.Checks)
		case <-time.After(30 * time.Second):
			t.Fatalf("after 30s only %v of 4 independent checks are running at once", running)
		}
	}
	close(release)
	for _, c := range (<-done).Checks {
		if c.Status != StatusPass {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
}

func TestRegisterRejects(t *testing.T) {
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r,
		Check{Name: "A", DependsOn: []string{"B"}, Run: pass},
		Check{Name: "B", DependsOn: []string{"C"}, Run: pass},
	)
	tests := []struct {
		c   Check
		msg string
	}{
		{Check{Name: "C", DependsOn: []string{"A"}, Run: pass}, "cycle: [C A B C]"},
		{Check{Name: "D", DependsOn: []string{"D"}, Run: pass}, "depends on itself"},
		{Check{Name: "A", Run: pass}, "already registered"},
		{Check{Run: pass}, "no name"},
		{Check{Name: "E"}, "no Run"},
		{Check{Name: "E", Level: Level(9), Run: pass}, "invalid level"},
		{Check{Name: "E", Retries: -1, Run: pass}, "negative retries"},
	}
	for _, tc := range tests {
		err := r.Register(tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Register(%+v) = %v, want %q", tc.c.Name, err, tc.msg)
		}
	}
	// C without the cycle is fine, and A, B, C then run in order.
	mustRegister(t, r, Check{Name: "C", Run: pass})
	if rep := r.RunOnce(context.Background()); rep.Status != Healthy || result(t, rep, "A").Status != StatusPass {
		t.Fatalf("report %+v", rep)
	}
}

func TestAggregate(t *testing.T) {
	res := func(l Level, s Status) CheckResult { return CheckResult{Level: l, Status: s} }
	tests := []struct {
		name string
		in   []CheckResult
		want Health
	}{
		{"empty", nil, Healthy},
		{"all pass", []CheckResult{res(Critical, StatusPass), res(Low, StatusPass)}, Healthy},
		{"not yet run", []CheckResult{res(Critical, StatusUnknown)}, Healthy},
		{"low fails", []CheckResult{res(Critical, StatusPass), res(Low, StatusFail)}, Degraded},
		{"high skipped", []CheckResult{res(High, StatusSkipped)}, Degraded},
		{"critical fails", []CheckResult{res(Low, StatusFail), res(Critical, StatusFail)}, Unhealthy},
		{"critical skipped", []CheckResult{res(Critical, StatusSkipped), res(Medium, StatusPass)}, Unhealthy},
	}
	for _, tc := range tests {
		if got := Aggregate(tc.in); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestReadiness(t *testing.T) {
	var critDown, lowDown atomic.Bool
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r,
		Check{Name: "db", Level: Critical, Run: func(context.Context) error {
			if critDown.Load() {
				return errors.New("down")
			}
			return nil
		}},
		Check{Name: "cache", Level: Low, Run: func(context.Context) error {
			if lowDown.Load() {
				return errors.New("down")
			}
			return nil
		}},
	)
	if ok, _ := r.Ready(); ok {
		t.Fatal("ready before any check ran and before MarkReady")
	}
	r.RunOnce(context.Background())
	if ok, rep := r.Ready(); ok || rep.Status != Healthy {
		t.Fatalf("ready=%v before MarkReady (status %s)", ok, rep.Status)
	}
	r.MarkReady()
	if ok, _ := r.Ready(); !ok {
		t.Fatal("not ready after MarkReady with every check passing")
	}
	lowDown.Store(true)
	r.RunOnce(context.Background())
	if ok, rep := r.Ready(); !ok || rep.Status != Degraded {
		t.Fatalf("low check failing: ready=%v status=%s, want ready and degraded", ok, rep.Status)
	}
	critDown.Store(true)
	r.RunOnce(context.Background())
	if ok, rep := r.Ready(); ok || rep.Status != Unhealthy {
		t.Fatalf("critical check failing: ready=%v status=%s", ok, rep.Status)
	}
	if l := r.Liveness(); l.Status != "alive" || l.UptimeSeconds <= 0 {
		t.Fatalf("liveness %+v while unhealthy; liveness must not follow the checks", l)
	}
	critDown.Store(false)
	r.RunOnce(context.Background())
	r.MarkNotReady()
	if ok, _ := r.Ready(); ok {
		t.Fatal("ready after MarkNotReady")
	}
}

func TestReportJSON(t *testing.T) {
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r,
		Check{Name: "db", Level: Critical, Run: func(context.Context) error { return errors.New("refused") }},
		Check{Name: "vec", Level: Medium, DependsOn: []string{"db"}, Run: pass},
	)
	b, err := json.Marshal(r.RunOnce(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Status string `json:"status"`
		Ready  *bool  `json:"ready"`
		Checks []map[string]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != "unhealthy" || got.Ready == nil || *got.Ready || len(got.Checks) != 2 {
		t.Fatalf("report %s", b)
	}
	db, vec := got.Checks[0], got.Checks[1]
	if db["name"] != "db" || db["level"] != "critical" || db["status"] != "fail" || db["last_error"] != "refused" ||
		db["consecutive_failures"] != 1.0 || db["latency_ms"] == nil || db["last_checked"] == nil {
		t.Errorf("db %v", db)
	}
	if _, has := db["last_success"]; has {
		t.Errorf("db never passed but has last_success: %v", db)
	}
	if vec["status"] != "skipped" || vec["level"] != "medium" || fmt.Sprint(vec["depends_on"]) != "[db]" {
		t.Errorf("vec %v", vec)
	}
	var l Level
	if err := json.Unmarshal([]byte(`"HIGH"`), &l); err != nil || l != High {
		t.Errorf("unmarshal level: %v %v", l, err)
	}
}

func TestBackgroundRunsAndDependencyKick(t *testing.T) {
	var upDown atomic.Bool
	var cRuns atomic.Int32
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r,
		Check{Name: "B", Level: High, Interval: 10 * time.Millisecond, Run: func(context.Context) error {
			if upDown.Load() {
				return errors.New("down")
			}
			return nil
		}},
		// C's interval is an hour: only B's transitions can make it run again.
		Check{Name: "C", Level: Low, Interval: time.Hour, DependsOn: []string{"B"}, Run: func(context.Context) error {
			cRuns.Add(1)
			return nil
		}},
	)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if err := r.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	eventually(t, "the first pass", func() bool { return result(t, r.Report(), "C").Status == StatusPass })
	upDown.Store(true)
	eventually(t, "B to fail and C to be skipped", func() bool {
		rep := r.Report()
		return result(t, rep, "B").Status == StatusFail && result(t, rep, "C").Status == StatusSkipped
	})
	upDown.Store(false)
	eventually(t, "C to run again after B recovered", func() bool { return result(t, r.Report(), "C").Status == StatusPass })
	if n := cRuns.Load(); n != 2 {
		t.Errorf("C ran %d times, want 2 (start-up and after B recovered)", n)
	}

	// A check registered while running runs at once.
	mustRegister(t, r, Check{Name: "late", Level: Low, Interval: time.Hour, Run: pass})
	eventually(t, "the late check", func() bool { return result(t, r.Report(), "late").Status == StatusPass })
	if err := r.Register(Check{Name: "orphan", DependsOn: []string{"nope"}, Run: pass}); err == nil {
		t.Error("registered a check with a missing dependency while running")
	}
}

func TestStartRejectsMissingDependency(t *testing.T) {
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r, Check{Name: "A", DependsOn: []string{"missing"}, Run: pass})
	if err := r.Start(context.Background()); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("Start = %v", err)
	}
	// RunOnce still reports the problem instead of hanging.
	if c := result(t, r.RunOnce(context.Background()), "A"); c.Status != StatusSkipped || !strings.Contains(c.LastError, "not registered") {
		t.Fatalf("A %+v", c)
	}
}

func TestPanickingCheckFails(t *testing.T) {
	r := NewRegistry(zerolog.Nop())
	mustRegister(t, r, Check{Name: "p", Run: func(context.Context) error { panic("boom") }})
	if c := result(t, r.RunOnce(context.Background()), "p"); c.Status != StatusFail || c.LastError != "panic: boom" {
		t.Fatalf("%+v", c)
	}
}

// TestConcurrentUse exercises the registry from many goroutines; run with -race.
func TestConcurrentUse(t *testing.T) {
	r := NewRegistry(zerolog.New(&testenv.Buffer{}))
	var flip atomic.Int32
	for i := range 6 {
		deps := []string(nil)
		if i > 0 {
			deps = []string{fmt.Sprint("c", i-1)}
		}
		mustRegister(t, r, Check{Name: fmt.Sprint("c", i), Level: Level(i % 4), Interval: time.Millisecond, DependsOn: deps,
			Timeout: 20 * time.Millisecond, Retries: 1, Backoff: time.Millisecond, Run: func(ctx context.Context) error {
				if flip.Add(1)%3 == 0 {
					return errors.New("flap")
				}
				return nil
			}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 8 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				switch (i + n) % 6 {
				case 0:
					r.Ready()
				case 1:
					json.Marshal(r.Report())
				case 2:
					r.MarkReady()
				case 3:
					testutil.CollectAndCount(r)
				case 4:
					r.RunOnce(ctx)
				case 5:
					r.Register(Check{Name: fmt.Sprint("extra", i, "-", n), Level: Low, Interval: time.Millisecond, Run: pass})
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	done := make(chan struct{})
	go func() { r.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return")
	}
	if rep := r.Report(); len(rep.Checks) < 6 {
		t.Fatalf("%d checks in the report", len(rep.Checks))
	}
}
