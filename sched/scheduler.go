package sched

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/hxp-ai/hxp/engine"
)

// Scheduler runs one model: a bounded queue, n parallel slots and one goroutine that
// owns the llama.cpp context and folds every running request into shared decode steps.
type Scheduler struct {
	cfg    Config
	model  *engine.Model
	ctx    *engine.Context
	batch  *engine.Batch
	seqCtx int
	policy budgetPolicy
	m      *modelMetrics

	mu        sync.RWMutex // guards closed against Submit
	closed    bool
	closeOnce sync.Once
	q         *waitQueue
	quit      chan struct{}
	done      chan struct{}
	// asideReady wakes a loop waiting for a constrained sequence's token (aside.go).
	asideReady chan struct{}

	// Loop-owned state.
	slots        []*slot
	active       []*seq // admission order
	draining     []*seq // finished, final event not yet delivered
	parked       []*seq // popped, waiting for a prefix a running request evaluates (share.go)
	prefixes     *prefixIndex
	step         StepModel
	views        []SeqView // per-step scratch, reused
	chunk        []int     // per-step tokens by slot, reused
	deferred     int       // steps in a row that deferred running sequences' decodes (firstOnly)
	freshScratch []Chunk
	plan         StepPlan // the step being evaluated (tests read it from StepHook)

	stats     atomic.Pointer[Stats]
	inflight  atomic.Int64 // submitted requests whose final event is not delivered yet
	steps     atomic.Int64
	moves     atomic.Int64
	shared    atomic.Int64 // prompt prefixes copied from another slot (share.go)
	promptEv  atomic.Int64 // prompt tokens evaluated
	preempts  atomic.Int64
	swapBytes atomic.Int64 // host memory held by preempted sequences' saved KV caches (swap.go)
	swapIns   atomic.Int64 // preempted sequences resumed from their saved caches
	last      atomic.Int64 // unix nanos of the last step or idle wake-up
}

type slot struct {
	id       int
	cached   []engine.Token // tokens whose KV this slot's sequence holds, positions 0..len-1
	seq      *seq
	lastUsed int64
}

type seq struct {
	req      Request
	input    []engine.Token // tokens to evaluate: the prompt, or prompt and output so far when resumed
	ctx      context.Context
	out      chan Event
	slot     *slot
	nPast    int          // prompt/generated tokens in the KV cache
	next     engine.Token // sampled token to feed at position nPast; -1 while prefilling
	sampler  *engine.Sampler
	text     textOut
	usage    Usage
	backlog  Event // undelivered output while the consumer is slow
	hasBack  bool
	final    bool // backlog holds the final event
	enqueued time.Time
	admitted time.Time
	firstTok time.Time
	lastTok  time.Time
	logitIdx int     // batch index of this step's logits, -1 if none
	tenant   *tenant // set when queued
	order    uint64  // submission order
	running  bool    // counted in its tenant's running requests

	admitStep   int64    // Scheduler.steps when it was last admitted or resumed
	preemptions int      // times it gave its slot back (see preempt)
	swap        *swapped // its KV cache saved when it was preempted (swap.go)

	aside aside // a constrained sequence's sampling off the loop (aside.go)
}

