/* Reference kernels (see kernels_ref.h): the plainest loops that compute each formula. */
#include "kernels_ref.h"

#include <math.h>
#include <stdlib.h>

#include "tpar/kernels.h"

static double *ref_alloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort(); /* test-only code */
    return p;
}

void tpar_ref_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc, double *absbound) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0, sa = 0.0;
            for (int k = 0; k < K; k++) {
                double a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
                sa += fabs(a * b);
            }
            float *c = &C[(size_t)i * ldc + j];
            double cold = beta != 0.0f ? (double)*c : 0.0; // beta 0: C is not read (it may be NaN)
            if (absbound) absbound[(size_t)i * N + j] = fabs((double)alpha) * sa + fabs((double)beta * cold);
            *c = (float)((double)alpha * s + (double)beta * cold);
        }
}

void tpar_ref_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                             int OC) {
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) s += (double)inp[(size_t)i * C + c] * weight[(size_t)o * C + c];
            out[(size_t)i * OC + o] = (float)s;
        }
}

void tpar_ref_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, int N, int C, int OC) {
    if (dinp)
        for (int i = 0; i < N; i++)
            for (int c = 0; c < C; c++) {
                double s = 0.0;
                for (int o = 0; o < OC; o++) s += (double)dout[(size_t)i * OC + o] * weight[(size_t)o * C + c];
                dinp[(size_t)i * C + c] += (float)s;
            }
    if (dweight)
        for (int o = 0; o < OC; o++)
            for (int c = 0; c < C; c++) {
                double s = 0.0;
                for (int i = 0; i < N; i++) s += (double)dout[(size_t)i * OC + o] * inp[(size_t)i * C + c];
                dweight[(size_t)o * C + c] += (float)s;
            }
    if (dbias)
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int i = 0; i < N; i++) s += dout[(size_t)i * OC + o];
            dbias[o] += (float)s;
        }
}

static void ref_moments(const float *x, int C, double *mean, double *rstd) {
    double m = 0.0, v = 0.0;
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    *mean = m;
    *rstd = 1.0 / sqrt(v / C + 1e-5);
}

void tpar_ref_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                const float *bias, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        double m, s;
        ref_moments(x, C, &m, &s);
        for (int c = 0; c < C; c++) out[(size_t)i * C + c] = (float)((x[c] - m) * s * weight[c] + bias[c]);
        mean[i] = (float)m;
        rstd[i] = (float)s;
    }
}

/* y = (x - m) s w + b; dx = s (g - mean(g) - xhat mean(g xhat)) with g = w dy */
void tpar_ref_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                 const float *weight, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *dy = dout + (size_t)i * C;
        double m, s, gm = 0.0, gx = 0.0;
        ref_moments(x, C, &m, &s);
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - m) * s, g = (double)weight[c] * dy[c];
            gm += g;
            gx += g * xhat;
            if (dweight) dweight[c] += (float)(xhat * dy[c]);
            if (dbias) dbias[c] += dy[c];
        }
        gm /= C;
        gx /= C;
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - m) * s, g = (double)weight[c] * dy[c];
            dinp[(size_t)i * C + c] += (float)(s * (g - gm - xhat * gx));
        }
    }
}

static const double ref_k = 0.79788456080286535588; /* sqrt(2/pi) */

void tpar_ref_gelu_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + tanh(ref_k * (x + 0.044715 * x * x * x))));
    }
}

void tpar_ref_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i], u = ref_k * (x + 0.044715 * x * x * x), t = tanh(u), sech = 1.0 / cosh(u);
        double grad = 0.5 * (1.0 + t) + 0.5 * x * sech * sech * ref_k * (1.0 + 3.0 * 0.044715 * x * x);
        dinp[i] += (float)(dout[i] * grad);
    }
}

