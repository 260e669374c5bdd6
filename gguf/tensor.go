package gguf

import (
	"fmt"
	"math"
	"strconv"
)

// TensorType is a ggml tensor element type (0 F32, 1 F16, 2 Q4_0, 8 Q8_0, 12 Q4_K, ...).
type TensorType uint32

// ggmlTypes gives each ggml type's name, block size (elements) and block bytes, from
// ggml's type traits. Types removed from ggml (Q4_2, Q4_3, Q4_0_4_4, ...) are not listed.
var ggmlTypes = map[TensorType]struct {
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

// String is the type's ggml name ("Q4_K"), or "type(N)" when unknown.
func (t TensorType) String() string {
	if tt, ok := ggmlTypes[t]; ok {
		return tt.name
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// Bytes returns the size of a tensor of this type and shape (innermost dimension first).
// It fails for an unknown type, a row that is not a whole number of blocks, and a size
// that overflows 64 bits.
func (t TensorType) Bytes(shape []uint64) (uint64, error) {
	tt, ok := ggmlTypes[t]
	if !ok {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
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
	blocks := n / tt.blockElems
	if blocks > math.MaxUint64/tt.blockBytes {
		return 0, fmt.Errorf("shape %v overflows", shape)
	}
	return blocks * tt.blockBytes, nil
}
