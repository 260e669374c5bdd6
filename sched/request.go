package sched

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hxp-ai/hxp/engine"
)

// Errors returned by Submit and carried by final events. The API maps them to HTTP
// statuses: ErrContextOverflow and ErrInvalidRequest to 400, ErrOverloaded to 429
// (with Retry-After), ErrClosed to 503.
var (
	// ErrOverloaded means the model's queue is full.
	ErrOverloaded = errors.New("model overloaded: queue full")
	// ErrTenantOverloaded means the request's tenant already holds its share of the
	// model's queue (Fairness.TenantQueueShare) while others may still queue. It wraps
	// ErrOverloaded: errors.Is(err, ErrOverloaded) holds for both.
	ErrTenantOverloaded = fmt.Errorf("%w (tenant queue full: this key holds its whole share of the queue)", ErrOverloaded)
	// ErrContextOverflow means prompt + max_tokens do not fit one sequence's context.
	ErrContextOverflow = engine.ErrContextOverflow
	// ErrInvalidRequest marks a request rejected by validation.
	ErrInvalidRequest = engine.ErrInvalidArgument
	// ErrClosed means the scheduler is shutting down or stopped.
	ErrClosed = errors.New("model is shutting down")
)

// Request is one generation request for a model.
type Request struct {
	// Prompt is the tokenized prompt (BOS included when the model wants it).
	Prompt []engine.Token
	// MaxTokens caps generated tokens; 0 means until the sequence's context is full.
	MaxTokens int
	// Sampling chooses tokens; the zero value is greedy.
	Sampling engine.SamplingParams
	// Stop strings end generation; the matched text is not returned and a partial
	// match is held back, never streamed.
	Stop []string
	// Logprobs returns each generated token's log-probability (see TopLogprobs).
	Logprobs bool
	// TopLogprobs is the number of alternatives returned with each token (0..20).
	TopLogprobs int
	// IgnoreEOS keeps generating past end-of-generation tokens (benchmarks).
	IgnoreEOS bool
	// RenderSpecial includes control tokens' text (such as "[TOOL_CALLS]" or
	// "<|python_tag|>") in the output text, for parsers that read them; they are
	// left out otherwise.
	RenderSpecial bool
	// Tenant is who the request is served for (the API key's id); "" is the
	// anonymous tenant. Waiting requests are queued and shared per tenant.
	Tenant string
	// Weight is the tenant's share relative to others (the key's weight): a tenant
	// of weight 3 gets three times the service of one of weight 1 while both wait.
	// 0 means 1; at most MaxWeight.
	Weight float64
	// Priority is the request's class (Interactive by default).
	Priority Priority
}

// MaxStopStrings and MaxStopLen bound Request.Stop.
const (
	MaxStopStrings = 16
	MaxStopLen     = 256
	MaxTopLogprobs = 20
)

// Validate checks the request against the model and context, before any C call.
func (r *Request) Validate(m *engine.Model, seqCtx int) error {
	if len(r.Prompt) == 0 {
		return fmt.Errorf("prompt is empty: %w", ErrInvalidRequest)
	}
	if err := m.CheckTokens(r.Prompt); err != nil {
		return fmt.Errorf("prompt: %w", err)
	}
	if r.MaxTokens < 0 {
		return fmt.Errorf("max_tokens=%d: %w (must be >= 0)", r.MaxTokens, ErrInvalidRequest)
	}
	if len(r.Stop) > MaxStopStrings {
		return fmt.Errorf("stop: %d strings: %w (at most %d)", len(r.Stop), ErrInvalidRequest, MaxStopStrings)
	}
	for i, s := range r.Stop {
		if s == "" || len(s) > MaxStopLen {
			return fmt.Errorf("stop[%d]: length %d: %w (1..%d bytes)", i, len(s), ErrInvalidRequest, MaxStopLen)
		}
	}
	if r.Weight < 0 || r.Weight > MaxWeight || math.IsNaN(r.Weight) {
		return fmt.Errorf("weight=%v: %w (0 for 1, or up to %v)", r.Weight, ErrInvalidRequest, MaxWeight)
	}
	if r.Priority != Interactive && r.Priority != Batch {
		return fmt.Errorf("priority=%d: %w (Interactive or Batch)", r.Priority, ErrInvalidRequest)
	}
	if r.TopLogprobs < 0 || r.TopLogprobs > MaxTopLogprobs {
		return fmt.Errorf("top_logprobs=%d: %w (0..%d)", r.TopLogprobs, ErrInvalidRequest, MaxTopLogprobs)
	}
	if err := r.Sampling.Validate(); err != nil {
		return err
	}
	need := len(r.Prompt) + max(r.MaxTokens, 1)
	if need > seqCtx {
		return fmt.Errorf("prompt (%d tokens) + max_tokens (%d) = %d exceeds the model's context of %d tokens per sequence: %w",
			len(r.Prompt), r.MaxTokens, need, seqCtx, ErrContextOverflow)
	}
	return nil
}

// FinishReason tells why generation ended, in OpenAI's terms.
type FinishReason string

// Finish reasons.
const (
	FinishStop      FinishReason = "stop"      // end-of-generation token or stop string
	FinishLength    FinishReason = "length"    // max_tokens or the context is full
	FinishCancelled FinishReason = "cancelled" // the caller went away or its deadline passed
	FinishError     FinishReason = "error"
)

// TokenLogprob is one generated token with its log-probability and alternatives.
type TokenLogprob struct {
	Token   engine.Token
	Text    []byte // the token's raw bytes (may be part of a UTF-8 character)
	Logprob float32
	Top     []engine.TokenProb
}

// Usage counts the tokens of a request.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	CachedTokens     int // prompt tokens reused from the slot's KV cache
}

// Event is one piece of a streamed generation. Every stream ends with exactly one
// event with Done set, after which the channel is closed.
type Event struct {
	// Text is new output text: always complete, valid UTF-8 (invalid model bytes are
	// replaced by U+FFFD), with stop strings removed.
	Text string
	// Tokens generated since the previous event (their text may be held back until
	// it is complete or known not to start a stop string).
	Tokens []engine.Token
	// Logprobs of those tokens, when requested.
	Logprobs []TokenLogprob
	// Done marks the final event: Finish, Usage and Err are set on it.
	Done   bool
	Finish FinishReason
	Usage  Usage
	Err    error
	// StopSequence is the stop string that ended the request (FinishStop only);
	// "" when an end-of-generation token did.
	StopSequence string
	// Timing of the request, on the final event.
	Queued, TimeToFirstToken, Duration time.Duration
}
