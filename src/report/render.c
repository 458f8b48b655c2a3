/* The page: header, summary table, inline SVG charts (axes, nice ticks, gridlines, polylines,
 * legend, restart markers) and the timeline section. Plain HTML + CSS, no script, no font
 * files, no network: it opens from disk anywhere and survives being mailed. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report_internal.h"

/* ---- what each chart draws ----------------------------------------------------------------- */

typedef struct {
    int col;
    const char *key;   /* data-series attribute */
    const char *label;
    double scale;      /* value shown = value x scale (0: 1) */
    int markers;       /* 1: a dot on each point (sparse series such as validation) */
    const char *hint;  /* said when a run lacks the series (NULL: nothing) */
} series_t;

enum { MAX_SERIES = 5 };

typedef struct {
    const char *id, *title, *ylabel;
    int xcol;          /* COL_STEP or COL_TOKENS */
    int logy;          /* -1: the log_loss option decides */
    series_t s[MAX_SERIES];
} chart_t;

static const char *const NO_VAL = "no validation recorded (tpar train --val-every K)";
static const char *const NEWER = "not in these metrics (older than `tpar report`; a new run of tpar train writes it)";

static const chart_t charts[] = {
    {"loss-step", "Loss vs step", "loss", COL_STEP, -1,
     {{COL_LOSS, "loss", "training", 1, 0, NULL}, {COL_VAL, "val_loss", "validation", 1, 1, NO_VAL}}},
    {"loss-tokens", "Loss vs tokens seen", "loss", COL_TOKENS, -1,
     {{COL_LOSS, "loss", "training", 1, 0, NULL}, {COL_VAL, "val_loss", "validation", 1, 1, NO_VAL}}},
    {"throughput", "Throughput", "tokens/s", COL_STEP, 0, {{COL_TPS, "tokens_per_s", "tokens/s", 1, 0, NULL}}},
    {"mfu", "Model FLOPs utilisation", "MFU, %", COL_STEP, 0, {{COL_MFU, "mfu", "MFU", 100, 0, NULL}}},
    {"comm", "Communication share of the step", "% of step time", COL_STEP, 0,
     {{COL_COMM_TP, "comm_frac_tp", "TP collectives", 100, 0, NEWER},
      {COL_COMM_DP, "comm_frac_dp", "DP all-reduce", 100, 0, NEWER},
      {COL_COMM_PP, "comm_frac_pp", "PP wait", 100, 0,
       "not in the metrics: pipeline parallelism (issue #15) writes comm_frac_pp"},
      {COL_COMM, "comm_frac", "total, rank 0", 100, 0, NULL},
      {COL_COMM_CRIT, "comm_frac_critical", "total, slowest rank", 100, 0, NULL}}},
    {"balance", "Shard balance: busy time of the slowest rank / the fastest", "ratio (1 = even)", COL_STEP, 0,
     {{COL_BALANCE, "balance", "slowest / fastest", 1, 0, NULL}}},
    {"step-time", "Step time", "ms", COL_STEP, 0,
     {{COL_MS, "ms", "step", 1, 0, NULL},
      {COL_BUSY_MAX, "busy_ms_max", "busy, slowest rank", 1, 0, NEWER},
      {COL_BUSY_MIN, "busy_ms_min", "busy, fastest rank", 1, 0, NEWER}}},
    {"memory", "Memory per rank", "MiB", COL_STEP, 0,
     {{COL_STATE_MAX, "state_bytes", "model state, largest rank", 1.0 / 1048576, 0, NULL},
      {COL_STATE_MIN, "state_bytes_min", "model state, smallest rank", 1.0 / 1048576, 0, NEWER},
      {COL_RSS_MAX, "peak_rss_bytes", "peak RSS, largest rank", 1.0 / 1048576, 0, NULL},
      {COL_RSS_MIN, "peak_rss_bytes_min", "peak RSS, smallest rank", 1.0 / 1048576, 0, NEWER}}},
    {"grad-norm", "Gradient norm (before clipping)", "norm", COL_STEP, 0,
     {{COL_NORM, "grad_norm", "gradient norm", 1, 0, NULL}}},
    {"lr", "Learning rate", "lr", COL_STEP, 0, {{COL_LR, "lr", "learning rate", 1, 0, NULL}}},
};
enum { N_CHARTS = sizeof charts / sizeof charts[0] };

static const char *const palette[10] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                        "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
static const char *const dashes[MAX_SERIES] = {"", "7 3", "2 2", "9 3 2 3", "4 4"};

/* Colour by series with one run; with several, colour by run and dash by series. */
static void style(int nruns, int run, int si, const char **colour, const char **dash) {
    *colour = palette[(nruns == 1 ? si : run) % 10];
    *dash = nruns == 1 ? "" : dashes[si % MAX_SERIES];
}

