package engine_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/grammar"
	"github.com/hxp-ai/hxp/internal/testmodel"
)

// checkFirstSchemas are a structural schema (a random model's picks break it often)
// and a text-heavy one (inside a long string most picks are allowed, as with a real
// model that follows the format it was asked for).
var checkFirstSchemas = map[string]string{
	"structural": `{"type":"array","minItems":40,"items":{"type":"object","properties":{"id":{"type":"integer","minimum":0,"maximum":999},"ok":{"type":"boolean"}},"required":["id","ok"],"additionalProperties":false}}`,
	"text":       `{"type":"array","minItems":200,"items":{"type":"string"}}`,
}

// TestCheckFirstIsGrammarFirst: at temperature 0 the check-first path (the chain picks,
// the grammar checks that one token, a rejection redraws from the grammar's
// candidates) must give exactly the tokens of filtering every candidate first, and it
// must have redrawn at least once (or the test would not exercise the redraw).
func TestCheckFirstIsGrammarFirst(t *testing.T) {
	m := loadTiny(t)
	c := newCtx(t, m, engine.ContextParams{})
	for name, schema := range checkFirstSchemas {
		g, err := grammar.FromSchema([]byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		run := func(first bool) (string, int) {
			s, err := m.NewSampler(engine.SamplingParams{Grammar: g, RepeatPenalty: 1.1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			engine.SetGrammarFirst(s, first)
			out, _ := generateWith(t, c, "Once upon a time", s, 120)
			return out, engine.Redrawn(s)
		}
		want, redrawnFirst := run(true)
		got, redrawn := run(false)
		if got != want {
			t.Errorf("%s: check-first gave %q, grammar-first %q", name, got, want)
		}
		if redrawnFirst != 0 {
			t.Errorf("%s: grammar-first redrew %d picks; it never should", name, redrawnFirst)
		}
		if redrawn == 0 {
			t.Errorf("%s: no pick was rejected in 120 tokens: the redraw path went untested", name)
		}
	}
}

// BenchmarkSampleGrammar measures one Sample call on the bench model's 16,384-token
// vocabulary: without a grammar, with a JSON-schema grammar checked first (the
// default) and with the grammar filtering every candidate first (the previous way).
// Decoding is outside the timer. It reports the share of picks redrawn: the
// check-first path costs one token's check plus, on a redraw, the whole filter.
func BenchmarkSampleGrammar(b *testing.B) {
	m, err := engine.LoadModel(engine.ModelParams{Path: testmodel.Path(b, "bench")})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	c, err := m.NewContext(engine.ContextParams{SeqCtx: 2048, Sequences: 1, Batch: 256, Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for name, schema := range checkFirstSchemas {
		g, err := grammar.FromSchema([]byte(schema))
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []string{"none", "check-first", "grammar-first"} {
			b.Run(fmt.Sprintf("schema=%s/mode=%s", name, mode), func(b *testing.B) {
				p := engine.SamplingParams{Temperature: 1, Seed: 1}
				if mode != "none" {
					p.Grammar = g
				}
				var sampled time.Duration
				var redrawn, picks int
				for i := 0; i < b.N; i++ {
					s, err := m.NewSampler(p)
					if err != nil {
						b.Fatal(err)
					}
					engine.SetGrammarFirst(s, mode == "grammar-first")
					d, n := timeSamples(b, c, s, 64)
					sampled += d
					picks += n
					redrawn += engine.Redrawn(s)
					s.Close()
				}
				b.ReportMetric(float64(sampled.Microseconds())/float64(picks), "us/token")
				b.ReportMetric(float64(redrawn)/float64(picks), "redrawn/token")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// timeSamples generates up to n tokens with s and returns the time spent in Sample
// alone and the number of tokens sampled.
func timeSamples(b *testing.B, c *engine.Context, s *engine.Sampler, n int) (time.Duration, int) {
	m := c.Model()
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		b.Fatal(err)
	}
	batch, _ := engine.NewBatch(256)
	defer batch.Free()
	c.ClearAll()
	for i, tk := range toks {
		batch.Add(tk, i, 0, i == len(toks)-1)
	}
	var spent time.Duration
	for i := 0; i < n; i++ {
		if err := c.Decode(batch); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		tk, err := s.Sample(c, batch, batch.Len()-1)
		spent += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if m.IsEOG(tk) {
			return spent, i + 1
		}
		batch.Clear()
		batch.Add(tk, len(toks)+i, 0, true)
	}
	return spent, n
}

// TestSampleLogitsIsSample: sampling a copy of the logits (as the scheduler does off
// its loop for constrained sequences) gives exactly the tokens of sampling the
// context, seeded at temperature 1 with a grammar; a copy of the wrong length is
// refused before any C call.
func TestSampleLogitsIsSample(t *testing.T) {
	m := loadTiny(t)
	c := newCtx(t, m, engine.ContextParams{})
	g, err := grammar.FromSchema([]byte(checkFirstSchemas["structural"]))
	if err != nil {
		t.Fatal(err)
	}
	run := func(copied bool) []engine.Token {
		s, err := m.NewSampler(engine.SamplingParams{Temperature: 1, Seed: 7, Grammar: g})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !s.Constrained() {
			t.Fatal("a sampler with a grammar says it is not constrained")
		}
		toks, _ := m.Tokenize("Once upon a time", true, false)
		b, _ := engine.NewBatch(256)
		defer b.Free()
		c.ClearAll()
		for i, tk := range toks {
			b.Add(tk, i, 0, i == len(toks)-1)
		}
		var out []engine.Token
		for i := 0; i < 60; i++ {
			if err := c.Decode(b); err != nil {
				t.Fatal(err)
			}
			var tk engine.Token
			if copied {
				l, err := c.Logits(b, b.Len()-1)
				if err != nil {
					t.Fatal(err)
				}
				tk, err = s.SampleLogits(append([]float32(nil), l...))
				if err != nil {
					t.Fatal(err)
				}
			} else if tk, err = s.Sample(c, b, b.Len()-1); err != nil {
				t.Fatal(err)
			}
			out = append(out, tk)
			if m.IsEOG(tk) {
				break
			}
			b.Clear()
			b.Add(tk, len(toks)+i, 0, true)
		}
		return out
	}
	want, got := run(false), run(true)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SampleLogits gave %v, Sample %v", got, want)
	}
	s, _ := m.NewSampler(engine.SamplingParams{})
	defer s.Close()
	if s.Constrained() {
		t.Error("a sampler without a grammar says it is constrained")
	}
	if _, err := s.SampleLogits(make([]float32, 3)); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("3 logits for a %d-token vocabulary: %v, want ErrInvalidArgument", m.Info().VocabSize, err)
	}
}
