package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The CLI's promises in the README: config check names every problem and says OK for
// a good file, config env lists the overrides, version lists the compute devices.
func TestConfigAndVersionCommands(t *testing.T) {
	bin := hxpBinary(t)
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	root := filepath.Join("..", "..")
	out, err := run("config", "check", "--host-cores", "32", "--skip-files", filepath.Join(root, "configs", "hxp-enterprise.yaml"))
	if err != nil || !strings.Contains(out, "OK") || !strings.Contains(out, "4 model(s)") {
		t.Errorf("config check of the enterprise config: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: \":8000\"\nmodels:\n  - name: a\n    path: /nonexistent.gguf\n    cpu_cores: 999\n    temprature: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run("config", "check", bad)
	if err == nil {
		t.Errorf("config check accepted a broken config:\n%s", out)
	}
	if !strings.Contains(out, "temprature") {
		t.Errorf("config check does not name the unknown key:\n%s", out)
	}
	if err := os.WriteFile(bad, []byte("models:\n  - name: a\n    path: /nonexistent.gguf\n    cpu_cores: 999\n    parallel: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run("config", "check", bad)
	for _, want := range []string{"models[0].path", "models[0].cpu_cores"} { // every problem, each by its field
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("config check does not name %q: %v\n%s", want, err, out)
		}
	}
	out, err = run("config", "env")
	if err != nil || !strings.Contains(out, "HXP_LISTEN") || !strings.Contains(out, "HXP_GRPC_LISTEN") {
		t.Errorf("config env: %v\n%s", err, out)
	}
	out, err = run("version")
	if err != nil || !strings.Contains(strings.ToLower(out), "cpu") {
		t.Errorf("version lists no compute device: %v\n%s", err, out)
	}
}
