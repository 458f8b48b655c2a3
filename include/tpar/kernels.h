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
TPAR_API tpar_status tpar_check_dims(tpar_err_t *err, const char *what, int ndims, ...);

/* ---- GEMM: one seam, the provider chosen for this CPU ---------------------------------- *
 *
 * Every GEMM of the linear layers goes through tpar_gemm (row-major, cblas_sgemm's arguments)
 * or the linear wrappers below it (attention's small per-block sgemms still call OpenBLAS). Providers: oneDNN's matmul (fp32; it dispatches on the CPU's ISA:
 * AVX2, AVX-512, AMX) and OpenBLAS (kept where it is measured faster). In auto mode each
 * shape class (the operation: forward, input gradient, weight gradient; and the token count:
 * <= 8 decode, <= 512, more) gets its provider at tpar_gemm_init or its first call: by the CPU's features
 * (oneDNN when it has AVX2 or better, never OpenBLAS's core-name table) unless a short
 * measurement on the class's probe shape (a GPT-2 small layer at 4, 256 or 512 tokens) finds
 * another provider at least 1.3x faster (on one thread). A fixed probe and the margin keep the choice the same
 * from run to run and model to model.
 *
 * A context (tpar_gemm_ctx_t) holds the choices and oneDNN's primitives, cached per shape,
 * transposes, alpha, accumulate and thread count. tpar_matmul_* use the process's default
 * context: created at first use with the provider TPAR_GEMM names (auto | dnnl | openblas;
 * auto when unset), never freed. It is the kernels module's one piece of process-wide state;
 * a mutex serialises its use, so a context may be shared by threads (calls then run one at a
 * time). Forcing a provider (TPAR_GEMM=dnnl, or a context made with it) also fixes every
 * GEMM's summation order, which a measured choice could in principle move between runs.
 * If oneDNN refuses a call (never seen), OpenBLAS runs it. */

typedef enum {
    TPAR_GEMM_AUTO = 0,     /* per shape class, as above */
    TPAR_GEMM_OPENBLAS = 1, /* cblas_sgemm */
    TPAR_GEMM_DNNL = 2,     /* oneDNN matmul */
    TPAR_GEMM_GEMV = 3,     /* the small-M linear of decode (src/kernels/gemv.c): forward, <= 8 rows */
    TPAR_GEMM_N_PROVIDERS   /* (count; a new provider goes before it) */
} tpar_gemm_provider_t;

typedef struct tpar_gemm_ctx tpar_gemm_ctx_t;

/* A context that uses `force` for every call (TPAR_GEMM_AUTO: choose per shape class).
 * TPAR_ERR_NOMEM; TPAR_ERR_INVALID_ARG for an unknown or unavailable provider. */
TPAR_API tpar_status tpar_gemm_ctx_new(tpar_gemm_provider_t force, tpar_gemm_ctx_t **out, tpar_err_t *err);
TPAR_API void tpar_gemm_ctx_free(tpar_gemm_ctx_t *g);
/* The process's default context (see above); NULL only if it could not be allocated, in
 * which case the seam calls OpenBLAS directly. */
TPAR_API tpar_gemm_ctx_t *tpar_gemm_default(void);
/* Checks TPAR_GEMM, creates the default context and, in auto mode, decides the forward and
 * gradient classes now (~0.1 s): call it at start-up, so that a bad value is a clear error
 * (lazily, a bad value would mean auto) and no rank measures in the middle of a step. */
TPAR_API tpar_status tpar_gemm_init(tpar_err_t *err);
/* "auto", "openblas", "dnnl" <-> the enum. parse: TPAR_ERR_INVALID_ARG naming the choices. */
TPAR_API tpar_status tpar_gemm_provider_parse(const char *s, tpar_gemm_provider_t *out, tpar_err_t *err);
/* 1 if provider p runs a call of this kind itself (ta, tb as tpar_gemm; M rows of the activation):
 * the small-M GEMV takes only forwards (0, 1) of at most 8 rows; the others take every call. */
TPAR_API int tpar_gemm_provider_takes(tpar_gemm_provider_t p, int ta, int tb, int M);
TPAR_API const char *tpar_gemm_provider_name(tpar_gemm_provider_t p);
/* The provider a context was made with (TPAR_GEMM_AUTO: chosen per class). */
TPAR_API tpar_gemm_provider_t tpar_gemm_ctx_force(const tpar_gemm_ctx_t *g);

