/* bench_kernels: the kernels at GPT-2 small shapes (hidden 768, 12 heads, ffn 3072,
 * vocab 50304) on one rank with one OpenBLAS thread.
 *
 *   bench_kernels [--compare B,T] [--compare-only] [--tokens N[,N...]] [--reps R] [--wall]
 *   (default compare 8,256; tokens 256,1024,2048; reps 5; clock: this thread's CPU time)
 *
 * First, at B x T (GPT-2 124M's B 8, T 256 by default), every non-GEMM kernel in its
 * previous version (bench_kernels_prev.c, the code before issue #13's vectorisation and
 * threading) and its current one on 1 and on all OpenMP threads, side by side, with the
 * ratios (wall clock). --compare-only stops there. Then,
 * for each token count B*T (T = min(B*T, 1024)) it prints:
 *   1. a transformer block forward + backward as a sequence of kernels (layernorm, QKV
 *      GEMM, attention, output GEMM, bias+dropout+residual, layernorm, fc GEMM, bias+GELU,
 *      proj GEMM, bias+dropout+residual, and the backward of each, plus zeroing the
 *      gradients that the kernels accumulate into): the time of each step, and the share
 *      of the block time that is not GEMM;
 *   2. our matmul against a raw cblas_sgemm on the same shapes, side by side (GFLOP/s
 *      and the ratio), forward and both backward GEMMs;
 *   3. fused kernels against the same work done unfused, side by side;
 *   4. kernels outside the block: embedding, fused softmax + cross-entropy, AdamW.
 * Times are the minimum over the repetitions of this thread's CPU time (after the
 * comparison, the kernels run on one OpenMP thread, and OpenBLAS with one thread, all on
 * the calling thread): on a shared machine that
 * leaves out the time the process waits for a core, which wall-clock minima do not fully
 * do. --wall uses the monotonic wall clock instead. Side-by-side pairs alternate run by
 * run. Nothing here asserts on time. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <time.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_kernels_prev.h"
#include "tpar/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

enum { C = 768, NH = 12, FF = 3072, VOCAB = 50257, VP = 50304, TMAX = 1024 };

static int use_wall;
static double now(void) {
    if (use_wall) return tpar_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_rand(size_t n, uint64_t seed) {
    float *p = tpar_calloc_aligned(n, sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = ((float)(tpar_rng_u32(seed, i) >> 8) / 16777216.0f - 0.5f) * 0.2f;
    return p;
}

/* ---- new vs previous kernels --------------------------------------------------------------- */

/* Every non-GEMM kernel at the model's shapes, in three versions run alternately: the
 * previous implementation (bench_kernels_prev.c: the kernels before vectorisation and
 * threading, one thread), the current one on one thread, and the current one on the
 * rank's OpenMP threads. The one-thread columns use this bench's clock (thread CPU time:
 * robust on a shared machine; --wall for wall clock), the threaded one wall clock (the
 * only fair clock for threads, and the one a loaded machine hurts most). */
typedef struct {
    int B, T, N;
    int *tok;
    float *x, *out, *mean, *rstd, *lnw, *lnb, *dy, *dx, *dw, *db, *res, *dres;
    float *h, *hout, *dh, *dhin, *bfc, *dbfc;
    float *sm, *smo, *smd, *smdx;
    float *qkv, *att, *lse, *dqkv, *scratch;
    float *wte, *wpe, *dwte, *dwpe, *logits;
    float *pp, *gg, *mm, *vv;
    size_t np;
} cmp_t;

typedef struct {
    const char *name;
    const char *shape;
    double work; /* bytes moved, or FLOPs when flops is set */
    int flops;
} cmp_kernel_t;

enum { K_LN_F, K_LN_B, K_BG_F, K_BG_B, K_RES_F, K_BDR_F, K_BDR_B, K_SM_F, K_SM_B, K_AT_F, K_AT_B, K_EM_F, K_EM_B,
       K_XE, K_AW, K_COUNT };

