// A tiled CPU flash-attention kernel for prompt batches.
//
// The ggml CPU backend that HXP links (llama.cpp ec98e2002, vendored by the ollama module)
// computes GGML_OP_FLASH_ATTN_EXT one query row at a time: for every (query, key) pair it
// converts the key from f16, takes one scalar expf and accumulates the value into an f16
// row. That is right for decoding (one query per sequence) but wastes most of the work on
// a prompt batch, where hundreds of queries of one head read the same keys and values.
//
// This kernel takes a block of query rows of one head and walks the KV cells in tiles:
// each tile's keys (transposed) and values are converted to f32 once for the whole
// block, a row's scores over the tile and its weighted sum of values are accumulated in
// vector registers, the scores are exponentiated with ggml's vectorised exp, and the
// output rows are kept in f32. Tiles that the mask hides from every row of the block
// are skipped whole, so a causal prompt does about half the work.
//
// kernels.cpp installs it in ggml's CPU backend. It answers for flash attention only, and
// only for the parameters it is tested with; everything else (decoding rows, quantized KV
// caches, logit soft-capping, ALiBi, attention sinks) falls through to ggml's kernel.

#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "ggml.h"
#include "ggml-cpu-impl.h"
#include "kernels.h"
#include "simd-mappings.h"
#include "vec.h"

