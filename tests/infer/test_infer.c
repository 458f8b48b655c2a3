/* Tensor-parallel inference over the whole world as one TP group (run at TP 1, 2, 4), against
 * the same model on one rank built in the same process without a communicator, whose logits
 * come from the model's full forward over the whole sequence (no cache: an independent
 * reference):
 *   - prefill and every KV-cache decode step give the logits of the full forward over the
 *     sequence so far (float32 sums in other orders and GEMM shapes: rtol 1e-4, atol 1e-4;
 *     observed differences are ~1e-6); prefill computes the head for its last row only
 *     (tpar_gpt2_forward_rows), and without logits none, the cache filled all the same;
 *   - decode logits are bitwise the same with 1 and 2 OpenMP threads per rank, on a model wide
 *     enough (C = 256) that the small-M kernel splits its matmuls over the threads;
 *   - tpar_gpt2_forward_rows on the TP model gives the reference's full-forward logits of the
 *     selected rows (any order, repeats; same tolerance), and refuses bad rows, a backward
 *     after it and sequence parallelism;
 *   - greedy generation past the context length (the window slides 4 times) gives exactly the
 *     reference's tokens, the reference sliding by the same rule; so TP 1, 2 and 4 agree;
 *   - sampling (temperature, top-k) with a fixed seed gives the reference's tokens and the same
 *     tokens when run again; the sampler alone follows softmax(logits / T) (counts of 20000
 *     draws within 5 sigma) and never draws outside the top k;
 *   - weights saved by the TP ranks load through tpar_infer_load_model and generate the same;
 *   - bad inputs (empty or too long prompt, ids outside the vocabulary, a full cache, bad
 *     sampling settings, missing or empty checkpoint directories) give errors saying what. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "tpar/infer.h"
#include "tpar/kernels.h"

#define MUST(call) CHECK_MUST(call, err)

static tpar_err_t err;
static const tpar_gpt2_config_t cfg = {.n_layer = 2, .n_head = 4, .n_embd = 32, .vocab_size = 72, .n_positions = 16};
enum { V = 72, NPOS = 16, PROMPT = 5, K = 40 };

/* Logits (V) after the last of the n tokens, by a full forward of the reference. */
static void ref_logits(tpar_gpt2_t *ref, const int *tok, int n, float *out) {
    MUST(tpar_gpt2_forward(ref, tok, NULL, 1, n, 0, NULL, &err));
    MUST(tpar_gpt2_logits_row(ref, n - 1, out, &err));
}

/* Generation without a cache: the whole window again for every token; when the window was
 * full (NPOS tokens) before the new token, it restarts from the last NPOS/2 tokens. */
static int ref_generate(tpar_gpt2_t *ref, const int *prompt, int n, int k, const tpar_sampler_t *sp, int *out) {
    int hist[PROMPT + K], len = n, start = 0, slides = 0;
    float logits[V], work[V];
    memcpy(hist, prompt, (size_t)n * sizeof(int));
    ref_logits(ref, hist, n, logits);
    for (int i = 0; i < k; i++) {
        out[i] = hist[len++] = tpar_sample(sp, logits, V, (uint64_t)i, work);
        if (i == k - 1) break;
        if (len - 1 - start == NPOS) start = len - NPOS / 2, slides++;
        ref_logits(ref, hist + start, len - start, logits);
    }
    return slides;
}

/* Token sequences equal; says where they first differ. */
static void check_same_tokens(const char *what, const int *want, const int *got, int n) {
    int i = 0;
    while (i < n && want[i] == got[i]) i++;
    if (!CHECK(i == n)) fprintf(stderr, "  %s: first difference at token %d: %d expected, got %d\n", what, i, want[i], got[i]);
}

static void check_decode(tpar_infer_t *s, tpar_gpt2_t *ref) {
    int seq[NPOS];
    float got[V], want[V];
    for (int i = 0; i < NPOS; i++) seq[i] = (i * 29 + 3) % V;
    MUST(tpar_infer_prefill(s, seq, PROMPT, got, &err));
    ref_logits(ref, seq, PROMPT, want);
    CHECK_CLOSE_F32("prefill logits", want, got, V, 1e-4, 1e-4);
    CHECK_EQ_INT(PROMPT, s->pos);
    for (int t = PROMPT; t < NPOS; t++) { // every position up to a full cache
        MUST(tpar_infer_decode(s, seq[t], got, &err));
        ref_logits(ref, seq, t + 1, want);
        char name[64];
        snprintf(name, sizeof name, "decode logits at position %d", t);
        CHECK_CLOSE_F32(name, want, got, V, 1e-4, 1e-4);
    }
    // Prefill without logits (no head at all) fills the same cache: the next step's logits agree.
    MUST(tpar_infer_prefill(s, seq, PROMPT, NULL, &err));
    MUST(tpar_infer_decode(s, seq[PROMPT], got, &err));
    ref_logits(ref, seq, PROMPT + 1, want);
    CHECK_CLOSE_F32("decode logits after a prefill without logits", want, got, V, 1e-4, 1e-4);
    for (int t = PROMPT + 1; t < NPOS; t++) MUST(tpar_infer_decode(s, seq[t], NULL, &err));
    // the cache is full now
    tpar_err_t e = {0};
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_infer_decode(s, 1, got, &e));
    CHECK_STR_CONTAINS(e.msg, "KV cache is full (16 tokens)");
}

