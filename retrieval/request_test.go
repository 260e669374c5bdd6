package retrieval

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/hxp-ai/hxp/infer"
)

// paramOf is the field an error names, or "" when it is not an InvalidArgument.
func paramOf(err error) string {
	var e *infer.Error
	if errors.As(err, &e) && e.Kind == infer.InvalidArgument {
		return e.Param
	}
	return ""
}

// Chunking strategies take OpenAI's defaults (auto = 800/400) and bounds (static
// 100..4096, overlap at most half), naming the field at fault.
func TestChunkingResolve(t *testing.T) {
	auto := Chunking{Type: "static", Static: &Static{MaxChunkSizeTokens: 800, ChunkOverlapTokens: 400}}
	for _, c := range []struct {
		in    *ChunkingRequest
		want  Chunking
		param string
	}{
		{nil, auto, ""},
		{&ChunkingRequest{Type: "auto"}, auto, ""},
		{&ChunkingRequest{Type: "static", Static: &Static{MaxChunkSizeTokens: 100, ChunkOverlapTokens: 50}},
			Chunking{Type: "static", Static: &Static{MaxChunkSizeTokens: 100, ChunkOverlapTokens: 50}}, ""},
		{&ChunkingRequest{Type: "static", Static: &Static{MaxChunkSizeTokens: 4096}}, Chunking{Type: "static", Static: &Static{MaxChunkSizeTokens: 4096}}, ""},
		{&ChunkingRequest{Type: "static", Static: &Static{MaxChunkSizeTokens: 99}}, Chunking{}, "cs.static.max_chunk_size_tokens"},
		{&ChunkingRequest{Type: "static", Static: &Static{MaxChunkSizeTokens: 4097}}, Chunking{}, "cs.static.max_chunk_size_tokens"},
		{&ChunkingRequest{Type: "static", Static: &Static{MaxChunkSizeTokens: 100, ChunkOverlapTokens: 51}}, Chunking{}, "cs.static.chunk_overlap_tokens"},
		{&ChunkingRequest{Type: "static", Static: &Static{MaxChunkSizeTokens: 100, ChunkOverlapTokens: -1}}, Chunking{}, "cs.static.chunk_overlap_tokens"},
		{&ChunkingRequest{Type: "static"}, Chunking{}, "cs.static"},
		{&ChunkingRequest{Type: "auto", Static: &Static{}}, Chunking{}, "cs.static"},
		{&ChunkingRequest{Type: "other"}, Chunking{}, "cs.type"},
	} {
		got, err := c.in.resolve("cs")
		if paramOf(err) != c.param || (err != nil) != (c.param != "") {
			t.Errorf("%+v: err %v, want param %q", c.in, err, c.param)
		}
		if err == nil && !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: %+v, want %+v", c.in, got, c.want)
		}
	}
}

// Search requests: defaults, bounds, and filter errors naming the nested field.
func TestSearchCheck(t *testing.T) {
	check := func(body string) (*Search, error) {
		var r SearchRequest
		if err := Decode([]byte(body), &r); err != nil {
			return nil, err
		}
		return r.Check()
	}
	s, err := check(`{"query":"tides","filters":{"type":"and","filters":[{"type":"eq","key":"lang","value":"en"},{"type":"in","key":"year","value":[2023,2024]}]},"ranking_options":{"score_threshold":0.5}}`)
	if err != nil || s.Query != "tides" || s.Limit != DefaultMaxResults || s.Threshold != 0.5 || s.Filter == nil || len(s.Filter.Filters) != 2 {
		t.Fatalf("good request: %+v, %v", s, err)
	}
	if !s.Filter.Match(map[string]any{"lang": "en", "year": 2024.0}) || s.Filter.Match(map[string]any{"lang": "en", "year": 2022.0}) {
		t.Errorf("the converted filter does not match as sent: %+v", s.Filter)
	}
	for body, param := range map[string]string{
		`{}`:                                 "query",
		`{"query":""}`:                       "query",
		`{"query":["a"]}`:                    "query",
		`{"query":"q","max_num_results":0}`:  "max_num_results",
		`{"query":"q","rewrite_query":true}`: "rewrite_query",
		`{"query":"q","ranking_options":{"ranker":"bm25"}}`:                                      "ranking_options.ranker",
		`{"query":"q","filters":{"type":"eq","value":1}}`:                                        "filters.key",
		`{"query":"q","filters":{"type":"and","filters":[{"type":"lt","key":"n","value":"x"}]}}`: "filters.filters[0].value",
		`{"query":"q","filters":{"type":"or"}}`:                                                  "filters.filters",
	} {
		if _, err := check(body); paramOf(err) != param {
			t.Errorf("%s: %v, want an error naming %s", body, err, param)
		}
	}
}

