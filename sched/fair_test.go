package sched

import (
	"errors"
	"testing"
	"time"
)

func TestPickNext(t *testing.T) {
	now := time.Unix(1000, 0)
	aging := 30 * time.Second
	// head returns a class queue of n requests whose oldest was submitted order-th,
	// ago before now.
	head := func(n int, order uint64, ago time.Duration) QueueHead {
		return QueueHead{Waiting: n, Order: order, Enqueued: now.Add(-ago)}
	}
	inter := func(counter float64, running int, n int, order uint64) TenantView {
		return TenantView{Counter: counter, Running: running, Interactive: head(n, order, time.Second)}
	}
	batch := func(counter float64, running int, n int, order uint64, ago time.Duration) TenantView {
		return TenantView{Counter: counter, Running: running, Batch: head(n, order, ago)}
	}
	none := Admission{Tenant: -1}
	cases := []struct {
		name    string
		tenants []TenantView
		free    int
		slotCap int
		fcfs    bool
		want    Admission
	}{
		{"least counter first, not oldest", []TenantView{inter(500, 7, 20, 1), inter(100, 1, 1, 40)}, 1, 0, false,
			Admission{Tenant: 1}},
		{"fcfs takes the oldest whatever the counters", []TenantView{inter(500, 7, 20, 1), inter(100, 1, 1, 40)}, 1, 0, true,
			Admission{Tenant: 0}},
		{"equal counters: earlier head", []TenantView{inter(100, 0, 1, 9), inter(100, 0, 1, 3)}, 2, 0, false,
			Admission{Tenant: 1}},
		{"no free slot", []TenantView{inter(0, 0, 1, 1)}, 0, 0, false, none},
		{"nobody waits", []TenantView{{Counter: 3, Running: 2}}, 4, 0, false, none},
		{"slot cap skips the tenant at its cap", []TenantView{inter(10, 3, 5, 1), inter(900, 0, 1, 2)}, 1, 3, false,
			Admission{Tenant: 1}},
		{"slot cap: only capped tenants wait", []TenantView{inter(10, 3, 5, 1)}, 5, 3, false, none},
		{"fcfs ignores the slot cap", []TenantView{inter(10, 3, 5, 1)}, 5, 3, true, Admission{Tenant: 0}},
		{"interactive before batch with a lower counter", []TenantView{batch(0, 0, 9, 1, time.Second), inter(1e6, 5, 1, 50)}, 1, 0, false,
			Admission{Tenant: 1}},
		{"batch runs when no interactive waits (work-conserving)", []TenantView{batch(1e6, 7, 9, 1, time.Second), {Counter: 0, Running: 1}}, 1, 0, false,
			Admission{Tenant: 0, Class: Batch}},
		{"batch runs when waiting interactive tenants are capped", []TenantView{batch(1e6, 0, 9, 5, time.Second), inter(0, 2, 3, 1)}, 1, 2, false,
			Admission{Tenant: 0, Class: Batch}},
		{"aged batch competes as interactive by counter", []TenantView{batch(10, 0, 9, 1, aging), inter(20, 0, 1, 50)}, 1, 0, false,
			Admission{Tenant: 0, Class: Batch}},
		{"aged batch still loses to a smaller counter", []TenantView{batch(30, 0, 9, 1, aging+time.Hour), inter(20, 0, 1, 50)}, 1, 0, false,
			Admission{Tenant: 1}},
		{"least counter among batch tenants", []TenantView{batch(50, 0, 1, 1, time.Second), batch(5, 0, 1, 2, time.Second)}, 1, 0, false,
			Admission{Tenant: 1, Class: Batch}},
		{"fifo inside a tenant: an aged batch head older than its interactive head", []TenantView{{Counter: 1,
			Interactive: head(1, 7, time.Second), Batch: head(1, 2, aging)}}, 1, 0, false, Admission{Tenant: 0, Class: Batch}},
		{"a young batch head waits behind its tenant's interactive head", []TenantView{{Counter: 1,
			Interactive: head(1, 7, time.Second), Batch: head(1, 2, time.Second)}}, 1, 0, false, Admission{Tenant: 0}},
	}
	for _, c := range cases {
		got, ok := PickNext(AdmitInput{Tenants: c.tenants, FreeSlots: c.free, SlotCap: c.slotCap, Now: now, BatchAging: aging, FCFS: c.fcfs})
		if !ok {
			got = none
		}
		if got != c.want {
			t.Errorf("%s: PickNext = %+v (ok %v), want %+v", c.name, got, ok, c.want)
		}
	}
}

