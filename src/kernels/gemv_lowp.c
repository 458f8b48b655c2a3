/* Small-M linear with bf16 or int8 (q8, blockwise) weights: decode's GEMV over fewer bytes
 * (include/tpar/kernels.h, bfloat16 and int8 sections).
 *
 * The structure and the per-element order are gemv.c's (read it first): weights streamed once,
 * each row applied to all N <= 8 input rows while in L1; one 16-lane fp32 accumulator per output
 * element over c = l, l+16, ... (masked tail), reduced by _mm512_reduce_add_ps's tree (the
 * portable path: the explicit tree (l, l+8), (l, l+4), (l, l+2), (l, l+1)), then the bias. The
 * only change is the weight load: a bf16 weight is widened to fp32 (a shift, exact), an int8
 * weight becomes fl(d q) (its block's scale times q, one fp32 rounding: what tpar_q8_dequantize
 * stores). So each result is bitwise the fp32 GEMV's on the widened / dequantised matrix, at any
 * thread count and for any slice of output rows, and activations stay fp32.
 *
 * Why convert-on-load and not bf16 dot products (_mm512_dpbf16_ps) or VNNI on int8 activations
 * (llama.cpp's q8_0 x q8_0): those round the activations too (to bf16: 2^-8; to int8 per block:
 * amax/254), an error the fp32 activations do not have; and decode at 1-8 rows is a read of
 * the weights, so the few extra instructions per 16 weights (2 for bf16, 3 for int8) hide
 * under the memory stream (docs/KERNELS.md, Precision, has the rates). */
#include <math.h>
#include <stddef.h>

#include "tpar/kernels.h"

/* The vector path needs AVX512BW + VL too (masked 8- and 16-bit loads): every AVX-512 CPU since
 * Skylake-SP has them. Without them the portable path runs (its order differs from gemv.c's AVX-512
 * one in the last bits, so the bitwise link to the fp32 GEMV then holds path for path only). */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define LP_AVX512 1
#include <immintrin.h>
#endif

enum {
    LP_MAX_N = 8,        // input rows per pass over the weights
    LP_BLOCK = 16,       // output rows per unit of work shared among threads
    LP_PAR_MIN = 1 << 17 // weights (128-256 KiB) below which one thread does it all
};

/* ---- portable ------------------------------------------------------------------------------- */

/* fp32 value of weight (o, c): kind 0 bf16, 1 q8 */
static inline float wval(int kind, const void *w, const float *scale, int C, int o, int c) {
    size_t i = (size_t)o * C + c;
    if (kind == 0) return tpar_bf16_to_float(((const tpar_bf16_t *)w)[i]);
    float d = scale[(size_t)o * tpar_q8_blocks(C) + c / TPAR_Q8_BLOCK];
    return d * (float)((const int8_t *)w)[i];
}

static void rows_portable(int kind, float *out, const float *inp, const void *w, const float *scale,
                          const float *bias, int N, int C, int OC, int o0, int o1) {
    for (int o = o0; o < o1; o++)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C;
            float s[16] = {0};
            int c = 0;
            for (; c + 16 <= C; c += 16)
                for (int l = 0; l < 16; l++) {
                    float wv = wval(kind, w, scale, C, o, c + l);
                    s[l] += x[c + l] * wv;
                }
            for (int l = 0; c + l < C; l++) {
                float wv = wval(kind, w, scale, C, o, c + l);
                s[l] += x[c + l] * wv;
            }
            for (int h = 8; h >= 1; h /= 2)
                for (int l = 0; l < h; l++) s[l] += s[l + h];
            out[(size_t)n * OC + o] = bias ? s[0] + bias[o] : s[0];
        }
}

/* ---- AVX-512 -------------------------------------------------------------------------------- */
#ifdef LP_AVX512
#ifndef LP_AHEAD
#define LP_AHEAD(R, C) ((R) * (C))
#endif

