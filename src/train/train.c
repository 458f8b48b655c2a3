/* The training loop of one rank: grid, data, steps, validation, checkpoints, sample. */
#define _XOPEN_SOURCE 700
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "placement.h"
#include "restart.h"
#include "tpar/comm.h"
#include "tpar/fault.h"
#include "tpar/io.h"
#include "tpar/kernels.h"
#include "tpar/report.h"
#include "tpar/train.h"

void tpar_train_config_default(tpar_train_config_t *c) {
    *c = (tpar_train_config_t){.model = "tiny",
                               .tp = 1,
                               .dp = 1,
                               .batch = 16,
                               .seq = 64,
                               .accum = 1,
                               .steps = 200,
                               .seed = 1337,
                               .lr = 1e-3,
                               .lr_min_frac = 0.1,
                               .warmup = 20,
                               .weight_decay = 0.1,
                               .beta1 = 0.9,
                               .beta2 = 0.95,
                               .eps = 1e-8,
                               .grad_clip = 1.0,
                               .data = "data/tinyshakespeare.txt",
                               .val_frac = 0.1,
                               .val_every = 50,
                               .val_batches = 4,
                               .keep = 3,
                               .temperature = 0.8,
                               .log_every = 1};
}

tpar_status tpar_train_validate(const tpar_train_config_t *c, int world, tpar_err_t *err) {
    tpar_gpt2_config_t mc;
    tpar_status st = tpar_gpt2_preset(c->model, &mc, err);
    if (st) return st;
    if (c->tp < 1 || c->dp < 1 || c->batch < 1 || c->seq < 1 || c->accum < 1 || c->steps < 0)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--tp, --dp, --batch, --seq and --accum must be >= 1");
    mc.dropout = c->dropout;
    if ((st = tpar_gpt2_check(&mc, c->tp, err))) return st;
    if (world > 0 && world != c->tp * c->dp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "the world has %d ranks but --tp %d x --dp %d = %d (hint: launch tp*dp ranks, or let "
                            "`tpar train` launch them itself)",
                            world, c->tp, c->dp, c->tp * c->dp);
    if (c->sp && ((long long)c->batch * c->seq) % c->tp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--sp splits the --batch %d x --seq %d = %lld tokens of a micro-batch over --tp %d ranks: "
                            "pick a batch and sequence length whose product is a multiple of %d",
                            c->batch, c->seq, (long long)c->batch * c->seq, c->tp, c->tp);
    if (c->seq > mc.n_positions)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--seq %d exceeds the context length %d of model '%s'", c->seq,
                            mc.n_positions, c->model);
    if (!(c->lr >= 0) || !(c->val_frac > 0 && c->val_frac < 1) || c->warmup < 0)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--lr must be >= 0, --warmup >= 0, the validation share in (0, 1)");
    struct stat sb;
    if (!c->data || stat(c->data, &sb) || !S_ISREG(sb.st_mode))
        return tpar_err_set(err, TPAR_ERR_IO, "data file '%s' not found or not a regular file (hint: --data FILE)",
                            c->data ? c->data : "(none)");
    if ((c->resume || c->save_every > 0) && !c->save_dir)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--resume and --save-every need --save-dir DIR");
    if (c->report && !c->metrics)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--report draws its page from the metrics: add --metrics FILE");
    return TPAR_OK;
}

double tpar_train_lr(const tpar_train_config_t *c, int s) {
    if (c->warmup > 0 && s <= c->warmup) return c->lr * s / c->warmup;
    double lo = c->lr * c->lr_min_frac;
    if (c->steps <= c->warmup) return c->lr;
    double prog = (double)(s - c->warmup) / (c->steps - c->warmup);
    if (prog > 1) prog = 1;
    return lo + 0.5 * (1.0 + cos(3.141592653589793 * prog)) * (c->lr - lo);
}

/* ---- one rank's job ------------------------------------------------------------------------ */

#define MAX_BUCKETS 4096

typedef struct {
    const tpar_train_config_t *c;
    tpar_comm_t *world, *tpc, *dpc;
    int rank, tp_rank, dp_rank;
    tpar_gpt2_t *m;
    float *mom, *var;                 /* AdamW moments, the model's flat layout */
    tpar_tokens_t all, train, val;
    tpar_loader_t loader, vloader;
    int32_t *in, *tgt;                /* (B, T) */
    tpar_request_t *reqs[MAX_BUCKETS]; /* DP reductions in flight */
    int nreq;
    tpar_metrics_t *metrics;
    double peak_flops;                /* the machine peak: best GEMM FLOP/s per core x cores used */
    int start_step;                   /* resumed from (0: none); the next step's record holds the header */
    tpar_ckpt_lock_t *lock;           /* rank 0: the save directory's (one job per directory) */
    int skipped;                      /* steps skipped for a non-finite loss or gradient */
    int nonfinite_stop;               /* 1: the run stopped at a non-finite step (all ranks agreed) */
} job_t;

static tpar_status comm_fail(tpar_comm_t *c, tpar_status st, const char *what, tpar_err_t *err) {
    return tpar_err_set(err, st, "%s: %s", what, c ? tpar_comm_error(c) : tpar_status_str(st));
}

/* Starts the DP all-reduce of a bucket of gradients that backward just finished. Testing the
 * earlier buckets first drives them forward when the comm has no progress thread. */
static tpar_status bucket_ready(void *ctx, size_t offset, size_t count, tpar_err_t *err) {
    job_t *j = ctx;
    if (j->nreq >= MAX_BUCKETS) return tpar_err_set(err, TPAR_ERR_INTERNAL, "train: too many gradient buckets");
    tpar_status st = TPAR_OK;
    for (int i = 0; i < j->nreq && !st; i++) {
        int done = 0;
        if (j->reqs[i] && !(st = tpar_comm_test(j->reqs[i], &done)) && done) j->reqs[i] = NULL; // freed by test
    }
    if (st) return comm_fail(j->dpc, st, "data-parallel gradient all-reduce", err);
    st = tpar_comm_iallreduce(j->dpc, TPAR_IN_PLACE, j->m->grads + offset, count, TPAR_F32, TPAR_SUM,
                                          &j->reqs[j->nreq]);
    if (st) return comm_fail(j->dpc, st, "data-parallel gradient all-reduce", err);
    j->nreq++;
    return TPAR_OK;
}

