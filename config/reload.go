package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// validateLifecycle checks a model's idle unloading settings (unload_after, load_wait).
func validateLifecycle(add func(path, format string, args ...any), f func(string) string, m Model) {
	if m.UnloadAfter < 0 {
		add(f("unload_after"), "%s is negative (want 0 to keep the model loaded, or a duration such as \"15m\")", m.UnloadAfter)
	}
	if m.LoadWait < 0 {
		add(f("load_wait"), "%s is negative (want how long a request waits for the model's load, e.g. \"30s\")", m.LoadWait)
	}
}

// ParseModel reads one model entry, as written in the config's models: list, from
// YAML or JSON text (JSON is YAML). Unknown keys are errors. Defaults and validation
// are the caller's: the entry is checked in the context of a whole config.
func ParseModel(data []byte) (Model, error) {
	var m Model
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return Model{}, errors.New("empty model entry (want the fields of one models: entry, e.g. name and path)")
		}
		return Model{}, fmt.Errorf("model entry: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Model{}, errors.New("model entry: more than one document; send one entry")
	}
	return m, nil
}

// Changes is what replacing a running config by a new one changes (see Diff).
type Changes struct {
	// AddedModels and RemovedModels name the models only one of the configs has.
	AddedModels   []string `json:"added_models"`
	RemovedModels []string `json:"removed_models"`
	// ChangedModels name the models whose entries differ: the new entry loads beside
	// the running instance, which it then replaces without dropping a request.
	ChangedModels []string `json:"changed_models"`
	// OutageModels are the changed models whose new entry does not fit the memory
	// beside the running instance: they were unloaded, then loaded with the new entry,
	// so their requests get 404 until it is ready (a brief outage); Notes says so.
	OutageModels []string `json:"outage_models,omitempty"`
	// Notes explain, in words, what a reload did beyond the lists (an outage).
	Notes []string `json:"notes,omitempty"`
	// Keys is true when the static keys (auth.keys, auth.api_keys_file,
	// HXP_AUTH_API_KEYS, auth.node_key) or their limits and scopes changed.
	Keys bool `json:"keys"`
	// Fallbacks is true when routing.fallbacks changed.
	Fallbacks bool `json:"fallbacks"`
	// LogLevel is true when log.level changed.
	LogLevel bool `json:"log_level"`
	// NeedsRestart are the fields (paths such as "listen" or "postgres.url") that
	// differ but cannot change while the server runs: they keep their running values.
	NeedsRestart []string `json:"needs_restart"`
}

// Empty reports whether nothing changes.
func (c Changes) Empty() bool {
	return len(c.AddedModels)+len(c.RemovedModels)+len(c.ChangedModels)+len(c.NeedsRestart) == 0 &&
		!c.Keys && !c.Fallbacks && !c.LogLevel
}

// takeLive copies the fields that can change while the server runs from src to dst.
// Every other field needs a restart.
func takeLive(dst, src *Config) {
	dst.Models = src.Models
	dst.Log.Level = src.Log.Level
	dst.Auth.Keys, dst.Auth.APIKeys, dst.Auth.APIKeysFile, dst.Auth.NodeKey = src.Auth.Keys, src.Auth.APIKeys, src.Auth.APIKeysFile, src.Auth.NodeKey
	dst.Routing.Fallbacks = src.Routing.Fallbacks
}

// KeysRequired reports whether requests need keys: auth.required, or any key source
// (static keys, HXP_AUTH_API_KEYS or its file, PostgreSQL).
func (c *Config) KeysRequired() bool {
	return c.Auth.Required || len(c.Auth.Keys) > 0 || len(c.Auth.APIKeys) > 0 || c.Postgres.URL != ""
}

// Live returns the config a running server adopts when it reloads next: running
// (old) with the fields that can change live taken from next. Turning key checks on
// or off needs a restart, so then the keys stay too.
func Live(old, next *Config) *Config {
	c := *old
	takeLive(&c, next)
	if c.KeysRequired() != old.KeysRequired() {
		c.Auth.Keys, c.Auth.APIKeys, c.Auth.APIKeysFile, c.Auth.NodeKey = old.Auth.Keys, old.Auth.APIKeys, old.Auth.APIKeysFile, old.Auth.NodeKey
	}
	return &c
}

// Diff compares the running config with a new one (both validated, defaults
// applied): which models come and go, whether keys, fallbacks and the log level
// change, and which other fields differ and need a restart. Values are never
// reported, only field paths (they may be secrets).
func Diff(old, next *Config) Changes {
	var ch Changes
	live := Live(old, next)
	oldModels := map[string]Model{}
	for _, m := range old.Models {
		oldModels[m.Name] = m
	}
	for _, m := range live.Models {
		prev, ok := oldModels[m.Name]
		switch {
		case !ok:
			ch.AddedModels = append(ch.AddedModels, m.Name)
		case !reflect.DeepEqual(prev, m):
			ch.ChangedModels = append(ch.ChangedModels, m.Name)
		}
		delete(oldModels, m.Name)
	}
	for _, m := range old.Models {
		if _, gone := oldModels[m.Name]; gone {
			ch.RemovedModels = append(ch.RemovedModels, m.Name)
		}
	}
	ch.Keys = !reflect.DeepEqual(
		[]any{old.Auth.Keys, old.Auth.APIKeys, old.Auth.NodeKey},
		[]any{live.Auth.Keys, live.Auth.APIKeys, live.Auth.NodeKey})
	ch.Fallbacks = !reflect.DeepEqual(old.Routing.Fallbacks, live.Routing.Fallbacks)
	ch.LogLevel = old.Log.Level != live.Log.Level
	ch.NeedsRestart = diffPaths(reflect.ValueOf(*live), reflect.ValueOf(*next), "", nil)
	if live.KeysRequired() != next.KeysRequired() {
		ch.NeedsRestart = append(ch.NeedsRestart, "auth (turning key checks on or off)")
	}
	slices.Sort(ch.NeedsRestart)
	ch.NeedsRestart = slices.Compact(ch.NeedsRestart)
	return ch
}

// diffPaths appends the YAML paths of the fields where a and b differ: the fields of
// nested structs one by one, anything else (lists, maps, values) as a whole.
func diffPaths(a, b reflect.Value, prefix string, out []string) []string {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() {
			continue
		}
		path := prefix
		switch {
		case tag == "-":
			tag = strings.ToLower(f.Name)
			fallthrough
		case tag != "":
			path = joinPath(prefix, tag)
		}
		av, bv := a.Field(i), b.Field(i)
		if reflect.DeepEqual(av.Interface(), bv.Interface()) {
			continue
		}
		if av.Kind() == reflect.Struct {
			out = diffPaths(av, bv, path, out)
			continue
		}
		out = append(out, path)
	}
	return out
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
