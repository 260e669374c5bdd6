package engine_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/kvtype"
)

func loadVocab(t *testing.T, name string) *engine.Model {
	t.Helper()
	m, err := engine.LoadModel(engine.ModelParams{Path: testmodel.VocabFile(t, name), VocabOnly: true})
	if err != nil {
		t.Fatalf("load vocab-only %s: %v", name, err)
	}
	t.Cleanup(m.Close)
	return m
}

// vocabFacts are what the fixtures' vocabularies are known to hold (their models'
// tokenizer configs).
var vocabFacts = map[string]struct {
	size             int
	bosText, eosText string
	template         string // a fragment of the GGUF's chat template, "" for none
}{
	"bert-bge":  {30522, "[CLS]", "", ""},
	"llama-bpe": {128256, "<|begin_of_text|>", "<|end_of_text|>", ""},
	"llama-spm": {32000, "<s>", "</s>", ""},
	"phi-3":     {32064, "<s>", "<|endoftext|>", "<|assistant|>"},
	"qwen2":     {151936, "<|endoftext|>", "<|endoftext|>", "<|im_start|>"},
}

// TestLoadVocabOnlyFixtures loads every vocab-only file: llama.cpp's per-layer
// getters abort the process on a model without layers, so reaching the assertions
// at all is the first check.
func TestLoadVocabOnlyFixtures(t *testing.T) {
	for _, name := range testmodel.VocabNames(t) {
		t.Run(name, func(t *testing.T) {
			i := loadVocab(t, name).Info()
			want, known := vocabFacts[name]
			if !known {
				t.Fatalf("fixture %s has no expected facts in this test", name)
			}
			if !i.VocabOnly || i.Layers != 0 || i.Heads != 0 || i.HeadsKV != 0 || i.KVBytesPerToken(kvtype.F16) != 0 {
				t.Errorf("vocab-only info: VocabOnly %v, layers %d, heads %d/%d", i.VocabOnly, i.Layers, i.Heads, i.HeadsKV)
			}
			if i.VocabSize != want.size || i.BOSText != want.bosText || i.EOSText != want.eosText {
				t.Errorf("vocab %d, bos %q, eos %q; want %d, %q, %q", i.VocabSize, i.BOSText, i.EOSText, want.size, want.bosText, want.eosText)
			}
			if got, ok := i.ChatTemplateNamed(""); ok != (want.template != "") || !strings.Contains(got, want.template) {
				t.Errorf("chat template (present %v) %.80q, want one containing %q", ok, got, want.template)
			}
			if len(i.ChatTemplates) != 0 {
				t.Errorf("named templates %v, want none", i.ChatTemplates)
			}
		})
	}
}

func TestVocabOnlyModelRefusesContext(t *testing.T) {
	m := loadVocab(t, testmodel.VocabNames(t)[0])
	_, err := m.NewContext(engine.ContextParams{SeqCtx: 64, Sequences: 1, Batch: 64, Threads: 1})
	if !errors.Is(err, engine.ErrInvalidArgument) || !strings.Contains(err.Error(), "vocab-only") {
		t.Fatalf("NewContext on a vocab-only model: %v, want ErrInvalidArgument naming vocab-only", err)
	}
}

// TestTokenizerFixtures checks HXP's tokenization against llama.cpp's test vectors:
// the ids Hugging Face's tokenizer gives for each text, without special tokens added
// (as llama.cpp's test-tokenizer-0 tokenizes: add_special and parse_special false).
// Detokenizing gives the text back, except where the tokenizer itself is lossy:
//   - bert-bge (WordPiece) lowercases, strips accents, drops whitespace and unknown
//     characters ([UNK]) and spaces out punctuation; there the detokenized text must
//     tokenize to the same ids (for texts without [UNK]);
//   - llama-bpe cleans up spaces as Hugging Face's clean_up_tokenization_spaces does:
//     a space before "?", "!", "." or "," is dropped.
func TestTokenizerFixtures(t *testing.T) {
	for _, name := range testmodel.VocabNames(t) {
		t.Run(name, func(t *testing.T) {
			m := loadVocab(t, name)
			cases := testmodel.VocabCases(t, name)
			if len(cases) < 40 {
				t.Fatalf("only %d test texts", len(cases))
			}
			for _, c := range cases {
				got, err := m.Tokenize(c.Text, false, false)
				if err != nil {
					t.Fatalf("tokenize %q: %v", c.Text, err)
				}
				if !slices.Equal(got, c.IDs) {
					t.Errorf("tokenize %q:\n got %v\nwant %v", c.Text, got, c.IDs)
				}
				text, err := m.Detokenize(c.IDs, false, false)
				if err != nil {
					t.Fatalf("detokenize %v: %v", c.IDs, err)
				}
				switch name {
				case "bert-bge":
					if slices.Contains(c.IDs, 100) { // [UNK]: the characters are gone
						continue
					}
					again, err := m.Tokenize(text, false, false)
					if err != nil || !slices.Equal(again, c.IDs) {
						t.Errorf("retokenize detokenized %q (from %q): %v (%v), want %v", text, c.Text, again, err, c.IDs)
					}
				case "llama-bpe":
					if want := dropSpaceBeforePunct(c.Text); text != want {
						t.Errorf("detokenize %v = %q, want %q", c.IDs, text, want)
					}
				default:
					if text != c.Text {
						t.Errorf("detokenize %v = %q, want %q", c.IDs, text, c.Text)
					}
				}
			}
		})
	}
}

// dropSpaceBeforePunct removes the space before ?!., as Hugging Face's
// clean_up_tokenization_spaces does.
func dropSpaceBeforePunct(s string) string {
	for _, p := range []string{"?", "!", ".", ","} {
		s = strings.ReplaceAll(s, " "+p, p)
	}
	return s
}
