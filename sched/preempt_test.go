package sched

import (
	"testing"
	"time"
)

func TestPickVictim(t *testing.T) {
	now := time.Unix(1000, 0)
	aging := 30 * time.Second
	waits := func(counter float64, running, n int, w float64) TenantView {
		return TenantView{Counter: counter, Running: running, Weight: w,
			Interactive: QueueHead{Waiting: n, Order: 100, Enqueued: now.Add(-time.Second)}}
	}
	waitsBatch := func(counter float64, running, n int) TenantView {
		return TenantView{Counter: counter, Running: running, Batch: QueueHead{Waiting: n, Order: 100, Enqueued: now.Add(-time.Second)}}
	}
	runs := func(counter float64, running int, w float64) TenantView {
		return TenantView{Counter: counter, Running: running, Weight: w}
	}
	// seqs returns n running sequences of tenant in class c with Past past, past+1, ...
	seqs := func(tenant, n int, c Priority, past int) []RunningSeq {
		var out []RunningSeq
		for i := 0; i < n; i++ {
			out = append(out, RunningSeq{Tenant: tenant, Class: c, Past: past + i, Steps: 10})
		}
		return out
	}
	cat := func(parts ...[]RunningSeq) []RunningSeq {
		var out []RunningSeq
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	young := seqs(0, 8, Interactive, 50)
	for i := range young {
		young[i].Steps = PreemptMinSteps - 1
	}
	worn := seqs(0, 8, Interactive, 50)
	for i := range worn {
		worn[i].Preempted = PreemptMaxTimes
	}
	mixed := cat(seqs(0, 7, Interactive, 50), seqs(0, 1, Batch, 900))
	none := -1
	cases := []struct {
		name    string
		tenants []TenantView
		running []RunningSeq
		free    int
		slots   int
		slotCap int
		fcfs    bool
		want    int
	}{
		{"flood holds every slot: its shortest sequence makes room", []TenantView{runs(500, 8, 1), waits(100, 0, 1, 1)},
			seqs(0, 8, Interactive, 50), 0, 8, 0, false, 0},
		{"ties on work: the latest admitted", []TenantView{runs(500, 2, 1), waits(100, 0, 1, 1)},
			[]RunningSeq{{Tenant: 0, Past: 7, Steps: 10}, {Tenant: 0, Past: 7, Steps: 10}}, 0, 2, 0, false, 1},
		{"fcfs never preempts", []TenantView{runs(500, 8, 1), waits(100, 0, 1, 1)},
			seqs(0, 8, Interactive, 50), 0, 8, 0, true, none},
		{"a free slot: admission, not preemption", []TenantView{runs(500, 7, 1), waits(100, 0, 1, 1)},
			seqs(0, 7, Interactive, 50), 1, 8, 0, false, none},
		{"the waiting tenant's counter is not lower", []TenantView{runs(100, 8, 1), waits(100, 0, 1, 1)},
			seqs(0, 8, Interactive, 50), 0, 8, 0, false, none},
		{"the waiting tenant holds its share (4 of 8)", []TenantView{runs(500, 4, 1), waits(100, 4, 1, 1)},
			cat(seqs(0, 4, Interactive, 50), seqs(1, 4, Interactive, 50)), 0, 8, 0, false, none},
		{"one short of its share", []TenantView{runs(500, 5, 1), waits(100, 3, 1, 1)},
			cat(seqs(0, 5, Interactive, 50), seqs(1, 3, Interactive, 10)), 0, 8, 0, false, 0},
		{"weight 3: 5 of 8 is under its share of 6", []TenantView{runs(500, 3, 1), waits(100, 5, 1, 3)},
			cat(seqs(1, 5, Interactive, 10), seqs(0, 3, Interactive, 50)), 0, 8, 0, false, 5},
		{"weight 3: 6 of 8 is its share", []TenantView{runs(500, 2, 1), waits(100, 6, 1, 3)},
			cat(seqs(1, 6, Interactive, 10), seqs(0, 2, Interactive, 50)), 0, 8, 0, false, none},
		{"three tenants, shares of 2.67: the one above its share gives a slot", []TenantView{runs(500, 4, 1), runs(600, 4, 1), waits(100, 0, 1, 1)},
			cat(seqs(0, 4, Interactive, 60), seqs(1, 4, Interactive, 50)), 0, 8, 0, false, 4},
		{"the tenant above its share has the lower counter; the other is within its share", []TenantView{runs(50, 5, 1), runs(600, 2, 1), waits(100, 1, 1, 1)},
			cat(seqs(0, 5, Interactive, 50), seqs(1, 2, Interactive, 50), seqs(2, 1, Interactive, 50)), 0, 8, 0, false, none},
		{"more tenants than slots: a tenant's only slot is kept", []TenantView{runs(500, 1, 1), runs(600, 1, 1), waits(100, 0, 1, 1)},
			cat(seqs(0, 1, Interactive, 50), seqs(1, 1, Interactive, 50)), 0, 2, 0, false, none},
		{"sequences younger than PreemptMinSteps keep their slots", []TenantView{runs(500, 8, 1), waits(100, 0, 1, 1)},
			young, 0, 8, 0, false, none},
		{"sequences preempted PreemptMaxTimes keep their slots", []TenantView{runs(500, 8, 1), waits(100, 0, 1, 1)},
			worn, 0, 8, 0, false, none},
		{"the waiting tenant at its slot cap", []TenantView{runs(500, 5, 1), waits(100, 3, 1, 1)},
			cat(seqs(0, 5, Interactive, 50), seqs(1, 3, Interactive, 10)), 0, 8, 3, false, none},
		{"interactive waits: batch work goes whatever the counters", []TenantView{runs(10, 8, 1), waits(900, 0, 1, 1)},
			seqs(0, 8, Batch, 50), 0, 8, 0, false, 0},
		{"interactive waits: its own tenant's batch work goes too", []TenantView{waits(900, 8, 1, 1)},
			seqs(0, 8, Batch, 50), 0, 8, 0, false, 0},
		{"a batch sequence before an interactive one with less work", []TenantView{runs(500, 8, 1), waits(100, 0, 1, 1)},
			mixed, 0, 8, 0, false, 7},
		{"batch waits: interactive work is never preempted", []TenantView{runs(500, 8, 1), waitsBatch(100, 0, 1)},
			seqs(0, 8, Interactive, 50), 0, 8, 0, false, none},
		{"batch waits: an over-served tenant's batch work goes", []TenantView{runs(500, 8, 1), waitsBatch(100, 0, 1)},
			seqs(0, 8, Batch, 50), 0, 8, 0, false, 0},
	}
	for _, c := range cases {
		in := PreemptInput{AdmitInput: AdmitInput{Tenants: c.tenants, FreeSlots: c.free, SlotCap: c.slotCap, Now: now,
			BatchAging: aging, FCFS: c.fcfs}, Running: c.running, Slots: c.slots, MinSteps: PreemptMinSteps, MaxTimes: PreemptMaxTimes}
		got, ok := PickVictim(in)
		if !ok {
			got = none
		}
		if got != c.want {
			t.Errorf("%s: PickVictim = %d (ok %v), want %d", c.name, got, ok, c.want)
		}
	}
}

// TestPickVictimSettles applies PickVictim's decisions until it makes none: the
// slots move from the flooding tenant to the waiting ones until each holds its
// weighted share, one slot per decision, and never back.
func TestPickVictimSettles(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, c := range []struct {
		name    string
		weights []float64
		want    []int // slots held once settled
	}{
		{"1:1", []float64{1, 1}, []int{4, 4}},
		{"1:3", []float64{1, 3}, []int{2, 6}},
		{"1:1:1 (shares of 2.67)", []float64{1, 1, 1}, []int{4, 2, 2}},
		{"1:1:1:1:1:1:1:1:1:1 (more tenants than slots)", []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, []int{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}},
	} {
		// Tenant 0 holds every slot; the others wait. The waiting tenants' counters stay
		// below tenant 0's (they were lifted to it and are served less).
		tenants := make([]TenantView, len(c.weights))
		for i, w := range c.weights {
			tenants[i] = TenantView{Counter: float64(100 + i), Weight: w}
			if i > 0 {
				tenants[i].Interactive = QueueHead{Waiting: 100, Order: uint64(i), Enqueued: now}
			}
		}
		tenants[0].Counter = 1000
		var running []RunningSeq
		for i := 0; i < 8; i++ {
			running = append(running, RunningSeq{Tenant: 0, Past: 100, Steps: 10})
		}
		tenants[0].Running = 8
		for step := 0; ; step++ {
			if step > 8 {
				t.Fatalf("%s: still preempting after %d decisions", c.name, step)
			}
			in := PreemptInput{AdmitInput: AdmitInput{Tenants: tenants, Now: now, BatchAging: time.Hour}, Running: running,
				Slots: 8, MinSteps: PreemptMinSteps, MaxTimes: PreemptMaxTimes}
			v, ok := PickVictim(in)
			if !ok {
				break
			}
			// The victim's tenant gets a waiting request; PickNext's pick takes the slot.
			vt := running[v].Tenant
			running = append(running[:v], running[v+1:]...)
			tenants[vt].Running--
			tenants[vt].Interactive.Waiting++
			in.FreeSlots = 1
			a, ok := PickNext(in.AdmitInput)
			if !ok || a.Tenant == vt {
				t.Fatalf("%s: after preempting tenant %d's sequence PickNext admits %+v (ok %v)", c.name, vt, a, ok)
			}
			tenants[a.Tenant].Running++
			tenants[a.Tenant].Interactive.Waiting--
			tenants[a.Tenant].Counter += 50 // served: it passes the other waiting tenants, not tenant 0
			running = append(running, RunningSeq{Tenant: a.Tenant, Past: 10, Steps: 10})
		}
		for i, w := range c.want {
			if tenants[i].Running != w {
				var got []int
				for _, tv := range tenants {
					got = append(got, tv.Running)
				}
				t.Errorf("%s: settled at %v slots, want %v", c.name, got, c.want)
				break
			}
		}
	}
}

// TestWaitQueueVictim: the queue describes running sequences to PickVictim by the
// class they compete in (an aged batch request is interactive work), and a preempted
// sequence waits at the head of its tenant's queue, after the request it made room for.
func TestWaitQueueVictim(t *testing.T) {
	for _, c := range []struct {
		name   string
		waited time.Duration // how long a's batch requests waited before they ran
		want   bool
	}{
		{"young batch work makes room for interactive work", time.Second, true},
		{"aged batch work competes as interactive: a's lower counter keeps its slots", time.Hour, false},
	} {
		q := newWaitQueue(Fairness{TenantQueueShare: 1, BatchAging: time.Minute}, 100, 2)
		var active []*seq
		for i := 0; i < 3; i++ {
			sq := fakeSeq("a", Batch, 1)
			sq.enqueued = time.Now().Add(-c.waited)
			if err := q.push(sq); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 2; i++ {
			sq := q.pop(1, time.Now())
			sq.nPast = 10 + i
			active = append(active, sq)
		}
		b := fakeSeq("b", Interactive, 1)
		if err := q.push(b); err != nil {
			t.Fatal(err)
		}
		q.charge(b, 100) // b's counter above a's
		v := q.victim(active, 2, PreemptMinSteps, time.Now())
		if (v != nil) != c.want {
			t.Fatalf("%s: victim %v, want one: %v", c.name, v != nil, c.want)
		}
		if v == nil {
			continue
		}
		if v != active[0] {
			t.Errorf("%s: preempted the sequence with more work", c.name)
		}
		q.requeue(v)
		if got := q.pop(1, time.Now()); got != b {
			t.Errorf("%s: after the preemption %q's request was admitted, not b's", c.name, got.req.Tenant)
		}
		if got := q.pop(1, time.Now()); got != v {
			t.Errorf("%s: a's preempted request did not resume before a's other waiting one", c.name)
		}
	}
}
