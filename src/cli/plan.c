/* `tpar plan`: memory and step-time model for training a GPT on a cluster
 * (tensor x pipeline x data parallel). The model lives in src/plan; this file parses
 * options, prints the answer as text or JSON, and picks exit codes. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "tpar/plan.h"

#define CMD "plan"
enum { MAX_TOP = 50 };

static void usage(FILE *f) {
    fprintf(f,
"usage: tpar plan --model M --gpus N --gpu HW --global-batch B [options]\n"
"\n"
"Predicts per-GPU memory and step time for training a GPT split tensor x pipeline x data\n"
"parallel (Megatron-LM style), and the resulting TFLOP/s per GPU and MFU. Without --tp,\n"
"--pp and --dp it searches every valid layout and prints the best few. Formulas and the\n"
"source of every constant: docs/PLAN.md.\n"
"\n"
"required:\n"
"  --model M           gpt3-175b | gpt2-124m | LAYERS,HIDDEN,HEADS,VOCAB,SEQ\n"
"                      (e.g. 24,2304,24,51200,2048; HIDDEN divisible by HEADS)\n"
"  --gpus N            number of GPUs\n"
"  --gpu HW            a100-80g | h100-80g | cpu-core | TFLOPS,MEM-GB,HBM-GBS,NVLINK-GBS,IB-GBS,GPUS-PER-NODE\n"
"                      (TFLOPS: peak for the chosen precision; bandwidths per GPU and\n"
"                      direction in GB/s; e.g. 312,80,2039,300,25,8)\n"
"  --global-batch B    sequences per optimizer step\n"
"\n"
"layout (searched when absent):\n"
"  --tp T              tensor-parallel size; must divide the heads\n"
"  --pp P              pipeline-parallel stages (1F1B schedule); must divide the layers\n"
"  --dp D              data-parallel size; tp x pp x dp must equal --gpus\n"
"  --micro-batch b     sequences per micro-batch; dp x b must divide --global-batch\n"
"  --recompute R       none | selective | full activation recomputation (default: the\n"
"                      fastest that fits)\n"
"\n"
"options:\n"
"  --sp                sequence parallelism (layernorm/dropout split over the TP ranks)\n"
"  --zero Z            ZeRO stage 0..3: shard optimizer state (1), + gradients (2),\n"
"                      + weights (3) over the data-parallel ranks (default 0)\n"
"  --precision P       bf16 (mixed: bf16 weights/grads, fp32 master + Adam, default) or\n"
"                      fp32 (fp32 weights, grads and AdamW m, v: tpar's own CPU training)\n"
"  --dp-overlap on|off overlap the DP gradient reduction with the last backward (default\n"
"                      on; Megatron-LM 2021 reduced after the pipeline flush: off)\n"
"  --gemm-eff F        fraction of peak FLOP/s large GEMMs reach (default 0.80)\n"
"  --top K             layouts shown by a search (default 5, at most %d)\n"
"  --json              print one JSON object instead of text\n"
"  -h, --help          this help\n"
"\n"
"JSON fields: model, gpu, layout {gpus, tp, pp, dp, micro_batch, micro_batches, sp,\n"
"recompute, zero, precision, dp_overlap}, params, memory_gb_per_gpu {weights, gradients,\n"
"optimizer, activations, comm_buffers, total, usable}, fits, time_s {gemm, elementwise,\n"
"tp_comm, pp_comm, pipeline_bubble, dp_comm, dp_exposed, optimizer}, step_s,\n"
"tflops_per_gpu (hardware FLOPs incl. recomputation), mfu (model FLOPs),\n"
"comm_compute_ratio, comm_gb_per_gpu {tp, pp, dp} (bytes each GPU sends per step, as\n"
"ring collectives count them), and for a search: valid_layouts and top (the best layouts).\n"
"GB = 1e9 bytes. Exit codes: 0 answered (check fits), 2 bad input, 1 other failure.\n"
"\n"
"examples:\n"
"  tpar plan --model gpt3-175b --gpus 1024 --gpu a100-80g --global-batch 1536\n"
"  tpar plan --model 80,12288,96,51200,2048 --gpus 1536 --gpu a100-80g --global-batch 2304 \\\n"
"            --tp 8 --pp 8 --dp 24 --recompute full --dp-overlap off\n",
            MAX_TOP);
}

/* ---- text output ------------------------------------------------------------------- */

