/* safetensors: round trip, the exact byte layout against the spec, every corruption case,
 * and sharded writes by several processes read back at other TP sizes. */
#define _XOPEN_SOURCE 700
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "io_test_util.h"

static char dir[1024];

static void path_of(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

/* ---- round trip -------------------------------------------------------------------------- */

static void test_round_trip(void) {
    char p[1200];
    path_of(p, sizeof p, "rt.safetensors");
    float a[6] = {0, 1.5f, -2, 3.25f, 1e-30f, -0.0f};  // (2, 3)
    int64_t b[4] = {-1, 0, INT64_MAX, INT64_MIN};      // (4,)
    uint16_t c[3] = {0x3c00, 0xbc00, 0x7bff};          // (3,) F16 bits
    float s = 42.0f;                                   // ()
    const int64_t sa[2] = {2, 3}, sb[1] = {4}, sc[1] = {3}, se[2] = {0, 5};
    tpar_err_t err = {0};
    tpar_st_writer_t *w = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_new(&w, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "a", TPAR_ST_F32, 2, sa, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "b", TPAR_ST_I64, 1, sb, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "c", TPAR_ST_F16, 1, sc, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "scalar", TPAR_ST_F32, 0, NULL, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "empty", TPAR_ST_F32, 2, se, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_st_writer_add(w, "a", TPAR_ST_F32, 2, sa, &err));
    CHECK_STR_CONTAINS(err.msg, "declared twice");
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_meta(w, "format", "pt", &err));
    uint64_t early_size = tpar_st_writer_file_size(w); /* does not fix the declarations: */
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "more", TPAR_ST_U8, 1, sb, &err));
    CHECK(tpar_st_writer_file_size(w) > early_size);
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_create(w, p, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_st_writer_add(w, "late", TPAR_ST_F32, 1, sb, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "a", NULL, a, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "b", NULL, b, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "c", NULL, c, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "scalar", NULL, &s, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "empty", NULL, a, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "more", NULL, "\1\2\3\4", &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_st_writer_write(w, "nope", NULL, a, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_close(w, &err));
    uint64_t expect_size = tpar_st_writer_file_size(w);
    tpar_st_writer_free(w);

    tpar_st_file_t *f = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_st_open(p, &f, &err));
    if (!f) {
        fprintf(stderr, "open: %s\n", err.msg);
        return;
    }
    size_t fsize;
    free(io_test_read(p, &fsize));
    CHECK_EQ_INT(expect_size, fsize);
    CHECK_EQ_INT(6, tpar_st_count(f));
    CHECK(tpar_st_metadata(f, "format") && strcmp(tpar_st_metadata(f, "format"), "pt") == 0);
    CHECK(tpar_st_metadata(f, "missing") == NULL);
    const tpar_st_tensor_t *t = tpar_st_find(f, "a");
    CHECK(t && t->dtype == TPAR_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && t->end - t->begin == sizeof a);
    CHECK(tpar_st_find(f, "nope") == NULL);
    float a2[6];
    int64_t b2[4];
    uint16_t c2[3];
    float s2 = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "a", TPAR_ST_F32, NULL, a2, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "b", TPAR_ST_I64, NULL, b2, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "c", TPAR_ST_F16, NULL, c2, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "scalar", TPAR_ST_F32, NULL, &s2, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "empty", TPAR_ST_F32, NULL, a2 + 6, &err)); /* reads nothing */
    CHECK_BYTES_EQ("F32 round trip", a, a2, sizeof a);
    CHECK_BYTES_EQ("I64 round trip", b, b2, sizeof b);
    CHECK_BYTES_EQ("F16 round trip", c, c2, sizeof c);
    CHECK_BYTES_EQ("scalar round trip", &s, &s2, sizeof s);
    /* Column 1..2 of row 1: one strided block. */
    float blk[2];
    tpar_slice_t sl = tpar_slice_2d(1, 1, 1, 2);
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "a", TPAR_ST_F32, &sl, blk, &err));
    CHECK(blk[0] == a[4] && blk[1] == a[5]);

    /* Wrong expectations are shape errors naming the tensor and what was expected. */
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_st_read(f, "a", TPAR_ST_F16, NULL, a2, &err));
    CHECK_STR_CONTAINS(err.msg, "tensor 'a' is F32, expected F16");
    const int64_t wrong[2] = {3, 2};
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_st_expect(f, "a", TPAR_ST_F32, 2, wrong, &err));
    CHECK_STR_CONTAINS(err.msg, "tensor 'a' has shape [2, 3], expected [3, 2]");
    CHECK_EQ_INT(TPAR_OK, tpar_st_expect(f, "a", TPAR_ST_F32, 2, sa, &err));
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_st_expect(f, "missing", TPAR_ST_F32, 2, sa, &err));
    CHECK_STR_CONTAINS(err.msg, "no tensor named 'missing'");
    sl = tpar_slice_2d(1, 2, 0, 3); /* rows 1..3 of 2 */
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_st_read(f, "a", TPAR_ST_F32, &sl, a2, &err));
    CHECK_STR_CONTAINS(err.msg, "slice [1:3, 0:3] is outside tensor 'a' of shape [2, 3]");
    /* A library caller's start + count that overflows int64 (issue #23): an error whose message
     * prints the count, no signed overflow (the UBSan build checks). */
    sl = tpar_slice_2d(INT64_MAX, INT64_MAX, 0, 3);
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_st_read(f, "a", TPAR_ST_F32, &sl, a2, &err));
    CHECK_STR_CONTAINS(err.msg, "slice [9223372036854775807:+9223372036854775807, 0:3] is outside tensor 'a'");
    sl = tpar_slice_1d(0, 2);
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_st_read(f, "a", TPAR_ST_F32, &sl, a2, &err));
    tpar_st_close(f);
}

