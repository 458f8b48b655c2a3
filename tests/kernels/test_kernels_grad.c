/* Every backward kernel against central finite differences of its own forward.
 *
 * Each kernel's output is contracted with a fixed random tensor r into a scalar loss
 * L = sum r * out, accumulated in double; backward run with dout = r on zeroed
 * gradients must then give dL/dx, which we compare with (L(x + h) - L(x - h)) / 2h
 * element by element, h being the exact float step around x.
 *
 * Step and tolerance: h ~ 1e-2 on inputs of size ~1. The forward is float32, so each
 * output the perturbation touches carries a rounding error ~6e-8 |out|; over the <= ~100
 * outputs one input reaches, that is ~1e-6 in L, i.e. ~5e-5 in the difference quotient.
 * The truncation error h^2/6 |f'''| is ~2e-5 for these smooth functions (0 for the
 * linear ones). Hence |fd - grad| <= 1e-3 (|grad| + rms(grad)): ten times above that
 * noise, and far below the O(1) error of a wrong formula, a missed term or a wrong
 * index. Precision (rel 1e-5) is the business of test_kernels (fast vs reference). */
#include "ktest.h"

typedef enum {
    K_MATMUL, K_LAYERNORM, K_GELU, K_BIAS_GELU, K_SOFTMAX, K_RESIDUAL, K_DROPOUT, K_BDR, K_ATTENTION,
    K_EMBEDDING, K_XENT
} kernel_t;

typedef struct {
    kernel_t k;
    int N, C, OC, B, T, NH, V, Vp;
    float p;
    float *x, *w, *b, *res; /* inputs (meaning per kernel) */
    int *tok;
    float *out, *r;         /* output and the random contraction */
    float *s1, *s2, *s3;    /* saved tensors / scratch */
    size_t nout;
} fd_ctx;

enum { SEED = 99, OFF = 5 };

/* Runs the kernel's forward into c->out (and its saved tensors) and returns sum r * out. */
static double forward_loss(fd_ctx *c) {
    tpar_err_t err = {0};
    switch (c->k) {
    case K_MATMUL: tpar_matmul_forward(c->out, c->x, c->w, c->b, c->N, c->C, c->OC); break;
    case K_LAYERNORM: tpar_layernorm_forward(c->out, c->s1, c->s2, c->x, c->w, c->b, c->N, c->C); break;
    case K_GELU: tpar_gelu_forward(c->out, c->x, (size_t)c->N * c->C); break;
    case K_BIAS_GELU: tpar_bias_gelu_forward(c->out, c->x, c->b, c->N, c->C); break;
    case K_SOFTMAX: tpar_softmax_forward(c->out, c->x, c->N, c->C); break;
    case K_RESIDUAL: tpar_residual_forward(c->out, c->x, c->res, (size_t)c->N * c->C); break;
    case K_DROPOUT: tpar_dropout_forward(c->out, c->x, (size_t)c->N * c->C, c->p, SEED, OFF); break;
    case K_BDR: tpar_bias_dropout_residual_forward(c->out, c->x, c->b, c->res, c->N, c->C, c->p, SEED, OFF); break;
    case K_ATTENTION: tpar_attention_forward(c->out, c->s1, c->x, c->s2, c->B, c->T, c->C, c->NH); break;
    case K_EMBEDDING:
        CHECK_EQ_INT(TPAR_OK, tpar_embedding_forward(c->out, c->tok, c->w, c->b, c->B, c->T, c->C, c->V, 0, c->V,
                                                     &err));
        break;
    case K_XENT: { /* the loss itself is the output: L = sum of row losses / n_valid */
        float mean;
        int nv = 0;
        CHECK_EQ_INT(TPAR_OK, tpar_xent_forward(&mean, c->out, &nv, c->x, c->tok, c->N, c->V, c->Vp, -1, &err));
        double s = 0.0;
        for (int i = 0; i < c->N; i++) s += c->out[i];
        return nv ? s / nv : 0.0;
    }
    }
    double L = 0.0;
    for (size_t i = 0; i < c->nout; i++) L += (double)c->r[i] * c->out[i];
    return L;
}

