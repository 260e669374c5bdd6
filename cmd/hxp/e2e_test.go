package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestEndToEnd builds the hxp binary, generates a tiny model with `hxp models gen`,
// serves it with `hxp serve --model` on free ports, completes requests through the
// gateway and the model's own listener, and stops the server with SIGTERM.
func TestEndToEnd(t *testing.T) {
	bin := hxpBinary(t)
	model := tinyModel(t, bin, t.TempDir())
	if out, err := exec.Command(bin, "models", "inspect", model).CombinedOutput(); err != nil || !strings.Contains(string(out), "KV bytes/token") {
		t.Fatalf("hxp models inspect: %v\n%s", err, out)
	}
	srv := startServe(t, bin, model, nil)
	for _, base := range []string{srv.gw, srv.ml} {
		body := `{"model":"tiny","messages":[{"role":"user","content":"Hello there"}],"max_tokens":8,"temperature":0}`
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var c struct {
			Object  string
			Choices []struct {
				Message      struct{ Role, Content string }
				FinishReason string `json:"finish_reason"`
			}
			Usage struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		if err := json.Unmarshal(b, &c); err != nil || resp.StatusCode != 200 || c.Object != "chat.completion" ||
			len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" || c.Usage.CompletionTokens == 0 {
			t.Fatalf("%s: %d %s", base, resp.StatusCode, b)
		}
	}

	srv.stop(t)
	if !strings.Contains(srv.logs.String(), `"shutdown complete"`) {
		t.Error("no shutdown log line")
	}
	if strings.Contains(srv.logs.String(), "Hello there") {
		t.Error("the prompt appears in the log")
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"--config", "x.yaml", "--model", "a=b.gguf"}, {"--model", "noequals"}, {"stray"},
	} {
		if err := runServe(args); err == nil {
			t.Errorf("serve %q: no error", args)
		}
	}
	if _, err := serveConfig("", modelFlags{{Name: "a", Path: "/nonexistent.gguf"}}, "", "", "", false); err == nil ||
		!strings.Contains(err.Error(), "models[0].path") {
		t.Errorf("missing model file: %v", err)
	}
}

func TestModelFlag(t *testing.T) {
	var m modelFlags
	for _, v := range []string{"a=/x/a.gguf", "b=rel/b.gguf@11401", "c=C:/odd@path.gguf"} {
		if err := m.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if m[0].Name != "a" || m[0].Path != "/x/a.gguf" || m[0].Port != 0 || m[1].Port != 11401 || m[1].Path != "rel/b.gguf" || m[2].Path != "C:/odd@path.gguf" {
		t.Errorf("parsed %+v", m)
	}
	if err := m.Set("=x"); err == nil {
		t.Error("empty name accepted")
	}
}
