/* tpar plan: the memory and step-time model, and the layout search.
 *
 * Conventions: l layers, h hidden, a heads, d = h/a head size, V vocabulary (padded to a
 * multiple of 128*t for the work, as Megatron-LM does), s sequence, b micro-batch,
 * B global batch, t/p/dp the tensor/pipeline/data-parallel sizes, m = B/(dp*b)
 * micro-batches per step, e bytes per activation (2 bf16, 4 fp32). Ranks are placed
 * Megatron's way: tensor-parallel groups innermost (contiguous ranks), then data-parallel,
 * then pipeline stages. Formulas and sources: docs/PLAN.md. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tpar/plan.h"

const char *tpar_plan_recompute_str(int r) {
    switch (r) {
    case TPAR_RECOMPUTE_NONE: return "none";
    case TPAR_RECOMPUTE_SELECTIVE: return "selective";
    case TPAR_RECOMPUTE_FULL: return "full";
    default: return "auto";
    }
}

const char *tpar_plan_precision_str(tpar_precision_t p) { return p == TPAR_PRECISION_FP32 ? "fp32" : "bf16"; }

/* ---- counts ------------------------------------------------------------------------ */

double tpar_plan_params(const tpar_plan_model_t *m) {
    double l = (double)m->layers, h = (double)m->hidden;
    /* per layer: QKV 3h^2+3h, projection h^2+h, MLP 8h^2+5h, two layernorms 4h */
    return l * (12 * h * h + 13 * h) + (double)(m->vocab + m->seq) * h + 2 * h;
}

/* Forward FLOPs of one layer for one sequence: 24 s h^2 (QKV, projection, MLP) plus
 * 4 s^2 h (Q K^T and attention x V). */
static double layer_fwd_flops(const tpar_plan_model_t *m) {
    double s = (double)m->seq, h = (double)m->hidden;
    return 24 * s * h * h + 4 * s * s * h;
}

double tpar_plan_model_flops(const tpar_plan_model_t *m, double batch) {
    /* forward + backward (twice the forward) of every layer and of the output layer
     * (2 s h V forward): 72 B s l h^2 (1 + s/(6h) + V/(12 l h)) (Narayanan et al. 2021). */
    double s = (double)m->seq, h = (double)m->hidden, V = (double)m->vocab;
    return batch * 3 * ((double)m->layers * layer_fwd_flops(m) + 2 * s * h * V);
}

/* Hardware FLOPs: model FLOPs plus what recomputation repeats. Full recomputation repeats
 * every layer's forward, giving the paper's 96 B s l h^2 (1 + s/(6h) + V/(16 l h));
 * selective repeats only Q K^T and attention x V (4 s^2 h per layer). */
static double hardware_flops(const tpar_plan_model_t *m, double batch, int r) {
    double s = (double)m->seq, h = (double)m->hidden, l = (double)m->layers;
    double extra = r == TPAR_RECOMPUTE_FULL ? layer_fwd_flops(m) : r == TPAR_RECOMPUTE_SELECTIVE ? 4 * s * s * h : 0;
    return tpar_plan_model_flops(m, batch) + batch * l * extra;
}

static double padded_vocab(const tpar_plan_model_t *m, double t) {
    double q = 128 * t;
    return ceil((double)m->vocab / q) * q;
}

static double elem_bytes(tpar_precision_t p) { return p == TPAR_PRECISION_FP32 ? 4 : 2; }

double tpar_plan_layer_activation_bytes(const tpar_plan_model_t *m, double b, double t, int sp,
                                        tpar_recompute_t r, double e) {
    double s = (double)m->seq, h = (double)m->hidden, a = (double)m->heads;
    double sbh = s * b * h;
    if (r == TPAR_RECOMPUTE_FULL) return sbh * e / (sp ? t : 1);
    /* Korthikanti et al. 2022, section 4, with e bytes per value and 1-byte dropout masks:
     * kept whole on every TP rank without SP: both layernorm inputs (2e), the QKV input (e),
     * the MLP input (e), two dropout masks (2);
     * split over t: Q and K (2e), V (e), projection input (e), GeLU input (4e), fc2 input (4e);
     * attention scores a s^2 b: softmax output (e), its dropout mask (1), dropout output (e). */
    double whole = sbh * (4 * e + 2), split = sbh * 12 * e;
    double scores = r == TPAR_RECOMPUTE_SELECTIVE ? 0 : a * s * s * b * (2 * e + 1);
    return (sp ? whole / t : whole) + (split + scores) / t;
}