/* Compares grad (n) with finite differences of forward_loss with respect to x (n). */
static void fd_check(const char *name, fd_ctx *c, float *x, const float *grad, size_t n) {
    float *fd = kt_zeros(n);
    for (size_t i = 0; i < n; i++) {
        const float x0 = x[i];
        const float xp = x0 + 1e-2f, xm = x0 - 1e-2f;
        x[i] = xp;
        const double lp = forward_loss(c);
        x[i] = xm;
        const double lm = forward_loss(c);
        x[i] = x0;
        fd[i] = (float)((lp - lm) / ((double)xp - (double)xm));
    }
    forward_loss(c); /* leave the saved tensors as they were */
    const double rms = kt_rms(grad, n);
    CHECK_CLOSE_F32(name, fd, grad, n, 1e-3, 1e-3 * (rms > 0 ? rms : 1.0));
}

static fd_ctx make(kernel_t k, int N, int C) {
    fd_ctx c = {.k = k, .N = N, .C = C, .nout = (size_t)N * C};
    c.x = kt_rand((size_t)N * C, -2, 2);
    c.r = kt_rand((size_t)N * C, -1, 1);
    c.out = kt_zeros((size_t)N * C);
    return c;
}

static void grad_matmul(void) {
    fd_ctx c = make(K_MATMUL, 3, 5);
    c.OC = 4;
    c.w = kt_rand(4 * 5, -1, 1), c.b = kt_rand(4, -1, 1);
    c.out = kt_zeros(3 * 4), c.r = kt_rand(3 * 4, -1, 1), c.nout = 12;
    float *dx = kt_zeros(15), *dw = kt_zeros(20), *db = kt_zeros(4);
    tpar_matmul_backward(dx, dw, db, c.r, c.x, c.w, 3, 5, 4);
    fd_check("fd matmul dinp", &c, c.x, dx, 15);
    fd_check("fd matmul dweight", &c, c.w, dw, 20);
    fd_check("fd matmul dbias", &c, c.b, db, 4);
}

static void grad_layernorm(void) {
    const int N = 3, C = 8;
    fd_ctx c = make(K_LAYERNORM, N, C);
    c.w = kt_rand(C, 0.5f, 1.5f), c.b = kt_rand(C, -1, 1), c.s1 = kt_zeros(N), c.s2 = kt_zeros(N);
    forward_loss(&c);
    float *dx = kt_zeros((size_t)N * C), *dw = kt_zeros(C), *db = kt_zeros(C);
    tpar_layernorm_backward(dx, dw, db, c.r, c.x, c.w, c.s1, c.s2, N, C);
    fd_check("fd layernorm dinp", &c, c.x, dx, (size_t)N * C);
    fd_check("fd layernorm dweight", &c, c.w, dw, C);
    fd_check("fd layernorm dbias", &c, c.b, db, C);
}

static void grad_elementwise(void) {
    const int N = 4, C = 10;
    const size_t n = (size_t)N * C;
    fd_ctx g = make(K_GELU, N, C);
    for (size_t i = 0; i < n; i++) g.x[i] = -5.0f + 10.0f * (float)i / (float)n; /* both tails and the bend */
    float *dx = kt_zeros(n);
    tpar_gelu_backward(dx, g.x, g.r, n);
    fd_check("fd gelu dinp", &g, g.x, dx, n);

    fd_ctx bg = make(K_BIAS_GELU, N, C);
    bg.b = kt_rand(C, -1, 1);
    float *dbx = kt_zeros(n), *dbb = kt_zeros(C);
    tpar_bias_gelu_backward(dbx, dbb, bg.x, bg.b, bg.r, N, C);
    fd_check("fd bias_gelu dinp", &bg, bg.x, dbx, n);
    fd_check("fd bias_gelu dbias", &bg, bg.b, dbb, C);

    fd_ctx s = make(K_SOFTMAX, N, C);
    forward_loss(&s);
    float *dsx = kt_zeros(n);
    tpar_softmax_backward(dsx, s.r, s.out, N, C);
    fd_check("fd softmax dinp", &s, s.x, dsx, n);

    fd_ctx r = make(K_RESIDUAL, N, C);
    r.res = kt_rand(n, -1, 1);
    float *da = kt_zeros(n), *db = kt_zeros(n);
    tpar_residual_backward(da, db, r.r, n);
    fd_check("fd residual da", &r, r.x, da, n);
    fd_check("fd residual db", &r, r.res, db, n);

    fd_ctx d = make(K_DROPOUT, N, C);
    d.p = 0.3f;
    float *ddx = kt_zeros(n);
    tpar_dropout_backward(ddx, d.r, n, d.p, SEED, OFF);
    fd_check("fd dropout dinp", &d, d.x, ddx, n);

    fd_ctx f = make(K_BDR, N, C);
    f.p = 0.3f, f.b = kt_rand(C, -1, 1), f.res = kt_rand(n, -1, 1);
    float *fx = kt_zeros(n), *fb = kt_zeros(C), *fr = kt_zeros(n);
    tpar_bias_dropout_residual_backward(fx, fb, fr, f.r, N, C, f.p, SEED, OFF);
    fd_check("fd bias_dropout_residual dinp", &f, f.x, fx, n);
    fd_check("fd bias_dropout_residual dbias", &f, f.b, fb, C);
    fd_check("fd bias_dropout_residual dresidual", &f, f.res, fr, n);
}

