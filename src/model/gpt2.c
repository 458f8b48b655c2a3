/* GPT-2 over a TP group: presets, the tensor table, initialisation, forward and backward. */
#define _POSIX_C_SOURCE 200809L /* sysconf's _SC_AVPHYS_PAGES needs _DEFAULT_SOURCE on glibc */
#define _DEFAULT_SOURCE
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_internal.h"
#include "tpar/kernels.h"

/* ---- config ------------------------------------------------------------------------------ */

tpar_status tpar_gpt2_preset(const char *name, tpar_gpt2_config_t *cfg, tpar_err_t *err) {
    memset(cfg, 0, sizeof *cfg);
    if (name && !strcmp(name, "tiny")) {
        // Byte-level Shakespeare in a few minutes on 2 cores (measured: docs/TRAINING.md).
        *cfg = (tpar_gpt2_config_t){.n_layer = 4, .n_head = 4, .n_embd = 128, .vocab_size = 256, .n_positions = 128};
        return TPAR_OK;
    }
    if (name && !strcmp(name, "gpt2-124m")) {
        *cfg = (tpar_gpt2_config_t){.n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257,
                                    .n_positions = 1024};
        return TPAR_OK;
    }
    return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "unknown model '%s' (known: %s)", name ? name : "(null)",
                        TPAR_GPT2_PRESETS);
}

/* Upper bounds of a config (far above any GPT-2): with them every shape of the tensor table
 * (at most 4 C or the padded V) fits an int, and every product below fits 64 bits. A config read
 * from a file's metadata passes here before anything is sized from it. */
#define MAX_LAYER 8192
#define MAX_EMBD (1 << 20)
#define MAX_VOCAB (1 << 30)
#define MAX_POSITIONS (1 << 24)

tpar_status tpar_gpt2_check(const tpar_gpt2_config_t *c, int tp, tpar_err_t *err) {
    tpar_status st = tpar_check_dims(err, "model (n_layer, n_head, n_embd, vocab_size, n_positions, tp)", 6,
                                     c->n_layer, c->n_head, c->n_embd, c->vocab_size, c->n_positions, tp);
    if (st) return st;
    if (c->n_layer > MAX_LAYER || c->n_embd > MAX_EMBD || c->vocab_size > MAX_VOCAB || c->n_positions > MAX_POSITIONS)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "model: n_layer %d, n_embd %d, vocab_size %d, n_positions %d: the limits are %d, %d, %d "
                            "and %d",
                            c->n_layer, c->n_embd, c->vocab_size, c->n_positions, MAX_LAYER, MAX_EMBD, MAX_VOCAB,
                            MAX_POSITIONS);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "model: dropout %g must be in [0, 1)", (double)c->dropout);
    if (c->n_embd % c->n_head)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "model: n_embd %d is not divisible by n_head %d", c->n_embd,
                            c->n_head);
    if (c->n_head % tp)
        return tpar_err_set(err, TPAR_ERR_SHAPE,
                            "model: n_head %d is not divisible by the tensor-parallel size %d (hint: pick --tp "
                            "among the divisors of %d)",
                            c->n_head, tp, c->n_head);
    if (tpar_gpt2_vocab_padded(c->vocab_size, tp) < 0)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "model: vocabulary %d overflows when padded", c->vocab_size);
    return TPAR_OK;
}

int tpar_gpt2_vocab_padded(int V, int tp) { return tpar_vocab_padded(V, tp, 64); }

/* Memory the OS can give now without swapping: MemAvailable, else free pages; 0 if unknown. */
static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f)) found = sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
    if (f) fclose(f);
    if (found) return (uint64_t)kb * 1024;
    long pages = sysconf(_SC_AVPHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    return pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
}

/* Fails early, before any allocation, when the TP group's model (bytes per rank x ranks: a TP
 * group shares one host) exceeds the memory available. */
