package gpu

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// GGUF value types, as numbered by the GGUF specification.
const (
	ggufUint8   = 0
	ggufInt8    = 1
	ggufUint16  = 2
	ggufInt16   = 3
	ggufUint32  = 4
	ggufInt32   = 5
	ggufFloat32 = 6
	ggufBool    = 7
	ggufString  = 8
	ggufArray   = 9
	ggufUint64  = 10
	ggufInt64   = 11
	ggufFloat64 = 12
)

// Limits that keep a corrupt or hostile header from making the reader allocate without bound.
const (
	maxGGUFString     = 64 << 20 // a chat template or merges entry is far smaller
	maxGGUFKeptArray  = 1 << 16  // numeric arrays longer than this are counted, not kept
	maxGGUFTensors    = 1 << 20
	maxGGUFKVs        = 1 << 20
	maxGGUFTensorDims = 8
	defaultGGUFAlign  = 32
	ggufMagic         = "GGUF"
	minGGUFVersion    = 2
	maxGGUFVersion    = 3
)

// GGUFArray is a GGUF array value. Values holds the elements of numeric and bool arrays of
// at most 65536 elements (as uint64, int64, float64 or bool); string arrays (the token
// list) and longer arrays keep only their type and length.
type GGUFArray struct {
	// ElemType is the GGUF value type of the elements.
	ElemType uint32
	// Len is the number of elements.
	Len uint64
	// Values holds the elements when they were kept, else nil.
	Values []any
}

// TensorInfo is one entry of a GGUF tensor table.
type TensorInfo struct {
	// Name is the tensor name ("blk.3.attn_q.weight").
	Name string
	// Shape lists the dimensions, innermost first (ggml order).
	Shape []uint64
	// Type is the ggml type number (0 F32, 1 F16, 2 Q4_0, 8 Q8_0, 12 Q4_K, ...).
	Type uint32
	// Offset is the tensor's offset from the start of the data section.
	Offset uint64
	// Bytes is the tensor's size in the file.
	Bytes uint64
}

// GGUFFile is the header of a GGUF file: its metadata and tensor table, without tensor data.
type GGUFFile struct {
	// Version is the GGUF version (2 or 3).
	Version uint32
	// KV holds the metadata. Scalars are uint64, int64, float64, bool or string; arrays
	// are GGUFArray.
	KV map[string]any
	// Tensors is the tensor table in file order.
	Tensors []TensorInfo
	// DataOffset is where the tensor data begins in the file.
	DataOffset int64
	// FileBytes is the file size.
	FileBytes int64
}

// ReadGGUF reads the header of the GGUF file at path. It checks that every tensor lies
// within the file, so a truncated download or a Git LFS pointer is reported here rather
// than when llama.cpp maps the file.
func ReadGGUF(path string) (*GGUFFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gpu: open GGUF: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("gpu: stat %s: %w", path, err)
	}
	g, err := DecodeGGUF(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("gpu: %s: %w", path, err)
	}
	return g, nil
}

// DecodeGGUF reads a GGUF header from r, a stream of size bytes.
func DecodeGGUF(r io.Reader, size int64) (*GGUFFile, error) {
	d := &ggufDecoder{r: bufio.NewReaderSize(r, 1<<16)}
	magic := make([]byte, 4)
	if err := d.read(magic); err != nil {
		return nil, fmt.Errorf("read magic: %w", err)
	}
	if string(magic) != ggufMagic {
		return nil, fmt.Errorf("not a GGUF file (magic %q)", magic)
	}
	g := &GGUFFile{KV: map[string]any{}, FileBytes: size}
	g.Version = d.u32()
	if d.err == nil && (g.Version < minGGUFVersion || g.Version > maxGGUFVersion) {
		return nil, fmt.Errorf("unsupported GGUF version %d (want %d..%d)", g.Version, minGGUFVersion, maxGGUFVersion)
	}
	nTensors, nKV := d.u64(), d.u64()
	if d.err != nil {
		return nil, fmt.Errorf("read header: %w", d.err)
	}
	if nTensors > maxGGUFTensors || nKV > maxGGUFKVs {
		return nil, fmt.Errorf("implausible header: %d tensors, %d metadata entries", nTensors, nKV)
	}
	for i := range nKV {
		key := d.str()
		typ := d.u32()
		if d.err != nil {
			return nil, fmt.Errorf("metadata entry %d: %w", i, d.err)
		}
		v, err := d.value(typ)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, err)
		}
		g.KV[key] = v
	}
	g.Tensors = make([]TensorInfo, 0, nTensors)
	for i := range nTensors {
		t := TensorInfo{Name: d.str()}
		nDims := d.u32()
		if d.err == nil && nDims > maxGGUFTensorDims {
			return nil, fmt.Errorf("tensor %q: %d dimensions", t.Name, nDims)
		}
		t.Shape = make([]uint64, nDims)
		for j := range t.Shape {
			t.Shape[j] = d.u64()
		}
		t.Type = d.u32()
		t.Offset = d.u64()
		if d.err != nil {
			return nil, fmt.Errorf("tensor %d: %w", i, d.err)
		}
		n, err := tensorBytes(t.Shape, t.Type)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		t.Bytes = n
		g.Tensors = append(g.Tensors, t)
	}
	align := int64(defaultGGUFAlign)
	if v, ok := g.KV["general.alignment"].(uint64); ok && v > 0 && v <= 1<<20 {
		align = int64(v)
	}
	g.DataOffset = (d.n + align - 1) / align * align
	for _, t := range g.Tensors {
		end := uint64(g.DataOffset) + t.Offset + t.Bytes
		if end > uint64(size) {
			return nil, fmt.Errorf("tensor %q ends at byte %d but the file has %d bytes (truncated?)", t.Name, end, size)
		}
	}
	return g, nil
}

