package engine_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/kvtype"
)

func loadTiny(t *testing.T) *engine.Model {
	t.Helper()
	m, err := engine.LoadModel(engine.ModelParams{Path: testmodel.Path(t, "tiny")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func newCtx(t *testing.T, m *engine.Model, p engine.ContextParams) *engine.Context {
	t.Helper()
	if p.SeqCtx == 0 {
		p.SeqCtx = 256
	}
	if p.Sequences == 0 {
		p.Sequences = 4
	}
	if p.Batch == 0 {
		p.Batch = 256
	}
	if p.Threads == 0 {
		p.Threads = 1
	}
	c, err := m.NewContext(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestSystemInfoHasNativeISA(t *testing.T) {
	info := engine.SystemInfo()
	if !strings.Contains(info, "CPU") {
		t.Fatalf("system info lacks the CPU backend: %q", info)
	}
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	if strings.Contains(string(cpu), " avx2") && !strings.Contains(info, "AVX2 = 1") {
		t.Errorf("host has AVX2 but llama.cpp was built without it (CGO_CFLAGS from the Makefile missing?): %s", info)
	}
}

func TestModelInfo(t *testing.T) {
	m := loadTiny(t)
	i := m.Info()
	if i.Architecture != "llama" || i.Layers < 1 || i.VocabSize < 300 || i.Embd <= 0 || i.Params == 0 {
		t.Fatalf("unexpected info %+v", i)
	}
	if i.KVBytesPerToken(kvtype.F16) != int64(i.Layers*i.HeadsKV*(i.HeadDimK+i.HeadDimV)*2) {
		t.Fatal("KV bytes per token")
	}
	if i.ChatTemplate == "" || !strings.Contains(i.ChatTemplate, "<|im_start|>") {
		t.Fatalf("chat template missing: %q", i.ChatTemplate)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "x.gguf")
	os.WriteFile(notGGUF, []byte("not a model"), 0o644)
	for name, p := range map[string]string{"missing": filepath.Join(dir, "nope.gguf"), "not gguf": notGGUF, "dir": dir, "empty": ""} {
		if _, err := engine.LoadModel(engine.ModelParams{Path: p}); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	truncated := filepath.Join(dir, "trunc.gguf")
	data, _ := os.ReadFile(testmodel.Path(t, "tiny"))
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	if _, err := engine.LoadModel(engine.ModelParams{Path: truncated}); err == nil {
		t.Error("truncated model loaded")
	}
}

func TestTokenizeRoundTrip(t *testing.T) {
	m := loadTiny(t)
	for _, s := range []string{
		"hello world", "The quick brown fox jumps over the lazy dog.", "  spaces\tand\nnewlines  ",
		"héllo wörld — ünïcödé", "日本語のテキスト", "emoji 🙂👍🏽 and 🇫🇷", "mixed: a→b ≤ c ∑",
	} {
		toks, err := m.Tokenize(s, false, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Detokenize(toks, false, false)
		if err != nil {
			t.Fatal(err)
		}
		// SPM adds a leading space that detokenize strips again.
		if got != s && strings.TrimPrefix(got, " ") != s {
			t.Errorf("round trip %q -> %v -> %q", s, toks, got)
		}
		// Piece by piece, the bytes join up to the same text.
		var b []byte
		for _, tk := range toks {
			p, err := m.TokenPiece(tk, false)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, p...)
		}
		if strings.TrimPrefix(string(b), " ") != s {
			t.Errorf("pieces of %q join to %q", s, b)
		}
	}
	withBOS, _ := m.Tokenize("hi", true, false)
	if withBOS[0] != m.Info().BOS {
		t.Errorf("addSpecial did not add BOS: %v", withBOS)
	}
}

func TestSpecialTokens(t *testing.T) {
	m := loadTiny(t)
	plain, _ := m.Tokenize("<|im_start|>", false, false)
	special, _ := m.Tokenize("<|im_start|>", false, true)
	if len(special) != 1 || !m.IsControl(special[0]) {
		t.Fatalf("parseSpecial: %v", special)
	}
	for _, tk := range plain {
		if m.IsControl(tk) {
			t.Fatalf("user text became a control token: %v", plain)
		}
	}
	if !m.IsEOG(m.Info().EOS) {
		t.Error("EOS is not end-of-generation")
	}
	im, _ := m.Tokenize("<|im_end|>", false, true)
	if len(im) != 1 || !m.IsEOG(im[0]) {
		t.Errorf("<|im_end|> must end generation: %v", im)
	}
	if _, err := m.TokenPiece(-1, false); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("bad token: %v", err)
	}
	if _, err := m.Detokenize([]engine.Token{1, int32(m.Info().VocabSize)}, false, false); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("detokenize bad token: %v", err)
	}
}

func TestChatTemplate(t *testing.T) {
	m := loadTiny(t)
	msgs := []engine.ChatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}
	got, err := m.ApplyChatTemplate("", msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Fatalf("chatml: got %q want %q", got, want)
	}
	llama3, err := engine.ApplyChatTemplate("llama3", msgs, true)
	if err != nil || !strings.Contains(llama3, "<|start_header_id|>user<|end_header_id|>") {
		t.Fatalf("llama3: %q %v", llama3, err)
	}
	if _, err := engine.ApplyChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}", msgs, true); !errors.Is(err, engine.ErrUnknownTemplate) {
		t.Fatalf("unknown template: %v", err)
	}
	if _, err := engine.ApplyChatTemplate("chatml", nil, true); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("no messages: %v", err)
	}
	if _, err := engine.ApplyChatTemplate("chatml", []engine.ChatMessage{{Role: "user", Content: "a\x00b"}}, true); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("NUL: %v", err)
	}
}

