/* int8 blockwise weights (include/tpar/kernels.h, int8 section).
 *
 * Quantiser, against its stated rule re-derived here: per block of 32 along C (the last block of
 * a row shorter when C % 32 != 0: its own scale), d = amax / 127, q = nearest-even(w / d) in
 * [-127, 127]; every |w - d q| <= d / 2 (+ the division's rounding: d / 2 (1 + 2^-22)); the
 * block's largest |w| maps to +-127; an all-zero block gives d = 0, q = 0; NaN / Inf and bad
 * sizes are errors that write nothing. Deterministic: run twice at 1 and 2 threads, bitwise.
 *
 * GEMV: tpar_gemv_forward_q8 (both paths) is bitwise the fp32 GEMV (same path) on
 * tpar_q8_dequantize's matrix (fl(d q), the value the kernel makes in registers), at 1 and 2
 * threads and for slices of output rows; within gemv's bound ((ceil(C/16) + 6) u of sum |x w| +
 * |b|, test_gemv.c) of the double reference on the dequantised weights. The accuracy cost of int8
 * against the original fp32 weights is reported (not a kernel property: it is the quantiser's,
 * |w - d q| <= d/2 per weight, so |error| <= sum_c |x_c| d_b(c) / 2 per output, which is checked). */
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "kernels/gemv.h"
#include "kernels_ref.h"
#include "ktest.h"

