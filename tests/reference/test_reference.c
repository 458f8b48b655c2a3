/* tpar against the independent PyTorch reference (tests/reference/gpt2_ref.py, issue #6).
 *
 * Run by test_reference.sh under `tpar launch -n TP`; every rank of the world is one TP rank.
 *
 *   test_reference check MODEL BATCH REF WORKDIR [sp]
 *       (with "sp": sequence parallelism on, same tolerances) loads MODEL (safetensors, any writer) at this TP size, runs forward and backward on
 *       BATCH and compares with REF (what gpt2_ref.py ref wrote in float64): the loss, every
 *       logit, every parameter gradient (gathered by saving m->grads with the model's own
 *       sharded writer into WORKDIR), then N AdamW steps on the batch (N and the
 *       hyper-parameters from REF's metadata): each step's loss, gradient norm and lr.
 *   test_reference init SEED OUT
 *       tpar's own initialisation at this TP size, saved as OUT (for the reverse check:
 *       PyTorch computes its reference from a checkpoint that tpar wrote).
 *
 * Tolerances (float32 tpar against a float64 reference, whose own rounding is ~1e-16):
 *   close(ref, got) := |got - ref| <= rtol * (|ref| + rms(ref)), per tensor.
 *   The rms floor: a float32 dot product of K terms carries an error of about sqrt(K) * 6e-8
 *   relative to the size of its terms, not of its (possibly cancelling) result, so a tensor's
 *   entries near zero are judged against the tensor's scale.
 *   Measured on this test's model (weights N(0, 0.3) so that activations reach |x| ~ 2, where
 *   the nonlinearities are most distinct; worst over TP = 1, 2, 4 and both checkpoints):
 *   - loss and logits: worst 2.3e-6. Each logit ends a chain of 2L+1 GEMMs of depth <= 4C
 *     and L+1 layer norms; tolerance rtol 3e-5, a 13x margin. A real error sits far above:
 *     GELU erf instead of tanh moves the logits by 8e-4 relative (28x the tolerance), a
 *     wrong head layout, a missing bias or a causal-mask off-by-one by more still.
 *   - gradients: worst 9e-6 (wte, which sums the embedding and the tied head). Backward adds
 *     a second GEMM chain and the softmax gradient (p - onehot) / N, whose cancellation loses
 *     a few more bits; tolerance rtol 1e-4, an 11x margin (GELU erf: 4e-3, 40x above).
 *   - the 5 AdamW steps: loss worst 1e-7, gradient norm worst 1e-6 relative; tolerance 3e-5,
 *     a 30x margin. Adam's update m / (sqrt(v) + eps) is scale-free, so a parameter whose
 *     gradient is ~0 may step differently when rounding flips its sign; over 5 steps the loss
 *     stays within 1e-6. Weight decay wrongly applied to norms and biases moves the step-5
 *     loss by 1.5e-4 relative (5x the tolerance). The lr schedule must agree to 1e-6
 *     (float32 storage of the reference's lr).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tpar/comm.h"
#include "tpar/io.h"
#include "tpar/kernels.h"
#include "tpar/model.h"
#include "tpar/train.h"

#define RTOL_LOGITS 3e-5
#define RTOL_GRADS 1e-4
#define RTOL_STEPS 3e-5

static int rank_ = 0;

static void die(const char *what, const tpar_err_t *err) {
    fprintf(stderr, "[rank %d] test_reference: %s: %s\n", rank_, what, err ? err->msg : "");
    exit(1);
}

static double rms(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? sqrt(s / (double)n) : 0.0;
}

/* close(ref, got) over a tensor, with the rms floor explained above. Returns the worst
 * |err| / (|ref| + rms(ref)), the error in units of rtol, so the log shows the margin. */
static double check_tensor(const char *name, const float *ref, const float *got, size_t n, double rtol) {
    double scale = rms(ref, n) + 1e-30, worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)got[i] - ref[i]) / (fabs((double)ref[i]) + scale);
        if (!(r <= worst)) worst = r; /* NaN sticks */
    }
    CHECK_CLOSE_F32(name, ref, got, n, rtol, rtol * scale);
    return worst;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) die("out of memory", NULL);
    return p;
}

