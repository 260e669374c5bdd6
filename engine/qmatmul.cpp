// An int8 matrix-product kernel for Q8_0 weights on CPUs with AVX-512 VNNI.
//
// Every weight matrix of a Q8_0 model is multiplied by F32 activation columns: one per
// sequence when decoding, one per token of a prompt batch. The ggml CPU backend that HXP
// links quantizes the columns to Q8_0 and then takes a vector dot product per (row,
// column) for one column, and llamafile's tinyBLAS for more. Both read the weights
// straight from memory, and decoding a model larger than the caches is bound by how fast
// they arrive: tinyBLAS reads four rows side by side, which the hardware prefetchers do
// not follow, so decoding two sequences took twice as long as one (see bench/README.md).
// Its x86 kernel also works on 256-bit vectors one 32-value block at a time, with two
// sign flips (vpdpbusd multiplies unsigned by signed bytes), a dot product, a shuffle of
// the block's scale product and an add per (row, column, block).
//
// This kernel computes tiles of 4 weight rows by up to 4 columns over two blocks at a
// time in 512-bit registers, and prefetches the next tile's rows while it computes one.
// The columns are quantized once per product exactly as ggml's quantize_row_q8_0 does
// (the same int8 values and f16-rounded scales, so the integer dot products are the same
// as ggml's) but stored unsigned, offset by 128; each weight row's offset term, 128
// times the sum of its bytes, is computed once per tile and seeds the column dot
// products. Per (row, column, block pair) that leaves one vpdpbusd, one conversion, one
// scale product and one fused multiply-add. Only the order of the float additions
// differs from ggml's.
//
// kernels.cpp installs it in ggml's CPU backend. It answers for plain 2-D products only
// (no broadcast batches), with a row length that is a multiple of 64 and a multiple of 4
// rows, and only where the compiler targets AVX-512 VNNI; everything else falls through
// to ggml.

#include <atomic>
#include <cstdint>
#include <cstring>

#include "ggml.h"
#include "ggml-cpu-impl.h"
#include "kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__F16C__)
#define HXP_QMM 1
#include <immintrin.h>
#endif

namespace {

std::atomic<bool> g_enabled{true};
std::atomic<int64_t> g_ops{0}; // products computed here, for tests

constexpr int64_t kQK = 32;         // values per Q8_0 block
constexpr int64_t kRows = 4;        // weight rows per tile
constexpr int64_t kCols = 4;        // columns per tile
constexpr int64_t kChunkCols = 64;  // columns per pass over the rows (their quantized blocks stay in L2)

// Block is ggml's block_q8_0: an f16 scale and 32 signed bytes.
struct Block {
    uint16_t d;
    int8_t qs[kQK];
};
static_assert(sizeof(Block) == 34, "Q8_0 block layout");

// The work buffer holds the quantized columns: n*nb blocks of 32 offset bytes, then per
// column and block pair 16 scales (the first block's in lanes 0-7, the second's in 8-15).
size_t work_bytes(int64_t n, int64_t nb) { return (size_t) (n * nb * kQK + n * nb * 8 * sizeof(float) + 64); }

bool eligible(const ggml_tensor * op) {
#ifndef HXP_QMM
    (void) op;
    return false;
#else
    if (!g_enabled.load(std::memory_order_relaxed)) {
        return false;
    }
    const ggml_tensor * a = op->src[0];
    const ggml_tensor * b = op->src[1];
    return a->type == GGML_TYPE_Q8_0 && b->type == GGML_TYPE_F32 && op->type == GGML_TYPE_F32 &&
           ggml_blck_size(GGML_TYPE_Q8_0) == kQK && ggml_type_size(GGML_TYPE_Q8_0) == sizeof(Block) &&
           a->ne[0] % (2 * kQK) == 0 && a->ne[1] % kRows == 0 && b->ne[0] == a->ne[0] &&
           a->ne[2] == 1 && a->ne[3] == 1 && b->ne[2] == 1 && b->ne[3] == 1 && op->ne[0] == a->ne[1] &&
           op->ne[1] == b->ne[1] && a->nb[0] == sizeof(Block) && b->nb[0] == sizeof(float) &&
           op->nb[0] == sizeof(float);
#endif
}

#ifdef HXP_QMM

float half(uint16_t h) { return _cvtsh_ss(h); }

// quantize writes one column of nb blocks as ggml's quantize_row_q8_0 would (scale
// amax/127 rounded to f16, values x*127/amax rounded to nearest even), offset by 128.
void quantize(const float * x, int64_t nb, uint8_t * q, float * s) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512i offset = _mm512_set1_epi32(128);
    for (int64_t i = 0; i < nb; i++) {
        const __m512 v0 = _mm512_loadu_ps(x + kQK * i);
        const __m512 v1 = _mm512_loadu_ps(x + kQK * i + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
        const float d = half(_cvtss_sh(amax / 127.0f, 0));
        const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        const __m512i q0 = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v0, id)), offset);
        const __m512i q1 = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v1, id)), offset);
        _mm_storeu_si128((__m128i *) (q + kQK * i), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *) (q + kQK * i + 16), _mm512_cvtepi32_epi8(q1));
        _mm256_storeu_ps(s + 16 * (i / 2) + 8 * (i % 2), _mm256_set1_ps(d));
    }
}

