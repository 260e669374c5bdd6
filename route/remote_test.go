package route

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/openai"
)

func chatReq(model string, n int) *infer.ChatRequest {
	return &infer.ChatRequest{Model: model, Messages: []chat.Message{{Role: chat.RoleUser, Content: "Say hello, please."}},
		GenParams: infer.GenParams{N: n, Sampling: engine.SamplingParams{Temperature: 0.5, TopK: 20, Seed: 42}, SeedFixed: true}}
}

func kindOf(t *testing.T, err error) *infer.Error {
	t.Helper()
	var e *infer.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *infer.Error", err, err)
	}
	return e
}

// Everything a front end can ask, through a Remote to a node that serves a fake
// model the way the REST transport does, gives what the fake gives directly.
func TestRemoteAgainstARealNode(t *testing.T) {
	fake := &infertest.Fake{Model: "tiny", Reply: "one two three four"}
	n := startNode(t, fake)
	r := mustRemote(t, n.url, "tiny")
	ctx := infer.WithRequestID(context.Background(), "req-123")

	want, err := fake.Chat(ctx, chatReq("tiny", 2))
	if err != nil {
		t.Fatal(err)
	}
	wantRes, _ := want.Collect()
	vars := chat.Vars{"enable_thinking": true, "depth": json.Number("2"), "tags": []any{"a", nil}}
	sendReq := chatReq("tiny", 2)
	sendReq.TemplateVars = vars
	g, err := r.Chat(ctx, sendReq)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != "tiny" || len(got.Choices) != 2 || got.Usage != wantRes.Usage || got.Usage.CompletionTokens == 0 {
		t.Fatalf("remote chat: %+v, want usage %+v", got, wantRes.Usage)
	}
	for i, c := range got.Choices {
		if c.Text != wantRes.Choices[i].Text || c.Finish != infer.FinishStop || c.Err != nil {
			t.Errorf("choice %d: %+v, want text %q", i, c, wantRes.Choices[i].Text)
		}
	}
	// The node received the request as sent (its chat_template_kwargs too), streamed,
	// with the node key and the id.
	sent := *sendReq
	sent.Stream = true
	if last := fake.Last().(*infer.ChatRequest); !reflect.DeepEqual(last.Messages, sent.Messages) || !reflect.DeepEqual(last.GenParams, sent.GenParams) ||
		!reflect.DeepEqual(last.TemplateVars, vars) {
		t.Errorf("node got %+v, want %+v", *last, sent)
	}
	if h := n.lastHeader(); h.Get("Authorization") != "Bearer node-key" || h.Get("X-Request-Id") != "req-123" {
		t.Errorf("headers to the node: %v", h)
	}

	// Completions with two prompts, n=2 and max_tokens: four choices, cut by length.
	cr := &infer.CompletionRequest{Model: "tiny", Prompts: []infer.Prompt{{Text: "a b"}, {Tokens: []engine.Token{1, 2}, IsTokens: true}},
		GenParams: infer.GenParams{N: 2, MaxTokens: 2, Sampling: engine.SamplingParams{Seed: 1}, SeedFixed: true}}
	g, err = r.Complete(ctx, cr)
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Collect()
	if err != nil || len(res.Choices) != 4 {
		t.Fatalf("completion: %+v %v", res, err)
	}
	for i, c := range res.Choices {
		if c.Text != "one two " || c.Finish != infer.FinishLength {
			t.Errorf("completion choice %d: %+v", i, c)
		}
	}
	if res.Usage.CompletionTokens != 8 {
		t.Errorf("completion usage %+v, want 8 completion tokens", res.Usage)
	}

	e, err := r.Embed(ctx, &infer.EmbedRequest{Model: "tiny", Inputs: []infer.Prompt{{Text: "abc"}, {Text: "defgh"}}})
	if err != nil || !reflect.DeepEqual(e.Vectors, [][]float32{{1, 0, 0, 3}, {1, 0, 0, 5}}) || e.Usage.PromptTokens != 2 {
		t.Errorf("embeddings: %+v %v", e, err)
	}
	tk, err := r.Tokenize(ctx, &infer.TokenizeRequest{Model: "tiny", Prompt: "hi"})
	if err != nil || !reflect.DeepEqual(tk.Tokens, []engine.Token{'h', 'i'}) || tk.MaxModelLen != 4096 {
		t.Errorf("tokenize: %+v %v", tk, err)
	}
	at := &infer.ApplyTemplateRequest{Model: "tiny", Messages: chatReq("tiny", 1).Messages, AddGenerationPrompt: true, TemplateVars: vars}
	wantPrompt, _ := fake.ApplyTemplate(ctx, at)
	if rp, err := r.ApplyTemplate(ctx, at); err != nil || rp.Prompt != wantPrompt.Prompt || rp.Model != "tiny" {
		t.Errorf("apply-template: %+v %v, want %q", rp, err, wantPrompt.Prompt)
	}
	if last := fake.Last().(*infer.ApplyTemplateRequest); !reflect.DeepEqual(last.TemplateVars, vars) {
		t.Errorf("apply-template: the node got chat_template_kwargs %v, want %v", last.TemplateVars, vars)
	}
	tx, err := r.Detokenize(ctx, &infer.DetokenizeRequest{Model: "tiny", Tokens: []engine.Token{'o', 'k'}})
	if err != nil || tx.Text != "ok" || tx.Model != "tiny" {
		t.Errorf("detokenize: %+v %v", tx, err)
	}
}

