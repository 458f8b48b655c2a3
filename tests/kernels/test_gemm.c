/* The GEMM seam: every provider against the plain reference (tpar_ref_gemm, double
 * accumulation) on random and edge shapes (sizes 1, 7, 63, 4097), all four transpose pairs,
 * padded leading dimensions, alpha, overwrite (beta 0, over NaN) and accumulate (beta 1);
 * providers against each other on GPT-2 shapes; the auto choice, the linear wrappers, the
 * oneDNN primitive cache, run-to-run determinism, env parsing and errors. Nothing here
 * asserts on time.
 *
 * Tolerance (element-wise, any summation order): an fp32 dot product of K terms computed in
 * any order is within gamma_K = K u / (1 - K u) of sum |a_k b_k| of the exact one, u = 2^-24
 * (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 3.5). Scaling by
 * alpha and adding beta C are two more roundings, so we allow (K + 2) u / (1 - (K + 2) u)
 * times |alpha| sum |a b| + |beta c| (the reference returns that sum in double), plus the
 * reference's own final rounding to float, u |ref|. This bound is what fp32 promises; a
 * wrong transpose, stride or accumulate misses it by orders of magnitude (see the check on
 * the bound's size below). */
#define _POSIX_C_SOURCE 200809L // setenv
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "kernels_ref.h"
#include "ktest.h"
#include "tpar/kernels.h"

static const double U = FLT_EPSILON / 2; /* unit roundoff of fp32, 2^-24 */

typedef struct {
    int M, N, K;
} shape_t;

/* gamma_n = n u / (1 - n u) */
static double gam(int n) { return n * U / (1 - n * U); }

/* Runs one call in g and in the reference; checks every element within the bound. Leading
 * dimensions are padded by `pad` to catch stride mix-ups. Returns the number of mismatches. */
static long check_call(tpar_gemm_ctx_t *g, const char *who, int ta, int tb, int M, int N, int K, float alpha,
                       float beta, int pad) {
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
    float *A = kt_rand((size_t)ar * lda, -1, 1), *B = kt_rand((size_t)br * ldb, -1, 1);
    float *C = kt_rand((size_t)M * ldc, -1, 1);
    if (beta == 0.0f)
        for (size_t i = 0; i < (size_t)M * ldc; i++) C[i] = NAN; /* beta 0 must not read C */
    float *R = kt_copy(C, (size_t)M * ldc);
    double *bound = malloc((size_t)M * N * sizeof *bound);
    if (!bound) exit(1);
    tpar_ref_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc, bound);
    tpar_gemm(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double gk = gam(K + 2);
    long bad = 0;
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double r = R[(size_t)i * ldc + j], c = C[(size_t)i * ldc + j];
            double tol = gk * bound[(size_t)i * N + j] + U * fabs(r) + 1e-30;
            double e = fabs(c - r);
            if (!(e <= tol)) bad++;
            if (e / tol > worst || isnan(e)) worst = isnan(e) ? INFINITY : e / tol;
        }
    /* the padding columns of C are not part of the result: untouched */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++) {
            float x = C[(size_t)i * ldc + j], y = R[(size_t)i * ldc + j];
            if (memcmp(&x, &y, sizeof x)) bad++;
        }
    if (!check_record_(bad == 0, __FILE__, __LINE__, "gemm within the fp32 bound"))
        fprintf(stderr, "  %s: op (%c, %c) M %d N %d K %d alpha %g beta %g pad %d: %ld bad, worst %.3g x tol\n", who,
                ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, pad, bad, worst);
    free(bound);
    kt_free_all();
    return bad;
}

static tpar_gemm_ctx_t *ctx_or_skip(tpar_gemm_provider_t p) {
    tpar_err_t err = {0};
    tpar_gemm_ctx_t *g = NULL;
    if (tpar_gemm_ctx_new(p, &g, &err)) {
        printf("provider %s not available here: %s (its checks are skipped)\n", tpar_gemm_provider_name(p), err.msg);
        return NULL;
    }
    return g;
}

