/* Tensor-parallel inference: the KV cache split by heads, prefill, one-token decode. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tpar/infer.h"
#include "tpar/kernels.h"

tpar_status tpar_infer_init(tpar_infer_t *s, tpar_gpt2_t *m, int T_max, tpar_err_t *err) {
    memset(s, 0, sizeof *s);
    if (m->cfg.dropout != 0.0f)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "inference: the model has dropout %g; build it with dropout 0",
                            (double)m->cfg.dropout);
    if (m->sp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "inference: the model uses sequence parallelism; build it without (decode has one token)");
    if (T_max < 1 || T_max > m->T || m->B < 1)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "inference: cache of %d tokens; the model was built for 1 to %d", T_max,
                            m->T);
    int tp = m->tp.size;
    s->m = m;
    s->T_max = T_max;
    s->L = m->cfg.n_layer;
    s->C = m->cfg.n_embd;
    s->NHl = m->cfg.n_head / tp;
    s->hd = s->C / m->cfg.n_head;
    s->Cl = s->C / tp;
    s->V = m->cfg.vocab_size;
    s->Vl = m->Vp / tp;
    s->Hl = 4 * s->C / tp;
    size_t cache = (size_t)s->L * s->NHl * T_max * s->hd; // (L, NH/tp, T_max, hd)
    s->k = tpar_calloc_aligned(2 * cache, sizeof(float));
    size_t n = 4 * (size_t)s->C + 4 * (size_t)s->Cl + 2 * (size_t)s->Hl + (size_t)s->NHl * T_max + 2 + (size_t)s->Vl +
               (size_t)m->Vp;
    float *p = s->x = tpar_calloc_aligned(n, sizeof(float));
    if (!s->k || !p) {
        tpar_infer_free(s);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "inference: out of memory for a KV cache of 2 x %zu floats", cache);
    }
    s->v = s->k + cache;
    p += s->C;
    s->h = p, p += s->C;
    s->ln = p, p += s->C;
    s->y = p, p += s->C;
    s->qkv = p, p += 3 * (size_t)s->Cl;
    s->att = p, p += s->Cl;
    s->fc = p, p += s->Hl;
    s->gelu = p, p += s->Hl;
    s->scores = p, p += (size_t)s->NHl * T_max;
    s->stats = p, p += 2;
    s->logits = p, p += s->Vl;
    s->gathered = p;
    return TPAR_OK;
}

void tpar_infer_free(tpar_infer_t *s) {
    if (!s) return;
    tpar_free(s->k);
    tpar_free(s->x);
    memset(s, 0, sizeof *s);
}

/* Start of (layer l, local head h, position t) in the K or V cache. */
static size_t cache_at(const tpar_infer_t *s, int l, int h, int t) {
    return (((size_t)l * s->NHl + h) * s->T_max + t) * s->hd;
}

/* Copies row t's keys and values of this rank's heads from a fused (3C/tp) QKV row. */
static void cache_put(tpar_infer_t *s, int l, int t, const float *qkv) {
    for (int h = 0; h < s->NHl; h++) {
        size_t at = cache_at(s, l, h, t);
        memcpy(s->k + at, qkv + s->Cl + (size_t)h * s->hd, (size_t)s->hd * sizeof(float));
        memcpy(s->v + at, qkv + 2 * (size_t)s->Cl + (size_t)h * s->hd, (size_t)s->hd * sizeof(float));
    }
}

/* The local vocabulary shard (Vp/tp) gathered into the full row; the first V go to out. */
static tpar_status gather_logits(tpar_infer_t *s, const float *local, float *out, tpar_err_t *err) {
    if (!out) return TPAR_OK;
    tpar_gpt2_t *m = s->m;
    if (m->tp.size == 1) {
        memcpy(out, local, (size_t)s->V * sizeof(float));
        return TPAR_OK;
    }
    if (tpar_comm_allgather(m->tp.comm, local, s->gathered, (size_t)s->Vl, TPAR_F32))
        return tpar_err_set(err, TPAR_ERR_PEER_DEAD, "inference: logits all-gather failed: %s",
                            tpar_comm_error(m->tp.comm));
    memcpy(out, s->gathered, (size_t)s->V * sizeof(float));
    return TPAR_OK;
}

static tpar_status check_tokens(const tpar_infer_t *s, const int *tokens, int n, tpar_err_t *err) {
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->V)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "inference: token %d at position %d is outside the vocabulary [0, %d)",
                                tokens[i], i, s->V);
    return TPAR_OK;
}