/* ---- costs of the pieces ----------------------------------------------------------- */

/* A batch of GEMMs (M x K) (K x N) on one GPU, on the roofline: compute at gemm_eff of
 * peak or memory traffic of the three matrices at hbm_eff, whichever is slower. The
 * attention GEMMs (K = head size) are memory-bound on both presets. */
static double gemm_s(const tpar_plan_hw_t *hw, double peak, double e, double batch, double M,
                     double N, double K) {
    double flops = 2 * batch * M * N * K;
    double bytes = e * batch * (M * K + K * N + M * N);
    return fmax(flops / (peak * hw->gemm_eff), bytes / (hw->hbm_bw * hw->hbm_eff));
}

/* How the slowest group of n ranks with rank stride `stride` lies on nodes of G GPUs:
 * how many nodes it spans and how many of its members the least populated node holds. */
typedef struct {
    double n, nodes, per_node;
} group_t;

static group_t group_of(long long n, long long stride, long long G) {
    group_t g = {(double)n, (double)n, 1}; /* stride >= G: one member a node */
    if (stride < G) {
        long long k = G / stride; /* members a node when groups line up with nodes */
        if (k > n) k = n;
        g.per_node = (double)k;
        g.nodes = (double)((n + k - 1) / k);
        /* Groups that do not line up with node boundaries (e.g. tp 3 on 8-GPU nodes): some
         * straddle two nodes, one of which may hold a single member. */
        if (G % stride || ((G / stride) % n && n % (G / stride))) {
            g.per_node = 1;
            g.nodes += g.nodes < (double)n ? 1 : 0;
        }
    }
    return g;
}

/* Ring bus bandwidth of a group: NVLink inside a node; across nodes each node's k members
 * send through their own NICs, so the ring runs at min(NVLink, k * IB). */
static double ring_bw(const tpar_plan_hw_t *hw, group_t g) {
    double nvl = hw->nvlink_bw * hw->nvlink_eff;
    if (g.nodes <= 1) return nvl;
    return fmin(nvl, g.per_node * hw->ib_bw * hw->ib_eff);
}

/* A collective's cost: seconds, and the bytes it moves out of each GPU ("bus" bytes, the
 * unit of tpar_comm_stats_t.bus_bytes, which tpar's own runs count). */
typedef struct {
    double s, bus;
} coll_cost_t;

static coll_cost_t coll_times(coll_cost_t c, double k) { return (coll_cost_t){k * c.s, k * c.bus}; }

/* Ring collectives of `bytes` (the full buffer) over group g, as NCCL models them: latency
 * base + steps * per-step latency, plus (n-1)/n of the buffer per pass at bus bandwidth.
 * passes = 2 for all-reduce, 1 for all-gather or reduce-scatter. */
static coll_cost_t ring(const tpar_plan_hw_t *hw, group_t g, double bytes, int passes) {
    if (g.n <= 1 || bytes <= 0) return (coll_cost_t){0, 0};
    double steps = passes * (g.n - 1), inter = passes * (g.nodes - 1);
    double lat = hw->lat_base_s + (steps - inter) * hw->lat_intra_s + inter * hw->lat_inter_s;
    double bus = passes * (g.n - 1) / g.n * bytes;
    return (coll_cost_t){lat + bus / ring_bw(hw, g), bus};
}

/* One pipeline stage's work for one micro-batch, split by kind and by pass. */
typedef struct {
    double gemm, elem, tp;     /* whole micro-batch: forward, recomputation, backward */
    double fwd, bwd;           /* the same total split into forward and backward (with recompute) */
    double tp_bus;             /* bus bytes of the TP collectives */
} stage_cost_t;

static void add_cost(stage_cost_t *c, double gemm, double elem, coll_cost_t tp, int backward) {
    c->gemm += gemm;
    c->elem += elem;
    c->tp += tp.s;
    c->tp_bus += tp.bus;
    if (backward)
        c->bwd += gemm + elem + tp.s;
    else
        c->fwd += gemm + elem + tp.s;
}

