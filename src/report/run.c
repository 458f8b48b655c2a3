/* Reading a run: its JSON-lines metrics file into columns, its header and its restarts. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "report_internal.h"

const char *const tpar_report_col_key[NCOL] = {
    [COL_STEP] = "step",
    [COL_TOKENS] = NULL,
    [COL_LOSS] = "loss",
    [COL_VAL] = "val_loss",
    [COL_LR] = "lr",
    [COL_NORM] = "grad_norm",
    [COL_MS] = "ms",
    [COL_TPS] = "tokens_per_s",
    [COL_MFU] = "mfu",
    [COL_COMM] = "comm_frac",
    [COL_COMM_CRIT] = "comm_frac_critical",
    [COL_COMM_TP] = "comm_frac_tp",
    [COL_COMM_DP] = "comm_frac_dp",
    [COL_COMM_PP] = "comm_frac_pp",
    [COL_BALANCE] = "balance",
    [COL_BUSY_MAX] = "busy_ms_max",
    [COL_BUSY_MIN] = "busy_ms_min",
    [COL_STATE_MAX] = "state_bytes",
    [COL_STATE_MIN] = "state_bytes_min",
    [COL_RSS_MAX] = "peak_rss_bytes",
    [COL_RSS_MIN] = "peak_rss_bytes_min",
};

/* Keeps a warning; out of memory, the warning is lost but the run is not. */
static void warn(tpar_run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(tpar_run_t *r, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char **w = realloc(r->warn, (size_t)(r->n_warn + 1) * sizeof *w);
    if (!w) return;
    r->warn = w;
    if ((w[r->n_warn] = strdup(msg))) r->n_warn++;
}

void tpar_run_free(tpar_run_t *r) {
    if (!r) return;
    for (int c = 0; c < NCOL; c++) free(r->col[c]);
    for (int i = 0; i < r->n_warn; i++) free(r->warn[i]);
    free(r->warn);
    free(r->restarts);
    free(r->events);
    free(r->path);
    free(r->name);
    free(r);
}

const char *tpar_run_name(const tpar_run_t *r) { return r ? r->name : NULL; }
const char *tpar_run_path(const tpar_run_t *r) { return r ? r->path : NULL; }
size_t tpar_run_steps(const tpar_run_t *r) { return r ? r->n : 0; }
int tpar_run_restarts(const tpar_run_t *r) { return r ? r->n_restarts : 0; }
int tpar_run_warning_count(const tpar_run_t *r) { return r ? r->n_warn : 0; }
const char *tpar_run_warning(const tpar_run_t *r, int i) { return r && i >= 0 && i < r->n_warn ? r->warn[i] : NULL; }

size_t tpar_run_val_points(const tpar_run_t *r) {
    size_t k = 0;
    for (size_t i = 0; r && i < r->n; i++) k += !isnan(r->col[COL_VAL][i]);
    return k;
}

/* The metrics file of a run: the path itself, or DIR/metrics.jsonl, or the only *.jsonl of DIR. */
static tpar_status resolve(const char *path, char **file, tpar_err_t *err) {
    struct stat sb;
    if (stat(path, &sb))
        return tpar_err_set(err, TPAR_ERR_IO, "run %s: %s (hint: give a metrics file written by `tpar train --metrics "
                                              "FILE`, or the directory that holds it)", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return (*file = strdup(path)) ? TPAR_OK : TPAR_ERR_NOMEM;
    size_t len = strlen(path) + 300;
    char *p = malloc(len);
    if (!p) return tpar_err_set(err, TPAR_ERR_NOMEM, "run %s: out of memory", path);
    snprintf(p, len, "%s/metrics.jsonl", path);
    if (!stat(p, &sb) && S_ISREG(sb.st_mode)) {
        *file = p;
        return TPAR_OK;
    }
    DIR *d = opendir(path);
    if (!d) {
        free(p);
        return tpar_err_set(err, TPAR_ERR_IO, "run %s: cannot list the directory: %s", path, strerror(errno));
    }
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 6 && !strcmp(e->d_name + n - 6, ".jsonl") && n < 256) {
            if (found++ == 0) snprintf(p, len, "%s/%s", path, e->d_name);
        }
    }
    closedir(d);
    if (found == 1) {
        *file = p;
        return TPAR_OK;
    }
    free(p);
    if (found == 0)
        return tpar_err_set(err, TPAR_ERR_IO, "run %s: the directory holds no metrics file (metrics.jsonl or *.jsonl) "
                                              "(hint: `tpar train --save-dir %s --metrics %s/metrics.jsonl` keeps the "
                                              "metrics beside the checkpoints)", path, path, path);
    return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "run %s: the directory holds %d *.jsonl files and no metrics.jsonl: "
                                                   "name the file", path, found);
}

