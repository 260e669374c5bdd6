// Package sched is HXP's continuous-batching scheduler: one per model, owning that
// model's llama.cpp context from a single goroutine locked to its OS thread.
//
// # Shape
//
// Requests arrive through Submit into a bounded queue (full queue: ErrOverloaded),
// kept per tenant (see Fair share between tenants).
// The loop admits them into n parallel slots, each a llama.cpp sequence with its own
// SeqCtx cells of KV cache. Every step is one llama_decode holding the next token of
// every decoding sequence plus chunks of prompts still being evaluated; a request
// that arrives while others decode joins at the next step. Tokens go back through a
// per-request channel that the loop never blocks on (a slow reader's output is
// merged into a backlog and delivered later).
//
// Decision is separated from execution: PlanStep is a pure function of the slot
// states and a token budget, tested with tables; the loop only feeds its decision to
// llama_decode and samples the results.
//
// # Latency policy
//
// Each model has a time-to-first-token target (TargetLatency) and an inter-token
// budget for running streams (TargetITL, default TargetLatency/10). The step time of
// this model on this machine is learnt online (StepModel) from what a step asks of
// it: t = PerEval*evaluations + PerToken*tokens + PerCell*attended cells. Graph
// evaluations count because llama.cpp may split one batch into several micro-batches
// (see Evals), each reading every weight; attended cells because a prompt chunk deep
// into a long prompt attends to everything before it (on the bench model and 2 cores
// a 16-token chunk at position 1,536 costs 3.5x the same chunk at position 0). The
// fit is a non-negative least squares with exponential forgetting, so it follows
// contention and thermal changes; a step far slower than predicted (preempted by
// another process) counts less. Each step:
//
//   - every decoding sequence gets its next token: running streams are never paused;
//   - when nothing decodes, prompts are evaluated at full batch size (throughput);
//   - otherwise prompts get the largest budget whose planned step, times a margin
//     learnt from recent prediction errors (mean + 2 sd), is predicted within
//     the step's allowance, oldest request first, and at least a small minimum
//     chunk so that a long prompt always progresses (no starvation). A model that
//     has only seen small steps is not trusted beyond twice the largest.
//
// The allowance is TargetITL while every prompt waiting for its first token is
// within TargetLatency. When both targets cannot be met, they are missed in
// proportion: a prompt that will have waited k times TargetLatency allows steps of k
// times TargetITL (batch-class requests have no first-token target and stretch
// nothing). "Will have waited" is what it has waited plus the step model's time for
// the prompts ahead of it with nothing else in the steps, so a prompt at the end of a
// burst of long ones is known to be late from the burst's first step instead of once
// it has waited past the target while the steps stayed small (16 prompts of 1,000
// tokens beside running streams, time to the last first token against
// llama-server's: 1.13-1.14x with the wait alone in two runs, 1.11x with the queue
// counted in one, on a noisy VM). A prompt's own evaluation is not counted: that
// stretched the steps of a lone long prompt early, and its streams then missed
// their target by more than the prompt missed its own. Holding TargetITL however
// late the prompts are starves such a burst (the last first token came 30x past its
// target); Config.StrictITL keeps that behaviour for models whose streams must never
// slow down.
//
// This is chunked prefill with a latency-derived budget: a 1,536-token prompt that
// arrives while 8 streams decode stalls them for one 3.3 s step without chunking;
// with it their inter-token latency stays near the 60 ms target while the prompt is
// within its first-token target, then rises with its lateness
// (bench.BenchmarkChunkedPrefill).
//
// Requests that find the model idle are gathered for up to GatherWindow (2 ms by
// default) before the first step: the step starts once a quarter of the window passes
// without a new arrival, or every slot has a request. A step occupies the cores, so
// without this a burst's later requests, still being read and parsed when the first
// one started a step, waited for that step; over HTTP 16 requests sent at once got
// their first tokens in two or three steps instead of one. A lone request pays the
// quarter window, half a millisecond.
//
// # Slots and prefix reuse
//
// A finished request leaves its tokens in its slot's KV cache. A new request takes
// the free slot whose cached tokens share the longest prefix with its prompt (least
// recently used on ties), drops the rest and evaluates only the new suffix: a shared
// system prompt or the earlier turns of a chat cost nothing the second time. The
// cells belong to that slot either way, so keeping them costs no other request any
// room. A cancelled or failed request's KV is dropped at once.
//
// Prefixes are also shared across slots. A radix tree over token ids (prefixIndex)
// records what every slot's KV holds, updated as prompts are evaluated, tokens
// generated, slots trimmed, cleared or packed. When another slot holds a prefix of a
// new prompt at least 32 tokens longer than the new request's own slot (PrefixChoice),
// its cells are copied (engine.CopySequence) instead of evaluated; when a running
// request is still evaluating a prompt that shares such a prefix, the new request is
// parked, its slot reserved, until that prefix is in the cache. Sixteen requests with
// one system prompt arriving at once on cold slots thus evaluate it once: 370 prompt
// tokens instead of 4,502 in TestSharedPromptColdSlots.
//
// # Limits
//
// The context of one request is SeqCtx tokens, explicit and enforced: prompt plus
// max_tokens beyond it is ErrContextOverflow at Submit, before any C call (llama-
// server instead silently splits n_ctx across slots and truncates prompts). A stream
// that fills its context ends with FinishLength.
//
// # Batch order and slot packing
//
// With per-sequence KV buffers (the default) llama.cpp packs only runs of consecutive
// sequence ids into one micro-batch, so batch entries are written in slot order and
// the running sequences are kept in adjacent slots: admission prefers a free slot
// next to a running one when prefixes tie, and when finished requests leave holes
// that no queued request fills, the sequences outside the best window are moved into
// it (one KV buffer copy each, at most one per finished request; the source slot
// keeps its tokens for prefix reuse). A step whose sequences all have one token is
// then a single graph evaluation, as in a bare decode loop, however requests came and
// went: 8 streams left on every other slot decode at 0.37-0.46x the speed of 8
// adjacent ones without packing (bench.BenchmarkFragmentedSlots). Mixed steps
// (decode tokens plus a prompt chunk) cost one extra evaluation, which the step
// model accounts for.
//
// # Fair share between tenants
//
// Waiting requests are queued per tenant (Request.Tenant, the API key's id; "" is
// the anonymous tenant) and admitted by PickNext, a pure decision over the tenants'
// counters, queues and free slots. Each tenant has a virtual token counter (VTC,
// Sheng et al., "Fairness in Serving Large Language Models", OSDI 2024): the service
// it received, evaluated prompt tokens times InputCost plus generated tokens times
// OutputCost, divided by its weight. A free slot goes to the backlogged tenant with
// the least counter, its oldest request first, so a tenant with 200 queued requests
// does not make another one's request wait behind them, and a tenant of weight 3
// gets three times the service of one of weight 1 while both wait. A tenant that
// becomes backlogged again is lifted to the least counter of the backlogged tenants
// (LiftCounter), so time spent idle is not banked. The policy is work-conserving: a
// slot is never left idle while a request that may run waits.
//
// Bounds: besides the model's queue (QueueSize: ErrOverloaded), an identified tenant
// may hold Fairness.TenantQueueShare of it (ErrTenantOverloaded, which wraps
// ErrOverloaded) while others still find room; anonymous requests are bounded by the
// total only. Fairness.MaxSlotsShare optionally caps the slots one tenant holds, so
// that its long generations never take every slot: the one case where the operator
// trades work conservation for room kept free for others.
//
// Classes: a Batch request is admitted only when no Interactive request that may run
// waits. Aging rule: a batch request that has waited Fairness.BatchAging (default
// 30s) competes as an interactive one, by its tenant's counter, so batch work is
// delayed by at most BatchAging plus its tenant's fair share of the interactive
// backlog, never forever.
//
// Preemption: admission alone only shares the slots that free up, so a tenant whose
// long generations hold every slot would keep them until they end. When every slot
// is busy, PickVictim (a pure decision, table-tested) lets the request PickNext
// would admit next take a slot from a running sequence: one of batch work when the
// request is interactive, or one of a tenant holding more than its weighted share of
// the slots with a greater counter, and only while the request's tenant is below its
// own share (never for a tenant that already holds it). The sequence with the least
// work to redo goes (batch first, then the fewest tokens in its KV cache). It keeps
// its state: its prompt and the tokens generated so far become its input, it waits
// at the head of its tenant's queue, and its KV cache is saved to host memory
// (swap.go, bounded by Fairness.PreemptSwapBytes), so that when admitted again it
// evaluates only the token it sampled last (past the bound it evaluates them all, or
// one token when its slot still caches them) and continues; its sampler
// object is kept, so greedy and seeded sampling continue exactly as without the
// preemption, and its client sees a pause, no lost or repeated token. The evaluation
// redone is not charged to its tenant. Churn is bounded: a sequence runs
// PreemptMinSteps steps after each admission before it may be preempted, at most
// PreemptMaxTimes times in all, and a slot taken for an under-served tenant cannot be
// taken back by the tenant it came from (that one was above its share).
// Fairness.NoPreempt turns preemption off.
//
// A request admitted beside running sequences has the rest of its prompt evaluated
// in a step of its own before their decodes (firstOnly): with per-sequence KV
// buffers the two are separate evaluations anyway, so its first token no longer waits
// for theirs, and one that arrives meanwhile is admitted before them too (at most
// two such steps in a row defer the decodes). This holds under every policy, FCFS
// included.
//
// Fairness.FCFS turns all this off (one first-come-first-served queue), for
// comparison (bench.BenchmarkFairShare). Metrics stay bounded: the number of
// backlogged tenants and the spread of their counters per model, no tenant labels.
//
// # Text
//
// Output text is complete UTF-8 (a character split across byte-fallback tokens is
// held until complete; impossible bytes become U+FFFD) and never contains a stop
// string, nor streams the start of one before it is known not to be one.
package sched
