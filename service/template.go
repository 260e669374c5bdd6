package service

import (
	"errors"
	"fmt"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
)

// DefaultTemplateName is the chat template used for a model that has none (a base
// model): ChatML, as llama-server does.
const DefaultTemplateName = "chatml"

// Origins of a model's chat template (TemplateSource.Origin), in the order they are
// chosen.
const (
	// TemplateFromFile: the config's chat_template_file; Text is the file's Jinja.
	TemplateFromFile = "chat_template_file"
	// TemplateBuiltin: the config's chat_template; Text is a llama.cpp built-in name.
	TemplateBuiltin = "chat_template"
	// TemplateFromGGUF: the model's tokenizer.chat_template; Text is its Jinja.
	TemplateFromGGUF = "gguf"
	// TemplateNone: the model has none; Text is "" and chat uses DefaultTemplateName.
	TemplateNone = "none"
)

// TemplateSource is the chat template a model was loaded with and where it came
// from. Variants holds the GGUF's named templates (tokenizer.chat_template.NAME, such
// as "tool_use") when the template is the GGUF's own; nil otherwise.
type TemplateSource struct {
	Text     string
	Origin   string
	Variants map[string]string
}

// Template returns the model's chat template source and its origin (one of the
// Template* constants), read at load time: the config's chat_template_file, else its
// chat_template (a built-in name), else the GGUF's tokenizer.chat_template, else ""
// with origin TemplateNone. Before the load it returns "", TemplateNone.
func (s *Service) Template() (src string, origin string) {
	t := s.TemplateSource()
	return t.Text, t.Origin
}

// TemplateSource is Template with the GGUF's named variants.
func (s *Service) TemplateSource() TemplateSource {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tmplSrc.Origin == "" {
		return TemplateSource{Origin: TemplateNone}
	}
	return s.tmplSrc
}

// templateSource chooses the model's template: config file > config built-in name >
// GGUF metadata > none.
func templateSource(cfg config.Model, info engine.ModelInfo) (TemplateSource, error) {
	switch {
	case cfg.ChatTemplateFile != "":
		text, err := config.ReadChatTemplateFile(cfg.ChatTemplateFile)
		if err != nil {
			return TemplateSource{}, fmt.Errorf("chat_template_file: %w", err)
		}
		return TemplateSource{Text: text, Origin: TemplateFromFile}, nil
	case cfg.ChatTemplate != "":
		return TemplateSource{Text: cfg.ChatTemplate, Origin: TemplateBuiltin}, nil
	case info.ChatTemplate != "":
		return TemplateSource{Text: info.ChatTemplate, Origin: TemplateFromGGUF, Variants: info.ChatTemplates}, nil
	}
	return TemplateSource{Origin: TemplateNone}, nil
}

// legacyTemplate is the template RenderChat gives llama.cpp: the configured
// built-in name (which must be one llama.cpp implements), the template file when
// llama.cpp recognises it, or the GGUF's template; "" when none of these applies.
func legacyTemplate(m *engine.Model, cfg config.Model, src TemplateSource) (string, error) {
	if src.Origin != TemplateFromFile {
		return chooseTemplate(m, cfg.ChatTemplate)
	}
	tmpl, err := chooseTemplate(m, src.Text)
	if errors.Is(err, engine.ErrUnknownTemplate) {
		return "", nil // a Jinja template only a Jinja renderer can render
	}
	return tmpl, err
}
