/* `tpar bench layers`: forward + backward time of the tensor-parallel attention, MLP and
 * transformer block at GPT-2 small shapes (C 768, 12 heads, ffn 3072), for each TP size
 * (ranks started with `tpar launch`, cores / TP threads each) and sequence parallelism off and on;
 * the communication share (time blocked in collectives), the GEMM share (the GEMM seam alone
 * on the same shard shapes, timed alone, over the layer's time), and the TP speedup of the
 * block measured side by side in the same run. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_layers.h"
#include "cli.h"
#include "tpar/comm.h"
#include "tpar/kernels.h"
#include "tpar/parallel.h"

#define CMD "bench layers"
enum { MAX_LIST = 16, C_ = 768, NH_ = 12, H_ = 3072 };
static const char *const layers[] = {"attention", "mlp", "block"};
enum { N_LAYERS = 3 };

typedef struct {
    int tokens[MAX_LIST], ntokens;
    int tps[MAX_LIST], ntps;
    int iters, seq, json, worker;
} opts_t;

typedef struct {
    char layer[16];
    int tp, sp, tokens;
    double ms, comm_frac, gemm_frac;
} row_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar bench layers [--tokens 256,512,1024,2048] [--tp 1,2] [--seq T] [--iters N] [--json]\n\n"
            "Forward + backward time of the tensor-parallel attention, MLP and transformer block at\n"
            "GPT-2 small shapes (hidden 768, 12 heads, ffn 3072), B*T tokens with T = --seq (256),\n"
            "for each TP size (ranks started with `tpar launch`, cores / TP threads each), sequence\n"
            "parallelism off and on. Columns: ms (best of --iters, slowest rank), comm (share of the\n"
            "time blocked in collectives), gemm (tpar_gemm alone on the same shard shapes, timed\n"
            "alone, over the layer time), other (the rest: tpar's kernels and overhead). Ends with\n"
            "the block's speedup of each TP size over TP = 1, measured in the same run.\n"
            "--json prints one object per layer, TP size and SP setting instead.\n");
}

/* ---- worker: one rank of a TP group ------------------------------------------------------ */

/* The GEMMs of the layer's linear shards, as tpar_matmul_forward/backward call them. */
static double raw_gemm_s(const char *layer, int N, int tp, float *a, float *b, float *c) {
    int shapes[4][2] = {{C_, 3 * C_ / tp}, {C_ / tp, C_}, {C_, H_ / tp}, {H_ / tp, C_}}; // (in, out)
    int first = strcmp(layer, "mlp") ? 0 : 2, last = strcmp(layer, "attention") ? 4 : 2;
    double t0 = tpar_now();
    for (int i = first; i < last; i++) {
        int K = shapes[i][0], M = shapes[i][1];
        tpar_gemm(NULL, 0, 1, N, M, K, 1.0f, a, K, b, K, 0.0f, c, M);
        tpar_gemm(NULL, 0, 0, N, K, M, 1.0f, c, M, b, K, 1.0f, a, K);
        tpar_gemm(NULL, 1, 0, M, K, N, 1.0f, c, M, a, K, 1.0f, b, K);
    }
    return tpar_now() - t0;
}

static tpar_status run_layer(tpar_block_t *blk, int l, float *y, float *dx, const float *x, const float *dy, int B,
                             int T, tpar_err_t *err) {
    tpar_status st;
    if (l == 0) {
        if ((st = tpar_tp_attention_forward(&blk->attn, y, x, B, T, err))) return st;
        return tpar_tp_attention_backward(&blk->attn, dx, dy, x, B, T, err);
    }
    if (l == 1) {
        if ((st = tpar_tp_mlp_forward(&blk->mlp, y, x, B * T, err))) return st;
        return tpar_tp_mlp_backward(&blk->mlp, dx, dy, x, B * T, err);
    }
    if ((st = tpar_block_forward(blk, y, x, B, T, 0, err))) return st;
    return tpar_block_backward(blk, dx, dy, x, B, T, 0, err);
}