typedef struct {
    const tpar_plan_model_t *m;
    const tpar_plan_hw_t *hw;
    const tpar_plan_layout_t *L;
    double peak, e, hbm, V;
    group_t tpg;
} ctx_t;

/* One transformer layer, one micro-batch: forward, recomputation, backward. */
static void layer_cost(const ctx_t *c, stage_cost_t *out) {
    const tpar_plan_model_t *m = c->m;
    double t = (double)c->L->tp, b = (double)c->L->micro_batch, e = c->e;
    double s = (double)m->seq, h = (double)m->hidden, a = (double)m->heads, d = h / a;
    double M = b * s; /* tokens */
    double qkv = gemm_s(c->hw, c->peak, e, 1, M, 3 * h / t, h);    /* QKV        (b s, 3h/t) */
    double fc1 = gemm_s(c->hw, c->peak, e, 1, M, 4 * h / t, h);    /* fc1        (b s, 4h/t) */
    double dense = qkv + fc1 + gemm_s(c->hw, c->peak, e, 1, M, h, h / t) /* projection (b s, h) */
                   + gemm_s(c->hw, c->peak, e, 1, M, h, 4 * h / t);       /* fc2        (b s, h) */
    double attn = gemm_s(c->hw, c->peak, e, b * a / t, s, s, d)     /* Q K^T (b a/t, s, s)    */
                  + gemm_s(c->hw, c->peak, e, b * a / t, s, d, s);  /* P V   (b a/t, s, d)    */
    /* Element-wise traffic per token (read + write), e bytes a value, 1-byte masks:
     * two layernorms 4he, two bias-dropout-adds 6he + 2h (on whole h unless SP);
     * bias-GeLU 8he / t; the copy of the attention output from (b a, s, d) back to (s, b, h)
     * 2he / t; scale-mask-softmax 2 a s e / t, attention dropout (2e + 1) a s / t. */
    double whole = (10 * h * e + 2 * h) / (c->L->sp ? t : 1);
    double scores = (4 * e + 1) * a * s / t;
    double elem = M * (whole + 10 * h * e / t + scores) / c->hbm;
    double elem_scores = M * scores / c->hbm;
    /* Two all-reduces of the (b, s, h) activation forward and two backward (with SP an
     * all-gather + reduce-scatter pair each: the same bytes and steps). */
    coll_cost_t ar2 = coll_times(ring(c->hw, c->tpg, M * h * e, 2), 2), none = {0, 0};
    add_cost(out, dense + attn, elem, ar2, 0);
    if (c->L->recompute == TPAR_RECOMPUTE_FULL) add_cost(out, dense + attn, elem, ar2, 1);
    if (c->L->recompute == TPAR_RECOMPUTE_SELECTIVE) add_cost(out, attn, elem_scores, none, 1);
    add_cost(out, 2 * (dense + attn), 2 * elem, ar2, 1);
    if (c->L->sp) {
        /* SP keeps only the rank's tokens of the QKV and fc1 inputs, so the backward gathers
         * them again for the weight gradients, in the background of the input-gradient GEMMs
         * (as Megatron-LM does): only what those do not hide is time. The layernorm weights
         * and the row-parallel biases see only the rank's tokens: their gradients (6h) are
         * all-reduced. */
        coll_cost_t ag = coll_times(ring(c->hw, c->tpg, M * h * e, 1), 2);
        ag.s = fmax(0, ag.s - (qkv + fc1));
        add_cost(out, 0, 0, ag, 1);
        add_cost(out, 0, 0, ring(c->hw, c->tpg, 6 * h * e, 2), 1);
    }
}

/* Work outside the layers: embedding on the first stage, final layernorm, output layer
 * and cross-entropy on the last. Never recomputed. */