/* The model's forward of selected rows against the reference's full forward. */
static void check_forward_rows(tpar_gpt2_t *m, tpar_gpt2_t *ref) {
    enum { T = 11, NR = 4 };
    int seq[T], rows[NR] = {T - 1, 0, 6, 0};
    float got[V], want[V];
    for (int i = 0; i < T; i++) seq[i] = (i * 17 + 5) % V;
    MUST(tpar_gpt2_forward_rows(m, seq, 1, T, 0, rows, NR, &err));
    CHECK_EQ_INT(NR, m->n_logits);
    MUST(tpar_gpt2_forward(ref, seq, NULL, 1, T, 0, NULL, &err));
    for (int i = 0; i < NR; i++) {
        MUST(tpar_gpt2_logits_row(m, i, got, &err));
        MUST(tpar_gpt2_logits_row(ref, rows[i], want, &err));
        char name[64];
        snprintf(name, sizeof name, "forward_rows: logits of selected row %d (row %d)", i, rows[i]);
        CHECK_CLOSE_F32(name, want, got, V, 1e-4, 1e-4);
    }
    tpar_err_t e = {0};
    int targets[T] = {0};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gpt2_backward(m, seq, targets, 1.0f, NULL, NULL, &e));
    CHECK_STR_CONTAINS(e.msg, "logits of 4 selected rows of 11");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gpt2_logits_row(m, NR, got, &e)); // only NR rows exist
    int bad_rows[2] = {2, T};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gpt2_forward_rows(m, seq, 1, T, 0, bad_rows, 2, &e));
    CHECK_STR_CONTAINS(e.msg, "rows[1] = 11 is outside [0, B*T = 11)");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gpt2_forward_rows(m, seq, 1, T, 0, rows, T + 1, &e));
    CHECK_STR_CONTAINS(e.msg, "12 rows of the 11");
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_gpt2_forward_rows(m, seq, 1, NPOS + 1, 0, rows, 1, &e));
    MUST(tpar_gpt2_forward_rows(m, seq, 1, T, 0, NULL, 0, &err)); // the trunk alone
    CHECK_EQ_INT(0, m->n_logits);
    int all[T];
    for (int i = 0; i < T; i++) all[i] = i;
    MUST(tpar_gpt2_forward_rows(m, seq, 1, T, 0, all, T, &err)); // every row, but still no backward
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gpt2_backward(m, seq, targets, 1.0f, NULL, NULL, &e));
    if (m->tp.size > 1) { // sequence parallelism: each rank holds only its tokens' hidden states
        tpar_gpt2_t *msp = NULL;
        MUST(tpar_gpt2_new(&cfg, m->tp.comm, 1, NPOS, 1, &msp, &err));
        CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_gpt2_forward_rows(msp, seq, 1, 8, 0, rows, 1, &e));
        CHECK_STR_CONTAINS(e.msg, "not under sequence parallelism");
        tpar_infer_t s2;
        CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_infer_init(&s2, msp, NPOS, &e));
        CHECK_STR_CONTAINS(e.msg, "sequence parallelism");
        tpar_gpt2_free(msp);
    }
}

/* Prefill then decode steps at t threads per rank: the logits of every step, bitwise, do not depend on t. */
static void check_threads(tpar_comm_t *world) {
    const tpar_gpt2_config_t wide = {.n_layer = 1, .n_head = 4, .n_embd = 256, .vocab_size = 300, .n_positions = 16};
    enum { STEPS = 4, WV = 300 };
    int tp = tpar_comm_size(world), seq[PROMPT + STEPS];
    for (int i = 0; i < PROMPT + STEPS; i++) seq[i] = (i * 37 + 11) % WV;
    tpar_gpt2_t *w = NULL;
    MUST(tpar_gpt2_new(&wide, tp > 1 ? world : NULL, 1, NPOS, 0, &w, &err));
    tpar_gpt2_init(w, 3);
    tpar_infer_t s;
    MUST(tpar_infer_init(&s, w, NPOS, &err));
    static float got[2][STEPS + 1][WV];
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        MUST(tpar_infer_prefill(&s, seq, PROMPT, got[t][0], &err));
        for (int i = 0; i < STEPS; i++) MUST(tpar_infer_decode(&s, seq[PROMPT + i], got[t][i + 1], &err));
    }
    omp_set_num_threads(saved);
    if (!CHECK(!memcmp(got[0], got[1], sizeof got[0])))
        fprintf(stderr, "  decode logits differ between 1 and 2 threads per rank\n");
    tpar_infer_free(&s);
    tpar_gpt2_free(w);
}

