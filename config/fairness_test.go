package config

import (
	"testing"
	"time"
)

const fairKeyHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestFairnessDefaultsAndValues(t *testing.T) {
	y := `
auth:
  keys:
    - {id: plain, sha256: ` + fairKeyHash + `}
    - {id: heavy, sha256: ` + fairKeyHash + `, weight: 3, priority: batch}
models:
  - {name: a, path: x}
  - name: b
    path: x
    fairness: {policy: fcfs, input_cost: 0.5, output_cost: 4, tenant_queue_share: 0.25, max_slots_share: 0.75, batch_aging: 5s, preempt_swap_mb: -1}
  - name: c
    path: x
    fairness: {preempt: false}
`
	c, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := Fairness{Policy: "fair", InputCost: DefaultInputCost, OutputCost: DefaultOutputCost,
		TenantQueueShare: DefaultTenantQueueShare, BatchAging: Duration(DefaultBatchAging), PreemptSwapMB: DefaultPreemptSwapMB}
	if got := c.Models[0].Fairness; got != want || got.FCFS() || !got.PreemptOn() || got.PreemptSwapBytes() != DefaultPreemptSwapMB<<20 {
		t.Errorf("defaults: %+v (preempt %v), want %+v, preempting", got, got.PreemptOn(), want)
	}
	if got := c.Models[2].Fairness; got.PreemptOn() || got.FCFS() {
		t.Errorf("preempt: false: %+v preempts", got)
	}
	want = Fairness{Policy: "fcfs", InputCost: 0.5, OutputCost: 4, TenantQueueShare: 0.25, MaxSlotsShare: 0.75, BatchAging: Duration(5 * time.Second),
		PreemptSwapMB: -1}
	if got := c.Models[1].Fairness; got != want || !got.FCFS() || got.PreemptOn() || got.PreemptSwapBytes() >= 0 {
		t.Errorf("configured: %+v, want %+v", got, want)
	}
	if k := c.Auth.Keys[0]; k.Weight != DefaultKeyWeight || k.Priority != DefaultKeyPriority {
		t.Errorf("key defaults: weight %v priority %q", k.Weight, k.Priority)
	}
	if k := c.Auth.Keys[1]; k.Weight != 3 || k.Priority != "batch" {
		t.Errorf("key values: weight %v priority %q", k.Weight, k.Priority)
	}
}

func TestFairnessValidation(t *testing.T) {
	y := `
auth:
  keys:
    - {id: k1, sha256: ` + fairKeyHash + `, weight: -2, priority: urgent}
    - {id: k2, sha256: ` + fairKeyHash + `, weight: 5000}
models:
  - name: a
    path: x
    fairness: {policy: lottery, input_cost: -1, output_cost: 2e7, tenant_queue_share: 1.5, max_slots_share: -0.5, batch_aging: -1s, preempt_swap_mb: -2}
  - name: b
    path: x
    fairness: {policy: fcfs, preempt: true}
`
	_, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2})
	ps := problemsOf(t, err)
	for _, w := range []struct{ path, substr string }{
		{"auth.keys[0].weight", "-2 is out of range (above 0 and at most 1000"},
		{"auth.keys[0].priority", `"urgent" is not one of interactive, batch`},
		{"auth.keys[1].weight", "5000 is out of range"},
		{"models[0].fairness.policy", `"lottery" is not one of fair, fcfs`},
		{"models[0].fairness.input_cost", "-1 is out of range"},
		{"models[0].fairness.output_cost", "2e+07 is out of range"},
		{"models[0].fairness.tenant_queue_share", "1.5 is out of range"},
		{"models[0].fairness.max_slots_share", "-0.5 is out of range"},
		{"models[0].fairness.batch_aging", "is not a positive duration"},
		{"models[0].fairness.preempt_swap_mb", "-2 is out of range"},
		{"models[1].fairness.preempt", "true needs policy fair"},
	} {
		if !hasProblem(ps, w.path, w.substr) {
			t.Errorf("missing problem %s: ...%s... in %v", w.path, w.substr, err)
		}
	}
}
