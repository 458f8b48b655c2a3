/* Every tensor-parallel layer against the single-rank reference, for TP = the world size
 * (run with 1, 2 and 4 ranks) and sequence parallelism off and on.
 *
 * Each rank builds the same seeded full tensors, computes the reference itself with the
 * plain tpar_ref_* kernels (double accumulation, no BLAS), runs the parallel layer on its
 * shard, gathers what the layer leaves split, and compares: outputs, input gradients and
 * parameter gradients.
 *
 * Tolerance (KT_CLOSE): |got - ref| <= RTOL * (|ref| + rms(ref)). The parallel result differs from the
 * reference only by float32 rounding: the reference sums in double, the GEMM in float in
 * its own order, and TP splits each sum into per-rank partial sums added by a collective.
 * For one layer (sums of at most a few hundred terms) the worst seen is ~3e-7: RTOL = 2e-6.
 * Chains (MLP, attention, block) compound a few such steps and GELU' and the layernorm
 * backward amplify them; worst seen ~1.5e-6: RTOL_CHAIN = 1e-5. A missing or doubled
 * reduction is off by O(1) and fails by orders of magnitude.
 */
#include <signal.h>

#include "ptest.h"

#define RTOL 2e-6
#define RTOL_CHAIN 1e-5

static size_t local_numel(const tpar_tp_t *tp, tpar_layout layout, int N, int C) {
    return (size_t)N * C / (layout == TPAR_LAYOUT_SPLIT_SEQ || layout == TPAR_LAYOUT_SPLIT_LAST ? tp->size : 1);
}

static void add_rows(float *y, const float *b, int N, int C) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) y[(size_t)i * C + j] += b[j];
}

/* ---- column-parallel linear --------------------------------------------------------------- */

static void test_col_linear(const tpar_tp_t *tp, int flags) {
    const int N = 16, C = 20, OC = 24;
    int skip = flags & TPAR_LINEAR_SKIP_BIAS_ADD;
    kt_seed(100 + flags);
    float *X = kt_rand((size_t)N * C, -1, 1), *W = kt_rand((size_t)OC * C, -.3f, .3f), *b = kt_rand(OC, -.5f, .5f);
    float *dY = kt_rand((size_t)N * OC, -1, 1);
    float *Y = kt_zeros((size_t)N * OC), *dX = kt_zeros((size_t)N * C), *dW = kt_zeros((size_t)OC * C),
          *db = kt_zeros(OC);
    tpar_ref_matmul_forward(Y, X, W, skip ? NULL : b, N, C, OC);
    tpar_ref_matmul_backward(dX, dW, db, dY, X, W, N, C, OC);

    tpar_col_linear_t l;
    PT_OK(tpar_col_linear_init(&l, tp, C, OC, flags, N, err));
    l.w = pt_shard(tp, TPAR_SHARD_ROWS, W, OC, C);
    l.b = pt_shard(tp, TPAR_SHARD_ROWS, b, OC, 1);
    l.dw = kt_zeros((size_t)l.OCl * C);
    l.db = kt_zeros(l.OCl);
    float *x = pt_act(tp, l.in.layout, X, N, C), *y = kt_zeros(local_numel(tp, l.out.layout, N, OC));
    PT_OK(tpar_col_linear_forward(&l, y, x, N, err));
    KT_CLOSE("column linear y", Y, pt_gather_act(tp, l.out.layout, y, N, OC), (size_t)N * OC, RTOL);
    float *dy = pt_act(tp, l.out.layout, dY, N, OC), *dx = kt_zeros(local_numel(tp, l.in.layout, N, C));
    PT_OK(tpar_col_linear_backward(&l, dx, dy, x, N, err));
    KT_CLOSE("column linear dx", dX, pt_gather_act(tp, l.in.layout, dx, N, C), (size_t)N * C, RTOL);
    KT_CLOSE("column linear dW", dW, pt_gather(tp, TPAR_SHARD_ROWS, l.dw, OC, C), (size_t)OC * C, RTOL);
    if (skip) { // the caller owns the bias and its gradient
        CHECK(kt_rms(l.db, l.OCl) == 0.0);
    } else {
        KT_CLOSE("column linear db", db, pt_gather(tp, TPAR_SHARD_ROWS, l.db, OC, 1), OC, RTOL);
    }
    tpar_col_linear_free(&l);
    kt_free_all();
}

/* ---- row-parallel linear ------------------------------------------------------------------ */

/* pad: C = 1024 * tp (wide local rows) with the padded-copy scratch lent (backward then
 * reads the weight and input from copies of padded stride: tpar_row_linear_pad_floats). */
