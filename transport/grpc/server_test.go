package grpc

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/transport/grpc/hxpv1"
)

func userMsg(text string) []*hxpv1.Message { return []*hxpv1.Message{{Role: "user", Content: text}} }

func textPrompt(s string) *hxpv1.Prompt { return &hxpv1.Prompt{Prompt: &hxpv1.Prompt_Text{Text: s}} }

// readStream reads a generation stream to its end: the text per choice, the finish
// reasons and the usage (which must come last).
func readStream(t testing.TB, recv func() (*hxpv1.GenerateChunk, error)) (texts map[int32]string, finish map[int32]hxpv1.FinishReason, usage *hxpv1.Usage, err error) {
	t.Helper()
	texts, finish = map[int32]string{}, map[int32]hxpv1.FinishReason{}
	for {
		c, err := recv()
		if err == io.EOF {
			return texts, finish, usage, nil
		}
		if err != nil {
			return texts, finish, usage, err
		}
		if usage != nil {
			t.Fatalf("chunk after the usage: %v", c)
		}
		switch {
		case c.Usage != nil:
			usage = c.Usage
		case c.FinishReason != hxpv1.FinishReason_FINISH_REASON_UNSPECIFIED:
			finish[c.Index] = c.FinishReason
		default:
			texts[c.Index] += c.Text
		}
	}
}