namespace {

// kBlockRows query rows of one head share one pass over K and V; kTileCells KV cells are
// converted at a time (kTileCells x 256 f32 keys and values stay within L2).
constexpr int64_t kBlockRows = 32;
constexpr int64_t kTileCells = 64;
// Fewer query rows per head (decoding) are left to ggml's row kernel: a block would
// convert a whole tile of keys and values for one or two rows.
constexpr int64_t kMinRows = 8;

std::atomic<bool> g_enabled{true};
std::atomic<int64_t> g_ops{0}; // ops computed here, for tests

// Scratch is one compute thread's working memory, kept between calls.
struct Scratch {
    std::vector<float> q, k, v, s, o, m, l;
};
thread_local Scratch tls;

float op_param(const ggml_tensor * op, int i) {
    float f;
    memcpy(&f, (const float *) op->op_params + i, sizeof(f));
    return f;
}

// eligible reports whether the tiled kernel computes op exactly; otherwise ggml's does.
bool eligible(const ggml_tensor * op) {
    if (!g_enabled.load(std::memory_order_relaxed)) {
        return false;
    }
    const ggml_tensor * q = op->src[0];
    const ggml_tensor * k = op->src[1];
    const ggml_tensor * v = op->src[2];
    const ggml_tensor * mask = op->src[3];
    const ggml_tensor * sinks = op->src[4];
    if (q->type != GGML_TYPE_F32 || k->type != GGML_TYPE_F16 || v->type != GGML_TYPE_F16 ||
        op->type != GGML_TYPE_F32) {
        return false;
    }
    if (q->ne[1] < kMinRows || op_param(op, 2) != 0.0f) { // decoding rows; logit soft-capping
        return false;
    }
    if (op_param(op, 1) != 0.0f || sinks != nullptr) { // ALiBi slopes, attention sinks
        return false;
    }
    if (mask && mask->type != GGML_TYPE_F16) {
        return false;
    }
    return q->nb[0] == sizeof(float) && k->nb[0] == sizeof(ggml_fp16_t) && v->nb[0] == sizeof(ggml_fp16_t) &&
           q->ne[0] == k->ne[0] && k->ne[1] == v->ne[1] && op->ne[0] == v->ne[0] && ggml_is_contiguous(op) &&
           q->ne[2] % k->ne[2] == 0 && q->ne[2] % v->ne[2] == 0 && q->ne[3] % k->ne[3] == 0 &&
           q->ne[3] % v->ne[3] == 0;
}

// Visibility of a tile's cells to one query row, read off the f16 mask's bits.
enum class Seen { all, none, some };

Seen seen(const ggml_fp16_t * m, int64_t n) {
    if (m == nullptr) {
        return Seen::all;
    }
    constexpr uint16_t kNegInf = 0xFC00; // f16 -inf; a visible cell is +0
    bool all = true, none = true;
    for (int64_t j = 0; j < n && (all || none); j++) {
        uint16_t bits;
        memcpy(&bits, m + j, sizeof(bits));
        all &= bits == 0;
        none &= bits == kNegInf;
    }
    return all ? Seen::all : none ? Seen::none : Seen::some;
}

// scores sets s[j] = q . k_j for a whole tile; kt holds the tile's keys transposed
// ([DK][kTileCells]), so that the inner loop runs over cells in vector registers.
void scores(float * s, const float * q, const float * kt, int64_t DK) {
    float acc[kTileCells] = {};
    for (int64_t d = 0; d < DK; d++) {
        const float qd = q[d];
        const float * row = kt + d * kTileCells;
        for (int64_t j = 0; j < kTileCells; j++) {
            acc[j] += qd * row[j];
        }
    }
    memcpy(s, acc, sizeof(acc));
}

// accumulate adds p[j] * v_j over the tile's nk cells to o, 64 output dimensions at a
// time so that the partial sums stay in registers.
void accumulate(float * o, const float * p, const float * v, int64_t nk, int64_t DV) {
    constexpr int64_t kLanes = 64;
    int64_t d0 = 0;
    for (; d0 + kLanes <= DV; d0 += kLanes) {
        float acc[kLanes];
        memcpy(acc, o + d0, sizeof(acc));
        for (int64_t j = 0; j < nk; j++) {
            const float pj = p[j];
            if (pj == 0.0f) {
                continue;
            }
            const float * vj = v + j * DV + d0;
            for (int64_t d = 0; d < kLanes; d++) {
                acc[d] += pj * vj[d];
            }
        }
        memcpy(o + d0, acc, sizeof(acc));
    }
    for (int64_t j = 0; j < nk && d0 < DV; j++) {
        for (int64_t d = d0; d < DV; d++) {
            o[d] += p[j] * v[j * DV + d];
        }
    }
}

// block computes query rows [r0, r0+nq) of head h in stream iq3.
void block(const ggml_tensor * op, int64_t iq3, int64_t h, int64_t r0, int64_t nq) {
    const ggml_tensor * q = op->src[0];
    const ggml_tensor * k = op->src[1];
    const ggml_tensor * v = op->src[2];
    const ggml_tensor * mask = op->src[3];

    const int64_t DK = k->ne[0], DV = v->ne[0], n_kv = k->ne[1];
    const int64_t ik2 = h / (q->ne[2] / k->ne[2]), ik3 = iq3 / (q->ne[3] / k->ne[3]);
    const int64_t iv2 = h / (q->ne[2] / v->ne[2]), iv3 = iq3 / (q->ne[3] / v->ne[3]);

    const float scale = op_param(op, 0);

    Scratch & w = tls;
    w.q.resize(kBlockRows * DK);
    w.k.resize(kTileCells * DK + DK); // transposed keys, then one key row being converted
    w.v.resize(kTileCells * DV);
    w.s.resize(kBlockRows * kTileCells);
    w.o.assign(kBlockRows * DV, 0.0f);
    w.m.assign(kBlockRows, -INFINITY);
    w.l.assign(kBlockRows, 0.0f);
    float * Q = w.q.data();
    float * Kt = w.k.data();
    float * krow = Kt + kTileCells * DK;
    float * V = w.v.data();
    float * S = w.s.data();
    float * O = w.o.data();

    const ggml_fp16_t * mrow[kBlockRows];
    for (int64_t i = 0; i < nq; i++) {
        const float * pq = (const float *) ((const char *) q->data + (r0 + i) * q->nb[1] + h * q->nb[2] + iq3 * q->nb[3]);
        for (int64_t d = 0; d < DK; d++) {
            Q[i * DK + d] = pq[d] * scale;
        }
        mrow[i] = mask ? (const ggml_fp16_t *) ((const char *) mask->data + (r0 + i) * mask->nb[1] +
                                                (h % mask->ne[2]) * mask->nb[2] + (iq3 % mask->ne[3]) * mask->nb[3])
                       : nullptr;
    }

    Seen rows[kBlockRows];
    for (int64_t c0 = 0; c0 < n_kv; c0 += kTileCells) {
        const int64_t nk = n_kv - c0 < kTileCells ? n_kv - c0 : kTileCells;

        // A tile that no row of the block sees (most of a causal prompt's upper half) is
        // skipped before its keys and values are converted.
        bool live = false;
        for (int64_t i = 0; i < nq; i++) {
            rows[i] = seen(mrow[i] ? mrow[i] + c0 : nullptr, nk);
            live |= rows[i] != Seen::none;
        }
        if (!live) {
            continue;
        }
        for (int64_t j = 0; j < kTileCells; j++) {
            if (j < nk) {
                ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) ((const char *) k->data + (c0 + j) * k->nb[1] +
                                                             ik2 * k->nb[2] + ik3 * k->nb[3]),
                                      krow, DK);
                ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) ((const char *) v->data + (c0 + j) * v->nb[1] +
                                                             iv2 * v->nb[2] + iv3 * v->nb[3]),
                                      V + j * DV, DV);
            } else {
                memset(krow, 0, DK * sizeof(float)); // past the cache's end: scored, then masked
            }
            for (int64_t d = 0; d < DK; d++) {
                Kt[d * kTileCells + j] = krow[d];
            }
        }

        for (int64_t i = 0; i < nq; i++) {
            if (rows[i] == Seen::none) {
                continue;
            }
            float * s = S + i * kTileCells;
            scores(s, Q + i * DK, Kt, DK);
            float mx = -INFINITY;
            for (int64_t j = 0; j < nk; j++) {
                if (rows[i] == Seen::some) {
                    s[j] += GGML_CPU_FP16_TO_FP32(mrow[i][c0 + j]);
                }
                mx = s[j] > mx ? s[j] : mx;
            }
            if (mx == -INFINITY) {
                continue;
            }
            // Online softmax: what the row has so far is rescaled to the new maximum.
            const float m_new = mx > w.m[i] ? mx : w.m[i];
            const float sum = (float) ggml_vec_soft_max_f32((int) nk, s, s, m_new);
            float * o = O + i * DV;
            if (m_new != w.m[i]) {
                const float corr = w.m[i] == -INFINITY ? 0.0f : expf(w.m[i] - m_new);
                ggml_vec_scale_f32((int) DV, o, corr);
                w.l[i] *= corr;
                w.m[i] = m_new;
            }
            w.l[i] += sum;
            accumulate(o, s, V, nk, DV);
        }
    }

    for (int64_t i = 0; i < nq; i++) {
        float * o = O + i * DV;
        ggml_vec_scale_f32((int) DV, o, w.l[i] == 0.0f ? 0.0f : 1.0f / w.l[i]);
        // The result is permuted to [DV, heads, rows, streams], as ggml's kernel writes it.
        memcpy((char *) op->data + ((iq3 * op->ne[2] + r0 + i) * op->ne[1] + h) * op->nb[1], o, DV * sizeof(float));
    }
}

}  // namespace

