/* Token + position embedding lookup, with an optional local vocabulary range so a
 * vocab-parallel embedding can use it as is. Threads: forward by token rows; backward,
 * where tokens that repeat add into the same row of dwte, by column ranges, each adding
 * every token in order (kmath.h's rule). */
#include <string.h>

#include "kmath.h"
#include "tpar/kernels.h"

tpar_status tpar_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B,
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
    const long long BT = (long long)B * T;
#pragma omp parallel for schedule(static) if ((size_t)BT * C >= KPAR_MIN && kthreads() > 1)
    for (long long bt = 0; bt < BT; bt++) {
        const int t = (int)(bt % T), tok = tokens[bt];
        float *o = out + (size_t)bt * C;
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
    return TPAR_OK;
}

void tpar_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T, int C,
                             int v0, int Vl) {
    const long long BT = (long long)B * T;
    /* each thread owns a column range and adds every token in order (kcols) */
    const int np = (size_t)BT * C >= KPAR_MIN ? kthreads() : 1;
#pragma omp parallel for schedule(static) num_threads(np) if (np > 1)
    for (int part = 0; part < np; part++) {
        int c0, c1;
        kcols(part, np, C, &c0, &c1);
        for (long long bt = 0; bt < BT; bt++) {
            const float *d = dout + (size_t)bt * C;
            const int t = (int)(bt % T), tok = tokens[bt];
            if (dwte && tok >= v0 && tok - v0 < Vl) {
                float *w = dwte + (size_t)(tok - v0) * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) w[c] += d[c];
            }
            if (dwpe) {
                float *p = dwpe + (size_t)t * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) p[c] += d[c];
            }
        }
    }
}
