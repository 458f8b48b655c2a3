/* bench_comm: tpar's shm all-reduce against Open MPI's MPI_Allreduce, side by side in one run
 * (same ranks, same buffers, same sizes, rounds interleaved so that machine noise hits both),
 * with a memory-copy bandwidth figure for context and what overlap buys (GEMM and all-reduce
 * issued together vs back to back).
 *
 * Started alone it re-runs itself under mpiexec (BENCH_COMM_RANKS ranks, default 2); the shm
 * communicator is then bootstrapped through MPI, and MPI_Allreduce runs on MPI_COMM_WORLD.
 * Options: --json (one JSON object per line), --max-bytes B (default 256 MiB).
 *
 * Memory-bandwidth limit for the 64 MiB target, from the bytes each rank must read and write,
 * in memcpy-equivalents (a memcpy of V bytes reads V and writes V). Direct path: rank r reads
 * share r of all n inputs (V) and writes it (V/n), then reads and writes the other shares
 * ((n-1)/n V each): (3n-1)/(2n) memcpys of V, 1.25 at two ranks. Staged path: besides that,
 * each rank writes its input to shared memory and the reduced share once more, and the reads
 * come from there: (5n-2)/(2n) memcpys, 2 at two ranks. With every rank copying at once at B
 * bytes/s (measured below), algbw cannot exceed B divided by those. */
#define _GNU_SOURCE
#include <cblas.h>
#include <malloc.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tpar/comm.h"

#define ROUNDS 5

static int json;

static void die(tpar_comm_t *c, const char *what) {
    fprintf(stderr, "bench_comm: %s: %s\n", what, c ? tpar_comm_error(c) : "");
    exit(1);
}

/* Median of n values (n <= ROUNDS). */
static double median(const double *v, int n) {
    double s[ROUNDS];
    memcpy(s, v, (size_t)n * sizeof *s);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && s[j] < s[j - 1]; j--) {
            double t = s[j];
            s[j] = s[j - 1], s[j - 1] = t;
        }
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* Slowest rank's time. */
static double tmax(tpar_comm_t *c, double t) {
    double m = t;
    if (tpar_comm_allreduce(c, &t, &m, 1, TPAR_F64, TPAR_MAX)) die(c, "allreduce of timings");
    return m;
}

/* Per-rank memcpy bandwidth with every rank copying at once (bytes copied per second). */
static double memcpy_bw(tpar_comm_t *c) {
    size_t n = 64u << 20;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b) die(c, "out of memory");
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        tpar_comm_barrier(c);
        double t0 = tpar_now();
        memcpy(r % 2 ? a : b, r % 2 ? b : a, n);
        double t = tmax(c, tpar_now() - t0);
        best = t < best ? t : best;
    }
    free(a);
    free(b);
    return (double)n / best;
}

static void overlap(tpar_comm_t *c, int progress_thread) {
    int m = 384;
    size_t vec = 4u << 20; /* 16 MiB all-reduce */
    float *A = calloc((size_t)m * m, 4), *B = calloc((size_t)m * m, 4), *Cm = calloc((size_t)m * m, 4);
    float *v = calloc(vec, 4), *w = calloc(vec, 4);
    if (!A || !B || !Cm || !v || !w) die(c, "out of memory");
    openblas_set_num_threads(1);
    double best_serial = 1e30, best_overlap = 1e30, best_gemm = 1e30, best_ar = 1e30;
    for (int r = 0; r < 5; r++) {
        tpar_comm_barrier(c);
        double t0 = tpar_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0f, A, m, B, m, 0.0f, Cm, m);
        double t1 = tpar_now();
        if (tpar_comm_allreduce(c, v, w, vec, TPAR_F32, TPAR_SUM)) die(c, "allreduce");
        double t2 = tpar_now();
        tpar_comm_barrier(c);
        tpar_request_t *req;
        double t3 = tpar_now();
        if (tpar_comm_iallreduce(c, v, w, vec, TPAR_F32, TPAR_SUM, &req)) die(c, "iallreduce");
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0f, A, m, B, m, 0.0f, Cm, m);
        if (tpar_comm_wait(req)) die(c, "wait");
        double t4 = tpar_now();
        double g = tmax(c, t1 - t0), a = tmax(c, t2 - t1), s = tmax(c, t2 - t0), o = tmax(c, t4 - t3);
        best_gemm = g < best_gemm ? g : best_gemm;
        best_ar = a < best_ar ? a : best_ar;
        best_serial = s < best_serial ? s : best_serial;
        best_overlap = o < best_overlap ? o : best_overlap;
    }
    if (tpar_comm_rank(c) == 0) {
        if (json)
            printf("{\"op\":\"overlap\",\"backend\":\"shm\",\"ranks\":%d,\"progress\":\"%s\",\"gemm_us\":%.1f,"
                   "\"allreduce_us\":%.1f,\"serial_us\":%.1f,\"overlapped_us\":%.1f,\"hidden_fraction\":%.3f}\n",
                   tpar_comm_size(c), progress_thread ? "thread" : "inline", best_gemm * 1e6, best_ar * 1e6,
                   best_serial * 1e6, best_overlap * 1e6, (best_serial - best_overlap) / best_ar);
        else
            printf("\n# overlap (progress: %s): sgemm %dx%dx%d %.0f us, allreduce 16 MiB %.0f us\n"
                   "#   back to back %.0f us, issued together %.0f us: %.0f%% of the all-reduce hidden\n",
                   progress_thread ? "worker thread" : "inside wait", m, m, m, best_gemm * 1e6, best_ar * 1e6,
                   best_serial * 1e6, best_overlap * 1e6, 100.0 * (best_serial - best_overlap) / best_ar);
    }
    free(A), free(B), free(Cm), free(v), free(w);
}

