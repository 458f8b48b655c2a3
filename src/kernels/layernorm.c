/* LayerNorm over the last dimension, saving mean and 1/std for backward (llm.c's form).
 * Threads: rows are independent (one thread per row); dweight and dbias, sums over rows,
 * are split by column ranges instead, each adding every row in order (kmath.h's rule). */
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

void tpar_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *mean, const float *rstd, int N, int C) {
    const int np = (size_t)N * C >= KPAR_MIN ? kthreads() : 1;
#pragma omp parallel num_threads(np) if (np > 1)
    {
        /* dinp: rows shared among threads (each needs two reductions over its own row);
         * on one thread dweight and dbias join the same pass, in the same order per column
         * as the column split below, so the bits do not change */
        const int fuse = np == 1;
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
            if (fuse && dbias) {
#pragma omp simd
                for (int j = 0; j < C; j++) dbias[j] += dy[j];
            }
            if (fuse && dweight) {
#pragma omp simd
                for (int j = 0; j < C; j++) dweight[j] += (x[j] - m) * s * dy[j];
            }
#pragma omp simd
            for (int j = 0; j < C; j++) {
                float xhat = (x[j] - m) * s;
                dx[j] += (weight[j] * dy[j] - dnorm_mean - xhat * dnorm_norm_mean) * s;
            }
        }
        /* dweight, dbias on several threads: each owns a column range and adds all rows
         * in order (kcols); reads only inputs, so no barrier after the loop above */
        if (!fuse && (dweight || dbias)) {
#pragma omp for schedule(static)
            for (int part = 0; part < np; part++) {
                int j0, j1;
                kcols(part, np, C, &j0, &j1);
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