// TestEveryMethod calls each Inference method over a real connection and checks that
// the request reached the service as the core's request and the result came back.
func TestEveryMethod(t *testing.T) {
	f := &infertest.Fake{Reply: "one two three"}
	s := serve(t, f, Options{})
	ctx := testCtx(t)

	ms, err := s.api.ListModels(ctx, &hxpv1.ListModelsRequest{})
	if err != nil || len(ms.Models) != 1 || ms.Models[0].Id != "fake" || ms.Models[0].Status != "ready" || ms.Models[0].ContextLength != 4096 {
		t.Fatalf("ListModels: %v, %v", ms, err)
	}

	var hdr metadata.MD
	chat, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("hello there"), MaxTokens: ptr[int32](2),
		Temperature: ptr(0.0), Stop: []string{"zz"}, Seed: ptr[int64](7), N: ptr[int32](2),
		Tools:      []*hxpv1.Tool{{Type: "function", Function: &hxpv1.FunctionSpec{Name: "get_weather", Parameters: `{"type":"object","properties":{"city":{"type":"string"}}}`}}},
		ToolChoice: &hxpv1.ToolChoice{Choice: &hxpv1.ToolChoice_Mode{Mode: "none"}}}, gogrpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if len(chat.Choices) != 2 || chat.Choices[0].Text != "one two " || chat.Choices[0].FinishReason != hxpv1.FinishReason_FINISH_REASON_LENGTH ||
		chat.Usage.CompletionTokens != 4 || chat.Model != "fake" || len(hdr.Get(RequestIDHeader)) != 1 || chat.Id != hdr.Get(RequestIDHeader)[0] {
		t.Fatalf("Chat: %v (header %v)", chat, hdr)
	}
	cr := f.Last().(*infer.ChatRequest)
	if cr.MaxTokens != 2 || cr.N != 2 || cr.Sampling.Temperature != 0 || !cr.SeedFixed || cr.Sampling.Seed != 7 || cr.Stop[0] != "zz" ||
		len(cr.Tools) != 1 || string(cr.Tools[0].Parameters) != `{"type":"object","properties":{"city":{"type":"string"}}}` || cr.Stream {
		t.Fatalf("the service got %+v", cr)
	}

	cs, err := s.api.ChatStream(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("hi")})
	if err != nil {
		t.Fatal(err)
	}
	texts, finish, usage, err := readStream(t, cs.Recv)
	if err != nil || texts[0] != "one two three" || finish[0] != hxpv1.FinishReason_FINISH_REASON_STOP || usage.CompletionTokens != 3 || usage.TotalTokens != usage.PromptTokens+3 {
		t.Fatalf("ChatStream: %q %v %v %v", texts, finish, usage, err)
	}
	if !f.Last().(*infer.ChatRequest).Stream {
		t.Error("ChatStream did not mark the request as streamed")
	}

	comp, err := s.api.Complete(ctx, &hxpv1.CompleteRequest{Model: "fake", Prompt: []*hxpv1.Prompt{textPrompt("a"),
		{Prompt: &hxpv1.Prompt_Tokens{Tokens: &hxpv1.TokenIDs{Ids: []int32{1, 2, 3}}}}}})
	if err != nil || len(comp.Choices) != 2 || comp.Choices[1].Text != "one two three" {
		t.Fatalf("Complete: %v, %v", comp, err)
	}
	if ps := f.Last().(*infer.CompletionRequest).Prompts; len(ps) != 2 || ps[0].Text != "a" || !ps[1].IsTokens || len(ps[1].Tokens) != 3 {
		t.Fatalf("Complete prompts: %+v", ps)
	}
	ccs, err := s.api.CompleteStream(ctx, &hxpv1.CompleteRequest{Model: "fake", Prompt: []*hxpv1.Prompt{textPrompt("a")}, N: ptr[int32](2)})
	if err != nil {
		t.Fatal(err)
	}
	if texts, _, usage, err := readStream(t, ccs.Recv); err != nil || texts[0] != "one two three" || texts[1] != "one two three" || usage.CompletionTokens != 6 {
		t.Fatalf("CompleteStream: %q %v %v", texts, usage, err)
	}

	emb, err := s.api.Embed(ctx, &hxpv1.EmbedRequest{Model: "fake", Input: []*hxpv1.Prompt{textPrompt("abcd"), textPrompt("ab")}})
	if err != nil || len(emb.Data) != 2 || emb.Data[1].Index != 1 || emb.Data[0].Embedding[3] != 4 || emb.Usage.PromptTokens != 2 {
		t.Fatalf("Embed: %v, %v", emb, err)
	}
	tok, err := s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: "fake", Prompt: ptr("hi")})
	if err != nil || tok.Count != 2 || tok.Tokens[0] != 'h' || tok.MaxModelLen != 4096 {
		t.Fatalf("Tokenize: %v, %v", tok, err)
	}
	if tr := f.Last().(*infer.TokenizeRequest); !tr.AddSpecial {
		t.Error("add_special_tokens should default to true, as in REST")
	}
	if _, err := s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: "fake", Messages: userMsg("m"), AddSpecialTokens: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if tr := f.Last().(*infer.TokenizeRequest); tr.AddSpecial || len(tr.Messages) != 1 {
		t.Errorf("Tokenize messages: %+v", tr)
	}
	det, err := s.api.Detokenize(ctx, &hxpv1.DetokenizeRequest{Model: "fake", Tokens: []int32{'o', 'k'}})
	if err != nil || det.Text != "ok" {
		t.Fatalf("Detokenize: %v, %v", det, err)
	}
	at, err := s.api.ApplyTemplate(ctx, &hxpv1.ApplyTemplateRequest{Model: "fake", Messages: userMsg("hi")})
	if err != nil || !strings.Contains(at.Prompt, "hi") {
		t.Fatalf("ApplyTemplate: %v, %v", at, err)
	}
	if ar := f.Last().(*infer.ApplyTemplateRequest); !ar.AddGenerationPrompt {
		t.Error("add_generation_prompt should default to true")
	}
}

