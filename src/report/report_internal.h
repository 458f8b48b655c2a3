/* Internal to the report module: the parsed run, and a growable text buffer for the page. */
#ifndef TPAR_REPORT_INTERNAL_H
#define TPAR_REPORT_INTERNAL_H

#include <stddef.h>

#include "tpar/report.h"

/* The columns of a run: one value per kept step record, NaN where the record lacks it. */
enum {
    COL_STEP,
    COL_TOKENS,      /* tokens seen by the end of the step (computed) */
    COL_LOSS,
    COL_VAL,         /* val_loss, at validations only */
    COL_LR,
    COL_NORM,
    COL_MS,
    COL_TPS,
    COL_MFU,
    COL_COMM,        /* comm_frac: rank 0 blocked in TP + DP collectives / step */
    COL_COMM_CRIT,   /* comm_frac_critical: the slowest rank's */
    COL_COMM_TP,
    COL_COMM_DP,
    COL_COMM_PP,     /* pipeline wait (once pipeline parallelism writes it) */
    COL_BALANCE,
    COL_BUSY_MAX,    /* busy ms (step minus waiting) of the slowest rank */
    COL_BUSY_MIN,    /* ... and of the fastest */
    COL_STATE_MAX,   /* model state bytes of the largest rank */
    COL_STATE_MIN,
    COL_RSS_MAX,     /* peak RSS bytes of the largest rank */
    COL_RSS_MIN,
    NCOL
};

/* The metrics key of each column (NULL: computed). */
extern const char *const tpar_report_col_key[NCOL];

typedef struct {
    long resumed_step, failed_after_step, lost_steps;
    int count;
    char reason[160];
} report_restart_t;

/* What the run's header record said (empty strings when absent). */
typedef struct {
    int present;
    char model[64], layout[96], command[1024], version[32], machine[256], started[40], batch[96], trace[512];
    double n_params, tokens_per_step;
    int starts; /* header records: 1 + resumes */
} report_header_t;

/* One complete event ("ph": "X") of the run's Chrome trace: a span of a rank's time. */
typedef struct {
    double ts, dur; /* microseconds */
    int pid;        /* the rank */
    char name[48], cat[24];
} report_event_t;

struct tpar_run {
    char *path, *name;
    size_t n, cap;
    double *col[NCOL]; /* (n) each */
    report_restart_t *restarts;
    int n_restarts;
    report_header_t hdr;
    report_event_t *events; /* of the trace named by the header (NULL: none or unreadable) */
    size_t n_events;
    char **warn;
    int n_warn;
};

/* A growable string; after a failed allocation it stops growing and remembers it. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} rbuf_t;

void rb_printf(rbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rb_puts(rbuf_t *b, const char *s);
void rb_esc(rbuf_t *b, const char *s); /* HTML-escaped text */

#endif /* TPAR_REPORT_INTERNAL_H */
