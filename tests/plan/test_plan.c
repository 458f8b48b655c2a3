/* The plan model's formulas against values computed by hand here, its input checks,
 * and the layout search against an exhaustive enumeration written independently. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "tpar/plan.h"

static tpar_plan_model_t model(const char *spec) {
    tpar_plan_model_t m;
    tpar_err_t err = {0};
    if (tpar_plan_model_parse(spec, &m, &err) != TPAR_OK) fprintf(stderr, "model %s: %s\n", spec, err.msg);
    return m;
}

static tpar_plan_hw_t hardware(const char *spec) {
    tpar_plan_hw_t hw;
    tpar_err_t err = {0};
    if (tpar_plan_hw_parse(spec, &hw, &err) != TPAR_OK) fprintf(stderr, "hw %s: %s\n", spec, err.msg);
    return hw;
}

static tpar_plan_layout_t layout(long long gpus, long long batch, long long tp, long long pp, long long dp,
                                 long long mb, int recompute) {
    tpar_plan_layout_t L = {0};
    L.gpus = gpus, L.global_batch = batch, L.tp = tp, L.pp = pp, L.dp = dp, L.micro_batch = mb;
    L.recompute = recompute;
    L.dp_overlap = 1;
    return L;
}

static tpar_plan_result_t eval(const tpar_plan_model_t *m, const tpar_plan_hw_t *hw, const tpar_plan_layout_t *L) {
    tpar_plan_result_t r;
    tpar_err_t err = {0};
    memset(&r, 0, sizeof r);
    if (!CHECK(tpar_plan_evaluate(m, hw, L, &r, &err) == TPAR_OK)) fprintf(stderr, "  %s\n", err.msg);
    return r;
}

static void test_parse(void) {
    tpar_plan_model_t m = model("gpt3-175b");
    CHECK_EQ_INT(96, m.layers);
    CHECK_EQ_INT(12288, m.hidden);
    CHECK_EQ_INT(96, m.heads);
    CHECK_EQ_INT(2048, m.seq);
    m = model("gpt2-124m");
    CHECK_EQ_INT(768, m.hidden);
    CHECK_EQ_INT(1024, m.seq);
    m = model("24,2304,24,51200,2048");
    CHECK_EQ_INT(24, m.layers);
    CHECK_EQ_INT(51200, m.vocab);

    /* Every bad model names --model and says what is wrong. */
    const char *bad_models[] = {"gpt5", "", "1,2,3", "0,768,12,50257,1024", "12,-768,12,50257,1024",
                                "12,770,12,50257,1024", "12,768,12,50257,1024,7", "12,,12,50257,1024",
                                "12,768,12,50257,1e3"};
    for (size_t i = 0; i < sizeof bad_models / sizeof *bad_models; i++) {
        tpar_err_t err = {0};
        CHECK(tpar_plan_model_parse(bad_models[i], &m, &err) == TPAR_ERR_INVALID_ARG);
        CHECK_STR_CONTAINS(err.msg, "--model");
    }
    tpar_err_t err = {0};
    tpar_plan_model_parse("12,770,12,50257,1024", &m, &err);
    CHECK_STR_CONTAINS(err.msg, "not divisible by HEADS");

    tpar_plan_hw_t hw = hardware("a100-80g");
    CHECK_CLOSE(312e12, hw.peak_flops_bf16, 0, 0);
    CHECK_CLOSE(2039e9, hw.hbm_bw, 0, 0);
    CHECK_EQ_INT(8, hw.gpus_per_node);
    hw = hardware("h100-80g");
    CHECK_CLOSE(989e12, hw.peak_flops_bf16, 0, 0);
    hw = hardware("100,16,50,10,1,4");
    CHECK_CLOSE(100e12, hw.peak_flops_bf16, 0, 0);
    CHECK_CLOSE(16e9, hw.mem_bytes, 0, 0);
    CHECK_CLOSE(1e9, hw.ib_bw, 0, 0);
    CHECK_EQ_INT(4, hw.gpus_per_node);
    const char *bad_hw[] = {"v100", "312,80,2039,300,25", "312,80,0,300,25,8", "312,80,2039,300,25,0",
                            "312,80,abc,300,25,8", "312,80,2039,300,25,8.5", "-312,80,2039,300,25,8"};
    for (size_t i = 0; i < sizeof bad_hw / sizeof *bad_hw; i++) {
        tpar_err_t e2 = {0};
        CHECK(tpar_plan_hw_parse(bad_hw[i], &hw, &e2) == TPAR_ERR_INVALID_ARG);
        CHECK_STR_CONTAINS(e2.msg, "--gpu");
    }
}

