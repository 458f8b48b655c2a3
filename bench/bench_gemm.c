/* bench_gemm: `tpar bench gemm` as a program of its own, for `make bench` (bench/run.sh). */
#include "bench_gemm.h"

int main(int argc, char **argv) { return tpar_bench_gemm(argc, argv); }
