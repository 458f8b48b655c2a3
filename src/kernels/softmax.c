/* Row-wise softmax and its backward; rows are shared among threads (one thread per row). */
#include "kmath.h"
#include "tpar/kernels.h"

void tpar_softmax_forward(float *out, const float *inp, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= KPAR_MIN && kthreads() > 1)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
        const float mx = kmax_row(x, C);
        kscale_row(o, C, 1.0f / kexp_row(o, x, C, mx));
    }
}

void tpar_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= KPAR_MIN && kthreads() > 1)
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
