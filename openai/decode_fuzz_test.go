package server

import (
	"errors"
	"strings"
	"testing"
)

// Request decoding never panics, rejects only with a 400 that names a field or the
// body, and what it accepts satisfies the invariants the handlers rely on.

func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("decode error %v is not an *APIError", err)
	}
	if ae.Status != 400 || ae.Type != typeInvalidRequest || ae.Message == "" {
		t.Fatalf("decode error %+v is not a 400 invalid_request_error", ae)
	}
}

func checkGen(t *testing.T, g *genParams) {
	t.Helper()
	s := g.Sampling
	switch {
	case g.N < 1 || g.N > 4:
		t.Fatalf("n=%d accepted", g.N)
	case g.MaxTokens < 0:
		t.Fatalf("max_tokens=%d accepted", g.MaxTokens)
	case g.TopLogprobs < 0 || g.TopLogprobs > maxTopLogprobs:
		t.Fatalf("top_logprobs=%d accepted", g.TopLogprobs)
	case g.IncludeUsage && !g.Stream:
		t.Fatal("include_usage without stream accepted")
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("accepted sampling the engine rejects: %v", err)
	}
	for _, st := range g.Stop {
		if st == "" {
			t.Fatal("empty stop string accepted")
		}
	}
}

var chatSeeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stream":true,"stream_options":{"include_usage":true}}`,
	`{"messages":[{"role":"developer","content":null}],"temperature":0.5,"top_p":0.9,"n":2,"stop":["a","b"],"seed":-3,"max_completion_tokens":5}`,
	`{"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":5,"presence_penalty":1.5,"frequency_penalty":-1,"response_format":{"type":"json_object"}}`,
	`{"messages":[{"role":"user","content":"x"}],"stop":"\n","user":"u1","max_tokens":1e3}`,
	`{"messages":[]}`, `[]`, `{"messages":[{"role":"tool"}]}`, `{"n":1.5}`, `{"temperature":"hot"}`,
}

func FuzzDecodeChatRequest(f *testing.F) {
	for _, s := range chatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeChat(body, limits{MaxN: 4})
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		checkGen(t, &p.genParams)
		if len(p.Messages) == 0 {
			t.Fatal("no messages accepted")
		}
		for _, m := range p.Messages {
			if m.Role != "system" && m.Role != "user" && m.Role != "assistant" {
				t.Fatalf("role %q accepted", m.Role)
			}
			if strings.IndexByte(m.Content, 0) >= 0 {
				t.Fatal("NUL in content accepted")
			}
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
		p, err := decodeCompletion(body, limits{MaxN: 4})
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		checkGen(t, &p.genParams)
		if len(p.Prompts) == 0 || len(p.Prompts)*p.N > MaxChoices {
			t.Fatalf("%d prompts x n=%d accepted", len(p.Prompts), p.N)
		}
		for _, pr := range p.Prompts {
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
		p, err := decodeEmbeddings(body)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		if len(p.Inputs) == 0 || len(p.Inputs) > maxEmbedInputs {
			t.Fatalf("%d inputs accepted", len(p.Inputs))
		}
		for _, in := range p.Inputs {
			if in.Text == "" && len(in.Tokens) == 0 {
				t.Fatal("empty input accepted")
			}
		}
	})
}

func FuzzPeekModel(f *testing.F) {
	for _, s := range []string{`{"model":"a"}`, `{"model":null}`, `{"model":1}`, `{}`, `x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := peekModel(body); err != nil {
			checkDecodeErr(t, err)
		}
	})
}
