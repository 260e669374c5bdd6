package rest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/service"
)

// Tools, structured outputs and chat templates where clients meet them: on tiny models
// with a real tokenizer (llama-bpe) and real chat templates from ../shared/fixtures.

const hermesTemplate = "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja"

// templateModel serves the tiny model with the llama-bpe tokenizer and the fixture
// template file ("" for none).
func templateModel(t *testing.T, file string) string {
	t.Helper()
	return familyModel(t, "llama-bpe", file)
}

// familyModel serves the tiny model with the tokenizer of the vocabulary fixture and
// the fixture template file ("" for none).
func familyModel(t *testing.T, vocab, file string) string {
	t.Helper()
	tpl := ""
	if file != "" {
		tpl = filepath.Join(testmodel.FixturesDir(t, "templates"), file)
	}
	cfg := modelConfig(t, "m")
	cfg.Path = testmodel.WithVocab(t, vocab, tpl)
	return serveModel(t, newService(t, cfg, service.Options{}), Options{Log: testLog()})
}

var weatherTool = map[string]any{"type": "function", "function": map[string]any{
	"name": "get_weather", "description": "Weather in a city.",
	"parameters": json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]},
		"days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "days"], "additionalProperties": false}`),
}}

func weatherSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	return compileSchema(t, string(weatherTool["function"].(map[string]any)["parameters"].(json.RawMessage)))
}

// compileSchema compiles a JSON Schema with the independent validator the tests
// check outputs with.
func compileSchema(t *testing.T, raw string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(raw))
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

func toolBody(seed int, choice any, stream bool) map[string]any {
	return map[string]any{
		"model":    "m",
		"messages": []map[string]any{{"role": "user", "content": "Weather in Paris?"}},
		"tools":    []any{weatherTool}, "tool_choice": choice, "parallel_tool_calls": false,
		"temperature": 1, "seed": seed, "max_tokens": 96, "stream": stream,
	}
}

// call is a tool call without its id (random per response).
type call struct{ Name, Arguments string }

// streamedCalls assembles the tool calls of a streamed chat completion from its
// deltas, checking OpenAI's order: index, then id, type and name, then arguments.
func streamedCalls(t *testing.T, body []byte) (calls []call, content, finish string) {
	t.Helper()
	evs := sseEvents(t, body)
	for _, ev := range evs[:len(evs)-1] {
		var c openai.ChatChunk
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("chunk %s: %v", ev, err)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				content += *ch.Delta.Content
			}
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Index == nil {
					t.Fatalf("tool call delta without index: %s", ev)
				}
				switch {
				case *tc.Index == len(calls):
					if tc.ID == "" || tc.Type != "function" || tc.Function.Name == "" {
						t.Fatalf("a call's first delta lacks id, type or name: %s", ev)
					}
					calls = append(calls, call{Name: tc.Function.Name})
				case *tc.Index != len(calls)-1 || tc.ID != "":
					t.Fatalf("tool call delta out of order: %s", ev)
				}
				calls[*tc.Index].Arguments += tc.Function.Arguments
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return calls, content, finish
}

// toolFamily is a model family's tool-call format, served on a tiny model with the
// family's real tokenizer and chat template.
type toolFamily struct {
	name, vocab, template string
	// call and result are the markup the template writes around an assistant's call of
	// get_weather and around a tool's result in the history.
	call, result string
}

