/* Vocab-parallel embedding and cross-entropy. */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "tpar/kernels.h"

/* Rank r owns entries [r*Vp/tp, (r+1)*Vp/tp) of the padded vocabulary. */
static tpar_status vocab_shard(const tpar_tp_t *tp, const char *who, int V, int Vp, int *Vl, int *v0,
                               tpar_err_t *err) {
    if (V < 1 || Vp < V)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "%s: vocabulary V = %d, padded Vp = %d; need 1 <= V <= Vp", who,
                            V, Vp);
    if (Vp % tp->size)
        return tpar_err_set(err, TPAR_ERR_SHAPE,
                            "%s: padded vocabulary Vp = %d is not divisible by the tensor-parallel size %d "
                            "(hint: Vp = tpar_vocab_padded(V, tp, 0) = %d)",
                            who, Vp, tp->size, tpar_vocab_padded(V, tp->size, 0));
    *Vl = Vp / tp->size;
    *v0 = tp->rank * *Vl;
    return TPAR_OK;
}

/* ---- embedding ----------------------------------------------------------------------------- */

tpar_status tpar_vocab_embedding_init(tpar_vocab_embedding_t *e, const tpar_tp_t *tp, int V, int Vp, int C,
                                      int max_tokens, tpar_err_t *err) {
    memset(e, 0, sizeof *e);
    const char *who = "vocab-parallel embedding";
    tpar_status st = tpar_check_dims(err, "vocab-parallel embedding (Vp, C, max_tokens)", 3, Vp, C, max_tokens);
    if (st || (st = vocab_shard(tp, who, V, Vp, &e->Vl, &e->v0, err))) return st;
    e->tp = tp;
    e->V = V;
    e->Vp = Vp;
    e->C = C;
    e->max_tokens = max_tokens;
    e->out = (tpar_act_spec_t){tp->sp ? TPAR_LAYOUT_SPLIT_SEQ : TPAR_LAYOUT_REPLICATED, C};
    // (N, C): the partial lookup before its reduce-scatter, or dout gathered (SP only)
    size_t n = tp->sp && tp->size > 1 ? (size_t)max_tokens * C : 0;
    return tpar_par_alloc(e->tp, &e->ws, n, "vocab-parallel embedding workspace", err);
}

void tpar_vocab_embedding_free(tpar_vocab_embedding_t *e) {
    if (!e) return;
    tpar_par_free(e->tp, e->ws);
    e->ws = NULL;
}

/* Ids are replicated: every rank finds the same bad id, so all fail before any collective. */
static tpar_status check_ids(const char *who, const int *ids, int N, int V, int ignore, tpar_err_t *err) {
    for (int i = 0; i < N; i++)
        if ((ids[i] < 0 || ids[i] >= V) && ids[i] != ignore)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: id %d at token %d is outside the vocabulary [0, %d)",
                                who, ids[i], i, V);
    return TPAR_OK;
}

tpar_status tpar_vocab_embedding_forward(tpar_vocab_embedding_t *e, float *out, const int *ids, int N,
                                         tpar_err_t *err) {
    const tpar_tp_t *tp = e->tp;
    const char *who = "vocab-parallel embedding forward";
    tpar_status st = tpar_par_check_tokens(tp, who, N, e->max_tokens, err);
    if (st || (st = check_ids(who, ids, N, e->V, -1, err))) return st;
    int sp = tp->sp && tp->size > 1;
    float *full = sp ? e->ws : out; // (N, C) rows of ids this rank does not own are zero
    // The padded vocabulary is the kernel's V: ids were checked against the real one above.
    if ((st = tpar_embedding_forward(full, ids, e->w, NULL, 1, N, e->C, e->Vp, e->v0, e->Vl, err))) return st;
    if (sp) return tpar_map_reduce_scatter_seq(tp, out, full, N / tp->size, e->C, err);
    return tpar_map_allreduce(tp, out, (size_t)N * e->C, err);
}

tpar_status tpar_vocab_embedding_backward(tpar_vocab_embedding_t *e, const float *dout, const int *ids, int N,
                                          tpar_err_t *err) {
    const tpar_tp_t *tp = e->tp;
    tpar_status st = tpar_par_check_tokens(tp, "vocab-parallel embedding backward", N, e->max_tokens, err);
    if (st) return st;
    const float *d = dout; // (N, C)
    if (tp->sp && tp->size > 1) {
        if ((st = tpar_map_gather_seq(tp, e->ws, dout, N / tp->size, e->C, err))) return st;
        d = e->ws;
    }
    tpar_embedding_backward(e->dw, NULL, d, ids, 1, N, e->C, e->v0, e->Vl);
    return TPAR_OK;
}

/* ---- cross-entropy ------------------------------------------------------------------------- */