static double ref_keep(size_t i, float p, uint64_t seed, uint64_t offset) {
    if (!(p > 0.0f)) return 1.0;
    if (p >= 1.0f) return 0.0;
    uint32_t thr = (uint32_t)((double)p * 4294967296.0);
    return tpar_rng_u32(seed, offset + i) >= thr ? 1.0 / (1.0 - (double)p) : 0.0;
}

void tpar_ref_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint64_t offset) {
    for (size_t i = 0; i < n; i++) out[i] = (float)(inp[i] * ref_keep(i, p, seed, offset));
}

void tpar_ref_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint64_t offset) {
    for (size_t i = 0; i < n; i++) dinp[i] += (float)(dout[i] * ref_keep(i, p, seed, offset));
}

void tpar_ref_softmax_forward(float *out, const float *inp, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        double mx = x[0], sum = 0.0;
        for (int c = 1; c < C; c++) mx = x[c] > mx ? x[c] : mx;
        for (int c = 0; c < C; c++) sum += exp(x[c] - mx);
        for (int c = 0; c < C; c++) out[(size_t)i * C + c] = (float)(exp(x[c] - mx) / sum);
    }
}

void tpar_ref_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *dy = dout + (size_t)i * C, *y = out + (size_t)i * C;
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += (double)dy[c] * y[c];
        for (int c = 0; c < C; c++) dinp[(size_t)i * C + c] += (float)(y[c] * (dy[c] - dot));
    }
}

/* p[j] = softmax_j (q_i . k_j / sqrt(hs)) over j <= i, in double */
static void ref_att_row(double *p, const float *qkv, int b, int i, int h, int T, int C, int NH) {
    const int hs = C / NH;
    const float *q = qkv + ((size_t)b * T + i) * 3 * C + (size_t)h * hs;
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j <= i; j++) {
        const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * hs;
        double s = 0.0;
        for (int c = 0; c < hs; c++) s += (double)q[c] * k[c];
        p[j] = s / sqrt((double)hs);
        mx = p[j] > mx ? p[j] : mx;
    }
    for (int j = 0; j <= i; j++) sum += (p[j] = exp(p[j] - mx));
    for (int j = 0; j <= i; j++) p[j] /= sum;
}

void tpar_ref_attention_forward(float *out, const float *qkv, int B, int T, int C, int NH) {
    const int hs = C / NH;
    double *p = ref_alloc((size_t)T);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int h = 0; h < NH; h++) {
                ref_att_row(p, qkv, b, i, h, T, C, NH);
                for (int c = 0; c < hs; c++) {
                    double s = 0.0;
                    for (int j = 0; j <= i; j++) s += p[j] * qkv[((size_t)b * T + j) * 3 * C + 2 * C + (size_t)h * hs + c];
                    out[((size_t)b * T + i) * C + (size_t)h * hs + c] = (float)s;
                }
            }
    free(p);
}

/* Per query row: dp_j = dout . v_j; ds_j = p_j (dp_j - sum_k p_k dp_k);
 * dq += sum_j ds_j k_j / sqrt(hs); dk_j += ds_j q / sqrt(hs); dv_j += p_j dout. */
void tpar_ref_attention_backward(float *dqkv, const float *dout, const float *qkv, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const double scale = 1.0 / sqrt((double)hs);
    double *p = ref_alloc((size_t)T), *dp = ref_alloc((size_t)T);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int h = 0; h < NH; h++) {
                ref_att_row(p, qkv, b, i, h, T, C, NH);
                const float *dy = dout + ((size_t)b * T + i) * C + (size_t)h * hs;
                const float *q = qkv + ((size_t)b * T + i) * 3 * C + (size_t)h * hs;
                float *dq = dqkv + ((size_t)b * T + i) * 3 * C + (size_t)h * hs;
                double dot = 0.0;
                for (int j = 0; j <= i; j++) {
                    const float *v = qkv + ((size_t)b * T + j) * 3 * C + 2 * C + (size_t)h * hs;
                    dp[j] = 0.0;
                    for (int c = 0; c < hs; c++) dp[j] += (double)dy[c] * v[c];
                    dot += p[j] * dp[j];
                }
                for (int j = 0; j <= i; j++) {
                    const double ds = p[j] * (dp[j] - dot) * scale;
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * hs;
                    float *dk = dqkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * hs;
                    float *dv = dk + C;
                    for (int c = 0; c < hs; c++) {
                        dq[c] += (float)(ds * k[c]);
                        dk[c] += (float)(ds * q[c]);
                        dv[c] += (float)(p[j] * dy[c]);
                    }
                }
            }
    free(p);
    free(dp);
}

