package modelgen_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/modelgen"
)

func load(t *testing.T, path string, vocabOnly bool) *engine.Model {
	t.Helper()
	m, err := engine.LoadModel(engine.ModelParams{Path: path, VocabOnly: vocabOnly})
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestModelWithRealVocab generates models with the tokenizers of Llama 3 (BPE,
// 128k) and Qwen 2 (BPE, 151k): they tokenize every test text exactly as the
// vocab-only file does (with and without special tokens), decode, and keep the chat
// template they were given or the vocabulary's own.
func TestModelWithRealVocab(t *testing.T) {
	tmplDir := testmodel.FixturesDir(t, "templates")
	for _, c := range []struct{ vocab, template string }{
		{"llama-bpe", filepath.Join(tmplDir, "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")},
		{"qwen2", ""}, // its own template
	} {
		t.Run(c.vocab, func(t *testing.T) {
			ref := load(t, testmodel.VocabFile(t, c.vocab), true)
			m := load(t, testmodel.WithVocab(t, c.vocab, c.template), false)
			ri, mi := ref.Info(), m.Info()
			if mi.VocabOnly || mi.Layers == 0 || mi.VocabSize != ri.VocabSize || mi.BOSText != ri.BOSText || mi.EOSText != ri.EOSText || mi.AddBOS != ri.AddBOS {
				t.Fatalf("generated model: vocab %d bos %q eos %q add_bos %v layers %d; vocabulary: %d %q %q %v",
					mi.VocabSize, mi.BOSText, mi.EOSText, mi.AddBOS, mi.Layers, ri.VocabSize, ri.BOSText, ri.EOSText, ri.AddBOS)
			}
			wantTmpl := ri.ChatTemplate
			if c.template != "" {
				b, err := os.ReadFile(c.template)
				if err != nil {
					t.Fatal(err)
				}
				wantTmpl = string(b)
			}
			if wantTmpl == "" || mi.ChatTemplate != wantTmpl {
				t.Errorf("chat template of %d bytes, want the %d bytes given", len(mi.ChatTemplate), len(wantTmpl))
			}
			cases := testmodel.VocabCases(t, c.vocab)
			special := ri.BOSText + "user\n" + ri.EOSText // control tokens as text
			texts := []string{special}
			for _, vc := range cases {
				texts = append(texts, vc.Text)
			}
			for _, text := range texts {
				for _, flags := range [][2]bool{{false, false}, {true, false}, {true, true}} {
					want, err := ref.Tokenize(text, flags[0], flags[1])
					if err != nil {
						t.Fatal(err)
					}
					got, err := m.Tokenize(text, flags[0], flags[1])
					if err != nil || !slices.Equal(got, want) {
						t.Errorf("tokenize %q (add_special %v, parse_special %v) = %v (%v), vocabulary file gives %v", text, flags[0], flags[1], got, err, want)
					}
				}
			}
			if !slices.Equal(mustTokenize(t, m, cases[len(cases)-1].Text), cases[len(cases)-1].IDs) {
				t.Error("generated model does not give the reference ids")
			}
			generate(t, m, "Hello, world", 4)
		})
	}
}

func mustTokenize(t *testing.T, m *engine.Model, text string) []engine.Token {
	t.Helper()
	toks, err := m.Tokenize(text, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// generate decodes prompt and samples n tokens greedily; each must be a token of
// the vocabulary that detokenizes.
func generate(t *testing.T, m *engine.Model, prompt string, n int) {
	t.Helper()
	toks := mustTokenize(t, m, prompt)
	ctx, err := m.NewContext(engine.ContextParams{SeqCtx: 64, Sequences: 1, Batch: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	s, err := m.NewSampler(engine.SamplingParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, err := engine.NewBatch(64)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	for i, tok := range toks {
		if _, err := b.Add(tok, i, 0, i == len(toks)-1); err != nil {
			t.Fatal(err)
		}
	}
	var out []engine.Token
	for step := 0; step < n; step++ {
		if err := ctx.Decode(b); err != nil {
			t.Fatalf("decode step %d: %v", step, err)
		}
		tok, err := s.Sample(ctx, b, b.Len()-1)
		if err != nil {
			t.Fatalf("sample step %d: %v", step, err)
		}
		out = append(out, tok)
		b.Clear()
		if _, err := b.Add(tok, len(toks)+step, 0, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.CheckTokens(out); err != nil || len(out) != n {
		t.Fatalf("generated %v: %v", out, err)
	}
	if _, err := m.Detokenize(out, false, false); err != nil {
		t.Fatalf("detokenize %v: %v", out, err)
	}
}

// TestGenerateWithVocabIsDeterministic regenerates the cached llama-bpe model and
// compares the bytes.
func TestGenerateWithVocabIsDeterministic(t *testing.T) {
	cached := testmodel.WithVocab(t, "llama-bpe", "")
	tok, err := modelgen.ReadTokenizer(testmodel.VocabFile(t, "llama-bpe"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := modelgen.Lookup("tiny")
	p.Type = modelgen.F16
	fresh := filepath.Join(t.TempDir(), "m.gguf")
	if err := modelgen.GenerateWith(context.Background(), p, testmodel.Seed, modelgen.Options{Tokenizer: tok}, fresh, nil); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(cached)
	b, _ := os.ReadFile(fresh)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("regenerated file differs from the cached one (%d vs %d bytes)", len(b), len(a))
	}
	if !strings.HasPrefix(string(b), "GGUF") {
		t.Fatal("not a GGUF file")
	}
}

// TestTemplatesRoundTrip embeds a default and a named chat template in the generated
// vocabulary's model, reads them back through llama.cpp and through ReadTokenizer.
func TestTemplatesRoundTrip(t *testing.T) {
	p, _ := modelgen.Lookup("tiny")
	const main, toolUse = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}", "{{ tools | tojson }} ünïcode"
	path := filepath.Join(t.TempDir(), "m.gguf")
	opts := modelgen.Options{ChatTemplate: main, NamedTemplates: map[string]string{"tool_use": toolUse}}
	if err := modelgen.GenerateWith(context.Background(), p, 1, opts, path, nil); err != nil {
		t.Fatal(err)
	}
	info := load(t, path, true).Info()
	if got, ok := info.ChatTemplateNamed("tool_use"); !ok || got != toolUse || info.ChatTemplate != main || len(info.ChatTemplates) != 1 {
		t.Errorf("templates: default %q, named %v", info.ChatTemplate, info.ChatTemplates)
	}
	tok, err := modelgen.ReadTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Len() != p.Vocab || tok.Model != "llama" || tok.ChatTemplate() != main {
		t.Errorf("ReadTokenizer: %d tokens, model %q, template %q", tok.Len(), tok.Model, tok.ChatTemplate())
	}
}

func TestGenerateWithRejectsBadInput(t *testing.T) {
	p, _ := modelgen.Lookup("tiny")
	out := filepath.Join(t.TempDir(), "m.gguf")
	for name, opts := range map[string]modelgen.Options{
		"not UTF-8":   {ChatTemplate: "\xff{{ x }}"},
		"NUL":         {ChatTemplate: "a\x00b"},
		"too large":   {ChatTemplate: strings.Repeat("x", modelgen.MaxChatTemplateBytes+1)},
		"dotted name": {NamedTemplates: map[string]string{"tool.use": "x"}},
		"empty name":  {NamedTemplates: map[string]string{"": "x"}},
		"bad variant": {NamedTemplates: map[string]string{"tool_use": "\xff"}},
	} {
		if err := modelgen.GenerateWith(context.Background(), p, 1, opts, out, nil); err == nil {
			t.Errorf("%s: generated", name)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused generation left a file")
	}
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	full := filepath.Join(t.TempDir(), "full.gguf")
	if err := modelgen.Generate(context.Background(), p, 1, full, nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(full)
	for name, content := range map[string][]byte{"not GGUF": []byte("hello world, not a model"), "truncated": data[:4096]} {
		os.WriteFile(bad, content, 0o644)
		if _, err := modelgen.ReadTokenizer(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: ReadTokenizer error %v, want one naming the file", name, err)
		}
	}
}
