/* bench_generate: decode of gpt2-124m (f32, random weights, greedy, 64-token prompt) against
 * the machine's read-bandwidth bound, measured in the same run, and time to first token
 * against another tpar binary (e.g. a build of an older commit), side by side.
 *
 * Decoding one token reads every weight of the rank's shards once (attention over a short cache
 * is small beside them), so a rank cannot beat
 *     bound tokens/s = (read bandwidth of one rank) / (weight bytes one rank reads per token).
 * The bandwidth is measured here, with the same threads as the run: tp x threads-per-rank
 * OpenMP threads each stream their contiguous slice of a 1 GiB buffer at once (all ranks read
 * together, as in decode; a rank's bandwidth is 1/tp of the total), the best of a plain vector
 * loop and a prefetching AVX-512 one (the kernel's own way of reading). The buffer is larger than
 * the last-level cache, so the reads come from memory, as the weights' 494 MB do. Bytes per
 * token per rank come from the model's shapes (the rank's matrices, biases and norms, the
 * embedding and position rows).
 *
 * For each layout (TP, OpenMP threads per rank: 1 x 1, 1 x cores, 2 x cores/2), each round
 * measures the bandwidth, runs this build's `tpar generate` with OMP_NUM_THREADS and TPAR_THREADS set, then the
 * other binary's: interleaved, so both see the same load. The table shows the best of the
 * rounds (highest bandwidth and tokens/s, lowest time to first token) and the ratios.
 * usage: bench_generate [rounds (default 3)] [other tpar binary to compare (default: none)] */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tpar/core.h"
#include "tpar/model.h"

enum { PROMPT = 64, TOKENS = 32 };
#define MODEL "gpt2-124m"
#define BW_BYTES ((size_t)1 << 30)

typedef struct {
    double ttft_ms, tps; // best: lowest time to first token, highest decode tokens/s
} result_t;

/* Runs `tpar generate` once with `threads` OpenMP threads per rank; 0 and the figures on success. */
static int run_one(const char *tpar, int tp, int threads, double *ttft, double *tps) {
    char cmd[2048], prompt[PROMPT + 1];
    for (int i = 0; i < PROMPT; i++) prompt[i] = "To be, or not to be: that is the question. "[i % 44];
    prompt[PROMPT] = 0;
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=%d TPAR_THREADS=%d '%s' generate --model %s --tp %d --prompt '%s' --tokens %d "
             "--temperature 0 2>&1 >/dev/null",
             threads, threads, tpar, MODEL, tp, prompt, TOKENS);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        const char *a = strstr(line, "time to first token "), *b = strstr(line, " tokens, ");
        if (a && b && sscanf(a, "time to first token %lf", ttft) == 1 && sscanf(b, " tokens, %lf", tps) == 1) found = 1;
        else if (!strstr(line, "loading")) fputs(line, stderr);
    }
    int rc = pclose(p);
    return rc == 0 && found ? 0 : -1;
}

static int run_best(const char *tpar, int tp, int threads, result_t *r) {
    double ttft, tps;
    if (run_one(tpar, tp, threads, &ttft, &tps)) {
        fprintf(stderr, "bench_generate: '%s' at TP=%d with %d threads per rank failed\n", tpar, tp, threads);
        return -1;
    }
    if (ttft < r->ttft_ms) r->ttft_ms = ttft;
    if (tps > r->tps) r->tps = tps;
    return 0;
}

/* Sum of a (n floats), read once: AVX-512 loads with four accumulators and each line prefetched
 * 8 KiB ahead (the small-M kernel's reading pattern), or a plain vector loop. */
