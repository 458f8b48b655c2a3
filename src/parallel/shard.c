/* The TP group, shard assignment (the one place that decides who owns what), layouts. */
#include <limits.h>
#include <string.h>

#include "internal.h"

tpar_status tpar_tp_init(tpar_tp_t *tp, tpar_comm_t *comm, int sequence_parallel, tpar_err_t *err) {
    if (!tp) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tp_init: tp is NULL");
    if (sequence_parallel != 0 && sequence_parallel != 1)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "tpar_tp_init: sequence_parallel must be 0 or 1, got %d", sequence_parallel);
    tp->comm = comm;
    tp->size = comm ? tpar_comm_size(comm) : 1;
    tp->rank = comm ? tpar_comm_rank(comm) : 0;
    tp->sp = sequence_parallel;
    if (tp->size < 1 || tp->rank < 0 || tp->rank >= tp->size)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tp_init: communicator reports rank %d of %d",
                            tp->rank, tp->size);
    return TPAR_OK;
}

tpar_status tpar_shard_size(const char *what, int dim, int tp, int *local, tpar_err_t *err) {
    if (tp < 1) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: tensor-parallel size %d < 1", what, tp);
    if (dim < 1 || dim % tp != 0)
        return tpar_err_set(err, TPAR_ERR_SHAPE,
                            "%s = %d is not divisible by the tensor-parallel size %d "
                            "(hint: choose a multiple of %d, or a TP size that divides %d)",
                            what, dim, tp, tp, dim);
    *local = dim / tp;
    return TPAR_OK;
}

int tpar_vocab_padded(int V, int tp, int multiple) {
    if (multiple <= 0) multiple = TPAR_VOCAB_MULTIPLE;
    if (V < 1 || tp < 1 || multiple > INT_MAX / tp) return -1;
    long long m = (long long)multiple * tp;
    long long vp = (V + m - 1) / m * m;
    return vp > INT_MAX ? -1 : (int)vp;
}

tpar_status tpar_shard_rects(tpar_shard_kind kind, int rows, int cols, int tp, int rank,
                             tpar_shard_rect_t rect[3], int *nrect, tpar_err_t *err) {
    if (rows < 1 || cols < 1)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "shard: tensor shape (%d, %d) must be positive", rows, cols);
    if (tp < 1 || rank < 0 || rank >= tp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "shard: rank %d is not in a TP group of %d", rank, tp);
    *nrect = 1;
    rect[0] = (tpar_shard_rect_t){0, rows, 0, cols};
    tpar_status st = TPAR_OK;
    int l = 0;
    switch (kind) {
    case TPAR_SHARD_REPLICATED:
        break;
    case TPAR_SHARD_ROWS:
        if ((st = tpar_shard_size("shard: rows (output features / vocabulary)", rows, tp, &l, err))) return st;
        rect[0].row0 = rank * l, rect[0].rows = l;
        break;
    case TPAR_SHARD_COLS:
        if ((st = tpar_shard_size("shard: columns (input features)", cols, tp, &l, err))) return st;
        rect[0].col0 = rank * l, rect[0].cols = l;
        break;
    case TPAR_SHARD_QKV:
        if (rows % 3)
            return tpar_err_set(err, TPAR_ERR_SHAPE, "shard: a fused QKV tensor has 3*C rows, got %d", rows);
        if ((st = tpar_shard_size("shard: QKV features C", rows / 3, tp, &l, err))) return st;
        *nrect = 3;
        for (int p = 0; p < 3; p++) rect[p] = (tpar_shard_rect_t){p * (rows / 3) + rank * l, l, 0, cols};
        break;
    default:
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "shard: unknown shard kind %d", (int)kind);
    }
    return TPAR_OK;
}

