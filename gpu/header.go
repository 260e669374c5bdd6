package gpu

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hxp-ai/hxp/gguf"
)

// HeaderInfo holds what a GGUF file's header says about its model, the facts the memory
// planner needs before anything is loaded: per-layer KV heads and per-layer weight bytes,
// read without cgo or memory beyond the header. It is not engine.ModelInfo, which is what
// llama.cpp reports about a model after loading it (vocabulary, special tokens, chat
// templates, the resolved head widths): planning must happen before that load, and the
// loaded model does not report the per-layer facts.
type HeaderInfo struct {
	// Architecture is general.architecture ("llama", "phi3", ...).
	Architecture string `json:"architecture"`
	// Name is general.name, if set.
	Name string `json:"name,omitempty"`
	// BlockCount is n_layer, the number of repeating blocks.
	BlockCount int `json:"n_layer"`
	// EmbeddingLength is n_embd.
	EmbeddingLength int `json:"n_embd"`
	// HeadCount is n_head (the largest value when it varies per layer).
	HeadCount int `json:"n_head"`
	// HeadCountKV is n_head_kv per layer (len BlockCount); equal to HeadCount without GQA.
	HeadCountKV []int `json:"n_head_kv"`
	// KeyLength and ValueLength are the per-head K and V sizes (n_embd/n_head by default).
	KeyLength   int `json:"key_length"`
	ValueLength int `json:"value_length"`
	// ContextLength is n_ctx_train, the context the model was trained for.
	ContextLength int `json:"n_ctx_train"`
	// VocabSize is n_vocab.
	VocabSize int `json:"n_vocab"`
	// ExpertCount and ExpertUsedCount are the MoE expert counts (0 for dense models).
	ExpertCount     int `json:"expert_count,omitempty"`
	ExpertUsedCount int `json:"expert_used_count,omitempty"`
	// LayerBytes is the weight size of each block (tensors named blk.N.*).
	LayerBytes []uint64 `json:"layer_bytes"`
	// InputBytes is the token embedding (token_embd.*), which llama.cpp keeps in host memory.
	InputBytes uint64 `json:"input_bytes"`
	// OutputBytes is the output head and final norm (output.*, output_norm.*), offloaded
	// with the last "layer" of n_gpu_layers.
	OutputBytes uint64 `json:"output_bytes"`
	// OtherBytes is every other tensor outside the blocks (rope factors, ...).
	OtherBytes uint64 `json:"other_bytes"`
	// FileBytes is the size of the file.
	FileBytes int64 `json:"file_bytes"`
}

// NonLayerBytes is the weight size outside the repeating blocks.
func (m HeaderInfo) NonLayerBytes() uint64 { return m.InputBytes + m.OutputBytes + m.OtherBytes }

// WeightBytes is the size of all tensors.
func (m HeaderInfo) WeightBytes() uint64 {
	var s uint64
	for _, b := range m.LayerBytes {
		s += b
	}
	return s + m.NonLayerBytes()
}

// KVElementsPerToken is the number of K and V values one token adds to the cache over all
// layers: sum over layers of n_head_kv * (key_length + value_length).
func (m HeaderInfo) KVElementsPerToken() uint64 {
	var s uint64
	for _, h := range m.HeadCountKV {
		s += uint64(h) * uint64(m.KeyLength+m.ValueLength)
	}
	return s
}

// HeaderReadOptions is how the planner reads a GGUF header: per-layer arrays are kept,
// the token table and other long arrays only counted, so a header of any model reads in
// bounded memory.
var HeaderReadOptions = gguf.Options{CountArrays: true}

// ReadHeaderInfo reads the planning facts of the GGUF file at path.
func ReadHeaderInfo(path string) (HeaderInfo, error) {
	g, err := gguf.ReadFile(path, HeaderReadOptions)
	if err != nil {
		return HeaderInfo{}, fmt.Errorf("gpu: %w", err)
	}
	mi, err := HeaderInfoOf(g)
	if err != nil {
		return HeaderInfo{}, fmt.Errorf("gpu: %s: %w", path, err)
	}
	return mi, nil
}