// tile writes c[j*ldc + r] for kRows weight rows (from a, lda bytes apart) and RN
// quantized columns (q and s of the first; the rest follow at nb blocks apart). When next
// is set, it prefetches the kRows rows there, spread over the loop: reading four rows side
// by side defeats the hardware prefetchers, and weights larger than the caches would
// otherwise arrive one miss at a time.
template <int RN>
void tile(const char * a, size_t lda, const uint8_t * q, const float * s, int64_t nb, float * c, size_t ldc,
          const char * next) {
    const int64_t pairs = nb / 2;
    const size_t ahead = (kRows * lda + pairs - 1) / pairs; // bytes of next to prefetch per pair
    const __m512i k128 = _mm512_set1_epi8((char) 0x80);
    __m512 acc[kRows][RN];
    for (int r = 0; r < kRows; r++) {
        for (int j = 0; j < RN; j++) {
            acc[r][j] = _mm512_setzero_ps();
        }
    }
    for (int64_t p = 0; p < pairs; p++) {
        if (next != nullptr) {
            for (size_t o = 0; o < ahead; o += 64) {
                _mm_prefetch(next + p * ahead + o, _MM_HINT_T0);
            }
        }
        __m512i w[kRows], seed[kRows];
        __m512 dw[kRows];
        for (int r = 0; r < kRows; r++) {
            const Block * blk = (const Block *) (a + r * lda) + 2 * p;
            w[r] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) blk[0].qs)),
                                      _mm256_loadu_si256((const __m256i *) blk[1].qs), 1);
            // (x+128).w = x.w + 128*sum(w): start every column's sum at -128*sum(w).
            seed[r] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, w[r]));
            dw[r] = _mm512_insertf32x8(_mm512_set1_ps(half(blk[0].d)), _mm256_set1_ps(half(blk[1].d)), 1);
        }
        for (int j = 0; j < RN; j++) {
            const __m512i x = _mm512_loadu_si512(q + j * nb * kQK + 2 * kQK * p);
            const __m512 dx = _mm512_loadu_ps(s + j * nb * 8 + 16 * p);
            for (int r = 0; r < kRows; r++) {
                const __m512i dot = _mm512_dpbusd_epi32(seed[r], x, w[r]);
                acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw[r], dx), acc[r][j]);
            }
        }
    }
    for (int j = 0; j < RN; j++) {
        for (int r = 0; r < kRows; r++) {
            c[j * ldc + r] = _mm512_reduce_add_ps(acc[r][j]);
        }
    }
}