static tpar_status check_fits(const tpar_gpt2_config_t *c, uint64_t rank_bytes, int tps, tpar_err_t *err) {
    uint64_t need, avail = mem_available();
    if (__builtin_mul_overflow(rank_bytes, (uint64_t)tps, &need)) need = UINT64_MAX;
    if (avail == 0 || need <= avail) return TPAR_OK;
    return tpar_err_set(err, TPAR_ERR_NOMEM,
                        "model: L=%d C=%d V=%d T=%d needs %.2f GiB (%.2f GiB per rank x %d ranks: weights, gradients, "
                        "activations) but this machine has %.2f GiB available (MemAvailable) (hint: a smaller model, "
                        "batch or sequence, or free memory)",
                        c->n_layer, c->n_embd, c->vocab_size, c->n_positions, need / 1073741824.0,
                        rank_bytes / 1073741824.0, tps, avail / 1073741824.0);
}

size_t tpar_gpt2_num_params(const tpar_gpt2_config_t *c) {
    size_t C = (size_t)c->n_embd;
    return (size_t)c->vocab_size * C + (size_t)c->n_positions * C + 2 * C + (size_t)c->n_layer * (12 * C * C + 13 * C);
}

double tpar_gpt2_flops_per_token(const tpar_gpt2_config_t *c, int T) {
    double P = (double)tpar_gpt2_num_params(c) - (double)c->n_positions * c->n_embd;
    return 6.0 * P + 12.0 * c->n_layer * (double)c->n_embd * T;
}

/* ---- the tensor table ---------------------------------------------------------------------- */

static const char *block_names[TPAR_BLOCK_NPARAMS] = {
    "ln_1.weight",      "ln_1.bias",      "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
    "attn.c_proj.bias", "ln_2.weight",    "ln_2.bias",          "mlp.c_fc.weight",  "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias"};

static void add_tensor(tpar_gpt2_t *m, size_t *off, const char *name, int rows, int cols, tpar_shard_kind kind) {
    tpar_gpt2_tensor_t *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->file_rows = rows;
    t->ndim = cols == 1 ? 1 : 2;
    t->transposed = t->ndim == 2 && strncmp(name, "wte", 3) && strncmp(name, "wpe", 3); // Conv1D [in, out]
    t->kind = kind;
    t->decay = t->ndim == 2;
    t->offset = *off;
    t->numel = (size_t)rows * cols / (kind == TPAR_SHARD_REPLICATED ? 1 : (size_t)m->tp.size);
    *off += t->numel;
}

static void build_table(tpar_gpt2_t *m) {
    const tpar_gpt2_config_t *c = &m->cfg;
    int C = c->n_embd;
    size_t off = 0;
    add_tensor(m, &off, "wte.weight", m->Vp, C, TPAR_SHARD_ROWS);
    m->tensors[0].file_rows = c->vocab_size;
    add_tensor(m, &off, "wpe.weight", c->n_positions, C, TPAR_SHARD_REPLICATED);
    add_tensor(m, &off, "ln_f.weight", C, 1, TPAR_SHARD_REPLICATED);
    add_tensor(m, &off, "ln_f.bias", C, 1, TPAR_SHARD_REPLICATED);
    m->rest_numel = off;
    tpar_param_info_t info[TPAR_BLOCK_NPARAMS];
    tpar_block_param_info(C, 4 * C, info); // the order of tpar_block_carve
    for (int l = 0; l < c->n_layer; l++)
        for (int i = 0; i < TPAR_BLOCK_NPARAMS; i++) {
            char name[64];
            snprintf(name, sizeof name, "h.%d.%s", l, block_names[i]);
            add_tensor(m, &off, name, info[i].rows, info[i].cols, info[i].kind);
        }
    m->num_params = off;
}

tpar_status tpar_gpt2_table_new(const tpar_gpt2_config_t *cfg, tpar_gpt2_t **out, tpar_err_t *err) {
    *out = NULL;
    tpar_status st = tpar_gpt2_check(cfg, 1, err);
    if (st) return st;
    tpar_gpt2_t *m = calloc(1, sizeof *m);
    if (m) m->tensors = calloc((size_t)4 + (size_t)cfg->n_layer * TPAR_BLOCK_NPARAMS, sizeof *m->tensors);
    if (!m || !m->tensors) {
        free(m);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "model: out of memory for the tensor table of %d layers",
                            cfg->n_layer);
    }
    m->cfg = *cfg;
    m->tp.size = 1;
    m->Vp = tpar_gpt2_vocab_padded(cfg->vocab_size, 1);
    build_table(m);
    *out = m;
    return TPAR_OK;
}

