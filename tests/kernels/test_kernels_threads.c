/* The kernels on several OpenMP threads: results bitwise identical for 1, 2 and 3 threads
 * and from run to run (the determinism rule of docs/KERNELS.md, which bit-identical
 * training across layouts relies on), and still equal to the plain references.
 *
 * Shapes are large enough that every kernel takes its threaded path (more than kmath.h's
 * KPAR_MIN floats, attention above its FLOP threshold, several elementwise blocks,
 * cross-entropy over two rounds of rows) and odd enough to leave tails everywhere (widths
 * not multiples of 16 or 64, a partial last query block). Each run starts from the same
 * inputs and the same non-zero gradients (the kernels accumulate), so one run's outputs
 * can be compared byte for byte with another's.
 *
 * Tolerance against the references: 1e-5 relative to each value plus 1e-5 x rms, as in
 * test_kernels.c (float32 rounding of sums of at most a few hundred terms; the references
 * accumulate in double); 1e-6 for the loss, exact-ish copies 1e-7. */
#include "kernels/kernels_ref.h"
#include "ktest.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* A kernel under test: fn(ctx, res) runs it from fixed inputs and writes every output,
 * concatenated, into res (nres floats). */
typedef void (*run_fn)(void *ctx, float *res);

static const int thread_counts[] = {1, 2, 3, 1}; /* the last: run to run at one thread */

/* Runs fn at each thread count; every result must equal the first, byte for byte.
 * Leaves the 3-thread result in out (for the reference comparison). */
static void check_threads(const char *name, run_fn fn, void *ctx, size_t nres, float *out) {
    float *first = kt_zeros(nres), *res = kt_zeros(nres);
    for (size_t k = 0; k < sizeof thread_counts / sizeof *thread_counts; k++) {
#ifdef _OPENMP
        omp_set_num_threads(thread_counts[k]);
#endif
        fn(ctx, k ? res : first);
        if (k == 2) memcpy(out, res, nres * sizeof(float));
        if (k) {
            if (!memcmp(first, res, nres * sizeof(float))) {
                CHECK(1);
            } else {
                fprintf(stderr, "%s: %d threads differ from 1 thread\n", name, thread_counts[k]);
                CHECK_BYTES_EQ("threads", first, res, nres * sizeof(float));
            }
        }
    }
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
}

/* ---- layernorm ------------------------------------------------------------------------------ */

typedef struct {
    int N, C;
    float *x, *w, *b, *dy, *g0; /* g0: starting values of dx, dw, db */
} ln_t;

static void run_layernorm(void *p, float *res) {
    ln_t *c = p;
    const size_t nc = (size_t)c->N * c->C;
    float *out = res, *mean = out + nc, *rstd = mean + c->N, *dx = rstd + c->N, *dw = dx + nc, *db = dw + c->C;
    memcpy(dx, c->g0, (nc + 2 * (size_t)c->C) * sizeof(float));
    tpar_layernorm_forward(out, mean, rstd, c->x, c->w, c->b, c->N, c->C);
    tpar_layernorm_backward(dx, dw, db, c->dy, c->x, c->w, mean, rstd, c->N, c->C);
}

static void test_layernorm(void) {
    ln_t c = {67, 777, NULL, NULL, NULL, NULL, NULL}; /* 777 = 12 x 64 + 9: a column tail */
    const size_t nc = (size_t)c.N * c.C, nres = 2 * nc + 2 * (size_t)c.N + 2 * (size_t)c.C;
    c.x = kt_rand(nc, -2, 2), c.w = kt_rand(c.C, 0.5f, 1.5f), c.b = kt_rand(c.C, -1, 1);
    c.dy = kt_rand(nc, -1, 1), c.g0 = kt_rand(nc + 2 * (size_t)c.C, -1, 1);
    float *got = kt_zeros(nres);
    check_threads("layernorm", run_layernorm, &c, nres, got);
    float *ref = kt_zeros(nres);
    float *out = ref, *mean = out + nc, *rstd = mean + c.N, *dx = rstd + c.N, *dw = dx + nc, *db = dw + c.C;
    memcpy(dx, c.g0, (nc + 2 * (size_t)c.C) * sizeof(float));
    tpar_ref_layernorm_forward(out, mean, rstd, c.x, c.w, c.b, c.N, c.C);
    tpar_ref_layernorm_backward(dx, dw, db, c.dy, c.x, c.w, c.N, c.C);
    KT_CLOSE("layernorm out (3 threads)", out, got, nc, 1e-5);
    KT_CLOSE("layernorm dinp (3 threads)", dx, got + (dx - ref), nc, 1e-5);
    /* dweight/dbias: sums of 67 rows */
    KT_CLOSE("layernorm dweight (3 threads)", dw, got + (dw - ref), c.C, 1e-5);
    KT_CLOSE("layernorm dbias (3 threads)", db, got + (db - ref), c.C, 1e-5);
}

