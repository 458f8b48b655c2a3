/* Helper of test_io_numpy: `st_sample write PATH` writes a known safetensors file (by column
 * slices, as two ranks would) for an independent Python reader; `st_sample check PATH` reads
 * the file Python wrote with its own writer and checks every value. */
#include <stdint.h>

#include "check.h"
#include "tpar/io.h"

static int write_sample(const char *p) {
    tpar_err_t err = {0};
    float a[6];  // (2, 3)
    for (int i = 0; i < 6; i++) a[i] = (float)i * 1.5f - 2.0f;
    const int32_t b[4] = {-1, 0, 1, 1 << 30};
    const uint16_t c[2] = {0x3c00, 0xc000};  // F16 1.0, -2.0
    const double d[4] = {0.1, 0.2, 1e300, -0.0};
    const int64_t sa[2] = {2, 3}, sb[1] = {4}, sc[1] = {2}, sd[3] = {2, 2, 1};
    tpar_st_writer_t *w = NULL;
    int bad = tpar_st_writer_new(&w, &err) || tpar_st_writer_add(w, "a", TPAR_ST_F32, 2, sa, &err) ||
              tpar_st_writer_add(w, "b", TPAR_ST_I32, 1, sb, &err) ||
              tpar_st_writer_add(w, "c", TPAR_ST_F16, 1, sc, &err) ||
              tpar_st_writer_add(w, "d", TPAR_ST_F64, 3, sd, &err) ||
              tpar_st_writer_meta(w, "producer", "tpar", &err) || tpar_st_writer_create(w, p, &err);
    /* "a" in two column blocks: columns [0, 1) and [1, 3). */
    float left[2] = {a[0], a[3]}, right[4] = {a[1], a[2], a[4], a[5]};
    tpar_slice_t l = tpar_slice_2d(0, 2, 0, 1), r = tpar_slice_2d(0, 2, 1, 2);
    bad = bad || tpar_st_writer_write(w, "a", &l, left, &err) || tpar_st_writer_write(w, "a", &r, right, &err) ||
          tpar_st_writer_write(w, "b", NULL, b, &err) || tpar_st_writer_write(w, "c", NULL, c, &err) ||
          tpar_st_writer_write(w, "d", NULL, d, &err) || tpar_st_writer_close(w, &err);
    tpar_st_writer_free(w);
    if (bad) fprintf(stderr, "st_sample write: %s\n", err.msg);
    return bad ? 1 : 0;
}

static int check_sample(const char *p) {
    tpar_err_t err = {0};
    tpar_st_file_t *f = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_st_open(p, &f, &err));
    if (!f) {
        fprintf(stderr, "%s\n", err.msg);
        return check_finish("st_sample check");
    }
    const int64_t sz[2] = {3, 4}, sy[2] = {2, 2}, sh[1] = {3};
    CHECK_EQ_INT(TPAR_OK, tpar_st_expect(f, "z", TPAR_ST_F32, 2, sz, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_expect(f, "y", TPAR_ST_I64, 2, sy, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_expect(f, "h", TPAR_ST_F16, 1, sh, &err));
    float z[12], zb[4];
    int64_t y[4];
    uint16_t h[3];
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "z", TPAR_ST_F32, NULL, z, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "y", TPAR_ST_I64, NULL, y, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "h", TPAR_ST_F16, NULL, h, &err));
    int ok = 1;
    for (int i = 0; i < 12; i++) ok &= z[i] == (float)i * 0.25f - 1.0f;
    CHECK(ok);
    CHECK(y[0] == 1 && y[1] == -2 && y[2] == 3 && y[3] == ((int64_t)1 << 40));
    CHECK(h[0] == 0x3800 && h[1] == 0xbc00 && h[2] == 0x4000);
    tpar_slice_t s = tpar_slice_2d(1, 2, 1, 2); /* z[1:3, 1:3] */
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "z", TPAR_ST_F32, &s, zb, &err));
    CHECK(zb[0] == z[5] && zb[1] == z[6] && zb[2] == z[9] && zb[3] == z[10]);
    const char *fmt = tpar_st_metadata(f, "format");
    CHECK(fmt && strcmp(fmt, "np") == 0);
    tpar_st_close(f);
    return check_finish("st_sample check");
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "write") == 0) return write_sample(argv[2]);
    if (argc == 3 && strcmp(argv[1], "check") == 0) return check_sample(argv[2]);
    fprintf(stderr, "usage: st_sample write|check PATH\n");
    return 2;
}