static float stream_sum(const float *a, size_t n, int prefetch) {
#ifdef __AVX512F__
    if (prefetch) {
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t i = 0;
        for (; i + 64 <= n; i += 64) {
            for (int k = 0; k < 64; k += 16) _mm_prefetch((const char *)(a + i + 2048 + k), _MM_HINT_T0);
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
            s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
            s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
        for (; i < n; i++) s += a[i];
        return s;
    }
#endif
    (void)prefetch;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += a[i];
    return s;
}

/* Read bandwidth in bytes/s of nt threads each summing its contiguous slice of buf (n floats):
 * the best of 5 passes of each way of reading (other processes only ever slow a pass down). */
static double read_bandwidth(const float *buf, size_t n, int nt) {
    double best = 0.0;
    for (int rep = 0; rep < 10; rep++) {
        float tot = 0.0f;
        double t0 = tpar_now();
#pragma omp parallel num_threads(nt) reduction(+ : tot)
        {
            size_t id = (size_t)omp_get_thread_num(), k = (size_t)omp_get_num_threads();
            size_t len = id + 1 == k ? n - n / k * id : n / k;
            tot += stream_sum(buf + n / k * id, len, rep % 2);
        }
        double t = tpar_now() - t0, bw = (double)n * sizeof(float) / t;
        if (bw > best) best = bw;
        if (tot < 0.0f) fprintf(stderr, "impossible sum %g\n", (double)tot); // keeps the reads alive
    }
    return best;
}

/* Bytes of weights one rank reads to decode one token at this TP size (f32). */
static double bytes_per_token(const tpar_gpt2_config_t *c, int tp) {
    double C = c->n_embd, L = c->n_layer, Vp = tpar_vocab_padded(c->vocab_size, tp, 64);
    double block = 12 * C * C / tp   // QKV (3C/tp, C), proj (C, C/tp), fc (4C/tp, C), proj (C, 4C/tp)
                   + 7 * C / tp      // QKV and fc biases
                   + 2 * C + 4 * C;  // the row-parallel biases, two layernorms
    return 4.0 * (L * block + Vp / tp * C + 2 * C + 2 * C); // + head, ln_f, the token's wte and wpe rows
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    const char *other = argc > 2 ? argv[2] : NULL;
    if (rounds < 1) rounds = 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    tpar_err_t err;
    tpar_gpt2_config_t cfg;
    if (tpar_gpt2_preset(MODEL, &cfg, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    float *buf = tpar_calloc_aligned(BW_BYTES / sizeof(float), sizeof(float));
    if (!buf) {
        fprintf(stderr, "bench_generate: out of memory for the 1 GiB bandwidth buffer\n");
        return 1;
    }
    size_t nbuf = BW_BYTES / sizeof(float);
    for (size_t i = 0; i < nbuf; i++) buf[i] = (float)(i & 7); // touched: no page faults while timed

    // (TP, OpenMP threads per rank): one thread, all the cores in one rank, the cores split over two ranks.
    int layouts[3][2] = {{1, 1}, {1, (int)cores}, {2, cores / 2 > 0 ? (int)(cores / 2) : 1}}, nl = 3;
    if (cores == 1) nl = 1; // 1 x cores is 1 x 1; TP=2 would share one core
    double bw[3] = {0};
    result_t now[3], old[3];
    for (int i = 0; i < 3; i++) now[i] = old[i] = (result_t){1e30, 0.0};
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < nl; i++) {
            int tp = layouts[i][0], th = layouts[i][1];
            double b = read_bandwidth(buf, nbuf, tp * th) / tp;
            if (b > bw[i]) bw[i] = b;
            if (run_best(TPAR_BIN, tp, th, &now[i]) || (other && run_best(other, tp, th, &old[i]))) return 1;
        }
    tpar_free(buf);

    printf("tpar generate --model %s: random weights, greedy, prompt %d tokens, %d tokens; best of %d rounds\n",
           MODEL, PROMPT, TOKENS, rounds);
    printf("bound = read bandwidth per rank (1 GiB streamed by TP x threads at once, / TP) / weight bytes per rank "
           "per token\n");
    if (other) printf("other binary: %s (same OMP_NUM_THREADS and TPAR_THREADS)\n", other);
    const char *wait = getenv("OMP_WAIT_POLICY");
    printf("OMP_WAIT_POLICY=%s (passed on to the runs; see docs/INFERENCE.md)\n", wait ? wait : "(unset: active)");
    printf("%-2s %-4s | %9s %10s %9s | %9s %7s %9s | %9s %9s %7s\n", "TP", "thr", "GB/s/rank", "MB/tok/rk",
           "bound t/s", "tok/s", "of bnd", "other t/s", "TTFT ms", "other ms", "TTFT x");
    for (int i = 0; i < nl; i++) {
        int tp = layouts[i][0], th = layouts[i][1];
        double bpt = bytes_per_token(&cfg, tp), bound = bw[i] / bpt;
        printf("%-2d %-4d | %9.1f %10.1f %9.1f | %9.1f %6.0f%% ", tp, th, bw[i] / 1e9, bpt / 1e6, bound, now[i].tps,
               100.0 * now[i].tps / bound);
        if (other)
            printf("%9.1f | %9.1f %9.1f %6.2fx\n", old[i].tps, now[i].ttft_ms, old[i].ttft_ms,
                   now[i].ttft_ms / old[i].ttft_ms);
        else printf("%9s | %9.1f %9s %7s\n", "-", now[i].ttft_ms, "-", "-");
    }
    printf("TTFT x = this build's time to first token / the other binary's (target <= 0.5); of bnd: target >= 85%%\n");
    return 0;
}