/* Every provider, every transpose pair, edge and random shapes, overwrite and accumulate. */
static void test_against_reference(void) {
    static const shape_t edge[] = {
        {1, 1, 1}, {7, 7, 7}, {63, 63, 63}, {1, 63, 7}, {63, 1, 7}, {7, 63, 1}, {1, 7, 63},
        {4097, 7, 1}, {7, 4097, 7}, {1, 7, 4097}, {63, 1, 4097}, {4097, 1, 63}, {1, 4097, 63},
    };
    enum { N_EDGE = sizeof edge / sizeof edge[0], N_RANDOM = 12 };
    shape_t rnd[N_RANDOM];
    for (int i = 0; i < N_RANDOM; i++)
        rnd[i] = (shape_t){1 + (int)(kt_unif() * 150), 1 + (int)(kt_unif() * 150), 1 + (int)(kt_unif() * 300)};
    for (int p = TPAR_GEMM_AUTO; p < TPAR_GEMM_N_PROVIDERS; p++) {
        tpar_gemm_ctx_t *g = ctx_or_skip((tpar_gemm_provider_t)p);
        if (!g) continue;
        const char *who = tpar_gemm_provider_name((tpar_gemm_provider_t)p);
        for (int op = 0; op < 4; op++) {
            int ta = op >> 1, tb = op & 1;
            for (int s = 0; s < N_EDGE; s++) {
                check_call(g, who, ta, tb, edge[s].M, edge[s].N, edge[s].K, 1.0f, 0.0f, 0);
                check_call(g, who, ta, tb, edge[s].M, edge[s].N, edge[s].K, 1.0f, 1.0f, 3);
            }
            for (int s = 0; s < N_RANDOM; s++) {
                float alpha = s % 3 == 0 ? 0.125f : 1.0f;
                check_call(g, who, ta, tb, rnd[s].M, rnd[s].N, rnd[s].K, alpha, (float)(s & 1), s % 4 == 1 ? 5 : 0);
            }
            /* beta other than 0 or 1 is outside oneDNN's cached variants: OpenBLAS takes it */
            check_call(g, who, ta, tb, 9, 17, 33, 1.0f, 0.5f, 0);
        }
        kt_free_all();
        tpar_gemm_ctx_free(g);
    }
}

/* The linear wrappers (the model's GEMMs) in each provider, against tpar_ref_matmul_*. Bias
 * and accumulation as the model uses them. Tolerance as above with K = C (forward, dinp:
 * K = OC) and the term scale bounded by max|a| max|b| K. */
static void test_linear(void) {
    static const shape_t sh[] = {{1, 63, 7}, {7, 1, 63}, {64, 48, 144}, {33, 129, 65}};
    for (int p = TPAR_GEMM_AUTO; p < TPAR_GEMM_N_PROVIDERS; p++) {
        tpar_gemm_ctx_t *g = ctx_or_skip((tpar_gemm_provider_t)p);
        if (!g) continue;
        for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
            int N = sh[s].M, C = sh[s].K, OC = sh[s].N;
            float *inp = kt_rand((size_t)N * C, -1, 1), *w = kt_rand((size_t)OC * C, -1, 1), *b = kt_rand(OC, -1, 1);
            float *out = kt_zeros((size_t)N * OC), *ref = kt_zeros((size_t)N * OC);
            tpar_gemm_linear(g, out, inp, w, b, N, C, OC);
            tpar_ref_matmul_forward(ref, inp, w, b, N, C, OC);
            double tol = gam(C + 2) * (C + 1); /* |a|, |b|, |bias| <= 1: sum |terms| <= C + 1 */
            CHECK_CLOSE_F32("linear forward", ref, out, (size_t)N * OC, 0, tol);
            tpar_gemm_linear(g, out, inp, w, NULL, N, C, OC);
            tpar_ref_matmul_forward(ref, inp, w, NULL, N, C, OC);
            CHECK_CLOSE_F32("linear forward, no bias", ref, out, (size_t)N * OC, 0, tol);
        }
        kt_free_all();
        tpar_gemm_ctx_free(g);
    }
    /* The default context behind tpar_matmul_*: forward and both gradients, accumulating. */
    int N = 37, C = 50, OC = 70;
    float *inp = kt_rand((size_t)N * C, -1, 1), *w = kt_rand((size_t)OC * C, -1, 1), *dout = kt_rand((size_t)N * OC, -1, 1);
    float *din = kt_rand((size_t)N * C, -1, 1), *dw = kt_rand((size_t)OC * C, -1, 1), *db = kt_rand(OC, -1, 1);
    float *rdin = kt_copy(din, (size_t)N * C), *rdw = kt_copy(dw, (size_t)OC * C), *rdb = kt_copy(db, OC);
    tpar_matmul_backward(din, dw, db, dout, inp, w, N, C, OC);
    tpar_ref_matmul_backward(rdin, rdw, rdb, dout, inp, w, N, C, OC);
    int K = N > OC ? N : OC;
    double tol = gam(K + 2) * (K + 1);
    CHECK_CLOSE_F32("matmul dinp", rdin, din, (size_t)N * C, 0, tol);
    CHECK_CLOSE_F32("matmul dweight", rdw, dw, (size_t)OC * C, 0, tol);
    CHECK_CLOSE_F32("matmul dbias", rdb, db, OC, 0, tol);
    /* A long input-gradient sum (OC > 8192: the LM head) runs in slices of 4096 terms, each
     * accumulated; the last slice partial. The same bound: any summation order meets it. */
    N = 3, C = 17, OC = 2 * 4096 + 7;
    inp = kt_rand((size_t)N * C, -1, 1), w = kt_rand((size_t)OC * C, -1, 1), dout = kt_rand((size_t)N * OC, -1, 1);
    din = kt_rand((size_t)N * C, -1, 1), rdin = kt_copy(din, (size_t)N * C);
    tpar_matmul_backward(din, NULL, NULL, dout, inp, w, N, C, OC);
    tpar_ref_matmul_backward(rdin, NULL, NULL, dout, inp, w, N, C, OC);
    CHECK_CLOSE_F32("matmul dinp, sliced sum", rdin, din, (size_t)N * C, 0, gam(OC + 2) * (OC + 1));
    kt_free_all();
}

