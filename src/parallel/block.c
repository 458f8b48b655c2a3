/* The GPT-2 transformer block on top of the parallel attention and MLP. */
#include <limits.h>
#include <string.h>

#include "internal.h"
#include "tpar/kernels.h"

void tpar_block_param_info(int C, int H, tpar_param_info_t info[TPAR_BLOCK_NPARAMS]) {
    const tpar_shard_kind R = TPAR_SHARD_REPLICATED;
    info[TPAR_BLOCK_LN1W] = (tpar_param_info_t){"ln1w", C, 1, R};
    info[TPAR_BLOCK_LN1B] = (tpar_param_info_t){"ln1b", C, 1, R};
    info[TPAR_BLOCK_QKVW] = (tpar_param_info_t){"qkvw", 3 * C, C, TPAR_SHARD_QKV};
    info[TPAR_BLOCK_QKVB] = (tpar_param_info_t){"qkvb", 3 * C, 1, TPAR_SHARD_QKV};
    info[TPAR_BLOCK_ATTPROJW] = (tpar_param_info_t){"attprojw", C, C, TPAR_SHARD_COLS};
    info[TPAR_BLOCK_ATTPROJB] = (tpar_param_info_t){"attprojb", C, 1, R};
    info[TPAR_BLOCK_LN2W] = (tpar_param_info_t){"ln2w", C, 1, R};
    info[TPAR_BLOCK_LN2B] = (tpar_param_info_t){"ln2b", C, 1, R};
    info[TPAR_BLOCK_FCW] = (tpar_param_info_t){"fcw", H, C, TPAR_SHARD_ROWS};
    info[TPAR_BLOCK_FCB] = (tpar_param_info_t){"fcb", H, 1, TPAR_SHARD_ROWS};
    info[TPAR_BLOCK_FCPROJW] = (tpar_param_info_t){"fcprojw", C, H, TPAR_SHARD_COLS};
    info[TPAR_BLOCK_FCPROJB] = (tpar_param_info_t){"fcprojb", C, 1, R};
}

/* Replicated parameters whose gradient is partial under SP (their inputs are split on the
 * sequence), in the order of the block's sp_grads buffer. */
static const int sp_params[6] = {TPAR_BLOCK_LN1W, TPAR_BLOCK_LN1B, TPAR_BLOCK_ATTPROJB,
                                 TPAR_BLOCK_LN2W, TPAR_BLOCK_LN2B, TPAR_BLOCK_FCPROJB};

static int use_sp(const tpar_block_t *b) { return b->tp->sp && b->tp->size > 1; }

tpar_status tpar_block_init(tpar_block_t *b, const tpar_tp_t *tp, int C, int NH, int H, int B, int T,
                            float dropout, uint64_t seed, tpar_err_t *err) {
    memset(b, 0, sizeof *b);
    if (!(dropout >= 0.0f && dropout < 1.0f))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "block: dropout %g must be in [0, 1)", (double)dropout);
    tpar_status st = tpar_check_dims(err, "block (C, NH, H, B, T)", 5, C, NH, H, B, T);
    if (st) return st;
    if ((long long)B * T > INT_MAX)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "block: B*T = %lld tokens overflow int", (long long)B * T);
    int N = B * T;
    if ((st = tpar_par_check_tokens(tp, "block", N, N, err))) return st;
    b->tp = tp;
    b->C = C;
    b->NH = NH;
    b->H = H;
    b->B = B;
    b->T = T;
    b->dropout = dropout;
    b->seed = seed;
    tpar_act_spec_t resid = {tp->sp ? TPAR_LAYOUT_SPLIT_SEQ : TPAR_LAYOUT_REPLICATED, C};
    b->in = b->out = resid;
    if ((st = tpar_tp_attention_init(&b->attn, tp, C, NH, TPAR_LINEAR_SKIP_BIAS_ADD, B, T, err)) ||
        (st = tpar_tp_mlp_init(&b->mlp, tp, C, H, TPAR_LINEAR_SKIP_BIAS_ADD, N, err)) ||
        (st = tpar_layout_connect("block ln1", resid, "attention", b->attn.in, err)) ||
        (st = tpar_layout_connect("attention", b->attn.out, "block residual 1", resid, err)) ||
        (st = tpar_layout_connect("block ln2", resid, "MLP", b->mlp.in, err)) ||
        (st = tpar_layout_connect("MLP", b->mlp.out, "block residual 2", resid, err)))
        goto fail;
    tpar_param_info_t info[TPAR_BLOCK_NPARAMS];
    tpar_block_param_info(C, H, info);
    for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++)
        b->local_numel[i] =
            (size_t)info[i].rows * info[i].cols / (info[i].kind == TPAR_SHARD_REPLICATED ? 1 : tp->size);
    // activations of the residual stream: R rows (N/tp under SP)
    size_t R = (size_t)tpar_par_rows(tp, resid.layout, N), RC = R * C;
    if ((st = tpar_par_alloc(b->tp, &b->acts, 8 * RC + 4 * R + 6 * (size_t)C, "block activations", err))) goto fail;
    float *p = b->acts;
    b->ln1 = p, p += RC;
    b->att_y = p, p += RC;
    b->h = p, p += RC;
    b->ln2 = p, p += RC;
    b->mlp_y = p, p += RC;
    b->dtmp = p, p += RC;
    b->dln = p, p += RC;
    b->dh = p, p += RC;
    b->ln1_mean = p, p += R;
    b->ln1_rstd = p, p += R;
    b->ln2_mean = p, p += R;
    b->ln2_rstd = p, p += R;
    b->sp_grads = p;
    return TPAR_OK;