void tpar_gpt2_table_free(tpar_gpt2_t *m) {
    if (!m) return;
    free(m->tensors);
    free(m);
}

int tpar_gpt2_pieces(const tpar_gpt2_tensor_t *t, int tp, int rank, tpar_gpt2_piece_t out[3]) {
    tpar_shard_rect_t rect[3];
    int n = 0, k = 0;
    // The table's shapes were checked when the model was built, so this cannot fail.
    if (tpar_shard_rects(t->kind, t->rows, t->cols, tp, rank, rect, &n, NULL)) return 0;
    size_t off = 0; // the rectangles lie one after another in the dense shard
    for (int p = 0; p < n; p++) {
        int nr = rect[p].rows;
        if (rect[p].row0 + nr > t->file_rows) nr = t->file_rows - rect[p].row0; // vocabulary padding: not in files
        if (nr > 0) out[k++] = (tpar_gpt2_piece_t){rect[p].row0, nr, rect[p].col0, rect[p].cols, off, rect[p].cols};
        off += (size_t)rect[p].rows * rect[p].cols;
    }
    return k;
}

/* ---- build and free ------------------------------------------------------------------------ */

/* Under SP, TP rank r holds tokens [r*N/tp, (r+1)*N/tp) of the N = B*T of a forward. */
static tpar_status check_sp_tokens(const tpar_gpt2_t *m, int B, int T, tpar_err_t *err) {
    if (m->sp && ((long long)B * T) % m->tp.size)
        return tpar_err_set(err, TPAR_ERR_SHAPE,
                            "model: sequence parallelism needs B*T = %d*%d divisible by the tensor-parallel size %d "
                            "(hint: pick --batch and --seq with B*T a multiple of %d, or drop --sp)",
                            B, T, m->tp.size, m->tp.size);
    return TPAR_OK;
}