/* ---- the byte layout against the spec ---------------------------------------------------- */

static void test_byte_layout(void) {
    char p[1200];
    path_of(p, sizeof p, "layout.safetensors");
    float x[2] = {1.0f, -2.0f};
    const int64_t shape[1] = {2};
    tpar_err_t err = {0};
    tpar_st_writer_t *w = NULL;
    tpar_st_writer_new(&w, &err);
    tpar_st_writer_add(w, "x", TPAR_ST_F32, 1, shape, &err);
    tpar_st_writer_meta(w, "k", "v", &err);
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_create(w, p, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "x", NULL, x, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_close(w, &err));
    tpar_st_writer_free(w);

    /* Spec: u64 LE header size N | N bytes of JSON (we pad with spaces to 8) | little-endian data. */
    const char *json = "{\"__metadata__\":{\"k\":\"v\"},\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t jl = strlen(json), n = (jl + 7) / 8 * 8;
    unsigned char want[256] = {0};
    for (int i = 0; i < 8; i++) want[i] = (unsigned char)(n >> (8 * i));
    memcpy(want + 8, json, jl);
    memset(want + 8 + jl, ' ', n - jl);
    const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0}; /* 1.0f, -2.0f */
    memcpy(want + 8 + n, data, 8);
    size_t got_n = 0;
    unsigned char *got = io_test_read(p, &got_n);
    CHECK_EQ_INT(8 + n + 8, got_n);
    if (got && got_n == 8 + n + 8) CHECK_BYTES_EQ("safetensors bytes", want, got, got_n);
    if (got && got_n != 8 + n + 8) fprintf(stderr, "got header: %.*s\n", (int)(got_n > 8 ? got_n - 8 : 0), got + 8);
    free(got);
}

/* ---- corruption -------------------------------------------------------------------------- */

/* Writes a file from a header (length field = hlen, or strlen(json) when hlen is 0) and data. */
static void make_file(const char *p, const char *json, uint64_t hlen, size_t data_len) {
    size_t jl = strlen(json);
    if (!hlen) hlen = jl;
    unsigned char *buf = calloc(1, 8 + jl + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, json, jl);
    for (size_t i = 0; i < data_len; i++) buf[8 + jl + i] = (unsigned char)i;
    if (io_test_write(p, buf, 8 + jl + data_len) != 0) perror(p);
    free(buf);
}

static void expect_open_error(const char *what, const char *json, uint64_t hlen, size_t data_len, tpar_status code,
                              const char *needle) {
    char p[1200];
    path_of(p, sizeof p, "bad.safetensors");
    make_file(p, json, hlen, data_len);
    tpar_err_t err = {0};
    tpar_st_file_t *f = NULL;
    tpar_status st = tpar_st_open(p, &f, &err);
    if (!check_record_(st == code && (f != NULL) == (code == TPAR_OK), __FILE__, __LINE__, what))
        fprintf(stderr, "  %s: expected status %s, got %s (%s)\n", what, tpar_status_str(code), tpar_status_str(st),
                err.msg);
    if (code != TPAR_OK) {
        CHECK_STR_CONTAINS(err.msg, needle);
        CHECK_STR_CONTAINS(err.msg, "bad.safetensors"); /* every message names the file */
    }
    tpar_st_close(f);
}

