package sched

import (
	"github.com/rs/zerolog/log"

	"github.com/hxp-ai/hxp/engine"
)

// Shared prompts across slots.
//
// A slot reuses the prefix its own last request left in its KV cache (admit). When
// another slot holds a longer prefix of a new prompt (a system prompt or tool
// preamble that every request repeats), admission copies those cells into the new
// request's slot (engine.CopySequence, then the rest trimmed) instead of evaluating
// them again, and when a running request is still evaluating a prompt that shares a
// long prefix with a new one, the new one is parked without a slot's work until that
// prefix is in the cache, then copies it: sixteen requests with one long system
// prompt arriving at once on cold slots evaluate it once, not sixteen times.
//
// Copies are safe at admission, between steps: llama.cpp records which cells the
// destination holds at once and copies the data at the start of the next decode,
// before that step writes anything, so the source may be evaluating or generating in
// the same step; copies queued in one step run in order, so a chain (a copy into a
// slot that pack then moves) reads what the earlier copy wrote.

// minSharedPrefix is the least gain, in prompt tokens, for which admission copies
// another slot's prefix or parks a request to wait for one. A copy under per-sequence
// KV buffers moves a whole buffer (SeqCtx cells per layer) whatever it holds: a few
// tokens are cheaper to evaluate again.
const minSharedPrefix = 32

// PrefixAction is what admission does with a prompt's prefix.
type PrefixAction int

// Prefix actions.
const (
	// PrefixOwn reuses what the chosen free slot already holds.
	PrefixOwn PrefixAction = iota
	// PrefixCopy copies a longer prefix held by another slot.
	PrefixCopy
	// PrefixWait parks the request until a running one has evaluated the longer
	// prefix their prompts share, then decides again.
	PrefixWait
)

// PrefixChoice decides how a request gets its prompt prefix into the KV cache, from
// the tokens its chosen free slot already holds (own), the longest prefix another slot
// holds now (held) and the longest one a running request is still evaluating
// (pending), each at most the prompt's length minus one. Copying must gain at least
// minShared tokens over the own slot; so must waiting, and a request waits for the
// whole pending prefix, not just until what is held is nearly as long (its own
// evaluation of the rest would take a step as well).
func PrefixChoice(own, held, pending, minShared int) PrefixAction {
	switch {
	case pending > held && pending >= own+minShared:
		return PrefixWait
	case held >= own+minShared:
		return PrefixCopy
	default:
		return PrefixOwn
	}
}

// prefixOptions returns, for input, the longest prefix another slot holds now (its
// slot and length) and the longest one a running request is still evaluating, each
// capped at len(input)-1 (the last input token is always evaluated for its logits).
func (s *Scheduler) prefixOptions(input []engine.Token) (src *slot, held, pending int) {
	limit := len(input) - 1
	if id, n := s.prefixes.Longest(input); id >= 0 {
		src, held = s.slots[id], min(n, limit)
	}
	for _, a := range s.active {
		if a.next < 0 && a.nPast < len(a.input) && a.nPast < limit { // still evaluating its input
			pending = max(pending, min(commonPrefix(a.input, input), limit))
		}
	}
	return src, held, pending
}

// park reports whether sq should wait for a prefix a running request is evaluating,
// and if so holds it (with a slot reserved) until admitParked admits it.
func (s *Scheduler) park(sq *seq) bool {
	own := 0
	for _, sl := range s.slots {
		if sl.seq == nil {
			own = max(own, min(commonPrefix(sl.cached, sq.input), len(sq.input)-1))
		}
	}
	_, held, pending := s.prefixOptions(sq.input)
	if PrefixChoice(own, held, pending, minSharedPrefix) != PrefixWait {
		return false
	}
	s.parked = append(s.parked, sq)
	return true
}

// admitParked admits the parked requests that no longer gain by waiting (the prefix
// they waited for is in the cache, or the request evaluating it went away), and the
// cancelled ones, which admit ends at once.
func (s *Scheduler) admitParked() {
	if len(s.parked) == 0 {
		return
	}
	waiting := s.parked
	s.parked = nil
	for _, sq := range waiting {
		if sq.ctx.Err() != nil || !s.park(sq) {
			s.admit(sq)
		}
	}
}

// sharePrefix copies into dst the longest prefix of input another slot holds, when it
// gains at least minSharedPrefix tokens over the own tokens dst keeps; it returns the
// tokens dst now holds of input (own when nothing was copied).
func (s *Scheduler) sharePrefix(dst *slot, input []engine.Token, own int) int {
	src, held, _ := s.prefixOptions(input)
	if src == nil || src == dst || PrefixChoice(own, held, 0, minSharedPrefix) != PrefixCopy {
		return own
	}
	if err := s.ctx.CopySequence(src.id, dst.id); err != nil {
		log.Error().Err(err).Str("model", s.cfg.Name).Msg("copying a shared prompt prefix failed; evaluating it")
		return own
	}
	dst.cached = append(dst.cached[:0], src.cached[:held]...)
	s.prefixes.Set(dst.id, dst.cached)
	s.shared.Add(1)
	return held
}
