package sched

import (
	"math"
	"time"
)

// StepCost is what one decode step asks of the model: the quantities its duration is
// predicted from.
type StepCost struct {
	// Evals is the number of graph evaluations (micro-batches) llama.cpp splits the
	// step into; each reads every weight once.
	Evals int
	// Tokens is the batch size.
	Tokens int
	// Cells is the attention work: the KV cells each token attends to, summed. A
	// token at position p of its sequence attends to p+1 cells, so a prompt chunk
	// late in a long prompt costs more than the same chunk at its start.
	Cells int
}

// StepModel predicts the duration of a decode step from its cost,
// t = PerEval*Evals + PerToken*Tokens + PerCell*Cells, fitted online by
// non-negative least squares with exponential forgetting, so it follows the
// machine's current speed (other models, thermal limits, a noisy neighbour).
type StepModel struct {
	PerEval  time.Duration // one graph evaluation (the weights are read once per evaluation)
	PerToken time.Duration // one more token in the batch
	PerCell  float64       // seconds per attended KV cell
	Samples  int
	// Largest is the most tokens of an observed step: predictions are trusted up to
	// twice that, since a fit over small steps says little about much larger ones.
	Largest int
	// errMean and errVar are the forgetting mean and variance of the one-step-ahead
	// ratio measured/predicted (see Margin).
	errMean, errVar float64
	// Forgetting sums of the normal equations: xx = Σ x xᵀ, xy = Σ x t, yy = Σ t².
	xx [3][3]float64
	xy [3]float64
	yy float64
}

// stepModelDecay is the weight kept by past samples per new one (~50-step memory).
const stepModelDecay = 0.98

// outlierRatio is the measured/predicted ratio above which a step counts less in the
// fit (its weight falls as (outlierRatio/ratio)²).
const outlierRatio = 2.0

func (c StepCost) features() [3]float64 {
	return [3]float64{float64(c.Evals), float64(c.Tokens), float64(c.Cells)}
}

// Observe adds one measured step.
func (m *StepModel) Observe(c StepCost, d time.Duration) {
	x, y := c.features(), d.Seconds()
	w := 1.0 // the sample's weight in the fit
	if p := m.Predict(c).Seconds(); m.Ready() && p > 0 {
		r := y / p
		if m.errMean == 0 {
			m.errMean = r
		}
		diff := r - m.errMean
		m.errMean += (1 - stepModelDecay) * diff
		m.errVar = stepModelDecay * (m.errVar + (1-stepModelDecay)*diff*diff)
		// A step far slower than predicted was most likely preempted (another
		// process took the cores): it widens the margin but moves the fit less, so
		// one stall does not make the model distrust every chunk for 50 steps.
		if r > outlierRatio {
			w = (outlierRatio / r) * (outlierRatio / r)
		}
	}
	for i := range x {
		for j := range x {
			m.xx[i][j] = m.xx[i][j]*stepModelDecay + w*x[i]*x[j]
		}
		m.xy[i] = m.xy[i]*stepModelDecay + w*x[i]*y
	}
	m.yy = m.yy*stepModelDecay + w*y*y
	m.Samples++
	m.Largest = max(m.Largest, c.Tokens)
	fit := m.fit()
	m.PerEval = time.Duration(fit[0] * float64(time.Second))
	m.PerToken = time.Duration(fit[1] * float64(time.Second))
	m.PerCell = fit[2]
}

// fit solves the normal equations over every subset of the three features and keeps
// the non-negative solution with the least squared error (an exact NNLS for three
// unknowns). A feature the observed steps never varied is dropped by its subset
// losing nothing, not by a guess.
func (m *StepModel) fit() [3]float64 {
	var best [3]float64
	bestErr := math.Inf(1)
	for mask := 1; mask < 8; mask++ {
		var idx []int
		for i := 0; i < 3; i++ {
			if mask&(1<<i) != 0 {
				idx = append(idx, i)
			}
		}
		w, ok := m.solve(idx)
		if !ok {
			continue
		}
		// Weighted squared error: yy - 2 wᵀxy + wᵀ xx w.
		e := m.yy
		for _, i := range idx {
			e -= 2 * w[i] * m.xy[i]
			for _, j := range idx {
				e += w[i] * m.xx[i][j] * w[j]
			}
		}
		if e < bestErr*(1-1e-9) {
			best, bestErr = w, e
		}
	}
	return best
}

