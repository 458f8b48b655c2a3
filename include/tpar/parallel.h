/* tpar parallel: tensor-parallel (TP) and sequence-parallel (SP) layers, Megatron style.
 *
 * Every rank of a TP group holds a shard of each weight and runs the same layer calls;
 * the collectives of include/tpar/comm.h glue the shards so that forward and backward
 * are, up to float rounding, those of one rank holding everything.
 *
 * Conventions (they hold for every function below):
 * - Activations are row-major (N, C) with N = B*T tokens (sequence-major inside a batch
 *   row, as llm.c). `N` arguments are always the FULL token count, the same on every rank.
 * - Sequence parallelism splits the flattened token dimension into tp contiguous chunks:
 *   rank r owns tokens [r*N/tp, (r+1)*N/tp). Token-wise ops (layernorm, dropout, residual)
 *   do not care which tokens a rank holds, and all-gather / reduce-scatter along the
 *   sequence need no rearrangement. N must be divisible by tp under SP.
 * - Weights are [out_features, in_features] (see kernels.h). A column-parallel weight
 *   shard is a block of rows (OC/tp, C); a row-parallel one a block of columns, stored
 *   dense as (OC, C/tp). The fused QKV weight (3C, C) = [Q; K; V] is split per third, so
 *   a rank holds the rows of its heads in each of Q, K, V: (3C/tp, C) = [Q_r; K_r; V_r].
 *   tpar_shard_extract / tpar_shard_place are the one place that maps full <-> shard.
 * - Layers never own parameters: the caller points w, b, dw, db at its flat buffers
 *   (so a tied weight is just the same pointer in two layers). Layers that hold
 *   intermediate activations (MLP, attention, block) allocate them at init for at most
 *   max_tokens tokens; their backward uses what the last forward saved and leaves it intact.
 * - Parameter gradients ACCUMULATE (+=, like the kernels). Input gradients dx are
 *   WRITTEN (=): they are the output of a collective.
 * - Every function that communicates returns a tpar_status and fills err; a failed
 *   collective's message is the communicator's (it names the missing rank).
 * - Shapes that do not divide by tp are rejected at init with a message naming the
 *   dimension; the vocabulary is padded instead (tpar_vocab_padded) and the padding masked. */
#ifndef TPAR_PARALLEL_H
#define TPAR_PARALLEL_H

#include <stddef.h>
#include <stdint.h>

#include "tpar/comm.h"
#include "tpar/core.h"

/* ---- the TP group -------------------------------------------------------------------- */

typedef struct {
    tpar_comm_t *comm; /* the TP group; NULL: a group of one */
    int size;          /* tp */
    int rank;          /* this rank in the TP group */
    int sp;            /* 1: sequence parallelism on */
} tpar_tp_t;

/* comm may be NULL (tp = 1). sequence_parallel is 0 or 1. */
TPAR_API tpar_status tpar_tp_init(tpar_tp_t *tp, tpar_comm_t *comm, int sequence_parallel, tpar_err_t *err);

/* ---- shard assignment ---------------------------------------------------------------- */

/* local = dim / tp; TPAR_ERR_SHAPE naming `what` when dim is not a positive multiple of tp. */
TPAR_API tpar_status tpar_shard_size(const char *what, int dim, int tp, int *local, tpar_err_t *err);

/* The vocabulary padded to a multiple of multiple*tp (multiple <= 0: 128, Megatron's
 * make-vocab-size-divisible-by). Padding rows of the embedding are never looked up and
 * padding logits never win the softmax nor get gradient. -1 on overflow or V < 1. */
#define TPAR_VOCAB_MULTIPLE 128
TPAR_API int tpar_vocab_padded(int V, int tp, int multiple);

