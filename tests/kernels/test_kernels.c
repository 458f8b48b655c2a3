/* Fast kernels against the plain reference kernels (src/kernels/ref.c), plus the
 * properties the tensor-parallel layers rely on (dropout masks from (seed, offset) alone,
 * in-place cross-entropy, vocabulary ranges) and the error paths.
 *
 * Tolerance: KT_CLOSE(.., tol) allows tol relative to each value plus tol times the rms
 * of the reference tensor (see ktest.h). tol = 1e-5 unless a comment says otherwise; the
 * reference accumulates in double, so the difference is the fast kernel's own float32
 * rounding (sums of <= a few hundred terms: ~1e-6 relative to the terms). */
#include <limits.h>

#include "kernels/kernels_ref.h"
#include "ktest.h"

static void test_matmul(void) {
    const int N = 37, C = 96, OC = 80;
    float *inp = kt_rand((size_t)N * C, -1, 1), *w = kt_rand((size_t)OC * C, -1, 1), *b = kt_rand(OC, -1, 1);
    float *out = kt_zeros((size_t)N * OC), *ref = kt_zeros((size_t)N * OC);
    tpar_matmul_forward(out, inp, w, b, N, C, OC);
    tpar_ref_matmul_forward(ref, inp, w, b, N, C, OC);
    KT_CLOSE("matmul out (bias)", ref, out, (size_t)N * OC, 1e-5);
    tpar_matmul_forward(out, inp, w, NULL, N, C, OC);
    tpar_ref_matmul_forward(ref, inp, w, NULL, N, C, OC);
    KT_CLOSE("matmul out (no bias)", ref, out, (size_t)N * OC, 1e-5);

    float *dout = kt_rand((size_t)N * OC, -1, 1);
    /* gradients accumulate: start from non-zero values and check the sum */
    float *dinp = kt_rand((size_t)N * C, -1, 1), *dw = kt_rand((size_t)OC * C, -1, 1), *db = kt_rand(OC, -1, 1);
    float *rdinp = kt_copy(dinp, (size_t)N * C), *rdw = kt_copy(dw, (size_t)OC * C), *rdb = kt_copy(db, OC);
    tpar_matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
    tpar_ref_matmul_backward(rdinp, rdw, rdb, dout, inp, w, N, C, OC);
    KT_CLOSE("matmul dinp", rdinp, dinp, (size_t)N * C, 1e-5);
    KT_CLOSE("matmul dweight", rdw, dw, (size_t)OC * C, 1e-5);
    KT_CLOSE("matmul dbias", rdb, db, OC, 1e-5);

    /* split calls (dinp first, then dweight + dbias, as a layer overlapping its all-reduce
     * does) give bit-identical results to the joint call */
    float *a = kt_zeros((size_t)N * C), *aw = kt_zeros((size_t)OC * C), *ab = kt_zeros(OC);
    float *s = kt_zeros((size_t)N * C), *sw = kt_zeros((size_t)OC * C), *sb = kt_zeros(OC);
    tpar_matmul_backward(a, aw, ab, dout, inp, w, N, C, OC);
    tpar_matmul_backward(s, NULL, NULL, dout, inp, w, N, C, OC);
    tpar_matmul_backward(NULL, sw, sb, dout, inp, w, N, C, OC);
    CHECK_BYTES_EQ("matmul split dinp", a, s, (size_t)N * C * sizeof(float));
    CHECK_BYTES_EQ("matmul split dweight", aw, sw, (size_t)OC * C * sizeof(float));
    CHECK_BYTES_EQ("matmul split dbias", ab, sb, OC * sizeof(float));

    /* transpose: Conv1D [in, out] -> [out, in], exact */
    const int R = 45, K = 70;
    float *x = kt_rand((size_t)R * K, -1, 1), *xt = kt_zeros((size_t)R * K);
    tpar_transpose(xt, x, R, K);
    int bad = 0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < K; c++) bad += xt[(size_t)c * R + r] != x[(size_t)r * K + c];
    CHECK_EQ_INT(0, bad);
}