static void cmp_run(cmp_t *c, int k, int prev) {
    const int B = c->B, T = c->T, N = c->N;
    const size_t nc = (size_t)N * C;
    const int rows = B * NH * T;
    tpar_err_t err = {0};
    tpar_status st = TPAR_OK;
    float l;
    const tpar_adamw_t cfg = {3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    switch (k) {
    case K_LN_F:
        (prev ? prev_layernorm_forward : tpar_layernorm_forward)(c->out, c->mean, c->rstd, c->x, c->lnw, c->lnb, N, C);
        break;
    case K_LN_B:
        (prev ? prev_layernorm_backward : tpar_layernorm_backward)(c->dx, c->dw, c->db, c->dy, c->x, c->lnw, c->mean,
                                                                   c->rstd, N, C);
        break;
    case K_BG_F: (prev ? prev_bias_gelu_forward : tpar_bias_gelu_forward)(c->hout, c->h, c->bfc, N, FF); break;
    case K_BG_B:
        (prev ? prev_bias_gelu_backward : tpar_bias_gelu_backward)(c->dhin, c->dbfc, c->h, c->bfc, c->dh, N, FF);
        break;
    case K_RES_F: (prev ? prev_residual_forward : tpar_residual_forward)(c->out, c->x, c->res, nc); break;
    case K_BDR_F:
        (prev ? prev_bias_dropout_residual_forward : tpar_bias_dropout_residual_forward)(c->out, c->x, c->lnb, c->res, N,
                                                                                         C, 0.1f, 7, 0);
        break;
    case K_BDR_B:
        (prev ? prev_bias_dropout_residual_backward : tpar_bias_dropout_residual_backward)(c->dx, c->db, c->dres, c->dy,
                                                                                           N, C, 0.1f, 7, 0);
        break;
    case K_SM_F: (prev ? prev_softmax_forward : tpar_softmax_forward)(c->smo, c->sm, rows, T); break;
    case K_SM_B: (prev ? prev_softmax_backward : tpar_softmax_backward)(c->smdx, c->smd, c->smo, rows, T); break;
    case K_AT_F:
        (prev ? prev_attention_forward : tpar_attention_forward)(c->att, c->lse, c->qkv, c->scratch, B, T, C, NH);
        break;
    case K_AT_B:
        (prev ? prev_attention_backward : tpar_attention_backward)(c->dqkv, c->dy, c->qkv, c->att, c->lse, c->scratch,
                                                                   B, T, C, NH);
        break;
    case K_EM_F:
        st = (prev ? prev_embedding_forward : tpar_embedding_forward)(c->out, c->tok, c->wte, c->wpe, B, T, C, VOCAB, 0,
                                                                       VOCAB, &err);
        break;
    case K_EM_B:
        (prev ? prev_embedding_backward : tpar_embedding_backward)(c->dwte, c->dwpe, c->dy, c->tok, B, T, C, 0, VOCAB);
        break;
    case K_XE: /* in place: later runs see the previous dlogits as logits, which costs the same */
        st = (prev ? prev_xent_forward_backward : tpar_xent_forward_backward)(&l, c->logits, c->logits, c->tok, N,
                                                                               VOCAB, VP, -1, 1.0f, &err);
        break;
    case K_AW:
        st = (prev ? prev_adamw_update : tpar_adamw_update)(c->pp, c->gg, c->mm, c->vv, c->np, &cfg, 1, &err);
        break;
    }
    if (st != TPAR_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        exit(1);
    }
}

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static void bench_compare(int B, int T, int reps) {
    cmp_t c = {0};
    c.B = B, c.T = T, c.N = B * T;
    const int N = c.N, rows = B * NH * T, hs = C / NH;
    const size_t nc = (size_t)N * C, nf = (size_t)N * FF, ns = (size_t)rows * T;
    c.tok = malloc((size_t)N * sizeof *c.tok);
    if (!c.tok) exit(1);
    for (int i = 0; i < N; i++) c.tok[i] = (int)(tpar_rng_u32(9, (uint64_t)i) % VOCAB);
    c.x = alloc_rand(nc, 30), c.out = alloc_rand(nc, 0), c.mean = alloc_rand(N, 0), c.rstd = alloc_rand(N, 0);
    c.lnw = alloc_rand(C, 31), c.lnb = alloc_rand(C, 32), c.dy = alloc_rand(nc, 33), c.dx = alloc_rand(nc, 0);
    c.dw = alloc_rand(C, 0), c.db = alloc_rand(C, 0), c.res = alloc_rand(nc, 34), c.dres = alloc_rand(nc, 0);
    c.h = alloc_rand(nf, 35), c.hout = alloc_rand(nf, 0), c.dh = alloc_rand(nf, 36), c.dhin = alloc_rand(nf, 0);
    c.bfc = alloc_rand(FF, 37), c.dbfc = alloc_rand(FF, 0);
    c.sm = alloc_rand(ns, 38), c.smo = alloc_rand(ns, 0), c.smd = alloc_rand(ns, 39), c.smdx = alloc_rand(ns, 0);
    c.qkv = alloc_rand(3 * nc, 40), c.att = alloc_rand(nc, 0), c.lse = alloc_rand((size_t)B * NH * T, 0);
    c.dqkv = alloc_rand(3 * nc, 0), c.scratch = alloc_rand(tpar_attention_scratch_floats(T), 0);
    c.wte = alloc_rand((size_t)VP * C, 41), c.wpe = alloc_rand((size_t)T * C, 42);
    c.dwte = alloc_rand((size_t)VP * C, 0), c.dwpe = alloc_rand((size_t)T * C, 0);
    c.logits = alloc_rand((size_t)N * VP, 43);
    for (size_t i = 0; i < (size_t)N * VP; i++) c.logits[i] *= 50.0f; /* logits of a few units */
    c.np = (size_t)12 * C * C + 13 * C; /* one block's parameters */
    c.pp = alloc_rand(c.np, 44), c.gg = alloc_rand(c.np, 45), c.mm = alloc_rand(c.np, 0), c.vv = alloc_rand(c.np, 0);

    char s_nc[32], s_nf[32], s_sm[32], s_at[48], s_xe[32], s_aw[32];
    snprintf(s_nc, sizeof s_nc, "(%d, %d)", N, C);
    snprintf(s_nf, sizeof s_nf, "(%d, %d)", N, FF);
    snprintf(s_sm, sizeof s_sm, "(%d, %d)", rows, T);
    snprintf(s_at, sizeof s_at, "B%d T%d NH%d hs%d", B, T, NH, hs);
    snprintf(s_xe, sizeof s_xe, "(%d, %d)", N, VP);
    snprintf(s_aw, sizeof s_aw, "%zu", c.np);
    const double f4 = 4.0, causal = (double)B * NH * T * (T + 1) * hs; /* one causal product: 2 T(T+1)/2 hs */
    const cmp_kernel_t ks[K_COUNT] = {
        {"layernorm fwd", s_nc, 2 * nc * f4, 0},
        {"layernorm bwd (dx, dw, db)", s_nc, 4 * nc * f4, 0},
        {"bias+GELU fwd", s_nf, 2 * nf * f4, 0},
        {"bias+GELU bwd (dx, dbias)", s_nf, 4 * nf * f4, 0},
        {"residual fwd", s_nc, 3 * nc * f4, 0},
        {"bias+dropout+residual fwd", s_nc, 3 * nc * f4, 0},
        {"bias+dropout+residual bwd", s_nc, 5 * nc * f4, 0},
        {"softmax fwd (attention rows)", s_sm, 2 * ns * f4, 0},
        {"softmax bwd", s_sm, 4 * ns * f4, 0},
        {"attention fwd (2 products)", s_at, 2 * causal, 1},
        {"attention bwd (5 products)", s_at, 5 * causal, 1},
        {"embedding fwd (tokens + pos)", s_nc, 3 * nc * f4, 0},
        {"embedding bwd", s_nc, 5 * nc * f4, 0},
        {"softmax+xent fused, in place", s_xe, 2.0 * N * VP * f4, 0},
        {"AdamW (one block's params)", s_aw, 7.0 * c.np * f4, 0},
    };
#ifdef _OPENMP
    const int nth = omp_get_max_threads();
#else
    const int nth = 1;
#endif
    printf("\n== kernels: previous (before #13: scalar/auto-vectorised, 1 thread, attention via OpenBLAS sgemm)\n"
           "   vs now (vectorised, register-tiled attention) on 1 and on %d OpenMP threads; B %d T %d;\n"
           "   min of %d alternating runs (1 thread: %s; %d threads: wall clock);\n"
           "   rate = GB/s moved (GF/s for attention) by the new code on %d threads\n",
           nth, B, T, reps, use_wall ? "wall clock" : "thread CPU time", nth, nth);
    printf("  %-30s %-20s %9s %9s %9s %9s %7s %7s\n", "kernel", "shape", "prev ms", "new@1 ms", "new@N ms",
           "rate@N", "x@1", "x@N");
    double tot[3] = {0, 0, 0};
    for (int k = 0; k < K_COUNT; k++) {
        double best[3] = {1e30, 1e30, 1e30};
        for (int r = 0; r <= reps; r++)
            for (int v = 0; v < 3; v++) {
                set_threads(v == 2 ? nth : 1);
                /* one thread: this bench's clock (thread CPU time unless --wall); threads: wall */
                double t0 = v == 2 ? tpar_now() : now();
                cmp_run(&c, k, v == 0);
                double t = (v == 2 ? tpar_now() : now()) - t0;
                if (r > 0 && t < best[v]) best[v] = t; /* r = 0: warm-up */
            }
        for (int v = 0; v < 3; v++) tot[v] += best[v];
        printf("  %-30s %-20s %9.3f %9.3f %9.3f %8.1f%s %7.2f %7.2f\n", ks[k].name, ks[k].shape, best[0] * 1e3,
               best[1] * 1e3, best[2] * 1e3, ks[k].work / best[2] * 1e-9, ks[k].flops ? "F" : "G",
               best[0] / best[1], best[0] / best[2]);
    }
    set_threads(nth);
    printf("  %-30s %-20s %9.3f %9.3f %9.3f %9s %7.2f %7.2f\n", "sum", "", tot[0] * 1e3, tot[1] * 1e3, tot[2] * 1e3,
           "", tot[0] / tot[1], tot[0] / tot[2]);
    float *f[] = {c.x, c.out, c.mean, c.rstd, c.lnw, c.lnb, c.dy, c.dx, c.dw, c.db, c.res, c.dres, c.h, c.hout,
                  c.dh, c.dhin, c.bfc, c.dbfc, c.sm, c.smo, c.smd, c.smdx, c.qkv, c.att, c.lse, c.dqkv, c.scratch,
                  c.wte, c.wpe, c.dwte, c.dwpe, c.logits, c.pp, c.gg, c.mm, c.vv};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) tpar_free(f[i]);
    free(c.tok);
}

