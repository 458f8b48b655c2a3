/* Shared by the comm tests: deterministic per-rank inputs and a serial reference that each
 * rank computes on its own (it never calls the library's reduction code). */
#ifndef TPAR_TESTS_COMM_TEST_H
#define TPAR_TESTS_COMM_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tpar/comm.h"

typedef union {
    float f;
    uint16_t h;
    int32_t i;
    int64_t l;
    double d;
} val_t;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Element i of rank q's input: mantissas up to 2^20 at scales 2^-4 .. 2^-15, so float sums
 * round (a reduction order change would show) while staying far from overflow; integers are
 * large enough that int32 sums wrap. */
/* Large tests repeat each rank's input with a prime period, so the serial reference is
 * computed for one period and tiled (an error that shifted data by a whole multiple of the
 * period would go unseen; chunk sizes are powers of two, so none does). 0: no period. */
static size_t elem_period;

static inline val_t elem(tpar_dtype dt, int q, size_t i, uint64_t salt) {
    if (elem_period) i %= elem_period;
    uint64_t h = mix64(((uint64_t)q << 40) ^ (uint64_t)i ^ (salt * 0x9e3779b97f4a7c15ull));
    int64_t m = (int64_t)(h % 2000001) - 1000000;
    static const double scale[12] = {0x1p-4, 0x1p-5, 0x1p-6, 0x1p-7, 0x1p-8, 0x1p-9,
                                     0x1p-10, 0x1p-11, 0x1p-12, 0x1p-13, 0x1p-14, 0x1p-15};
    double v = (double)m * scale[(h >> 32) % 12];
    val_t r;
    memset(&r, 0, sizeof r);
    switch (dt) {
    case TPAR_F32: r.f = (float)v; break;
    case TPAR_BF16: r.h = tpar_f32_to_bf16((float)v); break;
    case TPAR_I32: r.i = (int32_t)(m * 2047); break;
    case TPAR_I64: r.l = m * 10000000007ll; break;
    case TPAR_F64: r.d = v * (1.0 + 1e-9 * (double)(h >> 54)); break;
    default: break;
    }
    return r;
}

static inline void put(tpar_dtype dt, void *buf, size_t i, val_t v) {
    size_t e = tpar_dtype_size(dt);
    memcpy((char *)buf + i * e, &v, e);
}

static inline val_t get(tpar_dtype dt, const void *buf, size_t i) {
    val_t v;
    memset(&v, 0, sizeof v);
    memcpy(&v, (const char *)buf + i * tpar_dtype_size(dt), tpar_dtype_size(dt));
    return v;
}

/* Fills out[0..count) with rank q's elements base .. base+count. */
static inline void fill(tpar_dtype dt, int q, size_t base, size_t count, void *out, uint64_t salt) {
    for (size_t i = 0; i < count; i++) put(dt, out, i, elem(dt, q, base + i, salt));
}

/* Serial reference: element base+i reduced over ranks[0..n) in that order (bf16 in float,
 * rounded once; integer sums wrap). */
static inline void reference(tpar_dtype dt, tpar_op op, const int *ranks, int n, size_t base, size_t count,
                             void *out, uint64_t salt) {
    if (elem_period && count > elem_period) {
        size_t p = elem_period, e = tpar_dtype_size(dt);
        reference(dt, op, ranks, n, 0, p, out, salt); /* one period, then tiled */
        for (size_t i = p; i < count; i++) memcpy((char *)out + i * e, (char *)out + ((base + i) % p) * e, e);
        if (base % p) {
            char *tmp = malloc(p * e);
            if (!tmp) abort();
            memcpy(tmp, out, p * e);
            for (size_t i = 0; i < p && i < count; i++) memcpy((char *)out + i * e, tmp + ((base + i) % p) * e, e);
            free(tmp);
        }
        return;
    }
    for (size_t i = 0; i < count; i++) {
        val_t a = elem(dt, ranks[0], base + i, salt), r;
        float facc = dt == TPAR_BF16 ? tpar_bf16_to_f32(a.h) : a.f;
        for (int k = 1; k < n; k++) {
            val_t b = elem(dt, ranks[k], base + i, salt);
            switch (dt) {
            case TPAR_F32:
            case TPAR_BF16: {
                float x = dt == TPAR_F32 ? b.f : tpar_bf16_to_f32(b.h);
                facc = op == TPAR_SUM ? facc + x : op == TPAR_MAX ? (x > facc ? x : facc) : (x < facc ? x : facc);
                break;
            }
            case TPAR_F64:
                a.d = op == TPAR_SUM ? a.d + b.d : op == TPAR_MAX ? (b.d > a.d ? b.d : a.d) : (b.d < a.d ? b.d : a.d);
                break;
            case TPAR_I32:
                a.i = op == TPAR_SUM ? (int32_t)((uint32_t)a.i + (uint32_t)b.i)
                      : op == TPAR_MAX ? (b.i > a.i ? b.i : a.i) : (b.i < a.i ? b.i : a.i);
                break;
            case TPAR_I64:
                a.l = op == TPAR_SUM ? (int64_t)((uint64_t)a.l + (uint64_t)b.l)
                      : op == TPAR_MAX ? (b.l > a.l ? b.l : a.l) : (b.l < a.l ? b.l : a.l);
                break;
            default: break;
            }
        }
        r = a;
        if (dt == TPAR_F32) r.f = facc;
        if (dt == TPAR_BF16) r.h = tpar_f32_to_bf16(facc);
        put(dt, out, i, r);
    }
}