static void test_corruption(void) {
    const char *good = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    expect_open_error("valid control", good, 0, 16, TPAR_OK, ""); /* the baseline opens */
    char p[1200];
    path_of(p, sizeof p, "bad.safetensors");

    expect_open_error("truncated data", good, 0, 12, TPAR_ERR_CORRUPT, "tensor 'w': data_offsets [0, 16] go past");
    expect_open_error("truncated data", good, 0, 12, TPAR_ERR_CORRUPT, "truncated");
    expect_open_error("trailing bytes", good, 0, 20, TPAR_ERR_CORRUPT, "4 trailing bytes after the last tensor 'w'");
    expect_open_error("header length beyond file", good, 4096, 16, TPAR_ERR_CORRUPT, "header length 4096 is impossible");
    expect_open_error("header length huge", good, (uint64_t)1 << 40, 16, TPAR_ERR_CORRUPT, "impossible");
    expect_open_error("header length cut JSON", good, 20, 16, TPAR_ERR_CORRUPT, "not valid JSON");
    expect_open_error("bad JSON", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", 0, 16,
                      TPAR_ERR_CORRUPT, "not valid JSON");
    expect_open_error("not an object", "[1, 2]", 0, 0, TPAR_ERR_CORRUPT, "does not start with '{'");
    expect_open_error("duplicate names",
                      "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      0, 8, TPAR_ERR_CORRUPT, "not valid JSON");
    expect_open_error("unknown dtype", "{\"w\":{\"dtype\":\"F33\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 0, 16,
                      TPAR_ERR_CORRUPT, "tensor 'w': unknown dtype \"F33\"");
    expect_open_error("wrong shape for offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}",
                      0, 16, TPAR_ERR_CORRUPT, "tensor 'w': data_offsets [0, 16] hold 16 bytes, expected 12");
    expect_open_error("wrong dtype for offsets", "{\"w\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                      0, 16, TPAR_ERR_CORRUPT, "expected 32");
    expect_open_error("negative dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,2],\"data_offsets\":[0,16]}}", 0, 16,
                      TPAR_ERR_CORRUPT, "shape[0] is not a non-negative integer");
    expect_open_error("overflowing shape",
                      "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],"
                      "\"data_offsets\":[0,16]}}",
                      0, 16, TPAR_ERR_CORRUPT, "overflows 64-bit sizes");
    expect_open_error("offsets out of bounds", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[100,116]}}",
                      0, 16, TPAR_ERR_CORRUPT, "go past the end of the data buffer (16 bytes)");
    expect_open_error("reversed offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 0, 16,
                      TPAR_ERR_CORRUPT, "are not a range");
    expect_open_error("overlapping tensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      0, 12, TPAR_ERR_CORRUPT, "tensors 'a' and 'b' overlap");
    expect_open_error("hole between tensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                      0, 20, TPAR_ERR_CORRUPT, "data bytes [8, 12) belong to no tensor (hole before 'b')");
    expect_open_error("missing field", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", 0, 16, TPAR_ERR_CORRUPT,
                      "\"data_offsets\" must be [begin, end]");
    expect_open_error("extra field", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}}", 0,
                      16, TPAR_ERR_CORRUPT, "unexpected field 'x'");
    expect_open_error("metadata not strings", "{\"__metadata__\":{\"k\":1}}", 0, 0, TPAR_ERR_CORRUPT,
                      "__metadata__ value of 'k' is not a string");

    /* Shorter than the length field; missing file. */
    io_test_write(p, "abc", 3);
    tpar_err_t err = {0};
    tpar_st_file_t *f = NULL;
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_st_open(p, &f, &err));
    CHECK_STR_CONTAINS(err.msg, "too short");
    path_of(p, sizeof p, "does-not-exist.safetensors");
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_st_open(p, &f, &err));
    CHECK_STR_CONTAINS(err.msg, "does-not-exist.safetensors");
}

