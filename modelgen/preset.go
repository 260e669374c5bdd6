package modelgen

import (
	"fmt"
	"strings"
)

// FileType is the storage type of a generated model's matrices (GGUF general.file_type
// and the ggml type of every tensor of two or more dimensions). One-dimensional tensors
// (norm weights) and the MoE router are always F32, as llama.cpp expects.
type FileType int

const (
	// F32 stores matrices as 32-bit floats (llama_ftype LLAMA_FTYPE_ALL_F32).
	F32 FileType = iota
	// F16 stores matrices as IEEE half floats (LLAMA_FTYPE_MOSTLY_F16); the engine can
	// quantize such a file to Q8_0 or Q4_0.
	F16
)

// String returns "f32" or "f16".
func (t FileType) String() string {
	switch t {
	case F32:
		return "f32"
	case F16:
		return "f16"
	}
	return fmt.Sprintf("FileType(%d)", int(t))
}

// Preset is the shape of a generated llama-architecture model. The zero value is not
// valid; start from Lookup or Presets and change fields (Layers, typically) as needed.
type Preset struct {
	// Name identifies the preset ("tiny", "demo", ...); it becomes part of general.name.
	Name string
	// Summary says what the preset is for, for listings.
	Summary string
	// Embd is the embedding width (n_embd).
	Embd int
	// Layers is the number of transformer blocks (n_layer).
	Layers int
	// Heads and HeadsKV are the query and key/value head counts (HeadsKV < Heads is GQA).
	Heads, HeadsKV int
	// FFN is the feed-forward width (n_ff), per expert for MoE presets.
	FFN int
	// Vocab is the number of tokens; the generated vocabulary has exactly this size.
	Vocab int
	// Context is the trained context length written to the file (llama.context_length).
	Context int
	// Experts and ExpertsUsed describe a mixture-of-experts FFN; both zero for dense.
	Experts, ExpertsUsed int
	// RopeBase is the RoPE frequency base.
	RopeBase float32
	// NormEps is the RMS norm epsilon.
	NormEps float32
	// Type is the storage type of the matrices.
	Type FileType
	// OnDemand marks presets too large to generate in tests or on small machines at
	// full size (GPU benchmarks). Generate accepts them; callers should warn.
	OnDemand bool
}

var presets = []Preset{
	{
		Name: "tiny", Summary: "unit tests: 0.9M params (3.5 MiB F32), loads and decodes in milliseconds",
		Embd: 128, Layers: 2, Heads: 4, HeadsKV: 2, FFN: 352, Vocab: 2048, Context: 2048,
		RopeBase: 10000, NormEps: 1e-5, Type: F32,
	},
	{
		Name: "demo", Summary: "`make run` model: 9.4M params (18 MiB F16), fast on 2 CPU cores",
		Embd: 384, Layers: 4, Heads: 6, HeadsKV: 2, FFN: 1024, Vocab: 4096, Context: 4096,
		RopeBase: 10000, NormEps: 1e-5, Type: F16,
	},
	{
		Name: "bench", Summary: "CPU benchmarks: 101M params (192 MiB F16; quantize to q8_0/q4_0)",
		Embd: 768, Layers: 12, Heads: 12, HeadsKV: 4, FFN: 2048, Vocab: 16384, Context: 4096,
		RopeBase: 10000, NormEps: 1e-5, Type: F16,
	},
	{
		Name: "phi3", Summary: "GPU benchmarks: Phi-3-mini shape (3.8B params, 7.1 GiB F16)",
		Embd: 3072, Layers: 32, Heads: 32, HeadsKV: 32, FFN: 8192, Vocab: 32064, Context: 4096,
		RopeBase: 10000, NormEps: 1e-5, Type: F16, OnDemand: true,
	},
	{
		Name: "mistral", Summary: "GPU benchmarks: Mistral-7B shape, as Hermes-2 and OpenChat-3.5 (7.2B params, 13.5 GiB F16); use --layers to test",
		Embd: 4096, Layers: 32, Heads: 32, HeadsKV: 8, FFN: 14336, Vocab: 32000, Context: 32768,
		RopeBase: 10000, NormEps: 1e-5, Type: F16, OnDemand: true,
	},
	{
		Name: "mixtral", Summary: "GPU benchmarks: Mixtral-8x7B shape (46.7B params, 87 GiB F16); use --layers to test",
		Embd: 4096, Layers: 32, Heads: 32, HeadsKV: 8, FFN: 14336, Vocab: 32000, Context: 32768,
		Experts: 8, ExpertsUsed: 2, RopeBase: 1e6, NormEps: 1e-5, Type: F16, OnDemand: true,
	},
}

