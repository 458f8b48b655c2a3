/* Elementwise kernels: GELU (alone and fused with its bias), residual add, dropout from a
 * counter-based RNG (alone and fused as bias + dropout + residual). */
#include <math.h>

#include "kmath.h"
#include "tpar/kernels.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBE 0.044715f

/* 0.5 (1 + tanh u) = sigmoid(2u), so gelu(x) = x / (1 + exp(-2u)): the same function
 * without the cancellation of 1 + tanh(u) for negative x (no precision lost for x < 0). */
static inline float gelu(float x) {
    float u = GELU_SCALE * (x + GELU_CUBE * x * x * x);
    return x / (1.0f + kexp(-2.0f * u));
}

/* d/dx x sigmoid(2u) = s + 2 x s (1 - s) du/dx, with s = sigmoid(2u), 1 - s = e s, e = exp(-2u) */
static inline float gelu_grad(float x) {
    float u = GELU_SCALE * (x + GELU_CUBE * x * x * x);
    float e = kexp(-2.0f * u);
    float s = 1.0f / (1.0f + e);
    float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
    return s + 2.0f * x * s * (e * s) * du;
}

/* Elementwise loops run over fixed blocks of KBLK elements, shared among the threads:
 * where the vector body ends and the scalar remainder starts inside a block never
 * depends on the thread count, so neither do the bits (see kmath.h). */
enum { KBLK = 4096 };
#define NBLK(n) (((n) + KBLK - 1) / KBLK)
#define BLK_RANGE(blk, n, lo, hi) \
    const size_t lo = (size_t)(blk) * KBLK, hi = (n) - lo < KBLK ? (n) : lo + KBLK

void tpar_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= KPAR_MIN && kthreads() > 1)
    for (size_t blk = 0; blk < NBLK(n); blk++) {
        BLK_RANGE(blk, n, lo, hi);
#pragma omp simd
        for (size_t i = lo; i < hi; i++) out[i] = gelu(inp[i]);
    }
}

void tpar_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for schedule(static) if (n >= KPAR_MIN && kthreads() > 1)
    for (size_t blk = 0; blk < NBLK(n); blk++) {
        BLK_RANGE(blk, n, lo, hi);
#pragma omp simd
        for (size_t i = lo; i < hi; i++) dinp[i] += dout[i] * gelu_grad(inp[i]);
    }
}

void tpar_bias_gelu_forward(float *out, const float *inp, const float *bias, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= KPAR_MIN && kthreads() > 1)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] = gelu(x[j] + bias[j]);
    }
}

void tpar_bias_gelu_backward(float *dinp, float *dbias, const float *inp, const float *bias, const float *dout,
                             int N, int C) {
    if (!dbias) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= KPAR_MIN && kthreads() > 1)
        for (int i = 0; i < N; i++) {
            const float *x = inp + (size_t)i * C, *dy = dout + (size_t)i * C;
            float *dx = dinp + (size_t)i * C;
#pragma omp simd
            for (int j = 0; j < C; j++) dx[j] += dy[j] * gelu_grad(x[j] + bias[j]);
        }
        return;
    }
    /* dbias sums over rows: each thread owns a column range and adds all rows in order (kcols) */
    const int np = (size_t)N * C >= KPAR_MIN ? kthreads() : 1;
#pragma omp parallel for schedule(static) num_threads(np) if (np > 1)
    for (int part = 0; part < np; part++) {
        int j0, j1;
        kcols(part, np, C, &j0, &j1);
        for (int i = 0; i < N; i++) {
            const float *x = inp + (size_t)i * C, *dy = dout + (size_t)i * C;
            float *dx = dinp + (size_t)i * C;
#pragma omp simd
            for (int j = j0; j < j1; j++) {
                float g = dy[j] * gelu_grad(x[j] + bias[j]);
                dx[j] += g;
                dbias[j] += g;
            }
        }
    }
}

void tpar_residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= KPAR_MIN && kthreads() > 1)
    for (size_t blk = 0; blk < NBLK(n); blk++) {
        BLK_RANGE(blk, n, lo, hi);
#pragma omp simd
        for (size_t i = lo; i < hi; i++) out[i] = a[i] + b[i];
    }
}

void tpar_residual_backward(float *da, float *db, const float *dout, size_t n) {
#pragma omp parallel for schedule(static) if (n >= KPAR_MIN && kthreads() > 1)
    for (size_t blk = 0; blk < NBLK(n); blk++) {
        BLK_RANGE(blk, n, lo, hi);
#pragma omp simd
        for (size_t i = lo; i < hi; i++) {
            da[i] += dout[i];
            db[i] += dout[i];
        }
    }
}

/* ---- counter-based RNG -------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z) { /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Each seed picks a pseudo-random start on the Weyl sequence counter * golden, and the
 * finalizer turns consecutive positions into independent-looking words. */
static inline uint64_t rng_key(uint64_t seed) { return mix64(seed ^ 0x6A09E667F3BCC909ull); }
static inline uint32_t rng_at(uint64_t key, uint64_t counter) {
    return (uint32_t)(mix64(key + (counter + 1) * 0x9E3779B97F4A7C15ull) >> 32);
}

uint32_t tpar_rng_u32(uint64_t seed, uint64_t counter) { return rng_at(rng_key(seed), counter); }

