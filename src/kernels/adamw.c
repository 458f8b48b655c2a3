/* AdamW (Loshchilov & Hutter): Adam moments with bias correction, weight decay decoupled
 * from the gradient. */
#include <math.h>

#include "kmath.h"
#include "tpar/kernels.h"

tpar_status tpar_adamw_update(float *params, const float *grads, float *m, float *v, size_t n,
                              const tpar_adamw_t *cfg, long t, tpar_err_t *err) {
    if (!cfg) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "adamw: no settings given");
    /* written as !(ok) so that NaN settings are rejected too */
    if (!(cfg->lr >= 0.0f && isfinite(cfg->lr)) || !(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f) ||
        !(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f) || !(cfg->eps > 0.0f && isfinite(cfg->eps)) ||
        !(cfg->weight_decay >= 0.0f && isfinite(cfg->weight_decay)))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "adamw: settings out of range (lr %g >= 0, beta1 %g and beta2 %g in [0, 1), eps %g > 0, "
                            "weight_decay %g >= 0)",
                            (double)cfg->lr, (double)cfg->beta1, (double)cfg->beta2, (double)cfg->eps,
                            (double)cfg->weight_decay);
    if (t < 1) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "adamw: step %ld; steps count from 1", t);
    const float b1 = cfg->beta1, b2 = cfg->beta2, lr = cfg->lr, eps = cfg->eps, wd = cfg->weight_decay;
    /* bias corrections in double: b^t for large t underflows gracefully to 0 */
    const float c1 = (float)(1.0 / (1.0 - pow(b1, (double)t)));
    const float c2 = (float)(1.0 / (1.0 - pow(b2, (double)t)));
    /* fixed blocks shared among threads: the same vector/scalar split whatever the count */
    enum { KBLK = 4096 };
    const size_t nblk = (n + KBLK - 1) / KBLK;
#pragma omp parallel for schedule(static) if (n >= KPAR_MIN && kthreads() > 1)
    for (size_t blk = 0; blk < nblk; blk++) {
        const size_t lo = blk * KBLK, hi = n - lo < KBLK ? n : lo + KBLK;
#pragma omp simd
        for (size_t i = lo; i < hi; i++) {
            const float g = grads[i];
            const float mi = b1 * m[i] + (1.0f - b1) * g;
            const float vi = b2 * v[i] + (1.0f - b2) * g * g;
            m[i] = mi;
            v[i] = vi;
            params[i] -= lr * (mi * c1 / (sqrtf(vi * c2) + eps) + wd * params[i]);
        }
    }
    return TPAR_OK;
}