/* A whole F32 tensor of an open file, or exit with the file's message. */
static float *read_f32(const tpar_st_file_t *f, const char *name, size_t *n) {
    const tpar_st_tensor_t *t = tpar_st_find(f, name);
    tpar_err_t err = {0};
    if (!t) {
        snprintf(err.msg, sizeof err.msg, "tensor '%s' missing", name);
        die("reference file", &err);
    }
    size_t cnt = 1;
    for (int d = 0; d < t->ndim; d++) cnt *= (size_t)t->shape[d];
    float *p = xcalloc(cnt, sizeof(float));
    if (tpar_st_read(f, name, TPAR_ST_F32, NULL, p, &err)) die("reading a tensor", &err);
    if (n) *n = cnt;
    return p;
}

static double meta_f64(const tpar_st_file_t *f, const char *key) {
    const char *s = tpar_st_metadata(f, key);
    char *end = NULL;
    double v = s ? strtod(s, &end) : NAN;
    if (!s || end == s || *end) {
        tpar_err_t err;
        snprintf(err.msg, sizeof err.msg, "metadata '%s' missing or not a number", key);
        die("reference file", &err);
    }
    return v;
}

typedef struct {
    int B, T;
    int *inputs, *targets; /* (B, T) */
} batch_t;

static void read_batch(const char *path, batch_t *b) {
    tpar_st_file_t *f = NULL;
    tpar_err_t err = {0};
    if (tpar_st_open(path, &f, &err)) die("batch file", &err);
    const tpar_st_tensor_t *t = tpar_st_find(f, "inputs");
    if (!t || t->ndim != 2) die("batch file: no 2-D tensor 'inputs'", NULL);
    b->B = (int)t->shape[0];
    b->T = (int)t->shape[1];
    int64_t shape[2] = {b->B, b->T};
    b->inputs = xcalloc((size_t)b->B * b->T, sizeof(int));
    b->targets = xcalloc((size_t)b->B * b->T, sizeof(int));
    if (tpar_st_expect(f, "targets", TPAR_ST_I32, 2, shape, &err) ||
        tpar_st_read(f, "inputs", TPAR_ST_I32, NULL, b->inputs, &err) ||
        tpar_st_read(f, "targets", TPAR_ST_I32, NULL, b->targets, &err))
        die("batch file", &err);
    tpar_st_close(f);
}

/* One flat buffer (params or grads) saved under the plain tensor names, every rank writing
 * its own slices; and loaded back into this rank's shards. */
static tpar_status save_buf(const tpar_gpt2_t *m, const float *buf, const char *path, tpar_comm_t *world,
                            tpar_err_t *err) {
    const char *suffix = "";
    return tpar_gpt2_save(m, 1, &buf, &suffix, path, world, 1, err);
}

static tpar_status load_params(tpar_gpt2_t *m, const char *path, tpar_err_t *err) {
    const char *suffix = "";
    return tpar_gpt2_load(m, 1, &m->params, &suffix, path, err);
}

static tpar_gpt2_t *build(const char *model_path, tpar_comm_t *world, int B, int T, int sp) {
    tpar_gpt2_config_t cfg;
    tpar_gpt2_t *m = NULL;
    tpar_err_t err = {0};
    if (tpar_gpt2_read_config(model_path, &cfg, &err)) die("model config", &err);
    cfg.dropout = 0.0f;
    if (tpar_gpt2_new(&cfg, tpar_comm_size(world) > 1 ? world : NULL, B, T, sp, &m, &err)) die("model", &err);
    return m;
}

