package rest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/service"
)

// r1Template is DeepSeek-R1-Distill's chat template: its generation prompt opens the
// thinking block and closes it again unless enable_thinking is set.
const r1Template = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"

// applyTemplate renders one user turn with /apply-template and extra fields.
func applyTemplate(t *testing.T, url string, extra map[string]any) string {
	t.Helper()
	body := map[string]any{"model": "m", "messages": []map[string]any{{"role": "user", "content": "What is 2+2?"}}}
	for k, v := range extra {
		body[k] = v
	}
	r := post(t, url+"/apply-template", body)
	var resp openai.ApplyTemplateResponse
	r.json(t, &resp)
	if r.status != 200 {
		t.Fatalf("apply-template %v: %d %s", extra, r.status, r.body)
	}
	return resp.Prompt
}

// TestRESTChatTemplateKwargs: with DeepSeek-R1-Distill's own template (in the GGUF,
// on Qwen 2's tokenizer), chat_template_kwargs {"enable_thinking": true} opens the
// thinking block in /apply-template's prompt, and without it the prompt closes the
// block; a chat completion with it answers with reasoning_content kept out of
// content. A variable the server sets is a 400 naming it.
func TestRESTChatTemplateKwargs(t *testing.T) {
	url := familyModel(t, "qwen2", r1Template)
	const open, closed = "<｜Assistant｜><think>\n", "<｜Assistant｜><think>\n</think>"
	if p := applyTemplate(t, url, nil); !strings.HasSuffix(p, closed) {
		t.Errorf("without chat_template_kwargs the prompt %q does not close the thinking block", p)
	}
	thinking := map[string]any{"chat_template_kwargs": map[string]any{"enable_thinking": true}}
	if p := applyTemplate(t, url, thinking); !strings.HasSuffix(p, open) {
		t.Errorf("with enable_thinking the prompt %q does not end inside the thinking block", p)
	}
	if p := applyTemplate(t, url, map[string]any{"chat_template_kwargs": map[string]any{"enable_thinking": false}}); !strings.HasSuffix(p, closed) {
		t.Errorf("with enable_thinking false the prompt %q does not close the thinking block", p)
	}

	r := post(t, url+"/v1/chat/completions", chatBody("m", 16, thinking))
	var resp openai.ChatCompletion
	r.json(t, &resp)
	if r.status != 200 || len(resp.Choices) != 1 {
		t.Fatalf("chat: %d %s", r.status, r.body)
	}
	msg := resp.Choices[0].Message
	if msg.ReasoningContent == "" || strings.Contains(msg.Content, msg.ReasoningContent) {
		t.Errorf("the thinking is not reasoning_content alone: %s", r.body)
	}

	for endpoint, body := range map[string]map[string]any{
		"/v1/chat/completions": chatBody("m", 4, map[string]any{"chat_template_kwargs": map[string]any{"add_generation_prompt": false}}),
		"/apply-template": {"model": "m", "messages": []map[string]any{{"role": "user", "content": "hi"}},
			"chat_template_kwargs": map[string]any{"add_generation_prompt": false}},
	} {
		r := post(t, url+endpoint, body)
		if e := r.wantErr(t, 400, "invalid_request_error", ""); e.Param == nil || *e.Param != "chat_template_kwargs.add_generation_prompt" {
			t.Errorf("%s: a reserved variable: %s", endpoint, r.body)
		}
	}
}

// r1TemplatePath is the fixture's path, for a model's chat_template_file.
func r1TemplatePath(t *testing.T) string {
	return filepath.Join(testmodel.FixturesDir(t, "templates"), r1Template)
}

// TestRESTChatTemplateKwargsOnABuiltinTemplate: llama.cpp's built-in templates read no
// variables, so a request that sets some is refused naming chat_template_kwargs,
// never rendered without them; without the field the same request is served.
func TestRESTChatTemplateKwargsOnABuiltinTemplate(t *testing.T) {
	cfg := modelConfig(t, "m")
	cfg.ChatTemplate = "chatml"
	url := serveModel(t, newService(t, cfg, service.Options{}), Options{Log: testLog()})
	vars := map[string]any{"chat_template_kwargs": map[string]any{"enable_thinking": true}}
	for endpoint, body := range map[string]map[string]any{
		"/v1/chat/completions": chatBody("m", 4, vars),
		"/apply-template": {"model": "m", "messages": []map[string]any{{"role": "user", "content": "hi"}},
			"chat_template_kwargs": map[string]any{"enable_thinking": true}},
	} {
		r := post(t, url+endpoint, body)
		if e := r.wantErr(t, 400, "invalid_request_error", ""); e.Param == nil || *e.Param != "chat_template_kwargs" ||
			!strings.Contains(e.Message, "built-in") {
			t.Errorf("%s: variables on a built-in template: %s", endpoint, r.body)
		}
	}
	if r := post(t, url+"/v1/chat/completions", chatBody("m", 4, nil)); r.status != 200 {
		t.Errorf("without chat_template_kwargs: %d %s", r.status, r.body)
	}
}