// solve returns the least-squares weights of the features in idx, false when they are
// negative or the system is singular (features that never varied independently).
func (m *StepModel) solve(idx []int) ([3]float64, bool) {
	n := len(idx)
	var a [3][4]float64
	for r, i := range idx {
		for c, j := range idx {
			a[r][c] = m.xx[i][j]
		}
		a[r][n] = m.xy[i]
	}
	for col := 0; col < n; col++ {
		piv := col
		for r := col + 1; r < n; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[piv][col]) {
				piv = r
			}
		}
		if math.Abs(a[piv][col]) <= 1e-9*math.Abs(m.xx[idx[col]][idx[col]]) || a[piv][col] == 0 {
			return [3]float64{}, false
		}
		a[col], a[piv] = a[piv], a[col]
		for r := 0; r < n; r++ {
			if r == col {
				continue
			}
			f := a[r][col] / a[col][col]
			for c := col; c <= n; c++ {
				a[r][c] -= f * a[col][c]
			}
		}
	}
	var w [3]float64
	for r, i := range idx {
		w[i] = a[r][n] / a[r][r]
		if w[i] < 0 {
			return [3]float64{}, false
		}
	}
	return w, true
}

// Margin is the factor to plan a step's predicted duration with so that the measured
// one stays within a target about 97% of the time: the mean plus two standard
// deviations of recent steps' measured/predicted ratio (predicted before each was
// observed), between 1 and 2.
func (m StepModel) Margin() float64 {
	if m.errMean == 0 {
		return 1
	}
	return min(max(m.errMean+2*math.Sqrt(m.errVar), 1), 2)
}

// Ready reports whether the model has seen enough steps to predict.
func (m StepModel) Ready() bool { return m.Samples >= 4 }

// Predict returns the expected duration of a step of cost c.
func (m StepModel) Predict(c StepCost) time.Duration {
	return time.Duration(c.Evals)*m.PerEval + time.Duration(c.Tokens)*m.PerToken +
		time.Duration(m.PerCell*float64(c.Cells)*float64(time.Second))
}

// Evals returns how many graph evaluations llama.cpp needs for a batch holding
// tokens[s] tokens of sequence s, written in sequence order. With per-sequence KV
// buffers it cuts the batch into micro-batches of equal tokens per sequence over runs
// of consecutive sequence ids (llama_batch_allocr::split_equal, sequential): a run of
// decoding sequences is one evaluation, and the rest of a prompt chunk in that run is
// another. With a unified buffer it just cuts every ubatch tokens.
func Evals(tokens []int, ubatch int, unified bool) int {
	ubatch = max(ubatch, 1)
	if unified {
		n := 0
		for _, t := range tokens {
			n += t
		}
		return (n + ubatch - 1) / ubatch
	}
	left := append([]int(nil), tokens...)
	evals := 0
	for {
		first := -1
		for s, t := range left {
			if t > 0 {
				first = s
				break
			}
		}
		if first < 0 {
			return evals
		}
		end, least := first, left[first]
		for end+1 < len(left) && left[end+1] > 0 {
			end++
			least = min(least, left[end])
		}
		take := min(least, max(ubatch/(end-first+1), 1))
		for s := first; s <= end; s++ {
			left[s] -= take
		}
		evals++
	}
}

// SeqView is what the policy needs to know about one active sequence.
type SeqView struct {
	Slot       int
	Decoding   bool // has a sampled token to feed back this step
	PromptLeft int  // prompt tokens not yet in the KV cache
	Past       int  // tokens in the KV cache (the position of the next one)
	// AwaitsFirst marks an interactive request still waiting for its first token (batch
	// requests have no first-token target); Waited is how long since it was submitted.
	AwaitsFirst bool
	Waited      time.Duration
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
	batchCap   int
	targetITL  time.Duration
	targetTTFT time.Duration // a prompt waiting longer than this stretches the step (allowance)
	strictITL  bool          // hold targetITL however late the waiting prompts are
	fixed      int           // >0: fixed prefill chunk; -1: no chunking
	slots      int           // sequences of the context
	ubatch     int           // llama.cpp's micro-batch size
	unified    bool
	scratch    []int
}

// allowance is the step time the budget plans for, given how long the waiting prompts
// will have waited at least (lateness). Within the time-to-first-token target it is the
// inter-token target. Past it, both targets are missed in proportion: a step may take
// as many times targetITL as that wait is times targetTTFT (a prompt 3x past its
// target allows a 3x step). Holding the inter-token target
// however late the prompts are makes a burst of long prompts wait for minimum-size
// chunks while running streams finish (their first tokens came 30x past the target on
// the bench model); evaluating whole prompts at once stalls every running stream for
// seconds, as llama-server does. strictITL keeps the first behaviour.
func (b *budgetPolicy) allowance(waited time.Duration) time.Duration {
	if b.strictITL || b.targetTTFT <= 0 || waited <= b.targetTTFT {
		return b.targetITL
	}
	return time.Duration(float64(b.targetITL) * (waited.Seconds() / b.targetTTFT.Seconds()))
}