// HeaderInfoOf derives the planning facts from a GGUF header. It fails when the
// architecture, block count, embedding length or head count is missing.
func HeaderInfoOf(f *gguf.File) (HeaderInfo, error) {
	g := header{f}
	arch, _ := f.Str("general.architecture")
	if arch == "" {
		return HeaderInfo{}, errors.New("general.architecture is missing")
	}
	m := HeaderInfo{Architecture: arch, FileBytes: f.Size}
	m.Name, _ = f.Str("general.name")
	var ok bool
	if m.BlockCount, ok = g.uintKey(arch + ".block_count"); !ok || m.BlockCount <= 0 {
		return HeaderInfo{}, fmt.Errorf("%s.block_count is missing", arch)
	}
	if m.EmbeddingLength, ok = g.uintKey(arch + ".embedding_length"); !ok || m.EmbeddingLength <= 0 {
		return HeaderInfo{}, fmt.Errorf("%s.embedding_length is missing", arch)
	}
	heads := g.perLayer(arch+".attention.head_count", m.BlockCount)
	if heads == nil {
		return HeaderInfo{}, fmt.Errorf("%s.attention.head_count is missing", arch)
	}
	m.HeadCount = maxInt(heads)
	if m.HeadCount <= 0 {
		return HeaderInfo{}, fmt.Errorf("%s.attention.head_count is 0", arch)
	}
	m.HeadCountKV = g.perLayer(arch+".attention.head_count_kv", m.BlockCount)
	if m.HeadCountKV == nil {
		m.HeadCountKV = heads
	}
	m.KeyLength, ok = g.uintKey(arch + ".attention.key_length")
	if !ok || m.KeyLength <= 0 {
		m.KeyLength = m.EmbeddingLength / m.HeadCount
	}
	m.ValueLength, ok = g.uintKey(arch + ".attention.value_length")
	if !ok || m.ValueLength <= 0 {
		m.ValueLength = m.EmbeddingLength / m.HeadCount
	}
	m.ContextLength, _ = g.uintKey(arch + ".context_length")
	m.ExpertCount, _ = g.uintKey(arch + ".expert_count")
	m.ExpertUsedCount, _ = g.uintKey(arch + ".expert_used_count")
	m.VocabSize, _ = g.uintKey(arch + ".vocab_size")

	m.LayerBytes = make([]uint64, m.BlockCount)
	for _, t := range f.Tensors {
		switch {
		case strings.HasPrefix(t.Name, "blk."):
			n, err := strconv.Atoi(strings.SplitN(t.Name, ".", 3)[1])
			if err != nil || n < 0 || n >= m.BlockCount {
				return HeaderInfo{}, fmt.Errorf("tensor %q is outside the %d blocks", t.Name, m.BlockCount)
			}
			m.LayerBytes[n] += t.Bytes
		case strings.HasPrefix(t.Name, "token_embd."):
			m.InputBytes += t.Bytes
			if t.Name == "token_embd.weight" && len(t.Shape) == 2 && m.VocabSize == 0 {
				m.VocabSize = int(t.Shape[1])
			}
		case strings.HasPrefix(t.Name, "output.") || strings.HasPrefix(t.Name, "output_norm."):
			m.OutputBytes += t.Bytes
		default:
			m.OtherBytes += t.Bytes
		}
	}
	if m.VocabSize == 0 {
		if a, ok := f.Get("tokenizer.ggml.tokens"); ok && a.Type == gguf.Array && a.Len <= math.MaxInt32 {
			m.VocabSize = int(a.Len)
		}
	}
	return m, nil
}

// header reads the integer hyper-parameters of a GGUF header.
type header struct{ *gguf.File }

// uintKey returns a scalar integer value (or the largest element of an integer array)
// that fits an int32.
func (g header) uintKey(key string) (int, bool) {
	v, _ := g.Get(key)
	if v.Type == gguf.Array {
		if vals := arrayInts(v); len(vals) > 0 {
			return maxInt(vals), true
		}
		return 0, false
	}
	u, ok := v.Uint()
	if !ok || u > math.MaxInt32 {
		return 0, false
	}
	return int(u), true
}

// perLayer returns a per-layer integer value of length n, expanding a scalar; nil if the
// key is absent or an array of the wrong length.
func (g header) perLayer(key string, n int) []int {
	if v, _ := g.Get(key); v.Type == gguf.Array {
		vals := arrayInts(v)
		if len(vals) != n {
			return nil
		}
		return vals
	}
	x, ok := g.uintKey(key)
	if !ok {
		return nil
	}
	out := make([]int, n)
	for i := range out {
		out[i] = x
	}
	return out
}

// arrayInts returns a kept integer array whose elements all fit an int32, else nil.
func arrayInts(v gguf.Value) []int {
	us, ok := v.Uints()
	if !ok {
		return nil
	}
	out := make([]int, len(us))
	for i, u := range us {
		if u > math.MaxInt32 {
			return nil
		}
		out[i] = int(u)
	}
	return out
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
