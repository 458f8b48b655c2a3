/* LayerNorm over the last dimension, saving mean and 1/std for backward (llm.c's form).
 * Threads: rows are independent (one thread per row); dweight and dbias, sums over rows,
 * are split by column blocks instead, each adding every row in order (kmath.h's rule). */
#include <math.h>

#include "kmath.h"
#include "tpar/kernels.h"

void tpar_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int N, int C) {
    const float eps = 1e-5f;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= KPAR_MIN && kthreads() > 1)
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

enum { KCOL = 64 }; /* columns per block of the dweight/dbias sums: whole cache lines */

void tpar_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *mean, const float *rstd, int N, int C) {
    const int ncb = (C + KCOL - 1) / KCOL;
#pragma omp parallel if ((size_t)N * C >= KPAR_MIN && kthreads() > 1)
    {
        /* dinp: row by row (each needs two reductions over its own row) */
#pragma omp for schedule(static) nowait
        for (int i = 0; i < N; i++) {
            const float *dy = dout + (size_t)i * C;
            const float *x = inp + (size_t)i * C;
            float *dx = dinp + (size_t)i * C;
            const float m = mean[i], s = rstd[i];
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
#pragma omp simd
            for (int j = 0; j < C; j++) {
                float xhat = (x[j] - m) * s;
                dx[j] += (weight[j] * dy[j] - dnorm_mean - xhat * dnorm_norm_mean) * s;
            }
        }
        /* dweight, dbias: by column blocks, all rows in order (reads only inputs, so no
         * barrier after the loop above) */
        if (dweight || dbias) {
#pragma omp for schedule(static)
            for (int cb = 0; cb < ncb; cb++) {
                const int j0 = cb * KCOL, j1 = C - j0 < KCOL ? C : j0 + KCOL;
                for (int i = 0; i < N; i++) {
                    const float *dy = dout + (size_t)i * C;
                    const float *x = inp + (size_t)i * C;
                    const float m = mean[i], s = rstd[i];
                    if (dbias) {
#pragma omp simd
                        for (int j = j0; j < j1; j++) dbias[j] += dy[j];
                    }
                    if (dweight) {
#pragma omp simd
                        for (int j = j0; j < j1; j++) dweight[j] += (x[j] - m) * s * dy[j];
                    }
                }
            }
        }
    }
}
