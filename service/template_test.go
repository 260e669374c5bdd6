package service

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/modelgen"
)

// TestTemplateSources loads the tiny model (ChatML in its GGUF) with each kind of
// template configuration: the config file wins over the built-in name (the config
// refuses both together), which wins over the GGUF's own.
func TestTemplateSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "t.jinja")
	jinja := "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
	if err := os.WriteFile(file, []byte(jinja), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, builtin, file string
		text, origin        string
	}{
		{"gguf", "", "", modelgen.ChatTemplate, TemplateFromGGUF},
		{"builtin", "llama3", "", "llama3", TemplateBuiltin},
		{"file", "", file, jinja, TemplateFromFile},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := tinyConfig(t, "tiny")
			cfg.ChatTemplate, cfg.ChatTemplateFile = c.builtin, c.file
			s := New(cfg, zerolog.Nop(), Options{})
			if text, origin := s.Template(); text != "" || origin != TemplateNone {
				t.Errorf("before load: %q, %q", text, origin)
			}
			if err := s.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if text, origin := s.Template(); text != c.text || origin != c.origin {
				t.Errorf("Template() = %.60q, %q; want %.60q, %q", text, origin, c.text, c.origin)
			}
			// The llama.cpp rendering path keeps working: every source here is ChatML-like
			// or a built-in name.
			if _, err := s.RenderChat([]engine.ChatMessage{{Role: "user", Content: "hi"}}); err != nil {
				t.Errorf("RenderChat: %v", err)
			}
		})
	}
}

func TestTemplateFileErrorFailsLoad(t *testing.T) {
	cfg := tinyConfig(t, "tiny")
	cfg.ChatTemplateFile = filepath.Join(t.TempDir(), "missing.jinja")
	s := New(cfg, zerolog.Nop(), Options{})
	err := s.Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "chat_template_file") || !strings.Contains(err.Error(), "missing.jinja") {
		t.Fatalf("Load = %v, want an error naming chat_template_file and the file", err)
	}
}

// TestNoTemplateWarns loads a model whose vocabulary (Llama 3's, as llama.cpp ships
// it) has no chat template: the load warns naming the default.
func TestNoTemplateWarns(t *testing.T) {
	cfg := tinyConfig(t, "base")
	cfg.Path = testmodel.WithVocab(t, "llama-bpe", "")
	var logs bytes.Buffer
	s := New(cfg, zerolog.New(&logs), Options{})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if text, origin := s.Template(); text != "" || origin != TemplateNone {
		t.Errorf("Template() = %q, %q; want none", text, origin)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), `"default_template":"chatml"`) {
		t.Errorf("no warning naming the default template in the load log:\n%s", logs.String())
	}
}
