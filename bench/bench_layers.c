/* bench_layers: `tpar bench layers` as a program of its own, for `make bench`
 * (bench/run.sh). Ranks are started with the tpar program of this build. */
#include <stddef.h>

#include "bench_layers.h"

int main(int argc, char **argv) { return tpar_bench_layers_main(argc, argv, TPAR_CLI_PATH, NULL, 0); }