fail:
    tpar_block_free(b);
    return st;
}

size_t tpar_block_numel(const tpar_block_t *b) {
    size_t n = 0;
    for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++) n += b->local_numel[i];
    return n;
}

void tpar_block_carve(tpar_block_t *b, float *params, float *grads) {
    for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++) {
        b->params[i] = params;
        b->grads[i] = grads;
        params += b->local_numel[i];
        grads += b->local_numel[i];
    }
    float **P = b->params, **G = b->grads;
    b->attn.qkv.w = P[TPAR_BLOCK_QKVW], b->attn.qkv.b = P[TPAR_BLOCK_QKVB];
    b->attn.qkv.dw = G[TPAR_BLOCK_QKVW], b->attn.qkv.db = G[TPAR_BLOCK_QKVB];
    b->attn.proj.w = P[TPAR_BLOCK_ATTPROJW], b->attn.proj.b = P[TPAR_BLOCK_ATTPROJB];
    b->attn.proj.dw = G[TPAR_BLOCK_ATTPROJW], b->attn.proj.db = G[TPAR_BLOCK_ATTPROJB];
    b->mlp.fc.w = P[TPAR_BLOCK_FCW], b->mlp.fc.b = P[TPAR_BLOCK_FCB];
    b->mlp.fc.dw = G[TPAR_BLOCK_FCW], b->mlp.fc.db = G[TPAR_BLOCK_FCB];
    b->mlp.proj.w = P[TPAR_BLOCK_FCPROJW], b->mlp.proj.b = P[TPAR_BLOCK_FCPROJB];
    b->mlp.proj.dw = G[TPAR_BLOCK_FCPROJW], b->mlp.proj.db = G[TPAR_BLOCK_FCPROJB];
}

void tpar_block_free(tpar_block_t *b) {
    if (!b) return;
    tpar_tp_attention_free(&b->attn);
    tpar_tp_mlp_free(&b->mlp);
    tpar_par_free(b->tp, b->acts);
    b->acts = NULL;
}

/* Dropout counters: element (i, j) of the full (N, C) tensor uses offset + i*C + j, so a
 * rank holding tokens [g0, g0 + R) under SP draws exactly the mask one rank would. The
 * second dropout of the block uses the next N*C counters. */
static uint64_t drop_offset(const tpar_block_t *b, int N, uint64_t offset, int which) {
    uint64_t g0 = use_sp(b) ? (uint64_t)b->tp->rank * (N / b->tp->size) : 0;
    return offset + (uint64_t)which * N * b->C + g0 * b->C;
}

static tpar_status check_bt(const tpar_block_t *b, int B, int T, tpar_err_t *err) {
    if (B < 1 || T < 1 || T > b->T || (long long)B * T > (long long)b->B * b->T)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "block: (B, T) = (%d, %d) exceeds the (%d, %d) of init", B, T, b->B,
                            b->T);
    return tpar_par_check_tokens(b->tp, "block", B * T, b->B * b->T, err);
}

