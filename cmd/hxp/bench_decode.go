package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/bench"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/modelgen"
)

func init() {
	register(command{
		name:    "bench-decode",
		summary: "bare llama_decode loop on one model (the ceiling for hxp bench): tok/s, TTFT, ITL",
		run:     func(args []string) error { return runBenchDecode(args, os.Stdout) },
	})
}

// decodeBenchPrompt starts every stream's prompt; a per-round, per-stream prefix makes
// each prompt distinct.
const decodeBenchPrompt = "Once upon a time in a small village there lived an old"

// decodeBenchOptions are the parsed flags of `hxp bench-decode`.
type decodeBenchOptions struct {
	model          string
	streams        []int
	tokens, rounds int
	ctxPerSeq      int
	gpuLayers      int
	threads        int
	flashAttention bool
	bandwidthGBps  float64
}

func runBenchDecode(args []string, out io.Writer) error {
	fs := newFlags("bench-decode", "--model PATH.gguf [--streams 1,4,16] [--tokens N] [--gpu-layers N] [--bandwidth GB/s]")
	var o decodeBenchOptions
	fs.StringVar(&o.model, "model", "", "GGUF model to load (required)")
	streams := fs.String("streams", "1,4,16", "comma-separated stream counts, each decoded together in one context")
	fs.IntVar(&o.tokens, "tokens", 64, "tokens each stream generates per round")
	fs.IntVar(&o.rounds, "rounds", 3, "measured rounds per stream count (after one warm-up round)")
	fs.IntVar(&o.ctxPerSeq, "ctx", 256, "context per stream; must hold the prompt and --tokens")
	fs.IntVar(&o.gpuLayers, "gpu-layers", -1, "layers to offload to the GPU when a GPU backend is loaded (-1: all)")
	fs.IntVar(&o.threads, "threads", 0, "CPU threads (0: all cores)")
	fs.BoolVar(&o.flashAttention, "flash-attention", true, "use flash attention")
	fs.Float64Var(&o.bandwidthGBps, "bandwidth", 0, "device copy bandwidth in GB/s (read+write); when set, batch-1 decode is reported as a fraction of it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: hxp bench-decode --model PATH.gguf [flags]

Loads the model (on the GPU when a GPU backend loads: %s, or %s next to
the executable) and runs the bare decode loop, one llama_decode per step for all
streams with greedy sampling and no scheduler, the ceiling that hxp bench's figures
through hxp serve are compared with. Prints a Markdown table per stream count: tokens
per second over the whole run and after the first token, time to first token and
inter-token latency. The weights are read once per decode step, so batch-1 decode
moves about weights x tok/s bytes per second; --bandwidth puts that against the
device's measured copy bandwidth.

Flags:
`, BackendLibEnv, backendLibName)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	var err error
	if o.streams, err = parseStreams(*streams); err != nil {
		return fmt.Errorf("%w: --streams: %v", errUsage, err)
	}
	if err := o.validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel)
	engine.SetLogger(log)
	loadBackend(log)
	m, err := engine.LoadModel(engine.ModelParams{Path: o.model, GPULayers: o.gpuLayers})
	if err != nil {
		return fmt.Errorf("load %s: %w", o.model, err)
	}
	defer m.Close()
	return benchDecode(m, o, out)
}

// parseStreams parses "1,4,16" into positive counts.
func parseStreams(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive stream count (example: 1,4,16)", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func (o decodeBenchOptions) validate() error {
	switch {
	case o.model == "":
		return fmt.Errorf("--model is required")
	case o.tokens < 2:
		return fmt.Errorf("--tokens %d: want at least 2 (one for TTFT, one for ITL)", o.tokens)
	case o.rounds < 1:
		return fmt.Errorf("--rounds %d: want at least 1", o.rounds)
	case o.ctxPerSeq < o.tokens+32:
		return fmt.Errorf("--ctx %d: want at least --tokens + 32 (%d) to hold the prompt and the generated tokens", o.ctxPerSeq, o.tokens+32)
	case o.threads < 0:
		return fmt.Errorf("--threads %d: want 0 (all cores) or more", o.threads)
	case o.bandwidthGBps < 0:
		return fmt.Errorf("--bandwidth %v: want a positive GB/s figure, or 0 for none", o.bandwidthGBps)
	}
	if n := engine.MaxParallelSequences(); n > 0 {
		for _, s := range o.streams {
			if s > n {
				return fmt.Errorf("--streams %d: llama.cpp decodes at most %d sequences together", s, n)
			}
		}
	}
	return nil
}

// benchDecode measures every stream count of o on m and writes the Markdown report.
func benchDecode(m *engine.Model, o decodeBenchOptions, out io.Writer) error {
	info := m.Info()
	fmt.Fprintf(out, "model: %s (%s, %d layers, %s weights), n_gpu_layers %d, %d tokens per stream, %d rounds\n\n",
		info.Path, info.Architecture, info.Layers, modelgen.FormatBytes(int64(info.SizeBytes)), o.gpuLayers, o.tokens, o.rounds)
	fmt.Fprintln(out, "| streams | tok/s | decode tok/s | TTFT p50 | ITL p50 | ITL p99 |")
	fmt.Fprintln(out, "| ---: | ---: | ---: | ---: | ---: | ---: |")
	var single float64
	for _, n := range o.streams {
		r, err := decodeRounds(m, o, n)
		if err != nil {
			return fmt.Errorf("%d streams: %w", n, err)
		}
		fmt.Fprintf(out, "| %d | %.1f | %.1f | %s | %s | %s |\n", n, r.TokensPerSecond(), r.DecodeTokensPerSecond(),
			msString(r.TTFT.Percentile(50)), msString(r.ITL.Percentile(50)), msString(r.ITL.Percentile(99)))
		if n == 1 {
			single = r.DecodeTokensPerSecond()
		}
	}
	if single > 0 {
		rate := float64(info.SizeBytes) * single / 1e9
		fmt.Fprintf(out, "\nbatch-1 decode reads the weights once per token: %s x %.1f tok/s = %.1f GB/s", modelgen.FormatBytes(int64(info.SizeBytes)), single, rate)
		if o.bandwidthGBps > 0 {
			fmt.Fprintf(out, " = %.1f%% of the measured copy bandwidth (%.0f GB/s, bytes read + written)", 100*rate/o.bandwidthGBps, o.bandwidthGBps)
		}
		fmt.Fprintln(out)
	}
	return nil
}

// decodeRounds runs one warm-up and o.rounds measured rounds of n streams in a fresh
// context, and merges the measured ones.
func decodeRounds(m *engine.Model, o decodeBenchOptions, n int) (bench.Run, error) {
	cp := engine.ContextParams{SeqCtx: o.ctxPerSeq, Sequences: n, Batch: max(512, 64*n), Threads: o.threads, FlashAttention: o.flashAttention}
	ctx, err := m.NewContext(cp)
	if err != nil {
		return bench.Run{}, err
	}
	defer ctx.Close()
	batch, err := engine.NewBatch(cp.Batch)
	if err != nil {
		return bench.Run{}, err
	}
	defer batch.Free()
	var total bench.Run
	for round := -1; round < o.rounds; round++ {
		prompts := make([][]engine.Token, n)
		for s := range prompts {
			if prompts[s], err = m.Tokenize(fmt.Sprintf("%d-%d %s", round, s, decodeBenchPrompt), true, false); err != nil {
				return bench.Run{}, err
			}
			if len(prompts[s])+o.tokens > o.ctxPerSeq || len(prompts[s]) > 64 {
				return bench.Run{}, fmt.Errorf("prompt of %d tokens + %d generated exceed --ctx %d", len(prompts[s]), o.tokens, o.ctxPerSeq)
			}
		}
		gen := o.tokens
		if round < 0 {
			gen = min(o.tokens, 4) // warm-up: kernels, graphs and pools
		}
		r, err := bench.BareDecode(ctx, batch, prompts, gen, nil)
		if err != nil {
			return bench.Run{}, err
		}
		if round >= 0 {
			total.Merge(r)
		}
	}
	return total, nil
}

// msString renders a duration in milliseconds with two decimals.
func msString(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Nanoseconds())/1e6) }