// lateness is how long the waiting prompts will have waited, at least, when their own
// evaluation can start: for each interactive prompt still waiting for its first token,
// what it has waited plus the model's prediction for evaluating every prompt ahead of
// it (PlanStep grants chunks oldest first) with nothing else in the steps; the latest
// of these. A burst of long prompts is thus known to be late from its first step, not
// only once its prompts have waited past the target while the steps stayed small. A
// prompt's own evaluation is not counted: a long prompt alone still stretches the
// steps only as it waits (counting it stretched them early, and the larger steps
// missed the inter-token target by more than the prompt missed its own:
// BenchmarkChunkedPrefill's streams' p99 went from 3x to 5x the target for a first
// token at 2.7x instead of 3.5x). Before the step model is calibrated it is the
// longest wait so far.
func (b *budgetPolicy) lateness(in StepInput, m StepModel) time.Duration {
	var worst time.Duration
	var ahead StepCost
	for _, v := range in.Seqs {
		if v.Decoding || v.PromptLeft == 0 {
			continue
		}
		if v.AwaitsFirst {
			due := v.Waited
			if m.Ready() {
				due += m.Predict(ahead)
			}
			worst = max(worst, due)
		}
		ahead.Tokens += v.PromptLeft
		ahead.Cells += prefillCells(v.PromptLeft, v.Past)
		ahead.Evals += (v.PromptLeft + max(b.ubatch, 1) - 1) / max(b.ubatch, 1)
	}
	return worst
}

// defaultChunk is the prompt chunk used before the step model is calibrated.
const defaultChunk = 64

// minChunk is the least prompt progress per step while streams decode, so that a
// long prompt always progresses; deep into a long prompt on a slow machine it is what
// exceeds the target (8 tokens at position 1536 with 8 streams take ~47 ms on the
// bench model and 2 cores, 16 take ~72).
const minChunk = 8

// cost returns what plan asks of the model.
func (b *budgetPolicy) cost(plan StepPlan, seqs []SeqView) StepCost {
	if cap(b.scratch) < 2*b.slots {
		b.scratch = make([]int, 2*b.slots)
	}
	perSlot, past := b.scratch[:b.slots], b.scratch[b.slots:2*b.slots]
	clear(perSlot)
	for _, v := range seqs {
		past[v.Slot] = v.Past
	}
	var c StepCost
	for _, slot := range plan.Decode {
		perSlot[slot] = 1
		c.Cells += past[slot] + 1
	}
	for _, ch := range plan.Prefill {
		perSlot[ch.Slot] = ch.Tokens
		c.Cells += prefillCells(ch.Tokens, past[ch.Slot])
	}
	c.Tokens = plan.Tokens()
	c.Evals = Evals(perSlot, b.ubatch, b.unified)
	return c
}

// prefillCells is how many KV cells a chunk of tokens after past cached ones attends
// to in all: each token sees the cache and the chunk's tokens up to itself.
func prefillCells(tokens, past int) int { return tokens*past + tokens*(tokens+1)/2 }

// budget returns the step's token budget: the largest one whose planned step the
// model predicts within the step's allowance (the inter-token target unless prompts
// wait past their first-token target; with its error margin), and at least every
// decoding sequence plus in.MinChunk prompt tokens.
func (b *budgetPolicy) budget(in StepInput, m StepModel) int {
	decoding, waiting := 0, false
	for _, v := range in.Seqs {
		if v.Decoding {
			decoding++
		} else if v.PromptLeft > 0 {
			waiting = true
		}
	}
	switch {
	case b.fixed < 0:
		return b.batchCap
	case b.fixed > 0:
		return decoding + b.fixed
	case decoding == 0 || !waiting:
		// Nobody is waiting between tokens, or no prompt to fit: full speed.
		return b.batchCap
	case !m.Ready():
		return decoding + defaultChunk
	}
	margin, allow := m.Margin(), b.allowance(b.lateness(in, m)).Seconds()
	fits := func(budget int) bool {
		in.Budget = budget
		return m.Predict(b.cost(PlanStep(in), in.Seqs)).Seconds()*margin <= allow
	}
	lo, hi := decoding+in.MinChunk, min(b.batchCap, max(2*m.Largest, decoding+defaultChunk))
	if lo >= hi || !fits(lo) {
		return lo
	}
	for lo < hi { // the largest budget that fits: fits(lo) holds throughout
		mid := (lo + hi + 1) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}