tpar_status tpar_vocab_xent_init(tpar_vocab_xent_t *x, const tpar_tp_t *tp, int V, int Vp, int ignore_index,
                                 int max_tokens, tpar_err_t *err) {
    memset(x, 0, sizeof *x);
    tpar_status st = tpar_check_dims(err, "vocab-parallel cross-entropy (Vp, max_tokens)", 2, Vp, max_tokens);
    if (st || (st = vocab_shard(tp, "vocab-parallel cross-entropy", V, Vp, &x->Vl, &x->v0, err))) return st;
    if (ignore_index >= 0 && ignore_index < V)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "vocab-parallel cross-entropy: ignore_index %d is a real token of the vocabulary "
                            "[0, %d) (hint: use -100)", ignore_index, V);
    x->tp = tp;
    x->V = V;
    x->Vp = Vp;
    x->ignore_index = ignore_index;
    x->max_tokens = max_tokens;
    x->in = (tpar_act_spec_t){TPAR_LAYOUT_SPLIT_LAST, Vp};
    if ((st = tpar_par_alloc(x->tp, &x->lse, (size_t)max_tokens, "vocab-parallel cross-entropy", err))) return st;
    return tpar_par_alloc(x->tp, &x->ws, 3 * (size_t)max_tokens, "vocab-parallel cross-entropy", err);
}

void tpar_vocab_xent_free(tpar_vocab_xent_t *x) {
    if (!x) return;
    tpar_par_free(x->tp, x->lse);
    tpar_par_free(x->tp, x->ws);
    x->lse = x->ws = NULL;
}

/* Columns of this rank that are real entries (the rest is padding). */
static int real_cols(const tpar_vocab_xent_t *x) {
    int n = x->V - x->v0;
    return n < 0 ? 0 : n > x->Vl ? x->Vl : n;
}

tpar_status tpar_vocab_xent_forward(tpar_vocab_xent_t *x, float *loss, float *losses, const float *logits,
                                    const int *targets, int N, tpar_err_t *err) {
    const tpar_tp_t *tp = x->tp;
    const char *who = "vocab-parallel cross-entropy";
    if (N < 1 || N > x->max_tokens)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "%s: %d rows, expected 1 .. %d", who, N, x->max_tokens);
    tpar_status st = check_ids(who, targets, N, x->V, x->ignore_index, err);
    if (st) return st;
    int Vl = x->Vl, nr = real_cols(x);
    float *mx = x->ws;      // (N) row max
    float *sums = mx + N;   // (2N) [sum of exp(l - max) | target logit], reduced together
    // 1. each row's local max and sum of exp(l - local max) over this rank's real columns,
    //    in one read of the logits (threaded, vectorised: tpar_softmax_stats)
    tpar_softmax_stats(mx, sums, logits, N, nr, Vl);
    for (int i = 0; i < N; i++) {
        int t = targets[i] - x->v0;
        sums[N + i] = targets[i] != x->ignore_index && t >= 0 && t < nr ? logits[(size_t)i * Vl + t] : 0.0f;
    }
    if (tp->size > 1) {
        // 2. the global max; each local sum rescaled to it (exp(local - global) <= 1; a rank
        //    whose columns are all padding has sum 0 and max -inf), then one all-reduce of
        //    the sums and the target logits together
        float *lmx = x->lse; // (N) scratch until step 3: the local max
        memcpy(lmx, mx, (size_t)N * sizeof(float));
        if ((st = tpar_comm_allreduce(tp->comm, TPAR_IN_PLACE, mx, (size_t)N, TPAR_F32, TPAR_MAX)))
            return tpar_par_comm_err(tp, st, "vocab-parallel cross-entropy: all-reduce of the row max", err);
        for (int i = 0; i < N; i++) sums[i] = sums[i] > 0.0f ? sums[i] * expf(lmx[i] - mx[i]) : 0.0f;
        if ((st = tpar_map_allreduce(tp, sums, 2 * (size_t)N, err))) return st;
    }
    // 3. loss = lse - target logit, averaged over counted rows
    double total = 0.0;
    int n_valid = 0;
    for (int i = 0; i < N; i++) {
        x->lse[i] = mx[i] + logf(sums[i]);
        float li = 0.0f;
        if (targets[i] != x->ignore_index) {
            li = x->lse[i] - sums[N + i];
            total += li;
            n_valid++;
        }
        if (losses) losses[i] = li;
    }
    x->n_valid = n_valid;
    *loss = n_valid ? (float)(total / n_valid) : 0.0f;
    return TPAR_OK;
}

void tpar_vocab_xent_backward(const tpar_vocab_xent_t *x, float *dlogits, const float *logits,
                              const int *targets, int N, float dloss) {
    float scale = x->n_valid ? dloss / (float)x->n_valid : 0.0f;
    tpar_xent_dlogits(dlogits, logits, x->lse, targets, N, real_cols(x), x->Vl, x->v0, x->ignore_index, scale);
}