/* ---- the block ---------------------------------------------------------------------------- */

typedef enum { CAT_GEMM, CAT_ATTN, CAT_OTHER } cat_t;
static const char *const cat_name[] = {"GEMM", "attention", "other"};

enum { MAX_STEPS = 32 };
typedef struct {
    const char *name[MAX_STEPS];
    cat_t cat[MAX_STEPS];
    double best[MAX_STEPS];
    int n, i;
    double t0;
} steps_t;

/* step(s, name, cat) ends the step that began at the previous call */
static void step_begin(steps_t *s) {
    s->i = 0;
    s->t0 = now();
}
static void step(steps_t *s, const char *name, cat_t cat) {
    double t = now(), dt = t - s->t0;
    if (s->i == s->n) {
        s->name[s->n] = name;
        s->cat[s->n] = cat;
        s->best[s->n] = dt;
        s->n++;
    } else if (dt < s->best[s->i]) {
        s->best[s->i] = dt;
    }
    s->i++;
    s->t0 = now();
}

typedef struct { /* parameters and their gradients, activations and theirs: llm.c's layout */
    float *ln1w, *ln1b, *wqkv, *bqkv, *wo, *bo, *ln2w, *ln2b, *wfc, *bfc, *wfp, *bfp;
    float *x, *ln1, *m1, *r1, *qkv, *lse, *atty, *proj, *x2, *ln2, *m2, *r2, *fch, *fchg, *fcp, *x3;
    float *dparams, *dacts, *scratch;
    size_t nparams, nacts;
} block_t;