static void test_row_linear_c(const tpar_tp_t *tp, int flags, int pad) {
    const int N = 16, C = pad ? 1024 * tp->size : 24, OC = 20;
    int skip = flags & TPAR_LINEAR_SKIP_BIAS_ADD;
    kt_seed(200 + flags);
    float *X = kt_rand((size_t)N * C, -1, 1), *W = kt_rand((size_t)OC * C, -.3f, .3f), *b = kt_rand(OC, -.5f, .5f);
    float *dY = kt_rand((size_t)N * OC, -1, 1);
    float *Y = kt_zeros((size_t)N * OC), *dX = kt_zeros((size_t)N * C), *dW = kt_zeros((size_t)OC * C),
          *db = kt_zeros(OC);
    tpar_ref_matmul_forward(Y, X, W, skip ? NULL : b, N, C, OC);
    tpar_ref_matmul_backward(dX, dW, db, dY, X, W, N, C, OC);

    tpar_row_linear_t l;
    PT_OK(tpar_row_linear_init(&l, tp, C, OC, flags, N, err));
    l.w = pt_shard(tp, TPAR_SHARD_COLS, W, OC, C);
    l.b = b;
    l.dw = kt_zeros((size_t)OC * l.Cl);
    l.db = kt_zeros(OC);
    if (pad) {
        size_t np = tpar_row_linear_pad_floats(&l, N);
        CHECK(np >= ((size_t)N + OC) * l.Cl);
        l.pad = kt_zeros(np);
    } else {
        CHECK(tpar_row_linear_pad_floats(&l, N) == 0); // narrow rows: nothing to pad
    }
    float *x = pt_act(tp, l.in.layout, X, N, C), *y = kt_zeros(local_numel(tp, l.out.layout, N, OC));
    PT_OK(tpar_row_linear_forward(&l, y, x, N, err));
    KT_CLOSE("row linear y", Y, pt_gather_act(tp, l.out.layout, y, N, OC), (size_t)N * OC, RTOL);
    float *dy = pt_act(tp, l.out.layout, dY, N, OC), *dx = kt_zeros(local_numel(tp, l.in.layout, N, C));
    for (size_t i = 0; i < local_numel(tp, l.in.layout, N, C); i++) dx[i] = 7.0f; // backward writes dx, no +=
    PT_OK(tpar_row_linear_backward(&l, dx, dy, x, N, err));
    KT_CLOSE("row linear dx", dX, pt_gather_act(tp, l.in.layout, dx, N, C), (size_t)N * C, RTOL);
    KT_CLOSE("row linear dW", dW, pt_gather(tp, TPAR_SHARD_COLS, l.dw, OC, C), (size_t)OC * C, RTOL);
    if (skip) {
        CHECK(kt_rms(l.db, OC) == 0.0);
    } else {
        KT_CLOSE("row linear db", db, l.db, OC, RTOL);
        PT_OK(tpar_check_replicated(tp, "row linear db", l.db, OC, err));
    }
    tpar_row_linear_free(&l);
    kt_free_all();
}

static void test_row_linear(const tpar_tp_t *tp, int flags) { test_row_linear_c(tp, flags, 0); }

/* ---- vocab-parallel embedding and cross-entropy ----------------------------------------- */

static void test_embedding(const tpar_tp_t *tp) {
    const int N = 16, C = 12, V = 50, Vp = tpar_vocab_padded(V, tp->size, 0);
    CHECK_EQ_INT(128 * tp->size, Vp);
    kt_seed(300);
    float *W = kt_rand((size_t)Vp * C, -1, 1), *dOut = kt_rand((size_t)N * C, -1, 1);
    int ids[16];
    for (int i = 0; i < N; i++) ids[i] = (int)kt_randf(0, V) % V;
    ids[3] = ids[9] = V - 1; // the last real id, and a repeated one
    float *Out = kt_zeros((size_t)N * C), *dW = kt_zeros((size_t)Vp * C);
    tpar_ref_embedding_forward(Out, ids, W, NULL, 1, N, C, 0, Vp);
    tpar_ref_embedding_backward(dW, NULL, dOut, ids, 1, N, C, 0, Vp);

    tpar_vocab_embedding_t e;
    PT_OK(tpar_vocab_embedding_init(&e, tp, V, Vp, C, N, err));
    e.w = pt_shard(tp, TPAR_SHARD_ROWS, W, Vp, C);
    e.dw = kt_zeros((size_t)e.Vl * C);
    float *out = kt_zeros(local_numel(tp, e.out.layout, N, C));
    PT_OK(tpar_vocab_embedding_forward(&e, out, ids, N, err));
    // a lookup and a sum with zeros: exact
    KT_CLOSE("embedding out", Out, pt_gather_act(tp, e.out.layout, out, N, C), (size_t)N * C, 0.0);
    PT_OK(tpar_vocab_embedding_backward(&e, pt_act(tp, e.out.layout, dOut, N, C), ids, N, err));
    KT_CLOSE("embedding dW", dW, pt_gather(tp, TPAR_SHARD_ROWS, e.dw, Vp, C), (size_t)Vp * C, RTOL);

    // an id in the padding [V, Vp) or negative is an error on every rank, before any collective
    tpar_err_t err = {0};
    ids[5] = V;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_vocab_embedding_forward(&e, out, ids, N, &err));
    CHECK_STR_CONTAINS(err.msg, "outside the vocabulary");
    ids[5] = -1;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_vocab_embedding_forward(&e, out, ids, N, &err));
    tpar_vocab_embedding_free(&e);
    kt_free_all();
}