// TestValidationIsREST: invalid requests are refused by the same rules as REST's
// decoder, blaming the same field, before the service is called.
func TestValidationIsREST(t *testing.T) {
	f := &infertest.Fake{}
	s := serve(t, f, Options{MaxN: 2})
	ctx := testCtx(t)
	for _, c := range []struct {
		call   func() error
		rest   string // the same request as REST JSON
		decode func([]byte) error
	}{
		{func() error {
			_, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x"), Temperature: ptr(2.5)})
			return err
		}, `{"model":"fake","messages":[{"role":"user","content":"x"}],"temperature":2.5}`, decChat},
		{func() error {
			_, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x"), N: ptr[int32](3)})
			return err
		}, `{"model":"fake","messages":[{"role":"user","content":"x"}],"n":3}`, decChat},
		{func() error {
			_, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: []*hxpv1.Message{{Role: "robot"}}})
			return err
		}, `{"model":"fake","messages":[{"role":"robot"}]}`, decChat},
		{func() error {
			_, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x"), Tools: []*hxpv1.Tool{{Type: "function", Function: &hxpv1.FunctionSpec{Name: "bad name"}}}})
			return err
		}, `{"model":"fake","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"bad name"}}]}`, decChat},
		{func() error {
			st, err := s.api.ChatStream(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x"), TopLogprobs: ptr[int32](2)})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		}, `{"model":"fake","messages":[{"role":"user","content":"x"}],"top_logprobs":2,"stream":true}`, decChat},
		{func() error {
			_, err := s.api.Complete(ctx, &hxpv1.CompleteRequest{Model: "fake"})
			return err
		}, `{"model":"fake"}`, decComplete},
		{func() error {
			_, err := s.api.Complete(ctx, &hxpv1.CompleteRequest{Model: "fake", Prompt: []*hxpv1.Prompt{textPrompt("x")}, Stop: []string{""}})
			return err
		}, `{"model":"fake","prompt":["x"],"stop":[""]}`, decComplete},
		{func() error {
			_, err := s.api.Embed(ctx, &hxpv1.EmbedRequest{Model: "fake", Input: []*hxpv1.Prompt{textPrompt("")}})
			return err
		}, `{"model":"fake","input":[""]}`, decEmbed},
		{func() error {
			_, err := s.api.Detokenize(ctx, &hxpv1.DetokenizeRequest{Model: "fake", Tokens: []int32{-1}})
			return err
		}, `{"model":"fake","tokens":[-1]}`, decDetok},
		{func() error {
			_, err := s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: "fake"})
			return err
		}, `{"model":"fake"}`, decTokenize},
	} {
		var restErr *infer.Error
		if err := c.decode([]byte(c.rest)); !errors.As(err, &restErr) {
			t.Fatalf("REST accepted %s", c.rest)
		}
		got := c.call()
		st := wantCode(t, c.rest, got, codes.InvalidArgument)
		if st.Message() != restErr.Message {
			t.Errorf("%s: gRPC says %q, REST says %q", c.rest, st.Message(), restErr.Message)
		}
		if p := errorInfo(t, st).GetMetadata()["param"]; p != restErr.Param {
			t.Errorf("%s: gRPC blames %q, REST %q", c.rest, p, restErr.Param)
		}
	}
	for _, op := range []string{"chat", "complete", "embed", "tokenize", "detokenize"} {
		if n := f.Calls(op); n != 0 {
			t.Errorf("the service was called %d times for %s with invalid requests", n, op)
		}
	}
	// What only gRPC can send wrong: a schema that is not JSON text.
	_, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x"),
		ResponseFormat: &hxpv1.ResponseFormat{Type: "json_schema", JsonSchema: &hxpv1.JSONSchema{Name: "s", Schema: "{not json"}}})
	if p := errorInfo(t, wantCode(t, "schema", err, codes.InvalidArgument)).GetMetadata()["param"]; p != "response_format.json_schema.schema" {
		t.Errorf("bad schema blamed on %q", p)
	}
	_, err = s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Prompt: ptr("x")})
	if p := errorInfo(t, wantCode(t, "no model", err, codes.InvalidArgument)).GetMetadata()["param"]; p != "model" {
		t.Errorf("a missing model blamed on %q", p)
	}
}

// The REST decoders, for comparison.
func decChat(b []byte) error { _, err := openai.DecodeChat(b, openai.Limits{MaxN: 2}); return err }
func decComplete(b []byte) error {
	_, err := openai.DecodeCompletion(b, openai.Limits{MaxN: 2})
	return err
}
func decEmbed(b []byte) error    { _, err := openai.DecodeEmbeddings(b); return err }
func decTokenize(b []byte) error { _, err := openai.DecodeTokenize(b); return err }
func decDetok(b []byte) error    { _, err := openai.DecodeDetokenize(b); return err }

func errorInfo(t testing.TB, st *status.Status) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.Domain != ErrorDomain {
				t.Errorf("ErrorInfo domain %q", info.Domain)
			}
			return info
		}
	}
	t.Fatalf("status %v has no ErrorInfo", st)
	return nil
}

