// Package modelgen writes deterministic llama-architecture GGUF models with random
// weights, for tests, the demo and benchmarks, so that nothing has to download a model.
//
// A model is fixed by a Preset (its shape) and a seed: the same preset and seed give a
// byte-identical file. The vocabulary is SentencePiece-style with byte fallback
// (BuildVocab), so any UTF-8 text tokenizes; the file carries a ChatML chat template.
// With Options, a model can instead take a real model's tokenizer from a GGUF file
// (ReadTokenizer, e.g. llama.cpp's vocab-only files) and embed any chat template;
// the output is still a pure function of its inputs.
// Weights are scaled so that greedy decoding has clear top-1/top-2 logit margins (see
// weights.go), which makes batch-equivalence tests meaningful, while the output still
// depends on the whole context. Greedy decoding only emits text tokens: generated
// models never end a turn by themselves, so callers bound generation with a token limit.
//
// Files are written to a temporary file next to the destination, which is renamed into
// place only when complete. Tensor data is generated in chunks while it is written, so
// even the Mixtral-shaped preset streams to disk in bounded memory.
package modelgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Version identifies the generator's output: it changes whenever the bytes written for
// a given preset and seed change, so caches of generated files can key on it.
const Version = 1

// DefaultSeed is the seed the CLI uses when none is given.
const DefaultSeed uint64 = 42

// chunkElems is how many tensor elements are generated and written per step; it
// bounds memory (one 8 MiB F16 or 16 MiB F32 buffer) and the cancellation latency.
const chunkElems = 1 << 22

// Generate writes the model described by p, with weights drawn from seed, to outPath.
// progress, when not nil, is called from the calling goroutine with the bytes written
// so far and the final file size; the last call has done == total. When ctx is
// cancelled Generate stops, removes its temporary file and returns an error wrapping
// ctx.Err(). An existing file at outPath is replaced only on success.
func Generate(ctx context.Context, p Preset, seed uint64, outPath string, progress func(done, total int64)) error {
	return GenerateWith(ctx, p, seed, Options{}, outPath, progress)
}