static void test_xent(const tpar_tp_t *tp) {
    const int N = 16, V = 50, Vp = tpar_vocab_padded(V, tp->size, 16), ignore = -100;
    kt_seed(400);
    float *L = kt_rand((size_t)N * Vp, -3, 3);
    // padding logits far above the rest: they must still neither win nor get gradient
    for (int i = 0; i < N; i++)
        for (int j = V; j < Vp; j++) L[(size_t)i * Vp + j] = 80.0f;
    int t[16];
    for (int i = 0; i < N; i++) t[i] = (int)kt_randf(0, V) % V;
    t[2] = t[7] = ignore;
    t[4] = V - 1;
    float loss_ref, *dL = kt_zeros((size_t)N * Vp), *row_loss = kt_zeros(N);
    int n_valid = tpar_ref_xent(&loss_ref, dL, L, t, N, V, Vp, ignore, 0.5f);
    CHECK_EQ_INT(N - 2, n_valid);
    for (int i = 0; i < N; i++)
        if (t[i] != ignore) tpar_ref_xent(&row_loss[i], NULL, L + (size_t)i * Vp, t + i, 1, V, Vp, ignore, 1.0f);

    tpar_vocab_xent_t x;
    PT_OK(tpar_vocab_xent_init(&x, tp, V, Vp, ignore, N, err));
    float *l = pt_shard(tp, TPAR_SHARD_COLS, L, N, Vp), loss = 0, *losses = kt_zeros(N);
    PT_OK(tpar_vocab_xent_forward(&x, &loss, losses, l, t, N, err));
    CHECK_CLOSE(loss_ref, loss, RTOL, 0);
    KT_CLOSE("cross-entropy per-row losses", row_loss, losses, N, RTOL);
    CHECK_EQ_INT(N - 2, x.n_valid);
    tpar_vocab_xent_backward(&x, l, l, t, N, 0.5f); // in place over the logits
    float *dl = pt_gather(tp, TPAR_SHARD_COLS, l, N, Vp);
    KT_CLOSE("cross-entropy dlogits", dL, dl, (size_t)N * Vp, RTOL);
    int pad_zero = 1;
    for (int i = 0; i < N; i++)
        for (int j = V; j < Vp; j++) pad_zero &= dl[(size_t)i * Vp + j] == 0.0f;
    CHECK(pad_zero);

    // every row ignored: loss 0, no gradient; a target in the padding: error
    for (int i = 0; i < N; i++) t[i] = ignore;
    l = pt_shard(tp, TPAR_SHARD_COLS, L, N, Vp);
    PT_OK(tpar_vocab_xent_forward(&x, &loss, NULL, l, t, N, err));
    CHECK(loss == 0.0f);
    tpar_vocab_xent_backward(&x, l, l, t, N, 1.0f);
    CHECK(kt_rms(l, (size_t)N * Vp / tp->size) == 0.0);
    t[0] = V;
    tpar_err_t err = {0};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_vocab_xent_forward(&x, &loss, NULL, l, t, N, &err));
    CHECK_STR_CONTAINS(err.msg, "outside the vocabulary");
    tpar_vocab_xent_free(&x);
    kt_free_all();
}

/* ---- tied embedding + LM head + cross-entropy ------------------------------------------- */

/* The LM head is a column-parallel linear whose weight is the embedding table (external
 * weight): its gradient must accumulate both uses. */
