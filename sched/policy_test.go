package sched

import (
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

func TestStepModelFit(t *testing.T) {
	var m StepModel
	if m.TokensWithin(time.Second) != -1 {
		t.Fatal("an empty model must not predict")
	}
	// t(n) = 2ms + 0.5ms*n exactly.
	for i := 0; i < 40; i++ {
		n := 1 + (i*37)%200
		m.Observe(n, 2*time.Millisecond+time.Duration(n)*500*time.Microsecond)
	}
	if d := m.Fixed - 2*time.Millisecond; d > 50*time.Microsecond || d < -50*time.Microsecond {
		t.Errorf("fixed %v", m.Fixed)
	}
	if d := m.PerToken - 500*time.Microsecond; d > 5*time.Microsecond || d < -5*time.Microsecond {
		t.Errorf("per token %v", m.PerToken)
	}
	if got := m.TokensWithin(52 * time.Millisecond); got < 99 || got > 101 {
		t.Errorf("tokens within 52ms = %d, want 100", got)
	}
}

func TestBudgetPolicy(t *testing.T) {
	var m StepModel
	for i := 0; i < 20; i++ {
		n := 1 + i*10
		m.Observe(n, time.Millisecond+time.Duration(n)*100*time.Microsecond)
	}
	p := budgetPolicy{batchCap: 512, targetITL: 11 * time.Millisecond}
	if got := p.budget(0, m); got != 512 {
		t.Errorf("no decoders: budget %d, want the whole batch", got)
	}
	if got := p.budget(8, m); got < 95 || got > 105 {
		t.Errorf("8 decoders, 11ms target, 1ms+0.1ms/token: budget %d, want ~100", got)
	}
	if got := p.budget(8, StepModel{}); got != 8+defaultChunk {
		t.Errorf("uncalibrated: %d", got)
	}
	if got := (budgetPolicy{batchCap: 512, fixed: -1}).budget(8, m); got != 512 {
		t.Errorf("chunking off: %d", got)
	}
	if got := (budgetPolicy{batchCap: 512, fixed: 32}).budget(8, m); got != 40 {
		t.Errorf("fixed chunk: %d", got)
	}
	tight := budgetPolicy{batchCap: 512, targetITL: time.Millisecond}
	if got := tight.budget(8, m); got != 8+minChunk {
		t.Errorf("target below one step: budget %d, want decoders+minChunk", got)
	}
}
