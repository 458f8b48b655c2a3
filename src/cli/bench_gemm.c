/* `tpar bench gemm`: every GEMM provider on the model's shapes, side by side in one run.
 *
 * GPT-2 small's linear layers (QKV 768->2304, attention projection 768->768, MLP fc 768->3072,
 * MLP projection 3072->768, LM head 768->50304) at the training row counts (B*T = 2048 and
 * 256): forward (NoTrans, Trans), input gradient (NoTrans, NoTrans, accumulate) and weight
 * gradient (Trans, NoTrans, accumulate); the decode shapes (forward at 1..8 rows); and a
 * 2048^3 square. For each provider: GFLOP/s and GB/s (the operands read and the result
 * written once: the least traffic a GEMM can have, so decode rates compare with the read
 * bandwidth), and each provider's speed over OpenBLAS. Then the precision sections (issue #17): the
 * same training shapes in fp32 and bf16 (oneDNN, alternated), and decode of a whole gpt2-124m token
 * with fp32, bf16 and int8 (q8) weights through the small-M GEMVs, each tensor its own buffer so the
 * weights stream from memory: GB/s, tokens/s bound and the ratio to fp32. Nothing is asserted. */
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
    int providers, precision; /* the sections to run (--no-providers, --no-precision) */
    int layers;               /* decode model: transformer layers (12: gpt2-124m) */
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
            "--threads: the OpenMP/OpenBLAS threads (default: all usable cores, as one rank).\n\n"
            "Precision (issue #17; --no-precision skips it, --no-providers runs it alone):\n"
            "  GEMM fp32 vs bf16 (oneDNN; bf16 inputs, fp32 accumulation) on the same shapes, GFLOP/s and ratio;\n"
            "  decode: a whole gpt2-124m token's weights (--layers 12 blocks of qkv, proj, fc, fc-proj, and the\n"
            "  768x50304 head), each tensor its own buffer (streamed from memory), through the small-M GEMV with\n"
            "  fp32, bf16 and int8 (q8, blocks of 32) weights at each --decode row count: GB/s of weights read,\n"
            "  tokens/s bound of the GEMVs alone, and the ratio to fp32, measured side by side in one run.\n");
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

/* ---- precision ------------------------------------------------------------------------------ */

/* Best seconds per call of the bf16 GEMM (A, B: bf16 copies of the fp32 operands' first bytes). */
static double time_bf16(tpar_gemm_ctx_t *g, const call_t *c, int reps, const tpar_bf16_t *A, const tpar_bf16_t *B,
                        float *C) {
    int lda = c->ta ? c->M : c->K, ldb = c->tb ? c->K : c->N;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = tpar_now();
        tpar_gemm_bf16(g, c->ta, c->tb, c->M, c->N, c->K, 1.0f, A, lda, B, ldb, c->beta, C, c->N);
        double dt = tpar_now() - t0;
        if (r > 0 && dt < best) best = dt;
        if (r == 0 && dt > 0.5) return dt;
    }
    return best;
}

static void bf16_row(const char *name, const char *op, const call_t *c, tpar_gemm_ctx_t *g, int reps, const float *A,
                     const float *B, float *C) {
    double flop = 2.0 * c->M * c->N * c->K;
    size_t na = (size_t)c->M * c->K, nb = (size_t)c->K * c->N;
    tpar_bf16_t *a = tpar_calloc_aligned(na, 2), *b = tpar_calloc_aligned(nb, 2);
    if (!a || !b) {
        printf("%-10s %-11s out of memory\n", name, op);
        tpar_free(a), tpar_free(b);
        return;
    }
    tpar_fp32_to_bf16(a, A, na);
    tpar_fp32_to_bf16(b, B, nb);
    /* alternate fp32 and bf16 (twice each) so load on the machine hits both alike */
    double t32 = 1e30, t16 = 1e30;
    for (int k = 0; k < 2; k++) {
        double x = time_call(g, c, reps, A, B, C), y = time_bf16(g, c, reps, a, b, C);
        t32 = x < t32 ? x : t32, t16 = y < t16 ? y : t16;
    }
    char impl[48] = "";
    tpar_gemm_bf16_impl(g, c->ta, c->tb, c->M, c->N, c->K, impl, sizeof impl);
    printf("%-10s %-11s %5d %5d %5d | %9.1f %9.1f %5.2fx | %s\n", name, op, c->M, c->N, c->K, flop / t32 / 1e9,
           flop / t16 / 1e9, t32 / t16, impl);
    fflush(stdout);
    tpar_free(a), tpar_free(b);
}

