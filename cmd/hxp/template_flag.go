package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
)

// chatTemplateUsage is the help text of --chat-template.
const chatTemplateUsage = "give model NAME a chat template: a Jinja FILE (sets chat_template_file) or a llama.cpp built-in name such as chatml (sets chat_template); wins over the config (repeatable)"

// chatTemplateFlags collects repeated --chat-template NAME=FILE_OR_BUILTIN flags, so
// that `hxp serve --model NAME=PATH` can give a model (a base model without a
// template, typically) a chat template from the command line.
type chatTemplateFlags []chatTemplateFlag

// chatTemplateFlag is one --chat-template: a model's template file or built-in name.
type chatTemplateFlag struct {
	model   string
	file    string // a Jinja file, checked when the flag is parsed
	builtin string // or a llama.cpp built-in template name
}

func (t *chatTemplateFlags) String() string { return "" }

// Set parses NAME=FILE_OR_BUILTIN. A value that names a file is a Jinja template
// and must pass config.ReadChatTemplateFile; otherwise it must be a built-in name.
func (t *chatTemplateFlags) Set(v string) error {
	name, val, ok := strings.Cut(v, "=")
	name, val = strings.TrimSpace(name), strings.TrimSpace(val)
	if !ok || name == "" || val == "" {
		return fmt.Errorf("want NAME=FILE.jinja or NAME=BUILTIN (e.g. mymodel=chatml), got %q", v)
	}
	if slices.ContainsFunc(*t, func(f chatTemplateFlag) bool { return f.model == name }) {
		return fmt.Errorf("model %q has more than one --chat-template", name)
	}
	f := chatTemplateFlag{model: name}
	if st, err := os.Stat(val); err == nil && !st.IsDir() {
		if _, err := config.ReadChatTemplateFile(val); err != nil {
			return fmt.Errorf("model %s: chat template file %w", name, err)
		}
		f.file = val
	} else if builtins := engine.BuiltinTemplates(); slices.Contains(builtins, val) {
		f.builtin = val
	} else {
		return fmt.Errorf("model %s: %q is neither a chat template file nor a built-in template (%s)", name, val, strings.Join(builtins, ", "))
	}
	*t = append(*t, f)
	return nil
}

// apply sets each flag's model's chat_template or chat_template_file, clearing the
// other, in c. Every flag must name a configured model.
func (t chatTemplateFlags) apply(c *config.Config) error {
	for _, f := range t {
		i := slices.IndexFunc(c.Models, func(m config.Model) bool { return m.Name == f.model })
		if i < 0 {
			names := make([]string, len(c.Models))
			for j, m := range c.Models {
				names[j] = m.Name
			}
			return fmt.Errorf("%w: --chat-template %s: no such model (models: %s)", errUsage, f.model, strings.Join(names, ", "))
		}
		c.Models[i].ChatTemplate, c.Models[i].ChatTemplateFile = f.builtin, f.file
	}
	return nil
}
