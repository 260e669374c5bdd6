package openai

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
)

// roundTrip marshals an encoded request and decodes it with the server's decoder.
func roundTrip[W, R any](t *testing.T, wire W, decode func([]byte) (R, error)) R {
	t.Helper()
	body, err := json.Marshal(wire)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(body)
	if err != nil {
		t.Fatalf("decoding the encoded request %s: %v", body, err)
	}
	return got
}

func sampling(temp, topP float32, seed uint32) engine.SamplingParams {
	return engine.SamplingParams{Temperature: temp, TopP: topP, Seed: seed}
}

func TestChatRequestRoundTrip(t *testing.T) {
	tools := []chat.Tool{
		{Name: "get_weather", Description: "Weather of a city", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`), Strict: true},
		{Name: "now", Parameters: nil},
	}
	full := infer.ChatRequest{
		Model: "m",
		Messages: []chat.Message{
			{Role: chat.RoleSystem, Content: "Be brief."},
			{Role: chat.RoleUser, Content: "Weather in Oslo?\nAnd \"now\"?", Name: "ann"},
			{Role: chat.RoleAssistant, Content: "", Reasoning: "need tools", ToolCalls: []chat.ToolCall{
				{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}, {ID: "call_2", Name: "now", Arguments: `{}`}}},
			{Role: chat.RoleTool, Content: "rain", ToolCallID: "call_1"},
		},
		Tools:             tools,
		ToolChoice:        chat.ToolChoice{Mode: chat.ToolFunction, Name: "get_weather"},
		ParallelToolCalls: true,
		TemplateVars: chat.Vars{"enable_thinking": true, "depth": json.Number("2"), "ratio": json.Number("0.50"),
			"tags": []any{"a", nil, json.Number("-1")}, "opts": map[string]any{"lang": "nb", "strict": false}},
		GenParams: infer.GenParams{MaxTokens: 50, Batch: true, N: 3, Stop: []string{"\n\n", "END"}, Logprobs: true, TopLogprobs: 5, Stream: true,
			Sampling:  engine.SamplingParams{Temperature: 0.7, TopP: 0.9, TopK: 40, PresencePenalty: 0.5, FrequencyPenalty: -1.25, Seed: 4242},
			SeedFixed: true,
			Format:    infer.Format{Type: infer.FormatJSONSchema, Name: "answer", Schema: []byte(`{"type":"object"}`), Strict: true}},
	}
	// "everything" sets every field, so that a field added later without an encoding
	// fails here.
	for _, v := range []reflect.Value{reflect.ValueOf(full), reflect.ValueOf(full.GenParams)} {
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Errorf("the everything case leaves %s.%s unset", v.Type().Name(), v.Type().Field(i).Name)
			}
		}
	}
	cases := map[string]infer.ChatRequest{
		"everything": full,
		"greedy json object, tools off": {Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "hi"}}, Tools: tools,
			ToolChoice: chat.ToolChoice{Mode: chat.ToolNone},
			GenParams:  infer.GenParams{N: 1, Sampling: sampling(0, 0, 7), SeedFixed: true, Format: infer.Format{Type: infer.FormatJSONObject}}},
		"tools required, logprobs without alternatives": {Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "x"}}, Tools: tools[1:],
			ToolChoice: chat.ToolChoice{Mode: chat.ToolRequired},
			GenParams:  infer.GenParams{N: 1, Logprobs: true, Sampling: sampling(1, 0, 1<<31+5), SeedFixed: true}},
		"schema not strict, no tools": {Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "x"}},
			GenParams: infer.GenParams{N: 2, Sampling: sampling(1.5, 0.25, 0), SeedFixed: true,
				Format: infer.Format{Type: infer.FormatJSONSchema, Schema: []byte(`{"type":"array"}`)}}},
	}
	for name, r := range cases {
		got := roundTrip(t, ChatRequestOf(&r), func(b []byte) (*ChatInput, error) { return DecodeChat(b, Limits{MaxN: 16}) })
		// The decoder gives an empty tools list where there are none.
		if len(got.Tools) == 0 && len(r.Tools) == 0 {
			got.Tools = r.Tools
		}
		if !reflect.DeepEqual(got.ChatRequest, r) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got.ChatRequest, r)
		}
	}
}

func TestTheSeedIsAlwaysSent(t *testing.T) {
	r := infer.ChatRequest{Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "x"}},
		GenParams: infer.GenParams{N: 1, Sampling: sampling(0.8, 0, 99)}}
	got := roundTrip(t, ChatRequestOf(&r), func(b []byte) (*ChatInput, error) { return DecodeChat(b, Limits{}) })
	if got.Sampling.Seed != 99 || !got.SeedFixed {
		t.Fatalf("seed chosen by the sender not kept: seed %d, fixed %v", got.Sampling.Seed, got.SeedFixed)
	}
}

func TestCompletionRequestRoundTrip(t *testing.T) {
	gen := infer.GenParams{N: 2, MaxTokens: 16, Batch: true, Stop: []string{"."}, Logprobs: true, TopLogprobs: 3, Sampling: sampling(0.5, 0.5, 11), SeedFixed: true}
	gen.Sampling.TopK = 1
	cases := map[string]infer.CompletionRequest{
		"one text prompt":  {Model: "m", Prompts: []infer.Prompt{{Text: "Once upon"}}, GenParams: gen},
		"empty text":       {Model: "m", Prompts: []infer.Prompt{{Text: ""}}, GenParams: infer.GenParams{N: 1, Sampling: sampling(0, 0, 1), SeedFixed: true}},
		"one token prompt": {Model: "m", Prompts: []infer.Prompt{{Tokens: []engine.Token{1, 2, 300}, IsTokens: true}}, GenParams: gen},
		"mixed prompts": {Model: "m", Prompts: []infer.Prompt{{Tokens: []engine.Token{5}, IsTokens: true}, {Text: "b"}, {Tokens: []engine.Token{0, 7}, IsTokens: true}},
			GenParams: infer.GenParams{N: 1, Logprobs: true, Sampling: sampling(1, 0, 3), SeedFixed: true, Format: infer.Format{Type: infer.FormatJSONObject}}},
	}
	for name, r := range cases {
		got := roundTrip(t, CompletionRequestOf(&r), func(b []byte) (*CompletionInput, error) { return DecodeCompletion(b, Limits{MaxN: 16}) })
		if !reflect.DeepEqual(got.CompletionRequest, r) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got.CompletionRequest, r)
		}
	}
}

func TestEmbeddingTokenizeDetokenizeRoundTrip(t *testing.T) {
	for name, r := range map[string]infer.EmbedRequest{
		"texts and dimensions": {Model: "e", Inputs: []infer.Prompt{{Text: "a"}, {Text: "b c"}}, Dimensions: 8},
		"one token input":      {Model: "e", Inputs: []infer.Prompt{{Tokens: []engine.Token{9, 8}, IsTokens: true}}},
	} {
		got := roundTrip(t, EmbeddingRequestOf(&r), DecodeEmbeddings)
		if !reflect.DeepEqual(got.EmbedRequest, r) || got.Base64 {
			t.Errorf("%s: got %+v, want %+v", name, got, r)
		}
	}
	for name, r := range map[string]infer.TokenizeRequest{
		"prompt without specials": {Model: "m", Prompt: "<s>text"},
		"empty prompt":            {Model: "m", AddSpecial: true},
		"messages":                {Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "hi"}}, AddSpecial: true},
	} {
		if got := roundTrip(t, TokenizeRequestOf(&r), DecodeTokenize); !reflect.DeepEqual(*got, r) {
			t.Errorf("%s: got %+v, want %+v", name, *got, r)
		}
	}
	tools := []chat.Tool{{Name: "f", Parameters: json.RawMessage(`{"type":"object"}`)}}
	for name, r := range map[string]infer.ApplyTemplateRequest{
		"with tools": {Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "hi"}}, Tools: tools, AddGenerationPrompt: true},
		"template variables": {Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "hi"}}, Tools: []chat.Tool{}, AddGenerationPrompt: true,
			TemplateVars: chat.Vars{"enable_thinking": false}},
		"no generation prompt": {Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "hi"}}, Tools: []chat.Tool{}},
	} {
		if got := roundTrip(t, ApplyTemplateRequestOf(&r), DecodeApplyTemplate); !reflect.DeepEqual(*got, r) {
			t.Errorf("%s: got %+v, want %+v", name, *got, r)
		}
	}
	for _, r := range []infer.DetokenizeRequest{{Model: "m", Tokens: []engine.Token{1, 2, 3}}, {Model: "m", Tokens: []engine.Token{}}} {
		if got := roundTrip(t, DetokenizeRequestOf(&r), DecodeDetokenize); !reflect.DeepEqual(*got, r) {
			t.Errorf("got %+v, want %+v", *got, r)
		}
	}
}