func retryInfo(st *status.Status) *errdetails.RetryInfo {
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			return r
		}
	}
	return nil
}

// TestErrorTable: every kind of the core reaches the client as its gRPC code, with
// the code's reason, and RetryInfo on ResourceExhausted.
func TestErrorTable(t *testing.T) {
	f := &infertest.Fake{}
	s := serve(t, f, Options{})
	ctx := testCtx(t)
	for kind, want := range map[infer.Kind]codes.Code{
		infer.Internal: codes.Internal, infer.InvalidArgument: codes.InvalidArgument, infer.ContextOverflow: codes.InvalidArgument,
		infer.NotFound: codes.NotFound, infer.Unauthenticated: codes.Unauthenticated, infer.PermissionDenied: codes.PermissionDenied,
		infer.Overloaded: codes.ResourceExhausted, infer.RateLimited: codes.ResourceExhausted, infer.QuotaExceeded: codes.ResourceExhausted,
		infer.Unavailable: codes.Unavailable, infer.UpstreamFailed: codes.Unavailable, infer.DeadlineExceeded: codes.DeadlineExceeded,
		infer.Cancelled: codes.Canceled,
	} {
		f.Err = &infer.Error{Kind: kind, Code: "c_" + kind.String(), Message: "m " + kind.String(), RetryAfter: 3 * time.Second}
		if kind == infer.QuotaExceeded {
			f.Err.(*infer.Error).RetryAfter = 0
		}
		_, err := s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: "fake", Prompt: ptr("x")})
		st := wantCode(t, kind.String(), err, want)
		if st.Message() != "m "+kind.String() || errorInfo(t, st).Reason != "c_"+kind.String() {
			t.Errorf("%s: %v", kind, st.Proto())
		}
		ri := retryInfo(st)
		switch {
		case kind == infer.QuotaExceeded && (ri == nil || ri.RetryDelay.AsDuration() != defaultRetry):
			t.Errorf("%s without a retry delay should get RetryInfo %s, got %v", kind, defaultRetry, ri)
		case kind != infer.QuotaExceeded && (ri == nil || ri.RetryDelay.AsDuration() != 3*time.Second):
			t.Errorf("%s: RetryInfo %v, want 3s", kind, ri)
		}
	}
	f.Err = errors.New("plain failure")
	_, err := s.api.Embed(ctx, &hxpv1.EmbedRequest{Model: "fake", Input: []*hxpv1.Prompt{textPrompt("x")}})
	wantCode(t, "plain error", err, codes.Internal)
	f.Err = nil
	_, err = s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: "nope", Prompt: ptr("x")})
	if r := errorInfo(t, wantCode(t, "unknown model", err, codes.NotFound)).Reason; r != "model_not_found" {
		t.Errorf("unknown model reason %q", r)
	}
	// A choice that fails mid-stream ends the stream with the error's status.
	f.EventErr = &infer.Error{Kind: infer.Unavailable, Message: "draining"}
	st, err := s.api.ChatStream(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x")})
	if err != nil {
		t.Fatal(err)
	}
	texts, _, usage, err := readStream(t, st.Recv)
	wantCode(t, "mid-stream", err, codes.Unavailable)
	if texts[0] == "" || usage != nil {
		t.Errorf("mid-stream failure: text %q (want the first word) usage %v (want none)", texts[0], usage)
	}
}