/* Parameter counts by hand: l (12h^2 + 13h) + (V + s) h + 2h. */
static void test_params(void) {
    tpar_plan_model_t m = model("gpt3-175b");
    long long l = 96, h = 12288, V = 50257, s = 2048;
    long long want = l * (12 * h * h + 13 * h) + (V + s) * h + 2 * h;
    CHECK_CLOSE((double)want, tpar_plan_params(&m), 0, 0);
    CHECK_CLOSE(175e9, tpar_plan_params(&m), 0.01, 0); /* "GPT-3 175B" */
    /* GPT-2 small: the 124M checkpoint holds 124,439,808 parameters (tied output layer). */
    m = model("gpt2-124m");
    CHECK_CLOSE(124439808.0, tpar_plan_params(&m), 0, 0);
}

/* FLOPs against Narayanan et al. 2021's formulas, written out here. */
static void test_flops(void) {
    tpar_plan_model_t m = model("80,12288,96,51200,2048");
    double B = 2304, s = 2048, l = 80, h = 12288, V = 51200;
    double model_flops = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
    double paper_hw = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
    CHECK_CLOSE(model_flops, tpar_plan_model_flops(&m, B), 1e-12, 0);
    tpar_plan_hw_t hw = hardware("a100-80g");
    tpar_plan_layout_t L = layout(1536, 2304, 8, 8, 24, 1, TPAR_RECOMPUTE_FULL);
    tpar_plan_result_t r = eval(&m, &hw, &L);
    CHECK_CLOSE(paper_hw, r.hardware_flops, 1e-12, 0);
    CHECK_CLOSE(model_flops, r.model_flops, 1e-12, 0);
    /* throughput figures are those FLOPs over the step */
    CHECK_CLOSE(paper_hw / (1536 * r.t_step) / 1e12, r.tflops_per_gpu, 1e-12, 0);
    CHECK_CLOSE(model_flops / (1536 * r.t_step * 312e12), r.mfu, 1e-12, 0);
    L.recompute = TPAR_RECOMPUTE_NONE;
    r = eval(&m, &hw, &L);
    CHECK_CLOSE(model_flops, r.hardware_flops, 1e-12, 0);
    L.recompute = TPAR_RECOMPUTE_SELECTIVE; /* repeats Q K^T and P V: 4 s^2 h per layer */
    r = eval(&m, &hw, &L);
    CHECK_CLOSE(model_flops + B * l * 4 * s * s * h, r.hardware_flops, 1e-12, 0);
}