/* ---- sharded writes ---------------------------------------------------------------------- */

/* The global model: a column-parallel weight (split by columns), a row-parallel weight (split
 * by rows), a sharded bias, a replicated vector, and a 3-D tensor split along its middle. */
enum { R = 8, C = 12, NT = 5 };
static const char *names[NT] = {"col.weight", "row.weight", "col.bias", "ln.weight", "qkv"};
static const int nd[NT] = {2, 2, 1, 1, 3};
static const int64_t shapes[NT][3] = {{R, C}, {C, R}, {C}, {R}, {4, C, 3}};

static int64_t numel(int i) {
    int64_t n = 1;
    for (int d = 0; d < nd[i]; d++) n *= shapes[i][d];
    return n;
}

static float gval(int i, int64_t k) { return (float)(i * 1000 + k) * 0.5f - 7.0f; }

/* The slice of tensor i that rank r of tp owns (the replicated one: rank 0 has it all). */
static tpar_slice_t shard(int i, int r, int tp) {
    switch (i) {
    case 0: return tpar_slice_2d(0, R, r * (C / tp), C / tp);
    case 1: return tpar_slice_2d(r * (C / tp), C / tp, 0, R);
    case 2: return tpar_slice_1d(r * (C / tp), C / tp);
    case 3: return tpar_slice_1d(0, R);
    default: {
        tpar_slice_t s = {.ndim = 3, .start = {0, r * (C / tp), 0}, .count = {4, C / tp, 3}};
        return s;
    }
    }
}

/* Dense copy of a slice of the global tensor i (the reference). */
static void cut(int i, const tpar_slice_t *s, float *out) {
    int64_t st0 = s->ndim > 0 ? s->start[0] : 0, n0 = s->ndim > 0 ? s->count[0] : 1;
    int64_t st1 = s->ndim > 1 ? s->start[1] : 0, n1 = s->ndim > 1 ? s->count[1] : 1;
    int64_t st2 = s->ndim > 2 ? s->start[2] : 0, n2 = s->ndim > 2 ? s->count[2] : 1;
    int64_t d1 = nd[i] > 1 ? shapes[i][1] : 1, d2 = nd[i] > 2 ? shapes[i][2] : 1;
    size_t o = 0;
    for (int64_t a = st0; a < st0 + n0; a++)
        for (int64_t b = st1; b < st1 + n1; b++)
            for (int64_t c = st2; c < st2 + n2; c++) out[o++] = gval(i, (a * d1 + b) * d2 + c);
}

static int64_t slice_numel(const tpar_slice_t *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->count[d];
    return n;
}

static int declare(tpar_st_writer_t **w, int break_it) {
    tpar_err_t err = {0};
    if (tpar_st_writer_new(w, &err) != TPAR_OK) return -1;
    for (int i = 0; i < NT; i++) {
        int64_t sh[3] = {shapes[i][0], shapes[i][1], shapes[i][2]};
        if (break_it && i == 1) sh[0]++;
        if (tpar_st_writer_add(*w, names[i], TPAR_ST_F32, nd[i], sh, &err) != TPAR_OK) return -1;
    }
    return tpar_st_writer_meta(*w, "tp", "2", &err) == TPAR_OK ? 0 : -1;
}

/* One simulated rank: declare, (rank 0) create / (others) wait for it and open, write own slices. */
static int rank_main(const char *p, int r, int tp, int ready_rd, int ready_wr) {
    tpar_err_t err = {0};
    tpar_st_writer_t *w = NULL;
    if (declare(&w, 0) != 0) return 10;
    char c = 1;
    if (r == 0) {
        if (tpar_st_writer_create(w, p, &err) != TPAR_OK) return fprintf(stderr, "%s\n", err.msg), 11;
        for (int k = 1; k < tp; k++)
            if (write(ready_wr, &c, 1) != 1) return 12; /* the "barrier" */
    } else {
        if (read(ready_rd, &c, 1) != 1) return 13;
        if (tpar_st_writer_open(w, p, &err) != TPAR_OK) return fprintf(stderr, "%s\n", err.msg), 14;
    }
    for (int i = 0; i < NT; i++) {
        if (i == 3 && r != 0) continue; /* replicated: one writer */
        tpar_slice_t s = shard(i, r, tp);
        float *buf = malloc((size_t)slice_numel(&s) * sizeof *buf);
        cut(i, &s, buf);
        tpar_status st = tpar_st_writer_write(w, names[i], &s, buf, &err);
        free(buf);
        if (st != TPAR_OK) return fprintf(stderr, "%s\n", err.msg), 15;
    }
    if (tpar_st_writer_close(w, &err) != TPAR_OK) return 16;
    tpar_st_writer_free(w);
    return 0;
}

