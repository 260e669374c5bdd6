package sched

import (
	"time"

	"github.com/hxp-ai/hxp/engine"
)

// DefaultGatherWindow is Config.GatherWindow's default: a lone request waits half a
// millisecond (a quarter of it) before its first step.
const DefaultGatherWindow = 2 * time.Millisecond

// Config configures one model's scheduler.
type Config struct {
	// Name labels metrics and logs (the model's configured name).
	Name string
	// Model is the loaded model; the scheduler creates its own Context on it.
	Model *engine.Model
	// Context sizes the KV cache: Sequences is the number of parallel slots and
	// SeqCtx each slot's context window.
	Context engine.ContextParams
	// QueueSize bounds waiting requests; 0 means 4 per slot. Submit returns
	// ErrOverloaded when it is full.
	QueueSize int
	// TargetLatency is the model's time-to-first-token target.
	TargetLatency time.Duration
	// TargetITL is the inter-token latency budget of running streams: the scheduler
	// sizes prefill chunks so one step stays within it. 0 means TargetLatency/10.
	TargetITL time.Duration
	// StrictITL holds TargetITL even when prompts wait past TargetLatency for their
	// first token. By default a step may then take as many times TargetITL as a waiting
	// prompt will have waited (its wait so far plus the prompts ahead of it) times
	// TargetLatency, so that both targets are missed in proportion (see the package
	// doc's Latency policy).
	StrictITL bool
	// GatherWindow is how long a request that wakes an idle scheduler may wait for the
	// rest of its burst before the first step (see gather); 0 means DefaultGatherWindow,
	// a negative value none.
	GatherWindow time.Duration
	// PrefillChunk fixes the prompt tokens per step instead of the adaptive budget;
	// -1 disables chunking (a whole prompt, up to the batch size, in one step).
	PrefillChunk int
	// Fairness shares the slots and the queue between tenants; the zero value is the
	// default fair policy.
	Fairness Fairness
	// StepHook, when set, runs before every decode step (tests use it to stall the loop).
	StepHook func()
}

// Stats is a snapshot of the scheduler's state.
type Stats struct {
	Slots, Running, Queued, QueueCapacity int
	InFlight                              int     // submitted, final event not yet delivered
	KVUsed                                int     // KV cells held by running requests
	KVCached                              int     // KV cells of idle slots kept for prefix reuse (reclaimable)
	KVCapacity                            int     // KV cells in all slots
	Steps                                 int64   // decode steps since start
	Runs                                  int     // runs of adjacent slots holding running sequences (1 when packed)
	Moves                                 int64   // running sequences moved to another slot to keep them adjacent
	Preemptions                           int64   // running sequences that gave their slot back to a waiting request (PickVictim)
	SwapIns                               int64   // preempted sequences resumed from their KV cache saved in host memory (not evaluated again)
	SwapBytes                             int64   // host memory the saved KV caches of preempted sequences hold now
	SharedPrefixes                        int64   // prompt prefixes copied from another slot instead of evaluated (PrefixChoice)
	Parked                                int     // requests waiting for a prompt prefix a running one is evaluating
	PromptEvaluated                       int64   // prompt tokens evaluated since start (reused and copied ones not included)
	Backlogged                            int     // tenants with waiting requests
	ServiceSpread                         float64 // max - min service counter of the backlogged tenants
	LastStep                              time.Time
	Busy                                  bool // InFlight > 0
	StepModel                             StepModel
}
