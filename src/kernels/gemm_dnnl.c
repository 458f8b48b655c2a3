/* The oneDNN provider of the GEMM seam: fp32 matmul through oneDNN 2.6's C API, one primitive
 * per shape and variant, cached.
 *
 * cblas_sgemm's row-major C = alpha op(A) op(B) + beta C maps onto one matmul primitive:
 * transposes become strides of the memory descriptors (no copy), alpha an output scale, and
 * beta a sum post-op (accumulate into C; beta = 0 has none). oneDNN picks its kernel from the
 * CPU's ISA (brgemm on AVX-512 / AMX, its jit gemm otherwise). Creating a primitive (kernel
 * generation) costs far more than running a small one, so they are cached by what shapes them:
 * (transposes, M, N, K, leading dimensions, alpha, beta != 0, threads). The cache is a
 * growing array searched linearly: a model has a few dozen GEMM shapes.
 *
 * Weights are passed in their own plain layout (oneDNN's brgemm copies B blocks as it goes).
 * Pre-packing (weights in oneDNN's blocked format, reordered once) was measured: no gain at
 * the training shapes (where weights change every step anyway), 1.2-1.3x at decode shapes
 * once a weight is reused more than ~3 times; decode has its small-M path (docs/KERNELS.md). */
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_internal.h"

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, threads, accumulate;
    int bf16; /* A and B in bf16 (C stays fp32): oneDNN's bf16 matmul, fp32 accumulation */
    float alpha;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, b_md, c_md;
    char impl[48];
} entry_t;

struct gemm_dnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    entry_t *e;
    int n, cap;
};

gemm_dnnl_t *gemm_dnnl_new(void) {
    gemm_dnnl_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    if (dnnl_engine_create(&d->engine, dnnl_cpu, 0) != dnnl_success) {
        free(d);
        return NULL;
    }
    if (dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(d->engine);
        free(d);
        return NULL;
    }
    return d;
}

void gemm_dnnl_free(gemm_dnnl_t *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) dnnl_primitive_destroy(d->e[i].prim);
    free(d->e);
    dnnl_stream_destroy(d->stream);
    dnnl_engine_destroy(d->engine);
    free(d);
}

int gemm_dnnl_cached(gemm_dnnl_t *d) { return d ? d->n : 0; }

/* Row-major (rows, cols) with leading dimension ld, read transposed when t: element (i, j) of
 * the logical matrix is at i*ld + j, or at j*ld + i. */
static int md_init(dnnl_memory_desc_t *md, int rows, int cols, int ld, int t, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {t ? 1 : ld, t ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides) == dnnl_success ? 0 : -1;
}

static int make(gemm_dnnl_t *d, entry_t *e) {
    dnnl_data_type_t in = e->bf16 ? dnnl_bf16 : dnnl_f32;
    if (md_init(&e->a_md, e->M, e->K, e->lda, e->ta, in) || md_init(&e->b_md, e->K, e->N, e->ldb, e->tb, in) ||
        md_init(&e->c_md, e->M, e->N, e->ldc, 0, dnnl_f32))
        return -1;
    dnnl_matmul_desc_t desc;
    if (dnnl_matmul_desc_init(&desc, &e->a_md, &e->b_md, NULL, &e->c_md) != dnnl_success) return -1;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int rc = -1;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) goto done;
    if (e->alpha != 1.0f && dnnl_primitive_attr_set_output_scales(attr, 1, 0, &e->alpha) != dnnl_success) goto done;
    if (e->accumulate) {
        /* dst = alpha A B + 1 * dst: the same accumulate-into-C as sgemm with beta = 1. */
        if (dnnl_post_ops_create(&po) != dnnl_success || dnnl_post_ops_append_sum(po, 1.0f) != dnnl_success ||
            dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success)
            goto done;
    }
    if (dnnl_primitive_desc_create(&pd, &desc, attr, d->engine, NULL) != dnnl_success) goto done;
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(e->impl, sizeof e->impl, "%s", impl);
    /* Scratchpad: the library's own (default), so the primitive needs no buffer from us. */
    if (dnnl_primitive_create(&e->prim, pd) == dnnl_success) rc = 0;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return rc;
}

