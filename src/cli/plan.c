/* `tpar plan`: memory and step-time model for a model on a cluster (lands with issue #8). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int tpar_cmd_plan(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: tpar plan [options]\n\nmemory and step-time model for a model on a cluster.\nNot available yet in this version (issue #8).\n");
        return TPAR_EXIT_OK;
    }
    return tpar_cli_not_yet("plan", "tracked as issue #8");
}