static void block_alloc(block_t *b, int BT, int T) {
    const size_t N = (size_t)BT;
    float *w = alloc_rand(4 * C + (size_t)C * 3 * C + 3 * C + (size_t)C * C + C + (size_t)C * FF + FF +
                              (size_t)FF * C + C, 1);
    b->nparams = 4 * C + (size_t)C * 3 * C + 3 * C + (size_t)C * C + C + (size_t)C * FF + FF + (size_t)FF * C + C;
    b->ln1w = w, w += C, b->ln1b = w, w += C, b->wqkv = w, w += (size_t)3 * C * C, b->bqkv = w, w += 3 * C;
    b->wo = w, w += (size_t)C * C, b->bo = w, w += C, b->ln2w = w, w += C, b->ln2b = w, w += C;
    b->wfc = w, w += (size_t)FF * C, b->bfc = w, w += FF, b->wfp = w, w += (size_t)C * FF, b->bfp = w;
    for (int i = 0; i < C; i++) b->ln1w[i] = b->ln2w[i] = 1.0f;
    b->x = alloc_rand(N * C, 2);
    b->ln1 = alloc_rand(N * C, 0), b->m1 = alloc_rand(N, 0), b->r1 = alloc_rand(N, 0);
    b->qkv = alloc_rand(N * 3 * C, 0), b->lse = alloc_rand(N * NH, 0), b->atty = alloc_rand(N * C, 0);
    b->proj = alloc_rand(N * C, 0), b->x2 = alloc_rand(N * C, 0), b->ln2 = alloc_rand(N * C, 0);
    b->m2 = alloc_rand(N, 0), b->r2 = alloc_rand(N, 0), b->fch = alloc_rand(N * FF, 0);
    b->fchg = alloc_rand(N * FF, 0), b->fcp = alloc_rand(N * C, 0), b->x3 = alloc_rand(N * C, 0);
    b->nacts = N * (8 * C + 3 * C + 2 * FF); /* the activation gradients below */
    b->dparams = alloc_rand(b->nparams, 0);
    b->dacts = alloc_rand(b->nacts, 0);
    b->scratch = alloc_rand(tpar_attention_scratch_floats(T), 0);
}

