/* Reference kernels for tests: plain loops, double accumulation, libm's exp/tanh, no
 * blocking, no fusion, no BLAS. Each mirrors the fast kernel of the same name in
 * include/tpar/kernels.h (same shapes, same += convention for gradients) and is written
 * to be obviously right rather than fast. Not part of libtpar: link tpar_kernels_ref.
 * Allocation failure in the few that need scratch aborts (test code only). */
#ifndef TPAR_KERNELS_REF_H
#define TPAR_KERNELS_REF_H

#include <stddef.h>
#include <stdint.h>

/* C (M, N) = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm (see tpar_gemm); each
 * element accumulated in double. If absbound is not NULL it gets, per element of C,
 * |alpha| sum_k |op(A)_ik op(B)_kj| + |beta C_ij| (in double): the scale of the rounding error
 * of any fp32 summation order (Higham, Accuracy and Stability, 2nd ed., eq. 3.5). */
void tpar_ref_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc, double *absbound);
void tpar_ref_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                             int OC); // out (N, OC), inp (N, C), weight (OC, C), bias (OC) or NULL
void tpar_ref_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, int N, int C, int OC); // any grad may be NULL

void tpar_ref_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                const float *bias, int N, int C);
void tpar_ref_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                 const float *weight, int N, int C); // recomputes mean/rstd itself

void tpar_ref_gelu_forward(float *out, const float *inp, size_t n);
void tpar_ref_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/* keep iff tpar_rng_u32(seed, offset + i) >= p * 2^32 (p in (0, 1)); out = inp * keep / (1 - p) */
void tpar_ref_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t offset);
void tpar_ref_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint64_t offset);

void tpar_ref_softmax_forward(float *out, const float *inp, int N, int C);
void tpar_ref_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C);

/* The textbook form: full causal score row per query, softmax, weighted sum of v. */
void tpar_ref_attention_forward(float *out, const float *qkv, int B, int T, int C, int NH); // (B,T,C), (B,T,3C)
void tpar_ref_attention_backward(float *dqkv, const float *dout, const float *qkv, int B, int T, int C, int NH);

void tpar_ref_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B, int T,
                                int C, int v0, int Vl); // tokens assumed valid
void tpar_ref_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T,
                                 int C, int v0, int Vl);

/* Mean cross-entropy over non-ignored rows (0 if none); if dlogits is not NULL it gets
 * (=) dloss * (softmax - onehot) / n_valid, zeros on ignored rows and padding columns.
 * Returns n_valid. */
int tpar_ref_xent(float *loss, float *dlogits, const float *logits, const int *targets, int N, int V, int Vp,
                  int ignore_index, float dloss);
void tpar_ref_softmax_stats(float *mx, float *sumexp, const float *x, int N, int n, int ld);
void tpar_ref_xent_dlogits(float *dlogits, const float *x, const float *lse, const int *targets, int N, int n, int ld,
                           int t0, int ignore_index, float scale);

void tpar_ref_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                           float beta2, float eps, float weight_decay, long t);

#endif /* TPAR_KERNELS_REF_H */
