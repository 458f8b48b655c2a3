/* The linear layer over the GEMM seam, the transpose, and the shared size check. */
#include <limits.h>
#include <stdarg.h>

#include "tpar/kernels.h"

tpar_status tpar_check_dims(tpar_err_t *err, const char *what, int ndims, ...) {
    va_list ap;
    va_start(ap, ndims);
    size_t bytes = sizeof(float);
    tpar_status st = TPAR_OK;
    for (int i = 0; i < ndims; i++) {
        int d = va_arg(ap, int);
        if (d < 1) {
            st = tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: size #%d is %d; every size must be >= 1",
                              what ? what : "kernel", i + 1, d);
            break;
        }
        if (tpar_mul_size(bytes, (size_t)d, &bytes) != 0) {
            st = tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                              "%s: sizes overflow size_t at size #%d (%d); the tensor cannot exist",
                              what ? what : "kernel", i + 1, d);
            break;
        }
    }
    va_end(ap);
    return st;
}

/* The linear layer's three GEMMs, through the seam (gemm_select.c) in the default context. */
void tpar_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                         int OC) {
    tpar_gemm_linear(NULL, out, inp, weight, bias, N, C, OC);
}

void tpar_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                          const float *weight, int N, int C, int OC) {
    // dinp (N, C) += dout (N, OC) @ weight (OC, C). A long sum (OC > 2 * DINP_KBLOCK: the LM
    // head's vocabulary) runs in slices of DINP_KBLOCK terms, each accumulated into dinp:
    // oneDNN's matmul ran the whole 50304-term sum at ~2/3 of its rate, the slices at full
    // rate (docs/KERNELS.md). The slices are fixed by OC alone, so the bits do not depend on
    // the thread count.
    enum { DINP_KBLOCK = 4096 };
    if (dinp && OC > 2 * DINP_KBLOCK) {
        for (int k0 = 0; k0 < OC; k0 += DINP_KBLOCK) {
            const int kn = OC - k0 < DINP_KBLOCK ? OC - k0 : DINP_KBLOCK;
            tpar_gemm(NULL, 0, 0, N, C, kn, 1.0f, dout + k0, OC, weight + (size_t)k0 * C, C, 1.0f, dinp, C);
        }
    } else if (dinp) {
        tpar_gemm(NULL, 0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    }
    if (dweight) // dweight (OC, C) += dout^T (OC, N) @ inp (N, C)
        tpar_gemm(NULL, 1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) {
        for (int i = 0; i < N; i++) {
            const float *d = dout + (size_t)i * OC;
#pragma omp simd
            for (int j = 0; j < OC; j++) dbias[j] += d[j];
        }
    }
}

void tpar_transpose(float *out, const float *inp, int R, int C) {
    /* 32x32 tiles keep both the reads and the writes within a few cache lines. */
    enum { TILE = 32 };
    for (int r0 = 0; r0 < R; r0 += TILE) {
        int r1 = r0 + TILE < R ? r0 + TILE : R;
        for (int c0 = 0; c0 < C; c0 += TILE) {
            int c1 = c0 + TILE < C ? c0 + TILE : C;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++) out[(size_t)c * R + r] = inp[(size_t)r * C + c];
        }
    }
}
