/* Causal self-attention per head, in blocks of query rows, with our own register-tiled
 * block products (no BLAS call) and one (batch, head) per thread.
 *
 * For a block of QB = 64 query rows, the scaled scores against every key the block can
 * see (keys 0 .. end of block) go into scratch transposed, as ST (kend, QB): key-major,
 * one query per vector lane. So the softmax of each query row is a lane-wise max, exp
 * and sum down the key rows (no horizontal reductions), and every block product is a
 * sum of rank-1 updates with a contiguous vector operand:
 *
 *   ST[j, :]  = scale * sum_c  k[j, c] * qT[c, :]      (qT: 16 channels at a time, packed)
 *   out[r, :] = sum_j ST[j, r] * v[j, :]                (v rows as they are in qkv)
 *
 * and backward's dP^T = v dO^T, dv += P^T dO, dk += dS^T q, dq += dS k the same way.
 * Each row softmax is exact over its causal prefix (no online rescaling); the only thing
 * saved for backward is the log-sum-exp of each row, from which backward recomputes the
 * probabilities exactly (FlashAttention's trick). Memory is O(QB * T) per thread for any
 * T, never O(T^2). q, k, v are read in place from the (B, T, 3C) buffer (row stride 3C).
 *
 * Threads: the (batch, head) pairs are shared among the rank's OpenMP threads; each pair
 * is computed by one thread in a fixed order and writes only its own columns, so the
 * result is bitwise the same for any thread count. Thread 0 uses the caller's scratch;
 * the others get theirs from one allocation per call (if that fails, one thread runs). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kmath.h"
#include "tpar/kernels.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

enum { QB = TPAR_ATTENTION_BLOCK }; /* queries per block = vector lanes of ST (64: 4 AVX-512 vectors) */
enum { HC = 16 };                   /* channels of q (or dO) packed transposed at a time, on the stack */

size_t tpar_attention_scratch_floats(int T) {
    /* ST (T, QB) scores/probabilities, dST (T, QB) their gradient, and D (QB) */
    return (size_t)2 * QB * (size_t)(T > 0 ? T : 0) + QB;
}

tpar_status tpar_check_attention(int B, int T, int C, int NH, tpar_err_t *err) {
    tpar_status st = tpar_check_dims(err, "attention qkv (B, T, 3C)", 4, B, T, C, 3);
    if (st == TPAR_OK) st = tpar_check_dims(err, "attention heads", 1, NH);
    if (st == TPAR_OK && C % NH != 0)
        st = tpar_err_set(err, TPAR_ERR_INVALID_ARG, "attention: width C = %d is not divisible by %d heads", C,
                          NH);
    return st;
}

/* ---- the block products -------------------------------------------------------------------- */

#ifdef __AVX512F__
/* r[0..15] (16 rows of 16 floats) transposed in registers: afterwards r[j][i] = old r[i][j].
 * Unpacks pair rows (stages 1-2: lane L of u[k] holds rows 4m..4m+3 of column 4L+k), then
 * 128-bit lane shuffles gather each column's four row groups (stages 3-4). */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int m = 0; m < 16; m += 4) {
        u[m + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[m]), _mm512_castps_pd(t[m + 2])));
        u[m + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[m]), _mm512_castps_pd(t[m + 2])));
        u[m + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[m + 1]), _mm512_castps_pd(t[m + 3])));
        u[m + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[m + 1]), _mm512_castps_pd(t[m + 3])));
    }
    for (int k = 0; k < 4; k++) {
        const __m512 vA = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), vB = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
        const __m512 wA = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        const __m512 wB = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
        r[k] = _mm512_shuffle_f32x4(vA, wA, 0x88);
        r[4 + k] = _mm512_shuffle_f32x4(vB, wB, 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(vA, wA, 0xDD);
        r[12 + k] = _mm512_shuffle_f32x4(vB, wB, 0xDD);
    }
}
#endif

/* xT (hc, QB) = alpha * x[r, c0 + c] for the block's nq rows, zero lanes for r >= nq. */
static void pack_t(float *restrict xT, const float *restrict x, int ldx, int nq, int hc, float alpha) {
    int r0 = 0;
#ifdef __AVX512F__
    if (hc == 16) { /* whole groups of 16 rows: a register transpose instead of 256 strided copies */
        const __m512 va = _mm512_set1_ps(alpha);
        for (; r0 + 16 <= nq; r0 += 16) {
            __m512 rows[16];
            for (int i = 0; i < 16; i++) rows[i] = _mm512_mul_ps(va, _mm512_loadu_ps(x + (size_t)(r0 + i) * ldx));
            transpose16(rows);
            for (int c = 0; c < 16; c++) _mm512_storeu_ps(xT + c * QB + r0, rows[c]);
        }
    }
#endif
    for (int c = 0; c < hc; c++) {
        float *d = xT + c * QB;
        for (int r = r0; r < nq; r++) d[r] = alpha * x[(size_t)r * ldx + c];
        for (int r = nq > r0 ? nq : r0; r < QB; r++) d[r] = 0.0f;
    }
}

