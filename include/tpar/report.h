/* tpar report: one self-contained HTML page (inline SVG, no scripts, no fonts, no network)
 * with the charts of one or more training runs, drawn from their JSON-lines metrics.
 *
 * A run is the metrics file that `tpar train --metrics FILE` appends to, or a directory
 * holding one (DIR/metrics.jsonl, or the only *.jsonl in DIR). Its lines are step records
 * ({"step": N, "loss": ...}; the first of each start of the program also holds the run's
 * header as "run.*" keys: layout, model, command line, version, machine) and restarts
 * ({"event": "restart"}).
 * Several runs overlay on the same charts. Long series are decimated so that each bucket
 * keeps its minimum and maximum. See docs/REPORT.md. */
#ifndef TPAR_REPORT_H
#define TPAR_REPORT_H

#include <stddef.h>

#include "tpar/core.h"

typedef struct tpar_run tpar_run_t;

/* Loads a run (a metrics file or a directory holding one). Lines that do not parse, such as
 * a truncated last line, are skipped with a warning (tpar_run_warning); steps repeated after
 * a restart replace the lost ones. A missing file, an empty one or one without a single
 * step record is an error that says what is missing. */
TPAR_API tpar_status tpar_run_load(const char *path, tpar_run_t **out, tpar_err_t *err);
TPAR_API void tpar_run_free(tpar_run_t *r); /* NULL is fine */

TPAR_API const char *tpar_run_name(const tpar_run_t *r);   /* the file's name, or its directory's */
TPAR_API const char *tpar_run_path(const tpar_run_t *r);   /* the metrics file read */
TPAR_API size_t tpar_run_steps(const tpar_run_t *r);       /* step records kept */
TPAR_API size_t tpar_run_val_points(const tpar_run_t *r);  /* of them, with a validation loss */
TPAR_API int tpar_run_restarts(const tpar_run_t *r);
TPAR_API int tpar_run_warning_count(const tpar_run_t *r);
TPAR_API const char *tpar_run_warning(const tpar_run_t *r, int i); /* NULL when out of range */

typedef struct {
    const char *title; /* of the page (NULL: "tpar report") */
    int log_loss;      /* 1: the loss charts on a log scale */
    int buckets;       /* decimation buckets per series, about one per horizontal pixel (0: 500) */
} tpar_report_opts_t;

TPAR_API void tpar_report_opts_default(tpar_report_opts_t *o);

/* The page of n >= 1 runs, overlaid, as a malloc'ed NUL-terminated string (*len bytes). */
TPAR_API tpar_status tpar_report_render(tpar_run_t *const *runs, int n, const tpar_report_opts_t *o, char **html,
                                        size_t *len, tpar_err_t *err);

/* Writes data to path atomically: path.tmp, then rename over path (a reader sees the old
 * page or the new one, never half of one). */
TPAR_API tpar_status tpar_report_write(const char *path, const char *data, size_t len, tpar_err_t *err);

/* Loads n runs, renders and writes the page (the live mode of `tpar train --report`).
 * Warnings of the runs are dropped; errors say which run. */
TPAR_API tpar_status tpar_report_files(const char *const *runs, int n, const char *out, const tpar_report_opts_t *o,
                                       tpar_err_t *err);

/* Min-max decimation of the n points (x[i], y[i]), x ascending: the points split into
 * `buckets` runs of consecutive points and each contributes its minimum and maximum of y
 * (in their order; one point when they coincide), plus the very first and last points; so
 * every peak and trough survives. Points with a NaN y are dropped. n <= 2 * buckets: every
 * finite point is kept. ox, oy hold room for min(n, 2 * buckets + 2) points; returns the
 * count written. */
TPAR_API size_t tpar_report_decimate(const double *x, const double *y, size_t n, size_t buckets, double *ox, double *oy);

/* "Nice" axis ticks (1, 2 or 5 times a power of ten) covering [lo, hi] with about target
 * intervals: writes up to max ticks, the first <= lo and the last >= hi, returns the count
 * (0 on bad input). */
TPAR_API int tpar_report_ticks(double lo, double hi, int target, double *ticks, int max);

#endif /* TPAR_REPORT_H */
