/* tpar model: GPT-2 (pre-LayerNorm blocks, learned positions, output head tied to the
 * token embedding) split over a tensor-parallel group, built from the layers of
 * include/tpar/parallel.h.
 *
 * One rank's model holds its shards of every parameter in ONE flat buffer (params), the
 * gradients in a second one of the same layout (grads), carved into named tensors as in
 * llm.c. The tensor table (tpar_gpt2_tensor_t) says, for each tensor, its Hugging Face
 * name and global shape (docs/TRAINING.md, the checkpoint names), how it is sharded, and
 * where this rank's shard lives in the flat buffers. Optimizer state uses the same layout.
 *
 * Layout independence: tpar_gpt2_init draws element g of each global tensor from a
 * counter-based RNG at counter g, so for one seed the gathered weights are the same
 * whatever the TP size. The vocabulary is padded in memory (rows >= vocab_size are zero
 * and never used); checkpoints hold the real vocabulary only.
 *
 * Activations: the residual stream is replicated (N, C) on every TP rank, or with sequence
 * parallelism (SP) split along the N = B*T tokens: TP rank r holds the contiguous tokens
 * [r*N/tp, (r+1)*N/tp) (Nl = N/tp of them) through the embedding, the blocks and ln_f; the
 * head all-gathers them. Logits are vocab-sharded (N, Vp/tp) either way. */
#ifndef TPAR_MODEL_H
#define TPAR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tpar/comm.h"
#include "tpar/core.h"
#include "tpar/parallel.h"

typedef struct {
    int n_layer;     /* L */
    int n_head;      /* NH */
    int n_embd;      /* C */
    int vocab_size;  /* V (real, unpadded) */
    int n_positions; /* maximum sequence length */
    float dropout;   /* embedding and residual dropout, [0, 1); 0 in the presets */
} tpar_gpt2_config_t;

/* Presets: "tiny" (make run's default, byte vocabulary) and "gpt2-124m" (GPT-2 small;
 * vocab_size 50257). TPAR_ERR_INVALID_ARG naming the known presets for another name. */
TPAR_API tpar_status tpar_gpt2_preset(const char *name, tpar_gpt2_config_t *cfg, tpar_err_t *err);
#define TPAR_GPT2_PRESETS "tiny, gpt2-124m"

/* Every check that does not need memory: sizes >= 1, C % NH == 0, NH % tp == 0, 4C % tp. */
TPAR_API tpar_status tpar_gpt2_check(const tpar_gpt2_config_t *cfg, int tp, tpar_err_t *err);

/* Parameters (global counts, tied weight counted once; padding excluded). */
TPAR_API size_t tpar_gpt2_num_params(const tpar_gpt2_config_t *cfg);
/* Model FLOPs of forward + backward per token at sequence length T (6 P + 12 L C T,
 * the position table excluded from P), for MFU. */
TPAR_API double tpar_gpt2_flops_per_token(const tpar_gpt2_config_t *cfg, int T);

/* One tensor of the model. */
typedef struct {
    char name[64];         /* Hugging Face GPT-2 name, e.g. "h.0.attn.c_attn.weight" */
    int rows, cols;        /* full in-memory shape, [out, in] for weights; a vector is (n, 1) */
    int file_rows;         /* rows that exist in the file (vocab_size for wte, else rows) */
    int ndim;              /* 1 or 2 in the file */
    int transposed;        /* stored [in, out] in the file (HF Conv1D): file shape (cols, rows) */
    tpar_shard_kind kind;  /* how the TP group splits it */
    int decay;             /* 1: weight decay applies (matrices), 0: norms and biases */
    size_t offset, numel;  /* this rank's shard: floats [offset, offset + numel) of the flat buffers */
} tpar_gpt2_tensor_t;

typedef struct {
    tpar_gpt2_config_t cfg;
    tpar_tp_t tp;          /* the TP group (layers point here: the model never moves) */
    int sp;                /* 1: sequence parallelism (tp > 1 only) */
    int Vp;                /* padded vocabulary */
    int B, T;              /* the largest batch and sequence the activations were sized for */
    size_t num_params;     /* floats in this rank's flat buffers */
    float *params;         /* (num_params) */
    float *grads;          /* (num_params) */
    int n_tensors;
    tpar_gpt2_tensor_t *tensors;
    size_t rest_numel;     /* tensors before block 0 (wte, wpe, ln_f): a prefix of the buffers */
    /* layers */
    tpar_vocab_embedding_t emb;
    tpar_block_t *blocks;  /* (L) */
    tpar_col_linear_t head; /* logits = ln_f(x) wte^T, weights tied to emb */
    tpar_vocab_xent_t xent;
    /* activations */
    float *acts;
    float *resid;          /* (L+1, Nl, C) input of each block, then the output of the last */
    float *lnf;            /* (Nl, C) */
    float *lnf_mean, *lnf_rstd; /* (Nl) */
    float *logits;         /* (N, Vp/tp) vocab shard; holds dlogits after backward */
    float *dres[2];        /* (Nl, C) each */
    float *sp_grads;       /* SP only: (T + 2, C) partial gradients of wpe rows 0..T-1, ln_f w, b */
    uint64_t dropout_seed; /* of the last forward */
    int B_last, T_last;    /* shape of the last forward */
    tpar_progress_t progress; /* tpar_gpt2_save / _load report their bytes here (zero: not at all) */
    int n_logits;          /* rows of m->logits from the last forward: B*T, or the rows selected */
    int rows_selected;     /* 1: the last forward was tpar_gpt2_forward_rows (no backward may follow) */
} tpar_gpt2_t;

