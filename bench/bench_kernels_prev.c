/* The kernels as they were before vectorisation and threading (issue #13), for
 * bench_kernels' side-by-side comparison only: src/kernels/{layernorm,elementwise,softmax,
 * attention,embedding,xent,adamw}.c and kmath.h at commit d7ec566, concatenated, with the
 * public names renamed tpar_* -> prev_* and the size helpers (tpar_check_attention,
 * tpar_attention_scratch_floats) taken from the library. Single-threaded; attention
 * calls OpenBLAS cblas_sgemm for its block products. Not part of libtpar.
 * A frozen baseline: it does not follow later changes of the library. */
#include "bench_kernels_prev.h"

/* Private inline math for the kernels: an expf the compiler can vectorize.
 *
 * glibc's expf/tanhf are scalar calls unless -ffast-math is on, and exp/tanh sit in the
 * inner loops of GELU, softmax, attention and cross-entropy. This is the Cephes expf
 * (range reduction by ln 2, degree-5 polynomial, exponent bits set directly): about
 * 1-2 ulp on [-87, 88], no branches, no calls, so `#pragma omp simd` loops vectorize. */

#include <stdint.h>
#include <string.h>

static inline float kexp(float x) {
    /* Clamp: below -87.3 the result underflows (returns ~1e-38, close enough to 0 for
     * softmax weights); above 88.3 it would overflow the exponent bits. */
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    /* n = round(x / ln2) with the 1.5*2^23 trick (exact under round-to-nearest). */
    const float shifter = 12582912.0f;
    float t = x * 1.44269504088896341f + shifter;
    float n = t - shifter;
    float r = x - n * 0.693359375f;  /* ln2 split in two for an exact product */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    /* y * 2^n through the exponent field; n is in [-126, 127] after the clamp and sits in
     * the low mantissa bits of t (no float->int conversion, so NaN stays defined). */
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t bits = (tb - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* The row pieces of every softmax here (softmax, attention, cross-entropy). */
static inline float kmax_row(const float *x, int n) { /* n >= 1 */
    float mx = x[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* out[j] = exp(x[j] - mx); returns the sum. out may alias x. */
static inline float kexp_row(float *out, const float *x, int n, float mx) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        float e = kexp(x[j] - mx);
        out[j] = e;
        sum += e;
    }
    return sum;
}

static inline void kscale_row(float *x, int n, float f) {
#pragma omp simd
    for (int j = 0; j < n; j++) x[j] *= f;
}


/* ==== layernorm.c ==== */
/* LayerNorm over the last dimension, saving mean and 1/std for backward (llm.c's form). */
#include <math.h>


void prev_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int N, int C) {
    const float eps = 1e-5f;
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < C; j++) sum += x[j];
        float m = sum / (float)C;
        /* two passes: the variance of (x - m), not E[x^2] - m^2, which cancels badly */
        float var = 0.0f;
#pragma omp simd reduction(+ : var)
        for (int j = 0; j < C; j++) {
            float d = x[j] - m;
            var += d * d;
        }
        float s = 1.0f / sqrtf(var / (float)C + eps);
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] = (x[j] - m) * s * weight[j] + bias[j];
        mean[i] = m;
        rstd[i] = s;
    }
}

void prev_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *mean, const float *rstd, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *dy = dout + (size_t)i * C;
        const float *x = inp + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        const float m = mean[i], s = rstd[i];
        /* the two row reductions of the input gradient */
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
        for (int j = 0; j < C; j++) {
            float xhat = (x[j] - m) * s;
            float dnorm = weight[j] * dy[j];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * xhat;
        }
        dnorm_mean /= (float)C;
        dnorm_norm_mean /= (float)C;
        if (dbias) {
#pragma omp simd
            for (int j = 0; j < C; j++) dbias[j] += dy[j];
        }
        if (dweight) {
#pragma omp simd
            for (int j = 0; j < C; j++) dweight[j] += (x[j] - m) * s * dy[j];
        }
#pragma omp simd
        for (int j = 0; j < C; j++) {
            float xhat = (x[j] - m) * s;
            dx[j] += (weight[j] * dy[j] - dnorm_mean - xhat * dnorm_norm_mean) * s;
        }
    }
}

