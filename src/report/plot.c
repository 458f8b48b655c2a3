/* Plotting helpers: a growable text buffer, nice axis ticks, min-max decimation, atomic write. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report_internal.h"

static int rb_reserve(rbuf_t *b, size_t extra) {
    if (b->oom) return -1;
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p, b->cap = cap;
    return 0;
}

void rb_printf(rbuf_t *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (k < 0 || rb_reserve(b, (size_t)k)) return;
    if ((size_t)k < sizeof small) {
        memcpy(b->p + b->n, small, (size_t)k + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
        va_end(ap);
    }
    b->n += (size_t)k;
}

void rb_puts(rbuf_t *b, const char *s) {
    size_t k = strlen(s);
    if (rb_reserve(b, k)) return;
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

void rb_esc(rbuf_t *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': rb_puts(b, "&lt;"); break;
        case '>': rb_puts(b, "&gt;"); break;
        case '&': rb_puts(b, "&amp;"); break;
        case '"': rb_puts(b, "&quot;"); break;
        case '\'': rb_puts(b, "&#39;"); break;
        default:
            if (!rb_reserve(b, 1)) {
                b->p[b->n++] = *s;
                b->p[b->n] = 0;
            }
        }
    }
}

/* The nice number (1, 2, 5 x 10^k) nearest x (round) or at least x (ceil); Heckbert's. */
static double nice_num(double x, int round_it) {
    double e = floor(log10(x)), f = x / pow(10, e), nf;
    if (round_it) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10, e);
}

int tpar_report_ticks(double lo, double hi, int target, double *ticks, int max) {
    if (!ticks || max < 2 || target < 1 || !isfinite(lo) || !isfinite(hi) || hi < lo) return 0;
    if (hi == lo) { // a flat series: a small range around it
        double d = lo != 0 ? fabs(lo) * 0.1 : 1;
        lo -= d, hi += d;
    }
    double step = nice_num(nice_num(hi - lo, 0) / target, 1);
    double t0 = floor(lo / step) * step, t1 = ceil(hi / step) * step;
    int n = 0;
    for (double t = t0; n < max; t += step) {
        // snap values that should be 0 or a multiple of step (floating-point drift)
        double v = round(t / step) * step;
        ticks[n++] = fabs(v) < step * 1e-9 ? 0 : v;
        if (v >= t1 - step * 1e-9) break;
    }
    return n;
}

size_t tpar_report_decimate(const double *x, const double *y, size_t n, size_t buckets, double *ox, double *oy) {
    size_t k = 0, finite = 0;
    for (size_t i = 0; i < n; i++) finite += !isnan(y[i]);
    if (buckets < 1) buckets = 1;
    if (finite <= 2 * buckets) {
        for (size_t i = 0; i < n; i++)
            if (!isnan(y[i])) ox[k] = x[i], oy[k] = y[i], k++;
        return k;
    }
    size_t first = 0, last = n - 1;
    while (isnan(y[first])) first++;
    while (isnan(y[last])) last--;
    for (size_t b = 0; b < buckets; b++) {
        size_t i0 = b * n / buckets, i1 = (b + 1) * n / buckets;
        size_t imin = n, imax = n;
        for (size_t i = i0; i < i1; i++) {
            if (isnan(y[i])) continue;
            if (imin == n || y[i] < y[imin]) imin = i;
            if (imax == n || y[i] > y[imax]) imax = i;
        }
        if (imin == n) continue; // a bucket of NaNs only
        // its min and max, and the very first and last points (so the line spans the run), in order
        size_t pick[4] = {imin, imax, first >= i0 && first < i1 ? first : imin, last >= i0 && last < i1 ? last : imax};
        for (int p = 1; p < 4; p++) // insertion sort of four
            for (int q = p; q > 0 && pick[q] < pick[q - 1]; q--) {
                size_t t = pick[q];
                pick[q] = pick[q - 1], pick[q - 1] = t;
            }
        for (int p = 0; p < 4; p++)
            if (p == 0 || pick[p] != pick[p - 1]) ox[k] = x[pick[p]], oy[k] = y[pick[p]], k++;
    }
    return k;
}

tpar_status tpar_report_write(const char *path, const char *data, size_t len, tpar_err_t *err) {
    if (!path || (!data && len)) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_report_write: NULL argument");
    size_t pl = strlen(path) + 8;
    char *tmp = malloc(pl);
    if (!tmp) return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, pl, "%s.tmp", path);
    tpar_status st = TPAR_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = tpar_err_set(err, TPAR_ERR_IO, "cannot write the report %s: %s", tmp, strerror(errno));
    } else {
        int bad = fwrite(data, 1, len, f) != len;
        bad |= fflush(f) != 0;
        int e = errno;
        bad |= fclose(f) != 0;
        if (bad) st = tpar_err_set(err, TPAR_ERR_IO, "cannot write the report %s: %s", tmp, strerror(e ? e : errno));
        else if (rename(tmp, path))
            st = tpar_err_set(err, TPAR_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (st) unlink(tmp);
    }
    free(tmp);
    return st;
}