// GenerateWith is Generate with a borrowed tokenizer or chat template (see Options).
func GenerateWith(ctx context.Context, p Preset, seed uint64, opts Options, outPath string, progress func(done, total int64)) (err error) {
	pl, err := newPlan(p, seed, opts)
	if err != nil {
		return err
	}
	dir, err := checkOutPath(outPath)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("modelgen: generate %s: %w", outPath, err)
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(outPath)+".*.tmp")
	if err != nil {
		return fmt.Errorf("modelgen: create temporary file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	w := &progressWriter{w: bufio.NewWriterSize(tmp, 4<<20), total: pl.size, report: progress}
	if _, err := w.Write(pl.header); err != nil {
		return fmt.Errorf("modelgen: write %s: %w", tmp.Name(), err)
	}
	g := newGenerator(pl.preset, seed, pl.vocab)
	for i := range pl.tensors {
		if err := g.writeTensor(ctx, w, &pl.tensors[i]); err != nil {
			return fmt.Errorf("modelgen: write tensor %s: %w", pl.tensors[i].name, err)
		}
	}
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("modelgen: write %s: %w", tmp.Name(), err)
	}
	if w.done != pl.size {
		return fmt.Errorf("modelgen: internal error: wrote %d bytes, expected %d", w.done, pl.size)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("modelgen: chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("modelgen: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("modelgen: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), outPath); err != nil {
		return fmt.Errorf("modelgen: rename to %s: %w", outPath, err)
	}
	return nil
}

// FileSize returns the exact size in bytes of the file Generate writes for p (the
// same for every seed).
func (p Preset) FileSize() (int64, error) { return FileSizeWith(p, Options{}) }

// FileSizeWith returns the exact size in bytes of the file GenerateWith writes for p
// and opts (the same for every seed).
func FileSizeWith(p Preset, opts Options) (int64, error) {
	pl, err := newPlan(p, DefaultSeed, opts)
	if err != nil {
		return 0, err
	}
	return pl.size, nil
}

// plan is everything about a file except its tensor data.
type plan struct {
	preset  Preset // with the vocabulary size of the options
	vocab   *Vocab
	tensors []tensorSpec
	header  []byte
	size    int64 // whole file
}

func newPlan(p Preset, seed uint64, opts Options) (*plan, error) {
	p, err := opts.apply(p)
	if err != nil {
		return nil, err
	}
	var vocab *Vocab
	if opts.Tokenizer != nil {
		vocab = opts.Tokenizer.vocab()
	} else if vocab, err = BuildVocab(p.Vocab); err != nil {
		return nil, err
	}
	ts := p.tensors()
	header, err := encodeHeader(metadata(p, seed, vocab, opts), ts)
	if err != nil {
		return nil, err
	}
	size := int64(len(header))
	for _, t := range ts {
		size += t.bytes() + padding(t.bytes())
	}
	return &plan{preset: p, vocab: vocab, tensors: ts, header: header, size: size}, nil
}

// checkOutPath validates the destination and returns its directory.
func checkOutPath(outPath string) (string, error) {
	if outPath == "" {
		return "", errors.New("modelgen: output path is empty")
	}
	if st, err := os.Stat(outPath); err == nil && st.IsDir() {
		return "", fmt.Errorf("modelgen: output path %s is a directory; give a file name such as %s", outPath, filepath.Join(outPath, "model.gguf"))
	} else if err == nil && !st.Mode().IsRegular() {
		return "", fmt.Errorf("modelgen: output path %s exists and is not a regular file", outPath)
	}
	dir := filepath.Dir(outPath)
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("modelgen: output directory %s does not exist", dir)
	}
	if err != nil {
		return "", fmt.Errorf("modelgen: output directory: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("modelgen: output directory %s is not a directory", dir)
	}
	return dir, nil
}

// metadata returns the GGUF key/value pairs, in file order.
func metadata(p Preset, seed uint64, v *Vocab, opts Options) []kv {
	ftype := uint32(0) // LLAMA_FTYPE_ALL_F32
	if p.Type == F16 {
		ftype = 1 // LLAMA_FTYPE_MOSTLY_F16
	}
	types := make([]int32, v.Len())
	for i, t := range v.Types {
		types[i] = int32(t)
	}
	kvs := []kv{
		{"general.architecture", "llama"},
		{"general.name", modelName(p)},
		{"general.description", fmt.Sprintf("HXP synthetic model with random weights (preset %s, %d layers)", p.Name, p.Layers)},
		{"general.file_type", ftype},
		{"general.alignment", uint32(ggufAlignment)},
		{"llama.vocab_size", uint32(p.Vocab)},
		{"llama.context_length", uint32(p.Context)},
		{"llama.embedding_length", uint32(p.Embd)},
		{"llama.block_count", uint32(p.Layers)},
		{"llama.feed_forward_length", uint32(p.FFN)},
		{"llama.attention.head_count", uint32(p.Heads)},
		{"llama.attention.head_count_kv", uint32(p.HeadsKV)},
		{"llama.rope.dimension_count", uint32(p.HeadDim())},
		{"llama.rope.freq_base", p.RopeBase},
		{"llama.attention.layer_norm_rms_epsilon", p.NormEps},
		{"hxp.preset", p.Name},
		{"hxp.seed", seed},
	}
	if p.Experts > 0 {
		kvs = append(kvs,
			kv{"llama.expert_count", uint32(p.Experts)},
			kv{"llama.expert_used_count", uint32(p.ExpertsUsed)},
		)
	}
	if opts.Tokenizer != nil {
		kvs = append(kvs, kv{"hxp.vocab", opts.Tokenizer.sourceName()})
		return opts.withTemplates(append(kvs, opts.Tokenizer.kvs...))
	}
	return opts.withTemplates(append(kvs,
		kv{"tokenizer.ggml.model", "llama"},
		kv{"tokenizer.ggml.tokens", v.Tokens},
		kv{"tokenizer.ggml.scores", v.Scores},
		kv{"tokenizer.ggml.token_type", types},
		kv{"tokenizer.ggml.unknown_token_id", uint32(UnkID)},
		kv{"tokenizer.ggml.bos_token_id", uint32(BOSID)},
		kv{"tokenizer.ggml.eos_token_id", uint32(EOSID)},
		kv{"tokenizer.ggml.eot_token_id", uint32(IMEndID)},
		kv{"tokenizer.ggml.add_bos_token", true},
		kv{"tokenizer.ggml.add_eos_token", false},
		kv{"tokenizer.ggml.add_space_prefix", true},
		kv{KeyChatTemplate, ChatTemplate},
	))
}

// modelName is the general.name of a preset's file. llama.cpp changes vocabulary
// attributes when a model's name contains "phi3" or "phi-3" (and then requires Phi-3's
// own special tokens, failing the load without them), so those spellings are altered.
func modelName(p Preset) string {
	return "hxp-" + strings.NewReplacer("phi3", "phi_3", "phi-3", "phi_3").Replace(strings.ToLower(p.Name))
}

// progressWriter counts bytes and reports progress after each write.
type progressWriter struct {
	w      *bufio.Writer
	done   int64
	total  int64
	report func(done, total int64)
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.done += int64(n)
	if pw.report != nil && n > 0 {
		pw.report(pw.done, pw.total)
	}
	return n, err
}

// writeTensor generates t chunk by chunk (in parallel within a chunk) and writes its
// encoding followed by alignment padding.
func (g *generator) writeTensor(ctx context.Context, w io.Writer, t *tensorSpec) error {
	key := streamKey(g.seed, t.name)
	n := t.elements()
	size := t.typ.size()
	buf := make([]byte, min(n, chunkElems)*size)
	for start := int64(0); start < n; start += chunkElems {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(n-start, chunkElems)
		g.encodeChunk(t, key, buf[:m*size], start)
		if _, err := w.Write(buf[:m*size]); err != nil {
			return err
		}
	}
	if pad := padding(n * size); pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	return nil
}

// encodeChunk encodes the elements of t from start on into buf, little-endian,
// splitting the work over GOMAXPROCS goroutines.
func (g *generator) encodeChunk(t *tensorSpec, key uint64, buf []byte, start int64) {
	size := int(t.typ.size())
	n := len(buf) / size
	workers := runtime.GOMAXPROCS(0)
	const minPart = 1 << 15
	if n < 2*minPart || workers < 2 {
		g.encodePart(t, key, buf, start)
		return
	}
	part := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += part {
		hi := min(lo+part, n)
		wg.Go(func() { g.encodePart(t, key, buf[lo*size:hi*size], start+int64(lo)) })
	}
	wg.Wait()
}

// encodePart generates and encodes the elements of t from start on into buf, in
// blocks small enough to stay in the L1 cache.
func (g *generator) encodePart(t *tensorSpec, key uint64, buf []byte, start int64) {
	var vals [2048]float32
	size := int(t.typ.size())
	for len(buf) > 0 {
		block := vals[:min(len(vals), len(buf)/size)]
		g.fill(t, key, block, start)
		if t.typ == ggmlF16 {
			encodeF16(buf, block)
		} else {
			out := buf[:4*len(block)]
			for i, v := range block {
				binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
			}
		}
		buf = buf[size*len(block):]
		start += int64(len(block))
	}
}
