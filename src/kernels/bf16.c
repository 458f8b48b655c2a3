/* fp32 <-> bf16 conversion (include/tpar/kernels.h, bfloat16 section).
 *
 * The rounding rule is the AVX512-BF16 instruction's (VCVTNE2PS2BF16 / VCVTNEPS2BF16): round to
 * nearest even by adding 0x7FFF + (bit 16) to the fp32 bits; NaN -> its top 16 bits with the
 * quiet bit (0x0040) set; fp32 denormals -> signed zero (the instruction treats them as zero).
 * The portable loop implements the same rule bit for bit, so AVX512-BF16 builds and others
 * produce the same bf16 (test_bf16 checks them against each other on every special case).
 *
 * Threads: fixed blocks of CVT_BLOCK elements, a multiple of the 32-wide vector step, so the
 * vector/tail split inside a block never depends on the thread count (kmath.h's rule; each
 * element is converted on its own anyway). */
#include <string.h>

#include "kmath.h"
#include "tpar/kernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

enum { CVT_BLOCK = 8192 };

tpar_bf16_t tpar_bf16_from_float(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7F800000u) == 0) return (tpar_bf16_t)((u >> 16) & 0x8000u); // zero, denormal: signed zero
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (tpar_bf16_t)((u >> 16) | 0x0040u); // NaN: stays NaN
    u += 0x7FFFu + ((u >> 16) & 1u); // ties to even; carries into the exponent (up to Inf) as it should
    return (tpar_bf16_t)(u >> 16);
}

float tpar_bf16_to_float(tpar_bf16_t x) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void to_bf16_portable(tpar_bf16_t *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = tpar_bf16_from_float(inp[i]);
}

static void to_bf16_block(tpar_bf16_t *out, const float *inp, size_t n) {
    size_t i = 0;
#if defined(__AVX512BF16__)
    for (; i + 32 <= n; i += 32) {
        /* cvtne2ps(a, b): b's 16 values in the low half, a's in the high half */
        __m512bh r = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(inp + i + 16), _mm512_loadu_ps(inp + i));
        _mm512_storeu_si512((void *)(out + i), (__m512i)r);
    }
#endif
    to_bf16_portable(out + i, inp + i, n - i);
}

static void to_fp32_block(float *out, const tpar_bf16_t *inp, size_t n) {
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(inp + i)));
        _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
#endif
    for (; i < n; i++) out[i] = tpar_bf16_to_float(inp[i]);
}

void tpar_fp32_to_bf16(tpar_bf16_t *out, const float *inp, size_t n) {
    long long nb = (long long)((n + CVT_BLOCK - 1) / CVT_BLOCK);
#pragma omp parallel for schedule(static) if (n >= 4 * (size_t)KPAR_MIN && kthreads() > 1)
    for (long long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * CVT_BLOCK, len = n - i0 < CVT_BLOCK ? n - i0 : CVT_BLOCK;
        to_bf16_block(out + i0, inp + i0, len);
    }
}

void tpar_fp32_to_bf16_portable(tpar_bf16_t *out, const float *inp, size_t n) { to_bf16_portable(out, inp, n); }

void tpar_bf16_to_fp32(float *out, const tpar_bf16_t *inp, size_t n) {
    long long nb = (long long)((n + CVT_BLOCK - 1) / CVT_BLOCK);
#pragma omp parallel for schedule(static) if (n >= 4 * (size_t)KPAR_MIN && kthreads() > 1)
    for (long long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * CVT_BLOCK, len = n - i0 < CVT_BLOCK ? n - i0 : CVT_BLOCK;
        to_fp32_block(out + i0, inp + i0, len);
    }
}