static void test_layernorm(void) {
    const int shapes[2][2] = {{13, 768}, {5, 33}};
    for (int si = 0; si < 2; si++) {
        const int N = shapes[si][0], C = shapes[si][1];
        const size_t n = (size_t)N * C;
        float *inp = kt_rand(n, -2, 3), *w = kt_rand(C, 0.5f, 1.5f), *b = kt_rand(C, -1, 1);
        float *out = kt_zeros(n), *mean = kt_zeros(N), *rstd = kt_zeros(N);
        float *rout = kt_zeros(n), *rmean = kt_zeros(N), *rrstd = kt_zeros(N);
        tpar_layernorm_forward(out, mean, rstd, inp, w, b, N, C);
        tpar_ref_layernorm_forward(rout, rmean, rrstd, inp, w, b, N, C);
        KT_CLOSE("layernorm out", rout, out, n, 1e-5);
        KT_CLOSE("layernorm mean", rmean, mean, N, 1e-5);
        KT_CLOSE("layernorm rstd", rrstd, rstd, N, 1e-5);
        float *dout = kt_rand(n, -1, 1);
        float *dinp = kt_zeros(n), *dw = kt_zeros(C), *db = kt_zeros(C);
        float *rdinp = kt_zeros(n), *rdw = kt_zeros(C), *rdb = kt_zeros(C);
        tpar_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
        tpar_ref_layernorm_backward(rdinp, rdw, rdb, dout, inp, w, N, C);
        KT_CLOSE("layernorm dinp", rdinp, dinp, n, 1e-5);
        KT_CLOSE("layernorm dweight", rdw, dw, C, 1e-5);
        KT_CLOSE("layernorm dbias", rdb, db, C, 1e-5);
    }
}

static void test_gelu(void) {
    const int N = 7, C = 300; /* values over [-10, 10] reach both saturated tails */
    const size_t n = (size_t)N * C;
    float *inp = kt_rand(n, -10, 10), *bias = kt_rand(C, -1, 1);
    float *out = kt_zeros(n), *ref = kt_zeros(n);
    tpar_gelu_forward(out, inp, n);
    tpar_ref_gelu_forward(ref, inp, n);
    KT_CLOSE("gelu out", ref, out, n, 1e-5);
    float *dout = kt_rand(n, -1, 1), *dinp = kt_zeros(n), *rdinp = kt_zeros(n);
    tpar_gelu_backward(dinp, inp, dout, n);
    tpar_ref_gelu_backward(rdinp, inp, dout, n);
    KT_CLOSE("gelu dinp", rdinp, dinp, n, 1e-5);

    /* fused bias + GELU against bias add then reference GELU */
    float *pre = kt_zeros(n);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) pre[(size_t)i * C + j] = inp[(size_t)i * C + j] + bias[j];
    tpar_bias_gelu_forward(out, inp, bias, N, C);
    tpar_ref_gelu_forward(ref, pre, n);
    KT_CLOSE("bias_gelu out", ref, out, n, 1e-5);
    float *db = kt_zeros(C), *rdb = kt_zeros(C);
    memset(dinp, 0, n * sizeof(float));
    memset(rdinp, 0, n * sizeof(float));
    tpar_bias_gelu_backward(dinp, db, inp, bias, dout, N, C);
    tpar_ref_gelu_backward(rdinp, pre, dout, n);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) rdb[j] += rdinp[(size_t)i * C + j];
    KT_CLOSE("bias_gelu dinp", rdinp, dinp, n, 1e-5);
    KT_CLOSE("bias_gelu dbias", rdb, db, C, 1e-5);
    /* in place: out may alias inp */
    float *io = kt_copy(inp, n);
    tpar_gelu_forward(io, io, n);
    tpar_gelu_forward(out, inp, n);
    CHECK_BYTES_EQ("gelu in place", out, io, n * sizeof(float));
}

