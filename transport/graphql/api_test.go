package graphql

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
)

const (
	chatMutation = `mutation($in: ChatCompletionInput!) { chatCompletion(input: $in) {
		id object model choices { index finishReason message { role content } } usage { promptTokens completionTokens totalTokens } } }`
	completionMutation = `mutation($in: CompletionInput!) { completion(input: $in) {
		object model choices { index text finishReason } usage { promptTokens completionTokens totalTokens } } }`
	embeddingsMutation = `mutation($in: EmbeddingsInput!) { embeddings(input: $in) {
		object model data { index embedding } usage { promptTokens totalTokens } } }`
	chatSubscription = `subscription($in: ChatCompletionInput!) { chatCompletionStream(input: $in) {
		object model choices { index delta { role content } finishReason } usage { promptTokens completionTokens totalTokens } } }`
)

// Results as the tests read them (camelCase, as the schema names the REST fields).
type (
	modelCard struct {
		ID, Object, OwnedBy, Status string
		Created                     int64
		ContextLength               int
	}
	usage          struct{ PromptTokens, CompletionTokens, TotalTokens int }
	chatCompletion struct {
		ID, Object, Model string
		Choices           []struct {
			Index        int
			FinishReason string
			Message      struct{ Role, Content string }
		}
		Usage *usage
	}
	completion struct {
		Object, Model string
		Choices       []struct {
			Index        int
			Text         string
			FinishReason string
		}
		Usage usage
	}
	embeddingList struct {
		Object, Model string
		Data          []struct {
			Index     int
			Embedding []float64
		}
		Usage usage
	}
)

// chatInput is a chat input for model with one user message.
func chatInput(model string, extra map[string]any) map[string]any {
	in := map[string]any{"model": model, "messages": []any{map[string]any{"role": "user", "content": "hi there"}}}
	for k, v := range extra {
		in[k] = v
	}
	return map[string]any{"in": in}
}

// streamed is what a subscription sent until its end.
type streamed struct {
	text    string
	role    string
	finish  string
	usage   *usage
	chunks  int
	errs    []gqlError // an error message's payload
	closeOK bool       // ended by complete
}

// readStream reads operation id's messages until complete or error.
func readStream(t *testing.T, c *wsClient, id string) streamed {
	t.Helper()
	var s streamed
	for {
		m, err := c.read()
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if m.ID != id {
			t.Fatalf("message for %q, want %q: %+v", m.ID, id, m)
		}
		switch m.Type {
		case msgNext:
			var r response
			var d struct {
				Chunk struct {
					Object  string
					Choices []struct {
						Delta struct {
							Role    *string
							Content *string
						}
						FinishReason *string
					}
					Usage *usage
				} `json:"chatCompletionStream"`
			}
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				t.Fatal(err)
			}
			data(t, &r, &d)
			s.chunks++
			if d.Chunk.Object != "chat.completion.chunk" {
				t.Fatalf("chunk object %q", d.Chunk.Object)
			}
			for _, ch := range d.Chunk.Choices {
				if ch.Delta.Role != nil && *ch.Delta.Role != "" {
					s.role = *ch.Delta.Role
				}
				if ch.Delta.Content != nil {
					s.text += *ch.Delta.Content
				}
				if ch.FinishReason != nil {
					s.finish = *ch.FinishReason
				}
			}
			if d.Chunk.Usage != nil {
				s.usage = d.Chunk.Usage
			}
		case msgComplete:
			s.closeOK = true
			return s
		case msgError:
			if err := json.Unmarshal(m.Payload, &s.errs); err != nil {
				t.Fatal(err)
			}
			return s
		default:
			t.Fatalf("unexpected message %+v", m)
		}
	}
}

