package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEndToEnd builds the hxp binary, generates a tiny model with `hxp models gen`,
// serves it with `hxp serve --model` on free ports, completes requests through the
// gateway and the model's own listener, and stops the server with SIGTERM.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "hxp")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	// Same environment (CGO_* from the Makefile) as this test: the build cache is reused.
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	model := filepath.Join(dir, "tiny.gguf")
	if out, err := exec.Command(bin, "models", "gen", "--preset", "tiny", "--out", model).CombinedOutput(); err != nil {
		t.Fatalf("hxp models gen: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "models", "inspect", model).CombinedOutput(); err != nil || !strings.Contains(string(out), "KV bytes/token") {
		t.Fatalf("hxp models inspect: %v\n%s", err, out)
	}

	gwPort, modelPort := e2eFreePort(t), e2eFreePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "--model", fmt.Sprintf("tiny=%s@%d", model, modelPort),
		"--listen", fmt.Sprintf("127.0.0.1:%d", gwPort), "--log-format", "json")
	cmd.Env = append(os.Environ(), "HXP_MODELS_TINY_CPU_CORES=1", "HXP_MODELS_TINY_CTX_PER_SEQ=512", "HXP_SERVER_SHUTDOWN_GRACE=5s")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()

	gw := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var h struct{ Status string }
		if resp, err := http.Get(gw + "/health"); err == nil {
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Status == "ok" {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("server exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, base := range []string{gw, fmt.Sprintf("http://127.0.0.1:%d", modelPort)} {
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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("hxp serve exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("hxp serve did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), `"shutdown complete"`) {
		t.Error("no shutdown log line")
	}
	if strings.Contains(logs.String(), "Hello there") {
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

func e2eFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