typedef enum {
    TPAR_SHARD_REPLICATED = 0, /* every rank holds the whole tensor (layernorm, row-parallel bias) */
    TPAR_SHARD_ROWS,           /* rows split: column-parallel weight and bias, embedding table */
    TPAR_SHARD_COLS,           /* columns split: row-parallel weight */
    TPAR_SHARD_QKV,            /* (3C, cols) split per third by rows: fused QKV weight and bias */
    TPAR_SHARD_KIND_COUNT
} tpar_shard_kind;

/* The rectangles of the full (rows, cols) tensor that `rank` owns, in the order they lie
 * one after another in its dense shard: one, or three for QKV (a slice each of Q, K, V).
 * A loader reads exactly these (tpar_slice_2d(row0, rows, col0, cols) of io.h). */
typedef struct {
    int row0, rows, col0, cols;
} tpar_shard_rect_t;
TPAR_API tpar_status tpar_shard_rects(tpar_shard_kind kind, int rows, int cols, int tp, int rank,
                                      tpar_shard_rect_t rect[3], int *nrect, tpar_err_t *err);

/* Copies rank `rank`'s shard of the full (rows, cols) tensor into local (dense), or back.
 * A bias is (rows, 1). Errors: a dimension that does not divide, a bad kind or rank. */
TPAR_API tpar_status tpar_shard_extract(tpar_shard_kind kind, float *local, const float *full, int rows, int cols,
                                        int tp, int rank, tpar_err_t *err);
TPAR_API tpar_status tpar_shard_place(tpar_shard_kind kind, float *full, const float *local, int rows, int cols,
                                      int tp, int rank, tpar_err_t *err);

/* ---- layouts ----------------------------------------------------------------------------
 * What a rank holds of a logical (N, C) activation. Each layer declares the layout of its
 * input and output; tpar_layout_connect rejects a composition that disagrees, when the
 * model is built. */
typedef enum {
    TPAR_LAYOUT_REPLICATED = 0, /* (N, C) identical on every rank */
    TPAR_LAYOUT_SPLIT_LAST,     /* (N, C/tp): rank r holds columns [r*C/tp, (r+1)*C/tp) */
    TPAR_LAYOUT_SPLIT_SEQ,      /* (N/tp, C): rank r holds tokens [r*N/tp, (r+1)*N/tp) */
    TPAR_LAYOUT_PARTIAL_SUM,    /* (N, C) on every rank; the tensor is their sum */
    TPAR_LAYOUT_COUNT
} tpar_layout;

typedef struct {
    tpar_layout layout;
    int features; /* C of the logical (N, C) tensor */
} tpar_act_spec_t;

TPAR_API const char *tpar_layout_name(tpar_layout l); /* "replicated", "split-last", ... */

/* OK when `from`'s output can feed `to`'s input (same layout and width); otherwise
 * TPAR_ERR_SHAPE naming both layers, layouts and widths. */
TPAR_API tpar_status tpar_layout_connect(const char *from, tpar_act_spec_t out, const char *to, tpar_act_spec_t in,
                                         tpar_err_t *err);

/* ---- conjugate mappings -----------------------------------------------------------------
 *   mapping               forward                   backward
 *   copy-to-TP            identity                  tpar_map_allreduce
 *   reduce-from-TP        tpar_map_allreduce        identity
 *   scatter-last          tpar_map_split_last       tpar_map_gather_last
 *   gather-last           tpar_map_gather_last      tpar_map_split_last
 *   gather-seq (SP)       tpar_map_gather_seq       tpar_map_reduce_scatter_seq
 *   reduce-scatter-seq    tpar_map_reduce_scatter_seq  tpar_map_gather_seq
 * With tp = 1 each is a copy or nothing. */

/* x (n) summed over the TP group, in place. */
TPAR_API tpar_status tpar_map_allreduce(const tpar_tp_t *tp, float *x, size_t n, tpar_err_t *err);
/* y (N, Cl*tp) = the ranks' x (N, Cl) side by side. work: N*Cl*tp floats. */
TPAR_API tpar_status tpar_map_gather_last(const tpar_tp_t *tp, float *y, const float *x, int N, int Cl, float *work,
                                          tpar_err_t *err);
