/* `tpar report RUN... -o report.html`: one self-contained HTML page with the charts of the runs
 * (src/report). Prints each run's warnings (skipped lines, missing validation) to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tpar/report.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar report RUN... -o FILE.html [options]\n\n"
            "Draws one self-contained HTML page (inline SVG charts; no script, no network) of one or\n"
            "more training runs, overlaid: loss vs step and vs tokens, validation loss, tokens/s, MFU,\n"
            "communication share (TP, DP, PP wait), shard balance, step time, memory per rank, gradient\n"
            "norm, learning rate, restarts; a header per run (layout, model, command, version, machine)\n"
            "and a summary table.\n\n"
            "A RUN is a metrics file written by `tpar train --metrics FILE`, or a directory holding one\n"
            "(DIR/metrics.jsonl, or its only *.jsonl).\n\n"
            "options:\n"
            "  -o, --output FILE   the page to write (required); replaced atomically\n"
            "  --title TEXT        page title (default \"tpar report\")\n"
            "  --log-loss          loss charts on a log scale\n"
            "  --points N          decimation buckets per series (default 500; each keeps its min and max)\n"
            "  -q, --quiet         no warnings, no summary line\n"
            "  -h, --help          this text\n\n"
            "Live: `tpar train --metrics m.jsonl --report FILE.html` rewrites the page at each validation.\n");
}

enum { O_TITLE = 256, O_LOG_LOSS, O_POINTS };

int tpar_cmd_report(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"title", required_argument, 0, O_TITLE},
                                         {"log-loss", no_argument, 0, O_LOG_LOSS},
                                         {"points", required_argument, 0, O_POINTS},
                                         {"quiet", no_argument, 0, 'q'},         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "report", *out = NULL;
    tpar_report_opts_t o;
    tpar_report_opts_default(&o);
    int quiet = 0, ch;
    long long v;
    // Options may come before or after the runs: collect the positional ones as they come.
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    if (!paths) return TPAR_EXIT_FAIL;
    int np = 0;
    optind = 1;
    for (;;) {
        while ((ch = tpar_cli_getopt(cmd, argc, argv, "o:qh", opts)) != -1) {
            switch (ch) {
            case 'h': usage(stdout); free(paths); return TPAR_EXIT_OK;
            case 'o': out = optarg; break;
            case 'q': quiet = 1; break;
            case O_TITLE: o.title = optarg; break;
            case O_LOG_LOSS: o.log_loss = 1; break;
            case O_POINTS:
                if (tpar_cli_int(cmd, "--points", optarg, 10, 100000, &v)) {
                    free(paths);
                    return TPAR_EXIT_USAGE;
                }
                o.buckets = (int)v;
                break;
            default: free(paths); return TPAR_EXIT_USAGE;
            }
        }
        if (optind >= argc) break;
        paths[np++] = argv[optind++];
    }
    if (np == 0 || !out) {
        tpar_cli_error(cmd, "%s", np == 0 ? "no run given (a metrics file or a directory holding one)"
                                         : "no output file: -o FILE.html");
        fprintf(stderr, "hint: 'tpar report --help' shows the usage\n");
        free(paths);
        return TPAR_EXIT_USAGE;
    }
    tpar_run_t **runs = calloc((size_t)np, sizeof *runs);
    int rc = runs ? TPAR_EXIT_OK : TPAR_EXIT_FAIL;
    tpar_err_t err = {0};
    for (int i = 0; i < np && rc == TPAR_EXIT_OK; i++) {
        if (tpar_run_load(paths[i], &runs[i], &err)) {
            tpar_cli_error(cmd, "%s", err.msg);
            rc = TPAR_EXIT_FAIL;
            break;
        }
        for (int k = 0; !quiet && k < tpar_run_warning_count(runs[i]); k++)
            fprintf(stderr, "tpar report: warning: %s\n", tpar_run_warning(runs[i], k));
    }
    char *html = NULL;
    size_t len = 0;
    if (rc == TPAR_EXIT_OK && (tpar_report_render(runs, np, &o, &html, &len, &err) ||
                               tpar_report_write(out, html, len, &err))) {
        tpar_cli_error(cmd, "%s", err.msg);
        rc = TPAR_EXIT_FAIL;
    }
    if (rc == TPAR_EXIT_OK && !quiet) {
        size_t steps = 0;
        for (int i = 0; i < np; i++) steps += tpar_run_steps(runs[i]);
        printf("wrote %s: %d run%s, %zu steps, %.1f KiB\n", out, np, np == 1 ? "" : "s", steps, len / 1024.0);
    }
    free(html);
    for (int i = 0; runs && i < np; i++) tpar_run_free(runs[i]);
    free(runs);
    free(paths);
    return rc;
}
