/* `tpar bench layers`, shared by the CLI and the standalone bench/bench_layers program. */
#ifndef TPAR_CLI_BENCH_LAYERS_H
#define TPAR_CLI_BENCH_LAYERS_H

/* argv[0] is the benchmark's name. Each TP size runs as the ranks of
 * `LAUNCHER launch -n TP -- EXE ARGS... --worker ...`, EXE being this program and ARGS what
 * calls this benchmark in it; LAUNCHER is the tpar program (NULL: this program). */
int tpar_bench_layers_main(int argc, char **argv, const char *launcher, const char *const *args, int nargs);

/* `tpar bench layers ...` (argv[0] is "layers"). */
int tpar_bench_layers(int argc, char **argv);

#endif /* TPAR_CLI_BENCH_LAYERS_H */
