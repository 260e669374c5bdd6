package graphql

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/transport/graphql/generated"
)

// resolver implements the generated executor's resolvers over the service: inputs
// (OpenAI wire requests) are validated by package openai exactly as REST bodies are,
// results are rendered by package openai as REST renders them.
type resolver struct {
	svc infer.Service
	lim openai.Limits
}

var _ generated.ResolverRoot = (*resolver)(nil)

func (r *resolver) Query() generated.QueryResolver               { return (*queryResolver)(r) }
func (r *resolver) Mutation() generated.MutationResolver         { return (*mutationResolver)(r) }
func (r *resolver) Subscription() generated.SubscriptionResolver { return (*subscriptionResolver)(r) }
func (r *resolver) ChatCompletionChunk() generated.ChatCompletionChunkResolver {
	return chunkResolver{}
}
func (r *resolver) Completion() generated.CompletionResolver { return completionResolver{} }
func (r *resolver) CompletionLogprobs() generated.CompletionLogprobsResolver {
	return logprobsResolver{}
}
func (r *resolver) Embedding() generated.EmbeddingResolver { return embeddingResolver{} }

type queryResolver resolver

// models lists the served models, sorted by id, as REST does.
func (r *queryResolver) models(ctx context.Context) []infer.Model {
	ms := r.svc.Models(ctx)
	slices.SortFunc(ms, func(a, b infer.Model) int { return strings.Compare(a.ID, b.ID) })
	return ms
}

func (r *queryResolver) Models(ctx context.Context) ([]openai.ModelCard, error) {
	return openai.Cards(r.models(ctx)).Data, nil
}

func (r *queryResolver) Model(ctx context.Context, id string) (*openai.ModelCard, error) {
	for _, m := range r.models(ctx) {
		if m.ID == id {
			c := openai.Card(m)
			return &c, nil
		}
	}
	return nil, infer.ModelNotFound(id)
}

type mutationResolver resolver

// collect reads a generation to its end (closing it when the operation's context
// ends first) and records its usage in the access record.
func collect(ctx context.Context, g *infer.Generation) (*infer.Result, error) {
	stop := context.AfterFunc(ctx, g.Close)
	defer stop()
	res, err := g.Collect()
	recordUsage(ctx, g.Summary())
	return res, err
}

func (r *mutationResolver) ChatCompletion(ctx context.Context, input openai.ChatRequest) (*openai.ChatCompletion, error) {
	input.Stream, input.StreamOptions = false, nil
	in, err := openai.ValidateChat(&input, r.lim)
	if err != nil {
		return nil, err
	}
	recordModel(ctx, in.Model)
	g, err := r.svc.Chat(ctx, &in.ChatRequest)
	if err != nil {
		return nil, err
	}
	res, err := collect(ctx, g)
	if err != nil {
		return nil, err
	}
	return openai.NewStream(openai.KindChat, g.Served, g.Choices, false, in.Logprobs).Response(res).(*openai.ChatCompletion), nil
}

func (r *mutationResolver) Completion(ctx context.Context, input openai.CompletionRequest) (*openai.Completion, error) {
	input.Stream, input.StreamOptions = false, nil
	in, err := openai.ValidateCompletion(&input, r.lim)
	if err != nil {
		return nil, err
	}
	recordModel(ctx, in.Model)
	g, err := r.svc.Complete(ctx, &in.CompletionRequest)
	if err != nil {
		return nil, err
	}
	res, err := collect(ctx, g)
	if err != nil {
		return nil, err
	}
	return openai.NewStream(openai.KindCompletion, g.Served, g.Choices, false, in.Logprobs).Response(res).(*openai.Completion), nil
}

func (r *mutationResolver) Embeddings(ctx context.Context, input openai.EmbeddingRequest) (*openai.EmbeddingResponse, error) {
	input.EncodingFormat = "" // floats: GraphQL has no base64 form
	in, err := openai.ValidateEmbeddings(&input)
	if err != nil {
		return nil, err
	}
	recordModel(ctx, in.Model)
	e, err := r.svc.Embed(ctx, &in.EmbedRequest)
	if err != nil {
		return nil, err
	}
	recordUsage(ctx, infer.Summary{Usage: e.Usage})
	return openai.EmbeddingsResponse(e, false), nil
}

