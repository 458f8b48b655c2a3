/* tpar plan: a memory and step-time model for training a GPT on a cluster split
 * tensor x pipeline x data parallel (Megatron-LM style).
 *
 * Pure functions over three descriptions: the model (layers, hidden, heads, vocab,
 * sequence), the hardware (peak FLOP/s, memory, bandwidths, link latencies and the
 * efficiencies actually reached) and the layout (tp, pp, dp, micro-batch, sequence
 * parallelism, recomputation, ZeRO stage, precision). Nothing here allocates or
 * prints. The formulas and the source of every constant are in docs/PLAN.md.
 *
 * Units: bytes and seconds inside the structs; "GB" in names means 1e9 bytes. */
#ifndef TPAR_PLAN_H
#define TPAR_PLAN_H

#include "tpar/core.h"

/* ---- the model --------------------------------------------------------------------- */

/* A GPT-style decoder: l layers of (attention with a heads, MLP 4h), learned positions,
 * word embedding tied to the output layer. */
typedef struct {
    char name[64];
    long long layers;  /* l */
    long long hidden;  /* h */
    long long heads;   /* a; h % a == 0 */
    long long vocab;   /* V, the real vocabulary (padded to 128*tp for the work, as Megatron) */
    long long seq;     /* s */
} tpar_plan_model_t;

/* "gpt3-175b", "gpt2-124m" or "LAYERS,HIDDEN,HEADS,VOCAB,SEQ". A bad spec is
 * TPAR_ERR_INVALID_ARG with a message naming --model. */
TPAR_API tpar_status tpar_plan_model_parse(const char *spec, tpar_plan_model_t *out, tpar_err_t *err);

/* Parameters of the whole model: l(12h^2 + 13h) + (V + s)h + 2h (tied output layer). */
TPAR_API double tpar_plan_params(const tpar_plan_model_t *m);

/* Model FLOPs of one training iteration over B sequences (no recomputation), counting
 * only the matrix multiplications: 72 B s l h^2 (1 + s/(6h) + V/(12 l h)). */
TPAR_API double tpar_plan_model_flops(const tpar_plan_model_t *m, double batch);

/* ---- the hardware ------------------------------------------------------------------ */

typedef struct {
    char name[64];
    double peak_flops_bf16;   /* dense tensor-core FLOP/s, bf16 */
    double peak_flops_fp32;   /* FLOP/s, plain fp32 */
    double mem_bytes;         /* device memory */
    double hbm_bw;            /* bytes/s */
    double nvlink_bw;         /* bytes/s per GPU per direction, inside a node */
    double ib_bw;             /* bytes/s per GPU per direction between nodes (one NIC per GPU) */
    long long gpus_per_node;
    /* Fractions of the peaks that real kernels reach (sources in docs/PLAN.md). */
    double gemm_eff;          /* large GEMMs, of peak FLOP/s */
    double hbm_eff;           /* streaming element-wise kernels, of hbm_bw */
    double nvlink_eff;        /* NCCL ring bus bandwidth, of nvlink_bw */
    double ib_eff;            /* NCCL ring bus bandwidth, of ib_bw */
    /* NCCL's own ring latency model (Simple protocol): base + per step. */
    double lat_base_s, lat_intra_s, lat_inter_s;
    double reserve_bytes;     /* runtime context and workspaces, unusable for the model */
} tpar_plan_hw_t;

/* "a100-80g", "h100-80g" or "FLOPS,MEM,HBM-BW,NVLINK-BW,IB-BW,GPUS-PER-NODE" with
 * FLOPS in TFLOP/s (for the precision used), MEM in GB and bandwidths in GB/s. The
 * custom form takes the presets' efficiencies and latencies. Errors name --gpu. */
TPAR_API tpar_status tpar_plan_hw_parse(const char *spec, tpar_plan_hw_t *out, tpar_err_t *err);

/* ---- the layout -------------------------------------------------------------------- */

typedef enum { TPAR_RECOMPUTE_NONE = 0, TPAR_RECOMPUTE_SELECTIVE, TPAR_RECOMPUTE_FULL } tpar_recompute_t;
typedef enum { TPAR_PRECISION_BF16 = 0, TPAR_PRECISION_FP32 } tpar_precision_t;