// TestOperations runs every operation through the real transports and checks that
// each renders what the service returned, as REST renders it.
func TestOperations(t *testing.T) {
	fake := &infertest.Fake{Model: "m1", Reply: "one two three"}
	base := serve(t, fake, Options{})

	_, r := post(t, base, "", `{ models { id object ownedBy status contextLength created } }`, nil)
	var models struct {
		Models []modelCard `json:"models"`
	}
	data(t, r, &models)
	if len(models.Models) != 1 || models.Models[0].ID != "m1" || models.Models[0].Object != "model" || models.Models[0].OwnedBy != "hxp" ||
		models.Models[0].Status != "ready" || models.Models[0].ContextLength != 4096 || models.Models[0].Created != 1700000000 {
		t.Fatalf("models: %+v", models)
	}
	_, r = post(t, base, "", `query($id: String!) { model(id: $id) { id } }`, map[string]any{"id": "m1"})
	var one struct{ Model struct{ ID string } }
	if data(t, r, &one); one.Model.ID != "m1" {
		t.Fatalf("model: %+v", one)
	}
	status, r := post(t, base, "", `{ model(id: "nope") { id } }`, nil)
	if status != http.StatusOK || r.code() != "NOT_FOUND" || r.Errors[0].Extensions["reason"] != "model_not_found" ||
		r.Errors[0].Extensions["param"] != "model" || len(r.Errors[0].Path) != 1 {
		t.Fatalf("unknown model: %d %+v", status, r.Errors)
	}

	_, r = post(t, base, "", chatMutation, chatInput("m1", map[string]any{"maxTokens": 8, "temperature": 0, "stop": "zzz"}))
	var chat struct{ ChatCompletion chatCompletion }
	data(t, r, &chat)
	c := chat.ChatCompletion
	if c.Object != "chat.completion" || c.Model != "m1" || !strings.HasPrefix(c.ID, "chatcmpl-") || len(c.Choices) != 1 ||
		c.Choices[0].Message.Content != "one two three" || c.Choices[0].Message.Role != "assistant" || c.Choices[0].FinishReason != "stop" ||
		c.Usage == nil || c.Usage.CompletionTokens != 3 || c.Usage.TotalTokens != c.Usage.PromptTokens+3 {
		t.Fatalf("chat: %+v", c)
	}
	req := fake.Last().(*infer.ChatRequest)
	if req.MaxTokens != 8 || req.Sampling.Temperature != 0 || len(req.Stop) != 1 || req.Stop[0] != "zzz" || req.Messages[0].Content != "hi there" {
		t.Fatalf("the service got %+v", req)
	}

	_, r = post(t, base, "", completionMutation, map[string]any{"in": map[string]any{"model": "m1", "prompt": []any{"a", "b"}, "maxTokens": 2}})
	var comp struct{ Completion completion }
	data(t, r, &comp)
	if cc := comp.Completion; cc.Object != "text_completion" || len(cc.Choices) != 2 || cc.Choices[1].Text != "one two " ||
		cc.Choices[1].FinishReason != "length" || cc.Usage.CompletionTokens != 4 {
		t.Fatalf("completion: %+v", comp)
	}

	_, r = post(t, base, "", embeddingsMutation, map[string]any{"in": map[string]any{"model": "m1", "input": []any{"abcd", "abcdefgh"}}})
	var emb struct{ Embeddings embeddingList }
	data(t, r, &emb)
	if e := emb.Embeddings; e.Object != "list" || len(e.Data) != 2 || e.Usage.PromptTokens != 3 || len(e.Data[1].Embedding) != 4 ||
		e.Data[1].Embedding[3] != 8 {
		t.Fatalf("embeddings: %+v", e)
	}

	ws := dial(t, base)
	ws.mustInit("")
	ws.subscribe("s1", chatSubscription, chatInput("m1", nil))
	s := readStream(t, ws, "s1")
	if !s.closeOK || s.role != "assistant" || s.text != "one two three" || s.finish != "stop" || s.usage == nil ||
		s.usage.CompletionTokens != 3 || s.usage.TotalTokens != s.usage.PromptTokens+3 {
		t.Fatalf("subscription: %+v", s)
	}
	// A query over the socket is one next and complete; ping is answered.
	ws.send(wsMessage{Type: msgPing})
	if m, err := ws.read(); err != nil || m.Type != msgPong {
		t.Fatalf("ping: %+v %v", m, err)
	}
	ws.subscribe("q1", `{ models { id } }`, nil)
	if m, err := ws.read(); err != nil || m.Type != msgNext || !strings.Contains(string(m.Payload), `"m1"`) {
		t.Fatalf("query over ws: %+v %v", m, err)
	}
	if m, err := ws.read(); err != nil || m.Type != msgComplete || m.ID != "q1" {
		t.Fatalf("query over ws, end: %+v %v", m, err)
	}
}

