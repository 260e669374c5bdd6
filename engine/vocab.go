package engine

/*
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"math"
	"unsafe"
)

// MaxTokenizeBytes bounds the text accepted by Tokenize (llama.cpp counts in int32).
const MaxTokenizeBytes = 64 << 20

// Tokenize converts text to tokens. addSpecial adds BOS (and EOS) when the model asks
// for it; parseSpecial turns the text of control tokens such as "<|im_start|>" into
// those tokens instead of plain text (use it for chat-templated prompts, never for
// raw user text).
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error) {
	if len(text) > MaxTokenizeBytes {
		return nil, fmt.Errorf("engine: tokenize: text of %d bytes exceeds %d: %w", len(text), MaxTokenizeBytes, ErrInvalidArgument)
	}
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	// A token covers at least one byte, plus BOS/EOS.
	out := make([]Token, len(text)+2)
	var ctext *C.char
	if len(text) > 0 {
		ctext = (*C.char)(unsafe.Pointer(unsafe.StringData(text)))
	}
	n := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&out[0])), C.int32_t(len(out)), C.bool(addSpecial), C.bool(parseSpecial))
	if n == math.MinInt32 {
		return nil, fmt.Errorf("engine: tokenize: result overflows int32: %w", ErrInvalidArgument)
	}
	if n < 0 { // should not happen with the bound above; retry with the exact size
		out = make([]Token, -n)
		n = C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&out[0])), C.int32_t(len(out)), C.bool(addSpecial), C.bool(parseSpecial))
		if n < 0 {
			return nil, fmt.Errorf("engine: tokenize failed (%d)", int(n))
		}
	}
	return out[:n:n], nil
}

// ValidToken reports whether t is a token id of this model's vocabulary.
func (m *Model) ValidToken(t Token) bool { return t >= 0 && int(t) < m.info.VocabSize }

// CheckTokens returns an ErrInvalidArgument error naming the first id outside the
// vocabulary. Call it on any token list that came from outside the engine.
func (m *Model) CheckTokens(toks []Token) error {
	for i, t := range toks {
		if !m.ValidToken(t) {
			return fmt.Errorf("engine: token %d at index %d is outside the vocabulary [0,%d): %w", t, i, m.info.VocabSize, ErrInvalidArgument)
		}
	}
	return nil
}

// TokenPiece returns the raw bytes of one token. A byte-fallback token yields a
// single byte that may be part of a multi-byte UTF-8 character, so callers that stream
// text must join pieces before decoding (see package textstream). With special,
// control tokens render as their text (e.g. "</s>"); otherwise they render as nothing.
func (m *Model) TokenPiece(t Token, special bool) ([]byte, error) {
	if !m.ValidToken(t) {
		return nil, fmt.Errorf("engine: token %d outside the vocabulary [0,%d): %w", t, m.info.VocabSize, ErrInvalidArgument)
	}
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	var buf [128]byte
	n := C.llama_token_to_piece(m.vocab, C.llama_token(t), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, C.bool(special))
	if n >= 0 {
		return append([]byte(nil), buf[:n]...), nil
	}
	big := make([]byte, -n)
	n = C.llama_token_to_piece(m.vocab, C.llama_token(t), (*C.char)(unsafe.Pointer(&big[0])), C.int32_t(len(big)), 0, C.bool(special))
	if n < 0 {
		return nil, fmt.Errorf("engine: token_to_piece(%d) failed", t)
	}
	return big[:n], nil
}

// Detokenize converts tokens back to text. removeSpecial drops BOS/EOS that the model
// adds; renderSpecial writes control tokens as text. The result may contain invalid
// UTF-8 when tokens end inside a character.
func (m *Model) Detokenize(toks []Token, removeSpecial, renderSpecial bool) (string, error) {
	if err := m.CheckTokens(toks); err != nil {
		return "", err
	}
	if len(toks) == 0 {
		return "", nil
	}
	if err := m.acquire(); err != nil {
		return "", err
	}
	defer m.mu.RUnlock()
	buf := make([]byte, len(toks)*8+16)
	for {
		n := C.llama_detokenize(m.vocab, (*C.llama_token)(unsafe.Pointer(&toks[0])), C.int32_t(len(toks)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), C.bool(removeSpecial), C.bool(renderSpecial))
		if n >= 0 {
			return string(buf[:n]), nil
		}
		if int(-n) <= len(buf) {
			return "", fmt.Errorf("engine: detokenize failed (%d)", int(n))
		}
		buf = make([]byte, -n)
	}
}

// IsEOG reports whether t ends generation (EOS, EOT and the model's other end tokens).
func (m *Model) IsEOG(t Token) bool {
	if !m.ValidToken(t) {
		return false
	}
	return bool(C.llama_vocab_is_eog(m.vocab, C.llama_token(t)))
}

// IsControl reports whether t is a control token (BOS, EOS, chat markers).
func (m *Model) IsControl(t Token) bool {
	if !m.ValidToken(t) {
		return false
	}
	return bool(C.llama_vocab_is_control(m.vocab, C.llama_token(t)))
}
