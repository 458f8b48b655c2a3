/* Private inline math for the kernels: an expf the compiler can vectorize.
 *
 * glibc's expf/tanhf are scalar calls unless -ffast-math is on, and exp/tanh sit in the
 * inner loops of GELU, softmax, attention and cross-entropy. This is the Cephes expf
 * (range reduction by ln 2, degree-5 polynomial, exponent bits set directly): about
 * 1-2 ulp on [-87, 88], no branches, no calls, so `#pragma omp simd` loops vectorize. */
#ifndef TPAR_KERNELS_KMATH_H
#define TPAR_KERNELS_KMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- threads -----------------------------------------------------------------------------
 * The large kernels share their work among the rank's OpenMP threads (omp_set_num_threads,
 * set once per rank). The determinism rule: the bits of every result are the same for any
 * thread count. So each output element is produced by one thread, by the same sequence of
 * operations as with one thread; sums across rows either run over a fixed partition whose
 * partial sums are added in a fixed order (cross-entropy's loss), or are split by columns
 * (kcols below). Elementwise loops run over fixed blocks, so that where a vector loop ends
 * and its scalar remainder starts never depends on the thread count. Small calls stay on
 * the calling thread. */

/* Below this many floats touched, a parallel region costs more than it saves. */
enum { KPAR_MIN = 1 << 15 };

static inline int kthreads(void) {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}
/* Column range [*j0, *j1) of part `p` of `np` over C columns, cut at multiples of 16.
 * Kernels that sum over rows into a (C) vector (dbias, dweight, an embedding row) give
 * each thread whole columns, and the thread adds every row into them in row order: the
 * sum of each column is the same sequence of additions for any number of parts, so the
 * parts may follow the thread count (wide ranges: few pages and long streams per row). */
static inline void kcols(int p, int np, int C, int *j0, int *j1) {
    const int n16 = (C + 15) / 16;
    const int a = (int)((long long)n16 * p / np) * 16, b = (int)((long long)n16 * (p + 1) / np) * 16;
    *j0 = a < C ? a : C;
    *j1 = b < C ? b : C;
}

static inline int kthread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline float kexp(float x) {
    /* Clamp: below -87.3 the result underflows (returns ~1e-38, close enough to 0 for
     * softmax weights); above 88.3 it would overflow the exponent bits. */
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    /* n = round(x / ln2) with the 1.5*2^23 trick (exact under round-to-nearest). */
    const float shifter = 12582912.0f;
    float t = x * 1.44269504088896341f + shifter;
    float n = t - shifter;
    float r = x - n * 0.693359375f;  /* ln2 split in two for an exact product */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    /* y * 2^n through the exponent field; n is in [-126, 127] after the clamp and sits in
     * the low mantissa bits of t (no float->int conversion, so NaN stays defined). */
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t bits = (tb - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* The row pieces of every softmax here (softmax, attention, cross-entropy). */
static inline float kmax_row(const float *x, int n) { /* n >= 1 */
    float mx = x[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* out[j] = exp(x[j] - mx); returns the sum. out may alias x. */
static inline float kexp_row(float *out, const float *x, int n, float mx) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        float e = kexp(x[j] - mx);
        out[j] = e;
        sum += e;
    }
    return sum;
}

static inline void kscale_row(float *x, int n, float f) {
#pragma omp simd
    for (int j = 0; j < n; j++) x[j] *= f;
}

#endif /* TPAR_KERNELS_KMATH_H */