// TestRequestErrors: validation by the REST decoder (field named in REST's spelling),
// the core's errors with their code and retry hint (HTTP 200), an error that ends a
// stream after it started, and requests that are not GraphQL.
func TestRequestErrors(t *testing.T) {
	fake := &infertest.Fake{Model: "m1"}
	base := serve(t, fake, Options{})

	status, r := post(t, base, "", chatMutation, chatInput("m1", map[string]any{"temperature": 9}))
	if status != http.StatusOK || r.code() != "BAD_USER_INPUT" || r.Errors[0].Extensions["param"] != "temperature" || fake.Calls("chat") != 0 {
		t.Fatalf("temperature 9: %d %+v (chat calls %d)", status, r.Errors, fake.Calls("chat"))
	}
	_, r = post(t, base, "", chatMutation, map[string]any{"in": map[string]any{"model": "m1"}})
	if r.code() != "GRAPHQL_VALIDATION_FAILED" || len(r.Errors) != 1 || fake.Calls("chat") != 0 {
		t.Fatalf("missing messages: %+v", r.Errors)
	}

	fake.Err = &infer.Error{Kind: infer.RateLimited, Code: "rate_limit_exceeded", Message: "slow down", RetryAfter: 1500 * time.Millisecond}
	status, r = post(t, base, "", chatMutation, chatInput("m1", nil))
	if status != http.StatusOK || r.code() != "RATE_LIMITED" || r.Errors[0].Message != "slow down" || r.Errors[0].Extensions["retryAfter"] != 2.0 ||
		r.Errors[0].Extensions["reason"] != "rate_limit_exceeded" {
		t.Fatalf("rate limited: %d %+v", status, r.Errors)
	}
	fake.Err = nil

	fake.EventErr = &infer.Error{Kind: infer.Unavailable, Message: "model unloaded"}
	ws := dial(t, base)
	ws.mustInit("")
	ws.subscribe("s1", chatSubscription, chatInput("m1", nil))
	if s := readStream(t, ws, "s1"); s.closeOK || len(s.errs) != 1 || s.errs[0].Extensions["code"] != "UNAVAILABLE" || s.text == "" {
		t.Fatalf("stream failing after its first event: %+v", s)
	}
	fake.EventErr = nil

	for _, c := range []struct {
		body, ctype string
		status      int
	}{
		{`{"query": "{ models { id } }"}`, "text/plain", http.StatusUnsupportedMediaType},
		{`{"query": `, "application/json", http.StatusBadRequest},
		{`{"variables": {}}`, "application/json", http.StatusBadRequest},
	} {
		resp, err := http.Post(base+Path, c.ctype, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var out response
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != c.status || out.code() != "BAD_USER_INPUT" {
			t.Errorf("%s %q: %d %+v, want %d", c.ctype, c.body, resp.StatusCode, out.Errors, c.status)
		}
	}
	// A syntax error and a subscription over POST are GraphQL errors with HTTP 200.
	if status, r := post(t, base, "", `{ models { id `, nil); status != http.StatusOK || r.code() != "GRAPHQL_PARSE_FAILED" {
		t.Fatalf("syntax error: %d %+v", status, r.Errors)
	}
	if status, r := post(t, base, "", chatSubscription, chatInput("m1", nil)); status != http.StatusOK || r.code() != "BAD_USER_INPUT" ||
		!strings.Contains(r.Errors[0].Message, "WebSocket") {
		t.Fatalf("subscription over POST: %d %+v", status, r.Errors)
	}
}

// TestErrorCodeTable: every kind of the core has its own code.
func TestErrorCodeTable(t *testing.T) {
	seen := map[string]infer.Kind{}
	for k := infer.Internal; k <= infer.Cancelled; k++ {
		c, ok := kindCodes[k]
		if !ok {
			t.Errorf("kind %s has no extensions.code", k)
			continue
		}
		if other, dup := seen[c]; dup {
			t.Errorf("kinds %s and %s share code %s", k, other, c)
		}
		seen[c] = k
	}
	if CodeOf(infer.Kind(99)) != "INTERNAL_SERVER_ERROR" {
		t.Error("an unknown kind should be INTERNAL_SERVER_ERROR")
	}
}
