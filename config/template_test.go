package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChatTemplateFileAndToolFormat(t *testing.T) {
	dir := t.TempDir()
	m := writeGGUF(t, dir, "m.gguf")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.jinja", []byte("{% for m in messages %}{{ m.content }} ✓{% endfor %}"))
	cases := []struct {
		name, fields string
		path, msg    string // the problem expected, "" for a valid config
	}{
		{"file", "chat_template_file: " + good + "\n    tool_format: hermes", "", ""},
		{"both", "chat_template: chatml\n    chat_template_file: " + good, "models[0].chat_template_file", "set together with chat_template"},
		{"missing", "chat_template_file: " + filepath.Join(dir, "nope.jinja"), "models[0].chat_template_file", "no such file"},
		{"directory", "chat_template_file: " + dir, "models[0].chat_template_file", "not a regular file"},
		{"binary", "chat_template_file: " + write("bin.jinja", []byte("\xff\xfe{{ x }}")), "models[0].chat_template_file", "not UTF-8"},
		{"nul", "chat_template_file: " + write("nul.jinja", []byte("a\x00b")), "models[0].chat_template_file", "NUL"},
		{"empty", "chat_template_file: " + write("empty.jinja", nil), "models[0].chat_template_file", "empty"},
		{"huge", "chat_template_file: " + write("huge.jinja", []byte(strings.Repeat("x", MaxChatTemplateBytes+1))), "models[0].chat_template_file", "limit"},
		{"tool format", "tool_format: json", "models[0].tool_format", `"json" is not one of auto, hermes, llama3, mistral, generic`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			yaml := "models:\n  - name: a\n    path: " + m + "\n    " + c.fields + "\n"
			cfg, err := Parse([]byte(yaml), Options{HostCores: 2})
			if c.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Models[0].ChatTemplateFile != good || cfg.Models[0].ToolFormat != "hermes" {
					t.Errorf("model %+v", cfg.Models[0])
				}
				return
			}
			if ps := problemsOf(t, err); !hasProblem(ps, c.path, c.msg) {
				t.Errorf("problems %v, want %s: ...%s...", ps, c.path, c.msg)
			}
		})
	}
}

func TestToolFormatDefaultAndEnv(t *testing.T) {
	m := writeGGUF(t, t.TempDir(), "m.gguf")
	cfg, err := Parse([]byte("models:\n  - name: a\n    path: "+m+"\n"), Options{HostCores: 2})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Models[0].ToolFormat != DefaultToolFormat || cfg.Models[0].ChatTemplateFile != "" {
		t.Errorf("defaults: %+v", cfg.Models[0])
	}
	c := &Config{Models: []Model{{Name: "hermes-2"}}}
	if ps := ApplyEnv(c, []string{"HXP_MODELS_HERMES_2_TOOL_FORMAT=llama3", "HXP_MODELS_HERMES_2_CHAT_TEMPLATE_FILE=/t.jinja"}); len(ps) != 0 {
		t.Fatal(ps)
	}
	if c.Models[0].ToolFormat != "llama3" || c.Models[0].ChatTemplateFile != "/t.jinja" {
		t.Errorf("env overrides not applied: %+v", c.Models[0])
	}
}

func TestReadChatTemplateFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.jinja")
	want := "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
	if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadChatTemplateFile(p); err != nil || got != want {
		t.Fatalf("ReadChatTemplateFile = %q, %v", got, err)
	}
}