static tpar_status wait_buckets(job_t *j, tpar_err_t *err) {
    tpar_status st = TPAR_OK;
    for (int i = 0; i < j->nreq; i++) {
        if (!j->reqs[i]) continue;
        tpar_status s = tpar_comm_wait(j->reqs[i]);
        if (s && !st) st = comm_fail(j->dpc, s, "data-parallel gradient all-reduce", err);
    }
    j->nreq = 0;
    return st;
}

/* A different dropout stream per (step, micro-batch, DP rank); the same across a TP group. */
static uint64_t dropout_seed(const job_t *j, int step, int micro) {
    uint64_t ctr = ((uint64_t)step * j->c->accum + micro) * j->c->dp + j->dp_rank;
    return ((uint64_t)tpar_rng_u32(j->c->seed + 1, 2 * ctr) << 32) | tpar_rng_u32(j->c->seed + 1, 2 * ctr + 1);
}

static tpar_status sum_over(tpar_comm_t *c, double *v, int n, tpar_op op, tpar_err_t *err) {
    if (!c || tpar_comm_size(c) == 1) return TPAR_OK;
    tpar_status st = tpar_comm_allreduce(c, TPAR_IN_PLACE, v, (size_t)n, TPAR_F64, op);
    return st ? comm_fail(c, st, "train: reduction of step statistics", err) : TPAR_OK;
}