// greedy decodes n tokens for each prompt, all sequences in one batch per step.
func greedy(t *testing.T, c *engine.Context, prompts [][]engine.Token, n int) ([][]engine.Token, [][]float32) {
	t.Helper()
	m := c.Model()
	b, _ := engine.NewBatch(c.Params().Batch)
	defer b.Free()
	c.ClearAll()
	out := make([][]engine.Token, len(prompts))
	first := make([][]float32, len(prompts))
	idx := make([]int, len(prompts))
	for s, p := range prompts {
		for i, tk := range p {
			k, err := b.Add(tk, i, s, i == len(p)-1)
			if err != nil {
				t.Fatal(err)
			}
			idx[s] = k
		}
	}
	smp := make([]*engine.Sampler, len(prompts))
	for s := range smp {
		smp[s], _ = m.NewSampler(engine.SamplingParams{})
		defer smp[s].Close()
	}
	for step := 0; step < n; step++ {
		if err := c.Decode(b); err != nil {
			t.Fatal(err)
		}
		next := make([]engine.Token, len(prompts))
		for s := range prompts {
			if step == 1 { // a decode step: one token per sequence
				l, _ := c.Logits(b, idx[s])
				first[s] = append([]float32(nil), l...)
			}
			tk, err := smp[s].Sample(c, b, idx[s])
			if err != nil {
				t.Fatal(err)
			}
			out[s] = append(out[s], tk)
			next[s] = tk
		}
		b.Clear()
		for s := range prompts {
			idx[s], _ = b.Add(next[s], len(prompts[s])+step, s, true)
		}
	}
	return out, first
}

