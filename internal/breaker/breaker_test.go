package breaker

import (
	"testing"
	"time"

	"github.com/hxp-ai/hxp/limits/limitstest"
)

func TestLifecycle(t *testing.T) {
	clk := limitstest.NewClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	b := New(Config{FailureThreshold: 3, OpenFor: 10 * time.Second, HalfOpenProbes: 2}, clk.Now)
	step := func(what string, want State) {
		t.Helper()
		if got := b.State(); got != want {
			t.Fatalf("%s: state %s, want %s", what, got, want)
		}
	}
	// Failures below the threshold, interrupted by a success, keep it closed.
	for _, ok := range []bool{false, false, true, false, false} {
		if !b.Allow() {
			t.Fatal("closed breaker refused")
		}
		if ok {
			b.Success()
		} else {
			b.Failure()
		}
	}
	step("two failures after a success", Closed)
	b.Allow()
	b.Failure()
	step("third consecutive failure", Open)
	if b.Allow() || b.Available() {
		t.Fatal("open breaker admitted a request")
	}
	if got := b.RetryIn(); got != 10*time.Second {
		t.Fatalf("RetryIn = %s", got)
	}
	clk.Add(4 * time.Second)
	if got := b.RetryIn(); got != 6*time.Second {
		t.Fatalf("RetryIn after 4s = %s", got)
	}
	clk.Add(6 * time.Second)
	step("after open_for", HalfOpen)
	if b.RetryIn() != 0 {
		t.Fatal("RetryIn of a half-open breaker is not 0")
	}
	// Two probes at a time; a third waits.
	if !b.Allow() || !b.Allow() || b.Allow() || b.Available() {
		t.Fatal("half-open breaker did not admit exactly two probes")
	}
	b.Success()
	step("one probe succeeded of two", HalfOpen)
	b.Failure()
	step("a probe failed", Open)
	clk.Add(10 * time.Second)
	b.Allow()
	b.Release() // busy upstream: neither success nor failure
	step("released probe", HalfOpen)
	b.Allow()
	b.Allow()
	b.Success()
	b.Success()
	step("two probes succeeded", Closed)
	if b.Opens() != 2 {
		t.Fatalf("opens = %d", b.Opens())
	}
}

func TestReleaseFreesAProbeSlotWithoutMovingTheBreaker(t *testing.T) {
	clk := limitstest.NewClock(time.Unix(0, 0))
	b := New(Config{FailureThreshold: 1, OpenFor: time.Second}, clk.Now)
	b.Allow()
	b.Failure()
	clk.Add(time.Second)
	if !b.Allow() || b.Allow() {
		t.Fatal("half-open breaker did not admit exactly one probe")
	}
	b.Release()
	if b.State() != HalfOpen || !b.Allow() {
		t.Fatal("a released probe slot was not freed")
	}
	// Release while closed does not reset the failure count.
	b.Success()
	c := New(Config{FailureThreshold: 2}, clk.Now)
	c.Allow()
	c.Failure()
	c.Allow()
	c.Release()
	c.Allow()
	c.Failure()
	if c.State() != Open {
		t.Fatalf("two failures around a release: %s, want open", c.State())
	}
}

func TestDefaults(t *testing.T) {
	clk := limitstest.NewClock(time.Unix(0, 0))
	b := New(Config{}, clk.Now)
	for i := 0; i < 4; i++ {
		b.Allow()
		b.Failure()
	}
	if b.State() != Closed {
		t.Fatal("opened before the default threshold of 5")
	}
	b.Allow()
	b.Failure()
	if b.State() != Open || b.RetryIn() != 10*time.Second {
		t.Fatalf("after 5 failures: %s, retry in %s; want open for the default 10s", b.State(), b.RetryIn())
	}
	if New(Config{}, nil).now == nil {
		t.Fatal("nil clock not defaulted")
	}
	if State(9).String() != "unknown" {
		t.Fatal("unknown state name")
	}
}
