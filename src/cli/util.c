/* Option parsing and error reporting shared by the subcommands. */
#include <stdarg.h>
#include <stdio.h>

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
