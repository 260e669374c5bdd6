// Package testmodel gives tests a generated GGUF model. Models are generated once
// per machine into a cache directory (generation is deterministic, so a cached file
// is the same bytes a fresh one would be) and shared by every test binary.
package testmodel

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/modelgen"
)

// Seed is the weights seed of every test model.
const Seed = 42

var (
	mu    sync.Mutex
	paths = map[string]string{}
)

// Path returns the path of the preset's model, generating it on first use. The file
// must not be modified.
func Path(tb testing.TB, preset string) string {
	tb.Helper()
	p, err := Ensure(preset)
	if err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	return p
}

// Ensure generates the preset's model into the cache directory if it is missing and
// returns its path.
func Ensure(preset string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if p, ok := paths[preset]; ok {
		return p, nil
	}
	pr, err := modelgen.Lookup(preset)
	if err != nil {
		return "", err
	}
	path, err := ensureModel(pr.Name, pr, modelgen.Options{})
	if err != nil {
		return "", err
	}
	paths[preset] = path
	return path, nil
}

// Quantized returns the preset's model quantized to ftype ("q8_0", "q4_0", ...),
// quantizing it on first use.
func Quantized(tb testing.TB, preset, ftype string) string {
	tb.Helper()
	src := Path(tb, preset)
	dst := strings.TrimSuffix(src, ".gguf") + "-" + ftype + ".gguf"
	mu.Lock()
	defer mu.Unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst
	}
	tmp := dst + fmt.Sprintf(".%d.tmp", os.Getpid())
	if err := engine.Quantize(src, tmp, ftype, 0); err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		tb.Fatalf("testmodel: %v", err)
	}
	return dst
}
