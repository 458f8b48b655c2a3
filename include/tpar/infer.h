/* tpar infer: tensor-parallel generation with a KV cache split by heads.
 *
 * Every rank of a TP group holds its shards of a tpar_gpt2_t (include/tpar/model.h) and the
 * keys and values of ITS heads only: the cache is (L, NH/tp, T_max, hd) for K and for V on
 * each rank, so cache memory per rank falls as 1/tp, like the weights.
 *
 * Prefill runs the model's own forward over the prompt with the head for the last row only
 * (tpar_gpt2_forward_rows: the one row sampled) and copies each layer's K and V out of the
 * attention's QKV activation; decode then feeds one token at a time through the same layers'
 * weights (column-parallel QKV, local attention of the new query against the cache,
 * row-parallel projection and MLP, one all-reduce each), without recomputing the sequence.
 * Its matmuls go through the GEMM seam, which routes one row to the small-M kernel
 * (src/kernels/gemv.c): it reads each weight once per token at the memory's read bandwidth: the floor of a decode step (docs/INFERENCE.md).
 * Logits are vocab-parallel; they are all-gathered (V floats) so that every rank samples the
 * same token from the same full row with the same counter-based RNG: no broadcast needed, and
 * the result does not depend on the TP size beyond float rounding.
 *
 * Context: the cache holds T_max <= n_positions tokens. When it is full and another token is
 * needed, tpar_infer_generate slides the window: it keeps the last T_max/2 tokens, prefills
 * them again (positions restart at 0, as for a fresh prompt of that text) and goes on. A
 * prompt longer than T_max is an error.
 *
 * All calls that compute are collective over the model's TP group (every rank calls them
 * with the same arguments). */
#ifndef TPAR_INFER_H
#define TPAR_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "tpar/core.h"
#include "tpar/io.h"
#include "tpar/model.h"

typedef struct {
    tpar_gpt2_t *m;  /* the model (not owned); dropout must be 0 */
    int T_max;       /* positions the cache holds (<= n_positions and <= the model's T) */
    int pos;         /* tokens in the cache now */
    int L, C, NHl, hd, Cl, Hl, V, Vl;
    float *k, *v;    /* (L, NH/tp, T_max, hd) each: this rank's heads */
    float *x;        /* (C) residual stream of the token being decoded */
    float *h;        /* (C) after attention */
    float *ln;       /* (C) layernorm output */
    float *y;        /* (C) attention or MLP output before its bias */
    float *qkv;      /* (3C/tp) = [q | k | v] of this rank's heads */
    float *att;      /* (C/tp) attention output of this rank's heads */
    float *fc;       /* (4C/tp) MLP hidden before bias and GELU */
    float *gelu;     /* (4C/tp) after them */
    float *scores;   /* (NH/tp, T_max) attention scores of each local head */
    float *stats;    /* (2) layernorm mean, rstd */
    float *logits;   /* (Vp/tp) this rank's vocabulary shard */
    float *gathered; /* (Vp) */
} tpar_infer_t;

/* Sets up the cache for up to T_max tokens on model m (T_max <= m->T). */
TPAR_API tpar_status tpar_infer_init(tpar_infer_t *s, tpar_gpt2_t *m, int T_max, tpar_err_t *err);
TPAR_API void tpar_infer_free(tpar_infer_t *s); /* NULL and a zeroed struct are fine */

/* Empties the cache and runs the n tokens (1 <= n <= T_max) at positions 0 .. n-1.
 * logits (V, may be NULL): the full-vocabulary logits after the last token. */
TPAR_API tpar_status tpar_infer_prefill(tpar_infer_t *s, const int *tokens, int n, float *logits, tpar_err_t *err);

/* Runs one token at position s->pos (< T_max) using the cache, then appends its K and V.
 * logits (V, may be NULL): the full-vocabulary logits after it. */
TPAR_API tpar_status tpar_infer_decode(tpar_infer_t *s, int token, float *logits, tpar_err_t *err);

