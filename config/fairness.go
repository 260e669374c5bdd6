package config

import (
	"math"
	"strings"
	"time"
)

// Fairness configures how a model's slots and queue are shared between tenants (API
// keys): see the sched package for the policy. Unset fields take the defaults below.
type Fairness struct {
	// Policy is "fair" (default: virtual token counters per tenant, priority classes)
	// or "fcfs" (one first-come-first-served queue).
	Policy string `yaml:"policy"`
	// InputCost weighs one prompt token in a tenant's service counter. Default 1.
	InputCost float64 `yaml:"input_cost"`
	// OutputCost weighs one generated token. Default 2.
	OutputCost float64 `yaml:"output_cost"`
	// TenantQueueShare is the fraction of queue_size one key may hold (429 beyond,
	// while other keys are still queued). Default 0.5. Requests without a key are
	// bounded by queue_size only.
	TenantQueueShare float64 `yaml:"tenant_queue_share"`
	// MaxSlotsShare caps the fraction of the model's slots one key's requests may
	// hold (at least one slot); 0 or unset: no cap.
	MaxSlotsShare float64 `yaml:"max_slots_share"`
	// BatchAging is how long a batch-priority request waits before it competes as an
	// interactive one, so batch work never starves. Default 30s.
	BatchAging Duration `yaml:"batch_aging"`
	// Preempt lets a waiting request of a key below its share of the slots (or an
	// interactive request behind batch work) take a slot from a running generation of
	// a key above its share; the preempted generation resumes later where it stopped,
	// its client sees only a pause. Default true with the fair policy; the fcfs policy
	// never preempts.
	Preempt *bool `yaml:"preempt"`
	// PreemptSwapMB bounds the host memory, in MiB, in which preempted generations keep
	// their KV cache until they resume (then only their last token is evaluated again);
	// past it a resumed generation evaluates its tokens again. Default 1024; -1 keeps
	// none.
	PreemptSwapMB int `yaml:"preempt_swap_mb"`
}

// Fairness defaults.
const (
	DefaultFairnessPolicy   = "fair"
	DefaultInputCost        = 1.0
	DefaultOutputCost       = 2.0
	DefaultTenantQueueShare = 0.5
	DefaultBatchAging       = 30 * time.Second
	DefaultPreemptSwapMB    = 1024
	// MaxTokenCost bounds input_cost and output_cost.
	MaxTokenCost = 1e6
)

// Key weights and priorities.
const (
	// DefaultKeyWeight is a key's weight when unset.
	DefaultKeyWeight = 1.0
	// MaxKeyWeight bounds a key's weight.
	MaxKeyWeight = 1000.0
	// DefaultKeyPriority is a key's priority when unset.
	DefaultKeyPriority = "interactive"
)

var (
	fairnessPolicies = []string{"fair", "fcfs"}
	// KeyPriorities are the allowed values of a key's priority.
	KeyPriorities = []string{"interactive", "batch"}
)

// FCFS reports whether fairness is off.
func (f Fairness) FCFS() bool { return f.Policy == "fcfs" }

// PreemptOn reports whether running generations may be preempted (the fair policy
// and preempt unset or true).
func (f Fairness) PreemptOn() bool { return !f.FCFS() && (f.Preempt == nil || *f.Preempt) }

// applyDefaults fills the unset fields.
func (f *Fairness) applyDefaults() {
	if f.Policy == "" {
		f.Policy = DefaultFairnessPolicy
	}
	if f.InputCost == 0 {
		f.InputCost = DefaultInputCost
	}
	if f.OutputCost == 0 {
		f.OutputCost = DefaultOutputCost
	}
	if f.TenantQueueShare == 0 {
		f.TenantQueueShare = DefaultTenantQueueShare
	}
	if f.BatchAging == 0 {
		f.BatchAging = Duration(DefaultBatchAging)
	}
	if f.PreemptSwapMB == 0 {
		f.PreemptSwapMB = DefaultPreemptSwapMB
	}
}

// PreemptSwapBytes is preempt_swap_mb in bytes (negative: none).
func (f Fairness) PreemptSwapBytes() int64 {
	if f.PreemptSwapMB < 0 {
		return -1
	}
	return int64(f.PreemptSwapMB) << 20
}

// validateFairness checks one model's fairness section; p is its path
// ("models[0].fairness").
func validateFairness(add func(path, format string, args ...any), p string, f Fairness) {
	if !oneOf(f.Policy, fairnessPolicies) {
		add(p+".policy", "%q is not one of %s", f.Policy, strings.Join(fairnessPolicies, ", "))
	}
	for _, c := range []struct {
		field string
		v     float64
	}{{"input_cost", f.InputCost}, {"output_cost", f.OutputCost}} {
		if !(c.v > 0 && c.v <= MaxTokenCost) {
			add(p+"."+c.field, "%v is out of range (a positive cost per token, at most %g)", c.v, MaxTokenCost)
		}
	}
	if !(f.TenantQueueShare > 0 && f.TenantQueueShare <= 1) {
		add(p+".tenant_queue_share", "%v is out of range (a fraction of queue_size, above 0 and at most 1)", f.TenantQueueShare)
	}
	if !(f.MaxSlotsShare >= 0 && f.MaxSlotsShare <= 1) {
		add(p+".max_slots_share", "%v is out of range (0 for no cap, or a fraction of the slots up to 1)", f.MaxSlotsShare)
	}
	if f.BatchAging <= 0 {
		add(p+".batch_aging", "%s is not a positive duration", f.BatchAging)
	}
	if f.PreemptSwapMB < -1 {
		add(p+".preempt_swap_mb", "%d is out of range (MiB of host memory for preempted generations' KV caches, or -1 for none)", f.PreemptSwapMB)
	}
	if f.FCFS() && f.Preempt != nil && *f.Preempt {
		add(p+".preempt", "true needs policy fair (fcfs never preempts): remove preempt or set policy: fair")
	}
}

// keyFairnessDefaults fills a static key's unset weight and priority.
func keyFairnessDefaults(k *StaticKey) {
	if k.Weight == 0 {
		k.Weight = DefaultKeyWeight
	}
	if k.Priority == "" {
		k.Priority = DefaultKeyPriority
	}
}

// validateKeyFairness checks a static key's weight and priority; p is its path.
func validateKeyFairness(add func(path, format string, args ...any), p string, k StaticKey) {
	if !(k.Weight > 0 && k.Weight <= MaxKeyWeight) || math.IsNaN(k.Weight) {
		add(p+".weight", "%v is out of range (above 0 and at most %g; 1 is an equal share)", k.Weight, MaxKeyWeight)
	}
	if !oneOf(k.Priority, KeyPriorities) {
		add(p+".priority", "%q is not one of %s", k.Priority, strings.Join(KeyPriorities, ", "))
	}
}
