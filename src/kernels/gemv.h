/* Small-M linear layer (internal to libtpar): decode and the few sampled rows of prefill.
 *
 *   out (N, OC) = inp (N, C) @ weight^T (OC, C) + bias (OC)
 *
 * the same contract as tpar_matmul_forward ([out, in] weights, bias may be NULL), for N = 1..8
 * (larger N works, in chunks of 8 rows, each chunk streaming the weights again). One token's
 * matmul is memory-bound: every weight is used N times, so the kernel streams the weight
 * matrix once, each row applied to all N input rows while it is in L1, over OpenMP's current
 * threads (contiguous blocks of output rows) when OC*C is large.
 *
 * Determinism: each output element is summed in one fixed order that depends on C only (16
 * interleaved partial sums over c, a fixed tree, then the bias), never on the thread count,
 * on OC or on which rows a rank holds: results are bitwise identical at any thread count.
 * The order differs between the AVX-512 build and the portable one. */
#ifndef TPAR_GEMV_H
#define TPAR_GEMV_H

void tpar_gemv_forward(float *out,          // (N, OC)
                       const float *inp,    // (N, C)
                       const float *weight, // (OC, C)
                       const float *bias,   // (OC) or NULL
                       int N, int C, int OC);

/* The portable path alone (plain C, the compiler's vectorisation), whatever the build: what
 * tpar_gemv_forward runs without __AVX512F__; exposed so that tests check it on any machine. */
void tpar_gemv_forward_portable(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                                int OC);

#endif /* TPAR_GEMV_H */
