/* A tiny assertion helper for tpar's C tests.
 *
 * Each CHECK records a failure (with what was expected, what came, where, and the
 * tolerance) and lets the test go on, so one run shows every mismatch; check_finish()
 * prints the tally and gives the exit code. Under `tpar launch` every line carries the
 * rank. Why not cmocka: its model is one process per test and it has no tolerance-aware
 * array comparison, which is most of what tensor-parallel tests assert. */
#ifndef TPAR_TESTS_CHECK_H
#define TPAR_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    long checks;
    long failures;
    char who[32]; /* "" or "[rank R] " */
} check_state_t;

/* One per test program; tests are single programs, so a file-scope tally is the simplest
 * honest thing (the library itself keeps no global state). */
static check_state_t check_state_;

static inline void check_init_(void) {
    if (check_state_.who[0] || check_state_.checks) return;
    const char *r = getenv("TPAR_RANK");
    if (r) snprintf(check_state_.who, sizeof check_state_.who, "[rank %s] ", r);
}

static inline int check_record_(int ok, const char *file, int line, const char *what) {
    check_init_();
    check_state_.checks++;
    if (!ok) {
        check_state_.failures++;
        fprintf(stderr, "%sFAIL %s:%d: %s\n", check_state_.who, file, line, what);
    }
    return ok;
}

#define CHECK(cond) check_record_(!!(cond), __FILE__, __LINE__, #cond)

#define CHECK_EQ_INT(expected, got)                                                                  \
    do {                                                                                             \
        long long e_ = (long long)(expected), g_ = (long long)(got);                                 \
        if (!check_record_(e_ == g_, __FILE__, __LINE__, #got " == " #expected))                      \
            fprintf(stderr, "%s  expected %lld, got %lld\n", check_state_.who, e_, g_);               \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                                         \
    do {                                                                                             \
        const char *h_ = (haystack), *n_ = (needle);                                                 \
        if (!check_record_(h_ && strstr(h_, n_) != NULL, __FILE__, __LINE__,                          \
                           #haystack " contains " #needle))                                          \
            fprintf(stderr, "%s  expected to find \"%s\" in \"%s\"\n", check_state_.who, n_,          \
                    h_ ? h_ : "(null)");                                                             \
    } while (0)

/* |got - expected| <= atol + rtol * |expected| */
static inline int check_close_at_(double e, double g, double rtol, double atol) {
    if (isnan(e) || isnan(g)) return isnan(e) && isnan(g);
    return fabs(g - e) <= atol + rtol * fabs(e);
}

#define CHECK_CLOSE(expected, got, rtol, atol)                                                       \
    do {                                                                                             \
        double e_ = (double)(expected), g_ = (double)(got);                                          \
        if (!check_record_(check_close_at_(e_, g_, rtol, atol), __FILE__, __LINE__,                  \
                           #got " close to " #expected))                                             \
            fprintf(stderr, "%s  expected %.9g, got %.9g (diff %.3g, rtol %g, atol %g)\n",            \
                    check_state_.who, e_, g_, fabs(g_ - e_), (double)(rtol), (double)(atol));         \
    } while (0)

/* Compares n floats; reports the count of mismatches, the first one and the largest. */
static inline int check_close_f32_(const char *name, const float *expected, const float *got, size_t n,
                                   double rtol, double atol, const char *file, int line) {
    size_t bad = 0, first = 0, worst = 0;
    double worst_err = -1.0;
    for (size_t i = 0; i < n; i++) {
        double e = expected[i], g = got[i];
        if (!check_close_at_(e, g, rtol, atol)) {
            if (!bad) first = i;
            bad++;
        }
        double err = fabs(g - e) / (atol + rtol * fabs(e) + 1e-300);
        if (isnan(err) || err > worst_err) {
            worst_err = isnan(err) ? INFINITY : err;
            worst = i;
        }
    }
    char what[256];
    snprintf(what, sizeof what, "%s: %zu of %zu values within rtol %g, atol %g", name, n - bad, n, rtol,
             atol);
    if (!check_record_(bad == 0, file, line, what)) {
        fprintf(stderr, "%s  first mismatch at [%zu]: expected %.9g, got %.9g\n", check_state_.who, first,
                (double)expected[first], (double)got[first]);
        fprintf(stderr, "%s  worst at [%zu]: expected %.9g, got %.9g\n", check_state_.who, worst,
                (double)expected[worst], (double)got[worst]);
    }
    return bad == 0;
}

#define CHECK_CLOSE_F32(name, expected, got, n, rtol, atol)                                          \
    check_close_f32_(name, expected, got, n, rtol, atol, __FILE__, __LINE__)

/* Bitwise equality of two buffers (determinism checks). */
#define CHECK_BYTES_EQ(name, a, b, nbytes)                                                           \
    do {                                                                                             \
        const unsigned char *a_ = (const void *)(a), *b_ = (const void *)(b);                        \
        size_t n_ = (nbytes), i_ = 0;                                                                \
        while (i_ < n_ && a_[i_] == b_[i_]) i_++;                                                    \
        if (!check_record_(i_ == n_, __FILE__, __LINE__, name " bit-identical"))                     \
            fprintf(stderr, "%s  first differing byte at offset %zu of %zu\n", check_state_.who, i_, n_); \
    } while (0)

/* Set-up that must succeed for the test to mean anything: on failure print the call, the
 * status and err's message (err is the test's tpar_err_t, in scope), and stop. */
#define CHECK_MUST(call, err)                                                                        \
    do {                                                                                             \
        int s_ = (int)(call);                                                                        \
        if (s_) {                                                                                    \
            check_init_();                                                                           \
            fprintf(stderr, "%s%s:%d: %s failed (status %d): %s\n", check_state_.who, __FILE__,       \
                    __LINE__, #call, s_, (err).msg);                                                 \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)

/* Stops the test as skipped (CTest matches "skipped: "). */
static inline void check_skip(const char *reason) {
    check_init_();
    printf("%sskipped: %s\n", check_state_.who, reason);
    fflush(stdout);
    exit(0);
}

/* Prints the tally; returns the process exit code. */
static inline int check_finish(const char *test_name) {
    check_init_();
    printf("%s%s: %ld checks, %ld failed\n", check_state_.who, test_name, check_state_.checks,
           check_state_.failures);
    fflush(stdout);
    return check_state_.failures ? 1 : (check_state_.checks ? 0 : 2);
}

#endif /* TPAR_TESTS_CHECK_H */