static void print_layout_line(const tpar_plan_result_t *r) {
    const tpar_plan_layout_t *L = &r->layout;
    printf("layout: tp %lld x pp %lld x dp %lld, micro-batch %lld (%lld per pipeline per step), sp %s, "
           "recompute %s, zero %d, %s\n",
           L->tp, L->pp, L->dp, L->micro_batch, r->micro_batches, L->sp ? "on" : "off",
           tpar_plan_recompute_str(L->recompute), L->zero, tpar_plan_precision_str(L->precision));
}

static void print_detail(const tpar_plan_model_t *m, const tpar_plan_hw_t *hw, const tpar_plan_result_t *r) {
    const tpar_plan_layout_t *L = &r->layout;
    double peak = L->precision == TPAR_PRECISION_FP32 ? hw->peak_flops_fp32 : hw->peak_flops_bf16;
    printf("model: %s: %lld layers, hidden %lld, %lld heads, vocab %lld, seq %lld: %.3f B parameters\n",
           m->name, m->layers, m->hidden, m->heads, m->vocab, m->seq, r->params_total / 1e9);
    printf("cluster: %lld x %s (%lld per node): %.4g TFLOP/s %s peak, GEMMs at %.0f%% of it; HBM %.0f GB/s, "
           "NVLink %.0f GB/s, IB %.0f GB/s per GPU\n",
           L->gpus, hw->name, hw->gpus_per_node, peak / 1e12, tpar_plan_precision_str(L->precision),
           100 * hw->gemm_eff, hw->hbm_bw / 1e9, hw->nvlink_bw / 1e9, hw->ib_bw / 1e9);
    print_layout_line(r);
    printf("\nmemory per GPU (most loaded stage)      GB\n");
    printf("  weights                        %9.2f   (%.3f B parameters on this GPU)\n", r->mem_weights / 1e9,
           r->params_per_gpu / 1e9);
    printf("  gradients                      %9.2f\n", r->mem_grads / 1e9);
    printf("  optimizer state (zero %d)       %9.2f\n", L->zero, r->mem_optimizer / 1e9);
    printf("  activations                    %9.2f\n", r->mem_activations / 1e9);
    printf("  communication buffers          %9.2f\n", r->mem_comm / 1e9);
    printf("  total                          %9.2f   of %.2f usable: %s\n", r->mem_total / 1e9,
           r->mem_usable / 1e9, r->fits ? "fits" : "DOES NOT FIT");
    double st = r->t_step;
    printf("\nstep time                              s     share\n");
#define ROW(label, v) printf("  %-28s %9.3f  %6.1f%%\n", label, v, 100 * (v) / st)
    ROW("GEMM compute", r->t_gemm);
    ROW("element-wise (memory-bound)", r->t_elementwise);
    ROW("TP collectives", r->t_tp_comm);
    ROW("pipeline sends", r->t_pp_comm);
    ROW("pipeline bubble", r->t_bubble);
    ROW("DP reduction, exposed", r->t_dp_exposed);
    ROW("optimizer", r->t_optimizer);
#undef ROW
    printf("  %-28s %9.3f\n", "step", st);
    printf("  (DP reduction in all %.3f s, %s)\n", r->t_dp_comm,
           L->dp_overlap ? "overlapped with backward where possible" : "not overlapped");
    printf("  (sent per GPU per step: TP %.4g GB, PP %.4g GB, DP %.4g GB)\n", r->tp_bus_bytes / 1e9,
           r->pp_bus_bytes / 1e9, r->dp_bus_bytes / 1e9);
    printf("\nthroughput: %.4g TFLOP/s per GPU (hardware FLOPs, recomputation included), MFU %.1f%%, "
           "communication/computation %.3f\n",
           r->tflops_per_gpu, 100 * r->mfu, r->comm_compute_ratio);
}

