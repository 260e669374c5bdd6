// Package gguf reads the header of a GGUF file (llama.cpp's model format): the
// metadata, each value with its GGUF type and in file order, and the tensor table,
// without tensor data. It is the project's one GGUF reader: the memory planner and
// `hxp models inspect` (through gpu) read headers with it, and modelgen copies a
// vocabulary's tokenizer with it. Files are untrusted input: every count and length
// is checked against fixed bounds and against the bytes left in the file before
// anything is allocated for it, and a tensor that does not lie inside the file is an
// error. It is pure Go and imports nothing of the project, so every package may use it.
package gguf

import "strconv"

// Type is a GGUF metadata value type, numbered as in the GGUF specification.
type Type uint32

// The GGUF value types.
const (
	Uint8   Type = 0
	Int8    Type = 1
	Uint16  Type = 2
	Int16   Type = 3
	Uint32  Type = 4
	Int32   Type = 5
	Float32 Type = 6
	Bool    Type = 7
	String  Type = 8
	Array   Type = 9
	Uint64  Type = 10
	Int64   Type = 11
	Float64 Type = 12
)

var typeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// String is the type's name in the specification ("uint32"), or "type(N)".
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// Size is the encoded size of one value of a fixed-size type, 0 for String, Array and
// unknown types.
func (t Type) Size() int {
	switch t {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16:
		return 2
	case Uint32, Int32, Float32:
		return 4
	case Uint64, Int64, Float64:
		return 8
	}
	return 0
}

// Value is one metadata value and its GGUF type.
type Value struct {
	// Type is the value's type; Array for arrays.
	Type Type
	// Elem is the element type of an array.
	Elem Type
	// Len is the number of elements of an array, whether or not they were kept.
	Len uint64
	// Data is the value as the Go type of its GGUF type: uint8, int8, uint16, int16,
	// uint32, int32, float32, bool, string, uint64, int64 or float64 for a scalar, a
	// slice of one of those ([]string, []int32, ...) for an array whose elements were
	// kept, and nil for an array that was only counted (see Options).
	Data any
}

// Uint returns an integer scalar as a uint64; false for other types and negative values.
func (v Value) Uint() (uint64, bool) {
	switch x := v.Data.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return nonNegative(int64(x))
	case int16:
		return nonNegative(int64(x))
	case int32:
		return nonNegative(int64(x))
	case int64:
		return nonNegative(x)
	}
	return 0, false
}

func nonNegative(x int64) (uint64, bool) {
	if x < 0 {
		return 0, false
	}
	return uint64(x), true
}

// Float returns a float or integer scalar as a float64; false for other types.
func (v Value) Float() (float64, bool) {
	switch x := v.Data.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	if u, ok := v.Uint(); ok {
		return float64(u), true
	}
	return 0, false
}

// Uints returns the elements of a kept integer array as uint64s; false for other values
// and when an element is negative.
func (v Value) Uints() ([]uint64, bool) {
	switch x := v.Data.(type) {
	case []uint8:
		return widen(x)
	case []int8:
		return widen(x)
	case []uint16:
		return widen(x)
	case []int16:
		return widen(x)
	case []uint32:
		return widen(x)
	case []int32:
		return widen(x)
	case []uint64:
		return widen(x)
	case []int64:
		return widen(x)
	}
	return nil, false
}

func widen[T int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64](xs []T) ([]uint64, bool) {
	out := make([]uint64, len(xs))
	for i, x := range xs {
		if x < 0 {
			return nil, false
		}
		out[i] = uint64(x)
	}
	return out, true
}

// KV is one metadata pair.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo is one entry of the tensor table.
type TensorInfo struct {
	// Name is the tensor name ("blk.3.attn_q.weight").
	Name string
	// Shape lists the dimensions, innermost first (ggml order).
	Shape []uint64
	// Type is the ggml type of the elements.
	Type TensorType
	// Offset is the tensor's offset from the start of the data section.
	Offset uint64
	// Bytes is the tensor's size in the file.
	Bytes uint64
}

// Elements is the number of values in the tensor (the product of its shape).
func (t TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is the header of a GGUF file: its metadata and tensor table.
type File struct {
	// Version is the GGUF version (2 or 3).
	Version uint32
	// KV is the metadata in file order; keys are unique.
	KV []KV
	// Tensors is the tensor table in file order.
	Tensors []TensorInfo
	// Alignment is the alignment of the data section and of tensor offsets
	// (general.alignment, 32 by default).
	Alignment uint64
	// DataOffset is where the tensor data begins in the file.
	DataOffset int64
	// Size is the size of the file in bytes.
	Size int64

	index map[string]int // key -> position in KV, built by Read
}

// Get returns the value of key.
func (f *File) Get(key string) (Value, bool) {
	if len(f.index) == len(f.KV) && f.index != nil {
		i, ok := f.index[key]
		if !ok {
			return Value{}, false
		}
		if f.KV[i].Key == key {
			return f.KV[i].Value, true
		}
	}
	for _, kv := range f.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return Value{}, false
}

// Str returns the string value of key; "" and false when it is absent or not a string.
func (f *File) Str(key string) (string, bool) {
	v, _ := f.Get(key)
	s, ok := v.Data.(string)
	return s, ok
}
