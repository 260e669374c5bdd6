package gpu

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"

	"github.com/hxp-ai/hxp/kvtype"
)

// GiB is 2^30 bytes. The planner's advice states memory_limit_gb in these units.
const GiB = 1 << 30

// Compute-buffer model and its calibration.
//
// llama.cpp sizes its compute buffer by reserving the graph of one worst-case micro-batch
// (llama-context.cpp, graph_reserve): n_tokens = min(n_ctx, n_ubatch) tokens (rounded up to
// a multiple of n_seq_max), every one of them an output, attending to a full cache. ggml's
// allocator (ggml-alloc.c) gives a tensor memory when it is computed and takes it back after
// its last use, so the buffer is the peak of the activations that are live at one time, not
// their sum. The peak falls in a layer's attention, in its feed-forward network or at the
// output head, and the estimate is the largest of the three (f32 activations; t = n_tokens,
// kv = the cache cells one token attends to, h = n_embd):
//
//	attention: 4*kv*t (KQ mask, an input live through every layer)
//	           + 4*kv*t*n_head (KQ scores; softmax runs in place)  without flash attention
//	           + 2*kv*t (the mask cast to f16)                      with flash attention
//	           + 4*t*(ComputeAttnActivations*h + n_embd_k_gqa + n_embd_v_gqa)
//	ffn:       the live mask (4*kv*t, or 2*kv*t as f16 with flash attention)
//	           + 4*t*(ComputeFFNActivations*n_ff*max(1, n_expert_used) + ComputeFFNHidden*h)
//	output:    4*t*(n_vocab + ComputeOutputHidden*h) (logits and the final norm)
//
// plus the output (logits) buffer, 4*n_vocab*n_seq_max, which llama.cpp allocates beside it.
// kv is the per-sequence context padded to 256 (PadCtx(PadCtx(n_ctx)/n_seq)) when each
// sequence owns its cells, as the engine's contexts do (llama.cpp kv_unified = false; the
// batch is split into one stream per sequence), and the whole padded n_ctx when the cache is
// unified (Options.UnifiedKV). HeaderInfo has no n_ff, so ffnWidth estimates it from the
// block weights (see there).
//
// The coefficients count the other activations alive at each moment: at the attention peak
// the residual stream, the normed input or Q, the attention output and its contiguous copy
// (4 x n_embd) and the new K and V rows; in the FFN the gate, up and gated products
// (3 x n_ff) beside the residual, the normed input and the down projection; at the head the
// final norm. They were fitted to llama.cpp's "compute buffer size" on the CPU backend (the
// llama.cpp vendored by github.com/ollama/ollama v0.17.4) over 1536 contexts of seven model
// shapes (the tiny, demo and bench presets, bench also as q8_0, and gpu/calibration_test.go's
// gqa, vocab, wide and moe shapes: n_embd 128..1024, n_vocab 2000..32000, 1 to 8 query heads
// per KV head, 8 experts): n_ubatch 64..2048, 256..4096 tokens per sequence, 1..8 sequences,
// flash attention on and off (TestCalibrationSweep repeats the sweep). With 1000 or more
// tokens per sequence every estimate is within -13%..+4% of the allocation, mean |error| 2%
// (without flash attention -1%..+3%). The misses are the allocator's fragmentation, which
// can leave a large tensor above memory freed earlier; it is worst at 256 tokens per
// sequence with flash attention, where estimates run up to 26% low.
//
// A GPU allocates the same graph, but CUDA kernels keep their scratch (cuBLAS workspaces,
// dequantization and flash-attention temporaries) in memory pools outside the compute
// buffer, and with partial offload part of the graph runs in a host compute buffer: the
// constants must be checked against the "compute buffer size" lines printed on a GPU host
// (and DefaultDeviceReserve covers the pools until then). Record the measurements and the
// llama.cpp version next to the constants when you change them.
const (
	// ComputeAttnActivations is the n_embd-wide activations per token beside the KQ scores.
	ComputeAttnActivations = 4
	// ComputeFFNActivations is the n_ff-wide activations per token at the FFN peak.
	ComputeFFNActivations = 3
	// ComputeFFNHidden is the n_embd-wide activations per token at the FFN peak.
	ComputeFFNHidden = 3
	// ComputeOutputHidden is the n_embd-wide activations per token beside the logits.
	ComputeOutputHidden = 1
)

