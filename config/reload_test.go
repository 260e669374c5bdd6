package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// parsed is a config read from YAML with files skipped (defaults applied).
func parsed(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml), Options{HostCores: 8, SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const baseYAML = `
listen: 127.0.0.1:8000
log: {level: info}
auth:
  keys: [{id: a, sha256: 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b}]
routing: {fallbacks: {m1: [m2]}}
models:
  - {name: m1, path: a.gguf, cpu_cores: 1}
  - {name: m2, path: b.gguf, cpu_cores: 1}
`

func TestDiff(t *testing.T) {
	old := parsed(t, baseYAML)
	if ch := Diff(old, parsed(t, baseYAML)); !ch.Empty() {
		t.Errorf("the same file: %+v", ch)
	}
	next := parsed(t, strings.NewReplacer(
		"listen: 127.0.0.1:8000", "listen: 127.0.0.1:9000\npostgres: {max_conns: 3}",
		"level: info", "level: debug",
		"id: a,", "id: b,",
		"{name: m2, path: b.gguf, cpu_cores: 1}", "{name: m2, path: b.gguf, cpu_cores: 1, parallel: 2}\n  - {name: m3, path: c.gguf, cpu_cores: 1}",
		"{name: m1, path: a.gguf, cpu_cores: 1}", "{name: m0, path: a.gguf, cpu_cores: 1}",
		"fallbacks: {m1: [m2]}", "fallbacks: {m0: [m2]}",
	).Replace(baseYAML))
	ch := Diff(old, next)
	want := Changes{AddedModels: []string{"m0", "m3"}, RemovedModels: []string{"m1"}, ChangedModels: []string{"m2"},
		Keys: true, Fallbacks: true, LogLevel: true, NeedsRestart: []string{"listen", "postgres.max_conns"}}
	slices.Sort(ch.AddedModels)
	if !equalChanges(ch, want) {
		t.Errorf("Diff:\n got %+v\nwant %+v", ch, want)
	}
	live := Live(old, next)
	if live.Listen != old.Listen || live.Postgres.MaxConns != old.Postgres.MaxConns || live.Log.Level != "debug" ||
		len(live.Models) != 3 || live.Auth.Keys[0].ID != "b" {
		t.Errorf("Live keeps the restart fields and takes the live ones: %+v", live)
	}
}

// Turning key checks on or off needs a restart: the keys stay as they run.
func TestDiffKeysOnOff(t *testing.T) {
	open := parsed(t, "models: [{name: m1, path: a.gguf}]\n")
	keyed := parsed(t, baseYAML)
	keyed.Models = open.Models
	ch := Diff(open, keyed)
	if ch.Keys || !slices.Contains(ch.NeedsRestart, "auth (turning key checks on or off)") {
		t.Errorf("keys turned on: %+v", ch)
	}
	if live := Live(open, keyed); len(live.Auth.Keys) != 0 {
		t.Errorf("Live took the keys of a config that turns key checks on: %+v", live.Auth.Keys)
	}
}

func equalChanges(a, b Changes) bool {
	return slices.Equal(a.AddedModels, b.AddedModels) && slices.Equal(a.RemovedModels, b.RemovedModels) &&
		slices.Equal(a.ChangedModels, b.ChangedModels) && slices.Equal(a.NeedsRestart, b.NeedsRestart) &&
		a.Keys == b.Keys && a.Fallbacks == b.Fallbacks && a.LogLevel == b.LogLevel
}

func TestParseModel(t *testing.T) {
	m, err := ParseModel([]byte(`{"name": "x", "path": "x.gguf", "port": 8101, "unload_after": "15m"}`))
	if err != nil || m.Name != "x" || m.Port != 8101 || m.UnloadAfter.D() != 15*time.Minute {
		t.Errorf("JSON entry: %+v, %v", m, err)
	}
	for body, want := range map[string]string{
		"name: x\nparalel: 2\n":   "paralel",
		"":                        "empty model entry",
		"name: x\n---\nname: y\n": "more than one document",
		"unload_after: 15\n":      "duration",
	} {
		if _, err := ParseModel([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseModel(%q): %v, want an error saying %q", body, err, want)
		}
	}
}

func TestLifecycleFieldsValidated(t *testing.T) {
	_, err := Parse([]byte("models: [{name: m, path: a.gguf, unload_after: -1m, load_wait: -2s}]\n"), Options{HostCores: 2, SkipFiles: true})
	ps := problemsOf(t, err)
	if !hasProblem(ps, "models[0].unload_after", "negative") || !hasProblem(ps, "models[0].load_wait", "negative") {
		t.Errorf("problems: %v", ps)
	}
	c := parsed(t, "models: [{name: m, path: a.gguf}]\n")
	if c.Models[0].LoadWait.D() != DefaultLoadWait || c.Models[0].UnloadAfter != 0 {
		t.Errorf("defaults: %+v", c.Models[0])
	}
}