/* ==== elementwise.c ==== */
/* Elementwise kernels: GELU (alone and fused with its bias), residual add, dropout from a
 * counter-based RNG (alone and fused as bias + dropout + residual). */
#include <math.h>


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

void prev_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i] = gelu(inp[i]);
}

void prev_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * gelu_grad(inp[i]);
}

void prev_bias_gelu_forward(float *out, const float *inp, const float *bias, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] = gelu(x[j] + bias[j]);
    }
}

void prev_bias_gelu_backward(float *dinp, float *dbias, const float *inp, const float *bias, const float *dout,
                             int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        const float *dy = dout + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        if (dbias) {
#pragma omp simd
            for (int j = 0; j < C; j++) {
                float g = dy[j] * gelu_grad(x[j] + bias[j]);
                dx[j] += g;
                dbias[j] += g;
            }
        } else {
#pragma omp simd
            for (int j = 0; j < C; j++) dx[j] += dy[j] * gelu_grad(x[j] + bias[j]);
        }
    }
}

void prev_residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void prev_residual_backward(float *da, float *db, const float *dout, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
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

uint32_t prev_rng_u32(uint64_t seed, uint64_t counter) { return rng_at(rng_key(seed), counter); }

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

static inline float drop_factor(const drop_t *d, uint64_t counter) {
    return rng_at(d->key, counter) >= d->thr ? d->scale : 0.0f;
}

void prev_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t offset) {
    const drop_t d = drop_params(p, seed);
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * drop_factor(&d, offset + i);
}

void prev_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint64_t offset) {
    const drop_t d = drop_params(p, seed);
#pragma omp simd
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * drop_factor(&d, offset + i);
}

void prev_bias_dropout_residual_forward(float *out, const float *inp, const float *bias, const float *residual,
                                        int N, int C, float p, uint64_t seed, uint64_t offset) {
    const drop_t d = drop_params(p, seed);
    for (int i = 0; i < N; i++) {
        const size_t row = (size_t)i * C;
        const float *x = inp + row, *r = residual + row;
        float *o = out + row;
        const uint64_t ctr = offset + row;
        if (bias) {
#pragma omp simd
            for (int j = 0; j < C; j++) o[j] = r[j] + (x[j] + bias[j]) * drop_factor(&d, ctr + (uint64_t)j);
        } else {
#pragma omp simd
            for (int j = 0; j < C; j++) o[j] = r[j] + x[j] * drop_factor(&d, ctr + (uint64_t)j);
        }
    }
}

void prev_bias_dropout_residual_backward(float *dinp, float *dbias, float *dresidual, const float *dout, int N,
                                         int C, float p, uint64_t seed, uint64_t offset) {
    const drop_t d = drop_params(p, seed);
    for (int i = 0; i < N; i++) {
        const size_t row = (size_t)i * C;
        const float *dy = dout + row;
        const uint64_t ctr = offset + row;
        if (dresidual) {
            float *dr = dresidual + row;
#pragma omp simd
            for (int j = 0; j < C; j++) dr[j] += dy[j];
        }
        if (dinp && dbias) {
            float *dx = dinp + row;
#pragma omp simd
            for (int j = 0; j < C; j++) {
                float g = dy[j] * drop_factor(&d, ctr + (uint64_t)j);
                dx[j] += g;
                dbias[j] += g;
            }
        } else if (dinp || dbias) {
            float *acc = dinp ? dinp + row : dbias;
#pragma omp simd
            for (int j = 0; j < C; j++) acc[j] += dy[j] * drop_factor(&d, ctr + (uint64_t)j);
        }
    }
}

/* ==== softmax.c ==== */
/* Row-wise softmax and its backward. */

void prev_softmax_forward(float *out, const float *inp, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
        const float mx = kmax_row(x, C);
        kscale_row(o, C, 1.0f / kexp_row(o, x, C, mx));
    }
}

void prev_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *dy = dout + (size_t)i * C, *y = out + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < C; j++) dot += dy[j] * y[j];
#pragma omp simd
        for (int j = 0; j < C; j++) dx[j] += y[j] * (dy[j] - dot);
    }
}

