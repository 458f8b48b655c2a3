/* Unit tests of the report module: nice ticks, min-max decimation, loading runs (bad inputs
 * included), the page's elements, and the progress meter (fed explicit times, never the clock). */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "tpar/report.h"

static char dir[64];

static const char *write_file(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return path;
    fputs(text, f);
    fclose(f);
    return path;
}

static size_t count(const char *s, const char *needle) {
    size_t k = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) k++;
    return k;
}

/* Each tick interval is 1, 2 or 5 x 10^k, the ticks cover [lo, hi] and are few. */
static void test_ticks(void) {
    const double cases[][2] = {{0, 1}, {0.37, 5.81}, {1, 10000}, {-3.2, 7.9}, {2.5e-5, 1.0e-3}, {1e9, 3.7e9}, {5, 5}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double lo = cases[c][0], hi = cases[c][1], t[64];
        int n = tpar_report_ticks(lo, hi, 5, t, 64);
        CHECK(n >= 2 && n <= 12);
        if (n < 2) continue;
        CHECK(t[0] <= lo && t[n - 1] >= hi);
        double step = t[1] - t[0], e = pow(10, floor(log10(step) + 1e-9)), f = step / e;
        CHECK(fabs(f - 1) < 1e-6 || fabs(f - 2) < 1e-6 || fabs(f - 5) < 1e-6);
        for (int i = 1; i < n; i++) CHECK(fabs(t[i] - t[i - 1] - step) <= 1e-9 * fmax(1, fabs(step)));
    }
    double t[4];
    CHECK_EQ_INT(0, tpar_report_ticks(NAN, 1, 5, t, 4));
    CHECK_EQ_INT(0, tpar_report_ticks(2, 1, 5, t, 4));
}

/* Every bucket's minimum and maximum survive, and so do the first and last points. */
static void test_decimate(void) {
    enum { N = 10000, B = 100 };
    double *x = malloc(N * sizeof(double)), *y = malloc(N * sizeof(double));
    double *ox = malloc((2 * B + 2) * sizeof(double)), *oy = malloc((2 * B + 2) * sizeof(double));
    unsigned s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = i + 1;
        y[i] = 3.0 * exp(-i / 3000.0) + (s >> 16) / 65536.0 * 0.1;
        if (i % 1234 == 0) y[i] += 5; // spikes a plain subsampling would miss
        if (i % 777 == 0) y[i] = NAN;  // gaps (a step without the value)
    }
    y[4321] = -2; // a deep trough
    size_t n = tpar_report_decimate(x, y, N, B, ox, oy);
    CHECK(n <= 2 * B + 2 && n >= B);
    for (size_t i = 1; i < n; i++) CHECK(ox[i] > ox[i - 1]);
    for (int b = 0; b < B; b++) { // each bucket's extremes are among the output points
        double mn = INFINITY, mxv = -INFINITY;
        for (int i = b * N / B; i < (b + 1) * N / B; i++)
            if (!isnan(y[i])) mn = fmin(mn, y[i]), mxv = fmax(mxv, y[i]);
        int has_mn = 0, has_mx = 0;
        for (size_t i = 0; i < n; i++) {
            if (ox[i] >= b * N / B + 1 && ox[i] <= (b + 1) * N / B) {
                has_mn |= oy[i] == mn;
                has_mx |= oy[i] == mxv;
            }
        }
        if (!has_mn || !has_mx) printf("bucket %d: min %d max %d\n", b, has_mn, has_mx);
        CHECK(has_mn && has_mx);
    }
    CHECK(ox[0] == 2 && ox[n - 1] == N); // x[0] has y NaN (0 % 777 == 0): the first finite is x = 2
    // short series: kept whole, NaNs dropped
    double sx[5] = {1, 2, 3, 4, 5}, sy[5] = {1, NAN, 3, 4, 5};
    CHECK_EQ_INT(4, (int)tpar_report_decimate(sx, sy, 5, 10, ox, oy));
    free(x), free(y), free(ox), free(oy);
}

static const char *HEADER =
    "{\"event\":\"run\",\"tpar_version\":\"0.1.0\",\"model\":\"tiny\",\"n_params\":842496,\"tp\":2,\"dp\":1,\"sp\":0,"
    "\"batch\":4,\"seq\":16,\"accum\":1,\"tokens_per_step\":64,\"command\":\"tpar train <x> & y\",\"host\":\"h\","
    "\"cpu\":\"c\",\"cores\":2}\n";