static void test_residual(void) {
    const size_t n = 1001;
    float *a = kt_rand(n, -1, 1), *b = kt_rand(n, -1, 1), *out = kt_zeros(n), *dout = kt_rand(n, -1, 1);
    tpar_residual_forward(out, a, b, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += out[i] != a[i] + b[i];
    CHECK_EQ_INT(0, bad);
    float *da = kt_rand(n, -1, 1), *db = kt_zeros(n), *da0 = kt_copy(da, n);
    tpar_residual_backward(da, db, dout, n);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += da[i] != da0[i] + dout[i] || db[i] != dout[i];
    CHECK_EQ_INT(0, bad);
}

static void test_dropout(void) {
    const size_t n = 100000;
    const float p = 0.1f;
    const uint64_t seed = 1234, off = 777;
    float *inp = kt_rand(n, -1, 1), *out = kt_zeros(n), *ref = kt_zeros(n);
    tpar_dropout_forward(out, inp, n, p, seed, off);
    tpar_ref_dropout_forward(ref, inp, n, p, seed, off);
    KT_CLOSE("dropout out", ref, out, n, 1e-6);
    /* keep rate: 1 - p within 6 binomial standard deviations */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) kept += out[i] != 0.0f;
    const double sd = sqrt(n * p * (1 - p));
    CHECK(fabs((double)kept - n * (1 - p)) < 6 * sd);
    /* a mask is a function of (seed, offset) alone: a sub-range called with its own
     * offset reproduces that slice of the whole, bit for bit (what TP ranks rely on) */
    float *part = kt_zeros(1000);
    tpar_dropout_forward(part, inp + 5000, 1000, p, seed, off + 5000);
    CHECK_BYTES_EQ("dropout slice = slice of whole", out + 5000, part, 1000 * sizeof(float));
    /* another seed or offset gives another mask */
    float *o2 = kt_zeros(n), *o3 = kt_zeros(n);
    tpar_dropout_forward(o2, inp, n, p, seed + 1, off);
    tpar_dropout_forward(o3, inp, n, p, seed, off + n);
    size_t same2 = 0, same3 = 0;
    for (size_t i = 0; i < n; i++) {
        same2 += (o2[i] != 0) == (out[i] != 0);
        same3 += (o3[i] != 0) == (out[i] != 0);
    }
    /* independent masks agree on p^2 + (1-p)^2 = 82% of elements, not 100% */
    CHECK(same2 < n * 0.85 && same2 > n * 0.79);
    CHECK(same3 < n * 0.85 && same3 > n * 0.79);
    /* backward regenerates the same mask */
    float *dout = kt_rand(n, -1, 1), *dinp = kt_zeros(n), *rdinp = kt_zeros(n);
    tpar_dropout_backward(dinp, dout, n, p, seed, off);
    tpar_ref_dropout_backward(rdinp, dout, n, p, seed, off);
    KT_CLOSE("dropout dinp", rdinp, dinp, n, 1e-6);
    size_t mismatch = 0;
    for (size_t i = 0; i < n; i++) mismatch += (dinp[i] != 0) != (out[i] != 0);
    CHECK_EQ_INT(0, mismatch);
    /* p = 0 is the identity; p = 1 drops everything */
    tpar_dropout_forward(o2, inp, n, 0.0f, seed, off);
    CHECK_BYTES_EQ("dropout p=0 identity", inp, o2, n * sizeof(float));
    tpar_dropout_forward(o2, inp, n, 1.0f, seed, off);
    CHECK_CLOSE(0.0, kt_rms(o2, n), 0, 0);

    /* fused bias + dropout + residual against its parts */
    const int N = 33, C = 120;
    const size_t m = (size_t)N * C;
    float *x = kt_rand(m, -1, 1), *b = kt_rand(C, -1, 1), *res = kt_rand(m, -1, 1), *o = kt_zeros(m);
    float *pre = kt_zeros(m), *r = kt_zeros(m);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) pre[(size_t)i * C + j] = x[(size_t)i * C + j] + b[j];
    tpar_bias_dropout_residual_forward(o, x, b, res, N, C, p, seed, off);
    tpar_ref_dropout_forward(r, pre, m, p, seed, off);
    for (size_t i = 0; i < m; i++) r[i] += res[i];
    KT_CLOSE("bias_dropout_residual out", r, o, m, 1e-6);
    /* in place over the residual stream */
    float *io = kt_copy(res, m);
    tpar_bias_dropout_residual_forward(io, x, b, io, N, C, p, seed, off);
    CHECK_BYTES_EQ("bias_dropout_residual in place", o, io, m * sizeof(float));
    float *dy = kt_rand(m, -1, 1), *dx = kt_zeros(m), *db = kt_zeros(C), *dr = kt_zeros(m);
    float *rdx = kt_zeros(m), *rdb = kt_zeros(C);
    tpar_bias_dropout_residual_backward(dx, db, dr, dy, N, C, p, seed, off);
    tpar_ref_dropout_backward(rdx, dy, m, p, seed, off);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) rdb[j] += rdx[(size_t)i * C + j];
    KT_CLOSE("bias_dropout_residual dinp", rdx, dx, m, 1e-6);
    KT_CLOSE("bias_dropout_residual dbias", rdb, db, C, 1e-5);
    CHECK_BYTES_EQ("bias_dropout_residual dresidual", dy, dr, m * sizeof(float));
    /* NULL gradients are skipped: dbias alone equals the joint dbias */
    float *db2 = kt_zeros(C);
    tpar_bias_dropout_residual_backward(NULL, db2, NULL, dy, N, C, p, seed, off);
    CHECK_BYTES_EQ("bias_dropout_residual dbias alone", db, db2, C * sizeof(float));
}

