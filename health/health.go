// Package health runs HXP's health checks: connectors, model services and anything else
// that registers a Check. Checks have a level, a timeout, retries and dependencies; a
// Registry runs them in the background and caches their results, so HTTP handlers answer
// /health, /health/ready and /health/details from memory without waiting on a database.
//
// The package knows nothing about HTTP: the server calls Liveness, Ready and Report and
// writes their JSON.
package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Level is how much a failing check matters.
type Level int

// Levels, most severe first. Only a failing Critical check makes the service unhealthy and
// not ready; any other failing check makes it degraded.
const (
	Critical Level = iota
	High
	Medium
	Low
)

var levelNames = [...]string{"critical", "high", "medium", "low"}

// String returns "critical", "high", "medium" or "low".
func (l Level) String() string {
	if l < Critical || l > Low {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return levelNames[l]
}

// MarshalText writes the level's name, so JSON reports say "critical" rather than 0.
func (l Level) MarshalText() ([]byte, error) {
	if l < Critical || l > Low {
		return nil, fmt.Errorf("health: invalid level %d", int(l))
	}
	return []byte(l.String()), nil
}

// UnmarshalText parses a level name (see ParseLevel).
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLevel accepts "critical", "high", "medium" and "low", in any case.
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("health: unknown level %q (want critical, high, medium or low)", s)
}

// Status is the outcome of a check's latest run.
type Status string

// Check statuses.
const (
	// StatusUnknown: the check has not run yet.
	StatusUnknown Status = "unknown"
	// StatusPass: the latest run succeeded.
	StatusPass Status = "pass"
	// StatusFail: the latest run failed after all its attempts.
	StatusFail Status = "fail"
	// StatusSkipped: the check did not run because a dependency was not passing.
	StatusSkipped Status = "skipped"
)

// Health is the aggregate state of all checks.
type Health string

// Aggregate states.
const (
	// Healthy: no check is failing or skipped.
	Healthy Health = "healthy"
	// Degraded: a non-critical check is failing or skipped.
	Degraded Health = "degraded"
	// Unhealthy: a critical check is failing or skipped.
	Unhealthy Health = "unhealthy"
)

// Defaults for the zero fields of a Check.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultBackoff  = 100 * time.Millisecond
	DefaultInterval = 15 * time.Second
)

// Check is one health probe.
type Check struct {
	// Name identifies the check in reports, logs, metrics and DependsOn lists.
	Name string
	// Level is how much a failure matters.
	Level Level
	// Run performs the probe; nil means healthy. It must return soon after ctx is done;
	// a Run that ignores ctx is abandoned at its timeout and reported as failing until it
	// returns.
	Run func(ctx context.Context) error
	// Timeout bounds each attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// Retries is how many more attempts follow a failed one within a run.
	Retries int
	// Backoff is the pause before the first retry, doubled before each further one;
	// 0 means DefaultBackoff.
	Backoff time.Duration
	// Interval is how often the Registry runs the check in the background; 0 means
	// DefaultInterval.
	Interval time.Duration
	// DependsOn names checks that must pass before this one runs. When one of them is
	// failing or skipped this check is reported as skipped.
	DependsOn []string
}

func (c Check) withDefaults() Check {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	c.DependsOn = append([]string(nil), c.DependsOn...)
	return c
}

func (c Check) validate() error {
	switch {
	case c.Name == "":
		return errors.New("health: check has no name")
	case c.Run == nil:
		return fmt.Errorf("health: check %q has no Run function", c.Name)
	case c.Level < Critical || c.Level > Low:
		return fmt.Errorf("health: check %q: invalid level %d", c.Name, int(c.Level))
	case c.Retries < 0:
		return fmt.Errorf("health: check %q: negative retries %d", c.Name, c.Retries)
	}
	for _, d := range c.DependsOn {
		if d == c.Name {
			return fmt.Errorf("health: check %q depends on itself", c.Name)
		}
	}
	return nil
}

// CheckResult is the cached state of one check.
type CheckResult struct {
	// Name and Level repeat the check's.
	Name  string `json:"name"`
	Level Level  `json:"level"`
	// Status is the outcome of the latest run.
	Status Status `json:"status"`
	// Latency is the duration of the latest attempt.
	Latency time.Duration `json:"-"`
	// LatencyMS is Latency in milliseconds, for JSON.
	LatencyMS float64 `json:"latency_ms"`
	// Attempts is the number of attempts of the latest run.
	Attempts int `json:"attempts"`
	// LastError is the error of the latest failed or skipped run; empty after a pass.
	LastError string `json:"last_error,omitempty"`
	// LastChecked is when the latest run finished.
	LastChecked time.Time `json:"last_checked,omitzero"`
	// LastSuccess is when the check last passed.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// ConsecutiveFailures counts failed runs since the last pass (skips do not count).
	ConsecutiveFailures int `json:"consecutive_failures"`
	// DependsOn repeats the check's dependencies.
	DependsOn []string `json:"depends_on,omitempty"`
}

// Report is a snapshot of every check and the aggregate state.
type Report struct {
	// Status aggregates the checks: healthy, degraded or unhealthy.
	Status Health `json:"status"`
	// Ready is Registry.Ready's verdict at the time of the snapshot.
	Ready bool `json:"ready"`
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// Checks holds one result per check, sorted by name.
	Checks []CheckResult `json:"checks"`
}

// Check returns the result of the named check.
func (r Report) Check(name string) (CheckResult, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return CheckResult{}, false
}

// Aggregate derives the overall state: unhealthy when a critical check is failing or
// skipped (a skipped critical check is not known to work), degraded when any other check
// is, healthy otherwise. Checks that have not run yet do not count.
func Aggregate(results []CheckResult) Health {
	h := Healthy
	for _, r := range results {
		if r.Status != StatusFail && r.Status != StatusSkipped {
			continue
		}
		if r.Level == Critical {
			return Unhealthy
		}
		h = Degraded
	}
	return h
}
