package grpc

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/transport/grpc/hxpv1"
	"github.com/hxp-ai/hxp/transport/rest"
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

// TestModelStreamEqualsUnaryAndREST: on the real tiny model at temperature 0, a
// completion and a chat give the same text and usage unary, streamed, and through the
// REST transport over the same service.
func TestModelStreamEqualsUnaryAndREST(t *testing.T) {
	svc := tinyService(t)
	s := serve(t, svc, Options{})
	ctx := testCtx(t)

	creq := &hxpv1.CompleteRequest{Model: "tiny", Prompt: []*hxpv1.Prompt{textPrompt("the quick brown fox")}, MaxTokens: ptr[int32](12), Temperature: ptr(0.0)}
	unary, err := s.api.Complete(ctx, creq)
	if err != nil {
		t.Fatal(err)
	}
	if unary.Choices[0].Text == "" || unary.Usage.CompletionTokens == 0 {
		t.Fatalf("empty completion: %v", unary)
	}
	st, err := s.api.CompleteStream(ctx, creq)
	if err != nil {
		t.Fatal(err)
	}
	texts, finish, usage, err := readStream(t, st.Recv)
	if err != nil || texts[0] != unary.Choices[0].Text || finish[0] != unary.Choices[0].FinishReason ||
		usage.PromptTokens != unary.Usage.PromptTokens || usage.CompletionTokens != unary.Usage.CompletionTokens {
		t.Fatalf("stream %q %v %v (%v) != unary %q %v %v", texts[0], finish[0], usage, err, unary.Choices[0].Text, unary.Choices[0].FinishReason, unary.Usage)
	}

	chatReq := &hxpv1.ChatRequest{Model: "tiny", Messages: userMsg("hello"), MaxTokens: ptr[int32](10), Temperature: ptr(0.0)}
	chat, err := s.api.Chat(ctx, chatReq)
	if err != nil {
		t.Fatal(err)
	}
	cst, err := s.api.ChatStream(ctx, chatReq)
	if err != nil {
		t.Fatal(err)
	}
	if texts, _, usage, err := readStream(t, cst.Recv); err != nil || texts[0] != chat.Choices[0].Text || usage.CompletionTokens != chat.Usage.CompletionTokens {
		t.Fatalf("chat stream %q %v %v != unary %q %v", texts[0], usage, err, chat.Choices[0].Text, chat.Usage)
	}

	// The same requests through REST over the same service.
	l := rest.NewListener("tiny", rest.New(svc, rest.Options{Log: testLog()}).Handler(),
		rest.HTTPConfig{ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxBodyBytes: 1 << 20}, testLog())
	if err := l.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	l.Serve(nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	base := "http://" + l.Addr().String()
	var comp openai.Completion
	postJSON(t, base+"/v1/completions", `{"model":"tiny","prompt":"the quick brown fox","max_tokens":12,"temperature":0}`, &comp)
	var cu openai.Usage
	if err := json.Unmarshal(comp.Usage, &cu); err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Text != unary.Choices[0].Text || cu.PromptTokens != int(unary.Usage.PromptTokens) ||
		cu.CompletionTokens != int(unary.Usage.CompletionTokens) {
		t.Errorf("REST completion %q %+v != gRPC %q %v", comp.Choices[0].Text, cu, unary.Choices[0].Text, unary.Usage)
	}
	var cc openai.ChatCompletion
	postJSON(t, base+"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":10,"temperature":0}`, &cc)
	if cc.Choices[0].Message.Content != chat.Choices[0].Text || cc.Usage.CompletionTokens != int(chat.Usage.CompletionTokens) ||
		cc.Usage.PromptTokens != int(chat.Usage.PromptTokens) {
		t.Errorf("REST chat %q %+v != gRPC %q %v", cc.Choices[0].Message.Content, cc.Usage, chat.Choices[0].Text, chat.Usage)
	}
}

func postJSON(t *testing.T, url, body string, v any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("POST %s: %v: %s", url, err, b)
	}
}