func TestLiftCounter(t *testing.T) {
	cases := []struct {
		name       string
		own        float64
		backlogged []float64
		lastLeft   float64
		want       float64
	}{
		{"idle tenant lifted to the least backlogged", 10, []float64{400, 250, 900}, 0, 250},
		{"a tenant ahead keeps its counter", 1000, []float64{400, 250}, 0, 1000},
		{"nobody backlogged: the last to leave", 10, nil, 77, 77},
		{"nobody backlogged and ahead of the last", 90, nil, 77, 90},
		{"new tenant among backlogged ones", 0, []float64{5}, 1e9, 5},
	}
	for _, c := range cases {
		if got := LiftCounter(c.own, c.backlogged, c.lastLeft); got != c.want {
			t.Errorf("%s: LiftCounter(%v, %v, %v) = %v, want %v", c.name, c.own, c.backlogged, c.lastLeft, got, c.want)
		}
	}
}

// fakeSeq is a queued request of tenant with the given class and weight.
func fakeSeq(tenant string, p Priority, weight float64) *seq {
	return &seq{req: Request{Tenant: tenant, Priority: p, Weight: weight}, enqueued: time.Now()}
}

// serve pops one request, charges it cost units and finishes it; it returns its
// tenant ("" for none admitted).
func serve(q *waitQueue, cost float64) string {
	sq := q.pop(1, time.Now())
	if sq == nil {
		return "<none>"
	}
	q.charge(sq, cost)
	q.done(sq)
	return sq.req.Tenant
}

// TestWaitQueueWeights: two tenants keep requests of equal cost waiting; served one
// at a time, they get service in proportion to their weights.
func TestWaitQueueWeights(t *testing.T) {
	for _, w := range []float64{1, 3} {
		q := newWaitQueue(Fairness{TenantQueueShare: 1, InputCost: 1, OutputCost: 2, BatchAging: time.Hour}, 1000, 8)
		served := map[string]int{}
		for i := 0; i < 400; i++ {
			for _, tn := range []string{"a", "b"} {
				weight := 1.0
				if tn == "b" {
					weight = w
				}
				if q.tenants[tn] == nil || q.tenants[tn].waiting() < 2 {
					if err := q.push(fakeSeq(tn, Interactive, weight)); err != nil {
						t.Fatal(err)
					}
				}
			}
			served[serve(q, 10)]++
		}
		if got := float64(served["b"]) / float64(served["a"]); got < w*0.95 || got > w*1.05 {
			t.Errorf("weights 1:%v: served a=%d b=%d (ratio %.2f)", w, served["a"], served["b"], got)
		}
	}
}

// TestWaitQueueNoBankedIdleness: a tenant idle while another was served is lifted to
// the backlogged minimum when it returns, so it does not monopolise the model to
// catch up.
func TestWaitQueueNoBankedIdleness(t *testing.T) {
	q := newWaitQueue(Fairness{TenantQueueShare: 1, BatchAging: time.Hour}, 1000, 8)
	for i := 0; i < 100; i++ { // a alone: its counter reaches 1000
		if err := q.push(fakeSeq("a", Interactive, 1)); err != nil {
			t.Fatal(err)
		}
		serve(q, 10)
	}
	for i := 0; i < 10; i++ {
		if err := q.push(fakeSeq("a", Interactive, 1)); err != nil {
			t.Fatal(err)
		}
		if err := q.push(fakeSeq("b", Interactive, 1)); err != nil {
			t.Fatal(err)
		}
	}
	var order string
	for i := 0; i < 8; i++ {
		order += serve(q, 10)
	}
	// Without the lift b (counter 0) would be served 100 times in a row.
	if order != "babababa" && order != "abababab" {
		t.Errorf("after a returning tenant: served %q, want alternation", order)
	}
}

