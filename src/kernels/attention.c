/* Causal self-attention per head, in blocks of query rows.
 *
 * For a block of QB query rows, the scaled scores against every key the block can see
 * (keys 0 .. end of block) go into scratch as a (QB, kend) matrix through one sgemm; each
 * row is then softmaxed exactly (the whole causal row is there, so no online rescaling is
 * needed) and multiplied by V with a second sgemm. Memory is O(QB * T) for any T, not
 * O(T^2); the only thing saved for backward is the log-sum-exp of each row, from which
 * backward recomputes the probabilities exactly (FlashAttention's trick, with GEMM tiles
 * that OpenBLAS runs near its peak). q, k, v are read in place from the (B, T, 3C) buffer
 * with leading dimension 3C; nothing is copied. */
#include <cblas.h>
#include <math.h>

#include "kmath.h"
#include "tpar/kernels.h"

enum { QB = TPAR_ATTENTION_BLOCK }; /* (QB, T) scores stay in L2 for T up to ~2k */

size_t tpar_attention_scratch_floats(int T) {
    /* scores/probabilities (QB, T), their gradient (QB, T), and D (QB) */
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

/* Rows r of a (nq, kend) score block hold query i0 + r; keys j > i0 + r are masked. */
static inline int row_len(int i0, int r) { return i0 + r + 1; }

void tpar_attention_forward(float *out, float *lse, const float *qkv, float *scratch, int B, int T, int C,
                            int NH) {
    const int hs = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    float *S = scratch; // (QB, T)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs; // (T, hs) with stride 3C
            const float *k = q + C;
            const float *v = q + 2 * C;
            float *o = out + (size_t)b * T * C + (size_t)h * hs; // (T, hs) with stride C
            float *l = lse + ((size_t)b * NH + h) * T;            // (T)
            for (int i0 = 0; i0 < T; i0 += QB) {
                const int nq = T - i0 < QB ? T - i0 : QB, kend = i0 + nq;
                // S (nq, kend) = scale * q[i0 : i0+nq] @ k[0 : kend]^T
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kend, hs, scale, q + (size_t)i0 * ld, ld,
                            k, ld, 0.0f, S, kend);
                for (int r = 0; r < nq; r++) {
                    float *s = S + (size_t)r * kend;
                    const int n = row_len(i0, r);
                    const float mx = kmax_row(s, n);
                    const float sum = kexp_row(s, s, n, mx);
                    kscale_row(s, n, 1.0f / sum);
                    for (int j = n; j < kend; j++) s[j] = 0.0f; // the future is masked
                    l[i0 + r] = mx + logf(sum);
                }
                // o[i0 : i0+nq] (nq, hs) = P (nq, kend) @ v[0 : kend] (kend, hs)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, kend, 1.0f, S, kend, v, ld, 0.0f,
                            o + (size_t)i0 * C, C);
            }
        }
    }
}

void tpar_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                             float *scratch, int B, int T, int C, int NH) {
    const int hs = C / NH, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    float *P = scratch;                        // (QB, T)
    float *dS = scratch + (size_t)QB * T;      // (QB, T)
    float *D = scratch + (size_t)2 * QB * T;   // (QB)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t qoff = (size_t)b * T * ld + (size_t)h * hs, ooff = (size_t)b * T * C + (size_t)h * hs;
            const float *q = qkv + qoff, *k = q + C, *v = q + 2 * C; // (T, hs) stride 3C
            float *dq = dqkv + qoff, *dk = dq + C, *dv = dq + 2 * C;   // (T, hs) stride 3C
            const float *o = out + ooff, *dO = dout + ooff;           // (T, hs) stride C
            const float *l = lse + ((size_t)b * NH + h) * T;          // (T)
            for (int i0 = 0; i0 < T; i0 += QB) {
                const int nq = T - i0 < QB ? T - i0 : QB, kend = i0 + nq;
                const float *qb = q + (size_t)i0 * ld, *dOb = dO + (size_t)i0 * C;
                // P (nq, kend) = exp(scale * q k^T - lse), recomputed exactly as in forward
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kend, hs, scale, qb, ld, k, ld, 0.0f, P,
                            kend);
                // dP (nq, kend) = dO (nq, hs) @ v^T (hs, kend)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kend, hs, 1.0f, dOb, C, v, ld, 0.0f, dS,
                            kend);
                for (int r = 0; r < nq; r++) {
                    const float *orow = o + (size_t)(i0 + r) * C, *drow = dOb + (size_t)r * C;
                    float d = 0.0f; // D = sum_j P_j dP_j = dO . O
#pragma omp simd reduction(+ : d)
                    for (int c = 0; c < hs; c++) d += drow[c] * orow[c];
                    D[r] = d;
                }
                for (int r = 0; r < nq; r++) {
                    float *p = P + (size_t)r * kend, *ds = dS + (size_t)r * kend;
                    const int n = row_len(i0, r);
                    const float li = l[i0 + r], dr = D[r];
#pragma omp simd
                    for (int j = 0; j < n; j++) {
                        float pj = kexp(p[j] - li);
                        p[j] = pj;
                        ds[j] = pj * (ds[j] - dr); // d loss / d (scaled score)
                    }
                    for (int j = n; j < kend; j++) {
                        p[j] = 0.0f;
                        ds[j] = 0.0f;
                    }
                }
                // dv[0 : kend] (kend, hs) += P^T (kend, nq) @ dO (nq, hs)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, hs, nq, 1.0f, P, kend, dOb, C, 1.0f, dv,
                            ld);
                // dq[i0 : i0+nq] (nq, hs) += scale * dS (nq, kend) @ k (kend, hs)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, kend, scale, dS, kend, k, ld, 1.0f,
                            dq + (size_t)i0 * ld, ld);
                // dk[0 : kend] (kend, hs) += scale * dS^T (kend, nq) @ q (nq, hs)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, hs, nq, scale, dS, kend, qb, ld, 1.0f, dk,
                            ld);
            }
        }
    }
}