// New creates the model's context and starts the scheduler goroutine.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Model == nil {
		return nil, fmt.Errorf("sched: config for %q has no model: %w", cfg.Name, ErrInvalidRequest)
	}
	p := cfg.Context
	if p.Batch < p.Sequences {
		return nil, fmt.Errorf("sched: %s: batch=%d must be >= parallel=%d (each running sequence needs a token per step): %w", cfg.Name, p.Batch, p.Sequences, ErrInvalidRequest)
	}
	if cfg.QueueSize < 0 {
		return nil, fmt.Errorf("sched: %s: queue_size=%d: %w (>= 0)", cfg.Name, cfg.QueueSize, ErrInvalidRequest)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 4 * p.Sequences
	}
	if cfg.TargetLatency <= 0 {
		cfg.TargetLatency = time.Second
	}
	if cfg.TargetITL <= 0 {
		cfg.TargetITL = cfg.TargetLatency / 10
	}
	if cfg.GatherWindow == 0 {
		cfg.GatherWindow = DefaultGatherWindow
	}
	fair, err := cfg.Fairness.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("sched: %s: %w", cfg.Name, err)
	}
	cfg.Fairness = fair
	if cfg.PrefillChunk < -1 {
		return nil, fmt.Errorf("sched: %s: prefill_chunk=%d: %w (-1, 0 or a token count)", cfg.Name, cfg.PrefillChunk, ErrInvalidRequest)
	}
	ctx, err := cfg.Model.NewContext(p)
	if err != nil {
		return nil, fmt.Errorf("sched: %s: %w", cfg.Name, err)
	}
	batch, err := engine.NewBatch(p.Batch)
	if err != nil {
		ctx.Close()
		return nil, err
	}
	s := &Scheduler{
		cfg: cfg, model: cfg.Model, ctx: ctx, batch: batch, seqCtx: ctx.SeqCtx(),
		policy: budgetPolicy{batchCap: p.Batch, targetITL: cfg.TargetITL, targetTTFT: cfg.TargetLatency, strictITL: cfg.StrictITL, fixed: cfg.PrefillChunk,
			slots: p.Sequences, ubatch: cmp.Or(p.UBatch, p.Batch), unified: p.UnifiedKV},
		m:          newModelMetrics(cfg.Name),
		q:          newWaitQueue(fair, cfg.QueueSize, p.Sequences),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		asideReady: make(chan struct{}, 1),
	}
	for i := 0; i < p.Sequences; i++ {
		s.slots = append(s.slots, &slot{id: i})
	}
	s.prefixes = newPrefixIndex(p.Sequences)
	s.chunk = make([]int, p.Sequences)
	mQueueCapacity.WithLabelValues(cfg.Name).Set(float64(cfg.QueueSize))
	mSlots.WithLabelValues(cfg.Name).Set(float64(p.Sequences))
	mTargetLatency.WithLabelValues(cfg.Name).Set(cfg.TargetLatency.Seconds())
	mTargetITL.WithLabelValues(cfg.Name).Set(cfg.TargetITL.Seconds())
	s.publish()
	go s.loop()
	return s, nil
}

// Model returns the scheduled model.
func (s *Scheduler) Model() *engine.Model { return s.model }

// Name is the model's configured name.
func (s *Scheduler) Name() string { return s.cfg.Name }

// SeqCtx is the context window of one request (prompt + generated tokens).
func (s *Scheduler) SeqCtx() int { return s.seqCtx }

// Config returns the scheduler's configuration with defaults filled in.
func (s *Scheduler) Config() Config { return s.cfg }

// Stats returns a snapshot of the scheduler's state (updated every step).
func (s *Scheduler) Stats() Stats {
	st := *s.stats.Load()
	st.Queued = s.q.len()
	st.InFlight = int(s.inflight.Load())
	st.Busy = st.InFlight > 0
	return st
}

// LastProgress is when the loop last completed a step or found nothing to do, or when
// work arrived at an idle scheduler (so that the time spent idle before a request never
// counts as a stall). A busy scheduler whose LastProgress is old is stalled.
func (s *Scheduler) LastProgress() time.Time { return time.Unix(0, s.last.Load()) }

// Submit queues a request and returns its event stream. It fails fast with
// ErrInvalidRequest or ErrContextOverflow (checked before any C call),
// ErrOverloaded (queue full), ErrTenantOverloaded (the tenant's share of the queue
// is full; it wraps ErrOverloaded) or ErrClosed. Cancelling ctx ends the stream with
// FinishCancelled within one step and frees the slot.
func (s *Scheduler) Submit(ctx context.Context, r Request) (<-chan Event, error) {
	if err := r.Validate(s.model, s.seqCtx); err != nil {
		reason := "invalid"
		if errors.Is(err, ErrContextOverflow) {
			reason = "context_overflow"
		}
		s.m.reject(reason)
		return nil, err
	}
	if r.Weight == 0 {
		r.Weight = 1
	}
	sq := &seq{req: r, input: r.Prompt, ctx: ctx, out: make(chan Event, 16), next: -1, logitIdx: -1,
		text: textOut{stops: r.Stop}, enqueued: time.Now()}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.m.reject("closed")
		return nil, ErrClosed
	}
	// Counted before the send: the loop may finish it at once. The first request of an
	// idle scheduler restarts the progress clock, which idling left behind.
	if s.inflight.Add(1) == 1 {
		s.last.Store(time.Now().UnixNano())
	}
	if err := s.q.push(sq); err != nil {
		s.inflight.Add(-1)
		reason := "overloaded"
		if errors.Is(err, ErrTenantOverloaded) {
			reason = "tenant_overloaded"
		}
		s.m.reject(reason)
		return nil, err
	}
	s.m.queueDepth.Set(float64(s.q.len()))
	return sq.out, nil
}