/* Mean loss over val_batches micro-batches of the held-out data on every DP rank. */
static tpar_status validate(job_t *j, double *out, tpar_err_t *err) {
    const tpar_train_config_t *c = j->c;
    j->vloader.pos = 0; // the same batches every time
    double s = 0;
    tpar_status st = TPAR_OK;
    for (int k = 0; k < c->val_batches && !st; k++) {
        float loss = 0;
        if (!(st = tpar_loader_batch(&j->vloader, 0, j->in, j->tgt, err)) &&
            !(st = tpar_gpt2_forward(j->m, j->in, j->tgt, c->batch, c->seq, 0, &loss, err)))
            s += loss;
        tpar_loader_advance(&j->vloader);
    }
    if (st || (st = sum_over(j->dpc, &s, 1, TPAR_SUM, err))) return st;
    *out = s / ((double)c->val_batches * c->dp);
    return TPAR_OK;
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static const char *const opt_suffix[2] = {".exp_avg", ".exp_avg_sq"};
static const char *const w_suffix[1] = {""};


/* ---- non-finite values ------------------------------------------------------------------------ */

/* 1 if any of the n floats is NaN or Inf (exponent bits all ones). Integer ops on the bits, so
 * the compiler vectorises it (a float sum could not be reordered): a small part of a step. */
static int any_nonfinite(const float *x, size_t n) {
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return bad != 0;
}

/* The first tensor (table order) of buf, a flat buffer of the model's layout, holding a
 * non-finite value on this rank; INT_MAX if none. */
static int first_nonfinite_tensor(const tpar_gpt2_t *m, const float *buf) {
    for (int i = 0; i < m->n_tensors; i++)
        if (any_nonfinite(buf + m->tensors[i].offset, m->tensors[i].numel)) return i;
    return INT_MAX;
}

/* The first non-finite tensor over all ranks, of the nbuf buffers in order: buffer b, tensor i
 * is coded b * n_tensors + i (INT_MAX: none). Collective over the world. */
static tpar_status world_first_nonfinite(job_t *j, int nbuf, const float *const *bufs, int32_t *code,
                                         tpar_err_t *err) {
    int32_t v = INT32_MAX;
    for (int b = 0; b < nbuf && v == INT32_MAX; b++) {
        int i = first_nonfinite_tensor(j->m, bufs[b]);
        if (i != INT_MAX) v = (int32_t)(b * j->m->n_tensors + i);
    }
    tpar_status st = tpar_comm_allreduce(j->world, TPAR_IN_PLACE, &v, 1, TPAR_I32, TPAR_MIN);
    if (st) return comm_fail(j->world, st, "train: non-finite check", err);
    *code = v;
    return TPAR_OK;
}

static tpar_status save_state(job_t *j, int step, const char *dir, tpar_err_t *err) {
    const tpar_train_config_t *c = j->c;
    const tpar_gpt2_config_t *mc = &j->m->cfg;
    tpar_kv_t *kv = tpar_kv_new();
    if (!kv) return tpar_err_set(err, TPAR_ERR_NOMEM, "train state: out of memory");
    tpar_status st = tpar_kv_set_i64(kv, "step", step);
    if (!st) st = tpar_kv_set_u64(kv, "seed", c->seed);
    if (!st) st = tpar_kv_set_str(kv, "model", c->model);
    if (!st) st = tpar_kv_set_i64(kv, "config.n_layer", mc->n_layer);
    if (!st) st = tpar_kv_set_i64(kv, "config.n_head", mc->n_head);
    if (!st) st = tpar_kv_set_i64(kv, "config.n_embd", mc->n_embd);
    if (!st) st = tpar_kv_set_i64(kv, "config.vocab_size", mc->vocab_size);
    if (!st) st = tpar_kv_set_i64(kv, "config.n_positions", mc->n_positions);
    if (!st) st = tpar_kv_set_i64(kv, "layout.tp", c->tp);
    if (!st) st = tpar_kv_set_i64(kv, "layout.dp", c->dp);
    if (!st) st = tpar_kv_set_i64(kv, "batch", c->batch);
    if (!st) st = tpar_kv_set_i64(kv, "seq", c->seq);
    if (!st) st = tpar_kv_set_i64(kv, "accum", c->accum);
    if (!st) st = tpar_kv_set_f64(kv, "lr", c->lr);
    if (!st) st = tpar_kv_set_i64(kv, "skipped_steps", j->skipped);
    if (!st) st = tpar_loader_save_state(&j->loader, kv);
    char path[TPAR_CKPT_PATH_MAX];
    if (!st && snprintf(path, sizeof path, "%s/state.json", dir) >= (int)sizeof path)
        st = tpar_err_set(err, TPAR_ERR_INVALID_ARG, "train state: path too long");
    else if (st)
        st = tpar_err_set(err, st, "train state: out of memory");
    if (!st) st = tpar_kv_save(kv, path, err);
    tpar_kv_free(kv);
    return st;
}

static tpar_status save_checkpoint(job_t *j, int step, tpar_err_t *err) {
    const tpar_train_config_t *c = j->c;
    double t0 = tpar_now();
    char tmp[TPAR_CKPT_PATH_MAX], path[TPAR_CKPT_PATH_MAX + 32], warning[TPAR_ERR_MSG_MAX + 256] = "";
    // A non-finite state is never saved: it would be the newest checkpoint, and --keep would
    // then rotate out the finite ones. (The step checks make this a last line of defence.)
    const float *all[3] = {j->m->params, j->mom, j->var};
    static const char *const what[3] = {"weights", "AdamW first moments", "AdamW second moments"};
    int32_t bad;
    tpar_status st = world_first_nonfinite(j, 3, all, &bad, err);
    if (st) return st;
    if (bad != INT32_MAX)
        return tpar_err_set(err, TPAR_ERR_CORRUPT,
                            "refusing to save checkpoint step %d: tensor '%s' of the %s holds a NaN or an Inf", step,
                            j->m->tensors[bad % j->m->n_tensors].name, what[bad / j->m->n_tensors]);
    if (j->rank == 0) {
        printf("saving checkpoint step %d to %s ...\n", step, c->save_dir);
        fflush(stdout);
        st = tpar_ckpt_begin(c->save_dir, step, tmp, sizeof tmp, err);
    } else {
        if ((st = tpar_ckpt_path(tmp, sizeof tmp, c->save_dir, step, 1))) tpar_err_set(err, st, "checkpoint: path too long");
    }
    if ((st = tpar_comm_agree(j->world, st, "checkpoint begin", err))) return st;
    int writer = j->dp_rank == 0;
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    const float *w[1] = {j->m->params};
    if ((st = tpar_gpt2_save(j->m, 1, w, w_suffix, path, j->world, writer, err))) return st;
    tpar_fault_point(TPAR_FAULT_AT_SAVE, step); // fault injection (tests), inert unless TPAR_FAULT
    snprintf(path, sizeof path, "%s/optim.safetensors", tmp);
    const float *o[2] = {j->mom, j->var};
    if ((st = tpar_gpt2_save(j->m, 2, o, opt_suffix, path, j->world, writer, err))) return st;
    if (j->rank == 0) {
        st = save_state(j, step, tmp, err);
        if (!st) st = tpar_ckpt_commit(c->save_dir, step, c->keep, warning, sizeof warning, err);
    }
    if ((st = tpar_comm_agree(j->world, st, "checkpoint commit", err))) return st;
    if (j->rank == 0) {
        if (warning[0]) printf("warning: %s\n", warning);
        printf("saved checkpoint step %d (%.2f s)\n", step, tpar_now() - t0);
        fflush(stdout);
    }
    return TPAR_OK;
}

/* The state must belong to the checkpoint it sits in: its step is the one of the directory
 * name and the manifest (tpar_ckpt_verify checked those two), and its model config is the
 * running model's. A state.json copied or edited in would otherwise resume at one step with
 * the weights of another. */
static tpar_status check_state(job_t *j, const tpar_kv_t *kv, const char *path, int64_t ckpt_step, tpar_err_t *err) {
    int64_t s = -1, skipped = 0;
    tpar_status st = tpar_kv_get_i64(kv, "step", &s, err);
    if (st) return st;
    if (s != ckpt_step)
        return tpar_err_set(err, TPAR_ERR_CORRUPT,
                            "%s: the state says step %lld but the checkpoint (directory name and manifest) is step "
                            "%lld: the state belongs to another checkpoint (edited or copied in?)",
                            path, (long long)s, (long long)ckpt_step);
    const tpar_gpt2_config_t *mc = &j->m->cfg;
    const char *keys[5] = {"config.n_layer", "config.n_head", "config.n_embd", "config.vocab_size",
                           "config.n_positions"};
    const int have[5] = {mc->n_layer, mc->n_head, mc->n_embd, mc->vocab_size, mc->n_positions};
    for (int i = 0; i < 5; i++) {
        int64_t v;
        if ((st = tpar_kv_get_i64(kv, keys[i], &v, err))) return st;
        if (v != have[i])
            return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s is %lld, the checkpoint's model has %d", path, keys[i],
                                (long long)v, have[i]);
    }
    if (tpar_kv_has(kv, "skipped_steps")) { // absent in checkpoints older than the count
        if ((st = tpar_kv_get_i64(kv, "skipped_steps", &skipped, err))) return st;
        if (skipped < 0 || skipped > s)
            return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: skipped_steps %lld is outside [0, step %lld]", path,
                                (long long)skipped, (long long)s);
    }
    j->skipped = (int)skipped;
    return TPAR_OK;
}

/* Loads the newest valid checkpoint of save_dir into the model, the moments and the loader;
 * *step = its step (0 and nothing loaded when there is none). Any TP x DP layout. */
