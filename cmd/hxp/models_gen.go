package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/modelgen"
)

func init() {
	register(command{
		name:    "models gen",
		summary: "generate a deterministic random-weight GGUF model (tiny, demo, bench, phi3, mixtral)",
		run:     runModelsGen,
	})
}

func runModelsGen(args []string) error {
	fs := newFlags("models gen", "--preset NAME --out FILE [--seed N] [--layers N] [--quant TYPE] [--vocab FILE.gguf] [--template FILE.jinja] | --list")
	presetName := fs.String("preset", "", "model shape, one of "+strings.Join(modelgen.Names(), ", ")+" (required)")
	out := fs.String("out", "", "GGUF file to write; replaced atomically on success (required)")
	seed := fs.Uint64("seed", modelgen.DefaultSeed, "weight seed: the same preset and seed give a byte-identical file")
	layers := fs.Int("layers", 0, "override the preset's layer count (e.g. a 2-layer mixtral for testing)")
	quant := fs.String("quant", "", "quantize the result to this type: q8_0, q4_0 or f16 (also "+strings.Join(engine.FileTypeNames(), ", ")+")")
	vocab := fs.String("vocab", "", "take the tokenizer (and chat template, if any) of this GGUF file, e.g. a vocab-only ggml-vocab-*.gguf; the vocabulary size follows it")
	template := fs.String("template", "", "embed this Jinja file as the chat template (tokenizer.chat_template)")
	list := fs.Bool("list", false, "list the presets and exit")
	if err := parseFlags(fs, args, -1); err != nil {
		return err
	}
	if *list {
		return listPresets()
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *presetName == "" || *out == "" {
		return fmt.Errorf("%w: --preset and --out are required (presets: %s)", errUsage, strings.Join(modelgen.Names(), ", "))
	}
	p, err := modelgen.Lookup(*presetName)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *layers < 0 {
		return fmt.Errorf("%w: --layers %d: must be positive", errUsage, *layers)
	}
	if *layers > 0 {
		p.Layers = *layers
	}
	opts, err := genOptions(*vocab, *template)
	if err != nil {
		return err
	}
	if opts.Tokenizer != nil {
		p.Vocab = opts.Tokenizer.Len() // GenerateWith checks the rest of the shape
	} else if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	qtype := strings.ToLower(*quant)
	if _, ok := engine.FileTypes[qtype]; qtype != "" && !ok {
		return fmt.Errorf("%w: --quant %q: want one of %s", errUsage, *quant, strings.Join(engine.FileTypeNames(), ", "))
	}
	if qtype == p.Type.String() {
		qtype = "" // already stored in that type
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return generateModel(ctx, p, *seed, opts, *out, qtype, *layers == 0)
}

// genOptions reads the --vocab tokenizer and the --template file ("" for none).
func genOptions(vocab, template string) (modelgen.Options, error) {
	var opts modelgen.Options
	if vocab != "" {
		tok, err := modelgen.ReadTokenizer(vocab)
		if err != nil {
			return opts, fmt.Errorf("--vocab: %w", err)
		}
		opts.Tokenizer = tok
	}
	if template != "" {
		st, err := os.Stat(template)
		if err != nil {
			return opts, fmt.Errorf("--template: %w", err)
		}
		if st.Size() > modelgen.MaxChatTemplateBytes {
			return opts, fmt.Errorf("--template %s: %d bytes exceed %d", template, st.Size(), modelgen.MaxChatTemplateBytes)
		}
		b, err := os.ReadFile(template)
		if err != nil {
			return opts, fmt.Errorf("--template: %w", err)
		}
		if err := modelgen.CheckChatTemplate(string(b)); err != nil {
			return opts, fmt.Errorf("--template %s: %w", template, err)
		}
		opts.ChatTemplate = string(b)
	}
	return opts, nil
}

// generateModel writes preset p to out, through a temporary F16/F32 file when qtype
// asks for quantization.
func generateModel(ctx context.Context, p modelgen.Preset, seed uint64, opts modelgen.Options, out, qtype string, fullSize bool) error {
	size, err := modelgen.FileSizeWith(p, opts)
	if err != nil {
		return err
	}
	if p.OnDemand && fullSize {
		fmt.Fprintf(os.Stderr, "note: full-size %s writes %s; use --layers N for a smaller file\n", p.Name, modelgen.FormatBytes(size))
	}
	fmt.Fprintf(os.Stderr, "generating %s (seed %d)\n", p, seed)
	if t := opts.Tokenizer; t != nil {
		fmt.Fprintf(os.Stderr, "tokenizer of %s: %s, pre-tokenizer %q, %d tokens\n", t.Source, t.Model, t.Pre, t.Len())
	}

	genPath := out
	if qtype != "" {
		// Generate next to the destination, so a failure leaves out untouched.
		genPath, err = reserveTemp(out, "src")
		if err != nil {
			return err
		}
		defer os.Remove(genPath)
	}
	start := time.Now()
	progress, finish := modelgen.ProgressPrinter(os.Stderr, "writing "+filepath.Base(out), modelgen.IsTerminal(os.Stderr))
	err = modelgen.GenerateWith(ctx, p, seed, opts, genPath, progress)
	finish()
	if err != nil {
		return err
	}
	if qtype != "" {
		if err := quantizeInto(genPath, out, qtype); err != nil {
			return err
		}
	}
	st, err := os.Stat(out)
	if err != nil {
		return fmt.Errorf("models gen: %w", err)
	}
	stored := p.Type.String()
	if qtype != "" {
		stored = qtype
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %s, %s, preset %s, %d layers, seed %d, in %.1fs\n",
		out, modelgen.FormatBytes(st.Size()), stored, p.Name, p.Layers, seed, time.Since(start).Seconds())
	return nil
}

// quantizeInto quantizes src to qtype into a temporary file beside out, then renames it
// to out.
func quantizeInto(src, out, qtype string) error {
	fmt.Fprintf(os.Stderr, "quantizing to %s\n", qtype)
	tmp, err := reserveTemp(out, qtype)
	if err != nil {
		return err
	}
	if err := engine.Quantize(src, tmp, qtype, 0); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("models gen: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("models gen: %w", err)
	}
	return nil
}

// reserveTemp creates an empty, uniquely named hidden file in out's directory.
func reserveTemp(out, tag string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+"."+tag+"-*.gguf")
	if err != nil {
		return "", fmt.Errorf("models gen: temporary file next to %s: %w", out, err)
	}
	f.Close()
	return f.Name(), nil
}

func listPresets() error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRESET\tPARAMS\tFILE\tSHAPE\tUSE")
	for _, p := range modelgen.Presets() {
		size, err := p.FileSize()
		if err != nil {
			return err
		}
		shape := fmt.Sprintf("embd %d, %d layers, %d/%d heads, ff %d, vocab %d, ctx %d", p.Embd, p.Layers, p.Heads, p.HeadsKV, p.FFN, p.Vocab, p.Context)
		if p.Experts > 0 {
			shape += fmt.Sprintf(", %dx%d experts", p.Experts, p.ExpertsUsed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\n", p.Name, modelgen.FormatCount(p.Params()), modelgen.FormatBytes(size), p.Type, shape, p.Summary)
	}
	return tw.Flush()
}