static void check_generate(tpar_infer_t *s, tpar_gpt2_t *ref, const char *what) {
    int prompt[PROMPT] = {10, 20, 30, 40, 50}, got[K], want[K];
    const tpar_sampler_t modes[3] = {{0.0, 0, 0}, {0.9, 0, 5}, {1.3, 8, 11}};
    for (int mi = 0; mi < 3; mi++) {
        tpar_generate_stats_t st;
        MUST(tpar_infer_generate(s, prompt, PROMPT, K, &modes[mi], got, NULL, NULL, &st, &err));
        int slides = ref_generate(ref, prompt, PROMPT, K, &modes[mi], want);
        char name[96];
        snprintf(name, sizeof name, "%s: tokens (temperature %g, top-k %d)", what, modes[mi].temperature,
                 modes[mi].top_k);
        check_same_tokens(name, want, got, K);
        CHECK_EQ_INT(4, slides); // 39 tokens fed after the prompt of 5: 11 fill the window of 16, then it
                                 // keeps 8 and slides every 8 tokens
        CHECK_EQ_INT(slides, st.n_slides);
        CHECK_EQ_INT(K, st.n_generated);
        CHECK(st.ttft_s > 0 && st.tokens_per_s > 0);
        int again[K];
        MUST(tpar_infer_generate(s, prompt, PROMPT, K, &modes[mi], again, NULL, NULL, &st, &err));
        check_same_tokens("the same tokens when run again", got, again, K);
    }
}

/* The sampler alone, on fixed logits. */
static void check_sampler(void) {
    float logits[8] = {0.5f, 2.0f, -1.0f, 1.5f, 2.0f, 0.0f, -3.0f, 1.0f}, work[8];
    tpar_sampler_t greedy = {0.0, 0, 1}, top1 = {1.0, 1, 1}, top3 = {1.0, 3, 2}, warm = {0.7, 0, 3};
    CHECK_EQ_INT(1, tpar_sample(&greedy, logits, 8, 0, work)); // first of the tied maxima
    int t1 = tpar_sample(&top1, logits, 8, 5, work); // top-1 keeps both tied maxima
    CHECK(t1 == 1 || t1 == 4);
    int outside = 0, counts[8] = {0}, n = 20000;
    for (int i = 0; i < n; i++) {
        int t = tpar_sample(&top3, logits, 8, (uint64_t)i, work);
        outside += !(t == 1 || t == 3 || t == 4);
        counts[tpar_sample(&warm, logits, 8, (uint64_t)i, work)]++;
    }
    CHECK_EQ_INT(0, outside);
    double z = 0;
    for (int v = 0; v < 8; v++) z += exp(logits[v] / 0.7);
    for (int v = 0; v < 8; v++) {
        double p = exp(logits[v] / 0.7) / z, sd = sqrt(n * p * (1 - p));
        CHECK_CLOSE(n * p, counts[v], 0, 5 * sd + 1);
    }
    tpar_err_t e = {0};
    tpar_sampler_t bad = {-1.0, 0, 0};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_sampler_check(&bad, &e));
    CHECK_STR_CONTAINS(e.msg, "temperature -1");
    bad = (tpar_sampler_t){NAN, 0, 0};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_sampler_check(&bad, &e));
    bad = (tpar_sampler_t){1.0, -2, 0};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_sampler_check(&bad, &e));
    CHECK_STR_CONTAINS(e.msg, "top-k -2");
}