static void test_sharded(void) {
    char p[1200];
    path_of(p, sizeof p, "sharded.safetensors");
    const int tp = 2;
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pids[2];
    for (int r = 0; r < tp; r++) {
        pids[r] = fork();
        if (pids[r] == 0) _exit(rank_main(p, r, tp, fds[0], fds[1]));
    }
    close(fds[0]);
    close(fds[1]);
    for (int r = 0; r < tp; r++) {
        int status = -1;
        waitpid(pids[r], &status, 0);
        if (!check_record_(WIFEXITED(status) && WEXITSTATUS(status) == 0, __FILE__, __LINE__,
                           "simulated rank wrote its slices"))
            fprintf(stderr, "  rank %d: status 0x%x\n", r, status);
    }

    tpar_err_t err = {0};
    tpar_st_file_t *f = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_st_open(p, &f, &err));
    if (!f) return;
    CHECK(tpar_st_metadata(f, "tp") && !strcmp(tpar_st_metadata(f, "tp"), "2"));
    int tps[3] = {1, 2, 4}; /* read back as TP=1 (whole), TP=2 and TP=4 shards */
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < NT; i++) {
            for (int r = 0; r < tps[k]; r++) {
                tpar_slice_t s = shard(i, r, tps[k]);
                size_t n = (size_t)slice_numel(&s);
                float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
                cut(i, &s, want);
                memset(got, 0xff, n * sizeof *got);
                CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, names[i], TPAR_ST_F32, &s, got, &err));
                char what[128];
                snprintf(what, sizeof what, "%s written at TP=2, read as shard %d of TP=%d", names[i], r, tps[k]);
                check_record_(memcmp(want, got, n * sizeof *got) == 0, __FILE__, __LINE__, what);
                free(want);
                free(got);
            }
        }
    }
    /* An arbitrary block, and the whole tensors. */
    float blk[3 * 7], want[3 * 7];
    tpar_slice_t s = tpar_slice_2d(2, 3, 3, 7);
    cut(0, &s, want);
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "col.weight", TPAR_ST_F32, &s, blk, &err));
    CHECK_BYTES_EQ("block [2:5, 3:10]", want, blk, sizeof blk);
    for (int i = 0; i < NT; i++) {
        float *whole = malloc((size_t)numel(i) * sizeof *whole), *ref = malloc((size_t)numel(i) * sizeof *ref);
        tpar_slice_t all = {.ndim = nd[i]};
        for (int d = 0; d < nd[i]; d++) all.count[d] = shapes[i][d];
        cut(i, &all, ref);
        CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, names[i], TPAR_ST_F32, NULL, whole, &err));
        CHECK_BYTES_EQ("whole tensor equals the global reference", ref, whole, (size_t)numel(i) * sizeof *ref);
        free(whole);
        free(ref);
    }
    tpar_st_close(f);

    /* A rank that declared something else is refused before it writes a byte. */
    tpar_st_writer_t *w = NULL;
    CHECK_EQ_INT(0, declare(&w, 1));
    CHECK_EQ_INT(TPAR_ERR_MISMATCH, tpar_st_writer_open(w, p, &err));
    CHECK_STR_CONTAINS(err.msg, "must declare the same tensors");
    tpar_st_writer_free(w);
    /* Opening before anyone created the file. */
    path_of(p, sizeof p, "never-created.safetensors");
    CHECK_EQ_INT(0, declare(&w, 0));
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_st_writer_open(w, p, &err));
    CHECK_STR_CONTAINS(err.msg, "was it created first?");
    tpar_st_writer_free(w);
}

int main(void) {
    io_test_scratch(dir, sizeof dir, "st");
    test_round_trip();
    test_byte_layout();
    test_corruption();
    test_sharded();
    tpar_err_t err = {0};
    if (tpar_io_rmtree(dir, &err) != TPAR_OK) fprintf(stderr, "cleanup: %s\n", err.msg);
    return check_finish("test_io_safetensors");
}