static void ends_cost(const ctx_t *c, int first, int last, stage_cost_t *out) {
    const tpar_plan_model_t *m = c->m;
    double t = (double)c->L->tp, b = (double)c->L->micro_batch, e = c->e;
    double s = (double)m->seq, h = (double)m->hidden, M = b * s, V = c->V;
    double seqsplit = c->L->sp ? t : 1;
    coll_cost_t none = {0, 0};
    if (first) {
        /* vocab-parallel lookup: all-reduce (SP: reduce-scatter) of (b, s, h); dropout */
        double elem = M * (2 * h * e + h) / seqsplit / c->hbm;
        add_cost(out, 0, elem, ring(c->hw, c->tpg, M * h * e, 2), 0);
        add_cost(out, 0, 2 * elem, none, 1);
        /* SP: the position embeddings are added to the rank's tokens only; their gradient
         * (s, h) is all-reduced */
        if (c->L->sp) add_cost(out, 0, 0, ring(c->hw, c->tpg, s * h * e, 2), 1);
    }
    if (last) {
        double ln = M * 2 * h * e / seqsplit / c->hbm;
        double head = gemm_s(c->hw, c->peak, e, 1, M, V / t, h); /* logits (b s, V/t) */
        /* cross-entropy over the vocabulary shard: logits read, fp32 softmax written and
         * read back, gradient written; two all-reduces of fp32 statistics: the max of each
         * row (b, s), then its sum of exponentials and target logit together (b, s, 2) */
        double ce = M * (V / t) * (2 * e + 8) / c->hbm;
        coll_cost_t mx = ring(c->hw, c->tpg, M * 4, 2), sums = ring(c->hw, c->tpg, M * 8, 2);
        coll_cost_t stats = {mx.s + sums.s, mx.bus + sums.bus};
        add_cost(out, head, ln + ce / 2, stats, 0);
        /* backward: two GEMMs, and the all-reduce of the input gradient of the output layer */
        add_cost(out, 2 * head, 2 * ln + ce / 2, ring(c->hw, c->tpg, M * h * e, 2), 1);
        if (c->L->sp) { /* as in a layer: the input gathered again, the final layernorm's 2h */
            coll_cost_t ag = ring(c->hw, c->tpg, M * h * e, 1);
            ag.s = fmax(0, ag.s - head);
            add_cost(out, 0, 0, ag, 1);
            add_cost(out, 0, 0, ring(c->hw, c->tpg, 2 * h * e, 2), 1);
        }
    }
}

/* ---- memory ------------------------------------------------------------------------ */

typedef struct {
    double params, weights, grads, optimizer, activations, comm, total;
} stage_mem_t;

static stage_mem_t stage_memory(const ctx_t *c, int first, int last, double micro_batches) {
    const tpar_plan_model_t *m = c->m;
    const tpar_plan_layout_t *L = c->L;
    double t = (double)L->tp, p = (double)L->pp, dp = (double)L->dp, b = (double)L->micro_batch;
    double e = c->e, s = (double)m->seq, h = (double)m->hidden;
    double lps = (double)m->layers / p;
    stage_mem_t r = {0};
    /* Parameters on this GPU: column/row-parallel weights and the column-parallel biases are
     * split over t (12h^2 + 7h), row-parallel biases and layernorms are whole (6h). The first
     * stage holds the word (V/t) and position embeddings; the last the final layernorm and,
     * when p > 1, its own copy of the tied word embedding (Megatron-LM). */
    double layer = (12 * h * h + 7 * h) / t + 6 * h;
    r.params = lps * layer;
    if (first) r.params += c->V * h / t + s * h;
    if (last) r.params += 2 * h + (first ? 0 : c->V * h / t);
    /* Bytes per parameter (Rajbhandari et al. 2020, ZeRO, section 3.1): mixed precision keeps
     * bf16 weights and gradients and an fp32 master copy, momentum and variance (2 + 2 + 12);
     * plain fp32 (tpar on CPUs) keeps fp32 weights and gradients and AdamW's m and v
     * (4 + 4 + 8). ZeRO stage 1 shards the optimizer state over dp, 2 also the gradients,
     * 3 also the weights. */
    double wb = e, gb = e, ob = L->precision == TPAR_PRECISION_FP32 ? 8 : 12;
    r.weights = r.params * wb / (L->zero >= 3 ? dp : 1);
    r.grads = r.params * gb / (L->zero >= 2 ? dp : 1);
    r.optimizer = r.params * ob / (L->zero >= 1 ? dp : 1);
    /* Activations: with 1F1B the first stage holds p micro-batches in flight (never more than
     * m), the last stage one (Narayanan et al. 2021; Korthikanti et al. 2022, section 4.2.3). */
    double inflight = fmin(first ? p : 1, micro_batches);
    double seqsplit = L->sp ? t : 1;
    r.activations = lps * inflight * tpar_plan_layer_activation_bytes(m, b, t, L->sp, L->recompute, e);
    if (L->recompute == TPAR_RECOMPUTE_FULL) /* one layer's activations while it is recomputed */
        r.activations += tpar_plan_layer_activation_bytes(m, b, t, L->sp, TPAR_RECOMPUTE_NONE, e);
    if (first) r.activations += inflight * s * b * h / seqsplit; /* embedding dropout mask */
    if (last) /* final layernorm input, logits (e) and their fp32 softmax for the loss */
        r.activations += s * b * h * e / seqsplit + s * b * (c->V / t) * (e + 4);
    /* Communication buffers: TP staging for the gathered (b, s, h) activation and its
     * all-reduce; pipeline send and receive buffers; two 25 MB data-parallel gradient
     * buckets (PyTorch DDP's default bucket size), or the gradients if smaller; with ZeRO-3
     * the gathered weights of the layer in use and of the one prefetched. */
    if (t > 1) r.comm += 2 * s * b * h * e;
    if (p > 1) r.comm += 2 * s * b * h * e / t;
    if (dp > 1) r.comm += fmin(2 * 25e6, r.grads);
    if (dp > 1 && L->zero >= 3) r.comm += 2 * layer * wb;
    r.total = r.weights + r.grads + r.optimizer + r.activations + r.comm;
    return r;
}