static tpar_status load_checkpoint(job_t *j, int *step, tpar_err_t *err) {
    const tpar_train_config_t *c = j->c;
    tpar_ckpt_found_t found;
    *step = 0;
    tpar_status st = tpar_ckpt_find_latest(c->save_dir, 1, &found, err);
    if (st || !found.found) return st;
    if (j->rank == 0) {
        if (found.skipped) printf("warning: %s\n", found.warning);
        printf("resuming from %s ...\n", found.path);
        fflush(stdout);
    }
    char path[TPAR_CKPT_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", found.path);
    float *w[1] = {j->m->params}, *o[2] = {j->mom, j->var};
    if ((st = tpar_gpt2_load(j->m, 1, w, w_suffix, path, err))) return st;
    snprintf(path, sizeof path, "%s/optim.safetensors", found.path);
    if ((st = tpar_gpt2_load(j->m, 2, o, opt_suffix, path, err))) return st;
    snprintf(path, sizeof path, "%s/state.json", found.path);
    tpar_kv_t *kv = NULL;
    int64_t s = 0;
    if ((st = tpar_kv_load(path, &kv, err))) return st;
    st = tpar_kv_get_i64(kv, "step", &s, err);
    if (!st) st = check_state(j, kv, path, found.step, err);
    if (!st) st = tpar_loader_load_state(&j->loader, kv, err);
    tpar_kv_free(kv);
    if (!st && (s < 0 || s > 1000000000))
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: step %lld out of range", path, (long long)s);
    *step = (int)s;
    return st;
}

/* ---- the sample -------------------------------------------------------------------------------- */

static tpar_status sample(job_t *j, tpar_err_t *err) {
    const tpar_train_config_t *c = j->c;
    tpar_gpt2_t *m = j->m;
    int V = m->cfg.vocab_size, T = c->seq;
    float *logits = malloc((size_t)V * sizeof(float));
    int *ctx = calloc((size_t)T, sizeof(int));
    if (!logits || !ctx) {
        free(logits), free(ctx);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "sample: out of memory");
    }
    // Under SP a forward needs its tokens divisible by tp: the window is padded to a multiple
    // of tp (causal attention: the padding after the last token changes none of its logits).
    int tps = m->sp ? m->tp.size : 1, W = T - T % tps;
    if (W < 1) {
        free(logits), free(ctx);
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "sample: --sp needs --seq >= --tp %d to sample", tps);
    }
    int n = 1;
    ctx[0] = '\n';
    if (j->rank == 0) printf("---- sample (%d bytes, temperature %.2f) ----\n", c->sample, c->temperature);
    tpar_status st = TPAR_OK;
    for (int i = 0; i < c->sample && !st; i++) {
        // No KV cache here (tpar generate has one): the whole window again for each byte.
        int np = (n + tps - 1) / tps * tps; // <= W
        for (int k = n; k < np; k++) ctx[k] = 0;
        if ((st = tpar_gpt2_forward(m, ctx, NULL, 1, np, 0, NULL, err)) ||
            (st = tpar_gpt2_logits_row(m, n - 1, logits, err)))
            break;
        int next = 0;
        if (c->temperature <= 0) {
            for (int v = 1; v < V; v++)
                if (logits[v] > logits[next]) next = v;
        } else { // every TP rank draws the same token: same logits, same counter
            double mx = logits[0], s = 0;
            for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
            for (int v = 0; v < V; v++) s += exp((logits[v] - mx) / c->temperature);
            double u = tpar_rng_u32(c->seed + 2, (uint64_t)i) / 4294967296.0 * s, acc = 0;
            for (next = 0; next < V - 1; next++)
                if ((acc += exp((logits[next] - mx) / c->temperature)) > u) break;
        }
        if (j->rank == 0) putchar(next >= 32 || next == '\n' || next == '\t' ? next : '?');
        if (n == W) memmove(ctx, ctx + 1, (size_t)(W - 1) * sizeof(int)), n--;
        ctx[n++] = next;
    }
    if (j->rank == 0) printf("\n---- end of sample ----\n");
    free(logits), free(ctx);
    return st;
}

/* ---- set-up and the loop --------------------------------------------------------------------- */

/* The run's header, in the first step record of each start of the program (a resume adds
 * another) as "run.*" keys, so every line stays a step record: what `tpar report` shows
 * above the charts (docs/REPORT.md). */
