/* Parallel causal self-attention: fused QKV column-parallel, NH/tp heads per rank, local
 * attention, output projection row-parallel. The QKV shard [Q_r; K_r; V_r] (TPAR_SHARD_QKV)
 * makes the local activation (B, T, 3C/tp) exactly the kernel's fused layout for NH/tp heads. */
#include <limits.h>
#include <string.h>

#include "internal.h"
#include "tpar/kernels.h"

tpar_status tpar_tp_attention_init(tpar_tp_attention_t *a, const tpar_tp_t *tp, int C, int NH, int proj_flags, int B,
                                int T, tpar_err_t *err) {
    memset(a, 0, sizeof *a);
    if (proj_flags & ~TPAR_LINEAR_SKIP_BIAS_ADD)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "attention: proj_flags 0x%x; only SKIP_BIAS_ADD applies",
                            proj_flags);
    tpar_status st = tpar_check_attention(B, T, C, NH, err);
    if (st || (st = tpar_shard_size("attention: heads NH", NH, tp->size, &a->NHl, err))) return st;
    if ((long long)B * T > INT_MAX)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "attention: B*T = %lld tokens overflow int", (long long)B * T);
    int N = B * T;
    if ((st = tpar_col_linear_init(&a->qkv, tp, C, 3 * C, 0, N, err)) ||
        (st = tpar_row_linear_init(&a->proj, tp, C, C, TPAR_LINEAR_INPUT_IS_PARALLEL | proj_flags, N, err)))
        goto fail;
    a->tp = tp;
    a->C = C;
    a->NH = NH;
    a->Cl = C / tp->size;
    a->B = B;
    a->T = T;
    a->in = a->qkv.in;
    a->out = a->proj.out;
    // the local attention reads the split-last QKV and writes the split-last input of proj
    if ((st = tpar_layout_connect("attention QKV", a->qkv.out, "local attention",
                                  (tpar_act_spec_t){TPAR_LAYOUT_SPLIT_LAST, 3 * C}, err)) ||
        (st = tpar_layout_connect("local attention", (tpar_act_spec_t){TPAR_LAYOUT_SPLIT_LAST, C},
                                  "attention proj", a->proj.in, err)))
        goto fail;
    size_t n3 = (size_t)N * 3 * a->Cl, n1 = (size_t)N * a->Cl, nl = (size_t)B * a->NHl * T;
    size_t ns = tpar_attention_scratch_floats(T);
    if ((st = tpar_par_alloc(a->tp, &a->qkvo, 2 * n3 + 2 * n1 + nl + ns, "attention activations", err))) goto fail;
    a->dqkv = a->qkvo + n3;
    a->att = a->dqkv + n3;
    a->datt = a->att + n1;
    a->lse = a->datt + n1;
    a->scratch = a->lse + nl;
    return TPAR_OK;
fail:
    tpar_tp_attention_free(a);
    return st;
}

void tpar_tp_attention_free(tpar_tp_attention_t *a) {
    if (!a) return;
    tpar_col_linear_free(&a->qkv);
    tpar_row_linear_free(&a->proj);
    tpar_par_free(a->tp, a->qkvo);
    a->qkvo = a->dqkv = a->att = a->datt = a->lse = a->scratch = NULL;
}

static tpar_status check_bt(const tpar_tp_attention_t *a, int B, int T, tpar_err_t *err) {
    if (B < 1 || T < 1 || T > a->T || (long long)B * T > (long long)a->B * a->T)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "attention: (B, T) = (%d, %d) exceeds the (%d, %d) of init", B, T,
                            a->B, a->T);
    return TPAR_OK;
}

tpar_status tpar_tp_attention_forward(tpar_tp_attention_t *a, float *y, const float *x, int B, int T, tpar_err_t *err) {
    tpar_status st = check_bt(a, B, T, err);
    int N = B * T;
    if (st || (st = tpar_col_linear_forward(&a->qkv, a->qkvo, x, N, err))) return st; // (B, T, 3C/tp)
    tpar_attention_forward(a->att, a->lse, a->qkvo, a->scratch, B, T, a->Cl, a->NHl);   // (B, T, C/tp)
    return tpar_row_linear_forward(&a->proj, y, a->att, N, err);                       // (N, C) or (N/tp, C)
}

tpar_status tpar_tp_attention_backward(tpar_tp_attention_t *a, float *dx, const float *dy, const float *x, int B, int T,
                                    tpar_err_t *err) {
    tpar_status st = check_bt(a, B, T, err);
    int N = B * T;
    if (st || (st = tpar_row_linear_backward(&a->proj, a->datt, dy, a->att, N, err))) return st;
    memset(a->dqkv, 0, (size_t)N * 3 * a->Cl * sizeof(float));
    tpar_attention_backward(a->dqkv, a->datt, a->qkvo, a->att, a->lse, a->scratch, B, T, a->Cl, a->NHl);
    return tpar_col_linear_backward(&a->qkv, dx, a->dqkv, x, N, err);
}
