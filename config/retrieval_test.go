package config

import (
	"strings"
	"testing"
)

// The retrieval section's defaults, and every bad value named by its field.
func TestRetrievalDefaultsAndValidation(t *testing.T) {
	var r Retrieval
	r.applyDefaults()
	if !r.On() || r.DataDir != DefaultRetrievalDataDir || r.Backend != "embedded" || r.MaxFileBytes != DefaultMaxFileBytes || r.Workers != 2 {
		t.Errorf("defaults = %+v", r)
	}
	if r.BodyBytes() <= int(r.MaxFileBytes) {
		t.Errorf("BodyBytes %d leaves no room for the form around a %d-byte file", r.BodyBytes(), r.MaxFileBytes)
	}
	off := false
	cases := []struct {
		name  string
		edit  func(*Retrieval)
		field string
	}{
		{"backend", func(r *Retrieval) { r.Backend = "milvus" }, "retrieval.backend"},
		{"qdrant without url", func(r *Retrieval) { r.Backend = "qdrant" }, "retrieval.qdrant.url"},
		{"qdrant url without host", func(r *Retrieval) { r.Backend, r.Qdrant.URL = "qdrant", "https://" }, "retrieval.qdrant.url"},
		{"file size", func(r *Retrieval) { r.MaxFileBytes = -1 }, "retrieval.max_file_bytes"},
		{"points", func(r *Retrieval) { r.MaxPoints = -5 }, "retrieval.max_points"},
		{"workers", func(r *Retrieval) { r.Workers = 1000 }, "retrieval.workers"},
		{"data dir", func(r *Retrieval) { r.DataDir = " " }, "retrieval.data_dir"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Retrieval{}
			r.applyDefaults()
			c.edit(&r)
			var got []string
			validateRetrieval(func(path, format string, args ...any) { got = append(got, path) }, r)
			if len(got) != 1 || got[0] != c.field {
				t.Errorf("problems at %v, want exactly %s", got, c.field)
			}
			r.Enabled = &off
			got = nil
			validateRetrieval(func(path, format string, args ...any) { got = append(got, path) }, r)
			if len(got) != 0 {
				t.Errorf("a disabled section is still checked: %v", got)
			}
		})
	}
	good := Retrieval{Backend: "qdrant", Qdrant: Qdrant{URL: "localhost:6334"}}
	good.applyDefaults()
	validateRetrieval(func(path, format string, args ...any) {
		t.Errorf("a good qdrant section: %s: "+format, append([]any{path}, args...)...)
	}, good)
}

// HXP_RETRIEVAL_* variables reach the section like every other field.
func TestRetrievalEnv(t *testing.T) {
	var c Config
	if ps := ApplyEnv(&c, []string{"HXP_RETRIEVAL_ENABLED=false", "HXP_RETRIEVAL_DATA_DIR=/var/lib/hxp", "HXP_RETRIEVAL_QDRANT_URL=q:6334"}); ps != nil {
		t.Fatal(ps)
	}
	if c.Retrieval.On() || c.Retrieval.DataDir != "/var/lib/hxp" || !strings.HasPrefix(c.Retrieval.Qdrant.URL, "q:") {
		t.Errorf("after env: %+v", c.Retrieval)
	}
}