/* Is the backend's reduction order the serial one? shm: yes, so results must match the
 * reference bit for bit. mpi and hier reduce in their own (fixed) order: a float sum may
 * differ from the serial one by rounding, so it is compared within n * eps * sum|x| (plus one
 * bf16 rounding step for bf16); integer sums and max/min are still exact. */
static inline int exact_order(const tpar_comm_t *c) { return tpar_comm_backend(c) == TPAR_BACKEND_SHM; }

/* Compares got with expected; one CHECK per call. Returns 1 if all match. */
static inline int check_vals(const char *what, tpar_dtype dt, tpar_op op, int nranks, const void *expected,
                             const void *got, size_t count, int exact, const char *file, int line) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < count; i++) {
        val_t e = get(dt, expected, i), g = get(dt, got, i);
        int ok;
        if (exact || op != TPAR_SUM || dt == TPAR_I32 || dt == TPAR_I64) {
            ok = !memcmp(&e, &g, tpar_dtype_size(dt));
        } else {
            double ev = dt == TPAR_F32 ? e.f : dt == TPAR_F64 ? e.d : tpar_bf16_to_f32(e.h);
            double gv = dt == TPAR_F32 ? g.f : dt == TPAR_F64 ? g.d : tpar_bf16_to_f32(g.h);
            double eps = dt == TPAR_F64 ? 0x1p-52 : 0x1p-23;
            /* |x| <= 2^16 per element, so sum|x| <= n * 2^16 */
            double tol = nranks * eps * nranks * 65536.0 + (dt == TPAR_BF16 ? fabs(ev) * 0x1p-7 : 0.0);
            ok = fabs(ev - gv) <= tol;
        }
        if (!ok && !bad++) first = i;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %zu of %zu elements %s the serial reference", what, count - bad, count,
             exact ? "bit-identical to" : "within tolerance of");
    if (!check_record_(bad == 0, file, line, msg)) {
        val_t e = get(dt, expected, first), g = get(dt, got, first);
        fprintf(stderr, "%s  first mismatch at [%zu]: expected bits %016llx, got %016llx\n", check_state_.who,
                first, (unsigned long long)e.l, (unsigned long long)g.l);
    }
    return bad == 0;
}
#define CHECK_VALS(what, dt, op, nranks, expected, got, count, exact)                                \
    check_vals(what, dt, op, nranks, expected, got, count, exact, __FILE__, __LINE__)

/* Hash of a buffer, to compare results across ranks cheaply. */
static inline uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Dies with a message if a call that must succeed fails. */
#define MUST(comm, call)                                                                             \
    do {                                                                                             \
        tpar_status st_ = (call);                                                                    \
        if (st_ != TPAR_OK) {                                                                        \
            fprintf(stderr, "%s%s:%d: %s failed: %s: %s\n", check_state_.who, __FILE__, __LINE__, #call, \
                    tpar_status_str(st_), tpar_comm_error(comm));                                    \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)

static inline tpar_comm_t *test_init(void) {
    tpar_comm_t *c = NULL;
    tpar_err_t err;
    tpar_err_clear(&err);
    if (tpar_comm_init(NULL, &c, &err) != TPAR_OK) {
        fprintf(stderr, "tpar_comm_init: %s\n", err.msg);
        exit(1);
    }
    /* check.h takes the rank from TPAR_RANK; under mpirun, set it from the communicator. */
    snprintf(check_state_.who, sizeof check_state_.who, "[rank %d] ", tpar_comm_rank(c));
    return c;
}

#endif /* TPAR_TESTS_COMM_TEST_H */