static void test_tied_lm(const tpar_tp_t *tp) {
    const int N = 16, C = 12, V = 40, Vp = tpar_vocab_padded(V, tp->size, 4), ignore = -1;
    kt_seed(500);
    float *W = kt_rand((size_t)Vp * C, -1, 1);
    int ids[16], tg[16];
    for (int i = 0; i < N; i++) ids[i] = (int)kt_randf(0, V) % V, tg[i] = (int)kt_randf(0, V) % V;
    tg[1] = ignore;
    // reference: h = wte[ids]; logits = h W^T; loss; back to dW through both uses
    float *H = kt_zeros((size_t)N * C), *Lg = kt_zeros((size_t)N * Vp), *dLg = kt_zeros((size_t)N * Vp);
    float *dH = kt_zeros((size_t)N * C), *dW = kt_zeros((size_t)Vp * C), loss_ref;
    tpar_ref_embedding_forward(H, ids, W, NULL, 1, N, C, 0, Vp);
    tpar_ref_matmul_forward(Lg, H, W, NULL, N, C, Vp);
    tpar_ref_xent(&loss_ref, dLg, Lg, tg, N, V, Vp, ignore, 1.0f);
    tpar_ref_matmul_backward(dH, dW, NULL, dLg, H, W, N, C, Vp);
    tpar_ref_embedding_backward(dW, NULL, dH, ids, 1, N, C, 0, Vp);

    tpar_vocab_embedding_t e;
    tpar_col_linear_t head;
    tpar_vocab_xent_t x;
    PT_OK(tpar_vocab_embedding_init(&e, tp, V, Vp, C, N, err));
    PT_OK(tpar_col_linear_init(&head, tp, C, Vp, 0, N, err));
    PT_OK(tpar_vocab_xent_init(&x, tp, V, Vp, ignore, N, err));
    PT_OK(tpar_layout_connect("embedding", e.out, "LM head", head.in, err));
    PT_OK(tpar_layout_connect("LM head", head.out, "cross-entropy", x.in, err));
    e.w = head.w = pt_shard(tp, TPAR_SHARD_ROWS, W, Vp, C);
    e.dw = head.dw = kt_zeros((size_t)e.Vl * C);
    float *h = kt_zeros(local_numel(tp, e.out.layout, N, C)), *dh = kt_zeros(local_numel(tp, e.out.layout, N, C));
    float *lg = kt_zeros((size_t)N * e.Vl), loss = 0;
    PT_OK(tpar_vocab_embedding_forward(&e, h, ids, N, err));
    PT_OK(tpar_col_linear_forward(&head, lg, h, N, err));
    PT_OK(tpar_vocab_xent_forward(&x, &loss, NULL, lg, tg, N, err));
    CHECK_CLOSE(loss_ref, loss, RTOL, 0);
    tpar_vocab_xent_backward(&x, lg, lg, tg, N, 1.0f);
    PT_OK(tpar_col_linear_backward(&head, dh, lg, h, N, err));
    PT_OK(tpar_vocab_embedding_backward(&e, dh, ids, N, err));
    KT_CLOSE("tied dW (embedding + LM head)", dW, pt_gather(tp, TPAR_SHARD_ROWS, e.dw, Vp, C), (size_t)Vp * C,
             RTOL);
    tpar_vocab_embedding_free(&e);
    tpar_col_linear_free(&head);
    tpar_vocab_xent_free(&x);
    kt_free_all();
}

/* ---- MLP ------------------------------------------------------------------------------------ */