static void print_table(const tpar_plan_result_t *r, int n, long long n_valid) {
    printf("best %d of %lld valid layouts:\n", n, n_valid);
    printf("  #   tp   pp    dp   mb  recompute  mem GB  fits   step s  TFLOP/s   MFU  comm/comp\n");
    for (int i = 0; i < n; i++) {
        const tpar_plan_layout_t *L = &r[i].layout;
        printf("  %-2d %4lld %4lld %5lld %4lld  %-9s %7.1f  %-4s %8.3f %8.1f %5.1f%% %9.3f\n", i + 1, L->tp, L->pp,
               L->dp, L->micro_batch, tpar_plan_recompute_str(L->recompute), r[i].mem_total / 1e9,
               r[i].fits ? "yes" : "NO", r[i].t_step, r[i].tflops_per_gpu, 100 * r[i].mfu,
               r[i].comm_compute_ratio);
    }
    printf("\n");
}

/* ---- JSON output ------------------------------------------------------------------- */

static void json_layout(const tpar_plan_result_t *r) {
    const tpar_plan_layout_t *L = &r->layout;
    printf("{\"gpus\": %lld, \"tp\": %lld, \"pp\": %lld, \"dp\": %lld, \"micro_batch\": %lld, "
           "\"micro_batches\": %lld, \"global_batch\": %lld, \"sp\": %s, \"recompute\": \"%s\", "
           "\"zero\": %d, \"precision\": \"%s\", \"dp_overlap\": %s}",
           L->gpus, L->tp, L->pp, L->dp, L->micro_batch, r->micro_batches, L->global_batch,
           L->sp ? "true" : "false", tpar_plan_recompute_str(L->recompute), L->zero,
           tpar_plan_precision_str(L->precision), L->dp_overlap ? "true" : "false");
}

static void json_num(const char *key, double v, const char *sep) { printf("\"%s\": %.6g%s", key, v, sep); }

static void json_result_fields(const tpar_plan_result_t *r) {
    printf("\"layout\": ");
    json_layout(r);
    printf(", \"memory_gb_per_gpu\": {");
    json_num("weights", r->mem_weights / 1e9, ", ");
    json_num("gradients", r->mem_grads / 1e9, ", ");
    json_num("optimizer", r->mem_optimizer / 1e9, ", ");
    json_num("activations", r->mem_activations / 1e9, ", ");
    json_num("comm_buffers", r->mem_comm / 1e9, ", ");
    json_num("total", r->mem_total / 1e9, ", ");
    json_num("usable", r->mem_usable / 1e9, "}, ");
    printf("\"fits\": %s, \"time_s\": {", r->fits ? "true" : "false");
    json_num("gemm", r->t_gemm, ", ");
    json_num("elementwise", r->t_elementwise, ", ");
    json_num("tp_comm", r->t_tp_comm, ", ");
    json_num("pp_comm", r->t_pp_comm, ", ");
    json_num("pipeline_bubble", r->t_bubble, ", ");
    json_num("dp_comm", r->t_dp_comm, ", ");
    json_num("dp_exposed", r->t_dp_exposed, ", ");
    json_num("optimizer", r->t_optimizer, "}, ");
    json_num("step_s", r->t_step, ", ");
    json_num("tflops_per_gpu", r->tflops_per_gpu, ", ");
    json_num("mfu", r->mfu, ", ");
    json_num("comm_compute_ratio", r->comm_compute_ratio, ", ");
    printf("\"comm_gb_per_gpu\": {");
    json_num("tp", r->tp_bus_bytes / 1e9, ", ");
    json_num("pp", r->pp_bus_bytes / 1e9, ", ");
    json_num("dp", r->dp_bus_bytes / 1e9, "}, ");
    json_num("params_per_gpu", r->params_per_gpu, ", ");
    json_num("model_flops_per_step", r->model_flops, ", ");
    json_num("hardware_flops_per_step", r->hardware_flops, "");
}