// allCalls calls every Inference method naming model, with ctx, returning each error
// by method name.
func allCalls(ctx context.Context, api hxpv1.InferenceClient, model string) map[string]error {
	recv := func(st interface {
		Recv() (*hxpv1.GenerateChunk, error)
	}, err error) error {
		if err != nil {
			return err
		}
		for {
			if _, err := st.Recv(); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		}
	}
	out := map[string]error{}
	_, out["ListModels"] = api.ListModels(ctx, &hxpv1.ListModelsRequest{})
	_, out["Chat"] = api.Chat(ctx, &hxpv1.ChatRequest{Model: model, Messages: userMsg("x")})
	out["ChatStream"] = recv(api.ChatStream(ctx, &hxpv1.ChatRequest{Model: model, Messages: userMsg("x")}))
	_, out["Complete"] = api.Complete(ctx, &hxpv1.CompleteRequest{Model: model, Prompt: []*hxpv1.Prompt{textPrompt("x")}})
	out["CompleteStream"] = recv(api.CompleteStream(ctx, &hxpv1.CompleteRequest{Model: model, Prompt: []*hxpv1.Prompt{textPrompt("x")}}))
	_, out["Embed"] = api.Embed(ctx, &hxpv1.EmbedRequest{Model: model, Input: []*hxpv1.Prompt{textPrompt("x")}})
	_, out["Tokenize"] = api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: model, Prompt: ptr("x")})
	_, out["Detokenize"] = api.Detokenize(ctx, &hxpv1.DetokenizeRequest{Model: model, Tokens: []int32{65}})
	_, out["ApplyTemplate"] = api.ApplyTemplate(ctx, &hxpv1.ApplyTemplateRequest{Model: model, Messages: userMsg("x")})
	return out
}

// TestAuthMatrix: with auth on (a tenancy of static keys), every method refuses a
// missing, malformed and wrong key, a key scoped to another model gets NotFound for
// every model method (and an empty model list), a key in scope is served, and
// health stays public.
func TestAuthMatrix(t *testing.T) {
	f := &infertest.Fake{}
	ten := keyTenancy(t, staticKey("in", "secret-in-scope-1", []string{"fake"}, 0), staticKey("out", "secret-out-scope-2", []string{"other"}, 0))
	logs := &testenv.Buffer{}
	logger := zerolog.New(logs).Level(zerolog.DebugLevel)
	s := serve(t, ten.Admit(ten.Cache(f)), Options{Auth: ten, Log: logger})
	ctx := testCtx(t)

	for name, c := range map[string]context.Context{
		"no key":    ctx,
		"bad key":   withKey(ctx, "secret-wrong-key-3"),
		"malformed": metadata.AppendToOutgoingContext(ctx, "authorization", "Basic c2VjcmV0"),
		"two keys":  metadata.AppendToOutgoingContext(withKey(ctx, "secret-in-scope-1"), "authorization", "Bearer secret-in-scope-1"),
	} {
		for m, err := range allCalls(c, s.api, "fake") {
			wantCode(t, name+" "+m, err, codes.Unauthenticated)
		}
	}
	for m, err := range allCalls(withKey(ctx, "secret-out-scope-2"), s.api, "fake") {
		if m == "ListModels" {
			if err != nil {
				t.Errorf("ListModels out of scope: %v", err)
			}
			continue
		}
		wantCode(t, "out of scope "+m, err, codes.NotFound)
	}
	if ms, _ := s.api.ListModels(withKey(ctx, "secret-out-scope-2"), &hxpv1.ListModelsRequest{}); len(ms.GetModels()) != 0 {
		t.Errorf("a key scoped to another model lists %v", ms.GetModels())
	}
	for m, err := range allCalls(withKey(ctx, "secret-in-scope-1"), s.api, "fake") {
		if err != nil {
			t.Errorf("in scope %s: %v", m, err)
		}
	}
	hc := grpc_health_v1.NewHealthClient(s.conn)
	if r, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("health without a key: %v, %v", r, err)
	}
	for _, secret := range []string{"secret-in-scope-1", "secret-out-scope-2", "secret-wrong-key-3", "the quiet prompt"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the access log holds %q", secret)
		}
	}
	if !strings.Contains(logs.String(), `"code":"Unauthenticated"`) || !strings.Contains(logs.String(), `"method":"hxp.v1.Inference/Chat"`) {
		t.Errorf("access log lacks the calls: %s", logs.String())
	}
}

