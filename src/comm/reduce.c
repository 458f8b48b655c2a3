/* Element types, bfloat16 conversion and the fixed-order reduction every backend uses. */
#include <string.h>

#include "internal.h"

size_t tpar_dtype_size(tpar_dtype dt) {
    switch (dt) {
    case TPAR_F32: return 4;
    case TPAR_BF16: return 2;
    case TPAR_I32: return 4;
    case TPAR_I64: return 8;
    case TPAR_F64: return 8;
    default: return 0;
    }
}

const char *tpar_dtype_name(tpar_dtype dt) {
    static const char *names[] = {"f32", "bf16", "i32", "i64", "f64"};
    return (unsigned)dt < TPAR_DTYPE_COUNT ? names[dt] : "invalid-dtype";
}

const char *tpar_op_name(tpar_op op) {
    static const char *names[] = {"sum", "max", "min"};
    return (unsigned)op < TPAR_OP_COUNT ? names[op] : "invalid-op";
}

const char *tpar_backend_name(tpar_backend b) {
    static const char *names[] = {"auto", "shm", "mpi", "hier"};
    return (unsigned)b < TPAR_BACKEND_COUNT ? names[b] : "invalid-backend";
}

uint16_t tpar_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float tpar_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Integer sums wrap (two's complement) instead of overflowing into undefined behaviour. */
#define ADD_F(a, b) ((a) + (b))
#define ADD_I32(a, b) ((int32_t)((uint32_t)(a) + (uint32_t)(b)))
#define ADD_I64(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
#define MAX_(a, b) ((b) > (a) ? (b) : (a))
#define MIN_(a, b) ((b) < (a) ? (b) : (a))

/* Blocks of BLK elements keep the accumulator in L1 while the sources stream by, and the
 * per-element order is always srcs[0], srcs[1], ..., srcs[n-1]. */
enum { BLK = 1024 };

#define REDUCE_LOOP(T, OPM)                                                                          \
    do {                                                                                             \
        T *d = (T *)dst;                                                                             \
        for (size_t b0 = 0; b0 < count; b0 += BLK) {                                                 \
            size_t m = count - b0 < BLK ? count - b0 : BLK;                                          \
            T acc[BLK];                                                                              \
            const T *s0 = (const T *)srcs[0] + b0;                                                   \
            for (size_t i = 0; i < m; i++) acc[i] = s0[i];                                           \
            for (int q = 1; q < n; q++) {                                                            \
                const T *s = (const T *)srcs[q] + b0;                                                \
                for (size_t i = 0; i < m; i++) acc[i] = OPM(acc[i], s[i]);                           \
            }                                                                                        \
            memcpy(d + b0, acc, m * sizeof(T));                                                      \
        }                                                                                            \
    } while (0)

#define REDUCE_BF16(OPM)                                                                             \
    do {                                                                                             \
        uint16_t *d = (uint16_t *)dst;                                                               \
        for (size_t b0 = 0; b0 < count; b0 += BLK) {                                                 \
            size_t m = count - b0 < BLK ? count - b0 : BLK;                                          \
            float acc[BLK];                                                                          \
            const uint16_t *s0 = (const uint16_t *)srcs[0] + b0;                                     \
            for (size_t i = 0; i < m; i++) acc[i] = tpar_bf16_to_f32(s0[i]);                         \
            for (int q = 1; q < n; q++) {                                                            \
                const uint16_t *s = (const uint16_t *)srcs[q] + b0;                                  \
                for (size_t i = 0; i < m; i++) acc[i] = OPM(acc[i], tpar_bf16_to_f32(s[i]));         \
            }                                                                                        \
            for (size_t i = 0; i < m; i++) d[b0 + i] = tpar_f32_to_bf16(acc[i]);                     \
        }                                                                                            \
    } while (0)

#define REDUCE_OPS(T, ADD)                                                                           \
    do {                                                                                             \
        if (op == TPAR_SUM) REDUCE_LOOP(T, ADD);                                                     \
        else if (op == TPAR_MAX) REDUCE_LOOP(T, MAX_);                                               \
        else REDUCE_LOOP(T, MIN_);                                                                   \
    } while (0)

void tpar_reduce_n(void *dst, const void *const *srcs, int n, size_t count, tpar_dtype dt, tpar_op op) {
    if (count == 0) return;
    switch (dt) {
    case TPAR_F32: REDUCE_OPS(float, ADD_F); break;
    case TPAR_F64: REDUCE_OPS(double, ADD_F); break;
    case TPAR_I32: REDUCE_OPS(int32_t, ADD_I32); break;
    case TPAR_I64: REDUCE_OPS(int64_t, ADD_I64); break;
    case TPAR_BF16:
        if (op == TPAR_SUM) REDUCE_BF16(ADD_F);
        else if (op == TPAR_MAX) REDUCE_BF16(MAX_);
        else REDUCE_BF16(MIN_);
        break;
    default: break;
    }
}
