/* `tpar launch -n N [--] PROGRAM ARGS...`: start N ranks of a program on this host and
 * supervise them.
 *
 * Each rank learns TPAR_RANK, TPAR_WORLD_SIZE, TPAR_LOCAL_RANK, TPAR_LOCAL_SIZE and
 * TPAR_SHM_FD (the job's shared arena, an anonymous memfd) from its environment. The
 * launcher forwards SIGINT/SIGTERM to the ranks. When a rank dies or exits non-zero it
 * marks the rank dead in the arena (peers waiting on it fail at once, naming it), waits a
 * grace period for the others to finish on their own, sends SIGTERM, and after another grace
 * period SIGKILL. It prints one line per rank that ended badly and returns non-zero.
 * With --max-restarts N it restarts the whole job after a failure, up to N times (supervise.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "tpar/comm.h"
#include "tpar/kernels.h"

#define MAX_RANKS 4096

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar launch -n N [--grace SECONDS] [--max-restarts N] [--] PROGRAM [ARGS...]\n\n"
            "Start N ranks of PROGRAM on this host and supervise them. Each rank gets TPAR_RANK,\n"
            "TPAR_WORLD_SIZE, TPAR_LOCAL_RANK and TPAR_LOCAL_SIZE in its environment, and\n"
            "TPAR_THREADS (and OPENBLAS_NUM_THREADS) = cores / N, at least 1, unless already set,\n"
            "and OMP_WAIT_POLICY=PASSIVE unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set.\n"
            "SIGINT/SIGTERM are forwarded to the ranks. If a rank dies or exits non-zero, the\n"
            "others get the grace period (default 3 s, TPAR_LAUNCH_GRACE) to stop on their own,\n"
            "then SIGTERM, then after another grace period SIGKILL; the exit status is non-zero.\n\n"
            "options:\n"
            "  -n, --ranks N        number of ranks (1..%d)\n"
            "      --grace SECONDS  grace period before SIGTERM and again before SIGKILL\n"
            "      --max-restarts N restart all ranks after a failure, up to N times, with\n"
            "                       TPAR_RESTART_COUNT=1, 2, ... (docs/FAULTS.md)\n"
            "  -h, --help           this help\n",
            MAX_RANKS);
}

typedef struct {
    pid_t pid;
    int alive;
} rank_t;

static void signal_all(rank_t *r, int n, int sig) {
    for (int i = 0; i < n; i++)
        if (r[i].alive) {
            kill(r[i].pid, sig);
            if (sig == SIGTERM) kill(r[i].pid, SIGCONT); /* a stopped rank would hold SIGTERM */
        }
}

/* Exit status of the launcher for a rank's wait status. */
static int status_code(int ws) {
    if (WIFEXITED(ws)) return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws)) return 128 + WTERMSIG(ws);
    return 1;
}

static void report(int rank, pid_t pid, int ws) {
    if (WIFEXITED(ws))
        fprintf(stderr, "tpar launch: rank %d (pid %d) exited with status %d\n", rank, (int)pid, WEXITSTATUS(ws));
    else if (WIFSIGNALED(ws))
        fprintf(stderr, "tpar launch: rank %d (pid %d) killed by signal %d\n", rank, (int)pid, WTERMSIG(ws));
}

static void child(int rank, int n, int fd, const sigset_t *oldmask, pid_t parent, char **argv) {
    sigprocmask(SIG_SETMASK, oldmask, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the supervisor */
    if (getppid() != parent) _exit(127);
    char v[32];
    snprintf(v, sizeof v, "%d", rank);
    setenv("TPAR_RANK", v, 1);
    setenv("TPAR_LOCAL_RANK", v, 1);
    snprintf(v, sizeof v, "%d", n);
    setenv("TPAR_WORLD_SIZE", v, 1);
    setenv("TPAR_LOCAL_SIZE", v, 1);
    snprintf(v, sizeof v, "%d", fd);
    setenv("TPAR_SHM_FD", v, 1);
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0) _exit(127);
    execvp(argv[0], argv);
    fprintf(stderr, "tpar launch: error: cannot run '%s': %s\n", argv[0], strerror(errno));
    _exit(127);
}

