// Package engine is HXP's binding to llama.cpp, and the only package of HXP that
// imports "C".
//
// It exposes Go types (Model, Context, Batch, Sampler) over llama.h and returns Go
// errors. Every argument is validated in Go before it reaches C, because llama.cpp
// aborts the whole process on some misuse (a token id outside the vocabulary, a
// sequence id at or above n_seq_max, a batch larger than n_batch).
//
// Threading: a Model is safe for concurrent use (tokenization, metadata and chat
// templates are read-only in llama.cpp). A Context, its Batches and the Samplers used
// with it belong to one goroutine at a time; the scheduler (package sched) owns one
// Context per model from a goroutine locked to its OS thread.
//
// Batch invariance: llama.cpp's CPU kernels reduce in an order that depends on the
// batch shape (matrix-vector for one token, tiled matrix-matrix for several), so the
// logits of a sequence decoded alone and the same sequence decoded inside a batch
// differ in the last bits of float precision: measured up to 3e-4 on a decode step of
// the generated tiny model (one sequence alone vs three in a batch; prompt
// evaluation matched exactly). Greedy choices are identical whenever the top-1/top-2
// logit margin is larger than that noise, which holds for the project's generated
// models (scaled for clear margins: 5th-percentile margin 0.35, median 5) and for
// trained models on all but near-ties. The tests check token equality through the
// engine and the scheduler, and bound the logit difference directly.
package engine

/*
#cgo CXXFLAGS: -std=c++17
#cgo LDFLAGS: -lm -lstdc++
#include <stdlib.h>
#include "llama.h"

extern void hxpLog(int level, char *text, void *user);
static void hxp_install_logger(void) { llama_log_set((ggml_log_callback)hxpLog, NULL); }
*/
import "C"

import (
	"errors"
	"strings"
	"sync"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"

	// llama.cpp and the ggml CPU backend, compiled by cgo from the module sources.
	_ "github.com/ollama/ollama/llama/llama.cpp/src"
)

// Token is a vocabulary id.
type Token = int32

// Errors returned by the engine. They are wrapped with context; test with errors.Is.
var (
	// ErrInvalidArgument marks a call rejected by validation before reaching C.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrContextOverflow means the tokens do not fit the sequence's context window.
	ErrContextOverflow = errors.New("context overflow")
	// ErrNoKVSlot means llama.cpp found no room in the KV cache for the batch.
	ErrNoKVSlot = errors.New("no KV cache slot for batch")
	// ErrClosed is returned by methods of a freed Model, Context or Sampler.
	ErrClosed = errors.New("engine object is closed")
	// ErrUnknownTemplate means a chat template is not one llama.cpp implements.
	ErrUnknownTemplate = errors.New("unsupported chat template")
)

var initOnce sync.Once

// logger receives llama.cpp's and ggml's log lines. Replace it with SetLogger.
var logger = log.Logger.Level(zerolog.WarnLevel).With().Str("component", "llama.cpp").Logger()

// SetLogger routes llama.cpp's own log output (model loading details, warnings) to l.
// Debug-level lines from llama.cpp are logged at zerolog's trace level.
func SetLogger(l zerolog.Logger) { logger = l.With().Str("component", "llama.cpp").Logger() }

// lineBuf joins llama.cpp's partial log writes (it logs a line in pieces).
var (
	lineMu  sync.Mutex
	lineBuf strings.Builder
	lineLvl int
)

//export hxpLog
func hxpLog(level C.int, text *C.char, _ unsafe.Pointer) {
	s := C.GoString(text)
	lineMu.Lock()
	defer lineMu.Unlock()
	if int(level) != C.GGML_LOG_LEVEL_CONT {
		lineLvl = int(level)
	}
	lineBuf.WriteString(s)
	if !strings.HasSuffix(s, "\n") {
		return
	}
	msg := strings.TrimSpace(lineBuf.String())
	lineBuf.Reset()
	if msg == "" || msg == "." {
		return
	}
	recordBuffer(msg)
	var ev *zerolog.Event
	switch {
	case lineLvl == C.GGML_LOG_LEVEL_ERROR:
		ev = logger.Error()
	case lineLvl == C.GGML_LOG_LEVEL_WARN && !benign(msg):
		ev = logger.Warn()
	case lineLvl == C.GGML_LOG_LEVEL_INFO || lineLvl == C.GGML_LOG_LEVEL_WARN:
		ev = logger.Debug()
	default:
		ev = logger.Trace()
	}
	ev.Msg(msg)
}

// benignWarnings are llama.cpp warnings that describe intended configurations (a
// per-sequence context below the trained one) or harmless metadata quirks; they are
// logged at debug level so that operators see only warnings that need action.
var benignWarnings = []string{
	"n_ctx_seq (", // a slot's context is below the trained context: by design
	"special_eos_id is not in special_eog_ids", // llama.cpp adds EOS to the end tokens itself
	"n_ctx is not divisible by n_seq_max",
}

func benign(msg string) bool {
	for _, w := range benignWarnings {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}

// ensureInit initialises llama.cpp's backends once per process.
func ensureInit() {
	initOnce.Do(func() {
		C.hxp_install_logger()
		C.llama_backend_init()
		installKernels()
	})
}

// SystemInfo reports the CPU features llama.cpp was compiled with (AVX2, AVX512, ...).
func SystemInfo() string {
	ensureInit()
	return strings.TrimSpace(C.GoString(C.llama_print_system_info()))
}

// SupportsGPUOffload reports whether this binary was built with a GPU backend.
func SupportsGPUOffload() bool {
	ensureInit()
	return bool(C.llama_supports_gpu_offload())
}

// MaxParallelSequences is llama.cpp's compile-time limit on n_seq_max.
func MaxParallelSequences() int { return int(C.llama_max_parallel_sequences()) }

// cString converts s for C; the caller frees it.
func cString(s string) *C.char { return C.CString(s) }

func free(p unsafe.Pointer) { C.free(p) }
