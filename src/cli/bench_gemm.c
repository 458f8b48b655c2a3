/* `tpar bench gemm`: every GEMM provider on the model's shapes, side by side in one run.
 *
 * GPT-2 small's linear layers (QKV 768->2304, attention projection 768->768, MLP fc 768->3072,
 * MLP projection 3072->768, LM head 768->50304) at the training row counts (B*T = 2048 and
 * 256): forward (NoTrans, Trans), input gradient (NoTrans, NoTrans, accumulate) and weight
 * gradient (Trans, NoTrans, accumulate); the decode shapes (forward at 1..8 rows); and a
 * 2048^3 square. For each provider: GFLOP/s and GB/s (the operands read and the result
 * written once: the least traffic a GEMM can have, so decode rates compare with the read
 * bandwidth), and each provider's speed over OpenBLAS. Nothing is asserted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_gemm.h"
#include "cli.h"
#include "tpar/kernels.h"

#define CMD "bench gemm"
enum { MAX_LIST = 16, NP = TPAR_GEMM_N_PROVIDERS };

typedef struct {
    int rows[MAX_LIST], nrows;
    int decode[MAX_LIST], ndecode;
    int reps, threads, square;
} opts_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar bench gemm [--rows 2048,256] [--decode 1,2,4,8] [--reps N] [--threads N] [--square N]\n\n"
            "Every GEMM provider (openblas, dnnl, gemv: decode forwards only) on GPT-2 small's linear layers, side by side:\n"
            "QKV 768->2304, proj 768->768, fc 768->3072, fc-proj 3072->768, lm-head 768->50304 at\n"
            "--rows tokens (forward, input gradient and weight gradient, both accumulating), the\n"
            "decode forward at --decode rows, and an N^3 square (--square, 2048; 0 skips it).\n"
            "Columns per provider: GFLOP/s, GB/s (operands read and the result written once) and\n"
            "the rate over OpenBLAS; 'auto' is what TPAR_GEMM=auto picks for the shape's class.\n"
            "Time: best of --reps calls (3) after a warm-up, fewer for calls over half a second.\n"
            "--threads: the OpenMP/OpenBLAS threads (default: all usable cores, as one rank).\n");
}

static int parse_list(const char *opt, const char *s, int lo, int hi, int *out, int *n) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long long v;
        if (*n == MAX_LIST) {
            tpar_cli_error(CMD, "%s: at most %d values", opt, MAX_LIST);
            return -1;
        }
        if (tpar_cli_int(CMD, opt, tok, lo, hi, &v)) return -1;
        out[(*n)++] = (int)v;
    }
    if (!*n) tpar_cli_error(CMD, "%s: empty list", opt);
    return *n ? 0 : -1;
}

typedef struct {
    int ta, tb, M, N, K;
    float beta;
} call_t;

/* Best seconds per call of c in g over reps (after a warm-up call, which alone is the sample
 * when it took over half a second: oneDNN's primitive creation is < 1% of such a call). */
static double time_call(tpar_gemm_ctx_t *g, const call_t *c, int reps, const float *A, const float *B, float *C) {
    int lda = c->ta ? c->M : c->K, ldb = c->tb ? c->K : c->N;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = tpar_now();
        if (!c->ta && c->tb && c->beta == 0.0f) // forward: through the linear, where small-row providers hook in
            tpar_gemm_linear(g, C, A, B, NULL, c->M, c->K, c->N);
        else
            tpar_gemm(g, c->ta, c->tb, c->M, c->N, c->K, 1.0f, A, lda, B, ldb, c->beta, C, c->N);
        double dt = tpar_now() - t0;
        if (r > 0 && dt < best) best = dt;
        if (r == 0 && dt > 0.5) return dt;
    }
    return best;
}