/* Korthikanti et al. 2022 activation formulas (bf16: e = 2). */
static void test_activations(void) {
    tpar_plan_model_t m = model("gpt3-175b");
    double s = 2048, b = 4, h = 12288, a = 96, t = 8, sbh = s * b * h;
    CHECK_CLOSE(sbh * (34 + 5 * a * s / h), tpar_plan_layer_activation_bytes(&m, b, 1, 0, TPAR_RECOMPUTE_NONE, 2), 1e-12, 0);
    CHECK_CLOSE(sbh * (10 + 24 / t + 5 * a * s / (h * t)),
                tpar_plan_layer_activation_bytes(&m, b, t, 0, TPAR_RECOMPUTE_NONE, 2), 1e-12, 0);
    CHECK_CLOSE(sbh / t * (34 + 5 * a * s / h), tpar_plan_layer_activation_bytes(&m, b, t, 1, TPAR_RECOMPUTE_NONE, 2),
                1e-12, 0);
    CHECK_CLOSE(sbh / t * 34, tpar_plan_layer_activation_bytes(&m, b, t, 1, TPAR_RECOMPUTE_SELECTIVE, 2), 1e-12, 0);
    CHECK_CLOSE(sbh * (10 + 24 / t), tpar_plan_layer_activation_bytes(&m, b, t, 0, TPAR_RECOMPUTE_SELECTIVE, 2), 1e-12, 0);
    CHECK_CLOSE(2 * sbh, tpar_plan_layer_activation_bytes(&m, b, t, 0, TPAR_RECOMPUTE_FULL, 2), 1e-12, 0);
    CHECK_CLOSE(2 * sbh / t, tpar_plan_layer_activation_bytes(&m, b, t, 1, TPAR_RECOMPUTE_FULL, 2), 1e-12, 0);
    /* fp32 (e = 4): 66 s b h + 9 a s^2 b at t = 1 */
    CHECK_CLOSE(sbh * 66 + 9 * a * s * s * b, tpar_plan_layer_activation_bytes(&m, b, 1, 0, TPAR_RECOMPUTE_NONE, 4),
                1e-12, 0);
}

/* Weights, gradients and optimizer state per GPU. */
static void test_model_state_memory(void) {
    tpar_plan_hw_t hw = hardware("a100-80g");
    /* One GPU, vocab a multiple of 128 (no padding): the whole model, 2 + 2 + 12 bytes. */
    tpar_plan_model_t m = model("24,2304,24,51200,2048");
    tpar_plan_layout_t L = layout(1, 8, 1, 1, 1, 1, TPAR_RECOMPUTE_FULL);
    tpar_plan_result_t r = eval(&m, &hw, &L);
    double P = tpar_plan_params(&m);
    CHECK_CLOSE(P, r.params_per_gpu, 1e-12, 0);
    CHECK_CLOSE(2 * P, r.mem_weights, 1e-12, 0);
    CHECK_CLOSE(2 * P, r.mem_grads, 1e-12, 0);
    CHECK_CLOSE(12 * P, r.mem_optimizer, 1e-12, 0);
    /* fp32 (tpar's CPU training): 4 + 4 + 8 bytes a parameter */
    L.precision = TPAR_PRECISION_FP32;
    r = eval(&m, &hw, &L);
    CHECK_CLOSE(4 * P, r.mem_weights, 1e-12, 0);
    CHECK_CLOSE(4 * P, r.mem_grads, 1e-12, 0);
    CHECK_CLOSE(8 * P, r.mem_optimizer, 1e-12, 0);

    /* TP 8: split weights and biases / 8, row-parallel biases and layernorms whole. */
    L = layout(8, 8, 8, 1, 1, 1, TPAR_RECOMPUTE_FULL);
    r = eval(&m, &hw, &L);
    double l = 24, h = 2304, V = 51200, s = 2048;
    double per_gpu = l * ((12 * h * h + 7 * h) / 8 + 6 * h) + V * h / 8 + s * h + 2 * h;
    CHECK_CLOSE(per_gpu, r.params_per_gpu, 1e-12, 0);
    CHECK_CLOSE(2 * per_gpu, r.mem_weights, 1e-12, 0);

    /* GPT-3 on TP 8 x PP 8: weights ~ 2 bytes x params / (tp pp); the first stage also holds
     * the embeddings, about 3% more. */
    m = model("gpt3-175b");
    P = tpar_plan_params(&m);
    L = layout(1024, 1024, 8, 8, 16, 1, TPAR_RECOMPUTE_FULL);
    r = eval(&m, &hw, &L);
    CHECK_CLOSE(2 * P / 64, r.mem_weights, 0.05, 0);
    CHECK(r.mem_weights >= 2 * P / 64 * 0.99);
    CHECK_CLOSE(2 * r.params_per_gpu, r.mem_weights, 1e-12, 0);
    /* ZeRO stages shard optimizer state, then gradients, then weights over dp = 16. */
    tpar_plan_result_t z[4];
    for (int zs = 0; zs < 4; zs++) {
        L.zero = zs;
        z[zs] = eval(&m, &hw, &L);
    }
    CHECK_CLOSE(z[0].mem_optimizer / 16, z[1].mem_optimizer, 1e-12, 0);
    CHECK_CLOSE(z[0].mem_grads, z[1].mem_grads, 1e-12, 0);
    CHECK_CLOSE(z[0].mem_grads / 16, z[2].mem_grads, 1e-12, 0);
    CHECK_CLOSE(z[0].mem_weights, z[2].mem_weights, 1e-12, 0);
    CHECK_CLOSE(z[0].mem_weights / 16, z[3].mem_weights, 1e-12, 0);
    CHECK(z[3].mem_total < z[2].mem_total && z[2].mem_total < z[1].mem_total && z[1].mem_total < z[0].mem_total);
    /* ZeRO moves the memory to communication: more DP traffic at stages 2 and 3 */
    CHECK(z[3].t_dp_comm > z[0].t_dp_comm);

    /* Recomputation and SP lower activation memory; the parts add up to the total. */
    L = layout(1024, 1024, 8, 8, 16, 1, TPAR_RECOMPUTE_NONE);
    tpar_plan_result_t none = eval(&m, &hw, &L);
    L.recompute = TPAR_RECOMPUTE_SELECTIVE;
    tpar_plan_result_t sel = eval(&m, &hw, &L);
    L.recompute = TPAR_RECOMPUTE_FULL;
    tpar_plan_result_t full = eval(&m, &hw, &L);
    L.sp = 1;
    tpar_plan_result_t full_sp = eval(&m, &hw, &L);
    CHECK(none.mem_activations > sel.mem_activations);
    CHECK(sel.mem_activations > full.mem_activations);
    CHECK(full.mem_activations > full_sp.mem_activations);
    CHECK(full.t_step > none.t_step); /* recomputation costs time */
    CHECK_CLOSE(none.mem_weights + none.mem_grads + none.mem_optimizer + none.mem_activations + none.mem_comm,
                none.mem_total, 1e-12, 0);
    CHECK_EQ_INT(none.mem_total <= none.mem_usable, none.fits);
    /* a 175B model on 8 GPUs does not fit */
    L = layout(8, 8, 8, 1, 1, 1, TPAR_RECOMPUTE_FULL);
    r = eval(&m, &hw, &L);
    CHECK_EQ_INT(0, r.fits);
    CHECK(r.mem_weights > 300e9 / 8);
}

