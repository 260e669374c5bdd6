package server

import (
	"strings"

	"github.com/valyala/fasthttp"
)

// tokenize serves POST /tokenize: {"model", "prompt"} or {"model", "messages"}.
// A prompt is tokenized as /v1/completions does (add_special_tokens, default true,
// adds BOS; control-token text stays text); messages as /v1/chat/completions does.
func (l *Local) tokenize(ctx *fasthttp.RequestCtx) {
	r, msgs, err := decodeTokenize(ctx.PostBody())
	if !l.accept(ctx, err) {
		return
	}
	addSpecial := r.AddSpecialTokens == nil || *r.AddSpecialTokens
	var toks []int32
	if msgs != nil {
		text, err := l.b.RenderChat(msgs)
		if err != nil {
			writeError(ctx, err, "messages")
			return
		}
		if toks, err = l.b.Tokenize(text, addSpecial, true); err != nil {
			writeError(ctx, err, "messages")
			return
		}
	} else if toks, err = l.b.Tokenize(*r.Prompt, addSpecial, false); err != nil {
		writeError(ctx, err, "prompt")
		return
	}
	if toks == nil {
		toks = []int32{}
	}
	writeJSON(ctx, fasthttp.StatusOK, TokenizeResponse{Tokens: toks, Count: len(toks), MaxModelLen: l.b.SeqCtx()})
}

// detokenize serves POST /detokenize: {"model", "tokens"} -> {"prompt"}. Ids outside
// the vocabulary are a 400; text that ends inside a UTF-8 character gets U+FFFD.
func (l *Local) detokenize(ctx *fasthttp.RequestCtx) {
	_, toks, err := decodeDetokenize(ctx.PostBody())
	if !l.accept(ctx, err) {
		return
	}
	text, err := l.b.Detokenize(toks)
	if err != nil {
		writeError(ctx, err, "tokens")
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, DetokenizeResponse{Prompt: strings.ToValidUTF8(text, "\uFFFD")})
}