type ggufDecoder struct {
	r   *bufio.Reader
	n   int64 // bytes consumed
	err error
	buf [8]byte
}

func (d *ggufDecoder) read(p []byte) error {
	if d.err != nil {
		return d.err
	}
	n, err := io.ReadFull(d.r, p)
	d.n += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		d.err = err
	}
	return d.err
}

func (d *ggufDecoder) skip(n uint64) error {
	if d.err != nil {
		return d.err
	}
	if n > math.MaxInt64 {
		d.err = fmt.Errorf("skip of %d bytes", n)
		return d.err
	}
	m, err := d.r.Discard(int(n))
	d.n += int64(m)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		d.err = err
	}
	return d.err
}

func (d *ggufDecoder) u8() uint8   { d.read(d.buf[:1]); return d.buf[0] }
func (d *ggufDecoder) u16() uint16 { d.read(d.buf[:2]); return binary.LittleEndian.Uint16(d.buf[:2]) }
func (d *ggufDecoder) u32() uint32 { d.read(d.buf[:4]); return binary.LittleEndian.Uint32(d.buf[:4]) }
func (d *ggufDecoder) u64() uint64 { d.read(d.buf[:8]); return binary.LittleEndian.Uint64(d.buf[:8]) }

func (d *ggufDecoder) str() string {
	n := d.u64()
	if d.err != nil {
		return ""
	}
	if n > maxGGUFString {
		d.err = fmt.Errorf("string of %d bytes", n)
		return ""
	}
	b := make([]byte, n)
	d.read(b)
	return string(b)
}

// scalar reads one non-array value. Integers widen to uint64/int64, floats to float64.
func (d *ggufDecoder) scalar(typ uint32) (any, error) {
	var v any
	switch typ {
	case ggufUint8:
		v = uint64(d.u8())
	case ggufInt8:
		v = int64(int8(d.u8()))
	case ggufUint16:
		v = uint64(d.u16())
	case ggufInt16:
		v = int64(int16(d.u16()))
	case ggufUint32:
		v = uint64(d.u32())
	case ggufInt32:
		v = int64(int32(d.u32()))
	case ggufFloat32:
		v = float64(math.Float32frombits(d.u32()))
	case ggufBool:
		v = d.u8() != 0
	case ggufString:
		v = d.str()
	case ggufUint64:
		v = d.u64()
	case ggufInt64:
		v = int64(d.u64())
	case ggufFloat64:
		v = math.Float64frombits(d.u64())
	default:
		return nil, fmt.Errorf("unknown value type %d", typ)
	}
	return v, d.err
}

func scalarSize(typ uint32) uint64 {
	switch typ {
	case ggufUint8, ggufInt8, ggufBool:
		return 1
	case ggufUint16, ggufInt16:
		return 2
	case ggufUint32, ggufInt32, ggufFloat32:
		return 4
	case ggufUint64, ggufInt64, ggufFloat64:
		return 8
	}
	return 0
}

func (d *ggufDecoder) value(typ uint32) (any, error) {
	if typ != ggufArray {
		return d.scalar(typ)
	}
	a := GGUFArray{ElemType: d.u32(), Len: d.u64()}
	if d.err != nil {
		return nil, d.err
	}
	switch {
	case a.ElemType == ggufString:
		for range a.Len {
			n := d.u64()
			if d.err == nil && n > maxGGUFString {
				return nil, fmt.Errorf("array string of %d bytes", n)
			}
			if d.skip(n) != nil {
				return nil, d.err
			}
		}
	case scalarSize(a.ElemType) == 0:
		return nil, fmt.Errorf("array of unsupported type %d", a.ElemType)
	case a.Len > maxGGUFKeptArray:
		if a.Len > math.MaxInt64/8 {
			return nil, fmt.Errorf("array of %d elements", a.Len)
		}
		if d.skip(a.Len*scalarSize(a.ElemType)) != nil {
			return nil, d.err
		}
	default:
		a.Values = make([]any, a.Len)
		for i := range a.Values {
			v, err := d.scalar(a.ElemType)
			if err != nil {
				return nil, err
			}
			a.Values[i] = v
		}
	}
	return a, d.err
}

