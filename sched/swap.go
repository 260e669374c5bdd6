package sched

import "github.com/rs/zerolog/log"

// Preempted sequences keep their work. A sequence that gives its slot back
// (PickVictim) has its KV cache saved to host memory (engine.SaveSequence); when it
// resumes in a slot that no longer holds its tokens, the cache is restored
// (engine.RestoreSequence) and only the token it sampled last is evaluated, instead of
// its whole prompt and output so far. What the saved caches may take in all is
// bounded (Fairness.PreemptSwapBytes); past the bound, or when the engine refuses, a
// sequence resumes by evaluating its tokens again, as before: the output is the same
// either way.

// swapped is a preempted sequence's saved KV cache: data holds its first past tokens.
type swapped struct {
	data []byte
	past int
}

// swapOut saves the KV cache of sq, preempted from slot sl with its first past tokens
// evaluated, when the bound allows; false when it was not saved.
func (s *Scheduler) swapOut(sq *seq, sl *slot, past int) bool {
	limit := s.cfg.Fairness.PreemptSwapBytes
	if limit < 0 || past == 0 {
		return false
	}
	if len(sl.cached) > past { // the saved cache must be exactly its past tokens
		if err := s.ctx.RemoveTokens(sl.id, past, -1); err != nil {
			return false
		}
		sl.cached = sl.cached[:past]
		s.prefixes.Truncate(sl.id, past)
	}
	data, err := s.ctx.SaveSequence(sl.id)
	if err != nil || s.swapBytes.Load()+int64(len(data)) > limit {
		return false
	}
	sq.swap = &swapped{data: data, past: past}
	s.swapBytes.Add(int64(len(data)))
	return true
}

// swapIn restores sq's saved cache into slot sl when it holds fewer of sq's tokens
// than the save, and returns how many of sq's input tokens sl then holds (reuse when
// nothing was restored). The saved cache is released either way.
func (s *Scheduler) swapIn(sq *seq, sl *slot, reuse int) int {
	sw := sq.swap
	if sw == nil {
		return reuse
	}
	s.dropSwap(sq)
	if reuse >= sw.past || sw.past >= len(sq.input) {
		return reuse
	}
	if err := s.ctx.RestoreSequence(sl.id, sw.data); err != nil {
		log.Warn().Err(err).Str("model", s.cfg.Name).Int("slot", sl.id).Msg("a preempted sequence's saved KV cache was not restored; it is evaluated again")
		sl.cached = sl.cached[:0]
		s.prefixes.Truncate(sl.id, 0)
		return 0
	}
	sl.cached = append(sl.cached[:0], sq.input[:sw.past]...)
	s.prefixes.Set(sl.id, sl.cached)
	s.swapIns.Add(1)
	return sw.past
}

// dropSwap releases sq's saved cache, if any.
func (s *Scheduler) dropSwap(sq *seq) {
	if sq.swap != nil {
		s.swapBytes.Add(-int64(len(sq.swap.data)))
		sq.swap = nil
	}
}