static void row(const char *name, const char *op, const call_t *c, tpar_gemm_ctx_t *const *ctx, tpar_gemm_ctx_t *autoc,
                int reps, const float *A, const float *B, float *C) {
    double flop = 2.0 * c->M * c->N * c->K;
    double bytes = 4.0 * ((double)c->M * c->K + (double)c->K * c->N + (double)c->M * c->N * (c->beta != 0 ? 2 : 1));
    double t[NP] = {0};
    printf("%-10s %-11s %5d %5d %5d |", name, op, c->M, c->N, c->K);
    for (int p = 1; p < NP; p++) {
        if (!ctx[p] || !tpar_gemm_provider_takes((tpar_gemm_provider_t)p, c->ta, c->tb, c->M) ||
            (p == TPAR_GEMM_GEMV && c->beta != 0.0f)) {
            printf(" %8s %7s %6s |", "-", "-", "-");
            continue;
        }
        t[p] = time_call(ctx[p], c, reps, A, B, C);
        printf(" %8.1f %7.1f", flop / t[p] / 1e9, bytes / t[p] / 1e9);
        if (p == TPAR_GEMM_OPENBLAS) printf(" %6s |", "1.00x");
        else printf(" %5.2fx |", t[TPAR_GEMM_OPENBLAS] > 0 ? t[TPAR_GEMM_OPENBLAS] / t[p] : 0);
        fflush(stdout);
    }
    tpar_gemm_provider_t a = tpar_gemm_choice(autoc, c->ta, c->tb, c->M, c->N, c->K);
    char impl[48] = "";
    if (ctx[TPAR_GEMM_DNNL]) tpar_gemm_impl(ctx[TPAR_GEMM_DNNL], c->ta, c->tb, c->M, c->N, c->K, impl, sizeof impl);
    printf(" %-8s %s\n", tpar_gemm_provider_name(a), impl);
}

static int run(const opts_t *o) {
    tpar_err_t err = {0};
    if (tpar_kernels_set_threads(o->threads, &err) || tpar_gemm_init(&err)) {
        tpar_cli_error(CMD, "%s", err.msg);
        return TPAR_EXIT_FAIL;
    }
    static const struct {
        const char *name;
        int in, out;
    } lin[] = {{"qkv", 768, 2304}, {"proj", 768, 768}, {"fc", 768, 3072}, {"fc-proj", 3072, 768}, {"lm-head", 768, 50304}};
    enum { NLIN = sizeof lin / sizeof lin[0] };
    /* the largest operand of any call: each of A, B, C is at most max(rows, 3072) x 50304 */
    size_t maxr = 8, sq = (size_t)o->square, need = sq * sq;
    for (int i = 0; i < o->nrows; i++)
        if ((size_t)o->rows[i] > maxr) maxr = (size_t)o->rows[i];
    for (int i = 0; i < o->ndecode; i++)
        if ((size_t)o->decode[i] > maxr) maxr = (size_t)o->decode[i];
    for (int l = 0; l < NLIN; l++) {
        size_t in = (size_t)lin[l].in, out = (size_t)lin[l].out, m[3] = {maxr * in, maxr * out, in * out};
        for (int k = 0; k < 3; k++) need = m[k] > need ? m[k] : need;
    }
    float *A = tpar_calloc_aligned(need, sizeof(float)), *B = tpar_calloc_aligned(need, sizeof(float)),
          *C = tpar_calloc_aligned(need, sizeof(float));
    tpar_gemm_ctx_t *ctx[NP] = {0}, *autoc = NULL;
    int rc = TPAR_EXIT_OK;
    if (!A || !B || !C) {
        tpar_cli_error(CMD, "out of memory for 3 x %zu floats", need);
        rc = TPAR_EXIT_FAIL;
        goto done;
    }
    for (size_t i = 0; i < need; i++) A[i] = B[i] = C[i] = (float)((i * 7) % 13) * 0.01f; // pages them in
    for (int p = 1; p < NP; p++)
        if (tpar_gemm_ctx_new((tpar_gemm_provider_t)p, &ctx[p], &err)) ctx[p] = NULL; // not available: '-'
    if (tpar_gemm_ctx_new(TPAR_GEMM_AUTO, &autoc, &err)) {
        tpar_cli_error(CMD, "%s", err.msg);
        rc = TPAR_EXIT_FAIL;
        goto done;
    }
    tpar_cpu_info_t ci;
    tpar_cpu_info(&ci, 1);
    printf("bench gemm: fp32, %d threads, oneDNN ISA %s, FMA peak %.1f GFLOP/s per core (%d floats x 2 x %d units x "
           "%.2f GHz)\n",
           o->threads, ci.dnnl_isa, ci.peak_flops_per_core / 1e9, ci.vector_floats, ci.fma_units, ci.clock_hz / 1e9);
    printf("%-10s %-11s %5s %5s %5s |", "shape", "op", "M", "N", "K");
    for (int p = 1; p < NP; p++) printf(" %-8.8s GFLOP/s GB/s x-oblas |", tpar_gemm_provider_name((tpar_gemm_provider_t)p));
    printf(" auto     dnnl impl\n");
    for (int r = 0; r < o->nrows; r++) {
        int n = o->rows[r];
        for (int l = 0; l < NLIN; l++) {
            call_t f = {0, 1, n, lin[l].out, lin[l].in, 0.0f};        // out (n, OC) = x (n, C) W^T
            call_t d = {0, 0, n, lin[l].in, lin[l].out, 1.0f};        // dx (n, C) += dy (n, OC) W
            call_t w = {1, 0, lin[l].out, lin[l].in, n, 1.0f};        // dW (OC, C) += dy^T x
            row(lin[l].name, "forward", &f, ctx, autoc, o->reps, A, B, C);
            row(lin[l].name, "input grad", &d, ctx, autoc, o->reps, A, B, C);
            row(lin[l].name, "weight grad", &w, ctx, autoc, o->reps, A, B, C);
        }
    }
    for (int r = 0; r < o->ndecode; r++)
        for (int l = 0; l < NLIN; l++) {
            call_t f = {0, 1, o->decode[r], lin[l].out, lin[l].in, 0.0f};
            row(lin[l].name, "decode fwd", &f, ctx, autoc, o->reps, A, B, C);
        }
    if (o->square) {
        call_t s = {0, 1, o->square, o->square, o->square, 0.0f};
        row("square", "forward", &s, ctx, autoc, o->reps, A, B, C);
    }
    printf("x-oblas: the provider's rate over OpenBLAS on the same call, measured here; auto: the provider\n"
           "TPAR_GEMM=auto chose for the shape's class (measured on the class's probe shape, see tpar info).\n");
done:
    for (int p = 1; p < NP; p++) tpar_gemm_ctx_free(ctx[p]);
    tpar_gemm_ctx_free(autoc);
    tpar_free(A), tpar_free(B), tpar_free(C);
    return rc;
}

