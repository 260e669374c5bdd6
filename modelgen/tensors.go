package modelgen

import (
	"fmt"
	"math"
)

// initKind says how a tensor's values are drawn.
type initKind int

const (
	// initUniform: independent uniform values with standard deviation std.
	initUniform initKind = iota
	// initNorm: norm weights, 1 plus small uniform noise of standard deviation std.
	initNorm
	// initOutput: the output projection, which favours a fixed successor of the last
	// token (see weights.go) on top of uniform noise.
	initOutput
)

// tensorSpec is one tensor of a generated model: its GGUF name, ggml shape (ne0
// first, the contiguous dimension), storage type and how to draw its values.
type tensorSpec struct {
	name  string
	shape []int64
	typ   ggmlType
	init  initKind
	std   float64
}

func (t tensorSpec) elements() int64 {
	n := int64(1)
	for _, d := range t.shape {
		n *= d
	}
	return n
}

func (t tensorSpec) bytes() int64 { return t.elements() * t.typ.size() }

// Weight scales, as multiples of 1/sqrt(fan-in). Activations entering each matrix are
// RMS-normalised (RMS 1), so these gains fix the size of what each block adds to the
// residual stream relative to the token embedding (RMS 1). The output matrices of the
// blocks are further divided by sqrt(layers), so that whatever the depth the sum of
// all blocks stays comparable to the embedding, and the final hidden state keeps the
// direction of the last token's embedding that the output projection relies on.
const (
	gainQK     = 1.5 // attention logits with a standard deviation of about gainQK²
	gainV      = 1.0
	gainAttnO  = 1.13 // divided by sqrt(layers)
	gainFFNIn  = 1.0
	gainFFNOut = 1.13 // divided by sqrt(layers)
	gainRouter = 2.0  // MoE router logits spread enough to pick distinct experts
	normNoise  = 0.05
)

// tensors lists the model's tensors in file order, with the ggml shapes that
// llama.cpp's LLM_ARCH_LLAMA loader expects.
func (p Preset) tensors() []tensorSpec {
	mat := ggmlF32
	if p.Type == F16 {
		mat = ggmlF16
	}
	d, kvd, ff, v := int64(p.Embd), int64(p.EmbdKV()), int64(p.FFN), int64(p.Vocab)
	inv := func(fanIn int64) float64 { return 1 / math.Sqrt(float64(fanIn)) }
	depth := 1 / math.Sqrt(float64(p.Layers))

	ts := []tensorSpec{{name: "token_embd.weight", shape: []int64{d, v}, typ: mat, init: initUniform, std: 1}}
	for i := 0; i < p.Layers; i++ {
		n := func(s string) string { return fmt.Sprintf("blk.%d.%s.weight", i, s) }
		ts = append(ts,
			tensorSpec{name: n("attn_norm"), shape: []int64{d}, typ: ggmlF32, init: initNorm, std: normNoise},
			tensorSpec{name: n("attn_q"), shape: []int64{d, d}, typ: mat, std: gainQK * inv(d)},
			tensorSpec{name: n("attn_k"), shape: []int64{d, kvd}, typ: mat, std: gainQK * inv(d)},
			tensorSpec{name: n("attn_v"), shape: []int64{d, kvd}, typ: mat, std: gainV * inv(d)},
			tensorSpec{name: n("attn_output"), shape: []int64{d, d}, typ: mat, std: gainAttnO * depth * inv(d)},
			tensorSpec{name: n("ffn_norm"), shape: []int64{d}, typ: ggmlF32, init: initNorm, std: normNoise},
		)
		if p.Experts == 0 {
			ts = append(ts,
				tensorSpec{name: n("ffn_gate"), shape: []int64{d, ff}, typ: mat, std: gainFFNIn * inv(d)},
				tensorSpec{name: n("ffn_up"), shape: []int64{d, ff}, typ: mat, std: gainFFNIn * inv(d)},
				tensorSpec{name: n("ffn_down"), shape: []int64{ff, d}, typ: mat, std: gainFFNOut * depth * inv(ff)},
			)
			continue
		}
		e := int64(p.Experts)
		ts = append(ts,
			tensorSpec{name: n("ffn_gate_inp"), shape: []int64{d, e}, typ: ggmlF32, std: gainRouter * inv(d)},
			tensorSpec{name: n("ffn_gate_exps"), shape: []int64{d, ff, e}, typ: mat, std: gainFFNIn * inv(d)},
			tensorSpec{name: n("ffn_up_exps"), shape: []int64{d, ff, e}, typ: mat, std: gainFFNIn * inv(d)},
			tensorSpec{name: n("ffn_down_exps"), shape: []int64{ff, d, e}, typ: mat, std: gainFFNOut * depth * inv(ff)},
		)
	}
	return append(ts,
		tensorSpec{name: "output_norm.weight", shape: []int64{d}, typ: ggmlF32, init: initNorm, std: normNoise},
		tensorSpec{name: "output.weight", shape: []int64{d, v}, typ: mat, init: initOutput, std: inv(d)},
	)
}
