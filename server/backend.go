// Package server is HXP's HTTP layer: the OpenAI-compatible handlers and wire
// format, the per-model fasthttp listeners, and the gateway that routes requests to
// model upstreams through an explicit, ordered middleware chain.
//
// Errors are mapped to HTTP statuses and OpenAI error objects in one place,
// toAPIError in errors.go.
package server

import (
	"context"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// Backend is one model as the handlers use it. *service.Service implements it.
// Every method returns an error wrapping service.ErrNotReady or sched.ErrClosed when
// the model is not serving.
type Backend interface {
	// Name is the model id.
	Name() string
	// Ready is nil when the model serves requests.
	Ready() error
	// State is the model's lifecycle state (for /v1/models and /health).
	State() service.State
	// SeqCtx is one request's context window in tokens (0 when not ready).
	SeqCtx() int
	// RenderChat applies the chat template, ending with the assistant's turn.
	RenderChat(msgs []engine.ChatMessage) (string, error)
	// Tokenize converts text to tokens.
	Tokenize(text string, addSpecial, parseSpecial bool) ([]engine.Token, error)
	// Detokenize converts tokens to text.
	Detokenize(toks []engine.Token) (string, error)
	// TokenBytes is the raw text of one token.
	TokenBytes(t engine.Token) ([]byte, error)
	// Submit starts a generation (see sched.Scheduler.Submit).
	Submit(ctx context.Context, r sched.Request) (<-chan sched.Event, error)
	// Embed returns one L2-normalised vector per tokenized input.
	Embed(ctx context.Context, inputs [][]engine.Token) ([][]float32, error)
	// MaxEmbedTokens is the longest embeddings input.
	MaxEmbedTokens() int
	// Info is the model's metadata.
	Info() engine.ModelInfo
	// Created is when the model service was created ("created" of /v1/models).
	Created() time.Time
}

var _ Backend = (*service.Service)(nil)

// card describes a backend for /v1/models.
func card(b Backend) ModelCard {
	return ModelCard{ID: b.Name(), Object: "model", Created: b.Created().Unix(), OwnedBy: "hxp",
		Status: b.State().String(), ContextLength: b.SeqCtx()}
}
