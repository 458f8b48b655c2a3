/* Column- and row-parallel linear layers. */
#include <string.h>

#include "internal.h"
#include "tpar/kernels.h"

/* y (rows, OC) += b (OC): the bias of a row-parallel layer, added once after the reduction. */
static void add_bias(float *y, const float *b, int rows, int OC) {
    for (int i = 0; i < rows; i++) {
        float *r = y + (size_t)i * OC;
        for (int j = 0; j < OC; j++) r[j] += b[j];
    }
}

/* ---- column-parallel -------------------------------------------------------------------
 * workspace (N = max_tokens):
 *   xg  (N, C)   the input gathered along the sequence (SP, tp > 1)
 *   dxf (N, C)   the full input gradient before its reduce-scatter (SP, tp > 1)
 *   yl  (N, OCl) the local output before gather_output / the local slice of dy
 *   gw  (N, OC)  all-gather buffer of gather_output */
typedef struct { float *xg, *dxf, *yl, *gw; } col_ws_t;

static col_ws_t col_ws(const tpar_col_linear_t *l, size_t *total) {
    size_t N = (size_t)l->max_tokens, sp = l->tp->sp && l->tp->size > 1;
    size_t g = (l->flags & TPAR_LINEAR_GATHER_OUTPUT) != 0;
    size_t n_xg = sp * N * l->C, n_yl = g * N * l->OCl, n_gw = g * N * l->OC;
    col_ws_t w = {0};
    if (l->ws) {
        w.xg = l->ws;
        w.dxf = w.xg + n_xg;
        w.yl = w.dxf + n_xg;
        w.gw = w.yl + n_yl;
    }
    if (total) *total = 2 * n_xg + n_yl + n_gw;
    return w;
}

tpar_status tpar_col_linear_init(tpar_col_linear_t *l, const tpar_tp_t *tp, int C, int OC, int flags,
                                 int max_tokens, tpar_err_t *err) {
    memset(l, 0, sizeof *l);
    if (flags & ~(TPAR_LINEAR_GATHER_OUTPUT | TPAR_LINEAR_SKIP_BIAS_ADD))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "column-parallel linear: flags 0x%x; only GATHER_OUTPUT and SKIP_BIAS_ADD apply", flags);
    tpar_status st = tpar_check_dims(err, "column-parallel linear (C, OC, max_tokens)", 3, C, OC, max_tokens);
    if (st) return st;
    if ((st = tpar_shard_size("column-parallel linear: output features OC", OC, tp->size, &l->OCl, err))) return st;
    l->tp = tp;
    l->C = C;
    l->OC = OC;
    l->flags = flags;
    l->max_tokens = max_tokens;
    l->in = (tpar_act_spec_t){tp->sp ? TPAR_LAYOUT_SPLIT_SEQ : TPAR_LAYOUT_REPLICATED, C};
    l->out = (tpar_act_spec_t){(flags & TPAR_LINEAR_GATHER_OUTPUT) ? TPAR_LAYOUT_REPLICATED : TPAR_LAYOUT_SPLIT_LAST,
                               OC};
    size_t total;
    col_ws(l, &total);
    return tpar_par_alloc(l->tp, &l->ws, total, "column-parallel linear workspace", err);
}

void tpar_col_linear_free(tpar_col_linear_t *l) {
    if (!l) return;
    tpar_par_free(l->tp, l->ws);
    l->ws = NULL;
}

