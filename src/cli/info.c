/* `tpar info`: what this build was compiled with and what this machine offers: CPU features,
 * the measured clock and FMA peak, the rank's threads, and the GEMM provider chosen for each
 * shape class with the rates measured to choose it. */
#include <stdio.h>

#include "cli.h"
#include "tpar/core.h"
#include "tpar/kernels.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar info\n\n"
            "Prints the build configuration (compiler, flags, BLAS, MPI, sanitizers), this machine's\n"
            "CPU features and core count, the threads a rank would use (TPAR_THREADS, else cores /\n"
            "local ranks), the measured clock and theoretical FMA peak, and the GEMM provider chosen\n"
            "for each shape class (GPT-2 small shapes; TPAR_GEMM=auto|dnnl|openblas|gemv) with the rates\n"
            "measured to choose it and the per-core peak of each provider on a 1024^3 square.\n"
            "Takes a few seconds: it measures.\n");
}

static void print_cpu(void) {
    tpar_cpu_info_t ci;
    tpar_cpu_info(&ci, 1);
    /* __builtin_cpu_supports takes only string literals, hence the macro. */
#define FEATURE(name) \
    if (__builtin_cpu_supports(name)) printf(" %s", name)
    __builtin_cpu_init();
    printf("cpu features:");
    FEATURE("sse4.2");
    FEATURE("avx");
    FEATURE("avx2");
    FEATURE("fma");
    FEATURE("avx512f");
#undef FEATURE
    if (ci.avx512_bf16) printf(" avx512_bf16");
    if (ci.amx_tile) printf(" amx_tile");
    if (ci.amx_bf16) printf(" amx_bf16");
    printf("\n");
    printf("onednn isa:   %s\n", ci.dnnl_isa);
    if (ci.peak_flops_per_core > 0)
        printf("fma peak:     %.1f GFLOP/s per core = %d floats x 2 x %d FMA units x %.2f GHz (clock: dependent adds;"
               " units: %.1f GFLOP/s of independent FMAs measured)\n",
               ci.peak_flops_per_core / 1e9, ci.vector_floats, ci.fma_units, ci.clock_hz / 1e9,
               ci.fma_flops_per_s / 1e9);
}

/* Decides every class on GPT-2 small shapes (forward QKV 768->2304, its two gradients) at 4,
 * 256 and 2048 tokens, then prints the choices and the rates behind them. */
static int print_gemm(void) {
    tpar_err_t err = {0};
    int threads;
    if (tpar_kernels_rank_threads(&threads, &err) || tpar_kernels_set_threads(threads, &err) || tpar_gemm_init(&err)) {
        tpar_cli_error("info", "%s", err.msg);
        return TPAR_EXIT_FAIL;
    }
    printf("threads:      %d per rank (TPAR_THREADS, else usable cores %d / local ranks)\n", threads,
           tpar_kernels_usable_cores());
    tpar_gemm_ctx_t *g = tpar_gemm_default();
    static const int tokens[] = {4, 256, 2048};
    for (int i = 0; i < 3; i++) {
        int n = tokens[i];
        tpar_gemm_choice(g, 0, 1, n, 2304, 768); // forward: out (n, 2304) = x (n, 768) W^T
        tpar_gemm_choice(g, 0, 0, n, 768, 2304); // input grad: dx (n, 768) += dy (n, 2304) W
        tpar_gemm_choice(g, 1, 0, 2304, 768, n); // weight grad: dW (2304, 768) += dy^T x
    }
    tpar_gemm_class_t cls[TPAR_GEMM_CLASSES];
    tpar_gemm_classes(g, cls);
    printf("gemm:         TPAR_GEMM=%s; per shape class, measured at its first call, on one thread (ranks run %d):\n",
           tpar_gemm_provider_name(tpar_gemm_ctx_force(g)), threads);
    printf("  %-26s %-18s", "class", "probe MxNxK");
    for (int p = 1; p < TPAR_GEMM_N_PROVIDERS; p++) printf(" %10s", tpar_gemm_provider_name((tpar_gemm_provider_t)p));
    printf("  chosen\n");
    for (int c = 0; c < TPAR_GEMM_CLASSES; c++) {
        if (!cls[c].decided) continue;
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%dx%d", cls[c].M, cls[c].N, cls[c].K);
        printf("  %-26s %-18s", cls[c].name, shape);
        for (int p = 1; p < TPAR_GEMM_N_PROVIDERS; p++)
            if (cls[c].gflops[p] > 0) printf(" %10.1f", cls[c].gflops[p]);
            else printf(" %10s", "-");
        printf("  %s\n", tpar_gemm_provider_name(cls[c].chosen));
    }
    if (tpar_gemm_ctx_force(g) != TPAR_GEMM_AUTO) printf("  (forced: nothing measured)\n");
    printf("  (GFLOP/s on the class's probe shape, weights in cache; auto keeps oneDNN on AVX2+ CPUs, and gemv for\n"
           "  1-8 row forwards, which stream their weights from memory, unless another is >= 1.3x faster; measured on one thread)\n");
    tpar_gemm_peak_t pk;
    if (tpar_gemm_peak_flops(1024, 2, &pk, &err)) {
        tpar_cli_error("info", "%s", err.msg);
        return TPAR_EXIT_FAIL;
    }
    printf("gemm peak:    1024^3 on one core: openblas %.1f, dnnl %.1f GFLOP/s (the MFU reference: the best, x cores)\n",
           pk.flops[TPAR_GEMM_OPENBLAS] / 1e9, pk.flops[TPAR_GEMM_DNNL] / 1e9);
    return TPAR_EXIT_OK;
}

int tpar_cmd_info(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = tpar_cli_getopt("info", argc, argv, "h", opts)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return TPAR_EXIT_OK;
        }
        return TPAR_EXIT_USAGE;
    }
    if (optind < argc) {
        tpar_cli_error("info", "unexpected argument '%s'", argv[optind]);
        return TPAR_EXIT_USAGE;
    }
    tpar_build_info_t bi;
    tpar_build_info(&bi);
    printf("tpar %s\n", bi.version);
    printf("build type:   %s\n", bi.build_type);
    printf("compiler:     %s\n", bi.compiler);
    printf("flags:        %s\n", bi.c_flags);
    printf("sanitizers:   %s\n", bi.sanitize[0] ? bi.sanitize : "none");
    printf("blas:         %s\n", bi.blas);
    printf("mpi backend:  %s%s%s\n", bi.with_mpi ? "yes (" : "no", bi.mpi_library,
           bi.with_mpi ? ")" : "");
    printf("cores:        %d online\n", tpar_num_cores());
    print_cpu();
    fflush(stdout);
    return print_gemm();
}
