package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// encoder builds GGUF bytes for the tests, independently of the reader: values are
// written from their Go type, so a test can also write what the reader must refuse.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.b = append(e.b, s...) }

// scalar writes the payload of one Go value and returns its GGUF type.
func (e *encoder) scalar(v any) Type {
	switch x := v.(type) {
	case uint8:
		e.u8(x)
		return Uint8
	case int8:
		e.u8(uint8(x))
		return Int8
	case uint16:
		e.u16(x)
		return Uint16
	case int16:
		e.u16(uint16(x))
		return Int16
	case uint32:
		e.u32(x)
		return Uint32
	case int32:
		e.u32(uint32(x))
		return Int32
	case float32:
		e.u32(math.Float32bits(x))
		return Float32
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
		return Bool
	case string:
		e.str(x)
		return String
	case uint64:
		e.u64(x)
		return Uint64
	case int64:
		e.u64(uint64(x))
		return Int64
	case float64:
		e.u64(math.Float64bits(x))
		return Float64
	}
	panic(fmt.Sprintf("encoder: %T", v))
}

// kv writes a key, its type and its value; v is a scalar or a slice of scalars.
func (e *encoder) kv(key string, v any) {
	e.str(key)
	at := len(e.b)
	e.u32(0) // type, patched below
	var t Type
	switch x := v.(type) {
	case []uint8:
		t = array(e, x)
	case []int8:
		t = array(e, x)
	case []uint16:
		t = array(e, x)
	case []int16:
		t = array(e, x)
	case []uint32:
		t = array(e, x)
	case []int32:
		t = array(e, x)
	case []float32:
		t = array(e, x)
	case []bool:
		t = array(e, x)
	case []string:
		t = array(e, x)
	case []uint64:
		t = array(e, x)
	case []int64:
		t = array(e, x)
	case []float64:
		t = array(e, x)
	default:
		t = e.scalar(v)
	}
	binary.LittleEndian.PutUint32(e.b[at:], uint32(t))
}

func array[T any](e *encoder, xs []T) Type {
	at := len(e.b)
	e.u32(0) // element type, patched below
	e.u64(uint64(len(xs)))
	var zero T
	elem := (&encoder{}).scalar(zero)
	for _, x := range xs {
		e.scalar(x)
	}
	binary.LittleEndian.PutUint32(e.b[at:], uint32(elem))
	return Array
}

// tensor is a tensor to encode.
type tensor struct {
	name  string
	shape []uint64
	typ   TensorType
}

// encode returns a GGUF v3 file: header, metadata pairs (key, value, key, value, ...),
// tensor infos at consecutive 32-byte aligned offsets, and zeroed tensor data.
func encode(ts []tensor, pairs ...any) []byte {
	e := &encoder{}
	e.b = append(e.b, "GGUF"...)
	e.u32(3)
	e.u64(uint64(len(ts)))
	e.u64(uint64(len(pairs) / 2))
	for i := 0; i < len(pairs); i += 2 {
		e.kv(pairs[i].(string), pairs[i+1])
	}
	var off uint64
	for _, t := range ts {
		e.str(t.name)
		e.u32(uint32(len(t.shape)))
		for _, d := range t.shape {
			e.u64(d)
		}
		e.u32(uint32(t.typ))
		e.u64(off)
		n, _ := t.typ.Bytes(t.shape) // 0 for a type the reader must refuse
		off += (n + 31) / 32 * 32
	}
	e.b = append(e.b, make([]byte, (32-len(e.b)%32)%32)...)
	return append(e.b, make([]byte, off)...)
}