/* ==== attention.c ==== */
/* Causal self-attention per head, in blocks of query rows.
 *
 * For a block of QB query rows, the scaled scores against every key the block can see
 * (keys 0 .. end of block) go into scratch as a (QB, kend) matrix through one sgemm; each
 * row is then softmaxed exactly (the whole causal row is there, so no online rescaling is
 * needed) and multiplied by V with a second sgemm. Memory is O(QB * T) for any T, not
 * O(T^2); the only thing saved for backward is the log-sum-exp of each row, from which
 * backward recomputes the probabilities exactly (FlashAttention's trick, with GEMM tiles
 * that OpenBLAS runs near its peak). q, k, v are read in place from the (B, T, 3C) buffer
 * with leading dimension 3C; nothing is copied. */
#include <cblas.h>
#include <math.h>


enum { QB = TPAR_ATTENTION_BLOCK }; /* (QB, T) scores stay in L2 for T up to ~2k */

/* Rows r of a (nq, kend) score block hold query i0 + r; keys j > i0 + r are masked. */
static inline int row_len(int i0, int r) { return i0 + r + 1; }

void prev_attention_forward(float *out, float *lse, const float *qkv, float *scratch, int B, int T, int C,
                            int NH) {
    const int hs = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    float *S = scratch; // (QB, T)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs; // (T, hs) with stride 3C
            const float *k = q + C;
            const float *v = q + 2 * C;
            float *o = out + (size_t)b * T * C + (size_t)h * hs; // (T, hs) with stride C
            float *l = lse + ((size_t)b * NH + h) * T;            // (T)
            for (int i0 = 0; i0 < T; i0 += QB) {
                const int nq = T - i0 < QB ? T - i0 : QB, kend = i0 + nq;
                // S (nq, kend) = scale * q[i0 : i0+nq] @ k[0 : kend]^T
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kend, hs, scale, q + (size_t)i0 * ld, ld,
                            k, ld, 0.0f, S, kend);
                for (int r = 0; r < nq; r++) {
                    float *s = S + (size_t)r * kend;
                    const int n = row_len(i0, r);
                    const float mx = kmax_row(s, n);
                    const float sum = kexp_row(s, s, n, mx);
                    kscale_row(s, n, 1.0f / sum);
                    for (int j = n; j < kend; j++) s[j] = 0.0f; // the future is masked
                    l[i0 + r] = mx + logf(sum);
                }
                // o[i0 : i0+nq] (nq, hs) = P (nq, kend) @ v[0 : kend] (kend, hs)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, kend, 1.0f, S, kend, v, ld, 0.0f,
                            o + (size_t)i0 * C, C);
            }
        }
    }
}

void prev_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                             float *scratch, int B, int T, int C, int NH) {
    const int hs = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    float *P = scratch;                        // (QB, T)
    float *dS = scratch + (size_t)QB * T;      // (QB, T)
    float *D = scratch + (size_t)2 * QB * T;   // (QB)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t qoff = (size_t)b * T * ld + (size_t)h * hs, ooff = (size_t)b * T * C + (size_t)h * hs;
            const float *q = qkv + qoff, *k = q + C, *v = q + 2 * C; // (T, hs) stride 3C
            float *dq = dqkv + qoff, *dk = dq + C, *dv = dq + 2 * C;   // (T, hs) stride 3C
            const float *o = out + ooff, *dO = dout + ooff;           // (T, hs) stride C
            const float *l = lse + ((size_t)b * NH + h) * T;          // (T)
            for (int i0 = 0; i0 < T; i0 += QB) {
                const int nq = T - i0 < QB ? T - i0 : QB, kend = i0 + nq;
                const float *qb = q + (size_t)i0 * ld, *dOb = dO + (size_t)i0 * C;
                // P (nq, kend) = exp(scale * q k^T - lse), recomputed exactly as in forward
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kend, hs, scale, qb, ld, k, ld, 0.0f, P,
                            kend);
                // dP (nq, kend) = dO (nq, hs) @ v^T (hs, kend)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kend, hs, 1.0f, dOb, C, v, ld, 0.0f, dS,
                            kend);
                for (int r = 0; r < nq; r++) {
                    const float *orow = o + (size_t)(i0 + r) * C, *drow = dOb + (size_t)r * C;
                    float d = 0.0f; // D = sum_j P_j dP_j = dO . O
#pragma omp simd reduction(+ : d)
                    for (int c = 0; c < hs; c++) d += drow[c] * orow[c];
                    D[r] = d;
                }
                for (int r = 0; r < nq; r++) {
                    float *p = P + (size_t)r * kend, *ds = dS + (size_t)r * kend;
                    const int n = row_len(i0, r);
                    const float li = l[i0 + r], dr = D[r];
#pragma omp simd
                    for (int j = 0; j < n; j++) {
                        float pj = kexp(p[j] - li);
                        p[j] = pj;
                        ds[j] = pj * (ds[j] - dr); // d loss / d (scaled score)
                    }
                    for (int j = n; j < kend; j++) {
                        p[j] = 0.0f;
                        ds[j] = 0.0f;
                    }
                }
                // dv[0 : kend] (kend, hs) += P^T (kend, nq) @ dO (nq, hs)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, hs, nq, 1.0f, P, kend, dOb, C, 1.0f, dv,
                            ld);
                // dq[i0 : i0+nq] (nq, hs) += scale * dS (nq, kend) @ k (kend, hs)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, kend, scale, dS, kend, k, ld, 1.0f,
                            dq + (size_t)i0 * ld, ld);
                // dk[0 : kend] (kend, hs) += scale * dS^T (kend, nq) @ q (nq, hs)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, hs, nq, scale, dS, kend, qb, ld, 1.0f, dk,
                            ld);
            }
        }
    }
}