/* Forward + backward on the batch: loss, logits (gathered, rank 0 compares), gradients. */
static void check_forward_backward(tpar_gpt2_t *m, tpar_comm_t *world, const batch_t *b, const tpar_st_file_t *ref,
                                   const char *workdir) {
    tpar_err_t err = {0};
    float loss = NAN;
    tpar_gpt2_zero_grad(m);
    if (tpar_gpt2_forward(m, b->inputs, b->targets, b->B, b->T, 0, &loss, &err)) die("forward", &err);

    size_t n_ref = 0;
    float *ref_loss = read_f32(ref, "loss", NULL);
    float *ref_logits = read_f32(ref, "logits", &n_ref);
    int N = b->B * b->T, V = m->cfg.vocab_size;
    CHECK_EQ_INT((size_t)N * V, n_ref);
    float *logits = xcalloc((size_t)N * V, sizeof(float));
    for (int row = 0; row < N; row++)
        if (tpar_gpt2_logits_row(m, row, logits + (size_t)row * V, &err)) die("logits", &err);
    CHECK_CLOSE(ref_loss[0], loss, RTOL_LOGITS, 0.0);
    double worst_logits = n_ref == (size_t)N * V ? check_tensor("logits", ref_logits, logits, n_ref, RTOL_LOGITS) : 0;

    if (tpar_gpt2_backward(m, b->inputs, b->targets, 1.0f, NULL, NULL, &err)) die("backward", &err);
    /* Gather the gradients as the checkpoint writer gathers weights: every rank writes its
     * slices of m->grads under the global names, then every rank reads whole tensors. */
    char path[4096];
    snprintf(path, sizeof path, "%s/grads_tp%d.safetensors", workdir, m->tp.size);
    if (save_buf(m, m->grads, path, world, &err)) die("saving gradients", &err);
    tpar_st_file_t *g = NULL;
    if (tpar_st_open(path, &g, &err)) die("gradient file", &err);
    CHECK_EQ_INT(m->n_tensors, tpar_st_count(g));
    double worst_grads = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < m->n_tensors; i++) {
        const char *name = m->tensors[i].name;
        char rname[128];
        snprintf(rname, sizeof rname, "grad.%s", name);
        size_t n1 = 0, n2 = 0;
        float *want = read_f32(ref, rname, &n1), *got = read_f32(g, name, &n2);
        CHECK_EQ_INT(n1, n2);
        double w = n1 == n2 ? check_tensor(rname, want, got, n1, RTOL_GRADS) : 0.0;
        if (!(w <= worst_grads)) worst_grads = w, worst_name = name;
        free(want);
        free(got);
    }
    tpar_st_close(g);
    if (rank_ == 0)
        printf("  loss %.7f (torch %.7f, rel err %.2g); worst relative error: logits %.2g (tol %g), "
               "gradients %.2g in %s (tol %g)\n", loss, ref_loss[0], fabs(loss - ref_loss[0]) / fabs(ref_loss[0]),
               worst_logits, RTOL_LOGITS, worst_grads, worst_name, RTOL_GRADS);
    free(ref_loss);
    free(ref_logits);
    free(logits);
}

/* N AdamW steps on the batch from tpar's pieces (see docs/REFERENCE.md: the trainer's loop
 * does the same per step with its data loader and DP reduction around it): forward, backward,
 * the global gradient norm (grad_sq_local summed over the TP group, replicated tensors counted
 * once), clipping, the lr of tpar_train_lr, tpar_adamw_update with decay on matrices only. */
