package modelgen

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hxp-ai/hxp/gguf"
)

// GGUF keys of the tokenizer.
const (
	tokenizerPrefix = "tokenizer."
	keyTokens       = "tokenizer.ggml.tokens"
	keyTokenTypes   = "tokenizer.ggml.token_type"
	keyScores       = "tokenizer.ggml.scores"
	// KeyChatTemplate is the GGUF key of a model's chat template (Jinja). Named
	// variants add "." and their name, e.g. tokenizer.chat_template.tool_use.
	KeyChatTemplate = "tokenizer.chat_template"
)

// Bounds on a borrowed tokenizer and on chat templates.
const (
	// MaxTokenizerVocab is the largest vocabulary a generated model may take from a
	// tokenizer file (the largest published vocabularies have about 260k tokens).
	MaxTokenizerVocab = 1 << 20
	// MaxChatTemplateBytes bounds an embedded chat template (published ones are up
	// to a few tens of KiB).
	MaxChatTemplateBytes = 1 << 20
)

// Tokenizer is the tokenizer of a GGUF file: every tokenizer.* key of the file (the
// tokenizer model and pre-tokenizer, tokens, scores, token types, merges, special
// token ids, add_bos/add_eos flags and chat templates), in file order. A generated
// model that carries it tokenizes exactly as the model it came from.
type Tokenizer struct {
	// Source is the file it was read from.
	Source string
	// Model is tokenizer.ggml.model ("llama" for SentencePiece, "gpt2" for BPE, ...).
	Model string
	// Pre is tokenizer.ggml.pre, the pre-tokenizer ("llama-bpe", "qwen2", ...), or "".
	Pre string
	// Tokens and Types are the vocabulary and each token's type.
	Tokens []string
	Types  []TokenType
	kvs    []kv
}

// Len is the vocabulary size.
func (t *Tokenizer) Len() int { return len(t.Tokens) }

// ChatTemplate returns the file's tokenizer.chat_template, "" when it has none.
func (t *Tokenizer) ChatTemplate() string {
	for _, p := range t.kvs {
		if p.key == KeyChatTemplate {
			s, _ := p.val.(string)
			return s
		}
	}
	return ""
}

// ReadTokenizer reads the tokenizer of a GGUF file, typically a vocab-only file
// such as llama.cpp's models/ggml-vocab-*.gguf. The error names the file and what
// is missing or unsupported.
func ReadTokenizer(path string) (*Tokenizer, error) {
	g, err := gguf.ReadFile(path, gguf.Options{})
	if err != nil {
		return nil, fmt.Errorf("modelgen: tokenizer: %w", err)
	}
	t := &Tokenizer{Source: path}
	t.Model, _ = g.Str("tokenizer.ggml.model")
	t.Pre, _ = g.Str("tokenizer.ggml.pre")
	if t.Model == "" {
		return nil, fmt.Errorf("modelgen: tokenizer %s: no tokenizer.ggml.model string (not a model or vocabulary file?)", path)
	}
	tokens, _ := g.Get(keyTokens)
	t.Tokens, _ = tokens.Data.([]string)
	typesValue, _ := g.Get(keyTokenTypes)
	types, _ := typesValue.Data.([]int32)
	n := len(t.Tokens)
	switch {
	case n == 0:
		return nil, fmt.Errorf("modelgen: tokenizer %s: %s is missing or not a string array", path, keyTokens)
	case n > MaxTokenizerVocab:
		return nil, fmt.Errorf("modelgen: tokenizer %s: %d tokens exceed %d", path, n, MaxTokenizerVocab)
	case len(types) != n:
		return nil, fmt.Errorf("modelgen: tokenizer %s: %s has %d int32 entries, want one per token (%d)", path, keyTokenTypes, len(types), n)
	}
	if s, ok := g.Get(keyScores); ok {
		if f, _ := s.Data.([]float32); len(f) != n {
			return nil, fmt.Errorf("modelgen: tokenizer %s: %s is not %d float32 scores", path, keyScores, n)
		}
	}
	t.Types = make([]TokenType, n)
	normal := 0
	for i, ty := range types {
		t.Types[i] = TokenType(ty)
		if t.Types[i] == TokenNormal {
			normal++
		}
	}
	if normal == 0 {
		return nil, fmt.Errorf("modelgen: tokenizer %s: no normal (text) tokens", path)
	}
	for _, p := range g.KV {
		if !strings.HasPrefix(p.Key, tokenizerPrefix) {
			continue
		}
		v, err := writable(p.Value.Data)
		if err != nil {
			return nil, fmt.Errorf("modelgen: tokenizer %s: key %s (%s): %w", path, p.Key, p.Value.Type, err)
		}
		t.kvs = append(t.kvs, kv{p.Key, v})
	}
	return t, nil
}

