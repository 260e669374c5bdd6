package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestChatTemplateKwargs: a model's chat_template_kwargs is read as a map of YAML
// values and checked as a request's chat_template_kwargs is: keys are identifiers
// other than the variables the server sets, values JSON values, and a llama.cpp
// built-in template (which takes no variables) is refused with it; each problem
// names the field.
func TestChatTemplateKwargs(t *testing.T) {
	m := writeGGUF(t, t.TempDir(), "m.gguf")
	cases := []struct {
		name, fields string
		want         map[string]any
		path, msg    string // the problem expected, "" for a valid config
	}{
		{"scalars and nesting", "chat_template_kwargs: {enable_thinking: true, depth: 2, tags: [a, 1.5], opts: {k: v}}",
			map[string]any{"enable_thinking": true, "depth": 2, "tags": []any{"a", 1.5}, "opts": map[string]any{"k": "v"}}, "", ""},
		{"reserved", "chat_template_kwargs: {messages: []}", nil, "models[0].chat_template_kwargs.messages", "set by the server"},
		{"reserved eos", "chat_template_kwargs: {eos_token: x}", nil, "models[0].chat_template_kwargs.eos_token", "remove it"},
		{"not an identifier", "chat_template_kwargs: {enable-thinking: true}", nil, "models[0].chat_template_kwargs.enable-thinking", "not an identifier"},
		{"non-string keys", "chat_template_kwargs: {opts: {1: a}}", nil, "models[0].chat_template_kwargs.opts", "not a JSON value"},
		{"built-in template", "chat_template: chatml\n    chat_template_kwargs: {enable_thinking: true}", nil, "models[0].chat_template_kwargs", "llama.cpp built-in"},
		{"not a map", "chat_template_kwargs: [enable_thinking]", nil, "", "line 4: cannot unmarshal !!seq"}, // as for every field: the YAML line
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			yaml := "models:\n  - name: a\n    path: " + m + "\n    " + c.fields + "\n"
			cfg, err := Parse([]byte(yaml), Options{HostCores: 2})
			switch {
			case c.msg == "":
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.Models[0].ChatTemplateKwargs; !reflect.DeepEqual(got, c.want) {
					t.Errorf("chat_template_kwargs %#v, want %#v", got, c.want)
				}
			case c.path == "": // a YAML type error
				if err == nil || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("error %v, want ...%s...", err, c.msg)
				}
			default:
				if ps := problemsOf(t, err); !hasProblem(ps, c.path, c.msg) {
					t.Errorf("problems %v, want %s: ...%s...", ps, c.path, c.msg)
				}
			}
		})
	}
}
