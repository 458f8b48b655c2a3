/* tpar: the command-line front door. Dispatches `tpar <command> ...` to a subcommand. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tpar/core.h"

static const tpar_cli_cmd_t commands[] = {
    {"train", "train a GPT split across ranks (tensor x data parallel)", tpar_cmd_train},
    {"generate", "sample text from a checkpoint with tensor-parallel inference", tpar_cmd_generate},
    {"launch", "start N ranks of a program on this host and supervise them", tpar_cmd_launch},
    {"bench", "benchmarks: collectives, layers, GEMM providers, training", tpar_cmd_bench},
    {"tokenize", "turn text files into a token file with a byte-level BPE tokenizer", tpar_cmd_tokenize},
    {"plan", "memory and step-time model for a model on a cluster", tpar_cmd_plan},
    {"report", "an HTML page of charts of training runs (loss, throughput, comm, memory)", tpar_cmd_report},
    {"info", "print the build configuration and this machine's features", tpar_cmd_info},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
    fprintf(f,
            "tpar %s: tensor-parallel transformer training and inference\n\n"
            "usage: tpar <command> [options]\n"
            "       tpar <command> --help\n"
            "       tpar --version\n\n"
            "commands:\n",
            TPAR_VERSION_STRING);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return TPAR_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return TPAR_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("tpar %s\n", TPAR_VERSION_STRING);
        return TPAR_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++) {
        if (!strcmp(cmd, commands[i].name)) {
            optind = 1;
            // What a dead MPI job left in /dev/shm goes now: swept by the process that starts
            // the ranks, or by local rank 0 under a user's own mpirun (util.c, docs/FAULTS.md).
            const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
            if (!getenv("TPAR_RANK") && (!lr || !strcmp(lr, "0"))) tpar_cli_sweep_stale_shm();
            int rc = commands[i].run(argc - 1, argv + 1);
            // Under mpirun, a failed job is left unfinalized (a stopped peer would never get
            // there): end it with MPI_Abort now that the error is printed.
            return tpar_comm_abort_unfinished(rc);
        }
    }
    if (cmd[0] == '-')
        fprintf(stderr, "tpar: error: unknown option '%s'\n", cmd);
    else
        fprintf(stderr, "tpar: error: unknown command '%s'\n", cmd);
    fprintf(stderr, "hint: 'tpar --help' lists the commands\n");
    return TPAR_EXIT_USAGE;
}
