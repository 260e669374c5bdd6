package engine

/*
#include <stdbool.h>
#include <stdint.h>
void hxp_fattn_register(void);
bool hxp_fattn_set_tiled(bool on);
int64_t hxp_fattn_ops(void);
*/
import "C"

import "os"

// TiledAttentionEnv turns the tiled flash-attention kernel off when set to "off".
const TiledAttentionEnv = "HXP_TILED_ATTENTION"

// installTiledAttention registers the tiled flash-attention kernel for prompt batches
// (fattn.cpp) unless TiledAttentionEnv is "off", the operator's way back to ggml's own
// kernel. It runs once, before any model is loaded.
func installTiledAttention() {
	switch v := os.Getenv(TiledAttentionEnv); v {
	case "off":
		C.hxp_fattn_set_tiled(false)
		return
	case "", "on":
	default:
		logger.Warn().Str("variable", TiledAttentionEnv).Str("value", v).
			Msg("unknown value (use on or off): the tiled flash-attention kernel stays on")
	}
	C.hxp_fattn_register()
}

// SetTiledAttention turns the tiled flash-attention kernel for prompt batches on or off
// and returns the previous setting. It exists to compare the kernel with ggml's own in
// one process (tests, benchmarks); call it only while no context is decoding.
func SetTiledAttention(on bool) (was bool) {
	ensureInit()
	return bool(C.hxp_fattn_set_tiled(C.bool(on)))
}

// tiledAttentionOps is how many flash-attention ops the tiled kernel has computed.
func tiledAttentionOps() int64 { return int64(C.hxp_fattn_ops()) }