// A node's error answers keep their kind, param, code and Retry-After; what the
// node never answered is UpstreamFailed or DeadlineExceeded, both retryable.
func TestRemoteErrors(t *testing.T) {
	fake := &infertest.Fake{Model: "tiny"}
	n := startNode(t, fake)
	r := mustRemote(t, n.url, "tiny")
	ctx := context.Background()

	fake.Fail = func(string) error { return infer.Invalid("messages[0].content", "too long") }
	_, err := r.Chat(ctx, chatReq("tiny", 1))
	if e := kindOf(t, err); e.Kind != infer.InvalidArgument || e.Param != "messages[0].content" || e.Message != "too long" {
		t.Errorf("invalid argument from the node: %+v", e)
	}
	fake.Fail = func(string) error {
		return &infer.Error{Kind: infer.Overloaded, Code: "overloaded", Message: "busy", RetryAfter: 2 * time.Second}
	}
	_, err = r.Tokenize(ctx, &infer.TokenizeRequest{Model: "tiny", Prompt: "x"})
	if e := kindOf(t, err); e.Kind != infer.Overloaded || e.RetryAfter != 2*time.Second || !e.Kind.Retryable() {
		t.Errorf("overloaded node: %+v", e)
	}
	fake.Fail = nil
	n.mode.Store("fail")
	_, err = r.Chat(ctx, chatReq("tiny", 1))
	if e := kindOf(t, err); e.Kind != infer.Internal {
		t.Errorf("broken node: %+v", e)
	}

	_, err = mustRemote(t, closedURL(t), "tiny").Chat(ctx, chatReq("tiny", 1))
	if e := kindOf(t, err); e.Kind != infer.UpstreamFailed || e.Code != "upstream_unavailable" || e.RetryAfter != time.Second {
		t.Errorf("refused connection: %+v", e)
	}
	n.mode.Store("hangup")
	_, err = r.Detokenize(ctx, &infer.DetokenizeRequest{Model: "tiny", Tokens: []engine.Token{1}})
	if e := kindOf(t, err); e.Kind != infer.UpstreamFailed || e.Code != "upstream_unavailable" {
		t.Errorf("connection closed unanswered: %+v", e)
	}

	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection once the body is read
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	sr, err := NewRemote(RemoteOptions{URL: hang.URL, Models: []string{"tiny"}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sr.Chat(ctx, chatReq("tiny", 1))
	if e := kindOf(t, err); e.Kind != infer.DeadlineExceeded || e.Code != "upstream_timeout" {
		t.Errorf("node that does not answer in time: %+v", e)
	}

	for _, bad := range []string{"ftp://x", "http://", "http://user:pw@host:1", "http://h:1/?q=1", "://"} {
		if _, err := NewRemote(RemoteOptions{URL: bad, Models: []string{"m"}}); err == nil {
			t.Errorf("NewRemote accepted %q", bad)
		}
	}
	if _, err := NewRemote(RemoteOptions{URL: "http://h:1"}); err == nil || !strings.Contains(err.Error(), "no models") {
		t.Errorf("NewRemote without models: %v", err)
	}
}

// Usage comes from the node's usage chunk, as decoded, never from counting events.
func TestRemoteStreamUsageAndLogprobsFromTheChunks(t *testing.T) {
	url := scripted(t, []string{
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"h\u00e9"},"logprobs":{"content":[{"token":"h","logprob":-0.5,"bytes":[104],"top_logprobs":[{"token":"h","logprob":-0.5,"bytes":[104]},{"token":"\ufffd","logprob":-1.5,"bytes":[195]}]},{"token":"\u00e9","logprob":-0.25,"bytes":[195,169],"top_logprobs":[]}]},"finish_reason":null}],"usage":null}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":3}}}`,
	}, false)
	g, err := mustRemote(t, url, "m").Chat(context.Background(), chatReq("m", 1))
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Collect()
	if err != nil {
		t.Fatal(err)
	}
	c := res.Choices[0]
	if c.Text != "hé" || c.Finish != infer.FinishLength || c.TTFT <= 0 {
		t.Errorf("choice %+v", c)
	}
	wantLP := []infer.TokenLogprob{
		{Bytes: []byte("h"), Logprob: -0.5, Top: []infer.TopLogprob{{Bytes: []byte("h"), Logprob: -0.5}, {Bytes: []byte{195}, Logprob: -1.5}}},
		{Bytes: []byte("é"), Logprob: -0.25},
	}
	if !reflect.DeepEqual(c.Logprobs, wantLP) {
		t.Errorf("logprobs %+v, want %+v", c.Logprobs, wantLP)
	}
	if want := (infer.Usage{PromptTokens: 11, CompletionTokens: 7, CachedTokens: 3}); res.Usage != want {
		t.Errorf("usage %+v, want %+v", res.Usage, want)
	}

	// Completions' legacy logprobs: alternatives sorted by logprob.
	url = scripted(t, []string{
		`{"id":"x","object":"text_completion","choices":[{"index":0,"text":"ab","logprobs":{"tokens":["a","b"],"token_logprobs":[-1,-2],"top_logprobs":[{"z":-3,"a":-1},{"b":-2}],"text_offset":[0,1]},"finish_reason":null}]}`,
		`{"id":"x","object":"text_completion","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"stop"}]}`,
	}, false)
	g, err = mustRemote(t, url, "m").Complete(context.Background(), &infer.CompletionRequest{Model: "m", Prompts: []infer.Prompt{{Text: "x"}},
		GenParams: infer.GenParams{N: 1, Logprobs: true, TopLogprobs: 2}})
	if err != nil {
		t.Fatal(err)
	}
	res, err = g.Collect()
	if err != nil || res.Choices[0].Text != "ab" || res.Usage != (infer.Usage{}) {
		t.Fatalf("completion %+v %v", res, err)
	}
	if top := res.Choices[0].Logprobs[0].Top; len(top) != 2 || string(top[0].Bytes) != "a" || string(top[1].Bytes) != "z" {
		t.Errorf("legacy alternatives %+v", top)
	}
}

