package sched

import (
	"fmt"
	"math"
	"time"
)

// Priority is a request's scheduling class.
type Priority int8

// Priority classes.
const (
	// Interactive requests are admitted before any batch request (the default).
	Interactive Priority = iota
	// Batch requests run when no interactive request waits, or once they have waited
	// Fairness.BatchAging (see PickNext).
	Batch
)

// String returns the class's configuration name.
func (p Priority) String() string {
	switch p {
	case Interactive:
		return "interactive"
	case Batch:
		return "batch"
	}
	return fmt.Sprintf("priority(%d)", int(p))
}

// ParsePriority reads a configured class: "interactive" (or "") or "batch".
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "", "interactive":
		return Interactive, nil
	case "batch":
		return Batch, nil
	}
	return 0, fmt.Errorf("priority %q: %w (interactive or batch)", s, ErrInvalidRequest)
}

// Fairness configures how one model's slots are shared between tenants (see the
// package documentation). The zero value is the default fair policy.
type Fairness struct {
	// FCFS turns fairness off: one first-come-first-served queue, no per-tenant
	// bound, no classes, no slot cap (the policy before tenants; benchmarks compare).
	FCFS bool
	// InputCost and OutputCost weigh prompt and generated tokens in a tenant's
	// service counter. 0 means DefaultInputCost and DefaultOutputCost.
	InputCost, OutputCost float64
	// TenantQueueShare is the fraction of the queue one tenant may hold (0..1];
	// 0 means DefaultTenantQueueShare. Anonymous requests (Tenant "") are bounded by
	// the total only.
	TenantQueueShare float64
	// MaxSlotsShare caps the slots one tenant's requests may hold, as a fraction of
	// the model's slots (0..1], at least one slot; 0 means no cap.
	MaxSlotsShare float64
	// BatchAging is how long a batch request waits before it competes as an
	// interactive one; 0 means DefaultBatchAging.
	BatchAging time.Duration
	// NoPreempt turns preemption off: a running sequence then keeps its slot until it
	// ends, so fairness only decides who takes the slots that free up (see
	// PickVictim). FCFS never preempts.
	NoPreempt bool
	// PreemptSwapBytes bounds the host memory in which preempted sequences keep their
	// KV cache until they resume (swap.go); 0 means DefaultPreemptSwapBytes, a
	// negative value keeps none (a resumed sequence evaluates its tokens again).
	PreemptSwapBytes int64
}

// Fairness defaults. One generated token costs twice a prompt token, as in the VTC
// paper's evaluation (a decode step serves one token per sequence; prompts are
// evaluated many tokens per step).
const (
	DefaultInputCost        = 1.0
	DefaultOutputCost       = 2.0
	DefaultTenantQueueShare = 0.5
	DefaultBatchAging       = 30 * time.Second
	// MaxWeight bounds Request.Weight.
	MaxWeight = 1000.0
	// PreemptMinSteps is how many decode steps a sequence runs after its admission
	// (or resumption) before it may be preempted, so a slot changes hands at most
	// once per this many steps.
	PreemptMinSteps = 4
	// PreemptMaxTimes is how many times one request may be preempted; after that it
	// keeps its slot until it ends, so no request is redone without bound.
	PreemptMaxTimes = 3
	// DefaultPreemptSwapBytes is the default Fairness.PreemptSwapBytes: 1 GiB.
	DefaultPreemptSwapBytes = 1 << 30
)

// withDefaults validates f and fills its unset fields.
func (f Fairness) withDefaults() (Fairness, error) {
	check := func(name string, v, hi float64) error {
		if v < 0 || v > hi || math.IsNaN(v) {
			return fmt.Errorf("fairness.%s=%v: %w (0 for the default, or up to %v)", name, v, ErrInvalidRequest, hi)
		}
		return nil
	}
	for _, c := range []struct {
		name   string
		v, max float64
	}{{"input_cost", f.InputCost, 1e6}, {"output_cost", f.OutputCost, 1e6},
		{"tenant_queue_share", f.TenantQueueShare, 1}, {"max_slots_share", f.MaxSlotsShare, 1}} {
		if err := check(c.name, c.v, c.max); err != nil {
			return f, err
		}
	}
	if f.BatchAging < 0 {
		return f, fmt.Errorf("fairness.batch_aging=%s: %w (0 for the default, or a positive duration)", f.BatchAging, ErrInvalidRequest)
	}
	if f.InputCost == 0 {
		f.InputCost = DefaultInputCost
	}
	if f.OutputCost == 0 {
		f.OutputCost = DefaultOutputCost
	}
	if f.TenantQueueShare == 0 {
		f.TenantQueueShare = DefaultTenantQueueShare
	}
	if f.BatchAging == 0 {
		f.BatchAging = DefaultBatchAging
	}
	if f.PreemptSwapBytes == 0 {
		f.PreemptSwapBytes = DefaultPreemptSwapBytes
	}
	return f, nil
}