// Drain stops accepting requests and waits until every submitted request has
// delivered its final event, or ctx ends. Call Close afterwards.
func (s *Scheduler) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if st := s.Stats(); !st.Busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sched: %s: drain: %w", s.cfg.Name, ctx.Err())
		case <-s.done:
			return nil
		case <-t.C:
		}
	}
}

// Close stops the scheduler: requests still running or queued end with ErrClosed,
// and the context's memory is freed. It is safe to call more than once.
func (s *Scheduler) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.done
}

func (s *Scheduler) loop() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(s.done)
	defer s.shutdown()
	for {
		s.last.Store(time.Now().UnixNano())
		if len(s.active) == 0 && len(s.draining) == 0 && len(s.parked) == 0 {
			// Idle: sleep until work arrives. A push between the check and the wait
			// leaves its signal in the buffered wake channel.
			if s.q.len() == 0 {
				select {
				case <-s.q.wake:
				case <-s.quit:
					return
				}
			}
			s.gather()
		}
		select {
		case <-s.quit:
			return
		default:
		}
		s.collectAside()
		s.admitQueued()
		s.reapCancelled()
		s.pack()
		s.deliverDraining()
		if len(s.active) == 0 {
			if len(s.draining) > 0 {
				time.Sleep(time.Millisecond) // wait for slow consumers without spinning
			}
			s.publish()
			continue
		}
		steps := s.steps.Load()
		s.runStep()
		s.publish()
		if s.steps.Load() == steps && s.sampling() {
			s.awaitAside() // nothing ran: every running sequence waits for its token
		}
	}
}

// gather runs when requests come to an idle scheduler: it lets the rest of a burst
// arrive before the first step, waiting while requests keep coming at most a quarter of
// the gather window apart, and no longer than the window (or until every slot has a
// request). Without it the first step starts with the first request or two, the step
// occupies the cores while the other requests are still being read and parsed, and
// they wait for it to end: over HTTP, 16 requests sent at once got their first tokens
// in two or three steps instead of one.
func (s *Scheduler) gather() {
	window := s.cfg.GatherWindow
	if window <= 0 {
		return
	}
	deadline := time.Now().Add(window)
	quiet := time.NewTimer(window / 4)
	defer quiet.Stop()
	for s.q.len() < len(s.slots) {
		select {
		case <-s.q.wake:
			if !time.Now().Before(deadline) {
				return
			}
			quiet.Reset(min(window/4, time.Until(deadline)))
		case <-quiet.C:
			return
		case <-s.quit:
			return
		}
	}
}

// admitQueued moves queued requests into free slots in the order the fairness
// policy decides (PickNext); when every slot is busy it preempts the sequences
// PickVictim gives back, at most one per slot per step. A request that gains by
// waiting for a prompt prefix a running one is evaluating is parked (share.go): it
// keeps a slot reserved, and nothing is preempted while one waits.
func (s *Scheduler) admitQueued() {
	s.admitParked()
	for preempted := 0; ; preempted++ {
		for len(s.active)+len(s.parked) < len(s.slots) {
			sq := s.q.pop(len(s.slots)-len(s.active)-len(s.parked), time.Now())
			if sq == nil {
				return
			}
			if !s.park(sq) {
				s.admit(sq)
			}
		}
		if preempted == len(s.slots) || len(s.parked) > 0 {
			return
		}
		v := s.q.victim(s.active, len(s.slots), s.steps.Load(), time.Now())
		if v == nil {
			return
		}
		s.preempt(v)
	}
}

