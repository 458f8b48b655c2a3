/* bf16 GEMM and the bf16 linear layer over the GEMM seam (include/tpar/kernels.h, bfloat16).
 *
 * C (fp32) = alpha op(A) op(B) + beta C with A, B in bf16: oneDNN's bf16 matmul (fp32
 * accumulation; brg kernels on AVX512-BF16 and AMX CPUs) through the same per-shape primitive
 * cache as the fp32 provider. Where the CPU has no bf16 dot products (oneDNN ISA below
 * avx512_core_bf16, where oneDNN would emulate them) or oneDNN refuses the call, A and B are
 * widened to fp32 (exact) in the context's scratch and tpar_gemm's provider runs them: the same
 * products, summed in fp32. Widening is exact, so either path computes the products of the bf16
 * values exactly (bf16 x bf16 fits in fp32's 24 bits) and differs only in the summation order.
 * docs/KERNELS.md, Precision, has the rates behind the choice. */
#include <string.h>

#include "gemm_internal.h"

static void gemm_bf16_path(tpar_gemm_ctx_t *g, int native, int ta, int tb, int M, int N, int K, float alpha,
                           const tpar_bf16_t *A, int lda, const tpar_bf16_t *B, int ldb, float beta, float *C, int ldc);

/* Caller holds g->mu. Decides the path once per context. With AMX (oneDNN ISA avx512_core_amx)
 * always oneDNN's bf16 matmul: its tiles do 16x the multiply-adds of an AVX-512 FMA per
 * instruction, and it measured 2.5-11x the fp32 matmul at every GPT-2 shape here; a ~10 ms probe on
 * a loaded machine could say otherwise by accident (seen once with 2 threads on the shared VM), so
 * the probe's rates are only reported there. With AVX512-BF16 but no AMX (avx512_core_bf16),
 * where bf16 dot products run at the FMA rate and oneDNN's bf16 kernels measured ~0.5x its fp32
 * ones (issue #17), the probe decides: oneDNN's bf16 unless widening is >= 15% faster (a GPT-2
 * small forward, 256 tokens x 768 -> 1024, best of 3). Below that ISA: widen. */
static int native_locked(tpar_gemm_ctx_t *g) {
    if (g->bf16_decided) return g->bf16_native;
    g->bf16_decided = 1;
    g->bf16_native = 0;
    if (!g->dnnl || gemm_dnnl_isa_rank() < 4) return 0;
    int amx = !strcmp(gemm_dnnl_isa(), "avx512_core_amx");
    enum { M = 256, N = 1024, K = 768 };
    tpar_bf16_t *a = tpar_calloc_aligned((size_t)M * K, 2), *b = tpar_calloc_aligned((size_t)N * K, 2);
    float *c = tpar_calloc_aligned((size_t)M * N, 4);
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = tpar_bf16_from_float((float)((i * 7) % 13) * 0.01f);
        for (size_t i = 0; i < (size_t)N * K; i++) b[i] = tpar_bf16_from_float((float)((i * 5) % 11) * 0.01f);
        for (int p = 0; p < 2; p++) {
            double best = 1e30;
            for (int r = 0; r <= 3; r++) { // r = 0 warms up (makes the primitive, pages the scratch in)
                double t0 = tpar_now();
                gemm_bf16_path(g, p, 0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
                double dt = tpar_now() - t0;
                if (r && dt < best) best = dt;
            }
            g->bf16_gflops[p] = 2.0 * M * N * K / best / 1e9;
        }
        g->bf16_native = amx || g->bf16_gflops[0] <= 1.15 * g->bf16_gflops[1];
    } else {
        g->bf16_native = 1; // no memory to measure: the CPU's features decide
    }
    tpar_free(a), tpar_free(b), tpar_free(c);
    return g->bf16_native;
}

int tpar_gemm_bf16_native(tpar_gemm_ctx_t *g) {
    if (!g) g = tpar_gemm_default();
    if (!g) return 0;
    pthread_mutex_lock(&g->mu);
    int n = native_locked(g);
    pthread_mutex_unlock(&g->mu);
    return n;
}