static void block_fwd_bwd(block_t *b, steps_t *s, int B, int T) {
    const int N = B * T;
    const float p = 0.1f;
    const uint64_t seed = 7;
    /* parameter gradients, then activation gradients, carved from two flat buffers */
    float *g = b->dparams;
    float *dln1w = g, *dln1b = (g += C), *dwqkv = (g += C), *dbqkv = (g += (size_t)3 * C * C);
    float *dwo = (g += 3 * C), *dbo = (g += (size_t)C * C), *dln2w = (g += C), *dln2b = (g += C);
    float *dwfc = (g += C), *dbfc = (g += (size_t)FF * C), *dwfp = (g += FF), *dbfp = (g += (size_t)C * FF);
    float *a = b->dacts;
    const size_t nc = (size_t)N * C, nf = (size_t)N * FF;
    float *dx3 = a, *dfcp = (a += nc), *dfchg = (a += nc), *dfch = (a += nf), *dln2 = (a += nf);
    float *dx2 = (a += nc), *dproj = (a += nc), *datty = (a += nc), *dqkv = (a += nc), *dln1 = (a += 3 * nc);
    float *dx = (a += nc);
    (void)dx3;

    step_begin(s);
    tpar_layernorm_forward(b->ln1, b->m1, b->r1, b->x, b->ln1w, b->ln1b, N, C); // (N, C)
    step(s, "ln1 fwd", CAT_OTHER);
    tpar_matmul_forward(b->qkv, b->ln1, b->wqkv, b->bqkv, N, C, 3 * C); // (N, 3C)
    step(s, "qkv GEMM fwd", CAT_GEMM);
    tpar_attention_forward(b->atty, b->lse, b->qkv, b->scratch, B, T, C, NH); // (N, C)
    step(s, "attention fwd", CAT_ATTN);
    tpar_matmul_forward(b->proj, b->atty, b->wo, NULL, N, C, C);
    step(s, "attn out GEMM fwd", CAT_GEMM);
    tpar_bias_dropout_residual_forward(b->x2, b->proj, b->bo, b->x, N, C, p, seed, 0);
    step(s, "bias+drop+res fwd", CAT_OTHER);
    tpar_layernorm_forward(b->ln2, b->m2, b->r2, b->x2, b->ln2w, b->ln2b, N, C);
    step(s, "ln2 fwd", CAT_OTHER);
    tpar_matmul_forward(b->fch, b->ln2, b->wfc, NULL, N, C, FF); // (N, FF)
    step(s, "fc GEMM fwd", CAT_GEMM);
    tpar_bias_gelu_forward(b->fchg, b->fch, b->bfc, N, FF);
    step(s, "bias+GELU fwd", CAT_OTHER);
    tpar_matmul_forward(b->fcp, b->fchg, b->wfp, NULL, N, FF, C);
    step(s, "proj GEMM fwd", CAT_GEMM);
    tpar_bias_dropout_residual_forward(b->x3, b->fcp, b->bfp, b->x2, N, C, p, seed, nc);
    step(s, "bias+drop+res fwd", CAT_OTHER);

    /* the kernels accumulate: gradients start at zero (parameters once per step, here
     * every time: an upper bound) */
    memset(b->dparams, 0, b->nparams * sizeof(float));
    memset(b->dacts + nc, 0, (b->nacts - nc) * sizeof(float));
    step(s, "zero gradients", CAT_OTHER);
    /* dx3 (the block's output gradient) is what was left in the first slice */
    tpar_bias_dropout_residual_backward(dfcp, dbfp, dx2, dx3, N, C, p, seed, nc);
    step(s, "bias+drop+res bwd", CAT_OTHER);
    tpar_matmul_backward(dfchg, dwfp, NULL, dfcp, b->fchg, b->wfp, N, FF, C);
    step(s, "proj GEMM bwd", CAT_GEMM);
    tpar_bias_gelu_backward(dfch, dbfc, b->fch, b->bfc, dfchg, N, FF);
    step(s, "bias+GELU bwd", CAT_OTHER);
    tpar_matmul_backward(dln2, dwfc, NULL, dfch, b->ln2, b->wfc, N, C, FF);
    step(s, "fc GEMM bwd", CAT_GEMM);
    tpar_layernorm_backward(dx2, dln2w, dln2b, dln2, b->x2, b->ln2w, b->m2, b->r2, N, C);
    step(s, "ln2 bwd", CAT_OTHER);
    tpar_bias_dropout_residual_backward(dproj, dbo, dx, dx2, N, C, p, seed, 0);
    step(s, "bias+drop+res bwd", CAT_OTHER);
    tpar_matmul_backward(datty, dwo, NULL, dproj, b->atty, b->wo, N, C, C);
    step(s, "attn out GEMM bwd", CAT_GEMM);
    tpar_attention_backward(dqkv, datty, b->qkv, b->atty, b->lse, b->scratch, B, T, C, NH);
    step(s, "attention bwd", CAT_ATTN);
    tpar_matmul_backward(dln1, dwqkv, dbqkv, dqkv, b->ln1, b->wqkv, N, C, 3 * C);
    step(s, "qkv GEMM bwd", CAT_GEMM);
    tpar_layernorm_backward(dx, dln1w, dln1b, dln1, b->x, b->ln1w, b->m1, b->r1, N, C);
    step(s, "ln1 bwd", CAT_OTHER);
}

static void block_free(block_t *b) {
    float *bufs[] = {b->ln1w, b->x, b->ln1, b->m1, b->r1, b->qkv, b->lse, b->atty, b->proj, b->x2, b->ln2,
                     b->m2, b->r2, b->fch, b->fchg, b->fcp, b->x3, b->dparams, b->dacts, b->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) tpar_free(bufs[i]);
}

/* ---- GEMM: ours vs raw cblas_sgemm ------------------------------------------------------- */

typedef struct {
    const char *name;
    int N, K, M; /* out (N, M), inner K */
} gemm_shape_t;

/* Best time of fn(a) and of fn(b), alternating a, b, a, b, ... after one warm-up each. */
static void time_pair(int reps, void (*fn)(void *), void *a, void *b, double best[2]) {
    fn(a), fn(b);
    best[0] = best[1] = 1e30;
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 2; k++) {
            double t = now();
            fn(k ? b : a);
            t = now() - t;
            best[k] = t < best[k] ? t : best[k];
        }
}

typedef struct {
    int which; /* 0 our fwd, 1 raw fwd, 2 our dinp, 3 raw dinp, 4 our dweight, 5 raw dweight */
    int N, C, OC;
    float *inp, *w, *bias, *out, *dout, *dinp, *dw;
} gemm_arg_t;

static void gemm_run(void *p) {
    gemm_arg_t *g = p;
    switch (g->which) {
    case 0: tpar_matmul_forward(g->out, g->inp, g->w, g->bias, g->N, g->C, g->OC); break;
    case 1: // the same product with bias, as a plain sgemm with beta = 0 and no bias (the floor)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->N, g->OC, g->C, 1.0f, g->inp, g->C, g->w, g->C,
                    0.0f, g->out, g->OC);
        break;
    case 2: tpar_matmul_backward(g->dinp, NULL, NULL, g->dout, g->inp, g->w, g->N, g->C, g->OC); break;
    case 3:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->N, g->C, g->OC, 1.0f, g->dout, g->OC, g->w, g->C,
                    1.0f, g->dinp, g->C);
        break;
    case 4: tpar_matmul_backward(NULL, g->dw, g->bias, g->dout, g->inp, g->w, g->N, g->C, g->OC); break;
    case 5:
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->OC, g->C, g->N, 1.0f, g->dout, g->OC, g->inp, g->C,
                    1.0f, g->dw, g->C);
        break;
    }
}

