package sched

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

func TestPlanStep(t *testing.T) {
	dec := func(slot int) SeqView { return SeqView{Slot: slot, Decoding: true} }
	pre := func(slot, left int) SeqView { return SeqView{Slot: slot, PromptLeft: left} }
	cases := []struct {
		name string
		in   StepInput
		want StepPlan
	}{
		{"decode only", StepInput{Seqs: []SeqView{dec(0), dec(1)}, BatchCap: 64, Budget: 64, MinChunk: 16},
			StepPlan{Decode: []int{0, 1}}},
		{"prompt fills budget", StepInput{Seqs: []SeqView{dec(0), pre(1, 100)}, BatchCap: 512, Budget: 33, MinChunk: 16},
			StepPlan{Decode: []int{0}, Prefill: []Chunk{{1, 32}}}},
		{"oldest prompt first", StepInput{Seqs: []SeqView{pre(2, 10), pre(1, 100)}, BatchCap: 64, Budget: 64, MinChunk: 16},
			StepPlan{Prefill: []Chunk{{2, 10}, {1, 54}}}},
		{"min chunk when budget spent", StepInput{Seqs: []SeqView{dec(0), dec(1), dec(2), pre(3, 100)}, BatchCap: 64, Budget: 2, MinChunk: 16},
			StepPlan{Decode: []int{0, 1, 2}, Prefill: []Chunk{{3, 16}}}},
		{"batch cap beats min chunk", StepInput{Seqs: []SeqView{dec(0), dec(1), dec(2), pre(3, 100)}, BatchCap: 8, Budget: 2, MinChunk: 16},
			StepPlan{Decode: []int{0, 1, 2}, Prefill: []Chunk{{3, 5}}}},
		{"budget above cap", StepInput{Seqs: []SeqView{pre(0, 1000)}, BatchCap: 128, Budget: 10000, MinChunk: 16},
			StepPlan{Prefill: []Chunk{{0, 128}}}},
	}
	for _, c := range cases {
		got := PlanStep(c.in)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v want %+v", c.name, got, c.want)
		}
		if got.Tokens() > c.in.BatchCap {
			t.Errorf("%s: plan of %d tokens exceeds the batch cap", c.name, got.Tokens())
		}
	}
}

func TestEvals(t *testing.T) {
	cases := []struct {
		name    string
		tokens  []int
		ubatch  int
		unified bool
		want    int
	}{
		{"adjacent decoders", []int{1, 1, 1, 1}, 512, false, 1},
		{"a hole", []int{1, 0, 1, 1}, 512, false, 2},
		{"every other slot", []int{1, 0, 1, 0, 1, 0, 1}, 512, false, 4},
		{"decoders and a chunk", []int{1, 1, 1, 16}, 512, false, 2},
		{"chunk alone", []int{0, 0, 300}, 512, false, 1},
		{"chunk over ubatch", []int{1, 1, 600}, 512, false, 3},
		{"two chunks", []int{40, 40}, 512, false, 1},
		{"unequal chunks", []int{40, 10}, 512, false, 2},
		{"wide run capped by ubatch", []int{100, 100, 100, 100}, 128, false, 4},
		{"unified ignores slots", []int{1, 0, 1, 0, 600}, 512, true, 2},
		{"nothing", []int{0, 0}, 512, false, 0},
	}
	for _, c := range cases {
		if got := Evals(c.tokens, c.ubatch, c.unified); got != c.want {
			t.Errorf("%s: Evals(%v, %d, unified=%v) = %d, want %d", c.name, c.tokens, c.ubatch, c.unified, got, c.want)
		}
	}
}

// trueCost is a synthetic machine: 3 ms per graph evaluation, 1 ms per token and
// 1.5 µs per attended cell, close to the bench model on 2 cores (see bench/README.md).
func trueCost(c StepCost) time.Duration {
	return time.Duration(c.Evals)*3*time.Millisecond + time.Duration(c.Tokens)*time.Millisecond +
		time.Duration(c.Cells)*1500*time.Nanosecond
}