/* Time: the step is the sum of its parts; the bubble is (p-1)/m of the pipelined work; TP
 * and DP collectives follow the ring formula, computed here by hand. */
static void test_time(void) {
    tpar_plan_model_t m = model("8,1024,16,32768,512");
    /* custom: 100 TFLOP/s, 16 GB, 1000 GB/s HBM, 100 GB/s NVLink, 10 GB/s IB, 4 GPUs a node */
    tpar_plan_hw_t hw = hardware("100,16,1000,100,10,4");
    tpar_plan_layout_t L = layout(16, 64, 2, 2, 4, 2, TPAR_RECOMPUTE_NONE);
    L.dp_overlap = 0;
    tpar_plan_result_t r = eval(&m, &hw, &L);
    CHECK_CLOSE(r.t_gemm + r.t_elementwise + r.t_tp_comm + r.t_pp_comm + r.t_bubble + r.t_dp_exposed + r.t_optimizer,
                r.t_step, 1e-12, 0);
    CHECK_EQ_INT(8, r.micro_batches); /* 64 / (4 x 2) */
    CHECK_CLOSE((2.0 - 1) / 8 * (r.t_gemm + r.t_elementwise + r.t_tp_comm + r.t_pp_comm), r.t_bubble, 1e-12, 0);
    CHECK_CLOSE(r.t_dp_comm, r.t_dp_exposed, 0, 0); /* no overlap asked */

    /* DP ring: 4 ranks at stride tp = 2 on nodes of 4 GPUs: 2 per node, 2 nodes; bus
     * bandwidth min(NVLink, 2 x IB) with efficiencies; all-reduce: 6 steps, 2 of them between
     * nodes; gradient bytes = parameters on this GPU x 2. */
    double n = 4, steps = 6, inter = 2;
    double bw = fmin(100e9 * hw.nvlink_eff, 2 * 10e9 * hw.ib_eff);
    double ar = hw.lat_base_s + (steps - inter) * hw.lat_intra_s + inter * hw.lat_inter_s +
                2 * (n - 1) / n * r.params_per_gpu * 2 / bw;
    CHECK_CLOSE(ar, r.t_dp_comm, 1e-12, 0);

    /* TP collectives, one pipeline stage (pp = 1 to keep both ends on one GPU): per micro-batch
     * 4 all-reduces a layer of (b, s, h) bf16, one for the embedding, one for the output layer's
     * input gradient, and two of the loss statistics: (b, s) and (b, s, 2) fp32; 2 ranks
     * inside a node. Bus bytes: an all-reduce over 2 ranks sends its buffer's size. */
    L = layout(8, 64, 2, 1, 4, 2, TPAR_RECOMPUTE_NONE);
    r = eval(&m, &hw, &L);
    double b = 2, s = 512, h = 1024, l = 8;
    double nvl = 100e9 * hw.nvlink_eff;
    double ar_act = hw.lat_base_s + 2 * hw.lat_intra_s + 2 * 0.5 * (b * s * h * 2) / nvl;
    double ar_stat = hw.lat_base_s + 2 * hw.lat_intra_s + 2 * 0.5 * (b * s * 4) / nvl;
    double ar_stat2 = hw.lat_base_s + 2 * hw.lat_intra_s + 2 * 0.5 * (b * s * 8) / nvl;
    CHECK_CLOSE(r.micro_batches * ((4 * l + 2) * ar_act + ar_stat + ar_stat2), r.t_tp_comm, 1e-12, 0);
    double act_bytes = b * s * h * 2;
    CHECK_CLOSE(r.micro_batches * ((4 * l + 2) * act_bytes + b * s * 12), r.tp_bus_bytes, 1e-12, 0);
    CHECK_CLOSE(0, r.pp_bus_bytes, 0, 0);
    CHECK_CLOSE(2 * 3.0 / 4 * r.params_per_gpu * 2, r.dp_bus_bytes, 1e-12, 0); /* dp 4: 2 passes x 3/4 */
    /* sequence parallelism: the backward gathers the QKV, fc1 and output-layer inputs again
     * (half an all-reduce's bytes each) and all-reduces the gradients of the weights that see
     * only the rank's tokens: 6h a layer, the position embeddings (s, h), the final layernorm 2h */
    L.sp = 1;
    tpar_plan_result_t rs = eval(&m, &hw, &L);
    CHECK_CLOSE(r.tp_bus_bytes + r.micro_batches * ((2 * l + 1) * act_bytes / 2 + (6 * h * l + s * h + 2 * h) * 2),
                rs.tp_bus_bytes, 1e-12, 0);
    CHECK(rs.t_tp_comm >= r.t_tp_comm);
    L.sp = 0;
    /* full recomputation repeats the forward's two all-reduces a layer */
    L.recompute = TPAR_RECOMPUTE_FULL;
    tpar_plan_result_t rf = eval(&m, &hw, &L);
    CHECK_CLOSE(r.t_tp_comm + r.micro_batches * 2 * l * ar_act, rf.t_tp_comm, 1e-12, 0);
    CHECK(rf.t_gemm > r.t_gemm);
    /* TP across nodes (tp 8 on 4-GPU nodes) is slower than inside one */
    L = layout(8, 64, 8, 1, 1, 2, TPAR_RECOMPUTE_NONE);
    tpar_plan_result_t cross = eval(&m, &hw, &L);
    tpar_plan_hw_t big = hardware("100,16,1000,100,10,8");
    tpar_plan_result_t inside = eval(&m, &big, &L);
    CHECK(cross.t_tp_comm > 1.5 * inside.t_tp_comm); /* 34 vs 78 GB/s bus bandwidth, more latency */
    CHECK(cross.comm_compute_ratio > inside.comm_compute_ratio);
    CHECK_CLOSE((cross.t_tp_comm + cross.t_pp_comm + cross.t_dp_comm) / (cross.t_gemm + cross.t_elementwise),
                cross.comm_compute_ratio, 1e-12, 0);
    /* tp 3 on 4-GPU nodes: the group of ranks 3..5 straddles two nodes, one holding a single
     * member, so the ring runs at one NIC's bandwidth; on 6-GPU nodes it stays inside one. */
    tpar_plan_model_t m12 = model("8,768,12,32768,512");
    L = layout(3, 6, 3, 1, 1, 2, TPAR_RECOMPUTE_NONE);
    tpar_plan_result_t straddle = eval(&m12, &hw, &L);
    tpar_plan_hw_t six = hardware("100,16,1000,100,10,6");
    tpar_plan_result_t aligned = eval(&m12, &six, &L);
    double M = 2 * 512, act = M * 768 * 2, stat = M * 4, lat_cross = hw.lat_base_s + 2 * hw.lat_intra_s + 2 * hw.lat_inter_s;
    double ib = 10e9 * hw.ib_eff;
    double want = straddle.micro_batches * ((4 * l + 2) * (lat_cross + 2 * 2.0 / 3 * act / ib) +
                                            2 * lat_cross + 2 * 2.0 / 3 * 3 * stat / ib);
    CHECK_CLOSE(want, straddle.t_tp_comm, 1e-12, 0);
    CHECK(straddle.t_tp_comm > 5 * aligned.t_tp_comm);
}