// toolFamilies are the tool-call formats of chat.ToolFormat on their own templates:
// Hermes and Qwen <tool_call>, Llama 3.1 JSON with "parameters", Mistral [TOOL_CALLS]
// (on Llama 2's tokenizer, Mistral 7B's: the fixtures lack Nemo's).
var toolFamilies = []toolFamily{
	{"hermes", "llama-bpe", hermesTemplate, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {", "<tool_response>\n"},
	{"qwen", "qwen2", "Qwen-Qwen2.5-7B-Instruct.jinja", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {", "<tool_response>\n"},
	{"llama3", "llama-bpe", "meta-llama-Llama-3.1-8B-Instruct.jinja", "{\"name\": \"get_weather\", \"parameters\": {", "<|start_header_id|>ipython<|end_header_id|>"},
	{"mistral", "llama-spm", "mistralai-Mistral-Nemo-Instruct-2407.jinja", "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {", "[TOOL_RESULTS]{\"content\": "},
}

// TestRESTForcedToolCallsStreamed: for each tool-call format on its family's real
// tokenizer and template, forced tool calls (required and a named function) at
// temperature 1 come back as message.tool_calls with arguments satisfying the schema
// and finish_reason tool_calls; the streamed deltas of the same seed assemble into the
// same calls; and a history with that call and its result renders through the
// family's template with the family's markup.
func TestRESTForcedToolCallsStreamed(t *testing.T) {
	schema := weatherSchema(t)
	for _, fam := range toolFamilies {
		t.Run(fam.name, func(t *testing.T) {
			url := familyModel(t, fam.vocab, fam.template)
			var last openai.ToolCall
			compared := 0
			for seed := 1; seed <= 4; seed++ {
				var choice any = "required"
				if seed%2 == 0 {
					choice = map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}}
				}
				r := post(t, url+"/v1/chat/completions", toolBody(seed, choice, false))
				if r.status != 200 {
					t.Fatalf("seed %d: %d %s", seed, r.status, r.body)
				}
				var resp openai.ChatCompletion
				r.json(t, &resp)
				msg, finish := resp.Choices[0].Message, resp.Choices[0].FinishReason
				s := post(t, url+"/v1/chat/completions", toolBody(seed, choice, true))
				got, content, sfinish := streamedCalls(t, s.body)
				if finish == "length" {
					if sfinish != "length" {
						t.Fatalf("seed %d: finish length, streamed %s", seed, sfinish)
					}
					continue
				}
				if finish != "tool_calls" || len(msg.ToolCalls) != 1 || msg.Content != "" {
					t.Fatalf("seed %d: finish %s, message %+v", seed, finish, msg)
				}
				tc := msg.ToolCalls[0]
				if tc.Type != "function" || tc.ID == "" || tc.Function.Name != "get_weather" {
					t.Fatalf("seed %d: call %+v", seed, tc)
				}
				v, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.Function.Arguments))
				if err != nil {
					t.Fatalf("seed %d: arguments %q: %v", seed, tc.Function.Arguments, err)
				}
				if err := schema.Validate(v); err != nil {
					t.Fatalf("seed %d: arguments %q: %v", seed, tc.Function.Arguments, err)
				}
				want := []call{{Name: tc.Function.Name, Arguments: tc.Function.Arguments}}
				if sfinish != finish || content != "" || len(got) != 1 || got[0] != want[0] {
					t.Fatalf("seed %d: streamed %+v %q finish %s, collected %+v finish %s", seed, got, content, sfinish, want, finish)
				}
				last = tc
				compared++
			}
			if compared < 3 {
				t.Fatalf("only %d of 4 forced calls finished within max_tokens", compared)
			}
			prompt := renderToolTurn(t, url, last)
			i := strings.Index(prompt, fam.call)
			j := strings.Index(prompt[max(i, 0):], fam.result)
			if i < 0 || j < 0 || !strings.Contains(prompt[i+j:], "18") {
				t.Fatalf("history with call %+v renders without %q, then %q with the result:\n%s", last, fam.call, fam.result, prompt)
			}
		})
	}
}

// renderToolTurn renders, with /apply-template, a history in which the assistant made
// call c (as the model answered it) and the tool answered.
func renderToolTurn(t *testing.T, url string, c openai.ToolCall) string {
	t.Helper()
	msgs := []map[string]any{
		{"role": "user", "content": "Weather in Paris?"},
		{"role": "assistant", "content": "", "tool_calls": []openai.ToolCall{c}},
		{"role": "tool", "tool_call_id": c.ID, "content": `{"temp": 18}`},
	}
	r := post(t, url+"/apply-template", map[string]any{"model": "m", "messages": msgs, "tools": []any{weatherTool}})
	var p openai.ApplyTemplateResponse
	r.json(t, &p)
	if r.status != 200 {
		t.Fatalf("apply-template: %d %s", r.status, r.body)
	}
	return p.Prompt
}

