package modelgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// A small GGUF v3 writer. ollama's fs/ggml.WriteGGUF would do, but it writes tensors
// concurrently at computed offsets with no way to cancel or report progress, and it
// pulls golang.org/x/sync into the module; the format is small enough to write here,
// sequentially, through one buffered stream.

const (
	ggufMagic     = "GGUF"
	ggufVersion   = 3
	ggufAlignment = 32
)

// GGUF metadata value types.
const (
	ggufUint32  uint32 = 4
	ggufInt32   uint32 = 5
	ggufFloat32 uint32 = 6
	ggufBool    uint32 = 7
	ggufString  uint32 = 8
	ggufArray   uint32 = 9
	ggufUint64  uint32 = 10
)

// ggmlType is a ggml tensor type (only the two the generator writes).
type ggmlType uint32

const (
	ggmlF32 ggmlType = 0
	ggmlF16 ggmlType = 1
)

func (t ggmlType) size() int64 {
	if t == ggmlF16 {
		return 2
	}
	return 4
}

// kv is one metadata pair; val is uint32, int32, uint64, float32, bool, string,
// []string, []float32 or []int32.
type kv struct {
	key string
	val any
}

// ggufEncoder appends little-endian GGUF primitives to a buffer.
type ggufEncoder struct{ bytes.Buffer }

func (e *ggufEncoder) u32(v uint32) { e.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *ggufEncoder) u64(v uint64) { e.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (e *ggufEncoder) str(s string) {
	e.u64(uint64(len(s)))
	e.WriteString(s)
}

func (e *ggufEncoder) value(key string, v any) error {
	switch v := v.(type) {
	case uint32:
		e.u32(ggufUint32)
		e.u32(v)
	case int32:
		e.u32(ggufInt32)
		e.u32(uint32(v))
	case uint64:
		e.u32(ggufUint64)
		e.u64(v)
	case float32:
		e.u32(ggufFloat32)
		e.u32(math.Float32bits(v))
	case bool:
		e.u32(ggufBool)
		if v {
			e.WriteByte(1)
		} else {
			e.WriteByte(0)
		}
	case string:
		e.u32(ggufString)
		e.str(v)
	case []string:
		e.u32(ggufArray)
		e.u32(ggufString)
		e.u64(uint64(len(v)))
		for _, s := range v {
			e.str(s)
		}
	case []float32:
		e.u32(ggufArray)
		e.u32(ggufFloat32)
		e.u64(uint64(len(v)))
		for _, f := range v {
			e.u32(math.Float32bits(f))
		}
	case []int32:
		e.u32(ggufArray)
		e.u32(ggufInt32)
		e.u64(uint64(len(v)))
		for _, x := range v {
			e.u32(uint32(x))
		}
	default:
		return fmt.Errorf("modelgen: gguf key %s: unsupported value type %T", key, v)
	}
	return nil
}

// padding returns how many bytes bring n to the next multiple of ggufAlignment.
func padding(n int64) int64 { return (ggufAlignment - n%ggufAlignment) % ggufAlignment }

// encodeHeader returns the GGUF header (magic, counts, metadata, tensor infos) padded
// to the alignment, so tensor data can follow directly. Tensor data offsets are laid
// out in the order of ts, each padded to the alignment.
func encodeHeader(kvs []kv, ts []tensorSpec) ([]byte, error) {
	var e ggufEncoder
	e.WriteString(ggufMagic)
	e.u32(ggufVersion)
	e.u64(uint64(len(ts)))
	e.u64(uint64(len(kvs)))
	for _, p := range kvs {
		e.str(p.key)
		if err := e.value(p.key, p.val); err != nil {
			return nil, err
		}
	}
	var off int64
	for _, t := range ts {
		e.str(t.name)
		e.u32(uint32(len(t.shape)))
		for _, d := range t.shape {
			e.u64(uint64(d))
		}
		e.u32(uint32(t.typ))
		e.u64(uint64(off))
		off += t.bytes()
		off += padding(off)
	}
	e.Write(make([]byte, padding(int64(e.Len()))))
	return e.Bytes(), nil
}

// encodeF16 writes src as little-endian IEEE 754 half floats into dst, rounding to
// nearest even. The common case (a normal half) is branch-free and inline here.
func encodeF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, f := range src {
		b := math.Float32bits(f)
		abs := b & 0x7fffffff
		var h uint16
		if abs-0x38800000 < 0x47800000-0x38800000 {
			// Normal half (2^-14 <= |f| < 65536): rebias the exponent and round the 13
			// dropped mantissa bits to nearest even; a carry into the exponent is the
			// correct result (up to Inf).
			x := abs - (127-15)<<23
			x += 0x0fff + (x>>13)&1
			h = uint16(b>>16)&0x8000 | uint16(x>>13)
		} else {
			h = f16Special(b)
		}
		binary.LittleEndian.PutUint16(dst[2*i:], h)
	}
}

// f16Special converts float32 bits outside the normal half range: zero, subnormal
// halves, overflow, Inf and NaN.
func f16Special(b uint32) uint16 {
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	exp := int32(abs>>23) - 127 + 15
	switch {
	case abs > 0x7f800000: // NaN
		return sign | 0x7e00
	case exp >= 0x1f: // overflow or Inf
		return sign | 0x7c00
	case exp < -10: // below half the smallest subnormal
		return sign
	}
	// Subnormal half: shift the mantissa with its implicit bit, round to nearest even.
	mant := abs&0x7fffff | 0x800000
	shift := uint32(14 - exp)
	h := mant >> shift
	rem := mant & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && h&1 == 1) {
		h++
	}
	return sign | uint16(h)
}