/* Dropout parameters: keep iff u32 >= thr; kept values are scaled. p <= 0 or NaN: keep
 * all (thr 0, scale 1); p >= 1: drop all (scale 0). */
typedef struct {
    uint64_t key;
    uint32_t thr;
    float scale;
} drop_t;

static drop_t drop_params(float p, uint64_t seed) {
    drop_t d = {rng_key(seed), 0, 1.0f};
    if (p >= 1.0f) {
        d.thr = UINT32_MAX;
        d.scale = 0.0f;
    } else if (p > 0.0f) {
        d.thr = (uint32_t)((double)p * 4294967296.0);
        d.scale = 1.0f / (1.0f - p);
    }
    return d;
}

/* Inside a parallel loop, take a local copy of the drop_t (`const drop_t dl = d;`): the
 * shared one is read through a pointer there, which keeps GCC from vectorizing. */
static inline float drop_factor(const drop_t *d, uint64_t counter) {
    return rng_at(d->key, counter) >= d->thr ? d->scale : 0.0f;
}

void tpar_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t offset) {
    const drop_t d = drop_params(p, seed);
#pragma omp parallel for schedule(static) if (n >= KPAR_MIN && kthreads() > 1)
    for (size_t blk = 0; blk < NBLK(n); blk++) {
        BLK_RANGE(blk, n, lo, hi);
        const drop_t dl = d;
#pragma omp simd
        for (size_t i = lo; i < hi; i++) out[i] = inp[i] * drop_factor(&dl, offset + i);
    }
}

void tpar_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint64_t offset) {
    const drop_t d = drop_params(p, seed);
#pragma omp parallel for schedule(static) if (n >= KPAR_MIN && kthreads() > 1)
    for (size_t blk = 0; blk < NBLK(n); blk++) {
        BLK_RANGE(blk, n, lo, hi);
        const drop_t dl = d;
#pragma omp simd
        for (size_t i = lo; i < hi; i++) dinp[i] += dout[i] * drop_factor(&dl, offset + i);
    }
}

void tpar_bias_dropout_residual_forward(float *out, const float *inp, const float *bias, const float *residual,
                                        int N, int C, float p, uint64_t seed, uint64_t offset) {
    const drop_t d = drop_params(p, seed);
#pragma omp parallel for schedule(static) if ((size_t)N * C >= KPAR_MIN && kthreads() > 1)
    for (int i = 0; i < N; i++) {
        const size_t row = (size_t)i * C;
        const float *x = inp + row, *r = residual + row;
        float *o = out + row;
        const uint64_t ctr = offset + row;
        const drop_t dl = d;
        if (bias) {
#pragma omp simd
            for (int j = 0; j < C; j++) o[j] = r[j] + (x[j] + bias[j]) * drop_factor(&dl, ctr + (uint64_t)j);
        } else {
#pragma omp simd
            for (int j = 0; j < C; j++) o[j] = r[j] + x[j] * drop_factor(&dl, ctr + (uint64_t)j);
        }
    }
}

/* One row's dinp and dresidual, columns [j0, j1). */
static inline void bdr_row_backward(float *dinp, float *dresidual, const float *dout, const drop_t *d, int i, int C,
                                    int j0, int j1, uint64_t offset) {
    const size_t row = (size_t)i * C;
    const float *dy = dout + row;
    const uint64_t ctr = offset + row;
    if (dresidual) {
        float *dr = dresidual + row;
#pragma omp simd
        for (int j = j0; j < j1; j++) dr[j] += dy[j];
    }
    if (dinp) {
        float *dx = dinp + row;
#pragma omp simd
        for (int j = j0; j < j1; j++) dx[j] += dy[j] * drop_factor(d, ctr + (uint64_t)j);
    }
}

void tpar_bias_dropout_residual_backward(float *dinp, float *dbias, float *dresidual, const float *dout, int N,
                                         int C, float p, uint64_t seed, uint64_t offset) {
    const drop_t d = drop_params(p, seed);
    if (!dbias) { /* no sum across rows: rows are independent */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= KPAR_MIN && kthreads() > 1)
        for (int i = 0; i < N; i++) {
            const drop_t dl = d;
            bdr_row_backward(dinp, dresidual, dout, &dl, i, C, 0, C, offset);
        }
        return;
    }
    /* dbias sums over rows: each thread owns a column range and adds all rows in order (kcols) */
    const int np = (size_t)N * C >= KPAR_MIN ? kthreads() : 1;
#pragma omp parallel for schedule(static) num_threads(np) if (np > 1)
    for (int part = 0; part < np; part++) {
        int j0, j1;
        kcols(part, np, C, &j0, &j1);
        const drop_t dl = d;
        for (int i = 0; i < N; i++) {
            const size_t row = (size_t)i * C;
            const float *dy = dout + row;
            const uint64_t ctr = offset + row;
            if (dresidual) {
                float *dr = dresidual + row;
#pragma omp simd
                for (int j = j0; j < j1; j++) dr[j] += dy[j];
            }
            if (dinp) {
                float *dx = dinp + row;
#pragma omp simd
                for (int j = j0; j < j1; j++) {
                    float g = dy[j] * drop_factor(&dl, ctr + (uint64_t)j);
                    dx[j] += g;
                    dbias[j] += g;
                }
            } else {
#pragma omp simd
                for (int j = j0; j < j1; j++) dbias[j] += dy[j] * drop_factor(&dl, ctr + (uint64_t)j);
            }
        }
    }
}
