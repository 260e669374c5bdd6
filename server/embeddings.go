package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// embeddings serves POST /v1/embeddings.
func (l *Local) embeddings(ctx *fasthttp.RequestCtx) {
	p, err := decodeEmbeddings(ctx.PostBody())
	if !l.accept(ctx, err) {
		return
	}
	if embd := l.b.Info().Embd; p.Dims != 0 && p.Dims != embd {
		writeError(ctx, badRequest("dimensions", "model %s produces %d-dimensional embeddings; other dimensions are not supported", l.b.Name(), embd), "")
		return
	}
	inputs := make([][]engine.Token, len(p.Inputs))
	total := 0
	for i, in := range p.Inputs {
		param := fmt.Sprintf("input[%d]", i)
		toks := in.Tokens
		if !in.IsTokens {
			if toks, err = l.b.Tokenize(in.Text, true, false); err != nil {
				writeError(ctx, err, param)
				return
			}
		}
		if max := l.b.MaxEmbedTokens(); len(toks) > max {
			writeError(ctx, fmt.Errorf("%s has %d tokens, more than the %d this model embeds at once: %w", param, len(toks), max, sched.ErrContextOverflow), param)
			return
		}
		inputs[i] = toks
		total += len(toks)
	}
	if info := infoOf(ctx); info != nil {
		info.PromptTokens = total
	}
	vecs, err := l.b.Embed(context.Background(), inputs)
	if err != nil {
		writeError(ctx, err, "input")
		return
	}
	resp := EmbeddingResponse{Object: "list", Model: l.b.Name(), Data: make([]Embedding, len(vecs)),
		Usage: Usage{PromptTokens: total, TotalTokens: total}}
	for i, v := range vecs {
		for j, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				v[j] = 0 // JSON has no NaN; a degenerate model must not turn into a 500
			}
		}
		var e any = v
		if p.Base64 {
			e = encodeBase64(v)
		}
		resp.Data[i] = Embedding{Object: "embedding", Index: i, Embedding: e}
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
}

// encodeBase64 is OpenAI's base64 encoding: little-endian float32s.
func encodeBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}