/* ---- evaluation -------------------------------------------------------------------- */

/* Bounds that keep every product of layout sizes far from overflow. */
#define MAX_GPUS (1LL << 24)
#define MAX_BATCH (1LL << 36)

static tpar_status check_sizes(long long G, long long B, tpar_err_t *err) {
    if (G < 1 || G > MAX_GPUS)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--gpus must be in [1, %lld], got %lld", MAX_GPUS, G);
    if (B < 1 || B > MAX_BATCH)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--global-batch must be in [1, %lld], got %lld", MAX_BATCH, B);
    return TPAR_OK;
}

static tpar_status check_layout(const tpar_plan_model_t *m, const tpar_plan_layout_t *L, tpar_err_t *err) {
    tpar_status st = check_sizes(L->gpus, L->global_batch, err);
    if (st != TPAR_OK) return st;
    if (L->tp < 1 || L->pp < 1 || L->dp < 1 || L->micro_batch < 1)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--tp, --pp, --dp and --micro-batch must be at least 1 (got %lld, %lld, %lld, %lld)",
                            L->tp, L->pp, L->dp, L->micro_batch);
    if (L->zero < 0 || L->zero > 3)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--zero must be 0, 1, 2 or 3, got %d", L->zero);
    if (L->recompute < TPAR_RECOMPUTE_NONE || L->recompute > TPAR_RECOMPUTE_FULL)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--recompute must be none, selective or full");
    if (L->tp > L->gpus || L->pp > L->gpus || L->dp > L->gpus || L->tp * L->pp * L->dp != L->gpus)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--tp %lld x --pp %lld x --dp %lld must equal --gpus %lld", L->tp, L->pp,
                            L->dp, L->gpus);
    if (m->heads % L->tp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--tp %lld does not divide the model's %lld attention heads", L->tp, m->heads);
    if (m->layers % L->pp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--pp %lld does not divide the model's %lld layers", L->pp, m->layers);
    if (L->sp && m->seq % L->tp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--sp splits the sequence over --tp %lld ranks, which does not divide its length %lld",
                            L->tp, m->seq);
    if (L->micro_batch > L->global_batch || L->global_batch % (L->dp * L->micro_batch))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--global-batch %lld is not divisible by --dp %lld x --micro-batch %lld",
                            L->global_batch, L->dp, L->micro_batch);
    return TPAR_OK;
}

