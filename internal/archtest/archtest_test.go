// Package archtest holds the test that keeps the project's import rules: it reads the
// import graph with `go list -deps -json ./...` and fails when a package imports what
// its layer may not (see the README's architecture section).
package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/hxp-ai/hxp"

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	CgoFiles   []string
	Module     *struct{ Path string }
}

// graph lists every package of the module with its direct imports and all deps.
func graph(t *testing.T) map[string]pkg {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "list", "-deps", "-test", "-json", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != module || strings.HasSuffix(p.ImportPath, ".test") ||
			strings.Contains(p.ImportPath, " [") { // test variants: checked through their package
			continue
		}
		pkgs[p.ImportPath] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages of %s", len(pkgs), module)
	}
	return pkgs
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

// under reports whether path is package dir or below it.
func under(path, dir string) bool {
	r := rel(path)
	return r == dir || strings.HasPrefix(r, dir+"/")
}

// transportLibs may be imported by transport packages only.
var transportLibs = []string{"github.com/valyala/fasthttp", "google.golang.org/grpc", "github.com/99designs/gqlgen",
	"github.com/fasthttp/websocket"}

func isTransportLib(imp string) bool {
	return slices.ContainsFunc(transportLibs, func(l string) bool { return imp == l || strings.HasPrefix(imp, l+"/") })
}

func TestOnlyTransportsImportTransportLibraries(t *testing.T) {
	for path, p := range graph(t) {
		if under(path, "transport") || under(path, "bench") || under(path, "internal/testenv") ||
			under(path, "vector/qdrant/qdranttest") {
			continue // transports; load tools and harnesses are clients, not server layers; the Qdrant stand-in serves tests only
		}
		for _, imp := range p.Imports {
			if isTransportLib(imp) {
				t.Errorf("%s imports %s: only packages under transport/ may import transport libraries", rel(path), imp)
			}
		}
	}
}

// TestLayers checks the layering: the core (infer, chat, grammar) depends on no
// wire format, routing, tenancy, transport or composition package; the wire formats
// on none of routing, tenancy or transports; routing and tenancy on no transport.
func TestLayers(t *testing.T) {
	rules := []struct {
		layer     string
		forbidden []string
	}{
		{"infer", []string{"openai", "route", "tenancy", "transport", "app"}},
		{"chat", []string{"infer", "openai", "route", "tenancy", "transport", "app", "engine"}},
		{"grammar", []string{"infer", "openai", "route", "tenancy", "transport", "app", "engine"}},
		{"openai", []string{"route", "tenancy", "transport", "app"}},
		{"anthropic", []string{"route", "tenancy", "transport", "app"}},
		{"responses", []string{"route", "tenancy", "transport", "app"}},
		{"retrieval", []string{"route", "tenancy", "transport", "app"}},
		{"route", []string{"tenancy", "transport", "app"}},
		{"tenancy", []string{"route", "transport", "app"}},
		{"transport", []string{"app"}},
	}
	pkgs := graph(t)
	for path, p := range pkgs {
		for _, r := range rules {
			if !under(path, r.layer) {
				continue
			}
			for _, dep := range p.Deps {
				for _, f := range r.forbidden {
					if under(dep, f) && strings.HasPrefix(dep, module+"/") {
						t.Errorf("%s depends on %s: %s may not depend on %s", rel(path), rel(dep), r.layer, f)
					}
				}
			}
		}
	}
}

// TestOnlyEngineUsesCgo: llama.cpp is reached through package engine only, which
// validates everything before a C call.
func TestOnlyEngineUsesCgo(t *testing.T) {
	for path, p := range graph(t) {
		if len(p.CgoFiles) > 0 && rel(path) != "engine" {
			t.Errorf("%s has cgo files %v: only engine may talk to C", rel(path), p.CgoFiles)
		}
	}
}
