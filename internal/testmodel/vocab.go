package testmodel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/modelgen"
)

// FixturesDir returns the shared fixtures folder sub ("vocab", "templates") of
// ../shared/fixtures beside the repository (or of $HXP_FIXTURES_DIR), and skips the
// test with a message when it is missing: fixtures are optional test data.
func FixturesDir(tb testing.TB, sub string) string {
	tb.Helper()
	dir, err := fixturesDir(sub)
	if err != nil {
		tb.Skipf("fixtures not available: %v", err)
	}
	return dir
}

func fixturesDir(sub string) (string, error) {
	root := os.Getenv("HXP_FIXTURES_DIR")
	if root == "" {
		repo, err := repoRoot()
		if err != nil {
			return "", err
		}
		root = filepath.Join(repo, "..", "shared", "fixtures")
	}
	dir := filepath.Join(root, sub)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%s is not a directory (see ../shared/fixtures/PROVENANCE.md)", dir)
	}
	return dir, nil
}

// repoRoot is the nearest directory above the working directory with a go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// VocabNames lists the vocabularies of the fixtures (llama-bpe, qwen2, ...), sorted;
// it skips the test when the fixtures are missing.
func VocabNames(tb testing.TB) []string {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(FixturesDir(tb, "vocab"), "ggml-vocab-*.gguf"))
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "ggml-vocab-"), ".gguf"))
	}
	sort.Strings(names)
	if len(names) == 0 {
		tb.Skip("fixtures: no ggml-vocab-*.gguf files")
	}
	return names
}

// VocabFile returns the path of the vocab-only fixture ggml-vocab-NAME.gguf; it skips
// the test when the fixtures are missing and fails it when NAME is not among them.
func VocabFile(tb testing.TB, name string) string {
	tb.Helper()
	path := filepath.Join(FixturesDir(tb, "vocab"), "ggml-vocab-"+name+".gguf")
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("testmodel: vocabulary %q: %v", name, err)
	}
	return path
}

// VocabCase is one text of llama.cpp's tokenizer test vectors and the ids that the
// model's original (Hugging Face) tokenizer gives for it, without special tokens.
type VocabCase struct {
	Text string
	IDs  []int32
}

// VocabCases reads the test vectors beside the fixture ggml-vocab-NAME.gguf: .inp
// holds the texts, each followed by a line "__ggml_vocab_test__", and .out the ids of
// each text, one line per text. It skips the test when the fixtures are missing.
func VocabCases(tb testing.TB, name string) []VocabCase {
	tb.Helper()
	base := VocabFile(tb, name)
	inp, err := os.ReadFile(base + ".inp")
	if err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	out, err := os.ReadFile(base + ".out")
	if err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	if last := len(texts) - 1; texts[last] != "" {
		tb.Fatalf("testmodel: %s.inp does not end with the separator line", base)
	} else {
		texts = texts[:last]
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		tb.Fatalf("testmodel: %s: %d texts but %d id lines", base, len(texts), len(lines))
	}
	cases := make([]VocabCase, len(texts))
	for i, text := range texts {
		cases[i].Text = text
		for _, f := range strings.Fields(lines[i]) {
			id, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				tb.Fatalf("testmodel: %s.out line %d: %v", base, i+1, err)
			}
			cases[i].IDs = append(cases[i].IDs, int32(id))
		}
	}
	return cases
}

// WithVocab returns a tiny model (F16, seed Seed) that has the tokenizer of the
// vocab-only fixture ggml-vocab-NAME.gguf and, when templateFile is not "", that file
// as its chat template (otherwise the vocabulary's own template, if any). It is
// generated on first use into the cache directory, keyed by the contents of both
// files, and must not be modified. It skips the test when the fixtures are missing.
func WithVocab(tb testing.TB, vocab, templateFile string) string {
	tb.Helper()
	src := VocabFile(tb, vocab)
	p, err := withVocab(src, templateFile)
	if err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	return p
}

func withVocab(vocabFile, templateFile string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	h := sha256.New()
	if err := hashFile(h, vocabFile); err != nil {
		return "", err
	}
	var opts modelgen.Options
	if templateFile != "" {
		b, err := os.ReadFile(templateFile)
		if err != nil {
			return "", fmt.Errorf("chat template: %w", err)
		}
		opts.ChatTemplate = string(b)
		h.Write([]byte{0})
		h.Write(b)
	}
	key := "vocab:" + hex.EncodeToString(h.Sum(nil))
	if p, ok := paths[key]; ok {
		return p, nil
	}
	tok, err := modelgen.ReadTokenizer(vocabFile)
	if err != nil {
		return "", err
	}
	opts.Tokenizer = tok
	pr, err := modelgen.Lookup("tiny")
	if err != nil {
		return "", err
	}
	pr.Type = modelgen.F16 // half the size: the borrowed vocabularies are large
	name := strings.TrimSuffix(filepath.Base(vocabFile), ".gguf")
	path, err := ensureModel(fmt.Sprintf("%s-%s-%s", pr.Name, name, key[len("vocab:"):][:12]), pr, opts)
	if err != nil {
		return "", err
	}
	paths[key] = path
	return path, nil
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}

// cachePath is the cache file of a model named stem; the name carries the generator
// version, seed and size, so a generator change never reuses a stale file.
// ensureModel generates the model of pr and opts into the cache directory, as
// STEM-vVERSION-sSEED-SIZE.gguf, unless a file of the right size is there, and
// returns its path. The name carries the generator version, seed and size, so a
// generator change never reuses a stale file.
func ensureModel(stem string, pr modelgen.Preset, opts modelgen.Options) (string, error) {
	dir := os.Getenv("HXP_TEST_MODEL_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "hxp-testmodels")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("model cache dir: %w", err)
	}
	size, err := modelgen.FileSizeWith(pr, opts)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-v%d-s%d-%d.gguf", stem, modelgen.Version, Seed, size))
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		return path, nil
	}
	if err := modelgen.GenerateWith(context.Background(), pr, Seed, opts, path, nil); err != nil {
		return "", err
	}
	return path, nil
}