static float *alloc_rand(size_t n, unsigned *seed, float scale) {
    float *p = tpar_calloc_aligned(n, sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = scale * ((float)rand_r(seed) / (float)RAND_MAX - 0.5f);
    return p;
}

/* One (tokens, sp) setting: every layer, best of iters, rank 0 prints a JSON line each. */
static tpar_status bench_setting(tpar_comm_t *world, int tokens, int sp, const opts_t *o, tpar_err_t *err) {
    tpar_tp_t tp;
    tpar_status st = tpar_tp_init(&tp, world, sp, err);
    if (st) return st;
    int T = tokens < o->seq ? tokens : o->seq, B = tokens / T;
    tpar_block_t blk;
    if ((st = tpar_block_init(&blk, &tp, C_, NH_, H_, B, T, 0.0f, 1, err))) return st;
    unsigned seed = 1234;
    size_t np = tpar_block_numel(&blk), R = (size_t)(sp ? tokens / tp.size : tokens) * C_;
    size_t ng = (size_t)(tokens > C_ ? tokens : C_) * H_; // the largest GEMM operand: (N, H) or (H, C)
    float *params = alloc_rand(np, &seed, 0.04f), *grads = tpar_calloc_aligned(np, sizeof(float));
    float *x = alloc_rand(R, &seed, 2.0f), *dy = alloc_rand(R, &seed, 2.0f);
    float *y = tpar_calloc_aligned(R, sizeof(float)), *dx = tpar_calloc_aligned(R, sizeof(float));
    float *ga = alloc_rand(ng, &seed, 1.0f), *gb = alloc_rand(ng, &seed, 1.0f), *gc = alloc_rand(ng, &seed, 1.0f);
    if (!params || !grads || !x || !dy || !y || !dx || !ga || !gb || !gc) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "bench layers: out of memory at %d tokens", tokens);
        goto done;
    }
    tpar_block_carve(&blk, params, grads);
    for (int i = 0; i < C_; i++) blk.params[TPAR_BLOCK_LN1W][i] = blk.params[TPAR_BLOCK_LN2W][i] = 1.0f;
    for (int l = 0; l < N_LAYERS && !st; l++) {
        double best = 1e30, best_gemm = 1e30, wait = 0.0, busy = 0.0;
        for (int it = 0; it <= o->iters && !st; it++) { // iteration 0 warms up
            if ((st = tpar_comm_barrier(world))) break;
            tpar_comm_stats_t s0, s1;
            tpar_comm_stats(world, &s0);
            double t0 = tpar_now();
            if ((st = run_layer(&blk, l, y, dx, x, dy, B, T, err))) break;
            double dt = tpar_now() - t0;
            tpar_comm_stats(world, &s1);
            double g = raw_gemm_s(layers[l], tokens, tp.size, ga, gb, gc);
            double v[2] = {dt, g};
            if ((st = tpar_comm_allreduce(world, TPAR_IN_PLACE, v, 2, TPAR_F64, TPAR_MAX))) break;
            if (it == 0) continue;
            best = v[0] < best ? v[0] : best;
            best_gemm = v[1] < best_gemm ? v[1] : best_gemm;
            wait += s1.wait_s - s0.wait_s;
            busy += dt;
        }
        if (st) break;
        double frac = busy > 0 ? wait / busy : 0.0;
        if ((st = tpar_comm_allreduce(world, TPAR_IN_PLACE, &frac, 1, TPAR_F64, TPAR_MAX))) break;
        if (tp.rank == 0)
            printf("{\"layer\": \"%s\", \"tp\": %d, \"sp\": %d, \"tokens\": %d, \"ms\": %.3f, \"comm_frac\": %.4f, "
                   "\"gemm_frac\": %.4f}\n",
                   layers[l], tp.size, sp, tokens, best * 1e3, frac, best_gemm / best);
        fflush(stdout);
    }
    if (st && !err->msg[0]) tpar_err_set(err, st, "bench layers: %s", tpar_comm_error(world));
done:
    tpar_free(params), tpar_free(grads), tpar_free(x), tpar_free(dy), tpar_free(y), tpar_free(dx);
    tpar_free(ga), tpar_free(gb), tpar_free(gc);
    tpar_block_free(&blk);
    return st;
}