/* y (N, Cl) = this rank's columns of x (N, Cl*tp). No communication. */
TPAR_API void tpar_map_split_last(const tpar_tp_t *tp, float *y, const float *x, int N, int Cl);
/* y (Nl*tp, C) = the ranks' x (Nl, C) one after another. */
TPAR_API tpar_status tpar_map_gather_seq(const tpar_tp_t *tp, float *y, const float *x, int Nl, int C,
                                         tpar_err_t *err);
/* y (Nl, C) = this rank's rows of the sum over ranks of x (Nl*tp, C). */
TPAR_API tpar_status tpar_map_reduce_scatter_seq(const tpar_tp_t *tp, float *y, const float *x, int Nl, int C,
                                                 tpar_err_t *err);

/* Debug check: OK when x (n) is bit-identical on every rank of the group, else
 * TPAR_ERR_MISMATCH naming `what` and the first rank that differs from rank 0. */
TPAR_API tpar_status tpar_check_replicated(const tpar_tp_t *tp, const char *what, const float *x, size_t n,
                                           tpar_err_t *err);

/* ---- linear layers ---------------------------------------------------------------------- */

enum {
    TPAR_LINEAR_GATHER_OUTPUT = 1 << 0,     /* column: output replicated (N, OC), not split-last */
    TPAR_LINEAR_SKIP_BIAS_ADD = 1 << 1,     /* the caller adds b (fused) and computes db */
    TPAR_LINEAR_INPUT_IS_PARALLEL = 1 << 2, /* row: input already split-last (N, C/tp) */
};

/* Column-parallel: Y = X W^T + b with W split by output features.
 * input: replicated (N, C), or split-seq (N/tp, C) under SP (all-gathered before the GEMM).
 * output: split-last (N, OC/tp), or replicated (N, OC) with GATHER_OUTPUT.
 * backward: dx is all-reduced (reduce-scattered under SP), started non-blocking and
 * overlapped with the weight-gradient GEMM. */
typedef struct {
    const tpar_tp_t *tp;
    int C, OC, OCl;       /* in, out, out per rank */
    int flags;
    int max_tokens;
    tpar_act_spec_t in, out;
    const float *w;       /* (OC/tp, C) set by the caller; may be another layer's (tied) */
    const float *b;       /* (OC/tp) or NULL: no bias */
    float *dw;            /* (OC/tp, C) */
    float *db;            /* (OC/tp) or NULL */
    float *ws;            /* workspace, owned */
} tpar_col_linear_t;

TPAR_API tpar_status tpar_col_linear_init(tpar_col_linear_t *l, const tpar_tp_t *tp, int C, int OC, int flags,
                                          int max_tokens, tpar_err_t *err);
TPAR_API void tpar_col_linear_free(tpar_col_linear_t *l);
TPAR_API tpar_status tpar_col_linear_forward(tpar_col_linear_t *l, float *y, const float *x, int N, tpar_err_t *err);
/* x is the forward input; dy has the output's layout; dx the input's. */
TPAR_API tpar_status tpar_col_linear_backward(tpar_col_linear_t *l, float *dx, const float *dy, const float *x, int N,
                                              tpar_err_t *err);

/* Row-parallel: Y = X W^T + b with W split by input features.
 * input: split-last (N, C/tp) with INPUT_IS_PARALLEL, else replicated (N, C).
 * output: replicated (N, OC) after an all-reduce, or split-seq (N/tp, OC) after a
 * reduce-scatter under SP; the bias (replicated) is added once, after the reduction. */
typedef struct {
    const tpar_tp_t *tp;
    int C, Cl, OC;        /* in, in per rank, out */
    int flags;
    int max_tokens;
    tpar_act_spec_t in, out;
    const float *w;       /* (OC, C/tp) */
    const float *b;       /* (OC) replicated, or NULL */
    float *dw;            /* (OC, C/tp) */
    float *db;            /* (OC) or NULL */
    float *ws;            /* workspace, owned */
    float *pad;           /* scratch lent by the owner for backward, or NULL; see below */
} tpar_row_linear_t;