tpar_status tpar_col_linear_forward(tpar_col_linear_t *l, float *y, const float *x, int N, tpar_err_t *err) {
    const tpar_tp_t *tp = l->tp;
    tpar_status st = tpar_par_check_tokens(tp, "column-parallel linear forward", N, l->max_tokens, err);
    if (st) return st;
    if (!l->w) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "column-parallel linear forward: weight w not set");
    col_ws_t w = col_ws(l, NULL);
    const float *xin = x; // (N, C)
    if (tp->sp && tp->size > 1) {
        if ((st = tpar_map_gather_seq(tp, w.xg, x, N / tp->size, l->C, err))) return st;
        xin = w.xg;
    }
    int gather = l->flags & TPAR_LINEAR_GATHER_OUTPUT;
    float *yl = gather ? w.yl : y; // (N, OC/tp)
    tpar_matmul_forward(yl, xin, l->w, (l->flags & TPAR_LINEAR_SKIP_BIAS_ADD) ? NULL : l->b, N, l->C, l->OCl);
    if (gather) return tpar_map_gather_last(tp, y, yl, N, l->OCl, w.gw, err);
    return TPAR_OK;
}

tpar_status tpar_col_linear_backward(tpar_col_linear_t *l, float *dx, const float *dy, const float *x, int N,
                                     tpar_err_t *err) {
    const tpar_tp_t *tp = l->tp;
    tpar_status st = tpar_par_check_tokens(tp, "column-parallel linear backward", N, l->max_tokens, err);
    if (st) return st;
    if (!l->w || !l->dw)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "column-parallel linear backward: w or dw not set");
    col_ws_t w = col_ws(l, NULL);
    int sp = tp->sp && tp->size > 1;
    const float *dyl = dy; // (N, OC/tp)
    if (l->flags & TPAR_LINEAR_GATHER_OUTPUT) {
        tpar_map_split_last(tp, w.yl, dy, N, l->OCl);
        dyl = w.yl;
    }
    // SP: re-gather the input (as Megatron does, instead of keeping it) while dx is computed.
    tpar_request_t *req = NULL;
    const float *xin = x; // (N, C)
    if (sp) {
        st = tpar_comm_iallgather(tp->comm, x, w.xg, (size_t)(N / tp->size) * l->C, TPAR_F32, &req);
        if (st) return tpar_par_comm_err(tp, st, "column-parallel linear backward: all-gather of the input", err);
        xin = w.xg;
    }
    float *dxf = sp ? w.dxf : dx; // (N, C) this rank's share of the input gradient
    memset(dxf, 0, (size_t)N * l->C * sizeof(float));
    tpar_matmul_backward(dxf, NULL, NULL, dyl, NULL, l->w, N, l->C, l->OCl);
    if (sp) {
        if ((st = tpar_comm_wait(req)))
            return tpar_par_comm_err(tp, st, "column-parallel linear backward: all-gather of the input", err);
        req = NULL;
        st = tpar_comm_ireduce_scatter(tp->comm, dxf, dx, (size_t)(N / tp->size) * l->C, TPAR_F32, TPAR_SUM, &req);
    } else if (tp->size > 1) {
        st = tpar_comm_iallreduce(tp->comm, TPAR_IN_PLACE, dx, (size_t)N * l->C, TPAR_F32, TPAR_SUM, &req);
    }
    if (st) return tpar_par_comm_err(tp, st, "column-parallel linear backward: reduction of the input gradient", err);
    // The weight-gradient GEMM overlaps the reduction of dx.
    float *db = (l->flags & TPAR_LINEAR_SKIP_BIAS_ADD) || !l->b ? NULL : l->db;
    tpar_matmul_backward(NULL, l->dw, db, dyl, xin, l->w, N, l->C, l->OCl);
    if (req && (st = tpar_comm_wait(req)))
        return tpar_par_comm_err(tp, st, "column-parallel linear backward: reduction of the input gradient", err);
    return TPAR_OK;
}

/* ---- row-parallel ------------------------------------------------------------------------
 * workspace (N = max_tokens):
 *   xl  (N, Cl)  this rank's columns of a replicated input (not INPUT_IS_PARALLEL)
 *   dxl (N, Cl)  the local input gradient before its gather (not INPUT_IS_PARALLEL)
 *   gw  (N, C)   all-gather buffer of that gather (not INPUT_IS_PARALLEL)
 *   yp  (N, OC)  the partial output before the reduce-scatter / dy gathered (SP, tp > 1) */
