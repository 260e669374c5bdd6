package chat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fixturesDir is ../shared/fixtures beside the module root; tests that need it
// skip when it is missing.
func fixturesDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "shared", "fixtures", "templates")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("chat template fixtures not found at %s (../shared/fixtures beside the module root): %v", dir, err)
	}
	return dir
}

// golden is one file of ../shared/fixtures/templates/golden.
type golden struct {
	Template string `json:"template"`
	BOS      string `json:"bos_token"`
	EOS      string `json:"eos_token"`
	Now      string `json:"now"`
	Cases    []struct {
		Name     string            `json:"name"`
		Messages []json.RawMessage `json:"messages"`
		Tools    []struct {
			Function struct {
				Name        string          `json:"name"`
				Description string          `json:"description"`
				Parameters  json.RawMessage `json:"parameters"`
			} `json:"function"`
		} `json:"tools"`
		AddGenerationPrompt bool    `json:"add_generation_prompt"`
		Rendered            *string `json:"rendered"`
		Error               string  `json:"error"`
	} `json:"cases"`
}

func loadGoldens(t *testing.T) (string, []golden) {
	dir := fixturesDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "golden", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in %s: %v", dir, err)
	}
	var out []golden
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g golden
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, g)
	}
	return dir, out
}

// wireMessage is a golden message: OpenAI's shape, with arguments as an object.
type wireMessage struct {
	Role       string `json:"role"`
	Content    string `json:"content"`
	ToolCallID string `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Function struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

func toMessages(t *testing.T, raw []json.RawMessage) []Message {
	t.Helper()
	msgs := make([]Message, len(raw))
	for i, r := range raw {
		var w wireMessage
		if err := json.Unmarshal(r, &w); err != nil {
			t.Fatal(err)
		}
		msgs[i] = Message{Role: w.Role, Content: w.Content, ToolCallID: w.ToolCallID}
		for _, c := range w.ToolCalls {
			// As an OpenAI request carries them: arguments as a JSON string.
			msgs[i].ToolCalls = append(msgs[i].ToolCalls, ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: string(c.Function.Arguments)})
		}
	}
	return msgs
}

// TestGoldenRenderings renders every golden conversation with every fixture
// template and compares byte for byte with the reference Jinja2 rendering;
// cases the reference refused must be refused with a *TemplateError.
func TestGoldenRenderings(t *testing.T) {
	dir, goldens := loadGoldens(t)
	for _, g := range goldens {
		src, err := os.ReadFile(filepath.Join(dir, g.Template))
		if err != nil {
			t.Fatal(err)
		}
		tpl, err := ParseTemplate(string(src))
		if err != nil {
			t.Fatalf("%s: %v", g.Template, err)
		}
		now, err := time.Parse("2006-01-02T15:04:05", g.Now)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range g.Cases {
			t.Run(strings.TrimSuffix(g.Template, ".jinja")+"/"+c.Name, func(t *testing.T) {
				in := RenderInput{
					Messages: toMessages(t, c.Messages), AddGenerationPrompt: c.AddGenerationPrompt,
					BOS: g.BOS, EOS: g.EOS, Now: func() time.Time { return now },
				}
				for _, tool := range c.Tools {
					in.Tools = append(in.Tools, Tool{Name: tool.Function.Name, Description: tool.Function.Description, Parameters: tool.Function.Parameters})
				}
				got, err := tpl.Render(in)
				if c.Rendered == nil {
					var te *TemplateError
					if !errors.As(err, &te) {
						t.Fatalf("want a *TemplateError like the reference (%s), got %q, %v", c.Error, got, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("render: %v", err)
				}
				if got != *c.Rendered {
					t.Errorf("rendering differs from the reference\n got %q\nwant %q", got, *c.Rendered)
				}
			})
		}
	}
}
