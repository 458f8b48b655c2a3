/* `tpar bench comm`: an nccl-tests style table of one collective over message sizes.
 *
 * Started alone it launches itself: through `tpar launch -n N` for shm, through mpiexec for
 * mpi and hier. Every size uses a rotation of buffers at least 64 MiB in total, so that large
 * sizes are not served from cache. time_us is the slowest rank's mean per call; algbw =
 * bytes / time; busbw = algbw x the nccl-tests factor (all-reduce 2(n-1)/n, all-gather and
 * reduce-scatter (n-1)/n, broadcast 1), where bytes is the full vector (nccl-tests' size).
 * Buffers come from tpar_comm_mem_alloc (a large all-reduce then reads the peers' buffers
 * directly), or with --heap from the heap (it stages them through shared memory). */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "tpar/comm.h"

typedef enum { B_ALLREDUCE, B_ALLGATHER, B_REDUCE_SCATTER, B_BROADCAST } bench_op;
static const char *op_names[] = {"allreduce", "allgather", "reduce_scatter", "broadcast"};

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar bench comm [--op OP] [-n N] [--backend shm|mpi|hier] [--min-bytes B] [--max-bytes B] [--heap]\n"
            "                       [--json]\n\n"
            "Time per call, algbw and busbw (GB/s, nccl-tests factors) of a float32 collective for\n"
            "message sizes from --min-bytes (default 8) to --max-bytes (default 256 MiB), doubling.\n"
            "  --op OP        allreduce (default), allgather, reduce_scatter, broadcast\n"
            "  -n N           ranks (default 2); started alone, the benchmark launches itself\n"
            "  --backend B    shm (default), mpi or hier (these two re-run under mpiexec)\n"
            "  --heap         buffers from malloc, not tpar_comm_mem_alloc (all-reduce stages them)\n"
            "  --json         one JSON object per line instead of the table\n");
}

static tpar_status run_op(tpar_comm_t *c, bench_op op, const float *in, float *out, size_t count) {
    int n = tpar_comm_size(c);
    switch (op) {
    case B_ALLREDUCE: return tpar_comm_allreduce(c, in, out, count, TPAR_F32, TPAR_SUM);
    case B_ALLGATHER: return tpar_comm_allgather(c, in, out, count / (size_t)n, TPAR_F32);
    case B_REDUCE_SCATTER: return tpar_comm_reduce_scatter(c, in, out, count / (size_t)n, TPAR_F32, TPAR_SUM);
    default: return tpar_comm_broadcast(c, out, count, TPAR_F32, 0);
    }
}

static int run_rank(bench_op op, size_t min_b, size_t max_b, int heap, int json) {
    tpar_comm_t *c = NULL;
    tpar_err_t err;
    tpar_err_clear(&err);
    if (tpar_comm_init(NULL, &c, &err) != TPAR_OK) {
        tpar_cli_error("bench comm", "%s", err.msg);
        return TPAR_EXIT_FAIL;
    }
    int n = tpar_comm_size(c), r = tpar_comm_rank(c);
    const char *be = tpar_backend_name(tpar_comm_backend(c));
    double factor = op == B_ALLREDUCE ? 2.0 * (n - 1) / n : op == B_BROADCAST ? 1.0 : (double)(n - 1) / n;
    if (r == 0 && !json)
        printf("# tpar bench comm: %s, float32, backend %s, %d ranks, %s buffers\n"
               "# %12s %12s %12s %12s %12s\n",
               op_names[op], be, n, heap ? "heap" : "tpar_comm_mem_alloc", "bytes", "count", "time(us)", "algbw(GB/s)", "busbw(GB/s)");
    int rc = TPAR_EXIT_OK;
    for (size_t bytes = min_b; bytes <= max_b && rc == TPAR_EXIT_OK; bytes *= 2) {
        size_t count = bytes / 4;
        if (op != B_ALLREDUCE && op != B_BROADCAST) count = count / (size_t)n * (size_t)n;
        if (count == 0) continue;
        size_t nbuf = (64u << 20) / bytes < 2 ? 2 : (64u << 20) / bytes; /* >= 64 MiB in rotation */
        if (nbuf > 64) nbuf = 64;
        size_t pool_bytes = 2 * nbuf * count * sizeof(float);
        float *pool = heap ? tpar_calloc_aligned(pool_bytes, 1) : tpar_comm_mem_alloc(c, pool_bytes);
        if (!pool) {
            tpar_cli_error("bench comm", "out of memory for %zu x %zu bytes", 2 * nbuf, bytes);
            rc = TPAR_EXIT_FAIL;
            break;
        }
        for (size_t i = 0; i < 2 * nbuf * count; i++) pool[i] = 1.0f; /* touch every page once */
        /* Same iteration count on every rank: from the size only. */
        int iters = (int)((256u << 20) / bytes);
        iters = iters < 3 ? 3 : iters > 200 ? 200 : iters;
        tpar_status st = TPAR_OK;
        /* Warm-up: every buffer once, so that first touches (page faults, also of the peers'
         * buffers that a direct all-reduce reads) are not timed. */
        for (size_t i = 0; i < nbuf && !st; i++) st = run_op(c, op, pool + i * 2 * count, pool + i * 2 * count + count, count);
        if (!st) st = tpar_comm_barrier(c);
        double t0 = tpar_now();
        for (int i = 0; i < iters && !st; i++) {
            float *b = pool + (size_t)(i % (int)nbuf) * 2 * count;
            st = run_op(c, op, b, b + count, count);
        }
        double t = (tpar_now() - t0) / iters, tmax = t;
        if (!st) st = tpar_comm_allreduce(c, &t, &tmax, 1, TPAR_F64, TPAR_MAX);
        if (heap) tpar_free(pool);
        else tpar_comm_mem_free(c, pool);
        if (st) {
            tpar_cli_error("bench comm", "%s of %zu bytes: %s", op_names[op], bytes, tpar_comm_error(c));
            rc = TPAR_EXIT_FAIL;
            break;
        }
        double algbw = (double)(count * 4) / tmax / 1e9, busbw = algbw * factor;
        if (r != 0) continue;
        if (json)
            printf("{\"op\":\"%s\",\"backend\":\"%s\",\"ranks\":%d,\"bytes\":%zu,\"time_us\":%.3f,"
                   "\"algbw_gbs\":%.4f,\"busbw_gbs\":%.4f,\"buffers\":\"%s\"}\n",
                   op_names[op], be, n, count * 4, tmax * 1e6, algbw, busbw, heap ? "heap" : "shared");
        else
            printf("  %12zu %12zu %12.2f %12.3f %12.3f\n", count * 4, count, tmax * 1e6, algbw, busbw);
        fflush(stdout);
    }
    tpar_comm_free(c);
    return rc;
}