static void step_line(char *b, size_t n, int step, double loss, int val) {
    size_t k = strlen(b);
    snprintf(b + k, n - k,
             "{\"step\":%d,\"loss\":%g,\"lr\":0.001,\"grad_norm\":1.5,\"ms\":100,\"tokens_per_s\":640,\"mfu\":0.3,"
             "\"comm_frac\":0.2,\"comm_frac_tp\":0.15,\"comm_frac_dp\":0.05,\"balance\":1.1,\"busy_ms_max\":80,"
             "\"busy_ms_min\":70,\"state_bytes\":1e7,\"state_bytes_min\":1e7,\"peak_rss_bytes\":5e7,"
             "\"peak_rss_bytes_min\":4e7%s}\n",
             step, loss, val ? ",\"val_loss\":2.5" : "");
}

static void test_load(void) {
    tpar_err_t err = {0};
    tpar_run_t *r = NULL;
    char path[300];
    // missing
    snprintf(path, sizeof path, "%s/nope.jsonl", dir);
    CHECK(tpar_run_load(path, &r, &err) == TPAR_ERR_IO && !r);
    CHECK_STR_CONTAINS(err.msg, "nope.jsonl");
    // empty
    CHECK(tpar_run_load(write_file("empty.jsonl", ""), &r, &err) == TPAR_ERR_CORRUPT && !r);
    CHECK_STR_CONTAINS(err.msg, "empty");
    // a header only: no step
    CHECK(tpar_run_load(write_file("hdr.jsonl", HEADER), &r, &err) == TPAR_ERR_CORRUPT && !r);
    CHECK_STR_CONTAINS(err.msg, "no step record");
    // a directory without metrics
    snprintf(path, sizeof path, "%s/emptydir", dir);
    mkdir(path, 0755);
    CHECK(tpar_run_load(path, &r, &err) == TPAR_ERR_IO && !r);
    CHECK_STR_CONTAINS(err.msg, "no metrics file");

    // 10 steps with validation at 5 and 10, a restart at 6 that lost 7..8, a truncated last line;
    // the header as a record of its own (the form tpar train writes, "run.*" keys in the first
    // step record, is tested on real runs by test_report.py)
    char text[16384] = "";
    strcat(text, HEADER);
    for (int s = 1; s <= 8; s++) step_line(text, sizeof text, s, 5.0 - 0.1 * s, s == 5);
    strcat(text, "{\"event\":\"restart\",\"restart\":1,\"resumed_step\":6,\"failed_after_step\":8,\"lost_steps\":2,"
                 "\"reason\":\"rank 1 killed by signal 9\"}\n");
    strcat(text, HEADER);
    for (int s = 7; s <= 10; s++) step_line(text, sizeof text, s, 4.0 - 0.1 * s, s == 10);
    strcat(text, "{\"step\":11,\"loss\":3.");
    snprintf(path, sizeof path, "%s/run1", dir);
    mkdir(path, 0755);
    write_file("run1/metrics.jsonl", text);
    CHECK_MUST(tpar_run_load(path, &r, &err), err);
    if (r) {
        CHECK_EQ_INT(10, (int)tpar_run_steps(r)); // steps 7, 8 replaced, 11 truncated
        CHECK_EQ_INT(2, (int)tpar_run_val_points(r));
        CHECK_EQ_INT(1, tpar_run_restarts(r));
        CHECK(!strcmp(tpar_run_name(r), "run1"));
        int trunc = 0;
        for (int i = 0; i < tpar_run_warning_count(r); i++) trunc |= strstr(tpar_run_warning(r, i), "truncated") != 0;
        CHECK(trunc);
        tpar_report_opts_t o;
        tpar_report_opts_default(&o);
        o.title = "t<1>";
        char *html = NULL;
        size_t len = 0;
        CHECK_MUST(tpar_report_render(&r, 1, &o, &html, &len, &err), err);
        if (html) {
            CHECK(len == strlen(html));
            CHECK_EQ_INT(10, (int)count(html, "<figure class=\"chart\""));
            CHECK_STR_CONTAINS(html, "<title>t&lt;1&gt;</title>");          // escaped
            CHECK_STR_CONTAINS(html, "tpar train &lt;x&gt; &amp; y");         // the command, escaped
            CHECK_STR_CONTAINS(html, "TP 2 x DP 1");
            CHECK_EQ_INT(9, (int)count(html, "<g class=\"restart\""));       // the 9 step-axis charts
            CHECK(!strstr(html, "<script"));
            CHECK(!strstr(html, "http://") || count(html, "http://") == count(html, "http://www.w3.org/2000/svg"));
            CHECK_STR_CONTAINS(html, "id=\"no-trace\"");
            // the comm chart: TP, DP, total (no PP, no comm_frac_critical in these lines)
            const char *c = strstr(html, "id=\"chart-comm\""), *e = c ? strstr(c, "</figure>") : NULL;
            if (c && e) {
                size_t k = 0;
                for (const char *p = c; (p = strstr(p, "<polyline")) && p < e; p++) k++;
                CHECK_EQ_INT(3, (int)k);
                CHECK(strstr(c, "PP wait: not in the metrics") && strstr(c, "PP wait: not in the metrics") < e);
            }
        }
        free(html);
        tpar_run_free(r);
        r = NULL;
    }
    // a run without validation loads, with a warning that says so
    char nv[4096] = "";
    for (int s = 1; s <= 3; s++) step_line(nv, sizeof nv, s, 3.0, 0);
    CHECK_MUST(tpar_run_load(write_file("noval.jsonl", nv), &r, &err), err);
    if (r) {
        int said = 0;
        for (int i = 0; i < tpar_run_warning_count(r); i++) said |= strstr(tpar_run_warning(r, i), "no validation") != 0;
        CHECK(said);
        CHECK_EQ_INT(0, (int)tpar_run_val_points(r));
        tpar_run_free(r);
    }
    // garbage in the middle: skipped with the line number
    char mid[4096] = "";
    step_line(mid, sizeof mid, 1, 3.0, 0);
    strcat(mid, "not json\n");
    step_line(mid, sizeof mid, 2, 3.0, 1);
    r = NULL;
    CHECK_MUST(tpar_run_load(write_file("mid.jsonl", mid), &r, &err), err);
    if (r) {
        CHECK_EQ_INT(2, (int)tpar_run_steps(r));
        CHECK(tpar_run_warning_count(r) >= 1 && strstr(tpar_run_warning(r, 0), "line 2"));
        tpar_run_free(r);
    }
    // atomic write: the page replaces the old file, no .tmp left
    char out[300], tmp[310];
    snprintf(out, sizeof out, "%s/page.html", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    const char *runs[1] = {path};
    CHECK_MUST(tpar_report_files(runs, 1, out, NULL, &err), err);
    CHECK(access(out, F_OK) == 0 && access(tmp, F_OK) != 0);
}

/* A trace named by the header: one step's timeline, a row per rank, a bar per event in it. */
static void test_trace(void) {
    // 2 ranks x 2 steps; each step holds 3 events, and one event lies outside both steps
    char tr[8192] = "{\"traceEvents\":[";
    for (int step = 1; step <= 2; step++)
        for (int rank = 0; rank < 2; rank++) {
            double t = 1000.0 * step * 100;
            size_t k = strlen(tr);
            snprintf(tr + k, sizeof tr - k,
                     "{\"name\":\"step %d\",\"cat\":\"step\",\"ph\":\"X\",\"ts\":%g,\"dur\":90000,\"pid\":%d},"
                     "{\"name\":\"forward\",\"cat\":\"compute\",\"ph\":\"X\",\"ts\":%g,\"dur\":30000,\"pid\":%d},"
                     "{\"name\":\"all-reduce\",\"cat\":\"tp\",\"ph\":\"X\",\"ts\":%g,\"dur\":10000,\"pid\":%d},"
                     "{\"name\":\"backward\",\"cat\":\"compute\",\"ph\":\"X\",\"ts\":%g,\"dur\":40000,\"pid\":%d},",
                     step, t, rank, t, rank, t + 30000, rank, t + 40000, rank);
        }
    strcat(tr, "{\"name\":\"late\",\"ph\":\"X\",\"ts\":900000,\"dur\":5,\"pid\":0},{\"ph\":\"M\",\"name\":\"x\"}]}");
    write_file("trace.json", tr);
    char text[4096] = "{\"event\":\"run\",\"tp\":2,\"dp\":1,\"trace\":\"trace.json\"}\n";
    step_line(text, sizeof text, 1, 3.0, 1);
    tpar_err_t err = {0};
    tpar_run_t *r = NULL;
    CHECK_MUST(tpar_run_load(write_file("traced.jsonl", text), &r, &err), err);
    char *html = NULL;
    size_t len = 0;
    CHECK_MUST(tpar_report_render(&r, 1, NULL, &html, &len, &err), err);
    CHECK_EQ_INT(1, (int)count(html, "<figure class=\"timeline\""));
    CHECK_EQ_INT(6, (int)count(html, "<rect class=\"span\"")); // step 2's 3 events on each of the 2 ranks
    CHECK_STR_CONTAINS(html, "step 2, every rank");
    CHECK_STR_CONTAINS(html, ">rank 1</text>");
    CHECK(!strstr(html, "id=\"no-trace\""));
    free(html);
    tpar_run_free(r);
    // a trace that is not there: the run loads, with a warning, and the page says so
    char bad[4096] = "{\"event\":\"run\",\"trace\":\"gone.json\"}\n";
    step_line(bad, sizeof bad, 1, 3.0, 1);
    r = NULL;
    CHECK_MUST(tpar_run_load(write_file("badtrace.jsonl", bad), &r, &err), err);
    int said = 0;
    for (int i = 0; i < tpar_run_warning_count(r); i++) said |= strstr(tpar_run_warning(r, i), "gone.json") != 0;
    CHECK(said);
    html = NULL;
    CHECK_MUST(tpar_report_render(&r, 1, NULL, &html, &len, &err), err);
    CHECK_STR_CONTAINS(html, "could not be read");
    free(html);
    tpar_run_free(r);
}

static void test_meter(void) {
    tpar_meter_t m = {0};
    char line[256];
    int fin = 0;
    const uint64_t MiB = 1 << 20;
    // short work: nothing drawn at all
    CHECK(!tpar_meter_update(&m, "quick", 0, 10 * MiB, 100.0, 1, 1.0, 0.1, line, sizeof line, &fin));
    CHECK(!tpar_meter_update(&m, "quick", 10 * MiB, 10 * MiB, 100.5, 1, 1.0, 0.1, line, sizeof line, &fin));
    // long work: a bar after the delay with rate and ETA, throttled, then the final line
    CHECK(!tpar_meter_update(&m, "saving", 0, 100 * MiB, 200.0, 1, 1.0, 0.1, line, sizeof line, &fin));
    CHECK(tpar_meter_update(&m, "saving", 20 * MiB, 100 * MiB, 202.0, 1, 1.0, 0.1, line, sizeof line, &fin));
    CHECK_STR_CONTAINS(line, "20%");
    CHECK_STR_CONTAINS(line, "10.0 MiB/s");
    CHECK_STR_CONTAINS(line, "ETA 8.0 s");
    CHECK_STR_CONTAINS(line, "[######......");
    CHECK(!tpar_meter_update(&m, "saving", 21 * MiB, 100 * MiB, 202.05, 1, 1.0, 0.1, line, sizeof line, &fin));
    CHECK(tpar_meter_update(&m, "saving", 100 * MiB, 100 * MiB, 210.0, 1, 1.0, 0.1, line, sizeof line, &fin) && fin);
    CHECK_STR_CONTAINS(line, "100%");
    // plain lines
    tpar_meter_update(&m, "loading", 0, 200 * MiB, 300.0, 0, 0.0, 5.0, line, sizeof line, &fin); // starts the work
    CHECK(tpar_meter_update(&m, "loading", 50 * MiB, 200 * MiB, 310.0, 0, 0.0, 5.0, line, sizeof line, &fin));
    CHECK_STR_CONTAINS(line, "loading: 25% (50.0 MiB of 200.0 MiB), 5.0 MiB/s, ETA 30 s");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/tpar_report_unit_XXXXXX");
    if (!mkdtemp(dir)) {
        check_skip("cannot create a temporary directory");
        return 0;
    }
    test_ticks();
    test_decimate();
    test_load();
    test_trace();
    test_meter();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    return check_finish("test_report_unit");
}