static void test_softmax(void) {
    const int N = 9, C = 257;
    const size_t n = (size_t)N * C;
    float *inp = kt_rand(n, -20, 20), *out = kt_zeros(n), *ref = kt_zeros(n);
    tpar_softmax_forward(out, inp, N, C);
    tpar_ref_softmax_forward(ref, inp, N, C);
    KT_CLOSE("softmax out", ref, out, n, 1e-5);
    float *dout = kt_rand(n, -1, 1), *dinp = kt_zeros(n), *rdinp = kt_zeros(n);
    tpar_softmax_backward(dinp, dout, out, N, C);
    tpar_ref_softmax_backward(rdinp, dout, ref, N, C);
    KT_CLOSE("softmax dinp", rdinp, dinp, n, 1e-5);
}

static void test_attention_shape(int B, int T, int C, int NH) {
    char name[96];
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C;
    float *qkv = kt_rand(nqkv, -1.5f, 1.5f), *out = kt_zeros(nout), *ref = kt_zeros(nout);
    float *lse = kt_zeros((size_t)B * NH * T), *scratch = kt_zeros(tpar_attention_scratch_floats(T));
    tpar_attention_forward(out, lse, qkv, scratch, B, T, C, NH);
    tpar_ref_attention_forward(ref, qkv, B, T, C, NH);
    snprintf(name, sizeof name, "attention out B=%d T=%d C=%d NH=%d", B, T, C, NH);
    KT_CLOSE(name, ref, out, nout, 1e-5);
    float *dout = kt_rand(nout, -1, 1), *dqkv = kt_zeros(nqkv), *rdqkv = kt_zeros(nqkv);
    tpar_attention_backward(dqkv, dout, qkv, out, lse, scratch, B, T, C, NH);
    tpar_ref_attention_backward(rdqkv, dout, qkv, B, T, C, NH);
    snprintf(name, sizeof name, "attention dqkv B=%d T=%d C=%d NH=%d", B, T, C, NH);
    KT_CLOSE(name, rdqkv, dqkv, nqkv, 1e-5);
}

static void test_attention(void) {
    test_attention_shape(2, 150, 96, 4); /* three query blocks of 64, the last partial */
    test_attention_shape(1, 1, 16, 2);   /* a single token attends to itself only */
    test_attention_shape(1, 64, 128, 2); /* exactly one block, head size 64 as GPT-2 */
    test_attention_shape(3, 70, 24, 3);
    tpar_err_t err = {0};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_check_attention(2, 8, 10, 3, &err));
    CHECK_STR_CONTAINS(err.msg, "not divisible");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_check_attention(2, 0, 12, 3, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_check_attention(2, 8, 12, 3, &err));
}

