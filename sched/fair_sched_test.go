package sched_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// fairGate drives a scheduler one decode step at a time: its hook waits for a tick.
type fairGate chan struct{}

func (g fairGate) hook() { <-g }

// tick lets one step run; it returns once the loop is at the step's hook, after every
// event of the steps before was sent.
func (g fairGate) tick(t *testing.T) {
	t.Helper()
	select {
	case g <- struct{}{}:
	case <-time.After(30 * time.Second):
		t.Fatal("the scheduler did not come back for its next step within 30s")
	}
}

// gatedSched is a scheduler stepped by a fairGate; the gate opens before it closes.
func gatedSched(t *testing.T, cfg sched.Config) (*sched.Scheduler, fairGate) {
	g := make(fairGate)
	cfg.StepHook = g.hook
	s := newSched(t, cfg)
	t.Cleanup(func() { close(g) }) // runs before Close, registered earlier
	return s, g
}

// submitted is one request of a test and its stream.
type submitted struct {
	tenant string
	ch     <-chan sched.Event
}

// startOrder steps the scheduler until every stream has produced its first event and
// returns their tenants in the order they started. With one slot that is the order
// in which they were admitted.
func startOrder(t *testing.T, g fairGate, reqs []submitted) string {
	t.Helper()
	started := make([]bool, len(reqs))
	var order []string
	for steps := 0; len(order) < len(reqs); steps++ {
		if steps > 2000 {
			t.Fatalf("after %d steps only %v started", steps, order)
		}
		g.tick(t)
		for i, r := range reqs {
			if started[i] {
				continue
			}
			select {
			case ev := <-r.ch:
				if ev.Err != nil {
					t.Fatalf("request of %s: %v", r.tenant, ev.Err)
				}
				started[i] = true
				order = append(order, r.tenant)
			default:
			}
		}
	}
	return strings.Join(order, "")
}

// floodThenTrickle submits, on a one-slot scheduler, a request of tenant A that runs,
// then five more of A and two of B while it runs, and returns the order they start in.
func floodThenTrickle(t *testing.T, f sched.Fairness, bWeight float64, bPriority sched.Priority) string {
	s, g := gatedSched(t, sched.Config{Context: engine.ContextParams{Sequences: 1}, QueueSize: 16, Fairness: f})
	p := prompt(t, "hello")
	submit := func(tenant string, w float64, pr sched.Priority) submitted {
		ch, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 4, IgnoreEOS: true,
			Tenant: tenant, Weight: w, Priority: pr})
		if err != nil {
			t.Fatalf("submit for %s: %v", tenant, err)
		}
		return submitted{tenant, ch}
	}
	reqs := []submitted{submit("a", 1, sched.Interactive)}
	g.tick(t) // a's first request holds the slot
	for range 5 {
		reqs = append(reqs, submit("a", 1, sched.Interactive))
	}
	for range 2 {
		reqs = append(reqs, submit("b", bWeight, bPriority))
	}
	return startOrder(t, g, reqs)
}

// TestFairShareBetweenTenants: a tenant that queued five requests does not make
// another tenant's two wait behind them; with fairness off they do.
func TestFairShareBetweenTenants(t *testing.T) {
	if got := floodThenTrickle(t, sched.Fairness{}, 1, sched.Interactive); got != "ababaaaa" {
		t.Errorf("fair: requests started in the order %q, want ababaaaa", got)
	}
	if got := floodThenTrickle(t, sched.Fairness{FCFS: true}, 1, sched.Interactive); got != "aaaaaabb" {
		t.Errorf("fcfs: requests started in the order %q, want aaaaaabb", got)
	}
}

// TestBatchPriority: batch requests wait while interactive ones do, unless they have
// aged; an aged batch tenant shares by its counter like any other.
func TestBatchPriority(t *testing.T) {
	// a's queued requests are interactive, b's batch: b runs last although its
	// counter is the least.
	if got := floodThenTrickle(t, sched.Fairness{BatchAging: time.Hour}, 1, sched.Batch); got != "aaaaaabb" {
		t.Errorf("batch behind interactive: started %q, want aaaaaabb", got)
	}
	// Aged at once: b competes as an interactive tenant.
	if got := floodThenTrickle(t, sched.Fairness{BatchAging: time.Nanosecond}, 1, sched.Batch); got != "ababaaaa" {
		t.Errorf("aged batch: started %q, want ababaaaa", got)
	}
}

// TestWeightedShare: two tenants queue requests of the same cost while a third holds
// the only slot; the one with weight 3 then gets three of every four slots.
func TestWeightedShare(t *testing.T) {
	s, g := gatedSched(t, sched.Config{Context: engine.ContextParams{Sequences: 1}, QueueSize: 64})
	p := prompt(t, "hello")
	submit := func(tenant string, w float64) submitted {
		ch, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 4, IgnoreEOS: true, Tenant: tenant, Weight: w})
		if err != nil {
			t.Fatal(err)
		}
		return submitted{tenant, ch}
	}
	reqs := []submitted{submit("z", 1)}
	g.tick(t) // z holds the slot while a and b queue
	for range 8 {
		reqs = append(reqs, submit("a", 1), submit("b", 3))
	}
	order := startOrder(t, g, reqs)
	if first := order[1:9]; strings.Count(first, "b") != 6 {
		t.Errorf("weights 1:3: requests started in the order %q; b got %d of the first 8 slots, want 6", order, strings.Count(first, "b"))
	}
}