// TestRateLimit: a key over its requests per minute gets ResourceExhausted with a
// RetryInfo delay.
func TestRateLimit(t *testing.T) {
	f := &infertest.Fake{}
	ten := keyTenancy(t, staticKey("rpm1", "secret-rpm-one-1", nil, 1))
	s := serve(t, ten.Admit(f), Options{Auth: ten})
	ctx := withKey(testCtx(t), "secret-rpm-one-1")
	var hdr metadata.MD
	if _, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x")}, gogrpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if hdr.Get("x-ratelimit-limit-requests")[0] != "1" || hdr.Get("x-ratelimit-remaining-requests")[0] != "0" {
		t.Errorf("rate-limit metadata: %v", hdr)
	}
	_, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x")})
	st := wantCode(t, "second call", err, codes.ResourceExhausted)
	if ri := retryInfo(st); ri == nil || ri.RetryDelay.AsDuration() <= 0 || ri.RetryDelay.AsDuration() > time.Minute {
		t.Errorf("RetryInfo %v", ri)
	}
	if f.Calls("chat") != 1 {
		t.Errorf("the limited call reached the service (%d calls)", f.Calls("chat"))
	}
}

// TestCancelFreesSlot: a client that cancels a stream, or a unary call, ends its
// generation (the Fake's Running count returns to zero) long before the reply would
// have ended.
func TestCancelFreesSlot(t *testing.T) {
	f := &infertest.Fake{Reply: strings.Repeat("w ", 10000), Delay: 5 * time.Millisecond}
	s := serve(t, f, Options{})
	ctx, cancel := context.WithCancel(testCtx(t))
	st, err := s.api.ChatStream(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	if f.Running.Load() != 1 {
		t.Fatalf("running %d, want 1", f.Running.Load())
	}
	cancel()
	waitFor(t, "the cancelled stream's generation to end", func() bool { return f.Running.Load() == 0 })

	ctx2, cancel2 := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := s.api.Chat(ctx2, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x")})
		errc <- err
	}()
	waitFor(t, "the unary generation to start", func() bool { return f.Running.Load() == 1 })
	cancel2()
	wantCode(t, "cancelled unary", <-errc, codes.Canceled)
	waitFor(t, "the cancelled unary generation to end", func() bool { return f.Running.Load() == 0 })
}

// TestDeadline: the client's deadline cancels the generation and the call fails with
// DeadlineExceeded.
func TestDeadline(t *testing.T) {
	f := &infertest.Fake{Reply: strings.Repeat("w ", 10000), Delay: 5 * time.Millisecond}
	s := serve(t, f, Options{})
	for _, stream := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
		var err error
		if stream {
			var st gogrpc.ServerStreamingClient[hxpv1.GenerateChunk]
			if st, err = s.api.CompleteStream(ctx, &hxpv1.CompleteRequest{Model: "fake", Prompt: []*hxpv1.Prompt{textPrompt("x")}}); err == nil {
				_, _, _, err = readStream(t, st.Recv)
			}
		} else {
			_, err = s.api.Complete(ctx, &hxpv1.CompleteRequest{Model: "fake", Prompt: []*hxpv1.Prompt{textPrompt("x")}})
		}
		cancel()
		wantCode(t, "deadline", err, codes.DeadlineExceeded)
		waitFor(t, "the generation past its deadline to end", func() bool { return f.Running.Load() == 0 })
	}
}

// TestOversizedMessage: a request over max_message_bytes is ResourceExhausted and the
// server keeps serving.
func TestOversizedMessage(t *testing.T) {
	f := &infertest.Fake{}
	s := serve(t, f, Options{MaxMessageBytes: 4096})
	ctx := testCtx(t)
	_, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg(strings.Repeat("x", 8192))})
	wantCode(t, "oversized", err, codes.ResourceExhausted)
	if f.Calls("chat") != 0 {
		t.Error("the oversized request reached the service")
	}
	if _, err := s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("small")}); err != nil {
		t.Fatalf("after an oversized message: %v", err)
	}
	// A response over the limit is refused too, not sent.
	f.Reply = strings.Repeat("y", 8192)
	_, err = s.api.Chat(ctx, &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("small")})
	wantCode(t, "oversized response", err, codes.ResourceExhausted)
}

// loadingFake is a Fake whose model is loading until ready is set (safe while served).
type loadingFake struct {
	*infertest.Fake
	ready atomic.Bool
}

func (f *loadingFake) Models(ctx context.Context) []infer.Model {
	ms := f.Fake.Models(ctx)
	if !f.ready.Load() {
		ms[0].Status = "loading"
	}
	return ms
}

