package health

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// hungGrace is how long an attempt that reached its timeout may take to return before it
// is treated as hung (its Run ignores the context).
const hungGrace = 50 * time.Millisecond

// ErrHung is the error of an attempt skipped because an earlier attempt of the same check
// is still running past its timeout.
var ErrHung = errors.New("previous attempt is still running past its timeout (the check ignores its context)")

// entry is a registered check and its cached result.
type entry struct {
	check Check
	runMu sync.Mutex    // one run of a check at a time
	kick  chan struct{} // asks the background loop to run now (a dependency changed)
	gone  chan struct{} // closed by Unregister: the background loop ends
	hung  atomic.Int32  // attempts abandoned at their timeout that have not returned yet

	res CheckResult // guarded by Registry.mu
}

// Registry holds the checks, runs them and caches their results. Create it with
// NewRegistry; it is safe for concurrent use. It is also a prometheus.Collector exporting
// hxp_health_check_status{check,level}, hxp_health_check_duration_seconds{check} and
// hxp_health_transitions_total{check,to}.
type Registry struct {
	log   zerolog.Logger
	start time.Time
	ready atomic.Bool

	mu      sync.RWMutex
	entries map[string]*entry

	live atomic.Bool // background loops are running; dependents are kicked only then

	lifeMu  sync.Mutex // guards the fields below
	running bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	statusGauge *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	transitions *prometheus.CounterVec
}

// NewRegistry returns an empty registry that logs status transitions to log (the zero
// Logger discards them).
func NewRegistry(log zerolog.Logger) *Registry {
	return &Registry{
		log:     log,
		start:   time.Now(),
		entries: map[string]*entry{},
		statusGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hxp_health_check_status",
			Help: "1 when the health check passed at its latest run, 0 when it failed or was skipped.",
		}, []string{"check", "level"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hxp_health_check_duration_seconds",
			Help:    "Duration of health check attempts, in seconds.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"check"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hxp_health_transitions_total",
			Help: "Health check status changes, by the status changed to.",
		}, []string{"check", "to"}),
	}
}

// Register adds a check. It fails for an invalid or duplicate check and for a dependency
// cycle. Dependencies may be registered later, except once Start has run, when they must
// already exist. A check registered after Start runs at once and then on its interval.
func (r *Registry) Register(c Check) error {
	if err := c.validate(); err != nil {
		return err
	}
	c = c.withDefaults()
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	r.mu.Lock()
	if _, dup := r.entries[c.Name]; dup {
		r.mu.Unlock()
		return fmt.Errorf("health: check %q is already registered", c.Name)
	}
	if r.running {
		for _, d := range c.DependsOn {
			if _, ok := r.entries[d]; !ok {
				r.mu.Unlock()
				return fmt.Errorf("health: check %q depends on unregistered check %q", c.Name, d)
			}
		}
	}
	if path := r.cycleLocked(c); path != nil {
		r.mu.Unlock()
		return fmt.Errorf("health: check %q would close a dependency cycle: %v", c.Name, path)
	}
	e := &entry{check: c, kick: make(chan struct{}, 1), gone: make(chan struct{}),
		res: CheckResult{Name: c.Name, Level: c.Level, Status: StatusUnknown, DependsOn: c.DependsOn}}
	r.entries[c.Name] = e
	r.mu.Unlock()
	if r.running {
		r.startLoop(e)
		e.kick <- struct{}{}
	}
	return nil
}

// Unregister removes a check (a model that was unloaded): its background runs end,
// its result leaves the reports and its metrics series go. It fails for an unknown
// check and for one that others depend on.
func (r *Registry) Unregister(name string) error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	r.mu.Lock()
	e := r.entries[name]
	if e == nil {
		r.mu.Unlock()
		return fmt.Errorf("health: check %q is not registered", name)
	}
	for _, o := range r.entries {
		if slices.Contains(o.check.DependsOn, name) {
			r.mu.Unlock()
			return fmt.Errorf("health: check %q is a dependency of %q", name, o.check.Name)
		}
	}
	delete(r.entries, name)
	r.mu.Unlock()
	close(e.gone)
	r.statusGauge.DeleteLabelValues(name, e.check.Level.String())
	r.duration.DeleteLabelValues(name)
	return nil
}

// cycleLocked returns a dependency path from c back to c through registered checks, or nil.
// Existing checks form no cycle, so any new one passes through c.
func (r *Registry) cycleLocked(c Check) []string {
	visited := map[string]bool{}
	var walk func(name string, path []string) []string
	walk = func(name string, path []string) []string {
		if name == c.Name {
			return append(path, name)
		}
		if visited[name] {
			return nil
		}
		visited[name] = true
		e, ok := r.entries[name]
		if !ok {
			return nil
		}
		for _, d := range e.check.DependsOn {
			if p := walk(d, append(path, name)); p != nil {
				return p
			}
		}
		return nil
	}
	for _, d := range c.DependsOn {
		if p := walk(d, []string{c.Name}); p != nil {
			return p
		}
	}
	return nil
}

