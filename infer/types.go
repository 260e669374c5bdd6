package infer

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/engine"
)

// Model describes one served model (GET /v1/models and its siblings).
type Model struct {
	ID      string
	Created time.Time
	// Status is loading, ready, failed, draining, closed, or unknown (a remote node
	// not checked yet) or unreachable.
	Status string
	// ContextLength is one request's context window in tokens (0 while loading).
	ContextLength int
	// ChatTemplate says which chat template renders conversations: "gguf" (the
	// model's own), "file" (chat_template_file), "builtin:NAME" (a llama.cpp
	// built-in), "default:chatml" (the model has none); "" while loading or unknown.
	ChatTemplate string
}

// Ready reports whether the model serves requests.
func (m Model) Ready() bool { return m.Status == "ready" }

// Format is how the output is shaped (response_format).
type Format struct {
	// Type is FormatText, FormatJSONObject or FormatJSONSchema.
	Type FormatType
	// Name and Schema describe a FormatJSONSchema; Strict is the client's flag.
	Name   string
	Schema []byte
	Strict bool
}

// FormatType is the kind of output constraint.
type FormatType int

// Output formats.
const (
	FormatText FormatType = iota
	FormatJSONObject
	FormatJSONSchema
)

// GenParams are the validated generation settings shared by chat and completions.
type GenParams struct {
	// MaxTokens caps each choice's tokens; 0 means until the context is full.
	MaxTokens int
	// Sampling chooses tokens (its Grammar is set by the core from Format).
	Sampling engine.SamplingParams
	// SeedFixed reports that the client chose the seed: with it, or at temperature 0,
	// the output depends on the request only (see Deterministic).
	SeedFixed bool
	// Stop strings end a choice; the stop text is not returned.
	Stop []string
	// Logprobs returns each token's log-probability with TopLogprobs alternatives.
	Logprobs    bool
	TopLogprobs int
	// N is the number of choices per prompt (1..MaxChoices).
	N int
	// Format constrains the output.
	Format Format
	// Batch asks for the batch scheduling class (a key's batch class cannot be
	// raised to interactive by its requests).
	Batch bool
	// Stream reports that the client reads the output as it is generated; the core
	// produces events either way, but only collected results are cached.
	Stream bool
}

// Deterministic reports whether the output depends on the request only: greedy
// decoding or a seed chosen by the client.
func (g *GenParams) Deterministic() bool { return g.Sampling.Temperature == 0 || g.SeedFixed }

// MaxChoices bounds the choices (prompts x n) of one request.
const MaxChoices = 16

// ChatRequest is a validated chat request.
type ChatRequest struct {
	// Model is the model asked for ("" where the front end has a default).
	Model    string
	Messages []chat.Message
	// Tools the model may call, and whether it must.
	Tools      []chat.Tool
	ToolChoice chat.ToolChoice
	// ParallelToolCalls lets the model make more than one call in a turn (OpenAI's
	// default, which front ends set unless the client said false); without it a
	// choice makes one call at most.
	ParallelToolCalls bool
	// TemplateVars are extra chat template variables (chat_template_kwargs), over
	// the model's configured ones.
	TemplateVars chat.Vars
	GenParams
}

// ApplyTemplateRequest renders a conversation with the model's chat template without
// generating (POST /apply-template).
type ApplyTemplateRequest struct {
	Model    string
	Messages []chat.Message
	Tools    []chat.Tool
	// AddGenerationPrompt ends the prompt with the start of the assistant's turn
	// (front ends default it to true).
	AddGenerationPrompt bool
	// TemplateVars are as ChatRequest's.
	TemplateVars chat.Vars
}

// RenderedPrompt is the result of an apply-template request: the prompt text exactly
// as the template rendered it (a leading BOS text included).
type RenderedPrompt struct {
	Served
	Prompt string
}

// Prompt is one prompt of a completion or one input of an embedding: text, or token
// ids when IsTokens.
type Prompt struct {
	Text     string
	Tokens   []engine.Token
	IsTokens bool
}

// CompletionRequest is a validated raw-prompt completion request.
type CompletionRequest struct {
	Model   string
	Prompts []Prompt
	GenParams
}

// EmbedRequest is a validated embeddings request.
type EmbedRequest struct {
	Model  string
	Inputs []Prompt
	// Dimensions is the width asked for (0: the model's).
	Dimensions int
}

// TokenizeRequest tokenizes a prompt as completions do, or messages as chat does.
type TokenizeRequest struct {
	Model string
	// Prompt is tokenized when Messages is nil.
	Prompt   string
	Messages []chat.Message
	// Tools are rendered with Messages as Chat renders a request's tools (a
	// template may need them to render tool calls in the history).
	Tools []chat.Tool
	// AddSpecial adds the model's BOS (and EOS where it wants one).
	AddSpecial bool
}

// DetokenizeRequest turns token ids back into text.
type DetokenizeRequest struct {
	Model  string
	Tokens []engine.Token
}

// Usage counts a request's tokens.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	// CachedTokens are prompt tokens reused from the KV cache.
	CachedTokens int
}

// Total is prompt plus completion tokens.
func (u Usage) Total() int { return u.PromptTokens + u.CompletionTokens }

// Quota is a caller's rate-limit state after a decision (the x-ratelimit-* headers).
type Quota struct {
	Requests, Tokens Bucket
}

// Bucket is one rate-limited dimension; Limit 0 means not limited.
type Bucket struct {
	Limit, Remaining int64
	// Reset is when the bucket is full again.
	Reset time.Duration
}

// Served is what every result says about how it was served.
type Served struct {
	// ID identifies a generation (the response id front ends render, such as
	// "chatcmpl-"+ID); Created is when it started. A cached answer keeps both.
	ID      string
	Created time.Time
	// Model is the model that answered: a fallback of the one asked for, when its
	// upstreams all failed.
	Model string
	// Cached is set when the response cache answered (CacheMiss when it was asked
	// and had nothing; zero when the request is not cacheable).
	Cache CacheResult
	// Quota is the caller's rate-limit state, when a limit applies.
	Quota *Quota
}

// CacheResult says whether the response cache answered a request.
type CacheResult int

// Cache results.
const (
	CacheNone CacheResult = iota // not cacheable, or no cache
	CacheMiss
	CacheHit
)

// Embeddings is the result of an embeddings request.
type Embeddings struct {
	Served
	// Vectors are L2-normalised, one per input, with finite values.
	Vectors [][]float32
	Usage   Usage
}

// Tokens is the result of a tokenize request.
type Tokens struct {
	Served
	Tokens []engine.Token
	// MaxModelLen is one request's context window.
	MaxModelLen int
}

// Text is the result of a detokenize request.
type Text struct {
	Served
	Text string
}

// CheckModelID validates a request's model field, for every wire format (it may be
// empty: the front end decides what an empty model means).
func CheckModelID(model string) error {
	if !utf8.ValidString(model) || len(model) > 256 {
		return Invalid("model", "model is not a valid model id")
	}
	return nil
}

// CheckText rejects text the engine cannot take (a NUL byte ends a C string), naming
// param, for every wire format.
func CheckText(s, param string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return Invalid(param, "%s contains a NUL character", param)
	}
	return nil
}
