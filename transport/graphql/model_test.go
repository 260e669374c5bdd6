package graphql

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/service"
)

// tinyService loads the generated tiny model as an infer.Service; it is closed when
// the test ends.
func tinyService(t *testing.T) infer.Service {
	t.Helper()
	if testing.Short() {
		t.Skip("loads a model")
	}
	c := &config.Config{Models: []config.Model{{Name: "tiny", Path: testmodel.Path(t, "tiny"), CPUCores: 1, Parallel: 2,
		CtxPerSeq: 512, Batch: 256, QueueSize: 16, TargetLatencyMS: 1000}}}
	c.ApplyDefaults(1)
	s := service.New(c.Models[0], testLog(), service.Options{})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return infer.NewLocal(s)
}

// TestModelSameAsREST: on the real tiny model at temperature 0, the same chat request
// through REST, the GraphQL mutation and the GraphQL subscription gives the same text
// and the same usage.
func TestModelSameAsREST(t *testing.T) {
	base := serve(t, tinyService(t), Options{})
	body := []byte(`{"model": "tiny", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 10, "temperature": 0}`)
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var rest struct {
		Choices []struct{ Message struct{ Content string } }
		Usage   struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(b, &rest); err != nil || resp.StatusCode != http.StatusOK || len(rest.Choices) != 1 {
		t.Fatalf("REST: %d %v %s", resp.StatusCode, err, b)
	}
	want := rest.Choices[0].Message.Content
	if rest.Usage.CompletionTokens == 0 {
		t.Fatalf("REST generated nothing: %s", b)
	}

	in := chatInput("tiny", map[string]any{"maxTokens": 10, "temperature": 0})
	in["in"].(map[string]any)["messages"] = []any{map[string]any{"role": "user", "content": "hello there"}}
	_, r := post(t, base, "", chatMutation, in)
	var m struct{ ChatCompletion chatCompletion }
	data(t, r, &m)
	got := m.ChatCompletion
	if got.Choices[0].Message.Content != want || got.Usage.PromptTokens != rest.Usage.PromptTokens ||
		got.Usage.CompletionTokens != rest.Usage.CompletionTokens {
		t.Fatalf("mutation %q %+v != REST %q %+v", got.Choices[0].Message.Content, got.Usage, want, rest.Usage)
	}

	ws := dial(t, base)
	ws.mustInit("")
	ws.subscribe("s1", chatSubscription, in)
	s := readStream(t, ws, "s1")
	if !s.closeOK || s.text != want || s.usage == nil || s.usage.PromptTokens != rest.Usage.PromptTokens ||
		s.usage.CompletionTokens != rest.Usage.CompletionTokens {
		t.Fatalf("subscription %q %+v != REST %q %+v", s.text, s.usage, want, rest.Usage)
	}
}
