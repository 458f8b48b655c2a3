/* `tpar bench comm`: collective benchmark (lands in a later step of issue #3). */
#include "cli.h"

int tpar_bench_comm(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return tpar_cli_not_yet("bench comm", "tracked as issue #3");
}