void tpar_gemm_bf16_rates(tpar_gemm_ctx_t *g, double *widen_gflops, double *native_gflops) {
    if (!g) g = tpar_gemm_default();
    *widen_gflops = *native_gflops = 0;
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    native_locked(g);
    *widen_gflops = g->bf16_gflops[0], *native_gflops = g->bf16_gflops[1];
    pthread_mutex_unlock(&g->mu);
}

/* Last resort when no scratch can be had: plain loops, fp32 accumulation in k order. */
static void naive(int ta, int tb, int M, int N, int K, float alpha, const tpar_bf16_t *A, int lda,
                  const tpar_bf16_t *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = tpar_bf16_to_float(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                float b = tpar_bf16_to_float(tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                s += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}

/* dst (rows, cols) dense <- src (rows, cols) with row stride ld, widened. */
static void widen(float *dst, const tpar_bf16_t *src, int rows, int cols, int ld) {
    if (ld == cols) {
        tpar_bf16_to_fp32(dst, src, (size_t)rows * cols);
        return;
    }
    for (int r = 0; r < rows; r++) tpar_bf16_to_fp32(dst + (size_t)r * cols, src + (size_t)r * ld, (size_t)cols);
}

/* Caller holds g->mu (g not NULL). One path: native (oneDNN bf16) or, also when oneDNN refuses,
 * widen + the fp32 GEMM of the seam. */
static void gemm_bf16_path(tpar_gemm_ctx_t *g, int native, int ta, int tb, int M, int N, int K, float alpha,
                           const tpar_bf16_t *A, int lda, const tpar_bf16_t *B, int ldb, float beta, float *C,
                           int ldc) {
    if (native && gemm_dnnl_run_bf16(g->dnnl, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0) return;
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N; // as stored
    size_t na = (size_t)ar * ac, nb = (size_t)br * bc;
    size_t na_pad = (na + 15) / 16 * 16; // B's copy 64-byte aligned too
    float *s = gemm_scratch_locked(g, 1, (na_pad + nb) * sizeof(float));
    if (!s) {
        naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    float *a = s, *b = s + na_pad;
    widen(a, A, ar, ac, lda);
    widen(b, B, br, bc, ldb);
    gemm_run_locked(g, ta, tb, M, N, K, alpha, a, ac, b, bc, beta, C, ldc);
}

/* Caller holds g->mu (g not NULL). */
static void gemm_bf16_locked(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, float alpha,
                             const tpar_bf16_t *A, int lda, const tpar_bf16_t *B, int ldb, float beta, float *C,
                             int ldc) {
    gemm_bf16_path(g, native_locked(g), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void tpar_gemm_bf16(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, float alpha, const tpar_bf16_t *A,
                    int lda, const tpar_bf16_t *B, int ldb, float beta, float *C, int ldc) {
    if (!g) g = tpar_gemm_default();
    if (!g) {
        naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    pthread_mutex_lock(&g->mu);
    gemm_bf16_locked(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    pthread_mutex_unlock(&g->mu);
}

void tpar_gemm_bf16_impl(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, char *out, size_t n) {
    if (!g) g = tpar_gemm_default();
    if (n) out[0] = 0;
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    gemm_dnnl_impl(g->dnnl, 1, ta, tb, M, N, K, ta ? M : K, tb ? K : N, N, 1.0f, 1.0f, out, n);
    if (n && !out[0]) gemm_dnnl_impl(g->dnnl, 1, ta, tb, M, N, K, ta ? M : K, tb ? K : N, N, 1.0f, 0.0f, out, n);
    pthread_mutex_unlock(&g->mu);
}

/* out = bias (broadcast) or nothing; returns the beta for the GEMM that follows. */
static float seed_bias(float *out, const float *bias, int N, int OC) {
    if (!bias) return 0.0f;
    for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, bias, (size_t)OC * sizeof(float));
    return 1.0f;
}

/* Caller holds g->mu. out (N, OC) = inp (N, C) @ weight^T (C, OC) + bias. */
static void linear_locked(tpar_gemm_ctx_t *g, float *out, const tpar_bf16_t *inp, const tpar_bf16_t *weight,
                          const float *bias, int N, int C, int OC) {
    float beta = seed_bias(out, bias, N, OC);
    gemm_bf16_locked(g, 0, 1, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

void tpar_matmul_forward_bf16(tpar_gemm_ctx_t *g, float *out, const tpar_bf16_t *inp, const tpar_bf16_t *weight,
                              const float *bias, int N, int C, int OC) {
    if (!g) g = tpar_gemm_default();
    if (!g) {
        float beta = seed_bias(out, bias, N, OC);
        naive(0, 1, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
        return;
    }
    pthread_mutex_lock(&g->mu);
    linear_locked(g, out, inp, weight, bias, N, C, OC);
    pthread_mutex_unlock(&g->mu);
}

void tpar_matmul_forward_bf16w(tpar_gemm_ctx_t *g, float *out, const float *inp, const tpar_bf16_t *weight,
                               const float *bias, int N, int C, int OC) {
    if (N <= 8) { // decode: stream the bf16 weights, activations stay fp32
        tpar_gemv_forward_bf16(out, inp, weight, bias, N, C, OC);
        return;
    }
    if (!g) g = tpar_gemm_default();
    tpar_bf16_t *x = NULL;
    if (g) {
        pthread_mutex_lock(&g->mu);
        x = gemm_scratch_locked(g, 0, (size_t)N * C * sizeof *x);
        if (x) {
            tpar_fp32_to_bf16(x, inp, (size_t)N * C); // (N, C) the activations rounded to bf16
            linear_locked(g, out, x, weight, bias, N, C, OC);
        }
        pthread_mutex_unlock(&g->mu);
    }
    if (!x) tpar_gemv_forward_bf16(out, inp, weight, bias, N, C, OC); // no memory: correct, slower
}

void tpar_matmul_backward_bf16(tpar_gemm_ctx_t *g, float *dinp, float *dweight, float *dbias, const float *dout,
                               const tpar_bf16_t *inp, const tpar_bf16_t *weight, int N, int C, int OC) {
    if (dbias) // fp32, from the fp32 gradient
        for (int i = 0; i < N; i++) {
            const float *d = dout + (size_t)i * OC;
#pragma omp simd
            for (int j = 0; j < OC; j++) dbias[j] += d[j];
        }
    if (!dinp && !dweight) return;
    if (!g) g = tpar_gemm_default();
    tpar_bf16_t *d16 = NULL;
    if (g) {
        pthread_mutex_lock(&g->mu);
        d16 = gemm_scratch_locked(g, 0, (size_t)N * OC * sizeof *d16);
        if (d16) {
            tpar_fp32_to_bf16(d16, dout, (size_t)N * OC); // (N, OC)
            if (dinp) // dinp (N, C) += dout (N, OC) @ weight (OC, C)
                gemm_bf16_locked(g, 0, 0, N, C, OC, 1.0f, d16, OC, weight, C, 1.0f, dinp, C);
            if (dweight) // dweight (OC, C) += dout^T (OC, N) @ inp (N, C)
                gemm_bf16_locked(g, 1, 0, OC, C, N, 1.0f, d16, OC, inp, C, 1.0f, dweight, C);
        }
        pthread_mutex_unlock(&g->mu);
    }
    if (!d16) { // no memory for the rounded gradient: plain loops on the rounded values
        for (int i = 0; i < N && dinp; i++)
            for (int c = 0; c < C; c++) {
                float s = 0.0f;
                for (int o = 0; o < OC; o++)
                    s += tpar_bf16_to_float(tpar_bf16_from_float(dout[(size_t)i * OC + o])) *
                         tpar_bf16_to_float(weight[(size_t)o * C + c]);
                dinp[(size_t)i * C + c] += s;
            }
        for (int o = 0; o < OC && dweight; o++)
            for (int c = 0; c < C; c++) {
                float s = 0.0f;
                for (int i = 0; i < N; i++)
                    s += tpar_bf16_to_float(tpar_bf16_from_float(dout[(size_t)i * OC + o])) *
                         tpar_bf16_to_float(inp[(size_t)i * C + c]);
                dweight[(size_t)o * C + c] += s;
            }
    }
}