TPAR_API tpar_status tpar_row_linear_init(tpar_row_linear_t *l, const tpar_tp_t *tp, int C, int OC, int flags,
                                          int max_tokens, tpar_err_t *err);
TPAR_API void tpar_row_linear_free(tpar_row_linear_t *l);
TPAR_API tpar_status tpar_row_linear_forward(tpar_row_linear_t *l, float *y, const float *x, int N, tpar_err_t *err);
TPAR_API tpar_status tpar_row_linear_backward(tpar_row_linear_t *l, float *dx, const float *dy, const float *x, int N,
                                              tpar_err_t *err);
/* Floats of the scratch `pad` that backward uses for N tokens: 0 when C/tp is narrow. With
 * wide local rows (C/tp >= 1024, the MLP's proj) the backward GEMMs read their right
 * operands (the weight, the input) from copies whose row stride is padded by 16 floats:
 * oneDNN's matmul reads a (K, N) operand with a 12 KiB row stride (4 KiB aliasing in L1)
 * at 40-50% of its rate, and the copies cost a few percent of the GEMMs (docs/PARALLEL.md).
 * Without `pad` (NULL) backward runs the plain GEMMs: the same result within rounding. */
TPAR_API size_t tpar_row_linear_pad_floats(const tpar_row_linear_t *l, int N);

/* ---- vocab-parallel embedding and cross-entropy ----------------------------------------- */

/* Rank r owns vocabulary entries [r*Vp/tp, (r+1)*Vp/tp) of the padded vocabulary Vp.
 * Forward: local lookup with ids outside the shard giving zeros, then all-reduce
 * (output replicated (N, C)) or reduce-scatter (split-seq (N/tp, C)). Ids outside [0, V)
 * are TPAR_ERR_INVALID_ARG on every rank (ids are replicated, so no rank hangs). */
typedef struct {
    const tpar_tp_t *tp;
    int V, Vp, Vl, v0, C; /* real vocab, padded, per rank, first id of this rank, width */
    int max_tokens;
    tpar_act_spec_t out;
    const float *w;       /* (Vp/tp, C) */
    float *dw;            /* (Vp/tp, C) */
    float *ws;            /* workspace, owned */
} tpar_vocab_embedding_t;

TPAR_API tpar_status tpar_vocab_embedding_init(tpar_vocab_embedding_t *e, const tpar_tp_t *tp, int V, int Vp, int C,
                                               int max_tokens, tpar_err_t *err);
TPAR_API void tpar_vocab_embedding_free(tpar_vocab_embedding_t *e);
TPAR_API tpar_status tpar_vocab_embedding_forward(tpar_vocab_embedding_t *e, float *out, const int *ids, int N,
                                                  tpar_err_t *err);
TPAR_API tpar_status tpar_vocab_embedding_backward(tpar_vocab_embedding_t *e, const float *dout, const int *ids, int N,
                                                   tpar_err_t *err);

/* Cross-entropy on vocab-sharded logits (N, Vp/tp), float32, with two all-reduces:
 * the row max, then the row sum-exp fused with the target logit. Rows whose target is
 * ignore_index count for nothing; padding columns (>= V) are masked out. The mean is over
 * the counted rows. The backward is purely local: it uses the row statistics saved by
 * the last forward. Targets are replicated (N). */
typedef struct {
    const tpar_tp_t *tp;
    int V, Vp, Vl, v0;
    int ignore_index;
    int max_tokens;
    tpar_act_spec_t in;   /* split-last (N, Vp) */
    int n_valid;          /* counted rows of the last forward */
    float *lse;           /* (max_tokens) log-sum-exp of each row, from the last forward */
    float *ws;            /* workspace (3 * max_tokens), owned */
} tpar_vocab_xent_t;

