package infer

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/service"
)

// weatherParams is a tool's parameters schema whose calls are short, so that forced
// calls fit a small max_tokens.
const weatherParams = `{"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]},
	"days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "days"], "additionalProperties": false}`

var testTools = []chat.Tool{
	{Name: "get_weather", Description: "Weather in a city.", Parameters: json.RawMessage(weatherParams)},
	{Name: "ping", Parameters: json.RawMessage(`{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}`)},
}

// templateFile is a chat template of ../shared/fixtures/templates (skips without it).
func templateFile(t *testing.T, name string) string {
	return filepath.Join(testmodel.FixturesDir(t, "templates"), name)
}

// localModel loads the tiny model at path (a real tokenizer when made by WithVocab).
func localModel(t *testing.T, path string, edit func(*config.Model)) *Local {
	t.Helper()
	engine.SetLogger(zerolog.Nop())
	m := config.Model{Name: "m", Path: path, CPUCores: 1, Parallel: 16, CtxPerSeq: 1024, Batch: 512, QueueSize: 64, TargetLatencyMS: 1000}
	if edit != nil {
		edit(&m)
	}
	c := &config.Config{Models: []config.Model{m}}
	c.ApplyDefaults(1)
	s := service.New(c.Models[0], zerolog.Nop(), service.Options{})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return NewLocal(s)
}

// hermesModel has the Hermes-2-Pro tool_use template and Llama 2's tokenizer (a real
// one of 32k tokens: grammar sampling checks every token, so a small vocabulary keeps
// the 100-generation tests short on a shared CPU).
func hermesModel(t *testing.T) *Local {
	return localModel(t, testmodel.WithVocab(t, "llama-spm", templateFile(t, "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")), nil)
}

func compileSchema(t *testing.T, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("s.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("s.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, text, what string) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s: not JSON: %v: %q", what, err, text)
	}
	if err := s.Validate(v); err != nil {
		t.Fatalf("%s: %q does not validate: %v", what, text, err)
	}
}

func userAsks() []chat.Message {
	return []chat.Message{{Role: chat.RoleUser, Content: "What is the weather in Paris this week?"}}
}

// sampled is a request at temperature 1 with n choices from seed.
func sampled(seed uint32, n, maxTokens int) GenParams {
	return GenParams{MaxTokens: maxTokens, N: n, SeedFixed: true,
		Sampling: engine.SamplingParams{Temperature: 1, Seed: seed}}
}