tpar_status tpar_infer_prefill(tpar_infer_t *s, const int *tokens, int n, float *logits, tpar_err_t *err) {
    if (n < 1 || n > s->T_max)
        return tpar_err_set(err, TPAR_ERR_SHAPE,
                            "inference: a prompt of %d tokens does not fit the context of %d (1 to %d tokens)", n,
                            s->T_max, s->T_max);
    tpar_status st = check_tokens(s, tokens, n, err);
    if (st) return st;
    tpar_gpt2_t *m = s->m;
    s->pos = 0;
    // The model's forward, with the head only for the last row (the one sampled); none without logits.
    int last = n - 1;
    if ((st = tpar_gpt2_forward_rows(m, tokens, 1, n, 0, &last, logits ? 1 : 0, err))) return st;
    // Each layer's attention kept its fused QKV (1, n, 3C/tp) of the forward: K and V of our heads.
    for (int l = 0; l < s->L; l++)
        for (int t = 0; t < n; t++) cache_put(s, l, t, m->blocks[l].attn.qkvo + (size_t)t * 3 * s->Cl);
    s->pos = n;
    return gather_logits(s, m->logits, logits, err); // (Vp/tp) of row n-1
}

/* att (C/tp) = softmax(q K^T / sqrt(hd)) V for each local head over cache positions 0 .. T-1:
 * the only work of a decode step that grows with the context. Heads in parallel once the cache
 * they read is large (NH/tp * T * hd floats of K and as many of V). */
static void attend(tpar_infer_t *s, int l, int T) {
    const float scale = 1.0f / sqrtf((float)s->hd);
    const int hd = s->hd;
#pragma omp parallel for schedule(static) if ((size_t)s->NHl * T * hd >= 1 << 16)
    for (int h = 0; h < s->NHl; h++) {
        const float *q = s->qkv + (size_t)h * hd;           // (hd)
        const float *K = s->k + cache_at(s, l, h, 0);       // (T, hd)
        const float *Vc = s->v + cache_at(s, l, h, 0);      // (T, hd)
        float *o = s->att + (size_t)h * hd, mx = -INFINITY; // (hd)
        float *sc = s->scores + (size_t)h * s->T_max;       // (T)
        for (int t = 0; t < T; t++) {
            const float *kr = K + (size_t)t * hd;
            float d = 0.0f;
#pragma omp simd reduction(+ : d)
            for (int c = 0; c < hd; c++) d += q[c] * kr[c];
            sc[t] = d * scale;
            mx = fmaxf(mx, sc[t]);
        }
        float sum = 0.0f;
        for (int t = 0; t < T; t++) sum += (sc[t] = expf(sc[t] - mx));
        memset(o, 0, (size_t)hd * sizeof(float));
        for (int t = 0; t < T; t++) {
            const float p = sc[t] / sum, *vr = Vc + (size_t)t * hd;
#pragma omp simd
            for (int c = 0; c < hd; c++) o[c] += p * vr[c];
        }
    }
}

tpar_status tpar_infer_decode(tpar_infer_t *s, int token, float *logits, tpar_err_t *err) {
    if (s->pos >= s->T_max)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "inference: the KV cache is full (%d tokens); slide the window first",
                            s->T_max);
    tpar_status st = check_tokens(s, &token, 1, err);
    if (st) return st;
    tpar_gpt2_t *m = s->m;
    const int C = s->C, Cl = s->Cl, Hl = s->Hl, t = s->pos;
    // x (C) = wte[token] (vocab-parallel lookup, all-reduced) + wpe[t]
    if ((st = tpar_vocab_embedding_forward(&m->emb, s->x, &token, 1, err))) return st;
    const float *wpe = m->params + m->tensors[1].offset + (size_t)t * C;
    for (int c = 0; c < C; c++) s->x[c] += wpe[c];
    // The block's layers with N = 1, their matmuls through the small-M kernel: each weight is
    // read once per token, and reading them is the cost of a decode step.
    for (int l = 0; l < s->L; l++) {
        tpar_block_t *b = &m->blocks[l];
        float **P = b->params;
        // h = x + attn(ln1(x)) + b_proj
        tpar_layernorm_forward(s->ln, s->stats, s->stats + 1, s->x, P[TPAR_BLOCK_LN1W], P[TPAR_BLOCK_LN1B], 1, C);
        tpar_matmul_forward(s->qkv, s->ln, b->attn.qkv.w, b->attn.qkv.b, 1, C, 3 * Cl); // (3C/tp) column-parallel
        cache_put(s, l, t, s->qkv);
        attend(s, l, t + 1);
        tpar_matmul_forward(s->y, s->att, b->attn.proj.w, NULL, 1, Cl, C); // (C) row-parallel: a partial sum
        if ((st = tpar_map_allreduce(&m->tp, s->y, (size_t)C, err))) return st;
        tpar_bias_dropout_residual_forward(s->h, s->y, P[TPAR_BLOCK_ATTPROJB], s->x, 1, C, 0.0f, 0, 0);
        // x = h + mlp(ln2(h)) + b_fcproj
        tpar_layernorm_forward(s->ln, s->stats, s->stats + 1, s->h, P[TPAR_BLOCK_LN2W], P[TPAR_BLOCK_LN2B], 1, C);
        tpar_matmul_forward(s->fc, s->ln, b->mlp.fc.w, NULL, 1, C, Hl);     // (4C/tp) column-parallel
        tpar_bias_gelu_forward(s->gelu, s->fc, b->mlp.fc.b, 1, Hl);       // (4C/tp)
        tpar_matmul_forward(s->y, s->gelu, b->mlp.proj.w, NULL, 1, Hl, C); // (C) row-parallel: a partial sum
        if ((st = tpar_map_allreduce(&m->tp, s->y, (size_t)C, err))) return st;
        tpar_bias_dropout_residual_forward(s->x, s->y, P[TPAR_BLOCK_FCPROJB], s->h, 1, C, 0.0f, 0, 0);
    }
    const float *lnfw = m->params + m->tensors[2].offset, *lnfb = m->params + m->tensors[3].offset;
    tpar_layernorm_forward(s->ln, s->stats, s->stats + 1, s->x, lnfw, lnfb, 1, C);
    tpar_matmul_forward(s->logits, s->ln, m->head.w, NULL, 1, C, s->Vl); // (Vp/tp) tied vocab-parallel head
    s->pos = t + 1;
    return gather_logits(s, s->logits, logits, err);
}