tpar_status tpar_block_forward(tpar_block_t *b, float *out, const float *x, int B, int T, uint64_t offset,
                               tpar_err_t *err) {
    tpar_status st = check_bt(b, B, T, err);
    if (st) return st;
    int N = B * T, C = b->C, R = tpar_par_rows(b->tp, b->in.layout, N);
    float **P = b->params;
    tpar_layernorm_forward(b->ln1, b->ln1_mean, b->ln1_rstd, x, P[TPAR_BLOCK_LN1W], P[TPAR_BLOCK_LN1B], R, C);
    if ((st = tpar_tp_attention_forward(&b->attn, b->att_y, b->ln1, B, T, err))) return st; // (R, C) without bias
    tpar_bias_dropout_residual_forward(b->h, b->att_y, P[TPAR_BLOCK_ATTPROJB], x, R, C, b->dropout, b->seed,
                                       drop_offset(b, N, offset, 0));
    tpar_layernorm_forward(b->ln2, b->ln2_mean, b->ln2_rstd, b->h, P[TPAR_BLOCK_LN2W], P[TPAR_BLOCK_LN2B], R, C);
    if ((st = tpar_tp_mlp_forward(&b->mlp, b->mlp_y, b->ln2, N, err))) return st;
    tpar_bias_dropout_residual_forward(out, b->mlp_y, P[TPAR_BLOCK_FCPROJB], b->h, R, C, b->dropout, b->seed,
                                       drop_offset(b, N, offset, 1));
    return TPAR_OK;
}

tpar_status tpar_block_backward(tpar_block_t *b, float *dx, const float *dout, const float *x, int B, int T,
                                uint64_t offset, tpar_err_t *err) {
    tpar_status st = check_bt(b, B, T, err);
    if (st) return st;
    int N = B * T, C = b->C, R = tpar_par_rows(b->tp, b->in.layout, N), sp = use_sp(b);
    size_t RC = (size_t)R * C;
    float **P = b->params;
    // Under SP the replicated parameters below see only this rank's tokens: their gradients
    // go to sp_grads first and are summed over the TP group at the end.
    float *g[TPAR_BLOCK_NPARAMS];
    memcpy(g, b->grads, sizeof g);
    if (sp) {
        memset(b->sp_grads, 0, 6 * (size_t)C * sizeof(float));
        for (int i = 0; i < 6; i++) g[sp_params[i]] = b->sp_grads + (size_t)i * C;
    }
    // out = h + dropout(mlp_y + fcprojb)
    memset(b->dh, 0, RC * sizeof(float));
    memset(b->dtmp, 0, RC * sizeof(float));
    tpar_bias_dropout_residual_backward(b->dtmp, g[TPAR_BLOCK_FCPROJB], b->dh, dout, R, C, b->dropout, b->seed,
                                        drop_offset(b, N, offset, 1));
    if ((st = tpar_tp_mlp_backward(&b->mlp, b->dln, b->dtmp, b->ln2, N, err))) return st;
    tpar_layernorm_backward(b->dh, g[TPAR_BLOCK_LN2W], g[TPAR_BLOCK_LN2B], b->dln, b->h, P[TPAR_BLOCK_LN2W],
                            b->ln2_mean, b->ln2_rstd, R, C);
    // h = x + dropout(att_y + attprojb)
    memset(dx, 0, RC * sizeof(float));
    memset(b->dtmp, 0, RC * sizeof(float));
    tpar_bias_dropout_residual_backward(b->dtmp, g[TPAR_BLOCK_ATTPROJB], dx, b->dh, R, C, b->dropout, b->seed,
                                        drop_offset(b, N, offset, 0));
    if ((st = tpar_tp_attention_backward(&b->attn, b->dln, b->dtmp, b->ln1, B, T, err))) return st;
    tpar_layernorm_backward(dx, g[TPAR_BLOCK_LN1W], g[TPAR_BLOCK_LN1B], b->dln, x, P[TPAR_BLOCK_LN1W], b->ln1_mean,
                            b->ln1_rstd, R, C);
    if (sp) {
        if ((st = tpar_map_allreduce(b->tp, b->sp_grads, 6 * (size_t)C, err))) return st;
        for (int i = 0; i < 6; i++) {
            float *dst = b->grads[sp_params[i]], *src = b->sp_grads + (size_t)i * C;
            for (int j = 0; j < C; j++) dst[j] += src[j];
        }
    }
    return TPAR_OK;
}

tpar_status tpar_block_check_replicated(const tpar_block_t *b, tpar_err_t *err) {
    tpar_param_info_t info[TPAR_BLOCK_NPARAMS];
    tpar_block_param_info(b->C, b->H, info);
    for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++) {
        if (info[i].kind != TPAR_SHARD_REPLICATED) continue;
        tpar_status st = tpar_check_replicated(b->tp, info[i].name, b->params[i], b->local_numel[i], err);
        if (st) return st;
    }
    return TPAR_OK;
}
