package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ollama/ollama/fs/ggml"
)

// everyType is one pair of every scalar and array type, in the order encode writes them.
var everyType = []any{
	"u8", uint8(200), "i8", int8(-100), "u16", uint16(60000), "i16", int16(-30000),
	"u32", uint32(4000000000), "i32", int32(-2000000000), "f32", float32(1e-5), "bool", true,
	"str", "héllo", "u64", uint64(math.MaxUint64), "i64", int64(math.MinInt64), "f64", math.Pi,
	"a.u8", []uint8{1, 2}, "a.i8", []int8{-1}, "a.u16", []uint16{7}, "a.i16", []int16{-7},
	"a.u32", []uint32{8, 4, 2}, "a.i32", []int32{1, -2, 3}, "a.f32", []float32{0.5, -1},
	"a.bool", []bool{true, false}, "a.str", []string{"<s>", "", "Ġthe"}, "a.u64", []uint64{1 << 40},
	"a.i64", []int64{-1 << 40}, "a.f64", []float64{2.5}, "empty", []string{},
	"general.alignment", uint32(64),
}

var smallTensors = []tensor{
	{"token_embd.weight", []uint64{64, 10}, 8},    // Q8_0
	{"blk.0.attn_q.weight", []uint64{256, 2}, 12}, // Q4_K
	{"output_norm.weight", []uint64{64}, 0},       // F32
}

// TestReadKeepsTypesAndOrder: every value comes back with its GGUF type, as the Go type
// of that type, in file order; the tensor table and data offset follow the alignment.
func TestReadKeepsTypesAndOrder(t *testing.T) {
	b := encode(smallTensors, everyType...)
	g, err := Read(bytes.NewReader(b), int64(len(b)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Version != 3 || len(g.KV) != len(everyType)/2 || g.Size != int64(len(b)) {
		t.Fatalf("version %d, %d pairs, size %d", g.Version, len(g.KV), g.Size)
	}
	for i, kv := range g.KV {
		key, want := everyType[2*i].(string), everyType[2*i+1]
		if kv.Key != key || !reflect.DeepEqual(kv.Value.Data, want) {
			t.Errorf("pair %d: %s = %#v, want %s = %#v", i, kv.Key, kv.Value.Data, key, want)
		}
		if v, ok := g.Get(key); !ok || !reflect.DeepEqual(v, kv.Value) {
			t.Errorf("Get(%q) = %v, %v", key, v, ok)
		}
		if rv := reflect.ValueOf(want); rv.Kind() == reflect.Slice {
			if kv.Value.Type != Array || kv.Value.Len != uint64(rv.Len()) || kv.Value.Elem.String() != rv.Type().Elem().String() {
				t.Errorf("%s: type %s of %s x%d", key, kv.Value.Type, kv.Value.Elem, kv.Value.Len)
			}
		} else if kv.Value.Type.String() != rv.Type().String() {
			t.Errorf("%s: type %s, Go type %s", key, kv.Value.Type, rv.Type())
		}
	}
	if _, ok := g.Get("absent"); ok {
		t.Error("Get found an absent key")
	}
	if s, ok := g.Str("str"); !ok || s != "héllo" {
		t.Errorf(`Str("str") = %q, %v`, s, ok)
	}
	if g.Alignment != 64 || g.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data offset %d", g.Alignment, g.DataOffset)
	}
	if len(g.Tensors) != 3 || g.Tensors[1].Name != "blk.0.attn_q.weight" || g.Tensors[1].Bytes != 2*144 || g.Tensors[1].Type.String() != "Q4_K" || g.Tensors[1].Elements() != 512 {
		t.Errorf("tensors %+v", g.Tensors)
	}
}

// TestReadCountMode: numeric arrays up to the bound are kept; string arrays and longer
// arrays are counted and skipped, and what follows them is read correctly.
func TestReadCountMode(t *testing.T) {
	b := encode(smallTensors, everyType...)
	g, err := Read(bytes.NewReader(b), int64(len(b)), Options{CountArrays: true, MaxArray: 2})
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]bool{"a.u32": true, "a.i32": true, "a.str": true, "empty": true}
	for i, kv := range g.KV {
		want := everyType[2*i+1]
		switch {
		case counted[kv.Key]:
			if kv.Value.Data != nil || kv.Value.Len != uint64(reflect.ValueOf(want).Len()) || kv.Value.Type != Array {
				t.Errorf("%s: %+v, want counted", kv.Key, kv.Value)
			}
		case !reflect.DeepEqual(kv.Value.Data, want):
			t.Errorf("%s = %#v, want %#v", kv.Key, kv.Value.Data, want)
		}
	}
	if len(g.Tensors) != 3 {
		t.Errorf("%d tensors after skipped arrays", len(g.Tensors))
	}
	if _, err := Read(bytes.NewReader(b), int64(len(b)), Options{MaxArray: 2}); err == nil || !strings.Contains(err.Error(), "at most 2") {
		t.Errorf("keep mode, array over the bound: %v", err)
	}
}

