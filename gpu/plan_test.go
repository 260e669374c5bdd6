package gpu

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/kvtype"
)

func seedSpecs(t *testing.T) []ModelSpec {
	// Limits and cores from the seed design (memory_limit_gb 90/15/8/4, cpu_cores 8/4/4/2).
	return []ModelSpec{
		{Name: "mixtral", Info: fixtureInfo(t, mixtralArch), MemoryLimitBytes: 90 * GiB, CPUCores: 8, Parallel: 8, CtxPerSeq: 8192, GPULayers: -1},
		{Name: "hermes", Info: fixtureInfo(t, hermesArch), MemoryLimitBytes: 15 * GiB, CPUCores: 4, Parallel: 4, CtxPerSeq: 8192, GPULayers: -1},
		{Name: "openchat", Info: fixtureInfo(t, openchatArch), MemoryLimitBytes: 8 * GiB, CPUCores: 4, Parallel: 4, CtxPerSeq: 8192, GPULayers: -1},
		{Name: "phi3", Info: fixtureInfo(t, phi3Arch), MemoryLimitBytes: 4 * GiB, CPUCores: 2, Parallel: 4, CtxPerSeq: 4096, GPULayers: -1},
	}
}

func TestKVBytesFormula(t *testing.T) {
	mistral := fixtureInfo(t, hermesArch)
	// 2 (K,V) * 32 layers * 8 kv heads * 128 dims * 2 bytes = 128 KiB per token.
	if got, want := KVBytes(*mistral, kvtype.F16, 8192), uint64(2*32*8*128*2*8192); got != want || got != GiB {
		t.Fatalf("f16 KV of 8192 tokens = %d, want %d (1 GiB)", got, want)
	}
	// q8_0 stores 32 values in 34 bytes.
	if got, want := KVBytes(*mistral, kvtype.Q8_0, 8192), uint64(2*32*8*128*8192/32*34); got != want {
		t.Fatalf("q8_0 KV = %d, want %d", got, want)
	}
	phi3 := fixtureInfo(t, phi3Arch)
	// No GQA: 32 kv heads of 3072/32 = 96 dims: 384 KiB per token.
	if got, want := KVBytes(*phi3, kvtype.F16, 1), uint64(2*32*32*96*2); got != want {
		t.Fatalf("phi3 KV per token = %d, want %d", got, want)
	}
	// Per-layer n_head_kv and distinct K/V lengths are summed layer by layer.
	m := HeaderInfo{BlockCount: 2, HeadCountKV: []int{4, 2}, KeyLength: 192, ValueLength: 128}
	if got, want := KVBytes(m, kvtype.F16, 10), uint64((4*(192+128)+2*(192+128))*2*10); got != want {
		t.Fatalf("mixed-layer KV = %d, want %d", got, want)
	}
}

