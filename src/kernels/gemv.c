/* Small-M linear layer: stream the weights once, apply each row to all N inputs (gemv.h). */
#include <stddef.h>

#include "gemv.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

enum {
    GEMV_MAX_N = 8,              // input rows per pass over the weights
    GEMV_BLOCK = 16,             // output rows per unit of work shared among threads
    GEMV_PAR_MIN = 1 << 16,      // weight floats (256 KiB) below which one thread does it all:
                                 // a parallel region costs microseconds, this many take ~20 us
    GEMV_PREFETCH = 2048,        // floats (8 KiB) ahead in the weights, fetched while the FMAs run:
                                 // +10-15% at N = 1 and up to 2x at N = 8 (streamed from memory, Xeon VM)
};

/* ---- portable ------------------------------------------------------------------------------
 * Element (n, o): 16 partial sums, lane l over c = l, l+16, ... (the tail c >= C - C%16 into
 * lanes 0..C%16-1), reduced by the tree (l, l+8), (l, l+4), (l, l+2), (l, l+1), plus the bias. */

static float dot16(const float *x, const float *w, int C) {
    float s[16] = {0};
    int c = 0;
    for (; c + 16 <= C; c += 16)
        for (int l = 0; l < 16; l++) s[l] += x[c + l] * w[c + l];
    for (int l = 0; c + l < C; l++) s[l] += x[c + l] * w[c + l];
    for (int h = 8; h >= 1; h /= 2)
        for (int l = 0; l < h; l++) s[l] += s[l + h];
    return s[0];
}

/* Rows [o0, o1) of out for inputs n = 0..N-1: one weight row at a time, used N times from L1. */
static void rows_portable(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC,
                          int o0, int o1) {
    for (int o = o0; o < o1; o++) {
        const float *w = weight + (size_t)o * C; // (C)
        for (int n = 0; n < N; n++) {
            float s = dot16(inp + (size_t)n * C, w, C);
            out[(size_t)n * OC + o] = bias ? s + bias[o] : s;
        }
    }
}

/* ---- AVX-512 -------------------------------------------------------------------------------
 * The same order as above: one 16-lane accumulator per element, a masked load for the tail (its
 * lanes beyond C add exact zeros), _mm512_reduce_add_ps (the same tree), then the bias. R rows of
 * the weight matrix go side by side so that R*N independent FMA chains hide the FMA latency, and
 * each cache line of weights is prefetched GEMV_PREFETCH floats ahead of its use (the R rows are
 * contiguous, so that runs into the next rows; past the matrix's end a prefetch is harmless). */
#ifdef __AVX512F__

typedef void rows_fn(float *out, const float *inp, const float *weight, const float *bias, int C, int OC, int o0,
                     int o1);

/* Rows [o, o + R) for N inputs; R and N are constants where it is inlined, so acc lives in registers. */
static inline __attribute__((always_inline)) void rows_avx512(float *out, const float *inp, const float *weight,
                                                               const float *bias, int C, int OC, int o, const int N,
                                                               const int R) {
    __m512 acc[4][GEMV_MAX_N];
    const float *w = weight + (size_t)o * C; // (R, C)
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int n = 0; n < N; n++) acc[r][n] = _mm512_setzero_ps();
    int c = 0;
    for (; c + 16 <= C; c += 16)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 wv = _mm512_loadu_ps(w + (size_t)r * C + c);
            _mm_prefetch((const char *)(w + (size_t)r * C + c + GEMV_PREFETCH), _MM_HINT_T0);
#pragma GCC unroll 8
            for (int n = 0; n < N; n++)
                acc[r][n] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(inp + (size_t)n * C + c), acc[r][n]);
        }
    if (c < C) {
        __mmask16 m = (__mmask16)((1u << (C - c)) - 1u);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 wv = _mm512_maskz_loadu_ps(m, w + (size_t)r * C + c);
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

/* rows_avx512_N: rows [o0, o1) for N inputs, R rows at a time then the rest one by one (each
 * element's arithmetic is the same either way). R*N <= 16 accumulators. */
#define GEMV_ROWS(N, R)                                                                                            \
    static void rows_avx512_##N(float *out, const float *inp, const float *weight, const float *bias, int C,      \
                                int OC, int o0, int o1) {                                                          \
        int o = o0;                                                                                                \
        for (; o + (R) <= o1; o += (R)) rows_avx512(out, inp, weight, bias, C, OC, o, (N), (R));                   \
        for (; o < o1; o++) rows_avx512(out, inp, weight, bias, C, OC, o, (N), 1);                                 \
    }
GEMV_ROWS(1, 4)
GEMV_ROWS(2, 4)
GEMV_ROWS(3, 4)
GEMV_ROWS(4, 4)
GEMV_ROWS(5, 2)
GEMV_ROWS(6, 2)
GEMV_ROWS(7, 2)
GEMV_ROWS(8, 2)
#undef GEMV_ROWS

static rows_fn *const rows_avx512_n[GEMV_MAX_N + 1] = {NULL,            rows_avx512_1, rows_avx512_2,
                                                       rows_avx512_3,   rows_avx512_4, rows_avx512_5,
                                                       rows_avx512_6,   rows_avx512_7, rows_avx512_8};
#endif

/* ---- the whole matrix, over threads ---------------------------------------------------------- */

static void gemv(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC,
                 int portable) {
    int nblk = (OC + GEMV_BLOCK - 1) / GEMV_BLOCK;
    for (int n0 = 0; n0 < N; n0 += GEMV_MAX_N) {
        int Nc = N - n0 < GEMV_MAX_N ? N - n0 : GEMV_MAX_N;
        float *o_ = out + (size_t)n0 * OC;      // (Nc, OC)
        const float *x = inp + (size_t)n0 * C;  // (Nc, C)
        // Static schedule: each thread one contiguous run of blocks, a single stream of weights.
#pragma omp parallel for schedule(static) if ((size_t)OC * (size_t)C >= GEMV_PAR_MIN)
        for (int b = 0; b < nblk; b++) {
            int o0 = b * GEMV_BLOCK, o1 = o0 + GEMV_BLOCK < OC ? o0 + GEMV_BLOCK : OC;
#ifdef __AVX512F__
            if (!portable) {
                rows_avx512_n[Nc](o_, x, weight, bias, C, OC, o0, o1);
                continue;
            }
#endif
            rows_portable(o_, x, weight, bias, Nc, C, OC, o0, o1);
        }
    }
    (void)portable;
}

void tpar_gemv_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC) {
    gemv(out, inp, weight, bias, N, C, OC, 0);
}

void tpar_gemv_forward_portable(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                                int OC) {
    gemv(out, inp, weight, bias, N, C, OC, 1);
}