func collect(t *testing.T, l *Local, r *ChatRequest) *Result {
	t.Helper()
	g, err := l.Chat(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Collect()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestForcedToolCallsValidate: over 100 seeded generations at temperature 1 on a real
// tokenizer and the Hermes tool_use template, tool_choice required and a named
// function always end with calls (never text) whose arguments parse and satisfy the
// tool's schema; without parallel_tool_calls there is exactly one call.
func TestForcedToolCallsValidate(t *testing.T) {
	l := hermesModel(t)
	schemas := map[string]*jsonschema.Schema{}
	for _, tl := range testTools {
		schemas[tl.Name] = compileSchema(t, string(tl.Parameters))
	}
	calls := 0
	for seed := uint32(1); seed <= 10; seed++ {
		choice := chat.ToolChoice{Mode: chat.ToolRequired}
		if seed%2 == 0 {
			choice = chat.ToolChoice{Mode: chat.ToolFunction, Name: "get_weather"}
		}
		res := collect(t, l, &ChatRequest{Messages: userAsks(), Tools: testTools, ToolChoice: choice, GenParams: sampled(seed, 10, 96)})
		for i, c := range res.Choices {
			if c.Finish == FinishLength {
				continue // cut: allowed, but counted below
			}
			if c.Finish != FinishToolCalls || len(c.ToolCalls) != 1 || c.Text != "" {
				t.Fatalf("seed %d choice %d: finish %s, %d calls, text %q", seed, i, c.Finish, len(c.ToolCalls), c.Text)
			}
			call := c.ToolCalls[0]
			if choice.Mode == chat.ToolFunction && call.Name != "get_weather" {
				t.Fatalf("seed %d choice %d: called %s, not the named function", seed, i, call.Name)
			}
			if !strings.HasPrefix(call.ID, "call_") {
				t.Fatalf("seed %d choice %d: call id %q", seed, i, call.ID)
			}
			validate(t, schemas[call.Name], call.Arguments, call.Name)
			calls++
		}
	}
	if calls < 90 {
		t.Fatalf("only %d of 100 forced generations ended with a call (the others hit max_tokens)", calls)
	}
}

// TestSchemaOutputsValidate: response_format json_schema outputs always validate or end
// with finish length, over 100 seeded generations.
func TestSchemaOutputsValidate(t *testing.T) {
	l := hermesModel(t)
	schema := `{"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
		"score": {"type": "integer", "minimum": 0, "maximum": 100}, "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
		"required": ["answer", "score", "tags"], "additionalProperties": false}`
	s := compileSchema(t, schema)
	valid := 0
	for seed := uint32(1); seed <= 10; seed++ {
		p := sampled(seed, 10, 64)
		p.Format = Format{Type: FormatJSONSchema, Schema: []byte(schema)}
		res := collect(t, l, &ChatRequest{Messages: userAsks(), Tools: testTools, ToolChoice: chat.ToolChoice{Mode: chat.ToolNone}, GenParams: p})
		for _, c := range res.Choices {
			if c.Finish == FinishLength {
				continue
			}
			if c.Finish != FinishStop || len(c.ToolCalls) > 0 {
				t.Fatalf("seed %d: finish %s with %d calls", seed, c.Finish, len(c.ToolCalls))
			}
			validate(t, s, c.Text, "schema output")
			valid++
		}
	}
	if valid < 90 {
		t.Fatalf("only %d of 100 schema generations completed", valid)
	}
}

// TestSchemaRefusedNamesKeyword: a keyword the converter cannot enforce is a 400
// naming it, before anything is generated (fail closed), for chat and completions.
func TestSchemaRefusedNamesKeyword(t *testing.T) {
	l := hermesModel(t)
	p := sampled(1, 1, 8)
	p.Format = Format{Type: FormatJSONSchema, Schema: []byte(`{"type": "string", "pattern": "^a+$"}`)}
	_, err := l.Chat(context.Background(), &ChatRequest{Messages: userAsks(), Tools: testTools, GenParams: p})
	var e *Error
	if !errors.As(err, &e) || e.Kind != InvalidArgument || e.Param != SchemaParam || !strings.Contains(e.Message, `"pattern"`) {
		t.Fatalf("chat: %#v", err)
	}
	_, err = l.Complete(context.Background(), &CompletionRequest{Prompts: []Prompt{{Text: "x"}}, GenParams: p})
	if !errors.As(err, &e) || e.Param != SchemaParam {
		t.Fatalf("completion: %#v", err)
	}
	p.Format = Format{}
	bad := []chat.Tool{{Name: "f", Parameters: json.RawMessage(`{"type": "object", "properties": {"n": {"type": "number", "multipleOf": 3}}}`)}}
	_, err = l.Chat(context.Background(), &ChatRequest{Messages: userAsks(), Tools: bad, ToolChoice: chat.ToolChoice{Mode: chat.ToolRequired}, GenParams: p})
	if !errors.As(err, &e) || e.Param != "tools[0].function.parameters" || !strings.Contains(e.Message, "multipleOf") {
		t.Fatalf("tool parameters: %#v", err)
	}
}

// TestToolChoiceNoneNeverCalls: with tool_choice none no grammar is applied and a
// call written by the model stays content; with auto the same text is a call.
func TestToolChoiceNoneNeverCalls(t *testing.T) {
	rd := rendering{text: "<|im_start|>assistant\n", format: chat.ToolFormatHermes}
	out := `<tool_call>{"name": "ping", "arguments": {"ok": true}}</tool_call>`
	run := func(mode chat.ToolChoiceMode) Event {
		sh, err := chatShape(&ChatRequest{Tools: testTools, ToolChoice: chat.ToolChoice{Mode: mode}, ParallelToolCalls: true}, rd)
		if err != nil {
			t.Fatal(err)
		}
		if (sh.grammar == "") != (mode == chat.ToolNone) || (len(sh.triggers) > 0) != (mode == chat.ToolAuto) {
			t.Fatalf("mode %d: grammar %q, triggers %q", mode, sh.grammar, sh.triggers)
		}
		var rdr reader
		if sh.parse != nil {
			rdr.p = sh.parse()
		}
		var ev Event
		rdr.feed(&ev, out[:20])
		rdr.feed(&ev, out[20:])
		ev.Done = true
		rdr.close(&ev)
		return ev
	}
	if ev := run(chat.ToolNone); len(ev.ToolCalls) > 0 || ev.Text != out || ev.Finish != FinishStop {
		t.Fatalf("none: %+v", ev)
	}
	ev := run(chat.ToolAuto)
	if len(ev.ToolCalls) != 1 || ev.ToolCalls[0].Name != "ping" || ev.ToolCalls[0].Arguments != `{"ok": true}` || ev.Finish != FinishToolCalls || ev.Text != "" {
		t.Fatalf("auto: %+v", ev)
	}
	// On the real model: none never ends with calls.
	l := hermesModel(t)
	for seed := uint32(1); seed <= 3; seed++ {
		res := collect(t, l, &ChatRequest{Messages: userAsks(), Tools: testTools, ToolChoice: chat.ToolChoice{Mode: chat.ToolNone}, GenParams: sampled(seed, 10, 16)})
		for _, c := range res.Choices {
			if len(c.ToolCalls) > 0 || c.Finish == FinishToolCalls {
				t.Fatalf("seed %d: tool_choice none made calls: %+v", seed, c)
			}
		}
	}
}

// TestReasoningGrammarAfterThinking: a prompt that opens a thinking block gets the
// answer's grammar lazily, triggered after the block's end, and its text goes to
// Reasoning.
func TestReasoningGrammarAfterThinking(t *testing.T) {
	think := &chat.Reasoning{Open: "<think>", Close: "</think>"}
	rd := rendering{text: "<｜Assistant｜><think>\n", format: chat.ToolFormatHermes, reasoning: think}
	sh, err := chatShape(&ChatRequest{GenParams: GenParams{Format: Format{Type: FormatJSONObject}}}, rd)
	if err != nil {
		t.Fatal(err)
	}
	if len(sh.triggers) != 1 || !strings.Contains(sh.triggers[0], `</think>([\s\S]*)`) || !strings.HasPrefix(sh.grammar, "root ::= [ \\t\\n]{0,4} (") {
		t.Fatalf("triggers %q grammar %q", sh.triggers, sh.grammar)
	}
	rdr := reader{p: sh.parse()}
	var ev Event
	rdr.feed(&ev, "hmm, JSON.</think>\n{\"a\": 1}")
	rdr.close(&ev)
	if ev.Reasoning != "hmm, JSON." || ev.Text != `{"a": 1}` {
		t.Fatalf("reasoning %q text %q", ev.Reasoning, ev.Text)
	}
}

// TestTemplates: the Hermes tool_use template raises without tools (400 with its
// message); a leading BOS text is stripped before tokenizing when the tokenizer adds
// BOS (one BOS, not two); a model without a template chats with ChatML and says so.
func TestTemplates(t *testing.T) {
	ctx := context.Background()
	l := hermesModel(t)
	_, err := l.Chat(ctx, &ChatRequest{Messages: userAsks(), GenParams: sampled(1, 1, 4)})
	var e *Error
	if !errors.As(err, &e) || e.Kind != InvalidArgument || e.Param != "messages" || !strings.Contains(e.Message, "not iterable") {
		t.Fatalf("raising template: %#v", err)
	}
	if m := l.Models(ctx)[0]; m.ChatTemplate != TemplateOriginGGUF {
		t.Fatalf("origin %q", m.ChatTemplate)
	}

	llama := localModel(t, testmodel.WithVocab(t, "llama-bpe", templateFile(t, "meta-llama-Llama-3.1-8B-Instruct.jinja")), nil)
	p, err := llama.ApplyTemplate(ctx, &ApplyTemplateRequest{Messages: userAsks(), AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	bos := llama.b.Info().BOS
	if !strings.HasPrefix(p.Prompt, "<|begin_of_text|>") {
		t.Fatalf("rendered prompt lacks its BOS text: %q", p.Prompt)
	}
	toks, err := llama.Tokenize(ctx, &TokenizeRequest{Messages: userAsks(), AddSpecial: true})
	if err != nil {
		t.Fatal(err)
	}
	if toks.Tokens[0] != bos || toks.Tokens[1] == bos {
		t.Fatalf("tokens start %v, want one BOS %d", toks.Tokens[:2], bos)
	}

	base := localModel(t, testmodel.WithVocab(t, "llama-bpe", ""), nil)
	if m := base.Models(ctx)[0]; m.ChatTemplate != TemplateOriginDefault {
		t.Fatalf("model without a template: origin %q", m.ChatTemplate)
	}
	bp, err := base.ApplyTemplate(ctx, &ApplyTemplateRequest{Messages: userAsks(), AddGenerationPrompt: true})
	if err != nil || bp.Prompt != "<|im_start|>user\nWhat is the weather in Paris this week?<|im_end|>\n<|im_start|>assistant\n" {
		t.Fatalf("ChatML rendering %q, %v", bp.Prompt, err)
	}
	if res := collect(t, base, &ChatRequest{Messages: userAsks(), GenParams: sampled(1, 1, 4)}); res.Usage.CompletionTokens == 0 {
		t.Fatal("no tokens generated with ChatML")
	}
}
