package chat

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// TestVarsRenderAndOverride: template variables parsed from JSON render as Python
// would (an integer as an integer, a float as a float, nested values readable);
// a request's variables win over the defaults without changing either; the server's
// own variables cannot be replaced.
func TestVarsRenderAndOverride(t *testing.T) {
	tpl, err := ParseTemplate(`{{ n }} {{ x }} {{ opts.lang }} {{ tags | length }} {{ on }}|{{ messages | length }}`)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseVars(json.RawMessage(`{"n": 2, "x": 0.5, "opts": {"lang": "nb"}, "tags": [1, null, "a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := VarsOf(map[string]any{"n": 7, "on": true})
	if err != nil {
		t.Fatal(err)
	}
	vars := req.Over(defaults)
	out, err := tpl.Render(RenderInput{Messages: []Message{{Role: RoleUser, Content: "hi"}}, Extra: vars})
	if err != nil {
		t.Fatal(err)
	}
	if want := "2 0.5 nb 3 True|1"; out != want {
		t.Errorf("rendered %q, want %q", out, want)
	}
	if defaults["n"] != json.Number("7") || req["on"] != nil {
		t.Errorf("Over changed its operands: defaults %v, request %v", defaults, req)
	}
	if got := Vars(nil).Over(defaults); !reflect.DeepEqual(got, defaults) {
		t.Errorf("no request variables: %v, want the defaults %v", got, defaults)
	}

	for _, name := range []string{"messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "strftime_now", "1st", "a.b", ""} {
		var ve *VarError
		if _, err := VarsOf(map[string]any{name: 1}); !errors.As(err, &ve) || ve.Name != name {
			t.Errorf("%q: error %v, want a *VarError naming it", name, err)
		}
	}
	if _, err := ParseVars(json.RawMessage(`[1]`)); err == nil {
		t.Error("an array was accepted as template variables")
	}
}
