/* The kernels before vectorisation and threading (bench_kernels_prev.c), for the
 * side-by-side comparison in bench_kernels only. Same contracts as include/tpar/kernels.h. */
#ifndef TPAR_BENCH_KERNELS_PREV_H
#define TPAR_BENCH_KERNELS_PREV_H

#include "tpar/kernels.h"

void prev_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int N, int C);
void prev_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *mean, const float *rstd, int N, int C);
void prev_gelu_forward(float *out, const float *inp, size_t n);
void prev_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void prev_bias_gelu_forward(float *out, const float *inp, const float *bias, int N, int C);
void prev_bias_gelu_backward(float *dinp, float *dbias, const float *inp, const float *bias, const float *dout,
                             int N, int C);
void prev_residual_forward(float *out, const float *a, const float *b, size_t n);
void prev_residual_backward(float *da, float *db, const float *dout, size_t n);
uint32_t prev_rng_u32(uint64_t seed, uint64_t counter);
void prev_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t offset);
void prev_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint64_t offset);
void prev_bias_dropout_residual_forward(float *out, const float *inp, const float *bias, const float *residual,
                                        int N, int C, float p, uint64_t seed, uint64_t offset);
void prev_bias_dropout_residual_backward(float *dinp, float *dbias, float *dresidual, const float *dout, int N,
                                         int C, float p, uint64_t seed, uint64_t offset);
void prev_softmax_forward(float *out, const float *inp, int N, int C);
void prev_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C);
void prev_attention_forward(float *out, float *lse, const float *qkv, float *scratch, int B, int T, int C,
                            int NH);
void prev_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                             float *scratch, int B, int T, int C, int NH);
tpar_status prev_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B,
                                   int T, int C, int V, int v0, int Vl, tpar_err_t *err);
void prev_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T, int C,
                             int v0, int Vl);
tpar_status prev_xent_forward(float *loss, float *losses, int *n_valid, const float *logits, const int *targets,
                              int N, int V, int Vp, int ignore_index, tpar_err_t *err);
tpar_status prev_xent_forward_backward(float *loss, float *dlogits, const float *logits, const int *targets,
                                       int N, int V, int Vp, int ignore_index, float dloss, tpar_err_t *err);
tpar_status prev_adamw_update(float *params, const float *grads, float *m, float *v, size_t n,
                              const tpar_adamw_t *cfg, long t, tpar_err_t *err);

#endif /* TPAR_BENCH_KERNELS_PREV_H */
