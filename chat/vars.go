package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Vars are extra chat template variables (chat_template_kwargs, as vLLM and
// llama-server accept them), such as enable_thinking. Values are JSON values as
// ParseVars decodes them: nil, bool, json.Number, string, []any or map[string]any.
type Vars map[string]any

// reservedVars are the variables a rendering sets itself: Vars may not replace them.
var reservedVars = []string{"messages", "tools", "add_generation_prompt", "bos_token", "eos_token",
	"raise_exception", "strftime_now", "range"}

// VarError is a template variable that is refused: Name is its key, Reason why.
type VarError struct {
	Name   string
	Reason string
}

func (e *VarError) Error() string { return e.Name + " " + e.Reason }

// CheckVarName refuses a template variable name that is not an identifier, or that
// names a variable the rendering sets itself (messages, tools,
// add_generation_prompt, bos_token, eos_token and the template's functions).
func CheckVarName(name string) error {
	if !identifier(name) {
		return &VarError{Name: name, Reason: "is not an identifier (letters, digits and _, not starting with a digit): rename it"}
	}
	if slices.Contains(reservedVars, name) {
		return &VarError{Name: name, Reason: "is set by the server from the request and cannot be a template variable: remove it"}
	}
	return nil
}

func identifier(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ParseVars decodes a JSON object of template variables; null or empty is none.
// Numbers keep their JSON text (an integer renders as an integer). A refused key
// is a *VarError.
func ParseVars(raw json.RawMessage) (Vars, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, errors.New("must be a JSON object of template variables")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var vars Vars
	if err := dec.Decode(&vars); err != nil {
		return nil, fmt.Errorf("must be a JSON object of template variables: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if err := CheckVarName(k); err != nil {
			return nil, err
		}
	}
	if len(vars) == 0 {
		return nil, nil
	}
	return vars, nil
}

// VarsOf checks and converts variables read from elsewhere (a YAML config's map)
// to Vars, through their JSON form. A refused key, or a value JSON cannot hold (a
// map with non-string keys), is a *VarError.
func VarsOf(m map[string]any) (Vars, error) {
	if len(m) == 0 {
		return nil, nil
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := CheckVarName(k); err != nil {
			return nil, err
		}
		if _, err := json.Marshal(m[k]); err != nil {
			return nil, &VarError{Name: k, Reason: fmt.Sprintf("is not a JSON value (objects need string keys): %v", err)}
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("template variables: %w", err)
	}
	return ParseVars(raw)
}

// Over is v over defaults: every variable of defaults that v does not set, and v's
// own. Neither is changed.
func (v Vars) Over(defaults Vars) Vars {
	if len(defaults) == 0 {
		return v
	}
	if len(v) == 0 {
		return defaults
	}
	out := maps.Clone(defaults)
	maps.Copy(out, v)
	return out
}