static tpar_status add_header(const job_t *j, tpar_kv_t *kv) {
    const tpar_train_config_t *c = j->c;
    const tpar_gpt2_config_t *mc = &j->m->cfg;
    char host[256] = "", cpu[256] = "", line[512], when[40] = "";
    if (gethostname(host, sizeof host - 1)) host[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r"); // Linux; elsewhere the CPU stays unrecorded
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    tpar_status st = tpar_kv_set_str(kv, "run.tpar_version", TPAR_VERSION_STRING);
    if (!st) st = tpar_kv_set_str(kv, "run.model", c->model);
    if (!st) st = tpar_kv_set_i64(kv, "run.n_params", (int64_t)tpar_gpt2_num_params(mc));
    if (!st) st = tpar_kv_set_i64(kv, "run.n_layer", mc->n_layer);
    if (!st) st = tpar_kv_set_i64(kv, "run.n_head", mc->n_head);
    if (!st) st = tpar_kv_set_i64(kv, "run.n_embd", mc->n_embd);
    if (!st) st = tpar_kv_set_i64(kv, "run.vocab_size", mc->vocab_size);
    if (!st) st = tpar_kv_set_i64(kv, "run.tp", c->tp);
    if (!st) st = tpar_kv_set_i64(kv, "run.dp", c->dp);
    if (!st) st = tpar_kv_set_i64(kv, "run.sp", j->m->sp);
    if (!st) st = tpar_kv_set_i64(kv, "run.batch", c->batch);
    if (!st) st = tpar_kv_set_i64(kv, "run.seq", c->seq);
    if (!st) st = tpar_kv_set_i64(kv, "run.accum", c->accum);
    if (!st) st = tpar_kv_set_i64(kv, "run.tokens_per_step", (int64_t)c->batch * c->seq * c->accum * c->dp);
    if (!st) st = tpar_kv_set_i64(kv, "run.steps", c->steps);
    if (!st) st = tpar_kv_set_i64(kv, "run.start_step", j->start_step);
    if (!st) st = tpar_kv_set_f64(kv, "run.lr", c->lr);
    if (!st) st = tpar_kv_set_u64(kv, "run.seed", c->seed);
    if (!st) st = tpar_kv_set_str(kv, "run.data", c->data);
    if (!st) st = tpar_kv_set_f64(kv, "run.peak_flops", j->peak_flops);
    if (!st && c->command) st = tpar_kv_set_str(kv, "run.command", c->command);
    if (!st && host[0]) st = tpar_kv_set_str(kv, "run.host", host);
    if (!st && cpu[0]) st = tpar_kv_set_str(kv, "run.cpu", cpu);
    if (!st) st = tpar_kv_set_i64(kv, "run.cores", tpar_num_cores());
    if (!st && when[0]) st = tpar_kv_set_str(kv, "run.started", when);
    return st;
}

/* The save directory is locked for the run. `tpar train` takes the lock before it starts the
 * ranks and keeps it across restarts (its launcher, the same process after exec), handing the
 * descriptor down in TPAR_SAVE_DIR_LOCK_FD: rank 0 checks that it is this directory's lock, and
 * every rank closes its inherited copy, so that the lock goes the moment the launcher goes (a
 * restart right after a kill -9 of the job must not find it held by dying ranks). Without one
 * (under mpirun, or a library caller) rank 0 takes the lock itself for the run. */
static tpar_status lock_save_dir(job_t *j, tpar_err_t *err) {
    long long fd = -1;
    const char *s = getenv("TPAR_SAVE_DIR_LOCK_FD");
    if (!s || tpar_parse_int(s, 0, INT_MAX, &fd)) fd = -1;
    tpar_status st = j->rank == 0 ? tpar_ckpt_lock(j->c->save_dir, (int)fd, 0, &j->lock, err) : TPAR_OK;
    char p[TPAR_CKPT_PATH_MAX];
    struct stat a, b; // close it only if it is that lock file (not whatever a stray variable names)
    if (fd >= 0 && snprintf(p, sizeof p, "%s/%s", j->c->save_dir, TPAR_CKPT_LOCK) < (int)sizeof p &&
        fstat((int)fd, &a) == 0 && stat(p, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        close((int)fd);
    return st;
}

/* The large square of the MFU reference: 1024^3, 2 GFLOP, ~0.07 s a call at OpenBLAS's SSE3
 * speed; oneDNN's per-core rate there is within the machine's noise of 2048^3's (docs/TRAINING.md). */
enum { PEAK_N = 1024 };

/* Cores the job computes on: its ranks' threads, at most every core of the hosts it spans
 * (world / local ranks of them; all local when nothing says otherwise). */
static int cores_used(int world, int threads) {
    long long local = world;
    if (getenv("TPAR_LOCAL_SIZE")) tpar_env_int("TPAR_LOCAL_SIZE", world, 1, world, &local, NULL);
    else if (getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) tpar_env_int("OMPI_COMM_WORLD_LOCAL_SIZE", world, 1, world, &local, NULL);
    long long hosts = (world + local - 1) / local, cores = hosts * tpar_num_cores(), want = (long long)world * threads;
    return (int)(want < cores ? want : cores);
}

static tpar_status setup(job_t *j, int *start, tpar_train_result_t *res, tpar_err_t *err) {
    const tpar_train_config_t *c = j->c;
    tpar_status st = tpar_comm_init(NULL, &j->world, err);
    if (st) return st;
    j->rank = tpar_comm_rank(j->world);
    res->config_error = 1;
    if ((st = tpar_train_validate(c, tpar_comm_size(j->world), err))) return st;
    // The hosts of the ranks: a TP group across hosts is refused (the same verdict on every rank)
    char placement[1024] = "";
    if ((st = train_placement(j->world, c->tp, c->allow_tp_across_hosts, placement, sizeof placement, err)))
        return st;
    res->config_error = 0;
    if (c->save_dir && (st = tpar_comm_agree(j->world, lock_save_dir(j, err), "save directory", err))) {
        res->same_error = 1; // rank 0's message is the one that says why: it alone prints
        return st;
    }
    j->tp_rank = j->rank % c->tp;
    j->dp_rank = j->rank / c->tp;
    if ((st = tpar_comm_split(j->world, j->dp_rank, j->tp_rank, &j->tpc)) ||
        (st = tpar_comm_split(j->world, j->tp_rank, j->dp_rank, &j->dpc)))
        return comm_fail(j->world, st, "train: building the TP x DP grid", err);
    // This rank's share of the host's cores, for GEMM and the large kernels; the GEMM provider.
    int threads = 1;
    if ((st = tpar_kernels_rank_threads(&threads, err)) || (st = tpar_kernels_set_threads(threads, err)) ||
        (st = tpar_gemm_init(err)))
        return st;
    tpar_gpt2_config_t mc;
    tpar_gpt2_preset(c->model, &mc, NULL);
    mc.dropout = c->dropout;
    if ((st = tpar_tokens_load(c->data, &j->all, err))) return st;
    if (j->all.vocab > mc.vocab_size)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "data %s has vocabulary %d, model '%s' only %d", c->data,
                            j->all.vocab, c->model, mc.vocab_size);
    if ((st = tpar_tokens_split(&j->all, c->val_frac, &j->train, &j->val, err)) ||
        (st = tpar_loader_init(&j->loader, &j->train, c->batch, c->seq, j->dp_rank, c->dp, c->accum, c->seed, 1, err)) ||
        (st = tpar_loader_init(&j->vloader, &j->val, c->batch, c->seq, j->dp_rank, c->dp, 1, c->seed, 0, err)))
        return st;
    if ((st = tpar_gpt2_new(&mc, j->tpc, c->batch, c->seq, c->sp, &j->m, err))) return st;
    j->m->progress = c->progress;
    size_t n = j->m->num_params, bt = (size_t)c->batch * c->seq;
    j->mom = tpar_calloc_aligned(n, sizeof(float));
    j->var = tpar_calloc_aligned(n, sizeof(float));
    j->in = calloc(bt, sizeof(int32_t));
    j->tgt = calloc(bt, sizeof(int32_t));
    if (!j->mom || !j->var || !j->in || !j->tgt)
        return tpar_err_set(err, TPAR_ERR_NOMEM, "train: out of memory for the optimizer state (%zu floats x2)", n);
    tpar_gpt2_init(j->m, c->seed);
    *start = 0;
    int restarted = train_restart_count() > 0 && c->save_dir; // restarted by the supervisor: resume
    if ((c->resume || restarted) && (st = tpar_comm_agree(j->world, load_checkpoint(j, start, err), "resume", err)))
        return st;
    if (j->rank == 0 && c->metrics && (st = tpar_metrics_open(c->metrics, &j->metrics, err))) return st;
    if ((st = train_restart_log(j->rank, *start, j->metrics, err))) return st;
    // The MFU reference, measured in this run (the machine drifts): the best fp32 GEMM rate per
    // core of any provider on a large square, times the cores the job uses.
    tpar_gemm_peak_t pk = {0};
    tpar_cpu_info_t ci = {0};
    if (j->rank == 0) {
        tpar_err_t perr = {0};
        if (tpar_gemm_peak_flops(PEAK_N, 2, &pk, &perr)) pk.best = 0; // out of memory: MFU shows 0, the run goes on
        tpar_cpu_info(&ci, 1);
    }
    int world = c->tp * c->dp, used = cores_used(world, threads);
    j->peak_flops = pk.best * used;
    if (j->rank == 0) {
        printf("tpar train: model %s (%zu parameters, L=%d C=%d heads=%d V=%d) | TP %d x DP %d%s | batch %d x "
               "%d tokens x %d accum x %d DP | %d steps from step %d\n",
               c->model, tpar_gpt2_num_params(&mc), mc.n_layer, mc.n_embd, mc.n_head, mc.vocab_size, c->tp, c->dp,
               j->m->sp ? " (sequence parallel)" : "", c->batch, c->seq, c->accum, c->dp, c->steps, *start);
        if (c->tp * c->dp > 1) printf("%s\n", placement);
        printf("data %s: %zu train / %zu validation tokens\n", c->data, j->train.n, j->val.n);
        printf("compute: %d threads per rank, %d cores used | GEMM %s | peak GEMM %d^3: %.1f GFLOP/s per core (%s; "
               "openblas %.1f) | MFU against %.1f GFLOP/s\n",
               threads, used, tpar_gemm_provider_name(tpar_gemm_ctx_force(tpar_gemm_default())), PEAK_N,
               pk.best / 1e9, tpar_gemm_provider_name(pk.best_provider), pk.flops[TPAR_GEMM_OPENBLAS] / 1e9,
               j->peak_flops / 1e9);
        if (ci.peak_flops_per_core > 0)
            printf("theoretical FMA peak: %.1f GFLOP/s per core (%d floats x 2 x %d FMA units x %.2f GHz measured); "
                   "the GEMM peak is %.0f%% of it\n",
                   ci.peak_flops_per_core / 1e9, ci.vector_floats, ci.fma_units, ci.clock_hz / 1e9,
                   100 * pk.best / ci.peak_flops_per_core);
        fflush(stdout);
    }
    j->start_step = *start;
    return TPAR_OK;
}

static void teardown(job_t *j) {
    tpar_ckpt_unlock(j->lock);
    tpar_metrics_close(j->metrics);
    tpar_gpt2_free(j->m);
    tpar_free(j->mom), tpar_free(j->var);
    free(j->in), free(j->tgt);
    tpar_loader_free(&j->loader), tpar_loader_free(&j->vloader);
    tpar_tokens_free(&j->all);
    tpar_comm_free(j->dpc), tpar_comm_free(j->tpc), tpar_comm_free(j->world);
}

/* AdamW on every tensor of the flat buffers: decay on matrices only. */
static tpar_status optimizer_step(job_t *j, double lr, long t, tpar_err_t *err) {
    const tpar_train_config_t *c = j->c;
    tpar_gpt2_t *m = j->m;
    for (int i = 0; i < m->n_tensors; i++) {
        const tpar_gpt2_tensor_t *tt = &m->tensors[i];
        tpar_adamw_t a = {(float)lr, (float)c->beta1, (float)c->beta2, (float)c->eps,
                          tt->decay ? (float)c->weight_decay : 0.0f};
        size_t o = tt->offset;
        tpar_status st = tpar_adamw_update(m->params + o, m->grads + o, j->mom + o, j->var + o, tt->numel, &a, t, err);
        if (st) return st;
    }
    return TPAR_OK;
}

/* TPAR_FAULT kind=nan (tests): a NaN in this rank's gradient of the last block's MLP input
 * weight, after the DP all-reduce, so that this rank alone sees it (its DP peers' loss and norm
 * stay finite: only the agreement over all ranks stops them too). On a TP rank > 0 it goes into
 * ln_f.weight instead, a replicated tensor whose copy there the gradient norm does not count. */
static void inject_nan(job_t *j, int step) {
    if (!tpar_fault_nan(step)) return;
    char name[64];
    if (j->tp_rank > 0) snprintf(name, sizeof name, "ln_f.weight");
    else snprintf(name, sizeof name, "h.%d.mlp.c_fc.weight", j->m->cfg.n_layer - 1);
    for (int i = 0; i < j->m->n_tensors; i++)
        if (!strcmp(j->m->tensors[i].name, name) && j->m->tensors[i].numel) j->m->grads[j->m->tensors[i].offset] = NAN;
}

/* After the reductions of a step: whether any rank's loss, gradient norm or gradients are
 * non-finite (all ranks agree, so all stop or skip together), and if so an error naming the
 * step and the first non-finite tensor. Returns TPAR_OK with *skip = 1 under nonfinite_skip.
 * sq_local, this rank's sum of squares before the TP reduction (double: finite for any finite
 * float gradient), is finite iff its gradients are, except the replicated tensors that it leaves
 * to TP rank 0: those are scanned here (small: norms, biases, positions), so no pass over all
 * the gradients is added to a step. */
static tpar_status check_finite(job_t *j, int step, double loss, double norm, double sq_local, int *skip,
                                tpar_err_t *err) {
    tpar_gpt2_t *m = j->m;
    *skip = 0;
    int32_t bad = !isfinite(loss) || !isfinite(norm) || !isfinite(sq_local);
    for (int i = 0; i < m->n_tensors && !bad && j->tp_rank > 0; i++)
        if (m->tensors[i].kind == TPAR_SHARD_REPLICATED)
            bad = any_nonfinite(m->grads + m->tensors[i].offset, m->tensors[i].numel);
    tpar_status st = tpar_comm_allreduce(j->world, TPAR_IN_PLACE, &bad, 1, TPAR_I32, TPAR_MAX);
    if (st) return comm_fail(j->world, st, "train: non-finite check", err);
    if (!bad) return TPAR_OK;
    // Name the first culprit: a weight (the cause) before a gradient (the effect).
    const float *bufs[2] = {m->params, m->grads};
    int32_t code;
    if ((st = world_first_nonfinite(j, 2, bufs, &code, err))) return st;
    const char *what = !isfinite(loss) ? "loss" : !isfinite(norm) ? "gradient norm" : "gradients on some rank";
    char where[160];
    if (code == INT32_MAX)
        snprintf(where, sizeof where, "every weight and gradient is finite: the loss itself overflowed");
    else
        snprintf(where, sizeof where, "first non-finite tensor: the %s of '%s'", code < m->n_tensors ? "weight" : "gradient",
                 m->tensors[code % m->n_tensors].name);
    if (j->c->nonfinite_skip) {
        *skip = 1;
        if (j->rank == 0) {
            printf("step %5d/%d | non-finite %s (loss %g, gradient norm %g; %s): update skipped (--on-nonfinite "
                   "skip)\n",
                   step, j->c->steps, what, loss, norm, where);
            fflush(stdout);
        }
        return TPAR_OK;
    }
    j->nonfinite_stop = 1;
    return tpar_err_set(err, TPAR_ERR_CORRUPT,
                        "step %d: non-finite %s (loss %g, gradient norm %g; %s); stopped before the update, nothing "
                        "of this step saved (hint: a lower --lr or --grad-clip, or --on-nonfinite skip)",
                        step, what, loss, norm, where);
}

static tpar_status train_step(job_t *j, int step, double *loss_out, double *norm_out, int *skipped,
                              tpar_err_t *err) {
    const tpar_train_config_t *c = j->c;
    tpar_gpt2_t *m = j->m;
    tpar_gpt2_zero_grad(m);
    double loss = 0;
    tpar_status st = TPAR_OK;
    float dloss = 1.0f / ((float)c->accum * c->dp); // the DP sum of the gradients is then the mean
    for (int k = 0; k < c->accum && !st; k++) {
        float l = 0;
        int last = k == c->accum - 1 && c->dp > 1;
        if (!(st = tpar_loader_batch(&j->loader, k, j->in, j->tgt, err)) &&
            !(st = tpar_gpt2_forward(m, j->in, j->tgt, c->batch, c->seq, dropout_seed(j, step, k), &l, err)))
            st = tpar_gpt2_backward(m, j->in, j->tgt, dloss, last ? bucket_ready : NULL, j, err);
        loss += l;
    }
    tpar_status ws = wait_buckets(j, err);
    if (st || (st = ws)) return st;
    inject_nan(j, step);
    loss /= (double)c->accum * c->dp;
    double sq = tpar_gpt2_grad_sq_local(m), sq_local = sq;
    if ((st = sum_over(j->dpc, &loss, 1, TPAR_SUM, err)) || (st = sum_over(j->tpc, &sq, 1, TPAR_SUM, err))) return st;
    double norm = sqrt(sq);
    *loss_out = loss;
    *norm_out = norm;
    if ((st = check_finite(j, step, loss, norm, sq_local, skipped, err))) return st;
    if (!*skipped) {
        if (c->grad_clip > 0 && norm > c->grad_clip) {
            float s = (float)(c->grad_clip / norm);
            for (size_t i = 0; i < m->num_params; i++) m->grads[i] *= s;
        }
        if ((st = optimizer_step(j, tpar_train_lr(c, step), step, err))) return st;
    }
    tpar_loader_advance(&j->loader); // a skipped step's batch is consumed, as in llm.c and Megatron
    return TPAR_OK;
}

/* What a rank's collectives have cost so far: time blocked, and ring bus bytes (the unit of
 * `tpar plan`) in the TP and DP groups. */
typedef struct {
    double wait_s, tp_bus, dp_bus, tp_wait, dp_wait;
} comm_use_t;

static comm_use_t comm_use(const job_t *j) {
    tpar_comm_stats_t a, b;
    tpar_comm_stats(j->tpc, &a);
    tpar_comm_stats(j->dpc, &b);
    return (comm_use_t){a.wait_s + b.wait_s, (double)a.bus_bytes, (double)b.bus_bytes, a.wait_s, b.wait_s};
}

static comm_use_t comm_use_since(const job_t *j, comm_use_t u0) {
    comm_use_t u = comm_use(j);
    return (comm_use_t){u.wait_s - u0.wait_s, u.tp_bus - u0.tp_bus, u.dp_bus - u0.dp_bus, u.tp_wait - u0.tp_wait,
                        u.dp_wait - u0.dp_wait};
}

static tpar_status log_step(job_t *j, int step, double loss, double norm, double dt, comm_use_t use, double val,
                            tpar_err_t *err) {
    double wait = use.wait_s;
    const tpar_train_config_t *c = j->c;
    // Shard balance: busy time (step minus waiting in collectives) of the slowest and fastest rank;
    // the largest rank's model state (weights, gradients, AdamW m and v) and peak RSS, in bytes.
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) ru.ru_maxrss = 0;
    // (the negated entries give the minimum over the ranks)
    double state = 4.0 * sizeof(float) * j->m->num_params, rss = ru.ru_maxrss * 1024.0;
    double mx[6] = {dt - wait, -(dt - wait), state, rss, -state, -rss};
    tpar_status st = sum_over(j->world, mx, 6, TPAR_MAX, err);
    if (st || j->rank != 0) return st;
    double tokens = (double)c->batch * c->seq * c->accum * c->dp;
    double tps = tokens / dt, mfu = 0, balance = mx[1] < 0 ? mx[0] / -mx[1] : 1;
    if (j->peak_flops > 0) mfu = tps * tpar_gpt2_flops_per_token(&j->m->cfg, c->seq) / j->peak_flops;
    double lr = tpar_train_lr(c, step);
    if (step % c->log_every == 0 || step == c->steps || !isnan(val)) {
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.4f | %7.1f ms | %8.0f tok/s | MFU %5.1f%% | comm %4.1f%% | "
               "balance %.2f",
               step, c->steps, loss, lr, norm, dt * 1e3, tps, mfu * 100, wait / dt * 100, balance);
        if (!isnan(val)) printf(" | val %.4f", val);
        printf("\n");
        fflush(stdout);
    }
    if (!j->metrics) return TPAR_OK;
    tpar_kv_t *kv = tpar_kv_new();
    if (!kv) return tpar_err_set(err, TPAR_ERR_NOMEM, "metrics: out of memory");
    st = tpar_kv_set_i64(kv, "step", step);
    if (!st) st = tpar_kv_set_f64(kv, "loss", loss);
    if (!st) st = tpar_kv_set_f64(kv, "lr", lr);
    if (!st) st = tpar_kv_set_f64(kv, "grad_norm", norm);
    if (!st) st = tpar_kv_set_f64(kv, "ms", dt * 1e3);
    if (!st) st = tpar_kv_set_f64(kv, "tokens_per_s", tps);
    if (!st) st = tpar_kv_set_f64(kv, "mfu", mfu);
    if (!st) st = tpar_kv_set_f64(kv, "peak_gflops", j->peak_flops / 1e9); // the MFU reference, whole job
    if (!st) st = tpar_kv_set_f64(kv, "comm_frac", wait / dt);
    if (!st) st = tpar_kv_set_f64(kv, "balance", balance);
    if (!st) st = tpar_kv_set_f64(kv, "comm_frac_critical", fmax(0, 1 - mx[0] / dt)); // slowest rank blocked
    if (!st) st = tpar_kv_set_f64(kv, "state_bytes", mx[2]);
    if (!st) st = tpar_kv_set_f64(kv, "peak_rss_bytes", mx[3]);
    if (!st) st = tpar_kv_set_f64(kv, "tp_bus_bytes", use.tp_bus); // rank 0's, per step (ranks of a group agree)
    if (!st) st = tpar_kv_set_f64(kv, "dp_bus_bytes", use.dp_bus);
    if (!st) st = tpar_kv_set_f64(kv, "comm_frac_tp", use.tp_wait / dt); // rank 0's split of comm_frac
    if (!st) st = tpar_kv_set_f64(kv, "comm_frac_dp", use.dp_wait / dt);
    if (!st) st = tpar_kv_set_f64(kv, "busy_ms_max", mx[0] * 1e3);     // slowest rank's busy time
    if (!st) st = tpar_kv_set_f64(kv, "busy_ms_min", -mx[1] * 1e3);    // fastest rank's
    if (!st) st = tpar_kv_set_f64(kv, "state_bytes_min", -mx[4]);      // the smallest rank's
    if (!st) st = tpar_kv_set_f64(kv, "peak_rss_bytes_min", -mx[5]);
    if (!st && !isnan(val)) st = tpar_kv_set_f64(kv, "val_loss", val);
    if (!st && step == j->start_step + 1) st = add_header(j, kv);
    if (!st) st = tpar_kv_set_i64(kv, "skipped_steps", j->skipped); // so far (--on-nonfinite skip)
    if (st) st = tpar_err_set(err, st, "metrics: out of memory");
    else st = tpar_metrics_write(j->metrics, kv, err);
    tpar_kv_free(kv);
    return st;
}