static void print_json(const tpar_plan_model_t *m, const tpar_plan_hw_t *hw, const tpar_plan_result_t *r,
                       int n, long long n_valid, int searched) {
    printf("{\"model\": {\"name\": \"%s\", \"layers\": %lld, \"hidden\": %lld, \"heads\": %lld, \"vocab\": %lld, "
           "\"seq\": %lld}, ",
           m->name, m->layers, m->hidden, m->heads, m->vocab, m->seq);
    printf("\"gpu\": {\"name\": \"%s\", \"peak_tflops\": %.6g, \"mem_gb\": %.6g, \"hbm_gbs\": %.6g, "
           "\"nvlink_gbs\": %.6g, \"ib_gbs\": %.6g, \"gpus_per_node\": %lld, \"gemm_eff\": %.6g}, ",
           hw->name,
           (r->layout.precision == TPAR_PRECISION_FP32 ? hw->peak_flops_fp32 : hw->peak_flops_bf16) / 1e12,
           hw->mem_bytes / 1e9, hw->hbm_bw / 1e9, hw->nvlink_bw / 1e9, hw->ib_bw / 1e9, hw->gpus_per_node,
           hw->gemm_eff);
    json_num("params", r->params_total, ", ");
    json_result_fields(&r[0]);
    if (searched) {
        printf(", \"valid_layouts\": %lld, \"top\": [", n_valid);
        for (int i = 0; i < n; i++) {
            printf("%s{", i ? ", " : "");
            json_result_fields(&r[i]);
            printf("}");
        }
        printf("]");
    }
    printf("}\n");
}

/* ---- options ----------------------------------------------------------------------- */

static int parse_choice(const char *opt, const char *val, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++) {
        if (!strcmp(val, names[i])) {
            *out = i;
            return 0;
        }
    }
    char list[128] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < n) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    tpar_cli_error(CMD, "%s expects one of %s, got '%s'", opt, list, val);
    return -1;
}

