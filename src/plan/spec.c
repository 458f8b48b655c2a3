/* tpar plan: model and hardware presets, and the custom "a,b,c,..." forms.
 * Every number below carries its source; docs/PLAN.md collects them. */
#include <stdio.h>
#include <string.h>

#include "tpar/plan.h"

/* Splits "x,y,z" into exactly n fields of at most 31 characters each; 0 on success. */
static int split_fields(const char *spec, int n, char fields[][32]) {
    int k = 0;
    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (k >= n || len == 0 || len >= 32) return -1;
        memcpy(fields[k], p, len);
        fields[k][len] = '\0';
        k++;
        if (!comma) break;
        p = comma + 1;
    }
    return k == n ? 0 : -1;
}

/* ---- models ------------------------------------------------------------------------ */

static const tpar_plan_model_t model_presets[] = {
    /* GPT-3 175B: Brown et al. 2020, "Language Models are Few-Shot Learners", Table 2.1
     * (n_layers 96, d_model 12288, n_heads 96, n_ctx 2048); GPT-2's BPE vocabulary. */
    {"gpt3-175b", 96, 12288, 96, 50257, 2048},
    /* GPT-2 small: Radford et al. 2019; the 124M checkpoint's config.json
     * (n_layer 12, n_embd 768, n_head 12, vocab 50257, n_positions 1024). */
    {"gpt2-124m", 12, 768, 12, 50257, 1024},
};
enum { N_MODEL_PRESETS = sizeof model_presets / sizeof model_presets[0] };

tpar_status tpar_plan_model_parse(const char *spec, tpar_plan_model_t *out, tpar_err_t *err) {
    if (!spec || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--model: no model given");
    for (int i = 0; i < N_MODEL_PRESETS; i++) {
        if (!strcmp(spec, model_presets[i].name)) {
            *out = model_presets[i];
            return TPAR_OK;
        }
    }
    if (!strchr(spec, ','))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--model: unknown model '%s' (presets: gpt3-175b, gpt2-124m; or "
                            "LAYERS,HIDDEN,HEADS,VOCAB,SEQ)", spec);
    static const char *names[5] = {"LAYERS", "HIDDEN", "HEADS", "VOCAB", "SEQ"};
    /* Upper bounds keep every product below in exact double range and far from overflow. */
    static const long long hi[5] = {100000, 1000000, 100000, 100000000, 10000000};
    char f[5][32];
    if (split_fields(spec, 5, f))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--model: '%s' is not LAYERS,HIDDEN,HEADS,VOCAB,SEQ (five integers, "
                            "e.g. 24,2304,24,51200,2048)", spec);
    long long v[5];
    for (int i = 0; i < 5; i++) {
        if (tpar_parse_int(f[i], 1, hi[i], &v[i]) != TPAR_OK)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                                "--model: %s must be an integer in [1, %lld], got '%s'", names[i],
                                hi[i], f[i]);
    }
    if (v[1] % v[2])
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--model: HIDDEN %lld is not divisible by HEADS %lld", v[1], v[2]);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "custom");
    out->layers = v[0];
    out->hidden = v[1];
    out->heads = v[2];
    out->vocab = v[3];
    out->seq = v[4];
    return TPAR_OK;
}

/* ---- hardware ---------------------------------------------------------------------- */

#define GB 1e9
#define GiB 1073741824.0

/* The raw figures of a device and its node; efficiencies are added by make_hw. */
typedef struct {
    const char *name;
    double tflops_bf16, tflops_fp32, mem_bytes, hbm_gbs, nvlink_gbs, ib_gbs;
    long long gpus_per_node;
    double reserve_bytes;
} hw_figures_t;

static const hw_figures_t hw_presets[] = {
    /* NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB): BF16 tensor 312 TFLOP/s dense,
     * FP32 19.5 TFLOP/s, 80 GB HBM2e at 2,039 GB/s, NVLink 600 GB/s both directions (300 per
     * direction). DGX A100 (as in Narayanan et al. 2021, section 5): 8 GPUs a node, 8 Mellanox
     * HDR 200 Gb/s InfiniBand HCAs, one per GPU: 25 GB/s per direction. 1 GB reserve: CUDA
     * context, cuBLAS and NCCL workspaces (approximate). */
    {"a100-80g", 312, 19.5, 80 * GiB, 2039, 300, 25, 8, 1 * GB},
    /* NVIDIA H100 Tensor Core GPU datasheet (SXM5 80GB): BF16 tensor 989 TFLOP/s dense (1,979
     * with sparsity), FP32 67 TFLOP/s, 80 GB HBM3 at 3.35 TB/s, NVLink 900 GB/s both
     * directions. DGX H100: 8 GPUs, 8 ConnectX-7 400 Gb/s NDR: 50 GB/s per GPU. */
    {"h100-80g", 989, 67, 80 * GiB, 3350, 450, 50, 8, 1 * GB},
    /* One core of a Xeon with AVX-512 (this project's 2-vCPU Sapphire/Emerald Rapids VM) as a
     * tpar rank: fp32 0.15 TFLOP/s, oneDNN's matmul on a 1024^3-2048^3 square, one thread
     * (tpar_gemm_peak_flops, 129-156 GFLOP/s measured; the FMA peak is ~0.19: 16 floats x 2 x
     * 2 units x 3.0 GHz); bf16 the same, tpar having no bf16 path yet. 12 GB (half the VM's
     * 24 GiB); memory reads 12.6 GB/s on one core (issue #13's measurement); the "NVLink" is the
     * shm all-reduce's bus bandwidth, 10.6 GB/s at 256 KiB (docs/PLAN.md, bench_plan); no
     * network was measured: 1 GB/s stands in. 2 ranks a node, no runtime reserve. */
    {"cpu-core", 0.15, 0.15, 12 * GB, 12.6, 10.6, 1, 2, 0},
};
enum { N_HW_PRESETS = sizeof hw_presets / sizeof hw_presets[0] };