static void test_embedding(void) {
    const int B = 3, T = 11, C = 40, V = 50;
    const size_t n = (size_t)B * T * C;
    int tokens[3 * 11];
    for (int i = 0; i < B * T; i++) tokens[i] = (int)(kt_unif() * V);
    tokens[0] = 0;
    tokens[1] = V - 1;
    float *wte = kt_rand((size_t)V * C, -1, 1), *wpe = kt_rand((size_t)T * C, -1, 1);
    float *out = kt_zeros(n), *ref = kt_zeros(n);
    tpar_err_t err = {0};
    CHECK_EQ_INT(TPAR_OK, tpar_embedding_forward(out, tokens, wte, wpe, B, T, C, V, 0, V, &err));
    tpar_ref_embedding_forward(ref, tokens, wte, wpe, B, T, C, 0, V);
    KT_CLOSE("embedding out", ref, out, n, 1e-7);
    /* vocab-parallel: the sum over two shards (positions added once) is the whole lookup */
    const int split = 23;
    float *s0 = kt_zeros(n), *s1 = kt_zeros(n);
    CHECK_EQ_INT(TPAR_OK, tpar_embedding_forward(s0, tokens, wte, wpe, B, T, C, V, 0, split, &err));
    CHECK_EQ_INT(TPAR_OK,
                 tpar_embedding_forward(s1, tokens, wte + (size_t)split * C, NULL, B, T, C, V, split, V - split, &err));
    for (size_t i = 0; i < n; i++) s0[i] += s1[i];
    KT_CLOSE("embedding shards summed", ref, s0, n, 1e-7);
    float *dout = kt_rand(n, -1, 1);
    float *dwte = kt_zeros((size_t)V * C), *dwpe = kt_zeros((size_t)T * C);
    float *rdwte = kt_zeros((size_t)V * C), *rdwpe = kt_zeros((size_t)T * C);
    tpar_embedding_backward(dwte, dwpe, dout, tokens, B, T, C, 0, V);
    tpar_ref_embedding_backward(rdwte, rdwpe, dout, tokens, B, T, C, 0, V);
    KT_CLOSE("embedding dwte", rdwte, dwte, (size_t)V * C, 1e-6);
    KT_CLOSE("embedding dwpe", rdwpe, dwpe, (size_t)T * C, 1e-6);
    /* the upper shard's gradient is the upper rows of the whole gradient */
    float *dhi = kt_zeros((size_t)(V - split) * C);
    tpar_embedding_backward(dhi, NULL, dout, tokens, B, T, C, split, V - split);
    KT_CLOSE("embedding dwte shard", rdwte + (size_t)split * C, dhi, (size_t)(V - split) * C, 1e-6);
    /* bad ids and ranges */
    tokens[17] = V;
    float *before = kt_copy(out, n);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_embedding_forward(out, tokens, wte, wpe, B, T, C, V, 0, V, &err));
    CHECK_STR_CONTAINS(err.msg, "token id 50 at (b=1, t=6)");
    CHECK_BYTES_EQ("embedding error leaves out", before, out, n * sizeof(float));
    tokens[17] = -3;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_embedding_forward(out, tokens, wte, wpe, B, T, C, V, 0, V, &err));
    tokens[17] = 1;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_embedding_forward(out, tokens, wte, wpe, B, T, C, V, 30, 30, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_embedding_forward(out, tokens, wte, wpe, B, -1, C, V, 0, V, &err));
}