func TestGreedyDeterminismAndBatchEquivalence(t *testing.T) {
	m := loadTiny(t)
	c := newCtx(t, m, engine.ContextParams{})
	var prompts [][]engine.Token
	for _, s := range []string{"Once upon a time", "The capital of France is", "hello"} {
		p, _ := m.Tokenize(s, true, false)
		prompts = append(prompts, p)
	}
	batched, batchedLogits := greedy(t, c, prompts, 24)
	again, _ := greedy(t, c, prompts, 24)
	for s := range prompts {
		alone, aloneLogits := greedy(t, c, prompts[s:s+1], 24)
		if !equal(alone[0], batched[s]) {
			t.Errorf("seq %d: alone %v != batched %v", s, alone[0], batched[s])
		}
		if !equal(again[s], batched[s]) {
			t.Errorf("seq %d not deterministic", s)
		}
		// Kernels are not bit-identical across batch shapes (one row is a
		// matrix-vector product, several a tiled matrix-matrix one); the difference
		// must be far below the model's top-1/top-2 margins.
		var maxDiff float64
		for i := range aloneLogits[0] {
			maxDiff = math.Max(maxDiff, math.Abs(float64(aloneLogits[0][i]-batchedLogits[s][i])))
		}
		if maxDiff > 1e-2 {
			t.Errorf("seq %d: logits differ by %g between batch shapes", s, maxDiff)
		}
		t.Logf("seq %d: max |logit diff| alone vs batched = %.2g", s, maxDiff)
	}
	if distinct(batched) < 2 {
		t.Errorf("different prompts generated identical text: the model gives no signal: %v", batched)
	}
}

func distinct(x [][]engine.Token) int {
	seen := map[string]bool{}
	for _, s := range x {
		seen[fmt.Sprint(s)] = true
	}
	return len(seen)
}

func equal(a, b []engine.Token) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeValidation(t *testing.T) {
	m := loadTiny(t)
	c := newCtx(t, m, engine.ContextParams{SeqCtx: 32, Sequences: 2, Batch: 8})
	b, _ := engine.NewBatch(16)
	defer b.Free()
	cases := map[string]func(){
		"seq id":   func() { b.Add(1, 0, 2, true) },
		"position": func() { b.Add(1, 32, 0, true) },
		"token":    func() { b.Add(engine.Token(m.Info().VocabSize), 0, 0, true) },
		"over n_batch": func() {
			for i := 0; i < 9; i++ {
				b.Add(1, i, 0, false)
			}
		},
	}
	for name, fill := range cases {
		b.Clear()
		c.ClearAll()
		fill()
		if err := c.Decode(b); err == nil {
			t.Errorf("%s: decode accepted an invalid batch", name)
		}
	}
	b.Clear()
	if err := c.Decode(b); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("empty batch: %v", err)
	}
	if _, err := b.Add(-1, 0, 0, false); err == nil {
		t.Error("negative token accepted")
	}
	b.Clear()
	c.ClearAll()
	b.Add(1, 0, 0, false)
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logits(b, 0); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("logits of an entry without logits: %v", err)
	}
	for _, p := range []engine.ContextParams{
		{SeqCtx: 1, Sequences: 1, Batch: 1}, {SeqCtx: 64, Sequences: 0, Batch: 1},
		{SeqCtx: 64, Sequences: 1, Batch: 1, Threads: 10000}, {SeqCtx: 64, Sequences: 1, Batch: 1, KVType: "q3"},
	} {
		if _, err := m.NewContext(p); !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("context %+v: %v", p, err)
		}
	}
}

func TestSamplerValidationAndSeed(t *testing.T) {
	m := loadTiny(t)
	for _, p := range []engine.SamplingParams{{Temperature: -1}, {Temperature: float32(math.NaN())}, {TopP: 1.5}, {PresencePenalty: 3}, {TopK: -1}} {
		if _, err := m.NewSampler(p); !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("%+v accepted: %v", p, err)
		}
	}
	if _, err := m.NewSampler(engine.SamplingParams{Grammar: "root ::= ("}); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("bad grammar: %v", err)
	}
	c := newCtx(t, m, engine.ContextParams{})
	p, _ := m.Tokenize("Once upon a time", true, false)
	run := func(seed uint32) []engine.Token {
		b, _ := engine.NewBatch(256)
		defer b.Free()
		c.ClearAll()
		for i, tk := range p {
			b.Add(tk, i, 0, i == len(p)-1)
		}
		s, _ := m.NewSampler(engine.SamplingParams{Temperature: 1.5, Seed: seed})
		defer s.Close()
		var out []engine.Token
		for i := 0; i < 16; i++ {
			c.Decode(b)
			tk, _ := s.Sample(c, b, b.Len()-1)
			out = append(out, tk)
			b.Clear()
			b.Add(tk, len(p)+i, 0, true)
		}
		return out
	}
	a, a2, other := run(7), run(7), run(8)
	if !equal(a, a2) {
		t.Error("same seed, different tokens")
	}
	if equal(a, other) {
		t.Error("different seeds gave identical 16-token samples at temperature 1.5")
	}
}

