/* bench_train: training-step throughput of gpt2-124m shapes at TP=1 and TP=2, side by side.
 *
 * Started by hand it is the driver: it measures the best per-core fp32 GEMM rate of any
 * provider on a 1024^3 square (tpar_gemm_peak_flops, the MFU reference, measured in this run
 * because the machine drifts), then for each shape runs itself
 * under `tpar launch -n TP` as the ranks, and prints a table with tokens/s, MFU, per-rank
 * parameter + gradient + AdamW memory and peak RSS, and the TP=2 / TP=1 ratios.
 * A step here is what `tpar train` does per micro-batch on one TP group: forward, backward,
 * AdamW over the rank's flat buffers (random tokens; no DP, no data loading).
 *
 * usage: bench_train [--quick]     (--quick: only B=4, T=64) */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tpar/comm.h"
#include "tpar/kernels.h"
#include "tpar/model.h"
#include "tpar/train.h"

static void die(const char *what, const tpar_err_t *err) {
    fprintf(stderr, "bench_train: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

/* ---- one rank ------------------------------------------------------------------------------- */

static int rank_main(int B, int T, int V, int steps) {
    tpar_err_t err = {0};
    tpar_comm_t *world = NULL;
    int threads = 1; // this rank's share of the cores (tpar launch sets TPAR_THREADS)
    if (tpar_comm_init(NULL, &world, &err) || tpar_kernels_rank_threads(&threads, &err) ||
        tpar_kernels_set_threads(threads, &err) || tpar_gemm_init(&err))
        die("init", &err);
    tpar_gpt2_config_t cfg;
    tpar_gpt2_preset("gpt2-124m", &cfg, NULL);
    cfg.vocab_size = V;
    tpar_gpt2_t *m = NULL;
    if (tpar_gpt2_new(&cfg, world, B, T, 0, &m, &err)) die("model", &err);
    tpar_gpt2_init(m, 1);
    float *mom = tpar_calloc_aligned(m->num_params, sizeof(float)), *var = tpar_calloc_aligned(m->num_params, sizeof(float));
    int *in = malloc((size_t)B * T * sizeof(int)), *tg = malloc((size_t)B * T * sizeof(int));
    if (!mom || !var || !in || !tg) die("out of memory", NULL);
    for (int i = 0; i < B * T; i++) in[i] = (int)(tpar_rng_u32(5, (uint64_t)i) % (unsigned)V), tg[i] = (int)(tpar_rng_u32(6, (uint64_t)i) % (unsigned)V);
    tpar_adamw_t a = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f};
    double t_total = 0;
    for (int s = 0; s <= steps; s++) { // step 0 warms up
        tpar_comm_barrier(world);
        double t0 = tpar_now();
        float loss;
        tpar_gpt2_zero_grad(m);
        if (tpar_gpt2_forward(m, in, tg, B, T, 0, &loss, &err) ||
            tpar_gpt2_backward(m, in, tg, 1.0f, NULL, NULL, &err) ||
            tpar_adamw_update(m->params, m->grads, mom, var, m->num_params, &a, s + 1, &err))
            die("step", &err);
        double dt = tpar_now() - t0;
        tpar_comm_allreduce(world, TPAR_IN_PLACE, &dt, 1, TPAR_F64, TPAR_MAX);
        if (s > 0) t_total += dt;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss * 1024.0;
    tpar_comm_allreduce(world, TPAR_IN_PLACE, &rss, 1, TPAR_F64, TPAR_MAX);
    if (tpar_comm_rank(world) == 0)
        printf("RESULT %.3f %.0f %.0f\n", (double)B * T * steps / t_total, 4.0 * 4.0 * (double)m->num_params, rss);
    tpar_gpt2_free(m);
    tpar_free(mom), tpar_free(var), free(in), free(tg);
    tpar_comm_free(world);
    return 0;
}

/* ---- the driver -------------------------------------------------------------------------------- */

typedef struct {
    double tps, mem, rss;
} result_t;

static result_t run_ranks(const char *self, int tp, int B, int T, int V, int steps) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "TPAR_BENCH_RANK=1 '%s' launch -n %d -- '%s' %d %d %d %d", TPAR_CLI, tp, self, B, T, V,
             steps);
    FILE *p = popen(cmd, "r");
    result_t r = {NAN, NAN, NAN};
    char line[256];
    while (p && fgets(line, sizeof line, p))
        if (!strncmp(line, "RESULT ", 7)) sscanf(line + 7, "%lf %lf %lf", &r.tps, &r.mem, &r.rss);
    if (!p || pclose(p) != 0) fprintf(stderr, "bench_train: '%s' failed\n", cmd);
    return r;
}

int main(int argc, char **argv) {
    if (getenv("TPAR_BENCH_RANK") && argc == 5)
        return rank_main(atoi(argv[1]), atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    tpar_err_t err = {0};
    tpar_gemm_peak_t pk;
    if (tpar_gemm_peak_flops(1024, 3, &pk, &err)) die("peak", &err);
    double peak = pk.best;
    int cores = tpar_kernels_usable_cores();
    tpar_gpt2_config_t cfg;
    tpar_gpt2_preset("gpt2-124m", &cfg, NULL);
    printf("bench_train: gpt2-124m shapes (L=12, C=768, 12 heads), forward + backward + AdamW per step\n");
    printf("peak GEMM 1024^3: %.1f GFLOP/s per core (%s); %d cores, all used at TP1 and TP2; MFU = model FLOP/s / "
           "(peak x cores)\n\n", peak / 1e9, tpar_gemm_provider_name(pk.best_provider), cores);
    printf("%-6s %-4s %-6s | %10s %7s %11s %11s | %10s %7s %11s %11s | %7s %7s\n", "vocab", "B", "T", "TP1 tok/s",
           "MFU", "param+opt", "peak RSS", "TP2 tok/s", "MFU", "param+opt", "peak RSS", "speedup", "mem");
    int shapes[2][2] = {{4, 64}, {8, 256}}, vocabs[2] = {256, 50304};
    for (int s = 0; s < (quick ? 1 : 2); s++)
        for (int v = 0; v < 2; v++) {
            int B = shapes[s][0], T = shapes[s][1], V = vocabs[v], steps = s == 0 ? 3 : 1;
            cfg.vocab_size = V;
            double fpt = tpar_gpt2_flops_per_token(&cfg, T);
            result_t r1 = run_ranks(argv[0], 1, B, T, V, steps), r2 = run_ranks(argv[0], 2, B, T, V, steps);
            // tpar launch gives each of TP ranks cores / TP threads (at least 1)
            double used1 = tpar_kernels_share(cores, 1), used2 = 2 * tpar_kernels_share(cores, 2);
            double mfu1 = r1.tps * fpt / (peak * used1), mfu2 = r2.tps * fpt / (peak * used2);
            printf("%-6d %-4d %-6d | %10.1f %6.1f%% %9.1f MB %8.1f MB | %10.1f %6.1f%% %9.1f MB %8.1f MB | %6.2fx %6.1f%%\n",
                   V, B, T, r1.tps, mfu1 * 100, r1.mem / 1e6, r1.rss / 1e6, r2.tps, mfu2 * 100, r2.mem / 1e6,
                   r2.rss / 1e6, r2.tps / r1.tps, r2.mem / r1.mem * 100);
            fflush(stdout);
        }
    printf("\nspeedup = TP2 / TP1 tokens/s (target >= 1.8x); mem = per-rank parameter + gradient + AdamW bytes at\n"
           "TP2 / TP1 (target <= 55%%); MFU target at TP2 >= 50%%. The machine is shared: compare within a row.\n");
    return 0;
}
