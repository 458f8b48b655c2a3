/* bench_generate: `tpar generate` with random weights (--model, greedy) at TP=1 and TP=2,
 * for the tiny preset and GPT-2 small (gpt2-124m) shapes: time to first token (prefill of the
 * prompt + first sample) and decode tokens/s, read from the program's own report on stderr.
 * The two TP sizes run alternately, `rounds` times each (side by side on a shared machine);
 * the table shows the best of the rounds and the TP=2 / TP=1 ratio.
 * usage: bench_generate [rounds (default 2)] [tpar binary (default: the one built beside)] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model;
    int prompt, tokens;
} shape_t;

/* Runs one generation; fills ttft (ms) and tokens/s. 0 on success. */
static int run_one(const char *tpar, const shape_t *s, int tp, double *ttft, double *tps) {
    char cmd[2048], prompt[256];
    for (int i = 0; i < s->prompt; i++) prompt[i] = "To be, or not to be: that is the question. "[i % 44];
    prompt[s->prompt] = 0;
    snprintf(cmd, sizeof cmd, "'%s' generate --model %s --tp %d --prompt '%s' --tokens %d --temperature 0 2>&1 >/dev/null",
             tpar, s->model, tp, prompt, s->tokens);
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

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 2;
    const char *tpar = argc > 2 ? argv[2] : TPAR_BIN;
    if (rounds < 1) rounds = 1;
    const shape_t shapes[] = {{"tiny", 32, 96}, {"gpt2-124m", 64, 32}};
    printf("tpar generate, random weights, greedy, best of %d rounds (TP sizes alternate)\n", rounds);
    printf("%-10s %6s %6s | %13s %13s | %12s %12s | %9s\n", "model", "prompt", "tokens", "TTFT TP=1 ms",
           "TTFT TP=2 ms", "tok/s TP=1", "tok/s TP=2", "speed-up");
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const shape_t *s = &shapes[k];
        double best_ttft[2] = {1e30, 1e30}, best_tps[2] = {0, 0};
        for (int r = 0; r < rounds; r++)
            for (int t = 0; t < 2; t++) {
                double ttft, tps;
                if (run_one(tpar, s, t + 1, &ttft, &tps)) {
                    fprintf(stderr, "bench_generate: %s at TP=%d failed\n", s->model, t + 1);
                    return 1;
                }
                if (ttft < best_ttft[t]) best_ttft[t] = ttft;
                if (tps > best_tps[t]) best_tps[t] = tps;
            }
        printf("%-10s %6d %6d | %13.1f %13.1f | %12.1f %12.1f | %8.2fx\n", s->model, s->prompt, s->tokens, best_ttft[0],
               best_ttft[1], best_tps[0], best_tps[1], best_tps[1] / best_tps[0]);
        fflush(stdout);
    }
    return 0;
}