#ifdef __AVX512F__
/* Key rows j .. j+3 of rank_update_lanes, lane vectors VS..3 (the vectors below VS are all
 * causally masked lanes in these rows and are neither computed nor stored). VS is a
 * constant at every call, so acc stays in registers. */
static inline __attribute__((always_inline)) void lanes_tile(float *restrict ST, int j, int n,
                                                             const float *restrict a, int lda,
                                                             const float *restrict xT, int hc, int first,
                                                             const int VS) {
    __m512 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int v = VS; v < 4; v++)
            acc[i][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(ST + (size_t)(j + i) * QB + 16 * v);
    const float *a0 = a + (size_t)j * lda;
    /* the rows of a are far apart (3C floats): fetch the next tile's line of each */
    for (int i = 4; i < 8 && j + i < n; i++) _mm_prefetch((const char *)(a0 + (size_t)i * lda), _MM_HINT_T0);
    for (int c = 0; c < hc; c++) {
        __m512 x[4];
        for (int v = VS; v < 4; v++) x[v] = _mm512_loadu_ps(xT + c * QB + 16 * v);
        for (int i = 0; i < 4; i++) {
            const __m512 ai = _mm512_set1_ps(a0[(size_t)i * lda + c]);
            for (int v = VS; v < 4; v++) acc[i][v] = _mm512_fmadd_ps(ai, x[v], acc[i][v]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int v = VS; v < 4; v++) _mm512_storeu_ps(ST + (size_t)(j + i) * QB + 16 * v, acc[i][v]);
}
#endif

/* ST[j, :] (=, or += unless first) sum_{c < hc} a[j, c] * xT[c, :] for j < n; a (n, hc) row
 * stride lda. Lanes r < j - i0 of row j are causally masked (query i0 + r does not see key
 * j): whole vectors of them may be left unwritten, and readers must mask them. */
static void rank_update_lanes(float *restrict ST, int n, const float *restrict a, int lda, const float *restrict xT,
                              int hc, int first, int i0) {
    int j = 0;
#ifdef __AVX512F__
    for (; j + 4 <= n; j += 4) { /* 4 key rows x 64 lanes: 16 accumulators */
        const int vs = j > i0 ? (j - i0) / 16 : 0; /* row j's lanes below 16 vs are all masked */
        switch (vs) {
        case 0: lanes_tile(ST, j, n, a, lda, xT, hc, first, 0); break;
        case 1: lanes_tile(ST, j, n, a, lda, xT, hc, first, 1); break;
        case 2: lanes_tile(ST, j, n, a, lda, xT, hc, first, 2); break;
        default: lanes_tile(ST, j, n, a, lda, xT, hc, first, 3); break;
        }
    }
#else
    (void)i0;
#endif
    for (; j < n; j++) {
        float acc[QB];
        float *s = ST + (size_t)j * QB;
        const float *aj = a + (size_t)j * lda;
#pragma omp simd
        for (int r = 0; r < QB; r++) acc[r] = first ? 0.0f : s[r];
        for (int c = 0; c < hc; c++) {
            const float ac = aj[c];
#pragma omp simd
            for (int r = 0; r < QB; r++) acc[r] += ac * xT[c * QB + r];
        }
#pragma omp simd
        for (int r = 0; r < QB; r++) s[r] = acc[r];
    }
}

#ifdef __AVX512F__
/* Rows i0 .. i0+RR of rank_rows below, channels [c, c + 16 NV), lanes of the last vector
 * limited by mask. RR and NV are constants at every call, so acc stays in registers. */
static inline __attribute__((always_inline)) void rank_rows_tile(float *restrict out, size_t ldo,
                                                                 const float *restrict a, size_t ars, size_t acs,
                                                                 int klo, int khi, const float *restrict b, size_t ldb,
                                                                 const float *rs, float alpha, int accumulate,
                                                                 int M, int i0, int c, const int RR, const int NV,
                                                                 __mmask16 last) {
    __m512 acc[4][4];
    for (int i = 0; i < RR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    if (accumulate) /* the next tile's output rows are far apart (3C floats): fetch them now */
        for (int i = 0; i < RR && i0 + RR + i < M; i++)
            for (int v = 0; v < NV; v++)
                _mm_prefetch((const char *)(out + (size_t)(i0 + RR + i) * ldo + c + 16 * v), _MM_HINT_T0);
    for (int k = klo; k < khi; k++) {
        const float *bk = b + (size_t)k * ldb + c;
        __m512 x[4];
        for (int v = 0; v < NV; v++)
            x[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, bk + 16 * v) : _mm512_loadu_ps(bk + 16 * v);
        const float *ak = a + (size_t)i0 * ars + (size_t)k * acs;
        for (int i = 0; i < RR; i++) {
            const __m512 ai = _mm512_set1_ps(ak[(size_t)i * ars]);
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(ai, x[v], acc[i][v]);
        }
    }
    for (int i = 0; i < RR; i++) {
        const __m512 f = _mm512_set1_ps(rs ? rs[i0 + i] : alpha);
        float *o = out + (size_t)(i0 + i) * ldo + c;
        for (int v = 0; v < NV; v++) {
            const __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
            __m512 y = _mm512_mul_ps(f, acc[i][v]);
            if (accumulate) y = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o + 16 * v), y);
            _mm512_mask_storeu_ps(o + 16 * v, m, y);
        }
    }
}
#endif

/* Which a[i, k] are causally masked (exact zeros), so that their terms can be skipped:
 * rows are queries i0 + i and k keys (k > i0 + i masked), or rows are keys i and k the
 * queries i0 + k (k < i - i0 masked). Skipped terms are +-0 added to a sum that starts at
 * +0, so skipping does not change the result. */
enum { MASK_NONE, MASK_KEYS_AFTER, MASK_QUERIES_BEFORE };

static inline void k_range(int mode, int i0, int i, int rr, int K, int *klo, int *khi) {
    *klo = 0, *khi = K;
    if (mode == MASK_KEYS_AFTER && i0 + i + rr < K) *khi = i0 + i + rr; /* the tile's last row sees keys <= i0+i+rr-1 */
    if (mode == MASK_QUERIES_BEFORE && i - i0 > 0) *klo = i - i0 < K ? i - i0 : K; /* its first row: queries >= i-i0 */
}

/* out[i, c] (= or +=) f_i * sum_{k < K} a[i*ars + k*acs] * b[k*ldb + c] for i < M, c < N, where
 * f_i = rs[i] if rs else alpha, skipping the masked terms of `mode` (block start i0). The sum
 * runs over k in order, whatever the tiling. */
static void rank_rows(float *restrict out, size_t ldo, const float *restrict a, size_t ars, size_t acs, int M, int K,
                      const float *restrict b, size_t ldb, int N, const float *rs, float alpha, int accumulate,
                      int mode, int i0) {
    int klo, khi;
#ifdef __AVX512F__
    for (int c = 0; c < N;) {
        const int left = N - c;
        if (left >= 64) {
            int i = 0;
            for (; i + 4 <= M; i += 4) {
                k_range(mode, i0, i, 4, K, &klo, &khi);
                rank_rows_tile(out, ldo, a, ars, acs, klo, khi, b, ldb, rs, alpha, accumulate, M, i, c, 4, 4, 0xFFFF);
            }
            for (; i < M; i++) {
                k_range(mode, i0, i, 1, K, &klo, &khi);
                rank_rows_tile(out, ldo, a, ars, acs, klo, khi, b, ldb, rs, alpha, accumulate, M, i, c, 1, 4, 0xFFFF);
            }
            c += 64;
        } else {
            const int w = left < 16 ? left : 16;
            const __mmask16 m = (__mmask16)((1u << w) - 1u);
            int i = 0;
            for (; i + 4 <= M; i += 4) {
                k_range(mode, i0, i, 4, K, &klo, &khi);
                rank_rows_tile(out, ldo, a, ars, acs, klo, khi, b, ldb, rs, alpha, accumulate, M, i, c, 4, 1, m);
            }
            for (; i < M; i++) {
                k_range(mode, i0, i, 1, K, &klo, &khi);
                rank_rows_tile(out, ldo, a, ars, acs, klo, khi, b, ldb, rs, alpha, accumulate, M, i, c, 1, 1, m);
            }
            c += w;
        }
    }
#else
    enum { CW = 64 };
    for (int c0 = 0; c0 < N; c0 += CW) {
        const int w = N - c0 < CW ? N - c0 : CW;
        for (int i = 0; i < M; i++) {
            float acc[CW];
#pragma omp simd
            for (int c = 0; c < CW; c++) acc[c] = 0.0f;
            k_range(mode, i0, i, 1, K, &klo, &khi);
            for (int k = klo; k < khi; k++) {
                const float ak = a[(size_t)i * ars + (size_t)k * acs];
                const float *bk = b + (size_t)k * ldb + c0;
#pragma omp simd
                for (int c = 0; c < w; c++) acc[c] += ak * bk[c];
            }
            const float f = rs ? rs[i] : alpha;
            float *o = out + (size_t)i * ldo + c0;
            if (accumulate) {
#pragma omp simd
                for (int c = 0; c < w; c++) o[c] += f * acc[c];
            } else {
#pragma omp simd
                for (int c = 0; c < w; c++) o[c] = f * acc[c];
            }
        }
    }
#endif
}

/* ST (kend, QB) = scale * x_blk k^T, transposed: ST[j, r] = scale * x[r, :] . kk[j, :] for
 * the nq rows of the block starting at query i0 (lanes r >= nq hold 0; causally masked
 * lanes, r < j - i0, may hold anything). x and kk have row strides ldx and ld. */
static void scores_t(float *ST, const float *x, int ldx, const float *kk, int ld, int i0, int nq, int kend, int hs,
                     float scale) {
    _Alignas(64) float xT[HC * QB];
    for (int c0 = 0; c0 < hs; c0 += HC) {
        const int hc = hs - c0 < HC ? hs - c0 : HC;
        pack_t(xT, x + c0, ldx, nq, hc, scale);
        rank_update_lanes(ST, kend, kk + c0, ld, xT, hc, c0 == 0, i0);
    }
}

/* ---- forward ------------------------------------------------------------------------------- */

/* One (batch, head): q, k, v (T, hs) with row stride ld; o (T, hs) with row stride C. */
static void attention_head_forward(float *o, float *l, const float *q, const float *k, const float *v, float *ST,
                                   int T, int C, int hs, int ld, float scale) {
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int nq = T - i0 < QB ? T - i0 : QB, kend = i0 + nq;
        scores_t(ST, q + (size_t)i0 * ld, ld, k, ld, i0, nq, kend, hs, scale);
        // lane r (query i0 + r) sees keys j <= i0 + r: all of j < i0, a triangle after
        float mx[QB], sum[QB], inv[QB];
#pragma omp simd
        for (int r = 0; r < QB; r++) mx[r] = -INFINITY;
        for (int j = 0; j < kend; j++) {
            const float *s = ST + (size_t)j * QB;
            const int rmin = j - i0; // lanes r >= rmin see key j
#pragma omp simd
            for (int r = 0; r < QB; r++) mx[r] = r >= rmin && s[r] > mx[r] ? s[r] : mx[r];
        }
#pragma omp simd
        for (int r = 0; r < QB; r++) sum[r] = 0.0f;
        for (int j = 0; j < kend; j++) {
            float *s = ST + (size_t)j * QB;
            const int rmin = j - i0;
#pragma omp simd
            for (int r = 0; r < QB; r++) {
                const float e = r >= rmin ? kexp(s[r] - mx[r]) : 0.0f; // the future is masked
                s[r] = e;
                sum[r] += e;
            }
        }
        for (int r = 0; r < nq; r++) {
            inv[r] = 1.0f / sum[r];
            l[i0 + r] = mx[r] + logf(sum[r]);
        }
        // o[i0 + r, :] = inv[r] * sum_j ST[j, r] v[j, :]
        rank_rows(o + (size_t)i0 * C, (size_t)C, ST, 1, QB, nq, kend, v, (size_t)ld, hs, inv, 1.0f, 0, MASK_KEYS_AFTER,
                  i0);
    }
}