static void test_mlp(const tpar_tp_t *tp) {
    const int N = 16, C = 16, Hd = 64;
    kt_seed(600);
    float *X = kt_rand((size_t)N * C, -1, 1), *dY = kt_rand((size_t)N * C, -1, 1);
    float *W1 = kt_rand((size_t)Hd * C, -.4f, .4f), *b1 = kt_rand(Hd, -.5f, .5f);
    float *W2 = kt_rand((size_t)C * Hd, -.2f, .2f), *b2 = kt_rand(C, -.5f, .5f);
    // reference: pre = X W1^T + b1; a = gelu(pre); Y = a W2^T + b2
    float *pre = kt_zeros((size_t)N * Hd), *a = kt_zeros((size_t)N * Hd), *Y = kt_zeros((size_t)N * C);
    tpar_ref_matmul_forward(pre, X, W1, b1, N, C, Hd);
    tpar_ref_gelu_forward(a, pre, (size_t)N * Hd);
    tpar_ref_matmul_forward(Y, a, W2, b2, N, Hd, C);
    float *da = kt_zeros((size_t)N * Hd), *dpre = kt_zeros((size_t)N * Hd), *dX = kt_zeros((size_t)N * C);
    float *dW1 = kt_zeros((size_t)Hd * C), *db1 = kt_zeros(Hd), *dW2 = kt_zeros((size_t)C * Hd), *db2 = kt_zeros(C);
    tpar_ref_matmul_backward(da, dW2, db2, dY, a, W2, N, Hd, C);
    tpar_ref_gelu_backward(dpre, pre, da, (size_t)N * Hd);
    tpar_ref_matmul_backward(dX, dW1, db1, dpre, X, W1, N, C, Hd);

    tpar_tp_mlp_t m;
    PT_OK(tpar_tp_mlp_init(&m, tp, C, Hd, 0, N, err));
    m.fc.w = pt_shard(tp, TPAR_SHARD_ROWS, W1, Hd, C), m.fc.b = pt_shard(tp, TPAR_SHARD_ROWS, b1, Hd, 1);
    m.proj.w = pt_shard(tp, TPAR_SHARD_COLS, W2, C, Hd), m.proj.b = b2;
    m.fc.dw = kt_zeros((size_t)m.Hl * C), m.fc.db = kt_zeros(m.Hl);
    m.proj.dw = kt_zeros((size_t)C * m.Hl), m.proj.db = kt_zeros(C);
    float *x = pt_act(tp, m.in.layout, X, N, C), *y = kt_zeros(local_numel(tp, m.out.layout, N, C));
    PT_OK(tpar_tp_mlp_forward(&m, y, x, N, err));
    KT_CLOSE("MLP y", Y, pt_gather_act(tp, m.out.layout, y, N, C), (size_t)N * C, RTOL_CHAIN);
    float *dx = kt_zeros(local_numel(tp, m.in.layout, N, C));
    PT_OK(tpar_tp_mlp_backward(&m, dx, pt_act(tp, m.out.layout, dY, N, C), x, N, err));
    KT_CLOSE("MLP dx", dX, pt_gather_act(tp, m.in.layout, dx, N, C), (size_t)N * C, RTOL_CHAIN);
    KT_CLOSE("MLP dW fc", dW1, pt_gather(tp, TPAR_SHARD_ROWS, m.fc.dw, Hd, C), (size_t)Hd * C, RTOL_CHAIN);
    KT_CLOSE("MLP db fc", db1, pt_gather(tp, TPAR_SHARD_ROWS, m.fc.db, Hd, 1), Hd, RTOL_CHAIN);
    KT_CLOSE("MLP dW proj", dW2, pt_gather(tp, TPAR_SHARD_COLS, m.proj.dw, C, Hd), (size_t)C * Hd, RTOL_CHAIN);
    KT_CLOSE("MLP db proj", db2, m.proj.db, C, RTOL_CHAIN);
    tpar_tp_mlp_free(&m);
    kt_free_all();
}

/* ---- attention ------------------------------------------------------------------------------- */

static void test_attention(const tpar_tp_t *tp) {
    const int B = 2, T = 8, N = B * T, C = 16, NH = 4;
    kt_seed(700);
    float *X = kt_rand((size_t)N * C, -1, 1), *dY = kt_rand((size_t)N * C, -1, 1);
    float *Wq = kt_rand((size_t)3 * C * C, -.5f, .5f), *bq = kt_rand(3 * C, -.3f, .3f);
    float *Wp = kt_rand((size_t)C * C, -.3f, .3f), *bp = kt_rand(C, -.5f, .5f);
    float *qkv = kt_zeros((size_t)N * 3 * C), *att = kt_zeros((size_t)N * C), *Y = kt_zeros((size_t)N * C);
    tpar_ref_matmul_forward(qkv, X, Wq, bq, N, C, 3 * C);
    tpar_ref_attention_forward(att, qkv, B, T, C, NH);
    tpar_ref_matmul_forward(Y, att, Wp, bp, N, C, C);
    float *datt = kt_zeros((size_t)N * C), *dqkv = kt_zeros((size_t)N * 3 * C), *dX = kt_zeros((size_t)N * C);
    float *dWq = kt_zeros((size_t)3 * C * C), *dbq = kt_zeros(3 * C);
    float *dWp = kt_zeros((size_t)C * C), *dbp = kt_zeros(C);
    tpar_ref_matmul_backward(datt, dWp, dbp, dY, att, Wp, N, C, C);
    tpar_ref_attention_backward(dqkv, datt, qkv, B, T, C, NH);
    tpar_ref_matmul_backward(dX, dWq, dbq, dqkv, X, Wq, N, C, 3 * C);

    tpar_tp_attention_t a;
    PT_OK(tpar_tp_attention_init(&a, tp, C, NH, 0, B, T, err));
    a.qkv.w = pt_shard(tp, TPAR_SHARD_QKV, Wq, 3 * C, C), a.qkv.b = pt_shard(tp, TPAR_SHARD_QKV, bq, 3 * C, 1);
    a.proj.w = pt_shard(tp, TPAR_SHARD_COLS, Wp, C, C), a.proj.b = bp;
    a.qkv.dw = kt_zeros((size_t)3 * a.Cl * C), a.qkv.db = kt_zeros(3 * a.Cl);
    a.proj.dw = kt_zeros((size_t)C * a.Cl), a.proj.db = kt_zeros(C);
    float *x = pt_act(tp, a.in.layout, X, N, C), *y = kt_zeros(local_numel(tp, a.out.layout, N, C));
    PT_OK(tpar_tp_attention_forward(&a, y, x, B, T, err));
    KT_CLOSE("attention y", Y, pt_gather_act(tp, a.out.layout, y, N, C), (size_t)N * C, RTOL_CHAIN);
    float *dx = kt_zeros(local_numel(tp, a.in.layout, N, C));
    PT_OK(tpar_tp_attention_backward(&a, dx, pt_act(tp, a.out.layout, dY, N, C), x, B, T, err));
    KT_CLOSE("attention dx", dX, pt_gather_act(tp, a.in.layout, dx, N, C), (size_t)N * C, RTOL_CHAIN);
    KT_CLOSE("attention dW qkv", dWq, pt_gather(tp, TPAR_SHARD_QKV, a.qkv.dw, 3 * C, C), (size_t)3 * C * C,
             RTOL_CHAIN);
    KT_CLOSE("attention db qkv", dbq, pt_gather(tp, TPAR_SHARD_QKV, a.qkv.db, 3 * C, 1), 3 * C, RTOL_CHAIN);
    KT_CLOSE("attention dW proj", dWp, pt_gather(tp, TPAR_SHARD_COLS, a.proj.dw, C, C), (size_t)C * C, RTOL_CHAIN);
    KT_CLOSE("attention db proj", dbp, a.proj.db, C, RTOL_CHAIN);
    tpar_tp_attention_free(&a);
    kt_free_all();
}