static tpar_status shard_copy(tpar_shard_kind kind, float *local, float *full, int rows, int cols, int tp,
                              int rank, int to_local, tpar_err_t *err) {
    tpar_shard_rect_t rect[3];
    int n = 0;
    tpar_status st = tpar_shard_rects(kind, rows, cols, tp, rank, rect, &n, err);
    if (st) return st;
    // the rectangles lie one after another in the dense shard
    for (int p = 0; p < n; p++) {
        size_t w = (size_t)rect[p].cols * sizeof(float);
        for (int i = 0; i < rect[p].rows; i++, local += rect[p].cols) {
            float *f = full + (size_t)(rect[p].row0 + i) * cols + rect[p].col0;
            if (to_local) memcpy(local, f, w);
            else memcpy(f, local, w);
        }
    }
    return TPAR_OK;
}

tpar_status tpar_shard_extract(tpar_shard_kind kind, float *local, const float *full, int rows, int cols,
                               int tp, int rank, tpar_err_t *err) {
    return shard_copy(kind, local, (float *)full, rows, cols, tp, rank, 1, err);
}

tpar_status tpar_shard_place(tpar_shard_kind kind, float *full, const float *local, int rows, int cols,
                             int tp, int rank, tpar_err_t *err) {
    return shard_copy(kind, (float *)local, full, rows, cols, tp, rank, 0, err);
}

/* ---- layouts ---------------------------------------------------------------------------- */

const char *tpar_layout_name(tpar_layout l) {
    static const char *names[TPAR_LAYOUT_COUNT] = {"replicated", "split-last", "split-seq", "partial-sum"};
    return (unsigned)l < TPAR_LAYOUT_COUNT ? names[l] : "invalid-layout";
}

tpar_status tpar_layout_connect(const char *from, tpar_act_spec_t out, const char *to, tpar_act_spec_t in,
                                tpar_err_t *err) {
    if (out.layout != in.layout || out.features != in.features)
        return tpar_err_set(err, TPAR_ERR_SHAPE,
                            "layout mismatch: %s produces %s (N, %d) but %s expects %s (N, %d)", from,
                            tpar_layout_name(out.layout), out.features, to, tpar_layout_name(in.layout),
                            in.features);
    return TPAR_OK;
}

/* ---- internal helpers -------------------------------------------------------------------- */

tpar_status tpar_par_comm_err(const tpar_tp_t *tp, tpar_status st, const char *what, tpar_err_t *err) {
    if (st == TPAR_OK) return TPAR_OK;
    const char *m = tp->comm ? tpar_comm_error(tp->comm) : "";
    return tpar_err_set(err, st, "%s: %s (%s)", what, m && m[0] ? m : "collective failed",
                        tpar_status_str(st));
}

/* Layer buffers come from the TP group's shared memory, so the all-reduces on them read the
 * peers' buffers directly (tpar_comm_mem_alloc); with no group, from the heap. */
tpar_status tpar_par_alloc(const tpar_tp_t *tp, float **out, size_t n, const char *what, tpar_err_t *err) {
    size_t bytes;
    *out = tpar_mul_size(n ? n : 1, sizeof(float), &bytes) ? NULL : tpar_comm_mem_alloc(tp->comm, bytes);
    if (!*out)
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: cannot allocate %zu floats", what, n);
    return TPAR_OK;
}

void tpar_par_free(const tpar_tp_t *tp, float *p) { tpar_comm_mem_free(tp ? tp->comm : NULL, p); }

int tpar_par_rows(const tpar_tp_t *tp, tpar_layout layout, int N) {
    return layout == TPAR_LAYOUT_SPLIT_SEQ ? N / tp->size : N;
}

tpar_status tpar_par_check_tokens(const tpar_tp_t *tp, const char *who, int N, int max_tokens,
                                  tpar_err_t *err) {
    if (N < 1 || N > max_tokens)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "%s: %d tokens, expected 1 .. %d (max_tokens at init)", who, N,
                            max_tokens);
    if (tp->sp && N % tp->size)
        return tpar_err_set(err, TPAR_ERR_SHAPE,
                            "%s: tokens N = B*T = %d is not divisible by the tensor-parallel size %d, "
                            "which sequence parallelism needs (hint: pick B*T a multiple of %d)",
                            who, N, tp->size, tp->size);
    return TPAR_OK;
}
