package gguf

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read in both modes: it must return an error or a
// header that keeps its promises (unique keys Get finds, kept arrays of their stated
// length, tensors inside the file), never panic or allocate beyond the input's bounds.
func FuzzRead(f *testing.F) {
	f.Add(encode(smallTensors, everyType...), false)
	f.Add(encode(smallTensors, everyType...), true)
	f.Add(encode(nil, "general.alignment", uint32(8), "a", []string{"x", "yz"}), true)
	f.Add([]byte("GGUF\x03\x00\x00\x00"), false)
	f.Fuzz(func(t *testing.T, b []byte, count bool) {
		g, err := Read(bytes.NewReader(b), int64(len(b)), Options{CountArrays: count, MaxArray: 64})
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, kv := range g.KV {
			if seen[kv.Key] {
				t.Fatalf("key %q twice", kv.Key)
			}
			seen[kv.Key] = true
			if v, ok := g.Get(kv.Key); !ok || v.Type != kv.Value.Type {
				t.Fatalf("Get(%q) = %+v, %v", kv.Key, v, ok)
			}
			if kv.Value.Type == Array && kv.Value.Data != nil {
				if n := reflect.ValueOf(kv.Value.Data).Len(); uint64(n) != kv.Value.Len || n > 64 {
					t.Fatalf("%s: %d elements kept, Len %d", kv.Key, n, kv.Value.Len)
				}
			}
		}
		for _, ti := range g.Tensors {
			if uint64(g.DataOffset)+ti.Offset+ti.Bytes > uint64(len(b)) {
				t.Fatalf("tensor %q outside the %d bytes", ti.Name, len(b))
			}
		}
	})
}
