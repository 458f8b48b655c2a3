/* The GEMM seam: the provider table, the per-class choice, the default context, the MFU
 * reference (tpar_gemm_peak_flops) and the rank's threads. See the GEMM section of
 * include/tpar/kernels.h for the contract and docs/KERNELS.md for the measurements. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "gemm_internal.h"
#include "gemv.h"

/* ---- providers ---------------------------------------------------------------------------- */

static int run_openblas(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    (void)g;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
    return 0;
}

static int run_dnnl(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    return gemm_dnnl_run(g->dnnl, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

typedef struct {
    gemm_provider_info_t info;
    /* C = alpha op(A) op(B) + beta C; 0, or -1 if refused (OpenBLAS then runs it). NULL for a
     * provider that only does the forward linear. */
    int (*gemm)(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);
    /* Optional: out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC or NULL), N <= max_rows.
     * The decode GEMV (tpar_gemv_forward) is this kind of provider. */
    void (*linear)(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);
} provider_t;

/* Indexed by tpar_gemm_provider_t; entry 0 (auto) is not a provider. */
static const provider_t providers[TPAR_GEMM_N_PROVIDERS] = {
    [TPAR_GEMM_AUTO] = {{"auto", TPAR_GEMM_AUTO, 0}, NULL, NULL},
    [TPAR_GEMM_OPENBLAS] = {{"openblas", TPAR_GEMM_OPENBLAS, 0}, run_openblas, NULL},
    [TPAR_GEMM_DNNL] = {{"dnnl", TPAR_GEMM_DNNL, 0}, run_dnnl, NULL},
    [TPAR_GEMM_GEMV] = {{"gemv", TPAR_GEMM_GEMV, 8}, NULL, tpar_gemv_forward},
};

static int available(const tpar_gemm_ctx_t *g, tpar_gemm_provider_t p) {
    if (p == TPAR_GEMM_OPENBLAS) return 1;
    if (p == TPAR_GEMM_DNNL) return g->dnnl != NULL;
    return p > TPAR_GEMM_DNNL && p < TPAR_GEMM_N_PROVIDERS; /* later entries: always there */
}

int tpar_gemm_provider_takes(tpar_gemm_provider_t p, int ta, int tb, int M) {
    if (p <= TPAR_GEMM_AUTO || p >= TPAR_GEMM_N_PROVIDERS) return 0;
    const provider_t *pv = &providers[p];
    if (pv->gemm) return 1;
    return pv->linear && !ta && tb && (!pv->info.max_rows || M <= pv->info.max_rows);
}

const char *tpar_gemm_provider_name(tpar_gemm_provider_t p) {
    return p >= 0 && p < TPAR_GEMM_N_PROVIDERS ? providers[p].info.name : "?";
}

tpar_status tpar_gemm_provider_parse(const char *s, tpar_gemm_provider_t *out, tpar_err_t *err) {
    for (int p = 0; p < TPAR_GEMM_N_PROVIDERS; p++)
        if (s && !strcmp(s, providers[p].info.name)) {
            *out = (tpar_gemm_provider_t)p;
            return TPAR_OK;
        }
    return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "GEMM provider '%s' unknown: use auto, openblas, dnnl or gemv (forward of <= 8 rows only)",
                        s ? s : "(null)");
}

static void decide(tpar_gemm_ctx_t *g, int c);
static void set_openblas_threads(int n);

/* ---- contexts ----------------------------------------------------------------------------- */

static const char *const op_names[GEMM_OPS] = {"forward", "input grad", "weight grad", "other"};
static const char *const bucket_names[GEMM_BUCKETS] = {"1-8 tokens", "9-512 tokens", ">512 tokens"};

int gemm_class_of(int ta, int tb, int M, int K) {
    int op = ta ? (tb ? 3 : 2) : (tb ? 0 : 1);
    int tokens = op == 2 ? K : M; /* the weight gradient reduces over the tokens */
    int bucket = tokens <= 8 ? 0 : tokens <= 512 ? 1 : 2;
    return op * GEMM_BUCKETS + bucket;
}

tpar_status tpar_gemm_ctx_new(tpar_gemm_provider_t force, tpar_gemm_ctx_t **out, tpar_err_t *err) {
    *out = NULL;
    if (force < 0 || force >= TPAR_GEMM_N_PROVIDERS)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "gemm: provider %d unknown", (int)force);
    tpar_gemm_ctx_t *g = calloc(1, sizeof *g);
    if (!g) return tpar_err_set(err, TPAR_ERR_NOMEM, "gemm: out of memory for a context");
    if (pthread_mutex_init(&g->mu, NULL)) {
        free(g);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "gemm: cannot create the context's mutex");
    }
    g->force = force;
    if (force == TPAR_GEMM_AUTO || force == TPAR_GEMM_DNNL) g->dnnl = gemm_dnnl_new();
    if (force != TPAR_GEMM_AUTO && !available(g, force)) {
        tpar_gemm_ctx_free(g);
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "gemm: provider %s is not available here (oneDNN made no CPU engine); use openblas",
                            tpar_gemm_provider_name(force));
    }
    for (int c = 0; c < GEMM_CLASSES; c++)
        snprintf(g->cls[c].name, sizeof g->cls[c].name, "%s, %s", op_names[c / GEMM_BUCKETS],
                 bucket_names[c % GEMM_BUCKETS]);
    *out = g;
    return TPAR_OK;
}