func TestStepModelFit(t *testing.T) {
	var m StepModel
	if m.Ready() {
		t.Fatal("an empty model must not predict")
	}
	for i := 0; i < 60; i++ {
		c := StepCost{Evals: 1 + i%3, Tokens: 1 + (i*37)%200, Cells: (i * 7919) % 40000}
		m.Observe(c, trueCost(c))
	}
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-3*want {
			t.Errorf("%s = %g, want %g", name, got, want)
		}
	}
	near("per eval", m.PerEval.Seconds(), 3e-3)
	near("per token", m.PerToken.Seconds(), 1e-3)
	near("per cell", m.PerCell, 1.5e-6)
	c := StepCost{Evals: 2, Tokens: 24, Cells: 16 * 1536}
	near("prediction", m.Predict(c).Seconds(), trueCost(c).Seconds())
	if got := m.Margin(); got > 1.001 {
		t.Errorf("margin %g from exact observations, want 1", got)
	}

	// Steps that vary by ±10% around the cost (uniform, sd 5.8%): planning needs
	// about two standard deviations of headroom.
	var noisy StepModel
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		c := StepCost{Evals: 1 + i%3, Tokens: 1 + (i*37)%200, Cells: (i * 7919) % 40000}
		noisy.Observe(c, time.Duration(float64(trueCost(c))*(1+0.1*(2*rng.Float64()-1))))
	}
	if got := noisy.Margin(); got < 1.05 || got > 1.25 {
		t.Errorf("margin %g from ±10%% noise, want about 1.12", got)
	}

	// One step preempted for 20x its time moves the predictions little.
	before := m.Predict(c)
	m.Observe(c, 20*trueCost(c))
	if after := m.Predict(c); after > before*11/10 {
		t.Errorf("one stalled step moved the prediction from %v to %v", before, after)
	}

	// Decode steps of one size only: evaluations and tokens never vary apart, so the
	// fit must not invent a negative coefficient; it still predicts what it saw.
	var d StepModel
	for i := 0; i < 30; i++ {
		c := StepCost{Evals: 1, Tokens: 8, Cells: 8 * (20 + i)}
		d.Observe(c, trueCost(c))
	}
	if d.PerEval < 0 || d.PerToken < 0 || d.PerCell < 0 {
		t.Errorf("negative coefficient from collinear steps: %+v", d)
	}
	c = StepCost{Evals: 1, Tokens: 8, Cells: 8 * 40}
	near("collinear prediction", d.Predict(c).Seconds(), trueCost(c).Seconds())
}

// trained returns a step model fitted on trueCost over a spread of steps.
func trained() StepModel {
	var m StepModel
	for i := 0; i < 60; i++ {
		c := StepCost{Evals: 1 + i%2, Tokens: 8 + (i*37)%300, Cells: (i * 7919) % 60000}
		m.Observe(c, trueCost(c))
	}
	return m
}

