package engine

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"unsafe"
)

// FileTypes maps the names accepted by Quantize to llama.cpp's file types.
var FileTypes = map[string]int{
	"f32": C.LLAMA_FTYPE_ALL_F32, "f16": C.LLAMA_FTYPE_MOSTLY_F16,
	"q8_0": C.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": C.LLAMA_FTYPE_MOSTLY_Q4_0,
	"q4_k_m": C.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q5_k_m": C.LLAMA_FTYPE_MOSTLY_Q5_K_M,
	"q6_k": C.LLAMA_FTYPE_MOSTLY_Q6_K,
}

// FileTypeNames lists the accepted quantization names, sorted.
func FileTypeNames() []string {
	names := make([]string, 0, len(FileTypes))
	for n := range FileTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Quantize converts the GGUF model at in to the file type named ftype ("q8_0",
// "q4_0", ...) and writes it to out, using threads (0 = all cores).
func Quantize(in, out, ftype string, threads int) error {
	ft, ok := FileTypes[strings.ToLower(ftype)]
	if !ok {
		return fmt.Errorf("engine: quantize: type %q: %w (one of %s)", ftype, ErrInvalidArgument, strings.Join(FileTypeNames(), ", "))
	}
	if err := checkGGUF(in); err != nil {
		return err
	}
	if in == out {
		return fmt.Errorf("engine: quantize: output must differ from input %s: %w", in, ErrInvalidArgument)
	}
	if threads < 0 || threads > runtime.NumCPU() {
		return fmt.Errorf("engine: quantize: threads=%d: %w (0..%d)", threads, ErrInvalidArgument, runtime.NumCPU())
	}
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	ensureInit()
	qp := C.llama_model_quantize_default_params()
	qp.nthread = C.int32_t(threads)
	qp.ftype = C.enum_llama_ftype(ft)
	cin, cout := C.CString(in), C.CString(out)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cout))
	if rc := C.llama_model_quantize(cin, cout, &qp); rc != 0 {
		os.Remove(out)
		return fmt.Errorf("engine: quantize %s to %s failed (code %d; see the llama.cpp log)", in, ftype, int(rc))
	}
	return nil
}