// An error event ends the choices with the node's error; a stream cut after its
// first event ends them with UpstreamFailed. Neither is the call's error: the
// generation was already returned.
func TestRemoteMidStreamErrors(t *testing.T) {
	delta := `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}`
	url := scripted(t, []string{delta,
		`{"error":{"message":"the model is shutting down","type":"service_unavailable_error","param":null,"code":"shutting_down"}}`}, false)
	g, err := mustRemote(t, url, "m").Chat(context.Background(), chatReq("m", 2))
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Collect()
	if e := kindOf(t, err); e.Kind != infer.Unavailable || e.Code != "shutting_down" || res.Choices[0].Text != "par" || res.Choices[1].Err == nil {
		t.Errorf("error event: %+v, %+v", res, e)
	}

	g, err = mustRemote(t, scripted(t, []string{delta}, true), "m").Chat(context.Background(), chatReq("m", 1))
	if err != nil {
		t.Fatal(err)
	}
	res, err = g.Collect()
	if e := kindOf(t, err); e.Kind != infer.UpstreamFailed || e.Code != "upstream_stream_cut" || res.Choices[0].Text != "par" {
		t.Errorf("cut stream: %+v, %+v", res, e)
	}

	// An error event before any output is the call's error, so the pool may retry it.
	url = scripted(t, []string{`{"error":{"message":"busy","type":"rate_limit_error","param":null,"code":"overloaded"}}`}, false)
	_, err = mustRemote(t, url, "m").Chat(context.Background(), chatReq("m", 1))
	if e := kindOf(t, err); e.Kind != infer.Overloaded || !e.Kind.Retryable() {
		t.Errorf("error as the first event: %+v", e)
	}
	// A 200 answer that is not an event stream is a bad answer.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]any{}) }))
	t.Cleanup(srv.Close)
	_, err = mustRemote(t, srv.URL, "m").Chat(context.Background(), chatReq("m", 1))
	if e := kindOf(t, err); e.Kind != infer.UpstreamFailed || e.Code != "upstream_bad_answer" {
		t.Errorf("JSON for a stream: %+v", e)
	}
}

