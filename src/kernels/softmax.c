/* Row-wise softmax and its backward. */
#include "kmath.h"
#include "tpar/kernels.h"

void tpar_softmax_forward(float *out, const float *inp, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
        float mx = x[0];
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < C; j++) mx = x[j] > mx ? x[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < C; j++) {
            float e = kexp(x[j] - mx);
            o[j] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] *= inv;
    }
}

void tpar_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C) {
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