// unit computes rows [r0, r1) by columns [c0, c1).
void unit(const ggml_tensor * op, const uint8_t * q, const float * s, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    const ggml_tensor * a = op->src[0];
    const int64_t nb = a->ne[0] / kQK;
    const size_t lda = a->nb[1];
    const size_t ldc = op->nb[1] / sizeof(float);
    for (int64_t i = r0; i < r1; i += kRows) {
        const char * ar = (const char *) a->data + i * lda;
        for (int64_t j = c0; j < c1; j += kCols) {
            const uint8_t * qj = q + j * nb * kQK;
            const float * sj = s + j * nb * 8;
            float * cj = (float *) op->data + j * ldc + i;
            // The first column tile fetches the next rows; the others find these in cache.
            const char * next = j == c0 && i + kRows < r1 ? ar + kRows * lda : nullptr;
            switch (c1 - j < kCols ? c1 - j : kCols) {
            case 4: tile<4>(ar, lda, qj, sj, nb, cj, ldc, next); break;
            case 3: tile<3>(ar, lda, qj, sj, nb, cj, ldc, next); break;
            case 2: tile<2>(ar, lda, qj, sj, nb, cj, ldc, next); break;
            default: tile<1>(ar, lda, qj, sj, nb, cj, ldc, next); break;
            }
        }
    }
}

#endif  // HXP_QMM

}  // namespace

bool hxp::qmm_work_size(const ggml_tensor * op, size_t & size) {
    if (!eligible(op)) {
        return false;
    }
    size = work_bytes(op->src[1]->ne[1], op->src[0]->ne[0] / kQK);
    return true;
}

bool hxp::qmm_compute(ggml_compute_params * params, ggml_tensor * op) {
#ifndef HXP_QMM
    (void) params;
    (void) op;
    return false;
#else
    const ggml_tensor * a = op->src[0];
    const ggml_tensor * b = op->src[1];
    // A graph planned while the kernel was off has ggml's smaller work buffer.
    if (!eligible(op) || params->wsize < work_bytes(b->ne[1], a->ne[0] / kQK)) {
        return false;
    }
    const int64_t nb = a->ne[0] / kQK, m = a->ne[1], n = b->ne[1];
    uint8_t * q = (uint8_t *) (((uintptr_t) params->wdata + 63) & ~(uintptr_t) 63);
    float * s = (float *) (q + n * nb * kQK);
    for (int64_t j = params->ith; j < n; j += params->nth) {
        quantize((const float *) ((const char *) b->data + j * b->nb[1]), nb, q + j * nb * kQK, s + j * nb * 8);
    }
    if (params->ith == 0) {
        g_ops.fetch_add(1, std::memory_order_relaxed);
    }
    ggml_barrier(params->threadpool); // every column is quantized
    // Each thread takes one run of consecutive rows, so that it streams its share of the
    // weights in order and the next tile it prefetches is its own, and walks the run once
    // per chunk of 64 columns.
    const int64_t tiles = m / kRows;
    const int64_t r0 = tiles * params->ith / params->nth * kRows, r1 = tiles * (params->ith + 1) / params->nth * kRows;
    for (int64_t c0 = 0; c0 < n; c0 += kChunkCols) {
        unit(op, q, s, r0, r1, c0, c0 + kChunkCols < n ? c0 + kChunkCols : n);
    }
    return true;
#endif
}

extern "C" {

// hxp_qmm_set turns the kernel on or off and returns the previous setting. Call it only
// while no graph is planned or computed: every thread of an op must take the same kernel.
bool hxp_qmm_set(bool on) { return g_enabled.exchange(on); }

// hxp_qmm_available reports whether this build has the kernel (AVX-512 VNNI targeted).
bool hxp_qmm_available(void) {
#ifdef HXP_QMM
    return true;
#else
    return false;
#endif
}

// hxp_qmm_ops counts the matrix products the kernel has computed.
int64_t hxp_qmm_ops(void) { return g_ops.load(std::memory_order_relaxed); }

}  // extern "C"
