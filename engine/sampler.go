package engine

/*
#include <stdbool.h>
#include <stdlib.h>
#include "llama.h"

struct llama_sampler * hxp_sampler_init_grammar(const struct llama_vocab * vocab, const char * grammar,
	const char ** patterns, size_t n_patterns, const llama_token * tokens, size_t n_tokens);
llama_token hxp_sampler_sample(struct llama_sampler * chain, struct llama_sampler * grammar, struct llama_context * ctx,
	int32_t idx, llama_token_data * buf, int32_t cap, bool grammar_first, int32_t * redrawn);
llama_token hxp_sampler_sample_logits(struct llama_sampler * chain, struct llama_sampler * grammar, const float * logits,
	int32_t n_vocab, llama_token_data * buf, int32_t cap, bool grammar_first, int32_t * redrawn);
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
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
	// GrammarTriggers make the grammar lazy: it constrains nothing until the output
	// so far (all of it, from the first generated token) matches one of these
	// regular expressions, and from then on constrains the output from the
	// pattern's first capture group on (or from the start of the match). Patterns
	// use the syntax common to Go's regexp and ECMAScript (llama.cpp matches them
	// with std::regex); TriggerPattern builds one from literal words.
	GrammarTriggers []string
	// GrammarTriggerTokens make the grammar lazy too: it starts constraining at
	// the first of these tokens (the token included), e.g. a <tool_call> special token.
	GrammarTriggerTokens []Token
}

// MaxGrammarBytes bounds SamplingParams.Grammar.
const MaxGrammarBytes = 1 << 20

// ErrGrammarDeadEnd is returned by Sample when the grammar allows none of the
// model's tokens (for example a grammar needing characters no token spells).
var ErrGrammarDeadEnd = errors.New("engine: the grammar allows no token here")

// TriggerPattern returns a GrammarTriggers pattern that fires at the first
// occurrence of any of words (literal text, e.g. "<tool_call>"), the grammar then
// applying from that word on.
func TriggerPattern(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = regexp.QuoteMeta(w)
	}
	return `[\s\S]*?(` + strings.Join(q, "|") + `)[\s\S]*`
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
	case len(p.Grammar) > MaxGrammarBytes:
		return bad("grammar", fmt.Sprintf("(%d bytes)", len(p.Grammar)), fmt.Sprintf("at most %d bytes", MaxGrammarBytes))
	case strings.IndexByte(p.Grammar, 0) >= 0:
		return bad("grammar", "(text with a NUL byte)", "GBNF text without NUL bytes")
	case p.Grammar == "" && (len(p.GrammarTriggers) > 0 || len(p.GrammarTriggerTokens) > 0):
		return bad("grammar_triggers", p.GrammarTriggers, "triggers need a grammar")
	}
	for i, pat := range p.GrammarTriggers {
		if _, err := regexp.Compile(pat); err != nil || pat == "" || strings.IndexByte(pat, 0) >= 0 {
			return bad(fmt.Sprintf("grammar_triggers[%d]", i), pat, "a non-empty regular expression in the syntax common to Go and ECMAScript")
		}
	}
	for i, t := range p.GrammarTriggerTokens {
		if t < 0 {
			return bad(fmt.Sprintf("grammar_trigger_tokens[%d]", i), t, "a token id >= 0")
		}
	}
	return nil
}

// Greedy reports whether sampling is deterministic argmax.
func (p SamplingParams) Greedy() bool { return p.Temperature == 0 }

// Sampler is a llama.cpp sampler chain for one sequence and its grammar, with its own
// candidate buffer (one entry per vocabulary token). Not safe for concurrent use.
type Sampler struct {
	c       *C.struct_llama_sampler // the chain, without the grammar
	grammar *C.struct_llama_sampler // nil without a grammar
	buf     *C.llama_token_data
	nVocab  int
	// grammarFirst filters every candidate through the grammar before the chain
	// picks (the slow way, for the benchmark that compares the two); otherwise the
	// grammar checks only the chain's pick, and filters all candidates on a rejection.
	grammarFirst bool
	redrawn      C.int32_t // picks the grammar rejected and that were drawn again
}

// NewSampler builds the chain: penalties, top-k, top-p, min-p, temperature, then a
// seeded random draw; or penalties and argmax at temperature 0. A grammar is kept
// beside the chain: Sample checks the chain's pick against it and redraws from the
// grammar's candidates only when it is rejected, which gives the same distribution
// as filtering first at a fraction of the cost.
// A grammar that llama.cpp cannot parse (or that is left-recursive) is an error
// wrapping ErrInvalidArgument.
func (m *Model) NewSampler(p SamplingParams) (*Sampler, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("engine: sampler: %w", err)
	}
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	nVocab := int(C.llama_vocab_n_tokens(m.vocab))
	for i, t := range p.GrammarTriggerTokens {
		if int(t) >= nVocab {
			return nil, fmt.Errorf("engine: sampler: grammar_trigger_tokens[%d]=%d: %w (0..%d)", i, t, ErrInvalidArgument, nVocab-1)
		}
	}
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
	s := &Sampler{c: chain, nVocab: nVocab}
	if p.Grammar != "" {
		if s.grammar = m.grammarSampler(p); s.grammar == nil {
			C.llama_sampler_free(chain)
			return nil, fmt.Errorf("engine: sampler: llama.cpp refused the grammar (a GBNF syntax error, an undefined rule, left recursion or a trigger pattern std::regex cannot compile; its log says which): %w", ErrInvalidArgument)
		}
	}
	s.buf = (*C.llama_token_data)(C.malloc(C.size_t(nVocab) * C.size_t(unsafe.Sizeof(C.llama_token_data{}))))
	if p.Greedy() {
		add(C.llama_sampler_init_greedy())
		return s, nil
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
	return s, nil
}

// grammarSampler returns p's grammar sampler (lazy when p has triggers), or nil when
// llama.cpp refuses it.
func (m *Model) grammarSampler(p SamplingParams) *C.struct_llama_sampler {
	g := C.CString(p.Grammar)
	defer C.free(unsafe.Pointer(g))
	var pats **C.char
	if n := len(p.GrammarTriggers); n > 0 {
		arr := unsafe.Slice((**C.char)(C.malloc(C.size_t(n)*C.size_t(unsafe.Sizeof(uintptr(0))))), n)
		for i, s := range p.GrammarTriggers {
			arr[i] = C.CString(s)
			defer C.free(unsafe.Pointer(arr[i]))
		}
		defer C.free(unsafe.Pointer(&arr[0]))
		pats = &arr[0]
	}
	var toks *C.llama_token
	if n := len(p.GrammarTriggerTokens); n > 0 {
		arr := unsafe.Slice((*C.llama_token)(C.malloc(C.size_t(n)*C.size_t(unsafe.Sizeof(C.llama_token(0))))), n)
		for i, t := range p.GrammarTriggerTokens {
			arr[i] = C.llama_token(t)
		}
		defer C.free(unsafe.Pointer(&arr[0]))
		toks = &arr[0]
	}
	return C.hxp_sampler_init_grammar(m.vocab, g, pats, C.size_t(len(p.GrammarTriggers)), toks, C.size_t(len(p.GrammarTriggerTokens)))
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
	if ctx.model.info.VocabSize != s.nVocab {
		return -1, fmt.Errorf("engine: sample: the sampler was built for another model's vocabulary (%d tokens, context has %d): %w", s.nVocab, ctx.model.info.VocabSize, ErrInvalidArgument)
	}
	return s.result(C.hxp_sampler_sample(s.c, s.grammar, ctx.c, C.int32_t(i), s.buf, C.int32_t(s.nVocab), C.bool(s.grammarFirst), &s.redrawn))
}

// SampleLogits is Sample over a copy of one batch entry's logits (Context.Logits,
// copied before the next Decode), so that a constrained sequence's sampling can run
// on another goroutine while the context decodes the next batch.
func (s *Sampler) SampleLogits(logits []float32) (Token, error) {
	if s.c == nil {
		return -1, ErrClosed
	}
	if len(logits) != s.nVocab {
		return -1, fmt.Errorf("engine: sample: %d logits for a sampler of %d tokens: %w", len(logits), s.nVocab, ErrInvalidArgument)
	}
	return s.result(C.hxp_sampler_sample_logits(s.c, s.grammar, (*C.float)(unsafe.Pointer(&logits[0])), C.int32_t(len(logits)), s.buf, C.int32_t(s.nVocab), C.bool(s.grammarFirst), &s.redrawn))
}

// Constrained reports whether s has a grammar, whose check can cost milliseconds per
// token (see SampleLogits).
func (s *Sampler) Constrained() bool { return s.grammar != nil }

// result turns hxp_sampler_sample's answer into a token or an error.
func (s *Sampler) result(t C.llama_token) (Token, error) {
	switch t {
	case -1:
		return -1, ErrGrammarDeadEnd
	case -2:
		return -1, fmt.Errorf("engine: sample: llama.cpp failed (see its log)")
	case -3:
		return -1, fmt.Errorf("engine: sample: vocabulary larger than the sampler's buffer: %w", ErrInvalidArgument)
	default:
		return Token(t), nil
	}
}

// Close frees the sampler chain, its grammar and its buffer.
func (s *Sampler) Close() {
	if s.c != nil {
		C.llama_sampler_free(s.c)
		if s.grammar != nil {
			C.llama_sampler_free(s.grammar)
		}
		C.free(unsafe.Pointer(s.buf))
		s.c, s.grammar, s.buf = nil, nil, nil
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