static void bench_gemm(int N, int reps) {
    const struct { const char *name; int C, OC; } sh[] = {
        {"qkv", C, 3 * C}, {"attn out", C, C}, {"fc", C, FF}, {"proj", FF, C}};
    printf("\n  GEMM, ours vs raw cblas_sgemm (same shapes, 1 thread; ours adds the bias in forward\n"
           "  and the bias gradient with dweight)\n");
    printf("  %-9s %-7s %-17s %10s %10s %8s\n", "layer", "pass", "shape NxKxM", "ours GF/s", "sgemm GF/s",
           "ratio");
    for (size_t s = 0; s < sizeof sh / sizeof *sh; s++) {
        gemm_arg_t g = {0, N, sh[s].C, sh[s].OC, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        g.inp = alloc_rand((size_t)N * g.C, 3), g.w = alloc_rand((size_t)g.OC * g.C, 4);
        g.bias = alloc_rand(g.OC, 5), g.out = alloc_rand((size_t)N * g.OC, 0);
        g.dout = alloc_rand((size_t)N * g.OC, 6), g.dinp = alloc_rand((size_t)N * g.C, 0);
        g.dw = alloc_rand((size_t)g.OC * g.C, 0);
        const double flop = 2.0 * N * g.C * g.OC;
        const char *pass[] = {"fwd", "dinp", "dweight"};
        int dims[3][3] = {{N, g.C, g.OC}, {N, g.OC, g.C}, {g.OC, N, g.C}};
        for (int k = 0; k < 3; k++) {
            double t[2];
            gemm_arg_t ours = g, raw = g;
            ours.which = 2 * k, raw.which = 2 * k + 1;
            time_pair(reps, gemm_run, &ours, &raw, t);
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%dx%d", dims[k][0], dims[k][1], dims[k][2]);
            printf("  %-9s %-7s %-17s %10.1f %10.1f %8.3f\n", sh[s].name, pass[k], shape, flop / t[0] * 1e-9,
                   flop / t[1] * 1e-9, t[1] / t[0]);
        }
        float *f[] = {g.inp, g.w, g.bias, g.out, g.dout, g.dinp, g.dw};
        for (int i = 0; i < 7; i++) tpar_free(f[i]);
    }
}

/* ---- fused vs unfused -------------------------------------------------------------------- */

typedef struct {
    int which, N, W;
    float *x, *bias, *res, *out, *dout, *dx, *db, *dres;
} fuse_arg_t;

static void add_bias(float *out, const float *x, const float *bias, int N, int W) { /* unfused stand-in */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < W; j++) out[(size_t)i * W + j] = x[(size_t)i * W + j] + bias[j];
}
static void sum_rows(float *db, const float *d, int N, int W) { /* unfused stand-in: the dbias pass */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < W; j++) db[j] += d[(size_t)i * W + j];
}

static void fuse_run(void *p) {
    fuse_arg_t *a = p;
    const size_t n = (size_t)a->N * a->W;
    switch (a->which) {
    case 0: tpar_bias_gelu_forward(a->out, a->x, a->bias, a->N, a->W); break;
    case 1: add_bias(a->out, a->x, a->bias, a->N, a->W), tpar_gelu_forward(a->out, a->out, n); break;
    case 2: tpar_bias_gelu_backward(a->dx, a->db, a->x, a->bias, a->dout, a->N, a->W); break;
    case 3: /* the unfused forward kept gelu's input (x + bias) in out */
        tpar_gelu_backward(a->dx, a->out, a->dout, n), sum_rows(a->db, a->dx, a->N, a->W);
        break;
    case 4: tpar_bias_dropout_residual_forward(a->out, a->x, a->bias, a->res, a->N, a->W, 0.1f, 1, 0); break;
    case 5:
        add_bias(a->out, a->x, a->bias, a->N, a->W);
        tpar_dropout_forward(a->out, a->out, n, 0.1f, 1, 0);
        tpar_residual_forward(a->out, a->out, a->res, n);
        break;
    case 6: tpar_bias_dropout_residual_backward(a->dx, a->db, a->dres, a->dout, a->N, a->W, 0.1f, 1, 0); break;
    case 7:
        tpar_dropout_backward(a->dx, a->dout, n, 0.1f, 1, 0);
        sum_rows(a->db, a->dx, a->N, a->W);
        for (size_t i = 0; i < n; i++) a->dres[i] += a->dout[i];
        break;
    }
}

static void bench_fusion(int N, int reps) {
    printf("\n  fused vs unfused (bias add / dbias as separate passes), ms\n");
    printf("  %-26s %-12s %9s %9s %8s\n", "kernel", "shape", "fused", "unfused", "speedup");
    const struct { const char *name; int W, which; } k[] = {{"bias+GELU fwd", FF, 0}, {"bias+GELU bwd", FF, 2},
                                                           {"bias+dropout+residual fwd", C, 4},
                                                           {"bias+dropout+residual bwd", C, 6}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        const size_t n = (size_t)N * k[i].W;
        fuse_arg_t a = {0, N, k[i].W, alloc_rand(n, 20), alloc_rand(k[i].W, 21), alloc_rand(n, 22),
                        alloc_rand(n, 0), alloc_rand(n, 23), alloc_rand(n, 0), alloc_rand(k[i].W, 0),
                        alloc_rand(n, 0)};
        if (k[i].which == 2) { /* the unfused GELU backward reads its forward's output */
            a.which = 1;
            fuse_run(&a);
        }
        double t[2];
        fuse_arg_t fused = a, unfused = a;
        fused.which = k[i].which, unfused.which = k[i].which + 1;
        time_pair(reps, fuse_run, &fused, &unfused, t);
        char shape[32];
        snprintf(shape, sizeof shape, "(%d, %d)", N, k[i].W);
        printf("  %-26s %-12s %9.3f %9.3f %8.2f\n", k[i].name, shape, t[0] * 1e3, t[1] * 1e3, t[1] / t[0]);
        float *f[] = {a.x, a.bias, a.res, a.out, a.dout, a.dx, a.db, a.dres};
        for (int j = 0; j < 8; j++) tpar_free(f[j]);
    }
}