func TestBudgetPolicy(t *testing.T) {
	m := trained()
	target := 60 * time.Millisecond
	p := &budgetPolicy{batchCap: 2048, targetITL: target, slots: 9, ubatch: 2048}
	decoders := func(prompt SeqView) StepInput {
		in := StepInput{BatchCap: 2048, MinChunk: minChunk}
		for s := 0; s < 8; s++ {
			in.Seqs = append(in.Seqs, SeqView{Slot: s, Decoding: true, Past: 40})
		}
		in.Seqs = append(in.Seqs, prompt)
		return in
	}
	// A long prompt at different depths: the chunk shrinks as attention over the
	// prefix grows, and the planned step stays within the target without wasting it.
	prev := math.MaxInt
	for _, past := range []int{0, 512, 1024, 1536, 4000} {
		in := decoders(SeqView{Slot: 8, PromptLeft: 4000, Past: past})
		in.Budget = p.budget(in, m)
		plan := PlanStep(in)
		got := trueCost(p.cost(plan, in.Seqs))
		if plan.Prefill[0].Tokens == minChunk {
			t.Logf("prompt at %4d: the floor of %d tokens, step %v", past, minChunk, got)
			continue
		}
		if got > target {
			t.Errorf("prompt at %d: budget %d plans a %v step, over the %v target", past, in.Budget, got, target)
		}
		in.Budget++
		if more := trueCost(p.cost(PlanStep(in), in.Seqs)); more <= target {
			t.Errorf("prompt at %d: budget %d leaves room (one more token: %v <= %v)", past, in.Budget-1, more, target)
		}
		if chunk := plan.Prefill[0].Tokens; chunk >= prev && chunk > minChunk {
			t.Errorf("prompt at %d: chunk %d, not smaller than %d nearer the start", past, chunk, prev)
		} else {
			prev = chunk
		}
		t.Logf("prompt at %4d: chunk %d, step %v", past, plan.Prefill[0].Tokens, got)
	}

	in := decoders(SeqView{Slot: 8, PromptLeft: 100})
	if got := p.budget(StepInput{Seqs: in.Seqs[8:], BatchCap: 2048, MinChunk: minChunk}, m); got != 2048 {
		t.Errorf("no decoders: budget %d, want the whole batch", got)
	}
	if got := p.budget(StepInput{Seqs: in.Seqs[:8], BatchCap: 2048, MinChunk: minChunk}, m); got != 2048 {
		t.Errorf("no prompt waiting: budget %d, want the whole batch", got)
	}
	if got := p.budget(in, StepModel{}); got != 8+defaultChunk {
		t.Errorf("uncalibrated: %d, want %d", got, 8+defaultChunk)
	}
	if got := (&budgetPolicy{batchCap: 2048, fixed: -1}).budget(in, m); got != 2048 {
		t.Errorf("chunking off: %d", got)
	}
	if got := (&budgetPolicy{batchCap: 2048, fixed: 32}).budget(in, m); got != 40 {
		t.Errorf("fixed chunk: %d", got)
	}
	tight := &budgetPolicy{batchCap: 2048, targetITL: time.Millisecond, slots: 9, ubatch: 2048}
	if got := tight.budget(in, m); got != 8+minChunk {
		t.Errorf("target below one step: budget %d, want decoders+minChunk", got)
	}
	// A model that has only seen small steps is not trusted far beyond them.
	var small StepModel
	for i := 0; i < 10; i++ {
		c := StepCost{Evals: 1, Tokens: 8 + i%3, Cells: 300}
		small.Observe(c, trueCost(c)/10) // a fast machine: a huge step would "fit"
	}
	if got := p.budget(in, small); got > max(2*small.Largest, 8+defaultChunk) {
		t.Errorf("budget %d from a model that saw at most %d tokens per step", got, small.Largest)
	}
}

// TestBudgetAllowance: while a prompt waits within its first-token target the step
// is planned within the inter-token target; past it, the step may take as many times
// that target as the prompt is late, unless strictITL holds it.
func TestBudgetAllowance(t *testing.T) {
	m := trained()
	itl, ttft := 60*time.Millisecond, time.Second
	in := StepInput{BatchCap: 2048, MinChunk: minChunk}
	for s := 0; s < 8; s++ {
		in.Seqs = append(in.Seqs, SeqView{Slot: s, Decoding: true, Past: 40})
	}
	in.Seqs = append(in.Seqs, SeqView{Slot: 8, PromptLeft: 4000, Past: 256, AwaitsFirst: true})
	p := &budgetPolicy{batchCap: 2048, targetITL: itl, targetTTFT: ttft, slots: 9, ubatch: 2048}
	step := func(p *budgetPolicy, waited time.Duration) (int, time.Duration) {
		in := in
		in.Seqs = append([]SeqView(nil), in.Seqs...)
		in.Seqs[8].Waited = waited
		in.Budget = p.budget(in, m)
		return in.Budget, trueCost(p.cost(PlanStep(in), in.Seqs))
	}
	base, baseStep := step(p, 0)
	if baseStep > itl {
		t.Fatalf("within the first-token target: a %v step, over the %v inter-token target", baseStep, itl)
	}
	if got, _ := step(p, ttft); got != base {
		t.Errorf("a prompt exactly at its target: budget %d, want %d", got, base)
	}
	late, lateStep := step(p, 3*ttft)
	if late <= base || lateStep <= 2*itl || lateStep > 3*itl {
		t.Errorf("a prompt 3x past its target: budget %d (%v step), want more than %d with a step in (%v, %v]", late, lateStep, base, 2*itl, 3*itl)
	}
	if later, _ := step(p, 6*ttft); later <= late {
		t.Errorf("a prompt 6x past its target: budget %d, want more than 3x's %d", later, late)
	}
	strict := *p
	strict.strictITL = true
	if got, _ := step(&strict, 3*ttft); got != base {
		t.Errorf("strictITL, prompt 3x late: budget %d, want %d", got, base)
	}
	noTarget := *p
	noTarget.targetTTFT = 0
	if got, _ := step(&noTarget, 3*ttft); got != base {
		t.Errorf("no first-token target, prompt waited 3s: budget %d, want %d", got, base)
	}
	t.Logf("budget %d (step %v) within target, %d (step %v) at 3x late", base, baseStep, late, lateStep)
}

