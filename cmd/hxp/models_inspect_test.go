package main

import (
	"testing"

	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/kvtype"
)

// TestInspectKVBytesPerType: inspect reports the KV bytes per token of every type the
// config accepts, sized by the one table (f32 twice f16, the quantized ones smaller).
func TestInspectKVBytesPerType(t *testing.T) {
	in, err := inspect(testmodel.Path(t, "tiny"), false)
	if err != nil {
		t.Fatal(err)
	}
	got := in.KVBytesPerToken
	if len(got) != len(kvtype.All()) {
		t.Fatalf("kv_bytes_per_token %v: want one entry per kv_type (%s)", got, kvtype.Names())
	}
	f16 := got[string(kvtype.F16)]
	if elems := uint64(in.Layers * in.HeadsKV * 2 * in.Embd / in.Heads); f16 != 2*elems {
		t.Errorf("f16 %d bytes per token, want 2 x %d values", f16, elems)
	}
	if got["f32"] != 2*f16 || got["bf16"] != f16 || !(got["q4_0"] < got["q8_0"] && got["q8_0"] < f16) {
		t.Errorf("kv_bytes_per_token %v: want f32 = 2 x f16 = 2 x bf16 > q8_0 > q4_0", got)
	}
}