// Planner defaults.
const (
	// DefaultBatchSize is the n_ubatch assumed by the compute estimate.
	DefaultBatchSize = 512
	// DefaultMinCtxPerSeq is the floor below which the planner will not cut a sequence's context.
	DefaultMinCtxPerSeq = 2048
	// DefaultDeviceReserve is left unplanned on each device for the CUDA context, cuBLAS
	// workspaces and fragmentation (or, on the CPU device, for the OS and the Go heap).
	DefaultDeviceReserve = 768 << 20
	// DefaultCtxPerSeq caps the context per sequence when a spec leaves it 0.
	DefaultCtxPerSeq = 4096
	// ctxPad is llama.cpp's padding of n_ctx; the planner reduces context in these steps.
	ctxPad = 256
)

// ModelSpec is one configured model as the planner sees it.
type ModelSpec struct {
	// Name identifies the model in the plan and its advice.
	Name string
	// Path is the GGUF file; read when Info is nil.
	Path string
	// Info holds the model's facts; nil means read them from Path.
	Info *HeaderInfo
	// MemoryLimitBytes caps everything the model needs (weights, KV, compute buffer) on
	// its device and in host memory together; 0 means no cap beyond the device.
	MemoryLimitBytes uint64
	// CPUCores is the model's thread count; values below 1 count as 1.
	CPUCores int
	// CtxPerSeq is the context of each sequence; 0 means min(n_ctx_train, DefaultCtxPerSeq).
	CtxPerSeq int
	// Parallel is the number of sequence slots; 0 means 1.
	Parallel int
	// KVType is the cache type; "" means f16.
	KVType kvtype.Type
	// GPULayers is llama.cpp's n_gpu_layers: -1 lets the planner choose, 0 keeps the model
	// on the CPU, N offloads the last N blocks (BlockCount+1 also offloads the output head).
	GPULayers int
	// BatchSize is the model's n_ubatch for the compute estimate; 0 means Options.BatchSize.
	BatchSize int
	// NoFlashAttention says the model runs without flash attention (see Options).
	NoFlashAttention bool
}

// Options tune the planner. The zero value uses the defaults.
type Options struct {
	// BatchSize is the default n_ubatch for the compute estimate; 0 means DefaultBatchSize.
	BatchSize int
	// MinParallel is the floor for reducing slots; 0 means 1.
	MinParallel int
	// MinCtxPerSeq is the floor for reducing context per sequence; 0 means
	// DefaultMinCtxPerSeq. A spec asking for less keeps what it asked for.
	MinCtxPerSeq int
	// HostCores is the number of CPU cores for the cpu_cores check; 0 means runtime.NumCPU().
	HostCores int
	// HostFreeBytes is the host memory available for the parts of GPU models that stay in
	// RAM (token embeddings, CPU layers); 0 leaves it unchecked. Ignored on a CPU-only host,
	// where the CPU device itself is the budget.
	HostFreeBytes uint64
	// DeviceReserveBytes is kept free on each device; 0 means DefaultDeviceReserve and a
	// negative value means none.
	DeviceReserveBytes int64
	// NoFlashAttention adds the KQ score buffer that llama.cpp allocates without flash
	// attention to the compute estimate of every model.
	NoFlashAttention bool
	// UnifiedKV says the contexts share one KV buffer among their sequences (llama.cpp's
	// kv_unified), so that attention spans the whole n_ctx. The engine's generation contexts
	// give each sequence its own cells (the default, false): attention then spans one
	// sequence's context, which keeps the compute buffer independent of the slot count.
	UnifiedKV bool
}

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.MinParallel <= 0 {
		o.MinParallel = 1
	}
	if o.MinCtxPerSeq <= 0 {
		o.MinCtxPerSeq = DefaultMinCtxPerSeq
	}
	if o.HostCores <= 0 {
		o.HostCores = runtime.NumCPU()
	}
	return o
}

func (o Options) reserve() uint64 {
	switch {
	case o.DeviceReserveBytes < 0:
		return 0
	case o.DeviceReserveBytes == 0:
		return DefaultDeviceReserve
	}
	return uint64(o.DeviceReserveBytes)
}

// Need is the memory one model needs at one context size.
type Need struct {
	// Weights is the size of all tensors.
	Weights uint64 `json:"weights_bytes"`
	// KV is the KV cache for n_ctx tokens.
	KV uint64 `json:"kv_bytes"`
	// Compute is the estimated compute buffer.
	Compute uint64 `json:"compute_bytes"`
}

// Total is Weights + KV + Compute.
func (n Need) Total() uint64 { return n.Weights + n.KV + n.Compute }

// PadCtx rounds a context size up to llama.cpp's padding of 256 tokens.
func PadCtx(n int) int { return (n + ctxPad - 1) / ctxPad * ctxPad }