// TestReadArrayFillingTheFile: an array that ends where the file ends is read in both
// modes (the bound on its length is its elements' size, not more).
func TestReadArrayFillingTheFile(t *testing.T) {
	for _, v := range []any{make([]uint8, 1000), make([]int32, 1000), []string{"", "", ""}} {
		b := encode(nil, "k", v)
		for _, opt := range []Options{{}, {CountArrays: true}} {
			g, err := Read(bytes.NewReader(b), int64(len(b)), opt)
			if err != nil {
				t.Fatalf("%T with %+v: %v", v, opt, err)
			}
			if got, _ := g.Get("k"); got.Len != uint64(reflect.ValueOf(v).Len()) {
				t.Errorf("%T: Len %d", v, got.Len)
			}
		}
	}
}

// TestValueConversions: the accessors widen integers and refuse what does not fit.
func TestValueConversions(t *testing.T) {
	for _, c := range []struct {
		v     any
		u     uint64
		uok   bool
		f     float64
		fok   bool
		uints []uint64
	}{
		{uint8(3), 3, true, 3, true, nil},
		{int32(-1), 0, false, -1, true, nil},
		{int64(1 << 40), 1 << 40, true, 1 << 40, true, nil},
		{float32(0.5), 0, false, 0.5, true, nil},
		{"7", 0, false, 0, false, nil},
		{[]int32{8, 4}, 0, false, 0, false, []uint64{8, 4}},
		{[]uint16{1}, 0, false, 0, false, []uint64{1}},
		{[]int8{1, -1}, 0, false, 0, false, nil},
		{[]float32{1}, 0, false, 0, false, nil},
	} {
		v := Value{Data: c.v}
		u, uok := v.Uint()
		f, fok := v.Float()
		uints, _ := v.Uints()
		if u != c.u || uok != c.uok || f != c.f || fok != c.fok || !reflect.DeepEqual(uints, c.uints) {
			t.Errorf("%#v: Uint %d %v, Float %v %v, Uints %v", c.v, u, uok, f, fok, uints)
		}
	}
}