/* ---- elementwise ------------------------------------------------------------------------- */

typedef struct {
    size_t n;
    int N, C;
    float *x, *y, *bias, *dy, *g0;
} ew_t;

static void run_elementwise(void *p, float *res) {
    ew_t *c = p;
    const size_t n = c->n;
    float *r = res;
    tpar_gelu_forward(r, c->x, n), r += n;
    memcpy(r, c->g0, n * sizeof(float)), tpar_gelu_backward(r, c->x, c->dy, n), r += n;
    tpar_residual_forward(r, c->x, c->y, n), r += n;
    memcpy(r, c->g0, 2 * n * sizeof(float)), tpar_residual_backward(r, r + n, c->dy, n), r += 2 * n;
    tpar_dropout_forward(r, c->x, n, 0.3f, 11, 5), r += n;
    memcpy(r, c->g0, n * sizeof(float)), tpar_dropout_backward(r, c->dy, n, 0.3f, 11, 5), r += n;
}

/* The row kernels with a bias: (N, C) views of the same data. */
static void run_bias_rows(void *p, float *res) {
    ew_t *c = p;
    const int N = c->N, C = c->C;
    const size_t n = (size_t)N * C;
    float *r = res;
    tpar_bias_gelu_forward(r, c->x, c->bias, N, C), r += n;
    /* with dbias (column blocks), then without (rows) */
    memcpy(r, c->g0, (n + C) * sizeof(float));
    tpar_bias_gelu_backward(r, r + n, c->x, c->bias, c->dy, N, C), r += n + C;
    memcpy(r, c->g0, n * sizeof(float)), tpar_bias_gelu_backward(r, NULL, c->x, c->bias, c->dy, N, C), r += n;
    tpar_bias_dropout_residual_forward(r, c->x, c->bias, c->y, N, C, 0.2f, 3, 7), r += n;
    memcpy(r, c->g0, (2 * n + C) * sizeof(float));
    tpar_bias_dropout_residual_backward(r, r + 2 * n, r + n, c->dy, N, C, 0.2f, 3, 7), r += 2 * n + C;
    memcpy(r, c->g0, (n + C) * sizeof(float));
    tpar_bias_dropout_residual_backward(NULL, r + n, r, c->dy, N, C, 0.2f, 3, 7), r += n + C;
    memcpy(r, c->g0, 2 * n * sizeof(float));
    tpar_bias_dropout_residual_backward(r, NULL, r + n, c->dy, N, C, 0.2f, 3, 7), r += 2 * n;
}

