package sched

import (
	"math"
	"time"
)

// StepModel predicts the duration of one decode step from its token count,
// t(n) = Fixed + PerToken*n, fitted online by least squares with exponential
// forgetting, so it follows the machine's current speed (other models, thermal
// limits, a noisy neighbour).
type StepModel struct {
	Fixed    time.Duration // per-step cost (graph build, weights read once)
	PerToken time.Duration // marginal cost of one more token in the batch
	Samples  int
	// weighted sums for the fit
	sw, sn, st, snn, snt float64
}

// stepModelDecay is the weight kept by past samples per new one (~50-step memory).
const stepModelDecay = 0.98

// Observe adds one measured step.
func (m *StepModel) Observe(n int, d time.Duration) {
	x, y := float64(n), d.Seconds()
	m.sw = m.sw*stepModelDecay + 1
	m.sn = m.sn*stepModelDecay + x
	m.st = m.st*stepModelDecay + y
	m.snn = m.snn*stepModelDecay + x*x
	m.snt = m.snt*stepModelDecay + x*y
	m.Samples++
	den := m.sw*m.snn - m.sn*m.sn
	if den <= 1e-9*m.sw*m.snn || m.Samples < 2 {
		// All samples had the same size: attribute the time per token.
		if m.sn > 0 {
			m.PerToken = time.Duration(m.st / m.sn * float64(time.Second))
			m.Fixed = 0
		}
		return
	}
	b := (m.sw*m.snt - m.sn*m.st) / den
	a := (m.st - b*m.sn) / m.sw
	if b <= 0 { // noise; fall back to the mean cost per token
		b, a = m.st/math.Max(m.sn, 1), 0
	}
	m.Fixed = time.Duration(math.Max(a, 0) * float64(time.Second))
	m.PerToken = time.Duration(b * float64(time.Second))
}

// Predict returns the expected duration of a step of n tokens.
func (m StepModel) Predict(n int) time.Duration {
	return m.Fixed + time.Duration(n)*m.PerToken
}

// TokensWithin returns how many tokens one step can hold and still finish within d,
// or -1 when the model has too few samples to say.
func (m StepModel) TokensWithin(d time.Duration) int {
	if m.Samples < 4 || m.PerToken <= 0 {
		return -1
	}
	return int((d - m.Fixed) / m.PerToken)
}

// SeqView is what the policy needs to know about one active sequence.
type SeqView struct {
	Slot       int
	Decoding   bool // has a sampled token to feed back this step
	PromptLeft int  // prompt tokens not yet in the KV cache
}

// StepInput is the scheduler state one decision is made from. Seqs are in
// admission order, oldest first.
type StepInput struct {
	Seqs     []SeqView
	BatchCap int // n_batch: the most tokens one decode takes
	Budget   int // tokens this step may hold to stay inside the latency target
	MinChunk int // prompt tokens granted per step even when the budget is spent
}

// Chunk is a part of one sequence's prompt evaluated in a step.
type Chunk struct{ Slot, Tokens int }

// StepPlan is the policy's decision for one step.
type StepPlan struct {
	Decode  []int   // slots that decode one token
	Prefill []Chunk // prompt chunks, oldest request first
}

// Tokens is the batch size of the plan.
func (p StepPlan) Tokens() int {
	n := len(p.Decode)
	for _, c := range p.Prefill {
		n += c.Tokens
	}
	return n
}

// PlanStep decides one step. Every decoding sequence gets its next token (running
// streams are never paused); the rest of the budget goes to waiting prompts, oldest
// first; when the budget is spent the oldest prompt still gets MinChunk tokens so
// that prefill always progresses. Nothing exceeds BatchCap.
func PlanStep(in StepInput) StepPlan {
	var p StepPlan
	for _, s := range in.Seqs {
		if s.Decoding && len(p.Decode) < in.BatchCap {
			p.Decode = append(p.Decode, s.Slot)
		}
	}
	room := min(in.Budget, in.BatchCap) - len(p.Decode)
	hardRoom := in.BatchCap - len(p.Decode)
	if room < in.MinChunk {
		room = min(in.MinChunk, hardRoom)
	}
	for _, s := range in.Seqs {
		if room <= 0 {
			break
		}
		if s.Decoding || s.PromptLeft == 0 {
			continue
		}
		n := min(s.PromptLeft, room)
		p.Prefill = append(p.Prefill, Chunk{Slot: s.Slot, Tokens: n})
		room -= n
	}
	return p
}

// budgetPolicy turns the latency target into a per-step token budget.
type budgetPolicy struct {
	batchCap  int
	targetITL time.Duration
	fixed     int // >0: fixed prefill chunk; -1: no chunking
}

// defaultChunk is the prompt chunk used before the step model is calibrated.
const defaultChunk = 64

// minChunk is the least prompt progress per step while streams decode.
const minChunk = 16

// budget returns the step's token budget given how many sequences decode.
func (b budgetPolicy) budget(decoding int, m StepModel) int {
	switch {
	case b.fixed < 0:
		return b.batchCap
	case b.fixed > 0:
		return decoding + b.fixed
	case decoding == 0:
		// Nobody is waiting between tokens: evaluate prompts at full speed.
		return b.batchCap
	}
	n := m.TokensWithin(b.targetITL)
	if n < 0 {
		return decoding + defaultChunk
	}
	return max(n, decoding+minChunk)
}