typedef struct { float *xl, *dxl, *gw, *yp; } row_ws_t;

static row_ws_t row_ws(const tpar_row_linear_t *l, size_t *total) {
    size_t N = (size_t)l->max_tokens, sp = l->tp->sp && l->tp->size > 1;
    size_t s = !(l->flags & TPAR_LINEAR_INPUT_IS_PARALLEL);
    size_t n_xl = s * N * l->Cl, n_gw = s * N * l->C, n_yp = sp * N * l->OC;
    row_ws_t w = {0};
    if (l->ws) {
        w.xl = l->ws;
        w.dxl = w.xl + n_xl;
        w.gw = w.dxl + n_xl;
        w.yp = w.gw + n_gw;
    }
    if (total) *total = 2 * n_xl + n_gw + n_yp;
    return w;
}

tpar_status tpar_row_linear_init(tpar_row_linear_t *l, const tpar_tp_t *tp, int C, int OC, int flags,
                                 int max_tokens, tpar_err_t *err) {
    memset(l, 0, sizeof *l);
    if (flags & ~(TPAR_LINEAR_INPUT_IS_PARALLEL | TPAR_LINEAR_SKIP_BIAS_ADD))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "row-parallel linear: flags 0x%x; only INPUT_IS_PARALLEL and SKIP_BIAS_ADD apply", flags);
    tpar_status st = tpar_check_dims(err, "row-parallel linear (C, OC, max_tokens)", 3, C, OC, max_tokens);
    if (st) return st;
    if ((st = tpar_shard_size("row-parallel linear: input features C", C, tp->size, &l->Cl, err))) return st;
    l->tp = tp;
    l->C = C;
    l->OC = OC;
    l->flags = flags;
    l->max_tokens = max_tokens;
    l->in = (tpar_act_spec_t){(flags & TPAR_LINEAR_INPUT_IS_PARALLEL) ? TPAR_LAYOUT_SPLIT_LAST : TPAR_LAYOUT_REPLICATED,
                              C};
    l->out = (tpar_act_spec_t){tp->sp ? TPAR_LAYOUT_SPLIT_SEQ : TPAR_LAYOUT_REPLICATED, OC};
    size_t total;
    row_ws(l, &total);
    return tpar_par_alloc(l->tp, &l->ws, total, "row-parallel linear workspace", err);
}

void tpar_row_linear_free(tpar_row_linear_t *l) {
    if (!l) return;
    tpar_par_free(l->tp, l->ws);
    l->ws = NULL;
}

tpar_status tpar_row_linear_forward(tpar_row_linear_t *l, float *y, const float *x, int N, tpar_err_t *err) {
    const tpar_tp_t *tp = l->tp;
    tpar_status st = tpar_par_check_tokens(tp, "row-parallel linear forward", N, l->max_tokens, err);
    if (st) return st;
    if (!l->w) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "row-parallel linear forward: weight w not set");
    row_ws_t w = row_ws(l, NULL);
    const float *xl = x; // (N, C/tp)
    if (!(l->flags & TPAR_LINEAR_INPUT_IS_PARALLEL)) {
        tpar_map_split_last(tp, w.xl, x, N, l->Cl);
        xl = w.xl;
    }
    int sp = tp->sp && tp->size > 1;
    float *yp = sp ? w.yp : y; // (N, OC) partial sum over ranks
    tpar_matmul_forward(yp, xl, l->w, NULL, N, l->Cl, l->OC);
    if (sp) st = tpar_map_reduce_scatter_seq(tp, y, yp, N / tp->size, l->OC, err);
    else st = tpar_map_allreduce(tp, y, (size_t)N * l->OC, err);
    if (st) return st;
    if (l->b && !(l->flags & TPAR_LINEAR_SKIP_BIAS_ADD)) add_bias(y, l->b, tpar_par_rows(tp, l->out.layout, N), l->OC);
    return TPAR_OK;
}

