/* Cross-entropy with an ignore index, alone (loss only) and fused with the softmax
 * backward (logits -> loss and dlogits in one sweep per row, possibly in place). */
#include <math.h>

#include "kmath.h"
#include "tpar/kernels.h"

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

tpar_status tpar_xent_forward(float *loss, float *losses, int *n_valid, const float *logits, const int *targets,
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

tpar_status tpar_xent_forward_backward(float *loss, float *dlogits, const float *logits, const int *targets,
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