/* ---- outside the block --------------------------------------------------------------------- */

/* The vocab-parallel cross-entropy's loops at TP=1 as src/parallel/vocab.c ran them before
 * issue #13's profiling: scalar, libm expf, a double accumulator, one thread. Forward (row
 * max, sum-exp, lse) then backward (dlogits in place). Returns the mean loss. */
static float prev_vocab_xent(float *lse, float *x, const int *tok, int N, int V, int Vp) {
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        const float *l = x + (size_t)i * Vp;
        float m = -INFINITY;
        for (int j = 0; j < V; j++) m = l[j] > m ? l[j] : m;
        double s = 0.0;
        for (int j = 0; j < V; j++) s += expf(l[j] - m);
        lse[i] = m + logf((float)s);
        total += lse[i] - l[tok[i]];
    }
    const float scale = 1.0f / (float)N;
    for (int i = 0; i < N; i++) {
        float *d = x + (size_t)i * Vp;
        for (int j = 0; j < V; j++) d[j] = scale * expf(d[j] - lse[i]);
        for (int j = V; j < Vp; j++) d[j] = 0.0f;
        d[tok[i]] -= scale;
    }
    return (float)(total / N);
}

/* The same through the kernels vocab.c calls now (tpar_softmax_stats, tpar_xent_dlogits). */
static float new_vocab_xent(float *lse, float *ws, float *x, const int *tok, int N, int V, int Vp) {
    tpar_softmax_stats(ws, ws + N, x, N, V, Vp);
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        lse[i] = ws[i] + logf(ws[N + i]);
        total += lse[i] - x[(size_t)i * Vp + tok[i]];
    }
    tpar_xent_dlogits(x, x, lse, tok, N, V, Vp, 0, -1, 1.0f / (float)N);
    return (float)(total / N);
}

static void bench_other(int B, int T, int reps) {
    const int N = B * T;
    int *tok = malloc((size_t)N * sizeof *tok);
    if (!tok) exit(1);
    for (int i = 0; i < N; i++) tok[i] = (int)(tpar_rng_u32(9, (uint64_t)i) % VOCAB);
    float *wte = alloc_rand((size_t)VP * C, 10), *wpe = alloc_rand((size_t)TMAX * C, 11);
    float *emb = alloc_rand((size_t)N * C, 0), *logits = alloc_rand((size_t)N * VP, 12);
    tpar_err_t err = {0};
    double te = 1e30, tb = 1e30, tx = 1e30, ta = 1e30, loss = 0;
    float l;
    const size_t np = (size_t)12 * C * C + 13 * C; /* one block's parameters */
    float *pp = alloc_rand(np, 13), *gg = alloc_rand(np, 14), *mm = alloc_rand(np, 0), *vv = alloc_rand(np, 0);
    const tpar_adamw_t cfg = {3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        tpar_status st = tpar_embedding_forward(emb, tok, wte, wpe, B, T, C, VOCAB, 0, VOCAB, &err);
        double t1 = now();
        tpar_embedding_backward(wte, wpe, emb, tok, B, T, C, 0, VOCAB);
        double t2 = now();
        /* in place: the logits become dlogits, so restore them (not timed) afterwards */
        if (st == TPAR_OK) st = tpar_xent_forward_backward(&l, logits, logits, tok, N, VOCAB, VP, -1, 1.0f, &err);
        double t3 = now();
        if (st == TPAR_OK) st = tpar_adamw_update(pp, gg, mm, vv, np, &cfg, r + 1, &err);
        double t4 = now();
        if (st != TPAR_OK) {
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
            exit(1);
        }
        loss = l;
        for (size_t i = 0; i < (size_t)N * VP; i++) logits[i] = (float)(i % 97) * 0.01f;
        if (r == 0) continue; /* warm-up */
        te = t1 - t0 < te ? t1 - t0 : te;
        tb = t2 - t1 < tb ? t2 - t1 : tb;
        tx = t3 - t2 < tx ? t3 - t2 : tx;
        ta = t4 - t3 < ta ? t4 - t3 : ta;
    }
    printf("\n  outside the block\n");
    printf("  %-38s %10.3f ms\n", "embedding fwd (tokens + positions)", te * 1e3);
    printf("  %-38s %10.3f ms\n", "embedding bwd", tb * 1e3);
    printf("  %-38s %10.3f ms  (%.2f GB/s over the logits, loss %.3f)\n", "softmax+xent fused, V 50257 (Vp 50304)",
           tx * 1e3, 2.0 * N * VP * 4 / tx * 1e-9, loss);
    printf("  %-38s %10.3f ms  (%zu params)\n", "AdamW, one block's parameters", ta * 1e3, np);
    /* vocab-parallel cross-entropy (TP=1), previous loops vs the kernels, alternating */
    float *lse = alloc_rand(3 * (size_t)N, 0);
    double tp = 1e30, tn = 1e30;
    float lp = 0, ln = 0;
    for (int r = 0; r <= reps; r++) {
        for (int k = 0; k < 2; k++) {
            for (size_t i = 0; i < (size_t)N * VP; i++) logits[i] = (float)(i % 97) * 0.01f;
            double t0 = now();
            if (k) ln = new_vocab_xent(lse, lse + N, logits, tok, N, VOCAB, VP);
            else lp = prev_vocab_xent(lse, logits, tok, N, VOCAB, VP);
            double t = now() - t0;
            if (r == 0) continue;
            if (k) tn = t < tn ? t : tn;
            else tp = t < tp ? t : tp;
        }
    }
    printf("  %-38s %10.3f ms  previous loops %.3f ms (%.2fx; loss %.4f vs %.4f)\n",
           "vocab-parallel xent (TP=1) fwd+bwd", tn * 1e3, tp * 1e3, tp / tn, ln, lp);
    tpar_free(lse);
    float *f[] = {wte, wpe, emb, logits, pp, gg, mm, vv};
    for (int i = 0; i < 8; i++) tpar_free(f[i]);
    free(tok);
}