/* ---- sampling ---------------------------------------------------------------------------- */

typedef struct {
    double temperature; /* 0: greedy (argmax, lowest id on ties) */
    int top_k;          /* 0: the whole vocabulary; else only the k largest logits */
    uint64_t seed;      /* the i-th sampled token uses counter i of this stream */
} tpar_sampler_t;

/* The token drawn from logits (V) for the i-th generated token. Deterministic: the same
 * logits, settings and i give the same token on every rank. work: V floats. */
TPAR_API int tpar_sample(const tpar_sampler_t *sp, const float *logits, int V, uint64_t i, float *work);

/* TPAR_ERR_INVALID_ARG with a message for settings out of range (temperature < 0 or not
 * finite, top_k < 0). */
TPAR_API tpar_status tpar_sampler_check(const tpar_sampler_t *sp, tpar_err_t *err);

/* ---- generation ---------------------------------------------------------------------------- */

/* Called with each token as soon as it is sampled (on every rank; the caller decides who
 * prints). A non-OK return stops generation with that status. */
typedef tpar_status (*tpar_token_fn)(void *ctx, int token, tpar_err_t *err);

typedef struct {
    int n_prompt, n_generated;
    int n_slides;      /* times the context window slid */
    double ttft_s;     /* prefill + first sample: time to first token */
    double decode_s;   /* from the first token to the last */
    double tokens_per_s; /* (n_generated - 1) / decode_s: the decode rate (0 if one token) */
} tpar_generate_stats_t;

/* Prefills the prompt (1 <= n <= s->T_max tokens) then produces k >= 1 tokens into out (k),
 * sliding the window when the cache is full (see the top of this file). on_token may be NULL. */
TPAR_API tpar_status tpar_infer_generate(tpar_infer_t *s, const int *prompt, int n, int k, const tpar_sampler_t *sp,
                                         int *out, tpar_token_fn on_token, void *ctx, tpar_generate_stats_t *stats,
                                         tpar_err_t *err);

/* ---- models for inference -------------------------------------------------------------- */

/* Where the weights come from: a checkpoint (a `tpar train --save-dir` directory, whose newest
 * valid step is used; a step directory; or a model.safetensors file), or else a preset with
 * random weights from init_seed (for benchmarks). */
typedef struct {
    const char *ckpt;    /* or NULL */
    const char *preset;  /* used when ckpt is NULL */
    uint64_t init_seed;
    tpar_progress_t progress; /* the checkpoint's loading reports here (zero: nowhere) */
} tpar_model_source_t;

/* Resolves the source: the weights file (path, "" for a preset) and the config, checked
 * (tpar_gpt2_read_config: sane sizes, and the file holds every tensor they imply). A missing or
 * invalid checkpoint gives TPAR_ERR_IO / TPAR_ERR_CORRUPT saying which and a hint. full: also
 * verify checksums (reads every file of the checkpoint once). found (may be NULL) receives the
 * checkpoint used when the source is a directory (its step, and the newer ones skipped as
 * invalid with why, for a warning), found->found = 0 otherwise. Local: no communication. */
TPAR_API tpar_status tpar_infer_resolve(const tpar_model_source_t *src, int full, char *path, size_t cap,
                                        tpar_gpt2_config_t *cfg, tpar_ckpt_found_t *found, tpar_err_t *err);

/* Builds this rank's shards of the model for one sequence of up to T tokens and fills the
 * weights (tpar_gpt2_load with resharding, or tpar_gpt2_init); found as for tpar_infer_resolve. Collective over tp_comm only in
 * that every rank must call it; the loading itself is local. */
TPAR_API tpar_status tpar_infer_load_model(const tpar_model_source_t *src, tpar_comm_t *tp_comm, int T, tpar_gpt2_t **out,
                                           tpar_ckpt_found_t *found, tpar_err_t *err);

#endif /* TPAR_INFER_H */