/* ---- geometry and numbers ------------------------------------------------------------------- */

enum { W = 560, H = 300, X0 = 64, X1 = 548, Y0 = 14, Y1 = 250 };

typedef struct {
    double lo, hi;
    int log;
} axis_t;

static double to_px(const axis_t *a, double v, double p0, double p1) {
    double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : (v - a->lo) / (a->hi - a->lo);
    return p0 + t * (p1 - p0);
}

/* A tick label: k/M/G for large values, as many decimals as the tick step needs. */
static void fmt_tick(char *buf, size_t n, double v, double step, double maxabs) {
    const char *suf = "";
    double d = 1;
    if (maxabs >= 1e9) suf = "G", d = 1e9;
    else if (maxabs >= 1e6) suf = "M", d = 1e6;
    else if (maxabs >= 1e4) suf = "k", d = 1e3;
    double s = step / d;
    int dec = s > 0 ? (int)ceil(-log10(s) - 1e-9) : 0;
    if (dec < 0) dec = 0;
    if (dec > 8) {
        snprintf(buf, n, "%.2g", v);
        return;
    }
    snprintf(buf, n, "%.*f%s", dec, v / d, suf);
}

static void fmt_num(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "&#8211;");
    else if (fabs(v) >= 1e6) snprintf(buf, n, "%.3g M", v / 1e6);
    else if (fabs(v) >= 1e4) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.4g", v);
}

/* Log-axis ticks: 1, 2, 5 x 10^k inside [lo, hi] (decades only when there are many). */
static int log_ticks(double lo, double hi, double *t, int max) {
    int n = 0;
    for (double e = floor(log10(lo)); e <= ceil(log10(hi)) && n < max; e++)
        for (int m = 0; m < 3 && n < max; m++) {
            double v = (m == 0 ? 1 : m == 1 ? 2 : 5) * pow(10, e);
            if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) t[n++] = v;
        }
    if (n > 8) { // decades only
        int k = 0;
        for (int i = 0; i < n; i++) {
            double f = t[i] / pow(10, floor(log10(t[i]) + 1e-9));
            if (fabs(f - 1) < 1e-6) t[k++] = t[i];
        }
        n = k;
    }
    return n;
}

/* ---- one chart ------------------------------------------------------------------------------- */

typedef struct {
    double *x, *y;   /* decimated points of one (run, series) */
    size_t n;
} pts_t;