tpar_status tpar_plan_evaluate(const tpar_plan_model_t *m, const tpar_plan_hw_t *hw,
                               const tpar_plan_layout_t *layout, tpar_plan_result_t *res, tpar_err_t *err) {
    if (!m || !hw || !layout || !res) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_plan_evaluate: NULL argument");
    tpar_status st = check_layout(m, layout, err);
    if (st != TPAR_OK) return st;
    const tpar_plan_layout_t *L = layout;
    ctx_t c = {m, hw, L, 0, 0, 0, 0, {0, 0, 0}};
    c.peak = L->precision == TPAR_PRECISION_FP32 ? hw->peak_flops_fp32 : hw->peak_flops_bf16;
    c.e = elem_bytes(L->precision);
    c.hbm = hw->hbm_bw * hw->hbm_eff;
    c.V = padded_vocab(m, (double)L->tp);
    c.tpg = group_of(L->tp, 1, hw->gpus_per_node);
    double p = (double)L->pp, mb = (double)(L->global_batch / (L->dp * L->micro_batch));
    double lps = (double)m->layers / p;

    memset(res, 0, sizeof *res);
    res->layout = *L;
    res->micro_batches = L->global_batch / (L->dp * L->micro_batch);
    res->params_total = tpar_plan_params(m);

    /* The pipeline runs at the pace of its slowest stage: the first or the last. */
    stage_cost_t layer = {0}, first = {0}, last = {0};
    layer_cost(&c, &layer);
    ends_cost(&c, 1, L->pp == 1, &first);
    if (L->pp > 1) ends_cost(&c, 0, 1, &last);
    stage_cost_t *ends = (first.fwd + first.bwd >= last.fwd + last.bwd) ? &first : &last;
    stage_cost_t sc = {lps * layer.gemm + ends->gemm, lps * layer.elem + ends->elem, lps * layer.tp + ends->tp,
                       lps * layer.fwd + ends->fwd, lps * layer.bwd + ends->bwd, lps * layer.tp_bus + ends->tp_bus};
    /* Pipeline sends: the (b, s, h) activation forward and its gradient backward, split over
     * the t ranks of a stage (Narayanan et al. 2021, section 4.1 scatter/gather); over IB
     * when consecutive stages are on different nodes. */
    double pp_mb = 0, pp_bus = 0;
    if (L->pp > 1) {
        /* over IB when stages are a node or more apart, or do not line up with nodes */
        int cross = L->tp * L->dp >= hw->gpus_per_node || hw->gpus_per_node % (L->tp * L->dp);
        double bw = cross ? hw->ib_bw * hw->ib_eff : hw->nvlink_bw * hw->nvlink_eff;
        double lat = hw->lat_base_s + (cross ? hw->lat_inter_s : hw->lat_intra_s);
        double bytes = (double)m->seq * (double)L->micro_batch * (double)m->hidden * c.e / (double)L->tp;
        pp_mb = 2 * (lat + bytes / bw);
        pp_bus = 2 * bytes;
    }
    /* Memory on the most loaded stage. */
    stage_mem_t mf = stage_memory(&c, 1, L->pp == 1, mb);
    stage_mem_t ml = L->pp > 1 ? stage_memory(&c, 0, 1, mb) : mf;
    stage_mem_t *mm = mf.total >= ml.total ? &mf : &ml;
    res->params_per_gpu = fmax(mf.params, ml.params);
    res->mem_weights = mm->weights;
    res->mem_grads = mm->grads;
    res->mem_optimizer = mm->optimizer;
    res->mem_activations = mm->activations;
    res->mem_comm = mm->comm;
    res->mem_total = mm->total;
    res->mem_usable = hw->mem_bytes - hw->reserve_bytes;
    res->fits = res->mem_total <= res->mem_usable;

    /* Gradient accumulation: every micro-batch's weight gradients are added into the step's
     * gradient buffer (read both, write one: 3 accesses of e bytes a parameter). */
    double acc = res->params_per_gpu * 3 * c.e / c.hbm;
    sc.elem += acc;
    sc.bwd += acc;
    double t_mb = sc.fwd + sc.bwd + pp_mb;
    res->t_gemm = mb * sc.gemm;
    res->t_elementwise = mb * sc.elem;
    res->t_tp_comm = mb * sc.tp;
    res->t_pp_comm = mb * pp_mb;
    res->tp_bus_bytes = mb * sc.tp_bus;
    res->pp_bus_bytes = mb * pp_bus;
    res->t_bubble = (p - 1) * t_mb; /* 1F1B: bubble fraction (p - 1)/m of the ideal time */

    /* Data parallelism: gradients of this GPU's parameters, over the dp ranks (stride t). */
    group_t dpg = group_of(L->dp, L->tp, hw->gpus_per_node);
    double gbytes = res->params_per_gpu * c.e;
    coll_cost_t arc = ring(hw, dpg, gbytes, 2), halfc = ring(hw, dpg, gbytes, 1);
    double ar = arc.s, half = halfc.s;
    /* What a reduction can hide behind: the backward (or forward) compute running at the
     * same time, or nothing when the framework reduces after the pipeline flush. */
    double hide_b = L->dp_overlap ? sc.bwd : 0, hide_f = L->dp_overlap ? sc.fwd : 0;
    switch (L->zero) {
    case 0: /* one all-reduce per step, behind the last micro-batch's backward */
        res->t_dp_comm = ar;
        res->t_dp_exposed = fmax(0, ar - hide_b);
        res->dp_bus_bytes = arc.bus;
        break;
    case 1: /* reduce-scatter (hidden as above), all-gather of updated weights (exposed) */
        res->t_dp_comm = 2 * half;
        res->t_dp_exposed = fmax(0, half - hide_b) + half;
        res->dp_bus_bytes = 2 * halfc.bus;
        break;
    case 2: /* sharded gradients: a reduce-scatter in every micro-batch's backward */
        res->t_dp_comm = mb * half + half;
        res->t_dp_exposed = mb * fmax(0, half - hide_b) + half;
        res->dp_bus_bytes = (mb + 1) * halfc.bus;
        break;
    default: /* ZeRO-3: also gather the weights for forward and backward of every micro-batch */
        res->t_dp_comm = mb * 3 * half;
        res->t_dp_exposed = mb * (fmax(0, half - hide_f) + fmax(0, 2 * half - hide_b));
        res->dp_bus_bytes = mb * 3 * halfc.bus;
        break;
    }
    /* AdamW: read the gradient and the fp32 master weight, m, v; write master, m, v and the
     * bf16 copy (2 + 12 + 12 + 2 bytes; fp32: 16 read + 12 written): 28 bytes a parameter. */
    res->t_optimizer = res->params_per_gpu / (L->zero >= 1 ? (double)L->dp : 1) * 28 / c.hbm;

    res->t_step = res->t_gemm + res->t_elementwise + res->t_tp_comm + res->t_pp_comm + res->t_bubble +
                  res->t_dp_exposed + res->t_optimizer;
    double G = (double)L->gpus, B = (double)L->global_batch;
    res->model_flops = tpar_plan_model_flops(m, B);
    res->hardware_flops = hardware_flops(m, B, L->recompute);
    res->tflops_per_gpu = res->hardware_flops / (G * res->t_step) / 1e12;
    res->mfu = res->model_flops / (G * res->t_step * c.peak);
    double compute = res->t_gemm + res->t_elementwise;
    res->comm_compute_ratio = (res->t_tp_comm + res->t_pp_comm + res->t_dp_comm) / compute;
    return TPAR_OK;
}

