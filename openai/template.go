package openai

import "github.com/hxp-ai/hxp/infer"

// DecodeApplyTemplate decodes and validates a POST /apply-template request:
// {"model", "messages", "tools"?, "add_generation_prompt"? (default true),
// "chat_template_kwargs"?}.
func DecodeApplyTemplate(body []byte) (*infer.ApplyTemplateRequest, error) {
	var r ApplyTemplateRequest
	if err := unmarshal(body, &r); err != nil {
		return nil, err
	}
	return ValidateApplyTemplate(&r)
}

// ValidateApplyTemplate validates a mapped apply-template request (gRPC) as
// DecodeApplyTemplate does.
func ValidateApplyTemplate(r *ApplyTemplateRequest) (*infer.ApplyTemplateRequest, error) {
	if err := infer.CheckModelID(r.Model); err != nil {
		return nil, err
	}
	msgs, err := decodeMessages(r.Messages)
	if err != nil {
		return nil, err
	}
	tools, err := decodeTools(r.Tools)
	if err != nil {
		return nil, err
	}
	vars, err := decodeTemplateVars(r.ChatTemplateKwargs)
	if err != nil {
		return nil, err
	}
	return &infer.ApplyTemplateRequest{Model: r.Model, Messages: msgs, Tools: tools,
		AddGenerationPrompt: r.AddGenerationPrompt == nil || *r.AddGenerationPrompt, TemplateVars: vars}, nil
}

// ApplyTemplateResponseOf renders an apply-template result.
func ApplyTemplateResponseOf(p *infer.RenderedPrompt) *ApplyTemplateResponse {
	return &ApplyTemplateResponse{Prompt: p.Prompt}
}
