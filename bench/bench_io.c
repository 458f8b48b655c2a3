/* Checkpoint I/O: a GPT-2-shaped model saved whole by one writer versus by TP=2 ranks writing
 * their own (partly strided) blocks, the commit (fsync + crc32 read-back), and loading at
 * TP=1 versus TP=4 blocks. Ranks run one after the other in this process, so the sharded
 * time is the sum over ranks (the work, not the parallel wall time).
 * usage: bench_io [--layers N] [--dir DIR]   (default 4 layers of C=768: 113 MB) */
#define _XOPEN_SOURCE 700
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io_internal.h"
#include "tpar/io.h"

enum { C = 768 };
static const char *kinds[4] = {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"};
static const int64_t dims[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};

static void die(const char *what, const tpar_err_t *err) {
    fprintf(stderr, "bench_io: %s: %s\n", what, err->msg);
    exit(1);
}

/* The blocks of rank r of tp for tensor kind k (see docs/CHECKPOINT.md); returns how many. */
static int blocks(int k, int r, int tp, tpar_slice_t out[3]) {
    int64_t h = C / tp;
    switch (k) {
    case 0:
        for (int j = 0; j < 3; j++) out[j] = tpar_slice_2d(0, C, j * C + r * h, h);
        return 3;
    case 1: out[0] = tpar_slice_2d(r * h, h, 0, C); return 1;
    case 2: out[0] = tpar_slice_2d(0, C, r * 4 * h, 4 * h); return 1;
    default: out[0] = tpar_slice_2d(r * 4 * h, 4 * h, 0, C); return 1;
    }
}

static tpar_st_writer_t *declare(int layers) {
    tpar_err_t err = {0};
    tpar_st_writer_t *w = NULL;
    if (tpar_st_writer_new(&w, &err) != TPAR_OK) die("writer", &err);
    char name[64];
    for (int l = 0; l < layers; l++)
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "h.%d.%s", l, kinds[k]);
            if (tpar_st_writer_add(w, name, TPAR_ST_F32, 2, dims[k], &err) != TPAR_OK) die("declare", &err);
        }
    return w;
}

/* Saves (writing) or loads the model as tp ranks, one after the other (tp = 1: whole
 * tensors); returns seconds. */
static double run(const char *path, int layers, int tp, int writing, float *buf) {
    tpar_err_t err = {0};
    double t0 = tpar_now();
    char name[64];
    for (int r = 0; r < tp; r++) {
        tpar_st_writer_t *w = NULL;
        tpar_st_file_t *f = NULL;
        tpar_status st;
        if (writing) {
            w = declare(layers);
            st = r == 0 ? tpar_st_writer_create(w, path, &err) : tpar_st_writer_open(w, path, &err);
        } else {
            st = tpar_st_open(path, &f, &err);
        }
        if (st != TPAR_OK) die("open", &err);
        for (int l = 0; l < layers; l++)
            for (int k = 0; k < 4; k++) {
                tpar_slice_t s[3];
                int nb = tp == 1 ? 1 : blocks(k, r, tp, s);
                snprintf(name, sizeof name, "h.%d.%s", l, kinds[k]);
                for (int b = 0; b < nb; b++) {
                    const tpar_slice_t *sl = tp == 1 ? NULL : &s[b];
                    st = writing ? tpar_st_writer_write(w, name, sl, buf, &err)
                                 : tpar_st_read(f, name, TPAR_ST_F32, sl, buf, &err);
                    if (st != TPAR_OK) die(name, &err);
                }
            }
        if (writing && tpar_st_writer_close(w, &err) != TPAR_OK) die("close", &err);
        tpar_st_writer_free(w);
        tpar_st_close(f);
    }
    return tpar_now() - t0;
}

int main(int argc, char **argv) {
    int layers = 4;
    const char *base = getenv("TMPDIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tpar_bench_io_XXXXXX", base && *base ? base : "/tmp");
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--layers")) layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dir")) snprintf(dir, sizeof dir, "%s/tpar_bench_io_XXXXXX", argv[i + 1]);
    }
    if (layers < 1 || !mkdtemp(dir)) {
        fprintf(stderr, "usage: bench_io [--layers N>=1] [--dir DIR]\n");
        return 2;
    }
    float *buf = malloc((size_t)4 * C * C * sizeof *buf); /* the largest tensor */
    for (size_t i = 0; i < (size_t)4 * C * C; i++) buf[i] = (float)i * 1e-3f;
    tpar_err_t err = {0};
    char tmp[TPAR_CKPT_PATH_MAX], path[TPAR_CKPT_PATH_MAX + 32], p1[TPAR_CKPT_PATH_MAX + 32];
    if (tpar_ckpt_begin(dir, 1, tmp, sizeof tmp, &err) != TPAR_OK) die("begin", &err);
    snprintf(p1, sizeof p1, "%s/whole.safetensors", tmp);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    tpar_st_writer_t *w = declare(layers);
    double mb = (double)tpar_st_writer_file_size(w) / 1e6;
    tpar_st_writer_free(w);

    double t_whole = run(p1, layers, 1, 1, buf), t_tp2 = run(path, layers, 2, 1, buf);
    double t0 = tpar_now();
    if (tpar_ckpt_commit(dir, 1, 1, NULL, 0, &err) != TPAR_OK) die("commit", &err);
    double t_commit = tpar_now() - t0;
    tpar_ckpt_path(tmp, sizeof tmp, dir, 1, 0);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    double t_r1 = run(path, layers, 1, 0, buf), t_r4 = run(path, layers, 4, 0, buf);
    uint64_t size;
    uint32_t crc;
    t0 = tpar_now();
    if (tpar_file_crc32(path, &size, &crc, &err) != TPAR_OK) die("crc", &err);
    double t_crc = tpar_now() - t0;

    printf("bench_io: %d layers of GPT-2 C=%d matrices, %.1f MB per file, files in %s\n", layers, C, mb, dir);
    printf("%-44s %9s %9s\n", "operation", "seconds", "MB/s");
    printf("%-44s %9.3f %9.0f\n", "save, one writer, whole tensors (+fsync)", t_whole, mb / t_whole);
    printf("%-44s %9.3f %9.0f\n", "save, TP=2 ranks' blocks, summed (+fsync)", t_tp2, mb / t_tp2);
    printf("%-44s %9.3f %9.0f\n", "commit: 2 files fsync + crc32 read-back", t_commit, 2 * mb / t_commit);
    printf("%-44s %9.3f %9.0f\n", "crc32 of one file (page cache)", t_crc, mb / t_crc);
    printf("%-44s %9.3f %9.0f\n", "load at TP=1 (whole tensors)", t_r1, mb / t_r1);
    printf("%-44s %9.3f %9.0f\n", "load at TP=4 (blocks, summed over ranks)", t_r4, mb / t_r4);
    printf("ratio sharded/whole save time: %.2f   TP=4/TP=1 load time: %.2f\n", t_tp2 / t_whole, t_r4 / t_r1);
    free(buf);
    if (tpar_io_rmtree(dir, &err) != TPAR_OK) die("cleanup", &err);
    return 0;
}
