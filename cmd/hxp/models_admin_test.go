package main

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The model admin commands and SIGHUP, through the binary: `hxp serve --config FILE`
// in a child process, `hxp models load|list|unload` and `hxp reload` against it, and a
// real SIGHUP after the file changed.
func TestModelsWithoutRestart(t *testing.T) {
	bin := hxpBinary(t)
	dir := t.TempDir()
	model := tinyModel(t, bin, dir)
	keyFile := filepath.Join(dir, "admin.key")
	if err := os.WriteFile(keyFile, []byte("admin-key-for-the-e2e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gwPort := e2eFreePort(t)
	cfgFile := filepath.Join(dir, "hxp.yaml")
	writeConfig := func(keys ...string) {
		var b strings.Builder
		fmt.Fprintf(&b, "listen: 127.0.0.1:%d\ngrpc: {listen: \"127.0.0.1:%d\"}\nlog: {format: json}\nserver: {shutdown_grace: 5s}\nretrieval: {data_dir: %s}\n",
			gwPort, e2eFreePort(t), filepath.Join(dir, "hxp-data"))
		fmt.Fprintf(&b, "auth:\n  admin_key_file: %s\n  keys:\n", keyFile)
		for _, k := range keys {
			fmt.Fprintf(&b, "    - {id: %s, sha256: %x}\n", strings.Split(k, "-")[0], sha256.Sum256([]byte(k)))
		}
		fmt.Fprintf(&b, "models:\n  - {name: tiny, path: %s, cpu_cores: 1, parallel: 2, ctx_per_seq: 512}\n", model)
		if err := os.WriteFile(cfgFile, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("alice-secret-key1")
	gw := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	srv := launch(t, bin, []string{"serve", "--config", cfgFile}, nil, gw, "")
	hxp := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append(args, "--server", gw, "--admin-key-file", keyFile)...).CombinedOutput()
		return string(out), err
	}
	status := func(key, model string) int {
		req, _ := http.NewRequest("POST", gw+"/v1/completions",
			strings.NewReader(fmt.Sprintf(`{"model":%q,"prompt":"hello","max_tokens":2}`, model)))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	entry := filepath.Join(dir, "extra.yaml")
	if err := os.WriteFile(entry, fmt.Appendf(nil, "name: extra\npath: %s\ncpu_cores: 1\nparallel: 2\nctx_per_seq: 512\n", model), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := hxp("models", "load", entry); err != nil || !strings.Contains(out, "extra") || !strings.Contains(out, "loading") {
		t.Fatalf("hxp models load: %v\n%s", err, out)
	}
	eventually("extra to answer", func() bool { return status("alice-secret-key1", "extra") == 200 })
	out, err := hxp("models", "list")
	if err != nil || !strings.Contains(out, "NAME") || !lineHas(out, "tiny", "ready") || !lineHas(out, "extra", "ready") {
		t.Fatalf("hxp models list: %v\n%s", err, out)
	}
	if out, err := hxp("models", "unload", "extra"); err != nil || !strings.Contains(out, "extra unloaded") {
		t.Fatalf("hxp models unload: %v\n%s", err, out)
	}
	if got := status("alice-secret-key1", "extra"); got != 404 {
		t.Errorf("unloaded model: %d, want 404", got)
	}

	// SIGHUP: bob's key replaces alice's.
	writeConfig("bob-secret-key22")
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually("bob's key after SIGHUP", func() bool { return status("bob-secret-key22", "tiny") == 200 })
	if got := status("alice-secret-key1", "tiny"); got != 401 {
		t.Errorf("alice's key after the reload removed it: %d, want 401", got)
	}

	// A broken file is refused whole, by SIGHUP and by hxp reload: nothing changes.
	if err := os.WriteFile(cfgFile, []byte("models:\n  - {name: tiny, path: "+model+", parallel: -3}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	out, err = hxp("reload")
	if err == nil || !strings.Contains(out, "models[0].parallel") {
		t.Errorf("hxp reload of a broken file: %v\n%s", err, out)
	}
	if status("bob-secret-key22", "tiny") != 200 {
		t.Error("a refused reload changed the keys or the model")
	}
	srv.stop(t)
	logs := srv.logs.String()
	for _, want := range []string{`"SIGHUP: reloading the config"`, `"config reloaded"`, `"config reload refused: the running config stays"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log has no %s", want)
		}
	}
	for l := range strings.Lines(logs) {
		if strings.Contains(l, "alice-secret") || strings.Contains(l, "bob-secret") || strings.Contains(l, "admin-key-for") {
			t.Errorf("a secret in the log: %s", l)
		}
	}
}

// lineHas reports whether a line of out holds every word, in order.
func lineHas(out string, words ...string) bool {
	for l := range strings.Lines(out) {
		rest, ok := l, true
		for _, w := range words {
			i := strings.Index(rest, w)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(w):]
		}
		if ok {
			return true
		}
	}
	return false
}
