package openai

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
)

// TestChatTemplateKwargs: chat_template_kwargs is decoded into the typed request of
// chat completions and /apply-template alike (numbers keep their JSON text); what
// is not an object of identifiers, or would replace a variable the server sets, is
// a 400 naming chat_template_kwargs or the key.
func TestChatTemplateKwargs(t *testing.T) {
	cases := []struct {
		name, kwargs string
		want         chat.Vars
		param, msg   string // the error expected, "" for none
	}{
		{"absent", ``, nil, "", ""},
		{"null", `null`, nil, "", ""},
		{"empty object", `{}`, nil, "", ""},
		{"scalars, arrays and objects", `{"enable_thinking": true, "n": 3, "x": 1.50, "s": "é", "none": null, "list": [1, "a"], "obj": {"any key!": [false]}}`,
			chat.Vars{"enable_thinking": true, "n": json.Number("3"), "x": json.Number("1.50"), "s": "é", "none": nil,
				"list": []any{json.Number("1"), "a"}, "obj": map[string]any{"any key!": []any{false}}}, "", ""},
		{"underscore identifier", `{"_v2": 1}`, chat.Vars{"_v2": json.Number("1")}, "", ""},
		{"array", `[{"enable_thinking": true}]`, nil, "chat_template_kwargs", "must be a JSON object"},
		{"string", `"enable_thinking"`, nil, "chat_template_kwargs", "must be a JSON object"},
		{"boolean", `true`, nil, "chat_template_kwargs", "must be a JSON object"},
		{"reserved messages", `{"messages": []}`, nil, "chat_template_kwargs.messages", "set by the server"},
		{"reserved tools", `{"enable_thinking": true, "tools": null}`, nil, "chat_template_kwargs.tools", "set by the server"},
		{"reserved add_generation_prompt", `{"add_generation_prompt": false}`, nil, "chat_template_kwargs.add_generation_prompt", "set by the server"},
		{"reserved bos_token", `{"bos_token": ""}`, nil, "chat_template_kwargs.bos_token", "set by the server"},
		{"reserved eos_token", `{"eos_token": ""}`, nil, "chat_template_kwargs.eos_token", "set by the server"},
		{"reserved function", `{"raise_exception": 1}`, nil, "chat_template_kwargs.raise_exception", "set by the server"},
		{"not an identifier", `{"enable-thinking": true}`, nil, "chat_template_kwargs.enable-thinking", "not an identifier"},
		{"leading digit", `{"2x": true}`, nil, "chat_template_kwargs.2x", "not an identifier"},
		{"empty key", `{"": true}`, nil, "chat_template_kwargs.", "not an identifier"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			field := ""
			if c.kwargs != "" {
				field = `, "chat_template_kwargs": ` + c.kwargs
			}
			msgs := `"model": "m", "messages": [{"role": "user", "content": "hi"}]`
			ci, chatErr := DecodeChat([]byte(`{`+msgs+field+`}`), Limits{})
			at, atErr := DecodeApplyTemplate([]byte(`{` + msgs + field + `}`))
			for _, d := range []struct {
				endpoint string
				err      error
				got      func() chat.Vars
			}{
				{"chat", chatErr, func() chat.Vars { return ci.TemplateVars }},
				{"apply-template", atErr, func() chat.Vars { return at.TemplateVars }},
			} {
				if c.param == "" {
					if d.err != nil {
						t.Fatalf("%s: %v", d.endpoint, d.err)
					}
					if got := d.got(); !reflect.DeepEqual(got, c.want) {
						t.Errorf("%s: vars %#v, want %#v", d.endpoint, got, c.want)
					}
					continue
				}
				e := infer.AsError(d.err, "")
				if e == nil || e.Kind != infer.InvalidArgument || e.Param != c.param || !strings.Contains(e.Message, c.msg) ||
					!strings.HasPrefix(e.Message, "chat_template_kwargs") {
					t.Errorf("%s: error %#v, want InvalidArgument on %s: ...%s...", d.endpoint, e, c.param, c.msg)
				}
			}
		})
	}
}