// preempt frees sq's slot and puts it back at the head of its tenant's queue. Its
// state stays: the tokens it evaluated and the one it sampled last become its input,
// its KV cache is saved to host memory (swap.go) so that only the last token is
// evaluated when it resumes (past the swap bound: cheaply when the slot it resumes in
// still caches them, else all again), and its sampler lives on (penalties, grammar and
// random state), so the stream continues where it stopped, with no token lost or
// repeated.
func (s *Scheduler) preempt(sq *seq) {
	if r, ok := s.settleAside(sq); ok {
		s.emitAside(sq, r)
		if sq.slot == nil { // the token ended it
			s.compact()
			return
		}
	}
	sl := sq.slot
	if sq.next >= 0 {
		sq.input = append(append(make([]engine.Token, 0, sq.nPast+1), sl.cached[:sq.nPast]...), sq.next)
		sq.next = -1
	}
	s.swapOut(sq, sl, sq.nPast)
	sl.seq, sq.slot = nil, nil
	sq.nPast, sq.logitIdx = 0, -1
	sq.preemptions++
	s.q.requeue(sq)
	s.preempts.Add(1)
	s.m.preemptions.Inc()
	s.compact()
}

// admit gives sq the free slot whose cached tokens share the longest prefix with its
// prompt (least recently used on ties), and trims that slot's KV to the shared part.
func (s *Scheduler) admit(sq *seq) {
	s.m.queueDepth.Set(float64(s.q.len()))
	now := time.Now()
	if sq.admitted.IsZero() {
		s.m.queueTime.Observe(now.Sub(sq.enqueued).Seconds())
	}
	if sq.ctx.Err() != nil {
		s.finish(sq, FinishCancelled, nil)
		return
	}
	var best *slot
	bestLCP, bestNext := -1, false
	for _, sl := range s.slots {
		if sl.seq != nil {
			continue
		}
		// On equal prefixes a slot next to a running one keeps the running slots
		// adjacent (see pack), then the least recently used one.
		l, next := commonPrefix(sl.cached, sq.input), s.nextToRunning(sl.id)
		if l > bestLCP || (l == bestLCP && (next && !bestNext || next == bestNext && sl.lastUsed < best.lastUsed)) {
			best, bestLCP, bestNext = sl, l, next
		}
	}
	reuse := min(bestLCP, len(sq.input)-1) // the last input token is always evaluated for its logits
	reuse = s.swapIn(sq, best, reuse)
	reuse = s.sharePrefix(best, sq.input, reuse)
	if err := s.ctx.RemoveTokens(best.id, reuse, -1); err != nil {
		_ = s.ctx.ClearSequence(best.id)
		reuse = 0
	}
	best.cached = best.cached[:reuse]
	s.prefixes.Truncate(best.id, reuse)
	best.seq, best.lastUsed = sq, now.UnixNano()
	sq.slot, sq.nPast, sq.admitStep = best, reuse, s.steps.Load()
	if sq.sampler != nil { // resumed after preemption: usage, service and sampler carry on
		s.active = append(s.active, sq)
		return
	}
	sq.admitted = now
	sq.usage.PromptTokens = len(sq.req.Prompt)
	sq.usage.CachedTokens = reuse
	s.q.charge(sq, float64(len(sq.req.Prompt)-reuse)*s.cfg.Fairness.InputCost)
	s.m.promptTokens.Add(float64(len(sq.req.Prompt)))
	s.m.reusedTokens.Add(float64(reuse))
	smp, err := s.model.NewSampler(sq.req.Sampling)
	if err != nil {
		s.finish(sq, FinishError, err)
		return
	}
	sq.sampler = smp
	s.active = append(s.active, sq)
}

// nextToRunning reports whether a neighbour of slot id holds a running sequence.
func (s *Scheduler) nextToRunning(id int) bool {
	return id > 0 && s.slots[id-1].seq != nil || id+1 < len(s.slots) && s.slots[id+1].seq != nil
}