/* gpt2-124m's decode weights in one dtype: every tensor its own buffer, as a model holds them. */
enum { DEC_KINDS = 5, DEC_MAXROWS = 64 };
static const struct {
    const char *name;
    int in, out;
} dec_lin[DEC_KINDS] = {{"qkv", 768, 2304}, {"proj", 768, 768}, {"fc", 768, 3072}, {"fc-proj", 3072, 768},
                        {"lm-head", 768, 50304}};

typedef struct {
    void *w[DEC_KINDS][96]; /* [kind][layer]; the head has layer 0 only */
    float *s[DEC_KINDS][96]; /* q8 scales */
} dec_model_t;

static int dec_count(int kind, int layers) { return kind == DEC_KINDS - 1 ? 1 : layers; }

static void dec_free(dec_model_t *m) {
    for (int k = 0; k < DEC_KINDS; k++)
        for (int l = 0; l < 96; l++) tpar_free(m->w[k][l]), tpar_free(m->s[k][l]);
}

/* dtype 0 fp32, 1 bf16, 2 q8. -1 out of memory. */
static int dec_alloc(dec_model_t *m, int dtype, int layers, const float *src) {
    memset(m, 0, sizeof *m);
    for (int k = 0; k < DEC_KINDS; k++)
        for (int l = 0; l < dec_count(k, layers); l++) {
            size_t n = (size_t)dec_lin[k].in * dec_lin[k].out;
            size_t esz = dtype == 0 ? 4 : dtype == 1 ? 2 : 1;
            if (!(m->w[k][l] = tpar_calloc_aligned(n, esz))) return -1;
            if (dtype == 0) memcpy(m->w[k][l], src, n * 4);
            if (dtype == 1) tpar_fp32_to_bf16(m->w[k][l], src, n);
            if (dtype == 2) {
                size_t ns = (size_t)dec_lin[k].out * tpar_q8_blocks(dec_lin[k].in);
                if (!(m->s[k][l] = tpar_calloc_aligned(ns, 4))) return -1;
                if (tpar_q8_quantize(m->w[k][l], m->s[k][l], src, dec_lin[k].out, dec_lin[k].in, NULL)) return -1;
            }
        }
    return 0;
}

/* One token pass (N rows) over the model: seconds per kind added to t. */
/* fp32 goes through a context forced to the gemv provider: its linear for <= 8 rows, as decode runs. */
static void dec_pass(tpar_gemm_ctx_t *g, const dec_model_t *m, int dtype, int layers, int N, const float *x, float *out,
                     double *t) {
    for (int l = 0; l < layers; l++)
        for (int k = 0; k < DEC_KINDS; k++) {
            if (l >= dec_count(k, layers)) continue;
            int C = dec_lin[k].in, OC = dec_lin[k].out;
            double t0 = tpar_now();
            if (dtype == 0) tpar_gemm_linear(g, out, x, m->w[k][l], NULL, N, C, OC);
            else if (dtype == 1) tpar_gemv_forward_bf16(out, x, m->w[k][l], NULL, N, C, OC);
            else tpar_gemv_forward_q8(out, x, m->w[k][l], m->s[k][l], NULL, N, C, OC);
            t[k] += tpar_now() - t0;
        }
}

