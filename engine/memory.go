package engine

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Memory is what llama.cpp allocated, by kind, as it reports while loading a model
// or creating a context (summed over devices).
type Memory struct {
	WeightBytes  uint64 // model buffers (mapped or copied weights)
	KVBytes      uint64 // KV cache buffers
	ComputeBytes uint64 // compute (graph) buffers
	OutputBytes  uint64 // logits/embeddings output buffer
}

// Total is the sum of all buffers.
func (m Memory) Total() uint64 { return m.WeightBytes + m.KVBytes + m.ComputeBytes + m.OutputBytes }

// llama.cpp states its buffer sizes only in log lines, e.g.
// "llama_kv_cache:        CPU KV buffer size =     0.62 MiB". While a load or context
// creation runs, its log lines are parsed into a Memory. Loads and context creations
// are serialised so that lines are attributed to the right object.
var (
	captureMu  sync.Mutex // held for the whole load / context creation
	captureCur *Memory    // guarded by lineMu (set under captureMu)
	bufferLine = regexp.MustCompile(`^\S+:\s+(\S+)\s+(model|KV|compute|output) buffer size =\s+([0-9.]+) MiB`)
)

// capture runs fn while recording llama.cpp's buffer sizes into m.
func capture(m *Memory, fn func()) {
	captureMu.Lock()
	defer captureMu.Unlock()
	lineMu.Lock()
	captureCur = m
	lineMu.Unlock()
	defer func() {
		lineMu.Lock()
		captureCur = nil
		lineMu.Unlock()
	}()
	fn()
}

// recordBuffer parses one complete log line; lineMu is held.
func recordBuffer(msg string) {
	if captureCur == nil || !strings.Contains(msg, "buffer size") {
		return
	}
	g := bufferLine.FindStringSubmatch(msg)
	if g == nil {
		return
	}
	mib, err := strconv.ParseFloat(g[3], 64)
	if err != nil {
		return
	}
	b := uint64(mib * (1 << 20))
	switch g[2] {
	case "model":
		captureCur.WeightBytes += b
	case "KV":
		captureCur.KVBytes += b
	case "compute":
		captureCur.ComputeBytes += b
	case "output":
		captureCur.OutputBytes += b
	}
}
