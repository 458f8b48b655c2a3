/* The small-M matmul (src/kernels/gemv.h), both its paths (the build's: AVX-512 where compiled
 * for it; and the portable one), against the plain reference tpar_ref_matmul_forward (double
 * accumulation):
 *   - N = 1..8 (and 11: chunks of 8), C and OC among 1, 7, 63, 4097 (edge sizes around the 16-wide
 *     lanes and the row blocks), 768 and 3072 (GPT-2's), with and without bias; nothing written
 *     past out (N, OC);
 *   - bitwise identical results with 1 and 2 OpenMP threads, and for any slice of output rows
 *     (as a rank of a TP group holds them): the per-element order depends on C only.
 * Tolerance, per element: the float sum of C products in 16 interleaved partial sums is a chain
 * of ceil(C/16) FMAs per lane, then 4 tree levels and the bias: each result carries at most
 * (ceil(C/16) + 6) unit roundoffs (2^-24) of sum |x_c w_c| + |b| (the standard gamma_n bound of
 * a recursive sum; + 1 for the final rounding), which the double reference computes exactly
 * enough. */
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "kernels/gemv.h"
#include "kernels_ref.h"
#include "ktest.h"

typedef void gemv_fn(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);

static const struct {
    const char *name;
    gemv_fn *fn;
} paths[] = {{"build", tpar_gemv_forward}, {"portable", tpar_gemv_forward_portable}};

enum { GUARD = 16 };
#define GUARD_VALUE 1234.5f

/* got vs the reference within the bound above; says which element failed first. */
static void check_vs_ref(const char *what, const float *got, const float *inp, const float *w, const float *b, int N,
                         int C, int OC) {
    float *ref = kt_zeros((size_t)N * OC);
    tpar_ref_matmul_forward(ref, inp, w, b, N, C, OC);
    double u = ldexp(1.0, -24), k = (C + 15) / 16 + 6;
    int bad = -1;
    for (int n = 0; n < N && bad < 0; n++)
        for (int o = 0; o < OC; o++) {
            double mag = b ? fabs((double)b[o]) : 0.0;
            for (int c = 0; c < C; c++) mag += fabs((double)inp[(size_t)n * C + c] * w[(size_t)o * C + c]);
            size_t i = (size_t)n * OC + o;
            if (!(fabs((double)got[i] - ref[i]) <= k * u * mag)) {
                bad = (int)i;
                break;
            }
        }
    if (!CHECK(bad < 0))
        fprintf(stderr, "  %s: element %d: %.9g, reference %.9g\n", what, bad, (double)got[bad], (double)ref[bad]);
}

/* One shape on one path: vs the reference, guard untouched, and bitwise with 1 and 2 threads. */
static void check_shape(int p, int N, int C, int OC, int with_bias) {
    char what[160];
    snprintf(what, sizeof what, "%s path, N=%d C=%d OC=%d %s", paths[p].name, N, C, OC, with_bias ? "bias" : "no bias");
    float *inp = kt_rand((size_t)N * C, -1.0f, 1.0f);
    float *w = kt_rand((size_t)OC * C, -1.0f, 1.0f);
    float *b = with_bias ? kt_rand((size_t)OC, -1.0f, 1.0f) : NULL;
    float *out1 = kt_zeros((size_t)N * OC + GUARD), *out2 = kt_zeros((size_t)N * OC + GUARD);
    for (int i = 0; i < GUARD; i++) out1[(size_t)N * OC + i] = GUARD_VALUE;
    omp_set_num_threads(1);
    paths[p].fn(out1, inp, w, b, N, C, OC);
    omp_set_num_threads(2);
    paths[p].fn(out2, inp, w, b, N, C, OC);
    check_vs_ref(what, out1, inp, w, b, N, C, OC);
    int guard_ok = 1;
    for (int i = 0; i < GUARD; i++) guard_ok &= out1[(size_t)N * OC + i] == GUARD_VALUE;
    CHECK(guard_ok);
    if (!CHECK(!memcmp(out1, out2, (size_t)N * OC * sizeof(float))))
        fprintf(stderr, "  %s: 1 and 2 threads differ\n", what);
    kt_free_all();
}

/* Output rows [o0, o1) computed alone (weights and bias from row o0, as a rank holds a slice)
 * equal those columns of the whole product, bitwise, at 1 and 2 threads. */
static void check_slices(int p, int N, int C, int OC) {
    float *inp = kt_rand((size_t)N * C, -1.0f, 1.0f), *w = kt_rand((size_t)OC * C, -1.0f, 1.0f);
    float *b = kt_rand((size_t)OC, -1.0f, 1.0f), *full = kt_zeros((size_t)N * OC), *part = kt_zeros((size_t)N * OC);
    omp_set_num_threads(2);
    paths[p].fn(full, inp, w, b, N, C, OC);
    const int cuts[][2] = {{0, 1}, {1, 8}, {5, OC / 2}, {OC / 2, OC}, {3, OC - 1}};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        int o0 = cuts[k][0], n_o = cuts[k][1] - o0, ok = 1;
        for (int t = 1; t <= 2; t++) {
            omp_set_num_threads(t);
            paths[p].fn(part, inp, w + (size_t)o0 * C, b + o0, N, C, n_o); // (N, n_o)
            for (int n = 0; n < N; n++)
                ok &= !memcmp(part + (size_t)n * n_o, full + (size_t)n * OC + o0, (size_t)n_o * sizeof(float));
        }
        if (!CHECK(ok))
            fprintf(stderr, "  %s path: rows [%d, %d) of N=%d C=%d OC=%d differ from the whole\n", paths[p].name, o0,
                    cuts[k][1], N, C, OC);
    }
    kt_free_all();
}

int main(void) {
    kt_seed(13);
    const int sizes[] = {1, 7, 63, 4097};
    for (int p = 0; p < 2; p++) {
        for (int N = 1; N <= 8; N++)
            for (int ic = 0; ic < 4; ic++)
                for (int io = 0; io < 4; io++) {
                    int C = sizes[ic], OC = sizes[io];
                    if (C == 4097 && OC == 4097 && N != 1 && N != 8) continue; // the largest: its ends suffice
                    for (int with_bias = 0; with_bias < 2; with_bias++) check_shape(p, N, C, OC, with_bias);
                }
        check_shape(p, 11, 63, 70, 1); // N > 8: two passes
        for (int N = 1; N <= 8; N += 7) {
            check_shape(p, N, 768, 3072, 1); // GPT-2's MLP, past the threshold for threads
            check_shape(p, N, 3072, 768, 0);
            check_slices(p, N, 768, 2304);
        }
        check_slices(p, 3, 4097, 63);
    }
    return check_finish("test_gemv");
}