void tpar_gemm_ctx_free(tpar_gemm_ctx_t *g) {
    if (!g) return;
    gemm_dnnl_free(g->dnnl);
    tpar_free(g->scratch[0]), tpar_free(g->scratch[1]);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

tpar_gemm_provider_t tpar_gemm_ctx_force(const tpar_gemm_ctx_t *g) { return g ? g->force : TPAR_GEMM_AUTO; }

/* The default context: the one piece of process-wide state of the kernels (documented in
 * kernels.h and docs/ARCHITECTURE.md). Made once; lives until the process ends. */
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static tpar_gemm_ctx_t *default_ctx;

static void make_default(void) {
    tpar_gemm_provider_t p = TPAR_GEMM_AUTO;
    const char *s = getenv("TPAR_GEMM");
    if (s && *s && tpar_gemm_provider_parse(s, &p, NULL)) p = TPAR_GEMM_AUTO; /* tpar_gemm_init reports it */
    if (tpar_gemm_ctx_new(p, &default_ctx, NULL)) tpar_gemm_ctx_new(TPAR_GEMM_AUTO, &default_ctx, NULL);
}

tpar_gemm_ctx_t *tpar_gemm_default(void) {
    pthread_once(&default_once, make_default);
    return default_ctx;
}

tpar_status tpar_gemm_init(tpar_err_t *err) {
    const char *s = getenv("TPAR_GEMM");
    tpar_gemm_provider_t p = TPAR_GEMM_AUTO;
    tpar_status st;
    if (s && *s && (st = tpar_gemm_provider_parse(s, &p, err)))
        return tpar_err_set(err, st, "TPAR_GEMM='%s': use auto, openblas, dnnl or gemv (forward of <= 8 rows only)", s);
    tpar_gemm_ctx_t *g = tpar_gemm_default();
    if (!g) return tpar_err_set(err, TPAR_ERR_NOMEM, "gemm: out of memory for the default context");
    if (g->force != p)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "TPAR_GEMM=%s: that provider is not available here",
                            tpar_gemm_provider_name(p));
    /* Decide the model's classes now (forward and both gradients, every bucket), before the
     * ranks start stepping together, rather than in the middle of a step. */
    pthread_mutex_lock(&g->mu);
    if (g->force == TPAR_GEMM_AUTO)
        for (int c = 0; c < 3 * GEMM_BUCKETS; c++)
            if (!g->cls[c].decided) decide(g, c);
    pthread_mutex_unlock(&g->mu);
    set_openblas_threads(omp_get_max_threads());
    return TPAR_OK;
}

/* ---- the choice per shape class ---------------------------------------------------------- */

/* Best rate of provider p over 5 samples on an (M, N, K) call with contiguous operands; each
 * sample repeats the call to ~2e7 FLOP (at least once; ~0.2-1.5 ms here), so a class costs a
 * few ms per provider: short enough not to stall ranks that decide in the middle of a step. 0 if
 * it cannot run. */