static void grad_attention(int B, int T, int C, int NH) {
    fd_ctx c = make(K_ATTENTION, B * T, C);
    c.B = B, c.T = T, c.NH = NH;
    const size_t nqkv = (size_t)B * T * 3 * C;
    c.x = kt_rand(nqkv, -1.5f, 1.5f);
    c.s1 = kt_zeros((size_t)B * NH * T), c.s2 = kt_zeros(tpar_attention_scratch_floats(T));
    forward_loss(&c);
    float *dqkv = kt_zeros(nqkv);
    tpar_attention_backward(dqkv, c.r, c.x, c.out, c.s1, c.s2, B, T, C, NH);
    char name[64];
    snprintf(name, sizeof name, "fd attention dqkv (B=%d T=%d C=%d NH=%d)", B, T, C, NH);
    fd_check(name, &c, c.x, dqkv, nqkv);
}

static void grad_embedding(void) {
    const int B = 2, T = 3, C = 4, V = 5;
    int tok[6] = {1, 4, 1, 0, 3, 1}; /* repeated ids: their gradients add up */
    fd_ctx c = make(K_EMBEDDING, B * T, C);
    c.B = B, c.T = T, c.V = V, c.tok = tok;
    c.w = kt_rand((size_t)V * C, -1, 1), c.b = kt_rand((size_t)T * C, -1, 1);
    float *dwte = kt_zeros((size_t)V * C), *dwpe = kt_zeros((size_t)T * C);
    tpar_embedding_backward(dwte, dwpe, c.r, tok, B, T, C, 0, V);
    fd_check("fd embedding dwte", &c, c.w, dwte, (size_t)V * C);
    fd_check("fd embedding dwpe", &c, c.b, dwpe, (size_t)T * C);
}

static void grad_xent(void) {
    const int N = 4, V = 6, Vp = 8;
    int tok[4] = {2, -1, 5, 0}; /* row 1 ignored */
    fd_ctx c = make(K_XENT, N, Vp);
    c.V = V, c.Vp = Vp, c.tok = tok;
    c.out = kt_zeros(N); /* per-row losses */
    float *dl = kt_zeros((size_t)N * Vp), loss = 0;
    tpar_err_t err = {0};
    CHECK_EQ_INT(TPAR_OK, tpar_xent_forward_backward(&loss, dl, c.x, tok, N, V, Vp, -1, 1.0f, &err));
    fd_check("fd softmax+cross-entropy dlogits", &c, c.x, dl, (size_t)N * Vp);
}

int main(void) {
    kt_seed(7);
    tpar_err_t err = {0};
    tpar_blas_set_threads(1, &err);
    grad_matmul();
    grad_layernorm();
    grad_elementwise();
    grad_attention(2, 7, 8, 2);
    grad_attention(1, 70, 4, 1); /* two query blocks: gradients cross the block boundary */
    grad_embedding();
    grad_xent();
    kt_free_all();
    return check_finish("test_kernels_grad");
}
