/* Option parsing and error reporting shared by the subcommands. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "tpar/core.h"

void tpar_cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tpar %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int tpar_cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
                    const struct option *longopts) {
    /* '+': stop at the first positional argument (so `launch -n 2 prog -x` leaves -x to prog);
     * ':': report a missing value apart from an unknown option. */
    char opts[128];
    snprintf(opts, sizeof opts, "+:%s", shortopts);
    opterr = 0; /* we print our own messages */
    int c = getopt_long(argc, argv, opts, longopts, NULL);
    if (c == ':') {
        tpar_cli_error(cmd, "option '%s' needs a value", argv[optind - 1]);
    } else if (c == '?') {
        if (optopt)
            tpar_cli_error(cmd, "unknown option '-%c'", optopt);
        else
            tpar_cli_error(cmd, "unknown option '%s'", argv[optind - 1]);
    } else {
        return c;
    }
    fprintf(stderr, "hint: 'tpar %s --help' lists the options\n", cmd);
    return '?';
}

int tpar_cli_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi,
                 long long *out) {
    if (tpar_parse_int(val, lo, hi, out) == TPAR_OK) return 0;
    tpar_cli_error(cmd, "%s expects an integer in [%lld, %lld], got '%s'", opt, lo, hi, val);
    return -1;
}

int tpar_cli_double(const char *cmd, const char *opt, const char *val, double lo, double hi,
                    double *out) {
    if (tpar_parse_double(val, lo, hi, out) == TPAR_OK) return 0;
    tpar_cli_error(cmd, "%s expects a number in [%g, %g], got '%s'", opt, lo, hi, val);
    return -1;
}

int tpar_cli_not_yet(const char *cmd, const char *what) {
    tpar_cli_error(cmd, "%s is not implemented in this version of tpar (%s)", cmd, what);
    fprintf(stderr, "hint: 'tpar --help' lists what works today\n");
    return TPAR_EXIT_FAIL;
}

int tpar_cli_is_rank(void) {
    return getenv("TPAR_RANK") || getenv("OMPI_COMM_WORLD_RANK") || getenv("PMI_RANK");
}

int tpar_cli_launch_self(const char *cmd, int world, int argc, char **argv) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        tpar_cli_error(cmd, "cannot find this program to launch %d ranks (readlink /proc/self/exe)", world);
        return TPAR_EXIT_FAIL;
    }
    self[n] = 0;
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", world);
    char **args = calloc((size_t)argc + 8, sizeof *args);
    if (!args) return TPAR_EXIT_FAIL;
    int k = 0;
    const char *pre[] = {self, "launch", "-n", nbuf, "--", self};
    for (int i = 0; i < 6; i++) args[k++] = (char *)pre[i];
    for (int i = 0; i < argc; i++) args[k++] = argv[i]; // argv[0] is the subcommand
    args[k] = NULL;
    fflush(NULL);
    execv(self, args);
    tpar_cli_error(cmd, "cannot start `tpar launch` (%s)", self);
    free(args);
    return TPAR_EXIT_FAIL;
}