bool hxp::fattn_compute(ggml_compute_params * params, ggml_tensor * op) {
    if (!eligible(op)) {
        return false;
    }
    const ggml_tensor * q = op->src[0];
    const int64_t blocks = (q->ne[1] + kBlockRows - 1) / kBlockRows;
    const int64_t units = blocks * q->ne[2] * q->ne[3];

    // Units are handed out dynamically: the blocks of a causal prompt's later rows see more
    // cells than its first ones.
    if (params->ith == 0) {
        ggml_threadpool_chunk_set(params->threadpool, params->nth);
        g_ops.fetch_add(1, std::memory_order_relaxed);
    }
    ggml_barrier(params->threadpool);
    for (int64_t u = params->ith; u < units; u = ggml_threadpool_chunk_add(params->threadpool, 1)) {
        const int64_t b = u % blocks;
        const int64_t h = (u / blocks) % q->ne[2];
        const int64_t iq3 = u / (blocks * q->ne[2]);
        const int64_t r0 = b * kBlockRows;
        block(op, iq3, h, r0, q->ne[1] - r0 < kBlockRows ? q->ne[1] - r0 : kBlockRows);
    }
    return true;
}

extern "C" {

// hxp_fattn_set_tiled turns the kernel on or off and returns the previous setting. Call
// it only while no graph computes: every thread of an op must take the same kernel.
bool hxp_fattn_set_tiled(bool on) { return g_enabled.exchange(on); }

// hxp_fattn_ops counts the flash-attention ops the kernel has computed.
int64_t hxp_fattn_ops(void) { return g_ops.load(std::memory_order_relaxed); }

}  // extern "C"
