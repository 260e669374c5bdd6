package engine

import (
	"testing"

	"github.com/hxp-ai/hxp/kvtype"
)

// TestKVTypesAllMapped: every type the table (and so the config) accepts has a ggml type.
func TestKVTypesAllMapped(t *testing.T) {
	for _, kv := range kvtype.All() {
		if _, ok := ggmlKVTypes[kv]; !ok {
			t.Errorf("kv_type %s has no ggml type", kv)
		}
	}
	if len(ggmlKVTypes) != len(kvtype.All()) {
		t.Errorf("%d ggml KV types for %d table entries", len(ggmlKVTypes), len(kvtype.All()))
	}
}
