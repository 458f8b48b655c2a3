/* `tpar generate`: sample text with tensor-parallel inference (src/infer). Started by hand it
 * checks the options and the checkpoint, then re-executes itself under `tpar launch -n tp`
 * (the same way as `tpar train`); as a rank it loads its shards, prefills the prompt, decodes
 * with the KV cache and, on rank 0, streams the tokens to stdout. Timings go to stderr. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tpar/comm.h"
#include "tpar/infer.h"
#include "tpar/io.h"
#include "tpar/kernels.h"

typedef struct {
    tpar_model_source_t src;
    int tp, tokens;
    const char *prompt;
    tpar_sampler_t sampler;
} gen_opts_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar generate (--ckpt DIR | --model NAME) --prompt TEXT [options]\n\n"
            "Generate text with tensor-parallel inference: every rank holds its shards of the weights\n"
            "and the KV cache of its attention heads. Starts --tp ranks itself (through `tpar launch`)\n"
            "unless it already runs as a rank. Tokens stream to stdout; timings go to stderr.\n\n"
            "  --ckpt DIR          a `tpar train --save-dir` directory (its newest valid checkpoint), a\n"
            "                      step directory, or a model.safetensors file; saved at any TP size\n"
            "  --model NAME        instead of --ckpt: preset %s with random weights (benchmarks)\n"
            "  --tp N              tensor-parallel ranks (default 1); must divide the number of heads\n"
            "  --prompt TEXT       the prompt, as bytes (byte-level tokens); must fit the context\n"
            "  --tokens K          tokens to generate (default 200); past the context length the window\n"
            "                      slides: the last half of the context is kept and prefilled again\n"
            "  --temperature T     0: greedy; default 0.8\n"
            "  --top-k K           sample among the K most likely tokens only (default 0: all)\n"
            "  --seed S            sampling stream (and the weights of --model); default 1337\n\n"
            "Tokens below 256 are written as bytes (control bytes other than newline and tab as \\xNN),\n"
            "larger ids (non-byte vocabularies) as <id>.\n",
            TPAR_GPT2_PRESETS);
}

/* Checks everything that can be checked without ranks; fills cfg. world > 0: also world == tp. */
static tpar_status validate(const gen_opts_t *o, int world, tpar_gpt2_config_t *cfg, tpar_err_t *err) {
    if (!o->src.ckpt == !o->src.preset)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "give one of --ckpt DIR (trained weights) or --model NAME (random weights)");
    if (!o->prompt || !o->prompt[0])
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "the prompt is empty (hint: --prompt TEXT with at least one character)");
    tpar_status st = tpar_sampler_check(&o->sampler, err);
    if (st) return st;
    char path[TPAR_CKPT_PATH_MAX + 32];
    if ((st = tpar_infer_resolve(&o->src, 0, path, sizeof path, cfg, NULL, err)) || (st = tpar_gpt2_check(cfg, o->tp, err)))
        return st;
    size_t n = strlen(o->prompt);
    if (n > (size_t)cfg->n_positions)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "the prompt has %zu tokens but the model's context is %d positions (hint: shorten it)", n,
                            cfg->n_positions);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)o->prompt[i] >= cfg->vocab_size)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "prompt byte %zu (0x%02x) is outside the model's vocabulary of %d",
                                i, (unsigned char)o->prompt[i], cfg->vocab_size);
    if (world > 0 && world != o->tp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "the world has %d ranks but --tp is %d (hint: let `tpar generate` launch its ranks itself)",
                            world, o->tp);
    return TPAR_OK;
}

static tpar_status print_token(void *ctx, int token, tpar_err_t *err) {
    (void)ctx, (void)err;
    if (token >= 256) printf("<%d>", token);
    else if (token < 32 && token != '\n' && token != '\t') printf("\\x%02x", token); // keep the terminal sane
    else putchar(token);
    fflush(stdout);
    return TPAR_OK;
}

