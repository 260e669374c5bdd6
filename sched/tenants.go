package sched

import (
	"math"
	"sync"
	"time"
)

// tenant is one tenant's share of a model: its service counter, running requests and
// waiting requests by class.
type tenant struct {
	name    string
	counter float64
	weight  float64 // of its latest request
	running int
	queues  [2][]*seq // by Priority, oldest first
	view    int       // index in waitQueue.views while a decision is made
}

func (t *tenant) waiting() int { return len(t.queues[Interactive]) + len(t.queues[Batch]) }

// maxTenants is how many tenants the queue remembers before it forgets idle ones
// regardless of their counters.
const maxTenants = 4096

// waitQueue holds a model's waiting requests per tenant and the tenants' counters.
// Submit pushes; the scheduler loop pops (PickNext decides), charges service and
// reports finished requests.
type waitQueue struct {
	fair      Fairness
	capacity  int           // total bound
	perTenant int           // bound per identified tenant
	slotCap   int           // most slots per tenant; 0: no cap
	wake      chan struct{} // signalled on every push

	mu       sync.Mutex
	tenants  map[string]*tenant
	total    int
	order    uint64
	lastLeft float64 // counter of the last tenant that left the backlog
	views    []TenantView
	index    []*tenant
	running  []RunningSeq
}

func newWaitQueue(f Fairness, capacity, slots int) *waitQueue {
	q := &waitQueue{fair: f, capacity: capacity, perTenant: shareOf(f.TenantQueueShare, capacity),
		wake: make(chan struct{}, 1), tenants: map[string]*tenant{}}
	if f.MaxSlotsShare > 0 {
		q.slotCap = shareOf(f.MaxSlotsShare, slots)
	}
	return q
}

// push queues sq under its tenant, or returns ErrOverloaded (the model's queue is
// full) or ErrTenantOverloaded (the tenant holds its share of it).
func (q *waitQueue) push(sq *seq) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total >= q.capacity {
		return ErrOverloaded
	}
	name := sq.req.Tenant
	t := q.tenants[name]
	if !q.fair.FCFS && name != "" && t != nil && t.waiting() >= q.perTenant {
		return ErrTenantOverloaded
	}
	if t == nil {
		if len(q.tenants) >= maxTenants {
			q.forgetIdle()
		}
		t = &tenant{name: name}
		q.tenants[name] = t
	}
	if t.waiting() == 0 {
		t.counter = LiftCounter(t.counter, q.backlogged(), q.lastLeft)
	}
	q.order++
	sq.order, sq.tenant, t.weight = q.order, t, sq.req.Weight
	t.queues[sq.req.Priority] = append(t.queues[sq.req.Priority], sq)
	q.total++
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// backlogged returns the counters of the tenants with waiting requests (scratch).
func (q *waitQueue) backlogged() []float64 {
	var out []float64
	for _, t := range q.tenants {
		if t.waiting() > 0 {
			out = append(out, t.counter)
		}
	}
	return out
}

// pop removes and returns the request PickNext admits into one of free slots, nil
// when none may go. The request's tenant counts it as running until done.
func (q *waitQueue) pop(free int, now time.Time) *seq {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total == 0 {
		return nil
	}
	a, ok := PickNext(q.admitInput(free, now, false))
	if !ok {
		return nil
	}
	t := q.index[a.Tenant]
	sq := t.queues[a.Class][0]
	t.queues[a.Class][0] = nil
	t.queues[a.Class] = t.queues[a.Class][1:]
	q.total--
	t.running++
	sq.running = true
	if t.waiting() == 0 {
		q.lastLeft = t.counter
	}
	return sq
}

// admitInput fills q.views and q.index with the tenants that wait (and, with
// running, those that only run) and returns the admission state over them. q.mu is
// held.
func (q *waitQueue) admitInput(free int, now time.Time, running bool) AdmitInput {
	q.views, q.index = q.views[:0], q.index[:0]
	for _, t := range q.tenants {
		if t.waiting() == 0 && (!running || t.running == 0) {
			continue
		}
		v := TenantView{Counter: t.counter, Running: t.running, Weight: t.weight}
		for class, heads := range [...]*QueueHead{Interactive: &v.Interactive, Batch: &v.Batch} {
			if qu := t.queues[class]; len(qu) > 0 {
				*heads = QueueHead{Waiting: len(qu), Order: qu[0].order, Enqueued: qu[0].enqueued}
			}
		}
		t.view = len(q.views)
		q.views, q.index = append(q.views, v), append(q.index, t)
	}
	return AdmitInput{Tenants: q.views, FreeSlots: free, SlotCap: q.slotCap, Now: now,
		BatchAging: q.fair.BatchAging, FCFS: q.fair.FCFS}
}

