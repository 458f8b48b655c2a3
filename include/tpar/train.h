/* tpar train: the training loop of one rank in a TP x DP grid.
 *
 * World rank w is TP rank w % tp of DP rank w / tp: TP groups are neighbouring ranks (one
 * host). DP ranks read different batches (the io loader); gradients are all-reduced over
 * DP in buckets (one per block, then the embeddings), started non-blocking from the model's
 * backward as each bucket becomes final. AdamW (kernels) with weight decay on matrices only,
 * linear warmup then cosine decay to lr_min_frac * lr, gradient accumulation, and global
 * gradient-norm clipping over all shards (replicated tensors counted once).
 * Checkpoints (io): DIR/step_N/{model.safetensors, optim.safetensors, state.json}, written by
 * the ranks of DP rank 0 (each its own slices), committed atomically; DIR is locked for the
 * run (tpar_ckpt_lock: rank 0 takes it, or adopts the one its launcher holds, whose descriptor
 * is in TPAR_SAVE_DIR_LOCK_FD). Every step checks that the loss and the gradients are finite on
 * every rank (all ranks agree); a non-finite state is never saved. See docs/TRAINING.md. */
#ifndef TPAR_TRAIN_H
#define TPAR_TRAIN_H

#include <stdint.h>

#include "tpar/core.h"
#include "tpar/model.h"

typedef struct {
    const char *model;   /* preset name (model.h) */
    float dropout;       /* overrides the preset's (0) */
    int tp, dp;          /* world = tp * dp */
    int sp;              /* 1: sequence parallelism in the TP groups (batch*seq % tp == 0) */
    int batch;           /* sequences per micro-batch per DP rank */
    int seq;             /* tokens per sequence (<= n_positions) */
    int accum;           /* micro-batches per step */
    int steps;           /* total optimizer steps (a resumed run continues to this) */
    uint64_t seed;
    double lr, lr_min_frac;
    int warmup;          /* steps */
    double weight_decay, beta1, beta2, eps;
    double grad_clip;    /* <= 0: no clipping */
    const char *data;    /* text (bytes) or binary token file */
    double val_frac;     /* held-out tail of the data */
    int val_every;       /* steps between validations (0: only at the end) */
    int val_batches;     /* micro-batches per DP rank per validation */
    const char *metrics; /* JSON-lines file or NULL */
    const char *save_dir;
    int save_every;      /* 0: only at the end when save_dir is set */
    int keep;            /* checkpoints kept (0: all) */
    int resume;          /* 1: continue from the newest valid checkpoint in save_dir */
    int sample;          /* bytes to sample at the end (byte vocabulary only; 0: none) */
    double temperature;  /* of the sample (0: greedy) */
    int log_every;       /* print every k-th step line (1: all) */
    const char *report;  /* HTML page (tpar report) rewritten at each validation by rank 0; needs metrics */
    const char *command; /* the command line, for the metrics header (NULL: not recorded) */
    tpar_progress_t progress; /* long work (checkpoints) of this rank reports here (zero: nowhere) */
    int allow_tp_across_hosts; /* 1: run even when a TP group's ranks are on several hosts (else
                                  refused before any work; docs/HOSTS.md) */
    int nonfinite_skip;  /* a step whose loss or gradients are not finite: 0 stops the run with an
                            error naming the step and the first non-finite tensor (default), 1
                            skips its update (counted as skipped steps) and goes on */
} tpar_train_config_t;

TPAR_API void tpar_train_config_default(tpar_train_config_t *c);

/* Checks everything that can be checked before starting ranks: the preset, divisibility by
 * tp, seq <= n_positions, the data file readable, flags that need each other. world > 0:
 * also world == tp * dp. A message says what is wrong and how to fix it. */
TPAR_API tpar_status tpar_train_validate(const tpar_train_config_t *c, int world, tpar_err_t *err);

typedef struct {
    int start_step, end_step;  /* steps run: (start_step, end_step] */
    double loss, grad_norm;    /* of the last step run (NaN if none) */
    double val_loss;           /* last validation (NaN if none) */
    double tokens_per_s;       /* mean over the steps run */
    int config_error;          /* 1: a configuration error, the same on every rank (print it once) */
    int same_error;            /* 1: rank 0's message says it all (every rank has the error, or rank 0 has
                                  the cause and the others "another rank failed"): only it prints */
    int skipped_steps;         /* steps whose update was skipped (non-finite, nonfinite_skip = 1) */
} tpar_train_result_t;

/* Runs this rank's part of the job (joins the world with tpar_comm_init). Rank 0 prints
 * progress to stdout. */
TPAR_API tpar_status tpar_train_run(const tpar_train_config_t *c, tpar_train_result_t *res, tpar_err_t *err);

/* The learning rate at step s (1-based): warmup, then cosine to lr * lr_min_frac. */
TPAR_API double tpar_train_lr(const tpar_train_config_t *c, int s);

/* The MFU reference is tpar_gemm_peak_flops (kernels.h): the best fp32 GEMM rate per core of
 * any provider, times the cores used; it is printed at start-up and written as peak_gflops. */

#endif /* TPAR_TRAIN_H */
