package engine

/*
#include "llama.h"
#include "ggml-cpu.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/hxp-ai/hxp/kvtype"
)

// Pooling selects how an embedding context reduces token embeddings to one vector.
type Pooling int

// Pooling kinds (llama.cpp's llama_pooling_type).
const (
	PoolingModel Pooling = -1 // the model's default
	PoolingNone  Pooling = 0
	PoolingMean  Pooling = 1
	PoolingCLS   Pooling = 2
	PoolingLast  Pooling = 3
)

// ParsePooling maps "mean", "cls", "last" or "" (model default) to a Pooling.
func ParsePooling(s string) (Pooling, error) {
	switch s {
	case "":
		return PoolingModel, nil
	case "mean":
		return PoolingMean, nil
	case "cls":
		return PoolingCLS, nil
	case "last":
		return PoolingLast, nil
	}
	return 0, fmt.Errorf("engine: pooling %q: %w (use mean, cls or last)", s, ErrInvalidArgument)
}

// ContextParams sizes an inference context.
type ContextParams struct {
	// SeqCtx is the context window of one sequence, in tokens. The KV cache holds
	// SeqCtx*Sequences tokens, split evenly: no sequence can take another's room.
	SeqCtx int
	// Sequences is the number of sequences decoded together (n_seq_max).
	Sequences int
	// Batch is the most tokens one Decode accepts (n_batch); UBatch the physical
	// micro-batch (n_ubatch, 0 = Batch).
	Batch, UBatch int
	// Threads for decoding; 0 means all host cores. Never more than the host has:
	// ggml's spinning thread pool is an order of magnitude slower oversubscribed.
	Threads int
	// FlashAttention enables flash attention where the backend supports it.
	FlashAttention bool
	// Embeddings makes this an embedding context with the given pooling.
	Embeddings bool
	Pooling    Pooling
	// KVType is the cache element type, a kvtype name: "f16" (default), "bf16", "f32",
	// "q8_0" or "q4_0" (the quantized ones need FlashAttention).
	KVType string
	// UnifiedKV shares one KV buffer among all sequences instead of giving each its
	// own SeqCtx cells. Embedding contexts always use it: with split buffers llama.cpp
	// cuts a multi-sequence batch into equal-length micro-batches, and pooling then
	// sees only part of a sequence.
	UnifiedKV bool
}

// Context is a llama.cpp inference context: a KV cache for up to Sequences sequences.
// It is not safe for concurrent use.
type Context struct {
	model *Model
	c     *C.struct_llama_context
	pool  *C.struct_ggml_threadpool // the decode threads (attachThreads)
	// poolThreads is the pool's size (this ggml declares ggml_threadpool_get_n_threads
	// but does not define it).
	poolThreads int
	// retired are pools a larger one replaced. ggml's CPU backend still holds the last
	// one it computed with and pauses it when it switches, at the next graph, so they
	// are freed only with the context.
	retired []*C.struct_ggml_threadpool
	mem     C.llama_memory_t
	params  ContextParams
	nCtx    int
	alloc   Memory
	// copying marks the sequences of a CopySequence not yet applied: llama.cpp copies
	// a buffer at the start of the next Decode, so until then dst's cells are listed but
	// their data is stale, and SaveSequence/RestoreSequence refuse both ends.
	copying map[int]bool
}

// Memory is what creating the context allocated: KV cache, compute and output buffers.
func (c *Context) Memory() Memory { return c.alloc }

// ggmlKVTypes maps every kvtype to llama.cpp's ggml type; "" is kvtype.Default.
// TestKVTypesAllMapped keeps it complete.
var ggmlKVTypes = map[kvtype.Type]C.enum_ggml_type{
	kvtype.F16: C.GGML_TYPE_F16, kvtype.BF16: C.GGML_TYPE_BF16, kvtype.F32: C.GGML_TYPE_F32,
	kvtype.Q8_0: C.GGML_TYPE_Q8_0, kvtype.Q4_0: C.GGML_TYPE_Q4_0,
}

// kvType is the cache type of the parameters ("" is kvtype.Default).
func (p ContextParams) kvType() kvtype.Type {
	if p.KVType == "" {
		return kvtype.Default
	}
	return kvtype.Type(p.KVType)
}

// Validate checks the parameters against the host and llama.cpp's limits.
func (p ContextParams) Validate() error {
	bad := func(field string, v any, allowed string) error {
		return fmt.Errorf("engine: context %s=%v: %w (%s)", field, v, ErrInvalidArgument, allowed)
	}
	switch {
	case p.SeqCtx < 16 || p.SeqCtx > 1<<20:
		return bad("seq_ctx", p.SeqCtx, "16..1048576 tokens per sequence")
	case p.Sequences < 1 || p.Sequences > MaxParallelSequences():
		return bad("sequences", p.Sequences, fmt.Sprintf("1..%d", MaxParallelSequences()))
	case p.Batch < 1 || p.Batch > 1<<16:
		return bad("batch", p.Batch, "1..65536")
	case p.UBatch < 0 || p.UBatch > p.Batch:
		return bad("ubatch", p.UBatch, "0..batch")
	case p.Threads < 0 || p.Threads > runtime.NumCPU():
		return bad("threads", p.Threads, fmt.Sprintf("0..%d (this host's cores)", runtime.NumCPU()))
	case p.Pooling < PoolingModel || p.Pooling > PoolingLast:
		return bad("pooling", p.Pooling, "mean, cls or last")
	}
	if kv := p.kvType(); !kv.Valid() {
		return bad("kv_type", p.KVType, kvtype.Names())
	} else if kv.NeedsFlashAttention() && !p.FlashAttention {
		return bad("kv_type", p.KVType, "a quantized cache needs flash_attention")
	}
	return nil
}

// NewContext creates an inference context for the model.
func (m *Model) NewContext(p ContextParams) (*Context, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if m.info.VocabOnly {
		return nil, fmt.Errorf("engine: model %s was loaded vocab-only (no weights): load it without VocabOnly to run it: %w", m.info.Path, ErrInvalidArgument)
	}
	if b := int(p.kvType().BlockSize()); m.info.HeadDimK%b != 0 || m.info.HeadDimV%b != 0 {
		return nil, fmt.Errorf("engine: context kv_type=%s: %w (its blocks of %d values do not divide the model's head widths K %d, V %d; use f16, bf16 or f32)",
			p.kvType(), ErrInvalidArgument, b, m.info.HeadDimK, m.info.HeadDimV)
	}
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	if p.UBatch == 0 {
		p.UBatch = p.Batch
	}
	if p.Threads == 0 {
		p.Threads = runtime.NumCPU()
	}
	cp := C.llama_context_default_params()
	cp.n_ctx = C.uint32_t(p.SeqCtx * p.Sequences)
	cp.n_batch = C.uint32_t(p.Batch)
	cp.n_ubatch = C.uint32_t(p.UBatch)
	cp.n_seq_max = C.uint32_t(p.Sequences)
	cp.n_threads = C.int32_t(p.Threads)
	cp.n_threads_batch = C.int32_t(p.Threads)
	cp.kv_unified = C.bool(p.UnifiedKV) // default: each sequence owns SeqCtx cells, an enforced limit
	cp.no_perf = true
	cp.type_k, cp.type_v = ggmlKVTypes[p.kvType()], ggmlKVTypes[p.kvType()]
	if p.FlashAttention {
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_AUTO
	} else {
		cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	}
	if p.Embeddings {
		cp.kv_unified = true
		cp.embeddings = true
		cp.pooling_type = C.enum_llama_pooling_type(p.Pooling)
	}
	var mem Memory
	var c *C.struct_llama_context
	capture(&mem, func() { c = C.llama_init_from_model(m.c, cp) })
	if c == nil {
		return nil, fmt.Errorf("engine: create context (n_ctx=%d, sequences=%d): llama.cpp failed, most likely out of memory", p.SeqCtx*p.Sequences, p.Sequences)
	}
	ctx := &Context{model: m, c: c, mem: C.llama_get_memory(c), params: p, nCtx: int(C.llama_n_ctx(c)), alloc: mem}
	if err := ctx.attachThreads(p.Threads); err != nil {
		ctx.Close()
		return nil, err
	}
	if p.Embeddings && C.llama_pooling_type(c) == C.LLAMA_POOLING_TYPE_NONE {
		ctx.Close()
		return nil, fmt.Errorf("engine: embedding context: model %s has no pooling; choose pooling mean, cls or last: %w", m.info.Name, ErrInvalidArgument)
	}
	return ctx, nil
}

// Close frees the context and its KV cache.
func (c *Context) Close() {
	if c.c != nil {
		C.llama_free(c.c)
		c.c = nil
	}
	for _, p := range append(c.retired, c.pool) {
		if p != nil {
			C.ggml_threadpool_free(p)
		}
	}
	c.pool, c.retired = nil, nil
}

// attachThreads gives the context a thread pool of n decode threads that lives as long
// as the context. Without one, ggml's CPU backend starts and joins its worker threads on
// every Decode.
func (c *Context) attachThreads(n int) error {
	if c.pool != nil && c.poolThreads >= n {
		return nil
	}
	tp := C.ggml_threadpool_params_default(C.int(n))
	tp.poll = 0
	pool := C.ggml_threadpool_new(&tp)
	if pool == nil {
		return fmt.Errorf("engine: create a pool of %d decode threads failed", n)
	}
	C.llama_attach_threadpool(c.c, pool, pool)
	if c.pool != nil {
		// Not freed yet: the backend pauses the old pool when the next graph switches it
		// to the new one (freeing it here made that a use after free).
		c.retired = append(c.retired, c.pool)
	}
	c.pool, c.poolThreads = pool, n
	return nil
}

// Model returns the model the context runs.
func (c *Context) Model() *Model { return c.model }

// Params returns the context's parameters, with defaults filled in.
func (c *Context) Params() ContextParams { return c.params }

// SeqCtx is the number of tokens one sequence may hold: the configured SeqCtx
// (llama.cpp may round its cache up; the configured limit is the one enforced).
func (c *Context) SeqCtx() int { return min(c.params.SeqCtx, int(C.llama_n_ctx_seq(c.c))) }

// SetThreads changes the number of decode threads.
func (c *Context) SetThreads(n int) error {
	if n < 1 || n > runtime.NumCPU() {
		return fmt.Errorf("engine: threads=%d: %w (1..%d)", n, ErrInvalidArgument, runtime.NumCPU())
	}
	if err := c.attachThreads(n); err != nil {
		return err
	}
	C.llama_set_n_threads(c.c, C.int32_t(n), C.int32_t(n))
	c.params.Threads = n
	return nil
}

// Decode runs the model over the batch. Logits (or embeddings) of the entries added
// with logits=true are then readable until the next Decode.
func (c *Context) Decode(b *Batch) error {
	if c.c == nil {
		return ErrClosed
	}
	if b.n == 0 {
		return fmt.Errorf("engine: decode: empty batch: %w", ErrInvalidArgument)
	}
	if b.n > c.params.Batch {
		return fmt.Errorf("engine: decode: batch of %d tokens exceeds n_batch %d: %w", b.n, c.params.Batch, ErrInvalidArgument)
	}
	if b.maxSeq >= c.params.Sequences {
		return fmt.Errorf("engine: decode: sequence id %d >= sequences %d: %w", b.maxSeq, c.params.Sequences, ErrInvalidArgument)
	}
	if b.maxPos >= c.SeqCtx() {
		return fmt.Errorf("engine: decode: position %d beyond the sequence context %d: %w", b.maxPos, c.SeqCtx(), ErrContextOverflow)
	}
	if b.maxTok >= Token(c.model.info.VocabSize) {
		return fmt.Errorf("engine: decode: token %d outside the vocabulary: %w", b.maxTok, ErrInvalidArgument)
	}
	b.c.n_tokens = C.int32_t(b.n)
	rc := C.llama_decode(c.c, b.c)
	clear(c.copying) // llama_decode applied the pending copies first
	switch {
	case rc == 0:
		return nil
	case rc == 1:
		return fmt.Errorf("engine: decode %d tokens: %w", b.n, ErrNoKVSlot)
	case rc == 2:
		return fmt.Errorf("engine: decode aborted")
	default:
		return fmt.Errorf("engine: decode %d tokens failed (llama_decode returned %d)", b.n, int(rc))
	}
}

// Logits returns the logits of batch entry i of the last Decode. The slice points into
// llama.cpp's buffer: it is valid until the next Decode and must not be modified.
func (c *Context) Logits(b *Batch, i int) ([]float32, error) {
	if i < 0 || i >= b.n || !b.wantsLogits(i) {
		return nil, fmt.Errorf("engine: logits of batch entry %d: not requested: %w", i, ErrInvalidArgument)
	}
	p := C.llama_get_logits_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil, fmt.Errorf("engine: logits of batch entry %d unavailable", i)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), c.model.info.VocabSize), nil
}

// Embedding returns the pooled embedding of sequence seq after Decode on an embedding
// context, L2-normalised, as a new slice.
func (c *Context) Embedding(seq int) ([]float32, error) {
	if !c.params.Embeddings {
		return nil, fmt.Errorf("engine: embedding: not an embedding context: %w", ErrInvalidArgument)
	}
	if seq < 0 || seq >= c.params.Sequences {
		return nil, fmt.Errorf("engine: embedding of sequence %d: %w (0..%d)", seq, ErrInvalidArgument, c.params.Sequences-1)
	}
	p := C.llama_get_embeddings_seq(c.c, C.llama_seq_id(seq))
	if p == nil {
		return nil, fmt.Errorf("engine: embedding of sequence %d unavailable (was it in the last batch?)", seq)
	}
	n := int(C.llama_model_n_embd(c.model.c))
	v := append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(p)), n)...)
	Normalize(v)
	return v, nil
}

// Normalize scales v to unit L2 norm in place (a zero vector stays zero).
func Normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= inv
	}
}

// ClearSequence drops every cached token of sequence seq.
func (c *Context) ClearSequence(seq int) error { return c.RemoveTokens(seq, 0, -1) }

// RemoveTokens drops the cached tokens of seq at positions [from, to); to = -1 means
// to the end. Used to free a finished sequence and to trim a reused prefix.
func (c *Context) RemoveTokens(seq, from, to int) error {
	if seq < 0 || seq >= c.params.Sequences || from < 0 || (to >= 0 && to < from) {
		return fmt.Errorf("engine: remove tokens seq=%d [%d,%d): %w", seq, from, to, ErrInvalidArgument)
	}
	if !C.llama_memory_seq_rm(c.mem, C.llama_seq_id(seq), C.llama_pos(from), C.llama_pos(to)) {
		return fmt.Errorf("engine: remove tokens seq=%d [%d,%d): llama.cpp refused (partial removal unsupported by this model's cache)", seq, from, to)
	}
	return nil
}

// CopySequence makes sequence dst hold exactly what sequence src holds: dst's own
// tokens are dropped, src keeps its tokens. With per-sequence KV buffers (the default)
// llama.cpp copies src's whole buffer into dst's at the start of the next Decode, so
// its cost is one buffer of SeqCtx cells per layer, whatever src holds; with a unified
// buffer the cells are shared and nothing is copied.
func (c *Context) CopySequence(src, dst int) error {
	if c.c == nil {
		return ErrClosed
	}
	if src < 0 || src >= c.params.Sequences || dst < 0 || dst >= c.params.Sequences || src == dst {
		return fmt.Errorf("engine: copy sequence %d to %d: %w (two different ids in 0..%d)", src, dst, ErrInvalidArgument, c.params.Sequences-1)
	}
	if err := c.ClearSequence(dst); err != nil {
		return err
	}
	// p0 = p1 = -1: the whole sequence, the only cross-buffer copy llama.cpp supports.
	C.llama_memory_seq_cp(c.mem, C.llama_seq_id(src), C.llama_seq_id(dst), -1, -1)
	if !c.params.UnifiedKV && !c.params.Embeddings {
		if c.copying == nil {
			c.copying = map[int]bool{}
		}
		c.copying[src], c.copying[dst] = true, true
	}
	return nil
}

// SaveSequence returns a copy of what sequence seq holds in the KV cache (its cells'
// positions and data), for RestoreSequence: a sequence that gives its slot back keeps
// its work in host memory instead of evaluating it again. It fails for an empty
// sequence and for one a CopySequence not yet applied involves.
func (c *Context) SaveSequence(seq int) ([]byte, error) {
	if err := c.checkStateSeq("save", seq); err != nil {
		return nil, err
	}
	n := C.llama_state_seq_get_size(c.c, C.llama_seq_id(seq))
	if c.SequenceEnd(seq) == 0 || n == 0 {
		return nil, fmt.Errorf("engine: save sequence %d: it is empty: %w", seq, ErrInvalidArgument)
	}
	buf := make([]byte, int(n))
	got := C.llama_state_seq_get_data(c.c, (*C.uint8_t)(unsafe.Pointer(&buf[0])), n, C.llama_seq_id(seq))
	if got == 0 || got > n {
		return nil, fmt.Errorf("engine: save sequence %d: llama.cpp wrote %d of %d bytes", seq, int(got), int(n))
	}
	return buf[:got], nil
}

// RestoreSequence makes sequence seq hold what data (from SaveSequence on this
// context, any sequence) held; seq's own tokens are dropped first. On failure seq is
// left empty.
func (c *Context) RestoreSequence(seq int, data []byte) error {
	if err := c.checkStateSeq("restore", seq); err != nil {
		return err
	}
	if len(data) == 0 {
		return fmt.Errorf("engine: restore sequence %d: no data: %w", seq, ErrInvalidArgument)
	}
	if err := c.ClearSequence(seq); err != nil {
		return err
	}
	if C.llama_state_seq_set_data(c.c, (*C.uint8_t)(unsafe.Pointer(&data[0])), C.size_t(len(data)), C.llama_seq_id(seq)) == 0 {
		_ = c.ClearSequence(seq)
		return fmt.Errorf("engine: restore sequence %d: llama.cpp refused the %d bytes (not saved from a context of this shape, or no free cells)", seq, len(data))
	}
	return nil
}

// checkStateSeq validates a SaveSequence or RestoreSequence of seq before any cgo call.
func (c *Context) checkStateSeq(op string, seq int) error {
	if c.c == nil {
		return ErrClosed
	}
	if seq < 0 || seq >= c.params.Sequences {
		return fmt.Errorf("engine: %s sequence %d: %w (an id in 0..%d)", op, seq, ErrInvalidArgument, c.params.Sequences-1)
	}
	if c.copying[seq] {
		return fmt.Errorf("engine: %s sequence %d: a copy involving it is applied at the next decode: %w", op, seq, ErrInvalidArgument)
	}
	return nil
}

// ClearAll empties the whole KV cache.
func (c *Context) ClearAll() { C.llama_memory_clear(c.mem, true) }

// SequenceEnd is one past the highest cached position of seq (0 when empty).
func (c *Context) SequenceEnd(seq int) int {
	if seq < 0 || seq >= c.params.Sequences {
		return 0
	}
	return int(C.llama_memory_seq_pos_max(c.mem, C.llama_seq_id(seq))) + 1
}

// Batch is a reusable llama_batch: tokens with positions, sequence ids and logit flags.
type Batch struct {
	c      C.struct_llama_batch
	cap    int
	n      int
	tokens []C.llama_token
	pos    []C.llama_pos
	nSeq   []C.int32_t
	seqIDs []*C.llama_seq_id
	logits []C.int8_t
	maxSeq int
	maxPos int
	maxTok Token
	freed  bool
}

// NewBatch allocates a batch for up to capacity tokens (each in one sequence).
func NewBatch(capacity int) (*Batch, error) {
	if capacity < 1 || capacity > 1<<16 {
		return nil, fmt.Errorf("engine: batch capacity %d: %w (1..65536)", capacity, ErrInvalidArgument)
	}
	cb := C.llama_batch_init(C.int32_t(capacity), 0, 1)
	b := &Batch{c: cb, cap: capacity}
	b.tokens = unsafe.Slice((*C.llama_token)(unsafe.Pointer(cb.token)), capacity)
	b.pos = unsafe.Slice((*C.llama_pos)(unsafe.Pointer(cb.pos)), capacity)
	b.nSeq = unsafe.Slice((*C.int32_t)(unsafe.Pointer(cb.n_seq_id)), capacity)
	b.seqIDs = unsafe.Slice((**C.llama_seq_id)(unsafe.Pointer(cb.seq_id)), capacity)
	b.logits = unsafe.Slice((*C.int8_t)(unsafe.Pointer(cb.logits)), capacity)
	b.Clear()
	return b, nil
}

// Free releases the batch's C memory.
func (b *Batch) Free() {
	if !b.freed {
		C.llama_batch_free(b.c)
		b.freed = true
	}
}

// Clear empties the batch for reuse.
func (b *Batch) Clear() { b.n, b.maxSeq, b.maxPos, b.maxTok = 0, -1, -1, -1 }

// Len is the number of tokens in the batch; Cap the most it holds.
func (b *Batch) Len() int { return b.n }

// Cap is the capacity the batch was allocated with.
func (b *Batch) Cap() int { return b.cap }

// Add appends token t at position pos of sequence seq and returns its batch index.
// With logits, the model's output for this entry is kept for sampling.
func (b *Batch) Add(t Token, pos, seq int, logits bool) (int, error) {
	if b.n >= b.cap {
		return -1, fmt.Errorf("engine: batch full (%d tokens): %w", b.cap, ErrInvalidArgument)
	}
	if t < 0 || pos < 0 || seq < 0 {
		return -1, fmt.Errorf("engine: batch add token=%d pos=%d seq=%d: %w", t, pos, seq, ErrInvalidArgument)
	}
	i := b.n
	b.tokens[i] = C.llama_token(t)
	b.pos[i] = C.llama_pos(pos)
	b.nSeq[i] = 1
	*b.seqIDs[i] = C.llama_seq_id(seq)
	b.logits[i] = 0
	if logits {
		b.logits[i] = 1
	}
	b.n++
	b.maxSeq = max(b.maxSeq, seq)
	b.maxPos = max(b.maxPos, pos)
	b.maxTok = max(b.maxTok, t)
	return i, nil
}

func (b *Batch) wantsLogits(i int) bool { return b.logits[i] != 0 }