/* oneDNN against OpenBLAS on the model's shapes (GPT-2 small, 256 tokens, and one decode
 * row): forward, input gradient and weight gradient with accumulation. No reference here
 * (too slow at these sizes): both are within gamma_{K+2} sum|a b| of the exact result, so
 * they are within twice that of each other; with |a|, |b| <= 1 the sum is at most K. */
static void test_providers_agree(void) {
    tpar_gemm_ctx_t *gb = ctx_or_skip(TPAR_GEMM_OPENBLAS), *gd = ctx_or_skip(TPAR_GEMM_DNNL);
    if (!gb || !gd) {
        tpar_gemm_ctx_free(gb), tpar_gemm_ctx_free(gd);
        check_skip("oneDNN not available: providers cannot be compared");
        return;
    }
    static const int lin[][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};
    static const int rows[] = {256, 1};
    for (size_t r = 0; r < 2; r++)
        for (size_t s = 0; s < sizeof lin / sizeof lin[0]; s++) {
            int N = rows[r], C = lin[s][0], OC = lin[s][1];
            float *x = kt_rand((size_t)N * C, -1, 1), *w = kt_rand((size_t)OC * C, -1, 1);
            float *dy = kt_rand((size_t)N * OC, -1, 1);
            float *o1 = kt_zeros((size_t)N * OC), *o2 = kt_zeros((size_t)N * OC);
            tpar_gemm(gb, 0, 1, N, OC, C, 1.0f, x, C, w, C, 0.0f, o1, OC);
            tpar_gemm(gd, 0, 1, N, OC, C, 1.0f, x, C, w, C, 0.0f, o2, OC);
            CHECK_CLOSE_F32("forward dnnl vs openblas", o1, o2, (size_t)N * OC, 0, 2 * gam(C + 2) * C);
            float *d1 = kt_rand((size_t)N * C, -1, 1), *d2 = kt_copy(d1, (size_t)N * C);
            tpar_gemm(gb, 0, 0, N, C, OC, 1.0f, dy, OC, w, C, 1.0f, d1, C);
            tpar_gemm(gd, 0, 0, N, C, OC, 1.0f, dy, OC, w, C, 1.0f, d2, C);
            CHECK_CLOSE_F32("input grad dnnl vs openblas", d1, d2, (size_t)N * C, 0, 2 * gam(OC + 2) * (OC + 1));
            float *w1 = kt_rand((size_t)OC * C, -1, 1), *w2 = kt_copy(w1, (size_t)OC * C);
            tpar_gemm(gb, 1, 0, OC, C, N, 1.0f, dy, OC, x, C, 1.0f, w1, C);
            tpar_gemm(gd, 1, 0, OC, C, N, 1.0f, dy, OC, x, C, 1.0f, w2, C);
            CHECK_CLOSE_F32("weight grad dnnl vs openblas", w1, w2, (size_t)OC * C, 0, 2 * gam(N + 2) * (N + 1));
            kt_free_all();
        }
    tpar_gemm_ctx_free(gb), tpar_gemm_ctx_free(gd);
}

/* Bit-identical run to run (same threads), and what changes with the thread count: each
 * output element's summation order must not depend on timing. 1 vs 2 threads is reported
 * here, asserted only where the provider promises it (see docs/KERNELS.md). */