/* Scratch slices for nth threads: slice 0 is the caller's, the others come from one
 * allocation (returned in *extra, to be freed). Returns the thread count to use: 1 if
 * threading does not pay or the allocation failed. */
static int attention_threads(size_t per, int pairs, double flops, float **extra) {
    *extra = NULL;
    int nth = kthreads();
    if (nth > pairs) nth = pairs;
    if (nth <= 1 || flops < 4e6) return 1;
    /* not zeroed (tpar_calloc_aligned would clear it on one thread, every call): each
     * scratch entry is written before it is read */
    size_t bytes;
    if (tpar_mul_size((size_t)(nth - 1) * sizeof(float), per, &bytes) != 0 || bytes > SIZE_MAX - 63) return 1;
    *extra = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return *extra ? nth : 1;
}

void tpar_attention_forward(float *out, float *lse, const float *qkv, float *scratch, int B, int T, int C,
                            int NH) {
    const int hs = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t per = tpar_attention_scratch_floats(T);
    float *extra;
    const int nth = attention_threads(per, B * NH, 2.0 * B * NH * (double)T * T * hs, &extra);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        const int tid = kthread_id();
        float *ST = tid == 0 ? scratch : extra + (size_t)(tid - 1) * per; // (T, QB)
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs; // (T, hs) with stride 3C
            float *o = out + (size_t)b * T * C + (size_t)h * hs;        // (T, hs) with stride C
            float *l = lse + (size_t)bh * T;                            // (T)
            attention_head_forward(o, l, q, q + C, q + 2 * C, ST, T, C, hs, ld, scale);
        }
    }
    free(extra);
}

