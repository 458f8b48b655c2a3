/* `tpar info`: what this build was compiled with and what this machine offers. */
#include <stdio.h>

#include "cli.h"
#include "tpar/core.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar info\n\n"
            "Prints the build configuration (compiler, flags, BLAS, MPI, sanitizers) and this\n"
            "machine's CPU features and core count.\n");
}

static void print_cpu_features(void) {
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
    printf("\n");
#undef FEATURE
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
    print_cpu_features();
    return TPAR_EXIT_OK;
}