// victim returns the running sequence (of active, in admission order, every slot
// busy) that PickVictim takes back for a waiting request, nil when none; step is the
// scheduler's decode step count.
func (q *waitQueue) victim(active []*seq, slots int, step int64, now time.Time) *seq {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total == 0 || q.fair.FCFS || q.fair.NoPreempt {
		return nil
	}
	in := PreemptInput{AdmitInput: q.admitInput(0, now, true), Slots: slots,
		MinSteps: PreemptMinSteps, MaxTimes: PreemptMaxTimes}
	q.running = q.running[:0]
	for _, sq := range active {
		q.running = append(q.running, RunningSeq{Tenant: sq.tenant.view, Class: in.Competes(sq.req.Priority, sq.enqueued),
			Past: sq.nPast, Steps: int(step - sq.admitStep), Preempted: sq.preemptions})
	}
	in.Running = q.running
	i, ok := PickVictim(in)
	if !ok {
		return nil
	}
	return active[i]
}

// requeue puts sq, preempted, back at the head of its tenant's class queue: it is the
// oldest of them and resumes first. Its tenant's counter is not lifted (it was served,
// not idle), and the total bound does not apply (the request was already accepted).
func (q *waitQueue) requeue(sq *seq) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := sq.tenant
	t.running--
	sq.running = false
	t.queues[sq.req.Priority] = append([]*seq{sq}, t.queues[sq.req.Priority]...)
	q.total++
}

// charge adds units of service (token costs) to sq's tenant, divided by its weight.
func (q *waitQueue) charge(sq *seq, units float64) {
	if sq.tenant == nil || units <= 0 {
		return
	}
	q.mu.Lock()
	sq.tenant.counter += units / sq.req.Weight
	q.mu.Unlock()
}

// done releases sq's slot from its tenant's count; a tenant left with nothing waiting
// or running is forgotten once its counter is no more than a returning tenant would
// be lifted to anyway.
func (q *waitQueue) done(sq *seq) {
	if !sq.running {
		return
	}
	sq.running = false
	q.mu.Lock()
	defer q.mu.Unlock()
	t := sq.tenant
	t.running--
	if t.running == 0 && t.waiting() == 0 && t.counter <= q.floor() && q.tenants[t.name] == t {
		delete(q.tenants, t.name)
	}
}

// floor is what a tenant becoming backlogged now would be lifted to at least.
func (q *waitQueue) floor() float64 { return LiftCounter(math.Inf(-1), q.backlogged(), q.lastLeft) }

// forgetIdle makes room in a full tenant map: it drops the idle tenants whose
// counters are at most the floor, and every idle tenant if that was not enough.
func (q *waitQueue) forgetIdle() {
	floor := q.floor()
	for _, all := range []bool{false, true} {
		for name, t := range q.tenants {
			if t.running == 0 && t.waiting() == 0 && (all || t.counter <= floor) {
				delete(q.tenants, name)
			}
		}
		if len(q.tenants) < maxTenants {
			return
		}
	}
}

// drain removes and returns every waiting request (shutdown).
func (q *waitQueue) drain() []*seq {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*seq
	for _, t := range q.tenants {
		for class := range t.queues {
			out = append(out, t.queues[class]...)
			t.queues[class] = nil
		}
	}
	q.total = 0
	return out
}

// len is the number of waiting requests.
func (q *waitQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}

// state returns the number of backlogged tenants and the spread (max - min) of their
// counters.
func (q *waitQueue) state() (backlogged int, spread float64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, t := range q.tenants {
		if t.waiting() > 0 {
			backlogged++
			lo, hi = min(lo, t.counter), max(hi, t.counter)
		}
	}
	if backlogged == 0 {
		return 0, 0
	}
	return backlogged, hi - lo
}