static void test_elementwise(void) {
    ew_t c = {50001, 0, 0, NULL, NULL, NULL, NULL, NULL}; /* 12 blocks of 4096 and a tail */
    const size_t n = c.n, m = 3 * n;
    c.x = kt_rand(m, -4, 4), c.y = kt_rand(m, -1, 1), c.dy = kt_rand(m, -1, 1), c.g0 = kt_rand(m, -1, 1);
    float *got = kt_zeros(7 * n);
    check_threads("gelu/residual/dropout", run_elementwise, &c, 7 * n, got);
    float *ref = kt_zeros(n);
    tpar_ref_gelu_forward(ref, c.x, n);
    KT_CLOSE("gelu out (3 threads)", ref, got, n, 1e-5);
    memcpy(ref, c.g0, n * sizeof(float));
    tpar_ref_gelu_backward(ref, c.x, c.dy, n);
    KT_CLOSE("gelu dinp (3 threads)", ref, got + n, n, 1e-5);
    tpar_ref_dropout_forward(ref, c.x, n, 0.3f, 11, 5);
    KT_CLOSE("dropout out (3 threads)", ref, got + 5 * n, n, 1e-6);

    c.N = 45, c.C = 1000; /* 1000 = 15 x 64 + 40 */
    const size_t nn = (size_t)c.N * c.C, nres = 9 * nn + 3 * (size_t)c.C;
    c.bias = kt_rand(c.C, -1, 1);
    float *got2 = kt_zeros(nres);
    check_threads("bias+gelu / bias+dropout+residual", run_bias_rows, &c, nres, got2);
    /* the references: bias added, then the plain kernels; dbias as the row sum of dinp's increment */
    float *xb = kt_zeros(nn), *r2 = kt_zeros(nn), *dx = kt_copy(c.g0, nn);
    for (size_t i = 0; i < nn; i++) xb[i] = c.x[i] + c.bias[i % c.C];
    tpar_ref_gelu_forward(r2, xb, nn);
    KT_CLOSE("bias+gelu out (3 threads)", r2, got2, nn, 1e-5);
    tpar_ref_gelu_backward(dx, xb, c.dy, nn);
    KT_CLOSE("bias+gelu dinp (3 threads)", dx, got2 + nn, nn, 1e-5);
    float *dbias = kt_copy(c.g0 + nn, c.C);
    for (size_t i = 0; i < nn; i++) dbias[i % c.C] += dx[i] - c.g0[i];
    /* the reference's dbias goes through dx - g0 (float): allow 1e-4 (values ~1, 45 rows) */
    KT_CLOSE("bias+gelu dbias (3 threads)", dbias, got2 + 2 * nn, c.C, 1e-4);
}

/* ---- softmax ------------------------------------------------------------------------------- */

typedef struct {
    int N, C;
    float *x, *dy, *g0;
} sm_t;

static void run_softmax(void *p, float *res) {
    sm_t *c = p;
    const size_t n = (size_t)c->N * c->C;
    tpar_softmax_forward(res, c->x, c->N, c->C);
    memcpy(res + n, c->g0, n * sizeof(float));
    tpar_softmax_backward(res + n, c->dy, res, c->N, c->C);
}

static void test_softmax(void) {
    sm_t c = {70, 601, NULL, NULL, NULL};
    const size_t n = (size_t)c.N * c.C;
    c.x = kt_rand(n, -5, 5), c.dy = kt_rand(n, -1, 1), c.g0 = kt_rand(n, -1, 1);
    float *got = kt_zeros(2 * n);
    check_threads("softmax", run_softmax, &c, 2 * n, got);
    float *ref = kt_zeros(2 * n);
    tpar_ref_softmax_forward(ref, c.x, c.N, c.C);
    memcpy(ref + n, c.g0, n * sizeof(float));
    tpar_ref_softmax_backward(ref + n, c.dy, ref, c.N, c.C);
    KT_CLOSE("softmax out (3 threads)", ref, got, n, 1e-5);
    KT_CLOSE("softmax dinp (3 threads)", ref + n, got + n, n, 1e-5);
}

/* ---- attention ----------------------------------------------------------------------------- */

typedef struct {
    int B, T, C, NH;
    float *qkv, *dy, *g0, *scratch;
} at_t;

static void run_attention(void *p, float *res) {
    at_t *c = p;
    const size_t n1 = (size_t)c->B * c->T * c->C, n3 = 3 * n1, nl = (size_t)c->B * c->NH * c->T;
    float *out = res, *lse = out + n1, *dqkv = lse + nl;
    memcpy(dqkv, c->g0, n3 * sizeof(float));
    /* scratch starts as NaNs (0xFF bytes): nothing the kernels leave unwritten (causally
     * masked lanes) may reach a result */
    memset(c->scratch, 0xFF, tpar_attention_scratch_floats(c->T) * sizeof(float));
    tpar_attention_forward(out, lse, c->qkv, c->scratch, c->B, c->T, c->C, c->NH);
    memset(c->scratch, 0xFF, tpar_attention_scratch_floats(c->T) * sizeof(float));
    tpar_attention_backward(dqkv, c->dy, c->qkv, out, lse, c->scratch, c->B, c->T, c->C, c->NH);
}

