/* Parallel MLP: fc column-parallel (bias fused with GELU), proj row-parallel. */
#include <string.h>

#include "internal.h"
#include "tpar/kernels.h"

tpar_status tpar_tp_mlp_init(tpar_tp_mlp_t *m, const tpar_tp_t *tp, int C, int H, int proj_flags, int max_tokens,
                          tpar_err_t *err) {
    memset(m, 0, sizeof *m);
    if (proj_flags & ~TPAR_LINEAR_SKIP_BIAS_ADD)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "MLP: proj_flags 0x%x; only SKIP_BIAS_ADD applies", proj_flags);
    tpar_status st = tpar_shard_size("MLP: hidden features H", H, tp->size, &m->Hl, err);
    if (st) return st;
    if ((st = tpar_col_linear_init(&m->fc, tp, C, H, TPAR_LINEAR_SKIP_BIAS_ADD, max_tokens, err)) ||
        (st = tpar_row_linear_init(&m->proj, tp, H, C, TPAR_LINEAR_INPUT_IS_PARALLEL | proj_flags, max_tokens,
                                   err)) ||
        (st = tpar_layout_connect("MLP fc", m->fc.out, "MLP proj", m->proj.in, err)))
        goto fail;
    m->tp = tp;
    m->C = C;
    m->H = H;
    m->max_tokens = max_tokens;
    m->in = m->fc.in;
    m->out = m->proj.out;
    size_t n = (size_t)max_tokens * m->Hl;
    // dpre is free while proj runs its backward: it holds proj's padded copies then
    // (tpar_row_linear_pad_floats, 0 for narrow shards), so it may be a little longer.
    size_t npad = tpar_row_linear_pad_floats(&m->proj, max_tokens), ndpre = npad > n ? npad : n;
    if ((st = tpar_par_alloc(m->tp, &m->pre, 3 * n + ndpre, "MLP activations", err))) goto fail;
    m->act = m->pre + n;
    m->dact = m->act + n;
    m->dpre = m->dact + n;
    m->proj.pad = npad ? m->dpre : NULL;
    return TPAR_OK;
fail:
    tpar_tp_mlp_free(m);
    return st;
}

void tpar_tp_mlp_free(tpar_tp_mlp_t *m) {
    if (!m) return;
    tpar_col_linear_free(&m->fc);
    tpar_row_linear_free(&m->proj);
    tpar_par_free(m->tp, m->pre);
    m->pre = m->act = m->dact = m->dpre = NULL;
}

tpar_status tpar_tp_mlp_forward(tpar_tp_mlp_t *m, float *y, const float *x, int N, tpar_err_t *err) {
    if (!m->fc.b) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "MLP forward: fc bias not set (GELU takes it fused)");
    tpar_status st = tpar_col_linear_forward(&m->fc, m->pre, x, N, err); // (N, H/tp) without bias
    if (st) return st;
    tpar_bias_gelu_forward(m->act, m->pre, m->fc.b, N, m->Hl);             // (N, H/tp)
    return tpar_row_linear_forward(&m->proj, y, m->act, N, err);          // (N, C) or (N/tp, C)
}

tpar_status tpar_tp_mlp_backward(tpar_tp_mlp_t *m, float *dx, const float *dy, const float *x, int N, tpar_err_t *err) {
    if (!m->fc.b || !m->fc.db)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "MLP backward: fc bias or its gradient not set");
    tpar_status st = tpar_row_linear_backward(&m->proj, m->dact, dy, m->act, N, err); // (N, H/tp)
    if (st) return st;
    memset(m->dpre, 0, (size_t)N * m->Hl * sizeof(float));
    tpar_bias_gelu_backward(m->dpre, m->fc.db, m->pre, m->fc.b, m->dact, N, m->Hl);
    return tpar_col_linear_backward(&m->fc, dx, m->dpre, x, N, err);
}