// KVBytes is the KV cache of nCtx tokens: for every layer, K and V of n_head_kv heads.
// With key_length = value_length = head_dim and uniform n_head_kv this is
// 2 * n_layer * n_head_kv * head_dim * bytes(type) per token. Sliding-window layers are
// counted at full length, which over-estimates models that use them.
func KVBytes(info HeaderInfo, kv kvtype.Type, nCtx int) uint64 {
	var s uint64
	for _, h := range info.HeadCountKV {
		s += kv.Bytes(uint64(h) * uint64(info.KeyLength+info.ValueLength) * uint64(nCtx))
	}
	return s
}

// kvCells is the KV cache size, in cells, of a context of parallel sequences of ctxPerSeq
// tokens, and the cells one token attends to. llama.cpp pads n_ctx to 256; with a cache per
// sequence it also pads each sequence's share and grows n_ctx to n_seq times that.
func kvCells(parallel, ctxPerSeq int, unified bool) (cells, attended int) {
	parallel = max(parallel, 1)
	nCtx := PadCtx(parallel * ctxPerSeq)
	if unified {
		return nCtx, nCtx
	}
	seq := PadCtx(nCtx / parallel)
	return seq * parallel, seq
}

// ffnWidth estimates n_ff, the feed-forward width of a block (per expert for MoE), which
// HeaderInfo does not carry: a block's weights less its attention projections and norms,
// divided by the 3 FFN matrices (gate, up, down) of n_embd x n_ff each. The bytes per
// weight are those of the token embedding. Quantization mixes usually store FFN matrices
// at least as precisely as the embedding (Q4_K_M: 4.5 bits for the embedding, 4.5 to 6.6
// bits in the blocks), so the estimate errs high (+16% and +21% for the Q4_K_M-shaped
// Mistral and Phi-3 fixtures) and is exact when all matrices share one type. It returns 0
// when the facts are missing.
func ffnWidth(info HeaderInfo) uint64 {
	e, v := uint64(info.EmbeddingLength), uint64(info.VocabSize)
	if e == 0 || v == 0 || info.InputBytes == 0 {
		return 0
	}
	perWeight := float64(info.InputBytes) / float64(e*v)
	experts := uint64(max(info.ExpertCount, 1))
	var width uint64
	for i, lb := range info.LayerBytes {
		kvHeads := 0
		if i < len(info.HeadCountKV) {
			kvHeads = info.HeadCountKV[i]
		}
		// Two f32 norm weights, and the f32 MoE router (llama.cpp never quantizes it).
		f32 := 4 * (2*e + e*uint64(info.ExpertCount))
		if lb <= f32 {
			continue
		}
		attn := float64(e) * float64(uint64(info.HeadCount+kvHeads)*uint64(info.KeyLength+info.ValueLength))
		ffn := float64(lb-f32)/perWeight - attn
		if ffn > 0 {
			width = max(width, uint64(ffn/float64(3*e*experts)))
		}
	}
	return width
}

// ComputeBytes estimates llama.cpp's compute buffer and its output (logits) buffer for
// parallel sequences of ctxPerSeq tokens (see ComputeAttnActivations for the model).
func ComputeBytes(info HeaderInfo, parallel, ctxPerSeq int, opts Options) uint64 {
	opts = opts.withDefaults()
	parallel = max(parallel, 1)
	nCtx, attended := kvCells(parallel, ctxPerSeq, opts.UnifiedKV)
	t := uint64(min(nCtx, opts.BatchSize))
	t = (t + uint64(parallel) - 1) / uint64(parallel) * uint64(parallel)
	kv := uint64(attended)
	h := uint64(info.EmbeddingLength)
	var kvDim uint64
	for _, n := range info.HeadCountKV {
		kvDim = max(kvDim, uint64(n)*uint64(info.KeyLength+info.ValueLength))
	}
	mask := 4 * kv * t
	attn := mask + 4*t*(ComputeAttnActivations*h+kvDim)
	live := mask // the mask the FFN sees: f32, or its f16 copy under flash attention
	if opts.NoFlashAttention {
		attn += 4 * kv * t * uint64(info.HeadCount)
	} else {
		attn += 2 * kv * t
		live = 2 * kv * t
	}
	ffn := live + 4*t*(ComputeFFNActivations*ffnWidth(info)*uint64(max(info.ExpertUsedCount, 1))+ComputeFFNHidden*h)
	out := 4 * t * (uint64(info.VocabSize) + ComputeOutputHidden*h)
	return max(attn, ffn, out) + 4*uint64(info.VocabSize)*uint64(parallel)
}

// Estimate returns the memory a model needs for parallel sequences of ctxPerSeq tokens. The
// KV cache counts the cells llama.cpp allocates after padding (see kvCells).
func Estimate(info HeaderInfo, kv kvtype.Type, parallel, ctxPerSeq int, opts Options) Need {
	cells, _ := kvCells(parallel, ctxPerSeq, opts.UnifiedKV)
	return Need{Weights: info.WeightBytes(), KV: KVBytes(info, kv, cells), Compute: ComputeBytes(info, parallel, ctxPerSeq, opts)}
}