func TestLogprobs(t *testing.T) {
	logits := []float32{1, 3, 2, -1}
	c, top := engine.Logprobs(logits, 2, 3)
	var z float64
	for _, l := range logits {
		z += math.Exp(float64(l))
	}
	if want := float32(2 - math.Log(z)); math.Abs(float64(c.Logprob-want)) > 1e-5 {
		t.Errorf("chosen logprob %v want %v", c.Logprob, want)
	}
	if len(top) != 3 || top[0].Token != 1 || top[1].Token != 2 || top[2].Token != 0 {
		t.Errorf("top: %+v", top)
	}
}

func TestEmbeddings(t *testing.T) {
	m := loadTiny(t)
	c := newCtx(t, m, engine.ContextParams{Embeddings: true, Pooling: engine.PoolingMean, Sequences: 2})
	b, _ := engine.NewBatch(256)
	defer b.Free()
	a, _ := m.Tokenize("a cat sat on the mat", true, false)
	d, _ := m.Tokenize("quantum chromodynamics", true, false)
	for i, tk := range a {
		b.Add(tk, i, 0, true)
	}
	for i, tk := range d {
		b.Add(tk, i, 1, true)
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	va, err := c.Embedding(0)
	if err != nil {
		t.Fatal(err)
	}
	vb, _ := c.Embedding(1)
	if len(va) != m.Info().Embd {
		t.Fatalf("dim %d want %d", len(va), m.Info().Embd)
	}
	var na, dot float64
	for i := range va {
		na += float64(va[i] * va[i])
		dot += float64(va[i] * vb[i])
	}
	if math.Abs(na-1) > 1e-4 {
		t.Errorf("norm^2 = %v", na)
	}
	if dot > 0.9999 {
		t.Errorf("different texts have identical embeddings (cos=%v)", dot)
	}
	// The same text alone in a batch gives the same vector (pooling saw the whole sequence).
	c.ClearAll()
	b.Clear()
	for i, tk := range a {
		b.Add(tk, i, 0, true)
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	alone, _ := c.Embedding(0)
	var cos float64
	for i := range alone {
		cos += float64(alone[i] * va[i])
	}
	if cos < 0.9999 {
		t.Errorf("embedding depends on the other sequences in the batch: cosine %v", cos)
	}
	if _, err := c.Embedding(5); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Error("bad seq accepted")
	}
}

func TestQuantize(t *testing.T) {
	in := testmodel.Path(t, "tiny")
	out := filepath.Join(t.TempDir(), "q8.gguf")
	if err := engine.Quantize(in, out, "q8_0", 1); err != nil {
		t.Fatal(err)
	}
	si, _ := os.Stat(in)
	so, _ := os.Stat(out)
	if so.Size() >= si.Size() {
		t.Errorf("q8_0 (%d bytes) not smaller than input (%d)", so.Size(), si.Size())
	}
	m, err := engine.LoadModel(engine.ModelParams{Path: out})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if err := engine.Quantize(in, out, "q3_banana", 1); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("bad type: %v", err)
	}
}

func TestDevices(t *testing.T) {
	devs := engine.Devices()
	if len(devs) == 0 || devs[0].Name == "" {
		t.Fatalf("no devices: %+v", devs)
	}
	if err := engine.LoadBackend(filepath.Join(t.TempDir(), "libggml-nope.so")); err == nil {
		t.Error("missing backend library loaded")
	}
}

func TestMemoryReported(t *testing.T) {
	m := loadTiny(t)
	if m.Memory().WeightBytes == 0 {
		t.Fatal("model buffer size not captured")
	}
	c := newCtx(t, m, engine.ContextParams{SeqCtx: 256, Sequences: 4})
	mem := c.Memory()
	i := m.Info()
	want := uint64(i.KVBytesPerToken(kvtype.F16)) * 256 * 4
	// Sizes are logged in MiB with two decimals.
	if diff := int64(mem.KVBytes) - int64(want); diff > 10<<10 || diff < -(10<<10) {
		t.Errorf("KV buffer %d bytes, want %d", mem.KVBytes, want)
	}
	if mem.ComputeBytes == 0 {
		t.Error("compute buffer size not captured")
	}
}

