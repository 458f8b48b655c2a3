/* libFuzzer target: a checkpoint directory whose manifest.json (and, from the same bytes, whose
 * state.json) is arbitrary: tpar_ckpt_verify (sizes only and full), tpar_ckpt_find_latest over
 * the parent, and tpar_kv_load with its getters. The directory also holds a small valid
 * safetensors file and a text file, so that entries naming them get as far as the checksums. */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include <sys/stat.h>

#include "fuzz_util.h"
#include "tpar/io.h"

static void setup(const char *ck) {
    static int done;
    if (done) return;
    done = 1;
    if (mkdir(ck, 0755) != 0) abort();
    char p[300];
    tpar_err_t err = {0};
    tpar_st_writer_t *w = NULL;
    const int64_t shape[1] = {4};
    const float v[4] = {1, 2, 3, 4};
    snprintf(p, sizeof p, "%s/model.safetensors", ck);
    if (tpar_st_writer_new(&w, &err) || tpar_st_writer_add(w, "w", TPAR_ST_F32, 1, shape, &err) ||
        tpar_st_writer_create(w, p, &err) || tpar_st_writer_write(w, "w", NULL, v, &err) ||
        tpar_st_writer_close(w, &err))
        abort();
    tpar_st_writer_free(w);
    snprintf(p, sizeof p, "%s/notes.txt", ck);
    FILE *f = fopen(p, "wb");
    if (!f || fputs("hello\n", f) < 0 || fclose(f)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char ck[200], name[240];
    snprintf(ck, sizeof ck, "%s/step_00000007", fuzz_dir());
    setup(ck);
    snprintf(name, sizeof name, "step_00000007/%s", TPAR_CKPT_MANIFEST);
    fuzz_file(name, data, size);
    tpar_err_t err = {0};
    (void)tpar_ckpt_verify(ck, 0, &err);
    (void)tpar_ckpt_verify(ck, 1, &err);
    tpar_ckpt_found_t found;
    if (tpar_ckpt_find_latest(fuzz_dir(), 1, &found, &err) == TPAR_OK && found.found && found.step != 7) abort();

    const char *p = fuzz_file("state.json", data, size);
    tpar_kv_t *kv = NULL;
    if (tpar_kv_load(p, &kv, &err) == TPAR_OK) {
        int64_t i;
        uint64_t u;
        double d;
        const char *s;
        (void)tpar_kv_get_i64(kv, "step", &i, &err);
        (void)tpar_kv_get_u64(kv, "data.seed", &u, &err);
        (void)tpar_kv_get_f64(kv, "lr", &d, &err);
        (void)tpar_kv_get_str(kv, "model", &s, &err);
        tpar_kv_free(kv);
    }
    return 0;
}