/* 16 weights of row `row` from column c, as fp32; m masks the tail (all ones otherwise). */
static inline __attribute__((always_inline)) __m512 wload(int kind, const void *w, const float *scale, int C,
                                                           int row, int c, __mmask16 m) {
    size_t i = (size_t)row * C + c;
    if (kind == 0) {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const tpar_bf16_t *)w + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    __m128i b = _mm_maskz_loadu_epi8(m, (const int8_t *)w + i);
    __m512 d = _mm512_set1_ps(scale[(size_t)row * tpar_q8_blocks(C) + c / TPAR_Q8_BLOCK]);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), d);
}

static inline __attribute__((always_inline)) void rows_avx512(int kind, float *out, const float *inp, const void *w,
                                                               const float *scale, const float *bias, int C, int OC,
                                                               int o, const int N, const int R) {
    /* prefetch 8 KiB of weights ahead, as gemv.c (bytes: 2 a bf16 weight, 1 an int8 one) */
    const int esz = kind == 0 ? 2 : 1;
    __m512 acc[4][LP_MAX_N];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int n = 0; n < N; n++) acc[r][n] = _mm512_setzero_ps();
    int c = 0;
    for (; c + 16 <= C; c += 16)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 wv = wload(kind, w, scale, C, o + r, c, (__mmask16)0xFFFF);
            if ((c * esz & 63) == 0) // once a cache line (every 2nd / 4th step for bf16 / int8)
                _mm_prefetch((const char *)w + ((size_t)(o + r) * C + c + LP_AHEAD(R, C)) * esz, _MM_HINT_T0);
#pragma GCC unroll 8
            for (int n = 0; n < N; n++)
                acc[r][n] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(inp + (size_t)n * C + c), acc[r][n]);
        }
    if (c < C) {
        __mmask16 m = (__mmask16)((1u << (C - c)) - 1u);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 wv = wload(kind, w, scale, C, o + r, c, m);
#pragma GCC unroll 8
            for (int n = 0; n < N; n++)
                acc[r][n] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, inp + (size_t)n * C + c), acc[r][n]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int n = 0; n < N; n++) {
            float s = _mm512_reduce_add_ps(acc[r][n]);
            out[(size_t)n * OC + o + r] = bias ? s + bias[o + r] : s;
        }
}

typedef void rows_fn(float *out, const float *inp, const void *w, const float *scale, const float *bias, int C, int OC,
                     int o0, int o1);

#define LP_ROWS(K, N, R)                                                                                            \
    static void rows_##K##_##N(float *out, const float *inp, const void *w, const float *scale, const float *bias, \
                               int C, int OC, int o0, int o1) {                                                    \
        int o = o0;                                                                                                 \
        for (; o + (R) <= o1; o += (R)) rows_avx512((K), out, inp, w, scale, bias, C, OC, o, (N), (R));            \
        for (; o < o1; o++) rows_avx512((K), out, inp, w, scale, bias, C, OC, o, (N), 1);                           \
    }
#define LP_ALL(K) LP_ROWS(K, 1, 4) LP_ROWS(K, 2, 4) LP_ROWS(K, 3, 4) LP_ROWS(K, 4, 4) \
                  LP_ROWS(K, 5, 2) LP_ROWS(K, 6, 2) LP_ROWS(K, 7, 2) LP_ROWS(K, 8, 2)
LP_ALL(0)
LP_ALL(1)
#undef LP_ALL
#undef LP_ROWS

static rows_fn *const rows_avx512_n[2][LP_MAX_N + 1] = {
    {NULL, rows_0_1, rows_0_2, rows_0_3, rows_0_4, rows_0_5, rows_0_6, rows_0_7, rows_0_8},
    {NULL, rows_1_1, rows_1_2, rows_1_3, rows_1_4, rows_1_5, rows_1_6, rows_1_7, rows_1_8}};
#endif

/* ---- the whole matrix, over threads ----------------------------------------------------------- */