static tpar_status read_all(const char *path, char **out, size_t *len, tpar_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return tpar_err_set(err, TPAR_ERR_IO, "cannot open metrics file %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t k = fread(b + n, 1, cap - n - 1, f);
        n += k;
        if (n < cap - 1) break;
        char *nb = realloc(b, cap * 2);
        if (!nb) free(b);
        b = nb, cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!b) return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    if (bad) {
        free(b);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot read metrics file %s", path);
    }
    b[n] = 0;
    *out = b, *len = n;
    return TPAR_OK;
}

static double numv(json_t *v) {
    if (json_is_number(v)) return json_number_value(v);
    const char *s = json_string_value(v); // u64 keys are decimal strings
    if (s) {
        char *end;
        double d = strtod(s, &end);
        if (end != s && !*end) return d;
    }
    return NAN;
}

static double num(json_t *o, const char *key) { return numv(json_object_get(o, key)); }

static void strv(json_t *v, char *dst, size_t n) {
    const char *s = json_string_value(v);
    if (s && !*dst) snprintf(dst, n, "%s", s);
}

static void str(json_t *o, const char *key, char *dst, size_t n) { strv(json_object_get(o, key), dst, n); }

/* The key pre + key of o. */
static json_t *get(json_t *o, const char *pre, const char *key) {
    char k[96];
    snprintf(k, sizeof k, "%s%s", pre, key);
    return json_object_get(o, k);
}

/* The run's header: "run.*" keys of the first step record of each start of tpar train (pre
 * "run."), or a record of its own ({"event": "run", ...}, pre ""). The first names the run;
 * later ones are resumes. */
static void header(tpar_run_t *r, json_t *o, const char *pre) {
    report_header_t *h = &r->hdr;
    h->starts++;
    double tps = numv(get(o, pre, "tokens_per_step"));
    if (tps > 0) h->tokens_per_step = tps; // a resume at another DP size changes it
    if (h->present) return;
    h->present = 1;
    strv(get(o, pre, "model"), h->model, sizeof h->model);
    strv(get(o, pre, "command"), h->command, sizeof h->command);
    strv(get(o, pre, "tpar_version"), h->version, sizeof h->version);
    strv(get(o, pre, "started"), h->started, sizeof h->started);
    strv(get(o, pre, "trace"), h->trace, sizeof h->trace);
    h->n_params = numv(get(o, pre, "n_params"));
    double tp = numv(get(o, pre, "tp")), dp = numv(get(o, pre, "dp")), pp = numv(get(o, pre, "pp"));
    double sp = numv(get(o, pre, "sp"));
    const char *sps = sp > 0 ? " (sequence parallel)" : "";
    if (!isnan(tp) && !isnan(dp) && !isnan(pp))
        snprintf(h->layout, sizeof h->layout, "TP %.0f x PP %.0f x DP %.0f%s", tp, pp, dp, sps);
    else if (!isnan(tp) && !isnan(dp))
        snprintf(h->layout, sizeof h->layout, "TP %.0f x DP %.0f%s", tp, dp, sps);
    double b = numv(get(o, pre, "batch")), s = numv(get(o, pre, "seq")), a = numv(get(o, pre, "accum"));
    if (!isnan(b) && !isnan(s))
        snprintf(h->batch, sizeof h->batch, "%.0f x %.0f tokens x %.0f accum per DP rank, %.0f tokens per step", b, s,
                 isnan(a) ? 1 : a, h->tokens_per_step);
    char host[128] = "", cpu[128] = "", cores[32] = "";
    strv(get(o, pre, "host"), host, sizeof host);
    strv(get(o, pre, "cpu"), cpu, sizeof cpu);
    double nc = numv(get(o, pre, "cores"));
    if (!isnan(nc)) snprintf(cores, sizeof cores, "%.0f cores", nc);
    const char *part[3] = {host, cpu, cores};
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(h->machine);
        if (*part[i]) snprintf(h->machine + k, sizeof h->machine - k, "%s%s", k ? ", " : "", part[i]);
    }
}