static void check_steps(tpar_gpt2_t *m, tpar_comm_t *world, const batch_t *b, const tpar_st_file_t *ref) {
    int steps = (int)meta_f64(ref, "steps");
    if (steps <= 0) return;
    tpar_train_config_t tc;
    tpar_train_config_default(&tc);
    tc.steps = (int)meta_f64(ref, "decay_steps");
    tc.warmup = (int)meta_f64(ref, "warmup");
    tc.lr = meta_f64(ref, "lr");
    tc.lr_min_frac = meta_f64(ref, "min_lr_frac");
    double clip = meta_f64(ref, "grad_clip");
    tpar_adamw_t hp = {.beta1 = (float)meta_f64(ref, "beta1"), .beta2 = (float)meta_f64(ref, "beta2"),
                       .eps = (float)meta_f64(ref, "eps")};
    double wd = meta_f64(ref, "weight_decay");
    float *ref_loss = read_f32(ref, "train.loss", NULL), *ref_norm = read_f32(ref, "train.grad_norm", NULL);
    float *ref_lr = read_f32(ref, "train.lr", NULL);
    float *mom = xcalloc(m->num_params, sizeof(float)), *var = xcalloc(m->num_params, sizeof(float));
    tpar_err_t err = {0};
    for (int s = 1; s <= steps; s++) {
        float loss = NAN;
        tpar_gpt2_zero_grad(m);
        if (tpar_gpt2_forward(m, b->inputs, b->targets, b->B, b->T, 0, &loss, &err) ||
            tpar_gpt2_backward(m, b->inputs, b->targets, 1.0f, NULL, NULL, &err))
            die("training step", &err);
        double sq = tpar_gpt2_grad_sq_local(m);
        if (m->tp.size > 1 && tpar_comm_allreduce(world, TPAR_IN_PLACE, &sq, 1, TPAR_F64, TPAR_SUM))
            die(tpar_comm_error(world), NULL);
        double norm = sqrt(sq), lr = tpar_train_lr(&tc, s);
        if (clip > 0 && norm > clip)
            for (size_t i = 0; i < m->num_params; i++) m->grads[i] *= (float)(clip / norm);
        hp.lr = (float)lr;
        for (int i = 0; i < m->n_tensors; i++) {
            const tpar_gpt2_tensor_t *t = &m->tensors[i];
            hp.weight_decay = t->decay ? (float)wd : 0.0f;
            if (tpar_adamw_update(m->params + t->offset, m->grads + t->offset, mom + t->offset, var + t->offset,
                                  t->numel, &hp, s, &err))
                die("adamw", &err);
        }
        char what[64];
        snprintf(what, sizeof what, "step %d", s);
        if (rank_ == 0)
            printf("  %s: loss %.7f (torch %.7f), grad norm %.6f (torch %.6f), lr %.3g (torch %.3g)\n", what, loss,
               ref_loss[s - 1], norm, ref_norm[s - 1], lr, ref_lr[s - 1]);
        CHECK_CLOSE(ref_lr[s - 1], lr, 1e-6, 0.0); /* the schedule: same formula, float32 storage */
        CHECK_CLOSE(ref_loss[s - 1], loss, RTOL_STEPS, 0.0);
        CHECK_CLOSE(ref_norm[s - 1], norm, RTOL_STEPS, 0.0);
    }
    free(mom);
    free(var);
    free(ref_loss);
    free(ref_norm);
    free(ref_lr);
}

int main(int argc, char **argv) {
    tpar_comm_t *world = NULL;
    tpar_err_t err = {0};
    if (argc < 2 || (strcmp(argv[1], "check") && strcmp(argv[1], "init")) ||
        (!strcmp(argv[1], "check") && argc != 6 && !(argc == 7 && !strcmp(argv[6], "sp"))) || (!strcmp(argv[1], "init") && argc != 5)) {
        fprintf(stderr, "usage: test_reference check MODEL BATCH REF WORKDIR [sp] | init SEED CONFIG_FROM OUT\n");
        return 2;
    }
    if (tpar_comm_init(NULL, &world, &err)) die("joining the world", &err);
    rank_ = tpar_comm_rank(world);
    if (tpar_blas_set_threads(1, &err)) die("blas", &err);

    if (!strcmp(argv[1], "init")) {
        /* tpar's initialisation with the shapes of CONFIG_FROM (a model file), saved as OUT. */
        tpar_gpt2_t *m = build(argv[3], world, 1, 1, 0);
        tpar_gpt2_init(m, strtoull(argv[2], NULL, 10));
        if (save_buf(m, m->params, argv[4], world, &err)) die("saving", &err);
        if (rank_ == 0) printf("wrote %s (tpar init, TP=%d)\n", argv[4], m->tp.size);
        tpar_gpt2_free(m);
        tpar_comm_free(world);
        return 0;
    }

    batch_t b;
    read_batch(argv[3], &b);
    tpar_st_file_t *ref = NULL;
    if (tpar_st_open(argv[4], &ref, &err)) die("reference file", &err);
    tpar_gpt2_t *m = build(argv[2], world, b.B, b.T, argc == 7);
    if (load_params(m, argv[2], &err)) die("loading the model", &err);
    if (rank_ == 0)
        printf("TP=%d%s: L=%d NH=%d C=%d V=%d (padded %d), B=%d T=%d\n", m->tp.size, m->sp ? " with SP" : "",
               m->cfg.n_layer, m->cfg.n_head, m->cfg.n_embd, m->cfg.vocab_size, m->Vp, b.B, b.T);
    check_forward_backward(m, world, &b, ref, argv[5]);
    check_steps(m, world, &b, ref);
    tpar_st_close(ref);
    tpar_gpt2_free(m);
    free(b.inputs);
    free(b.targets);
    int rc = check_finish("test_reference");
    tpar_comm_free(world);
    return rc;
}