static int worker(const opts_t *o) {
    tpar_err_t err = {0};
    tpar_comm_t *world = NULL;
    int threads;
    if (tpar_comm_init(NULL, &world, &err) || tpar_cli_rank_compute(&threads, &err)) {
        tpar_cli_error(CMD, "%s", err.msg);
        tpar_comm_free(world);
        return TPAR_EXIT_FAIL;
    }
    tpar_status st = TPAR_OK;
    for (int i = 0; i < o->ntokens && !st; i++)
        for (int sp = 0; sp <= (tpar_comm_size(world) > 1) && !st; sp++)
            st = bench_setting(world, o->tokens[i], sp, o, &err);
    if (st) tpar_cli_error(CMD, "rank %d: %s", tpar_comm_rank(world), err.msg);
    tpar_comm_free(world);
    return st ? TPAR_EXIT_FAIL : TPAR_EXIT_OK;
}

/* ---- driver: runs each TP size under `tpar launch`, collects and compares ------------- */

static int parse_row(const char *line, row_t *r) {
    return sscanf(line,
                  "{\"layer\": \"%15[a-z]\", \"tp\": %d, \"sp\": %d, \"tokens\": %d, \"ms\": %lf, \"comm_frac\": %lf, "
                  "\"gemm_frac\": %lf}",
                  r->layer, &r->tp, &r->sp, &r->tokens, &r->ms, &r->comm_frac, &r->gemm_frac) == 7;
}

/* Runs one TP size; appends its rows. */
static int run_tp(int tp, const opts_t *o, const char *launcher, const char *const *self, int nself, row_t *rows,
                  int *nrows, int maxrows) {
    char ntp[16], toks[256] = "", iters[16], seq[16];
    snprintf(ntp, sizeof ntp, "%d", tp);
    snprintf(iters, sizeof iters, "%d", o->iters);
    snprintf(seq, sizeof seq, "%d", o->seq);
    for (int i = 0; i < o->ntokens; i++)
        snprintf(toks + strlen(toks), sizeof toks - strlen(toks), "%s%d", i ? "," : "", o->tokens[i]);
    const char *argv[32];
    int a = 0;
    argv[a++] = launcher, argv[a++] = "launch", argv[a++] = "-n", argv[a++] = ntp, argv[a++] = "--";
    for (int i = 0; i < nself; i++) argv[a++] = self[i];
    argv[a++] = "--worker", argv[a++] = "--tokens", argv[a++] = toks, argv[a++] = "--iters", argv[a++] = iters;
    argv[a++] = "--seq", argv[a++] = seq, argv[a] = NULL;
    int fd[2];
    if (pipe(fd)) {
        tpar_cli_error(CMD, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        tpar_cli_error(CMD, "fork: %s", strerror(errno));
        close(fd[0]), close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]), close(fd[1]);
        execv(launcher, (char *const *)argv);
        fprintf(stderr, "tpar %s: error: cannot run %s: %s\n", CMD, launcher, strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    FILE *in = fdopen(fd[0], "r");
    char line[512];
    while (in && fgets(line, sizeof line, in)) {
        row_t r;
        if (parse_row(line, &r) && *nrows < maxrows) {
            rows[(*nrows)++] = r;
            if (o->json) fputs(line, stdout), fflush(stdout);
        } else if (!o->json) {
            fputs(line, stdout); // anything else the ranks say
        }
    }
    if (in) fclose(in);
    else close(fd[0]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        tpar_cli_error(CMD, "the TP = %d run failed (exit status %d)", tp, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
        return -1;
    }
    return 0;
}

static const row_t *find(const row_t *rows, int n, const char *layer, int tp, int sp, int tokens) {
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].layer, layer) && rows[i].tp == tp && rows[i].sp == sp && rows[i].tokens == tokens)
            return &rows[i];
    return NULL;
}

