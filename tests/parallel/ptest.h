/* Helpers of the tensor-parallel tests: every rank builds the same seeded full tensors,
 * computes the single-rank reference itself with the plain tpar_ref_* kernels, runs the
 * parallel layer on its shard, and compares (gathering shards where the layer leaves
 * them split). */
#ifndef TPAR_TESTS_PTEST_H
#define TPAR_TESTS_PTEST_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/ktest.h"
#include "kernels_ref.h"
#include "tpar/comm.h"
#include "tpar/kernels.h"
#include "tpar/parallel.h"

/* Seeded data, buffers (kt_zeros, kt_rand, freed by kt_free_all) and the tolerance check
 * KT_CLOSE come from the kernel tests' helpers: the same seed gives every rank the same
 * numbers. */
/* This rank's shard of a full tensor (the layer's own input or parameter). */
static inline float *pt_shard(const tpar_tp_t *tp, tpar_shard_kind kind, const float *full, int rows, int cols) {
    size_t n = (size_t)rows * cols / (kind == TPAR_SHARD_REPLICATED ? 1 : tp->size);
    float *p = kt_zeros(n);
    tpar_err_t err = {0};
    if (tpar_shard_extract(kind, p, full, rows, cols, tp->size, tp->rank, &err)) {
        fprintf(stderr, "pt_shard: %s\n", err.msg);
        exit(1);
    }
    return p;
}

/* The local rows of an activation in `layout` (split-seq: this rank's tokens; split-last:
 * its columns; else all). */
static inline float *pt_act(const tpar_tp_t *tp, tpar_layout layout, const float *full, int N, int C) {
    if (layout == TPAR_LAYOUT_SPLIT_SEQ) return pt_shard(tp, TPAR_SHARD_ROWS, full, N, C);
    if (layout == TPAR_LAYOUT_SPLIT_LAST) return pt_shard(tp, TPAR_SHARD_COLS, full, N, C);
    return pt_shard(tp, TPAR_SHARD_REPLICATED, full, N, C);
}

/* The full tensor from every rank's shard: all-gather, then place each. */
static inline float *pt_gather(const tpar_tp_t *tp, tpar_shard_kind kind, const float *local, int rows, int cols) {
    float *full = kt_zeros((size_t)rows * cols);
    if (kind == TPAR_SHARD_REPLICATED) {
        memcpy(full, local, (size_t)rows * cols * sizeof(float));
        return full;
    }
    size_t n = (size_t)rows * cols / tp->size;
    float *all = kt_zeros(n * tp->size);
    if (tp->size > 1) {
        if (tpar_comm_allgather(tp->comm, local, all, n, TPAR_F32)) {
            fprintf(stderr, "pt_gather: %s\n", tpar_comm_error(tp->comm));
            exit(1);
        }
    } else {
        memcpy(all, local, n * sizeof(float));
    }
    tpar_err_t err = {0};
    for (int r = 0; r < tp->size; r++)
        if (tpar_shard_place(kind, full, all + r * n, rows, cols, tp->size, r, &err)) {
            fprintf(stderr, "pt_gather: %s\n", err.msg);
            exit(1);
        }
    return full;
}

static inline tpar_shard_kind pt_layout_kind(tpar_layout layout) {
    return layout == TPAR_LAYOUT_SPLIT_SEQ ? TPAR_SHARD_ROWS
           : layout == TPAR_LAYOUT_SPLIT_LAST ? TPAR_SHARD_COLS
                                               : TPAR_SHARD_REPLICATED;
}

/* An activation in `layout` gathered back to (N, C). */
static inline float *pt_gather_act(const tpar_tp_t *tp, tpar_layout layout, const float *local, int N, int C) {
    return pt_gather(tp, pt_layout_kind(layout), local, N, C);
}

#define PT_OK(call)                                                                              \
    do {                                                                                         \
        tpar_err_t e_ = {0};                                                                     \
        tpar_err_t *err = &e_;                                                                   \
        tpar_status s_ = (call);                                                                 \
        if (!check_record_(s_ == TPAR_OK, __FILE__, __LINE__, #call))                            \
            fprintf(stderr, "%s  -> %s: %s\n", check_state_.who, tpar_status_str(s_), e_.msg);  \
    } while (0)

#endif /* TPAR_TESTS_PTEST_H */