TPAR_API tpar_status tpar_vocab_xent_init(tpar_vocab_xent_t *x, const tpar_tp_t *tp, int V, int Vp, int ignore_index,
                                          int max_tokens, tpar_err_t *err);
TPAR_API void tpar_vocab_xent_free(tpar_vocab_xent_t *x);
/* *loss = mean over counted rows; losses (N) may be NULL (0 for ignored rows). */
TPAR_API tpar_status tpar_vocab_xent_forward(tpar_vocab_xent_t *x, float *loss, float *losses, const float *logits,
                                             const int *targets, int N, tpar_err_t *err);
/* dlogits (N, Vp/tp) = dloss * (softmax - onehot) / n_valid; may alias logits. Writes (=). */
TPAR_API void tpar_vocab_xent_backward(const tpar_vocab_xent_t *x, float *dlogits, const float *logits,
                                       const int *targets, int N, float dloss);

/* ---- parallel MLP and attention --------------------------------------------------------- */

/* fc (column-parallel, C -> H, bias fused with GELU) then proj (row-parallel, H -> C).
 * input: replicated (N, C) or split-seq under SP; output: partial-free, replicated (N, C)
 * or split-seq. proj's bias is added here (ADD_BIAS) or left to the caller. */
typedef struct {
    const tpar_tp_t *tp;
    int C, H, Hl;
    int max_tokens;
    tpar_act_spec_t in, out;
    tpar_col_linear_t fc;
    tpar_row_linear_t proj;
    float *pre;           /* (N, H/tp) fc output before bias and GELU */
    float *act;           /* (N, H/tp) GELU output */
    float *dact;          /* (N, H/tp) */
    float *dpre;          /* (N, H/tp) */
} tpar_tp_mlp_t;

/* proj_flags: 0, or TPAR_LINEAR_SKIP_BIAS_ADD when the caller fuses proj's bias. */
TPAR_API tpar_status tpar_tp_mlp_init(tpar_tp_mlp_t *m, const tpar_tp_t *tp, int C, int H, int proj_flags, int max_tokens,
                                   tpar_err_t *err);
TPAR_API void tpar_tp_mlp_free(tpar_tp_mlp_t *m);
TPAR_API tpar_status tpar_tp_mlp_forward(tpar_tp_mlp_t *m, float *y, const float *x, int N, tpar_err_t *err);
TPAR_API tpar_status tpar_tp_mlp_backward(tpar_tp_mlp_t *m, float *dx, const float *dy, const float *x, int N,
                                       tpar_err_t *err);

/* Causal self-attention: fused QKV column-parallel (C -> 3C, heads split: NH/tp per rank),
 * local attention over the rank's heads, output projection row-parallel (C -> C). */
typedef struct {
    const tpar_tp_t *tp;
    int C, NH, NHl, Cl;
    int B, T;             /* maximum batch and sequence length */
    tpar_act_spec_t in, out;
    tpar_col_linear_t qkv;
    tpar_row_linear_t proj;
    float *qkvo;          /* (B, T, 3C/tp) */
    float *att;           /* (B, T, C/tp) attention output */
    float *lse;           /* (B, NH/tp, T) */
    float *datt;          /* (B, T, C/tp) */
    float *dqkv;          /* (B, T, 3C/tp) */
    float *scratch;       /* attention scratch */
} tpar_tp_attention_t;

TPAR_API tpar_status tpar_tp_attention_init(tpar_tp_attention_t *a, const tpar_tp_t *tp, int C, int NH, int proj_flags, int B,
                                         int T, tpar_err_t *err);
TPAR_API void tpar_tp_attention_free(tpar_tp_attention_t *a);
TPAR_API tpar_status tpar_tp_attention_forward(tpar_tp_attention_t *a, float *y, const float *x, int B, int T, tpar_err_t *err);
TPAR_API tpar_status tpar_tp_attention_backward(tpar_tp_attention_t *a, float *dx, const float *dy, const float *x, int B,
                                             int T, tpar_err_t *err);