static void restart(tpar_run_t *r, json_t *o) {
    report_restart_t *rs = realloc(r->restarts, (size_t)(r->n_restarts + 1) * sizeof *rs);
    if (!rs) return warn(r, "out of memory: a restart record was dropped");
    r->restarts = rs;
    report_restart_t *x = &rs[r->n_restarts++];
    memset(x, 0, sizeof *x);
    double v = num(o, "resumed_step"), f = num(o, "failed_after_step"), l = num(o, "lost_steps"), c = num(o, "restart");
    x->resumed_step = isnan(v) ? 0 : (long)v;
    x->failed_after_step = isnan(f) ? x->resumed_step : (long)f;
    x->lost_steps = isnan(l) ? 0 : (long)l;
    x->count = isnan(c) ? r->n_restarts : (int)c;
    str(o, "reason", x->reason, sizeof x->reason);
}

static int grow(tpar_run_t *r) {
    if (r->n < r->cap) return 0;
    size_t cap = r->cap ? r->cap * 2 : 1024;
    for (int c = 0; c < NCOL; c++) {
        double *p = realloc(r->col[c], cap * sizeof(double));
        if (!p) return -1;
        r->col[c] = p;
    }
    r->cap = cap;
    return 0;
}

/* A step record. A step at or before the last one kept is a restart repeating lost steps:
 * the new record replaces them (and the steps after it). */
static int step_record(tpar_run_t *r, json_t *o, double step) {
    while (r->n > 0 && r->col[COL_STEP][r->n - 1] >= step) r->n--;
    if (grow(r)) return -1;
    size_t i = r->n++;
    for (int c = 0; c < NCOL; c++) r->col[c][i] = tpar_report_col_key[c] ? num(o, tpar_report_col_key[c]) : NAN;
    // Tokens seen: the header's tokens per step, else this step's own (tokens/s x seconds).
    double per = r->hdr.tokens_per_step;
    if (!(per > 0)) per = round(r->col[COL_TPS][i] * r->col[COL_MS][i] / 1e3);
    double prev = i > 0 ? r->col[COL_TOKENS][i - 1] : 0, gap = i > 0 ? step - r->col[COL_STEP][i - 1] : step;
    if (isnan(prev)) prev = 0;
    r->col[COL_TOKENS][i] = isnan(per) ? NAN : prev + gap * per;
    return 0;
}

enum { MAX_EVENTS = 200000 };

/* The trace the header names (a path relative to the metrics file's directory): its complete
 * events. A trace that cannot be read is a warning; the page then says so. */
static void load_trace(tpar_run_t *r) {
    const char *t = r->hdr.trace;
    char path[1024];
    const char *slash = strrchr(r->path, '/');
    if (t[0] == '/' || !slash) snprintf(path, sizeof path, "%s", t);
    else snprintf(path, sizeof path, "%.*s/%s", (int)(slash - r->path), r->path, t);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    json_t *ev = json_is_array(root) ? root : json_object_get(root, "traceEvents");
    if (!json_is_array(ev)) {
        warn(r, "trace %s: %s, no timeline", path, root ? "no traceEvents array" : je.text);
        json_decref(root);
        return;
    }
    size_t n = json_array_size(ev), k = 0;
    report_event_t *e = calloc(n < MAX_EVENTS ? n + 1 : MAX_EVENTS, sizeof *e);
    for (size_t i = 0; e && i < n && k < MAX_EVENTS; i++) {
        json_t *o = json_array_get(ev, i);
        const char *ph = json_string_value(json_object_get(o, "ph"));
        double ts = num(o, "ts"), dur = num(o, "dur"), pid = num(o, "pid");
        if (!ph || strcmp(ph, "X") || isnan(ts) || isnan(dur) || dur < 0) continue;
        e[k].ts = ts, e[k].dur = dur, e[k].pid = isnan(pid) ? 0 : (int)pid;
        str(o, "name", e[k].name, sizeof e[k].name);
        str(o, "cat", e[k].cat, sizeof e[k].cat);
        k++;
    }
    if (n > MAX_EVENTS) warn(r, "trace %s: %zu events, the first %d read", path, n, MAX_EVENTS);
    if (!e) warn(r, "trace %s: out of memory, no timeline", path);
    else if (!k) warn(r, "trace %s: no complete (\"ph\": \"X\") event, no timeline", path);
    if (k) r->events = e, r->n_events = k;
    else free(e);
    json_decref(root);
}

