package engine

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"math"
	"sort"
	"unsafe"
)

// SamplingParams chooses how the next token is picked. The zero value is greedy.
type SamplingParams struct {
	Temperature      float32 // 0 = greedy (argmax); otherwise 0 < t <= 2
	TopK             int     // 0 = off
	TopP             float32 // 0 or 1 = off
	MinP             float32 // 0 = off
	RepeatPenalty    float32 // 0 or 1 = off
	FrequencyPenalty float32 // -2..2
	PresencePenalty  float32 // -2..2
	PenaltyLastN     int     // tokens considered by penalties; 0 = 64
	Seed             uint32  // random seed for temperature sampling
	// Grammar is a GBNF grammar constraining the output (root rule "root"), or "".
	Grammar string
}

// Validate checks ranges, naming the field and what is allowed.
func (p SamplingParams) Validate() error {
	bad := func(field string, v any, allowed string) error {
		return fmt.Errorf("%s=%v: %w (%s)", field, v, ErrInvalidArgument, allowed)
	}
	finite := func(f float32) bool { return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) }
	switch {
	case !finite(p.Temperature) || p.Temperature < 0 || p.Temperature > 2:
		return bad("temperature", p.Temperature, "0..2")
	case p.TopK < 0:
		return bad("top_k", p.TopK, ">= 0")
	case !finite(p.TopP) || p.TopP < 0 || p.TopP > 1:
		return bad("top_p", p.TopP, "0..1")
	case !finite(p.MinP) || p.MinP < 0 || p.MinP > 1:
		return bad("min_p", p.MinP, "0..1")
	case !finite(p.RepeatPenalty) || p.RepeatPenalty < 0 || p.RepeatPenalty > 10:
		return bad("repeat_penalty", p.RepeatPenalty, "0..10")
	case !finite(p.FrequencyPenalty) || p.FrequencyPenalty < -2 || p.FrequencyPenalty > 2:
		return bad("frequency_penalty", p.FrequencyPenalty, "-2..2")
	case !finite(p.PresencePenalty) || p.PresencePenalty < -2 || p.PresencePenalty > 2:
		return bad("presence_penalty", p.PresencePenalty, "-2..2")
	case p.PenaltyLastN < 0 || p.PenaltyLastN > 1<<16:
		return bad("penalty_last_n", p.PenaltyLastN, "0..65536")
	}
	return nil
}

// Greedy reports whether sampling is deterministic argmax.
func (p SamplingParams) Greedy() bool { return p.Temperature == 0 }

// Sampler is a llama.cpp sampler chain for one sequence. Not safe for concurrent use.
type Sampler struct {
	c *C.struct_llama_sampler
}

// NewSampler builds the chain: penalties, grammar, top-k, top-p, min-p, temperature,
// then a seeded random draw; or penalties, grammar and argmax at temperature 0.
func (m *Model) NewSampler(p SamplingParams) (*Sampler, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("engine: sampler: %w", err)
	}
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	cp := C.llama_sampler_chain_default_params()
	cp.no_perf = true
	chain := C.llama_sampler_chain_init(cp)
	add := func(s *C.struct_llama_sampler) { C.llama_sampler_chain_add(chain, s) }
	rep := p.RepeatPenalty
	if rep == 0 {
		rep = 1
	}
	if rep != 1 || p.FrequencyPenalty != 0 || p.PresencePenalty != 0 {
		lastN := p.PenaltyLastN
		if lastN == 0 {
			lastN = 64
		}
		add(C.llama_sampler_init_penalties(C.int32_t(lastN), C.float(rep), C.float(p.FrequencyPenalty), C.float(p.PresencePenalty)))
	}
	if p.Grammar != "" {
		g, root := C.CString(p.Grammar), C.CString("root")
		gs := C.llama_sampler_init_grammar(m.vocab, g, root)
		C.free(unsafe.Pointer(g))
		C.free(unsafe.Pointer(root))
		if gs == nil {
			C.llama_sampler_free(chain)
			return nil, fmt.Errorf("engine: sampler: grammar does not parse: %w", ErrInvalidArgument)
		}
		add(gs)
	}
	if p.Greedy() {
		add(C.llama_sampler_init_greedy())
		return &Sampler{c: chain}, nil
	}
	if p.TopK > 0 {
		add(C.llama_sampler_init_top_k(C.int32_t(p.TopK)))
	}
	if p.TopP > 0 && p.TopP < 1 {
		add(C.llama_sampler_init_top_p(C.float(p.TopP), 1))
	}
	if p.MinP > 0 {
		add(C.llama_sampler_init_min_p(C.float(p.MinP), 1))
	}
	add(C.llama_sampler_init_temp(C.float(p.Temperature)))
	add(C.llama_sampler_init_dist(C.uint32_t(p.Seed)))
	return &Sampler{c: chain}, nil
}

// Sample picks the next token from batch entry i of ctx's last Decode and records it
// in the sampler's state (penalties, grammar).
func (s *Sampler) Sample(ctx *Context, b *Batch, i int) (Token, error) {
	if s.c == nil {
		return -1, ErrClosed
	}
	if i < 0 || i >= b.n || !b.wantsLogits(i) {
		return -1, fmt.Errorf("engine: sample batch entry %d: no logits requested: %w", i, ErrInvalidArgument)
	}
	t := Token(C.llama_sampler_sample(s.c, ctx.c, C.int32_t(i)))
	if t < 0 {
		return -1, fmt.Errorf("engine: sampler returned no token (grammar dead end?)")
	}
	return t, nil
}

// Close frees the sampler chain.
func (s *Sampler) Close() {
	if s.c != nil {
		C.llama_sampler_free(s.c)
		s.c = nil
	}
}

// TokenProb is a token with its log-probability under the model.
type TokenProb struct {
	Token   Token
	Logprob float32
}

// Logprobs computes, from raw logits, the log-probability of token chosen and the top
// n alternatives (most likely first), as OpenAI's logprobs report them.
func Logprobs(logits []float32, chosen Token, n int) (TokenProb, []TokenProb) {
	maxL := float32(math.Inf(-1))
	for _, l := range logits {
		if l > maxL {
			maxL = l
		}
	}
	var sum float64
	for _, l := range logits {
		sum += math.Exp(float64(l - maxL))
	}
	logZ := float64(maxL) + math.Log(sum)
	lp := func(t Token) float32 { return float32(float64(logits[t]) - logZ) }
	var c TokenProb
	if chosen >= 0 && int(chosen) < len(logits) {
		c = TokenProb{Token: chosen, Logprob: lp(chosen)}
	}
	if n <= 0 {
		return c, nil
	}
	n = min(n, len(logits))
	// Keep the n best in a small sorted slice: O(V*n) with n <= 20.
	top := make([]TokenProb, 0, n+1)
	for t, l := range logits {
		if len(top) == n && l <= logits[top[n-1].Token] {
			continue
		}
		k := sort.Search(len(top), func(j int) bool { return logits[top[j].Token] < l })
		top = append(top, TokenProb{})
		copy(top[k+1:], top[k:])
		top[k] = TokenProb{Token: Token(t)}
		if len(top) > n {
			top = top[:n]
		}
	}
	for j := range top {
		top[j].Logprob = lp(top[j].Token)
	}
	return c, top
}