// TestTenantQueueBound: a tenant over its share of the queue is refused with
// ErrTenantOverloaded while others are still queued; the total bound stays.
func TestTenantQueueBound(t *testing.T) {
	s, g := gatedSched(t, sched.Config{Context: engine.ContextParams{Sequences: 1}, QueueSize: 4,
		Fairness: sched.Fairness{TenantQueueShare: 0.5}})
	p := prompt(t, "hi")
	submit := func(tenant string) error {
		_, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 1, Tenant: tenant})
		return err
	}
	// a's first request holds the slot: the gate lets its prompt step through, then
	// the loop waits at the next step's hook, admitting nothing while the slot is busy.
	if _, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 50, IgnoreEOS: true, Tenant: "a"}); err != nil {
		t.Fatal(err)
	}
	g.tick(t) // a's first request runs; the queue is empty
	for i := range 2 {
		if err := submit("a"); err != nil {
			t.Fatalf("a's queued request %d within its share: %v", i, err)
		}
	}
	err := submit("a")
	if !errors.Is(err, sched.ErrTenantOverloaded) || !errors.Is(err, sched.ErrOverloaded) {
		t.Fatalf("a over its share: %v, want ErrTenantOverloaded (wrapping ErrOverloaded)", err)
	}
	if !strings.Contains(err.Error(), "tenant queue full") {
		t.Errorf("message %q does not say the tenant's queue is full", err)
	}
	for i := range 2 {
		if err := submit("b"); err != nil {
			t.Fatalf("b's request %d while a is at its share: %v", i, err)
		}
	}
	if err := submit("c"); !errors.Is(err, sched.ErrOverloaded) || errors.Is(err, sched.ErrTenantOverloaded) {
		t.Fatalf("total bound: %v, want ErrOverloaded", err)
	}
	if st := s.Stats(); st.Queued != 4 {
		t.Errorf("queued %d, want 4", st.Queued)
	}
}

// TestSlotCap: with max_slots_share 0.5 of 4 slots one tenant's long generations hold
// two slots; its other requests wait and another tenant is served at once.
func TestSlotCap(t *testing.T) {
	slow := func() { time.Sleep(time.Millisecond) }
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 4, SeqCtx: 256},
		Fairness: sched.Fairness{MaxSlotsShare: 0.5}, StepHook: slow})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var long []<-chan sched.Event
	for i := range 4 {
		ch, err := s.Submit(ctx, sched.Request{Prompt: prompt(t, fmt.Sprintf("long %d", i)), MaxTokens: 200, IgnoreEOS: true, Tenant: "a"})
		if err != nil {
			t.Fatal(err)
		}
		long = append(long, ch)
	}
	<-long[0]
	<-long[1] // a's first two run
	b := run(t, s, sched.Request{Prompt: prompt(t, "short"), MaxTokens: 3, IgnoreEOS: true, Tenant: "b"})
	if b.final.Err != nil || len(b.tokens) != 3 {
		t.Fatalf("b beside a's capped generations: %+v", b.final)
	}
	// a's last two cannot start before one of its first two ends, 190 tokens later.
	for i, ch := range long[2:] {
		if n := len(ch); n != 0 {
			t.Errorf("a's request %d started (%d events) while a held its 2 slots", i+2, n)
		}
	}
	if st := s.Stats(); st.Queued != 2 || st.Backlogged != 1 {
		t.Errorf("stats with a capped: queued %d, backlogged tenants %d; want 2, 1", st.Queued, st.Backlogged)
	}
	cancel()
	for _, ch := range long {
		collect(t, ch)
	}
}

func TestTenantValidation(t *testing.T) {
	s := newSched(t, sched.Config{})
	p := prompt(t, "hi")
	for _, r := range []sched.Request{{Prompt: p, Weight: -1}, {Prompt: p, Weight: sched.MaxWeight + 1}, {Prompt: p, Priority: 7}} {
		if _, err := s.Submit(context.Background(), r); !errors.Is(err, sched.ErrInvalidRequest) {
			t.Errorf("weight %v priority %v: %v", r.Weight, r.Priority, err)
		}
	}
	if _, err := sched.New(sched.Config{Name: "bad", Model: tiny(t), Context: engine.ContextParams{SeqCtx: 64, Sequences: 1, Batch: 8},
		Fairness: sched.Fairness{MaxSlotsShare: 2}}); !errors.Is(err, sched.ErrInvalidRequest) || !strings.Contains(err.Error(), "max_slots_share") {
		t.Errorf("max_slots_share 2: %v", err)
	}
	for in, want := range map[string]sched.Priority{"": sched.Interactive, "interactive": sched.Interactive, "batch": sched.Batch} {
		if got, err := sched.ParsePriority(in); err != nil || got != want {
			t.Errorf("ParsePriority(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := sched.ParsePriority("urgent"); !errors.Is(err, sched.ErrInvalidRequest) {
		t.Errorf("ParsePriority(urgent): %v", err)
	}
}
