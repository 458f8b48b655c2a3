/* The GEMM seam's insides (src/kernels only): the provider table, the oneDNN primitive cache,
 * the shape classes, and the CPU probes. The public face is the GEMM section of
 * include/tpar/kernels.h.
 *
 * A provider is one entry of gemm_providers[] (gemm_select.c): a name, whether it can run on
 * this machine, which calls it takes (gemm_provider_t.accepts), and how it runs a GEMM.
 * Adding one (e.g. the small-M decode kernel tpar_gemv_forward) is one more entry: give it a
 * `linear` hook (out = inp @ W^T + bias, rows <= max_rows) and leave `gemm` NULL, and the
 * forward linear of the decode shape class picks it when it is measured fastest. */
#ifndef TPAR_KERNELS_GEMM_INTERNAL_H
#define TPAR_KERNELS_GEMM_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "tpar/kernels.h"

/* ---- the oneDNN provider (gemm_dnnl.c) ------------------------------------------------- */

typedef struct gemm_dnnl gemm_dnnl_t; /* engine, stream and the per-shape primitive cache */

/* NULL when oneDNN cannot make a CPU engine (never expected; the seam then uses OpenBLAS). */
gemm_dnnl_t *gemm_dnnl_new(void);
void gemm_dnnl_free(gemm_dnnl_t *d);
/* C (M, N) = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm(CblasRowMajor, ...).
 * Returns 0, or -1 when oneDNN refused the shape (the caller then runs OpenBLAS). */
int gemm_dnnl_run(gemm_dnnl_t *d, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);
/* The same with A and B in bf16 (C fp32): oneDNN's bf16 matmul, fp32 accumulation. -1 if refused. */
int gemm_dnnl_run_bf16(gemm_dnnl_t *d, int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                       const uint16_t *B, int ldb, float beta, float *C, int ldc);
/* oneDNN's implementation name for this call's primitive (e.g. "brg:avx512_core"), "" if none
 * was made yet. Writes at most n bytes. */
void gemm_dnnl_impl(gemm_dnnl_t *d, int bf16, int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc,
                    float alpha, float beta, char *out, size_t n);
/* Primitives in the cache (for tests and `tpar info`). */
int gemm_dnnl_cached(gemm_dnnl_t *d);
/* oneDNN's ISA for this CPU, e.g. "avx512_core_amx" (what its dispatcher will use). */
const char *gemm_dnnl_isa(void);
int gemm_dnnl_isa_rank(void); /* 0 none/sse41, 1 avx, 2 avx2, 3 avx512, 4 avx512+bf16/amx */

/* ---- providers ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    tpar_gemm_provider_t id;
    /* Rows of the linear it takes at most (0: any). A GEMV-shaped provider says 8. */
    int max_rows;
} gemm_provider_info_t;

/* ---- shape classes ---------------------------------------------------------------------- */

/* A class is (operation, token-count bucket). The operation is the transpose pair: forward
 * (NoTrans, Trans), input gradient (NoTrans, NoTrans), weight gradient (Trans, NoTrans), or
 * other (Trans, Trans). The token count is the rows of the activation: M, or K for the weight
 * gradient, whose reduction runs over the tokens. */
enum { GEMM_OPS = 4, GEMM_BUCKETS = 3, GEMM_CLASSES = GEMM_OPS * GEMM_BUCKETS };
int gemm_class_of(int ta, int tb, int M, int K);

/* ---- the context (gemm_select.c; the bf16 entry points of gemm_bf16.c use it too) ---------- */

struct tpar_gemm_ctx {
    pthread_mutex_t mu;
    tpar_gemm_provider_t force;
    gemm_dnnl_t *dnnl; /* NULL when oneDNN is not used by this context */
    tpar_gemm_class_t cls[GEMM_CLASSES];
    void *scratch[2];     /* the bf16 paths' conversions (grown, never shrunk); guarded by mu: */
    size_t scratch_bytes[2]; /* [0] the wrappers' rounded activations, [1] the fp32 fallback's copies */
    int bf16_decided, bf16_native; /* tpar_gemm_bf16's path, measured once (gemm_bf16.c) */
    double bf16_gflops[2];         /* that measurement: [0] widen + fp32, [1] oneDNN bf16 */
};

/* Caller holds g->mu. tpar_gemm's body: the class's provider, OpenBLAS if it refuses. */
void gemm_run_locked(tpar_gemm_ctx_t *g, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc);
/* Caller holds g->mu. At least `bytes` of the context's scratch slot (0 or 1) (64-byte aligned), NULL if out
 * of memory. Valid until the next call while the lock is held. */
void *gemm_scratch_locked(tpar_gemm_ctx_t *g, int slot, size_t bytes);

#endif /* TPAR_KERNELS_GEMM_INTERNAL_H */
