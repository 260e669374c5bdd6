package sched

import (
	"time"

	"github.com/hxp-ai/hxp/engine"
)

// Constrained sequences are sampled aside. Checking a grammar costs microseconds when
// it accepts the token the chain picked, but a rejection filters the whole vocabulary
// through it: milliseconds per token. Done on the loop, that stalls every other
// sequence's step. Instead, a constrained sequence's logits are copied and sampled on
// a goroutine of its own while the loop goes on decoding the others; the sequence
// sits out the steps until its token is ready (its ITL is the longer of its sampling
// and a step, not their sum), and the loop waits for it only when nothing else can
// run. Unconstrained sequences are sampled on the loop as before: for them a goroutine
// would cost more than the sampling.

// sampled is one aside sampling's outcome.
type sampled struct {
	tok engine.Token
	err error
}

// aside is a sequence's sampling off the loop: its channel and the copy of the
// logits it samples (kept for the token's logprobs).
type aside struct {
	result chan sampled // buffered; one value per sampleAside
	logits []float32
	busy   bool // a sampling is running: the sampler and logits are the goroutine's
}

// sampleAside copies the logits of batch entry idx and samples them on a goroutine;
// the loop collects the token with collectAside.
func (s *Scheduler) sampleAside(sq *seq, idx int) {
	l, err := s.ctx.Logits(s.batch, idx)
	if err != nil {
		s.finish(sq, FinishError, err)
		return
	}
	a := &sq.aside
	if a.result == nil {
		a.result = make(chan sampled, 1)
	}
	a.logits = append(a.logits[:0], l...)
	a.busy = true
	sq.next = -1 // out of the steps until its token is ready
	smp, logits, result, ready := sq.sampler, a.logits, a.result, s.asideReady
	go func() {
		tok, err := smp.SampleLogits(logits)
		result <- sampled{tok, err}
		select { // wake a loop waiting for a sampling
		case ready <- struct{}{}:
		default:
		}
	}()
}

// collectAside emits the tokens whose sampling has finished.
func (s *Scheduler) collectAside() {
	for _, sq := range s.active {
		if !sq.aside.busy {
			continue
		}
		select {
		case r := <-sq.aside.result:
			s.emitAside(sq, r)
		default:
		}
	}
	s.compact()
}

// sampling reports whether a running sequence waits for its token.
func (s *Scheduler) sampling() bool {
	for _, sq := range s.active {
		if sq.aside.busy {
			return true
		}
	}
	return false
}

// awaitAside blocks until a sampling finishes, a request arrives or the scheduler
// closes; the loop calls it when every sequence that could run waits for its token.
func (s *Scheduler) awaitAside() {
	select {
	case <-s.asideReady:
	case <-s.q.wake:
	case <-s.quit:
	}
}

// settleAside waits for sq's sampling, if one runs, and hands back its outcome: the
// sampler and logits are the loop's again.
func (s *Scheduler) settleAside(sq *seq) (sampled, bool) {
	if !sq.aside.busy {
		return sampled{}, false
	}
	r := <-sq.aside.result
	sq.aside.busy = false
	return r, true
}

// emitAside emits the token of a finished aside sampling.
func (s *Scheduler) emitAside(sq *seq, r sampled) {
	sq.aside.busy = false
	var logits []float32
	if sq.req.Logprobs {
		logits = sq.aside.logits
	}
	s.emit(sq, r.tok, r.err, logits, time.Now())
}