int main(int argc, char **argv) {
    size_t max_bytes = 256u << 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--max-bytes") && i + 1 < argc) max_bytes = (size_t)atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_comm [--json] [--max-bytes B]\n");
            return 2;
        }
    }
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK")) {
        const char *np = getenv("BENCH_COMM_RANKS") ? getenv("BENCH_COMM_RANKS") : "2";
        char **av = calloc((size_t)argc + 8, sizeof *av);
        int k = 0;
        av[k++] = "mpiexec";
        if (geteuid() == 0) av[k++] = "--allow-run-as-root";
        av[k++] = "--oversubscribe", av[k++] = "-np", av[k++] = (char *)np;
        for (int i = 0; i < argc; i++) av[k++] = argv[i];
        execvp("mpiexec", av);
        fprintf(stderr, "bench_comm: cannot run mpiexec\n");
        return 1;
    }
    /* Open MPI's all-reduce mallocs a temporary buffer the size of the message on every call.
     * glibc serves requests of 32 MiB and more with a fresh mmap each time (its adaptive mmap
     * threshold stops there), so every call would fault the whole buffer in: on this VM that
     * makes MPI_Allreduce 30x slower from 32 MiB on (0.3 GB/s). Keep large blocks in the
     * heap, so MPI is measured at its best. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    tpar_comm_config_t cfg = tpar_comm_config_default();
    cfg.backend = TPAR_BACKEND_SHM;
    tpar_comm_t *c = NULL;
    tpar_err_t err;
    tpar_err_clear(&err);
    if (tpar_comm_init(&cfg, &c, &err)) {
        fprintf(stderr, "bench_comm: %s\n", err.msg);
        return 1;
    }
    int n = tpar_comm_size(c), r = tpar_comm_rank(c);
    double factor = 2.0 * (n - 1) / n;
    double bw = memcpy_bw(c);
    double lim_direct = bw * 2 * n / (3 * n - 1), lim_staged = bw * 2 * n / (5 * n - 2);
    if (r == 0) {
        if (json)
            printf("{\"op\":\"memcpy\",\"ranks\":%d,\"bytes\":%d,\"per_rank_gbs\":%.3f,"
                   "\"allreduce_algbw_limit_gbs\":%.3f,\"heap_allreduce_algbw_limit_gbs\":%.3f}\n",
                   n, 64 << 20, bw / 1e9, lim_direct / 1e9, lim_staged / 1e9);
        else
            printf("# memcpy 64 MiB, all %d ranks at once: %.2f GB/s per rank; all-reduce algbw limit "
                   "%.2f GB/s direct, %.2f GB/s staged\n"
                   "# all-reduce float32 sum, %d ranks: tpar shm vs MPI_Allreduce (medians of %d interleaved rounds)\n"
                   "# on tpar_comm_mem_alloc buffers (tpar direct), then on heap buffers (tpar staged)\n"
                   "# %10s %10s %11s %10s %11s %7s %10s %10s %7s\n",
                   n, bw / 1e9, lim_direct / 1e9, lim_staged / 1e9, n, ROUNDS, "bytes", "tpar(us)", "busbw(GB/s)", "mpi(us)", "busbw(GB/s)",
                   "ratio", "heap:tpar", "heap:mpi", "ratio");
        fflush(stdout);
    }
    /* Two pools, each big enough for the largest size: tpar_comm_mem_alloc memory (tpar reads
     * the peers' buffers directly) and ordinary heap memory (tpar stages through shared
     * memory). MPI_Allreduce runs on both, so each ratio compares the same buffers. */
    size_t pool_bytes = 2 * (max_bytes > (32u << 20) ? 2 * max_bytes : (64u << 20));
    float *heap = tpar_calloc_aligned(pool_bytes, 1), *shared = tpar_comm_mem_alloc(c, pool_bytes);
    if (!heap || !shared) die(c, "out of memory for the buffer pools");
    for (size_t bytes = 8; bytes <= max_bytes; bytes *= 2) {
        size_t count = bytes / 4;
        size_t nbuf = (64u << 20) / bytes < 2 ? 2 : (64u << 20) / bytes; /* fresh buffers: >= 64 MiB rotated */
        if (nbuf > 64) nbuf = 64;
        for (size_t i = 0; i < 2 * nbuf * count; i++) heap[i] = shared[i] = (float)(i % 7);
        int iters = (int)((256u << 20) / bytes);
        iters = iters < 3 ? 3 : iters > 200 ? 200 : iters;
        /* Each round times all four back to back, so a round's two ratios compare runs that
         * met the same machine state (this VM's vCPUs move between placements that change
         * both libraries' speeds); the table has the medians over rounds. */
        double t[4][ROUNDS], ratio[2][ROUNDS]; /* tpar direct, MPI, on the shared pool; the same on the heap */
        for (int round = 0; round < ROUNDS; round++) {
            for (int which = 0; which < 4; which++) {
                float *pool = which < 2 ? shared : heap;
                if (tpar_comm_barrier(c)) die(c, "barrier");
                double t0 = tpar_now();
                for (int i = -1; i < iters; i++) { /* i = -1: warm-up, not timed */
                    if (i == 0) t0 = tpar_now();
                    float *b = pool + (size_t)((i + 1) % (int)nbuf) * 2 * count;
                    if (which % 2 == 0) {
                        if (tpar_comm_allreduce(c, b, b + count, count, TPAR_F32, TPAR_SUM)) die(c, "allreduce");
                    } else if (MPI_Allreduce(b, b + count, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD)) {
                        die(NULL, "MPI_Allreduce");
                    }
                }
                t[which][round] = tmax(c, (tpar_now() - t0) / iters);
            }
            ratio[0][round] = t[1][round] / t[0][round];
            ratio[1][round] = t[3][round] / t[2][round];
        }
        double med[4], rat[2] = {median(ratio[0], ROUNDS), median(ratio[1], ROUNDS)};
        for (int w = 0; w < 4; w++) med[w] = median(t[w], ROUNDS);
        if (r != 0) continue;
        double a_t = (double)bytes / med[0] / 1e9, a_m = (double)bytes / med[1] / 1e9;
        if (json)
            printf("{\"op\":\"allreduce\",\"backend\":\"shm\",\"ranks\":%d,\"bytes\":%zu,\"time_us\":%.3f,"
                   "\"algbw_gbs\":%.4f,\"busbw_gbs\":%.4f,\"mpi_time_us\":%.3f,\"mpi_busbw_gbs\":%.4f,\"ratio\":%.3f,"
                   "\"heap_time_us\":%.3f,\"heap_mpi_time_us\":%.3f,\"heap_ratio\":%.3f}\n",
                   n, bytes, med[0] * 1e6, a_t, a_t * factor, med[1] * 1e6, a_m * factor, rat[0],
                   med[2] * 1e6, med[3] * 1e6, rat[1]);
        else
            printf("  %10zu %10.2f %11.3f %10.2f %11.3f %7.2f %10.2f %10.2f %7.2f\n", bytes, med[0] * 1e6, a_t * factor,
                   med[1] * 1e6, a_m * factor, rat[0], med[2] * 1e6, med[3] * 1e6, rat[1]);
        fflush(stdout);
    }
    tpar_free(heap);
    tpar_comm_mem_free(c, shared);
    if (r == 0 && !json) printf("# ratio = median over rounds of MPI time / tpar time on the same buffers (> 1: tpar faster)\n");
    /* The communicator's choice (TPAR_COMM_PROGRESS, else a thread only with a spare core). */
    const char *p = getenv("TPAR_COMM_PROGRESS");
    overlap(c, p && *p && strcmp(p, "auto") ? !strcmp(p, "thread") : sysconf(_SC_NPROCESSORS_ONLN) > n);
    tpar_comm_free(c);
    return 0;
}