// TestReadWrittenByOllama checks the reader against a second implementation: ollama's
// GGUF writer, its types and its tensor layout.
func TestReadWrittenByOllama(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []*ggml.Tensor
	for _, s := range smallTensors {
		n, _ := s.typ.Bytes(s.shape)
		ts = append(ts, &ggml.Tensor{Name: s.name, Kind: uint32(s.typ), Shape: s.shape, WriterTo: bytes.NewReader(make([]byte, n))})
	}
	kv := ggml.KV{"general.architecture": "llama", "llama.block_count": uint32(1), "llama.rope.freq_base": float32(10000),
		"llama.attention.head_count_kv": []int32{8, 4}, "tokenizer.ggml.tokens": []string{"a", "b"}, "tokenizer.ggml.add_bos_token": true}
	if err := ggml.WriteGGUF(f, kv, ts); err != nil {
		t.Fatal(err)
	}
	f.Close()
	g, err := ReadFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]Value{
		"general.architecture":          {Type: String, Data: "llama"},
		"llama.block_count":             {Type: Uint32, Data: uint32(1)},
		"llama.rope.freq_base":          {Type: Float32, Data: float32(10000)},
		"llama.attention.head_count_kv": {Type: Array, Elem: Int32, Len: 2, Data: []int32{8, 4}},
		"tokenizer.ggml.tokens":         {Type: Array, Elem: String, Len: 2, Data: []string{"a", "b"}},
		"tokenizer.ggml.add_bos_token":  {Type: Bool, Data: true},
	} {
		if got, _ := g.Get(key); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %+v, want %+v", key, got, want)
		}
	}
	// The last tensor's data ends at the end of the file: sizes and alignment agree.
	var end uint64
	for _, ti := range g.Tensors {
		end = max(end, uint64(g.DataOffset)+ti.Offset+ti.Bytes)
	}
	if len(g.Tensors) != len(smallTensors) || end != uint64(g.Size) {
		t.Errorf("%d tensors ending at %d, file has %d bytes", len(g.Tensors), end, g.Size)
	}
}