void tpar_ref_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B, int T,
                                int C, int v0, int Vl) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int tok = tokens[(size_t)b * T + t];
            const int mine = tok >= v0 && tok < v0 + Vl;
            for (int c = 0; c < C; c++) {
                double e = mine ? wte[(size_t)(tok - v0) * C + c] : 0.0;
                if (wpe) e += wpe[(size_t)t * C + c];
                out[((size_t)b * T + t) * C + c] = (float)e;
            }
        }
}

void tpar_ref_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T,
                                 int C, int v0, int Vl) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int tok = tokens[(size_t)b * T + t];
            for (int c = 0; c < C; c++) {
                const float d = dout[((size_t)b * T + t) * C + c];
                if (dwte && tok >= v0 && tok < v0 + Vl) dwte[(size_t)(tok - v0) * C + c] += d;
                if (dwpe) dwpe[(size_t)t * C + c] += d;
            }
        }
}

int tpar_ref_xent(float *loss, float *dlogits, const float *logits, const int *targets, int N, int V, int Vp,
                  int ignore_index, float dloss) {
    int n = 0;
    for (int i = 0; i < N; i++) n += targets[i] != ignore_index;
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp;
        const int t = targets[i];
        double mx = x[0], sum = 0.0;
        for (int j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < V; j++) sum += exp(x[j] - mx);
        if (t != ignore_index) total += log(sum) + mx - x[t];
        if (!dlogits) continue;
        for (int j = 0; j < Vp; j++) {
            double g = 0.0;
            if (t != ignore_index && j < V) g = (exp(x[j] - mx) / sum - (j == t)) * dloss / n;
            dlogits[(size_t)i * Vp + j] = (float)g;
        }
    }
    *loss = n ? (float)(total / n) : 0.0f;
    return n;
}

void tpar_ref_softmax_stats(float *mx, float *sumexp, const float *x, int N, int n, int ld) {
    for (int i = 0; i < N; i++) {
        const float *r = x + (size_t)i * ld;
        double m = -INFINITY, sum = 0.0;
        for (int j = 0; j < n; j++) m = r[j] > m ? r[j] : m;
        for (int j = 0; j < n; j++) sum += exp(r[j] - m);
        mx[i] = (float)m;
        sumexp[i] = (float)sum;
    }
}

void tpar_ref_xent_dlogits(float *dlogits, const float *x, const float *lse, const int *targets, int N, int n, int ld,
                           int t0, int ignore_index, float scale) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < ld; j++) {
            double g = 0.0;
            if (targets[i] != ignore_index && j < n)
                g = scale * (exp((double)x[(size_t)i * ld + j] - lse[i]) - (targets[i] - t0 == j));
            dlogits[(size_t)i * ld + j] = (float)g;
        }
}

void tpar_ref_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                           float beta2, float eps, float weight_decay, long t) {
    for (size_t i = 0; i < n; i++) {
        double g = grads[i];
        double mi = beta1 * (double)m[i] + (1.0 - beta1) * g;
        double vi = beta2 * (double)v[i] + (1.0 - beta2) * g * g;
        double mhat = mi / (1.0 - pow(beta1, (double)t)), vhat = vi / (1.0 - pow(beta2, (double)t));
        m[i] = (float)mi;
        v[i] = (float)vi;
        params[i] = (float)(params[i] - lr * (mhat / (sqrt(vhat) + eps) + weight_decay * params[i]));
    }
}