int tpar_cmd_plan(int argc, char **argv) {
    enum { O_MODEL = 256, O_GPUS, O_GPU, O_BATCH, O_TP, O_PP, O_DP, O_MB, O_SP, O_RECOMPUTE, O_ZERO,
           O_PRECISION, O_OVERLAP, O_GEMM_EFF, O_TOP, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, NULL, O_MODEL},         {"gpus", required_argument, NULL, O_GPUS},
        {"gpu", required_argument, NULL, O_GPU},             {"global-batch", required_argument, NULL, O_BATCH},
        {"tp", required_argument, NULL, O_TP},               {"pp", required_argument, NULL, O_PP},
        {"dp", required_argument, NULL, O_DP},               {"micro-batch", required_argument, NULL, O_MB},
        {"sp", no_argument, NULL, O_SP},                     {"recompute", required_argument, NULL, O_RECOMPUTE},
        {"zero", required_argument, NULL, O_ZERO},           {"precision", required_argument, NULL, O_PRECISION},
        {"dp-overlap", required_argument, NULL, O_OVERLAP},  {"gemm-eff", required_argument, NULL, O_GEMM_EFF},
        {"top", required_argument, NULL, O_TOP},             {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},                    {NULL, 0, NULL, 0}};
    static const char *const recompute_names[] = {"none", "selective", "full"};
    static const char *const precision_names[] = {"bf16", "fp32"};
    static const char *const onoff_names[] = {"off", "on"};
    const char *model_spec = NULL, *gpu_spec = NULL;
    tpar_plan_layout_t L = {0};
    L.recompute = -1;
    L.dp_overlap = 1;
    long long v, top = 5;
    double gemm_eff = 0;
    int json = 0, choice, c;
    while ((c = tpar_cli_getopt(CMD, argc, argv, "h", opts)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return TPAR_EXIT_OK;
        case O_MODEL: model_spec = optarg; break;
        case O_GPU: gpu_spec = optarg; break;
#define INTOPT(code, name, lo, hi, dst)                                                   \
    case code:                                                                            \
        if (tpar_cli_int(CMD, name, optarg, lo, hi, &v)) return TPAR_EXIT_USAGE;           \
        dst = v;                                                                          \
        break;
        INTOPT(O_GPUS, "--gpus", 1, 1048576, L.gpus)
        INTOPT(O_BATCH, "--global-batch", 1, 100000000, L.global_batch)
        INTOPT(O_TP, "--tp", 1, 1048576, L.tp)
        INTOPT(O_PP, "--pp", 1, 1048576, L.pp)
        INTOPT(O_DP, "--dp", 1, 1048576, L.dp)
        INTOPT(O_MB, "--micro-batch", 1, 100000000, L.micro_batch)
        INTOPT(O_ZERO, "--zero", 0, 3, L.zero)
        INTOPT(O_TOP, "--top", 1, MAX_TOP, top)
#undef INTOPT
        case O_SP: L.sp = 1; break;
        case O_JSON: json = 1; break;
        case O_RECOMPUTE:
            if (parse_choice("--recompute", optarg, recompute_names, 3, &choice)) return TPAR_EXIT_USAGE;
            L.recompute = choice;
            break;
        case O_PRECISION:
            if (parse_choice("--precision", optarg, precision_names, 2, &choice)) return TPAR_EXIT_USAGE;
            L.precision = (tpar_precision_t)choice;
            break;
        case O_OVERLAP:
            if (parse_choice("--dp-overlap", optarg, onoff_names, 2, &choice)) return TPAR_EXIT_USAGE;
            L.dp_overlap = choice;
            break;
        case O_GEMM_EFF:
            if (tpar_cli_double(CMD, "--gemm-eff", optarg, 0.01, 1.0, &gemm_eff)) return TPAR_EXIT_USAGE;
            break;
        default: return TPAR_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        tpar_cli_error(CMD, "unexpected argument '%s'", argv[optind]);
        return TPAR_EXIT_USAGE;
    }
    const char *missing = !model_spec ? "--model" : !L.gpus ? "--gpus" : !gpu_spec ? "--gpu"
                        : !L.global_batch ? "--global-batch" : NULL;
    if (missing) {
        tpar_cli_error(CMD, "%s is required", missing);
        fprintf(stderr, "hint: 'tpar plan --help' lists the options, with examples\n");
        return TPAR_EXIT_USAGE;
    }
    tpar_err_t err = {0};
    tpar_plan_model_t m;
    tpar_plan_hw_t hw;
    if (tpar_plan_model_parse(model_spec, &m, &err) != TPAR_OK ||
        tpar_plan_hw_parse(gpu_spec, &hw, &err) != TPAR_OK) {
        tpar_cli_error(CMD, "%s", err.msg);
        return TPAR_EXIT_USAGE;
    }
    if (gemm_eff > 0) hw.gemm_eff = gemm_eff;

    /* A search also serves a fixed layout whose micro-batch or recomputation is left free. */
    int searched = !L.tp || !L.pp || !L.dp;
    tpar_plan_result_t best[MAX_TOP];
    int n = 0;
    long long n_valid = 0;
    tpar_status st = tpar_plan_search(&m, &hw, &L, best, (int)top, &n, &n_valid, &err);
    if (st != TPAR_OK) {
        tpar_cli_error(CMD, "%s", err.msg);
        return st == TPAR_ERR_INVALID_ARG ? TPAR_EXIT_USAGE : TPAR_EXIT_FAIL;
    }
    if (json) {
        print_json(&m, &hw, best, n, n_valid, searched);
        return TPAR_EXIT_OK;
    }
    if (searched) print_table(best, n, n_valid);
    if (!best[0].fits)
        printf("note: no valid layout fits in %.2f GB per GPU; the one needing least memory:\n\n",
               best[0].mem_usable / 1e9);
    print_detail(&m, &hw, &best[0]);
    return TPAR_EXIT_OK;
}
