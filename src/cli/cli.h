/* Internal to the `tpar` program: the subcommands and the helpers they share for
 * parsing options and reporting errors in one voice. */
#ifndef TPAR_CLI_H
#define TPAR_CLI_H

#include <getopt.h>

#include "tpar/comm.h"

/* Exit codes of the CLI. */
enum { TPAR_EXIT_OK = 0, TPAR_EXIT_FAIL = 1, TPAR_EXIT_USAGE = 2 };

/* A subcommand: `tpar NAME ARGS...`. argv[0] is the subcommand name. */
typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} tpar_cli_cmd_t;

int tpar_cmd_train(int argc, char **argv);
int tpar_cmd_generate(int argc, char **argv);
int tpar_cmd_bench(int argc, char **argv);
int tpar_cmd_launch(int argc, char **argv);
int tpar_cmd_plan(int argc, char **argv);
int tpar_cmd_info(int argc, char **argv);
int tpar_cmd_report(int argc, char **argv);
int tpar_cmd_tokenize(int argc, char **argv); /* tokenize.c (src/tokenizer) */
/* How one rank of an attempt ended. */
typedef struct {
    int pid, wstatus;
    int order;       /* 1, 2, ...: the order in which ranks failed; 0: exited 0 (or never started) */
    int by_launcher; /* it ended after the launcher's SIGTERM/SIGKILL (a consequence, not a cause) */
} tpar_launch_rank_t;
/* One run of `tpar launch`: n ranks of prog; returns the exit status. fail (may be NULL) gets
 * the first rank that failed (rank -1: none) and a signal (SIGINT/SIGTERM) the launcher got;
 * when fail->ranks is not NULL (n entries, caller-owned) how every rank ended. */
typedef struct {
    int rank, pid, wstatus, signal;
    tpar_launch_rank_t *ranks;
} tpar_launch_fail_t;
int tpar_launch_job(int n, char **prog, double grace, tpar_launch_fail_t *fail);
/* Runs the job again after a failure, up to max_restarts times (supervise.c). */
int tpar_launch_supervise(int n, char **prog, double grace, int max_restarts);
/* `tpar bench comm ...` (argv[0] is "comm"). */
int tpar_bench_comm(int argc, char **argv);

/* getopt_long for subcommand `cmd`, with our error messages: an unknown option or a
 * missing value prints what and a hint and returns '?'. Long options only need be
 * listed; "h"/"--help" is the caller's to include. */
int tpar_cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
                    const struct option *longopts);

/* Parse the value of option `opt` as an integer / number in [lo, hi]; on failure print
 * "tpar CMD: --opt expects ..., got 'x'" and return -1. */
int tpar_cli_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi,
                 long long *out);
/* A comma list of at most max ints in [lo, hi] ("256,512") into out[0..*n); 0, or -1 after
 * printing the error. */
int tpar_cli_int_list(const char *cmd, const char *opt, const char *val, int lo, int hi, int *out, int max,
                      int *n);
int tpar_cli_double(const char *cmd, const char *opt, const char *val, double lo, double hi,
                    double *out);

/* Progress of the library's long work drawn on stderr (cli_progress.c): a bar with rate and ETA
 * when stderr is a terminal, a plain line every 5 s otherwise; nothing for work shorter than
 * TPAR_PROGRESS_DELAY seconds (1 on a terminal, 3 otherwise). p must outlive the work. */
typedef struct {
    tpar_meter_t meter;
    int tty;
    double delay; /* seconds before the first line (TPAR_PROGRESS_DELAY) */
} tpar_cli_progress_t;
tpar_progress_t tpar_cli_progress(tpar_cli_progress_t *p);

/* Print "tpar CMD: error: <message>" to stderr. */
void tpar_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints one line to stderr with a single write(2) of the formatted buffer (a newline is added
 * if missing; up to 4 KiB, PIPE_BUF, so a pipe never splits it): lines from several ranks
 * sharing one stderr never interleave. */
void tpar_cli_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Removes the Open MPI shared-memory segments (/dev/shm/vader_segment.*) that a dead job left
 * (kill -9 of mpirun): only files of this user, unchanged for 2 s, that no live process maps or
 * holds open (from /proc/PID/maps and /proc/PID/fd). Prints one line when it removed some;
 * returns how many. Called once per run by the process that starts the ranks. */
int tpar_cli_sweep_stale_shm(void);

/* This process's world rank as its launcher set it (TPAR_RANK, or mpirun's / srun's variable),
 * for error lines; "0" when alone. */
const char *tpar_cli_rank_name(void);

/* Sets this rank's compute: its share of the host's cores (tpar_kernels_rank_threads) for
 * OpenMP and OpenBLAS, and the GEMM provider (TPAR_GEMM checked). *threads gets the count. */
tpar_status tpar_cli_rank_compute(int *threads, tpar_err_t *err);

/* 1 when this process already runs as a rank (under `tpar launch`, mpirun or srun). */
int tpar_cli_is_rank(void);

/* Re-executes this program as WORLD ranks running `tpar [WORD] ARGV...` (argv[0] is the
 * subcommand, WORD an optional word before it, e.g. "bench"): under `tpar launch -n WORLD`
 * for the shm backend (and auto), with `--max-restarts R` when max_restarts >= 0; under
 * mpiexec with TPAR_COMM set for mpi and hier. Returns only on failure (after printing
 * why), with TPAR_EXIT_FAIL. */
int tpar_cli_launch_self(const char *cmd, int world, tpar_backend backend, const char *word, int max_restarts,
                         int argc, char **argv);

#endif /* TPAR_CLI_H */
