/* `tpar generate`: sample text with tensor-parallel inference (lands with issue #5). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int tpar_cmd_generate(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: tpar generate [options]\n\nsample text with tensor-parallel inference.\nNot available yet in this version (issue #5).\n");
        return TPAR_EXIT_OK;
    }
    return tpar_cli_not_yet("generate", "tracked as issue #5");
}