/* ---- transformer block (GPT-2, pre-layernorm) --------------------------------------------
 *   h   = x + dropout(attn(ln1(x)) + b_attnproj)
 *   out = h + dropout(mlp(ln2(h)) + b_fcproj)
 * Residual stream: replicated (N, C), or split-seq (N/tp, C) under SP. One all-reduce
 * each for attention and MLP forward and backward without SP; an all-gather and a
 * reduce-scatter each with SP (plus one small all-reduce of the SP-partial gradients of
 * the replicated parameters in backward). */
enum {
    TPAR_BLOCK_LN1W = 0, TPAR_BLOCK_LN1B, TPAR_BLOCK_QKVW, TPAR_BLOCK_QKVB, TPAR_BLOCK_ATTPROJW,
    TPAR_BLOCK_ATTPROJB, TPAR_BLOCK_LN2W, TPAR_BLOCK_LN2B, TPAR_BLOCK_FCW, TPAR_BLOCK_FCB,
    TPAR_BLOCK_FCPROJW, TPAR_BLOCK_FCPROJB, TPAR_BLOCK_NPARAMS
};

/* The shape of parameter i in full (rows, cols) and how it is sharded. */
typedef struct {
    const char *name;     /* "ln1w", "qkvw", ... */
    int rows, cols;       /* full shape; a vector is (n, 1) */
    tpar_shard_kind kind;
} tpar_param_info_t;

TPAR_API void tpar_block_param_info(int C, int H, tpar_param_info_t info[TPAR_BLOCK_NPARAMS]);

typedef struct {
    const tpar_tp_t *tp;
    int C, NH, H;
    int B, T;
    float dropout;        /* residual dropout probability; 0: off */
    uint64_t seed;        /* dropout stream */
    tpar_act_spec_t in, out;
    float *params[TPAR_BLOCK_NPARAMS]; /* this rank's shards, set by the caller */
    float *grads[TPAR_BLOCK_NPARAMS];
    size_t local_numel[TPAR_BLOCK_NPARAMS];
    tpar_tp_attention_t attn;
    tpar_tp_mlp_t mlp;
    float *acts;          /* all saved activations, one allocation */
    float *ln1, *ln1_mean, *ln1_rstd, *att_y, *h, *ln2, *ln2_mean, *ln2_rstd, *mlp_y;
    float *dtmp, *dln, *dh, *sp_grads;
} tpar_block_t;

/* Checks every divisibility (heads, features, hidden) and allocates activations for
 * B*T tokens; `offset` of the dropout counters is given per call. */
TPAR_API tpar_status tpar_block_init(tpar_block_t *b, const tpar_tp_t *tp, int C, int NH, int H, int B, int T,
                                     float dropout, uint64_t seed, tpar_err_t *err);
/* Points params/grads at consecutive slices of flat buffers of tpar_block_numel floats. */
TPAR_API size_t tpar_block_numel(const tpar_block_t *b);
TPAR_API void tpar_block_carve(tpar_block_t *b, float *params, float *grads);
TPAR_API void tpar_block_free(tpar_block_t *b);
/* out and x: (N, C), or (N/tp, C) under SP. offset: dropout counter base of this call. */
TPAR_API tpar_status tpar_block_forward(tpar_block_t *b, float *out, const float *x, int B, int T, uint64_t offset,
                                        tpar_err_t *err);
/* dx = d loss / d x given dout; parameter gradients accumulate. */
TPAR_API tpar_status tpar_block_backward(tpar_block_t *b, float *dx, const float *dout, const float *x, int B, int T,
                                         uint64_t offset, tpar_err_t *err);
/* Debug check (collective): every replicated parameter (layernorms, row-parallel biases)
 * is bit-identical across the TP group; TPAR_ERR_MISMATCH names the first that is not. */
TPAR_API tpar_status tpar_block_check_replicated(const tpar_block_t *b, tpar_err_t *err);

#endif /* TPAR_PARALLEL_H */
