/* The plan model against published measurements: Narayanan et al. 2021, "Efficient
 * Large-Scale Language Model Training on GPU Clusters Using Megatron-LM", Table 1, on
 * A100-80GB (seq 2048, vocab 51200, full activation recomputation). The reported TFLOP/s
 * count recomputation (96 B s l h^2 (1 + s/6h + V/16lh) per iteration), as our
 * tflops_per_gpu does. The model's constants come from hardware data sheets and published
 * kernel/NCCL efficiencies (src/plan/spec.c, docs/PLAN.md), not from these rows.
 *
 * Two settings are the paper's software, not fitted: full recomputation, and the
 * data-parallel all-reduce after the pipeline flush (Megatron-LM of 2021 reduced gradients
 * in train_step after forward_backward, without overlap: dp_overlap = 0). The micro-batch
 * size is not published; the planner picks the fastest that fits. */
#include <math.h>

#include "check.h"
#include "tpar/plan.h"

/* Within 15% of the published figure (issue #8). */
#define TOLERANCE 0.15

int main(void) {
    static const struct {
        const char *name, *model;
        long long gpus, batch, tp, pp;
        double published;
    } rows[] = {
        {"1.7B", "24,2304,24,51200,2048", 32, 512, 1, 1, 137},
        {"18.4B", "40,6144,48,51200,2048", 256, 1024, 8, 1, 135},
        {"145.6B", "80,12288,96,51200,2048", 1536, 2304, 8, 8, 148},
    };
    tpar_plan_hw_t hw;
    tpar_err_t err = {0};
    CHECK(tpar_plan_hw_parse("a100-80g", &hw, &err) == TPAR_OK);
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        tpar_plan_model_t m;
        CHECK(tpar_plan_model_parse(rows[i].model, &m, &err) == TPAR_OK);
        tpar_plan_layout_t L = {0};
        L.gpus = rows[i].gpus;
        L.global_batch = rows[i].batch;
        L.tp = rows[i].tp;
        L.pp = rows[i].pp;
        L.dp = rows[i].gpus / (rows[i].tp * rows[i].pp);
        L.recompute = TPAR_RECOMPUTE_FULL;
        L.dp_overlap = 0;
        tpar_plan_result_t best[1];
        int n = 0;
        if (!CHECK(tpar_plan_search(&m, &hw, &L, best, 1, &n, NULL, &err) == TPAR_OK && n == 1)) {
            fprintf(stderr, "  %s\n", err.msg);
            continue;
        }
        const tpar_plan_result_t *r = &best[0];
        double rel = r->tflops_per_gpu / rows[i].published - 1;
        printf("%-7s tp %lld pp %lld dp %lld micro-batch %lld: predicted %.1f TFLOP/s per GPU, published %.0f "
               "(%+.1f%%), MFU %.1f%%, %.1f GB per GPU\n",
               rows[i].name, r->layout.tp, r->layout.pp, r->layout.dp, r->layout.micro_batch, r->tflops_per_gpu,
               rows[i].published, 100 * rel, 100 * r->mfu, r->mem_total / 1e9);
        CHECK(r->fits); /* the paper ran them */
        CHECK_CLOSE(rows[i].published, r->tflops_per_gpu, TOLERANCE, 0);
    }
    return check_finish("test_plan_published");
}