// pack keeps the running sequences in one run of consecutive slots. With
// per-sequence KV buffers llama.cpp evaluates each run of consecutive sequence ids in
// a batch as a micro-batch of its own, so a step over fragmented slots costs several
// graph evaluations: 8 streams on every other slot take 2.1x the step time of 8
// adjacent ones (bench model, 2 cores). When finished requests leave holes that no
// queued request filled, pack moves the sequences outside the window of len(active)
// consecutive slots that already holds the most of them into the window's free
// slots. A move copies one KV buffer (engine.CopySequence, done at the next decode),
// far less than one extra graph evaluation on every following step; the source slot
// keeps its tokens as a reusable prefix. A unified KV buffer needs no packing.
func (s *Scheduler) pack() {
	k := len(s.active)
	if k < 2 || s.cfg.Context.UnifiedKV {
		return
	}
	inside, most, from := 0, -1, 0
	for i, sl := range s.slots {
		if sl.seq != nil {
			inside++
		}
		if i >= k && s.slots[i-k].seq != nil {
			inside--
		}
		if i >= k-1 && inside > most {
			most, from = inside, i-k+1
		}
	}
	free := from
	for i, sl := range s.slots {
		if most == k {
			return
		}
		if sl.seq == nil || i >= from && i < from+k {
			continue
		}
		for s.slots[free].seq != nil {
			free++
		}
		if err := s.ctx.CopySequence(sl.id, free); err != nil {
			log.Error().Err(err).Str("model", s.cfg.Name).Msg("moving a sequence to pack slots failed; slots stay fragmented")
			return
		}
		dst := s.slots[free]
		dst.cached = append(dst.cached[:0], sl.cached...)
		s.prefixes.Set(dst.id, dst.cached)
		dst.seq, dst.lastUsed = sl.seq, sl.lastUsed
		dst.seq.slot = dst
		sl.seq = nil
		most++
		s.moves.Add(1)
		s.m.slotMoves.Inc()
	}
}

func commonPrefix(a, b []engine.Token) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// reapCancelled ends sequences whose caller went away; their slot and KV are freed
// before the next step is built.
func (s *Scheduler) reapCancelled() {
	for _, sq := range s.active {
		if sq.ctx.Err() != nil {
			s.finish(sq, FinishCancelled, nil)
		}
	}
	s.compact()
}

// runStep plans, builds and decodes one batch, then samples and emits tokens.
func (s *Scheduler) runStep() {
	s.views = s.views[:0]
	now := time.Now()
	for _, sq := range s.active {
		if sq.aside.busy { // waits for its token (aside.go)
			continue
		}
		v := SeqView{Slot: sq.slot.id, Decoding: sq.next >= 0, PromptLeft: len(sq.input) - sq.nPast, Past: sq.nPast}
		if v.Decoding {
			v.PromptLeft = 0
		} else if v.PromptLeft > 0 && sq.firstTok.IsZero() && sq.req.Priority == Interactive {
			v.AwaitsFirst, v.Waited = true, now.Sub(sq.enqueued)
		}
		s.views = append(s.views, v)
	}
	in := StepInput{Seqs: s.views, BatchCap: s.batch.Cap(), MinChunk: minChunk}
	in.Budget = s.policy.budget(in, s.step)
	plan := PlanStep(in)
	s.firstOnly(&plan)

	// Entries go in increasing slot order: with per-sequence KV buffers llama.cpp
	// packs only runs of consecutive sequence ids into one micro-batch, so any other
	// order splits a step into several graph evaluations.
	chunk := s.chunk // tokens per slot this step: -1 decodes one token, 0 nothing
	clear(chunk)
	for _, id := range plan.Decode {
		chunk[id] = -1
	}
	for _, c := range plan.Prefill {
		chunk[c.Slot] = c.Tokens
	}
	_ = s.evaluate(chunk, plan) // a failed evaluation ended its sequences with the error
	s.compact()
}

// maxDeferrals bounds the fresh-prompt steps in a row that defer running sequences'
// decodes (firstOnly): a prompt that arrives while another's is evaluated is still
// evaluated first, and the decodes then run.
const maxDeferrals = 2

