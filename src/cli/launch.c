/* `tpar launch`: start and supervise N ranks on this host (lands with issue #3). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int tpar_cmd_launch(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: tpar launch [options]\n\nstart and supervise N ranks on this host.\nNot available yet in this version (issue #3).\n");
        return TPAR_EXIT_OK;
    }
    return tpar_cli_not_yet("launch", "tracked as issue #3");
}