/* A layout. In a search, 0 in tp/pp/dp/micro_batch and -1 in recompute mean "free". */
typedef struct {
    long long gpus, global_batch;
    long long tp, pp, dp, micro_batch;
    int sp;                   /* sequence parallelism (Korthikanti et al. 2022) */
    int recompute;            /* tpar_recompute_t, or -1 (search) */
    int zero;                 /* 0..3 */
    tpar_precision_t precision;
    int dp_overlap;           /* 1: the DP reduction overlaps the last backward (default);
                                 0: it runs after the pipeline flush (Megatron-LM 2021) */
} tpar_plan_layout_t;

TPAR_API const char *tpar_plan_recompute_str(int r);
TPAR_API const char *tpar_plan_precision_str(tpar_precision_t p);

/* Activation bytes of one transformer layer for one micro-batch of b sequences, as stored
 * for the backward pass (Korthikanti et al. 2022, generalised to e bytes per activation):
 *   none:      s b h (4e + 2 + 12e/t) + a s^2 b (2e + 1)/t       (SP: everything / t)
 *   selective: the same without the a s^2 b term
 *   full:      the layer input, s b h e (/ t with SP)
 * With e = 2 and t = 1 "none" is the paper's s b h (34 + 5 a s / h). */
TPAR_API double tpar_plan_layer_activation_bytes(const tpar_plan_model_t *m, double b, double t, int sp,
                                                 tpar_recompute_t r, double e);

/* ---- the answer -------------------------------------------------------------------- */

typedef struct {
    tpar_plan_layout_t layout;   /* fully resolved */
    long long micro_batches;     /* m per pipeline per step */
    double params_total, params_per_gpu;
    /* memory per GPU in bytes, on the most loaded pipeline stage */
    double mem_weights, mem_grads, mem_optimizer, mem_activations, mem_comm, mem_total;
    double mem_usable;           /* hw mem_bytes - reserve_bytes */
    int fits;
    /* seconds per step on the critical path; t_step is their sum */
    double t_gemm;          /* matrix multiplications (roofline at gemm_eff / hbm_eff) */
    double t_elementwise;   /* layernorm, softmax, dropout, GeLU, residual, loss, at hbm_eff */
    double t_tp_comm;       /* TP all-reduces (or all-gather + reduce-scatter with SP), per layer */
    double t_pp_comm;       /* pipeline sends between stages */
    double t_bubble;        /* (p - 1) micro-batch slots of the 1F1B schedule */
    double t_dp_comm;       /* whole DP gradient reduction (and ZeRO gathers) */
    double t_dp_exposed;    /* the part not hidden behind backward compute */
    double t_optimizer;     /* AdamW update, memory-bound */
    double t_step;
    double model_flops, hardware_flops;  /* per step, whole cluster */
    double tflops_per_gpu;  /* hardware FLOPs (with recomputation) / GPU / second / 1e12 */
    double mfu;             /* model FLOPs / (gpus * peak * step) */
    double comm_compute_ratio; /* (TP + PP + DP communication) / (GEMM + element-wise) */
    /* bytes each GPU moves out per step ("bus" bytes of ring collectives, the unit of
     * tpar_comm_stats_t.bus_bytes): 2(n-1)/n of an all-reduce's buffer, (n-1)/n of an
     * all-gather's or reduce-scatter's, a pipeline send's whole message */
    double tp_bus_bytes, pp_bus_bytes, dp_bus_bytes;
} tpar_plan_result_t;

/* Checks a fully given layout against the model and cluster (every divisibility rule, with
 * a message naming the flag) and evaluates it. A layout that does not fit in memory is
 * not an error: result->fits is 0. */
TPAR_API tpar_status tpar_plan_evaluate(const tpar_plan_model_t *m, const tpar_plan_hw_t *hw,
                                        const tpar_plan_layout_t *layout, tpar_plan_result_t *result,
                                        tpar_err_t *err);

/* Searches every valid layout that agrees with the given one (its free fields: tp, pp,
 * dp, micro_batch = 0, recompute = -1), best first: layouts that fit, fastest first, then
 * those that do not, smallest first. Writes up to `max` results to best[],
 * their number to *n_best and the number of valid layouts evaluated to *n_valid (may be
 * NULL). No valid layout at all is TPAR_ERR_INVALID_ARG with a message saying why. */
TPAR_API tpar_status tpar_plan_search(const tpar_plan_model_t *m, const tpar_plan_hw_t *hw,
                                      const tpar_plan_layout_t *constraint, tpar_plan_result_t *best,
                                      int max, int *n_best, long long *n_valid, tpar_err_t *err);

#endif /* TPAR_PLAN_H */