// firstOnly narrows plan to the prompt chunks that end a fresh request's prompt (its
// first token comes from this step) when the plan also holds other work; the other
// work is planned again at the next step. With per-sequence KV buffers llama.cpp
// evaluates such a chunk apart from the decodes of other sequences anyway (sequences
// advance by equal token counts within a micro-batch), so evaluating it first, in a
// step of its own, costs no evaluation more and sends the first token without waiting
// for the rest: a request admitted beside running streams gets its first token about
// as fast as alone, and one that arrives meanwhile is admitted before the others'
// decodes. Those decodes are deferred by at most maxDeferrals such steps in a row,
// each sized by the latency budget.
func (s *Scheduler) firstOnly(plan *StepPlan) {
	if s.cfg.Context.UnifiedKV {
		return
	}
	fresh := s.freshScratch[:0]
	for _, c := range plan.Prefill {
		sq := s.slots[c.Slot].seq
		if sq.nPast+c.Tokens == len(sq.input) && sq.firstTok.IsZero() {
			fresh = append(fresh, c)
		}
	}
	s.freshScratch = fresh
	if len(fresh) == 0 || len(fresh) == len(plan.Prefill) && len(plan.Decode) == 0 || s.deferred >= maxDeferrals {
		s.deferred = 0
		return
	}
	s.deferred++
	*plan = StepPlan{Prefill: slices.Clone(fresh)} // the plan outlives the scratch (Plan)
}

// evaluate builds the batch of chunk (tokens per slot: -1 decodes one token, 0
// nothing, n evaluates n prompt tokens) for plan, decodes it, records what the KV
// cache now holds and emits the sequences' next tokens. On a decode error the
// sequences of the chunk end with it.
func (s *Scheduler) evaluate(chunk []int, plan StepPlan) error {
	b := s.batch
	b.Clear()
	for id, n := range chunk {
		sq := s.slots[id].seq
		switch {
		case n < 0:
			sq.logitIdx, _ = b.Add(sq.next, sq.nPast, id, true)
		case n > 0:
			last := sq.nPast+n == len(sq.input)
			for k := 0; k < n; k++ {
				idx, _ := b.Add(sq.input[sq.nPast+k], sq.nPast+k, id, last && k == n-1)
				if last && k == n-1 {
					sq.logitIdx = idx
				}
			}
		}
	}
	if b.Len() == 0 {
		return nil
	}
	s.plan = plan
	if s.cfg.StepHook != nil {
		s.cfg.StepHook()
	}
	t0 := time.Now()
	err := s.ctx.Decode(b)
	dt := time.Since(t0)
	s.steps.Add(1)
	if err != nil {
		log.Error().Err(err).Str("model", s.cfg.Name).Int("tokens", b.Len()).Msg("decode step failed")
		for id, n := range chunk {
			if n != 0 {
				s.finish(s.slots[id].seq, FinishError, err)
			}
		}
		return err
	}
	s.step.Observe(s.policy.cost(plan, s.views), dt)
	s.m.stepTokens.Observe(float64(b.Len()))
	s.m.stepSeconds.Observe(dt.Seconds())

	// Account what is now in the KV cache.
	for id, n := range chunk {
		sq := s.slots[id].seq
		switch {
		case n < 0:
			sq.slot.cached = append(sq.slot.cached, sq.next)
			s.prefixes.Append(id, sq.next)
			sq.nPast++
		case n > 0:
			sq.slot.cached = append(sq.slot.cached, sq.input[sq.nPast:sq.nPast+n]...)
			s.prefixes.Append(id, sq.input[sq.nPast:sq.nPast+n]...)
			s.promptEv.Add(int64(n))
			sq.nPast += n
		}
	}
	now := time.Now()
	for _, sq := range s.active {
		if sq.logitIdx < 0 {
			continue
		}
		idx := sq.logitIdx
		sq.logitIdx = -1
		s.emitToken(sq, idx, now)
	}
	return nil
}

// emitToken samples sq's next token from batch entry idx and sends its text; a
// constrained sequence is sampled aside (aside.go).
func (s *Scheduler) emitToken(sq *seq, idx int, now time.Time) {
	if sq.sampler.Constrained() {
		s.sampleAside(sq, idx)
		return
	}
	tok, err := sq.sampler.Sample(s.ctx, s.batch, idx)
	var logits []float32
	if err == nil && sq.req.Logprobs {
		logits, _ = s.ctx.Logits(s.batch, idx)
	}
	s.emit(sq, tok, err, logits, now)
}

