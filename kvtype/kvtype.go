// Package kvtype is the one table of KV-cache element types: their names as the config
// spells them, their storage (block size and block bytes, from ggml's type traits) and
// whether llama.cpp needs flash attention to run them. The config validates against it,
// the engine maps its names to ggml types, the loader and the memory planner size caches
// with it, and `hxp models inspect` prints it. It imports nothing of the project, so every
// package may use it.
package kvtype

import (
	"fmt"
	"strings"
)

// Type is a KV-cache element type (llama.cpp's cache_type_k and cache_type_v), by its
// config name.
type Type string

// The KV-cache types the engine runs. Quantized types shrink the cache to about a half
// (q8_0) or a quarter (q4_0) of f16; llama.cpp quantizes the V cache only with flash
// attention, so they need it.
const (
	F16  Type = "f16"
	BF16 Type = "bf16"
	F32  Type = "f32"
	Q8_0 Type = "q8_0"
	Q4_0 Type = "q4_0"
)

// Default is the type of an unset kv_type.
const Default = F16

// layout is a type's storage: blockBytes bytes hold blockElems values.
type layout struct {
	t          Type
	blockElems uint64
	blockBytes uint64
}

// table lists every type once, in the order errors and help text name them.
var table = []layout{
	{F16, 1, 2}, {BF16, 1, 2}, {F32, 1, 4}, {Q8_0, 32, 34}, {Q4_0, 32, 18},
}

func (t Type) layout() (layout, bool) {
	for _, l := range table {
		if l.t == t {
			return l, true
		}
	}
	return layout{}, false
}

// All returns every type in table order (f16 first).
func All() []Type {
	out := make([]Type, len(table))
	for i, l := range table {
		out[i] = l.t
	}
	return out
}

// Names returns the allowed values as a list for messages: "f16, bf16, f32, q8_0, q4_0".
func Names() string {
	names := make([]string, len(table))
	for i, l := range table {
		names[i] = string(l.t)
	}
	return strings.Join(names, ", ")
}

// Parse returns the type named s, ignoring case and surrounding space; "" is Default.
// The error names kv_type and the allowed values.
func Parse(s string) (Type, error) {
	t := Type(strings.ToLower(strings.TrimSpace(s)))
	if t == "" {
		return Default, nil
	}
	if !t.Valid() {
		return "", fmt.Errorf("kv_type %q is not one of %s", s, Names())
	}
	return t, nil
}

// Valid reports whether t is in the table (exact spelling; "" is not).
func (t Type) Valid() bool {
	_, ok := t.layout()
	return ok
}

// BlockSize is the number of values stored together in one block (1 for float types).
// llama.cpp needs each head's K and V width to be a multiple of it.
func (t Type) BlockSize() uint64 { return t.layoutOrDefault().blockElems }

// Quantized reports whether t is a block-quantized type.
func (t Type) Quantized() bool { return t.BlockSize() > 1 }

// NeedsFlashAttention reports whether llama.cpp runs a cache of this type only with flash
// attention (it quantizes the V cache only then).
func (t Type) NeedsFlashAttention() bool { return t.Quantized() }

// BytesPerElement is the mean storage of one value (2 for f16, 34/32 for q8_0).
func (t Type) BytesPerElement() float64 {
	l := t.layoutOrDefault()
	return float64(l.blockBytes) / float64(l.blockElems)
}

// Bytes returns the storage of n values of this type, rounded up to whole blocks.
func (t Type) Bytes(n uint64) uint64 {
	l := t.layoutOrDefault()
	return (n + l.blockElems - 1) / l.blockElems * l.blockBytes
}

// layoutOrDefault is t's layout, or Default's for "" and for names outside the table (callers
// validate first; sizing an unknown name as f16 keeps estimates finite).
func (t Type) layoutOrDefault() layout {
	if l, ok := t.layout(); ok {
		return l
	}
	l, _ := Default.layout()
	return l
}