/* ==== embedding.c ==== */
/* Token + position embedding lookup, with an optional local vocabulary range so a
 * vocab-parallel embedding can use it as is. */
#include <string.h>


tpar_status prev_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B,
                                   int T, int C, int V, int v0, int Vl, tpar_err_t *err) {
    tpar_status st = tpar_check_dims(err, "embedding (B, T, C)", 3, B, T, C);
    if (st == TPAR_OK) st = tpar_check_dims(err, "embedding table (Vl, C)", 2, Vl, C);
    if (st != TPAR_OK) return st;
    if (V < 1 || v0 < 0 || v0 > V - Vl)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "embedding: local rows [%d, %d + %d) do not fit in a vocabulary of %d", v0, v0, Vl, V);
    for (int b = 0; b < B; b++) /* every id first, so an error leaves out untouched */
        for (int t = 0; t < T; t++) {
            const int tok = tokens[(size_t)b * T + t];
            if (tok < 0 || tok >= V)
                return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                                    "embedding: token id %d at (b=%d, t=%d) is outside the vocabulary [0, %d)", tok,
                                    b, t, V);
        }
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const int tok = tokens[(size_t)b * T + t];
            float *o = out + ((size_t)b * T + t) * C;
            if (tok >= v0 && tok - v0 < Vl)
                memcpy(o, wte + (size_t)(tok - v0) * C, (size_t)C * sizeof(float));
            else
                memset(o, 0, (size_t)C * sizeof(float)); // another rank owns this row
            if (wpe) {
                const float *p = wpe + (size_t)t * C;
#pragma omp simd
                for (int c = 0; c < C; c++) o[c] += p[c];
            }
        }
    }
    return TPAR_OK;
}

void prev_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T, int C,
                             int v0, int Vl) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            const int tok = tokens[(size_t)b * T + t];
            if (dwte && tok >= v0 && tok - v0 < Vl) {
                float *w = dwte + (size_t)(tok - v0) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) w[c] += d[c];
            }
            if (dwpe) {
                float *p = dwpe + (size_t)t * C;
#pragma omp simd
                for (int c = 0; c < C; c++) p[c] += d[c];
            }
        }
    }
}

/* ==== xent.c ==== */
/* Cross-entropy with an ignore index, alone (loss only) and fused with the softmax
 * backward (logits -> loss and dlogits in one sweep per row, possibly in place). */
#include <math.h>


/* Validates sizes and targets before anything is written; counts the rows that count. */
static tpar_status xent_check(const int *targets, int N, int V, int Vp, int ignore_index, int *n_valid,
                              const char *what, tpar_err_t *err) {
    tpar_status st = tpar_check_dims(err, what, 2, N, Vp);
    if (st != TPAR_OK) return st;
    if (V < 1 || V > Vp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: V = %d real classes in rows of Vp = %d; need 1 <= V <= Vp",
                            what, V, Vp);
    int n = 0;
    for (int i = 0; i < N; i++) {
        int t = targets[i];
        if (t == ignore_index) continue;
        if (t < 0 || t >= V)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                                "%s: target %d at row %d is outside [0, %d) and is not the ignore index %d", what,
                                t, i, V, ignore_index);
        n++;
    }
    *n_valid = n;
    return TPAR_OK;
}