/* ---- backward ------------------------------------------------------------------------------ */

static void attention_head_backward(float *dq, float *dk, float *dv, const float *dO, const float *q, const float *k,
                                    const float *v, const float *o, const float *l, float *PT, float *dST, float *D,
                                    int T, int C, int hs, int ld, float scale) {
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int nq = T - i0 < QB ? T - i0 : QB, kend = i0 + nq;
        const float *qb = q + (size_t)i0 * ld, *dOb = dO + (size_t)i0 * C;
        // PT (kend, QB) = exp(scale q k^T - lse)^T, recomputed exactly as in forward
        scores_t(PT, qb, ld, k, ld, i0, nq, kend, hs, scale);
        // dST (kend, QB) = (dO v^T)^T: dP, for now
        scores_t(dST, dOb, C, v, ld, i0, nq, kend, hs, 1.0f);
        float li[QB];
        for (int r = 0; r < QB; r++) {
            li[r] = r < nq ? l[i0 + r] : 0.0f;
            float d = 0.0f; // D = sum_j P_j dP_j = dO . O
            if (r < nq) {
                const float *orow = o + (size_t)(i0 + r) * C, *drow = dOb + (size_t)r * C;
#pragma omp simd reduction(+ : d)
                for (int c = 0; c < hs; c++) d += drow[c] * orow[c];
            }
            D[r] = d;
        }
        for (int j = 0; j < kend; j++) {
            float *p = PT + (size_t)j * QB, *ds = dST + (size_t)j * QB;
            const int rmin = j - i0; // lanes r >= rmin see key j; lanes r >= nq are no query
#pragma omp simd
            for (int r = 0; r < QB; r++) {
                const int live = r >= rmin && r < nq;
                const float pj = live ? kexp(p[r] - li[r]) : 0.0f;
                p[r] = pj;
                ds[r] = live ? pj * (ds[r] - D[r]) : 0.0f; // d loss / d (scaled score); masked: exactly 0
            }
        }
        // dv[0 : kend] (kend, hs) += P^T (kend, nq) @ dO (nq, hs)
        rank_rows(dv, (size_t)ld, PT, QB, 1, kend, nq, dOb, (size_t)C, hs, NULL, 1.0f, 1, MASK_QUERIES_BEFORE, i0);
        // dq[i0 : i0+nq] (nq, hs) += scale * dS (nq, kend) @ k (kend, hs)
        rank_rows(dq + (size_t)i0 * ld, (size_t)ld, dST, 1, QB, nq, kend, k, (size_t)ld, hs, NULL, scale, 1,
                  MASK_KEYS_AFTER, i0);
        // dk[0 : kend] (kend, hs) += scale * dS^T (kend, nq) @ q (nq, hs)
        rank_rows(dk, (size_t)ld, dST, QB, 1, kend, nq, qb, (size_t)ld, hs, NULL, scale, 1, MASK_QUERIES_BEFORE, i0);
    }
}

void tpar_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                             float *scratch, int B, int T, int C, int NH) {
    const int hs = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t per = tpar_attention_scratch_floats(T);
    float *extra;
    const int nth = attention_threads(per, B * NH, 5.0 * B * NH * (double)T * T * hs, &extra);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        const int tid = kthread_id();
        float *PT = tid == 0 ? scratch : extra + (size_t)(tid - 1) * per; // (T, QB)
        float *dST = PT + (size_t)QB * T;                                // (T, QB)
        float *D = PT + (size_t)2 * QB * T;                              // (QB)
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t qoff = (size_t)b * T * ld + (size_t)h * hs, ooff = (size_t)b * T * C + (size_t)h * hs;
            const float *q = qkv + qoff;   // (T, hs) stride 3C, k and v follow at + C, + 2C
            float *dq = dqkv + qoff;       // (T, hs) stride 3C, likewise
            attention_head_backward(dq, dq + C, dq + 2 * C, dout + ooff, q, q + C, q + 2 * C, out + ooff,
                                    lse + (size_t)bh * T, PT, dST, D, T, C, hs, ld, scale);
        }
    }
    free(extra);
}