/* ---- transformer block ------------------------------------------------------------------------ */

/* out = x + dropout(y + b), the reference way: three plain steps. */
static void ref_bias_dropout_residual(float *out, const float *y, const float *b, const float *x, int N, int C,
                                      float p, uint64_t seed, uint64_t off) {
    float *t = kt_zeros((size_t)N * C);
    memcpy(t, y, (size_t)N * C * sizeof(float));
    add_rows(t, b, N, C);
    tpar_ref_dropout_forward(t, t, (size_t)N * C, p, seed, off);
    for (size_t i = 0; i < (size_t)N * C; i++) out[i] = x[i] + t[i];
}

/* dy = dropout'(dout), db += column sums of dy (dresidual is dout itself). */
static void ref_bias_dropout_backward(float *dy, float *db, const float *dout, int N, int C, float p,
                                      uint64_t seed, uint64_t off) {
    memset(dy, 0, (size_t)N * C * sizeof(float));
    tpar_ref_dropout_backward(dy, dout, (size_t)N * C, p, seed, off);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) db[j] += dy[(size_t)i * C + j];
}

static void test_block(const tpar_tp_t *tp, float p) {
    const int B = 2, T = 8, N = B * T, C = 16, NH = 4, Hd = 64;
    const uint64_t seed = 77, off = 1000;
    kt_seed(800);
    tpar_param_info_t info[TPAR_BLOCK_NPARAMS];
    tpar_block_param_info(C, Hd, info);
    float *P[TPAR_BLOCK_NPARAMS], *G[TPAR_BLOCK_NPARAMS];
    for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++) {
        size_t n = (size_t)info[i].rows * info[i].cols;
        int is_lnw = i == TPAR_BLOCK_LN1W || i == TPAR_BLOCK_LN2W;
        P[i] = is_lnw ? kt_rand(n, .8f, 1.2f) : kt_rand(n, -.3f, .3f);
        G[i] = kt_zeros(n);
    }
    float *X = kt_rand((size_t)N * C, -1, 1), *dOut = kt_rand((size_t)N * C, -1, 1);
    size_t NC = (size_t)N * C;
    // reference forward
    float *ln1 = kt_zeros(NC), *mean = kt_zeros(N), *rstd = kt_zeros(N), *qkv = kt_zeros(3 * NC);
    float *att = kt_zeros(NC), *ay = kt_zeros(NC), *H = kt_zeros(NC), *ln2 = kt_zeros(NC);
    float *pre = kt_zeros((size_t)N * Hd), *g = kt_zeros((size_t)N * Hd), *my = kt_zeros(NC), *Out = kt_zeros(NC);
    tpar_ref_layernorm_forward(ln1, mean, rstd, X, P[TPAR_BLOCK_LN1W], P[TPAR_BLOCK_LN1B], N, C);
    tpar_ref_matmul_forward(qkv, ln1, P[TPAR_BLOCK_QKVW], P[TPAR_BLOCK_QKVB], N, C, 3 * C);
    tpar_ref_attention_forward(att, qkv, B, T, C, NH);
    tpar_ref_matmul_forward(ay, att, P[TPAR_BLOCK_ATTPROJW], NULL, N, C, C);
    ref_bias_dropout_residual(H, ay, P[TPAR_BLOCK_ATTPROJB], X, N, C, p, seed, off);
    tpar_ref_layernorm_forward(ln2, mean, rstd, H, P[TPAR_BLOCK_LN2W], P[TPAR_BLOCK_LN2B], N, C);
    tpar_ref_matmul_forward(pre, ln2, P[TPAR_BLOCK_FCW], P[TPAR_BLOCK_FCB], N, C, Hd);
    tpar_ref_gelu_forward(g, pre, (size_t)N * Hd);
    tpar_ref_matmul_forward(my, g, P[TPAR_BLOCK_FCPROJW], NULL, N, Hd, C);
    ref_bias_dropout_residual(Out, my, P[TPAR_BLOCK_FCPROJB], H, N, C, p, seed, off + NC);
    // reference backward
    float *dt = kt_zeros(NC), *dg = kt_zeros((size_t)N * Hd), *dpre = kt_zeros((size_t)N * Hd);
    float *dln = kt_zeros(NC), *dH = kt_zeros(NC), *dX = kt_zeros(NC), *datt = kt_zeros(NC), *dqkv = kt_zeros(3 * NC);
    memcpy(dH, dOut, NC * sizeof(float));
    ref_bias_dropout_backward(dt, G[TPAR_BLOCK_FCPROJB], dOut, N, C, p, seed, off + NC);
    tpar_ref_matmul_backward(dg, G[TPAR_BLOCK_FCPROJW], NULL, dt, g, P[TPAR_BLOCK_FCPROJW], N, Hd, C);
    tpar_ref_gelu_backward(dpre, pre, dg, (size_t)N * Hd);
    tpar_ref_matmul_backward(dln, G[TPAR_BLOCK_FCW], G[TPAR_BLOCK_FCB], dpre, ln2, P[TPAR_BLOCK_FCW], N, C, Hd);
    tpar_ref_layernorm_backward(dH, G[TPAR_BLOCK_LN2W], G[TPAR_BLOCK_LN2B], dln, H, P[TPAR_BLOCK_LN2W], N, C);
    memcpy(dX, dH, NC * sizeof(float));
    ref_bias_dropout_backward(dt, G[TPAR_BLOCK_ATTPROJB], dH, N, C, p, seed, off);
    tpar_ref_matmul_backward(datt, G[TPAR_BLOCK_ATTPROJW], NULL, dt, att, P[TPAR_BLOCK_ATTPROJW], N, C, C);
    tpar_ref_attention_backward(dqkv, datt, qkv, B, T, C, NH);
    memset(dln, 0, NC * sizeof(float));
    tpar_ref_matmul_backward(dln, G[TPAR_BLOCK_QKVW], G[TPAR_BLOCK_QKVB], dqkv, ln1, P[TPAR_BLOCK_QKVW], N, C, 3 * C);
    tpar_ref_layernorm_backward(dX, G[TPAR_BLOCK_LN1W], G[TPAR_BLOCK_LN1B], dln, X, P[TPAR_BLOCK_LN1W], N, C);

    // the parallel block on this rank's shards
    tpar_block_t b;
    PT_OK(tpar_block_init(&b, tp, C, NH, Hd, B, T, p, seed, err));
    size_t n = tpar_block_numel(&b);
    float *params = kt_zeros(n), *grads = kt_zeros(n);
    tpar_block_carve(&b, params, grads);
    for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++)
        PT_OK(tpar_shard_extract(info[i].kind, b.params[i], P[i], info[i].rows, info[i].cols, tp->size, tp->rank,
                                 err));
    float *x = pt_act(tp, b.in.layout, X, N, C), *out = kt_zeros(local_numel(tp, b.out.layout, N, C));
    PT_OK(tpar_block_forward(&b, out, x, B, T, off, err));
    KT_CLOSE("block out", Out, pt_gather_act(tp, b.out.layout, out, N, C), NC, RTOL_CHAIN);
    float *dx = kt_zeros(local_numel(tp, b.in.layout, N, C));
    PT_OK(tpar_block_backward(&b, dx, pt_act(tp, b.out.layout, dOut, N, C), x, B, T, off, err));
    KT_CLOSE("block dx", dX, pt_gather_act(tp, b.in.layout, dx, N, C), NC, RTOL_CHAIN);
    for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++) {
        char name[64];
        snprintf(name, sizeof name, "block d%s", info[i].name);
        KT_CLOSE(name, G[i], pt_gather(tp, info[i].kind, b.grads[i], info[i].rows, info[i].cols),
                 (size_t)info[i].rows * info[i].cols, RTOL_CHAIN);
        // replicated parameters get bit-identical gradients, so they stay bit-identical
        if (info[i].kind == TPAR_SHARD_REPLICATED)
            PT_OK(tpar_check_replicated(tp, name, b.grads[i], b.local_numel[i], err));
    }
    // a second backward (a second micro-batch) accumulates: every gradient doubles, the
    // SP-reduced replicated ones included
    PT_OK(tpar_block_backward(&b, dx, pt_act(tp, b.out.layout, dOut, N, C), x, B, T, off, err));
    for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++) {
        size_t n_full = (size_t)info[i].rows * info[i].cols;
        for (size_t j = 0; j < n_full; j++) G[i][j] *= 2.0f;
        KT_CLOSE("block gradient after two backward passes", G[i],
                 pt_gather(tp, info[i].kind, b.grads[i], info[i].rows, info[i].cols), n_full, RTOL_CHAIN);
    }
    // the debug check passes, and catches a replicated parameter that drifted on one rank
    PT_OK(tpar_block_check_replicated(&b, err));
    if (tp->size > 1) {
        if (tp->rank == tp->size - 1) b.params[TPAR_BLOCK_LN2B][3] = nextafterf(b.params[TPAR_BLOCK_LN2B][3], 1.0f);
        tpar_err_t err = {0};
        CHECK_EQ_INT(TPAR_ERR_MISMATCH, tpar_block_check_replicated(&b, &err));
        CHECK_STR_CONTAINS(err.msg, "'ln2b'");
    }
    tpar_block_free(&b);
    kt_free_all();
}

