package rest

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// maxLoggedPrompt bounds the prompt text of one access-log line.
const maxLoggedPrompt = 4 << 10

// promptOf returns the prompt of a model request body for the access log: the JSON of
// its "messages" (chat, tokenize), "prompt" (completions, tokenize) or "input"
// (embeddings), compacted and cut to maxLoggedPrompt bytes. It returns "" for a body
// that carries none or is not JSON. Only the access log calls it, and only when
// log.prompts is on.
func promptOf(body []byte) string {
	var req struct {
		Messages json.RawMessage `json:"messages"`
		Prompt   json.RawMessage `json:"prompt"`
		Input    json.RawMessage `json:"input"`
	}
	if json.Unmarshal(body, &req) != nil {
		return ""
	}
	var raw json.RawMessage
	for _, r := range []json.RawMessage{req.Messages, req.Prompt, req.Input} {
		if len(r) > 0 && string(r) != "null" {
			raw = r
			break
		}
	}
	if raw == nil {
		return ""
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return ""
	}
	out := b.Bytes()
	if len(out) <= maxLoggedPrompt {
		return string(out)
	}
	cut := maxLoggedPrompt
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return string(out[:cut]) + "...(truncated)"
}