// shareOf is the whole number of n that fraction share allows, at least 1.
func shareOf(share float64, n int) int { return max(1, int(share*float64(n)+1e-9)) }

// QueueHead is the oldest waiting request of one of a tenant's class queues.
type QueueHead struct {
	Waiting  int       // requests in the queue; 0: empty
	Order    uint64    // submission order of the oldest (smaller: earlier)
	Enqueued time.Time // when the oldest was submitted
}

// TenantView is what admission knows about one tenant.
type TenantView struct {
	// Counter is the weighted service the tenant received (virtual token counter).
	Counter float64
	// Running is the number of slots its requests hold.
	Running int
	// Weight is its share relative to others (the key's weight); 0 means 1.
	Weight float64
	// Interactive and Batch are its class queues, each first in first out.
	Interactive, Batch QueueHead
}

// AdmitInput is the state one admission decision is made from.
type AdmitInput struct {
	Tenants    []TenantView
	FreeSlots  int
	SlotCap    int // most slots one tenant may hold; 0: no cap
	Now        time.Time
	BatchAging time.Duration
	FCFS       bool
}

// Admission is PickNext's decision: the head of this tenant's class queue goes next.
type Admission struct {
	Tenant int // index in AdmitInput.Tenants
	Class  Priority
}

// PickNext decides which waiting request takes the next free slot; false when none
// may (no free slot, nothing waiting, or every waiting tenant at its slot cap).
//
// Fair policy (Virtual Token Counter, Sheng et al., OSDI 2024): among the tenants
// with a waiting request and fewer running than SlotCap, the one with the least
// counter goes first (ties: the earlier submitted head), its oldest request first.
// Classes: a batch request competes only when no interactive one can be admitted,
// except that once it has waited BatchAging it competes as interactive (aging), so
// a steady interactive load delays batch work by at most BatchAging plus its fair
// share of the interactive backlog, never forever. Work-conserving: whenever a slot
// is free and a tenant below its cap waits, somebody is admitted.
//
// FCFS: the earliest submitted request of all, whatever its tenant or class.
func PickNext(in AdmitInput) (Admission, bool) {
	if in.FreeSlots <= 0 {
		return Admission{}, false
	}
	type candidate struct {
		Admission
		competes Priority // the class it competes in (an aged batch request: interactive)
		order    uint64
		counter  float64
	}
	var best candidate
	found := false
	better := func(c candidate) bool {
		switch {
		case !found:
			return true
		case in.FCFS:
			return c.order < best.order
		case c.competes != best.competes:
			return c.competes < best.competes
		case c.counter != best.counter:
			return c.counter < best.counter
		}
		return c.order < best.order
	}
	for i, t := range in.Tenants {
		if !in.FCFS && in.SlotCap > 0 && t.Running >= in.SlotCap {
			continue
		}
		for class, head := range [...]QueueHead{Interactive: t.Interactive, Batch: t.Batch} {
			if head.Waiting == 0 {
				continue
			}
			c := candidate{Admission: Admission{Tenant: i, Class: Priority(class)},
				competes: in.Competes(Priority(class), head.Enqueued), order: head.Order, counter: t.Counter}
			if better(c) {
				best, found = c, true
			}
		}
	}
	return best.Admission, found
}

// Competes returns the class a request of class c submitted at enqueued competes in:
// its own, or Interactive for a batch request that has waited BatchAging (aging).
func (in AdmitInput) Competes(c Priority, enqueued time.Time) Priority {
	if c == Batch && in.Now.Sub(enqueued) >= in.BatchAging {
		return Interactive
	}
	return c
}

// LiftCounter returns the counter of a tenant that becomes backlogged (gets a waiting
// request when it had none): its own, raised to the least counter of the tenants
// already backlogged, or, when none is, to the counter of the last tenant that left
// the backlog. Time spent idle is thus never banked as credit against tenants that
// kept the model busy.
func LiftCounter(own float64, backlogged []float64, lastLeft float64) float64 {
	if len(backlogged) == 0 {
		return max(own, lastLeft)
	}
	least := math.Inf(1)
	for _, c := range backlogged {
		least = min(least, c)
	}
	return max(own, least)
}
