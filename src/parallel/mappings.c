/* The conjugate mappings (f/g of Megatron, and their SP forms): the blocking collectives
 * between layers. Not the only place layers talk: the overlapped backward of linear.c issues
 * its own non-blocking all-gather / reduce-scatter / all-reduce (tpar_comm_i*), and vocab.c's
 * cross-entropy its own max all-reduce of the row maxima (TPAR_MAX; the sums go through here). */
#include <string.h>

#include "internal.h"

tpar_status tpar_map_allreduce(const tpar_tp_t *tp, float *x, size_t n, tpar_err_t *err) {
    if (tp->size == 1) return TPAR_OK;
    return tpar_par_comm_err(tp, tpar_comm_allreduce(tp->comm, TPAR_IN_PLACE, x, n, TPAR_F32, TPAR_SUM),
                             "all-reduce over the TP group", err);
}

tpar_status tpar_map_gather_last(const tpar_tp_t *tp, float *y, const float *x, int N, int Cl, float *work,
                                 tpar_err_t *err) {
    size_t blk = (size_t)N * Cl;
    if (tp->size == 1) {
        if (y != x) memcpy(y, x, blk * sizeof(float));
        return TPAR_OK;
    }
    tpar_status st = tpar_comm_allgather(tp->comm, x, work, blk, TPAR_F32);
    if (st) return tpar_par_comm_err(tp, st, "all-gather along the last dimension", err);
    // work is (tp, N, Cl): interleave into y (N, tp*Cl)
    size_t C = (size_t)Cl * tp->size;
    for (int r = 0; r < tp->size; r++)
        for (int i = 0; i < N; i++)
            memcpy(y + i * C + (size_t)r * Cl, work + r * blk + (size_t)i * Cl, (size_t)Cl * sizeof(float));
    return TPAR_OK;
}

void tpar_map_split_last(const tpar_tp_t *tp, float *y, const float *x, int N, int Cl) {
    size_t C = (size_t)Cl * tp->size;
    for (int i = 0; i < N; i++)
        memcpy(y + (size_t)i * Cl, x + i * C + (size_t)tp->rank * Cl, (size_t)Cl * sizeof(float));
}

tpar_status tpar_map_gather_seq(const tpar_tp_t *tp, float *y, const float *x, int Nl, int C,
                                tpar_err_t *err) {
    size_t blk = (size_t)Nl * C;
    if (tp->size == 1) {
        if (y != x) memcpy(y, x, blk * sizeof(float));
        return TPAR_OK;
    }
    return tpar_par_comm_err(tp, tpar_comm_allgather(tp->comm, x, y, blk, TPAR_F32),
                             "all-gather along the sequence", err);
}

tpar_status tpar_map_reduce_scatter_seq(const tpar_tp_t *tp, float *y, const float *x, int Nl, int C,
                                        tpar_err_t *err) {
    size_t blk = (size_t)Nl * C;
    if (tp->size == 1) {
        if (y != x) memcpy(y, x, blk * sizeof(float));
        return TPAR_OK;
    }
    return tpar_par_comm_err(tp, tpar_comm_reduce_scatter(tp->comm, x, y, blk, TPAR_F32, TPAR_SUM),
                             "reduce-scatter along the sequence", err);
}

tpar_status tpar_check_replicated(const tpar_tp_t *tp, const char *what, const float *x, size_t n,
                                  tpar_err_t *err) {
    if (tp->size == 1) return TPAR_OK;
    // FNV-1a over the bytes: a mismatch in any bit changes it (collisions are ~2^-64).
    const unsigned char *p = (const unsigned char *)x;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n * sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ull;
    int64_t mine = (int64_t)h, all[1024];
    int64_t *hs = tp->size <= 1024 ? all : tpar_calloc_aligned((size_t)tp->size, sizeof(int64_t));
    if (!hs) return tpar_err_set(err, TPAR_ERR_NOMEM, "tpar_check_replicated: out of memory");
    tpar_status st = tpar_comm_allgather(tp->comm, &mine, hs, 1, TPAR_I64);
    if (st) {
        st = tpar_par_comm_err(tp, st, "tpar_check_replicated", err);
    } else {
        for (int r = 1; r < tp->size && !st; r++)
            if (hs[r] != hs[0])
                st = tpar_err_set(err, TPAR_ERR_MISMATCH,
                                  "replicated parameter '%s' (%zu floats) differs between TP rank 0 and "
                                  "TP rank %d (hint: a gradient of a replicated parameter was not reduced "
                                  "over the TP group, or ranks used different seeds)",
                                  what, n, r);
    }
    if (hs != all) tpar_free(hs);
    return st;
}