func TestWaitQueueBounds(t *testing.T) {
	q := newWaitQueue(Fairness{TenantQueueShare: 0.25, BatchAging: time.Hour}, 8, 4)
	for i := 0; i < 2; i++ {
		if err := q.push(fakeSeq("a", Interactive, 1)); err != nil {
			t.Fatalf("a's request %d within its share: %v", i, err)
		}
	}
	err := q.push(fakeSeq("a", Batch, 1))
	if !errors.Is(err, ErrTenantOverloaded) || !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a over its share (2 of 8): %v, want ErrTenantOverloaded wrapping ErrOverloaded", err)
	}
	for _, tn := range []string{"b", "b", "c", "c"} {
		if err := q.push(fakeSeq(tn, Interactive, 1)); err != nil {
			t.Fatalf("%s within its share while a is full: %v", tn, err)
		}
	}
	for i := 0; i < 2; i++ { // anonymous: bounded by the total only
		if err := q.push(fakeSeq("", Interactive, 1)); err != nil {
			t.Fatalf("anonymous request %d: %v", i, err)
		}
	}
	if err := q.push(fakeSeq("d", Interactive, 1)); !errors.Is(err, ErrOverloaded) || errors.Is(err, ErrTenantOverloaded) {
		t.Fatalf("total bound: %v, want ErrOverloaded (not the tenant's)", err)
	}
	serve(q, 1)
	if err := q.push(fakeSeq("d", Interactive, 1)); err != nil {
		t.Fatalf("room again after one left: %v", err)
	}
	if n := len(q.drain()); n != 8 || q.len() != 0 {
		t.Errorf("drain returned %d, %d left", n, q.len())
	}
}

// TestWaitQueueForgetsIdleTenants: a tenant with nothing waiting or running whose
// counter a return would lift anyway is not remembered.
func TestWaitQueueForgetsIdleTenants(t *testing.T) {
	q := newWaitQueue(Fairness{TenantQueueShare: 1, BatchAging: time.Hour}, 100, 4)
	for _, tn := range []string{"a", "b", "b"} {
		if err := q.push(fakeSeq(tn, Interactive, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// a (counter 0, the least) is served; b still waits with counter 0: a is at the
	// floor when it finishes.
	if got := serve(q, 0); got != "a" {
		t.Fatalf("served %q first", got)
	}
	if _, ok := q.tenants["a"]; ok {
		t.Errorf("idle tenant a at the floor is still remembered")
	}
	serve(q, 50) // b: 50 ahead of nobody
	serve(q, 50)
	if _, ok := q.tenants["b"]; !ok {
		// b left the backlog at 50 and finished at 100: lastLeft is 50, so its
		// counter above the floor must be kept.
		t.Errorf("tenant b ahead of the floor was forgotten")
	}
}

func TestFairnessDefaults(t *testing.T) {
	f, err := Fairness{}.withDefaults()
	if err != nil || f.InputCost != DefaultInputCost || f.OutputCost != DefaultOutputCost ||
		f.TenantQueueShare != DefaultTenantQueueShare || f.BatchAging != DefaultBatchAging || f.MaxSlotsShare != 0 {
		t.Errorf("defaults: %+v, %v", f, err)
	}
	for _, bad := range []Fairness{{InputCost: -1}, {TenantQueueShare: 1.5}, {MaxSlotsShare: -0.1}, {BatchAging: -time.Second}} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if got := shareOf(0.875, 8); got != 7 {
		t.Errorf("0.875 of 8 slots = %d", got)
	}
	if got := shareOf(0.01, 8); got != 1 {
		t.Errorf("a tiny share still allows %d, want 1", got)
	}
}