// Presets returns all built-in presets, smallest first. The slice is a copy.
func Presets() []Preset {
	return append([]Preset(nil), presets...)
}

// Names returns the preset names in the order of Presets.
func Names() []string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	return names
}

// Lookup returns the preset with the given name (case-insensitive). The error lists
// the valid names.
func Lookup(name string) (Preset, error) {
	for _, p := range presets {
		if strings.EqualFold(p.Name, name) {
			return p, nil
		}
	}
	return Preset{}, fmt.Errorf("modelgen: unknown preset %q (valid: %s)", name, strings.Join(Names(), ", "))
}

// HeadDim is the per-head width (n_embd / n_head), also the RoPE dimension count.
func (p Preset) HeadDim() int { return p.Embd / p.Heads }

// EmbdKV is the key/value projection width (head dim × KV heads).
func (p Preset) EmbdKV() int { return p.HeadDim() * p.HeadsKV }

// Params is the number of weights in the model.
func (p Preset) Params() int64 {
	var n int64
	for _, t := range p.tensors() {
		n += t.elements()
	}
	return n
}

// Validate checks that llama.cpp can load a model of this shape and that the engine
// can quantize it (row widths multiple of 32). The error names the field and value.
func (p Preset) Validate() error {
	type check struct {
		ok    bool
		field string
		val   any
		want  string
	}
	checks := []check{
		{p.Name != "", "Name", p.Name, "non-empty"},
		{p.Embd > 0 && p.Embd%32 == 0, "Embd", p.Embd, "a positive multiple of 32"},
		{p.Layers > 0 && p.Layers <= 512, "Layers", p.Layers, "1..512"},
		{p.Heads > 0 && p.Embd%max(p.Heads, 1) == 0, "Heads", p.Heads, "a positive divisor of Embd"},
		{p.Heads > 0 && p.Embd%max(p.Heads, 1) == 0 && p.HeadDim()%2 == 0, "Heads", p.Heads, "giving an even head dimension (RoPE)"},
		{p.HeadsKV > 0 && p.Heads%max(p.HeadsKV, 1) == 0, "HeadsKV", p.HeadsKV, "a positive divisor of Heads"},
		{p.FFN > 0 && p.FFN%32 == 0, "FFN", p.FFN, "a positive multiple of 32"},
		{p.Vocab >= minVocab && p.Vocab <= MaxVocab(), "Vocab", p.Vocab, fmt.Sprintf("%d..%d", minVocab, MaxVocab())},
		{p.Context > 0, "Context", p.Context, "positive"},
		{p.Experts >= 0 && p.Experts <= 256, "Experts", p.Experts, "0..256"},
		{(p.Experts == 0 && p.ExpertsUsed == 0) || (p.ExpertsUsed > 0 && p.ExpertsUsed <= p.Experts), "ExpertsUsed", p.ExpertsUsed, "1..Experts, or 0 when Experts is 0"},
		{p.Experts != 1, "Experts", p.Experts, "0 (dense) or at least 2"},
		{p.RopeBase > 0, "RopeBase", p.RopeBase, "positive"},
		{p.NormEps > 0 && p.NormEps < 1, "NormEps", p.NormEps, "in (0, 1)"},
		{p.Type == F32 || p.Type == F16, "Type", p.Type, "f32 or f16"},
	}
	for _, c := range checks {
		if !c.ok {
			return fmt.Errorf("modelgen: preset %q: %s = %v, want %s", p.Name, c.field, c.val, c.want)
		}
	}
	return nil
}

// String summarises the shape, e.g. "bench: 100.7M params, n_embd 768, 12 layers, ...".
func (p Preset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s params, n_embd %d, %d layers, %d/%d heads, n_ff %d, vocab %d, ctx %d",
		p.Name, FormatCount(p.Params()), p.Embd, p.Layers, p.Heads, p.HeadsKV, p.FFN, p.Vocab, p.Context)
	if p.Experts > 0 {
		fmt.Fprintf(&b, ", %d experts (%d used)", p.Experts, p.ExpertsUsed)
	}
	fmt.Fprintf(&b, ", %s", p.Type)
	return b.String()
}

// FormatCount renders a count with a decimal suffix, e.g. "100.7M" or "46.7B".
func FormatCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