tpar_status prev_xent_forward(float *loss, float *losses, int *n_valid, const float *logits, const int *targets,
                              int N, int V, int Vp, int ignore_index, tpar_err_t *err) {
    int n = 0;
    tpar_status st = xent_check(targets, N, V, Vp, ignore_index, &n, "cross-entropy", err);
    if (st != TPAR_OK) return st;
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp;
        float l = 0.0f;
        if (targets[i] != ignore_index) {
            const float mx = kmax_row(x, V);
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < V; j++) sum += kexp(x[j] - mx);
            l = logf(sum) + mx - x[targets[i]]; // -log softmax[target] = lse - logit[target]
        }
        if (losses) losses[i] = l;
        total += l;
    }
    *loss = n ? (float)(total / n) : 0.0f;
    if (n_valid) *n_valid = n;
    return TPAR_OK;
}

tpar_status prev_xent_forward_backward(float *loss, float *dlogits, const float *logits, const int *targets,
                                       int N, int V, int Vp, int ignore_index, float dloss, tpar_err_t *err) {
    int n = 0;
    tpar_status st = xent_check(targets, N, V, Vp, ignore_index, &n, "fused cross-entropy", err);
    if (st != TPAR_OK) return st;
    const float scale = n ? dloss / (float)n : 0.0f;
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp;
        float *dx = dlogits + (size_t)i * Vp; /* may be x: every x[j] is read before dx[j] is written */
        const int t = targets[i];
        if (t == ignore_index) {
#pragma omp simd
            for (int j = 0; j < Vp; j++) dx[j] = 0.0f;
            continue;
        }
        const float mx = kmax_row(x, V);
        const float xt = x[t];
        const float sum = kexp_row(dx, x, V, mx);
        total += logf(sum) + mx - xt;
        kscale_row(dx, V, scale / sum);
        dx[t] -= scale;
        for (int j = V; j < Vp; j++) dx[j] = 0.0f; // padding columns are not classes
    }
    *loss = n ? (float)(total / n) : 0.0f;
    return TPAR_OK;
}

/* ==== adamw.c ==== */
/* AdamW (Loshchilov & Hutter): Adam moments with bias correction, weight decay decoupled
 * from the gradient. */
#include <math.h>


tpar_status prev_adamw_update(float *params, const float *grads, float *m, float *v, size_t n,
                              const tpar_adamw_t *cfg, long t, tpar_err_t *err) {
    if (!cfg) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "adamw: no settings given");
    /* written as !(ok) so that NaN settings are rejected too */
    if (!(cfg->lr >= 0.0f && isfinite(cfg->lr)) || !(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f) ||
        !(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f) || !(cfg->eps > 0.0f && isfinite(cfg->eps)) ||
        !(cfg->weight_decay >= 0.0f && isfinite(cfg->weight_decay)))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "adamw: settings out of range (lr %g >= 0, beta1 %g and beta2 %g in [0, 1), eps %g > 0, "
                            "weight_decay %g >= 0)",
                            (double)cfg->lr, (double)cfg->beta1, (double)cfg->beta2, (double)cfg->eps,
                            (double)cfg->weight_decay);
    if (t < 1) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "adamw: step %ld; steps count from 1", t);
    const float b1 = cfg->beta1, b2 = cfg->beta2, lr = cfg->lr, eps = cfg->eps, wd = cfg->weight_decay;
    /* bias corrections in double: b^t for large t underflows gracefully to 0 */
    const float c1 = (float)(1.0 / (1.0 - pow(b1, (double)t)));
    const float c2 = (float)(1.0 / (1.0 - pow(b2, (double)t)));
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float g = grads[i];
        const float mi = b1 * m[i] + (1.0f - b1) * g;
        const float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] -= lr * (mi * c1 / (sqrtf(vi * c2) + eps) + wd * params[i]);
    }
    return TPAR_OK;
}