// TestCopySequence: a copied sequence continues exactly as its source would, for both
// KV layouts, and the copy replaces what the destination held.
func TestCopySequence(t *testing.T) {
	m := loadTiny(t)
	prompt, _ := m.Tokenize("Once upon a time there was a", true, false)
	other, _ := m.Tokenize("The capital of France is a city with many old bridges and", true, false)
	for _, unified := range []bool{false, true} {
		t.Run(fmt.Sprintf("unified=%v", unified), func(t *testing.T) {
			c := newCtx(t, m, engine.ContextParams{SeqCtx: 64, Sequences: 3, UnifiedKV: unified})
			fill, next := seqOps(t, c, prompt)
			fill(0, prompt)
			fill(2, other) // longer: the copy must drop it
			want := next(0)
			if err := c.RemoveTokens(0, len(prompt), -1); err != nil {
				t.Fatal(err)
			}
			if err := c.CopySequence(0, 2); err != nil {
				t.Fatal(err)
			}
			got := next(2)
			if end := c.SequenceEnd(2); end != len(prompt)+1 {
				t.Fatalf("destination ends at %d, want %d (its own %d tokens dropped)", end, len(prompt)+1, len(other))
			}
			if end := c.SequenceEnd(0); end != len(prompt) {
				t.Fatalf("source ends at %d after the copy, want %d (kept)", end, len(prompt))
			}
			// Split buffers: the same cells, the same computation, identical logits.
			// Unified: the destination's cells are shared but the attention runs over
			// a different set of cells (masking the other sequence), so only rounding
			// may differ.
			tol := 0.0
			if unified {
				tol = 1e-4
			}
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > tol {
					t.Fatalf("logit %d after the copy %g, source gave %g", i, got[i], want[i])
				}
			}
		})
	}
	c := newCtx(t, m, engine.ContextParams{Sequences: 2})
	for _, ids := range [][2]int{{0, 0}, {-1, 1}, {0, 2}, {2, 0}} {
		if err := c.CopySequence(ids[0], ids[1]); !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("CopySequence(%d, %d) = %v, want ErrInvalidArgument", ids[0], ids[1], err)
		}
	}
}

// TestKVTypes: every KV-cache type of the table runs (a context decodes and its greedy
// continuation is produced), llama.cpp allocates the cache the table sizes, and the
// quantized types are refused without flash attention before llama.cpp is called.
func TestKVTypes(t *testing.T) {
	m := loadTiny(t)
	i := m.Info()
	prompt, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvtype.All() {
		t.Run(string(kv), func(t *testing.T) {
			c := newCtx(t, m, engine.ContextParams{SeqCtx: 256, Sequences: 2, KVType: string(kv), FlashAttention: true})
			want := uint64(i.KVBytesPerToken(kv)) * 256 * 2
			if diff := int64(c.Memory().KVBytes) - int64(want); diff > 10<<10 || diff < -(10<<10) {
				t.Errorf("KV buffer %d bytes, the table says %d", c.Memory().KVBytes, want)
			}
			out, _ := greedy(t, c, [][]engine.Token{prompt}, 4)
			for _, tk := range out[0] {
				if tk < 0 || int(tk) >= i.VocabSize {
					t.Errorf("generated token %d outside the vocabulary of %d", tk, i.VocabSize)
				}
			}
			if !kv.NeedsFlashAttention() {
				return
			}
			_, err := m.NewContext(engine.ContextParams{SeqCtx: 256, Sequences: 1, Batch: 8, KVType: string(kv)})
			if !errors.Is(err, engine.ErrInvalidArgument) || !strings.Contains(err.Error(), "flash_attention") {
				t.Errorf("%s without flash attention: %v, want ErrInvalidArgument naming flash_attention", kv, err)
			}
		})
	}
}