static void check_bad_inputs(tpar_infer_t *s, tpar_gpt2_t *m) {
    tpar_err_t e = {0};
    int toks[NPOS + 1] = {0}, out[2];
    float logits[V];
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_infer_prefill(s, toks, 0, logits, &e));
    CHECK_STR_CONTAINS(e.msg, "a prompt of 0 tokens does not fit");
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_infer_prefill(s, toks, NPOS + 1, logits, &e));
    CHECK_STR_CONTAINS(e.msg, "a prompt of 17 tokens does not fit the context of 16");
    toks[3] = V;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_infer_prefill(s, toks, 4, logits, &e));
    CHECK_STR_CONTAINS(e.msg, "token 72 at position 3 is outside the vocabulary [0, 72)");
    MUST(tpar_infer_prefill(s, toks, 2, logits, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_infer_decode(s, -1, logits, &e));
    CHECK_EQ_INT(2, s->pos); // a refused token leaves the cache as it was
    tpar_sampler_t sp = {0.0, 0, 0};
    tpar_generate_stats_t st;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_infer_generate(s, toks, 2, 0, &sp, out, NULL, NULL, &st, &e));
    CHECK_STR_CONTAINS(e.msg, "0 tokens requested");
    tpar_infer_t s2;
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_infer_init(&s2, m, NPOS + 1, &e));
    CHECK_STR_CONTAINS(e.msg, "cache of 17 tokens");
    m->cfg.dropout = 0.1f;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_infer_init(&s2, m, NPOS, &e));
    CHECK_STR_CONTAINS(e.msg, "dropout");
    m->cfg.dropout = 0.0f;
    // checkpoints that are not there
    char path[256];
    tpar_gpt2_config_t c;
    tpar_model_source_t src = {.ckpt = "/nonexistent/tpar_ckpt"};
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_infer_resolve(&src, 0, path, sizeof path, &c, NULL, &e));
    CHECK_STR_CONTAINS(e.msg, "checkpoint '/nonexistent/tpar_ckpt' not found");
    src.ckpt = "/";
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_infer_resolve(&src, 0, path, sizeof path, &c, NULL, &e));
    CHECK_STR_CONTAINS(e.msg, "no checkpoint in '/'");
    src = (tpar_model_source_t){.preset = "gpt7"};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_infer_resolve(&src, 0, path, sizeof path, &c, NULL, &e));
    CHECK_STR_CONTAINS(e.msg, "unknown model 'gpt7'");
}

int main(void) {
    tpar_comm_t *world = NULL;
    MUST(tpar_comm_init(NULL, &world, &err));
    MUST(tpar_blas_set_threads(1, &err));
    int tp = tpar_comm_size(world), rank = tpar_comm_rank(world);
    tpar_gpt2_t *m = NULL, *ref = NULL;
    MUST(tpar_gpt2_new(&cfg, tp > 1 ? world : NULL, 1, NPOS, 0, &m, &err));
    MUST(tpar_gpt2_new(&cfg, NULL, 1, NPOS, 0, &ref, &err));
    tpar_gpt2_init(m, 7); // layout-independent: the same gathered weights as ref
    tpar_gpt2_init(ref, 7);
    // GPT-2's init (std 0.02) gives near-uniform attention, which would hide cache mistakes:
    // weights 4x larger make attention peaked and the logits sensitive to every cached key (a 1%
    // error in the score scale fails the decode checks; 10x would amplify float rounding past them).
    for (size_t i = 0; i < m->num_params; i++) m->params[i] *= 4.0f;
    for (size_t i = 0; i < ref->num_params; i++) ref->params[i] *= 4.0f;
    tpar_infer_t s;
    MUST(tpar_infer_init(&s, m, NPOS, &err));
    check_decode(&s, ref);
    check_forward_rows(m, ref);
    check_threads(world);
    check_generate(&s, ref, "initialised");
    check_bad_inputs(&s, m);
    check_sampler();

    // Weights saved by the TP ranks (each its slices) and loaded back for inference.
    int64_t id = getpid();
    MUST(tpar_comm_broadcast(world, &id, 1, TPAR_I64, 0));
    char path[128];
    snprintf(path, sizeof path, "/tmp/tpar_test_infer_%lld.safetensors", (long long)id);
    const float *bufs[1] = {m->params};
    const char *suffix[1] = {""};
    MUST(tpar_gpt2_save(m, 1, bufs, suffix, path, world, 1, &err));
    tpar_infer_free(&s);
    tpar_gpt2_free(m);
    tpar_model_source_t src = {.ckpt = path};
    MUST(tpar_infer_load_model(&src, tp > 1 ? world : NULL, NPOS, &m, NULL, &err));
    MUST(tpar_infer_init(&s, m, NPOS, &err));
    check_generate(&s, ref, "loaded");
    MUST(tpar_comm_barrier(world));
    if (rank == 0) unlink(path);

    tpar_infer_free(&s);
    tpar_infer_free(&s); // twice is fine
    tpar_gpt2_free(m);
    tpar_gpt2_free(ref);
    tpar_comm_free(world);
    return check_finish("test_infer");
}