static void test_quantize(void) {
    const int Cs[] = {1, 7, 32, 63, 4097};
    for (size_t k = 0; k < sizeof Cs / sizeof Cs[0]; k++) {
        int C = Cs[k], OC = 5, nb = tpar_q8_blocks(C);
        float *w = kt_rand((size_t)OC * C, -2, 2);
        for (int c = 0; c < C && c < 32; c++) w[(size_t)2 * C + c] = 0.0f; // row 2, block 0: all zero
        if (C >= 7) w[(size_t)3 * C + 5] = 1.5f * 127 / 127, w[(size_t)3 * C + 6] = 0.5f * 1.5f; // an exact tie-ish pair
        int8_t *q = (int8_t *)kt_zeros((size_t)OC * C / 4 + 1), *q2 = (int8_t *)kt_zeros((size_t)OC * C / 4 + 1);
        float *d = kt_zeros((size_t)OC * nb), *d2 = kt_zeros((size_t)OC * nb), *dq = kt_zeros((size_t)OC * C);
        tpar_err_t err = {0};
        omp_set_num_threads(1);
        CHECK(tpar_q8_quantize(q, d, w, OC, C, &err) == TPAR_OK);
        omp_set_num_threads(2);
        CHECK(tpar_q8_quantize(q2, d2, w, OC, C, &err) == TPAR_OK);
        CHECK(!memcmp(q, q2, (size_t)OC * C) && !memcmp(d, d2, (size_t)OC * nb * 4));
        tpar_q8_dequantize(dq, q, d, OC, C);
        int ok = 1;
        for (int o = 0; o < OC; o++)
            for (int b = 0; b < nb; b++) {
                int c0 = b * 32, c1 = c0 + 32 < C ? c0 + 32 : C;
                float amax = 0;
                for (int c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(w[(size_t)o * C + c]));
                float db = d[(size_t)o * nb + b];
                ok &= db == amax / 127.0f;
                int hit = 0;
                for (int c = c0; c < c1; c++) {
                    size_t i = (size_t)o * C + c;
                    int qi = q[i];
                    ok &= qi >= -127 && qi <= 127;
                    if (db == 0) {
                        ok &= qi == 0;
                        continue;
                    }
                    float r = w[i] / db, f = floorf(r);
                    /* nearest, ties to even, re-derived */
                    int want = r - f > 0.5f ? (int)f + 1 : r - f < 0.5f ? (int)f : (((long)f & 1) ? (int)f + 1 : (int)f);
                    want = want > 127 ? 127 : want < -127 ? -127 : want;
                    ok &= qi == want;
                    ok &= fabs((double)w[i] - (double)db * qi) <= db / 2.0 * (1 + ldexp(1, -22));
                    ok &= dq[i] == db * (float)qi;
                    hit |= abs(qi) == 127 && fabsf(w[i]) == amax;
                }
                ok &= db == 0 || hit;
            }
        if (!CHECK(ok)) fprintf(stderr, "  quantiser rule broken at C=%d\n", C);
        kt_free_all();
    }
    /* errors write nothing */
    float w[40];
    for (int i = 0; i < 40; i++) w[i] = 0.1f * i;
    int8_t q[40];
    float d[2] = {-1, -1};
    memset(q, 0x55, sizeof q);
    tpar_err_t err = {0};
    w[33] = NAN;
    CHECK(tpar_q8_quantize(q, d, w, 1, 40, &err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "finite");
    w[33] = INFINITY;
    CHECK(tpar_q8_quantize(q, d, w, 1, 40, &err) == TPAR_ERR_INVALID_ARG);
    CHECK(q[0] == 0x55 && d[0] == -1);
    CHECK(tpar_q8_quantize(q, d, w, 0, 40, &err) == TPAR_ERR_INVALID_ARG);
    CHECK(tpar_q8_quantize(q, d, w, 1, -3, &err) == TPAR_ERR_INVALID_ARG);
}

typedef void gq8_fn(float *, const float *, const int8_t *, const float *, const float *, int, int, int);
typedef void g32_fn(float *, const float *, const float *, const float *, int, int, int);
static const struct {
    const char *name;
    gq8_fn *fq;
    g32_fn *f32;
} paths[] = {{"build", tpar_gemv_forward_q8, tpar_gemv_forward},
             {"portable", tpar_gemv_forward_q8_portable, tpar_gemv_forward_portable}};

static void check_gemv(int p, int N, int C, int OC, int with_bias) {
    size_t nx = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    int nb = tpar_q8_blocks(C);
    float *x = kt_rand(nx, -1, 1), *b = with_bias ? kt_rand(OC, -1, 1) : NULL, *w = kt_rand(nw, -1, 1);
    int8_t *q = (int8_t *)kt_zeros(nw / 4 + 1);
    float *d = kt_zeros((size_t)OC * nb), *dq = kt_zeros(nw);
    tpar_err_t err = {0};
    CHECK(tpar_q8_quantize(q, d, w, OC, C, &err) == TPAR_OK);
    tpar_q8_dequantize(dq, q, d, OC, C);
    float *o1 = kt_zeros(no + 16), *o2 = kt_zeros(no + 16), *o32 = kt_zeros(no), *ref = kt_zeros(no),
          *reff = kt_zeros(no);
    for (int i = 0; i < 16; i++) o1[no + i] = 1234.5f;
    omp_set_num_threads(1);
    paths[p].fq(o1, x, q, d, b, N, C, OC);
    omp_set_num_threads(2);
    paths[p].fq(o2, x, q, d, b, N, C, OC);
    paths[p].f32(o32, x, dq, b, N, C, OC);
    int guard = 1;
    for (int i = 0; i < 16; i++) guard &= o1[no + i] == 1234.5f;
    int same = !memcmp(o1, o2, no * 4), as32 = !memcmp(o1, o32, no * 4);
    if (!CHECK(guard && same && as32))
        fprintf(stderr, "  gemv q8 %s N=%d C=%d OC=%d: guard %d, 1 vs 2 threads %d, == fp32 gemv on dequantised %d\n",
                paths[p].name, N, C, OC, guard, same, as32);
    tpar_ref_matmul_forward(ref, x, dq, b, N, C, OC);
    tpar_ref_matmul_forward(reff, x, w, b, N, C, OC);
    double u = ldexp(1.0, -24), k = (C + 15) / 16 + 6, worst = 0, worstq = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double mag = b ? fabs((double)b[o]) : 0, qb = 0;
            for (int c = 0; c < C; c++) {
                mag += fabs((double)x[(size_t)n * C + c] * dq[(size_t)o * C + c]);
                qb += fabs((double)x[(size_t)n * C + c]) * d[(size_t)o * nb + c / 32] / 2 * (1 + ldexp(1, -22));
            }
            size_t e = (size_t)n * OC + o;
            double r = fabs((double)o1[e] - ref[e]) / (k * u * mag + 1e-300);
            worst = r > worst || isnan(r) ? (isnan(r) ? 1e30 : r) : worst;
            /* against the original weights: the quantisation bound plus the fp32 one */
            double rq = fabs((double)o1[e] - reff[e]) / (qb + k * u * mag + 1e-300);
            worstq = rq > worstq || isnan(rq) ? (isnan(rq) ? 1e30 : rq) : worstq;
        }
    if (!CHECK(worst <= 1 && worstq <= 1))
        fprintf(stderr, "  gemv q8 %s N=%d C=%d OC=%d: error / bound %.3g (dequantised), %.3g (original)\n",
                paths[p].name, N, C, OC, worst, worstq);
    if (OC >= 8) {
        int o0 = 3, n_o = OC / 2;
        float *part = kt_zeros((size_t)N * n_o);
        paths[p].fq(part, x, q + (size_t)o0 * C, d + (size_t)o0 * nb, b ? b + o0 : NULL, N, C, n_o);
        int ok = 1;
        for (int n = 0; n < N; n++) ok &= !memcmp(part + (size_t)n * n_o, o1 + (size_t)n * OC + o0, (size_t)n_o * 4);
        if (!CHECK(ok)) fprintf(stderr, "  gemv q8 %s: slice of N=%d C=%d OC=%d differs\n", paths[p].name, N, C, OC);
    }
    kt_free_all();
}

