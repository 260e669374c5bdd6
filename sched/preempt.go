package sched

// RunningSeq is what preemption knows about one running sequence.
type RunningSeq struct {
	// Tenant is the index of its tenant in PreemptInput.Tenants.
	Tenant int
	// Class is the class it competes in (AdmitInput.Competes: an aged batch request
	// competes as Interactive).
	Class Priority
	// Past is the number of tokens in its KV cache (prompt and generated): the work
	// redone when it resumes in a slot that no longer holds them.
	Past int
	// Steps is the number of decode steps since it was admitted or resumed.
	Steps int
	// Preempted is how many times it was preempted before.
	Preempted int
}

// PreemptInput is the state one preemption decision is made from: the waiting side
// (AdmitInput, whose Tenants also list the tenants that only run) and the running
// sequences.
type PreemptInput struct {
	AdmitInput
	// Running are the sequences holding slots, oldest admission first.
	Running []RunningSeq
	// Slots is the number of the model's slots.
	Slots int
	// MinSteps and MaxTimes bound the churn: a sequence that ran fewer than MinSteps
	// steps since its (re)admission, or was preempted MaxTimes already, keeps its slot.
	MinSteps, MaxTimes int
}

// PickVictim decides whether a running sequence gives its slot back so that a waiting
// request can run, and which (an index in in.Running); false when none should.
//
// Only when every slot is busy, and never under FCFS. The waiting request is the one
// PickNext would admit into a free slot; call its tenant W and the class it competes
// in L. A tenant's weighted share of the slots is Slots × its weight / the summed
// weights of the tenants running or waiting at class L or above (an interactive
// request's share ignores batch work), at least one slot. W must be able to take one
// more slot at class L within its share: never preempt for a tenant that already
// holds its share. Then a running sequence may be taken if either
//   - it competes in a lower class than L (batch work, interactive waiting), or
//   - it competes in L, its tenant is not W, holds more slots at L than its share
//     (and more than one), and has a greater counter than W (PickNext prefers W).
//
// Among those, a batch sequence first, then the one with the fewest tokens in its KV
// cache (the least work redone), then the latest admitted. Churn is bounded by
// MinSteps and MaxTimes. After the preemption W is admitted next (it beats the
// victim in PickNext), and the victim's tenant, which held more than its share (and
// more than one slot), cannot take one more within its share to preempt back: a slot
// changes hands once per imbalance, not back and forth.
func PickVictim(in PreemptInput) (int, bool) {
	if in.FCFS || in.FreeSlots > 0 || len(in.Running) == 0 {
		return 0, false
	}
	next := in.AdmitInput
	next.FreeSlots = 1
	a, ok := PickNext(next)
	if !ok {
		return 0, false
	}
	w := in.Tenants[a.Tenant]
	level := a.Class
	if a.Class == Batch {
		level = in.Competes(Batch, w.Batch.Enqueued)
	}
	held := make([]int, len(in.Tenants)) // slots held at class level or above
	for _, r := range in.Running {
		if r.Class <= level {
			held[r.Tenant]++
		}
	}
	total := 0.0
	for i, t := range in.Tenants {
		if held[i] > 0 || in.waitsAt(t, level) {
			total += weightOf(t)
		}
	}
	share := func(i int) float64 { return max(1, float64(in.Slots)*weightOf(in.Tenants[i])/total) }
	if float64(held[a.Tenant]+1) > share(a.Tenant) {
		return 0, false
	}
	best := -1
	for i, r := range in.Running {
		if r.Steps < in.MinSteps || r.Preempted >= in.MaxTimes {
			continue
		}
		lower := r.Class > level
		overServed := r.Class == level && r.Tenant != a.Tenant && float64(held[r.Tenant]) > share(r.Tenant) &&
			in.Tenants[r.Tenant].Counter > w.Counter
		if !lower && !overServed {
			continue
		}
		if best < 0 || betterVictim(r, in.Running[best]) {
			best = i
		}
	}
	return best, best >= 0
}

// betterVictim reports whether r (admitted later than b) is preempted before b.
func betterVictim(r, b RunningSeq) bool {
	if r.Class != b.Class {
		return r.Class > b.Class
	}
	return r.Past <= b.Past
}

// waitsAt reports whether t has a request waiting that competes at class level or
// above.
func (in AdmitInput) waitsAt(t TenantView, level Priority) bool {
	return t.Interactive.Waiting > 0 || t.Batch.Waiting > 0 && in.Competes(Batch, t.Batch.Enqueued) <= level
}

func weightOf(t TenantView) float64 {
	if t.Weight <= 0 {
		return 1
	}
	return t.Weight
}