int tpar_cmd_launch(int argc, char **argv) {
    static const struct option longopts[] = {
        {"ranks", required_argument, NULL, 'n'}, {"grace", required_argument, NULL, 'g'},
        {"max-restarts", required_argument, NULL, 'r'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    long long n = 0, restarts = -1;
    double grace = 3.0;
    tpar_err_t err;
    tpar_err_clear(&err);
    if (tpar_env_double("TPAR_LAUNCH_GRACE", 3.0, 0.0, 3600.0, &grace, &err) != TPAR_OK) {
        tpar_cli_error("launch", "%s", err.msg);
        return TPAR_EXIT_USAGE;
    }
    int c;
    while ((c = tpar_cli_getopt("launch", argc, argv, "n:h", longopts)) != -1) {
        switch (c) {
        case 'n':
            if (tpar_cli_int("launch", "-n", optarg, 1, MAX_RANKS, &n)) return TPAR_EXIT_USAGE;
            break;
        case 'g':
            if (tpar_cli_double("launch", "--grace", optarg, 0.0, 3600.0, &grace)) return TPAR_EXIT_USAGE;
            break;
        case 'r':
            if (tpar_cli_int("launch", "--max-restarts", optarg, 0, 1000000, &restarts)) return TPAR_EXIT_USAGE;
            break;
        case 'h': usage(stdout); return TPAR_EXIT_OK;
        default: return TPAR_EXIT_USAGE;
        }
    }
    if (n == 0 || optind >= argc) {
        tpar_cli_error("launch", n == 0 ? "-n N is required" : "no program to launch");
        fprintf(stderr, "hint: tpar launch -n 4 -- ./my_program args...\n");
        return TPAR_EXIT_USAGE;
    }
    char **prog = argv + optind;
    /* Each rank's share of this host's cores for GEMM and the large kernels (cores / ranks, at
     * least 1: never oversubscribed), as TPAR_THREADS; OpenBLAS's pool gets the same size, set
     * before the ranks start because OpenBLAS reads it when it is loaded. A user's own settings
     * win. Under mpirun the ranks compute the same share from OMPI_COMM_WORLD_LOCAL_SIZE. */
    char share[16];
    const char *user = getenv("TPAR_THREADS");
    snprintf(share, sizeof share, "%d", tpar_kernels_share(tpar_kernels_usable_cores(), (int)n));
    setenv("TPAR_THREADS", share, 0);
    setenv("OPENBLAS_NUM_THREADS", user && *user ? user : share, 0);
    /* OpenMP threads that wait at a barrier sleep (passive) instead of spinning, unless the
     * user chose a policy or a spin count: with spinning, a rank's waiting thread holds the
     * core its peer needs whenever the host has fewer free cores than threads (a shared or
     * oversubscribed host), and each of a step's hundreds of parallel regions can cost a
     * scheduler time slice. A training step's regions last milliseconds, so the futex
     * wake-up that passive waiting costs is noise (measured: docs/TRAINING.md). */
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    if (restarts >= 0) return tpar_launch_supervise((int)n, prog, grace, (int)restarts);
    return tpar_launch_job((int)n, prog, grace, NULL);
}

int tpar_launch_job(int n, char **prog, double grace, tpar_launch_fail_t *fail) {
    tpar_err_t err;
    tpar_launch_rank_t *out = fail ? fail->ranks : NULL;
    if (fail) *fail = (tpar_launch_fail_t){.rank = -1, .ranks = out};
    if (out) memset(out, 0, (size_t)n * sizeof *out);
    int order = 0;
    tpar_comm_job_t *job;
    if (tpar_comm_job_create((int)n, &job, &err) != TPAR_OK) {
        tpar_cli_error("launch", "%s", err.msg);
        return TPAR_EXIT_FAIL;
    }
    rank_t *ranks = calloc((size_t)n, sizeof *ranks);
    if (!ranks) {
        tpar_comm_job_free(job);
        tpar_cli_error("launch", "out of memory");
        return TPAR_EXIT_FAIL;
    }
    /* Signals are taken synchronously (sigtimedwait) so the loop below sees them in order. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, &old);
    fflush(NULL);
    pid_t self = getpid();
    int alive = 0, rc = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) child(i, (int)n, tpar_comm_job_fd(job), &old, self, prog);
        if (p < 0) {
            tpar_cli_error("launch", "fork for rank %d: %s", i, strerror(errno));
            rc = TPAR_EXIT_FAIL;
            failed = 1;
            break;
        }
        ranks[i] = (rank_t){p, 1};
        alive++;
    }

    /* Escalation after a failure or a forwarded signal: 0 none, 1 waiting, 2 TERM sent, 3 KILL sent. */
    int phase = failed ? 1 : 0;
    double next = tpar_now() + grace;
    while (alive > 0) {
        double now = tpar_now();
        if (phase && now >= next && phase < 3) {
            phase++;
            signal_all(ranks, (int)n, phase == 2 ? SIGTERM : SIGKILL);
            next = now + grace;
        }
        double wait_s = phase && phase < 3 ? next - now : 1.0;
        if (wait_s < 0.001) wait_s = 0.001;
        struct timespec ts = {(time_t)wait_s, (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            if (fail) fail->signal = sig;
            signal_all(ranks, (int)n, sig);
            if (!rc) rc = 128 + sig;
            if (!phase) {
                phase = 2; /* the signal was the TERM; KILL follows after the grace period */
                next = tpar_now() + grace;
            }
        }
        int ws;
        pid_t p;
        while ((p = waitpid(-1, &ws, WNOHANG)) > 0) {
            int i = 0;
            while (i < n && ranks[i].pid != p) i++;
            if (i == n || !ranks[i].alive) continue;
            ranks[i].alive = 0;
            alive--;
            if (out) out[i] = (tpar_launch_rank_t){(int)p, ws, 0, phase >= 2};
            if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) continue;
            if (out) out[i].order = ++order;
            report(i, p, ws);
            tpar_comm_job_mark_dead(job, i);
            if (!failed) {
                failed = 1;
                if (fail) fail->rank = i, fail->pid = (int)p, fail->wstatus = ws;
                if (!rc) rc = status_code(ws);
                if (alive > 0)
                    fprintf(stderr, "tpar launch: stopping the other %d rank%s (SIGTERM after %g s)\n", alive,
                            alive == 1 ? "" : "s", grace);
                if (!phase) {
                    phase = 1;
                    next = tpar_now() + grace;
                }
            }
        }
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    free(ranks);
    tpar_comm_job_free(job);
    return rc ? (rc > 255 ? 255 : rc) : TPAR_EXIT_OK;
}