static entry_t *lookup(gemm_dnnl_t *d, const entry_t *k, int create) {
    for (int i = 0; i < d->n; i++) {
        entry_t *e = &d->e[i];
        if (e->ta == k->ta && e->tb == k->tb && e->M == k->M && e->N == k->N && e->K == k->K && e->lda == k->lda &&
            e->ldb == k->ldb && e->ldc == k->ldc && e->threads == k->threads && e->accumulate == k->accumulate && e->bf16 == k->bf16 &&
            e->alpha == k->alpha)
            return e;
    }
    if (!create) return NULL;
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 32;
        entry_t *ne = realloc(d->e, (size_t)cap * sizeof *ne);
        if (!ne) return NULL;
        d->e = ne, d->cap = cap;
    }
    entry_t *e = &d->e[d->n];
    *e = *k;
    e->prim = NULL;
    e->impl[0] = 0;
    if (make(d, e)) return NULL;
    d->n++;
    return e;
}

static entry_t key(int bf16, int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc, float alpha,
                   float beta) {
    /* omp_get_max_threads: the threads oneDNN's OpenMP runtime will use; its blocking is
     * chosen for them at creation, so a different count is a different primitive. */
    return (entry_t){.ta = !!ta, .tb = !!tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc,
                     .threads = omp_get_max_threads(), .accumulate = beta != 0.0f, .bf16 = bf16, .alpha = alpha};
}

static int run(gemm_dnnl_t *d, int bf16, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
               const void *B, int ldb, float beta, float *C, int ldc) {
    /* beta is 0 or 1 on the seam (overwrite or accumulate); anything else goes elsewhere. */
    if (!d || (beta != 0.0f && beta != 1.0f)) return -1;
    entry_t k = key(bf16, ta, tb, M, N, K, lda, ldb, ldc, alpha, beta);
    entry_t *e = lookup(d, &k, 1);
    if (!e) return -1;
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    int rc = -1;
    /* Memory objects only wrap our pointers (no allocation); made per call so nothing in the
     * cache points at a caller's buffer. */
    if (dnnl_memory_create(&ma, &e->a_md, d->engine, (void *)A) != dnnl_success ||
        dnnl_memory_create(&mb, &e->b_md, d->engine, (void *)B) != dnnl_success ||
        dnnl_memory_create(&mc, &e->c_md, d->engine, C) != dnnl_success)
        goto done;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    if (dnnl_primitive_execute(e->prim, d->stream, 3, args) == dnnl_success &&
        dnnl_stream_wait(d->stream) == dnnl_success)
        rc = 0;
done:
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    return rc;
}

int gemm_dnnl_run(gemm_dnnl_t *d, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    return run(d, 0, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int gemm_dnnl_run_bf16(gemm_dnnl_t *d, int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                       const uint16_t *B, int ldb, float beta, float *C, int ldc) {
    return run(d, 1, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_dnnl_impl(gemm_dnnl_t *d, int bf16, int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc,
                    float alpha, float beta, char *out, size_t n) {
    if (!n) return;
    out[0] = 0;
    if (!d) return;
    entry_t k = key(bf16, ta, tb, M, N, K, lda, ldb, ldc, alpha, beta);
    entry_t *e = lookup(d, &k, 0);
    if (e) snprintf(out, n, "%s", e->impl);
}

const char *gemm_dnnl_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic:
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "none";
    }
}

int gemm_dnnl_isa_rank(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx: return 1;
    case dnnl_cpu_isa_avx2:
    case dnnl_cpu_isa_avx2_vnni: return 2;
    case dnnl_cpu_isa_avx512_mic:
    case dnnl_cpu_isa_avx512_mic_4ops:
    case dnnl_cpu_isa_avx512_core:
    case dnnl_cpu_isa_avx512_core_vnni: return 3;
    case dnnl_cpu_isa_avx512_core_bf16:
    case dnnl_cpu_isa_avx512_core_amx: return 4;
    default: return 0;
    }
}
