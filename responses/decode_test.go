package responses

import (
	"testing"

	"github.com/hxp-ai/hxp/infer"
)

// TestRenameParam: errors about the chat request built from a Responses request name
// the Responses request's fields, a json_schema's as text.format's own.
func TestRenameParam(t *testing.T) {
	for from, to := range map[string]string{
		infer.SchemaParam:              "text.format.schema",
		"response_format.json_schema":  "text.format",
		"response_format.type":         "text.format.type",
		"max_completion_tokens":        "max_output_tokens",
		"messages[2].content":          "input[2].content",
		"temperature":                  "temperature",
		"tools[0].function.parameters": "tools[0].parameters",
	} {
		err := RenameParam(infer.Invalid(from, "%s is wrong", from))
		e := infer.AsError(err, "")
		if e.Param != to || e.Message != to+" is wrong" || e.Kind != infer.InvalidArgument {
			t.Errorf("%s: param %q, message %q; want %q", from, e.Param, e.Message, to)
		}
	}
	if err := RenameParam(nil); err != nil {
		t.Errorf("nil: %v", err)
	}
}
