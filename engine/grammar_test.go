package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/grammar"
)

// generate runs one sequence from prompt with p until an end-of-generation token or
// n tokens, returning the generated text and whether it ended by itself.
func generate(t *testing.T, c *engine.Context, prompt string, p engine.SamplingParams, n int) (string, bool) {
	t.Helper()
	s, err := c.Model().NewSampler(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return generateWith(t, c, prompt, s, n)
}

// generateWith is generate with a sampler of the caller's.
func generateWith(tb testing.TB, c *engine.Context, prompt string, s *engine.Sampler, n int) (string, bool) {
	tb.Helper()
	m := c.Model()
	toks, err := m.Tokenize(prompt, true, false)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := engine.NewBatch(256)
	defer b.Free()
	c.ClearAll()
	for i, tk := range toks {
		b.Add(tk, i, 0, i == len(toks)-1)
	}
	var out []byte
	for i := 0; i < n; i++ {
		if err := c.Decode(b); err != nil {
			tb.Fatal(err)
		}
		tk, err := s.Sample(c, b, b.Len()-1)
		if err != nil {
			tb.Fatalf("token %d after %q: %v", i, out, err)
		}
		if m.IsEOG(tk) {
			return string(out), true
		}
		piece, _ := m.TokenPiece(tk, false)
		out = append(out, piece...)
		b.Clear()
		b.Add(tk, len(toks)+i, 0, true)
	}
	return string(out), false
}

// TestSchemaGrammarsHoldOnTheModel runs schema grammars through llama.cpp's parser and
// sampler at temperature 1 over many seeds; every output that the model ended must
// validate against its schema.
func TestSchemaGrammarsHoldOnTheModel(t *testing.T) {
	m := loadTiny(t)
	c := newCtx(t, m, engine.ContextParams{})
	schemas := []string{
		`{"type":"object","properties":{"name":{"type":"string","maxLength":6},"age":{"type":"integer","minimum":18,"maximum":99},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":3},"ok":{"type":["boolean","null"]}},"required":["name","age"],"additionalProperties":false}`,
		`{"type":"array","prefixItems":[{"type":"string","format":"date"},{"type":"string","format":"uuid"}],"items":false,"minItems":2}`,
		`{"$defs":{"t":{"type":"object","properties":{"v":{"type":"integer","minimum":-9,"maximum":9},"kids":{"type":"array","items":{"$ref":"#/$defs/t"},"maxItems":2}},"required":["v"]}},"$ref":"#/$defs/t"}`,
		`{"oneOf":[{"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"integer","minimum":1,"maximum":50}},"required":["kind","r"]},{"type":"object","properties":{"kind":{"const":"square"},"side":{"type":"integer","minimum":1,"maximum":50}},"required":["kind","side"]}]}`,
	}
	for i, schema := range schemas {
		g, err := grammar.FromSchema([]byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		comp := jsonschema.NewCompiler()
		comp.AssertFormat()
		doc, _ := jsonschema.UnmarshalJSON(strings.NewReader(schema))
		comp.AddResource("s.json", doc)
		sch, err := comp.Compile("s.json")
		if err != nil {
			t.Fatal(err)
		}
		finished := 0
		for seed := range uint32(12) {
			out, done := generate(t, c, "Once upon a time", engine.SamplingParams{Temperature: 1, Seed: seed, Grammar: g}, 160)
			if !done {
				continue
			}
			finished++
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
			if err != nil {
				t.Fatalf("schema %d seed %d: not JSON: %q: %v", i, seed, out, err)
			}
			if err := sch.Validate(v); err != nil {
				t.Fatalf("schema %d seed %d: %q does not validate: %v", i, seed, out, err)
			}
		}
		if finished < 6 {
			t.Errorf("schema %d: only %d of 12 generations ended within 160 tokens", i, finished)
		}
	}
	out, done := generate(t, c, "Hello", engine.SamplingParams{Temperature: 1, Seed: 3, Grammar: grammar.JSONObject}, 200)
	if done && (!strings.HasPrefix(out, "{") || !strings.HasSuffix(out, "}")) {
		t.Fatalf("JSONObject gave %q", out)
	}
}

func TestGrammarRefusedWithoutCrash(t *testing.T) {
	m := loadTiny(t)
	const ok = `root ::= "x"`
	for name, p := range map[string]engine.SamplingParams{
		"syntax":                   {Grammar: `root ::= (`},
		"undefined rule":           {Grammar: `root ::= other`},
		"no root":                  {Grammar: `x ::= "a"`},
		"left recursion":           {Grammar: `root ::= root "a" | "b"`},
		"repetition bound":         {Grammar: `root ::= "a"{0,5000}`},
		"NUL":                      {Grammar: "root ::= \"a\x00\""},
		"triggers without one":     {GrammarTriggers: []string{"x"}},
		"bad Go pattern":           {Grammar: ok, GrammarTriggers: []string{"(["}},
		"empty pattern":            {Grammar: ok, GrammarTriggers: []string{""}},
		"pattern std::regex lacks": {Grammar: ok, GrammarTriggers: []string{`(?i)x`}},
		"negative trigger token":   {Grammar: ok, GrammarTriggerTokens: []engine.Token{-1}},
		"trigger token too large":  {Grammar: ok, GrammarTriggerTokens: []engine.Token{1 << 30}},
	} {
		if _, err := m.NewSampler(p); !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if s, err := m.NewSampler(engine.SamplingParams{Grammar: ok, GrammarTriggers: []string{engine.TriggerPattern("<a>", "b.c")}}); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
}

// asciiWord reports whether a token piece is plain text usable as a trigger word.
func asciiWord(p string) bool {
	if strings.TrimSpace(p) == "" {
		return false
	}
	for _, r := range p {
		if !(r == ' ' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// TestLazyGrammar finds a word the model writes on its own under greedy decoding,
// then makes it a trigger: the output must be unchanged up to the word and follow
// the grammar from it on; the same grammar, not lazy, constrains from the start.
func TestLazyGrammar(t *testing.T) {
	m := loadTiny(t)
	c := newCtx(t, m, engine.ContextParams{})
	const prompt = "Once upon a time"
	free, _ := generate(t, c, prompt, engine.SamplingParams{}, 24)
	toks, _ := m.Tokenize(prompt, true, false)
	// The pieces of the free run, to pick a trigger word starting a token after the
	// first few and not seen before it.
	var pieces []string
	var ids []engine.Token
	{
		s, _ := m.NewSampler(engine.SamplingParams{})
		b, _ := engine.NewBatch(256)
		c.ClearAll()
		for i, tk := range toks {
			b.Add(tk, i, 0, i == len(toks)-1)
		}
		for i := 0; i < 24; i++ {
			c.Decode(b)
			tk, _ := s.Sample(c, b, b.Len()-1)
			p, _ := m.TokenPiece(tk, false)
			pieces, ids = append(pieces, string(p)), append(ids, tk)
			b.Clear()
			b.Add(tk, len(toks)+i, 0, true)
		}
		s.Close()
		b.Free()
	}
	k, before := -1, ""
	for i := 2; i < len(pieces); i++ {
		before = strings.Join(pieces[:i], "")
		if asciiWord(pieces[i]) && !strings.Contains(before+pieces[i][:len(pieces[i])-1], pieces[i]) {
			k = i
			break
		}
	}
	if k < 0 {
		t.Fatalf("no usable trigger word in the free run %q", free)
	}
	word := pieces[k]
	if !strings.HasPrefix(free, before+word) {
		t.Fatalf("pieces %q do not spell the free run %q", pieces, free)
	}
	g := `root ::= ` + grammar.Literal(word) + ` [0-9]{3,8}`
	lazy, done := generate(t, c, prompt, engine.SamplingParams{Grammar: g, GrammarTriggers: []string{engine.TriggerPattern(word)}}, 40)
	if !done || !strings.HasPrefix(lazy, before+word) {
		t.Fatalf("lazy run %q (ended %v): want the free run's %q then digits", lazy, done, before+word)
	}
	if digits := lazy[len(before+word):]; len(digits) < 3 || len(digits) > 8 || strings.Trim(digits, "0123456789") != "" {
		t.Fatalf("after the trigger %q: %q, want 3 to 8 digits", word, digits)
	}
	t.Logf("free run %q; trigger %q; lazy run %q", free, word, lazy)
	eager, done := generate(t, c, prompt, engine.SamplingParams{Grammar: g}, 40)
	if !done || !strings.HasPrefix(eager, word) || strings.Trim(eager[len(word):], "0123456789") != "" {
		t.Fatalf("eager run %q (ended %v)", eager, done)
	}
	// A trigger token (the word's token in the free run): the grammar starts at that
	// token, which it is fed first.
	byTok, done := generate(t, c, prompt, engine.SamplingParams{Grammar: g, GrammarTriggerTokens: []engine.Token{ids[k]}}, 40)
	if digits := strings.TrimPrefix(byTok, before+word); !done || digits == byTok || len(digits) < 3 || strings.Trim(digits, "0123456789") != "" {
		t.Fatalf("trigger-token run %q (ended %v)", byTok, done)
	}
}