/* `--report FILE`: the page of the metrics so far, replaced atomically. A failure warns and
 * training goes on: the page is a view, not the run. */
static void live_report(const job_t *j) {
    tpar_report_opts_t o;
    tpar_report_opts_default(&o);
    o.title = "tpar train (live report)";
    const char *runs[1] = {j->c->metrics};
    tpar_err_t e = {0};
    if (tpar_report_files(runs, 1, j->c->report, &o, &e)) {
        printf("warning: report %s not updated: %s\n", j->c->report, e.msg);
        fflush(stdout);
    }
}

tpar_status tpar_train_run(const tpar_train_config_t *c, tpar_train_result_t *res, tpar_err_t *err) {
    job_t j;
    memset(&j, 0, sizeof j);
    j.c = c;
    *res = (tpar_train_result_t){.loss = NAN, .grad_norm = NAN, .val_loss = NAN};
    int start = 0;
    tpar_status st = setup(&j, &start, res, err);
    res->start_step = res->end_step = start;
    double t_all = 0;
    for (int step = start + 1; !st && step <= c->steps; step++) {
        double loss = 0, norm = 0, val = NAN;
        tpar_fault_point(TPAR_FAULT_AT_STEP, step); // fault injection (tests) and progress for the supervisor
        comm_use_t u0 = comm_use(&j);
        double t0 = tpar_now();
        int skipped = 0;
        if ((st = train_step(&j, step, &loss, &norm, &skipped, err))) {
            res->same_error = j.nonfinite_stop; // every rank has this error: rank 0 prints it
            break;
        }
        j.skipped += skipped;
        res->skipped_steps = j.skipped;
        double dt = tpar_now() - t0;
        comm_use_t use = comm_use_since(&j, u0);
        t_all += dt;
        if ((c->val_every > 0 && step % c->val_every == 0) || step == c->steps) {
            if ((st = validate(&j, &val, err))) break;
            res->val_loss = val;
        }
        if ((st = log_step(&j, step, loss, norm, dt, use, val, err))) break;
        if (!isnan(val) && j.rank == 0 && c->report) live_report(&j);
        res->loss = loss, res->grad_norm = norm, res->end_step = step;
        if (c->save_dir && ((c->save_every > 0 && step % c->save_every == 0) || step == c->steps) &&
            (st = save_checkpoint(&j, step, err)))
            break;
    }
    if (!st && res->end_step == start && j.m) { // nothing to train: report where the checkpoint stands
        double val = NAN;
        if (!(st = validate(&j, &val, err))) res->val_loss = val;
        if (!st && j.rank == 0) printf("step %d: nothing left to train (--steps %d) | val %.4f\n", start, c->steps, val);
    }
    if (!st && res->end_step > start) {
        res->tokens_per_s = (double)c->batch * c->seq * c->accum * c->dp * (res->end_step - start) / t_all;
        if (j.rank == 0)
            printf("done: %d steps in %.1f s | final loss %.4f | val loss %.4f | %.0f tokens/s\n", res->end_step - start,
                   t_all, res->loss, res->val_loss, res->tokens_per_s);
    }
    if (!st && j.skipped && j.rank == 0)
        printf("%d step%s skipped for a non-finite loss or gradient (--on-nonfinite skip)\n", j.skipped,
               j.skipped == 1 ? "" : "s");
    if (!st && c->sample > 0 && j.m) st = sample(&j, err);
    fflush(stdout);
    teardown(&j);
    return st;
}
