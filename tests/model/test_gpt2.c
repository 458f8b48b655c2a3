/* The GPT-2 model split over the whole world as one TP group, against the same model on one
 * rank (built in the same process with no communicator: an independent single-rank reference):
 *   - initialisation is layout-independent: every shard is bit-identical to its block of the
 *     single-rank weights, and the vocabulary padding is zero;
 *   - loss, every gradient shard, the global gradient norm (replicated tensors counted once) and
 *     gathered logits agree with the reference (float32 reductions in another order: rtol 1e-4);
 *     with dropout on too (masks are counter-based on the full tensor, so identical);
 *   - all of the above again with sequence parallelism on (the residual stream split along the
 *     tokens; same tolerances), and B*T not divisible by tp refused under SP;
 *   - a checkpoint written by the TP ranks (each its slices) reads back at TP = 1 bit-identical to
 *     the reference weights, and at this TP into a fresh model bit-identical to the shards;
 *   - a checkpoint of another shape and bad configs are refused with messages naming the problem;
 *   - hostile metadata (issue #23): sizes past the limits (4*C would overflow an int), a config
 *     whose tensors are not in the file (nothing allocated for them), a model larger than the
 *     machine's memory (refused before allocating, with sizes), and non-finite weights (refused on
 *     load naming the tensor). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "model/model_internal.h"
#include "tpar/io.h"
#include "tpar/kernels.h"
#include "tpar/model.h"

#define MUST(call) CHECK_MUST(call, err)

static tpar_err_t err;

/* Copies this rank's shard of tensor i of the single-rank buffer `full` into a dense buffer laid
 * out like the shard (vocabulary padding rows stay zero). */
static void shard_of(const tpar_gpt2_t *m, const tpar_gpt2_t *ref, int i, const float *full, float *out) {
    const tpar_gpt2_tensor_t *t = &m->tensors[i], *rt = &ref->tensors[i];
    memset(out, 0, t->numel * sizeof(float));
    tpar_gpt2_piece_t pc[3];
    int np = tpar_gpt2_pieces(t, m->tp.size, m->tp.rank, pc);
    for (int k = 0; k < np; k++)
        for (int r = 0; r < pc[k].nr; r++)
            for (int c = 0; c < pc[k].nc; c++)
                out[pc[k].local_off + (size_t)r * pc[k].ld + c] =
                    full[rt->offset + (size_t)(pc[k].r0 + r) * rt->cols + (pc[k].c0 + c)];
}

/* Every tensor of `buf` (the TP model's layout) against the reference's, by shards. */
static void compare(const char *what, const tpar_gpt2_t *m, const tpar_gpt2_t *ref, const float *buf,
                    const float *refbuf, double rtol, double atol, int exact) {
    float *want = malloc(m->num_params * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const tpar_gpt2_tensor_t *t = &m->tensors[i];
        shard_of(m, ref, i, refbuf, want);
        char name[160];
        snprintf(name, sizeof name, "%s %s", what, t->name);
        if (exact) CHECK_BYTES_EQ("shard", want, buf + t->offset, t->numel * sizeof(float));
        else CHECK_CLOSE_F32(name, want, buf + t->offset, t->numel, rtol, atol);
    }
    free(want);
}