/* One rank's job. *quiet = 1 when the error is the same on every rank and rank 0 reports it. */
static tpar_status run_rank(const gen_opts_t *o, int *rank, int *quiet, tpar_err_t *err) {
    tpar_comm_t *world = NULL;
    tpar_gpt2_t *m = NULL;
    tpar_infer_t s = {0};
    int *prompt = NULL, *out = NULL;
    tpar_gpt2_config_t cfg;
    int threads = 1;
    *quiet = 1;
    tpar_status st = tpar_comm_init(NULL, &world, err);
    if (st) return st;
    *rank = tpar_comm_rank(world);
    if ((st = validate(o, tpar_comm_size(world), &cfg, err)) || (st = tpar_cli_rank_compute(&threads, err))) goto done;
    int n = (int)strlen(o->prompt), T = cfg.n_positions < n + o->tokens ? cfg.n_positions : n + o->tokens;
    prompt = malloc((size_t)n * sizeof *prompt);
    out = malloc((size_t)o->tokens * sizeof *out);
    if (!prompt || !out) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory for %d tokens", o->tokens);
        goto done;
    }
    for (int i = 0; i < n; i++) prompt[i] = (unsigned char)o->prompt[i];
    if (*rank == 0) {
        fprintf(stderr, "tpar generate: loading %s at TP=%d, %d threads per rank ...\n",
                o->src.ckpt ? o->src.ckpt : o->src.preset, o->tp, threads);
        fflush(stderr);
    }
    double t0 = tpar_now();
    tpar_ckpt_found_t found;
    if ((st = tpar_infer_load_model(&o->src, o->tp > 1 ? world : NULL, T, &m, &found, err))) goto done;
    if (*rank == 0 && found.found) { // as `tpar train --resume` says it: which checkpoint, and why not a newer one
        if (found.skipped) fprintf(stderr, "warning: %s\n", found.warning);
        fprintf(stderr, "tpar generate: loaded checkpoint step %lld (%s)\n", (long long)found.step, found.path);
        fflush(stderr);
    }
    if ((st = tpar_infer_init(&s, m, T, err))) goto done;
    // Every rank has loaded before the clock of the first token starts: otherwise it counts the
    // time a faster rank waits in its first collective for a slower one's load.
    if (o->tp > 1 && (st = tpar_comm_barrier(world))) {
        tpar_err_set(err, st, "%s", tpar_comm_error(world));
        goto done;
    }
    double t_load = tpar_now() - t0;
    *quiet = 0;
    tpar_generate_stats_t gs;
    if ((st = tpar_infer_generate(&s, prompt, n, o->tokens, &o->sampler, out, *rank == 0 ? print_token : NULL, NULL,
                                  &gs, err)))
        goto done;
    if (*rank == 0) {
        printf("\n");
        fflush(stdout);
        fprintf(stderr,
                "tpar generate: TP=%d | load %.2f s | prompt %d tokens | time to first token %.1f ms | %d tokens, "
                "%.1f tokens/s (decode)",
                o->tp, t_load, gs.n_prompt, gs.ttft_s * 1e3, gs.n_generated, gs.tokens_per_s);
        if (gs.n_slides) fprintf(stderr, " | context window slid %d time%s", gs.n_slides, gs.n_slides > 1 ? "s" : "");
        fprintf(stderr, "\n");
    }
done:
    tpar_infer_free(&s);
    tpar_gpt2_free(m);
    free(prompt), free(out);
    tpar_comm_free(world);
    return st;
}

enum { O_CKPT = 256, O_MODEL, O_TP, O_PROMPT, O_TOKENS, O_TEMP, O_TOPK, O_SEED };

int tpar_cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"ckpt", required_argument, 0, O_CKPT},        {"model", required_argument, 0, O_MODEL},
        {"tp", required_argument, 0, O_TP},            {"prompt", required_argument, 0, O_PROMPT},
        {"tokens", required_argument, 0, O_TOKENS},    {"temperature", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK},       {"seed", required_argument, 0, O_SEED},
        {"help", no_argument, 0, 'h'},                 {0, 0, 0, 0}};
    gen_opts_t o = {.tp = 1, .tokens = 200, .sampler = {.temperature = 0.8, .seed = 1337}};
    const char *cmd = "generate";
    int ch;
    long long v;
    optind = 1;
    while ((ch = tpar_cli_getopt(cmd, argc, argv, "h", opts)) != -1) {
        const char *a = optarg;
        int bad = 0;
        switch (ch) {
        case 'h': usage(stdout); return TPAR_EXIT_OK;
        case O_CKPT: o.src.ckpt = a; break;
        case O_MODEL: o.src.preset = a; break;
        case O_PROMPT: o.prompt = a; break;
        case O_TP: bad = tpar_cli_int(cmd, "--tp", a, 1, 4096, &v), o.tp = (int)v; break;
        case O_TOKENS: bad = tpar_cli_int(cmd, "--tokens", a, 1, 1 << 24, &v), o.tokens = (int)v; break;
        case O_TOPK: bad = tpar_cli_int(cmd, "--top-k", a, 0, INT_MAX, &v), o.sampler.top_k = (int)v; break;
        case O_SEED: bad = tpar_cli_int(cmd, "--seed", a, 0, LLONG_MAX, &v), o.sampler.seed = (uint64_t)v; break;
        case O_TEMP: bad = tpar_cli_double(cmd, "--temperature", a, 0, 100, &o.sampler.temperature); break;
        default: return TPAR_EXIT_USAGE;
        }
        if (bad) return TPAR_EXIT_USAGE;
    }
    if (optind < argc) {
        tpar_cli_error(cmd, "unexpected argument '%s'", argv[optind]);
        return TPAR_EXIT_USAGE;
    }
    o.src.init_seed = o.sampler.seed;
    tpar_err_t err = {0};
    tpar_gpt2_config_t cfg;
    int is_rank = tpar_cli_is_rank();
    // Checked before any rank starts (a rank checks again against the real world size).
    if (!is_rank) {
        tpar_status st = validate(&o, -1, &cfg, &err);
        if (st) {
            tpar_cli_error(cmd, "%s", err.msg);
            return st == TPAR_ERR_INVALID_ARG || st == TPAR_ERR_SHAPE ? TPAR_EXIT_USAGE : TPAR_EXIT_FAIL;
        }
        if (o.tp > 1) return tpar_cli_launch_self(cmd, o.tp, TPAR_BACKEND_SHM, NULL, -1, argc, argv);
    }
    int rank = 0, quiet = 0;
    const char *r0 = getenv("TPAR_RANK");
    tpar_cli_progress_t prog; // rank 0 draws the checkpoint's loading
    if (!r0 || !strcmp(r0, "0")) o.src.progress = tpar_cli_progress(&prog);
    if (run_rank(&o, &rank, &quiet, &err)) {
        if (rank == 0) tpar_cli_error(cmd, "%s", err.msg);
        else if (!quiet) tpar_cli_error(cmd, "rank %d: %s", rank, err.msg);
        return TPAR_EXIT_FAIL;
    }
    return TPAR_EXIT_OK;
}