/* `die` (driven by test_peer_death.sh): the last rank SIGKILLs itself between a block's
 * forward and backward; every other rank's backward must fail, naming the layer, the
 * collective and the dead rank, instead of hanging or going on with wrong numbers. */
static int peer_death(tpar_comm_t *world) {
    const int B = 2, T = 8, N = B * T, C = 16;
    tpar_tp_t tp;
    tpar_block_t b;
    tpar_err_t err = {0};
    if (tpar_tp_init(&tp, world, 0, &err) || tpar_block_init(&b, &tp, C, 4, 64, B, T, 0.0f, 1, &err)) {
        fprintf(stderr, "%ssetup: %s\n", check_state_.who, err.msg);
        return 1;
    }
    size_t n = tpar_block_numel(&b);
    tpar_block_carve(&b, kt_rand(n, -.1f, .1f), kt_zeros(n));
    float *x = kt_rand((size_t)N * C, -1, 1), *y = kt_zeros((size_t)N * C), *dx = kt_zeros((size_t)N * C);
    tpar_status st = tpar_block_forward(&b, y, x, B, T, 0, &err);
    if (!st && tp.rank == tp.size - 1) raise(SIGKILL);
    if (!st) st = tpar_block_backward(&b, dx, y, x, B, T, 0, &err);
    check_init_();
    printf("%sblock backward: %s: %s\n", check_state_.who, tpar_status_str(st), err.msg);
    tpar_block_free(&b);
    kt_free_all();
    tpar_comm_free(world);
    return st == TPAR_ERR_PEER_DEAD ? 0 : 1;
}