tpar_status tpar_gpt2_new(const tpar_gpt2_config_t *cfg, tpar_comm_t *tp_comm, int B, int T, int sequence_parallel,
                          tpar_gpt2_t **out, tpar_err_t *err) {
    *out = NULL;
    int tps = tp_comm ? tpar_comm_size(tp_comm) : 1;
    tpar_status st = tpar_gpt2_check(cfg, tps, err);
    if (st || (st = tpar_check_dims(err, "model batch (B, T)", 2, B, T))) return st;
    if ((long long)B * T > INT_MAX)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "model: B*T = %d*%d tokens exceed %d", B, T, INT_MAX);
    if (T > cfg->n_positions)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "model: sequence length %d exceeds n_positions %d", T,
                            cfg->n_positions);
    if (sequence_parallel != 0 && sequence_parallel != 1)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "model: sequence_parallel must be 0 or 1, got %d",
                            sequence_parallel);
    tpar_gpt2_t *m = calloc(1, sizeof *m);
    if (!m) return tpar_err_set(err, TPAR_ERR_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->B = B;
    m->T = T;
    int L = cfg->n_layer, C = cfg->n_embd, N = B * T;
    m->Vp = tpar_gpt2_vocab_padded(cfg->vocab_size, tps);
    m->sp = sequence_parallel && tps > 1; // SP over a group of one is plain TP
    if ((st = tpar_tp_init(&m->tp, tps > 1 ? tp_comm : NULL, m->sp, err)) || (st = check_sp_tokens(m, B, T, err)))
        goto fail;
    m->tensors = calloc((size_t)4 + (size_t)L * TPAR_BLOCK_NPARAMS, sizeof *m->tensors);
    m->blocks = calloc((size_t)L, sizeof *m->blocks);
    if (!m->tensors || !m->blocks) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "model: out of memory for %d layers", L);
        goto fail;
    }
    build_table(m);
    {   // weights and gradients (num_params floats each) and the activations sized below
        size_t Nl0 = (size_t)N / (m->sp ? tps : 1), C0 = (size_t)C;
        uint64_t acts = (uint64_t)(L + 4) * Nl0 * C0 + (uint64_t)N * ((size_t)m->Vp / tps) + (uint64_t)(T + 2) * C0;
        if ((st = check_fits(cfg, (2 * (uint64_t)m->num_params + acts) * sizeof(float), tps, err))) goto fail;
    }
    // Gradients live in the group's shared memory: the data-parallel all-reduce of them then
    // reads the peers' buffers directly (tpar_comm_mem_alloc; the heap when tp = 1).
    size_t pbytes;
    int too_big = tpar_mul_size(m->num_params, sizeof(float), &pbytes);
    m->params = too_big ? NULL : tpar_calloc_aligned(m->num_params, sizeof(float));
    m->grads = too_big ? NULL : tpar_comm_mem_alloc(m->tp.comm, pbytes);
    if (!m->params || !m->grads) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "model: out of memory for %zu parameters per rank (x2)", m->num_params);
        goto fail;
    }
    for (int l = 0; l < L; l++) {
        if ((st = tpar_block_init(&m->blocks[l], &m->tp, C, cfg->n_head, 4 * C, B, T, cfg->dropout, 0, err)))
            goto fail;
        size_t off = m->tensors[4 + l * TPAR_BLOCK_NPARAMS].offset;
        tpar_block_carve(&m->blocks[l], m->params + off, m->grads + off);
    }
    if ((st = tpar_vocab_embedding_init(&m->emb, &m->tp, cfg->vocab_size, m->Vp, C, N, err)) ||
        (st = tpar_col_linear_init(&m->head, &m->tp, C, m->Vp, 0, N, err)) ||
        (st = tpar_vocab_xent_init(&m->xent, &m->tp, cfg->vocab_size, m->Vp, -1, N, err)))
        goto fail;
    float *wte = m->params + m->tensors[0].offset, *dwte = m->grads + m->tensors[0].offset;
    m->emb.w = wte, m->emb.dw = dwte;
    m->head.w = wte, m->head.dw = dwte; // tied
    // The residual stream, ln_f and their gradients hold this rank's Nl tokens (all N without SP).
    size_t Nl = (size_t)N / (m->sp ? tps : 1), NC = Nl * C, Vl = (size_t)m->Vp / tps;
    size_t n_spg = m->sp ? (size_t)(T + 2) * C : 0;
    size_t n = (size_t)(L + 1) * NC + NC + 2 * Nl + (size_t)N * Vl + 2 * NC + n_spg;
    size_t abytes;
    if (tpar_mul_size(n, sizeof(float), &abytes) || !(m->acts = tpar_comm_mem_alloc(m->tp.comm, abytes))) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "model: out of memory for activations (%zu floats)", n);
        goto fail;
    }
    float *p = m->acts;
    m->resid = p, p += (size_t)(L + 1) * NC;
    m->lnf = p, p += NC;
    m->lnf_mean = p, p += Nl;
    m->lnf_rstd = p, p += Nl;
    m->logits = p, p += (size_t)N * Vl;
    m->dres[0] = p, p += NC;
    m->dres[1] = p, p += NC;
    m->sp_grads = m->sp ? p : NULL;
    *out = m;
    return TPAR_OK;
fail:
    tpar_gpt2_free(m);
    return st;
}

void tpar_gpt2_free(tpar_gpt2_t *m) {
    if (!m) return;
    if (m->blocks)
        for (int l = 0; l < m->cfg.n_layer; l++) tpar_block_free(&m->blocks[l]);
    tpar_vocab_embedding_free(&m->emb);
    tpar_col_linear_free(&m->head);
    tpar_vocab_xent_free(&m->xent);
    tpar_free(m->params);
    tpar_comm_mem_free(m->tp.comm, m->grads);
    tpar_comm_mem_free(m->tp.comm, m->acts);
    free(m->blocks);
    free(m->tensors);
    free(m);
}

/* ---- initialisation ------------------------------------------------------------------------ */