// ModelPlan is the planner's decision for one model.
type ModelPlan struct {
	// Name is the spec's name.
	Name string `json:"name"`
	// Device is where the model's offloaded layers (or, on a CPU host, all of it) live.
	Device Device `json:"device"`
	// NGPULayers is the n_gpu_layers to pass to llama.cpp (0 on the CPU device).
	NGPULayers int `json:"n_gpu_layers"`
	// Parallel and CtxPerSeq are the planned slots and context per slot; NCtx is their
	// product padded to 256, the n_ctx to pass to llama.cpp.
	Parallel  int `json:"parallel"`
	CtxPerSeq int `json:"ctx_per_seq"`
	NCtx      int `json:"n_ctx"`
	// RequestedParallel and RequestedCtxPerSeq are what the spec asked for (after defaults).
	RequestedParallel  int `json:"requested_parallel"`
	RequestedCtxPerSeq int `json:"requested_ctx_per_seq"`
	// KVType is the cache type.
	KVType kvtype.Type `json:"kv_type"`
	// CPUCores is the model's thread count.
	CPUCores int `json:"cpu_cores"`
	// Info holds the model's facts.
	Info HeaderInfo `json:"info"`
	// Need is the memory at the planned context.
	Need Need `json:"need"`
	// DeviceBytes and HostBytes split Need between the GPU and host RAM. On the CPU device
	// DeviceBytes is everything.
	DeviceBytes uint64 `json:"device_bytes"`
	HostBytes   uint64 `json:"host_bytes"`
	// LimitBytes is the spec's memory limit (0: none).
	LimitBytes uint64 `json:"limit_bytes"`
	// Fits is false when no allowed context fits the limit or the device.
	Fits bool `json:"fits"`
	// Reasons says what the planner changed from the spec, and why.
	Reasons []string `json:"reasons,omitempty"`
	// Problems says why the model does not fit.
	Problems []string `json:"problems,omitempty"`
	// Warnings flags legal but doubtful settings.
	Warnings []string `json:"warnings,omitempty"`
	// Advice gives concrete config changes.
	Advice []string `json:"advice,omitempty"`
}

// DevicePlan is one device's share of the plan.
type DevicePlan struct {
	// Device is the device as discovered.
	Device Device `json:"device"`
	// ReserveBytes is kept free (Options.DeviceReserveBytes).
	ReserveBytes uint64 `json:"reserve_bytes"`
	// PlannedBytes is the sum of the models' DeviceBytes placed here.
	PlannedBytes uint64 `json:"planned_bytes"`
	// Models names the models placed here.
	Models []string `json:"models"`
}

// UsableBytes is the free memory less the reserve.
func (d DevicePlan) UsableBytes() uint64 { return subSat(d.Device.FreeBytes, d.ReserveBytes) }

// Fits reports whether the planned bytes fit the usable memory.
func (d DevicePlan) Fits() bool { return d.PlannedBytes <= d.UsableBytes() }

// Plan is the memory and thread plan for a set of models on a host.
type Plan struct {
	// Models holds one entry per spec, in spec order.
	Models []ModelPlan `json:"models"`
	// Devices holds one entry per device.
	Devices []DevicePlan `json:"devices"`
	// HostCores is the host's core count and CoresRequested the sum of the models' cpu_cores.
	HostCores      int `json:"host_cores"`
	CoresRequested int `json:"cores_requested"`
	// HostFreeBytes is Options.HostFreeBytes and HostPlannedBytes the sum of the GPU models'
	// HostBytes (0 on a CPU-only host).
	HostFreeBytes    uint64 `json:"host_free_bytes"`
	HostPlannedBytes uint64 `json:"host_planned_bytes"`
	// Problems are host-wide reasons the plan does not fit.
	Problems []string `json:"problems,omitempty"`
	// Advice gives host-wide config changes.
	Advice []string `json:"advice,omitempty"`
}

// Fits reports whether every model fits, no device is over-committed, host RAM suffices
// and the models' cpu_cores do not oversubscribe the host.
func (p Plan) Fits() bool {
	if len(p.Problems) > 0 {
		return false
	}
	for _, m := range p.Models {
		if !m.Fits {
			return false
		}
	}
	for _, d := range p.Devices {
		if !d.Fits() {
			return false
		}
	}
	return p.HostFreeBytes == 0 || p.HostPlannedBytes <= p.HostFreeBytes
}

