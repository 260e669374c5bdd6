package gpu

import (
	"strconv"
	"testing"

	"github.com/hxp-ai/hxp/gguf"
)

// ggml type numbers used by the fixtures.
const (
	typeF32  gguf.TensorType = 0
	typeF16  gguf.TensorType = 1
	typeQ8_0 gguf.TensorType = 8
	typeQ4_K gguf.TensorType = 12
	typeQ6_K gguf.TensorType = 14
)

type tensorSpec struct {
	name  string
	shape []uint64
	typ   gguf.TensorType
}

// archSpec describes a llama-like model by its hyper-parameters; fixtureInfo turns it into
// the GGUF metadata and tensor table a real Q4_K_M file of that shape would carry.
type archSpec struct {
	arch                                  string
	nLayer, nEmbd, nHead, nHeadKV, nFF    uint64
	nVocab, nCtxTrain, nExpert, nExpertOn uint64
}

func fixtureTensors(a archSpec) []tensorSpec {
	hd := a.nEmbd / a.nHead
	ts := []tensorSpec{
		{"token_embd.weight", []uint64{a.nEmbd, a.nVocab}, typeQ4_K},
		{"output_norm.weight", []uint64{a.nEmbd}, typeF32},
		{"output.weight", []uint64{a.nEmbd, a.nVocab}, typeQ6_K},
	}
	for i := range a.nLayer {
		p := "blk." + strconv.FormatUint(i, 10) + "."
		ts = append(ts,
			tensorSpec{p + "attn_norm.weight", []uint64{a.nEmbd}, typeF32},
			tensorSpec{p + "attn_q.weight", []uint64{a.nEmbd, a.nEmbd}, typeQ4_K},
			tensorSpec{p + "attn_k.weight", []uint64{a.nEmbd, a.nHeadKV * hd}, typeQ4_K},
			tensorSpec{p + "attn_v.weight", []uint64{a.nEmbd, a.nHeadKV * hd}, typeQ6_K},
			tensorSpec{p + "attn_output.weight", []uint64{a.nEmbd, a.nEmbd}, typeQ4_K},
			tensorSpec{p + "ffn_norm.weight", []uint64{a.nEmbd}, typeF32},
		)
		if a.nExpert > 0 {
			ts = append(ts,
				tensorSpec{p + "ffn_gate_inp.weight", []uint64{a.nEmbd, a.nExpert}, typeF32},
				tensorSpec{p + "ffn_gate_exps.weight", []uint64{a.nEmbd, a.nFF, a.nExpert}, typeQ4_K},
				tensorSpec{p + "ffn_up_exps.weight", []uint64{a.nEmbd, a.nFF, a.nExpert}, typeQ4_K},
				tensorSpec{p + "ffn_down_exps.weight", []uint64{a.nFF, a.nEmbd, a.nExpert}, typeQ4_K},
			)
		} else {
			ts = append(ts,
				tensorSpec{p + "ffn_gate.weight", []uint64{a.nEmbd, a.nFF}, typeQ4_K},
				tensorSpec{p + "ffn_up.weight", []uint64{a.nEmbd, a.nFF}, typeQ4_K},
				tensorSpec{p + "ffn_down.weight", []uint64{a.nFF, a.nEmbd}, typeQ6_K},
			)
		}
	}
	return ts
}

func fixtureKV(a archSpec) []gguf.KV {
	u32 := func(key string, v uint64) gguf.KV {
		return gguf.KV{Key: key, Value: gguf.Value{Type: gguf.Uint32, Data: uint32(v)}}
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.Value{Type: gguf.String, Data: a.arch}},
		u32(a.arch+".block_count", a.nLayer),
		u32(a.arch+".embedding_length", a.nEmbd),
		u32(a.arch+".feed_forward_length", a.nFF),
		u32(a.arch+".attention.head_count", a.nHead),
		u32(a.arch+".attention.head_count_kv", a.nHeadKV),
		u32(a.arch+".context_length", a.nCtxTrain),
		{Key: "tokenizer.ggml.tokens", Value: gguf.Value{Type: gguf.Array, Elem: gguf.String, Len: a.nVocab}},
		{Key: a.arch + ".attention.layer_norm_rms_epsilon", Value: gguf.Value{Type: gguf.Float32, Data: float32(1e-5)}},
	}
	if a.nExpert > 0 {
		kv = append(kv, u32(a.arch+".expert_count", a.nExpert), u32(a.arch+".expert_used_count", a.nExpertOn))
	}
	return kv
}

// fixtureInfo derives HeaderInfo from GGUF-like metadata through the same code path as a
// file read from disk.
func fixtureInfo(t testing.TB, a archSpec) *HeaderInfo {
	t.Helper()
	g := &gguf.File{Version: 3, KV: fixtureKV(a)}
	var off uint64
	for _, s := range fixtureTensors(a) {
		n, err := s.typ.Bytes(s.shape)
		if err != nil {
			t.Fatalf("fixture tensor %s: %v", s.name, err)
		}
		g.Tensors = append(g.Tensors, gguf.TensorInfo{Name: s.name, Shape: s.shape, Type: s.typ, Offset: off, Bytes: n})
		off += n
	}
	g.DataOffset = 1 << 20
	g.Size = int64(off) + g.DataOffset
	mi, err := HeaderInfoOf(g)
	if err != nil {
		t.Fatalf("fixture %s: %v", a.arch, err)
	}
	return &mi
}

// The four seed models, shaped like their Q4_K_M GGUF files.
var (
	mixtralArch  = archSpec{arch: "llama", nLayer: 32, nEmbd: 4096, nHead: 32, nHeadKV: 8, nFF: 14336, nVocab: 32000, nCtxTrain: 32768, nExpert: 8, nExpertOn: 2}
	hermesArch   = archSpec{arch: "llama", nLayer: 32, nEmbd: 4096, nHead: 32, nHeadKV: 8, nFF: 14336, nVocab: 32002, nCtxTrain: 32768}
	openchatArch = archSpec{arch: "llama", nLayer: 32, nEmbd: 4096, nHead: 32, nHeadKV: 8, nFF: 14336, nVocab: 32002, nCtxTrain: 8192}
	phi3Arch     = archSpec{arch: "phi3", nLayer: 32, nEmbd: 3072, nHead: 32, nHeadKV: 32, nFF: 8192, nVocab: 32064, nCtxTrain: 4096}
)

// H100 80GB as NVML reports it: 81559 MiB total, about 500 MiB taken by the driver.
var h100 = Device{Index: 0, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-00000000-0000-0000-0000-000000000001",
	TotalBytes: 81559 << 20, FreeBytes: 81050 << 20, Kind: KindGPU}
