/* `tpar train`: train a GPT split across ranks (lands with issue #5). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int tpar_cmd_train(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: tpar train [options]\n\ntrain a GPT split across ranks.\nNot available yet in this version (issue #5).\n");
        return TPAR_EXIT_OK;
    }
    return tpar_cli_not_yet("train", "tracked as issue #5");
}