static void test_attention_shape(int B, int T, int C, int NH) {
    at_t c = {B, T, C, NH, NULL, NULL, NULL, NULL};
    const size_t n1 = (size_t)B * T * C, n3 = 3 * n1, nl = (size_t)B * NH * T, nres = n1 + nl + n3;
    c.qkv = kt_rand(n3, -1, 1), c.dy = kt_rand(n1, -1, 1), c.g0 = kt_rand(n3, -1, 1);
    c.scratch = kt_zeros(tpar_attention_scratch_floats(T));
    float *got = kt_zeros(nres);
    char name[96];
    snprintf(name, sizeof name, "attention B=%d T=%d C=%d NH=%d", B, T, C, NH);
    check_threads(name, run_attention, &c, nres, got);
    float *ref = kt_zeros(n1), *rdq = kt_copy(c.g0, n3);
    tpar_ref_attention_forward(ref, c.qkv, B, T, C, NH);
    tpar_ref_attention_backward(rdq, c.dy, c.qkv, B, T, C, NH);
    KT_CLOSE("attention out (3 threads)", ref, got, n1, 1e-5);
    KT_CLOSE("attention dqkv (3 threads)", rdq, got + n1 + nl, n3, 1e-5);
}

/* ---- embedding ----------------------------------------------------------------------------- */

typedef struct {
    int B, T, C, V;
    int *tok;
    float *wte, *wpe, *dy, *g0;
} em_t;

static void run_embedding(void *p, float *res) {
    em_t *c = p;
    const size_t n = (size_t)c->B * c->T * c->C, nw = (size_t)c->V * c->C, np = (size_t)c->T * c->C;
    tpar_err_t err = {0};
    CHECK_MUST(tpar_embedding_forward(res, c->tok, c->wte, c->wpe, c->B, c->T, c->C, c->V, 0, c->V, &err), err);
    memcpy(res + n, c->g0, (nw + np) * sizeof(float));
    tpar_embedding_backward(res + n, res + n + nw, c->dy, c->tok, c->B, c->T, c->C, 0, c->V);
}

static void test_embedding(void) {
    em_t c = {4, 33, 300, 20, NULL, NULL, NULL, NULL, NULL}; /* 132 tokens over 20 ids: many repeats */
    const size_t n = (size_t)c.B * c.T * c.C, nw = (size_t)c.V * c.C, np = (size_t)c.T * c.C;
    int tok[4 * 33];
    for (int i = 0; i < c.B * c.T; i++) tok[i] = (int)(kt_unif() * c.V);
    c.tok = tok;
    c.wte = kt_rand(nw, -1, 1), c.wpe = kt_rand(np, -1, 1), c.dy = kt_rand(n, -1, 1);
    c.g0 = kt_rand(nw + np, -1, 1);
    float *got = kt_zeros(n + nw + np);
    check_threads("embedding", run_embedding, &c, n + nw + np, got);
    float *ref = kt_zeros(n), *rg = kt_copy(c.g0, nw + np);
    tpar_ref_embedding_forward(ref, c.tok, c.wte, c.wpe, c.B, c.T, c.C, 0, c.V);
    tpar_ref_embedding_backward(rg, rg + nw, c.dy, c.tok, c.B, c.T, c.C, 0, c.V);
    KT_CLOSE("embedding out (3 threads)", ref, got, n, 1e-7);
    KT_CLOSE("embedding dwte, dwpe (3 threads)", rg, got + n, nw + np, 1e-5);
}

/* ---- cross-entropy ------------------------------------------------------------------------- */

typedef struct {
    int N, V, Vp;
    int *tgt;
    float *logits;
} xe_t;

static void run_xent(void *p, float *res) {
    xe_t *c = p;
    const size_t n = (size_t)c->N * c->Vp;
    tpar_err_t err = {0};
    int nv = 0;
    CHECK_MUST(tpar_xent_forward(res, res + 2, &nv, c->logits, c->tgt, c->N, c->V, c->Vp, -1, &err), err);
    CHECK_MUST(tpar_xent_forward_backward(res + 1, res + 2 + c->N, c->logits, c->tgt, c->N, c->V, c->Vp, -1, 0.7f,
                                          &err),
               err);
    (void)n;
}

static void test_xent(void) {
    xe_t c = {300, 500, 512, NULL, NULL}; /* 300 rows: two rounds of 256 */
    const size_t n = (size_t)c.N * c.Vp;
    int tgt[300];
    for (int i = 0; i < c.N; i++) tgt[i] = i % 17 == 3 ? -1 : (int)(kt_unif() * c.V);
    c.tgt = tgt, c.logits = kt_rand(n, -6, 6);
    const size_t nres = 2 + (size_t)c.N + n;
    float *got = kt_zeros(nres);
    check_threads("cross-entropy", run_xent, &c, nres, got);
    float rloss = 0, *rdl = kt_zeros(n);
    tpar_ref_xent(&rloss, rdl, c.logits, c.tgt, c.N, c.V, c.Vp, -1, 0.7f);
    CHECK_CLOSE(rloss, got[0], 1e-6, 0);
    CHECK_CLOSE(rloss, got[1], 1e-6, 0);
    KT_CLOSE("xent dlogits (3 threads)", rdl, got + 2 + c.N, n, 1e-5);
}