static void run(tpar_comm_t *world, float dropout, int sp, const char *ckpt) {
    int tp = tpar_comm_size(world), rank = tpar_comm_rank(world);
    tpar_gpt2_config_t cfg = {.n_layer = 2, .n_head = 4, .n_embd = 32, .vocab_size = 61, .n_positions = 16,
                              .dropout = dropout};
    int B = 2, T = 8, N = B * T;
    tpar_gpt2_t *m = NULL, *ref = NULL;
    MUST(tpar_gpt2_new(&cfg, world, B, T, sp, &m, &err));
    MUST(tpar_gpt2_new(&cfg, NULL, B, T, 0, &ref, &err));
    tpar_gpt2_init(m, 42);
    tpar_gpt2_init(ref, 42);
    compare("init", m, ref, m->params, ref->params, 0, 0, 1);
    // wte's padding rows (Vp > V) are zero
    const tpar_gpt2_tensor_t *wte = &m->tensors[0];
    int Vl = m->Vp / tp, pad_bad = 0;
    for (int r = 0; r < Vl; r++)
        if (rank * Vl + r >= cfg.vocab_size)
            for (int c = 0; c < cfg.n_embd; c++) pad_bad += m->params[wte->offset + (size_t)r * cfg.n_embd + c] != 0;
    CHECK_EQ_INT(0, pad_bad);

    int in[16], tg[16];
    for (int i = 0; i < N; i++) in[i] = (int)(tpar_rng_u32(7, (uint64_t)i) % 61), tg[i] = (int)(tpar_rng_u32(8, (uint64_t)i) % 61);
    float loss = 0, rloss = 0;
    uint64_t ds = 99;
    MUST(tpar_gpt2_forward(m, in, tg, B, T, ds, &loss, &err));
    MUST(tpar_gpt2_forward(ref, in, tg, B, T, ds, &rloss, &err));
    CHECK_CLOSE(rloss, loss, 1e-5, 1e-6);
    CHECK(rloss > 3.5 && rloss < 4.7); // about ln(61) = 4.11 at initialisation
    float row[61], rrow[61];
    MUST(tpar_gpt2_logits_row(m, N - 1, row, &err));
    MUST(tpar_gpt2_logits_row(ref, N - 1, rrow, &err));
    CHECK_CLOSE_F32("logits of the last row", rrow, row, 61, 1e-4, 1e-5);

    tpar_gpt2_zero_grad(m);
    tpar_gpt2_zero_grad(ref);
    MUST(tpar_gpt2_backward(m, in, tg, 0.5f, NULL, NULL, &err));
    MUST(tpar_gpt2_backward(ref, in, tg, 0.5f, NULL, NULL, &err));
    compare("grad", m, ref, m->grads, ref->grads, 1e-3, 2e-6, 0);
    double sq = tpar_gpt2_grad_sq_local(m), rsq = tpar_gpt2_grad_sq_local(ref);
    if (tp > 1) MUST(tpar_comm_allreduce(world, TPAR_IN_PLACE, &sq, 1, TPAR_F64, TPAR_SUM));
    CHECK_CLOSE(rsq, sq, 1e-4, 0);
    if (sp && tp > 1) { // a forward whose B*T does not split over the group: refused on every rank
        tpar_err_t e = {0};
        CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_gpt2_forward(m, in, tg, 1, T - 1, ds, &loss, &e));
        CHECK_STR_CONTAINS(e.msg, "sequence parallelism needs B*T");
    }

    if (!ckpt) goto out;
    // The TP ranks write their slices; TP = 1 and a fresh TP model read them back exactly.
    const float *bufs[2] = {m->params, m->grads};
    const char *sfx[2] = {"", ".g"};
    MUST(tpar_gpt2_save(m, 2, bufs, sfx, ckpt, world, 1, &err));
    tpar_gpt2_t *one = NULL, *again = NULL;
    MUST(tpar_gpt2_new(&cfg, NULL, 1, T, 0, &one, &err));
    MUST(tpar_gpt2_new(&cfg, world, 1, T, 0, &again, &err));
    float *lb[2] = {one->params, one->grads}, *ab[2] = {again->params, again->grads};
    MUST(tpar_gpt2_load(one, 2, lb, sfx, ckpt, &err));
    MUST(tpar_gpt2_load(again, 2, ab, sfx, ckpt, &err));
    CHECK_BYTES_EQ("weights loaded at TP=1", ref->params, one->params, ref->num_params * sizeof(float));
    CHECK_BYTES_EQ("weights reloaded at this TP", m->params, again->params, m->num_params * sizeof(float));
    CHECK_BYTES_EQ("second buffer reloaded", m->grads, again->grads, m->num_params * sizeof(float));
    tpar_gpt2_config_t cr;
    MUST(tpar_gpt2_read_config(ckpt, &cr, &err));
    CHECK_EQ_INT(cfg.n_embd, cr.n_embd);
    CHECK_EQ_INT(cfg.vocab_size, cr.vocab_size);
    // another shape: refused, naming what differs
    tpar_gpt2_config_t other = cfg;
    other.n_embd = 64;
    tpar_gpt2_t *wrong = NULL;
    MUST(tpar_gpt2_new(&other, NULL, 1, T, 0, &wrong, &err));
    float *wb[1] = {wrong->params};
    tpar_err_t e2 = {0};
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_gpt2_load(wrong, 1, wb, sfx, ckpt, &e2));
    CHECK_STR_CONTAINS(e2.msg, "n_embd is 32, the model has 64");
    // a missing optimizer tensor: refused, naming it
    tpar_err_t e3 = {0};
    const char *sfx_bad[1] = {".exp_avg"};
    CHECK(tpar_gpt2_load(one, 1, lb, sfx_bad, ckpt, &e3) != TPAR_OK);
    CHECK_STR_CONTAINS(e3.msg, "wte.weight.exp_avg");
    tpar_gpt2_free(wrong);
    tpar_gpt2_free(one);
    tpar_gpt2_free(again);
out:
    tpar_gpt2_free(m);
    tpar_gpt2_free(ref);
}

