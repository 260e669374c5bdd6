package modelgen

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hxp-ai/hxp/gguf"
)

// Golden hashes of the tiny preset with DefaultSeed, as F32 (the preset) and as F16.
// Tests elsewhere rely on these exact models (tokenizer, logit margins); if you change
// the generator on purpose, bump Version, update the hashes and rerun the engine tests.
const (
	goldenTinySHA256    = "f23bb937067e0b41b525f9c1cbde3fcc4c886d77355136f2012dfd98c5f6be61"
	goldenTinyF16SHA256 = "9990783b19f861abe04be97204ca6506800c0ee9025ad85bee2d8422eb3757c9"
)

func generateTemp(t *testing.T, p Preset, seed uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), p.Name+".gguf")
	if err := Generate(context.Background(), p, seed, path, nil); err != nil {
		t.Fatalf("Generate(%s): %v", p.Name, err)
	}
	return path
}

func mustLookup(t *testing.T, name string) Preset {
	t.Helper()
	p, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestGenerateIsDeterministic(t *testing.T) {
	tiny := mustLookup(t, "tiny")
	first := fileSHA256(t, generateTemp(t, tiny, DefaultSeed))

	// Same again with one thread: chunk splitting must not change the bytes.
	prev := runtime.GOMAXPROCS(1)
	second := fileSHA256(t, generateTemp(t, tiny, DefaultSeed))
	runtime.GOMAXPROCS(prev)
	if first != second {
		t.Fatalf("same preset and seed gave different files: %s vs %s", first, second)
	}
	if first != goldenTinySHA256 {
		t.Errorf("tiny/seed %d hash = %s, want golden %s (generator changed?)", DefaultSeed, first, goldenTinySHA256)
	}
	if other := fileSHA256(t, generateTemp(t, tiny, DefaultSeed+1)); other == first {
		t.Errorf("seeds %d and %d gave the same file", DefaultSeed, DefaultSeed+1)
	}
	tiny.Type = F16
	if got := fileSHA256(t, generateTemp(t, tiny, DefaultSeed)); got != goldenTinyF16SHA256 {
		t.Errorf("tiny as F16 hash = %s, want golden %s", got, goldenTinyF16SHA256)
	}
}

func TestMetadataReadBack(t *testing.T) {
	p := mustLookup(t, "tiny")
	path := generateTemp(t, p, 7)
	g, err := gguf.ReadFile(path, gguf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Version != 3 {
		t.Errorf("version %d, want 3", g.Version)
	}
	want := map[string]any{
		"general.architecture":                   "llama",
		"general.name":                           "hxp-tiny",
		"general.file_type":                      uint32(0),
		"llama.context_length":                   uint32(p.Context),
		"llama.embedding_length":                 uint32(p.Embd),
		"llama.block_count":                      uint32(p.Layers),
		"llama.feed_forward_length":              uint32(p.FFN),
		"llama.attention.head_count":             uint32(p.Heads),
		"llama.attention.head_count_kv":          uint32(p.HeadsKV),
		"llama.rope.dimension_count":             uint32(p.Embd / p.Heads),
		"llama.rope.freq_base":                   float32(10000),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.vocab_size":                       uint32(p.Vocab),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.bos_token_id":            uint32(1),
		"tokenizer.ggml.eos_token_id":            uint32(2),
		"tokenizer.ggml.unknown_token_id":        uint32(0),
		"tokenizer.ggml.eot_token_id":            uint32(4),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.ggml.add_eos_token":           false,
		"tokenizer.chat_template":                ChatTemplate,
		"hxp.seed":                               uint64(7),
	}
	for k, v := range want {
		if got, ok := g.Get(k); !ok || got.Data != v {
			t.Errorf("%s = %#v (present %v), want %#v", k, got.Data, ok, v)
		}
	}
	for _, k := range []string{"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"} {
		got, _ := g.Get(k)
		if arr := reflect.ValueOf(got.Data); arr.Kind() != reflect.Slice || arr.Len() != p.Vocab {
			t.Errorf("%s = %T, want a slice of %d entries", k, got.Data, p.Vocab)
		}
	}
	if !strings.Contains(ChatTemplate, "<|im_start|>") {
		t.Error("chat template lacks <|im_start|>, llama.cpp would not detect chatml")
	}

	// Tensors: names, ggml shapes and types as llama.cpp's llama loader expects.
	d, kvd, ff, v := uint64(p.Embd), uint64(p.EmbdKV()), uint64(p.FFN), uint64(p.Vocab)
	wantShapes := map[string][]uint64{
		"token_embd.weight":  {d, v},
		"output_norm.weight": {d},
		"output.weight":      {d, v},
	}
	for i := 0; i < p.Layers; i++ {
		for name, shape := range map[string][]uint64{
			"attn_norm": {d}, "attn_q": {d, d}, "attn_k": {d, kvd}, "attn_v": {d, kvd},
			"attn_output": {d, d}, "ffn_norm": {d}, "ffn_gate": {d, ff}, "ffn_up": {d, ff}, "ffn_down": {ff, d},
		} {
			wantShapes[fmt.Sprintf("blk.%d.%s.weight", i, name)] = shape
		}
	}
	if len(g.Tensors) != len(wantShapes) {
		t.Errorf("%d tensors, want %d", len(g.Tensors), len(wantShapes))
	}
	var end uint64
	for _, ti := range g.Tensors {
		shape, ok := wantShapes[ti.Name]
		if !ok {
			t.Errorf("unexpected tensor %s", ti.Name)
			continue
		}
		if fmt.Sprint(ti.Shape) != fmt.Sprint(shape) {
			t.Errorf("%s shape %v, want %v", ti.Name, ti.Shape, shape)
		}
		if ti.Type != 0 { // tiny is all F32
			t.Errorf("%s type %s, want F32", ti.Name, ti.Type)
		}
		if ti.Offset%32 != 0 || ti.Offset < end {
			t.Errorf("%s offset %d misaligned or overlapping (previous end %d)", ti.Name, ti.Offset, end)
		}
		n := uint64(4)
		for _, x := range ti.Shape {
			n *= x
		}
		end = ti.Offset + n
	}
	if got := uint64(g.Size - g.DataOffset); got < end || got > end+31 {
		t.Errorf("data section %d bytes, tensors end at %d", got, end)
	}
	if size, err := p.FileSize(); err != nil || size != g.Size {
		t.Errorf("FileSize() = %d, %v; file is %d bytes", size, err, g.Size)
	}
}

func TestF16TensorsAndFileType(t *testing.T) {
	p := mustLookup(t, "tiny")
	p.Type = F16
	g, err := gguf.ReadFile(generateTemp(t, p, DefaultSeed), gguf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ft, _ := g.Get("general.file_type"); ft.Data != uint32(1) {
		t.Errorf("general.file_type = %v, want 1 (mostly F16)", ft.Data)
	}
	for _, ti := range g.Tensors {
		want := gguf.TensorType(1)
		if len(ti.Shape) == 1 {
			want = 0 // norms stay F32
		}
		if ti.Type != want {
			t.Errorf("%s type %s, want %s", ti.Name, ti.Type, want)
		}
	}
}

func TestVocabProperties(t *testing.T) {
	for _, n := range []int{minVocab, 2048, 32000, 32064, MaxVocab()} {
		v, err := BuildVocab(n)
		if err != nil {
			t.Fatalf("BuildVocab(%d): %v", n, err)
		}
		if v.Len() != n || len(v.Scores) != n || len(v.Types) != n {
			t.Fatalf("BuildVocab(%d): %d tokens, %d scores, %d types", n, v.Len(), len(v.Scores), len(v.Types))
		}
		ids := map[string]int{}
		for i, piece := range v.Tokens {
			if j, dup := ids[piece]; dup {
				t.Fatalf("n=%d: piece %q at ids %d and %d", n, piece, j, i)
			}
			if piece == "" || !utf8.ValidString(piece) {
				t.Fatalf("n=%d: token %d is empty or invalid UTF-8: %q", n, i, piece)
			}
			ids[piece] = i
		}
		for id, want := range map[int]struct {
			piece string
			typ   TokenType
		}{
			UnkID: {"<unk>", TokenUnknown}, BOSID: {"<s>", TokenControl}, EOSID: {"</s>", TokenControl},
			IMStartID: {"<|im_start|>", TokenControl}, IMEndID: {"<|im_end|>", TokenControl},
		} {
			if v.Tokens[id] != want.piece || v.Types[id] != want.typ {
				t.Errorf("token %d = %q type %d, want %q type %d", id, v.Tokens[id], v.Types[id], want.piece, want.typ)
			}
		}
		for b := 0; b < 256; b++ {
			id := FirstByteID + b
			if want := fmt.Sprintf("<0x%02X>", b); v.Tokens[id] != want || v.Types[id] != TokenByte {
				t.Fatalf("byte %d: token %d = %q type %d, want %q type %d", b, id, v.Tokens[id], v.Types[id], want, TokenByte)
			}
		}
		for i, piece := range v.Tokens {
			if v.Types[i] != TokenNormal {
				continue
			}
			runes := utf8.RuneCountInString(piece)
			// Longer pieces score higher, so SPM merging prefers them.
			if s := v.Scores[i]; s <= float32(runes-1) || s > float32(runes) {
				t.Fatalf("n=%d: %q (%d chars) has score %v, want in (%d, %d]", n, piece, runes, s, runes-1, runes)
			}
			// Every multi-character piece is reachable by merging: its prefix one
			// character shorter is an earlier token.
			if runes >= 2 {
				_, last := utf8.DecodeLastRuneInString(piece)
				prefix := piece[:len(piece)-last]
				if j, ok := ids[prefix]; !ok || j >= i {
					t.Fatalf("n=%d: %q has no earlier prefix %q (id %d, ok %v)", n, piece, prefix, j, ok)
				}
			}
		}
		if n >= 2048 {
			for _, w := range []string{"▁the", "▁hello", "▁world", "▁and", "▁model"} {
				if _, ok := ids[w]; !ok {
					t.Errorf("n=%d: common piece %q missing", n, w)
				}
			}
		}
	}
	for _, n := range []int{0, minVocab - 1, MaxVocab() + 1} {
		if _, err := BuildVocab(n); err == nil {
			t.Errorf("BuildVocab(%d) succeeded, want an error", n)
		}
	}
}

func TestPresets(t *testing.T) {
	want := map[string]struct{ minParams, maxParams float64 }{
		"tiny":    {0.1e6, 2e6},
		"demo":    {5e6, 20e6},
		"bench":   {90e6, 110e6},
		"phi3":    {3.7e9, 3.9e9},
		"mistral": {7.1e9, 7.4e9},
		"mixtral": {46e9, 47.5e9},
	}
	if len(Presets()) != len(want) {
		t.Errorf("%d presets, want %d", len(Presets()), len(want))
	}
	for _, p := range Presets() {
		w, ok := want[p.Name]
		if !ok {
			t.Errorf("unexpected preset %s", p.Name)
			continue
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		if n := float64(p.Params()); n < w.minParams || n > w.maxParams {
			t.Errorf("%s: %.3g params, want %.3g..%.3g", p.Name, n, w.minParams, w.maxParams)
		}
		if got := mustLookup(t, strings.ToUpper(p.Name)); got.Name != p.Name {
			t.Errorf("Lookup(%q) = %s", strings.ToUpper(p.Name), got.Name)
		}
	}
	if mustLookup(t, "tiny").OnDemand || !mustLookup(t, "mixtral").OnDemand || !mustLookup(t, "phi3").OnDemand || !mustLookup(t, "mistral").OnDemand {
		t.Error("only phi3, mistral and mixtral should be on demand")
	}
	_, err := Lookup("llama-70b")
	if err == nil || !strings.Contains(err.Error(), "tiny, demo, bench, phi3, mistral, mixtral") {
		t.Errorf("Lookup(unknown) error %v should list the valid presets", err)
	}
}

func TestMixtralShape(t *testing.T) {
	p := mustLookup(t, "mixtral")
	p.Layers = 1
	byName := map[string]tensorSpec{}
	for _, ts := range p.tensors() {
		byName[ts.name] = ts
	}
	for name, shape := range map[string]string{
		"blk.0.ffn_gate_inp.weight":  "[4096 8]",
		"blk.0.ffn_gate_exps.weight": "[4096 14336 8]",
		"blk.0.ffn_up_exps.weight":   "[4096 14336 8]",
		"blk.0.ffn_down_exps.weight": "[14336 4096 8]",
		"blk.0.attn_k.weight":        "[4096 1024]",
	} {
		if got := fmt.Sprint(byName[name].shape); got != shape {
			t.Errorf("%s shape %s, want %s", name, got, shape)
		}
	}
	if _, dense := byName["blk.0.ffn_gate.weight"]; dense {
		t.Error("MoE preset has a dense ffn_gate tensor")
	}
	if ty := byName["blk.0.ffn_gate_inp.weight"].typ; ty != ggmlF32 {
		t.Errorf("router type %d, want F32", ty)
	}
	kvs := map[string]any{}
	for _, e := range metadata(p, 1, &Vocab{}, Options{}) {
		kvs[e.key] = e.val
	}
	if kvs["llama.expert_count"] != uint32(8) || kvs["llama.expert_used_count"] != uint32(2) {
		t.Errorf("expert metadata %v/%v, want 8/2", kvs["llama.expert_count"], kvs["llama.expert_used_count"])
	}
}

func TestValidateRejectsBadShapes(t *testing.T) {
	base := mustLookup(t, "tiny")
	for name, mutate := range map[string]func(*Preset){
		"Embd":        func(p *Preset) { p.Embd = 100 },
		"Layers":      func(p *Preset) { p.Layers = 0 },
		"Heads":       func(p *Preset) { p.Heads = 3 },
		"HeadsKV":     func(p *Preset) { p.HeadsKV = 3 },
		"FFN":         func(p *Preset) { p.FFN = 100 },
		"Vocab":       func(p *Preset) { p.Vocab = 10 },
		"ExpertsUsed": func(p *Preset) { p.Experts, p.ExpertsUsed = 4, 5 },
		"Type":        func(p *Preset) { p.Type = FileType(9) },
	} {
		p := base
		mutate(&p)
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), name+" = ") {
			t.Errorf("%s: Validate() = %v, want an error naming %s", name, err, name)
		}
		if err := Generate(context.Background(), p, 1, filepath.Join(t.TempDir(), "x.gguf"), nil); err == nil {
			t.Errorf("%s: Generate accepted an invalid preset", name)
		}
	}
}

func TestGenerateRejectsBadOutPath(t *testing.T) {
	tiny := mustLookup(t, "tiny")
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"":                                      "empty",
		dir:                                     "is a directory",
		filepath.Join(dir, "missing", "m.gguf"): "does not exist",
		filepath.Join(notDir, "m.gguf"):         "not a directory",
	} {
		err := Generate(context.Background(), tiny, 1, path, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Generate(%q) = %v, want error containing %q", path, err, want)
		}
	}
}

func TestProgressReachesTotal(t *testing.T) {
	p := mustLookup(t, "tiny")
	path := filepath.Join(t.TempDir(), "m.gguf")
	var calls int
	var last, total int64
	err := Generate(context.Background(), p, 1, path, func(done, tot int64) {
		if done < last || (total != 0 && tot != total) {
			t.Errorf("progress went from %d/%d to %d/%d", last, total, done, tot)
		}
		calls++
		last, total = done, tot
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if calls < 2 || last != total || total != st.Size() {
		t.Errorf("%d progress calls, last %d/%d, file %d bytes", calls, last, total, st.Size())
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v, want 0644", st.Mode().Perm())
	}
}

func TestCancelRemovesTempFile(t *testing.T) {
	p := mustLookup(t, "demo")
	dir := t.TempDir()
	out := filepath.Join(dir, "m.gguf")
	if err := os.WriteFile(out, []byte("previous"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sawTemp bool
	err := Generate(ctx, p, 1, out, func(done, total int64) {
		entries, _ := os.ReadDir(dir)
		sawTemp = sawTemp || len(entries) == 2
		if done > total/10 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate after cancel = %v, want context.Canceled", err)
	}
	if !sawTemp {
		t.Error("no temporary file was seen next to the output while writing")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "m.gguf" {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory after cancel holds %v, want only the previous m.gguf", names)
	}
	if b, _ := os.ReadFile(out); string(b) != "previous" {
		t.Errorf("existing output was modified by a cancelled run: %q", b)
	}

	// Already cancelled: nothing is created.
	out2 := filepath.Join(dir, "n.gguf")
	if err := Generate(ctx, p, 1, out2, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Generate with a cancelled context = %v", err)
	}
	if _, err := os.Stat(out2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cancelled Generate left %s (%v)", out2, err)
	}
}

// f16 converts one value with encodeF16.
func f16(f float32) uint16 {
	var b [2]byte
	encodeF16(b[:], []float32{f})
	return binary.LittleEndian.Uint16(b[:])
}

// halfToFloat decodes IEEE 754 half bits exactly (independently of encodeF16).
func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * mant * math.Pow(2, -24)
	case 0x1f:
		if mant != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	}
	return sign * (1 + mant/1024) * math.Pow(2, float64(exp-15))
}

func TestF16Conversion(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},                 // largest half
		{65520, 0x7c00},                 // rounds up to +Inf
		{1e10, 0x7c00},                  // overflow
		{float32(math.Inf(-1)), 0xfc00}, // -Inf
		{float32(math.Pow(2, -26)), 0},  // underflows to zero
		{0.1, 0x2e66},                   // 0.0999755859375
	} {
		if got := f16(c.in); got != c.want {
			t.Errorf("f16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if got := f16(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("f16(NaN) = %#04x, not a NaN", got)
	}
	// Every finite half converts back to itself, and the float32 midpoint between two
	// neighbouring halves rounds to the one with an even mantissa.
	for h := uint32(0); h < 0x7c00; h++ {
		for _, sign := range []uint16{0, 0x8000} {
			x := halfToFloat(uint16(h) | sign)
			if got := f16(float32(x)); got != uint16(h)|sign {
				t.Fatalf("f16(%g) = %#04x, want %#04x", x, got, uint16(h)|sign)
			}
			if h == 0x7bff {
				continue
			}
			mid := (x + halfToFloat(uint16(h+1)|sign)) / 2 // exact in float32
			want := uint16(h) | sign
			if h&1 == 1 {
				want = uint16(h+1) | sign
			}
			if got := f16(float32(mid)); got != want {
				t.Fatalf("f16(%g) (tie between %#04x and %#04x) = %#04x, want %#04x", mid, h, h+1, got, want)
			}
		}
	}
}

func TestUniformStatistics(t *testing.T) {
	key := streamKey(1, "x")
	const n = 200000
	var sum, sq float64
	for i := int64(0); i < n; i++ {
		u := uniform(key, i)
		if u < -1 || u >= 1 {
			t.Fatalf("uniform value %v outside [-1, 1)", u)
		}
		sum += u
		sq += u * u
	}
	mean, variance := sum/n, sq/n
	if math.Abs(mean) > 0.01 || math.Abs(variance-1.0/3) > 0.01 {
		t.Errorf("mean %.4f variance %.4f, want 0 and 1/3", mean, variance)
	}
	if streamKey(1, "a") == streamKey(1, "b") || streamKey(1, "a") == streamKey(2, "a") {
		t.Error("stream keys collide")
	}
}

func TestSuccessorsTargetEveryTextToken(t *testing.T) {
	v, err := BuildVocab(2048)
	if err != nil {
		t.Fatal(err)
	}
	succ := successors(DefaultSeed, v)
	hit := map[int32]bool{}
	for tok, s := range succ {
		if v.Types[s] != TokenNormal {
			t.Fatalf("successor of %d is %d (%q), not a text token", tok, s, v.Tokens[s])
		}
		hit[s] = true
	}
	if n := len(v.normalIDs()); len(hit) != n {
		t.Errorf("successors reach %d of %d text tokens", len(hit), n)
	}
	if fmt.Sprint(successors(DefaultSeed+1, v)) == fmt.Sprint(succ) {
		t.Error("successor map does not depend on the seed")
	}
}