int main(int argc, char **argv) {
    int tokens[8] = {256, 1024, 2048}, ntok = 3, reps = 5, cmp_b = 8, cmp_t = 256, cmp_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--compare-only")) {
            cmp_only = 1;
        } else if (!strcmp(argv[i], "--compare") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d,%d", &cmp_b, &cmp_t) != 2 || cmp_b < 1 || cmp_t < 1 || cmp_t > TMAX) {
                fprintf(stderr, "bench_kernels: --compare B,T with B >= 1, 1 <= T <= %d\n", TMAX);
                return 2;
            }
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--wall")) {
            use_wall = 1;
        } else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) {
            ntok = 0;
            for (char *s = strtok(argv[++i], ","); s && ntok < 8; s = strtok(NULL, ",")) tokens[ntok++] = atoi(s);
        } else {
            fprintf(stderr, "usage: bench_kernels [--compare B,T] [--compare-only] [--tokens N[,N...]] [--reps R] "
                            "[--wall]\n");
            return 2;
        }
    }
    for (int i = 0; i < ntok; i++)
        if (tokens[i] < 1 || (tokens[i] > TMAX && tokens[i] % TMAX) || reps < 1) {
            fprintf(stderr, "bench_kernels: token counts must be <= %d or multiples of it; reps >= 1\n", TMAX);
            return 2;
        }
    tpar_err_t err = {0};
    tpar_blas_set_threads(1, &err);
    tpar_build_info_t bi;
    tpar_build_info(&bi);
    printf("bench_kernels: GPT-2 small shapes (C %d, %d heads, ffn %d), 1 BLAS thread, min of %d reps, %s\n", C,
           NH, FF, reps, use_wall ? "wall clock" : "thread CPU time");
    printf("BLAS: %s\n", bi.blas);
    bench_compare(cmp_b, cmp_t, reps);
    if (cmp_only) return 0;
    /* the rest measures one thread's CPU time: keep the kernels on the calling thread */
    set_threads(1);
    for (int i = 0; i < ntok; i++) {
        const int T = tokens[i] < TMAX ? tokens[i] : TMAX, B = tokens[i] / T;
        printf("\n== B*T = %d (B %d, T %d)\n", tokens[i], B, T);
        block_t b;
        block_alloc(&b, B * T, T);
        steps_t s = {0};
        double total = 1e30;
        for (int r = 0; r <= reps; r++) {
            double t0 = now();
            block_fwd_bwd(&b, &s, B, T);
            double t = now() - t0;
            if (r == 0) { /* warm-up: forget its step times */
                s.n = 0;
                continue;
            }
            total = t < total ? t : total;
        }
        double cat[3] = {0, 0, 0}, sum = 0;
        printf("  %-20s %-10s %10s %7s\n", "block step", "kind", "ms", "share");
        for (int k = 0; k < s.n; k++) sum += s.best[k];
        for (int k = 0; k < s.n; k++) {
            cat[s.cat[k]] += s.best[k];
            printf("  %-20s %-10s %10.3f %6.1f%%\n", s.name[k], cat_name[s.cat[k]], s.best[k] * 1e3,
                   100 * s.best[k] / sum);
        }
        printf("  %-20s %-10s %10.3f   (whole fwd+bwd, min over reps: %.3f ms)\n", "sum of steps", "", sum * 1e3,
               total * 1e3);
        printf("  share of block time: GEMM %.1f%%, attention %.1f%%, other (non-GEMM kernels) %.1f%%\n",
               100 * cat[CAT_GEMM] / sum, 100 * cat[CAT_ATTN] / sum, 100 * cat[CAT_OTHER] / sum);
        printf("  NON-GEMM SHARE of block fwd+bwd: %.1f%% without attention, %.1f%% with it (attention's block\n"
               "    products are our own register-tiled loops, not GEMM calls)\n",
               100 * cat[CAT_OTHER] / sum, 100 * (cat[CAT_OTHER] + cat[CAT_ATTN]) / sum);
        block_free(&b);
        bench_gemm(B * T, reps);
        bench_fusion(B * T, reps);
        bench_other(B, T, reps);
    }
    return 0;
}