/* C (M, N) = alpha op(A) op(B) + beta C, row-major; op(X) = X^T when transX. A is (M, K)
 * (stored (K, M) when transA), B is (K, N) (stored (N, K) when transB); lda, ldb, ldc are
 * the row strides as stored. g NULL: the default context. beta 0 or 1 uses the chosen
 * provider; other betas run on OpenBLAS. Sizes >= 1. */
TPAR_API void tpar_gemm(tpar_gemm_ctx_t *g, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* The provider a call of this shape would use in g (deciding now, measuring if auto). */
TPAR_API tpar_gemm_provider_t tpar_gemm_choice(tpar_gemm_ctx_t *g, int transA, int transB, int M, int N, int K);

/* What a context decided, per shape class, for `tpar info` and benchmarks. */
typedef struct {
    char name[32];                               /* e.g. "forward, 9-512 tokens" */
    int decided;                                 /* 0: no call of this class yet */
    tpar_gemm_provider_t chosen;
    int M, N, K;                                 /* the shape it was measured on */
    double gflops[TPAR_GEMM_N_PROVIDERS];        /* measured rate, 0 = not measured */
} tpar_gemm_class_t;
enum { TPAR_GEMM_CLASSES = 12 };
/* Fills out[0 .. TPAR_GEMM_CLASSES-1]. */
TPAR_API void tpar_gemm_classes(tpar_gemm_ctx_t *g, tpar_gemm_class_t *out);
/* oneDNN's implementation for a call of this shape made in g, e.g. "brg:avx512_core"; "" when
 * none yet or not oneDNN. */
TPAR_API void tpar_gemm_impl(tpar_gemm_ctx_t *g, int transA, int transB, int M, int N, int K, char *out, size_t n);

/* The MFU reference: best fp32 FLOP/s per core of each provider on an n x n x n GEMM (NoTrans,
 * Trans as a forward linear), on ONE thread (the caller's thread count is restored), best of
 * reps after one warm-up. Multiply by the cores used for the machine's peak. */
typedef struct {
    int n, reps;
    double flops[TPAR_GEMM_N_PROVIDERS]; /* per provider, 0 = not available */
    double best;                         /* the largest of them */
    tpar_gemm_provider_t best_provider;
} tpar_gemm_peak_t;
TPAR_API tpar_status tpar_gemm_peak_flops(int n, int reps, tpar_gemm_peak_t *out, tpar_err_t *err);

/* ---- CPU and threads --------------------------------------------------------------------- */

/* What the CPU offers (cpuid) and, when measured, its clock and FMA throughput: the
 * theoretical fp32 peak = vector floats x 2 (an FMA is two FLOPs) x FMA units x clock. The
 * clock comes from a chain of dependent integer adds (one a cycle on every x86 core since
 * the P6), timed by the monotonic clock; the FMA units from independent FMAs of the widest
 * ISA over that clock. A core that slows under AVX-512 shows it in fma_flops_per_s. */
typedef struct {
    int avx2, fma, avx512f, avx512_bf16, amx_tile, amx_bf16;
    int vector_floats;         /* 16 AVX-512, 8 AVX2 + FMA, 4 otherwise */
    char dnnl_isa[32];         /* what oneDNN will dispatch to, e.g. "avx512_core_amx" */
    int measured;              /* the fields below are 0 unless measured */
    double clock_hz;           /* dependent-add loop */
    double fma_flops_per_s;    /* independent FMAs on one core, widest ISA */
    int fma_units;             /* round(fma_flops_per_s / clock / (2 x vector_floats)), >= 1 */
    double peak_flops_per_core; /* vector_floats x 2 x fma_units x clock_hz */
} tpar_cpu_info_t;
/* measure != 0 runs the two loops (about 0.1 s). */
TPAR_API void tpar_cpu_info(tpar_cpu_info_t *out, int measure);

/* The threads of this rank's GEMM and large kernels: OpenMP (oneDNN's runtime and our own
 * `omp parallel` loops) and OpenBLAS's pool; OpenBLAS keeps 1 once the default context has
 * decided that none of the model's classes uses it (see docs/KERNELS.md, Threads). n >= 1. */
TPAR_API tpar_status tpar_kernels_set_threads(int n, tpar_err_t *err);
TPAR_API int tpar_kernels_get_threads(void);
/* This rank's share of the host's cores: TPAR_THREADS when set (1 .. 4096; tpar launch sets
 * it, a user's value wins), else online cores / local ranks (TPAR_LOCAL_SIZE from tpar
 * launch, OMPI_COMM_WORLD_LOCAL_SIZE under mpirun, 1 otherwise), at least 1, so the ranks of
 * a host never oversubscribe it. TPAR_ERR_INVALID_ARG for a malformed variable. */
TPAR_API tpar_status tpar_kernels_rank_threads(int *n, tpar_err_t *err);
/* Cores this process may run on: its affinity mask (taskset, cgroups), else the online ones. */
TPAR_API int tpar_kernels_usable_cores(void);
/* cores / local_ranks, at least 1. */
TPAR_API int tpar_kernels_share(int cores, int local_ranks);
/* Old names, kept: the same as tpar_kernels_set_threads / _get_threads. */
TPAR_API tpar_status tpar_blas_set_threads(int n, tpar_err_t *err);
TPAR_API int tpar_blas_get_threads(void);

/* ---- linear layers (through the default context) ------------------------------------------ */

/* out = inp @ weight^T + bias. bias may be NULL (skip_bias_add: add it in a fused kernel). */
TPAR_API void tpar_matmul_forward(float *out,          // (N, OC)
                                  const float *inp,    // (N, C)
                                  const float *weight, // (OC, C)
                                  const float *bias,   // (OC) or NULL
                                  int N, int C, int OC);
/* tpar_matmul_forward in context g (NULL: the default); small-row providers fuse the bias. */
TPAR_API void tpar_gemm_linear(tpar_gemm_ctx_t *g,
                               float *out,          // (N, OC)
                               const float *inp,    // (N, C)
                               const float *weight, // (OC, C)
                               const float *bias,   // (OC) or NULL
                               int N, int C, int OC);
/* dinp += dout @ weight; dweight += dout^T @ inp; dbias += sum over rows of dout.
 * Each of dinp, dweight, dbias may be NULL, so a layer can compute dinp first, start its
 * all-reduce, and then compute dweight/dbias in a second call while the reduction runs. */
TPAR_API void tpar_matmul_backward(float *dinp,         // (N, C) or NULL
                                   float *dweight,      // (OC, C) or NULL
                                   float *dbias,        // (OC) or NULL
                                   const float *dout,   // (N, OC)
                                   const float *inp,    // (N, C)
                                   const float *weight, // (OC, C)
                                   int N, int C, int OC);

/* out = inp^T (e.g. a Conv1D [in, out] checkpoint tensor into [out, in]). */
TPAR_API void tpar_transpose(float *out,       // (C, R)
                             const float *inp, // (R, C)
                             int R, int C);

/* ---- bfloat16 and int8 weights (issue #17, kernel layer) ------------------------------------ *
 *
 * bf16 is fp32's top 16 bits: 8 exponent bits (fp32's range), 8 significant bits (unit
 * roundoff 2^-8). Stored as uint16_t; arithmetic always widens it to fp32 (exact) first. A
 * dtype enum for the whole project comes later (core); these are the kernel-level pieces.
 * docs/KERNELS.md, Precision, has the measured rates and the choices. */
typedef uint16_t tpar_bf16_t;

/* fp32 -> bf16, round to nearest, ties to even. NaN stays NaN (sign kept, quiet bit set,
 * payload truncated), +-Inf stays Inf, values that round past bf16's largest become Inf.
 * fp32 denormals (|x| < 2^-126) become zero of the same sign: the rule of the AVX512-BF16
 * instruction (VCVTNE2PS2BF16), which the portable path copies so that every build gives the
 * same bits. Fixed blocks over the OpenMP threads: bitwise identical at any thread count. */
TPAR_API void tpar_fp32_to_bf16(tpar_bf16_t *out, // (n)
                                const float *inp, // (n)
                                size_t n);
/* bf16 -> fp32, exact (a shift). */
TPAR_API void tpar_bf16_to_fp32(float *out,             // (n)
                                const tpar_bf16_t *inp, // (n)
                                size_t n);
/* One value each way (scalar, the same rule as above). */
TPAR_API tpar_bf16_t tpar_bf16_from_float(float x);
TPAR_API float tpar_bf16_to_float(tpar_bf16_t x);
/* The portable conversion loop alone, whatever the build (tests compare it to the build's). */
TPAR_API void tpar_fp32_to_bf16_portable(tpar_bf16_t *out, const float *inp, size_t n);

/* C (M, N) fp32 = alpha op(A) op(B) + beta C with A and B in bf16 and fp32 accumulation;
 * arguments as tpar_gemm (row-major; lda, ldb in elements). g NULL: the default context.
 * beta 0 or 1. Two paths, chosen once per context at its first bf16 call: oneDNN's bf16 matmul
 * on AMX CPUs (oneDNN ISA avx512_core_amx), and on AVX512-BF16 ones (avx512_core_bf16) unless a
 * short probe (a GPT-2 small forward at 256 tokens, ~10 ms) finds the other path 15% faster;
 * else A and B are widened to fp32 (exactly) in the context's scratch and the context's fp32
 * GEMM runs them (also when oneDNN refuses a call). A context without oneDNN (forced openblas)
 * always widens. */
TPAR_API void tpar_gemm_bf16(tpar_gemm_ctx_t *g, int transA, int transB, int M, int N, int K, float alpha,
                             const tpar_bf16_t *A, int lda, const tpar_bf16_t *B, int ldb, float beta, float *C, int ldc);
/* Which path tpar_gemm_bf16 takes in g: 1 oneDNN's bf16 matmul, 0 widen + fp32 GEMM. */
TPAR_API int tpar_gemm_bf16_native(tpar_gemm_ctx_t *g);
/* The probe's rates (GFLOP/s; 0 when not measured: no oneDNN or no bf16 ISA). On AMX they are
 * reported only; on AVX512-BF16 without AMX they make the choice. */
TPAR_API void tpar_gemm_bf16_rates(tpar_gemm_ctx_t *g, double *widen_gflops, double *native_gflops);
/* oneDNN's implementation of a contiguous bf16 call of this shape made in g (as tpar_gemm_impl). */
TPAR_API void tpar_gemm_bf16_impl(tpar_gemm_ctx_t *g, int transA, int transB, int M, int N, int K, char *out, size_t n);

/* The linear layer with bf16 weights, fp32 output (bias fp32, may be NULL), in context g (NULL:
 * the default). Inputs in bf16 (training: activations stored in bf16) ... */
TPAR_API void tpar_matmul_forward_bf16(tpar_gemm_ctx_t *g,
                                       float *out,               // (N, OC)
                                       const tpar_bf16_t *inp,   // (N, C)
                                       const tpar_bf16_t *weight, // (OC, C)
                                       const float *bias,        // (OC) or NULL
                                       int N, int C, int OC);
/* ... or in fp32 (inference): N <= 8 rows run the bf16 GEMV below (activations stay fp32);
 * more rows are rounded to bf16 in the context's scratch and run the bf16 GEMM. */
TPAR_API void tpar_matmul_forward_bf16w(tpar_gemm_ctx_t *g,
                                        float *out,                // (N, OC)
                                        const float *inp,          // (N, C)
                                        const tpar_bf16_t *weight, // (OC, C)
                                        const float *bias,         // (OC) or NULL
                                        int N, int C, int OC);
/* Backward of tpar_matmul_forward_bf16: dout arrives in fp32 and is rounded to bf16 once (the
 * context's scratch); dinp += dout @ weight; dweight += dout^T @ inp; dbias += sum of dout
 * (fp32). Gradients accumulate in fp32; each may be NULL. */
TPAR_API void tpar_matmul_backward_bf16(tpar_gemm_ctx_t *g,
                                        float *dinp,               // (N, C) or NULL
                                        float *dweight,            // (OC, C) or NULL
                                        float *dbias,              // (OC) or NULL
                                        const float *dout,         // (N, OC)
                                        const tpar_bf16_t *inp,    // (N, C)
                                        const tpar_bf16_t *weight, // (OC, C)
                                        int N, int C, int OC);

/* Small-M linear (decode) with bf16 weights: out (N, OC) = inp (N, C) @ weight^T + bias, fp32
 * activations and accumulation, each weight widened to fp32 as it is loaded. The same per-element
 * order as the fp32 GEMV (16 interleaved partial sums over c, a fixed tree, the bias), so the
 * result is bitwise that of the fp32 GEMV on the widened weights, at any thread count and for any
 * slice of output rows. N = 1..8 per pass (more rows: chunks of 8). */
TPAR_API void tpar_gemv_forward_bf16(float *out,                // (N, OC)
                                     const float *inp,          // (N, C)
                                     const tpar_bf16_t *weight, // (OC, C)
                                     const float *bias,         // (OC) or NULL
                                     int N, int C, int OC);

/* int8 weights, blockwise (llama.cpp's q8_0 with an fp32 scale): each weight row is cut into
 * blocks of TPAR_Q8_BLOCK values along the input dimension; block b of row o holds int8 q and one
 * scale d = amax / 127, and w ~ d q. A row whose C is not a multiple of 32 ends in a shorter
 * block (its own amax and scale; nothing is padded). 1 + 4/32 = 1.125 bytes a weight. */
enum { TPAR_Q8_BLOCK = 32 };
/* Scales per row: ceil(C / 32). */
static inline int tpar_q8_blocks(int C) { return (C + TPAR_Q8_BLOCK - 1) / TPAR_Q8_BLOCK; }
/* The quantiser. Rule: d = amax / 127 in fp32 (amax over the block's |w|; d = 0 for an all-zero
 * block), q = w / d (fp32 division) rounded to nearest, ties to even, clamped to [-127, 127]. Deterministic
 * (no thread dependence: rows are independent). TPAR_ERR_INVALID_ARG for a NaN or Inf weight
 * (nothing is written) or sizes < 1. */
TPAR_API tpar_status tpar_q8_quantize(int8_t *q,         // (OC, C)
                                      float *scale,      // (OC, ceil(C/32))
                                      const float *w,    // (OC, C)
                                      int OC, int C, tpar_err_t *err);
/* w = fl(d * q), the weights the GEMV below uses (for references and checkpoints). */
TPAR_API void tpar_q8_dequantize(float *w,           // (OC, C)
                                 const int8_t *q,    // (OC, C)
                                 const float *scale, // (OC, ceil(C/32))
                                 int OC, int C);
/* Small-M linear with q8 weights: each weight dequantised in registers to fl(d q), exactly the
 * fp32 value tpar_q8_dequantize gives, and then the fp32 GEMV's order: bitwise the fp32 GEMV on
 * the dequantised matrix, at any thread count and for any slice of output rows. Activations stay
 * fp32 (not quantised). N = 1..8 per pass. */
TPAR_API void tpar_gemv_forward_q8(float *out,          // (N, OC)
                                   const float *inp,    // (N, C)
                                   const int8_t *q,     // (OC, C)
                                   const float *scale,  // (OC, ceil(C/32))
                                   const float *bias,   // (OC) or NULL
                                   int N, int C, int OC);
/* The portable loops alone, whatever the build (tests). */
TPAR_API void tpar_gemv_forward_bf16_portable(float *out, const float *inp, const tpar_bf16_t *weight, const float *bias, int N,
                                              int C, int OC);
TPAR_API void tpar_gemv_forward_q8_portable(float *out, const float *inp, const int8_t *q, const float *scale,
                                            const float *bias, int N, int C, int OC);

/* ---- layernorm (eps 1e-5, biased variance, as GPT-2) ---------------------------------- */

TPAR_API void tpar_layernorm_forward(float *out,          // (N, C)
                                     float *mean,         // (N) saved for backward
                                     float *rstd,         // (N) saved for backward
                                     const float *inp,    // (N, C)
                                     const float *weight, // (C)
                                     const float *bias,   // (C)
                                     int N, int C);
TPAR_API void tpar_layernorm_backward(float *dinp,         // (N, C)
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
TPAR_API void tpar_gelu_forward(float *out,       // (n)
                                const float *inp, // (n)
                                size_t n);
TPAR_API void tpar_gelu_backward(float *dinp,       // (n)
                                 const float *inp,  // (n) the forward input
                                 const float *dout, // (n)
                                 size_t n);

/* Fused: out = gelu(inp + bias). Keep inp (the bias-less GEMM output) for backward. */
TPAR_API void tpar_bias_gelu_forward(float *out,        // (N, C)
                                     const float *inp,  // (N, C)
                                     const float *bias, // (C)
                                     int N, int C);
/* dinp += dout * gelu'(inp + bias); dbias += sum over rows of that. dbias may be NULL. */
TPAR_API void tpar_bias_gelu_backward(float *dinp,        // (N, C)
                                      float *dbias,       // (C) or NULL
                                      const float *inp,   // (N, C)
                                      const float *bias,  // (C)
                                      const float *dout,  // (N, C)
                                      int N, int C);

/* out = a + b (out may alias a or b); backward: da += dout, db += dout. */
TPAR_API void tpar_residual_forward(float *out, const float *a, const float *b, size_t n); // all (n)
TPAR_API void tpar_residual_backward(float *da, float *db, const float *dout, size_t n);  // all (n)

/* The counter-based RNG behind dropout: a 32-bit uniform from (seed, counter), a
 * splitmix64 finalizer of seed-mixed counter. Exposed so tests and TP code can reason
 * about masks: element i of a kernel call with `offset` uses counter offset + i.
 * TP: replicated activations use the same (seed, offset) on every rank; sharded ones
 * give each rank a disjoint counter range (e.g. offset + rank * local_numel). */
TPAR_API uint32_t tpar_rng_u32(uint64_t seed, uint64_t counter);

/* Inverted dropout: out = inp * keep / (1 - p), keep = (u32 >= p * 2^32). p in [0, 1):
 * p <= 0 (or NaN) is the identity, p >= 1 gives zeros. out may alias inp. */
TPAR_API void tpar_dropout_forward(float *out,       // (n)
                                   const float *inp, // (n)
                                   size_t n, float p, uint64_t seed, uint64_t offset);
/* dinp += dout * keep / (1 - p), with the mask regenerated from (seed, offset). */
TPAR_API void tpar_dropout_backward(float *dinp,       // (n)
                                    const float *dout, // (n)
                                    size_t n, float p, uint64_t seed, uint64_t offset);

/* Fused: out = residual + dropout(inp + bias). bias may be NULL; out may alias residual.
 * The mask counter of element (i, j) is offset + i*C + j, as in tpar_dropout_forward. */
TPAR_API void tpar_bias_dropout_residual_forward(float *out,            // (N, C)
                                                 const float *inp,      // (N, C)
                                                 const float *bias,     // (C) or NULL
                                                 const float *residual, // (N, C)
                                                 int N, int C, float p, uint64_t seed, uint64_t offset);
/* dresidual += dout; dinp += dropout'(dout); dbias += sum over rows of dropout'(dout).
 * Each of dinp, dbias, dresidual may be NULL. */
TPAR_API void tpar_bias_dropout_residual_backward(float *dinp,       // (N, C) or NULL
                                                  float *dbias,      // (C) or NULL
                                                  float *dresidual,  // (N, C) or NULL
                                                  const float *dout, // (N, C)
                                                  int N, int C, float p, uint64_t seed, uint64_t offset);

/* ---- softmax ----------------------------------------------------------------------------- */

/* Row-wise softmax (max-subtracted). out may alias inp. */
TPAR_API void tpar_softmax_forward(float *out,       // (N, C)
                                   const float *inp, // (N, C)
                                   int N, int C);
/* dinp += out * (dout - sum_j dout_j out_j). */
TPAR_API void tpar_softmax_backward(float *dinp,       // (N, C)
                                    const float *dout, // (N, C)
                                    const float *out,  // (N, C) the forward output
                                    int N, int C);

/* ---- causal self-attention --------------------------------------------------------------- */

/* Query rows per block: scores of TPAR_ATTENTION_BLOCK queries against all the keys they
 * see are live at a time (64: measured best of 32..256 at T = 1024, hs = 64). */
enum { TPAR_ATTENTION_BLOCK = 64 };

/* Floats of scratch that tpar_attention_forward/backward need for sequence length T:
 * O(T), independent of B and NH; memory never grows with T^2. */
TPAR_API size_t tpar_attention_scratch_floats(int T);

/* Per head: out = softmax(q k^T / sqrt(hs), causal) v, processed in blocks of query rows
 * (the scores of one block at a time live in scratch). Saves lse = log-sum-exp of each
 * scaled score row, which is all backward needs beside qkv and out. Preconditions
 * beside the usual: C % NH == 0 (tpar_check_attention). */
TPAR_API void tpar_attention_forward(float *out,       // (B, T, C)
                                     float *lse,       // (B, NH, T) saved for backward
                                     const float *qkv, // (B, T, 3C)
                                     float *scratch,   // (tpar_attention_scratch_floats(T))
                                     int B, int T, int C, int NH);
/* dqkv += d(attention)/d(qkv) given dout; exact (scores are recomputed, not approximated). */
TPAR_API void tpar_attention_backward(float *dqkv,       // (B, T, 3C)
                                      const float *dout, // (B, T, C)
                                      const float *qkv,  // (B, T, 3C)
                                      const float *out,  // (B, T, C) the forward output
                                      const float *lse,  // (B, NH, T) from forward
                                      float *scratch,    // (tpar_attention_scratch_floats(T))
                                      int B, int T, int C, int NH);
/* tpar_check_dims on B, T, C, NH plus C % NH == 0. */
TPAR_API tpar_status tpar_check_attention(int B, int T, int C, int NH, tpar_err_t *err);

/* ---- embedding ----------------------------------------------------------------------------- */

/* out[b,t] = wte[tokens[b,t] - v0] (when v0 <= token < v0 + Vl, else zeros) + wpe[t].
 * The vocabulary range lets a vocab-parallel embedding use this as is (Vl = V, v0 = 0
 * on one rank); wpe may be NULL (add positions once, after the reduction). Every token
 * must be in [0, V): else TPAR_ERR_INVALID_ARG naming the position, and nothing is written. */
TPAR_API tpar_status tpar_embedding_forward(float *out,         // (B, T, C)
                                            const int *tokens,  // (B, T)
                                            const float *wte,   // (Vl, C) rows v0 .. v0+Vl-1
                                            const float *wpe,   // (>= T, C) or NULL
                                            int B, int T, int C, int V, int v0, int Vl, tpar_err_t *err);
/* dwte[token - v0] += dout[b,t] for tokens in the local range; dwpe[t] += dout[b,t].
 * dwte or dwpe may be NULL. Tokens outside [v0, v0 + Vl) are skipped. */
TPAR_API void tpar_embedding_backward(float *dwte,        // (Vl, C) or NULL
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
TPAR_API tpar_status tpar_xent_forward(float *loss,         // () mean over counted rows
                                       float *losses,       // (N) or NULL
                                       int *n_valid,        // () or NULL
                                       const float *logits, // (N, Vp)
                                       const int *targets,  // (N)
                                       int N, int V, int Vp, int ignore_index, tpar_err_t *err);
/* Fused softmax + cross-entropy: the loss as above and, in the same pass over each row,
 * dlogits = dloss * (softmax(logits) - onehot(target)) / n_valid (0 for ignored rows and
 * padding columns). Writes (=) dlogits, which may alias logits (saves a (N, Vp) buffer). */
TPAR_API tpar_status tpar_xent_forward_backward(float *loss,         // ()
                                                float *dlogits,      // (N, Vp) may alias logits
                                                const float *logits, // (N, Vp)
                                                const int *targets,  // (N)
                                                int N, int V, int Vp, int ignore_index, float dloss,
                                                tpar_err_t *err);

/* The pieces of a vocab-parallel cross-entropy (src/parallel/vocab.c), where each rank holds
 * a column slice of the logits and the row statistics are all-reduced between the passes.
 * Softmax statistics of the first n columns of each row of a (N, ld) block (ld >= n):
 * mx[i] = max_j x[i, j], sumexp[i] = sum_j exp(x[i, j] - mx[i]); one read of each row.
 * n = 0 (a slice that is all padding): mx = -INFINITY, sumexp = 0. */
TPAR_API void tpar_softmax_stats(float *mx,      // (N)
                                 float *sumexp,  // (N)
                                 const float *x, // (N, ld)
                                 int N, int n, int ld);
/* dlogits = scale * (softmax - onehot) from the rows' log-sum-exp: dx[i, j] = scale *
 * exp(x[i, j] - lse[i]) for j < n, minus scale at column targets[i] - t0 when that is in
 * [0, n); padding columns n <= j < ld and rows whose target is ignore_index get 0.
 * Writes (=) dlogits, which may alias x. Targets are the caller's to validate. */
TPAR_API void tpar_xent_dlogits(float *dlogits,     // (N, ld) may alias x
                                const float *x,     // (N, ld)
                                const float *lse,   // (N)
                                const int *targets, // (N) global class ids
                                int N, int n, int ld, int t0, int ignore_index, float scale);

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
TPAR_API tpar_status tpar_adamw_update(float *params,      // (n)
                                       const float *grads, // (n)
                                       float *m,           // (n) first moment, zero at t = 1
                                       float *v,           // (n) second moment, zero at t = 1
                                       size_t n, const tpar_adamw_t *cfg, long t, tpar_err_t *err);

#endif /* TPAR_KERNELS_H */
