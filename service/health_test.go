package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/health"
	"github.com/hxp-ai/hxp/sched"
)

func TestStallThreshold(t *testing.T) {
	cfg := tinyConfig(t, "m")
	for _, tc := range []struct {
		name          string
		ttftMS, itlMS int
		override      time.Duration
		want          time.Duration
	}{
		{name: "floor", ttftMS: 2000, want: MinStallThreshold},              // ITL 200ms -> 2s < 5s
		{name: "ten ITLs", ttftMS: 2000, itlMS: 900, want: 9 * time.Second}, // explicit ITL
		{name: "ITL from TTFT", ttftMS: 10000, want: 10 * time.Second},      // ITL 1s
		{name: "option", ttftMS: 2000, override: 300 * time.Millisecond, want: 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.TargetLatencyMS, c.TargetITLMS = tc.ttftMS, tc.itlMS
			s := New(c, zerolog.Nop(), Options{StallAfter: tc.override})
			if got := s.StallThreshold(); got != tc.want {
				t.Errorf("StallThreshold = %s, want %s", got, tc.want)
			}
		})
	}
}

// Decoding (the "model:<name>" check) fails before the load, passes while the model
// decodes, reports a loop held in its step hook as stalled once the threshold has
// passed, and recovers when the loop moves again.
func TestDecodingDetectsStall(t *testing.T) {
	var (
		mu    sync.Mutex
		gate  chan struct{} // non-nil: the next step waits for it
		stall = func() {
			mu.Lock()
			g := gate
			mu.Unlock()
			if g != nil {
				<-g
			}
		}
	)
	s := New(tinyConfig(t, "stally"), zerolog.Nop(), Options{StepHook: stall, StallAfter: 200 * time.Millisecond})
	check := s.HealthCheck()
	if check.Name != "model:stally" || check.Level != health.Critical {
		t.Fatalf("check %q level %s", check.Name, check.Level)
	}
	if err := check.Run(context.Background()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before load: %v", err)
	}
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := check.Run(context.Background()); err != nil {
		t.Fatalf("idle model: %v", err)
	}

	toks, err := s.Tokenize("hello", true, false)
	if err != nil {
		t.Fatal(err)
	}
	g := make(chan struct{})
	mu.Lock()
	gate = g
	mu.Unlock()
	ch, err := s.Submit(context.Background(), sched.Request{Prompt: toks, MaxTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the held loop to be reported stalled", func() bool { return errors.Is(check.Run(context.Background()), ErrStalled) })

	mu.Lock()
	gate = nil
	mu.Unlock()
	close(g)
	if _, last := collect(ch); last.Err != nil {
		t.Fatal(last.Err)
	}
	if err := check.Run(context.Background()); err != nil {
		t.Fatalf("after the loop moved again: %v", err)
	}
	s.Close()
	if err := check.Run(context.Background()); !errors.Is(err, sched.ErrClosed) {
		t.Fatalf("closed model: %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