// emit sends sampled token tok (or ends sq on a sampling error), with its logprobs
// computed from logits when the request asked for them.
func (s *Scheduler) emit(sq *seq, tok engine.Token, err error, logits []float32, now time.Time) {
	if err != nil {
		s.finish(sq, FinishError, err)
		return
	}
	if sq.firstTok.IsZero() {
		sq.firstTok = now
		s.m.ttft.Observe(now.Sub(sq.enqueued).Seconds())
	} else {
		s.m.itl.Observe(now.Sub(sq.lastTok).Seconds())
	}
	sq.lastTok = now
	if !sq.req.IgnoreEOS && s.model.IsEOG(tok) {
		s.finish(sq, FinishStop, nil)
		return
	}
	sq.usage.CompletionTokens++
	s.m.genToks.Inc()
	s.q.charge(sq, s.cfg.Fairness.OutputCost)
	piece, err := s.model.TokenPiece(tok, sq.req.RenderSpecial)
	if err != nil {
		s.finish(sq, FinishError, err)
		return
	}
	ev := Event{Tokens: []engine.Token{tok}}
	if logits != nil {
		chosen, top := engine.Logprobs(logits, tok, sq.req.TopLogprobs)
		ev.Logprobs = []TokenLogprob{{Token: tok, Text: piece, Logprob: chosen.Logprob, Top: top}}
	}
	text, stopped := sq.text.push(piece)
	ev.Text = text
	s.send(sq, ev)
	switch {
	case stopped:
		s.finish(sq, FinishStop, nil)
	case sq.req.MaxTokens > 0 && sq.usage.CompletionTokens >= sq.req.MaxTokens:
		s.finish(sq, FinishLength, nil)
	case sq.nPast+1 >= s.seqCtx: // prompt + generated fill the sequence's context
		s.finish(sq, FinishLength, nil)
	default:
		sq.next = tok
	}
}

// finish ends sq: its slot is freed at once (a cancelled or failed sequence's KV is
// dropped; a completed one stays cached for prefix reuse), and the final event is
// queued for delivery.
func (s *Scheduler) finish(sq *seq, reason FinishReason, err error) {
	s.settleAside(sq) // its sampler is freed below: the token, if any, is dropped
	s.dropSwap(sq)
	if sl := sq.slot; sl != nil {
		if reason == FinishCancelled || reason == FinishError {
			_ = s.ctx.ClearSequence(sl.id)
			sl.cached = sl.cached[:0]
			s.prefixes.Truncate(sl.id, 0)
		}
		sl.seq = nil
		sq.slot = nil
	}
	s.q.done(sq)
	if sq.sampler != nil {
		sq.sampler.Close()
		sq.sampler = nil
	}
	now := time.Now()
	ev := Event{Done: true, Finish: reason, Usage: sq.usage, Err: err, Duration: now.Sub(sq.enqueued)}
	if reason == FinishStop {
		ev.StopSequence = sq.text.matched
	}
	if reason == FinishStop || reason == FinishLength {
		ev.Text = sq.text.flush() // text held back for a stop string that never came
	}
	if !sq.admitted.IsZero() {
		ev.Queued = sq.admitted.Sub(sq.enqueued)
	}
	if !sq.firstTok.IsZero() {
		ev.TimeToFirstToken = sq.firstTok.Sub(sq.enqueued)
	}
	s.m.finish(reason)
	s.m.e2e.Observe(ev.Duration.Seconds())
	sq.next = -1
	sq.final = true
	s.send(sq, ev)
	if sq.hasBack {
		s.draining = append(s.draining, sq)
	}
}

// send delivers ev without ever blocking the loop: when the consumer is behind, output
// is merged into a backlog that later steps deliver.
func (s *Scheduler) send(sq *seq, ev Event) {
	if sq.hasBack {
		sq.backlog = mergeEvents(sq.backlog, ev)
		ev = sq.backlog
	}
	if ev.Done && sq.ctx.Err() != nil {
		// The caller cancelled and may have stopped reading: drop what it has not
		// read so that the final event always fits.
		makeRoom(sq.out)
	}
	select {
	case sq.out <- ev:
		sq.hasBack = false
		sq.backlog = Event{}
		if ev.Done {
			close(sq.out)
			s.inflight.Add(-1)
		}
	default:
		sq.backlog, sq.hasBack = ev, true
	}
}

