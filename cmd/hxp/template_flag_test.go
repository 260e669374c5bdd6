package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/config"
)

func TestChatTemplateFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t.jinja")
	if err := os.WriteFile(file, []byte("{% for m in messages %}{{ m.content }}{% endfor %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "b.jinja")
	if err := os.WriteFile(binary, []byte("\xff\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	var flags chatTemplateFlags
	for _, v := range []string{"base=" + file, "other=chatml"} {
		if err := flags.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	for v, want := range map[string]string{
		"nomodel":                         "want NAME=FILE.jinja or NAME=BUILTIN",
		"=chatml":                         "want NAME=FILE.jinja or NAME=BUILTIN",
		"x=":                              "want NAME=FILE.jinja or NAME=BUILTIN",
		"base=chatml":                     `model "base" has more than one`,
		"x=no-such-template":              "neither a chat template file nor a built-in template (",
		"x=" + binary:                     "not UTF-8",
		"x=" + filepath.Join(dir, "nope"): "neither a chat template file",
	} {
		if err := flags.Set(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Set(%q) = %v, want an error containing %q", v, err, want)
		}
	}

	c := &config.Config{Models: []config.Model{
		{Name: "base", ChatTemplate: "llama3"},
		{Name: "other", ChatTemplateFile: "/old.jinja"},
		{Name: "untouched", ChatTemplate: "phi3"},
	}}
	if err := flags.apply(c); err != nil {
		t.Fatal(err)
	}
	got := [][2]string{}
	for _, m := range c.Models {
		got = append(got, [2]string{m.ChatTemplate, m.ChatTemplateFile})
	}
	want := [][2]string{{"", file}, {"chatml", ""}, {"phi3", ""}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("models[%d] template %q, file %q; want %q, %q", i, got[i][0], got[i][1], want[i][0], want[i][1])
		}
	}
	err := flags.apply(&config.Config{Models: []config.Model{{Name: "else"}}})
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--chat-template base: no such model (models: else)") {
		t.Errorf("unknown model: %v", err)
	}
}
