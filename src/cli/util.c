/* Option parsing and error reporting shared by the subcommands. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "tpar/core.h"

void tpar_cli_line(const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof buf - 1 ? (size_t)n : sizeof buf - 2; /* a longer line is cut */
    if (len == 0 || buf[len - 1] != '\n') buf[len++] = '\n';
    fflush(stderr);
    for (size_t off = 0; off < len;) { /* one write(2) unless interrupted */
        ssize_t w = write(STDERR_FILENO, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += (size_t)w;
    }
}

void tpar_cli_error(const char *cmd, const char *fmt, ...) {
    char msg[3584];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tpar_cli_line("tpar %s: error: %s", cmd, msg);
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

int tpar_cli_is_rank(void) {
    return getenv("TPAR_RANK") || getenv("OMPI_COMM_WORLD_RANK") || getenv("PMIX_RANK") ||
           getenv("PMI_RANK");
}

int tpar_cli_launch_self(const char *cmd, int world, tpar_backend backend, const char *word, int max_restarts,
                         int argc, char **argv) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        tpar_cli_error(cmd, "cannot find this program to launch %d ranks (readlink /proc/self/exe)", world);
        return TPAR_EXIT_FAIL;
    }
    self[n] = 0;
    char nbuf[16], rbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", world);
    snprintf(rbuf, sizeof rbuf, "%d", max_restarts);
    char **args = calloc((size_t)argc + 16, sizeof *args);
    if (!args) return TPAR_EXIT_FAIL;
    int k = 0;
    const char *runner = self;
    if (backend == TPAR_BACKEND_MPI || backend == TPAR_BACKEND_HIER) {
        runner = "mpiexec";
        args[k++] = "mpiexec";
        if (geteuid() == 0) args[k++] = "--allow-run-as-root";
        args[k++] = "--oversubscribe", args[k++] = "-np", args[k++] = nbuf;
        args[k++] = "-x", args[k++] = backend == TPAR_BACKEND_MPI ? "TPAR_COMM=mpi" : "TPAR_COMM=hier";
    } else {
        args[k++] = self, args[k++] = "launch", args[k++] = "-n", args[k++] = nbuf;
        if (max_restarts >= 0) args[k++] = "--max-restarts", args[k++] = rbuf;
        args[k++] = "--";
    }
    args[k++] = self;
    if (word) args[k++] = (char *)word;
    for (int i = 0; i < argc; i++) args[k++] = argv[i];
    args[k] = NULL;
    fflush(NULL);
    execvp(runner, args);
    tpar_cli_error(cmd, "cannot start %s to run %d ranks", runner, world);
    free(args);
    return TPAR_EXIT_FAIL;
}