// RunOnce runs every check now, each after its dependencies and independent checks in
// parallel, and returns the resulting report. Cancelling ctx cuts the runs short.
func (r *Registry) RunOnce(ctx context.Context) Report {
	r.mu.RLock()
	entries := make(map[string]*entry, len(r.entries))
	for n, e := range r.entries {
		entries[n] = e
	}
	r.mu.RUnlock()

	done := make(map[string]chan struct{}, len(entries))
	for n := range entries {
		done[n] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for n, e := range entries {
		wg.Go(func() {
			defer close(done[n])
			for _, d := range e.check.DependsOn {
				if ch, ok := done[d]; ok {
					<-ch
				}
			}
			r.runEntry(ctx, e)
		})
	}
	wg.Wait()
	return r.Report()
}

// Start runs every check once (in dependency order) and then each on its own interval, in
// the background, until Stop or until ctx is cancelled. A check also runs as soon as one of
// its dependencies changes status. Start fails when a dependency is not registered or the
// registry is already running.
func (r *Registry) Start(ctx context.Context) error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.running {
		return errors.New("health: registry already started")
	}
	r.mu.RLock()
	for _, e := range r.entries {
		for _, d := range e.check.DependsOn {
			if _, ok := r.entries[d]; !ok {
				r.mu.RUnlock()
				return fmt.Errorf("health: check %q depends on unregistered check %q", e.check.Name, d)
			}
		}
	}
	entries := r.sortedEntriesLocked()
	r.mu.RUnlock()

	r.ctx, r.cancel = context.WithCancel(ctx)
	r.running = true
	runCtx := r.ctx
	r.wg.Go(func() {
		r.RunOnce(runCtx)
		r.lifeMu.Lock()
		defer r.lifeMu.Unlock()
		if runCtx.Err() != nil {
			return
		}
		// The first pass ran dependents after their dependencies, so only transitions from
		// now on need to kick dependents.
		r.live.Store(true)
		for _, e := range entries {
			r.startLoop(e)
		}
	})
	return nil
}

// startLoop runs e on its interval and on kicks. Called with lifeMu held while running.
func (r *Registry) startLoop(e *entry) {
	ctx := r.ctx
	r.wg.Go(func() {
		t := time.NewTicker(e.check.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-e.gone:
				return
			case <-t.C:
			case <-e.kick:
			}
			r.runEntry(ctx, e)
		}
	})
}

// Stop ends the background runs and waits for them (but not for hung checks).
func (r *Registry) Stop() {
	r.lifeMu.Lock()
	if !r.running {
		r.lifeMu.Unlock()
		return
	}
	r.cancel()
	r.running = false
	r.live.Store(false)
	r.lifeMu.Unlock()
	r.wg.Wait()
}

// runEntry runs one check (all its attempts) unless a dependency is not passing, then
// records the result.
func (r *Registry) runEntry(ctx context.Context, e *entry) {
	e.runMu.Lock()
	defer e.runMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if why := r.blockedBy(e); why != "" {
		r.record(e, StatusSkipped, why, 0, 0)
		return
	}
	c := e.check
	var err error
	var latency time.Duration
	attempts := 0
	for i := 0; i <= c.Retries; i++ {
		if i > 0 {
			if !sleepCtx(ctx, c.Backoff<<(i-1)) {
				break
			}
		}
		attempts++
		start := time.Now()
		err = r.attempt(ctx, e)
		latency = time.Since(start)
		r.duration.WithLabelValues(c.Name).Observe(latency.Seconds())
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil && ctx.Err() != nil {
		return // shutting down: keep the last real result
	}
	if err != nil {
		r.record(e, StatusFail, err.Error(), latency, attempts)
		return
	}
	r.record(e, StatusPass, "", latency, attempts)
}

// blockedBy names the first dependency that is not passing, or "".
func (r *Registry) blockedBy(e *entry) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, d := range e.check.DependsOn {
		de, ok := r.entries[d]
		switch {
		case !ok:
			return fmt.Sprintf("dependency %q is not registered", d)
		case de.res.Status != StatusPass:
			return fmt.Sprintf("dependency %q is %s", d, de.res.Status)
		}
	}
	return ""
}

// attempt runs the check once under its timeout. A Run that outlives its timeout by more
// than hungGrace is abandoned; until it returns, further attempts fail with ErrHung rather
// than pile up goroutines.
func (r *Registry) attempt(ctx context.Context, e *entry) error {
	if e.hung.Load() > 0 {
		return ErrHung
	}
	actx, cancel := context.WithTimeout(ctx, e.check.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- safeRun(actx, e.check.Run) }()
	timedOut := func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("timed out after %s", e.check.Timeout)
	}
	select {
	case err := <-done:
		if err != nil && actx.Err() != nil {
			return timedOut()
		}
		return err
	case <-actx.Done():
	}
	select {
	case <-done:
		return timedOut()
	case <-time.After(hungGrace):
	}
	e.hung.Add(1)
	go func() {
		<-done
		e.hung.Add(-1)
	}()
	return timedOut()
}