func TestComputeEstimate(t *testing.T) {
	// A Mistral-shaped F16 block, whose n_ff (14336) ffnWidth recovers exactly.
	const e, v, ff = 4096, 32000, 14336
	mi := &HeaderInfo{BlockCount: 1, EmbeddingLength: e, HeadCount: 32, HeadCountKV: []int{8}, KeyLength: 128, ValueLength: 128, VocabSize: v,
		InputBytes: 2 * e * v, LayerBytes: []uint64{2*(e*(32+8)*256+3*e*ff) + 4*2*e}}
	if got := ffnWidth(*mi); got != ff {
		t.Fatalf("ffnWidth = %d, want %d", got, ff)
	}
	const tok, kv, logits = 512, 8192, 4 * v * 4 // n_ubatch, cells per sequence, output buffer of 4 slots
	// Flash attention: the FFN peak (the f16 mask, gate/up/gated products and 3 hidden states).
	want := uint64(2*kv*tok + 4*tok*(3*ff+3*e) + logits)
	if got := ComputeBytes(*mi, 4, 8192, Options{}); got != want {
		t.Fatalf("compute = %d, want %d", got, want)
	}
	// Without flash attention the KQ scores over one sequence's cells dominate.
	noFA := uint64(4*kv*tok*(1+32) + 4*tok*(4*e+8*256) + logits)
	if got := ComputeBytes(*mi, 4, 8192, Options{NoFlashAttention: true}); got != noFA {
		t.Fatalf("compute without FA = %d, want %d", got, noFA)
	}
	// A unified cache attends to all 4 x 8192 cells.
	if got, want := ComputeBytes(*mi, 4, 8192, Options{NoFlashAttention: true, UnifiedKV: true}), uint64(4*4*kv*tok*(1+32)+4*tok*(4*e+8*256)+logits); got != want {
		t.Fatalf("compute with a unified cache = %d, want %d", got, want)
	}
	// A short context caps the micro-batch: n_ctx pads to 256 cells, so 256 tokens.
	if got, want := ComputeBytes(*mi, 1, 100, Options{}), uint64(2*256*256+4*256*(3*ff+3*e)+4*v); got != want {
		t.Fatalf("compute of a 100-token context = %d, want %d", got, want)
	}
	// Per-model batch size and flash attention reach the plan.
	hermes := fixtureInfo(t, hermesArch)
	p, err := NewPlan([]ModelSpec{{Name: "m", Info: hermes, Parallel: 1, CtxPerSeq: 8192, GPULayers: -1, BatchSize: 1024, NoFlashAttention: true}},
		[]Device{h100}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Models[0].Need.Compute, ComputeBytes(*hermes, 1, 8192, Options{BatchSize: 1024, NoFlashAttention: true}); got != want {
		t.Fatalf("planned compute %d, want %d", got, want)
	}
}

// assertMaximal checks that the planner did not give away more than it had to: one more
// slot (or 256 more tokens per slot) would break the model's memory limit.
func assertMaximal(t *testing.T, mp ModelPlan, opts Options) {
	t.Helper()
	over := func(par, ctx int) bool {
		return Estimate(mp.Info, mp.KVType, par, ctx, opts).Total() > mp.LimitBytes
	}
	if mp.Parallel < mp.RequestedParallel && mp.CtxPerSeq == mp.RequestedCtxPerSeq && !over(mp.Parallel+1, mp.CtxPerSeq) {
		t.Errorf("%s: parallel %d+1 would fit the limit", mp.Name, mp.Parallel)
	}
	if mp.CtxPerSeq < mp.RequestedCtxPerSeq && !over(mp.Parallel, mp.CtxPerSeq+ctxPad) {
		t.Errorf("%s: ctx %d+256 would fit the limit", mp.Name, mp.CtxPerSeq)
	}
}

func TestPlanSeedModelsOnH100(t *testing.T) {
	tests := []struct {
		name      string
		cores     int
		fits      bool
		parallel  map[string]int
		inTable   []string
		notInText []string
	}{
		{
			name:     "enough cores",
			cores:    24,
			fits:     true,
			parallel: map[string]int{"mixtral": 8, "hermes": 4, "openchat": 3, "phi3": 1},
			inTable: []string{"plan: fits", "3 x 8192 (asked 4 x 8192)", "lower parallel to 3", "set kv_type q8_0 to keep parallel 4 x ctx 8192",
				"lower parallel to 1"},
		},
		{
			name:     "seed cores oversubscribe a 16-core host",
			cores:    16,
			fits:     false,
			parallel: map[string]int{"mixtral": 8, "hermes": 4, "openchat": 3, "phi3": 1},
			inTable:  []string{"plan: DOES NOT FIT", "OVERSUBSCRIBED", "sum to 18 but the host has 16 cores", "lower cpu_cores so that they sum to at most 16"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{HostCores: tc.cores}
			p, err := NewPlan(seedSpecs(t), []Device{h100}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.Fits() != tc.fits {
				t.Fatalf("Fits() = %v, want %v\n%s", p.Fits(), tc.fits, p.Table())
			}
			var sum uint64
			for _, m := range p.Models {
				if !m.Fits {
					t.Errorf("%s does not fit: %v", m.Name, m.Problems)
				}
				if m.NGPULayers != 33 {
					t.Errorf("%s: n_gpu_layers %d, want all 33", m.Name, m.NGPULayers)
				}
				if m.Parallel != tc.parallel[m.Name] {
					t.Errorf("%s: parallel %d, want %d", m.Name, m.Parallel, tc.parallel[m.Name])
				}
				if m.NCtx != m.Parallel*m.CtxPerSeq {
					t.Errorf("%s: n_ctx %d != %d x %d", m.Name, m.NCtx, m.Parallel, m.CtxPerSeq)
				}
				if want := Estimate(m.Info, m.KVType, m.Parallel, m.CtxPerSeq, opts); m.Need != want {
					t.Errorf("%s: need %+v, want %+v", m.Name, m.Need, want)
				}
				if m.Need.Total() > m.LimitBytes {
					t.Errorf("%s: need %d over limit %d", m.Name, m.Need.Total(), m.LimitBytes)
				}
				// All layers on the GPU: only the token embedding stays in host memory.
				if m.HostBytes != m.Info.InputBytes || m.DeviceBytes+m.HostBytes != m.Need.Total() {
					t.Errorf("%s: device %d + host %d, want host = embedding %d", m.Name, m.DeviceBytes, m.HostBytes, m.Info.InputBytes)
				}
				assertMaximal(t, m, opts)
				sum += m.DeviceBytes
			}
			if d := p.Devices[0]; d.PlannedBytes != sum || !d.Fits() || len(d.Models) != 4 {
				t.Errorf("device planned %d (models %v), want %d within %d", d.PlannedBytes, d.Models, sum, d.UsableBytes())
			}
			table := p.Table()
			for _, s := range tc.inTable {
				if !strings.Contains(table, s) {
					t.Errorf("table lacks %q:\n%s", s, table)
				}
			}
		})
	}
}

func TestPlanMemoryLimitTooSmall(t *testing.T) {
	specs := seedSpecs(t)
	specs[0].MemoryLimitBytes = 20 * GiB // Mixtral Q4 weights alone are ~24.5 GiB
	p, err := NewPlan(specs, []Device{h100}, Options{HostCores: 24})
	if err != nil {
		t.Fatal(err)
	}
	if p.Fits() {
		t.Fatalf("plan fits with Mixtral limited to 20 GiB:\n%s", p.Table())
	}
	m, _ := p.Model("mixtral")
	if m.Fits || len(m.Problems) == 0 {
		t.Fatalf("mixtral: fits=%v problems=%v", m.Fits, m.Problems)
	}
	// The plan keeps the requested shape so the table shows what was asked for.
	if m.Parallel != 8 || m.CtxPerSeq != 8192 {
		t.Errorf("mixtral planned %d x %d, want the request 8 x 8192", m.Parallel, m.CtxPerSeq)
	}
	need := Estimate(m.Info, kvtype.F16, 8, 8192, Options{}).Total()
	wantAdvice := fmt.Sprintf("memory_limit_gb must be >= %d", (need+GiB-1)/GiB)
	table := p.Table()
	for _, s := range []string{wantAdvice, "DOES NOT FIT", "weights and compute buffer alone need"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
	// The other models are still planned normally.
	if h, _ := p.Model("hermes"); !h.Fits || h.Parallel != 4 {
		t.Errorf("hermes: fits=%v parallel=%d", h.Fits, h.Parallel)
	}
}

func TestPlanContextReduction(t *testing.T) {
	phi3 := fixtureInfo(t, phi3Arch)
	hermes := fixtureInfo(t, hermesArch)
	tests := []struct {
		name          string
		spec          ModelSpec
		opts          Options
		fits          bool
		parallel, ctx int
		kv            kvtype.Type
		advice        []string
	}{
		{
			name: "fits as asked", spec: ModelSpec{Name: "m", Info: hermes, MemoryLimitBytes: 15 * GiB, Parallel: 4, CtxPerSeq: 8192, GPULayers: -1},
			fits: true, parallel: 4, ctx: 8192,
		},
		{
			name: "q8_0 cache fits where f16 did not", spec: ModelSpec{Name: "m", Info: hermes, MemoryLimitBytes: 8 * GiB, Parallel: 4, CtxPerSeq: 8192, KVType: kvtype.Q8_0, GPULayers: -1},
			fits: true, parallel: 4, ctx: 8192, kv: kvtype.Q8_0,
		},
		{
			name: "parallel then context, with a lower floor", spec: ModelSpec{Name: "m", Info: phi3, MemoryLimitBytes: 3 * GiB, Parallel: 2, CtxPerSeq: 4096, GPULayers: -1},
			opts: Options{MinCtxPerSeq: 1024}, fits: true, parallel: 1, ctx: 1536,
			advice: []string{"lower parallel to 1", "lower ctx_per_seq to 1536", "or raise memory_limit_gb to >= 6"},
		},
		{
			name: "default floor of 2048 tokens is not cut", spec: ModelSpec{Name: "m", Info: phi3, MemoryLimitBytes: 3 * GiB, Parallel: 2, CtxPerSeq: 4096, GPULayers: -1},
			fits: false, parallel: 2, ctx: 4096,
			advice: []string{"memory_limit_gb must be >= 6 for parallel 2 x ctx 4096 (>= 4 at the floor)"},
		},
		{
			name: "q8_0 would allow more slots", spec: ModelSpec{Name: "m", Info: hermes, MemoryLimitBytes: 6 * GiB, Parallel: 8, CtxPerSeq: 4096, GPULayers: -1},
			fits: true, parallel: 3, ctx: 4096,
			advice: []string{"lower parallel to 3", "or set kv_type q8_0 to get parallel 5 x ctx 4096"},
		},
		{
			name: "defaults: ctx from n_ctx_train capped at 4096, one slot", spec: ModelSpec{Name: "m", Info: phi3, GPULayers: -1},
			fits: true, parallel: 1, ctx: 4096,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlan([]ModelSpec{tc.spec}, []Device{h100}, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			m := p.Models[0]
			if m.Fits != tc.fits || m.Parallel != tc.parallel || m.CtxPerSeq != tc.ctx {
				t.Fatalf("fits=%v %d x %d, want fits=%v %d x %d\n%s", m.Fits, m.Parallel, m.CtxPerSeq, tc.fits, tc.parallel, tc.ctx, p.Table())
			}
			if want := tc.kv; want != "" && m.KVType != want {
				t.Errorf("kv type %s, want %s", m.KVType, want)
			}
			if tc.fits {
				assertMaximal(t, m, tc.opts)
				if len(m.Advice) > 0 && len(tc.advice) == 0 {
					t.Errorf("unexpected advice %v", m.Advice)
				}
			}
			all := strings.Join(m.Advice, "\n")
			for _, a := range tc.advice {
				if !strings.Contains(all, a) {
					t.Errorf("advice lacks %q:\n%s", a, all)
				}
			}
		})
	}
}

func TestPlanPartialOffload(t *testing.T) {
	l4 := Device{Index: 0, Name: "NVIDIA L4", TotalBytes: 23034 << 20, FreeBytes: 22800 << 20, Kind: KindGPU}
	spec := ModelSpec{Name: "mixtral", Info: fixtureInfo(t, mixtralArch), MemoryLimitBytes: 90 * GiB, CPUCores: 8, Parallel: 8, CtxPerSeq: 8192, GPULayers: -1}
	opts := Options{HostCores: 16, HostFreeBytes: 64 * GiB}
	p, err := NewPlan([]ModelSpec{spec}, []Device{l4}, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := p.Models[0]
	if !m.Fits || !p.Fits() {
		t.Fatalf("partial offload should fit:\n%s", p.Table())
	}
	if m.NGPULayers <= 0 || m.NGPULayers >= 33 {
		t.Fatalf("n_gpu_layers = %d, want a partial offload", m.NGPULayers)
	}
	// The limit allows the requested context, so only layers moved.
	if m.Parallel != 8 || m.CtxPerSeq != 8192 {
		t.Errorf("context changed to %d x %d", m.Parallel, m.CtxPerSeq)
	}
	usable := p.Devices[0].UsableBytes()
	if m.DeviceBytes > usable {
		t.Errorf("device bytes %d over usable %d", m.DeviceBytes, usable)
	}
	// As many layers as fit: one more layer (its weights and KV) would not.
	extra := m.Info.LayerBytes[m.Info.BlockCount-m.NGPULayers-1] + KVBytes(HeaderInfo{HeadCountKV: m.Info.HeadCountKV[:1], KeyLength: m.Info.KeyLength, ValueLength: m.Info.ValueLength}, kvtype.F16, m.NCtx)
	if m.DeviceBytes+extra <= usable {
		t.Errorf("one more layer (%d bytes) would still fit: %d + %d <= %d", extra, m.DeviceBytes, extra, usable)
	}
	if m.HostBytes == 0 || p.HostPlannedBytes != m.HostBytes {
		t.Errorf("host bytes %d, plan host %d", m.HostBytes, p.HostPlannedBytes)
	}
	table := p.Table()
	for _, s := range []string{"partial offload", fmt.Sprintf("only %d of 33 layers fit on GPU 0", m.NGPULayers), "to keep every layer on the GPU"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}

	// Too little host RAM for the CPU layers: the plan no longer fits.
	opts.HostFreeBytes = 4 * GiB
	if p, err = NewPlan([]ModelSpec{spec}, []Device{l4}, opts); err != nil {
		t.Fatal(err)
	}
	if p.Fits() {
		t.Fatalf("fits with 4 GiB host RAM:\n%s", p.Table())
	}
}

func TestPlanCPUOnly(t *testing.T) {
	cpu := Device{Index: 0, Name: "AMD EPYC", TotalBytes: 24 * GiB, FreeBytes: 22 * GiB, Kind: KindCPU, Cores: 2}
	spec := ModelSpec{Name: "phi3", Info: fixtureInfo(t, phi3Arch), MemoryLimitBytes: 8 * GiB, CPUCores: 2, Parallel: 2, CtxPerSeq: 4096, GPULayers: 99}
	p, err := NewPlan([]ModelSpec{spec}, []Device{cpu}, Options{HostCores: 2})
	if err != nil {
		t.Fatal(err)
	}
	m := p.Models[0]
	if !p.Fits() || m.NGPULayers != 0 || m.DeviceBytes != m.Need.Total() || m.HostBytes != 0 {
		t.Fatalf("cpu plan: fits=%v layers=%d device=%d host=%d\n%s", p.Fits(), m.NGPULayers, m.DeviceBytes, m.HostBytes, p.Table())
	}
	if !strings.Contains(strings.Join(m.Warnings, "\n"), "gpu_layers 99 ignored") {
		t.Errorf("warnings %v lack the ignored gpu_layers", m.Warnings)
	}

	// RAM, not the limit, binds: 6 GiB free leaves room for one slot only.
	cpu.FreeBytes = 6 * GiB
	if p, err = NewPlan([]ModelSpec{spec}, []Device{cpu}, Options{HostCores: 2}); err != nil {
		t.Fatal(err)
	}
	if m = p.Models[0]; !m.Fits || m.Parallel != 1 || !strings.Contains(m.Reasons[0], "CPU's unplanned memory") {
		t.Fatalf("want parallel 1 because of RAM: %+v\n%s", m, p.Table())
	}
}

func TestPlanTwoGPUsSpreadsModels(t *testing.T) {
	g0, g1 := h100, h100
	g1.Index, g1.UUID = 1, "GPU-1"
	specs := seedSpecs(t)[:2]
	p, err := NewPlan(specs, []Device{g0, g1}, Options{HostCores: 16})
	if err != nil {
		t.Fatal(err)
	}
	if p.Models[0].Device.Index == p.Models[1].Device.Index {
		t.Fatalf("both models on GPU %d:\n%s", p.Models[0].Device.Index, p.Table())
	}
}

func TestPlanExplicitLayersOvercommitDevice(t *testing.T) {
	small := Device{Index: 0, Name: "small", TotalBytes: 8 * GiB, FreeBytes: 8 * GiB, Kind: KindGPU}
	spec := ModelSpec{Name: "hermes", Info: fixtureInfo(t, hermesArch), Parallel: 4, CtxPerSeq: 8192, GPULayers: 33}
	// With room to cut the context, the planner keeps the explicit layers and halves the slots.
	p, err := NewPlan([]ModelSpec{spec}, []Device{small}, Options{HostCores: 4})
	if err != nil {
		t.Fatal(err)
	}
	if m := p.Models[0]; !p.Fits() || m.NGPULayers != 33 || m.Parallel != 2 || !strings.Contains(m.Reasons[0], "GPU 0's unplanned memory") {
		t.Fatalf("want 33 layers at parallel 2:\n%s", p.Table())
	}
	// With floors at the request there is nothing to cut: the device is over-committed.
	p, err = NewPlan([]ModelSpec{spec}, []Device{small}, Options{HostCores: 4, MinParallel: 4, MinCtxPerSeq: 8192})
	if err != nil {
		t.Fatal(err)
	}
	if p.Fits() || p.Models[0].NGPULayers != 33 || p.Devices[0].Fits() {
		t.Fatalf("explicit 33 layers of 8.5 GiB on an 8 GiB GPU: fits=%v\n%s", p.Fits(), p.Table())
	}
	if !strings.Contains(p.Table(), "OVER by") {
		t.Errorf("table does not flag the device:\n%s", p.Table())
	}

	// gpu_layers 0 keeps the model (and its compute buffer) in host memory.
	spec.GPULayers = 0
	if p, err = NewPlan([]ModelSpec{spec}, []Device{small}, Options{HostCores: 4}); err != nil {
		t.Fatal(err)
	}
	if m := p.Models[0]; m.NGPULayers != 0 || m.DeviceBytes != 0 || m.HostBytes != m.Need.Total() {
		t.Fatalf("gpu_layers 0: layers=%d device=%d host=%d", m.NGPULayers, m.DeviceBytes, m.HostBytes)
	}
}

func TestPlanInvalidInput(t *testing.T) {
	info := fixtureInfo(t, phi3Arch)
	ok := ModelSpec{Name: "a", Info: info, GPULayers: -1}
	tests := []struct {
		name    string
		specs   []ModelSpec
		devices []Device
		is      error
		msg     string
	}{
		{"no devices", []ModelSpec{ok}, nil, ErrNoDevices, ""},
		{"duplicate", []ModelSpec{ok, ok}, []Device{h100}, nil, "duplicate name"},
		{"empty name", []ModelSpec{{Info: info}}, []Device{h100}, nil, "empty name"},
		{"bad kv", []ModelSpec{{Name: "a", Info: info, KVType: "q3"}}, []Device{h100}, nil, "kv_type"},
		{"negative", []ModelSpec{{Name: "a", Info: info, Parallel: -2}}, []Device{h100}, nil, "negative"},
		{"missing file", []ModelSpec{{Name: "a", Path: filepath.Join(t.TempDir(), "none.gguf")}}, []Device{h100}, fs.ErrNotExist, `model "a"`},
		{"no info", []ModelSpec{{Name: "a"}}, []Device{h100}, nil, "neither Info nor Path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPlan(tc.specs, tc.devices, Options{})
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q lacks %q", err, tc.msg)
			}
		})
	}
}

func TestPlanWarnings(t *testing.T) {
	spec := ModelSpec{Name: "openchat", Info: fixtureInfo(t, openchatArch), CtxPerSeq: 16384, KVType: kvtype.Q8_0, GPULayers: -1, NoFlashAttention: true}
	p, err := NewPlan([]ModelSpec{spec}, []Device{h100}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(p.Models[0].Warnings, "\n")
	for _, s := range []string{"exceeds the model's trained context 8192", "needs flash attention for a quantized V cache"} {
		if !strings.Contains(w, s) {
			t.Errorf("warnings lack %q: %s", s, w)
		}
	}
	// With flash attention on (the default) a q8_0 cache is fine.
	spec.NoFlashAttention, spec.CtxPerSeq = false, 8192
	if p, err = NewPlan([]ModelSpec{spec}, []Device{h100}, Options{}); err != nil {
		t.Fatal(err)
	}
	if w := p.Models[0].Warnings; len(w) != 0 {
		t.Errorf("unexpected warnings %v", w)
	}
}
