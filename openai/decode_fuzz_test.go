package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
)

// Request decoding never panics, rejects only with an InvalidArgument error (a 400
// invalid_request_error) that names a field or the body, and what it accepts
// satisfies the invariants the core relies on.

func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	var e *infer.Error
	if !errors.As(err, &e) {
		t.Fatalf("decode error %v is not an *infer.Error", err)
	}
	status, body := ErrorOf(err)
	if e.Kind != infer.InvalidArgument || status != 400 || body.Error.Type != TypeInvalidRequest || e.Message == "" {
		t.Fatalf("decode error %+v is %d %s, not a 400 invalid_request_error", e, status, body.Error.Type)
	}
}

func checkGen(t *testing.T, g *infer.GenParams, includeUsage bool, lim Limits) {
	t.Helper()
	switch {
	case g.N < 1 || g.N > lim.maxN():
		t.Fatalf("n=%d accepted", g.N)
	case g.MaxTokens < 0:
		t.Fatalf("max_tokens=%d accepted", g.MaxTokens)
	case g.TopLogprobs < 0 || g.TopLogprobs > maxTopLogprobs:
		t.Fatalf("top_logprobs=%d accepted", g.TopLogprobs)
	case g.TopLogprobs > 0 && !g.Logprobs:
		t.Fatal("top_logprobs without logprobs accepted")
	case includeUsage && !g.Stream:
		t.Fatal("include_usage without stream accepted")
	}
	if err := g.Sampling.Validate(); err != nil {
		t.Fatalf("accepted sampling the engine rejects: %v", err)
	}
	for _, st := range g.Stop {
		if st == "" {
			t.Fatal("empty stop string accepted")
		}
	}
}

// checkPeek: PeekModel, which labels the metrics of refused requests, agrees with
// the decoder on every body the decoder accepts.
func checkPeek(t *testing.T, body []byte, model string) {
	t.Helper()
	// The decoders trim Unicode spaces around the body, which JSON does not allow.
	if got := PeekModel(bytes.TrimSpace(body)); got != model {
		t.Fatalf("PeekModel = %q, the decoder read model %q", got, model)
	}
}

var chatSeeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stream":true,"stream_options":{"include_usage":true}}`,
	`{"messages":[{"role":"developer","content":null}],"temperature":0.5,"top_p":0.9,"n":2,"stop":["a","b"],"seed":-3,"max_completion_tokens":5}`,
	`{"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":5,"presence_penalty":1.5,"frequency_penalty":-1,"response_format":{"type":"json_object"}}`,
	`{"messages":[{"role":"user","content":"x"}],"stop":"\n","user":"u1","max_tokens":1e3}`,
	`{"messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"r"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required"}`,
	`{"messages":[]}`, `[]`, `{"messages":[{"role":"tool"}]}`, `{"n":1.5}`, `{"temperature":"hot"}`, `{"model":"m","model":"n","messages":[{"role":"user","content":"x"}]}`,
}

var fuzzLimits = Limits{MaxN: 4}

func FuzzDecodeChatRequest(f *testing.F) {
	for _, s := range chatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodeChat(body, fuzzLimits)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		checkGen(t, &p.GenParams, p.IncludeUsage, fuzzLimits)
		checkPeek(t, body, p.Model)
		if len(p.Messages) == 0 {
			t.Fatal("no messages accepted")
		}
		for _, m := range p.Messages {
			switch m.Role {
			case chat.RoleSystem, chat.RoleUser, chat.RoleAssistant:
			case chat.RoleTool:
				if m.ToolCallID == "" {
					t.Fatal("tool message without tool_call_id accepted")
				}
			default:
				t.Fatalf("role %q accepted", m.Role)
			}
			if strings.IndexByte(m.Content, 0) >= 0 {
				t.Fatal("NUL in content accepted")
			}
			if len(m.ToolCalls) > 0 && m.Role != chat.RoleAssistant {
				t.Fatalf("tool calls on a %s message accepted", m.Role)
			}
		}
		if (p.ToolChoice.Mode == chat.ToolRequired || p.ToolChoice.Mode == chat.ToolFunction) && len(p.Tools) == 0 {
			t.Fatal("a required tool call without tools accepted")
		}
	})
}

func FuzzDecodeCompletionRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"hello","max_tokens":3}`,
		`{"prompt":["a","b"],"n":2,"logprobs":3,"stream":true}`,
		`{"prompt":[1,2,3]}`, `{"prompt":[[1,2],[3]]}`, `{"prompt":[[-1]]}`, `{"prompt":[]}`,
		`{"prompt":"x","echo":true}`, `{"prompt":"x","suffix":"y"}`, `{"prompt":"x","best_of":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodeCompletion(body, fuzzLimits)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		checkGen(t, &p.GenParams, p.IncludeUsage, fuzzLimits)
		checkPeek(t, body, p.Model)
		if len(p.Prompts) == 0 || len(p.Prompts)*p.N > infer.MaxChoices {
			t.Fatalf("%d prompts x n=%d accepted", len(p.Prompts), p.N)
		}
		for _, pr := range p.Prompts {
			if !pr.IsTokens && strings.IndexByte(pr.Text, 0) >= 0 {
				t.Fatal("NUL in a prompt accepted")
			}
			for _, tok := range pr.Tokens {
				if tok < 0 {
					t.Fatalf("negative token %d accepted", tok)
				}
			}
		}
	})
}

func FuzzDecodeEmbeddingRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","input":"hello"}`, `{"input":["a","b"],"encoding_format":"base64"}`,
		`{"input":[1,2]}`, `{"input":[[1],[2,3]],"dimensions":8}`, `{"input":""}`, `{"input":[""]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodeEmbeddings(body)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		checkPeek(t, body, p.Model)
		if len(p.Inputs) == 0 || len(p.Inputs) > maxEmbedInputs || p.Dimensions < 0 {
			t.Fatalf("%d inputs, dimensions %d accepted", len(p.Inputs), p.Dimensions)
		}
		for _, in := range p.Inputs {
			if in.Text == "" && len(in.Tokens) == 0 {
				t.Fatal("empty input accepted")
			}
		}
	})
}

// PeekModel reads any body without panicking, and returns the model of every JSON
// object whose "model" is a string.
func FuzzPeekModel(f *testing.F) {
	for _, s := range []string{`{"model":"a"}`, `{"model":null}`, `{"model":1}`, `{}`, `x`, `{"model":"a","model":"b"}`, `{"Model":"c"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := PeekModel(body)
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			if got != "" {
				t.Fatalf("PeekModel of a body that is not a JSON object = %q", got)
			}
			return
		}
		// encoding/json matches field names without case: with one key that is
		// "model" in any case, holding a string, that string is the model.
		var keys []string
		for k := range m {
			if strings.EqualFold(k, "model") {
				keys = append(keys, k)
			}
		}
		var want string
		if len(keys) == 1 && json.Unmarshal(m[keys[0]], &want) == nil && got != want {
			t.Fatalf("PeekModel = %q, the body's model is %q", got, want)
		}
	})
}

// BenchmarkDecodeChat measures request decoding and validation.
func BenchmarkDecodeChat(b *testing.B) {
	body, _ := json.Marshal(map[string]any{
		"model":      "m",
		"messages":   []map[string]any{{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a story about the sea."}},
		"max_tokens": 16, "temperature": 0, "stop": []string{"a", "b"}, "n": 1, "logprobs": true, "top_logprobs": 2,
	})
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeChat(body, Limits{MaxN: 4}); err != nil {
			b.Fatal(err)
		}
	}
}
