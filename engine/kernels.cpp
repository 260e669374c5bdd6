// Installs HXP's CPU kernels (fattn.cpp, qmatmul.cpp) in ggml's CPU backend.
//
// The hook is the backend's list of "extra buffer types", the extension point ggml's own
// repacked and AMX kernels use: before its own switch, the backend asks each extra type
// whether it computes an op (and how much work buffer that op needs when planning the
// graph). HXP's type is registered after the CPU device's buffer-type list is taken and
// supports no op for placement, so llama.cpp never allocates tensors in it: it is only
// consulted at plan and compute time, and returns false for every op its kernels do not
// take, which ggml then computes as before. No dependency source is patched.

#include <cstring>
#include <mutex>

#include "ggml.h"
#include "ggml-backend.h"
#include "ggml-backend-impl.h"
#include "ggml-cpu.h"
#include "kernels.h"
#include "traits.h"

namespace {

class Traits : public ggml::cpu::tensor_traits {
    bool work_size(int, const ggml_tensor * op, size_t & size) override {
        return op->op == GGML_OP_MUL_MAT && hxp::qmm_work_size(op, size);
    }
    bool compute_forward(ggml_compute_params * params, ggml_tensor * op) override {
        switch (op->op) {
        case GGML_OP_FLASH_ATTN_EXT:
            return hxp::fattn_compute(params, op);
        case GGML_OP_MUL_MAT:
            return hxp::qmm_compute(params, op);
        default:
            return false;
        }
    }
};

class Extra : public ggml::cpu::extra_buffer_type {
    bool supports_op(ggml_backend_dev_t, const ggml_tensor *) override { return false; }
    ggml::cpu::tensor_traits * get_tensor_traits(const ggml_tensor * op) override {
        static Traits traits;
        return op->op == GGML_OP_FLASH_ATTN_EXT || op->op == GGML_OP_MUL_MAT ? &traits : nullptr;
    }
};

Extra g_extra;
ggml_backend_buffer_type g_buft = {/*iface*/ {}, /*device*/ nullptr, /*context*/ &g_extra, /*no_alloc*/ true};

}  // namespace

extern "C" {

// hxp_kernels_register installs the kernels. Call it once, before any graph is computed.
// The CPU device's list of extra buffer types (where llama.cpp may place weights) is
// taken first, so that the kernels are consulted at compute time but never offered
// tensors.
void hxp_kernels_register(void) {
    static std::once_flag once;
    std::call_once(once, [] {
        ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        if (cpu == nullptr) {
            return;
        }
        auto get_extra = (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(
            ggml_backend_dev_backend_reg(cpu), "ggml_backend_dev_get_extra_bufts");
        if (get_extra == nullptr) {
            return; // no list to keep the hook out of: leave ggml's kernels alone
        }
        get_extra(cpu);
        ggml_backend_cpu_get_extra_buffer_types().push_back(&g_buft);
    });
}

}  // extern "C"

extern "C" {

// hxp_kernels_mul_mat_q8 computes out[n][m] = w[m][k] (quantized to Q8_0) times x[n][k]
// in a ggml graph on the CPU with the given threads, the way llama.cpp's graphs reach
// the kernels, so that tests can compare one product with and without HXP's kernel.
// It returns false when ggml cannot build the graph.
bool hxp_kernels_mul_mat_q8(const float * w, const float * x, float * out, int64_t m, int64_t k, int64_t n,
                            int threads) {
    // The weights, the columns and the result, the work buffer (the int8 kernel's 2 bytes
    // per column value, more than ggml's) and room for the graph and per-thread padding.
    const size_t wbytes = ggml_row_size(GGML_TYPE_Q8_0, k) * m;
    const size_t work = (size_t) (2 * k * n) + (size_t) threads * 64 + 64;
    ggml_init_params ip = {/*mem_size*/ wbytes + (size_t) (k * n + m * n) * sizeof(float) + work + 1024 * 1024,
                           /*mem_buffer*/ nullptr, /*no_alloc*/ false};
    ggml_context * ctx = ggml_init(ip);
    if (ctx == nullptr) {
        return false;
    }
    ggml_tensor * a = ggml_new_tensor_2d(ctx, GGML_TYPE_Q8_0, k, m);
    ggml_tensor * b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
    ggml_quantize_chunk(GGML_TYPE_Q8_0, w, a->data, 0, m, k, nullptr);
    memcpy(b->data, x, (size_t) (k * n) * sizeof(float));
    ggml_tensor * c = ggml_mul_mat(ctx, a, b);
    ggml_cgraph * g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, c);
    const bool ok = ggml_graph_compute_with_ctx(ctx, g, threads) == GGML_STATUS_SUCCESS;
    if (ok) {
        memcpy(out, c->data, (size_t) (m * n) * sizeof(float));
    }
    ggml_free(ctx);
    return ok;
}

}  // extern "C"