static double measure(tpar_gemm_ctx_t *g, tpar_gemm_provider_t p, int ta, int tb, int M, int N, int K, float beta,
                      const float *A, const float *B, float *C) {
    int lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
    double flop = 2.0 * M * N * K;
    int iters = flop >= 2e7 ? 1 : (int)(2e7 / flop);
    if (iters > 2000) iters = 2000;
    const provider_t *pv = &providers[p];
    int linear = !pv->gemm; /* a forward-only provider: time its linear */
    if (linear && (ta || !tb || (pv->info.max_rows && M > pv->info.max_rows))) return 0;
#define CALL()                                                                                        \
    (linear ? (pv->linear(C, A, B, NULL, M, K, N), 0)                                               \
            : pv->gemm(g, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc))
    if (CALL()) return 0; /* warm-up: makes oneDNN's primitive, pages the buffers in */
    double best = 0;
    for (int s = 0; s < 5; s++) {
        double t0 = tpar_now();
        for (int i = 0; i < iters; i++) CALL();
        double dt = tpar_now() - t0;
        if (dt > 0 && flop * iters / dt > best) best = flop * iters / dt;
    }
#undef CALL
    return best;
}

/* The provider this CPU's features point to: oneDNN from AVX2 up (it dispatches on the ISA
 * it finds); OpenBLAS below that. */
static tpar_gemm_provider_t preferred(const tpar_gemm_ctx_t *g) {
    return g->dnnl && gemm_dnnl_isa_rank() >= 2 ? TPAR_GEMM_DNNL : TPAR_GEMM_OPENBLAS;
}

/* The same for class c: the forward of 1-8 rows (decode) is a read of the weights, which the
 * small-M kernel streams at the memory's read bandwidth (docs/KERNELS.md); the probe below runs
 * with weights in cache, so it would not show that. */
static tpar_gemm_provider_t preferred_for(const tpar_gemm_ctx_t *g, int c) {
    return c == 0 ? TPAR_GEMM_GEMV : preferred(g);
}

/* Decides class c: measures every available provider on the class's probe shape, a GPT-2
 * small layer at the bucket's token count (4, 256 or 512 tokens; 1024 x 768 weights), and keeps
 * the preferred provider unless another is >= 1.3x faster. Each provider runs on one thread (per
 * core: on a busy host a descheduled OpenMP thread made oneDNN and the GEMV look 30-60x slower
 * than a one-thread OpenBLAS), best of the samples. A fixed probe (not the first call's shape)
 * makes the choice the same for every model and every run on a machine, unless the providers
 * are within noise of each other there (TPAR_GEMM fixes it). Caller holds g->mu. */
static void decide(tpar_gemm_ctx_t *g, int c) {
    tpar_gemm_class_t *k = &g->cls[c];
    static const int tokens[GEMM_BUCKETS] = {4, 256, 512};
    int op = c / GEMM_BUCKETS, t = tokens[c % GEMM_BUCKETS];
    int ta = op >= 2, tb = op == 0 || op == 3;
    float beta = op == 0 ? 0.0f : 1.0f; // the forward overwrites, the gradients accumulate
    int m = op == 2 ? 1024 : t, n = op == 1 ? 768 : op == 2 ? 768 : 1024, kk = op == 2 ? t : op == 1 ? 1024 : 768;
    k->M = m, k->N = n, k->K = kk, k->decided = 1;
    k->chosen = preferred_for(g, c);
    float *a = tpar_calloc_aligned((size_t)m * kk, sizeof(float)), *b = tpar_calloc_aligned((size_t)kk * n, sizeof(float)),
          *cc = tpar_calloc_aligned((size_t)m * n, sizeof(float));
    if (a && b && cc) {
        for (size_t i = 0; i < (size_t)m * kk; i++) a[i] = (float)((i * 7) % 13) * 0.01f;
        for (size_t i = 0; i < (size_t)kk * n; i++) b[i] = (float)((i * 5) % 11) * 0.01f;
        int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        openblas_set_num_threads(1);
        for (int p = 1; p < TPAR_GEMM_N_PROVIDERS; p++)
            if (available(g, p)) k->gflops[p] = measure(g, p, ta, tb, m, n, kk, beta, a, b, cc) / 1e9;
        omp_set_num_threads(threads);
        double keep = k->gflops[k->chosen];
        for (int p = 1; p < TPAR_GEMM_N_PROVIDERS; p++)
            if (k->gflops[p] > 1.3 * keep && k->gflops[p] > k->gflops[k->chosen]) k->chosen = p;
    }
    tpar_free(a), tpar_free(b), tpar_free(cc);
}

