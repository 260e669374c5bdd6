package engine

/*
#include <stdbool.h>
#include <stdint.h>
void hxp_kernels_register(void);
bool hxp_fattn_set_tiled(bool on);
int64_t hxp_fattn_ops(void);
bool hxp_qmm_set(bool on);
bool hxp_qmm_available(void);
int64_t hxp_qmm_ops(void);
bool hxp_kernels_mul_mat_q8(const float *w, const float *x, float *out, int64_t m, int64_t k, int64_t n, int threads);
*/
import "C"

import (
	"fmt"
	"os"
)

// HXP adds two kernels to ggml's CPU backend (kernels.cpp): tiled flash attention for
// prompt batches (fattn.cpp) and an int8 matrix product for Q8_0 weights (qmatmul.cpp).
// Each computes only the ops it is tested for and leaves the rest to ggml; each can be
// turned off at process start, the operator's way back to ggml's own kernel.
const (
	// TiledAttentionEnv turns the tiled flash-attention kernel off when set to "off".
	TiledAttentionEnv = "HXP_TILED_ATTENTION"
	// Int8MatmulEnv turns the int8 Q8_0 matrix-product kernel off when set to "off".
	Int8MatmulEnv = "HXP_INT8_MATMUL"
)

// installKernels registers HXP's CPU kernels, with those the environment turns off
// disabled. It runs once, before any model is loaded.
func installKernels() {
	if !kernelSwitch(TiledAttentionEnv, "tiled flash-attention") {
		C.hxp_fattn_set_tiled(false)
	}
	if !kernelSwitch(Int8MatmulEnv, "int8 matrix-product") {
		C.hxp_qmm_set(false)
	}
	C.hxp_kernels_register()
}

// kernelSwitch reads a kernel's variable: off turns it off; empty or on keeps it on, as
// does anything else, with a warning naming the values.
func kernelSwitch(env, kernel string) bool {
	switch v := os.Getenv(env); v {
	case "off":
		return false
	case "", "on":
	default:
		logger.Warn().Str("variable", env).Str("value", v).
			Msg("unknown value (use on or off): the " + kernel + " kernel stays on")
	}
	return true
}

// SetTiledAttention turns the tiled flash-attention kernel for prompt batches on or off
// and returns the previous setting. It exists to compare the kernel with ggml's own in
// one process (tests, benchmarks); call it only while no context is decoding.
func SetTiledAttention(on bool) (was bool) {
	ensureInit()
	return bool(C.hxp_fattn_set_tiled(C.bool(on)))
}

// SetInt8Matmul turns the int8 Q8_0 matrix-product kernel on or off and returns the
// previous setting. It exists to compare the kernel with ggml's own in one process
// (tests, benchmarks); call it only while no context is decoding.
func SetInt8Matmul(on bool) (was bool) {
	ensureInit()
	return bool(C.hxp_qmm_set(C.bool(on)))
}

// Int8MatmulAvailable reports whether this build has the int8 matrix-product kernel: it
// is compiled only where the compiler targets AVX-512 VNNI (make's -march=native on such
// a CPU).
func Int8MatmulAvailable() bool { return bool(C.hxp_qmm_available()) }

// tiledAttentionOps is how many flash-attention ops the tiled kernel has computed.
func tiledAttentionOps() int64 { return int64(C.hxp_fattn_ops()) }

// int8MatmulOps is how many matrix products the int8 kernel has computed.
func int8MatmulOps() int64 { return int64(C.hxp_qmm_ops()) }

// mulMatQ8 computes w (m rows of k, quantized to Q8_0) times the n columns of x (each k
// long) in a ggml graph on the CPU, through whichever kernels are on, and returns the n
// result columns of m. It is for tests that compare the kernels with ggml's own.
func mulMatQ8(w, x []float32, m, k, n, threads int) ([]float32, error) {
	if m <= 0 || k <= 0 || k%32 != 0 || n <= 0 || len(w) != m*k || len(x) != n*k || threads <= 0 {
		return nil, fmt.Errorf("engine: mulMatQ8: m=%d k=%d n=%d threads=%d: %w (k a multiple of 32, len(w) m*k, len(x) n*k)",
			m, k, n, threads, ErrInvalidArgument)
	}
	ensureInit()
	out := make([]float32, m*n)
	if !C.hxp_kernels_mul_mat_q8((*C.float)(&w[0]), (*C.float)(&x[0]), (*C.float)(&out[0]),
		C.int64_t(m), C.int64_t(k), C.int64_t(n), C.int(threads)) {
		return nil, fmt.Errorf("engine: mulMatQ8: ggml could not compute the graph")
	}
	return out, nil
}