// Model returns the plan of the named model.
func (p Plan) Model(name string) (ModelPlan, bool) {
	for _, m := range p.Models {
		if m.Name == name {
			return m, true
		}
	}
	return ModelPlan{}, false
}

// ErrNoDevices is returned by NewPlan when the device list is empty.
var ErrNoDevices = errors.New("gpu: no devices to plan on")

// NewPlan places each model on a device and chooses its n_gpu_layers, parallel slots and
// context. Models are placed in spec order; each goes to the GPU with the most unplanned
// memory (or to the CPU device when there is no GPU).
//
// For each model the planner keeps the requested context when weights + KV + compute fit
// both its memory limit and the device's remaining memory with every layer offloaded.
// Otherwise it lowers Parallel, then CtxPerSeq (in steps of 256), down to the floors in
// opts, keeping every layer on the GPU: fewer slots cost throughput, CPU layers cost far
// more. Only when even the floor does not fit the device does it offload as many layers as
// fit, at the largest context the memory limit allows. A model whose floor does not fit its
// memory limit is marked as not fitting, with advice; NewPlan returns an error only for
// invalid input (no devices, unreadable GGUF, bad spec).
func NewPlan(models []ModelSpec, devices []Device, opts Options) (Plan, error) {
	opts = opts.withDefaults()
	if len(devices) == 0 {
		return Plan{}, ErrNoDevices
	}
	p := Plan{HostCores: opts.HostCores, HostFreeBytes: opts.HostFreeBytes}
	hasGPU := false
	for _, d := range devices {
		p.Devices = append(p.Devices, DevicePlan{Device: d, ReserveBytes: opts.reserve(), Models: []string{}})
		hasGPU = hasGPU || d.Kind == KindGPU
	}
	if !hasGPU {
		p.HostFreeBytes = 0
	}
	seen := map[string]bool{}
	for i, spec := range models {
		if spec.Name == "" {
			return Plan{}, fmt.Errorf("gpu: model %d: empty name", i)
		}
		if seen[spec.Name] {
			return Plan{}, fmt.Errorf("gpu: model %q: duplicate name", spec.Name)
		}
		seen[spec.Name] = true
		mp, err := planModel(&p, spec, hasGPU, opts)
		if err != nil {
			return Plan{}, err
		}
		p.Models = append(p.Models, mp)
		p.CoresRequested += mp.CPUCores
	}
	if p.CoresRequested > p.HostCores {
		p.Problems = append(p.Problems, fmt.Sprintf(
			"cpu_cores over all models sum to %d but the host has %d cores: llama.cpp's thread pools spin-wait, and oversubscribed they run up to 70x slower",
			p.CoresRequested, p.HostCores))
		p.Advice = append(p.Advice, fmt.Sprintf("lower cpu_cores so that they sum to at most %d (now %s)", p.HostCores, coresList(p.Models)))
	}
	if p.HostFreeBytes > 0 && p.HostPlannedBytes > p.HostFreeBytes {
		p.Problems = append(p.Problems, fmt.Sprintf("host RAM: the models' CPU-resident parts need %s but %s is available",
			gib(p.HostPlannedBytes), gib(p.HostFreeBytes)))
	}
	for _, d := range p.Devices {
		if !d.Fits() {
			p.Problems = append(p.Problems, fmt.Sprintf("%s: planned %s exceeds the %s usable (%s free less %s reserve)",
				devName(d.Device), gib(d.PlannedBytes), gib(d.UsableBytes()), gib(d.Device.FreeBytes), gib(d.ReserveBytes)))
		}
	}
	return p, nil
}

// placement is one candidate configuration of a model.
type placement struct {
	parallel, ctx, layers int
}

// modelCtx holds what planModel needs while it searches.
type modelCtx struct {
	info     HeaderInfo
	kv       kvtype.Type
	opts     Options
	limit    uint64
	dev      *DevicePlan
	onCPU    bool   // the device is the CPU: everything lives in its memory
	devLeft  uint64 // unplanned memory of the device
	hostLeft uint64 // unplanned host memory for GPU models; MaxUint64 if unchecked
}

func (c *modelCtx) full() int { return c.info.BlockCount + 1 }

// split returns the need at a placement and the bytes on the device and in host memory.
func (c *modelCtx) split(pl placement, kv kvtype.Type) (Need, uint64, uint64) {
	need := Estimate(c.info, kv, pl.parallel, pl.ctx, c.opts)
	nCtx, _ := kvCells(pl.parallel, pl.ctx, c.opts.UnifiedKV)
	if c.onCPU {
		return need, need.Total(), 0
	}
	nl := c.info.BlockCount
	onDev := min(pl.layers, nl)
	var dev uint64
	for i := nl - onDev; i < nl; i++ {
		dev += c.info.LayerBytes[i]
		dev += kv.Bytes(uint64(c.info.HeadCountKV[i]) * uint64(c.info.KeyLength+c.info.ValueLength) * uint64(nCtx))
	}
	if pl.layers > nl {
		dev += c.info.OutputBytes + c.info.OtherBytes
	}
	if pl.layers > 0 {
		dev += need.Compute
	}
	return need, dev, need.Total() - dev
}

