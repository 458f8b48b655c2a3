/* tpar report on a long run: a synthesized metrics file of N steps (default 10,000; every key
 * tpar train writes, validation every 100 steps, a restart with lost steps) is loaded, drawn
 * and written, best of R repetitions, with the default decimation (500 buckets per series,
 * each keeping its min and max) and, side by side, with every point kept. Targets (issue #22):
 * under 1 s and under 2 MB for 10,000 steps.
 * usage: bench_report [--steps N] [--reps R] [--dir DIR]   (BENCH_REPORT_KEEP=1 keeps the files) */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tpar/report.h"

static void die(const char *what, const tpar_err_t *err) {
    fprintf(stderr, "bench_report: %s: %s\n", what, err->msg);
    exit(1);
}

/* A plausible run: a decaying noisy loss with spikes, warmup + cosine lr, jittery timings. */
static void synth(const char *path, int steps) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fprintf(f, "{\"event\":\"run\",\"tpar_version\":\"%s\",\"model\":\"gpt2-124m\",\"n_params\":124439808,\"tp\":2,"
               "\"dp\":2,\"sp\":1,\"batch\":8,\"seq\":1024,\"accum\":4,\"tokens_per_step\":65536,\"steps\":%d,"
               "\"command\":\"tpar train --model gpt2-124m --tp 2 --dp 2 --sp (synthesized)\",\"host\":\"bench\","
               "\"cpu\":\"synthetic\",\"cores\":4}\n", TPAR_VERSION_STRING, steps);
    unsigned s = 1;
    int restart_at = steps / 2, lost = 37;
    for (int k = 1; k <= steps; k++) {
        if (k == restart_at) { // the job dies after restart_at + lost and resumes at restart_at
            for (int j = k; j <= k + lost; j++)
                fprintf(f, "{\"step\":%d,\"loss\":%.6f,\"ms\":250}\n", j, 3.0 + 0.01 * j / steps);
            fprintf(f, "{\"event\":\"restart\",\"restart\":1,\"resumed_step\":%d,\"failed_after_step\":%d,"
                       "\"lost_steps\":%d,\"reason\":\"rank 3 killed by signal 9\"}\n", k - 1, k + lost, lost + 1);
        }
        s = s * 1103515245u + 12345u;
        double u = (s >> 8) / 16777216.0;
        double loss = 2.8 + 8.0 * exp(-k / 800.0) + 0.15 * (u - 0.5) + (k % 997 == 0 ? 1.5 : 0);
        double lr = k < 200 ? 6e-4 * k / 200 : 6e-5 + 0.5 * (1 + cos(M_PI * (k - 200.0) / (steps - 200))) * 5.4e-4;
        double ms = 240 + 30 * u + (k % 500 == 0 ? 400 : 0), tp = 0.12 + 0.05 * u, dp = 0.08 + 0.03 * (1 - u);
        fprintf(f, "{\"step\":%d,\"loss\":%.8f,\"lr\":%.8g,\"grad_norm\":%.6f,\"ms\":%.4f,\"tokens_per_s\":%.3f,"
                   "\"mfu\":%.6f,\"comm_frac\":%.6f,\"balance\":%.5f,\"comm_frac_critical\":%.6f,\"state_bytes\":1.0e9,"
                   "\"peak_rss_bytes\":%.0f,\"tp_bus_bytes\":1.2e8,\"dp_bus_bytes\":2.4e8,\"comm_frac_tp\":%.6f,"
                   "\"comm_frac_dp\":%.6f,\"busy_ms_max\":%.4f,\"busy_ms_min\":%.4f,\"state_bytes_min\":1.0e9,"
                   "\"peak_rss_bytes_min\":%.0f",
                k, loss, lr, 0.4 + u + (k % 997 == 0 ? 8 : 0), ms, 65536 / (ms / 1e3), 0.35 + 0.05 * u, tp + dp,
                1.02 + 0.1 * u, tp + dp + 0.02, 3.0e9 + 1e5 * k, tp, dp, ms * (1 - tp - dp), ms * (1 - tp - dp) / 1.05,
                2.8e9 + 1e5 * k);
        if (k % 100 == 0 || k == steps) fprintf(f, ",\"val_loss\":%.8f", loss + 0.05);
        fputs("}\n", f);
    }
    fclose(f);
}

typedef struct {
    double load, render, write, total;
    size_t bytes;
} times_t;

static times_t measure(const char *metrics, const char *out, int buckets, int reps) {
    times_t best = {INFINITY, INFINITY, INFINITY, INFINITY, 0};
    tpar_err_t err = {0};
    tpar_report_opts_t o;
    tpar_report_opts_default(&o);
    o.buckets = buckets;
    for (int r = 0; r < reps; r++) {
        double t0 = tpar_now();
        tpar_run_t *run = NULL;
        if (tpar_run_load(metrics, &run, &err)) die("load", &err);
        double t1 = tpar_now();
        char *html = NULL;
        size_t len = 0;
        if (tpar_report_render(&run, 1, &o, &html, &len, &err)) die("render", &err);
        double t2 = tpar_now();
        if (tpar_report_write(out, html, len, &err)) die("write", &err);
        double t3 = tpar_now();
        free(html);
        tpar_run_free(run);
        if (t3 - t0 < best.total) best = (times_t){t1 - t0, t2 - t1, t3 - t2, t3 - t0, len};
    }
    return best;
}

int main(int argc, char **argv) {
    int steps = 10000, reps = 5;
    const char *dir = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else {
            fprintf(stderr, "usage: bench_report [--steps N] [--reps R] [--dir DIR]\n");
            return 2;
        }
    }
    if (steps < 10 || reps < 1) {
        fprintf(stderr, "bench_report: --steps >= 10, --reps >= 1\n");
        return 2;
    }
    char metrics[512], page[512];
    snprintf(metrics, sizeof metrics, "%s/bench_report_%d.jsonl", dir, (int)getpid());
    snprintf(page, sizeof page, "%s/bench_report_%d.html", dir, (int)getpid());
    synth(metrics, steps);
    FILE *f = fopen(metrics, "r");
    long in_bytes = 0;
    if (f && !fseek(f, 0, SEEK_END)) in_bytes = ftell(f);
    if (f) fclose(f);
    times_t d = measure(metrics, page, 0, reps), all = measure(metrics, page, steps + 100, reps);
    printf("tpar report: %d steps synthesized (%.1f MB of metrics), best of %d\n\n", steps, in_bytes / 1e6, reps);
    printf("%-28s %9s %9s %9s %9s %10s\n", "series", "load s", "render s", "write s", "total s", "page MB");
    printf("%-28s %9.3f %9.3f %9.3f %9.3f %10.2f\n", "decimated (500 buckets)", d.load, d.render, d.write, d.total,
           d.bytes / 1e6);
    printf("%-28s %9.3f %9.3f %9.3f %9.3f %10.2f\n", "every point", all.load, all.render, all.write, all.total,
           all.bytes / 1e6);
    printf("\nratio every point / decimated: time %.2fx, size %.2fx\n", all.total / d.total,
           (double)all.bytes / d.bytes);
    printf("targets (decimated): time %.3f s < 1 s: %s; size %.2f MB < 2 MB: %s\n", d.total,
           d.total < 1 ? "met" : "NOT met", d.bytes / 1e6, d.bytes < 2000000 ? "met" : "NOT met");
    if (getenv("BENCH_REPORT_KEEP")) { // to look at the page
        printf("kept %s and %s\n", metrics, page);
    } else {
        unlink(metrics);
        unlink(page);
    }
    return 0;
}