/* Local rows at least this wide get padded copies in backward (tpar_row_linear_pad_floats). */
enum { PAD_MIN_COLS = 1024, PAD_COLS = 16 };

size_t tpar_row_linear_pad_floats(const tpar_row_linear_t *l, int N) {
    if (l->Cl < PAD_MIN_COLS) return 0;
    return ((size_t)N + (size_t)l->OC) * ((size_t)l->Cl + PAD_COLS);
}

/* dst (R, ld) <- src (R, n): rows copied to a padded stride, over the rank's threads. */
static void copy_rows(float *dst, size_t ld, const float *src, int R, int n) {
#pragma omp parallel for schedule(static) if ((size_t)R * n >= (1u << 16))
    for (int i = 0; i < R; i++) memcpy(dst + (size_t)i * ld, src + (size_t)i * n, (size_t)n * sizeof(float));
}

/* tpar_matmul_backward's GEMMs with the weight and the input read from copies of padded row
 * stride (l->pad); dx is written (beta 0: no memset first), dw accumulated. */
static void backward_padded(tpar_row_linear_t *l, float *dxl, float *db, const float *dy, const float *xl, int N) {
    const int Cl = l->Cl, OC = l->OC, ld = Cl + PAD_COLS;
    float *wp = l->pad;                   // (OC, Cl) in rows of ld
    float *xp = wp + (size_t)OC * ld;     // (N, Cl) in rows of ld
    copy_rows(wp, (size_t)ld, l->w, OC, Cl);
    copy_rows(xp, (size_t)ld, xl, N, Cl);
    tpar_gemm(NULL, 0, 0, N, Cl, OC, 1.0f, dy, OC, wp, ld, 0.0f, dxl, Cl);     // dx (N, Cl) = dy (N, OC) @ w
    tpar_gemm(NULL, 1, 0, OC, Cl, N, 1.0f, dy, OC, xp, ld, 1.0f, l->dw, Cl);   // dw (OC, Cl) += dy^T @ x
    if (db) tpar_matmul_backward(NULL, NULL, db, dy, NULL, NULL, N, Cl, OC);
}

tpar_status tpar_row_linear_backward(tpar_row_linear_t *l, float *dx, const float *dy, const float *x, int N,
                                     tpar_err_t *err) {
    const tpar_tp_t *tp = l->tp;
    tpar_status st = tpar_par_check_tokens(tp, "row-parallel linear backward", N, l->max_tokens, err);
    if (st) return st;
    if (!l->w || !l->dw)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "row-parallel linear backward: w or dw not set");
    row_ws_t w = row_ws(l, NULL);
    const float *dyg = dy; // (N, OC)
    if (tp->sp && tp->size > 1) {
        if ((st = tpar_map_gather_seq(tp, w.yp, dy, N / tp->size, l->OC, err))) return st;
        dyg = w.yp;
    }
    int par = l->flags & TPAR_LINEAR_INPUT_IS_PARALLEL;
    const float *xl = x; // (N, C/tp)
    if (!par) {
        tpar_map_split_last(tp, w.xl, x, N, l->Cl);
        xl = w.xl;
    }
    float *dxl = par ? dx : w.dxl; // (N, C/tp)
    // The bias gradient comes from the whole (gathered) dy, so it is complete and identical
    // on every rank without another reduction.
    float *db = (l->flags & TPAR_LINEAR_SKIP_BIAS_ADD) || !l->b ? NULL : l->db;
    if (l->pad && tpar_row_linear_pad_floats(l, N)) {
        backward_padded(l, dxl, db, dyg, xl, N);
    } else {
        memset(dxl, 0, (size_t)N * l->Cl * sizeof(float));
        tpar_matmul_backward(dxl, l->dw, db, dyg, xl, l->w, N, l->Cl, l->OC);
    }
    if (!par) return tpar_map_gather_last(tp, dx, dxl, N, l->Cl, w.gw, err);
    return TPAR_OK;
}
