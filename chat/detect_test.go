package chat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDetectFixtureTemplates detects the tool format and the thinking block of
// every fixture template.
func TestDetectFixtureTemplates(t *testing.T) {
	dir := fixturesDir(t)
	want := map[string]struct {
		format    ToolFormat
		reasoning bool
	}{
		"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": {ToolFormatHermes, false},
		"Qwen-Qwen2.5-7B-Instruct":                      {ToolFormatHermes, false},
		"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B":      {ToolFormatGeneric, true},
		"google-gemma-2-2b-it":                          {ToolFormatGeneric, false},
		"meta-llama-Llama-3.1-8B-Instruct":              {ToolFormatLlama3, false},
		"microsoft-Phi-3.5-mini-instruct":               {ToolFormatGeneric, false},
		"mistralai-Mistral-Nemo-Instruct-2407":          {ToolFormatMistral, false},
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jinja"))
	if len(files) != len(want) {
		t.Fatalf("%d fixture templates, the table has %d: add the new ones", len(files), len(want))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".jinja")
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[name]
		if !ok {
			t.Fatalf("fixture %s not in the table", name)
		}
		if got := DetectToolFormat(string(src)); got != w.format {
			t.Errorf("%s: tool format %s, want %s", name, got, w.format)
		}
		if got := DetectReasoning(string(src)) != nil; got != w.reasoning {
			t.Errorf("%s: reasoning detected %v, want %v", name, got, w.reasoning)
		}
	}
}

