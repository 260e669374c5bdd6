package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/hxp-ai/hxp/gguf"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/kvtype"
	"github.com/hxp-ai/hxp/modelgen"
)

func init() {
	register(command{name: "models inspect", summary: "show a GGUF model's metadata, tensors, size and KV-cache bytes per token", run: runModelsInspect})
}

// inspection is what `hxp models inspect` reports; --json prints it as is.
type inspection struct {
	Path            string            `json:"path"`
	FileBytes       int64             `json:"file_bytes"`
	GGUFVersion     uint32            `json:"gguf_version"`
	Architecture    string            `json:"architecture"`
	Name            string            `json:"name,omitempty"`
	Params          uint64            `json:"params"`
	Tensors         int               `json:"tensors"`
	TensorTypes     map[string]int    `json:"tensor_types"`
	WeightBytes     uint64            `json:"weight_bytes"`
	Layers          int               `json:"n_layer"`
	Embd            int               `json:"n_embd"`
	Heads           int               `json:"n_head"`
	HeadsKV         int               `json:"n_head_kv"`
	ContextLength   int               `json:"n_ctx_train"`
	VocabSize       int               `json:"n_vocab"`
	Experts         int               `json:"expert_count,omitempty"`
	ExpertsUsed     int               `json:"expert_used_count,omitempty"`
	KVBytesPerToken map[string]uint64 `json:"kv_bytes_per_token"` // by kv_type
	ChatTemplate    bool              `json:"has_chat_template"`
	Metadata        map[string]string `json:"metadata,omitempty"`
}

func runModelsInspect(args []string) error {
	fs := newFlags("models inspect", "[--json] [--meta] PATH.gguf")
	asJSON := fs.Bool("json", false, "print JSON")
	meta := fs.Bool("meta", false, "also list every metadata key and value (long arrays summarised)")
	if err := parseFlags(fs, args, -1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one GGUF file", errUsage)
	}
	in, err := inspect(fs.Arg(0), *meta)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	printInspection(in)
	return nil
}

// inspect reads the GGUF header (no weights are loaded, so any size inspects at once).
func inspect(path string, withMeta bool) (*inspection, error) {
	g, err := gguf.ReadFile(path, gpu.HeaderReadOptions)
	if err != nil {
		return nil, err
	}
	mi, err := gpu.HeaderInfoOf(g)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	in := &inspection{
		Path: path, FileBytes: g.Size, GGUFVersion: g.Version, Architecture: mi.Architecture, Name: mi.Name,
		Tensors: len(g.Tensors), TensorTypes: map[string]int{}, WeightBytes: mi.WeightBytes(),
		Layers: mi.BlockCount, Embd: mi.EmbeddingLength, Heads: mi.HeadCount, ContextLength: mi.ContextLength,
		VocabSize: mi.VocabSize, Experts: mi.ExpertCount, ExpertsUsed: mi.ExpertUsedCount,
	}
	for _, h := range mi.HeadCountKV {
		in.HeadsKV = max(in.HeadsKV, h)
	}
	for _, t := range g.Tensors {
		in.Params += t.Elements()
		in.TensorTypes[t.Type.String()]++
	}
	in.KVBytesPerToken = map[string]uint64{}
	for _, kv := range kvtype.All() {
		in.KVBytesPerToken[string(kv)] = gpu.KVBytes(mi, kv, 1)
	}
	_, in.ChatTemplate = g.Get("tokenizer.chat_template")
	if withMeta {
		in.Metadata = map[string]string{}
		for _, kv := range g.KV {
			in.Metadata[kv.Key] = metaValue(kv.Value)
		}
	}
	return in, nil
}

// metaValue formats a metadata value: arrays of up to 8 kept elements in full, longer
// ones by their length, strings quoted and cut at 120 bytes.
func metaValue(v gguf.Value) string {
	if v.Type == gguf.Array {
		if v.Data != nil && v.Len <= 8 {
			return fmt.Sprint(v.Data)
		}
		return fmt.Sprintf("[array of %d]", v.Len)
	}
	switch x := v.Data.(type) {
	case string:
		if len(x) > 120 {
			return fmt.Sprintf("%q... (%d bytes)", x[:120], len(x))
		}
		return fmt.Sprintf("%q", x)
	}
	return fmt.Sprint(v.Data)
}

func printInspection(in *inspection) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	row("path", in.Path)
	row("file size", fmt.Sprintf("%s (%d bytes), GGUF v%d", modelgen.FormatBytes(in.FileBytes), in.FileBytes, in.GGUFVersion))
	row("architecture", in.Architecture)
	if in.Name != "" {
		row("name", in.Name)
	}
	row("parameters", fmt.Sprintf("%s (%d)", modelgen.FormatCount(int64(in.Params)), in.Params))
	types := make([]string, 0, len(in.TensorTypes))
	for t, n := range in.TensorTypes {
		types = append(types, fmt.Sprintf("%s x%d", t, n))
	}
	sort.Strings(types)
	row("tensors", fmt.Sprintf("%d (%s), %s of weights", in.Tensors, strings.Join(types, ", "), modelgen.FormatBytes(int64(in.WeightBytes))))
	row("layers / embd", fmt.Sprintf("%d / %d", in.Layers, in.Embd))
	row("heads / kv heads", fmt.Sprintf("%d / %d", in.Heads, in.HeadsKV))
	if in.Experts > 0 {
		row("experts", fmt.Sprintf("%d (%d used per token)", in.Experts, in.ExpertsUsed))
	}
	row("trained context", in.ContextLength)
	row("vocabulary", in.VocabSize)
	row("chat template", map[bool]string{true: "yes", false: "no (set chat_template in the config to use /v1/chat/completions)"}[in.ChatTemplate])
	perType := make([]string, 0, len(in.KVBytesPerToken))
	for _, kv := range kvtype.All() {
		perType = append(perType, fmt.Sprintf("%s %d", kv, in.KVBytesPerToken[string(kv)]))
	}
	row("KV bytes/token", fmt.Sprintf("%s  (%s at the trained context: %s per sequence)", strings.Join(perType, ", "), kvtype.Default,
		modelgen.FormatBytes(int64(in.KVBytesPerToken[string(kvtype.Default)]*uint64(in.ContextLength)))))
	if in.Metadata != nil {
		keys := make([]string, 0, len(in.Metadata))
		for k := range in.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(w, "\nmetadata\t")
		for _, k := range keys {
			row("  "+k, in.Metadata[k])
		}
	}
	w.Flush()
}
