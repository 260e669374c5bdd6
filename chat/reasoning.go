package chat

import "strings"

// Reasoning is a model's thinking block: the text between Open and Close goes to
// reasoning_content, never to content.
type Reasoning struct {
	// Open and Close are the tags around the thinking ("<think>", "</think>").
	// Grammars (tool calls, JSON schemas) apply to the answer after Close: make
	// them lazy, triggered on Close, when a reasoning block may come first.
	Open, Close string
}

// thinkTags are the tags of DeepSeek-R1, Qwen3 and most open reasoning models.
var thinkTags = Reasoning{Open: "<think>", Close: "</think>"}

// DetectReasoning reports the thinking block a chat template uses (DeepSeek-R1
// and Qwen3 write "<think>" … "</think>"), or nil when it has none.
func DetectReasoning(template string) *Reasoning {
	if strings.Contains(template, thinkTags.Open) && strings.Contains(template, thinkTags.Close) {
		r := thinkTags
		return &r
	}
	return nil
}

// PromptOpens reports whether a rendered prompt ends inside the thinking block
// (its generation prompt opened it, as DeepSeek-R1's "<think>\n" does), so the
// model's output starts as reasoning: pass it as ParserOptions.InReasoning.
func (r *Reasoning) PromptOpens(prompt string) bool {
	if r == nil {
		return false
	}
	open := strings.LastIndex(prompt, r.Open)
	return open >= 0 && open > strings.LastIndex(prompt, r.Close)
}
