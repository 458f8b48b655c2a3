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

/* Rows go in rounds of XR: the threads share a round's rows, each row's loss lands in its
 * slot, and the slots are added to the total in row order, as one thread would (kmath.h's
 * rule: the loss is bitwise the same for any thread count). */
enum { XR = 256 };

/* -log softmax(x)[t] over the V real classes: lse - x[t]. */
static inline float row_loss(const float *x, int V, int t) {
    const float mx = kmax_row(x, V);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; j++) sum += kexp(x[j] - mx);
    return logf(sum) + mx - x[t];
}

tpar_status tpar_xent_forward(float *loss, float *losses, int *n_valid, const float *logits, const int *targets,
                              int N, int V, int Vp, int ignore_index, tpar_err_t *err) {
    int n = 0;
    tpar_status st = xent_check(targets, N, V, Vp, ignore_index, &n, "cross-entropy", err);
    if (st != TPAR_OK) return st;
    double total = 0.0;
    float part[XR];
    for (int i0 = 0; i0 < N; i0 += XR) {
        const int nr = N - i0 < XR ? N - i0 : XR;
#pragma omp parallel for schedule(static) if ((size_t)nr * V >= KPAR_MIN && kthreads() > 1)
        for (int r = 0; r < nr; r++) {
            const int i = i0 + r;
            part[r] = targets[i] != ignore_index ? row_loss(logits + (size_t)i * Vp, V, targets[i]) : 0.0f;
        }
        for (int r = 0; r < nr; r++) {
            if (losses) losses[i0 + r] = part[r];
            total += part[r];
        }
    }
    *loss = n ? (float)(total / n) : 0.0f;
    if (n_valid) *n_valid = n;
    return TPAR_OK;
}

/* One row of the fused kernel: writes dx (may be x) and returns the row's loss. */
static inline float row_xent_backward(float *dx, const float *x, int V, int Vp, int t, float scale) {
    const float mx = kmax_row(x, V);
    const float xt = x[t];
    const float sum = kexp_row(dx, x, V, mx); /* every x[j] is read before dx[j] is written */
    kscale_row(dx, V, scale / sum);
    dx[t] -= scale;
    for (int j = V; j < Vp; j++) dx[j] = 0.0f; // padding columns are not classes
    return logf(sum) + mx - xt;
}

tpar_status tpar_xent_forward_backward(float *loss, float *dlogits, const float *logits, const int *targets,
                                       int N, int V, int Vp, int ignore_index, float dloss, tpar_err_t *err) {
    int n = 0;
    tpar_status st = xent_check(targets, N, V, Vp, ignore_index, &n, "fused cross-entropy", err);
    if (st != TPAR_OK) return st;
    const float scale = n ? dloss / (float)n : 0.0f;
    double total = 0.0;
    float part[XR];
    for (int i0 = 0; i0 < N; i0 += XR) {
        const int nr = N - i0 < XR ? N - i0 : XR;
#pragma omp parallel for schedule(static) if ((size_t)nr * Vp >= KPAR_MIN && kthreads() > 1)
        for (int r = 0; r < nr; r++) {
            const int i = i0 + r, t = targets[i];
            float *dx = dlogits + (size_t)i * Vp;
            if (t == ignore_index) {
#pragma omp simd
                for (int j = 0; j < Vp; j++) dx[j] = 0.0f;
                part[r] = 0.0f;
            } else {
                part[r] = row_xent_backward(dx, logits + (size_t)i * Vp, V, Vp, t, scale);
            }
        }
        for (int r = 0; r < nr; r++) total += part[r]; /* ignored rows add 0: the sum is unchanged */
    }
    *loss = n ? (float)(total / n) : 0.0f;
    return TPAR_OK;
}

/* ---- vocab-parallel pieces ------------------------------------------------------------------ */

void tpar_softmax_stats(float *mx, float *sumexp, const float *x, int N, int n, int ld) {
    if (n < 1) {
        for (int i = 0; i < N; i++) mx[i] = -INFINITY, sumexp[i] = 0.0f;
        return;
    }
    /* One row per iteration, whole: the bits do not depend on the thread count. The second
     * pass over a row (200 KB at GPT-2's vocabulary) reads it from L2. */
#pragma omp parallel for schedule(static) if ((size_t)N * n >= KPAR_MIN && kthreads() > 1)
    for (int i = 0; i < N; i++) {
        const float *r = x + (size_t)i * ld;
        const float m = kmax_row(r, n);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; j++) sum += kexp(r[j] - m);
        mx[i] = m;
        sumexp[i] = sum;
    }
}

void tpar_xent_dlogits(float *dlogits, const float *x, const float *lse, const int *targets, int N, int n, int ld,
                       int t0, int ignore_index, float scale) {
#pragma omp parallel for schedule(static) if ((size_t)N * ld >= KPAR_MIN && kthreads() > 1)
    for (int i = 0; i < N; i++) {
        const float *r = x + (size_t)i * ld;
        float *d = dlogits + (size_t)i * ld;
        const int t = targets[i];
        if (t == ignore_index) {
#pragma omp simd
            for (int j = 0; j < ld; j++) d[j] = 0.0f;
            continue;
        }
        const float l = lse[i];
#pragma omp simd
        for (int j = 0; j < n; j++) d[j] = scale * kexp(r[j] - l);
        for (int j = n; j < ld; j++) d[j] = 0.0f; // padding: never any gradient
        if (t - t0 >= 0 && t - t0 < n) d[t - t0] -= scale;
    }
}