static tpar_status draw_chart(rbuf_t *b, const chart_t *c, tpar_run_t *const *runs, int nruns,
                              const tpar_report_opts_t *o, tpar_err_t *err) {
    size_t buckets = (size_t)(o->buckets > 0 ? o->buckets : 500);
    int ns = 0;
    while (ns < MAX_SERIES && c->s[ns].label) ns++;
    int logy = c->logy < 0 ? o->log_loss : c->logy;
    pts_t *P = calloc((size_t)nruns * ns, sizeof *P);
    if (!P) return tpar_err_set(err, TPAR_ERR_NOMEM, "report: out of memory");
    tpar_status st = TPAR_OK;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    size_t total = 0;
    for (int r = 0; r < nruns && !st; r++) {
        const tpar_run_t *R = runs[r];
        double *ty = malloc((R->n + 1) * sizeof(double));
        if (!ty) {
            st = tpar_err_set(err, TPAR_ERR_NOMEM, "report: out of memory");
            break;
        }
        for (int s = 0; s < ns && !st; s++) {
            const series_t *se = &c->s[s];
            double scale = se->scale ? se->scale : 1;
            for (size_t i = 0; i < R->n; i++) {
                double x = R->col[c->xcol][i], y = R->col[se->col][i] * scale;
                ty[i] = isfinite(x) && isfinite(y) && (!logy || y > 0) ? y : NAN;
            }
            pts_t *p = &P[r * ns + s];
            size_t cap = R->n < 2 * buckets + 2 ? R->n : 2 * buckets + 2;
            if (!(p->x = malloc((cap + 1) * sizeof(double))) || !(p->y = malloc((cap + 1) * sizeof(double)))) {
                st = tpar_err_set(err, TPAR_ERR_NOMEM, "report: out of memory");
                break;
            }
            p->n = tpar_report_decimate(R->col[c->xcol], ty, R->n, buckets, p->x, p->y);
            total += p->n;
            for (size_t i = 0; i < p->n; i++) {
                xlo = fmin(xlo, p->x[i]), xhi = fmax(xhi, p->x[i]);
                ylo = fmin(ylo, p->y[i]), yhi = fmax(yhi, p->y[i]);
            }
        }
        free(ty);
    }
    if (st) goto out;

    rb_printf(b, "<figure class=\"chart\" id=\"chart-%s\" data-chart=\"%s\">\n<figcaption>", c->id, c->id);
    rb_esc(b, c->title);
    if (logy) rb_puts(b, " <small>(log scale)</small>");
    rb_printf(b, "</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" role=\"img\">\n", W, H);
    rb_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", X0, Y0, X1 - X0, Y1 - Y0);
    const char *xname = c->xcol == COL_TOKENS ? "tokens seen" : "step";
    if (total == 0) {
        rb_printf(b, "<text x=\"%d\" y=\"%d\" class=\"empty\" text-anchor=\"middle\">no data in %s</text>\n",
                  (X0 + X1) / 2, (Y0 + Y1) / 2, nruns > 1 ? "these runs" : "this run");
    } else {
        // axes: x spans the data exactly, y is widened to nice ticks
        axis_t ax = {xlo, xhi, 0}, ay = {ylo, yhi, logy};
        if (ax.hi <= ax.lo) ax.lo -= 1, ax.hi += 1;
        double xt[64], yt[64];
        int nxt = tpar_report_ticks(ax.lo, ax.hi, 6, xt, 64), nyt;
        if (logy) {
            if (ay.hi <= ay.lo * 1.0001) ay.lo /= 1.5, ay.hi *= 1.5;
            nyt = log_ticks(ay.lo, ay.hi, yt, 64);
            if (nyt < 2) { // less than an octave: linear nice ticks, placed on the log axis
                int k = tpar_report_ticks(ay.lo, ay.hi, 4, yt, 64), m = 0;
                for (int i = 0; i < k; i++)
                    if (yt[i] >= ay.lo && yt[i] <= ay.hi) yt[m++] = yt[i];
                nyt = m;
            }
        } else {
            if (ay.lo == ay.hi && ay.lo == 0) ay.hi = 1; // a flat zero (no communication at TP 1)
            nyt = tpar_report_ticks(ay.lo, ay.hi, 5, yt, 64);
            if (ylo >= 0) { // no negative ticks for data that is not (0 is a tick when the range crosses it)
                int k = 0;
                for (int i = 0; i < nyt; i++)
                    if (yt[i] >= 0) yt[k++] = yt[i];
                nyt = k;
            }
            if (nyt >= 2) ay.lo = yt[0], ay.hi = yt[nyt - 1];
        }
        double ymax_abs = fmax(fabs(ay.lo), fabs(ay.hi)), xmax_abs = fmax(fabs(ax.lo), fabs(ax.hi));
        double ystep = nyt >= 2 ? yt[1] - yt[0] : 1, xstep = nxt >= 2 ? xt[1] - xt[0] : 1;
        char lab[64];
        rb_puts(b, "<g class=\"grid\">");
        for (int i = 0; i < nyt; i++) {
            double py = to_px(&ay, yt[i], Y1, Y0);
            rb_printf(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>", X0, X1, py, py);
        }
        for (int i = 0; i < nxt; i++) {
            if (xt[i] < ax.lo - 1e-9 * xstep || xt[i] > ax.hi + 1e-9 * xstep) continue;
            double px = to_px(&ax, xt[i], X0, X1);
            rb_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>", px, px, Y0, Y1);
        }
        rb_puts(b, "</g>\n<g class=\"ticks\">");
        for (int i = 0; i < nyt; i++) {
            double py = to_px(&ay, yt[i], Y1, Y0);
            if (logy) snprintf(lab, sizeof lab, "%g", yt[i]);
            else fmt_tick(lab, sizeof lab, yt[i], ystep, ymax_abs);
            rb_printf(b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>", X0 - 5, py + 4, lab);
        }
        for (int i = 0; i < nxt; i++) {
            if (xt[i] < ax.lo - 1e-9 * xstep || xt[i] > ax.hi + 1e-9 * xstep) continue;
            fmt_tick(lab, sizeof lab, xt[i], xstep, xmax_abs);
            rb_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>", to_px(&ax, xt[i], X0, X1),
                      Y1 + 16, lab);
        }
        rb_puts(b, "</g>\n");
        // restarts: the lost steps shaded, a line where the run resumed
        for (int r = 0; r < nruns && c->xcol == COL_STEP; r++)
            for (int k = 0; k < runs[r]->n_restarts; k++) {
                const report_restart_t *x = &runs[r]->restarts[k];
                double a = fmax(ax.lo, (double)x->resumed_step), e = fmin(ax.hi, (double)x->failed_after_step);
                if (a > ax.hi) continue;
                rb_printf(b, "<g class=\"restart\" data-run=\"%d\"><title>", r);
                char t[400];
                snprintf(t, sizeof t, "%s: restart %d, resumed at step %ld, %ld step%s lost (failed after step %ld): %s",
                         runs[r]->name, x->count, x->resumed_step, x->lost_steps, x->lost_steps == 1 ? "" : "s",
                         x->failed_after_step, x->reason[0] ? x->reason : "reason unknown");
                rb_esc(b, t);
                rb_puts(b, "</title>");
                if (e > a)
                    rb_printf(b, "<rect class=\"lost\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\"/>",
                              to_px(&ax, a, X0, X1), Y0, to_px(&ax, e, X0, X1) - to_px(&ax, a, X0, X1), Y1 - Y0);
                double px = to_px(&ax, a, X0, X1);
                rb_printf(b, "<line class=\"marker\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>"
                             "<text class=\"marker-label\" x=\"%.1f\" y=\"%d\">restart %d</text></g>\n",
                          px, px, Y0, Y1, px + 3, Y0 + 10, x->count);
            }
        // the series
        for (int r = 0; r < nruns; r++)
            for (int s = 0; s < ns; s++) {
                const pts_t *p = &P[r * ns + s];
                if (!p->n) continue;
                const char *colour, *dash;
                style(nruns, r, s, &colour, &dash);
                rb_printf(b, "<polyline class=\"series\" data-run=\"%d\" data-series=\"%s\" stroke=\"%s\"%s%s%s "
                             "points=\"", r, c->s[s].key, colour, *dash ? " stroke-dasharray=\"" : "", dash,
                          *dash ? "\"" : "");
                for (size_t i = 0; i < p->n; i++)
                    rb_printf(b, "%s%.1f,%.1f", i ? " " : "", to_px(&ax, p->x[i], X0, X1), to_px(&ay, p->y[i], Y1, Y0));
                rb_puts(b, "\"><title>");
                rb_esc(b, runs[r]->name);
                rb_puts(b, ": ");
                rb_esc(b, c->s[s].label);
                rb_puts(b, "</title></polyline>\n");
                if (c->s[s].markers && p->n <= 200) {
                    rb_printf(b, "<g class=\"dots\" fill=\"%s\">", colour);
                    for (size_t i = 0; i < p->n; i++)
                        rb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\"/>", to_px(&ax, p->x[i], X0, X1),
                                  to_px(&ay, p->y[i], Y1, Y0));
                    rb_puts(b, "</g>\n");
                }
            }
    }
    rb_printf(b, "<text x=\"%d\" y=\"%d\" class=\"axis-label\" text-anchor=\"middle\">%s</text>\n", (X0 + X1) / 2,
              H - 8, xname);
    rb_printf(b, "<text class=\"axis-label\" text-anchor=\"middle\" transform=\"translate(14 %d) rotate(-90)\">",
              (Y0 + Y1) / 2);
    rb_esc(b, c->ylabel);
    rb_puts(b, "</text>\n</svg>\n<ul class=\"legend\">");
    for (int r = 0; r < nruns; r++)
        for (int s = 0; s < ns; s++) {
            if (!P[r * ns + s].n) continue;
            const char *colour, *dash;
            style(nruns, r, s, &colour, &dash);
            rb_printf(b, "<li class=\"legend-entry\" data-run=\"%d\" data-series=\"%s\"><svg width=\"26\" height=\"10\">"
                         "<line x1=\"1\" x2=\"25\" y1=\"5\" y2=\"5\" stroke=\"%s\" stroke-width=\"2.5\"%s%s%s/></svg>",
                      r, c->s[s].key, colour, *dash ? " stroke-dasharray=\"" : "", dash, *dash ? "\"" : "");
            if (nruns > 1) {
                rb_esc(b, runs[r]->name);
                rb_puts(b, ": ");
            }
            rb_esc(b, c->s[s].label);
            rb_puts(b, "</li>");
        }
    rb_puts(b, "</ul>\n");
    // what is missing, and how to get it
    for (int s = 0; s < ns; s++) {
        if (!c->s[s].hint) continue;
        int lacking = 0;
        for (int r = 0; r < nruns; r++) lacking += P[r * ns + s].n == 0;
        if (!lacking) continue;
        rb_puts(b, "<p class=\"note\">");
        rb_esc(b, c->s[s].label);
        rb_puts(b, ": ");
        if (nruns > 1 && lacking < nruns) {
            rb_puts(b, "missing in ");
            for (int r = 0, k = 0; r < nruns; r++)
                if (!P[r * ns + s].n) {
                    rb_puts(b, k++ ? ", " : "");
                    rb_esc(b, runs[r]->name);
                }
            rb_puts(b, "; ");
        }
        rb_esc(b, c->s[s].hint);
        rb_puts(b, "</p>\n");
    }
    rb_puts(b, "</figure>\n");
out:
    for (int i = 0; i < nruns * ns; i++) free(P[i].x), free(P[i].y);
    free(P);
    return st;
}