int main(void) {
    kt_seed(8);
    test_quantize();
    const int sizes[] = {1, 7, 63, 4097};
    for (int p = 0; p < 2; p++) {
        for (int N = 1; N <= 8; N++)
            for (int ic = 0; ic < 4; ic++)
                for (int io = 0; io < 4; io++) {
                    if (sizes[ic] == 4097 && sizes[io] == 4097 && N != 1 && N != 8) continue;
                    check_gemv(p, N, sizes[ic], sizes[io], (N + ic + io) & 1);
                }
        check_gemv(p, 11, 100, 70, 1); // C = 100: three full blocks and a tail of 4
        check_gemv(p, 4, 768, 3072, 1);
        check_gemv(p, 8, 3072, 768, 0);
    }
    /* what int8 costs, reported: relative rms error of a GPT-2-sized output against fp32 weights */
    {
        int N = 1, C = 768, OC = 2304, nb = tpar_q8_blocks(C);
        float *x = kt_rand((size_t)N * C, -1, 1), *w = kt_rand((size_t)OC * C, -0.1f, 0.1f);
        int8_t *q = (int8_t *)kt_zeros((size_t)OC * C / 4);
        float *d = kt_zeros((size_t)OC * nb), *o = kt_zeros(OC), *r = kt_zeros(OC);
        tpar_err_t err = {0};
        CHECK(tpar_q8_quantize(q, d, w, OC, C, &err) == TPAR_OK);
        tpar_gemv_forward_q8(o, x, q, d, NULL, N, C, OC);
        tpar_ref_matmul_forward(r, x, w, NULL, N, C, OC);
        double e = 0, s = 0;
        for (int i = 0; i < OC; i++) e += (o[i] - r[i]) * (double)(o[i] - r[i]), s += (double)r[i] * r[i];
        printf("q8 vs fp32 weights, 768 -> 2304, uniform weights: relative rms error %.3g\n", sqrt(e / s));
        kt_free_all();
    }
    return check_finish("test_q8");
}
