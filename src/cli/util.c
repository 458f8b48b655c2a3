/* Option parsing and error reporting shared by the subcommands. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "tpar/kernels.h"
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

int tpar_cli_int_list(const char *cmd, const char *opt, const char *val, int lo, int hi, int *out, int max,
                      int *n) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", val);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long long v;
        if (*n == max) {
            tpar_cli_error(cmd, "%s: at most %d values", opt, max);
            return -1;
        }
        if (tpar_cli_int(cmd, opt, tok, lo, hi, &v)) return -1;
        out[(*n)++] = (int)v;
    }
    if (!*n) tpar_cli_error(cmd, "%s: empty list", opt);
    return *n ? 0 : -1;
}

int tpar_cli_double(const char *cmd, const char *opt, const char *val, double lo, double hi,
                    double *out) {
    if (tpar_parse_double(val, lo, hi, out) == TPAR_OK) return 0;
    tpar_cli_error(cmd, "%s expects a number in [%g, %g], got '%s'", opt, lo, hi, val);
    return -1;
}

tpar_status tpar_cli_rank_compute(int *threads, tpar_err_t *err) {
    tpar_status st = tpar_kernels_rank_threads(threads, err);
    if (!st) st = tpar_kernels_set_threads(*threads, err);
    if (!st) st = tpar_gemm_init(err);
    return st;
}

const char *tpar_cli_rank_name(void) {
    static const char *vars[] = {"TPAR_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return v;
    }
    return "0";
}

int tpar_cli_is_rank(void) {
    return getenv("TPAR_RANK") || getenv("OMPI_COMM_WORLD_RANK") || getenv("PMIX_RANK") ||
           getenv("PMI_RANK");
}

/* mpiexec -np N started here puts every rank on this host unless a hostfile or a batch
 * system's allocation says otherwise. */
static int single_host(void) {
    static const char *vars[] = {"OMPI_MCA_orte_default_hostfile", "OMPI_MCA_hostfile", "SLURM_JOB_ID",
                                 "PBS_JOBID", "LSB_JOBID", "PE_HOSTFILE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 0;
    return 1;
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
    char **args = calloc((size_t)argc + 24, sizeof *args);
    if (!args) return TPAR_EXIT_FAIL;
    int k = 0;
    const char *runner = self;
    if (backend == TPAR_BACKEND_MPI || backend == TPAR_BACKEND_HIER) {
        runner = "mpiexec";
        args[k++] = "mpiexec";
        if (geteuid() == 0) args[k++] = "--allow-run-as-root";
        args[k++] = "--oversubscribe", args[k++] = "-np", args[k++] = nbuf;
        /* All ranks on this host (no hostfile, no batch allocation): shared memory only (no TCP
         * transport, which listens on every interface, nor libfabric's through the cm PML) and
         * the out-of-band channel on loopback. A user's own OMPI_MCA_* setting wins
         * (docs/FAULTS.md, "Under mpirun: what listens"). */
        if (single_host()) {
            if (!getenv("OMPI_MCA_btl")) args[k++] = "--mca", args[k++] = "btl", args[k++] = "self,vader";
            if (!getenv("OMPI_MCA_pml")) args[k++] = "--mca", args[k++] = "pml", args[k++] = "ob1";
            if (!getenv("OMPI_MCA_oob_tcp_if_include") && !getenv("OMPI_MCA_oob_tcp_if_exclude"))
                args[k++] = "--mca", args[k++] = "oob_tcp_if_include", args[k++] = "lo";
        }
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

/* ---- stale Open MPI shared-memory segments ------------------------------------------------- */

#define SHM_DIR "/dev/shm"
#define VADER_PREFIX "vader_segment."
#define STALE_AGE_S 2.0 /* beyond the moment between a segment's creation and its mapping (microseconds) */

/* Does any process hold open or map one of the n paths? Sets used[i]. Returns -1 when a
 * process could not be inspected (another user's, without the right to read it). Each
 * process's fds are read before its maps: a creator that opens, maps, then closes its segment
 * is seen in one or the other whenever the scan reaches it. */
static int mark_in_use(char (*paths)[PATH_MAX], int n, int *used) {
    DIR *proc = opendir("/proc");
    if (!proc) return -1;
    int blind = 0;
    struct dirent *e;
    char path[PATH_MAX], line[PATH_MAX + 128], target[PATH_MAX];
    while ((e = readdir(proc))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/fd", e->d_name);
        DIR *fds = opendir(path);
        if (!fds) {
            if (errno == EACCES || errno == EPERM) blind = 1;
            continue; /* ENOENT: it just exited */
        }
        struct dirent *fe;
        while ((fe = readdir(fds))) {
            char link[PATH_MAX + 300];
            snprintf(link, sizeof link, "%s/%s", path, fe->d_name);
            ssize_t len = readlink(link, target, sizeof target - 1);
            if (len <= 0) continue;
            target[len] = 0;
            for (int i = 0; i < n; i++)
                if (!used[i] && !strcmp(target, paths[i])) used[i] = 1;
        }
        closedir(fds);
        snprintf(path, sizeof path, "/proc/%s/maps", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) {
            if (errno == EACCES || errno == EPERM) blind = 1;
            continue;
        }
        while (fgets(line, sizeof line, f))
            for (int i = 0; i < n; i++)
                if (!used[i] && strstr(line, paths[i])) used[i] = 1;
        fclose(f);
    }
    closedir(proc);
    return blind ? -1 : 0;
}

int tpar_cli_sweep_stale_shm(void) {
    DIR *d = opendir(SHM_DIR);
    if (!d) return 0;
    enum { MAX_CAND = 256 };
    char (*cand)[PATH_MAX] = NULL;
    int *used = NULL, n = 0, private_only = 1, removed = 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_CAND) {
        if (strncmp(e->d_name, VADER_PREFIX, strlen(VADER_PREFIX))) continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", SHM_DIR, e->d_name);
        struct stat st;
        /* ours, a plain file, untouched for a while (a job starting now may not have mapped it yet) */
        if (lstat(path, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
            (double)(now.tv_sec - st.st_mtim.tv_sec) + 1e-9 * (double)(now.tv_nsec - st.st_mtim.tv_nsec) < STALE_AGE_S)
            continue;
        if (!cand) {
            cand = calloc(MAX_CAND, sizeof *cand);
            used = calloc(MAX_CAND, sizeof *used);
            if (!cand || !used) break;
        }
        if (st.st_mode & 077) private_only = 0;
        snprintf(cand[n++], PATH_MAX, "%s", path);
    }
    closedir(d);
    /* A process we cannot inspect belongs to another user; it can only have a segment open if
     * the file lets it (Open MPI makes them 0600): then keep everything. */
    if (n > 0 && cand && used && (mark_in_use(cand, n, used) == 0 || private_only))
        for (int i = 0; i < n; i++)
            if (!used[i] && unlink(cand[i]) == 0) removed++;
    free(cand);
    free(used);
    if (removed)
        tpar_cli_line("tpar: removed %d stale Open MPI shared-memory segment%s (%s/%s*: no live process maps or "
                      "holds %s; docs/FAULTS.md)",
                      removed, removed == 1 ? "" : "s", SHM_DIR, VADER_PREFIX, removed == 1 ? "it" : "them");
    return removed;
}
