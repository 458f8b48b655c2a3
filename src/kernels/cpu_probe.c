/* tpar_cpu_info: the CPU's vector features (cpuid) and, measured, its clock and FMA
 * throughput: the theoretical fp32 peak printed beside the measured GEMM peak.
 *
 * Clock: a chain of dependent register-register integer adds retires one add per cycle on
 * every x86 core (the loop's own counter runs beside it on other ports), so adds / seconds is
 * the clock the core runs scalar code at. (Add-immediate chains will not do: Intel's Golden
 * Cove cores fold them in the renamer and run several a cycle; we measured "15 GHz".) FMA: 12 independent chains of fused multiply-adds on the widest
 * vector ISA (12 > latency 4 x 2 ports), so FLOPs / seconds is the core's vector
 * throughput, including any AVX-512 frequency drop; over the clock and the vector width it
 * gives the FMA units (1 or 2 on today's x86). Best of 15 short samples each (~25 ms in all): a loaded machine preempts some. */
#include <stdio.h>
#include <string.h>

#include "gemm_internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

static double clock_hz(void) {
    const long iters = 2000000; /* adds per sample, ~0.7 ms: shorter than a time slice */
    volatile long one_v = 1;
    long one = one_v; /* a register the renamer cannot know: Golden Cove folds add-immediate chains */
    double best = 0;
    for (int s = 0; s < 15; s++) { /* best of 15: a shared machine preempts some samples */
        long x = 0;
        double t0 = tpar_now();
        for (long i = 0; i < iters; i += 10)
            __asm__ volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                             "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
                             : "+r"(x)
                             : "r"(one));
        double dt = tpar_now() - t0;
        if (x == iters && dt > 0 && iters / dt > best) best = iters / dt;
    }
    return best;
}

/* 12 independent chains in named variables (an array may live in memory in unoptimised or
 * sanitizer builds, and then a load-store chain is what gets timed). */
#define FMA_CHAINS 12
#define FMA_BODY(T, SET1, FMADD, ADD)                                                                   \
    T m = SET1(0.999999f), a = SET1(1e-7f);                                                          \
    T x0 = SET1(0), x1 = SET1(1), x2 = SET1(2), x3 = SET1(3), x4 = SET1(4), x5 = SET1(5);            \
    T x6 = SET1(6), x7 = SET1(7), x8 = SET1(8), x9 = SET1(9), x10 = SET1(10), x11 = SET1(11);        \
    double t0 = tpar_now();                                                                          \
    for (long i = 0; i < iters; i++) {                                                               \
        x0 = FMADD(x0, m, a), x1 = FMADD(x1, m, a), x2 = FMADD(x2, m, a), x3 = FMADD(x3, m, a);      \
        x4 = FMADD(x4, m, a), x5 = FMADD(x5, m, a), x6 = FMADD(x6, m, a), x7 = FMADD(x7, m, a);      \
        x8 = FMADD(x8, m, a), x9 = FMADD(x9, m, a), x10 = FMADD(x10, m, a), x11 = FMADD(x11, m, a);  \
    }                                                                                                \
    double dt = tpar_now() - t0;                                                                     \
    T s = ADD(ADD(ADD(ADD(x0, x1), ADD(x2, x3)), ADD(ADD(x4, x5), ADD(x6, x7))),                     \
              ADD(ADD(x8, x9), ADD(x10, x11)))

__attribute__((target("avx512f"))) static double fma_rate_512(long iters) {
    FMA_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return dt > 0 ? 2.0 * 16 * FMA_CHAINS * (double)iters / dt : 0;
}

__attribute__((target("avx2,fma"))) static double fma_rate_256(long iters) {
    FMA_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps);
    float v[8];
    _mm256_storeu_ps(v, s);
    volatile float sink = v[0];
    (void)sink;
    return dt > 0 ? 2.0 * 8 * FMA_CHAINS * (double)iters / dt : 0;
}

static void features(tpar_cpu_info_t *o) {
    __builtin_cpu_init();
    o->avx2 = __builtin_cpu_supports("avx2") != 0;
    o->fma = __builtin_cpu_supports("fma") != 0;
    o->avx512f = __builtin_cpu_supports("avx512f") != 0; /* also checks the OS saves zmm state */
    unsigned a, b, c, d;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        o->amx_bf16 = (d >> 22) & 1;
        o->amx_tile = (d >> 24) & 1;
        if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) o->avx512_bf16 = o->avx512f && ((a >> 5) & 1);
    }
}
#else
static double clock_hz(void) { return 0; }
static void features(tpar_cpu_info_t *o) { (void)o; }
#endif

void tpar_cpu_info(tpar_cpu_info_t *out, int measure) {
    memset(out, 0, sizeof *out);
    features(out);
    out->vector_floats = out->avx512f ? 16 : out->avx2 && out->fma ? 8 : 4;
    snprintf(out->dnnl_isa, sizeof out->dnnl_isa, "%s", gemm_dnnl_isa());
    if (!measure) return;
    out->measured = 1;
    out->clock_hz = clock_hz();
#if defined(__x86_64__)
    for (int s = 0; s < 15; s++) { /* ~1 ms each */
        double f = out->avx512f ? fma_rate_512(400000) : out->vector_floats == 8 ? fma_rate_256(400000) : 0;
        if (f > out->fma_flops_per_s) out->fma_flops_per_s = f;
    }
#endif
    if (out->clock_hz > 0 && out->fma_flops_per_s > 0) {
        double u = out->fma_flops_per_s / out->clock_hz / (2.0 * out->vector_floats);
        out->fma_units = (int)(u + 0.5);
        if (out->fma_units < 1) out->fma_units = 1;
    }
    out->peak_flops_per_core = out->vector_floats * 2.0 * out->fma_units * out->clock_hz;
}