/* A standard normal for element g of stream s: Box-Muller on two counters. */
static float normal_at(uint64_t s, uint64_t g) {
    double u1 = ((double)tpar_rng_u32(s, 2 * g) + 0.5) / 4294967296.0;
    double u2 = (double)tpar_rng_u32(s, 2 * g + 1) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void tpar_gpt2_init(tpar_gpt2_t *m, uint64_t seed) {
    memset(m->params, 0, m->num_params * sizeof(float));
    double resid_std = 0.02 / sqrt(2.0 * m->cfg.n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const tpar_gpt2_tensor_t *t = &m->tensors[i];
        float *p = m->params + t->offset;
        int is_ln = strstr(t->name, "ln_") != NULL, is_w = t->ndim == 2;
        if (!is_w && !(is_ln && strstr(t->name, ".weight"))) continue; // biases stay 0
        // Each tensor its own stream, from its place in the table (the same at any TP size).
        uint64_t s = ((uint64_t)tpar_rng_u32(seed, 2 * (uint64_t)i) << 32) | tpar_rng_u32(seed, 2 * (uint64_t)i + 1);
        double std = strstr(t->name, "c_proj.weight") ? resid_std : 0.02;
        tpar_gpt2_piece_t pc[3];
        int np = tpar_gpt2_pieces(t, m->tp.size, m->tp.rank, pc);
        for (int k = 0; k < np; k++)
            for (int r = 0; r < pc[k].nr; r++)
                for (int c = 0; c < pc[k].nc; c++) {
                    uint64_t g = (uint64_t)(pc[k].r0 + r) * t->cols + (uint64_t)(pc[k].c0 + c);
                    p[pc[k].local_off + (size_t)r * pc[k].ld + c] = is_w ? (float)(std * normal_at(s, g)) : 1.0f;
                }
    }
}

/* ---- forward and backward ------------------------------------------------------------------ */

/* Dropout counters: element (g, c) of the full (N, C) embedding output uses g*C + c in
 * [0, N*C); block l uses [(1 + 2l) N*C, (3 + 2l) N*C). Under SP a rank draws the counters of
 * its own tokens, so the masks are those of one rank. */
static uint64_t block_offset(int l, size_t NC) { return (uint64_t)(1 + 2 * l) * NC; }

/* This rank's tokens of the N = B*T: [*g0, *g0 + *Nl); all of them without SP. */
static void local_tokens(const tpar_gpt2_t *m, int N, int *g0, int *Nl) {
    *Nl = m->sp ? N / m->tp.size : N;
    *g0 = m->sp ? m->tp.rank * *Nl : 0;
}

static tpar_status check_batch(const tpar_gpt2_t *m, int B, int T, tpar_err_t *err) {
    if (B < 1 || T < 1 || B > m->B || T > m->T)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "model forward: (B, T) = (%d, %d) outside the (%d, %d) it was built for",
                            B, T, m->B, m->T);
    return check_sp_tokens(m, B, T, err);
}

/* Embedding, the blocks and ln_f: the final hidden states in m->lnf (Nl, C). */
static tpar_status forward_trunk(tpar_gpt2_t *m, const int *inputs, int B, int T, uint64_t dropout_seed,
                                 tpar_err_t *err) {
    tpar_status st = check_batch(m, B, T, err);
    if (st) return st;
    int L = m->cfg.n_layer, C = m->cfg.n_embd, N = B * T, g0, Nl;
    local_tokens(m, N, &g0, &Nl);
    size_t NlC = (size_t)Nl * C;
    float p = m->cfg.dropout;
    m->dropout_seed = dropout_seed;
    m->B_last = B, m->T_last = T;
    m->n_logits = 0; // until the head has run
    m->rows_selected = 0;
    const float *wpe = m->params + m->tensors[1].offset;
    float *x = m->resid; // (Nl, C): replicated (Nl = N), or this rank's tokens under SP
    if ((st = tpar_vocab_embedding_forward(&m->emb, x, inputs, N, err))) return st;
    for (int i = 0; i < Nl; i++) {
        float *row = x + (size_t)i * C;
        const float *pos = wpe + (size_t)((g0 + i) % T) * C; // global token g0 + i sits at position g % T
        for (int c = 0; c < C; c++) row[c] += pos[c];
    }
    if (p > 0.0f) tpar_dropout_forward(x, x, NlC, p, dropout_seed, (uint64_t)g0 * C); // the same mask as one rank
    for (int l = 0; l < L; l++) {
        m->blocks[l].seed = dropout_seed;
        if ((st = tpar_block_forward(&m->blocks[l], x + NlC, x, B, T, block_offset(l, (size_t)N * C), err))) return st;
        x += NlC;
    }
    const float *lnfw = m->params + m->tensors[2].offset, *lnfb = m->params + m->tensors[3].offset;
    tpar_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, x, lnfw, lnfb, Nl, C);
    return TPAR_OK;
}