// ggmlType gives a ggml tensor type's block size (elements) and block bytes, from ggml's
// type traits. Types removed from ggml (Q4_2, Q4_3, Q4_0_4_4, ...) are not listed.
var ggmlTypes = map[uint32]struct {
	name       string
	blockElems uint64
	blockBytes uint64
}{
	0: {"F32", 1, 4}, 1: {"F16", 1, 2}, 2: {"Q4_0", 32, 18}, 3: {"Q4_1", 32, 20},
	6: {"Q5_0", 32, 22}, 7: {"Q5_1", 32, 24}, 8: {"Q8_0", 32, 34}, 9: {"Q8_1", 32, 36},
	10: {"Q2_K", 256, 84}, 11: {"Q3_K", 256, 110}, 12: {"Q4_K", 256, 144}, 13: {"Q5_K", 256, 176},
	14: {"Q6_K", 256, 210}, 15: {"Q8_K", 256, 292}, 16: {"IQ2_XXS", 256, 66}, 17: {"IQ2_XS", 256, 74},
	18: {"IQ3_XXS", 256, 98}, 19: {"IQ1_S", 256, 50}, 20: {"IQ4_NL", 32, 18}, 21: {"IQ3_S", 256, 110},
	22: {"IQ2_S", 256, 82}, 23: {"IQ4_XS", 256, 136}, 24: {"I8", 1, 1}, 25: {"I16", 1, 2},
	26: {"I32", 1, 4}, 27: {"I64", 1, 8}, 28: {"F64", 1, 8}, 29: {"IQ1_M", 256, 56},
	30: {"BF16", 1, 2}, 34: {"TQ1_0", 256, 54}, 35: {"TQ2_0", 256, 66}, 39: {"MXFP4", 32, 17},
}

// GGMLTypeName returns the name of a ggml tensor type ("Q4_K"), or "type(N)" if unknown.
func GGMLTypeName(t uint32) string {
	if tt, ok := ggmlTypes[t]; ok {
		return tt.name
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

func tensorBytes(shape []uint64, typ uint32) (uint64, error) {
	tt, ok := ggmlTypes[typ]
	if !ok {
		return 0, fmt.Errorf("unknown ggml type %d", typ)
	}
	n := uint64(1)
	for _, d := range shape {
		if d != 0 && n > math.MaxUint64/d {
			return 0, fmt.Errorf("shape %v overflows", shape)
		}
		n *= d
	}
	if len(shape) > 0 && shape[0]%tt.blockElems != 0 {
		return 0, fmt.Errorf("row of %d elements is not a multiple of the %s block (%d)", shape[0], tt.name, tt.blockElems)
	}
	return n / tt.blockElems * tt.blockBytes, nil
}

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

// ReadHeaderInfo reads the planning facts of the GGUF file at path.
func ReadHeaderInfo(path string) (HeaderInfo, error) {
	g, err := ReadGGUF(path)
	if err != nil {
		return HeaderInfo{}, err
	}
	mi, err := g.HeaderInfo()
	if err != nil {
		return HeaderInfo{}, fmt.Errorf("gpu: %s: %w", path, err)
	}
	return mi, nil
}

// HeaderInfo derives the planning facts from the header. It fails when the architecture,
// block count, embedding length or head count is missing.
func (g *GGUFFile) HeaderInfo() (HeaderInfo, error) {
	arch, _ := g.KV["general.architecture"].(string)
	if arch == "" {
		return HeaderInfo{}, errors.New("general.architecture is missing")
	}
	m := HeaderInfo{Architecture: arch, FileBytes: g.FileBytes}
	m.Name, _ = g.KV["general.name"].(string)
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
	for _, t := range g.Tensors {
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
		if a, ok := g.KV["tokenizer.ggml.tokens"].(GGUFArray); ok {
			m.VocabSize = int(a.Len)
		}
	}
	return m, nil
}

// uintKey returns a scalar integer value (or the largest element of an integer array).
func (g *GGUFFile) uintKey(key string) (int, bool) {
	switch v := g.KV[key].(type) {
	case uint64:
		if v > math.MaxInt32 {
			return 0, false
		}
		return int(v), true
	case int64:
		if v < 0 || v > math.MaxInt32 {
			return 0, false
		}
		return int(v), true
	case GGUFArray:
		if vals := arrayInts(v); len(vals) > 0 {
			return maxInt(vals), true
		}
	}
	return 0, false
}

// perLayer returns a per-layer integer value of length n, expanding a scalar; nil if the
// key is absent or an array of the wrong length.
func (g *GGUFFile) perLayer(key string, n int) []int {
	switch v := g.KV[key].(type) {
	case GGUFArray:
		vals := arrayInts(v)
		if len(vals) != n {
			return nil
		}
		return vals
	default:
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
}

func arrayInts(a GGUFArray) []int {
	out := make([]int, 0, len(a.Values))
	for _, e := range a.Values {
		switch x := e.(type) {
		case uint64:
			if x > math.MaxInt32 {
				return nil
			}
			out = append(out, int(x))
		case int64:
			if x < 0 || x > math.MaxInt32 {
				return nil
			}
			out = append(out, int(x))
		default:
			return nil
		}
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