/* ---- sampling --------------------------------------------------------------------------- */

tpar_status tpar_sampler_check(const tpar_sampler_t *sp, tpar_err_t *err) {
    if (!(sp->temperature >= 0.0 && isfinite(sp->temperature)))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "sampling: temperature %g must be a finite number >= 0",
                            sp->temperature);
    if (sp->top_k < 0) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "sampling: top-k %d must be >= 0", sp->top_k);
    return TPAR_OK;
}

/* The k-th largest of a (n), by quickselect on a copy held in work (n). */
static float kth_largest(const float *a, int n, int k, float *work) {
    memcpy(work, a, (size_t)n * sizeof(float));
    int lo = 0, hi = n - 1, want = k - 1; // index in descending order
    while (lo < hi) {
        float pivot = work[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (work[i] > pivot) i++;
            while (work[j] < pivot) j--;
            if (i <= j) {
                float tmp = work[i];
                work[i++] = work[j];
                work[j--] = tmp;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return work[want];
}

int tpar_sample(const tpar_sampler_t *sp, const float *logits, int V, uint64_t i, float *work) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (sp->temperature <= 0.0) return best;
    // Only logits >= the k-th largest take part (ties at the threshold all do).
    float thr = sp->top_k > 0 && sp->top_k < V ? kth_largest(logits, V, sp->top_k, work) : -INFINITY;
    double mx = logits[best], sum = 0.0;
    for (int v = 0; v < V; v++)
        if (logits[v] >= thr) sum += exp((logits[v] - mx) / sp->temperature);
    double u = (double)tpar_rng_u32(sp->seed, i) / 4294967296.0 * sum, acc = 0.0;
    int last = best;
    for (int v = 0; v < V; v++) {
        if (logits[v] < thr) continue;
        last = v;
        if ((acc += exp((logits[v] - mx) / sp->temperature)) > u) return v;
    }
    return last; // u within rounding of the total
}

/* ---- generation ---------------------------------------------------------------------------- */

tpar_status tpar_infer_generate(tpar_infer_t *s, const int *prompt, int n, int k, const tpar_sampler_t *sp,
                                int *out, tpar_token_fn on_token, void *ctx, tpar_generate_stats_t *stats,
                                tpar_err_t *err) {
    memset(stats, 0, sizeof *stats);
    stats->n_prompt = n;
    if (k < 1) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "generate: %d tokens requested; ask for at least 1", k);
    tpar_status st = tpar_sampler_check(sp, err);
    if (st) return st;
    int V = s->V, keep = s->T_max / 2 > 0 ? s->T_max / 2 : 1;
    // hist (n + k): the prompt then the generated tokens; the window slides over it.
    int *hist = malloc(((size_t)n + (size_t)k) * sizeof(int));
    float *logits = malloc(2 * (size_t)V * sizeof(float));
    if (!hist || !logits) {
        free(hist), free(logits);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "generate: out of memory");
    }
    memcpy(hist, prompt, (size_t)n * sizeof(int));
    int len = n;
    double t0 = tpar_now(), t1 = t0;
    st = tpar_infer_prefill(s, hist, n, logits, err);
    for (int i = 0; i < k && !st; i++) {
        int tok = tpar_sample(sp, logits, V, (uint64_t)i, logits + V);
        out[i] = hist[len++] = tok;
        stats->n_generated = i + 1;
        if (i == 0) t1 = tpar_now(), stats->ttft_s = t1 - t0;
        if (on_token && (st = on_token(ctx, tok, err))) break;
        if (i == k - 1) break;
        if (s->pos < s->T_max) {
            st = tpar_infer_decode(s, tok, logits, err);
        } else { // the cache is full: keep the last T_max/2 tokens (tok included) and go on
            stats->n_slides++;
            st = tpar_infer_prefill(s, hist + len - keep, keep, logits, err);
        }
    }
    stats->decode_s = tpar_now() - t1;
    if (stats->n_generated > 1 && stats->decode_s > 0) stats->tokens_per_s = (stats->n_generated - 1) / stats->decode_s;
    free(hist), free(logits);
    return st;
}