/* ---- the rest of the page ------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of a column's finite values (NaN when none). */
static double median(const tpar_run_t *r, int col, double *tmp) {
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++)
        if (isfinite(r->col[col][i])) tmp[k++] = r->col[col][i];
    if (!k) return NAN;
    qsort(tmp, k, sizeof *tmp, cmp_double);
    return k % 2 ? tmp[k / 2] : 0.5 * (tmp[k / 2 - 1] + tmp[k / 2]);
}

static double last_of(const tpar_run_t *r, int col) {
    for (size_t i = r->n; i-- > 0;)
        if (isfinite(r->col[col][i])) return r->col[col][i];
    return NAN;
}

static void dd(rbuf_t *b, const char *term, const char *value, int code) {
    rb_printf(b, "<dt>%s</dt><dd>", term);
    if (!value || !*value) {
        rb_puts(b, "<span class=\"missing\">not recorded</span></dd>");
        return;
    }
    rb_puts(b, code ? "<code>" : "");
    rb_esc(b, value);
    rb_puts(b, code ? "</code></dd>" : "</dd>");
}

static void run_header(rbuf_t *b, const tpar_run_t *r, int i, int nruns) {
    const report_header_t *h = &r->hdr;
    const char *colour = palette[i % 10];
    rb_printf(b, "<div class=\"run\" data-run=\"%d\"><h3><span class=\"swatch\" style=\"background:%s\"></span>",
              i, nruns > 1 ? colour : "#444");
    rb_esc(b, r->name);
    rb_puts(b, "</h3>\n<dl>");
    char model[160] = "", steps[160];
    if (h->model[0]) {
        if (h->n_params > 0) snprintf(model, sizeof model, "%s (%.3g M parameters)", h->model, h->n_params / 1e6);
        else snprintf(model, sizeof model, "%s", h->model);
    }
    dd(b, "layout", h->layout, 0);
    dd(b, "model", model, 0);
    dd(b, "batch", h->batch, 0);
    dd(b, "command", h->command, 1);
    dd(b, "tpar", h->version, 0);
    dd(b, "machine", h->machine, 0);
    dd(b, "started", h->started, 0);
    dd(b, "metrics", r->path, 1);
    long lost = 0;
    for (int k = 0; k < r->n_restarts; k++) lost += r->restarts[k].lost_steps;
    snprintf(steps, sizeof steps, "%zu steps (%.0f to %.0f), %zu validations, %d restart%s (%ld step%s lost)", r->n,
             r->col[COL_STEP][0], r->col[COL_STEP][r->n - 1], tpar_run_val_points(r), r->n_restarts,
             r->n_restarts == 1 ? "" : "s", lost, lost == 1 ? "" : "s");
    dd(b, "steps", steps, 0);
    rb_puts(b, "</dl>\n");
    for (int k = 0; k < r->n_warn; k++) {
        rb_puts(b, "<p class=\"warning\">");
        rb_esc(b, r->warn[k]);
        rb_puts(b, "</p>\n");
    }
    rb_puts(b, "</div>\n");
}

