/* `tpar bench`: benchmarks of collectives, layers and training (lands with issue #3). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int tpar_cmd_bench(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: tpar bench [options]\n\nbenchmarks of collectives, layers and training.\nNot available yet in this version (issue #3).\n");
        return TPAR_EXIT_OK;
    }
    return tpar_cli_not_yet("bench", "tracked as issue #3");
}