static void print_table(const row_t *rows, int n, const opts_t *o) {
    printf("%-10s %3s %3s %7s %10s %7s %7s %7s\n", "layer", "tp", "sp", "tokens", "ms", "comm", "gemm", "other");
    for (int i = 0; i < n; i++) {
        const row_t *r = &rows[i];
        double other = 1.0 - r->comm_frac - r->gemm_frac;
        printf("%-10s %3d %3d %7d %10.2f %6.1f%% %6.1f%% %6.1f%%\n", r->layer, r->tp, r->sp, r->tokens, r->ms,
               100 * r->comm_frac, 100 * r->gemm_frac, 100 * other);
    }
    printf("\nblock forward+backward speedup over TP = 1 (target >= 1.8x at TP = 2):\n");
    for (int t = 0; t < o->ntps; t++) {
        if (o->tps[t] == 1) continue;
        for (int sp = 0; sp <= 1; sp++)
            for (int i = 0; i < o->ntokens; i++) {
                const row_t *a = find(rows, n, "block", 1, 0, o->tokens[i]);
                const row_t *b = find(rows, n, "block", o->tps[t], sp, o->tokens[i]);
                if (a && b)
                    printf("  tp %d sp %d tokens %5d: %.2fx (%.2f ms -> %.2f ms)\n", o->tps[t], sp, o->tokens[i],
                           a->ms / b->ms, a->ms, b->ms);
            }
    }
}

int tpar_bench_layers_main(int argc, char **argv, const char *launcher, const char *const *args, int nargs) {
    static const struct option lopts[] = {{"tokens", required_argument, NULL, 't'},
                                          {"tp", required_argument, NULL, 'p'},
                                          {"seq", required_argument, NULL, 's'},
                                          {"iters", required_argument, NULL, 'i'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"worker", no_argument, NULL, 'w'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    opts_t o = {.tokens = {256, 512, 1024, 2048}, .ntokens = 4, .tps = {1, 2}, .ntps = 2, .iters = 3, .seq = 256};
    long long v = 0;
    int c;
    optind = 1;
    while ((c = tpar_cli_getopt(CMD, argc, argv, "h", lopts)) != -1) {
        int bad = 0;
        switch (c) {
        case 't': bad = tpar_cli_int_list(CMD, "--tokens", optarg, 1, 1 << 20, o.tokens, MAX_LIST, &o.ntokens); break;
        case 'p': bad = tpar_cli_int_list(CMD, "--tp", optarg, 1, 64, o.tps, MAX_LIST, &o.ntps); break;
        case 's': bad = tpar_cli_int(CMD, "--seq", optarg, 1, 1 << 16, &v), o.seq = (int)v; break;
        case 'i': bad = tpar_cli_int(CMD, "--iters", optarg, 1, 1000, &v), o.iters = (int)v; break;
        case 'j': o.json = 1; break;
        case 'w': o.worker = 1; break;
        case 'h': usage(stdout); return TPAR_EXIT_OK;
        default: bad = 1;
        }
        if (bad) return TPAR_EXIT_USAGE;
    }
    if (optind < argc) {
        tpar_cli_error(CMD, "unexpected argument '%s'", argv[optind]);
        return TPAR_EXIT_USAGE;
    }
    for (int i = 0; i < o.ntokens; i++) {
        int T = o.tokens[i] < o.seq ? o.tokens[i] : o.seq;
        if (o.tokens[i] % T) {
            tpar_cli_error(CMD, "--tokens %d is not a multiple of the sequence length %d (--seq)", o.tokens[i], T);
            return TPAR_EXIT_USAGE;
        }
    }
    if (o.worker) return worker(&o);
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0 || nargs > 8) {
        tpar_cli_error(CMD, "cannot find this program's path (/proc/self/exe): %s", strerror(errno));
        return TPAR_EXIT_FAIL;
    }
    exe[len] = '\0';
    const char *self[9] = {exe};
    for (int i = 0; i < nargs; i++) self[1 + i] = args[i];
    int nself = 1 + nargs;
    if (!launcher) launcher = exe;
    row_t rows[MAX_LIST * MAX_LIST * N_LAYERS * 2];
    int n = 0;
    for (int t = 0; t < o.ntps; t++)
        if (run_tp(o.tps[t], &o, launcher, self, nself, rows, &n, (int)(sizeof rows / sizeof rows[0])))
            return TPAR_EXIT_FAIL;
    if (!o.json) print_table(rows, n, &o);
    return TPAR_EXIT_OK;
}

int tpar_bench_layers(int argc, char **argv) {
    const char *args[] = {"bench", "layers"};
    return tpar_bench_layers_main(argc, argv, NULL, args, 2);
}
