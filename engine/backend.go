package engine

/*
#include <stdlib.h>
#include "ggml-backend.h"
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

// Device is a compute device llama.cpp can place layers on.
type Device struct {
	Name, Description string
	GPU               bool
	FreeBytes         uint64
	TotalBytes        uint64
}

// LoadBackend loads a ggml backend shared library (for example libggml-cuda.so built
// by `make cuda`) so that its devices become available to models loaded afterwards.
func LoadBackend(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("engine: backend library: %w", err)
	}
	ensureInit()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	if C.ggml_backend_load(cpath) == nil {
		return fmt.Errorf("engine: backend library %s did not load (wrong CUDA driver or ggml version? see the llama.cpp log)", path)
	}
	return nil
}

// Devices lists the compute devices of the loaded backends (the CPU always).
func Devices() []Device {
	ensureInit()
	n := int(C.ggml_backend_dev_count())
	out := make([]Device, 0, n)
	for i := 0; i < n; i++ {
		d := C.ggml_backend_dev_get(C.size_t(i))
		var free, total C.size_t
		C.ggml_backend_dev_memory(d, &free, &total)
		t := C.ggml_backend_dev_type(d)
		out = append(out, Device{
			Name:        C.GoString(C.ggml_backend_dev_name(d)),
			Description: C.GoString(C.ggml_backend_dev_description(d)),
			GPU:         t == C.GGML_BACKEND_DEVICE_TYPE_GPU || t == C.GGML_BACKEND_DEVICE_TYPE_IGPU,
			FreeBytes:   uint64(free), TotalBytes: uint64(total),
		})
	}
	return out
}
