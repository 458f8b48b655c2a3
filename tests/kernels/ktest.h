/* Helpers shared by the kernel tests: deterministic random data, scratch buffers, and
 * tolerance checks relative to a tensor's scale. */
#ifndef TPAR_TESTS_KTEST_H
#define TPAR_TESTS_KTEST_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tpar/kernels.h"

/* A fixed-seed generator so every run sees the same data. */
static uint64_t kt_state_ = 0x2545F4914F6CDD1Dull;
static inline void kt_seed(uint64_t s) { kt_state_ = s * 0x9E3779B97F4A7C15ull + 1; }
static inline double kt_unif(void) { /* [0, 1) */
    kt_state_ ^= kt_state_ << 13;
    kt_state_ ^= kt_state_ >> 7;
    kt_state_ ^= kt_state_ << 17;
    return (double)(kt_state_ >> 11) * (1.0 / 9007199254740992.0);
}
static inline float kt_randf(float lo, float hi) { return lo + (hi - lo) * (float)kt_unif(); }

/* Tensors are freed at exit by the kt_free_all below; tests stay short. */
#define KT_MAX_BUFS 256
static void *kt_bufs_[KT_MAX_BUFS];
static int kt_nbufs_;
static inline float *kt_zeros(size_t n) {
    float *p = tpar_calloc_aligned(n, sizeof(float));
    if (!p || kt_nbufs_ == KT_MAX_BUFS) {
        fprintf(stderr, "out of memory in test\n");
        exit(1);
    }
    kt_bufs_[kt_nbufs_++] = p;
    return p;
}
static inline float *kt_rand(size_t n, float lo, float hi) {
    float *p = kt_zeros(n);
    for (size_t i = 0; i < n; i++) p[i] = kt_randf(lo, hi);
    return p;
}
static inline float *kt_copy(const float *src, size_t n) {
    float *p = kt_zeros(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}
static inline void kt_free_all(void) {
    while (kt_nbufs_) tpar_free(kt_bufs_[--kt_nbufs_]);
}

static inline double kt_rms(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? sqrt(s / n) : 0.0;
}

/* Fast vs reference: |got - ref| <= tol * |ref| + tol * rms(ref). The rms term is the
 * absolute floor: a float32 sum of K terms carries an error relative to the size of its
 * terms, not of its (possibly cancelling) result. */
#define KT_CLOSE(name, ref, got, n, tol) \
    CHECK_CLOSE_F32(name, ref, got, n, tol, (tol) * (kt_rms(ref, n) > 0 ? kt_rms(ref, n) : 1.0))

#endif /* TPAR_TESTS_KTEST_H */
