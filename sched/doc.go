// Package sched is HXP's continuous-batching scheduler: one per model, owning that
// model's llama.cpp context from a single goroutine locked to its OS thread.
//
// # Shape
//
// Requests arrive through Submit into a bounded queue (full queue: ErrOverloaded).
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
// this model on this machine is learnt online as t(n) = Fixed + PerToken*n over the
// batch size n (StepModel: least squares with exponential forgetting, so it follows
// contention and thermal changes). Each step:
//
//   - every decoding sequence gets its next token: running streams are never paused;
//   - when nothing decodes, prompts are evaluated at full batch size (throughput);
//   - otherwise prompts get the tokens that keep the predicted step time within
//     TargetITL, oldest request first, and at least a small minimum chunk so that a
//     long prompt always progresses (no starvation).
//
// This is chunked prefill with a latency-derived budget: a 1,536-token prompt that
// arrives while 8 streams decode stalls them for one 3.3 s step without chunking,
// and for at most ~90 ms with it (bench.BenchmarkChunkedPrefill), at the price of a
// later first token for the long request itself.
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
// # Limits
//
// The context of one request is SeqCtx tokens, explicit and enforced: prompt plus
// max_tokens beyond it is ErrContextOverflow at Submit, before any C call (llama-
// server instead silently splits n_ctx across slots and truncates prompts). A stream
// that fills its context ends with FinishLength.
//
// # Batch order
//
// With per-sequence KV buffers llama.cpp packs only runs of consecutive sequence ids
// into one micro-batch, so batch entries are written in slot order; a step whose
// sequences all have one token is a single graph evaluation, as in a bare decode
// loop. Mixed steps (decode tokens plus a prompt chunk) cost one extra evaluation.
//
// # Text
//
// Output text is complete UTF-8 (a character split across byte-fallback tokens is
// held until complete; impossible bytes become U+FFFD) and never contains a stop
// string, nor streams the start of one before it is known not to be one.
package sched
