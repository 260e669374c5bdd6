package vector_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/vector"
)

func TestFilterValidateNamesTheBadPart(t *testing.T) {
	for _, tc := range []struct {
		json  string
		field string // "" = valid
	}{
		{`{"type":"eq","key":"lang","value":"en"}`, ""},
		{`{"type":"gte","key":"year","value":2020}`, ""},
		{`{"type":"in","key":"lang","value":["en","de"]}`, ""},
		{`{"type":"nin","key":"year","value":[2020,2021.5]}`, ""},
		{`{"type":"and","filters":[{"type":"eq","key":"a","value":true},{"type":"or","filters":[{"type":"ne","key":"b","value":1}]}]}`, ""},
		{`{"key":"lang","value":"en"}`, "filters.type"},
		{`{"type":"like","key":"lang","value":"en"}`, "filters.type"},
		{`{"type":"eq","value":"en"}`, "filters.key"},
		{`{"type":"eq","key":"lang"}`, "filters.value"},
		{`{"type":"eq","key":"lang","value":{"a":1}}`, "filters.value"},
		{`{"type":"lt","key":"year","value":"2020"}`, "filters.value"},
		{`{"type":"in","key":"lang","value":[]}`, "filters.value"},
		{`{"type":"in","key":"lang","value":["en",1]}`, "filters.value"},
		{`{"type":"in","key":"lang","value":[null]}`, "filters.value"},
		{`{"type":"and","filters":[]}`, "filters.filters"},
		{`{"type":"or","filters":[{"type":"eq","key":"a","value":1},{"type":"gt","key":"b","value":false}]}`, "filters.filters[1].value"},
		{`{"type":"eq","key":"a","value":1,"filters":[{"type":"eq","key":"a","value":1}]}`, "filters.filters"},
	} {
		var f vector.Filter
		if err := json.Unmarshal([]byte(tc.json), &f); err != nil {
			t.Fatal(err)
		}
		err := f.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.json, err)
			}
			continue
		}
		if !errors.Is(err, vector.ErrInvalid) || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("%s: %v, want ErrInvalid naming %s", tc.json, err, tc.field)
		}
	}
	deep := vector.Filter{Type: vector.Eq, Key: "a", Value: 1}
	for range vector.MaxFilterDepth + 1 {
		deep = vector.Filter{Type: vector.And, Filters: []vector.Filter{deep}}
	}
	if err := deep.Validate(); !errors.Is(err, vector.ErrInvalid) {
		t.Errorf("filters nested %d deep: %v, want ErrInvalid", vector.MaxFilterDepth+1, err)
	}
}

func TestFilterMatch(t *testing.T) {
	attrs := map[string]any{"lang": "en", "year": 2021.0, "draft": false}
	for _, tc := range []struct {
		f    vector.Filter
		want bool
	}{
		{vector.Filter{Type: vector.Eq, Key: "year", Value: json.Number("2021")}, true},
		{vector.Filter{Type: vector.Eq, Key: "year", Value: int64(2021)}, true},
		{vector.Filter{Type: vector.Eq, Key: "draft", Value: 0}, false},
		{vector.Filter{Type: vector.Ne, Key: "missing", Value: "x"}, true},
		{vector.Filter{Type: vector.Gt, Key: "missing", Value: 1}, false},
		{vector.Filter{Type: vector.Nin, Key: "missing", Value: []any{"x"}}, true},
		{vector.Filter{Type: vector.In, Key: "missing", Value: []any{"x"}}, false},
		{vector.Filter{Type: vector.Lte, Key: "year", Value: 2021}, true},
		{vector.Filter{Type: vector.Lt, Key: "year", Value: 2021}, false},
	} {
		if got := tc.f.Match(attrs); got != tc.want {
			t.Errorf("%+v matched %v, want %v", tc.f, got, tc.want)
		}
	}
	var none *vector.Filter
	if !none.Match(nil) {
		t.Error("a nil filter must match everything")
	}
}

func TestIDs(t *testing.T) {
	a, b := vector.NewID(), vector.NewID()
	if !vector.IsID(a) || a == b || a[14] != '4' {
		t.Fatalf("NewID: %q, %q", a, b)
	}
	c := vector.ChunkID("vs_1", "file-1", 3)
	if !vector.IsID(c) || c != vector.ChunkID("vs_1", "file-1", 3) {
		t.Fatalf("ChunkID is not a stable UUID: %q", c)
	}
	for _, other := range []string{vector.ChunkID("vs_1", "file-1", 4), vector.ChunkID("vs_2", "file-1", 3), vector.ChunkID("vs_1", "file-13", 0)} {
		if other == c {
			t.Fatalf("ChunkID collides: %q", c)
		}
	}
	for _, bad := range []string{"", "1", strings.ToUpper(c), c[:35] + "g", strings.ReplaceAll(c, "-", "x")} {
		if vector.IsID(bad) {
			t.Errorf("IsID(%q) = true", bad)
		}
	}
}
