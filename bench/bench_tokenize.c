/* Tokenizer throughput: tpar's byte-level BPE (GPT-2's vocabulary) against the npm tokenizer
 * js-tiktoken on node, on the same text in the same run. Each side: one warm-up pass, then the
 * best of REPS passes (tpar's first pass, with an empty piece cache, is shown too). The ids are
 * compared through a hash: a speed-up that changes the tokens is no speed-up.
 *
 * usage: bench_tokenize [--reps N] [--text FILE] [--tokenizer PATH] [--npm-dir DIR] [--no-node]
 * The npm package is installed into a temporary directory (npm install js-tiktoken@1.0.21) unless
 * --npm-dir names a directory whose node_modules holds it; without node or the package the npm
 * row says skipped. */
#define _XOPEN_SOURCE 700
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tpar/tokenizer.h"

#ifndef TPAR_SOURCE_DIR
#define TPAR_SOURCE_DIR "."
#endif
#define NPM_PACKAGE "js-tiktoken@1.0.21"

static void die(const char *what, const char *msg) {
    fprintf(stderr, "bench_tokenize: %s: %s\n", what, msg);
    exit(1);
}

static uint32_t fnv_ids(const int32_t *ids, size_t n) { /* as bench_tokenize.mjs computes it */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)ids[i]) * 16777619u;
    return h;
}

static int run(const char *cmd) { return system(cmd) == 0 ? 0 : -1; }

/* Times js-tiktoken; 0 and *ms, *ntok, *hash, or -1 with why in note. */
static int npm_side(const char *text_path, int reps, const char *npm_dir, double *ms, size_t *ntok, uint32_t *hash,
                    char *note, size_t nn) {
    if (run("command -v node >/dev/null 2>&1")) {
        snprintf(note, nn, "skipped: node not found");
        return -1;
    }
    char dir[512], cmd[4096];
    int made = 0, ok = 0;
    if (npm_dir) {
        snprintf(dir, sizeof dir, "%s", npm_dir);
    } else {
        snprintf(dir, sizeof dir, "/tmp/tpar_bench_tok_XXXXXX");
        if (!mkdtemp(dir)) {
            snprintf(note, nn, "skipped: no temporary directory");
            return -1;
        }
        made = 1;
        fprintf(stderr, "bench_tokenize: npm install %s into %s ...\n", NPM_PACKAGE, dir);
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && echo '{\"private\":true}' > package.json && "
                 "timeout 120 npm install --silent --no-audit --no-fund %s >/dev/null 2>&1",
                 dir, NPM_PACKAGE);
        if (run(cmd)) {
            snprintf(note, nn, "skipped: npm install %s failed (no registry?)", NPM_PACKAGE);
            goto out;
        }
    }
    // ESM imports resolve from the script's directory: copy the script beside node_modules.
    snprintf(cmd, sizeof cmd, "cp '%s/bench/bench_tokenize.mjs' '%s/' && cd '%s' && node bench_tokenize.mjs '%s' %d",
             TPAR_SOURCE_DIR, dir, dir, text_path, reps);
    FILE *p = popen(cmd, "r");
    char line[256] = "";
    ok = p && fgets(line, sizeof line, p) != NULL;
    if (p && pclose(p) != 0) ok = 0;
    if (!ok || sscanf(line, "%lf %zu %u", ms, ntok, hash) != 3) {
        snprintf(note, nn, "skipped: node could not run js-tiktoken (in %.200s)", dir);
        ok = 0;
    }
out:
    if (made) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (run(cmd)) fprintf(stderr, "bench_tokenize: could not remove %s\n", dir);
    }
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *text_path = TPAR_SOURCE_DIR "/data/tinyshakespeare.txt", *tok_path = TPAR_SOURCE_DIR "/data/gpt2-bpe",
               *npm_dir = NULL;
    int reps = 5, no_node = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) text_path = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--npm-dir") && i + 1 < argc) npm_dir = argv[++i];
        else if (!strcmp(argv[i], "--no-node")) no_node = 1;
        else {
            fprintf(stderr, "usage: bench_tokenize [--reps N] [--text FILE] [--tokenizer PATH] [--npm-dir DIR] [--no-node]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    FILE *f = fopen(text_path, "rb");
    if (!f) die(text_path, "cannot open");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(sz > 0 ? (size_t)sz : 1);
    if (!text || sz <= 0 || fread(text, 1, (size_t)sz, f) != (size_t)sz) die(text_path, "cannot read");
    fclose(f);
    size_t len = (size_t)sz;
    double mb = (double)len / 1e6;

    tpar_err_t err = {0};
    tpar_tokenizer_t *tk;
    if (tpar_tokenizer_load(tok_path, &tk, &err) != TPAR_OK) die("tokenizer", err.msg);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    double t0 = tpar_now();
    if (tpar_tokenizer_encode(tk, text, len, 0, &ids, &n, &cap, &err) != TPAR_OK) die("encode", err.msg);
    double cold = tpar_now() - t0, best = 1e30;
    for (int r = 0; r < reps; r++) {
        n = 0;
        t0 = tpar_now();
        if (tpar_tokenizer_encode(tk, text, len, 0, &ids, &n, &cap, &err) != TPAR_OK) die("encode", err.msg);
        double dt = tpar_now() - t0;
        if (dt < best) best = dt;
    }
    uint32_t h = fnv_ids(ids, n);

    double ms = 0;
    size_t ntok = 0;
    uint32_t nh = 0;
    char note[256] = "skipped: --no-node";
    int have_npm = !no_node && npm_side(text_path, reps, npm_dir, &ms, &ntok, &nh, note, sizeof note) == 0;

    printf("tokenizer throughput: %s (%.2f MB), GPT-2's vocabulary, best of %d after a warm-up\n", text_path, mb, reps);
    printf("%-44s %10s %10s %12s\n", "tokenizer", "MB/s", "ms", "tokens");
    printf("%-44s %10.2f %10.1f %12zu\n", "tpar, first pass (empty piece cache)", mb / cold, cold * 1e3, n);
    printf("%-44s %10.2f %10.1f %12zu\n", "tpar (PCRE2 JIT, heap BPE, piece cache)", mb / best, best * 1e3, n);
    if (have_npm) {
        printf("%-44s %10.2f %10.1f %12zu\n", NPM_PACKAGE " (node)", mb / (ms / 1e3), ms, ntok);
        printf("ratio tpar / js-tiktoken: %.2fx MB/s; tokens %s\n", (ms / 1e3) / best,
               ntok == n && nh == h ? "identical" : "DIFFERENT (a bug: tests/tokenizer should catch it)");
    } else {
        printf("%-44s %s\n", NPM_PACKAGE " (node)", note);
    }
    free(ids);
    free(text);
    tpar_tokenizer_free(tk);
    return 0;
}
