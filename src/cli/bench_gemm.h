/* `tpar bench gemm`, shared by the CLI and the standalone bench/bench_gemm program. */
#ifndef TPAR_CLI_BENCH_GEMM_H
#define TPAR_CLI_BENCH_GEMM_H

/* `tpar bench gemm ...` (argv[0] is "gemm" or the program's name). */
int tpar_bench_gemm(int argc, char **argv);

#endif /* TPAR_CLI_BENCH_GEMM_H */