tpar_status tpar_gpt2_forward(tpar_gpt2_t *m, const int *inputs, const int *targets, int B, int T,
                              uint64_t dropout_seed, float *loss, tpar_err_t *err) {
    tpar_status st = forward_trunk(m, inputs, B, T, dropout_seed, err);
    if (st) return st;
    int N = B * T;
    // The head all-gathers the tokens under SP: logits of all N tokens, vocab-sharded.
    if ((st = tpar_col_linear_forward(&m->head, m->logits, m->lnf, N, err))) return st; // (N, Vp/tp)
    m->n_logits = N;
    if (targets) return tpar_vocab_xent_forward(&m->xent, loss, NULL, m->logits, targets, N, err);
    return TPAR_OK;
}

tpar_status tpar_gpt2_forward_rows(tpar_gpt2_t *m, const int *inputs, int B, int T, uint64_t dropout_seed,
                                   const int *rows, int n, tpar_err_t *err) {
    if (m->sp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "model forward of selected rows: not under sequence parallelism (each rank holds only "
                            "its tokens' hidden states); build the model without SP");
    tpar_status st = check_batch(m, B, T, err);
    if (st) return st;
    int N = B * T, C = m->cfg.n_embd;
    if (n < 0 || n > N || (n > 0 && !rows))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "model forward of selected rows: %d rows of the %d of (B, T) = "
                            "(%d, %d); ask for 0 to %d", n, N, B, T, N);
    for (int i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= N)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                                "model forward of selected rows: rows[%d] = %d is outside [0, B*T = %d)", i, rows[i], N);
    if ((st = forward_trunk(m, inputs, B, T, dropout_seed, err))) return st;
    m->rows_selected = 1;
    if (n == 0) return TPAR_OK;
    // The selected rows of ln_f's output side by side, in dres[0] (scratch until a backward).
    float *sel = m->dres[0]; // (n, C)
    for (int i = 0; i < n; i++) memcpy(sel + (size_t)i * C, m->lnf + (size_t)rows[i] * C, (size_t)C * sizeof(float));
    if ((st = tpar_col_linear_forward(&m->head, m->logits, sel, n, err))) return st; // (n, Vp/tp)
    m->n_logits = n;
    return TPAR_OK;
}

