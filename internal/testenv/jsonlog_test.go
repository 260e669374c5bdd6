package testenv

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestCheckJSONLog(t *testing.T) {
	for _, tc := range []struct {
		name, log, err string
	}{
		{"empty", "", ""},
		{"lines", `{"level":"info","a":{"b":1,"c":[{"b":2},{"b":3}]}}` + "\n" + `{"level":"warn","a":"\u0061"}` + "\n", ""},
		{"same key in sibling objects", `{"x":{"k":1},"y":{"k":2},"z":[{"k":1},{"k":2}]}`, ""},
		{"duplicate", `{"level":"error","check":"db","level":"critical"}`, `line 1: duplicate key "level"`},
		{"duplicate spelled with an escape", `{"level":"error","lev\u0065l":"critical"}`, `duplicate key "level"`},
		{"duplicate on a later line", "{\"a\":1}\n{\"a\":1,\"b\":2,\"b\":3}\n", `line 2: duplicate key "b"`},
		{"nested duplicate", `{"req":{"user":"a","user":"b"}}`, `duplicate key "req.user"`},
		{"duplicate in an array", `{"list":[{"k":1},{"k":1,"k":2}]}`, `duplicate key "list[1].k"`},
		{"not JSON", "level=info msg=hello\n", "line 1: not JSON"},
		{"truncated", `{"level":"info","msg":"hel`, "not JSON"},
		{"not an object", `["level","info"]`, "not a JSON object"},
		{"two objects on a line", `{"a":1}{"a":1}`, "data after the JSON object"},
		{"blank line", "{\"a\":1}\n\n{\"a\":2}\n", "line 2: not JSON"},
	} {
		err := CheckJSONLog(tc.log)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.err)
		}
	}
}

// TestCheckJSONLogCatchesZerologFieldCollision: a field named like one of zerolog's own is
// written twice, which CheckJSONLog must catch.
func TestCheckJSONLogCatchesZerologFieldCollision(t *testing.T) {
	var b Buffer
	log := zerolog.New(&b).With().Timestamp().Logger()
	log.Info().Str("check", "db").Msg("fine")
	if err := CheckJSONLog(b.String()); err != nil {
		t.Fatalf("a clean zerolog line: %v", err)
	}
	lines := JSONLogLines(t, b.String())
	if len(lines) != 1 || lines[0]["check"] != "db" || lines[0]["level"] != "info" {
		t.Fatalf("decoded %v", lines)
	}
	log.Error().Str("level", "critical").Msg("collides")
	if err := CheckJSONLog(b.String()); err == nil || !strings.Contains(err.Error(), `line 2: duplicate key "level"`) {
		t.Fatalf("a zerolog line with a second level: err = %v", err)
	}
}