/* ---- search ------------------------------------------------------------------------ */

/* The divisors of n in increasing order (at most `max`); returns their number. Numbers up
 * to MAX_BATCH (2^36) have fewer than 4,100 divisors, 2,050 of them below the square root. */
enum { MAX_DIVISORS = 8192 };
static int divisors(long long n, long long *out, int max) {
    int lo = 0, hi = 0;
    long long big[MAX_DIVISORS / 2];
    for (long long i = 1; i * i <= n && lo < max && hi < MAX_DIVISORS / 2; i++) {
        if (n % i) continue;
        out[lo++] = i;
        if (i != n / i) big[hi++] = n / i;
    }
    while (hi > 0 && lo < max) out[lo++] = big[--hi];
    return lo;
}

/* a before b? Fitting first, the faster of two that fit, the smaller of two that do not. */
static int better(const tpar_plan_result_t *a, const tpar_plan_result_t *b) {
    if (a->fits != b->fits) return a->fits > b->fits;
    if (a->fits && a->t_step != b->t_step) return a->t_step < b->t_step;
    if (a->mem_total != b->mem_total) return a->mem_total < b->mem_total;
    return a->t_step < b->t_step;
}

static void keep_best(tpar_plan_result_t *best, int max, int *n, const tpar_plan_result_t *r) {
    int i = *n < max ? (*n)++ : max;
    if (i == max && !better(r, &best[max - 1])) return;
    if (i == max) i = max - 1;
    while (i > 0 && better(r, &best[i - 1])) {
        best[i] = best[i - 1];
        i--;
    }
    best[i] = *r;
}

