/* Element types, bfloat16 conversion, and the two data-movement kernels of the collectives:
 * the fixed-order reduction and the streaming copy. */
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "comm_internal.h"

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

/* One pass: each group of VEC elements (a vector register's worth) is read from every source
 * in order srcs[0], srcs[1], ..., srcs[n-1] and only then stored, so dst may alias any source.
 * (A pass per source through an L1 block, the earlier design, was twice as slow.) */
enum { VEC = 16 };

#define REDUCE_LOOP(T, ACC, LOAD, STORE, OPM)                                                        \
    do {                                                                                             \
        T *d = (T *)dst;                                                                             \
        const T *s0 = (const T *)srcs[0];                                                            \
        size_t i = 0;                                                                                \
        if (n == 2) { /* the common case, as a loop the compiler unrolls without a source loop */   \
            const T *s1 = (const T *)srcs[1];                                                        \
            for (; i + VEC <= count; i += VEC) {                                                     \
                ACC acc[VEC];                                                                        \
                for (int j = 0; j < VEC; j++) acc[j] = OPM(LOAD(s0[i + j]), LOAD(s1[i + j]));        \
                for (int j = 0; j < VEC; j++) d[i + j] = STORE(acc[j]);                              \
            }                                                                                        \
        }                                                                                            \
        for (; i + VEC <= count; i += VEC) {                                                         \
            ACC acc[VEC];                                                                            \
            for (int j = 0; j < VEC; j++) acc[j] = LOAD(s0[i + j]);                                  \
            for (int q = 1; q < n; q++) {                                                            \
                const T *s = (const T *)srcs[q] + i;                                                 \
                for (int j = 0; j < VEC; j++) acc[j] = OPM(acc[j], LOAD(s[j]));                      \
            }                                                                                        \
            for (int j = 0; j < VEC; j++) d[i + j] = STORE(acc[j]);                                  \
        }                                                                                            \
        for (; i < count; i++) {                                                                     \
            ACC a = LOAD(s0[i]);                                                                     \
            for (int q = 1; q < n; q++) a = OPM(a, LOAD(((const T *)srcs[q])[i]));                   \
            d[i] = STORE(a);                                                                         \
        }                                                                                            \
    } while (0)

#define SAME(x) (x)

#define REDUCE_OPS(T, ADD)                                                                           \
    do {                                                                                             \
        if (op == TPAR_SUM) REDUCE_LOOP(T, T, SAME, SAME, ADD);                                      \
        else if (op == TPAR_MAX) REDUCE_LOOP(T, T, SAME, SAME, MAX_);                                \
        else REDUCE_LOOP(T, T, SAME, SAME, MIN_);                                                    \
    } while (0)

void tpar_reduce_n(void *dst, const void *const *srcs, int n, size_t count, tpar_dtype dt, tpar_op op) {
    if (count == 0) return;
    switch (dt) {
    case TPAR_F32: REDUCE_OPS(float, ADD_F); break;
    case TPAR_F64: REDUCE_OPS(double, ADD_F); break;
    case TPAR_I32: REDUCE_OPS(int32_t, ADD_I32); break;
    case TPAR_I64: REDUCE_OPS(int64_t, ADD_I64); break;
    case TPAR_BF16:
        if (op == TPAR_SUM) REDUCE_LOOP(uint16_t, float, tpar_bf16_to_f32, tpar_f32_to_bf16, ADD_F);
        else if (op == TPAR_MAX) REDUCE_LOOP(uint16_t, float, tpar_bf16_to_f32, tpar_f32_to_bf16, MAX_);
        else REDUCE_LOOP(uint16_t, float, tpar_bf16_to_f32, tpar_f32_to_bf16, MIN_);
        break;
    default: break;
    }
}

void tpar_copy_stream(void *dst, const void *src, size_t n) {
#if defined(__SSE2__)
    uint8_t *d = dst;
    const uint8_t *s = src;
    size_t head = (size_t)(-(uintptr_t)d & 15u), i = head < n ? head : n;
    if (i) memcpy(d, s, i);
    for (; n - i >= 64; i += 64)
        for (size_t j = 0; j < 64; j += 16)
            _mm_stream_si128((__m128i *)(void *)(d + i + j), _mm_loadu_si128((const __m128i *)(const void *)(s + i + j)));
    if (i < n) memcpy(d + i, s + i, n - i);
    _mm_sfence(); /* streaming stores are weakly ordered: make them visible before any flag */
#else
    if (n) memcpy(dst, src, n);
#endif
}