// TestReadRejectsBadFiles: each broken header fails with an error that says what is
// wrong; every cut of a valid file fails.
func TestReadRejectsBadFiles(t *testing.T) {
	good := encode(smallTensors, everyType...)
	patch := func(at int, v uint64) []byte { // good with the u64 at byte at replaced
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint64(b[at:], v)
		return b
	}
	// A tensor info after the metadata: the offset field of the last tensor.
	lastOffset := bytes.Index(good, []byte("output_norm.weight")) + len("output_norm.weight") + 4 + 8 + 4
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"LFS pointer":       {[]byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n"), "not a GGUF file"},
		"empty":             {nil, "not a GGUF file"},
		"version 1":         {append([]byte("GGUF\x01\x00\x00\x00"), make([]byte, 16)...), "unsupported GGUF version 1"},
		"many tensors":      {patch(8, 1<<21), "at most"},
		"tensors past end":  {patch(8, 1<<19), "do not fit"},
		"many pairs":        {patch(16, 1<<40), "at most"},
		"long key":          {patch(24, 1<<20), "do not fit"},
		"huge key":          {patch(24, 1<<62), "at most"},
		"tensor past end":   {patch(lastOffset, uint64(len(good))), "truncated?"},
		"offset overflow":   {patch(lastOffset, math.MaxUint64-8), "truncated?"},
		"cut data":          {good[:len(good)-64], "truncated?"},
		"duplicate key":     {encode(nil, "k", uint8(1), "k", uint8(2)), `"k" appears twice`},
		"bad alignment":     {encode(nil, "general.alignment", uint32(48)), "power of two"},
		"alignment type":    {encode(nil, "general.alignment", uint64(32)), "power of two"},
		"unknown type":      {withType(encode(nil, "k", uint32(1)), 13), "unknown value type 13"},
		"nested array":      {withElem(encode(nil, "k", []uint32{1}), uint32(Array)), "arrays of array"},
		"long array":        {withLen(encode(nil, "k", []uint8{1}), 1<<50), "do not fit"},
		"unknown ggml type": {encode([]tensor{{"x", []uint64{1}, 5}}), "unknown ggml type 5"},
		"many dims":         {encode([]tensor{{"x", []uint64{1, 1, 1, 1, 1, 1, 1, 1, 1}, 0}}), "9 dimensions"},
	}
	for name, c := range cases {
		if _, err := Read(bytes.NewReader(c.b), int64(len(c.b)), Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	for n := range len(good) - 1 {
		for _, opt := range []Options{{}, {CountArrays: true}} {
			if _, err := Read(bytes.NewReader(good[:n]), int64(n), opt); err == nil {
				t.Fatalf("the first %d of %d bytes read without error (%+v)", n, len(good), opt)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "bad.gguf")
	os.WriteFile(path, good[:40], 0o644)
	if _, err := ReadFile(path, Options{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadFile error %v, want one naming the file", err)
	}
}

// The single pair of encode(nil, key, v) starts at byte 24: key length, key, type.
func pairType(b []byte) int { return 24 + 8 + int(binary.LittleEndian.Uint64(b[24:])) }

func withType(b []byte, t uint32) []byte {
	binary.LittleEndian.PutUint32(b[pairType(b):], t)
	return b
}

func withElem(b []byte, t uint32) []byte {
	binary.LittleEndian.PutUint32(b[pairType(b)+4:], t)
	return b
}

func withLen(b []byte, n uint64) []byte {
	binary.LittleEndian.PutUint64(b[pairType(b)+8:], n)
	return b
}

func TestTensorTypeBytes(t *testing.T) {
	for _, c := range []struct {
		typ   TensorType
		shape []uint64
		bytes uint64
		err   string
	}{
		{0, []uint64{3, 2}, 24, ""},
		{14, []uint64{512, 2}, 2 * 2 * 210, ""},
		{8, []uint64{33}, 0, "not a multiple of the Q8_0 block (32)"},
		{0, []uint64{1 << 40, 1 << 40}, 0, "overflows"},
		{15, []uint64{256, 1 << 56}, 0, "overflows"},
		{4, []uint64{32}, 0, "unknown ggml type 4"},
	} {
		n, err := c.typ.Bytes(c.shape)
		if n != c.bytes || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s %v: %d, %v", c.typ, c.shape, n, err)
		}
	}
	if TensorType(4).String() != "type(4)" || TensorType(30).String() != "BF16" || Type(13).String() != "type(13)" {
		t.Error("names")
	}
}

// TestReadRealFiles reads llama.cpp's vocabulary files and the real models in
// ../shared when present: both modes agree on every key, type and length, keep mode
// holds the token table, and count mode counts it.
func TestReadRealFiles(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "shared", "fixtures", "vocab", "*.gguf"))
	models, _ := filepath.Glob(filepath.Join("..", "..", "shared", "models", "*.gguf"))
	if len(paths)+len(models) == 0 {
		t.Skip("optional real GGUF files not present in ../shared")
	}
	for _, path := range append(paths, models...) {
		kept, err := ReadFile(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		counted, err := ReadFile(path, Options{CountArrays: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(kept.KV) != len(counted.KV) || len(kept.Tensors) != len(counted.Tensors) || kept.DataOffset != counted.DataOffset {
			t.Fatalf("%s: modes disagree: %d/%d pairs, %d/%d tensors", path, len(kept.KV), len(counted.KV), len(kept.Tensors), len(counted.Tensors))
		}
		for i, kv := range kept.KV {
			c := counted.KV[i]
			if c.Key != kv.Key || c.Value.Type != kv.Value.Type || c.Value.Elem != kv.Value.Elem || c.Value.Len != kv.Value.Len {
				t.Errorf("%s: pair %d: %s %s/%s x%d in keep mode, %s %s/%s x%d counted", path, i,
					kv.Key, kv.Value.Type, kv.Value.Elem, kv.Value.Len, c.Key, c.Value.Type, c.Value.Elem, c.Value.Len)
			}
		}
		tokens, _ := kept.Get("tokenizer.ggml.tokens")
		if list, ok := tokens.Data.([]string); !ok || len(list) == 0 || uint64(len(list)) != tokens.Len {
			t.Errorf("%s: keep mode has %T of %d tokens", path, tokens.Data, tokens.Len)
		}
		if c, _ := counted.Get("tokenizer.ggml.tokens"); c.Data != nil || c.Len != tokens.Len {
			t.Errorf("%s: count mode kept the token table (%T, %d)", path, c.Data, c.Len)
		}
	}
}
