/* Status codes, error detail, timing, environment parsing and aligned memory. */
#define _POSIX_C_SOURCE 200809L
#include "tpar/core.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const status_names[TPAR_STATUS_COUNT] = {
    [TPAR_OK] = "ok",
    [TPAR_ERR_INVALID_ARG] = "invalid argument",
    [TPAR_ERR_SHAPE] = "shape mismatch",
    [TPAR_ERR_NOMEM] = "out of memory",
    [TPAR_ERR_IO] = "i/o error",
    [TPAR_ERR_CORRUPT] = "corrupt data",
    [TPAR_ERR_SYS] = "system call failed",
    [TPAR_ERR_TIMEOUT] = "timeout",
    [TPAR_ERR_PEER_DEAD] = "peer died",
    [TPAR_ERR_MISMATCH] = "collective mismatch",
    [TPAR_ERR_UNSUPPORTED] = "unsupported",
    [TPAR_ERR_INTERNAL] = "internal error",
};

const char *tpar_status_str(tpar_status s) {
    if ((int)s < 0 || s >= TPAR_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

tpar_status tpar_err_setv(tpar_err_t *err, tpar_status code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

tpar_status tpar_err_set(tpar_err_t *err, tpar_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    tpar_err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void tpar_err_clear(tpar_err_t *err) {
    if (!err) return;
    err->code = TPAR_OK;
    err->msg[0] = '\0';
}

double tpar_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail for CLOCK_MONOTONIC */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

tpar_status tpar_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s || !out) return TPAR_ERR_INVALID_ARG;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi) return TPAR_ERR_INVALID_ARG;
    *out = v;
    return TPAR_OK;
}

tpar_status tpar_parse_double(const char *s, double lo, double hi, double *out) {
    if (!s || !*s || !out) return TPAR_ERR_INVALID_ARG;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno || *end != '\0' || !isfinite(v) || v < lo || v > hi) return TPAR_ERR_INVALID_ARG;
    *out = v;
    return TPAR_OK;
}

tpar_status tpar_env_int(const char *name, long long def, long long lo, long long hi, long long *out,
                         tpar_err_t *err) {
    const char *s = getenv(name);
    if (!s || !*s) {
        *out = def;
        return TPAR_OK;
    }
    if (tpar_parse_int(s, lo, hi, out) != TPAR_OK)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "environment variable %s='%s' is not an integer in [%lld, %lld]", name, s,
                            lo, hi);
    return TPAR_OK;
}

tpar_status tpar_env_double(const char *name, double def, double lo, double hi, double *out,
                            tpar_err_t *err) {
    const char *s = getenv(name);
    if (!s || !*s) {
        *out = def;
        return TPAR_OK;
    }
    if (tpar_parse_double(s, lo, hi, out) != TPAR_OK)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "environment variable %s='%s' is not a number in [%g, %g]", name, s, lo, hi);
    return TPAR_OK;
}

int tpar_mul_size(size_t count, size_t elem_size, size_t *out) {
    if (elem_size && count > SIZE_MAX / elem_size) return -1;
    *out = count * elem_size;
    return 0;
}

void *tpar_calloc_aligned(size_t count, size_t elem_size) {
    size_t bytes;
    if (tpar_mul_size(count, elem_size, &bytes) != 0) return NULL;
    if (bytes == 0) bytes = 64; /* a valid, freeable pointer for empty tensors */
    if (bytes > SIZE_MAX - 63) return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

void tpar_free(void *p) { free(p); }

int tpar_num_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