static tpar_status summary(rbuf_t *b, tpar_run_t *const *runs, int nruns, tpar_err_t *err) {
    size_t mx = 1;
    for (int r = 0; r < nruns; r++) mx = runs[r]->n > mx ? runs[r]->n : mx;
    double *tmp = malloc(mx * sizeof(double));
    if (!tmp) return tpar_err_set(err, TPAR_ERR_NOMEM, "report: out of memory");
    rb_puts(b, "<table class=\"summary\">\n<thead><tr><th>run</th><th>layout</th><th>steps</th><th>final loss</th>"
               "<th>final val loss</th><th>median tokens/s</th><th>median MFU</th><th>median comm share</th>"
               "<th>median balance</th><th>median step</th><th>peak RSS</th><th>restarts</th></tr></thead>\n<tbody>\n");
    for (int r = 0; r < nruns; r++) {
        const tpar_run_t *R = runs[r];
        char v[10][48];
        fmt_num(v[0], sizeof v[0], last_of(R, COL_LOSS));
        fmt_num(v[1], sizeof v[1], last_of(R, COL_VAL));
        fmt_num(v[2], sizeof v[2], median(R, COL_TPS, tmp));
        double m = median(R, COL_MFU, tmp), c = median(R, COL_COMM, tmp), ms = median(R, COL_MS, tmp),
               rss = 0;
        for (size_t i = 0; i < R->n; i++) rss = isfinite(R->col[COL_RSS_MAX][i]) ? fmax(rss, R->col[COL_RSS_MAX][i]) : rss;
        if (isnan(m)) snprintf(v[3], sizeof v[3], "&#8211;");
        else snprintf(v[3], sizeof v[3], "%.1f%%", m * 100);
        if (isnan(c)) snprintf(v[4], sizeof v[4], "&#8211;");
        else snprintf(v[4], sizeof v[4], "%.1f%%", c * 100);
        fmt_num(v[5], sizeof v[5], median(R, COL_BALANCE, tmp));
        if (isnan(ms)) snprintf(v[6], sizeof v[6], "&#8211;");
        else snprintf(v[6], sizeof v[6], "%.1f ms", ms);
        if (rss > 0) snprintf(v[7], sizeof v[7], "%.0f MiB", rss / 1048576);
        else snprintf(v[7], sizeof v[7], "&#8211;");
        rb_printf(b, "<tr data-run=\"%d\"><td><span class=\"swatch\" style=\"background:%s\"></span>", r,
                  nruns > 1 ? palette[r % 10] : "#444");
        rb_esc(b, R->name);
        rb_puts(b, "</td><td>");
        rb_esc(b, R->hdr.layout[0] ? R->hdr.layout : "?");
        rb_printf(b, "</td><td>%zu</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                     "<td>%s</td><td>%d</td></tr>\n", R->n, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                  R->n_restarts);
    }
    rb_puts(b, "</tbody></table>\n<p class=\"note\">Medians over the steps recorded. Comm share: the time rank 0 "
               "spent blocked in collectives over the step time. Balance: busy time (step minus waiting) of the "
               "slowest rank over the fastest.</p>\n");
    free(tmp);
    return TPAR_OK;
}

/* Events named "step..." (or of category "step") bound the steps; the window is rank 0's last
 * one (the lowest rank's), else the whole trace. */
static int is_step(const report_event_t *e) { return !strncmp(e->name, "step", 4) || !strcmp(e->cat, "step"); }

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

enum { TL_W = 1100, TL_X0 = 70, TL_X1 = 1090, TL_ROW = 22, MAX_RANKS = 64, MAX_KEYS = 12 };

static void draw_timeline(rbuf_t *b, const tpar_run_t *r, int ri) {
    const report_event_t *ev = r->events;
    size_t n = r->n_events;
    double w0 = INFINITY, w1 = -INFINITY;
    int step_pid = 1 << 30;
    for (size_t i = 0; i < n; i++)
        if (is_step(&ev[i]) && (ev[i].pid < step_pid || (ev[i].pid == step_pid && ev[i].ts >= w0)))
            step_pid = ev[i].pid, w0 = ev[i].ts, w1 = ev[i].ts + ev[i].dur;
    const char *what = "the whole trace";
    char stepname[64] = "";
    if (step_pid == 1 << 30) {
        for (size_t i = 0; i < n; i++) w0 = fmin(w0, ev[i].ts), w1 = fmax(w1, ev[i].ts + ev[i].dur);
    } else {
        for (size_t i = 0; i < n; i++)
            if (is_step(&ev[i]) && ev[i].pid == step_pid && ev[i].ts == w0)
                snprintf(stepname, sizeof stepname, "%s", ev[i].name);
        what = stepname;
    }
    if (!(w1 > w0)) w1 = w0 + 1;
    int pids[MAX_RANKS], np = 0;
    const char *keys[MAX_KEYS];
    int nk = 0;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (int k = 0; k < np; k++) seen |= pids[k] == ev[i].pid;
        if (!seen && np < MAX_RANKS) pids[np++] = ev[i].pid;
    }
    qsort(pids, (size_t)np, sizeof *pids, cmp_int);
    int H2 = 30 + np * TL_ROW + 24;
    rb_printf(b, "<figure class=\"timeline\" data-run=\"%d\"><figcaption>", ri);
    rb_esc(b, r->name);
    rb_puts(b, ": ");
    rb_esc(b, what);
    rb_printf(b, ", every rank (%.2f ms)</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\">\n",
              (w1 - w0) / 1e3, TL_W, H2);
    double t[64];
    int nt = tpar_report_ticks(0, (w1 - w0) / 1e3, 8, t, 64);
    rb_puts(b, "<g class=\"grid\">");
    for (int i = 0; i < nt; i++) {
        if (t[i] > (w1 - w0) / 1e3 + 1e-9) break;
        double x = TL_X0 + t[i] * 1e3 / (w1 - w0) * (TL_X1 - TL_X0);
        rb_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"20\" y2=\"%d\"/>", x, x, 20 + np * TL_ROW);
    }
    rb_puts(b, "</g>\n<g class=\"ticks\">");
    for (int i = 0; i < nt; i++) {
        if (t[i] > (w1 - w0) / 1e3 + 1e-9) break;
        char lab[32];
        fmt_tick(lab, sizeof lab, t[i], nt > 1 ? t[1] - t[0] : 1, (w1 - w0) / 1e3);
        rb_printf(b, "<text x=\"%.1f\" y=\"14\" text-anchor=\"middle\">%s ms</text>",
                  TL_X0 + t[i] * 1e3 / (w1 - w0) * (TL_X1 - TL_X0), lab);
    }
    rb_puts(b, "</g>\n");
    for (int k = 0; k < np; k++)
        rb_printf(b, "<text x=\"6\" y=\"%d\">rank %d</text>", 20 + k * TL_ROW + 15, pids[k]);
    for (size_t i = 0; i < n; i++) {
        const report_event_t *e = &ev[i];
        if (is_step(e) || e->ts + e->dur < w0 || e->ts > w1) continue;
        int row = -1;
        for (int k = 0; k < np; k++)
            if (pids[k] == e->pid) row = k;
        if (row < 0) continue;
        const char *key = e->cat[0] ? e->cat : e->name;
        int ki = -1;
        for (int k = 0; k < nk; k++)
            if (!strcmp(keys[k], key)) ki = k;
        if (ki < 0 && nk < MAX_KEYS) keys[nk] = key, ki = nk++;
        double a = fmax(e->ts, w0), z = fmin(e->ts + e->dur, w1);
        double x = TL_X0 + (a - w0) / (w1 - w0) * (TL_X1 - TL_X0), w = (z - a) / (w1 - w0) * (TL_X1 - TL_X0);
        rb_printf(b, "<rect class=\"span\" x=\"%.1f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\"><title>",
                  x, 20 + row * TL_ROW + 2, fmax(w, 0.5), TL_ROW - 4, ki >= 0 ? palette[ki % 10] : "#999");
        char tt[160];
        if (e->cat[0]) snprintf(tt, sizeof tt, "rank %d: %s (%s), %.3f ms", e->pid, e->name, e->cat, e->dur / 1e3);
        else snprintf(tt, sizeof tt, "rank %d: %s, %.3f ms", e->pid, e->name, e->dur / 1e3);
        rb_esc(b, tt);
        rb_puts(b, "</title></rect>\n");
    }
    rb_puts(b, "</svg>\n<ul class=\"legend\">");
    for (int k = 0; k < nk; k++) {
        rb_printf(b, "<li class=\"legend-entry\"><span class=\"swatch\" style=\"background:%s\"></span>",
                  palette[k % 10]);
        rb_esc(b, keys[k]);
        rb_puts(b, "</li>");
    }
    rb_puts(b, "</ul></figure>\n");
}