// TestRESTApplyTemplateGolden: /apply-template renders the fixture conversation with
// tools exactly as the reference Jinja2 engine did (BOS text included).
func TestRESTApplyTemplateGolden(t *testing.T) {
	url := templateModel(t, hermesTemplate)
	data, err := os.ReadFile(filepath.Join(testmodel.FixturesDir(t, "templates"), "golden", strings.TrimSuffix(hermesTemplate, ".jinja")+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []struct {
			Name                string            `json:"name"`
			Messages            json.RawMessage   `json:"messages"`
			Tools               []json.RawMessage `json:"tools"`
			AddGenerationPrompt bool              `json:"add_generation_prompt"`
			Rendered            *string           `json:"rendered"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, c := range g.Cases {
		if c.Rendered == nil || len(c.Tools) == 0 {
			continue
		}
		r := post(t, url+"/apply-template", map[string]any{"model": "m", "messages": stringArguments(t, c.Messages), "tools": c.Tools,
			"add_generation_prompt": c.AddGenerationPrompt})
		var resp openai.ApplyTemplateResponse
		r.json(t, &resp)
		if r.status != 200 || resp.Prompt != *c.Rendered {
			t.Errorf("%s: %d %s\n got %q\nwant %q", c.Name, r.status, r.body, resp.Prompt, *c.Rendered)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no golden case with tools")
	}
}

// stringArguments rewrites the goldens' tool-call arguments (objects, as the template
// sees them) as the JSON strings OpenAI clients send, keeping their key order.
func stringArguments(t *testing.T, raw json.RawMessage) []map[string]json.RawMessage {
	t.Helper()
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m["tool_calls"] == nil {
			continue
		}
		var plain []map[string]json.RawMessage
		if err := json.Unmarshal(m["tool_calls"], &plain); err != nil {
			t.Fatal(err)
		}
		for _, c := range plain {
			var fn map[string]json.RawMessage
			if err := json.Unmarshal(c["function"], &fn); err != nil {
				t.Fatal(err)
			}
			args, _ := json.Marshal(string(fn["arguments"]))
			fn["arguments"] = args
			c["function"], _ = json.Marshal(fn)
		}
		m["tool_calls"], _ = json.Marshal(plain)
	}
	return msgs
}

// TestRESTTemplateErrorsAndDefault: a template that raises is a 400 carrying its
// message; a refused schema is a 400 naming the keyword; a model without a template
// chats with ChatML and says so in /v1/models.
func TestRESTTemplateErrorsAndDefault(t *testing.T) {
	url := templateModel(t, hermesTemplate)
	r := post(t, url+"/v1/chat/completions", chatBody("m", 4, nil)) // the tool_use template iterates tools
	e := r.wantErr(t, 400, "invalid_request_error", "chat_template_error")
	if e.Param == nil || *e.Param != "messages" || !strings.Contains(e.Message, "not iterable") {
		t.Fatalf("raising template: %s", r.body)
	}
	r = post(t, url+"/v1/chat/completions", chatBody("m", 4, map[string]any{"tools": []any{weatherTool},
		"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "x", "schema": map[string]any{"type": "string", "format": "email"}}}}))
	e = r.wantErr(t, 400, "invalid_request_error", "unsupported_schema")
	if e.Param == nil || *e.Param != "response_format.json_schema.schema" || !strings.Contains(e.Message, "format") {
		t.Fatalf("refused schema: %s", r.body)
	}

	base := templateModel(t, "")
	var list openai.ModelList
	do(t, "GET", base+"/v1/models", nil).json(t, &list)
	if len(list.Data) != 1 || list.Data[0].ChatTemplate != "default:chatml" {
		t.Fatalf("models: %+v", list.Data)
	}
	r = post(t, base+"/v1/chat/completions", chatBody("m", 4, nil))
	if r.status != 200 {
		t.Fatalf("chat with ChatML: %d %s", r.status, r.body)
	}
	var p openai.ApplyTemplateResponse
	post(t, base+"/apply-template", map[string]any{"model": "m", "messages": []map[string]any{{"role": "user", "content": "Hi"}},
		"add_generation_prompt": false}).json(t, &p)
	if p.Prompt != "<|im_start|>user\nHi<|im_end|>\n" {
		t.Fatalf("ChatML rendering %q", p.Prompt)
	}
}
