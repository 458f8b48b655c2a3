/* `tpar bench <comm|layers|gemm>`: benchmarks. Each prints a table measured in one run. */
#include <stdio.h>
#include <string.h>

#include "bench_gemm.h"
#include "bench_layers.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar bench <what> [options]\n\n"
            "  comm     collectives: time, algbw and busbw per message size (tpar bench comm --help)\n"
            "  layers   tensor-parallel layers: fwd+bwd time, comm and GEMM shares (tpar bench layers --help)\n"
            "  gemm     GEMM providers on the model's shapes: GFLOP/s, GB/s, ratio (tpar bench gemm --help)\n"
            "\nThe training benchmark (tokens/s, MFU and memory at TP=1 vs TP=2) is the program\n"
            "bench_train in the build's bench/ folder; `make bench` runs it with the others.\n");
}

int tpar_cmd_bench(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return TPAR_EXIT_USAGE;
    }
    const char *what = argv[1];
    if (!strcmp(what, "--help") || !strcmp(what, "-h")) {
        usage(stdout);
        return TPAR_EXIT_OK;
    }
    if (!strcmp(what, "comm")) return tpar_bench_comm(argc - 1, argv + 1);
    if (!strcmp(what, "layers")) return tpar_bench_layers(argc - 1, argv + 1);
    if (!strcmp(what, "gemm")) return tpar_bench_gemm(argc - 1, argv + 1);
    if (!strcmp(what, "train")) {
        tpar_cli_error("bench", "the training benchmark is the program bench_train (run `make bench`)");
        return TPAR_EXIT_USAGE;
    }
    tpar_cli_error("bench", "unknown benchmark '%s' (comm, layers or gemm)", what);
    return TPAR_EXIT_USAGE;
}
