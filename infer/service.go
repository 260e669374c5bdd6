// Package infer is HXP's transport-neutral inference core: validated request types,
// the Service interface that every front end (REST, gRPC, GraphQL) calls, streamed
// generations, usage as a typed result, cancellation by context.Context, and one
// typed error whose Kind each transport maps to its own vocabulary in one table.
//
// Local implements Service over one model served in this process. Routing
// (route.Pool over local and remote upstreams), admission (tenancy) and the response
// cache are Services too, wrapped around it; front ends see only the interface.
//
// infer imports the engine, scheduler and model-service types and the chat package;
// it never imports a transport, routing or tenancy package.
package infer

import "context"

// Service is what every front end calls. Implementations are safe for concurrent use.
type Service interface {
	// Models lists the models served, in a stable order.
	Models(ctx context.Context) []Model
	// Chat renders the conversation with the model's chat template and starts a
	// generation. A returned generation has been admitted by the model's scheduler.
	Chat(ctx context.Context, r *ChatRequest) (*Generation, error)
	// Complete starts a generation for each raw prompt (n choices each).
	Complete(ctx context.Context, r *CompletionRequest) (*Generation, error)
	// Embed returns one L2-normalised vector per input.
	Embed(ctx context.Context, r *EmbedRequest) (*Embeddings, error)
	// Tokenize converts a prompt or a conversation to token ids.
	Tokenize(ctx context.Context, r *TokenizeRequest) (*Tokens, error)
	// Detokenize converts token ids back to text.
	Detokenize(ctx context.Context, r *DetokenizeRequest) (*Text, error)
	// ApplyTemplate renders a conversation with the model's chat template, as Chat
	// does before tokenizing it.
	ApplyTemplate(ctx context.Context, r *ApplyTemplateRequest) (*RenderedPrompt, error)
}