static void timeline(rbuf_t *b, tpar_run_t *const *runs, int nruns) {
    rb_puts(b, "<section id=\"timeline\"><h2>Timeline</h2>\n");
    int any = 0;
    for (int r = 0; r < nruns; r++) {
        if (!runs[r]->hdr.trace[0]) continue;
        any = 1;
        if (runs[r]->n_events) {
            draw_timeline(b, runs[r], r);
            continue;
        }
        rb_puts(b, "<p class=\"warning\">");
        rb_esc(b, runs[r]->name);
        rb_puts(b, ": the trace <code>");
        rb_esc(b, runs[r]->hdr.trace);
        rb_puts(b, "</code> named by the metrics could not be read (see the run's warnings above).</p>\n");
    }
    if (!any)
        rb_puts(b, "<p class=\"note\" id=\"no-trace\">No trace in these runs, so no per-rank timeline of a step. "
                   "How to get one: <code>tpar train --trace FILE</code> writes a Chrome trace-event file of every "
                   "rank's compute, collectives and waits; it arrives with pipeline parallelism (issue #15), and its "
                   "path is then recorded in the metrics header for this page.</p>\n");
    rb_puts(b, "</section>\n");
}

static const char *const css =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0 auto;"
    "max-width:1240px;padding:16px 24px;color:#222;background:#fff}"
    "h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:4px;"
    "margin-top:1.6em}h3{font-size:1em;margin:.6em 0 .3em}"
    ".gen,.note{color:#666;font-size:.85em}.warning{color:#a15c00;font-size:.85em}"
    ".missing{color:#999;font-style:italic}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0;font-size:.9em}"
    "dt{color:#666}dd{margin:0}code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;"
    "word-break:break-all}"
    ".runs{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:8px 24px}"
    ".swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}"
    "table.summary{border-collapse:collapse;font-size:.88em}"
    "table.summary th,table.summary td{border-bottom:1px solid #e4e4e4;padding:4px 10px;text-align:right}"
    "table.summary th:first-child,table.summary td:first-child,table.summary td:nth-child(2),"
    "table.summary th:nth-child(2){text-align:left}"
    ".charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:18px 24px}"
    "figure.chart,figure.timeline{margin:0 0 12px}figure.timeline>svg{width:100%;height:auto;display:block}"
    ".span{stroke:#fff;stroke-width:.3}"
    "figure.chart{margin:0}figcaption{font-weight:600;font-size:.95em;margin-bottom:2px}"
    "figure.chart>svg{width:100%;height:auto;display:block}"
    "svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#444}"
    ".frame{fill:none;stroke:#999;stroke-width:1}.grid line{stroke:#e6e6e6;stroke-width:1}"
    ".series{fill:none;stroke-width:1.6;stroke-linejoin:round}"
    ".lost{fill:#d62728;opacity:.12}.marker{stroke:#d62728;stroke-width:1.2;stroke-dasharray:4 3}"
    ".marker-label{fill:#d62728;font-size:10px}.empty{font-size:13px;fill:#999}.axis-label{font-size:12px;fill:#333}"
    "ul.legend{list-style:none;margin:2px 0 0 60px;padding:0;font-size:.82em;display:flex;flex-wrap:wrap;"
    "gap:2px 16px}ul.legend svg{vertical-align:middle;margin-right:4px}"
    "footer{margin-top:2em;color:#888;font-size:.8em}";