/* Efficiencies and latencies, the same for every device (for H100 the A100 figures are
 * assumed; --gemm-eff overrides the one that matters most).
 * gemm_eff 0.80: "optimized GEMM can reach up to 80-90% of the theoretical maximum device
 *   throughput" (Dao 2023, FlashAttention-2, section 1, on A100); we take the low end
 *   because tensor-parallel shards are mid-sized GEMMs.
 * hbm_eff 0.85: the best streaming kernels reach 88-90% of A100 HBM bandwidth (NVIDIA
 *   developer forum "Trouble to reach peak bandwidth of A100": 1.80 of 2.04 TB/s measured,
 *   ~90% the best in NVIDIA's GTC material); framework element-wise kernels a little less.
 * nvlink_eff 0.78: NCCL's tuning model caps A100 ring bus bandwidth at 235 GB/s
 *   (src/graph/tuning.cc, "if (compCap80) busBw = min(busBw, 235)") of 300 GB/s NVLink.
 * ib_eff 0.85: nccl-tests all_reduce across A100 nodes with HDR NICs reaches 84.8 GB/s on
 *   average of 100 GB/s theoretical (NVIDIA/nccl-tests issue #119).
 * latencies: NCCL tuning model, ring/Simple: base 8.4 us, 3.4 us per NVLink step,
 *   9.6 us per network step (src/graph/tuning.cc, baseLat and hwLat). */
static void make_hw(const hw_figures_t *f, tpar_plan_hw_t *hw) {
    memset(hw, 0, sizeof *hw);
    snprintf(hw->name, sizeof hw->name, "%s", f->name);
    hw->peak_flops_bf16 = f->tflops_bf16 * 1e12;
    hw->peak_flops_fp32 = f->tflops_fp32 * 1e12;
    hw->mem_bytes = f->mem_bytes;
    hw->hbm_bw = f->hbm_gbs * GB;
    hw->nvlink_bw = f->nvlink_gbs * GB;
    hw->ib_bw = f->ib_gbs * GB;
    hw->gpus_per_node = f->gpus_per_node;
    hw->reserve_bytes = f->reserve_bytes;
    hw->gemm_eff = 0.80;
    hw->hbm_eff = 0.85;
    hw->nvlink_eff = 0.78;
    hw->ib_eff = 0.85;
    hw->lat_base_s = 8.4e-6;
    hw->lat_intra_s = 3.4e-6;
    hw->lat_inter_s = 9.6e-6;
}

tpar_status tpar_plan_hw_parse(const char *spec, tpar_plan_hw_t *out, tpar_err_t *err) {
    if (!spec || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "--gpu: no hardware given");
    for (int i = 0; i < N_HW_PRESETS; i++) {
        if (!strcmp(spec, hw_presets[i].name)) {
            make_hw(&hw_presets[i], out);
            return TPAR_OK;
        }
    }
    if (!strchr(spec, ','))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--gpu: unknown hardware '%s' (presets: a100-80g, h100-80g, cpu-core; or "
                            "TFLOPS,MEM-GB,HBM-GBS,NVLINK-GBS,IB-GBS,GPUS-PER-NODE)", spec);
    static const char *names[6] = {"TFLOPS", "MEM-GB", "HBM-GBS", "NVLINK-GBS", "IB-GBS",
                                   "GPUS-PER-NODE"};
    char f[6][32];
    if (split_fields(spec, 6, f))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--gpu: '%s' is not TFLOPS,MEM-GB,HBM-GBS,NVLINK-GBS,IB-GBS,GPUS-PER-NODE "
                            "(six positive numbers, e.g. 312,80,2039,300,25,8)", spec);
    double v[5];
    for (int i = 0; i < 5; i++) {
        if (tpar_parse_double(f[i], 1e-6, 1e9, &v[i]) != TPAR_OK)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                                "--gpu: %s must be a positive number (at most 1e9), got '%s'",
                                names[i], f[i]);
    }
    long long gpn;
    if (tpar_parse_int(f[5], 1, 1000000, &gpn) != TPAR_OK)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "--gpu: GPUS-PER-NODE must be an integer in [1, 1000000], got '%s'", f[5]);
    /* the peak is for the precision used; MEM is what the model may use (no reserve) */
    hw_figures_t custom = {"custom", v[0], v[0], v[1] * GB, v[2], v[3], v[4], gpn, 0};
    make_hw(&custom, out);
    return TPAR_OK;
}
