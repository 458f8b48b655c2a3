/* Progress of long work: the callback the library calls, and the meter that turns its reports
 * into lines with rate and ETA (the program prints them; the library never does). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tpar/core.h"

void tpar_progress_report(const tpar_progress_t *p, const char *what, uint64_t done, uint64_t total) {
    if (p && p->fn) p->fn(p->ctx, what ? what : "working", done, total);
}

/* Bytes in a short unit: 512 B, 12.3 MiB, 1.20 GiB. */
static void bytes(char *b, size_t n, double v) {
    if (v >= 1073741824.0) snprintf(b, n, "%.2f GiB", v / 1073741824.0);
    else if (v >= 1048576.0) snprintf(b, n, "%.1f MiB", v / 1048576.0);
    else if (v >= 1024.0) snprintf(b, n, "%.1f KiB", v / 1024.0);
    else snprintf(b, n, "%.0f B", v);
}

static void duration(char *b, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(b, n, "?");
    else if (s < 10) snprintf(b, n, "%.1f s", s);
    else if (s < 60) snprintf(b, n, "%.0f s", ceil(s));
    else if (s < 3600) snprintf(b, n, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(b, n, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
}

int tpar_meter_update(tpar_meter_t *m, const char *what, uint64_t done, uint64_t total, double now, int bar,
                      double delay, double every, char *line, size_t n, int *final) {
    if (final) *final = 0;
    if (!m || !line || n == 0) return 0;
    line[0] = 0;
    if (!what) what = "working";
    if (strncmp(m->what, what, sizeof m->what - 1) || done < m->done || m->ended) { // a new piece of work
        memset(m, 0, sizeof *m);
        snprintf(m->what, sizeof m->what, "%s", what);
        m->t0 = now;
    }
    m->done = done;
    double el = now - m->t0, rate = el > 0 ? done / el : 0;
    int end = total > 0 && done >= total;
    if (end) {
        m->ended = 1;
        if (!m->shown) return 0; // short work: nothing was drawn, nothing to close
    } else if (el < delay || (m->shown && now - m->last < every)) {
        return 0;
    }
    m->shown = 1;
    m->last = now;
    double frac = total > 0 ? (double)done / total : 0;
    if (frac > 1) frac = 1;
    char r[32], d[32], t[32], eta[32];
    bytes(r, sizeof r, rate);
    bytes(d, sizeof d, (double)done);
    bytes(t, sizeof t, (double)total);
    duration(eta, sizeof eta, rate > 0 ? (double)(total - done) / rate : NAN);
    if (end) {
        char e[32];
        duration(e, sizeof e, el);
        snprintf(line, n, bar ? "%s [##############################] 100%%  %s in %s, %s/s" : "%s: done, %s in %s, %s/s",
                 m->what, t, e, r);
        if (final) *final = 1;
    } else if (done == 0 || el <= 0) { // no rate yet
        snprintf(line, n, bar ? "%s [..............................]   0%%" : "%s: 0%% (of %s)", m->what, t);
    } else if (bar) {
        char cells[31];
        int k = (int)(frac * 30);
        for (int i = 0; i < 30; i++) cells[i] = i < k ? '#' : '.';
        cells[30] = 0;
        snprintf(line, n, "%s [%s] %3.0f%%  %s/s  ETA %s", m->what, cells, frac * 100, r, eta);
    } else {
        snprintf(line, n, "%s: %.0f%% (%s of %s), %s/s, ETA %s", m->what, frac * 100, d, t, r, eta);
    }
    return 1;
}