// makeRoom discards unread events until ch has room for one more.
func makeRoom(ch chan Event) {
	for len(ch) == cap(ch) {
		select {
		case <-ch:
		default:
		}
	}
}

func mergeEvents(a, b Event) Event {
	a.Text += b.Text
	a.Tokens = append(a.Tokens, b.Tokens...)
	a.Logprobs = append(a.Logprobs, b.Logprobs...)
	if b.Done {
		a.Done, a.Finish, a.Usage, a.Err, a.StopSequence = true, b.Finish, b.Usage, b.Err, b.StopSequence
		a.Queued, a.TimeToFirstToken, a.Duration = b.Queued, b.TimeToFirstToken, b.Duration
	}
	return a
}

// deliverDraining retries final events of finished sequences with slow consumers.
func (s *Scheduler) deliverDraining() {
	kept := s.draining[:0]
	for _, sq := range s.draining {
		s.send(sq, Event{})
		if sq.hasBack {
			kept = append(kept, sq)
		}
	}
	clear(s.draining[len(kept):])
	s.draining = kept
	for _, sq := range s.active { // also flush backlogs of running streams
		if sq.hasBack {
			s.send(sq, Event{})
		}
	}
}

// compact drops finished sequences from the active list.
func (s *Scheduler) compact() {
	kept := s.active[:0]
	for _, sq := range s.active {
		if sq.slot != nil {
			kept = append(kept, sq)
		}
	}
	clear(s.active[len(kept):])
	s.active = kept
}

// publish refreshes the Stats snapshot and gauges.
func (s *Scheduler) publish() {
	kv, cached, runs := 0, 0, 0
	for i, sl := range s.slots {
		if sl.seq != nil {
			kv += len(sl.cached)
			if i == 0 || s.slots[i-1].seq == nil {
				runs++
			}
		} else {
			cached += len(sl.cached)
		}
	}
	backlogged, spread := s.q.state()
	st := &Stats{Slots: len(s.slots), Running: len(s.active), QueueCapacity: s.q.capacity,
		Backlogged: backlogged, ServiceSpread: spread,
		KVUsed: kv, KVCached: cached, KVCapacity: s.seqCtx * len(s.slots), Steps: s.steps.Load(),
		Runs: runs, Moves: s.moves.Load(), Preemptions: s.preempts.Load(), SwapIns: s.swapIns.Load(), SwapBytes: s.swapBytes.Load(),
		SharedPrefixes: s.shared.Load(), PromptEvaluated: s.promptEv.Load(), Parked: len(s.parked),
		LastStep: time.Unix(0, s.last.Load()), StepModel: s.step}
	s.stats.Store(st)
	s.m.running.Set(float64(len(s.active)))
	s.m.queueDepth.Set(float64(s.q.len()))
	s.m.backlogged.Set(float64(backlogged))
	s.m.spread.Set(spread)
	s.m.kvUsage.Set(float64(kv) / float64(st.KVCapacity))
	s.m.kvCached.Set(float64(cached) / float64(st.KVCapacity))
}

// shutdown ends everything still running or queued with ErrClosed and frees C memory.
func (s *Scheduler) shutdown() {
	for _, sq := range append(s.active, s.parked...) {
		s.finish(sq, FinishError, ErrClosed)
	}
	s.active, s.parked = nil, nil
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for _, sq := range s.q.drain() {
		s.finish(sq, FinishError, ErrClosed)
	}
	// Final events of slow consumers: the channel has room for at least one event
	// once the consumer reads; give them a bounded time, then drop.
	deadline := time.Now().Add(time.Second)
	for len(s.draining) > 0 && time.Now().Before(deadline) {
		s.deliverDraining()
		time.Sleep(time.Millisecond)
	}
	for _, sq := range s.draining { // consumers that stopped reading: make room for the end
		makeRoom(sq.out)
		s.send(sq, Event{})
	}
	s.draining = nil
	s.batch.Free()
	s.ctx.Close()
	s.publish()
}