type subscriptionResolver resolver

// streamFailure holds the error that ended a subscription's generation after it
// started, which the WebSocket transport sends as the operation's error message.
type streamFailure struct {
	mu  sync.Mutex
	err error
}

type failureKey struct{}

// withStreamFailure returns ctx with a place for a subscription's late error.
func withStreamFailure(ctx context.Context) (context.Context, *streamFailure) {
	f := &streamFailure{}
	return context.WithValue(ctx, failureKey{}, f), f
}

func (f *streamFailure) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *streamFailure) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// ChatCompletionStream sends the chunks REST streams as server-sent events: each
// choice's role, the deltas, each choice's finish, and a last chunk with the usage.
// The generation is closed when the operation's context ends (the client completed
// the subscription or its socket closed).
func (r *subscriptionResolver) ChatCompletionStream(ctx context.Context, input openai.ChatRequest) (<-chan *openai.ChatChunk, error) {
	input.Stream, input.StreamOptions = true, nil
	in, err := openai.ValidateChat(&input, r.lim)
	if err != nil {
		return nil, err
	}
	g, err := r.svc.Chat(ctx, &in.ChatRequest)
	if err != nil {
		return nil, err
	}
	out := make(chan *openai.ChatChunk)
	go func() {
		defer close(out)
		stop := context.AfterFunc(ctx, g.Close)
		defer stop()
		defer g.Close()
		st := openai.NewStream(openai.KindChat, g.Served, g.Choices, false, in.Logprobs)
		send := func(c any) bool {
			select {
			case out <- c.(*openai.ChatChunk):
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, c := range st.Start(g.Choices) {
			if !send(c) {
				return
			}
		}
		for ev := range g.Events() {
			if ev.Done && ev.Err != nil {
				if e := infer.AsError(ev.Err, ""); e.Kind != infer.Cancelled {
					if f, ok := ctx.Value(failureKey{}).(*streamFailure); ok {
						f.set(e)
					}
				}
				return
			}
			if c := st.Delta(&ev); c != nil && !send(c) {
				return
			}
			if ev.Done && !send(st.Finish(&ev)) {
				return
			}
		}
		send(st.UsageChunk(g.Summary().Usage))
	}()
	return out, nil
}

// usageOf decodes the usage member of a rendered chunk or completion: absent or null
// is no usage.
func usageOf(raw json.RawMessage) (*openai.Usage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var u openai.Usage
	if err := json.Unmarshal(raw, &u); err != nil {
		return nil, fmt.Errorf("decode rendered usage: %w", err)
	}
	return &u, nil
}

type chunkResolver struct{}

func (chunkResolver) Usage(_ context.Context, obj *openai.ChatChunk) (*openai.Usage, error) {
	return usageOf(obj.Usage)
}

type completionResolver struct{}

func (completionResolver) Usage(_ context.Context, obj *openai.Completion) (*openai.Usage, error) {
	return usageOf(obj.Usage)
}

type logprobsResolver struct{}

// TopLogprobs renders each token's alternatives as a JSON object (token -> logprob),
// as REST does.
func (logprobsResolver) TopLogprobs(_ context.Context, obj *openai.CompletionLogprobs) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(obj.TopLogprobs))
	for i, m := range obj.TopLogprobs {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encode top logprobs: %w", err)
		}
		out[i] = b
	}
	return out, nil
}

type embeddingResolver struct{}

// Embedding is the vector as floats (the resolver asks for float encoding).
func (embeddingResolver) Embedding(_ context.Context, obj *openai.Embedding) ([]float64, error) {
	v, ok := obj.Embedding.([]float32)
	if !ok {
		return nil, fmt.Errorf("embedding %d is %T, not floats", obj.Index, obj.Embedding)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out, nil
}
