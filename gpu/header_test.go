package gpu

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/ollama/ollama/fs/ggml"
)

// writeTestGGUF writes a small llama-shaped GGUF with mixed tensor types using ollama's
// independent writer, so the reader is checked against a second implementation.
func writeTestGGUF(t *testing.T, kv ggml.KV, tensors []tensorSpec) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []*ggml.Tensor
	for _, s := range tensors {
		n, err := s.typ.Bytes(s.shape)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, &ggml.Tensor{Name: s.name, Kind: uint32(s.typ), Shape: s.shape, WriterTo: bytes.NewReader(make([]byte, n))})
	}
	if err := ggml.WriteGGUF(f, kv, ts); err != nil {
		t.Fatalf("WriteGGUF: %v", err)
	}
	return path
}

func smallTensors(nLayer int) []tensorSpec {
	ts := []tensorSpec{
		{"token_embd.weight", []uint64{256, 100}, typeQ8_0},
		{"output_norm.weight", []uint64{256}, typeF32},
		{"output.weight", []uint64{256, 100}, typeF16},
		{"rope_freqs.weight", []uint64{32}, typeF32},
	}
	for i := range nLayer {
		p := "blk." + strconv.Itoa(i) + "."
		ts = append(ts,
			tensorSpec{p + "attn_norm.weight", []uint64{256}, typeF32},
			tensorSpec{p + "attn_q.weight", []uint64{256, 256}, typeQ4_K},
			tensorSpec{p + "attn_k.weight", []uint64{256, 128}, typeQ6_K},
			tensorSpec{p + "ffn_down.weight", []uint64{512, 256}, typeQ8_0},
		)
	}
	return ts
}

// TestReadHeaderInfoWrittenByOllama derives the planning facts from a file written by
// ollama's independent GGUF writer: per-layer KV heads, sizes by tensor type, defaults.
func TestReadHeaderInfoWrittenByOllama(t *testing.T) {
	tokens := make([]string, 100)
	for i := range tokens {
		tokens[i] = "tok" + strconv.Itoa(i)
	}
	kv := ggml.KV{
		"general.architecture":          "llama",
		"general.name":                  "tiny",
		"llama.block_count":             uint32(3),
		"llama.embedding_length":        uint32(256),
		"llama.attention.head_count":    uint32(8),
		"llama.attention.head_count_kv": []int32{8, 4, 2},
		"llama.attention.key_length":    uint32(48),
		"llama.context_length":          uint32(2048),
		"llama.expert_count":            uint32(4),
		"llama.expert_used_count":       uint32(2),
		"llama.rope.freq_base":          float32(10000),
		"tokenizer.ggml.tokens":         tokens,
		"tokenizer.ggml.scores":         make([]float32, 100),
		"tokenizer.ggml.add_bos_token":  true,
	}
	path := writeTestGGUF(t, kv, smallTensors(3))

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := ReadHeaderInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	// Sizes by hand: Q4_K 144 B / 256 values, Q6_K 210 B / 256, Q8_0 34 B / 32, F16 2 B, F32 4 B.
	layer := uint64(256*4 + 256*256/256*144 + 256*128/256*210 + 512*256/32*34)
	want := HeaderInfo{
		Architecture: "llama", Name: "tiny", BlockCount: 3, EmbeddingLength: 256, HeadCount: 8,
		HeadCountKV: []int{8, 4, 2}, KeyLength: 48, ValueLength: 32, ContextLength: 2048, VocabSize: 100,
		ExpertCount: 4, ExpertUsedCount: 2, LayerBytes: []uint64{layer, layer, layer},
		InputBytes: 256 * 100 / 32 * 34, OutputBytes: 256*4 + 256*100*2, OtherBytes: 32 * 4, FileBytes: st.Size(),
	}
	if !reflect.DeepEqual(mi, want) {
		t.Fatalf("model info\n got %+v\nwant %+v", mi, want)
	}
	if mi.WeightBytes() != 3*layer+want.NonLayerBytes() {
		t.Errorf("weight bytes %d", mi.WeightBytes())
	}
	// KV per token: sum over layers of n_head_kv * (48 + 32).
	if got := mi.KVElementsPerToken(); got != (8+4+2)*80 {
		t.Errorf("KV elements per token = %d, want %d", got, (8+4+2)*80)
	}
}

