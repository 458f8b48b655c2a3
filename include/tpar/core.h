/* tpar core: status codes, error messages, timing, environment and memory helpers.
 *
 * Every other module builds on this header. Functions that can fail return a
 * tpar_status; where the caller needs to know more than the code (which tensor,
 * which rank, what was expected), they also fill a tpar_err_t that the caller owns.
 * There is no global error state. */
#ifndef TPAR_CORE_H
#define TPAR_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* The public API: libtpar is compiled with hidden visibility by default, and only what a
 * public header marks TPAR_API is exported (see docs/ARCHITECTURE.md, "Library hygiene"). */
#if defined(__GNUC__) || defined(__clang__)
#define TPAR_API __attribute__((visibility("default")))
#else
#define TPAR_API
#endif

#define TPAR_VERSION_MAJOR 0
#define TPAR_VERSION_MINOR 1
#define TPAR_VERSION_PATCH 0
#define TPAR_VERSION_STRING "0.1.0"

typedef enum {
    TPAR_OK = 0,
    TPAR_ERR_INVALID_ARG,  /* a caller passed something that can never work (NULL, bad enum, overflow) */
    TPAR_ERR_SHAPE,        /* shapes or layouts that do not fit together */
    TPAR_ERR_NOMEM,        /* an allocation failed */
    TPAR_ERR_IO,           /* a file could not be read or written */
    TPAR_ERR_CORRUPT,      /* a file or message is malformed, truncated or fails its checksum */
    TPAR_ERR_SYS,          /* a system call failed (errno is in the message) */
    TPAR_ERR_TIMEOUT,      /* a peer did not answer within the deadline */
    TPAR_ERR_PEER_DEAD,    /* a peer process is gone */
    TPAR_ERR_MISMATCH,     /* ranks disagree about a collective (count, op, dtype) */
    TPAR_ERR_UNSUPPORTED,  /* valid request this build cannot serve (e.g. MPI not compiled in) */
    TPAR_ERR_INTERNAL,     /* a bug in tpar */
    TPAR_STATUS_COUNT
} tpar_status;

/* A short stable name for a status ("invalid argument", "timeout", ...). Never NULL. */
TPAR_API const char *tpar_status_str(tpar_status s);

/* Caller-owned error detail. The message says what went wrong, where, and
 * when useful a hint; it is empty when no error has been recorded. */
#define TPAR_ERR_MSG_MAX 512
typedef struct {
    tpar_status code;
    char msg[TPAR_ERR_MSG_MAX];
} tpar_err_t;

/* Records code and a formatted message in err (err may be NULL) and returns code,
 * so a failing function can `return tpar_err_set(err, TPAR_ERR_SHAPE, "...", ...);`. */
TPAR_API tpar_status tpar_err_set(tpar_err_t *err, tpar_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
TPAR_API tpar_status tpar_err_setv(tpar_err_t *err, tpar_status code, const char *fmt, va_list ap);
TPAR_API void tpar_err_clear(tpar_err_t *err);

/* Monotonic wall-clock time in seconds (CLOCK_MONOTONIC). */
TPAR_API double tpar_now(void);

/* Reads an integer environment variable. Unset or empty leaves *out = def and
 * returns TPAR_OK; a value that is not an integer in [lo, hi] is an error naming
 * the variable. */
TPAR_API tpar_status tpar_env_int(const char *name, long long def, long long lo, long long hi, long long *out,
                                  tpar_err_t *err);
/* Same for a floating-point value in [lo, hi]. */
TPAR_API tpar_status tpar_env_double(const char *name, double def, double lo, double hi, double *out,
                                     tpar_err_t *err);

/* Parses a whole string as an integer in [lo, hi]; no trailing junk, no overflow. */
TPAR_API tpar_status tpar_parse_int(const char *s, long long lo, long long hi, long long *out);
/* Parses a whole string as a finite double in [lo, hi]. */
TPAR_API tpar_status tpar_parse_double(const char *s, double lo, double hi, double *out);

/* 64-byte aligned, zero-filled allocation (cache line / AVX-512 friendly).
 * Returns NULL on failure or size overflow; free with tpar_free. */
TPAR_API void *tpar_calloc_aligned(size_t count, size_t elem_size);
TPAR_API void tpar_free(void *p);

/* count * elem_size without overflow: returns 0 and sets *out, or -1 on overflow. */
TPAR_API int tpar_mul_size(size_t count, size_t elem_size, size_t *out);

/* Number of online CPU cores (at least 1). */
TPAR_API int tpar_num_cores(void);

/* Build configuration, as compiled in. */
typedef struct {
    const char *version;
    const char *build_type;
    const char *compiler;
    const char *c_flags;
    const char *blas;        /* e.g. "OpenBLAS 0.3.21 ..." from the library at run time */
    int with_mpi;            /* 1 if the MPI backend is compiled in */
    char mpi_library[256];   /* MPI library version (first line), or "" */
    const char *sanitize;    /* "" or "address", "undefined", ... */
} tpar_build_info_t;
TPAR_API void tpar_build_info(tpar_build_info_t *out);

/* Progress of long work (loading or saving a checkpoint, ...). The library does not print: it
 * calls fn with what it is doing, the units done so far and the total (bytes), first with
 * done = 0 and last with done = total; the program draws it (src/cli/cli_progress.c: a bar with
 * rate and ETA on a terminal, plain periodic lines otherwise). A zero tpar_progress_t (fn NULL)
 * reports nothing. */
typedef void (*tpar_progress_fn)(void *ctx, const char *what, uint64_t done, uint64_t total);
typedef struct {
    tpar_progress_fn fn;
    void *ctx;
} tpar_progress_t;
TPAR_API void tpar_progress_report(const tpar_progress_t *p, const char *what, uint64_t done, uint64_t total);

/* Turns progress reports into lines to draw: silent for the first `delay` seconds (short work
 * shows nothing), then a line at most every `every` seconds, and a final one when the work
 * ends if anything was drawn. A new `what`, or done going back, starts a new piece of work. */
typedef struct {
    char what[96];
    double t0, last;
    uint64_t done;
    int shown, ended;
} tpar_meter_t;

/* Feeds a report made at time now (tpar_now()). Returns 1 and fills line (no newline) when a
 * line is due: bar = 1 gives "what [#####.....]  45%  12.3 MiB/s  ETA 3 s" for redrawing in
 * place, bar = 0 "what: 45% (12.0 of 26.7 MiB), 12.3 MiB/s, ETA 3 s"; the final line says
 * "done" and the mean rate. *final (may be NULL) is set to 1 on the final line. */
TPAR_API int tpar_meter_update(tpar_meter_t *m, const char *what, uint64_t done, uint64_t total, double now, int bar,
                               double delay, double every, char *line, size_t n, int *final);

#endif /* TPAR_CORE_H */