int tpar_bench_comm(int argc, char **argv) {
    static const struct option longopts[] = {{"op", required_argument, NULL, 'o'},
                                             {"ranks", required_argument, NULL, 'n'},
                                             {"backend", required_argument, NULL, 'b'},
                                             {"min-bytes", required_argument, NULL, 'm'},
                                             {"max-bytes", required_argument, NULL, 'M'},
                                             {"heap", no_argument, NULL, 'H'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = "bench comm";
    bench_op op = B_ALLREDUCE;
    long long n = 2, min_b = 8, max_b = 256ll << 20;
    tpar_backend backend = TPAR_BACKEND_SHM;
    int heap = 0, json = 0, c;
    optind = 1;
    while ((c = tpar_cli_getopt(cmd, argc, argv, "n:h", longopts)) != -1) {
        switch (c) {
        case 'o': {
            int found = -1;
            for (int i = 0; i < 4; i++)
                if (!strcmp(optarg, op_names[i])) found = i;
            if (found < 0) {
                tpar_cli_error(cmd, "--op expects allreduce, allgather, reduce_scatter or broadcast, got '%s'", optarg);
                return TPAR_EXIT_USAGE;
            }
            op = (bench_op)found;
            break;
        }
        case 'n':
            if (tpar_cli_int(cmd, "-n", optarg, 1, 4096, &n)) return TPAR_EXIT_USAGE;
            break;
        case 'b':
            if (!strcmp(optarg, "shm")) backend = TPAR_BACKEND_SHM;
            else if (!strcmp(optarg, "mpi")) backend = TPAR_BACKEND_MPI;
            else if (!strcmp(optarg, "hier")) backend = TPAR_BACKEND_HIER;
            else {
                tpar_cli_error(cmd, "--backend expects shm, mpi or hier, got '%s'", optarg);
                return TPAR_EXIT_USAGE;
            }
            break;
        case 'm':
            if (tpar_cli_int(cmd, "--min-bytes", optarg, 4, 1ll << 34, &min_b)) return TPAR_EXIT_USAGE;
            break;
        case 'M':
            if (tpar_cli_int(cmd, "--max-bytes", optarg, 4, 1ll << 34, &max_b)) return TPAR_EXIT_USAGE;
            break;
        case 'H': heap = 1; break;
        case 'j': json = 1; break;
        case 'h': usage(stdout); return TPAR_EXIT_OK;
        default: return TPAR_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        tpar_cli_error(cmd, "unexpected argument '%s'", argv[optind]);
        return TPAR_EXIT_USAGE;
    }
    /* Inside a job (launched by us or by mpirun): be one rank. Otherwise start the job. */
    if (!tpar_cli_is_rank() && (n > 1 || backend != TPAR_BACKEND_SHM))
        return tpar_cli_launch_self(cmd, (int)n, backend, "bench", -1, argc, argv);
    return run_rank(op, (size_t)min_b, (size_t)max_b, heap, json);
}