/* A weights file of header only: config metadata (as strings, like tpar writes) and no tensor. */
static void write_meta_only(const char *path, const char *const kv[][2], int n) {
    tpar_st_writer_t *w = NULL;
    MUST(tpar_st_writer_new(&w, &err));
    for (int i = 0; i < n; i++) MUST(tpar_st_writer_meta(w, kv[i][0], kv[i][1], &err));
    MUST(tpar_st_writer_create(w, path, &err));
    MUST(tpar_st_writer_close(w, &err));
    tpar_st_writer_free(w);
}

static void hostile(tpar_comm_t *world, const char *path) {
    tpar_err_t e = {0};
    tpar_gpt2_config_t c = {.n_layer = 1, .n_head = 1, .n_embd = 1 << 29, .vocab_size = 256, .n_positions = 8};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gpt2_check(&c, 1, &e));
    CHECK_STR_CONTAINS(e.msg, "the limits are");
    // Valid shapes, but ~3.3e12 parameters (26 TB): refused before any allocation, with sizes.
    c = (tpar_gpt2_config_t){.n_layer = 64, .n_head = 64, .n_embd = 1 << 16, .vocab_size = 50257, .n_positions = 1024};
    tpar_gpt2_t *m = NULL;
    CHECK_EQ_INT(TPAR_ERR_NOMEM, tpar_gpt2_new(&c, NULL, 1, 8, 0, &m, &e));
    CHECK_STR_CONTAINS(e.msg, "GiB available (MemAvailable)");
    CHECK(m == NULL);
    if (tpar_comm_rank(world) == 0) {
        // GPT-2 124M's config and no tensors (a file of a few hundred bytes): refused by name.
        const char *const meta[][2] = {{"n_layer", "12"}, {"n_head", "12"}, {"n_embd", "768"},
                                       {"vocab_size", "50257"}, {"n_positions", "1024"}};
        write_meta_only(path, meta, 5);
        tpar_gpt2_config_t got;
        CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_gpt2_read_config(path, &got, &e));
        CHECK_STR_CONTAINS(e.msg, "no tensor named 'wte.weight'");
        const char *const huge[][2] = {{"n_layer", "1"}, {"n_head", "1"}, {"n_embd", "536870912"},
                                       {"vocab_size", "256"}, {"n_positions", "8"}};
        write_meta_only(path, huge, 5);
        CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_gpt2_read_config(path, &got, &e));
        CHECK_STR_CONTAINS(e.msg, "the config in its metadata is impossible");
        unlink(path);
    }
    MUST(tpar_comm_barrier(world));
    // A NaN in one weight: the save goes through (tpar_gpt2_save is storage), the load refuses it.
    tpar_gpt2_config_t cfg;
    MUST(tpar_gpt2_preset("tiny", &cfg, &err));
    MUST(tpar_gpt2_new(&cfg, world, 1, 8, 0, &m, &err));
    tpar_gpt2_init(m, 7);
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, "h.1.attn.c_proj.weight")) m->params[m->tensors[i].offset + 1] = 1.0f / 0.0f;
    const float *b[1] = {m->params};
    const char *sfx[1] = {""};
    MUST(tpar_gpt2_save(m, 1, b, sfx, path, world, 1, &err));
    float *lb[1] = {m->params};
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_gpt2_load(m, 1, lb, sfx, path, &e));
    CHECK_STR_CONTAINS(e.msg, "tensor 'h.1.attn.c_proj.weight' holds a non-finite value (inf)");
    tpar_gpt2_free(m);
    MUST(tpar_comm_barrier(world));
    if (tpar_comm_rank(world) == 0) unlink(path);
}

int main(void) {
    tpar_comm_t *world = NULL;
    MUST(tpar_comm_init(NULL, &world, &err));
    MUST(tpar_blas_set_threads(1, &err));
    // one file per job: rank 0's pid, shared with the others
    int64_t id = getpid();
    MUST(tpar_comm_broadcast(world, &id, 1, TPAR_I64, 0));
    char path[128];
    snprintf(path, sizeof path, "/tmp/tpar_test_gpt2_%lld.safetensors", (long long)id);
    run(world, 0.0f, 0, path);
    run(world, 0.1f, 0, NULL);
    run(world, 0.0f, 1, NULL);
    run(world, 0.1f, 1, NULL);
    MUST(tpar_comm_barrier(world));
    if (tpar_comm_rank(world) == 0) unlink(path);
    hostile(world, path);

    tpar_gpt2_config_t bad;
    MUST(tpar_gpt2_preset("tiny", &bad, &err));
    tpar_err_t e = {0};
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_gpt2_check(&bad, 3, &e));
    CHECK_STR_CONTAINS(e.msg, "n_head 4 is not divisible by the tensor-parallel size 3");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gpt2_preset("gpt5", &bad, &e));
    CHECK_STR_CONTAINS(e.msg, "unknown model 'gpt5'");
    tpar_comm_free(world);
    return check_finish("test_gpt2");
}