static int decode_weights(const opts_t *o, tpar_gemm_ctx_t *g) {
    static const char *const dn[3] = {"fp32", "bf16", "int8"};
    size_t maxw = (size_t)768 * 50304;
    float *src = tpar_calloc_aligned(maxw, 4), *x = tpar_calloc_aligned((size_t)DEC_MAXROWS * 3072, 4),
          *out = tpar_calloc_aligned((size_t)DEC_MAXROWS * 50304, 4);
    dec_model_t *m = calloc(3, sizeof *m);
    int rc = TPAR_EXIT_OK;
    if (!src || !x || !out || !m) goto oom;
    for (size_t i = 0; i < maxw; i++) src[i] = (float)((int)((i * 2654435761u) % 2001) - 1000) * 1e-4f;
    for (size_t i = 0; i < (size_t)DEC_MAXROWS * 3072; i++) x[i] = (float)((i * 7) % 13) * 0.01f;
    for (int d = 0; d < 3; d++)
        if (dec_alloc(&m[d], d, o->layers, src)) goto oom;
    double bytes[3] = {0}, params = 0;
    for (int k = 0; k < DEC_KINDS; k++) {
        double n = (double)dec_lin[k].in * dec_lin[k].out * dec_count(k, o->layers);
        params += n;
        bytes[0] += 4 * n, bytes[1] += 2 * n, bytes[2] += n + 4 * n / TPAR_Q8_BLOCK;
    }
    printf("\ndecode weights: gpt2-124m's GEMVs (%d layers + head, %.1f M weights; %.0f / %.0f / %.0f MB a token in "
           "fp32 / bf16 / int8), %d threads\n",
           o->layers, params / 1e6, bytes[0] / 1e6, bytes[1] / 1e6, bytes[2] / 1e6, o->threads);
    printf("%4s %-8s | %9s %9s %9s | %8s %8s %8s | %6s %6s\n", "rows", "tensor", "fp32 GB/s", "bf16 GB/s", "int8 GB/s",
           "fp32 ms", "bf16 ms", "int8 ms", "bf16 x", "int8 x");
    for (int r = 0; r < o->ndecode; r++) {
        int N = o->decode[r] < DEC_MAXROWS ? o->decode[r] : DEC_MAXROWS;
        double best[3][DEC_KINDS], tot[3];
        for (int d = 0; d < 3; d++) {
            tot[d] = 1e30;
            for (int k = 0; k < DEC_KINDS; k++) best[d][k] = 1e30;
        }
        /* rounds alternate the dtypes, so load hits them alike; round 0 warms up */
        for (int rep = 0; rep <= o->reps; rep++)
            for (int d = 0; d < 3; d++) {
                double t[DEC_KINDS] = {0}, s = 0;
                dec_pass(g, &m[d], d, o->layers, N, x, out, t);
                if (!rep) continue;
                for (int k = 0; k < DEC_KINDS; k++) best[d][k] = t[k] < best[d][k] ? t[k] : best[d][k], s += t[k];
                tot[d] = s < tot[d] ? s : tot[d];
            }
        for (int k = 0; k <= DEC_KINDS; k++) {
            double n = k < DEC_KINDS ? (double)dec_lin[k].in * dec_lin[k].out * dec_count(k, o->layers) : params;
            double b[3] = {4 * n, 2 * n, n + 4 * n / TPAR_Q8_BLOCK}, t[3];
            for (int d = 0; d < 3; d++) t[d] = k < DEC_KINDS ? best[d][k] : tot[d];
            printf("%4d %-8s | %9.1f %9.1f %9.1f | %8.3f %8.3f %8.3f | %5.2fx %5.2fx\n", N,
                   k < DEC_KINDS ? dec_lin[k].name : "token", b[0] / t[0] / 1e9, b[1] / t[1] / 1e9, b[2] / t[2] / 1e9,
                   t[0] * 1e3, t[1] * 1e3, t[2] * 1e3, t[0] / t[1], t[0] / t[2]);
        }
        printf("%4d tokens/s bound of the GEMVs: fp32 %.1f, bf16 %.1f (%.2fx), int8 %.1f (%.2fx)\n", N, N / tot[0],
               N / tot[1], tot[0] / tot[1], N / tot[2], tot[0] / tot[2]);
        fflush(stdout);
    }
    printf("GB/s: weight bytes read (int8: 1 byte + 4/32 of a scale each) per second; 'token': the whole pass, the "
           "best round; x: time over fp32's.\n");
    (void)dn;
    goto done;
oom:
    tpar_cli_error(CMD, "out of memory for the decode weights (fp32 + bf16 + int8 copies of gpt2-124m)");
    rc = TPAR_EXIT_FAIL;
done:
    if (m)
        for (int d = 0; d < 3; d++) dec_free(&m[d]);
    free(m);
    tpar_free(src), tpar_free(x), tpar_free(out);
    return rc;
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
    if (o->providers) {
        printf("%-10s %-11s %5s %5s %5s |", "shape", "op", "M", "N", "K");
        for (int p = 1; p < NP; p++)
            printf(" %-8.8s GFLOP/s GB/s x-oblas |", tpar_gemm_provider_name((tpar_gemm_provider_t)p));
        printf(" auto     dnnl impl\n");
    }
    for (int r = 0; r < o->nrows && o->providers; r++) {
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
    for (int r = 0; r < o->ndecode && o->providers; r++)
        for (int l = 0; l < NLIN; l++) {
            call_t f = {0, 1, o->decode[r], lin[l].out, lin[l].in, 0.0f};
            row(lin[l].name, "decode fwd", &f, ctx, autoc, o->reps, A, B, C);
        }
    if (o->square && o->providers) {
        call_t s = {0, 1, o->square, o->square, o->square, 0.0f};
        row("square", "forward", &s, ctx, autoc, o->reps, A, B, C);
    }
    if (o->providers)
        printf("x-oblas: the provider's rate over OpenBLAS on the same call, measured here; auto: the provider\n"
               "TPAR_GEMM=auto chose for the shape's class (measured on the class's probe shape, see tpar info).\n");
    if (o->precision && ctx[TPAR_GEMM_DNNL]) {
        double rw, rn;
        tpar_gemm_bf16_rates(ctx[TPAR_GEMM_DNNL], &rw, &rn);
        printf("\nbf16 vs fp32 GEMM (oneDNN; bf16 path: %s; probe 256x1024x768: widen + fp32 %.1f, oneDNN bf16 %.1f "
               "GFLOP/s)\n",
               tpar_gemm_bf16_native(ctx[TPAR_GEMM_DNNL]) ? "oneDNN's bf16 matmul" : "widen to fp32 + fp32 GEMM", rw, rn);
        printf("%-10s %-11s %5s %5s %5s | %9s %9s %6s | %s\n", "shape", "op", "M", "N", "K", "fp32 GF/s", "bf16 GF/s",
               "ratio", "bf16 impl");
        for (int r = 0; r < o->nrows; r++)
            for (int l = 0; l < NLIN; l++) {
                int n = o->rows[r];
                call_t cs[3] = {{0, 1, n, lin[l].out, lin[l].in, 0.0f},
                                {0, 0, n, lin[l].in, lin[l].out, 1.0f},
                                {1, 0, lin[l].out, lin[l].in, n, 1.0f}};
                static const char *const ops[3] = {"forward", "input grad", "weight grad"};
                for (int k = 0; k < 3; k++) bf16_row(lin[l].name, ops[k], &cs[k], ctx[TPAR_GEMM_DNNL], o->reps, A, B, C);
            }
        if (o->square) {
            call_t sq_ = {0, 1, o->square, o->square, o->square, 0.0f};
            bf16_row("square", "forward", &sq_, ctx[TPAR_GEMM_DNNL], o->reps, A, B, C);
        }
    }
    if (o->precision && o->ndecode && ctx[TPAR_GEMM_GEMV]) rc = decode_weights(o, ctx[TPAR_GEMM_GEMV]);
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
        {"no-providers", no_argument, NULL, 'P'},  {"no-precision", no_argument, NULL, 'Q'},
        {"layers", required_argument, NULL, 'L'},
        {NULL, 0, NULL, 0}};
    opts_t o = {{2048, 256}, 2, {1, 2, 4, 8}, 4, 3, tpar_kernels_usable_cores(), 2048, 1, 1, 12};
    int c;
    long long v;
    while ((c = tpar_cli_getopt(CMD, argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case 'r':
            if (tpar_cli_int_list(CMD, "--rows", optarg, 1, 1 << 16, o.rows, MAX_LIST, &o.nrows)) return TPAR_EXIT_USAGE;
            break;
        case 'd':
            if (tpar_cli_int_list(CMD, "--decode", optarg, 1, 64, o.decode, MAX_LIST, &o.ndecode)) return TPAR_EXIT_USAGE;
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
        case 'P': o.providers = 0; break;
        case 'Q': o.precision = 0; break;
        case 'L':
            if (tpar_cli_int(CMD, "--layers", optarg, 1, 96, &v)) return TPAR_EXIT_USAGE;
            o.layers = (int)v;
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
