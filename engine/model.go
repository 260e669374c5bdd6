package engine

/*
#include <stdlib.h>
#include "llama.h"

extern _Bool hxpProgress(float progress, void *user);
static void hxp_set_progress(struct llama_model_params *p, void *user) {
	p->progress_callback = (llama_progress_callback)hxpProgress;
	p->progress_callback_user_data = user;
}
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/hxp-ai/hxp/kvtype"
)

// ModelParams says how to load a GGUF file.
type ModelParams struct {
	// Path is the GGUF file.
	Path string
	// GPULayers is the number of layers to offload to the GPU; -1 offloads all. Ignored
	// by CPU builds.
	GPULayers int
	// MainGPU is the device index used when the whole model sits on one GPU.
	MainGPU int
	// NoMmap reads the file into memory instead of mapping it.
	NoMmap bool
	// VocabOnly loads only the tokenizer and metadata (for tokenization tools and
	// vocabulary files without weights). Such a model can tokenize, detokenize and
	// render chat templates, but NewContext refuses it.
	VocabOnly bool
	// Progress, when set, is called with the fraction loaded (0..1). Returning false
	// aborts the load.
	Progress func(fraction float32) bool
}

// Model is a loaded GGUF model. It is safe for concurrent use; Close it once no
// Context uses it.
type Model struct {
	mu    sync.RWMutex // guards c against Close during use
	c     *C.struct_llama_model
	vocab *C.struct_llama_vocab
	info  ModelInfo
	mem   Memory
}

// Memory is what loading the model allocated (WeightBytes).
func (m *Model) Memory() Memory { return m.mem }

// ModelInfo is what llama.cpp reports about a loaded model: the metadata HXP uses for
// the API, validation and the load-time memory check. The memory planner works before any
// load, from the GGUF header alone, with gpu.HeaderInfo instead.
type ModelInfo struct {
	Path         string
	Architecture string
	Name         string
	Description  string
	Params       uint64 // parameter count
	SizeBytes    uint64 // weight bytes
	CtxTrain     int    // trained context length
	Embd         int    // embedding width
	Layers       int
	Heads        int
	HeadsKV      int
	HeadDimK     int
	HeadDimV     int
	VocabSize    int
	ChatTemplate string // the GGUF's tokenizer.chat_template, "" when absent
	// ChatTemplates holds the named variants tokenizer.chat_template.NAME by NAME
	// (e.g. "tool_use"); nil when the file has none.
	ChatTemplates map[string]string
	BOS, EOS      Token  // -1 when the vocabulary has none
	EOT           Token  // end of turn, -1 when the model has none
	BOSText       string // BOS's text (Jinja's bos_token), "" when there is no BOS
	EOSText       string // EOS's text (Jinja's eos_token), "" when there is no EOS
	AddBOS        bool
	// VocabOnly is true when the model was loaded with ModelParams.VocabOnly: the
	// shape fields (Layers, Heads, Embd, CtxTrain, ...) are then zero.
	VocabOnly bool
	Meta      map[string]string // every scalar GGUF key/value, as strings (arrays are left out)
}

// chatTemplateKey is the GGUF key of the default chat template; named variants
// append "." and their name.
const chatTemplateKey = "tokenizer.chat_template"

// KVBytesPerToken is the KV-cache size of one token of one sequence in a cache of type
// kv (an unknown type is sized as kvtype.Default).
func (i ModelInfo) KVBytesPerToken(kv kvtype.Type) int64 {
	return int64(kv.Bytes(uint64(i.Layers * i.HeadsKV * (i.HeadDimK + i.HeadDimV))))
}

//export hxpProgress
func hxpProgress(progress C.float, user unsafe.Pointer) C._Bool {
	h := *(*cgo.Handle)(user)
	fn := h.Value().(func(float32) bool)
	return C._Bool(fn(float32(progress)))
}

// LoadModel loads a GGUF model. The file is checked in Go first (it exists, is a
// regular file, starts with the GGUF magic) so that common mistakes get a clear error.
func LoadModel(p ModelParams) (*Model, error) {
	if err := checkGGUF(p.Path); err != nil {
		return nil, err
	}
	if p.GPULayers < -1 {
		return nil, fmt.Errorf("engine: load %s: gpu_layers %d: %w (use -1 for all, 0 for none)", p.Path, p.GPULayers, ErrInvalidArgument)
	}
	if p.MainGPU < 0 {
		return nil, fmt.Errorf("engine: load %s: main_gpu %d: %w (must be >= 0)", p.Path, p.MainGPU, ErrInvalidArgument)
	}
	ensureInit()
	mp := C.llama_model_default_params()
	mp.n_gpu_layers = C.int32_t(p.GPULayers)
	if p.GPULayers < 0 {
		mp.n_gpu_layers = 999
	}
	mp.main_gpu = C.int32_t(p.MainGPU)
	mp.use_mmap = C.bool(!p.NoMmap)
	mp.vocab_only = C.bool(p.VocabOnly)
	var h cgo.Handle
	if p.Progress != nil {
		h = cgo.NewHandle(p.Progress)
		defer h.Delete()
		hp := (*cgo.Handle)(C.malloc(C.size_t(unsafe.Sizeof(h))))
		defer C.free(unsafe.Pointer(hp))
		*hp = h
		C.hxp_set_progress(&mp, unsafe.Pointer(hp))
	}
	cpath := cString(p.Path)
	defer free(unsafe.Pointer(cpath))
	var mem Memory
	var cm *C.struct_llama_model
	capture(&mem, func() { cm = C.llama_model_load_from_file(cpath, mp) })
	if cm == nil {
		return nil, fmt.Errorf("engine: load %s: llama.cpp could not load the model (unsupported architecture, corrupt file or aborted; see the llama.cpp log lines above)", p.Path)
	}
	m := &Model{c: cm, vocab: C.llama_model_get_vocab(cm), mem: mem}
	m.info = m.readInfo(p.Path, p.VocabOnly)
	return m, nil
}

func checkGGUF(path string) error {
	if path == "" {
		return fmt.Errorf("engine: model path is empty: %w", ErrInvalidArgument)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("engine: open model: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("engine: stat model: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("engine: model %s is not a regular file: %w", path, ErrInvalidArgument)
	}
	var magic [4]byte
	if _, err := f.Read(magic[:]); err != nil || string(magic[:]) != "GGUF" {
		return fmt.Errorf("engine: %s is not a GGUF file (bad magic %q): %w", path, magic[:], ErrInvalidArgument)
	}
	return nil
}

// Close frees the model. It waits for in-flight calls on the model to finish.
func (m *Model) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c != nil {
		C.llama_model_free(m.c)
		m.c, m.vocab = nil, nil
	}
}

// Info returns the model's metadata.
func (m *Model) Info() ModelInfo { return m.info }

// readInfo collects the metadata. It calls only getters that are safe for the
// model at hand: llama.cpp's per-layer getters (llama_model_n_head, _n_head_kv)
// abort the process when the model has no layers, as a vocab-only load has.
func (m *Model) readInfo(path string, vocabOnly bool) ModelInfo {
	i := ModelInfo{
		Path:      path,
		Params:    uint64(C.llama_model_n_params(m.c)),
		SizeBytes: uint64(C.llama_model_size(m.c)),
		CtxTrain:  int(C.llama_model_n_ctx_train(m.c)),
		Embd:      int(C.llama_model_n_embd(m.c)),
		Layers:    int(C.llama_model_n_layer(m.c)),
		VocabSize: int(C.llama_vocab_n_tokens(m.vocab)),
		BOS:       Token(C.llama_vocab_bos(m.vocab)),
		EOS:       Token(C.llama_vocab_eos(m.vocab)),
		EOT:       Token(C.llama_vocab_eot(m.vocab)),
		AddBOS:    bool(C.llama_vocab_get_add_bos(m.vocab)),
		VocabOnly: vocabOnly,
		Meta:      map[string]string{},
	}
	if i.Layers > 0 {
		i.Heads = int(C.llama_model_n_head(m.c))
		i.HeadsKV = int(C.llama_model_n_head_kv(m.c))
	}
	i.BOSText, i.EOSText = m.tokenText(i.BOS, i.VocabSize), m.tokenText(i.EOS, i.VocabSize)
	buf := make([]byte, 4096)
	n := int(C.llama_model_meta_count(m.c))
	for k := 0; k < n; k++ {
		key := metaString(buf, func(b *C.char, sz C.size_t) C.int32_t {
			return C.llama_model_meta_key_by_index(m.c, C.int32_t(k), b, sz)
		})
		val := metaString(buf, func(b *C.char, sz C.size_t) C.int32_t {
			return C.llama_model_meta_val_str_by_index(m.c, C.int32_t(k), b, sz)
		})
		i.Meta[key] = val
		if name, ok := strings.CutPrefix(key, chatTemplateKey+"."); ok && name != "" {
			if i.ChatTemplates == nil {
				i.ChatTemplates = map[string]string{}
			}
			i.ChatTemplates[name] = val
		}
	}
	i.Description = metaString(buf, func(b *C.char, sz C.size_t) C.int32_t { return C.llama_model_desc(m.c, b, sz) })
	i.Architecture = i.Meta["general.architecture"]
	i.Name = i.Meta["general.name"]
	if t := C.llama_model_chat_template(m.c, nil); t != nil {
		i.ChatTemplate = C.GoString(t)
	}
	if i.Heads > 0 {
		i.HeadDimK, i.HeadDimV = i.Embd/i.Heads, i.Embd/i.Heads
	}
	if i.Layers == 0 {
		return i // key/value lengths describe layers this model does not have
	}
	if v, err := strconv.Atoi(i.Meta[i.Architecture+".attention.key_length"]); err == nil && v > 0 {
		i.HeadDimK = v
	}
	if v, err := strconv.Atoi(i.Meta[i.Architecture+".attention.value_length"]); err == nil && v > 0 {
		i.HeadDimV = v
	}
	return i
}

// tokenText is the vocabulary text of token t, or "" when t is not a token of the
// vocabulary (llama.cpp throws, and so aborts, on an id outside it).
func (m *Model) tokenText(t Token, vocabSize int) string {
	if t < 0 || int(t) >= vocabSize {
		return ""
	}
	return C.GoString(C.llama_vocab_get_text(m.vocab, C.llama_token(t)))
}

// ChatTemplateNamed returns the GGUF's chat template variant name (for example
// "tool_use", from tokenizer.chat_template.tool_use), or the default template for
// name "". ok is false when the file has no such template.
func (i ModelInfo) ChatTemplateNamed(name string) (tmpl string, ok bool) {
	if name == "" {
		return i.ChatTemplate, i.ChatTemplate != ""
	}
	tmpl, ok = i.ChatTemplates[name]
	return tmpl, ok
}

// metaString calls a llama.cpp string getter, growing buf when the value is longer.
func metaString(buf []byte, get func(*C.char, C.size_t) C.int32_t) string {
	n := int(get((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))))
	if n < 0 {
		return ""
	}
	if n >= len(buf) {
		big := make([]byte, n+1)
		n = int(get((*C.char)(unsafe.Pointer(&big[0])), C.size_t(len(big))))
		return string(big[:n])
	}
	return string(buf[:n])
}

// acquire takes a read lock and reports whether the model is still open.
func (m *Model) acquire() error {
	m.mu.RLock()
	if m.c == nil {
		m.mu.RUnlock()
		return ErrClosed
	}
	return nil
}