static void test_determinism(void) {
    int threads = tpar_kernels_get_threads();
    for (int p = TPAR_GEMM_OPENBLAS; p < TPAR_GEMM_N_PROVIDERS; p++) {
        tpar_gemm_ctx_t *g = ctx_or_skip((tpar_gemm_provider_t)p);
        if (!g) continue;
        static const int sh[][3] = {{256, 2304, 768}, {256, 768, 3072}, {768, 768, 256}, {1, 3072, 768}};
        for (size_t s = 0; s < 4; s++) {
            int M = sh[s][0], N = sh[s][1], K = sh[s][2], ta = s == 2;
            float *A = kt_rand((size_t)M * K, -1, 1), *B = kt_rand((size_t)K * N, -1, 1);
            float *c1 = kt_rand((size_t)M * N, -1, 1), *c2 = kt_copy(c1, (size_t)M * N), *c3 = kt_copy(c1, (size_t)M * N);
            int lda = ta ? M : K;
            tpar_kernels_set_threads(1, NULL);
            tpar_gemm(g, ta, 0, M, N, K, 1.0f, A, lda, B, N, 1.0f, c1, N);
            tpar_gemm(g, ta, 0, M, N, K, 1.0f, A, lda, B, N, 1.0f, c2, N);
            CHECK(memcmp(c1, c2, (size_t)M * N * sizeof(float)) == 0);
            tpar_kernels_set_threads(2, NULL);
            tpar_gemm(g, ta, 0, M, N, K, 1.0f, A, lda, B, N, 1.0f, c3, N);
            size_t diff = 0;
            for (size_t i = 0; i < (size_t)M * N; i++) diff += memcmp(&c1[i], &c3[i], sizeof(float)) != 0;
            printf("%-8s (%c,N) %4d x %4d x %4d: 1 vs 2 threads: %s (%zu of %zu elements differ)\n",
                   tpar_gemm_provider_name((tpar_gemm_provider_t)p), ta ? 'T' : 'N', M, N, K,
                   diff ? "DIFFERENT" : "bit-identical", diff, (size_t)M * N);
            kt_free_all();
        }
        tpar_gemm_ctx_free(g);
    }
    tpar_kernels_set_threads(threads, NULL);
}

/* Auto: each class decides at its first call, on measurements of the available providers,
 * and picks one of them; forced contexts never measure. The oneDNN cache grows per shape. */
static void test_choice(void) {
    tpar_gemm_ctx_t *g = ctx_or_skip(TPAR_GEMM_AUTO);
    if (!g) return;
    tpar_gemm_class_t cls[TPAR_GEMM_CLASSES];
    tpar_gemm_classes(g, cls);
    for (int c = 0; c < TPAR_GEMM_CLASSES; c++) CHECK(!cls[c].decided);
    tpar_gemm_provider_t p = tpar_gemm_choice(g, 0, 1, 4, 300, 200);
    tpar_gemm_classes(g, cls);
    int decided = 0;
    for (int c = 0; c < TPAR_GEMM_CLASSES; c++)
        if (cls[c].decided) {
            decided++;
            CHECK(cls[c].chosen == p);
            CHECK_STR_CONTAINS(cls[c].name, "forward, 1-8 tokens");
            CHECK(cls[c].gflops[TPAR_GEMM_OPENBLAS] > 0); /* measured */
            CHECK(cls[c].gflops[p] > 0);
        }
    CHECK_EQ_INT(1, decided);
    /* another shape of the same class: no new decision, same provider */
    CHECK(tpar_gemm_choice(g, 0, 1, 8, 64, 64) == p);
    tpar_gemm_ctx_free(g);

    g = ctx_or_skip(TPAR_GEMM_OPENBLAS);
    CHECK(tpar_gemm_choice(g, 1, 0, 64, 64, 4096) == TPAR_GEMM_OPENBLAS);
    tpar_gemm_classes(g, cls);
    for (int c = 0; c < TPAR_GEMM_CLASSES; c++) CHECK(!cls[c].decided);
    tpar_gemm_ctx_free(g);

    g = ctx_or_skip(TPAR_GEMM_DNNL);
    if (g) {
        float *A = kt_rand(64 * 32, -1, 1), *B = kt_rand(32 * 16, -1, 1), *C = kt_zeros(64 * 16);
        tpar_gemm(g, 0, 0, 64, 16, 32, 1.0f, A, 32, B, 16, 0.0f, C, 16);
        char impl[64];
        tpar_gemm_impl(g, 0, 0, 64, 16, 32, impl, sizeof impl);
        printf("oneDNN implementation for 64x16x32: %s\n", impl);
        CHECK(impl[0] != 0);
        tpar_gemm_impl(g, 0, 0, 65, 16, 32, impl, sizeof impl);
        CHECK(impl[0] == 0); /* never made */
        kt_free_all();
        tpar_gemm_ctx_free(g);
    }
}