// seqOps returns, for tests of sequence operations on c: fill, which evaluates toks
// at positions 0.. of seq, and next, which decodes one more token (prompt[1]) at
// position len(prompt) of seq and returns its logits.
func seqOps(t *testing.T, c *engine.Context, prompt []engine.Token) (fill func(int, []engine.Token), next func(int) []float32) {
	b, err := engine.NewBatch(64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Free)
	fill = func(seq int, toks []engine.Token) {
		b.Clear()
		for i, tk := range toks {
			if _, err := b.Add(tk, i, seq, false); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Decode(b); err != nil {
			t.Fatal(err)
		}
	}
	next = func(seq int) []float32 {
		b.Clear()
		i, _ := b.Add(prompt[1], len(prompt), seq, true)
		if err := c.Decode(b); err != nil {
			t.Fatal(err)
		}
		l, err := c.Logits(b, i)
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), l...)
	}
	return fill, next
}

// TestSaveRestoreSequence: a sequence's KV saved to host memory and restored into
// another sequence (its own tokens dropped) continues exactly as the original, under
// split and unified KV; the original can be cleared meanwhile. Saves of an empty
// sequence or one a copy not yet applied involves, and bad ids or data, are refused
// before llama.cpp is called (or by llama.cpp without harm).
func TestSaveRestoreSequence(t *testing.T) {
	m := loadTiny(t)
	prompt, _ := m.Tokenize("Once upon a time there was a", true, false)
	other, _ := m.Tokenize("The capital of France is a city with many old bridges and", true, false)
	for _, unified := range []bool{false, true} {
		t.Run(fmt.Sprintf("unified=%v", unified), func(t *testing.T) {
			c := newCtx(t, m, engine.ContextParams{SeqCtx: 64, Sequences: 3, UnifiedKV: unified})
			fill, next := seqOps(t, c, prompt)
			if _, err := c.SaveSequence(0); !errors.Is(err, engine.ErrInvalidArgument) {
				t.Errorf("save of an empty sequence: %v, want ErrInvalidArgument", err)
			}
			fill(0, prompt)
			fill(2, other)
			saved, err := c.SaveSequence(0)
			if err != nil {
				t.Fatal(err)
			}
			want := next(0)
			if err := c.ClearSequence(0); err != nil {
				t.Fatal(err)
			}
			if err := c.RestoreSequence(2, saved); err != nil {
				t.Fatal(err)
			}
			if end := c.SequenceEnd(2); end != len(prompt) {
				t.Fatalf("restored sequence ends at %d, want %d (its own %d tokens dropped)", end, len(prompt), len(other))
			}
			got := next(2)
			tol := 0.0
			if unified {
				tol = 1e-4 // other cells are masked: only rounding may differ
			}
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > tol {
					t.Fatalf("logit %d after the restore %g, before the save %g", i, got[i], want[i])
				}
			}
			if err := c.RestoreSequence(1, saved[:len(saved)/2]); err == nil || c.SequenceEnd(1) != 0 {
				t.Errorf("restore of truncated data: %v, sequence ends at %d; want an error and an empty sequence", err, c.SequenceEnd(1))
			}
		})
	}
	c := newCtx(t, m, engine.ContextParams{SeqCtx: 64, Sequences: 2})
	b, _ := engine.NewBatch(64)
	defer b.Free()
	for i, tk := range prompt {
		_, _ = b.Add(tk, i, 0, false)
	}
	if err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
	if err := c.CopySequence(0, 1); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []int{0, 1} {
		if _, err := c.SaveSequence(seq); !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("save of sequence %d while a copy is pending: %v, want ErrInvalidArgument", seq, err)
		}
	}
	for _, seq := range []int{-1, 2} {
		if _, err := c.SaveSequence(seq); !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("SaveSequence(%d) = %v, want ErrInvalidArgument", seq, err)
		}
		if err := c.RestoreSequence(seq, []byte{1}); !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("RestoreSequence(%d) = %v, want ErrInvalidArgument", seq, err)
		}
	}
}