// check says which budget a placement breaks: "" when it fits.
func (c *modelCtx) check(pl placement, kv kvtype.Type, withDevice bool) string {
	need, dev, host := c.split(pl, kv)
	switch {
	case c.limit > 0 && need.Total() > c.limit:
		return fmt.Sprintf("the memory limit (%s)", gib(c.limit))
	case withDevice && dev > c.devLeft:
		return fmt.Sprintf("%s's unplanned memory (%s)", devName(c.dev.Device), gib(c.devLeft))
	case host > c.hostLeft:
		return fmt.Sprintf("host RAM (%s unplanned)", gib(c.hostLeft))
	}
	return ""
}

// search finds the largest context that passes check: requested parallel and context first,
// then fewer slots, then shorter sequences (multiples of 256) at the slot floor.
func (c *modelCtx) search(reqP, reqC, floorP, floorC, layers int, kv kvtype.Type, withDevice bool) (placement, bool) {
	for par := reqP; par >= floorP; par-- {
		if c.check(placement{par, reqC, layers}, kv, withDevice) == "" {
			return placement{par, reqC, layers}, true
		}
	}
	// Binary search over multiples of ctxPad in [floorC, reqC); need grows with context.
	lo, hi := (floorC+ctxPad-1)/ctxPad, (reqC-1)/ctxPad
	best := -1
	for lo <= hi {
		mid := (lo + hi) / 2
		if c.check(placement{floorP, mid * ctxPad, layers}, kv, withDevice) == "" {
			best, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	if best >= 0 && best*ctxPad >= floorC {
		return placement{floorP, best * ctxPad, layers}, true
	}
	if floorC < reqC && floorC%ctxPad != 0 && c.check(placement{floorP, floorC, layers}, kv, withDevice) == "" {
		return placement{floorP, floorC, layers}, true
	}
	return placement{}, false
}

func planModel(p *Plan, spec ModelSpec, hasGPU bool, opts Options) (ModelPlan, error) {
	var info HeaderInfo
	if spec.Info != nil {
		info = *spec.Info
	} else {
		if spec.Path == "" {
			return ModelPlan{}, fmt.Errorf("gpu: model %q: neither Info nor Path is set", spec.Name)
		}
		var err error
		if info, err = ReadHeaderInfo(spec.Path); err != nil {
			return ModelPlan{}, fmt.Errorf("gpu: model %q: %w", spec.Name, err)
		}
	}
	if info.BlockCount <= 0 || len(info.LayerBytes) != info.BlockCount || len(info.HeadCountKV) != info.BlockCount {
		return ModelPlan{}, fmt.Errorf("gpu: model %q: model info is incomplete (n_layer %d, %d layer sizes, %d n_head_kv)",
			spec.Name, info.BlockCount, len(info.LayerBytes), len(info.HeadCountKV))
	}
	kv, err := kvtype.Parse(string(spec.KVType))
	if err != nil {
		return ModelPlan{}, fmt.Errorf("gpu: model %q: %w", spec.Name, err)
	}
	if spec.Parallel < 0 || spec.CtxPerSeq < 0 || spec.GPULayers < -1 {
		return ModelPlan{}, fmt.Errorf("gpu: model %q: negative parallel (%d), ctx_per_seq (%d) or gpu_layers (%d)",
			spec.Name, spec.Parallel, spec.CtxPerSeq, spec.GPULayers)
	}
	mp := ModelPlan{Name: spec.Name, KVType: kv, Info: info, LimitBytes: spec.MemoryLimitBytes, CPUCores: max(spec.CPUCores, 1)}
	mp.RequestedParallel = max(spec.Parallel, 1)
	mp.RequestedCtxPerSeq = spec.CtxPerSeq
	if mp.RequestedCtxPerSeq == 0 {
		mp.RequestedCtxPerSeq = DefaultCtxPerSeq
		if info.ContextLength > 0 {
			mp.RequestedCtxPerSeq = min(info.ContextLength, DefaultCtxPerSeq)
		}
	}
	if info.ContextLength > 0 && mp.RequestedCtxPerSeq > info.ContextLength {
		mp.Warnings = append(mp.Warnings, fmt.Sprintf("ctx_per_seq %d exceeds the model's trained context %d; quality degrades past it",
			mp.RequestedCtxPerSeq, info.ContextLength))
	}

	// Choose the device: the GPU with the most unplanned memory, else the CPU device.
	var dev *DevicePlan
	for i := range p.Devices {
		d := &p.Devices[i]
		if hasGPU && d.Device.Kind != KindGPU {
			continue
		}
		if dev == nil || subSat(d.UsableBytes(), d.PlannedBytes) > subSat(dev.UsableBytes(), dev.PlannedBytes) {
			dev = d
		}
	}
	mopts := opts
	if spec.BatchSize > 0 {
		mopts.BatchSize = spec.BatchSize
	}
	mopts.NoFlashAttention = opts.NoFlashAttention || spec.NoFlashAttention
	if kv.NeedsFlashAttention() && mopts.NoFlashAttention {
		mp.Warnings = append(mp.Warnings, fmt.Sprintf("kv_type %s with flash attention off: llama.cpp needs flash attention for a quantized V cache", kv))
	}
	c := &modelCtx{info: info, kv: kv, opts: mopts, limit: spec.MemoryLimitBytes, dev: dev,
		onCPU: dev.Device.Kind == KindCPU, devLeft: subSat(dev.UsableBytes(), dev.PlannedBytes), hostLeft: math.MaxUint64}
	if !c.onCPU && p.HostFreeBytes > 0 {
		c.hostLeft = subSat(p.HostFreeBytes, p.HostPlannedBytes)
	}
	mp.Device = dev.Device

	reqP, reqC := mp.RequestedParallel, mp.RequestedCtxPerSeq
	floorP, floorC := min(opts.MinParallel, reqP), min(opts.MinCtxPerSeq, reqC)
	layers := c.full()
	auto := spec.GPULayers < 0
	switch {
	case c.onCPU:
		if spec.GPULayers > 0 {
			mp.Warnings = append(mp.Warnings, fmt.Sprintf("gpu_layers %d ignored: no GPU, the model runs on the CPU", spec.GPULayers))
		}
		layers = 0
	case !auto && spec.GPULayers > c.full():
		mp.Warnings = append(mp.Warnings, fmt.Sprintf("gpu_layers %d is more than the model's %d layers (+1 output); using %d",
			spec.GPULayers, info.BlockCount, c.full()))
	case !auto:
		layers = spec.GPULayers
	}

	requested := placement{reqP, reqC, layers}
	chosen, ok := c.search(reqP, reqC, floorP, floorC, layers, kv, true)
	if !ok && auto && !c.onCPU {
		// Even the floor does not fit with every layer on the GPU: keep the largest context
		// the limit and host RAM allow and offload as many layers as fit.
		if pl, okLimit := c.search(reqP, reqC, floorP, floorC, layers, kv, false); okLimit {
			for l := c.full() - 1; l >= 0; l-- {
				pl.layers = l
				if c.check(pl, kv, true) == "" {
					chosen, ok = pl, true
					break
				}
			}
		}
	}
	if !ok {
		chosen = requested
	}
	mp.Fits = ok
	mp.Parallel, mp.CtxPerSeq, mp.NGPULayers = chosen.parallel, chosen.ctx, chosen.layers
	mp.NCtx = PadCtx(chosen.parallel * chosen.ctx)
	mp.Need, mp.DeviceBytes, mp.HostBytes = c.split(chosen, kv)
	explain(&mp, c, requested, chosen, ok, floorP, floorC)

	dev.PlannedBytes += mp.DeviceBytes
	dev.Models = append(dev.Models, mp.Name)
	if !c.onCPU {
		p.HostPlannedBytes += mp.HostBytes
	}
	return mp, nil
}

// kvAt is the KV cache of a placement with cache type kv.
func kvAt(c *modelCtx, pl placement, kv kvtype.Type) uint64 {
	cells, _ := kvCells(pl.parallel, pl.ctx, c.opts.UnifiedKV)
	return KVBytes(c.info, kv, cells)
}

// explain fills the reasons, problems and advice of a model plan.
func explain(mp *ModelPlan, c *modelCtx, req, got placement, ok bool, floorP, floorC int) {
	reqNeed, _, _ := c.split(req, c.kv)
	why := c.check(req, c.kv, true)
	q8Keeps := !c.kv.Quantized() && c.check(req, kvtype.Q8_0, true) == ""
	if !ok {
		floor := placement{floorP, floorC, req.layers}
		floorNeed, _, _ := c.split(floor, c.kv)
		mp.Problems = append(mp.Problems, fmt.Sprintf("needs %s at parallel %d x ctx %d (%s at the floor parallel %d x ctx %d), more than %s",
			gib(reqNeed.Total()), req.parallel, req.ctx, gib(floorNeed.Total()), floorP, floorC, why))
		if c.limit > 0 && floorNeed.Total() > c.limit {
			mp.Advice = append(mp.Advice, fmt.Sprintf("memory_limit_gb must be >= %d for parallel %d x ctx %d (>= %d at the floor)",
				ceilGiB(reqNeed.Total()), req.parallel, req.ctx, ceilGiB(floorNeed.Total())))
			if w := reqNeed.Weights + reqNeed.Compute; w > c.limit {
				mp.Advice = append(mp.Advice, fmt.Sprintf("the weights and compute buffer alone need %s: use a smaller quantization or raise the limit", gib(w)))
			}
		}
		if q8Keeps {
			mp.Advice = append(mp.Advice, fmt.Sprintf("set kv_type q8_0 (KV %s -> %s)", gib(reqNeed.KV), gib(kvAt(c, req, kvtype.Q8_0))))
		}
		if !c.onCPU && c.check(floor, c.kv, false) == "" {
			mp.Advice = append(mp.Advice, fmt.Sprintf("free memory on %s (%s unplanned) or move other models off it", devName(c.dev.Device), gib(c.devLeft)))
		}
		return
	}
	if got.parallel < req.parallel || got.ctx < req.ctx {
		if got.layers < req.layers {
			// The context was cut for the limit or host RAM; the device cost the layers.
			why = c.check(req, c.kv, false)
		}
		mp.Reasons = append(mp.Reasons, fmt.Sprintf("parallel %d x ctx %d needs %s, more than %s: planned parallel %d x ctx %d",
			req.parallel, req.ctx, gib(reqNeed.Total()), why, got.parallel, got.ctx))
		if got.parallel < req.parallel {
			mp.Advice = append(mp.Advice, fmt.Sprintf("lower parallel to %d", got.parallel))
		}
		if got.ctx < req.ctx {
			mp.Advice = append(mp.Advice, fmt.Sprintf("lower ctx_per_seq to %d", got.ctx))
		}
		if q8Keeps {
			mp.Advice = append(mp.Advice, fmt.Sprintf("or set kv_type q8_0 to keep parallel %d x ctx %d (KV %s -> %s)", req.parallel, req.ctx,
				gib(reqNeed.KV), gib(kvAt(c, req, kvtype.Q8_0))))
		} else if !c.kv.Quantized() && got.layers == req.layers {
			floorP, floorC := min(c.opts.MinParallel, req.parallel), min(c.opts.MinCtxPerSeq, req.ctx)
			if q, ok := c.search(req.parallel, req.ctx, floorP, floorC, req.layers, kvtype.Q8_0, true); ok && q.parallel*q.ctx > got.parallel*got.ctx {
				mp.Advice = append(mp.Advice, fmt.Sprintf("or set kv_type q8_0 to get parallel %d x ctx %d", q.parallel, q.ctx))
			}
		}
		if c.limit > 0 && reqNeed.Total() > c.limit {
			mp.Advice = append(mp.Advice, fmt.Sprintf("or raise memory_limit_gb to >= %d", ceilGiB(reqNeed.Total())))
		}
	}
	if !c.onCPU && got.layers < req.layers {
		full := got
		full.layers = c.full()
		_, devFull, _ := c.split(full, c.kv)
		mp.Reasons = append(mp.Reasons, fmt.Sprintf("only %d of %d layers fit on %s (%s unplanned, all layers need %s): the rest run on the CPU, much slower",
			got.layers, c.full(), devName(c.dev.Device), gib(c.devLeft), gib(devFull)))
		mp.Advice = append(mp.Advice, fmt.Sprintf("free %s on %s, or lower this model's context, or move it to another GPU, to keep every layer on the GPU",
			gib(subSat(devFull, c.devLeft)), devName(c.dev.Device)))
		if got.layers == 0 {
			mp.Warnings = append(mp.Warnings, "no layer fits on the GPU: the model runs entirely on the CPU")
		}
	}
}

func coresList(ms []ModelPlan) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s %d", m.Name, m.CPUCores)
	}
	return strings.Join(parts, ", ")
}

func devName(d Device) string {
	if d.Kind == KindCPU {
		return "CPU"
	}
	return "GPU " + d.Label()
}

func subSat(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// gib formats a byte count for plans in GiB; below one GiB in MiB, below one MiB in
// KiB, so that small models do not all read "0.0 GiB".
func gib(b uint64) string {
	switch {
	case b >= GiB:
		return fmt.Sprintf("%.1f GiB", float64(b)/GiB)
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
}

func ceilGiB(b uint64) uint64 { return (b + GiB - 1) / GiB }