// TestBudgetProjectsLateness: a prompt behind a queue of long prompts, which will have
// waited past its first-token target before its own evaluation can start even if the
// steps held nothing else, stretches the steps from its first one, in proportion to
// that wait; a long prompt alone does not (it stretches them as it waits, see
// TestBudgetAllowance). Batch requests and StrictITL stretch nothing.
func TestBudgetProjectsLateness(t *testing.T) {
	m := trained()
	itl, ttft := 60*time.Millisecond, time.Second
	p := &budgetPolicy{batchCap: 2048, targetITL: itl, targetTTFT: ttft, slots: 17, ubatch: 512}
	plan := func(p *budgetPolicy, prompts ...SeqView) (int, time.Duration, float64) {
		in := StepInput{BatchCap: 2048, MinChunk: minChunk}
		for s := 0; s < 8; s++ {
			in.Seqs = append(in.Seqs, SeqView{Slot: s, Decoding: true, Past: 40})
		}
		for i, v := range prompts {
			v.Slot = 8 + i
			in.Seqs = append(in.Seqs, v)
		}
		in.Budget = p.budget(in, m)
		return in.Budget, trueCost(p.cost(PlanStep(in), in.Seqs)), p.lateness(in, m).Seconds() / ttft.Seconds()
	}
	short := SeqView{PromptLeft: 100, AwaitsFirst: true}
	long := SeqView{PromptLeft: 1000, AwaitsFirst: true} // ~1.8 s alone on this model
	base, baseStep, _ := plan(p, short)
	if baseStep > itl {
		t.Fatalf("a short prompt: a %v step, over the %v inter-token target", baseStep, itl)
	}
	if got, _, _ := plan(p, long); got != base {
		t.Errorf("a long prompt alone that has not waited: budget %d, want the inter-token budget %d", got, base)
	}
	queue := []SeqView{long, long, long, short} // the short prompt starts after ~5.4 s at best
	behind, behindStep, k := plan(p, queue...)
	if k < 5 || behind <= base || behindStep <= time.Duration((k-1)*float64(itl)) || behindStep > time.Duration(k*float64(itl)) {
		t.Errorf("a prompt behind a queue (%.1fx late at least): budget %d (%v step), want more than %d and a step in (%.1fx, %.1fx] the inter-token target",
			k, behind, behindStep, base, k-1, k)
	}
	batch := long
	batch.AwaitsFirst = false
	if b, _, _ := plan(p, batch, batch, batch, batch); b != base {
		t.Errorf("a queue of batch-class prompts: budget %d, want the inter-token budget %d", b, base)
	}
	strict := *p
	strict.strictITL = true
	if b, _, _ := plan(&strict, queue...); b != base {
		t.Errorf("strictITL behind a queue: budget %d, want %d", b, base)
	}
	t.Logf("budget %d (step %v) for a short prompt, %d (step %v) behind a queue %.1fx late", base, baseStep, behind, behindStep, k)
}