/* Every rule for a given layout is checked and named. */
static void test_layout_errors(void) {
    tpar_plan_model_t m = model("gpt3-175b");
    tpar_plan_hw_t hw = hardware("a100-80g");
    struct {
        tpar_plan_layout_t L;
        const char *needle;
    } cases[] = {
        {layout(64, 512, 8, 8, 2, 1, 0), "must equal --gpus"},
        {layout(40, 512, 5, 1, 8, 1, 0), "--tp 5 does not divide"},
        {layout(56, 512, 8, 7, 1, 1, 0), "--pp 7 does not divide"},
        {layout(24, 512, 8, 1, 3, 1, 0), "--global-batch 512 is not divisible by --dp 3"},
        {layout(8, 512, 8, 1, 1, 3, 0), "--micro-batch 3"},
        {layout(0, 512, 8, 1, 1, 1, 0), "--gpus"},
        {layout(8, 0, 8, 1, 1, 1, 0), "--global-batch"},
        {layout(8, 512, 8, 1, 1, 0, 0), "--micro-batch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tpar_plan_result_t r;
        tpar_err_t err = {0};
        CHECK(tpar_plan_evaluate(&m, &hw, &cases[i].L, &r, &err) == TPAR_ERR_INVALID_ARG);
        CHECK_STR_CONTAINS(err.msg, cases[i].needle);
    }
    tpar_plan_model_t odd = model("12,768,12,50257,1000");
    tpar_plan_layout_t L = layout(3, 3, 3, 1, 1, 1, 0);
    L.sp = 1;
    tpar_plan_result_t r;
    tpar_err_t err = {0};
    CHECK(tpar_plan_evaluate(&odd, &hw, &L, &r, &err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "--sp splits the sequence over --tp 3");
    L = layout(8, 512, 8, 1, 1, 1, 0);
    L.zero = 4;
    CHECK(tpar_plan_evaluate(&m, &hw, &L, &r, &err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "--zero");
}

static int layout_valid(const tpar_plan_model_t *m, const tpar_plan_layout_t *L, long long G, long long B) {
    return L->tp * L->pp * L->dp == G && m->heads % L->tp == 0 && m->layers % L->pp == 0 &&
           B % (L->dp * L->micro_batch) == 0 && L->recompute >= 0 && L->recompute <= 2;
}

/* The search returns only valid layouts, best first, and its best is the exhaustive best. */
static void test_search(void) {
    tpar_plan_model_t m = model("gpt3-175b");
    tpar_plan_hw_t hw = hardware("a100-80g");
    const long long G = 256, B = 512;
    tpar_plan_layout_t con = layout(G, B, 0, 0, 0, 0, -1);
    tpar_plan_result_t best[20];
    int n = 0;
    long long n_valid = 0;
    tpar_err_t err = {0};
    CHECK(tpar_plan_search(&m, &hw, &con, best, 20, &n, &n_valid, &err) == TPAR_OK);
    CHECK_EQ_INT(20, n);
    for (int i = 0; i < n; i++) {
        CHECK(layout_valid(&m, &best[i].layout, G, B));
        if (i) CHECK(!best[i].fits || (best[i - 1].fits && best[i - 1].t_step <= best[i].t_step));
    }
    /* Exhaustive enumeration, written independently: count and best. */
    long long count = 0;
    double best_step = INFINITY;
    for (long long t = 1; t <= G; t++)
        for (long long p = 1; p <= G; p++)
            for (long long d = 1; d <= G; d++) {
                if (t * p * d != G || m.heads % t || m.layers % p || B % d) continue;
                for (long long b = 1; b <= B / d; b++) {
                    if ((B / d) % b) continue;
                    for (int rc = 0; rc < 3; rc++) {
                        tpar_plan_layout_t L = layout(G, B, t, p, d, b, rc);
                        tpar_plan_result_t r = eval(&m, &hw, &L);
                        count++;
                        if (r.fits && r.t_step < best_step) best_step = r.t_step;
                    }
                }
            }
    CHECK_EQ_INT(count, n_valid);
    CHECK(best[0].fits);
    CHECK_CLOSE(best_step, best[0].t_step, 0, 0);

    /* Constraints are honoured. */
    con.tp = 4;
    con.recompute = TPAR_RECOMPUTE_SELECTIVE;
    CHECK(tpar_plan_search(&m, &hw, &con, best, 20, &n, &n_valid, &err) == TPAR_OK);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(4, best[i].layout.tp);
        CHECK_EQ_INT(TPAR_RECOMPUTE_SELECTIVE, best[i].layout.recompute);
        CHECK(layout_valid(&m, &best[i].layout, G, B));
    }
    /* Bad constraints and impossible clusters are errors naming the flag. */
    con.tp = 5;
    CHECK(tpar_plan_search(&m, &hw, &con, best, 20, &n, &n_valid, &err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "--tp 5");
    con = layout(G, B, 0, 5, 0, 0, -1);
    CHECK(tpar_plan_search(&m, &hw, &con, best, 20, &n, &n_valid, &err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "--pp 5");
    con = layout(G, B, 0, 3, 0, 0, -1); /* 3 divides 96 layers but not 256 GPUs */
    CHECK(tpar_plan_search(&m, &hw, &con, best, 20, &n, &n_valid, &err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "does not divide --gpus 256");
    con = layout(7, 512, 0, 0, 0, 0, -1); /* 7 GPUs: tp 1 or 7 (no), pp 1, dp 7 does not divide 512 */
    CHECK(tpar_plan_search(&m, &hw, &con, best, 20, &n, &n_valid, &err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "no valid layout");
    con = layout(16, 512, 4, 2, 4, 0, -1);
    CHECK(tpar_plan_search(&m, &hw, &con, best, 20, &n, &n_valid, &err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "must equal --gpus 16");
}

int main(void) {
    test_parse();
    test_params();
    test_flops();
    test_activations();
    test_model_state_memory();
    test_time();
    test_layout_errors();
    test_search();
    return check_finish("test_plan");
}