func TestReadHeaderInfoDefaultsHeadDimsAndVocab(t *testing.T) {
	kv := ggml.KV{
		"general.architecture":          "llama",
		"llama.block_count":             uint32(2),
		"llama.embedding_length":        uint32(256),
		"llama.attention.head_count":    uint32(8),
		"llama.attention.head_count_kv": uint32(2),
	}
	mi, err := ReadHeaderInfo(writeTestGGUF(t, kv, smallTensors(2)))
	if err != nil {
		t.Fatal(err)
	}
	// No key/value_length: n_embd / n_head. No vocab_size: the token_embd shape.
	if mi.KeyLength != 32 || mi.ValueLength != 32 || mi.VocabSize != 100 || len(mi.HeadCountKV) != 2 || mi.HeadCountKV[1] != 2 {
		t.Fatalf("defaults: %+v", mi)
	}
}

func TestReadHeaderInfoRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	lfs := filepath.Join(dir, "lfs.gguf")
	os.WriteFile(lfs, []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"), 0o644)
	if _, err := ReadHeaderInfo(lfs); err == nil || !strings.Contains(err.Error(), "not a GGUF file") {
		t.Errorf("LFS pointer: %v", err)
	}

	good := writeTestGGUF(t, ggml.KV{"general.architecture": "llama", "llama.block_count": uint32(2),
		"llama.embedding_length": uint32(256), "llama.attention.head_count": uint32(8)}, smallTensors(2))
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.gguf")
	os.WriteFile(cut, b[:len(b)-100], 0o644)
	if _, err := ReadHeaderInfo(cut); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated data: %v", err)
	}
	head := filepath.Join(dir, "head.gguf")
	os.WriteFile(head, b[:40], 0o644)
	if _, err := ReadHeaderInfo(head); err == nil {
		t.Error("truncated header accepted")
	}

	noArch := writeTestGGUF(t, ggml.KV{"general.architecture": "llama", "llama.embedding_length": uint32(256)}, smallTensors(0))
	if _, err := ReadHeaderInfo(noArch); err == nil || !strings.Contains(err.Error(), "block_count") {
		t.Errorf("missing block_count: %v", err)
	}
	outside := writeTestGGUF(t, ggml.KV{"general.architecture": "llama", "llama.block_count": uint32(1),
		"llama.embedding_length": uint32(256), "llama.attention.head_count": uint32(8)}, smallTensors(2))
	if _, err := ReadHeaderInfo(outside); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("blk.1 in a 1-block model: %v", err)
	}
}

// TestReadSharedModel reads a real GGUF from ../shared/models when it is present.
func TestReadSharedModel(t *testing.T) {
	path := filepath.Join("..", "..", "shared", "models", "stories260K.gguf")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("optional real model not present: %v", err)
	}
	mi, err := ReadHeaderInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	// Facts from the file's provenance note (llama2.c stories260K).
	if mi.Architecture != "llama" || mi.BlockCount != 5 || mi.EmbeddingLength != 64 || mi.HeadCount != 8 ||
		mi.HeadCountKV[0] != 4 || mi.ContextLength != 2048 || mi.VocabSize != 512 {
		t.Fatalf("stories260K: %+v", mi)
	}
	if w := int64(mi.WeightBytes()); w <= 0 || w >= mi.FileBytes || mi.FileBytes-w > 64<<10 {
		t.Errorf("weights %d bytes in a %d-byte file", w, mi.FileBytes)
	}
}