static void set_name(tpar_run_t *r, const char *given, const char *file) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char buf[256];
    if (!strcmp(base, "metrics.jsonl") && base > file) { // DIR/metrics.jsonl: the directory's name
        size_t n = (size_t)(base - 1 - file);
        const char *d = file;
        for (size_t k = 0; k < n; k++)
            if (file[k] == '/' && k + 1 < n) d = file + k + 1;
        snprintf(buf, sizeof buf, "%.*s", (int)(file + n - d), d);
    } else {
        snprintf(buf, sizeof buf, "%s", base);
        size_t n = strlen(buf);
        if (n > 6 && !strcmp(buf + n - 6, ".jsonl")) buf[n - 6] = 0;
    }
    r->name = strdup(*buf ? buf : given);
}

tpar_status tpar_run_load(const char *path, tpar_run_t **out, tpar_err_t *err) {
    if (!path || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_run_load: NULL argument");
    *out = NULL;
    char *file = NULL, *text = NULL;
    size_t len = 0;
    tpar_status st = resolve(path, &file, err);
    if (st) return st;
    if ((st = read_all(file, &text, &len, err))) {
        free(file);
        return st;
    }
    tpar_run_t *r = calloc(1, sizeof *r);
    if (!r) {
        free(file), free(text);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    }
    r->path = file;
    set_name(r, path, file);
    size_t lineno = 0, bad = 0;
    for (char *line = text; line < text + len && !st;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        int last_unterminated = !nl;
        if (nl) *nl = 0;
        lineno++;
        char *next = nl ? nl + 1 : text + len;
        size_t ll = strlen(line);
        if (ll == 0 || strspn(line, " \t\r") == ll) {
            line = next;
            continue;
        }
        json_error_t je;
        json_t *o = json_loadb(line, ll, 0, &je);
        if (!o || !json_is_object(o)) {
            bad++;
            if (last_unterminated)
                warn(r, "%s line %zu: truncated (no newline at the end, %s), skipped: the run was probably still "
                        "writing it", file, lineno, o ? "not an object" : je.text);
            else
                warn(r, "%s line %zu: not a JSON object (%s), skipped", file, lineno, o ? "another JSON value" : je.text);
            json_decref(o);
            line = next;
            continue;
        }
        const char *ev = json_string_value(json_object_get(o, "event"));
        double step = num(o, "step");
        if (ev && !strcmp(ev, "run")) header(r, o, "");
        else if (ev && !strcmp(ev, "restart")) restart(r, o);
        else if (ev) { /* other events: a newer tpar's, not drawn */
        } else if (!isnan(step)) {
            if (json_object_get(o, "run.tpar_version") || json_object_get(o, "run.model")) header(r, o, "run.");
            if (step_record(r, o, step)) st = tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", file);
        } else {
            bad++;
            warn(r, "%s line %zu: neither a step record nor an event, skipped", file, lineno);
        }
        json_decref(o);
        line = next;
    }
    free(text);
    if (!st && r->n == 0) {
        if (len == 0)
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "metrics file %s is empty: no step record yet (hint: it fills as "
                                                     "`tpar train --metrics` runs, one line per step)", file);
        else
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "metrics file %s holds no step record (%zu line%s, %zu unreadable): "
                                                     "nothing to draw", file, lineno, lineno == 1 ? "" : "s", bad);
    }
    if (!st && tpar_run_val_points(r) == 0)
        warn(r, "%s: no validation loss (val_loss) in %zu steps: the validation series are empty (hint: `tpar train "
                "--val-every K`; a run validates at its last step)", file, r->n);
    if (!st && r->hdr.trace[0]) load_trace(r);
    if (!st && !r->hdr.present)
        warn(r, "%s: no run header (\"run.*\" keys): layout, model, command line and machine unknown (metrics of "
                "an older tpar)", file);
    if (!st && !r->name) st = tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", file);
    if (st) {
        tpar_run_free(r);
        return st;
    }
    *out = r;
    return TPAR_OK;
}