tpar_status tpar_plan_search(const tpar_plan_model_t *m, const tpar_plan_hw_t *hw,
                             const tpar_plan_layout_t *con, tpar_plan_result_t *best, int max,
                             int *n_best, long long *n_valid, tpar_err_t *err) {
    if (!m || !hw || !con || !best || max < 1 || !n_best)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_plan_search: bad argument");
    *n_best = 0;
    if (n_valid) *n_valid = 0;
    const long long G = con->gpus, B = con->global_batch;
    tpar_status st = check_sizes(G, B, err);
    if (st != TPAR_OK) return st;
    /* Given parts of the layout must be valid on their own; say which flag is wrong. */
    if (con->tp < 0 || con->pp < 0 || con->dp < 0 || con->micro_batch < 0)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--tp, --pp, --dp and --micro-batch must be positive");
    if (con->tp && m->heads % con->tp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--tp %lld does not divide the model's %lld attention heads", con->tp, m->heads);
    if (con->tp && con->sp && m->seq % con->tp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--sp splits the sequence over --tp %lld ranks, which does not divide its length %lld",
                            con->tp, m->seq);
    if (con->pp && m->layers % con->pp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--pp %lld does not divide the model's %lld layers",
                            con->pp, m->layers);
    /* (each factor is at most 2^20 from the CLI; check before multiplying) */
    if (con->tp > G || con->pp > G || con->dp > G)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--tp, --pp and --dp must each be at most --gpus %lld", G);
    long long given = (con->tp ? con->tp : 1) * (con->pp ? con->pp : 1) * (con->dp ? con->dp : 1);
    if (con->tp && con->pp && con->dp && given != G)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--tp %lld x --pp %lld x --dp %lld must equal --gpus %lld",
                            con->tp, con->pp, con->dp, G);
    if (given > G || G % given)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "the given --tp/--pp/--dp multiply to %lld, which does not divide --gpus %lld", given, G);
    if (con->dp && B % con->dp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--global-batch %lld is not divisible by --dp %lld", B, con->dp);
    if (con->micro_batch > B)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--micro-batch %lld is larger than --global-batch %lld",
                            con->micro_batch, B);
    if (con->dp && con->micro_batch && B % (con->dp * con->micro_batch))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--global-batch %lld is not divisible by --dp %lld x --micro-batch %lld", B,
                            con->dp, con->micro_batch);
    if (con->micro_batch && B % con->micro_batch)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--global-batch %lld is not divisible by --micro-batch %lld",
                            B, con->micro_batch);

    long long valid = 0;
    int r_lo = con->recompute < 0 ? TPAR_RECOMPUTE_NONE : con->recompute;
    int r_hi = con->recompute < 0 ? TPAR_RECOMPUTE_FULL : con->recompute;
    tpar_plan_layout_t L = *con;
    tpar_err_t e2;
    for (long long t = 1; t <= G; t++) {
        if (G % t || m->heads % t || (con->tp && t != con->tp)) continue;
        for (long long p = 1; p <= G / t; p++) {
            if ((G / t) % p || m->layers % p || (con->pp && p != con->pp)) continue;
            long long d = G / (t * p);
            if ((con->dp && d != con->dp) || B % d) continue;
            long long bs[MAX_DIVISORS];
            int nb = divisors(B / d, bs, MAX_DIVISORS);
            for (int ib = 0; ib < nb; ib++) {
                long long b = bs[ib];
                if (con->micro_batch && b != con->micro_batch) continue;
                for (int r = r_lo; r <= r_hi; r++) {
                    L.tp = t, L.pp = p, L.dp = d, L.micro_batch = b, L.recompute = r;
                    tpar_plan_result_t res;
                    if (tpar_plan_evaluate(m, hw, &L, &res, &e2) != TPAR_OK) continue;
                    valid++;
                    keep_best(best, max, n_best, &res);
                }
            }
        }
    }
    if (n_valid) *n_valid = valid;
    if (!valid)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "no valid layout: no tp x pp x dp = --gpus %lld with tp dividing %lld heads, pp "
                            "dividing %lld layers and dp (x --micro-batch) dividing --global-batch %lld",
                            G, m->heads, m->layers, B);
    return TPAR_OK;
}
