/* tpar kernels: the CPU compute of one rank, float32, each forward with its backward.
 *
 * Style of karpathy/llm.c train_gpt2.c: flat float buffers, explicit sizes, a shape
 * comment on every tensor argument. N is a number of rows (tokens, B*T), C a feature
 * width; inside tensor-parallel layers these are the rank's local sizes (C/tp ...).
 *
 * Conventions (read once, they hold for every function below):
 * - Backward kernels ACCUMULATE into every gradient they write (`+=`, like llm.c), so
 *   the caller zeroes gradient buffers once per step. A gradient pointer documented
 *   "or NULL" is skipped when NULL. The one exception is tpar_xent_forward_backward, which
 *   starts the backward pass and writes (`=`) dlogits, possibly over the logits.
 * - Hot kernels return void: they cannot fail once their preconditions hold. The
 *   preconditions are: every int size >= 1, every product of sizes that indexes a
 *   buffer fits in size_t (tpar_check_dims checks both, cheaply, with a message), the
 *   buffers have the documented shapes, and outputs do not overlap inputs unless the
 *   comment says "may alias". Kernels whose input data can be wrong (token ids,
 *   targets, optimizer settings) validate it and return a tpar_status.
 * - Weight layout is [out_features, in_features] row-major (PyTorch nn.Linear, llm.c):
 *   out = inp @ W^T + b. A column-parallel shard (split by output features) is a
 *   contiguous block of rows; a row-parallel shard (split by input features) is a
 *   strided column block that the loader copies once into a dense (OC, C/tp) buffer.
 *   Hugging Face GPT-2 Conv1D checkpoints store [in, out]; tpar_transpose converts.
 * - The fused QKV activation is (B, T, 3*C) = [q | k | v] per token, head h owning
 *   columns h*hs .. (h+1)*hs-1 of each of q, k, v (hs = C/NH), as in GPT-2 c_attn.
 * - Random masks come from a counter-based hash of (seed, offset + element index),
 *   never from hidden state: the same (seed, offset) gives the same mask on any rank,
 *   in forward and backward, so no mask is stored.
 * - Reference versions of every kernel (tpar_ref_*, plain loops, double accumulation)
 *   live in src/kernels/kernels_ref.h for tests only (CMake target tpar_kernels_ref). */
#ifndef TPAR_KERNELS_H
#define TPAR_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "tpar/core.h"

/* ---- validation ----------------------------------------------------------------------- */

/* Checks that each of the ndims int sizes that follow is >= 1 and that their product
 * times sizeof(float) fits in size_t. `what` names the kernel or tensor in the message.
 * TPAR_ERR_INVALID_ARG otherwise. Use it once where shapes are decided (model build). */
tpar_status tpar_check_dims(tpar_err_t *err, const char *what, int ndims, ...);

/* ---- GEMM (OpenBLAS) -------------------------------------------------------------------- */

/* Pins OpenBLAS to n threads (ranks are the parallelism: a rank uses 1). n >= 1. */
tpar_status tpar_blas_set_threads(int n, tpar_err_t *err);
int tpar_blas_get_threads(void);

/* out = inp @ weight^T + bias. bias may be NULL (skip_bias_add: add it in a fused kernel). */
void tpar_matmul_forward(float *out,          // (N, OC)
                         const float *inp,    // (N, C)
                         const float *weight, // (OC, C)
                         const float *bias,   // (OC) or NULL
                         int N, int C, int OC);
/* dinp += dout @ weight; dweight += dout^T @ inp; dbias += sum over rows of dout.
 * Each of dinp, dweight, dbias may be NULL, so a layer can compute dinp first, start its
 * all-reduce, and then compute dweight/dbias in a second call while the reduction runs. */
void tpar_matmul_backward(float *dinp,         // (N, C) or NULL
                          float *dweight,      // (OC, C) or NULL
                          float *dbias,        // (OC) or NULL
                          const float *dout,   // (N, OC)
                          const float *inp,    // (N, C)
                          const float *weight, // (OC, C)
                          int N, int C, int OC);

/* out = inp^T (e.g. a Conv1D [in, out] checkpoint tensor into [out, in]). */
void tpar_transpose(float *out,       // (C, R)
                    const float *inp, // (R, C)
                    int R, int C);

/* ---- layernorm (eps 1e-5, biased variance, as GPT-2) ---------------------------------- */

void tpar_layernorm_forward(float *out,          // (N, C)
                            float *mean,         // (N) saved for backward
                            float *rstd,         // (N) saved for backward
                            const float *inp,    // (N, C)
                            const float *weight, // (C)
                            const float *bias,   // (C)
                            int N, int C);