// TestHealthAndReflection: Health answers for the process and each model (its
// readiness), unknown names are NotFound, draining is NOT_SERVING; reflection lists
// the services.
func TestHealthAndReflection(t *testing.T) {
	f := &loadingFake{Fake: &infertest.Fake{}}
	s := serve(t, f, Options{})
	ctx := testCtx(t)
	hc := grpc_health_v1.NewHealthClient(s.conn)
	check := func(name string) grpc_health_v1.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: name})
		if err != nil {
			t.Fatalf("Check(%q): %v", name, err)
		}
		return r.Status
	}
	if check("") != grpc_health_v1.HealthCheckResponse_SERVING || check("hxp.v1.Inference") != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Error("the process should be SERVING")
	}
	if check("fake") != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
		t.Error("a loading model should be NOT_SERVING")
	}
	w, err := hc.Watch(ctx, &grpc_health_v1.HealthCheckRequest{Service: "fake"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch first: %v %v", r, err)
	}
	f.ready.Store(true)
	if r, err := w.Recv(); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("Watch after ready: %v %v", r, err)
	}
	if check("fake") != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Error("a ready model should be SERVING")
	}
	_, err = hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "nope"})
	wantCode(t, "unknown service", err, codes.NotFound)
	s.srv.SetDraining()
	if check("") != grpc_health_v1.HealthCheckResponse_NOT_SERVING || check("fake") != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
		t.Error("a draining server should be NOT_SERVING")
	}

	rc, err := grpc_reflection_v1.NewServerReflectionClient(s.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sv := range resp.GetListServicesResponse().GetService() {
		names = append(names, sv.Name)
	}
	for _, want := range []string{"hxp.v1.Inference", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, ","), want) {
			t.Errorf("reflection lists %v, without %s", names, want)
		}
	}
	if err := rc.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "hxp.v1.Inference"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := rc.Recv(); err != nil || len(r.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("reflection has no descriptor of hxp.v1.Inference: %v %v", r, err)
	}
}

// TestMetrics: calls are counted by method and code.
func TestMetrics(t *testing.T) {
	m := NewMetrics()
	f := &infertest.Fake{}
	s := serve(t, f, Options{Metrics: m})
	ctx := testCtx(t)
	_, _ = s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: "fake", Prompt: ptr("x")})
	_, _ = s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: "nope", Prompt: ptr("x")})
	_, _ = s.api.Tokenize(ctx, &hxpv1.TokenizeRequest{Model: "nope", Prompt: ptr("x")})
	if v := testutil.ToFloat64(m.requests.WithLabelValues("hxp.v1.Inference/Tokenize", "OK")); v != 1 {
		t.Errorf("OK count %v", v)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("hxp.v1.Inference/Tokenize", "NotFound")); v != 2 {
		t.Errorf("NotFound count %v", v)
	}
}

// TestShutdownFinishesStreams: Shutdown lets a stream in flight finish within its
// grace, and cancels it when the grace is over.
func TestShutdownFinishesStreams(t *testing.T) {
	f := &infertest.Fake{Reply: strings.Repeat("w ", 20), Delay: 10 * time.Millisecond}
	s := serve(t, f, Options{})
	st, err := s.api.ChatStream(testCtx(t), &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.srv.Shutdown(context.Background()) }()
	texts, _, usage, err := readStream(t, st.Recv)
	if err != nil || usage == nil || strings.Count(texts[0], "w") != 19 {
		t.Fatalf("stream during graceful stop: %d words, usage %v, %v", strings.Count(texts[0], "w"), usage, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	f2 := &infertest.Fake{Reply: strings.Repeat("w ", 100000), Delay: 5 * time.Millisecond}
	s2 := serve(t, f2, Options{})
	st2, err := s2.api.ChatStream(testCtx(t), &hxpv1.ChatRequest{Model: "fake", Messages: userMsg("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Recv(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s2.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown past its grace: %v", err)
	}
	waitFor(t, "the stream cut by Stop to end its generation", func() bool { return f2.Running.Load() == 0 })
}