/* Builds the model for this rank: tp_comm is the TP group (NULL: TP of one); activations
 * for up to B sequences of up to T <= n_positions tokens. sequence_parallel (0 or 1) turns
 * SP on (ignored at tp = 1); it needs B*T, and the B*T of every forward, divisible by tp
 * (TPAR_ERR_SHAPE otherwise). Results equal those without SP up to float rounding.
 * Parameters are zero until tpar_gpt2_init or tpar_gpt2_load. */
TPAR_API tpar_status tpar_gpt2_new(const tpar_gpt2_config_t *cfg, tpar_comm_t *tp_comm, int B, int T, int sequence_parallel,
                                   tpar_gpt2_t **out, tpar_err_t *err);
TPAR_API void tpar_gpt2_free(tpar_gpt2_t *m); /* NULL is fine */

/* GPT-2 initialisation: N(0, 0.02) matrices and embeddings, residual projections scaled by
 * 1/sqrt(2L), zero biases, unit LayerNorm weights; layout-independent (see above). */
TPAR_API void tpar_gpt2_init(tpar_gpt2_t *m, uint64_t seed);

/* Forward of B sequences of T tokens (inputs (B, T)). Logits land in m->logits (N, Vp/tp).
 * With targets (B, T) the mean cross-entropy goes to *loss (every target counts).
 * dropout_seed picks the dropout masks (unused when dropout is 0): use a different one per
 * micro-batch and DP rank; the same on every rank of a TP group. Collective over the TP group. */
TPAR_API tpar_status tpar_gpt2_forward(tpar_gpt2_t *m, const int *inputs, const int *targets, int B, int T,
                                       uint64_t dropout_seed, float *loss, tpar_err_t *err);

/* The forward for sampling: the same trunk (embedding, blocks, ln_f), then the head for the n
 * selected rows only (rows[i] = b*T + t, 0 <= n <= B*T, repeats allowed): m->logits (n, Vp/tp),
 * row i for rows[i]; n = 0 stops before the head. At GPT-2's vocabulary the head is the largest
 * matmul of a forward; generation samples from the last row alone. Leaves the activations (the
 * attention's QKV among them) as tpar_gpt2_forward does, but no backward may follow (it is refused). Not under
 * sequence parallelism (TPAR_ERR_INVALID_ARG). Collective over the TP group. */
TPAR_API tpar_status tpar_gpt2_forward_rows(tpar_gpt2_t *m, const int *inputs, int B, int T, uint64_t dropout_seed,
                                            const int *rows, int n, tpar_err_t *err);

/* Called during backward as soon as floats [offset, offset + count) of m->grads are final for
 * this micro-batch (each block, last to first, then the prefix wte/wpe/ln_f): the place to start
 * a non-blocking data-parallel reduction of that bucket. */
typedef tpar_status (*tpar_grads_ready_fn)(void *ctx, size_t offset, size_t count, tpar_err_t *err);

/* Backward of the last forward (which had targets), scaled by dloss (1/accum for gradient
 * accumulation). Gradients ACCUMULATE into m->grads. ready may be NULL. */
TPAR_API tpar_status tpar_gpt2_backward(tpar_gpt2_t *m, const int *inputs, const int *targets, float dloss,
                                        tpar_grads_ready_fn ready, void *ctx, tpar_err_t *err);
TPAR_API void tpar_gpt2_zero_grad(tpar_gpt2_t *m);

/* Full-vocabulary logits (V) of row `row` of m->logits from the last forward (b*T + t after
 * tpar_gpt2_forward, the i-th selected row after tpar_gpt2_forward_rows), gathered over the TP
 * group into out. Collective over the TP group. */
TPAR_API tpar_status tpar_gpt2_logits_row(tpar_gpt2_t *m, int row, float *out, tpar_err_t *err);

/* Sum of squares of this rank's gradients, replicated tensors counted only on TP rank 0, so
 * that the sum over the TP group is the global squared norm. */
TPAR_API double tpar_gpt2_grad_sq_local(const tpar_gpt2_t *m);

/* ---- checkpoints (safetensors, docs/TRAINING.md) ---------------------------------------
 * A file holds nbuf flat buffers of the model's layout (weights: {params} with suffix "";
 * optimizer: {m, v} with ".exp_avg", ".exp_avg_sq"), each tensor under its global name plus
 * the buffer's suffix, and the config in the metadata.
 * Every rank of `comm` (the world) calls save; ranks with writer = 1 (one full TP group,
 * e.g. DP rank 0) write their own slices, replicated tensors by TP rank 0 only; world rank 0
 * must be a writer (it creates the file). Collective: if any rank fails, all return an error. */
TPAR_API tpar_status tpar_gpt2_save(const tpar_gpt2_t *m, int nbuf, const float *const *bufs, const char *const *suffixes,
                                    const char *path, tpar_comm_t *comm, int writer, tpar_err_t *err);
/* Reads this rank's shards of every tensor (whatever TP layout saved them) into bufs. Checks
 * the config metadata and every tensor's shape: TPAR_ERR_SHAPE / CORRUPT naming the tensor and
 * what was expected. Local: no communication. */
TPAR_API tpar_status tpar_gpt2_load(tpar_gpt2_t *m, int nbuf, float *const *bufs, const char *const *suffixes,
                                    const char *path, tpar_err_t *err);
/* Reads the config from a weights file's metadata (for loading without a preset). */
TPAR_API tpar_status tpar_gpt2_read_config(const char *path, tpar_gpt2_config_t *cfg, tpar_err_t *err);

#endif /* TPAR_MODEL_H */