void tpar_layernorm_backward(float *dinp,         // (N, C)
                             float *dweight,      // (C) or NULL
                             float *dbias,        // (C) or NULL
                             const float *dout,   // (N, C)
                             const float *inp,    // (N, C)
                             const float *weight, // (C)
                             const float *mean,   // (N)
                             const float *rstd,   // (N)
                             int N, int C);

/* ---- elementwise ------------------------------------------------------------------------ */

/* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). out may alias inp. */
void tpar_gelu_forward(float *out,       // (n)
                       const float *inp, // (n)
                       size_t n);
void tpar_gelu_backward(float *dinp,       // (n)
                        const float *inp,  // (n) the forward input
                        const float *dout, // (n)
                        size_t n);

/* Fused: out = gelu(inp + bias). Keep inp (the bias-less GEMM output) for backward. */
void tpar_bias_gelu_forward(float *out,        // (N, C)
                            const float *inp,  // (N, C)
                            const float *bias, // (C)
                            int N, int C);
/* dinp += dout * gelu'(inp + bias); dbias += sum over rows of that. dbias may be NULL. */
void tpar_bias_gelu_backward(float *dinp,        // (N, C)
                             float *dbias,       // (C) or NULL
                             const float *inp,   // (N, C)
                             const float *bias,  // (C)
                             const float *dout,  // (N, C)
                             int N, int C);

/* out = a + b (out may alias a or b); backward: da += dout, db += dout. */
void tpar_residual_forward(float *out, const float *a, const float *b, size_t n); // all (n)
void tpar_residual_backward(float *da, float *db, const float *dout, size_t n);  // all (n)

/* The counter-based RNG behind dropout: a 32-bit uniform from (seed, counter), a
 * splitmix64 finalizer of seed-mixed counter. Exposed so tests and TP code can reason
 * about masks: element i of a kernel call with `offset` uses counter offset + i.
 * TP: replicated activations use the same (seed, offset) on every rank; sharded ones
 * give each rank a disjoint counter range (e.g. offset + rank * local_numel). */
uint32_t tpar_rng_u32(uint64_t seed, uint64_t counter);

/* Inverted dropout: out = inp * keep / (1 - p), keep = (u32 >= p * 2^32). p in [0, 1):
 * p <= 0 (or NaN) is the identity, p >= 1 gives zeros. out may alias inp. */
void tpar_dropout_forward(float *out,       // (n)
                          const float *inp, // (n)
                          size_t n, float p, uint64_t seed, uint64_t offset);
/* dinp += dout * keep / (1 - p), with the mask regenerated from (seed, offset). */
void tpar_dropout_backward(float *dinp,       // (n)
                           const float *dout, // (n)
                           size_t n, float p, uint64_t seed, uint64_t offset);

/* Fused: out = residual + dropout(inp + bias). bias may be NULL; out may alias residual.
 * The mask counter of element (i, j) is offset + i*C + j, as in tpar_dropout_forward. */
void tpar_bias_dropout_residual_forward(float *out,            // (N, C)
                                        const float *inp,      // (N, C)
                                        const float *bias,     // (C) or NULL
                                        const float *residual, // (N, C)
                                        int N, int C, float p, uint64_t seed, uint64_t offset);
/* dresidual += dout; dinp += dropout'(dout); dbias += sum over rows of dropout'(dout).
 * Each of dinp, dbias, dresidual may be NULL. */
void tpar_bias_dropout_residual_backward(float *dinp,       // (N, C) or NULL
                                         float *dbias,      // (C) or NULL
                                         float *dresidual,  // (N, C) or NULL
                                         const float *dout, // (N, C)
                                         int N, int C, float p, uint64_t seed, uint64_t offset);

/* ---- softmax ----------------------------------------------------------------------------- */

/* Row-wise softmax (max-subtracted). out may alias inp. */
void tpar_softmax_forward(float *out,       // (N, C)
                          const float *inp, // (N, C)
                          int N, int C);
/* dinp += out * (dout - sum_j dout_j out_j). */
void tpar_softmax_backward(float *dinp,       // (N, C)
                           const float *dout, // (N, C)
                           const float *out,  // (N, C) the forward output
                           int N, int C);

/* ---- causal self-attention --------------------------------------------------------------- */

/* Query rows per block: scores of TPAR_ATTENTION_BLOCK queries against all the keys they
 * see are live at a time (64: measured best of 32..256 at T = 1024, hs = 64). */
enum { TPAR_ATTENTION_BLOCK = 64 };

/* Floats of scratch that tpar_attention_forward/backward need for sequence length T:
 * O(T), independent of B and NH; memory never grows with T^2. */
size_t tpar_attention_scratch_floats(int T);

