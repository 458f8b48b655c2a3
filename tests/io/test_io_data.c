/* Token data: text and binary files (and their validation), the validation split, and the
 * loader: deterministic, resumable from its saved position, DP ranks disjoint. */
#define _XOPEN_SOURCE 700
#include <stdint.h>

#include "check.h"
#include "io_test_util.h"

static char dir[1024];

static void path_of(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

static void test_text(void) {
    char p[1200];
    tpar_err_t err = {0};
    tpar_tokens_t t;
    /* The embedded corpus: every byte a token. */
    CHECK_EQ_INT(TPAR_OK, tpar_tokens_load(TPAR_DATA_DIR "/tinyshakespeare.txt", &t, &err));
    CHECK_EQ_INT(1115394, t.n);
    CHECK_EQ_INT(256, t.vocab);
    CHECK(t.n > 5 && memcmp((int32_t[]){'F', 'i', 'r', 's', 't'}, t.data, 5 * sizeof(int32_t)) == 0);
    tpar_tokens_t tr, va;
    CHECK_EQ_INT(TPAR_OK, tpar_tokens_split(&t, 0.1, &tr, &va, &err));
    CHECK_EQ_INT(111539, va.n); /* floor(1115394 * 0.1) */
    CHECK_EQ_INT(t.n, tr.n + va.n);
    CHECK(va.data == t.data + tr.n && tr.data == t.data && !tr.owned && !va.owned);
    CHECK_STR_CONTAINS(va.source, "tinyshakespeare.txt (validation split)");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_tokens_split(&t, 1.0, &tr, &va, &err));
    tpar_tokens_free(&tr); /* a view: leaves the data alone */
    tpar_tokens_free(&t);

    /* Bytes above 127 are tokens too. */
    path_of(p, sizeof p, "small.txt");
    unsigned char bytes[300];
    for (int i = 0; i < 300; i++) bytes[i] = (unsigned char)(i * 7);
    io_test_write(p, bytes, sizeof bytes);
    CHECK_EQ_INT(TPAR_OK, tpar_tokens_load(p, &t, &err));
    CHECK_EQ_INT(300, t.n);
    int same = t.n == 300;
    for (size_t i = 0; same && i < 300; i++) same = t.data[i] == bytes[i];
    CHECK(same);
    /* Too short for the sequence length: T+1 tokens needed. */
    tpar_loader_t L;
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_loader_init(&L, &t, 1, 300, 0, 1, 1, 1, 1, &err));
    CHECK_STR_CONTAINS(err.msg, "small.txt has 300 tokens; a sequence of 300 needs at least 301");
    CHECK_EQ_INT(TPAR_OK, tpar_loader_init(&L, &t, 1, 299, 0, 1, 1, 1, 1, &err));
    tpar_loader_free(&L);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_loader_init(&L, &t, 1, 8, 2, 2, 1, 1, 1, &err));
    tpar_tokens_free(&t);

    path_of(p, sizeof p, "empty.txt");
    io_test_write(p, "", 0);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_tokens_load(p, &t, &err));
    CHECK_STR_CONTAINS(err.msg, "empty.txt is empty");
    path_of(p, sizeof p, "missing.txt");
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_tokens_load(p, &t, &err));
    CHECK_STR_CONTAINS(err.msg, "cannot open data file");
    CHECK_STR_CONTAINS(err.msg, "missing.txt");
}

static void expect_bin_error(const char *what, const unsigned char *buf, size_t n, const char *needle) {
    char p[1200];
    path_of(p, sizeof p, "bad.tok");
    io_test_write(p, buf, n);
    tpar_err_t err = {0};
    tpar_tokens_t t;
    tpar_status st = tpar_tokens_load(p, &t, &err);
    if (!check_record_(st == TPAR_ERR_CORRUPT, __FILE__, __LINE__, what))
        fprintf(stderr, "  %s: got %s (%s)\n", what, tpar_status_str(st), err.msg);
    CHECK_STR_CONTAINS(err.msg, needle);
    if (st == TPAR_OK) tpar_tokens_free(&t);
}