// A client that leaves cancels the request to the node: the node's handler sees its
// context end and the node's generation stops.
func TestCancellationReachesTheNode(t *testing.T) {
	fake := &infertest.Fake{Model: "m", Reply: strings.Repeat("word ", 1000), Delay: 20 * time.Millisecond}
	n := startNode(t, fake)
	r := mustRemote(t, n.url, "m")
	for _, how := range []string{"context cancelled", "generation closed"} {
		ctx, cancel := context.WithCancel(context.Background())
		g, err := r.Chat(ctx, chatReq("m", 1))
		if err != nil {
			t.Fatal(err)
		}
		ended := make(chan infer.Summary, 1)
		g.OnEnd(func(s infer.Summary) { ended <- s })
		next, stop := iter.Pull(g.Events())
		for {
			ev, ok := next()
			if !ok {
				t.Fatalf("%s: the generation ended early", how)
			}
			if ev.Text != "" {
				break // a word arrived: the node is generating
			}
		}
		if how == "context cancelled" {
			cancel()
		} else {
			g.Close()
		}
		select {
		case path := <-n.cancelled:
			if path != "/v1/chat/completions" {
				t.Errorf("%s: cancelled %s", how, path)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the node's handler never saw its context end", how)
		}
		stop()
		if s := <-ended; infer.KindOf(s.Err) != infer.Cancelled {
			t.Errorf("%s: summary %+v, want the client gone", how, s)
		}
		cancel()
	}
}

// Events rendered as the REST transport renders them (openai.Stream) come back out
// of a Remote as they went in: text, reasoning, tool call pieces, logprobs, finish
// reasons with the matched stop string, and usage.
func TestRemoteDecodesWhatTheTransportRenders(t *testing.T) {
	events := []infer.Event{
		{Choice: 0, Reasoning: "think first"},
		{Choice: 0, Text: "Hi", Logprobs: []infer.TokenLogprob{{Bytes: []byte("Hi"), Logprob: -0.5, Top: []infer.TopLogprob{{Bytes: []byte("Hi"), Logprob: -0.5}}}}},
		{Choice: 1, ToolCalls: []infer.ToolCallDelta{{Index: 0, ID: "call_1", Name: "get_weather"}}},
		{Choice: 1, ToolCalls: []infer.ToolCallDelta{{Index: 0, Arguments: `{"city":`}}},
		{Choice: 1, ToolCalls: []infer.ToolCallDelta{{Index: 0, Arguments: `"Oslo"}`}, {Index: 1, ID: "call_2", Name: "now", Arguments: `{}`}}},
		{Choice: 0, Done: true, Finish: infer.FinishStop, StopSequence: "\nUser:"},
		{Choice: 1, Done: true, Finish: infer.FinishToolCalls},
	}
	usage := infer.Usage{PromptTokens: 5, CompletionTokens: 7, CachedTokens: 2}
	s := openai.NewStream(openai.KindChat, infer.Served{Model: "m"}, 2, true, true)
	var payloads []string
	add := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, string(b))
	}
	for _, c := range s.Start(2) {
		add(c)
	}
	for i := range events {
		if c := s.Delta(&events[i]); c != nil {
			add(c)
		}
		if events[i].Done {
			add(s.Finish(&events[i]))
		}
	}
	add(s.UsageChunk(usage))

	req := chatReq("m", 2)
	req.Logprobs = true
	g, err := mustRemote(t, scripted(t, payloads, false), "m").Chat(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var got []infer.Event
	for ev := range g.Events() {
		if ev.Done && ev.TTFT <= 0 {
			t.Errorf("choice %d ended without a time to first token", ev.Choice)
		}
		ev.TTFT = 0
		got = append(got, ev)
	}
	if !reflect.DeepEqual(got, events) {
		t.Errorf("events\n got %+v\nwant %+v", got, events)
	}
	if g.Summary().Usage != usage {
		t.Errorf("usage %+v, want %+v", g.Summary().Usage, usage)
	}
}