/* Caller holds g->mu. The provider of class c, deciding it now if needed. */
static tpar_gemm_provider_t choose(tpar_gemm_ctx_t *g, int ta, int tb, int M, int K) {
    if (g->force != TPAR_GEMM_AUTO) return g->force;
    int c = gemm_class_of(ta, tb, M, K);
    if (!g->cls[c].decided) decide(g, c);
    return g->cls[c].chosen;
}

tpar_gemm_provider_t tpar_gemm_choice(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K) {
    if (!g) g = tpar_gemm_default();
    (void)N; // the class depends on the operation and the token count only
    if (!g) return TPAR_GEMM_OPENBLAS;
    pthread_mutex_lock(&g->mu);
    tpar_gemm_provider_t p = choose(g, ta, tb, M, K);
    pthread_mutex_unlock(&g->mu);
    return p;
}

void tpar_gemm_classes(tpar_gemm_ctx_t *g, tpar_gemm_class_t *out) {
    if (!g) g = tpar_gemm_default();
    memset(out, 0, TPAR_GEMM_CLASSES * sizeof *out);
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    memcpy(out, g->cls, TPAR_GEMM_CLASSES * sizeof *out);
    pthread_mutex_unlock(&g->mu);
}

void tpar_gemm_impl(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, char *out, size_t n) {
    if (!g) g = tpar_gemm_default();
    if (n) out[0] = 0;
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    /* the contiguous case, alpha 1; the accumulating variant first (what backward runs) */
    gemm_dnnl_impl(g->dnnl, 0, ta, tb, M, N, K, ta ? M : K, tb ? K : N, N, 1.0f, 1.0f, out, n);
    if (n && !out[0]) gemm_dnnl_impl(g->dnnl, 0, ta, tb, M, N, K, ta ? M : K, tb ? K : N, N, 1.0f, 0.0f, out, n);
    pthread_mutex_unlock(&g->mu);
}

/* ---- the seam ------------------------------------------------------------------------------ */