static void test_binary(void) {
    char p[1200];
    tpar_err_t err = {0};
    int32_t tok[1000];
    for (int i = 0; i < 1000; i++) tok[i] = (i * 7919) % 50257;
    for (int width = 2; width <= 4; width += 2) {
        path_of(p, sizeof p, "ok.tok");
        CHECK_EQ_INT(TPAR_OK, tpar_tokens_write_bin(p, tok, 1000, width, 50257, &err));
        size_t n = 0;
        unsigned char *raw = io_test_read(p, &n);
        CHECK_EQ_INT(24 + 1000 * width, n);
        CHECK(raw && memcmp(raw, "TPTK\1\0\0\0", 8) == 0 && raw[8] == width && raw[12] == (50257 & 0xff) &&
              raw[16] == (1000 & 0xff) && raw[17] == 1000 >> 8);
        tpar_tokens_t t;
        CHECK_EQ_INT(TPAR_OK, tpar_tokens_load(p, &t, &err));
        CHECK_EQ_INT(1000, t.n);
        CHECK_EQ_INT(50257, t.vocab);
        if (t.n == 1000) CHECK_BYTES_EQ("binary tokens round trip", tok, t.data, sizeof tok);
        tpar_tokens_free(&t);
        if (width == 2 && raw) {
            unsigned char bad[24 + 2000 + 1];
            memcpy(bad, raw, n);
            expect_bin_error("truncated tokens", bad, n - 1, "truncated or trailing data");
            bad[n] = 0;
            expect_bin_error("trailing byte", bad, n + 1, "truncated or trailing data");
            expect_bin_error("header cut", bad, 10, "token file header truncated (10 of 24 bytes)");
            bad[4] = 2;
            expect_bin_error("version", bad, n, "token file version 2, expected 1");
            bad[4] = 1;
            bad[8] = 3;
            expect_bin_error("width", bad, n, "token width 3 bytes, expected 2 or 4");
            bad[8] = 2;
            bad[24 + 2 * 17] = 0xff, bad[24 + 2 * 17 + 1] = 0xff; /* token 17 = 65535 >= 50257 */
            expect_bin_error("token outside vocabulary", bad, n, "token 17 is 65535, outside the vocabulary [0, 50257)");
            bad[16] = 0, bad[17] = 0;
            expect_bin_error("count zero", bad, 24, "holds no tokens");
        }
        free(raw);
    }
    path_of(p, sizeof p, "x.tok");
    int32_t big = 70000;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_tokens_write_bin(p, &big, 1, 2, 65536, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_tokens_write_bin(p, &big, 1, 2, 70001, &err));
}

/* Tokens 0..n-1: a window's first input token is its start offset. */
static tpar_tokens_t identity_tokens(size_t n) {
    tpar_tokens_t t = {.data = malloc(n * sizeof(int32_t)), .n = n, .vocab = (int)n, .owned = 1};
    for (size_t i = 0; i < n; i++) t.data[i] = (int32_t)i;
    snprintf(t.source, sizeof t.source, "identity");
    return t;
}