// TestPromptOpensReasoning renders DeepSeek-R1's generation prompt with and
// without enable_thinking: only an open <think> makes the output start inside.
func TestPromptOpensReasoning(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(fixturesDir(t), "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := ParseTemplate(string(src))
	if err != nil {
		t.Fatal(err)
	}
	r := DetectReasoning(string(src))
	for _, thinking := range []bool{true, false} {
		prompt, err := tpl.Render(RenderInput{Messages: []Message{{Role: RoleUser, Content: "2+2?"}}, AddGenerationPrompt: true,
			Extra: map[string]any{"enable_thinking": thinking}})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.PromptOpens(prompt); got != thinking {
			t.Errorf("enable_thinking=%v: PromptOpens(%q) = %v", thinking, prompt, got)
		}
	}
	if (*Reasoning)(nil).PromptOpens("<think>") {
		t.Error("a nil Reasoning opened a block")
	}
}

func TestParseToolFormat(t *testing.T) {
	for name, want := range map[string]ToolFormat{"hermes": ToolFormatHermes, "Qwen": ToolFormatHermes, " llama3 ": ToolFormatLlama3, "mistral": ToolFormatMistral, "generic": ToolFormatGeneric} {
		if got, err := ParseToolFormat(name); err != nil || got != want {
			t.Errorf("ParseToolFormat(%q) = %s, %v; want %s", name, got, err, want)
		}
	}
	if _, err := ParseToolFormat("xml"); err == nil || !strings.Contains(err.Error(), "hermes") {
		t.Errorf("ParseToolFormat(xml) error %v, want one listing the formats", err)
	}
}

// TestGrammar checks each format's grammar: the root starts with a trigger,
// every tool's rule is referenced, and bad names are refused.
func TestGrammar(t *testing.T) {
	rule := func(tl Tool) (string, error) { return strings.ReplaceAll(tl.Name, "_", "-") + "-args", nil }
	for _, f := range []ToolFormat{ToolFormatGeneric, ToolFormatHermes, ToolFormatLlama3, ToolFormatMistral} {
		for _, parallel := range []bool{false, true} {
			g, err := f.Grammar(testTools, parallel, rule)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			root, rest, _ := strings.Cut(g, "\n")
			first := strings.TrimPrefix(root, "root ::= ")
			if strings.HasPrefix(first, "tool-call ") || first == "tool-call" {
				first, _, _ = strings.Cut(strings.TrimPrefix(rest, "tool-call ::= "), "\n")
			}
			lit := strings.ReplaceAll(f.Triggers()[0], `"`, `\"`)
			if !strings.HasPrefix(first, `"`+lit) {
				t.Errorf("%s: root %q does not start with the trigger %q", f, root, f.Triggers()[0])
			}
			if strings.Contains(root, ")*") != parallel {
				t.Errorf("%s parallel=%v: root %q", f, parallel, root)
			}
			for _, want := range []string{"get-weather-args", "search-docs-args", `"\"get_weather\""`, "tool-call-ws ::=", "\"\\\"" + f.spec().argsKey + "\\\"\""} {
				if !strings.Contains(g, want) {
					t.Errorf("%s: grammar lacks %s:\n%s", f, want, g)
				}
			}
		}
	}
	if _, err := ToolFormatHermes.Grammar([]Tool{{Name: "bad name"}}, false, rule); err == nil {
		t.Error("a tool name with a space was accepted")
	}
	if _, err := ToolFormatHermes.Grammar(testTools, false, func(Tool) (string, error) { return "a b", nil }); err == nil {
		t.Error("a rule name with a space was accepted")
	}
	if _, err := ToolFormatHermes.Grammar(nil, false, rule); err == nil {
		t.Error("a grammar without tools was made")
	}
}

func render(t *testing.T, src string, in RenderInput) (string, error) {
	t.Helper()
	tpl, err := ParseTemplate(src)
	if err != nil {
		t.Fatalf("parse %q: %v", src, err)
	}
	return tpl.Render(in)
}

// TestRenderSemantics covers what the goldens do not: tojson's options and
// Python output, raise_exception, iteration of none, strftime_now, ChatML.
func TestRenderSemantics(t *testing.T) {
	params := `{"b": 1.0, "a": [1e+16, 0.5, 1e-05], "s": "<ü\u2028\"\n>"}`
	in := RenderInput{Tools: []Tool{{Name: "f", Parameters: []byte(params)}}}
	cases := []struct{ src, want string }{
		{`{{ tools[0].function.parameters | tojson }}`, `{"b": 1.0, "a": [1e+16, 0.5, 1e-05], "s": "<ü` + "\u2028" + `\"\n>"}`},
		{`{{ tools[0].function.parameters | tojson(sort_keys=true, separators=(",", ":")) }}`, `{"a":[1e+16,0.5,1e-05],"b":1.0,"s":"<ü` + "\u2028" + `\"\n>"}`},
		{`{{ tools[0].function.parameters.a | tojson(indent=2) }}`, "[\n  1e+16,\n  0.5,\n  1e-05\n]"},
		{`{{ "ü" | tojson(ensure_ascii=true) }}{{ "😀"|tojson(ensure_ascii=true) }}`, `"\u00fc""\ud83d\ude00"`},
		{`{{ 'x' ~ tools[0].function.name | tojson }}`, `x"f"`},
		{`{% for k in tools[0].function.parameters %}{{ k }}{% endfor %}`, "bas"},
		{`{{ strftime_now("%d %b %Y %H:%M") }}`, "01 Dec 2026 12:00"},
		{`{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}`, "321"},
	}
	in.Now = func() time.Time { return time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) }
	for _, c := range cases {
		got, err := render(t, c.src, in)
		if err != nil || got != c.want {
			t.Errorf("%s\n got %q, %v\nwant %q", c.src, got, err, c.want)
		}
	}

	var te *TemplateError
	if _, err := render(t, `{{ raise_exception("Only user and assistant roles") }}`, in); !errors.As(err, &te) || te.Message != "Only user and assistant roles" {
		t.Errorf("raise_exception: %v, want a *TemplateError with the template's message", err)
	}
	if _, err := render(t, `{% for x in tools %}{% endfor %}`, RenderInput{}); !errors.As(err, &te) || !strings.Contains(te.Message, "NoneType") {
		t.Errorf("iterating none: %v, want a *TemplateError (TypeError as in Python)", err)
	}
	var ae *ArgumentsError
	bad := RenderInput{Messages: []Message{{Role: RoleUser}, {Role: RoleAssistant, ToolCalls: []ToolCall{{Name: "f", Arguments: "[1]"}}}}}
	if _, err := render(t, `{{ messages | length }}`, bad); !errors.As(err, &ae) || ae.MessageIndex != 1 || ae.CallIndex != 0 {
		t.Errorf("arguments not an object: %v, want an *ArgumentsError naming messages[1].tool_calls[0]", err)
	}

	out, err := render(t, ChatML, RenderInput{Messages: []Message{{Role: RoleSystem, Content: "Be brief."}, {Role: RoleUser, Content: "Hi"}}, AddGenerationPrompt: true})
	if want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"; err != nil || out != want {
		t.Errorf("ChatML: %q, %v; want %q", out, err, want)
	}
}

// TestRenderLimits: runaway templates stop with an error instead of hanging.
func TestRenderLimits(t *testing.T) {
	for _, src := range []string{
		`{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}`,
		`{% for i in range(100000000) %}{% endfor %}`,
		`{% for i in range(60000) %}{% for j in range(60000) %}{% endfor %}{% endfor %}`,
	} {
		_, err := render(t, src, RenderInput{})
		var te *TemplateError
		if err == nil || errors.As(err, &te) || !strings.Contains(err.Error(), "rendering stopped") {
			t.Errorf("%s: %v, want a limit error (not a *TemplateError)", src, err)
		}
	}
}