static void test_xent(void) {
    const int N = 12, V = 37, Vp = 48, IGN = -100;
    const size_t n = (size_t)N * Vp;
    float *logits = kt_rand(n, -8, 8);
    int targets[12];
    for (int i = 0; i < N; i++) targets[i] = (int)(kt_unif() * V);
    targets[3] = IGN;
    targets[7] = IGN;
    targets[5] = V - 1;
    float rloss = 0, loss = 0, loss2 = 0;
    float *rdl = kt_zeros(n), *dl = kt_zeros(n), *losses = kt_zeros(N);
    const float dloss = 0.5f;
    int rn = tpar_ref_xent(&rloss, rdl, logits, targets, N, V, Vp, IGN, dloss);
    tpar_err_t err = {0};
    int nv = -1;
    CHECK_EQ_INT(TPAR_OK, tpar_xent_forward(&loss, losses, &nv, logits, targets, N, V, Vp, IGN, &err));
    CHECK_EQ_INT(rn, nv);
    CHECK_EQ_INT(10, nv);
    CHECK_CLOSE(rloss, loss, 1e-6, 0);
    CHECK(losses[3] == 0.0f && losses[7] == 0.0f);
    CHECK_EQ_INT(TPAR_OK, tpar_xent_forward_backward(&loss2, dl, logits, targets, N, V, Vp, IGN, dloss, &err));
    CHECK_CLOSE(rloss, loss2, 1e-6, 0);
    KT_CLOSE("xent dlogits", rdl, dl, n, 1e-5);
    /* in place: dlogits over the logits gives the same bits */
    float *io = kt_copy(logits, n);
    CHECK_EQ_INT(TPAR_OK, tpar_xent_forward_backward(&loss2, io, io, targets, N, V, Vp, IGN, dloss, &err));
    CHECK_BYTES_EQ("xent in place", dl, io, n * sizeof(float));
    /* nothing counted: loss 0, gradient 0 */
    int all_ign[12];
    for (int i = 0; i < N; i++) all_ign[i] = IGN;
    CHECK_EQ_INT(TPAR_OK, tpar_xent_forward_backward(&loss2, dl, logits, all_ign, N, V, Vp, IGN, 1.0f, &err));
    CHECK_CLOSE(0.0, loss2, 0, 0);
    CHECK_CLOSE(0.0, kt_rms(dl, n), 0, 0);
    /* a target in the padding is an error, and nothing is written */
    targets[2] = V;
    memcpy(io, logits, n * sizeof(float));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_xent_forward_backward(&loss2, io, io, targets, N, V, Vp, IGN, 1.0f, &err));
    CHECK_STR_CONTAINS(err.msg, "target 37 at row 2");
    CHECK_BYTES_EQ("xent error leaves logits", logits, io, n * sizeof(float));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_xent_forward(&loss, NULL, NULL, logits, targets, N, V, Vp, IGN, &err));
    targets[2] = 0;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_xent_forward(&loss, NULL, NULL, logits, targets, N, Vp + 1, Vp, IGN, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_xent_forward(&loss, NULL, NULL, logits, targets, 0, V, Vp, IGN, &err));
}

/* The vocab-parallel pieces: each against its reference, and composed (stats -> lse ->
 * dlogits) against the fused kernel on a whole row, and a column slice against the slice of
 * the whole row's gradient. */
static void test_xent_pieces(void) {
    const int N = 9, n = 37, ld = 48, IGN = -100;
    const size_t sz = (size_t)N * ld;
    float *x = kt_rand(sz, -8, 8);
    int targets[9];
    for (int i = 0; i < N; i++) targets[i] = 5 + (int)(kt_unif() * n); // 5 .. n+4: some outside [t0, t0+n)
    targets[4] = IGN;
    float mx[9], se[9], rmx[9], rse[9], lse[9];
    tpar_softmax_stats(mx, se, x, N, n, ld);
    tpar_ref_softmax_stats(rmx, rse, x, N, n, ld);
    KT_CLOSE("softmax stats max", rmx, mx, N, 0);
    KT_CLOSE("softmax stats sumexp", rse, se, N, 1e-5);
    for (int i = 0; i < N; i++) lse[i] = rmx[i] + logf(rse[i]);
    float *dl = kt_zeros(sz), *rdl = kt_zeros(sz);
    const int t0 = 5;
    tpar_xent_dlogits(dl, x, lse, targets, N, n, ld, t0, IGN, 0.25f);
    tpar_ref_xent_dlogits(rdl, x, lse, targets, N, n, ld, t0, IGN, 0.25f);
    KT_CLOSE("xent dlogits from lse", rdl, dl, sz, 1e-5);
    for (int j = 0; j < ld; j++) CHECK(dl[4 * ld + j] == 0.0f); // the ignored row
    for (int j = n; j < ld; j++) CHECK(dl[j] == 0.0f);          // padding
    float *io = kt_copy(x, sz); // in place: the same bits
    tpar_xent_dlogits(io, io, lse, targets, N, n, ld, t0, IGN, 0.25f);
    CHECK_BYTES_EQ("xent dlogits in place", dl, io, sz * sizeof(float));
    /* composed with t0 = 0 = the fused kernel's dlogits, within the tolerance above */
    for (int i = 0; i < N; i++) targets[i] = i == 4 ? IGN : (int)(kt_unif() * n);
    float loss = 0;
    float *fdl = kt_zeros(sz);
    tpar_err_t err = {0};
    CHECK_EQ_INT(TPAR_OK, tpar_xent_forward_backward(&loss, fdl, x, targets, N, n, ld, IGN, 2.0f, &err));
    tpar_xent_dlogits(dl, x, lse, targets, N, n, ld, 0, IGN, 2.0f / (N - 1));
    KT_CLOSE("stats + dlogits = fused", fdl, dl, sz, 1e-5);
    /* an all-padding slice */
    tpar_softmax_stats(mx, se, x, N, 0, ld);
    CHECK(isinf(mx[0]) && mx[0] < 0 && se[0] == 0.0f);
}