func safeRun(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return run(ctx)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// record stores a result, updates the metrics, and logs and propagates a status change.
func (r *Registry) record(e *entry, st Status, msg string, latency time.Duration, attempts int) {
	now := time.Now()
	r.mu.Lock()
	if r.entries[e.check.Name] != e {
		r.mu.Unlock()
		return // unregistered while it ran
	}
	res := &e.res
	from := res.Status
	res.Status, res.LastError, res.Latency, res.Attempts, res.LastChecked = st, msg, latency, attempts, now
	res.LatencyMS = float64(latency.Microseconds()) / 1000
	switch st {
	case StatusPass:
		res.LastSuccess = now
		res.ConsecutiveFailures = 0
	case StatusFail:
		res.ConsecutiveFailures++
	}
	failures := res.ConsecutiveFailures
	var dependents []*entry
	if from != st && r.live.Load() {
		for _, o := range r.entries {
			if slices.Contains(o.check.DependsOn, e.check.Name) {
				dependents = append(dependents, o)
			}
		}
	}
	r.mu.Unlock()

	up := 0.0
	if st == StatusPass {
		up = 1
	}
	r.statusGauge.WithLabelValues(e.check.Name, e.check.Level.String()).Set(up)
	if from == st {
		return
	}
	r.transitions.WithLabelValues(e.check.Name, string(st)).Inc()
	ev := r.log.Info()
	switch {
	case st == StatusFail && e.check.Level == Critical:
		ev = r.log.Error()
	case st == StatusFail || st == StatusSkipped:
		ev = r.log.Warn()
	}
	// check_level, not level: zerolog writes the line's own level under "level".
	ev = ev.Str("check", e.check.Name).Str("check_level", e.check.Level.String()).Str("from", string(from)).Str("to", string(st))
	if msg != "" {
		ev = ev.Str("error", msg).Int("consecutive_failures", failures)
	}
	ev.Msg("health check status changed")
	for _, d := range dependents {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

func (r *Registry) sortedEntriesLocked() []*entry {
	out := make([]*entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *entry) int {
		switch {
		case a.check.Name < b.check.Name:
			return -1
		case a.check.Name > b.check.Name:
			return 1
		}
		return 0
	})
	return out
}

// Report returns the cached results; it never runs a check.
func (r *Registry) Report() Report {
	r.mu.RLock()
	rep := Report{Time: time.Now(), Checks: make([]CheckResult, 0, len(r.entries))}
	for _, e := range r.sortedEntriesLocked() {
		res := e.res
		res.DependsOn = slices.Clone(res.DependsOn)
		rep.Checks = append(rep.Checks, res)
	}
	r.mu.RUnlock()
	rep.Status = Aggregate(rep.Checks)
	rep.Ready = r.readyFor(rep.Checks)
	return rep
}

// readyFor is Ready's rule: MarkReady was called and every critical check has passed at
// its latest run.
func (r *Registry) readyFor(results []CheckResult) bool {
	if !r.ready.Load() {
		return false
	}
	for _, c := range results {
		if c.Level == Critical && c.Status != StatusPass {
			return false
		}
	}
	return true
}

// Ready reports whether the service should receive traffic: MarkReady has been called
// (the models are loaded) and every critical check passed at its latest run. The report
// says why not.
func (r *Registry) Ready() (bool, Report) {
	rep := r.Report()
	return rep.Ready, rep
}

// MarkReady declares that start-up is complete (models loaded).
func (r *Registry) MarkReady() { r.ready.Store(true) }

// MarkNotReady withdraws readiness, for example while draining before shutdown.
func (r *Registry) MarkNotReady() { r.ready.Store(false) }

// Liveness is the answer to a liveness probe.
type Liveness struct {
	// Status is always "alive": answering at all is the proof. Liveness deliberately
	// ignores the checks, because restarting HXP does not repair a database that is down.
	Status string `json:"status"`
	// StartedAt is when the registry was created (process start-up, in practice).
	StartedAt time.Time `json:"started_at"`
	// UptimeSeconds is the time since StartedAt.
	UptimeSeconds float64 `json:"uptime_seconds"`
}

// Liveness answers a liveness probe without looking at any check.
func (r *Registry) Liveness() Liveness {
	return Liveness{Status: "alive", StartedAt: r.start, UptimeSeconds: time.Since(r.start).Seconds()}
}

// Describe sends the descriptions of the registry's metrics.
func (r *Registry) Describe(ch chan<- *prometheus.Desc) {
	r.statusGauge.Describe(ch)
	r.duration.Describe(ch)
	r.transitions.Describe(ch)
}

// Collect sends the registry's metrics.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	r.statusGauge.Collect(ch)
	r.duration.Collect(ch)
	r.transitions.Collect(ch)
}