void gemm_run_locked(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    tpar_gemm_provider_t p = choose(g, ta, tb, M, K);
    if (!providers[p].gemm) p = preferred(g);
    if (p == TPAR_GEMM_OPENBLAS || providers[p].gemm(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        run_openblas(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void *gemm_scratch_locked(tpar_gemm_ctx_t *g, int slot, size_t bytes) {
    if (bytes <= g->scratch_bytes[slot]) return g->scratch[slot];
    tpar_free(g->scratch[slot]);
    g->scratch[slot] = tpar_calloc_aligned(bytes, 1);
    g->scratch_bytes[slot] = g->scratch[slot] ? bytes : 0;
    return g->scratch[slot];
}

void tpar_gemm(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (!g) g = tpar_gemm_default();
    if (g) {
        pthread_mutex_lock(&g->mu);
        tpar_gemm_provider_t p = choose(g, ta, tb, M, K);
        /* A linear-only provider (no gemm hook) cannot run a general call: fall to the CPU's
         * preferred one. */
        if (!providers[p].gemm) p = preferred(g);
        int rc = p == TPAR_GEMM_OPENBLAS ? -1 : providers[p].gemm(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        pthread_mutex_unlock(&g->mu);
        if (rc == 0) return;
    }
    run_openblas(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void tpar_gemm_linear(tpar_gemm_ctx_t *g, float *out, const float *inp, const float *weight, const float *bias, int N,
                      int C, int OC) {
    if (!g) g = tpar_gemm_default();
    if (g) {
        pthread_mutex_lock(&g->mu);
        tpar_gemm_provider_t p = choose(g, 0, 1, N, C);
        pthread_mutex_unlock(&g->mu);
        const provider_t *pv = &providers[p];
        if (pv->linear && (!pv->info.max_rows || N <= pv->info.max_rows)) {
            pv->linear(out, inp, weight, bias, N, C, OC);
            return;
        }
    }
    float beta = 0.0f;
    if (bias) {
        /* Seed out with the bias and let the GEMM accumulate: one pass, no second sweep. */
        for (int i = 0; i < N; i++) {
            float *o = out + (size_t)i * OC;
            for (int j = 0; j < OC; j++) o[j] = bias[j];
        }
        beta = 1.0f;
    }
    // out (N, OC) = inp (N, C) @ weight^T (C, OC)
    tpar_gemm(g, 0, 1, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

/* ---- the MFU reference ------------------------------------------------------------------- */

tpar_status tpar_gemm_peak_flops(int n, int reps, tpar_gemm_peak_t *out, tpar_err_t *err) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > 8192 || reps < 1)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "gemm peak: n %d (1..8192), reps %d (>= 1)", n, reps);
    out->n = n, out->reps = reps;
    size_t nn = (size_t)n * n;
    float *a = tpar_calloc_aligned(nn, sizeof(float)), *b = tpar_calloc_aligned(nn, sizeof(float)),
          *c = tpar_calloc_aligned(nn, sizeof(float));
    tpar_status st = TPAR_OK;
    if (!a || !b || !c) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "gemm peak: out of memory for three %dx%d matrices", n, n);
        goto done;
    }
    for (size_t i = 0; i < nn; i++) a[i] = b[i] = (float)(i % 7) * 0.1f; // also pages them in
    int threads = tpar_kernels_get_threads();
    tpar_kernels_set_threads(1, NULL); // per core
    for (int p = 1; p < TPAR_GEMM_N_PROVIDERS && !st; p++) {
        if (!providers[p].gemm) continue;
        tpar_gemm_ctx_t *g;
        if (tpar_gemm_ctx_new((tpar_gemm_provider_t)p, &g, NULL)) continue; // not available here
        double best = 0;
        for (int r = 0; r <= reps; r++) { // r = 0 warms up (oneDNN makes its primitive)
            double t0 = tpar_now();
            tpar_gemm(g, 0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            double f = 2.0 * n * n * (double)n / (tpar_now() - t0);
            if (r > 0 && f > best) best = f;
        }
        tpar_gemm_ctx_free(g);
        out->flops[p] = best;
        if (best > out->best) out->best = best, out->best_provider = (tpar_gemm_provider_t)p;
    }
    tpar_kernels_set_threads(threads, NULL);
done:
    tpar_free(a), tpar_free(b), tpar_free(c);
    return st;
}

/* ---- threads ------------------------------------------------------------------------------- */

/* OpenBLAS's threads: n while OpenBLAS may run the model's GEMMs (no default context yet,
 * TPAR_GEMM=openblas, or a class chose it), else 1. Then it runs only attention's small
 * per-block GEMMs (one thread, as before the seam), and its idle workers (which yield-spin for
 * ~2^28 cycles after each call) stay off the cores oneDNN's OpenMP threads use. */
static void set_openblas_threads(int n) {
    tpar_gemm_ctx_t *g = default_ctx; /* set once under pthread_once, by this (main) thread */
    int uses = !g || g->force == TPAR_GEMM_OPENBLAS;
    if (g && g->force == TPAR_GEMM_AUTO) {
        pthread_mutex_lock(&g->mu);
        for (int c = 0; c < 3 * GEMM_BUCKETS; c++) // the model's classes (forward, both gradients)
            if (!g->cls[c].decided || g->cls[c].chosen == TPAR_GEMM_OPENBLAS) uses = 1;
        pthread_mutex_unlock(&g->mu);
    }
    openblas_set_num_threads(uses ? n : 1);
}

tpar_status tpar_kernels_set_threads(int n, tpar_err_t *err) {
    if (n < 1) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "kernel threads: %d requested, need >= 1", n);
    omp_set_num_threads(n);
    set_openblas_threads(n);
    return TPAR_OK;
}

int tpar_kernels_get_threads(void) { return omp_get_max_threads(); }

tpar_status tpar_blas_set_threads(int n, tpar_err_t *err) { return tpar_kernels_set_threads(n, err); }
int tpar_blas_get_threads(void) { return tpar_kernels_get_threads(); }

int tpar_kernels_share(int cores, int local_ranks) {
    int n = local_ranks >= 1 ? cores / local_ranks : cores;
    return n < 1 ? 1 : n;
}

int tpar_kernels_usable_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n >= 1) return n;
    }
    return tpar_num_cores();
}

tpar_status tpar_kernels_rank_threads(int *n, tpar_err_t *err) {
    long long t = 0, local = 1;
    tpar_status st = tpar_env_int("TPAR_THREADS", 0, 1, 4096, &t, err);
    if (st) return st;
    if (t == 0) {
        static const char *const vars[] = {"TPAR_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE"};
        for (int i = 0; i < 2 && local == 1; i++)
            if ((st = tpar_env_int(vars[i], 1, 1, 1 << 20, &local, err))) return st;
        t = tpar_kernels_share(tpar_kernels_usable_cores(), (int)local);
    }
    *n = (int)t;
    return TPAR_OK;
}