tpar_status tpar_gpt2_backward(tpar_gpt2_t *m, const int *inputs, const int *targets, float dloss,
                               tpar_grads_ready_fn ready, void *ctx, tpar_err_t *err) {
    int B = m->B_last, T = m->T_last, L = m->cfg.n_layer, C = m->cfg.n_embd, N = B * T, g0, Nl;
    if (B < 1) return tpar_err_set(err, TPAR_ERR_INTERNAL, "model backward: no forward before it");
    if (m->rows_selected)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "model backward: the last forward computed the logits of %d selected rows of %d "
                            "(tpar_gpt2_forward_rows); backward needs tpar_gpt2_forward with targets",
                            m->n_logits, N);
    local_tokens(m, N, &g0, &Nl);
    size_t NlC = (size_t)Nl * C;
    float p = m->cfg.dropout;
    const tpar_gpt2_tensor_t *tl = m->tensors;
    // Gradients of the replicated wpe and ln_f: straight into grads, or under SP this rank's
    // partial sums (its tokens only) in sp_grads = [dwpe (T, C), dlnfw (C), dlnfb (C)],
    // summed over TP before they are added.
    float *dwpe = m->grads + tl[1].offset, *dlnfw = m->grads + tl[2].offset, *dlnfb = m->grads + tl[3].offset;
    if (m->sp) {
        memset(m->sp_grads, 0, (size_t)(T + 2) * C * sizeof(float));
        dwpe = m->sp_grads, dlnfw = dwpe + (size_t)T * C, dlnfb = dlnfw + C;
    }
    tpar_vocab_xent_backward(&m->xent, m->logits, m->logits, targets, N, dloss); // dlogits in place
    float *d = m->dres[0], *dx = m->dres[1];
    tpar_status st = tpar_col_linear_backward(&m->head, dx, m->logits, m->lnf, N, err); // d lnf (Nl, C)
    if (st) return st;
    memset(d, 0, NlC * sizeof(float));
    tpar_layernorm_backward(d, dlnfw, dlnfb, dx, m->resid + (size_t)L * NlC, m->params + tl[2].offset, m->lnf_mean,
                            m->lnf_rstd, Nl, C);
    for (int l = L - 1; l >= 0; l--) {
        if ((st = tpar_block_backward(&m->blocks[l], dx, d, m->resid + (size_t)l * NlC, B, T,
                                      block_offset(l, (size_t)N * C), err)))
            return st;
        float *tmp = d;
        d = dx, dx = tmp;
        const tpar_gpt2_tensor_t *t0 = &tl[4 + l * TPAR_BLOCK_NPARAMS];
        if (ready && (st = ready(ctx, t0->offset, tpar_block_numel(&m->blocks[l]), err))) return st;
    }
    if (p > 0.0f) {
        memset(dx, 0, NlC * sizeof(float));
        tpar_dropout_backward(dx, d, NlC, p, m->dropout_seed, (uint64_t)g0 * C);
        d = dx;
    }
    for (int i = 0; i < Nl; i++) {
        const float *row = d + (size_t)i * C;
        float *pos = dwpe + (size_t)((g0 + i) % T) * C;
        for (int c = 0; c < C; c++) pos[c] += row[c];
    }
    if ((st = tpar_vocab_embedding_backward(&m->emb, d, inputs, N, err))) return st;
    if (m->sp) {
        if ((st = tpar_map_allreduce(&m->tp, m->sp_grads, (size_t)(T + 2) * C, err))) return st;
        float *gwpe = m->grads + tl[1].offset, *gw = m->grads + tl[2].offset, *gb = m->grads + tl[3].offset;
        for (size_t i = 0; i < (size_t)T * C; i++) gwpe[i] += dwpe[i];
        for (int c = 0; c < C; c++) gw[c] += dlnfw[c], gb[c] += dlnfb[c];
    }
    if (ready && (st = ready(ctx, 0, m->rest_numel, err))) return st;
    return TPAR_OK;
}

void tpar_gpt2_zero_grad(tpar_gpt2_t *m) { memset(m->grads, 0, m->num_params * sizeof(float)); }

tpar_status tpar_gpt2_logits_row(tpar_gpt2_t *m, int row, float *out, tpar_err_t *err) {
    int N = m->n_logits, tps = m->tp.size, Vl = m->Vp / tps;
    if (row < 0 || row >= N)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "model logits: row %d outside the last forward's %d", row, N);
    const float *src = m->logits + (size_t)row * Vl;
    if (tps == 1) {
        memcpy(out, src, (size_t)m->cfg.vocab_size * sizeof(float));
        return TPAR_OK;
    }
    float *all = malloc((size_t)m->Vp * sizeof(float));
    if (!all) return tpar_err_set(err, TPAR_ERR_NOMEM, "model logits: out of memory");
    tpar_status st = tpar_comm_allgather(m->tp.comm, src, all, (size_t)Vl, TPAR_F32);
    if (st) st = tpar_err_set(err, st, "model logits: all-gather failed: %s", tpar_comm_error(m->tp.comm));
    else memcpy(out, all, (size_t)m->cfg.vocab_size * sizeof(float));
    free(all);
    return st;
}

double tpar_gpt2_grad_sq_local(const tpar_gpt2_t *m) {
    double s = 0.0;
    for (int i = 0; i < m->n_tensors; i++) {
        const tpar_gpt2_tensor_t *t = &m->tensors[i];
        if (t->kind == TPAR_SHARD_REPLICATED && m->tp.rank != 0) continue; // counted once, by TP rank 0
        const float *g = m->grads + t->offset;
        for (size_t j = 0; j < t->numel; j++) s += (double)g[j] * g[j];
    }
    return s;
}