/* The vocab-parallel pieces: stats, then dlogits from the reference lse. */
static void run_xent_pieces(void *p, float *res) {
    xe_t *c = p;
    float *lse = res + 2 * (size_t)c->N; // scratch: overwritten by the same values each run
    tpar_softmax_stats(res, res + c->N, c->logits, c->N, c->V, c->Vp);
    for (int i = 0; i < c->N; i++) lse[i] = res[i] + logf(res[c->N + i]);
    tpar_xent_dlogits(res + 3 * (size_t)c->N, c->logits, lse, c->tgt, c->N, c->V, c->Vp, 0, -1, 0.01f);
}

static void test_xent_pieces(void) {
    xe_t c = {300, 500, 512, NULL, NULL};
    const size_t n = (size_t)c.N * c.Vp;
    int tgt[300];
    for (int i = 0; i < c.N; i++) tgt[i] = i % 17 == 3 ? -1 : (int)(kt_unif() * c.V);
    c.tgt = tgt, c.logits = kt_rand(n, -6, 6);
    const size_t nres = 3 * (size_t)c.N + n;
    float *got = kt_zeros(nres);
    check_threads("vocab cross-entropy pieces", run_xent_pieces, &c, nres, got);
    float *rmx = kt_zeros(c.N), *rse = kt_zeros(c.N), *rdl = kt_zeros(n);
    tpar_ref_softmax_stats(rmx, rse, c.logits, c.N, c.V, c.Vp);
    KT_CLOSE("softmax stats (3 threads)", rse, got + c.N, c.N, 1e-5);
    tpar_ref_xent_dlogits(rdl, c.logits, got + 2 * c.N, c.tgt, c.N, c.V, c.Vp, 0, -1, 0.01f);
    KT_CLOSE("xent dlogits (3 threads)", rdl, got + 3 * c.N, n, 1e-5);
}

/* ---- AdamW ------------------------------------------------------------------------------------ */

typedef struct {
    size_t n;
    float *p0, *g;
} aw_t;

static void run_adamw(void *p, float *res) {
    aw_t *c = p;
    const size_t n = c->n;
    memcpy(res, c->p0, 3 * n * sizeof(float)); /* params, m, v */
    const tpar_adamw_t cfg = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    tpar_err_t err = {0};
    CHECK_MUST(tpar_adamw_update(res, c->g, res + n, res + 2 * n, n, &cfg, 3, &err), err);
}

static void test_adamw(void) {
    aw_t c = {50001, NULL, NULL};
    c.p0 = kt_rand(3 * c.n, 0, 1), c.g = kt_rand(c.n, -1, 1);
    float *got = kt_zeros(3 * c.n);
    check_threads("adamw", run_adamw, &c, 3 * c.n, got);
    float *ref = kt_copy(c.p0, 3 * c.n);
    tpar_ref_adamw_update(ref, c.g, ref + c.n, ref + 2 * c.n, c.n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3);
    KT_CLOSE("adamw params, m, v (3 threads)", ref, got, 3 * c.n, 1e-5);
}

int main(void) {
#ifndef _OPENMP
    check_skip("built without OpenMP: the kernels run on one thread");
#endif
    kt_seed(1234);
    tpar_err_t err = {0};
    tpar_blas_set_threads(1, &err);
    test_layernorm();
    test_elementwise();
    test_softmax();
    test_attention_shape(2, 150, 96, 4);  /* hs 24: a 16-wide and an 8-wide channel tail */
    test_attention_shape(1, 200, 128, 2); /* hs 64 (GPT-2): the 64-wide path; T: 3 blocks + 8 */
    test_attention_shape(3, 130, 60, 5);  /* hs 12, 15 heads on 3 threads */
    test_embedding();
    test_xent();
    test_xent_pieces();
    test_adamw();
    kt_free_all();
    return check_finish("test_kernels_threads");
}