static void test_loader(void) {
    enum { B = 3, T = 8, DP = 4, ACC = 2, STEPS = 6 };
    tpar_tokens_t t = identity_tokens(1001); /* 125 windows */
    tpar_err_t err = {0};
    int32_t x[B * T], y[B * T], x2[B * T], y2[B * T];
    tpar_loader_t L[DP], M;
    for (int r = 0; r < DP; r++) CHECK_EQ_INT(TPAR_OK, tpar_loader_init(&L[r], &t, B, T, r, DP, ACC, 42, 1, &err));
    CHECK_EQ_INT(125, L[0].nwin);

    /* Shape of a batch: contiguous windows starting at multiples of T, targets shifted by one. */
    tpar_loader_batch(&L[0], 0, x, y, &err);
    int ok = 1;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            ok &= x[b * T + i] == x[b * T] + i && y[b * T + i] == x[b * T + i] + 1 && x[b * T] % T == 0;
    CHECK(ok);

    /* Within a step the DP ranks and micro-batches take distinct windows (steps 0-4 lie inside
     * the first epoch: 125 windows, 24 per step; step 5 straddles into the next epoch, whose
     * order is drawn afresh); sample k (k < 125) visits every window exactly once. */
    int seen[125] = {0}, dup_in_step = 0;
    for (int s = 0; s < STEPS; s++) {
        int in_step[125] = {0};
        for (int r = 0; r < DP; r++) {
            for (int m = 0; m < ACC; m++) {
                CHECK_EQ_INT(TPAR_OK, tpar_loader_batch(&L[r], m, x, y, &err));
                for (int b = 0; b < B; b++) {
                    int w = x[b * T] / T, k = s * DP * ACC * B + (m * DP + r) * B + b;
                    if (s < 5) dup_in_step += in_step[w]++;
                    if (k < 125) seen[w]++;
                }
            }
            tpar_loader_advance(&L[r]);
        }
    }
    CHECK_EQ_INT(0, dup_in_step);
    int once = 1;
    for (int w = 0; w < 125; w++) once &= seen[w] == 1;
    CHECK(once);

    /* The same (seed, position) gives the same batch: a loader restored from the saved state
     * of rank 1 at step 6 continues exactly as rank 1 does. */
    tpar_kv_t *state = tpar_kv_new();
    CHECK_EQ_INT(TPAR_OK, tpar_loader_save_state(&L[1], state));
    CHECK_EQ_INT(TPAR_OK, tpar_loader_init(&M, &t, B, T, 1, DP, ACC, 7 /* overwritten */, 1, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_loader_load_state(&M, state, &err));
    int resumed_same = 1;
    for (int s = 0; s < 10; s++) { /* crosses into later epochs */
        for (int m = 0; m < ACC; m++) {
            tpar_loader_batch(&L[1], m, x, y, &err);
            tpar_loader_batch(&M, m, x2, y2, &err);
            resumed_same &= !memcmp(x, x2, sizeof x) && !memcmp(y, y2, sizeof y);
        }
        tpar_loader_advance(&L[1]);
        tpar_loader_advance(&M);
    }
    CHECK(resumed_same);
    tpar_loader_free(&M);
    tpar_kv_clear(state);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_loader_load_state(&L[1], state, &err));
    CHECK_STR_CONTAINS(err.msg, "data.seed");
    tpar_kv_free(state);

    /* Another seed, another order; the epochs differ from each other. */
    CHECK_EQ_INT(TPAR_OK, tpar_loader_init(&M, &t, B, T, 0, DP, ACC, 43, 1, &err));
    tpar_loader_t L0;
    CHECK_EQ_INT(TPAR_OK, tpar_loader_init(&L0, &t, B, T, 0, DP, ACC, 42, 1, &err));
    tpar_loader_batch(&L0, 0, x, y, &err);
    tpar_loader_batch(&M, 0, x2, y2, &err);
    CHECK(memcmp(x, x2, sizeof x) != 0);
    L0.pos += 125; /* same place in the next epoch */
    tpar_loader_batch(&L0, 0, x2, y2, &err);
    CHECK(memcmp(x, x2, sizeof x) != 0);
    tpar_loader_free(&M);
    tpar_loader_free(&L0);

    /* DP ranks partition the global batch: DP=2 with B equals DP=1 with 2B, rank by rank. */
    tpar_loader_t one, two[2];
    int32_t big[2 * B * T], bigy[2 * B * T];
    CHECK_EQ_INT(TPAR_OK, tpar_loader_init(&one, &t, 2 * B, T, 0, 1, 1, 5, 1, &err));
    for (int r = 0; r < 2; r++) CHECK_EQ_INT(TPAR_OK, tpar_loader_init(&two[r], &t, B, T, r, 2, 1, 5, 1, &err));
    int partition = 1;
    for (int s = 0; s < 4; s++) {
        tpar_loader_batch(&one, 0, big, bigy, &err);
        for (int r = 0; r < 2; r++) {
            tpar_loader_batch(&two[r], 0, x, y, &err);
            partition &= !memcmp(x, big + r * B * T, sizeof x);
            tpar_loader_advance(&two[r]);
        }
        tpar_loader_advance(&one);
    }
    CHECK(partition);
    tpar_loader_free(&one);
    tpar_loader_free(&two[0]);
    tpar_loader_free(&two[1]);

    /* Without shuffling (validation): windows in file order. */
    tpar_loader_t V;
    CHECK_EQ_INT(TPAR_OK, tpar_loader_init(&V, &t, B, T, 0, 1, 1, 0, 0, &err));
    tpar_loader_batch(&V, 0, x, y, &err);
    CHECK(x[0] == 0 && x[T] == T && x[2 * T] == 2 * T);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_loader_batch(&V, 1, x, y, &err)); /* one micro-batch only */
    tpar_loader_free(&V);
    for (int r = 0; r < DP; r++) tpar_loader_free(&L[r]);
    tpar_tokens_free(&t);
}

int main(void) {
    io_test_scratch(dir, sizeof dir, "data");
    test_text();
    test_binary();
    test_loader();
    tpar_err_t err = {0};
    if (tpar_io_rmtree(dir, &err) != TPAR_OK) fprintf(stderr, "cleanup: %s\n", err.msg);
    return check_finish("test_io_data");
}