// writable converts a value read from a GGUF file to one the writer encodes: the
// writer's types as they are, narrow integers widened to 32 bits.
func writable(v any) (any, error) {
	switch v := v.(type) {
	case uint32, int32, uint64, float32, bool, string, []string, []float32, []int32:
		return v, nil
	case uint8:
		return uint32(v), nil
	case uint16:
		return uint32(v), nil
	case int8:
		return int32(v), nil
	case int16:
		return int32(v), nil
	}
	return nil, fmt.Errorf("value of type %T cannot be copied", v)
}

// vocab is the tokenizer as the weight generator needs it (token types).
func (t *Tokenizer) vocab() *Vocab { return &Vocab{Tokens: t.Tokens, Types: t.Types} }

// CheckChatTemplate validates a chat template to embed: UTF-8, no NUL byte, at most
// MaxChatTemplateBytes.
func CheckChatTemplate(tmpl string) error {
	switch {
	case len(tmpl) > MaxChatTemplateBytes:
		return fmt.Errorf("modelgen: chat template of %d bytes exceeds %d", len(tmpl), MaxChatTemplateBytes)
	case !utf8.ValidString(tmpl):
		return fmt.Errorf("modelgen: chat template is not valid UTF-8")
	case strings.IndexByte(tmpl, 0) >= 0:
		return fmt.Errorf("modelgen: chat template contains a NUL byte")
	}
	return nil
}

// Options change what Generate writes beyond the preset's shape and the seed.
type Options struct {
	// Tokenizer, when set, replaces the generated vocabulary: the file takes every
	// tokenizer.* key of the tokenizer's source and the preset's Vocab becomes the
	// tokenizer's size.
	Tokenizer *Tokenizer
	// ChatTemplate, when not "", is written as tokenizer.chat_template, replacing the
	// tokenizer's or the default ChatML template.
	ChatTemplate string
	// NamedTemplates are written as tokenizer.chat_template.NAME (e.g. "tool_use"),
	// in name order, replacing variants of the same name from the tokenizer.
	NamedTemplates map[string]string
}

// apply returns p with the vocabulary size of o, and checks o.
func (o Options) apply(p Preset) (Preset, error) {
	if o.ChatTemplate != "" {
		if err := CheckChatTemplate(o.ChatTemplate); err != nil {
			return p, err
		}
	}
	for name, tmpl := range o.NamedTemplates {
		if name == "" || strings.ContainsAny(name, ". \t\n") {
			return p, fmt.Errorf("modelgen: chat template name %q: want a non-empty name without dots or spaces (e.g. tool_use)", name)
		}
		if err := CheckChatTemplate(tmpl); err != nil {
			return p, fmt.Errorf("%w (template %s)", err, name)
		}
	}
	if o.Tokenizer == nil {
		return p, p.Validate()
	}
	// The preset's vocabulary bounds are those of the generated vocabulary; a
	// borrowed one was bounded by ReadTokenizer.
	check := p
	check.Vocab = minVocab
	if err := check.Validate(); err != nil {
		return p, err
	}
	p.Vocab = o.Tokenizer.Len()
	return p, nil
}

// withTemplates returns kvs with the chat templates of o set: each replaces the
// value of its key in place, or is appended.
func (o Options) withTemplates(kvs []kv) []kv {
	kvs = setKV(kvs, KeyChatTemplate, o.ChatTemplate)
	names := make([]string, 0, len(o.NamedTemplates))
	for name := range o.NamedTemplates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		kvs = setKV(kvs, KeyChatTemplate+"."+name, o.NamedTemplates[name])
	}
	return kvs
}

// setKV sets key to val (when not "") in place, or appends it.
func setKV(kvs []kv, key, val string) []kv {
	if val == "" {
		return kvs
	}
	for i := range kvs {
		if kvs[i].key == key {
			kvs[i].val = val
			return kvs
		}
	}
	return append(kvs, kv{key, val})
}

// sourceName is how the file names the tokenizer's origin (hxp.vocab).
func (t *Tokenizer) sourceName() string { return filepath.Base(t.Source) }