void tpar_report_opts_default(tpar_report_opts_t *o) { *o = (tpar_report_opts_t){.title = NULL, .buckets = 500}; }

tpar_status tpar_report_render(tpar_run_t *const *runs, int n, const tpar_report_opts_t *o, char **html,
                               size_t *len, tpar_err_t *err) {
    if (!runs || n < 1 || !html || !len)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_report_render: no run given");
    for (int r = 0; r < n; r++)
        if (!runs[r] || runs[r]->n == 0)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_report_render: run %d has no step", r);
    tpar_report_opts_t def;
    tpar_report_opts_default(&def);
    if (!o) o = &def;
    const char *title = o->title ? o->title : "tpar report";
    rbuf_t b = {0};
    tpar_status st = TPAR_OK;
    rb_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                "<meta name=\"generator\" content=\"tpar " TPAR_VERSION_STRING "\">\n<title>");
    rb_esc(&b, title);
    rb_printf(&b, "</title>\n<style>%s</style>\n</head>\n<body>\n<header><h1>", css);
    rb_esc(&b, title);
    char when[40] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    rb_printf(&b, "</h1><p class=\"gen\">%d run%s, drawn by tpar %s at %s. One file: no script, no network.</p>"
                  "</header>\n", n, n == 1 ? "" : "s", TPAR_VERSION_STRING, when);
    rb_puts(&b, "<section id=\"runs\"><h2>Runs</h2>\n<div class=\"runs\">\n");
    for (int r = 0; r < n; r++) run_header(&b, runs[r], r, n);
    rb_puts(&b, "</div></section>\n<section id=\"summary\"><h2>Summary</h2>\n");
    if (!(st = summary(&b, runs, n, err))) {
        rb_puts(&b, "</section>\n<section id=\"charts\"><h2>Charts</h2>\n<div class=\"charts\">\n");
        for (int c = 0; c < N_CHARTS && !st; c++) st = draw_chart(&b, &charts[c], runs, n, o, err);
        rb_puts(&b, "</div>\n<p class=\"note\">Long series are decimated to about one point per pixel; each bucket "
                    "keeps its minimum and maximum, so spikes survive. Red dashed lines: restarts (the shaded span: "
                    "steps lost and run again).</p>\n</section>\n");
        timeline(&b, runs, n);
        rb_puts(&b, "<footer>tpar report &#183; docs/REPORT.md</footer>\n</body>\n</html>\n");
    }
    if (!st && b.oom) st = tpar_err_set(err, TPAR_ERR_NOMEM, "report: out of memory for the page");
    if (st) {
        free(b.p);
        return st;
    }
    *html = b.p;
    *len = b.n;
    return TPAR_OK;
}

tpar_status tpar_report_files(const char *const *paths, int n, const char *out, const tpar_report_opts_t *o,
                              tpar_err_t *err) {
    if (!paths || n < 1 || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_report_files: no run given");
    tpar_run_t **runs = calloc((size_t)n, sizeof *runs);
    if (!runs) return tpar_err_set(err, TPAR_ERR_NOMEM, "report: out of memory");
    tpar_status st = TPAR_OK;
    for (int i = 0; i < n && !st; i++) st = tpar_run_load(paths[i], &runs[i], err);
    char *html = NULL;
    size_t len = 0;
    if (!st) st = tpar_report_render(runs, n, o, &html, &len, err);
    if (!st) st = tpar_report_write(out, html, len, err);
    free(html);
    for (int i = 0; i < n; i++) tpar_run_free(runs[i]);
    free(runs);
    return st;
}