int main(int argc, char **argv) {
    tpar_err_t err = {0};
    tpar_comm_t *world = NULL;
    if (tpar_comm_init(NULL, &world, &err)) {
        fprintf(stderr, "tpar_comm_init: %s\n", err.msg);
        return 1;
    }
    if (argc > 1 && !strcmp(argv[1], "die")) return peer_death(world);
    for (int sp = 0; sp <= 1; sp++) {
        tpar_tp_t tp;
        if (tpar_tp_init(&tp, world, sp, &err)) {
            fprintf(stderr, "tpar_tp_init: %s\n", err.msg);
            return 1;
        }
        test_col_linear(&tp, 0);
        test_col_linear(&tp, TPAR_LINEAR_GATHER_OUTPUT);
        test_col_linear(&tp, TPAR_LINEAR_SKIP_BIAS_ADD);
        test_row_linear(&tp, TPAR_LINEAR_INPUT_IS_PARALLEL);
        test_row_linear(&tp, 0);
        test_row_linear(&tp, TPAR_LINEAR_INPUT_IS_PARALLEL | TPAR_LINEAR_SKIP_BIAS_ADD);
        test_row_linear_c(&tp, TPAR_LINEAR_INPUT_IS_PARALLEL, 1);
        test_row_linear_c(&tp, 0, 1);
        test_embedding(&tp);
        test_xent(&tp);
        test_tied_lm(&tp);
        test_mlp(&tp);
        test_attention(&tp);
        test_block(&tp, 0.0f);
        test_block(&tp, 0.2f);
    }
    tpar_comm_free(world);
    return check_finish("test_layers");
}