// Attributes and metadata keep OpenAI's bounds.
func TestAttributesAndMetadata(t *testing.T) {
	var attrs map[string]any
	_ = json.Unmarshal([]byte(`{"lang":"en","year":2024,"public":true}`), &attrs)
	if err := checkAttributes("attributes", attrs); err != nil {
		t.Errorf("good attributes: %v", err)
	}
	for raw, param := range map[string]string{`{"tags":["a"]}`: "attributes.tags", `{"o":{"a":1}}`: "attributes.o", `{"n":null}`: "attributes.n"} {
		var a map[string]any
		_ = json.Unmarshal([]byte(raw), &a)
		if err := checkAttributes("attributes", a); paramOf(err) != param {
			t.Errorf("%s: %v, want %s", raw, err, param)
		}
	}
	many := map[string]string{}
	for i := range 17 {
		many[string(rune('a'+i))] = "v"
	}
	if paramOf(checkMetadata(many)) != "metadata" {
		t.Error("17 metadata keys accepted")
	}
}

// Pages: newest first by default, after/before as exclusive cursors compared by id,
// has_more, first_id and last_id.
func TestPage(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e"}
	id := func(s *string) string { return *s }
	for _, c := range []struct {
		p       ListParams
		want    []string
		hasMore bool
	}{
		{ListParams{Limit: 2, Desc: true}, []string{"e", "d"}, true},
		{ListParams{Limit: 2, Desc: true, After: "d"}, []string{"c", "b"}, true},
		{ListParams{Limit: 2, Desc: true, After: "b"}, []string{"a"}, false},
		{ListParams{Limit: 10}, items, false},
		{ListParams{Limit: 2, After: "bb"}, []string{"c", "d"}, true}, // a deleted cursor
		{ListParams{Limit: 10, Before: "c"}, []string{"a", "b"}, false},
	} {
		l := page(items, id, c.p)
		if !reflect.DeepEqual(l.Data, c.want) || l.HasMore != c.hasMore || *l.FirstID != c.want[0] || *l.LastID != c.want[len(c.want)-1] {
			t.Errorf("%+v: %v more=%v first=%v last=%v, want %v more=%v", c.p, l.Data, l.HasMore, *l.FirstID, *l.LastID, c.want, c.hasMore)
		}
	}
	if l := page([]string{}, id, ListParams{Limit: 5}); l.FirstID != nil || l.Data == nil {
		t.Errorf("empty page: %+v", l)
	}
}

// Uploads are typed by extension, else by the declared type; others are refused
// naming the type; HTML is indexed as its text.
func TestContentTypesAndExtraction(t *testing.T) {
	for _, c := range []struct{ name, declared, want string }{
		{"a.md", "", TypeMarkdown}, {"a.TXT", "application/octet-stream", TypePlain}, {"a.json", "", TypeJSON},
		{"a.htm", "", TypeHTML}, {"noext", "text/markdown; charset=utf-8", TypeMarkdown},
	} {
		if got, err := contentType(c.name, c.declared); err != nil || got != c.want {
			t.Errorf("%s (%s) = %q, %v; want %s", c.name, c.declared, got, err, c.want)
		}
	}
	for _, name := range []string{"a.pdf", "a.docx", "noext"} {
		if _, err := contentType(name, ""); paramOf(err) != "file" {
			t.Errorf("%s accepted: %v", name, err)
		}
	}
	got := extract(TypeHTML, []byte(`<html><head><title>T</title><style>p{}</style><script>alert(1)</script></head><body><h1>Tides &amp; moon</h1><p>Spring <b>tides</b> rise.</p></body></html>`))
	if got != "T\nTides & moon\nSpring tides rise." {
		t.Errorf("extract = %q", got)
	}
	if got := extract(TypeMarkdown, []byte("# kept <b>as is</b>")); got != "# kept <b>as is</b>" {
		t.Errorf("markdown changed: %q", got)
	}
}