static void gemv_lp(int kind, float *out, const float *inp, const void *w, const float *scale, const float *bias, int N,
                    int C, int OC, int portable) {
    int nblk = (OC + LP_BLOCK - 1) / LP_BLOCK;
    for (int n0 = 0; n0 < N; n0 += LP_MAX_N) {
        int Nc = N - n0 < LP_MAX_N ? N - n0 : LP_MAX_N;
        float *o_ = out + (size_t)n0 * OC;     // (Nc, OC)
        const float *x = inp + (size_t)n0 * C; // (Nc, C)
#pragma omp parallel for schedule(static) if ((size_t)OC * (size_t)C >= LP_PAR_MIN)
        for (int b = 0; b < nblk; b++) {
            int o0 = b * LP_BLOCK, o1 = o0 + LP_BLOCK < OC ? o0 + LP_BLOCK : OC;
#ifdef LP_AVX512
            if (!portable) {
                rows_avx512_n[kind][Nc](o_, x, w, scale, bias, C, OC, o0, o1);
                continue;
            }
#endif
            rows_portable(kind, o_, x, w, scale, bias, Nc, C, OC, o0, o1);
        }
    }
    (void)portable;
}

void tpar_gemv_forward_bf16(float *out, const float *inp, const tpar_bf16_t *weight, const float *bias, int N, int C,
                            int OC) {
    gemv_lp(0, out, inp, weight, NULL, bias, N, C, OC, 0);
}
void tpar_gemv_forward_bf16_portable(float *out, const float *inp, const tpar_bf16_t *weight, const float *bias, int N,
                                     int C, int OC) {
    gemv_lp(0, out, inp, weight, NULL, bias, N, C, OC, 1);
}
void tpar_gemv_forward_q8(float *out, const float *inp, const int8_t *q, const float *scale, const float *bias, int N,
                          int C, int OC) {
    gemv_lp(1, out, inp, q, scale, bias, N, C, OC, 0);
}
void tpar_gemv_forward_q8_portable(float *out, const float *inp, const int8_t *q, const float *scale,
                                   const float *bias, int N, int C, int OC) {
    gemv_lp(1, out, inp, q, scale, bias, N, C, OC, 1);
}

/* ---- the quantiser ---------------------------------------------------------------------------- */

tpar_status tpar_q8_quantize(int8_t *q, float *scale, const float *w, int OC, int C, tpar_err_t *err) {
    if (OC < 1 || C < 1) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "q8 quantize: sizes %d x %d, need >= 1", OC, C);
    size_t n = (size_t)OC * C;
    for (size_t i = 0; i < n; i++)
        if (!(w[i] - w[i] == 0.0f)) // NaN or +-Inf
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                                "q8 quantize: weight (%zu, %zu) is %g; only finite weights can be quantised",
                                i / (size_t)C, i % (size_t)C, (double)w[i]);
    int nb = tpar_q8_blocks(C);
#pragma omp parallel for schedule(static) if (n >= (size_t)LP_PAR_MIN)
    for (int o = 0; o < OC; o++)
        for (int b = 0; b < nb; b++) {
            int c0 = b * TPAR_Q8_BLOCK, c1 = c0 + TPAR_Q8_BLOCK < C ? c0 + TPAR_Q8_BLOCK : C;
            const float *x = w + (size_t)o * C;
            float amax = 0.0f;
            for (int c = c0; c < c1; c++) amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
            float d = amax / 127.0f;
            scale[(size_t)o * nb + b] = d;
            for (int c = c0; c < c1; c++) {
                /* nearbyintf: round to nearest, ties to even (the default rounding mode, which
                 * tpar never changes); |x / d| <= 127 up to the division's rounding: clamp. */
                float r = d > 0.0f ? nearbyintf(x[c] / d) : 0.0f;
                q[(size_t)o * C + c] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
            }
        }
    return TPAR_OK;
}

void tpar_q8_dequantize(float *w, const int8_t *q, const float *scale, int OC, int C) {
    int nb = tpar_q8_blocks(C);
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++) w[(size_t)o * C + c] = scale[(size_t)o * nb + c / TPAR_Q8_BLOCK] * (float)q[(size_t)o * C + c];
}