int tpar_bench_gemm(int argc, char **argv) {
    static const struct option longopts[] = {
        {"rows", required_argument, NULL, 'r'},    {"decode", required_argument, NULL, 'd'},
        {"reps", required_argument, NULL, 'n'},    {"threads", required_argument, NULL, 't'},
        {"square", required_argument, NULL, 's'},  {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    opts_t o = {{2048, 256}, 2, {1, 2, 4, 8}, 4, 3, tpar_kernels_usable_cores(), 2048};
    int c;
    long long v;
    while ((c = tpar_cli_getopt(CMD, argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case 'r':
            if (parse_list("--rows", optarg, 1, 1 << 16, o.rows, &o.nrows)) return TPAR_EXIT_USAGE;
            break;
        case 'd':
            if (parse_list("--decode", optarg, 1, 64, o.decode, &o.ndecode)) return TPAR_EXIT_USAGE;
            break;
        case 'n':
            if (tpar_cli_int(CMD, "--reps", optarg, 1, 1000, &v)) return TPAR_EXIT_USAGE;
            o.reps = (int)v;
            break;
        case 't':
            if (tpar_cli_int(CMD, "--threads", optarg, 1, 4096, &v)) return TPAR_EXIT_USAGE;
            o.threads = (int)v;
            break;
        case 's':
            if (tpar_cli_int(CMD, "--square", optarg, 0, 8192, &v)) return TPAR_EXIT_USAGE;
            o.square = (int)v;
            break;
        case 'h': usage(stdout); return TPAR_EXIT_OK;
        default: return TPAR_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        tpar_cli_error(CMD, "unexpected argument '%s'", argv[optind]);
        return TPAR_EXIT_USAGE;
    }
    return run(&o);
}
