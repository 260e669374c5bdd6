package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// hxpBinary builds bin/hxp once per test binary (same CGO_* environment as the test,
// so the build cache is reused) and returns its path.
func hxpBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hxp-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "hxp")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		if out, err := exec.Command(goTool, "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// tinyModel generates the tiny preset with `hxp models gen` into dir.
func tinyModel(t *testing.T, bin, dir string) string {
	t.Helper()
	model := filepath.Join(dir, "tiny.gguf")
	if out, err := exec.Command(bin, "models", "gen", "--preset", "tiny", "--out", model).CombinedOutput(); err != nil {
		t.Fatalf("hxp models gen: %v\n%s", err, out)
	}
	return model
}

// served is a running `hxp serve` process.
type served struct {
	cmd      *exec.Cmd
	logs     *bytes.Buffer // stdout and stderr; read only after the process exited
	exited   chan error
	gw, ml   string // gateway and model listener base URLs
	exitSeen bool
}

// startServe starts `hxp serve ARGS --model tiny=MODEL@PORT --listen ADDR` on free ports
// and waits until /health says ok; env comes last, so it can override the harness's own
// settings (a 5 s shutdown grace, one CPU core, 512 tokens of context). The process is
// killed at the end of the test.
func startServe(t *testing.T, bin, model string, env []string, args ...string) *served {
	t.Helper()
	gwPort, modelPort := e2eFreePort(t), e2eFreePort(t)
	args = append(append([]string{"serve"}, args...), "--model", fmt.Sprintf("tiny=%s@%d", model, modelPort),
		"--listen", fmt.Sprintf("127.0.0.1:%d", gwPort), "--log-format", "json")
	env = append([]string{"HXP_MODELS_TINY_CPU_CORES=1", "HXP_MODELS_TINY_CTX_PER_SEQ=512", "HXP_SERVER_SHUTDOWN_GRACE=5s",
		fmt.Sprintf("HXP_GRPC_LISTEN=127.0.0.1:%d", e2eFreePort(t))}, // not the default :8001, which may be taken
		env...)
	return launch(t, bin, args, env, fmt.Sprintf("http://127.0.0.1:%d", gwPort), fmt.Sprintf("http://127.0.0.1:%d", modelPort))
}

// launch starts `hxp ARGS` with env added to the test's environment and waits until
// the gateway at gw says /health ok; ml is the model listener's URL. The process is
// killed at the end of the test.
func launch(t *testing.T, bin string, args, env []string, gw, ml string) *served {
	t.Helper()
	s := &served{cmd: exec.Command(bin, args...), logs: &bytes.Buffer{}, exited: make(chan error, 1), gw: gw, ml: ml}
	// The retrieval data (catalog, vector index) of each server in a directory of its
	// own, not in the package's; env may choose another.
	s.cmd.Env = append(append(os.Environ(), "HXP_RETRIEVAL_DATA_DIR="+t.TempDir()), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if !s.exitSeen {
			s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		var h struct{ Status string }
		if resp, err := http.Get(s.gw + "/health"); err == nil {
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Status == "ok" {
				return s
			}
		}
		select {
		case err := <-s.exited:
			s.exitSeen = true
			t.Fatalf("server exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires a clean exit within a minute.
func (s *served) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		s.exitSeen = true
		if err != nil {
			t.Fatalf("hxp serve exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("hxp serve did not exit after SIGTERM")
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