static void test_errors_and_env(void) {
    tpar_err_t err = {0};
    tpar_gemm_provider_t p;
    CHECK_EQ_INT(TPAR_OK, tpar_gemm_provider_parse("dnnl", &p, &err));
    CHECK(p == TPAR_GEMM_DNNL);
    CHECK_EQ_INT(TPAR_OK, tpar_gemm_provider_parse("openblas", &p, &err));
    CHECK(p == TPAR_GEMM_OPENBLAS);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gemm_provider_parse("mkl", &p, &err));
    CHECK_STR_CONTAINS(err.msg, "'mkl' unknown");
    tpar_gemm_ctx_t *g = (tpar_gemm_ctx_t *)&p;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gemm_ctx_new((tpar_gemm_provider_t)99, &g, &err));
    CHECK(g == NULL);

    setenv("TPAR_GEMM", "fastest", 1);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gemm_init(&err));
    CHECK_STR_CONTAINS(err.msg, "TPAR_GEMM='fastest'");
    unsetenv("TPAR_GEMM");

    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_kernels_set_threads(0, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_kernels_set_threads(2, &err));
    CHECK_EQ_INT(2, tpar_kernels_get_threads());
    CHECK_EQ_INT(TPAR_OK, tpar_kernels_set_threads(1, &err));

    int n = 0;
    unsetenv("TPAR_THREADS");
    setenv("TPAR_LOCAL_SIZE", "100000", 1); /* more ranks than cores: never below 1 */
    CHECK_EQ_INT(TPAR_OK, tpar_kernels_rank_threads(&n, &err));
    CHECK_EQ_INT(1, n);
    setenv("TPAR_LOCAL_SIZE", "1", 1);
    CHECK_EQ_INT(TPAR_OK, tpar_kernels_rank_threads(&n, &err));
    CHECK(n >= 1 && n <= tpar_num_cores());
    setenv("TPAR_THREADS", "3", 1); /* the user's (or the launcher's) value wins */
    CHECK_EQ_INT(TPAR_OK, tpar_kernels_rank_threads(&n, &err));
    CHECK_EQ_INT(3, n);
    setenv("TPAR_THREADS", "0", 1);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_kernels_rank_threads(&n, &err));
    CHECK_STR_CONTAINS(err.msg, "TPAR_THREADS");
    setenv("TPAR_THREADS", "two", 1);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_kernels_rank_threads(&n, &err));
    unsetenv("TPAR_THREADS");
    unsetenv("TPAR_LOCAL_SIZE");

    /* The default context (auto here): after tpar_gemm_init has decided the model's classes,
     * OpenBLAS keeps n threads only if one of them chose it; OpenMP always gets n. */
    CHECK_EQ_INT(TPAR_OK, tpar_gemm_init(&err));
    CHECK_EQ_INT(TPAR_OK, tpar_kernels_set_threads(2, &err));
    tpar_gemm_class_t cls[TPAR_GEMM_CLASSES];
    tpar_gemm_classes(NULL, cls);
    int oblas = 0;
    for (int c = 0; c < 9; c++) {
        CHECK(cls[c].decided); /* forward, input grad, weight grad x 3 buckets: decided at init */
        oblas |= cls[c].chosen == TPAR_GEMM_OPENBLAS;
    }
    CHECK(!cls[9].decided); /* (Trans, Trans): not a model class, left for its first call */
    CHECK_EQ_INT(2, tpar_kernels_get_threads());
    CHECK_EQ_INT(oblas ? 2 : 1, openblas_get_num_threads());
    CHECK_EQ_INT(TPAR_OK, tpar_kernels_set_threads(1, &err));

    tpar_gemm_peak_t pk;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gemm_peak_flops(0, 1, &pk, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_gemm_peak_flops(64, 1, &pk, &err));
    CHECK(pk.best > 0 && pk.flops[TPAR_GEMM_OPENBLAS] > 0 && pk.best == pk.flops[pk.best_provider]);
    CHECK_EQ_INT(1, tpar_kernels_get_threads()); /* restored */

    tpar_cpu_info_t ci;
    tpar_cpu_info(&ci, 0);
    CHECK(ci.vector_floats == 4 || ci.vector_floats == 8 || ci.vector_floats == 16);
    CHECK(!ci.measured && ci.clock_hz == 0);
}

int main(void) {
    kt_seed(13);
    tpar_err_t err = {0};
    tpar_kernels_set_threads(1, &err);
    test_errors_and_env();
    test_against_reference();
    test_linear();
    test_providers_agree();
    test_choice();
    test_determinism();
    kt_free_all();
    return check_finish("test_gemm");
}