static void test_adamw(void) {
    const size_t n = 1000;
    float *p = kt_rand(n, -1, 1), *m = kt_zeros(n), *v = kt_zeros(n);
    float *rp = kt_copy(p, n), *rm = kt_zeros(n), *rv = kt_zeros(n);
    const tpar_adamw_t cfg = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    tpar_err_t err = {0};
    for (long t = 1; t <= 3; t++) {
        float *g = kt_rand(n, -1, 1);
        CHECK_EQ_INT(TPAR_OK, tpar_adamw_update(p, g, m, v, n, &cfg, t, &err));
        tpar_ref_adamw_update(rp, g, rm, rv, n, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, t);
    }
    KT_CLOSE("adamw params", rp, p, n, 1e-6);
    KT_CLOSE("adamw m", rm, m, n, 1e-6);
    KT_CLOSE("adamw v", rv, v, n, 1e-6);
    /* first step by hand: mhat = g, vhat = g^2, so p -= lr (sign(g) + wd p) (eps negligible) */
    float p1 = 0.5f, g1 = -0.25f, m1 = 0, v1 = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_adamw_update(&p1, &g1, &m1, &v1, 1, &cfg, 1, &err));
    CHECK_CLOSE(0.5 - 1e-3 * (-1.0 + 0.1 * 0.5), p1, 1e-6, 0);
    tpar_adamw_t bad = cfg;
    bad.beta2 = 1.0f;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_adamw_update(p, p, m, v, n, &bad, 1, &err));
    CHECK_STR_CONTAINS(err.msg, "beta2");
    bad = cfg;
    bad.lr = NAN;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_adamw_update(p, p, m, v, n, &bad, 1, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_adamw_update(p, p, m, v, n, &cfg, 0, &err));
    CHECK_STR_CONTAINS(err.msg, "steps count from 1");
}

static void test_validation(void) {
    tpar_err_t err = {0};
    CHECK_EQ_INT(TPAR_OK, tpar_check_dims(&err, "x", 3, 2, 1024, 768));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_check_dims(&err, "layernorm", 2, 0, 768));
    CHECK_STR_CONTAINS(err.msg, "layernorm: size #1 is 0");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_check_dims(&err, "gelu", 2, 16, -4));
    CHECK_STR_CONTAINS(err.msg, "size #2 is -4");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_check_dims(&err, "huge", 3, INT_MAX, INT_MAX, INT_MAX));
    CHECK_STR_CONTAINS(err.msg, "overflow");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_blas_set_threads(0, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_blas_set_threads(1, &err));
    CHECK_EQ_INT(1, tpar_blas_get_threads());
}

int main(void) {
    kt_seed(42);
    tpar_err_t err = {0};
    tpar_blas_set_threads(1, &err);
    test_validation();
    test_matmul();
    test_layernorm();
    test_gelu();
    test_residual();
    test_dropout();
    test_softmax();
    test_attention();
    test_embedding();
    test_xent();
    test_xent_pieces();
    test_adamw();
    kt_free_all();
    return check_finish("test_kernels");
}
