package server

import (
	"math"
	"strings"

	"github.com/hxp-ai/hxp/sched"
)

// minLogprob stands in for -Inf (a token the model or grammar ruled out), which JSON
// cannot carry; OpenAI reports such tokens with the same value.
const minLogprob = -9999.0

func finiteLogprob(lp float32) float64 {
	v := float64(lp)
	if math.IsNaN(v) || v < minLogprob {
		return minLogprob
	}
	return v
}

// tokenString shows a token's bytes as text; bytes that are not valid UTF-8 on their
// own (part of a character) become U+FFFD, the raw bytes are in the bytes field.
func tokenString(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }

func byteInts(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// chatLogprobs converts the scheduler's logprobs to chat's content[] entries.
func chatLogprobs(b Backend, lps []sched.TokenLogprob) ([]TokenLogprob, error) {
	out := make([]TokenLogprob, len(lps))
	for i, lp := range lps {
		e := TokenLogprob{Token: tokenString(lp.Text), Logprob: finiteLogprob(lp.Logprob), Bytes: byteInts(lp.Text),
			TopLogprobs: make([]TopLogprob, 0, len(lp.Top))}
		for _, alt := range lp.Top {
			tb, err := b.TokenBytes(alt.Token)
			if err != nil {
				return nil, err
			}
			e.TopLogprobs = append(e.TopLogprobs, TopLogprob{Token: tokenString(tb), Logprob: finiteLogprob(alt.Logprob), Bytes: byteInts(tb)})
		}
		out[i] = e
	}
	return out, nil
}

// legacyLogprobs converts logprobs to /v1/completions' format; offset is the text
// offset of the first token and is advanced past the last.
func legacyLogprobs(b Backend, lps []sched.TokenLogprob, offset *int) (*CompletionLogprobs, error) {
	out := &CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, lp := range lps {
		out.Tokens = append(out.Tokens, tokenString(lp.Text))
		out.TokenLogprobs = append(out.TokenLogprobs, finiteLogprob(lp.Logprob))
		out.TextOffset = append(out.TextOffset, *offset)
		*offset += len(lp.Text)
		top := make(map[string]float64, len(lp.Top))
		for _, alt := range lp.Top {
			tb, err := b.TokenBytes(alt.Token)
			if err != nil {
				return nil, err
			}
			top[tokenString(tb)] = finiteLogprob(alt.Logprob)
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
	}
	return out, nil
}