/* Per head: out = softmax(q k^T / sqrt(hs), causal) v, processed in blocks of query rows
 * (the scores of one block at a time live in scratch). Saves lse = log-sum-exp of each
 * scaled score row, which is all backward needs beside qkv and out. Preconditions
 * beside the usual: C % NH == 0 (tpar_check_attention). */
void tpar_attention_forward(float *out,       // (B, T, C)
                            float *lse,       // (B, NH, T) saved for backward
                            const float *qkv, // (B, T, 3C)
                            float *scratch,   // (tpar_attention_scratch_floats(T))
                            int B, int T, int C, int NH);
/* dqkv += d(attention)/d(qkv) given dout; exact (scores are recomputed, not approximated). */
void tpar_attention_backward(float *dqkv,       // (B, T, 3C)
                             const float *dout, // (B, T, C)
                             const float *qkv,  // (B, T, 3C)
                             const float *out,  // (B, T, C) the forward output
                             const float *lse,  // (B, NH, T) from forward
                             float *scratch,    // (tpar_attention_scratch_floats(T))
                             int B, int T, int C, int NH);
/* tpar_check_dims on B, T, C, NH plus C % NH == 0. */
tpar_status tpar_check_attention(int B, int T, int C, int NH, tpar_err_t *err);

/* ---- embedding ----------------------------------------------------------------------------- */

/* out[b,t] = wte[tokens[b,t] - v0] (when v0 <= token < v0 + Vl, else zeros) + wpe[t].
 * The vocabulary range lets a vocab-parallel embedding use this as is (Vl = V, v0 = 0
 * on one rank); wpe may be NULL (add positions once, after the reduction). Every token
 * must be in [0, V): else TPAR_ERR_INVALID_ARG naming the position, and nothing is written. */
tpar_status tpar_embedding_forward(float *out,         // (B, T, C)
                                   const int *tokens,  // (B, T)
                                   const float *wte,   // (Vl, C) rows v0 .. v0+Vl-1
                                   const float *wpe,   // (>= T, C) or NULL
                                   int B, int T, int C, int V, int v0, int Vl, tpar_err_t *err);
/* dwte[token - v0] += dout[b,t] for tokens in the local range; dwpe[t] += dout[b,t].
 * dwte or dwpe may be NULL. Tokens outside [v0, v0 + Vl) are skipped. */
void tpar_embedding_backward(float *dwte,        // (Vl, C) or NULL
                             float *dwpe,        // (>= T, C) or NULL
                             const float *dout,  // (B, T, C)
                             const int *tokens,  // (B, T)
                             int B, int T, int C, int v0, int Vl);

/* ---- cross-entropy ----------------------------------------------------------------------- */

/* Mean cross-entropy over rows whose target != ignore_index, from logits whose rows are
 * Vp wide with only the first V entries real (Vp >= V; padding columns are masked out).
 * losses (may be NULL) gets each row's loss, 0 for ignored rows; *n_valid (may be NULL)
 * the number of rows counted. No counted row: *loss = 0. A target outside [0, V) that
 * is not ignore_index is TPAR_ERR_INVALID_ARG naming the row. */
tpar_status tpar_xent_forward(float *loss,         // () mean over counted rows
                              float *losses,       // (N) or NULL
                              int *n_valid,        // () or NULL
                              const float *logits, // (N, Vp)
                              const int *targets,  // (N)
                              int N, int V, int Vp, int ignore_index, tpar_err_t *err);
/* Fused softmax + cross-entropy: the loss as above and, in the same pass over each row,
 * dlogits = dloss * (softmax(logits) - onehot(target)) / n_valid (0 for ignored rows and
 * padding columns). Writes (=) dlogits, which may alias logits (saves a (N, Vp) buffer). */
tpar_status tpar_xent_forward_backward(float *loss,         // ()
                                       float *dlogits,      // (N, Vp) may alias logits
                                       const float *logits, // (N, Vp)
                                       const int *targets,  // (N)
                                       int N, int V, int Vp, int ignore_index, float dloss,
                                       tpar_err_t *err);

/* ---- optimizer ------------------------------------------------------------------------------- */

typedef struct {
    float lr;           // learning rate, >= 0
    float beta1, beta2; // in [0, 1)
    float eps;          // > 0
    float weight_decay; // >= 0, decoupled: p -= lr * wd * p
} tpar_adamw_t;

/* One AdamW step t (t >= 1, for bias correction) over n parameters:
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p).
 * Settings out of range are TPAR_ERR_INVALID_ARG (nothing is updated). */
tpar_status tpar_adamw_update(float *params,      // (n)
                              const float *grads, // (n)
                              float *m,           // (n) first moment, zero at t = 1
                              float *v,           // (n) second moment, zero at t = 1
                              size_t n, const tpar_adamw_t *cfg, long t, tpar_err_t *err);

#endif /* TPAR_KERNELS_H */
