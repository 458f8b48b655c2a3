/* Checkpoint directories: save and find, a save killed with SIGKILL, a corrupt newest
 * checkpoint skipped with a warning, rotation, leftovers cleaned; JSON state and metrics.
 * Hostile directories (issue #23): a FIFO where a file should be (every open in io is refused,
 * none blocks: alarm() turns a hang into a failure), `latest` that cannot be written (a warning,
 * the checkpoint is committed), non-finite tensors (recorded, refused, never displacing a
 * finite checkpoint in rotation), the one-job lock (a second taker fails naming the pid; kill -9
 * releases it; a descriptor handed down is adopted). */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "io_test_util.h"

static char dir[1024];
enum { NW = 4096 }; /* floats in the model file: 16 KiB */

static float wval(int64_t step, int i) { return (float)step + (float)i * 0.25f; }
static int64_t poison_step = -1; /* the save of this step writes a NaN into the weights */

/* The files one save writes: a model (weights depend on the step) and a training state. */
static tpar_status write_files(const char *tmp, int64_t step, int partial, tpar_err_t *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors", tmp);
    const int64_t shape[1] = {NW};
    tpar_st_writer_t *w = NULL;
    tpar_status st = tpar_st_writer_new(&w, err);
    if (st == TPAR_OK) st = tpar_st_writer_add(w, "w", TPAR_ST_F32, 1, shape, err);
    if (st == TPAR_OK) st = tpar_st_writer_create(w, p, err);
    float *buf = malloc(NW * sizeof *buf);
    for (int i = 0; i < NW; i++) buf[i] = wval(step, i);
    if (step == poison_step) buf[NW - 3] = NAN;
    tpar_slice_t half = tpar_slice_1d(0, NW / 2);
    if (st == TPAR_OK) st = tpar_st_writer_write(w, "w", partial ? &half : NULL, buf, err);
    free(buf);
    if (partial) raise(SIGKILL); /* the crash: no close, no state, no commit */
    if (st == TPAR_OK) st = tpar_st_writer_close(w, err);
    tpar_st_writer_free(w);
    tpar_kv_t *kv = tpar_kv_new();
    tpar_kv_set_i64(kv, "step", step);
    tpar_kv_set_u64(kv, "rng.dropout", UINT64_MAX - (uint64_t)step);
    tpar_kv_set_f64(kv, "config.lr", 0.1);
    tpar_kv_set_str(kv, "config.model", "tiny");
    snprintf(p, sizeof p, "%s/state.json", tmp);
    if (st == TPAR_OK) st = tpar_kv_save(kv, p, err);
    tpar_kv_free(kv);
    return st;
}

static tpar_status save(int64_t step, int keep) {
    char tmp[1200];
    tpar_err_t err = {0};
    tpar_status st = tpar_ckpt_begin(dir, step, tmp, sizeof tmp, &err);
    if (st == TPAR_OK) st = write_files(tmp, step, 0, &err);
    if (st == TPAR_OK) st = tpar_ckpt_commit(dir, step, keep, NULL, 0, &err);
    if (st != TPAR_OK) fprintf(stderr, "save %lld: %s\n", (long long)step, err.msg);
    return st;
}

/* Loads the model of a found checkpoint and checks it is the one of `step`. */
static void check_loadable(const tpar_ckpt_found_t *found, int64_t step) {
    char p[TPAR_CKPT_PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/model.safetensors", found->path);
    tpar_err_t err = {0};
    tpar_st_file_t *f = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_st_open(p, &f, &err));
    float *got = calloc(NW, sizeof *got), *want = malloc(NW * sizeof *want);
    for (int i = 0; i < NW; i++) want[i] = wval(step, i);
    CHECK_EQ_INT(TPAR_OK, tpar_st_read(f, "w", TPAR_ST_F32, NULL, got, &err));
    CHECK_BYTES_EQ("weights of the checkpoint found", want, got, NW * sizeof *got);
    tpar_st_close(f);
    free(got);
    free(want);
    snprintf(p, sizeof p, "%s/state.json", found->path);
    tpar_kv_t *kv = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_kv_load(p, &kv, &err));
    int64_t s = -1;
    uint64_t rng = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_kv_get_i64(kv, "step", &s, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_kv_get_u64(kv, "rng.dropout", &rng, &err));
    CHECK_EQ_INT(step, s);
    CHECK(rng == UINT64_MAX - (uint64_t)step);
    tpar_kv_free(kv);
}

static int count_entries(const char *suffix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t a = strlen(e->d_name), b = strlen(suffix);
        if (strncmp(e->d_name, "step_", 5) == 0 && a >= b && strcmp(e->d_name + a - b, suffix) == 0) n++;
    }
    if (d) closedir(d);
    return n;
}

static int exists(int64_t step) {
    char p[1200];
    struct stat sb;
    tpar_ckpt_path(p, sizeof p, dir, step, 0);
    return stat(p, &sb) == 0;
}

/* A child begins a save and SIGKILLs itself halfway through writing the model. */
static void crashed_save(int64_t step) {
    pid_t pid = fork();
    if (pid == 0) {
        char tmp[1200];
        tpar_err_t err = {0};
        if (tpar_ckpt_begin(dir, step, tmp, sizeof tmp, &err) != TPAR_OK) _exit(3);
        write_files(tmp, step, 1, &err);
        _exit(4); /* not reached */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void find(tpar_ckpt_found_t *found, int full, tpar_status want) {
    tpar_err_t err = {0};
    tpar_status st = tpar_ckpt_find_latest(dir, full, found, &err);
    CHECK_EQ_INT(want, st);
    if (st != want) fprintf(stderr, "  find_latest: %s\n", err.msg);
}

static void test_checkpoints(void) {
    tpar_ckpt_found_t found;
    tpar_err_t err = {0};

    /* Nothing yet: a fresh start, not an error. */
    find(&found, 1, TPAR_OK);
    CHECK_EQ_INT(0, found.found);

    /* Committing an empty save (every writer failed) is refused; no checkpoint appears. */
    char tmp[1200];
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_begin(dir, 50, tmp, sizeof tmp, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_ckpt_commit(dir, 50, 0, NULL, 0, &err));
    CHECK_STR_CONTAINS(err.msg, "nothing to commit");
    CHECK(!exists(50));

    CHECK_EQ_INT(TPAR_OK, save(100, 0));
    find(&found, 1, TPAR_OK);
    CHECK_EQ_INT(1, found.found);
    CHECK_EQ_INT(100, found.step);
    CHECK_EQ_INT(0, found.skipped);
    CHECK_STR_CONTAINS(found.path, "/step_00000100");
    check_loadable(&found, 100);
    char p[1200];
    snprintf(p, sizeof p, "%s/latest", dir);
    size_t n = 0;
    char *latest = (char *)io_test_read(p, &n);
    CHECK(latest && n == 14 && memcmp(latest, "step_00000100\n", 14) == 0);
    free(latest);
    /* The manifest lists both files with the crc32 of their bytes. */
    char mp[TPAR_CKPT_PATH_MAX + 32], mf[TPAR_CKPT_PATH_MAX + 32];
    snprintf(mp, sizeof mp, "%s/model.safetensors", found.path);
    uint64_t size = 0;
    uint32_t crc = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_file_crc32(mp, &size, &crc, &err));
    snprintf(mf, sizeof mf, "%s/manifest.json", found.path);
    char *manifest = (char *)io_test_read(mf, &n);
    char needle[128];
    snprintf(needle, sizeof needle, "\"crc32\": %u", crc);
    CHECK_STR_CONTAINS(manifest, needle);
    CHECK_STR_CONTAINS(manifest, "\"state.json\"");
    free(manifest);

    /* Killed mid-save: the previous checkpoint is still the newest, intact. */
    crashed_save(200);
    CHECK_EQ_INT(1, count_entries(".tmp"));
    find(&found, 1, TPAR_OK);
    CHECK_EQ_INT(100, found.step);
    CHECK_EQ_INT(0, found.skipped); /* a .tmp is not a checkpoint, not even a skipped one */
    check_loadable(&found, 100);
    /* The next save cleans the leftover. */
    CHECK_EQ_INT(TPAR_OK, save(200, 0));
    CHECK_EQ_INT(0, count_entries(".tmp"));
    find(&found, 1, TPAR_OK);
    CHECK_EQ_INT(200, found.step);
    check_loadable(&found, 200);

    /* Newest corrupted in place (same size): found by the crc, skipped with a warning. */
    CHECK_EQ_INT(TPAR_OK, save(300, 0));
    tpar_ckpt_path(p, sizeof p, dir, 300, 0);
    snprintf(mp, sizeof mp, "%s/model.safetensors", p);
    unsigned char *bytes = io_test_read(mp, &n);
    bytes[n - 5] ^= 0x40;
    io_test_write(mp, bytes, n);
    find(&found, 1, TPAR_OK);
    CHECK_EQ_INT(200, found.step);
    CHECK_EQ_INT(1, found.skipped);
    CHECK_STR_CONTAINS(found.warning, "step_00000300");
    CHECK_STR_CONTAINS(found.warning, "model.safetensors: tensor 'w' has crc32"); /* names the tensor */
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_ckpt_verify(p, 1, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_verify(p, 0, &err)); /* sizes alone cannot see it */
    /* Truncated: seen by the size check alone. */
    io_test_write(mp, bytes, n - 100);
    free(bytes);
    find(&found, 0, TPAR_OK);
    CHECK_EQ_INT(200, found.step);
    CHECK_STR_CONTAINS(found.warning, "the manifest says");
    CHECK_STR_CONTAINS(found.warning, "truncated");
    /* No manifest: incomplete. */
    snprintf(mf, sizeof mf, "%s/manifest.json", p);
    unlink(mf);
    find(&found, 0, TPAR_OK);
    CHECK_EQ_INT(200, found.step);
    CHECK_STR_CONTAINS(found.warning, "incomplete checkpoint");
    /* A checkpoint directory given directly. */
    tpar_ckpt_path(p, sizeof p, dir, 100, 0);
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_find_latest(p, 1, &found, &err));
    CHECK(found.found && found.step == 100);

    /* Rotation: keep 2 removes older (and invalid) ones, but only once the new one is done. */
    CHECK_EQ_INT(TPAR_OK, save(400, 2));
    CHECK(exists(400) && exists(200) && !exists(300) && !exists(100));
    crashed_save(500);
    CHECK(exists(400) && exists(200)); /* the crash removed nothing */
    CHECK_EQ_INT(TPAR_OK, save(500, 2));
    CHECK(exists(500) && exists(400) && !exists(200));
    CHECK_EQ_INT(0, count_entries(".tmp"));
    /* Saving the same step again replaces it. */
    CHECK_EQ_INT(TPAR_OK, save(500, 2));
    find(&found, 1, TPAR_OK);
    CHECK_EQ_INT(500, found.step);
    check_loadable(&found, 500);
    CHECK(exists(400));

    /* In-place damage elsewhere: a plain file's bytes, a safetensors header. */
    tpar_ckpt_path(p, sizeof p, dir, 500, 0);
    snprintf(mp, sizeof mp, "%s/state.json", p);
    bytes = io_test_read(mp, &n);
    bytes[3] ^= 0x01;
    io_test_write(mp, bytes, n);
    free(bytes);
    find(&found, 1, TPAR_OK);
    CHECK_EQ_INT(400, found.step);
    CHECK_STR_CONTAINS(found.warning, "state.json: crc32");
    CHECK_EQ_INT(TPAR_OK, save(500, 2));
    snprintf(mp, sizeof mp, "%s/model.safetensors", p);
    bytes = io_test_read(mp, &n);
    bytes[8] = '[';
    io_test_write(mp, bytes, n);
    free(bytes);
    find(&found, 1, TPAR_OK);
    CHECK_EQ_INT(400, found.step);
    CHECK_STR_CONTAINS(found.warning, "model.safetensors: header does not start with '{'");
    CHECK_EQ_INT(TPAR_OK, save(500, 2));

    /* A directory renamed by hand does not pass for another step. */
    char p2[1200];
    tpar_ckpt_path(p, sizeof p, dir, 500, 0);
    tpar_ckpt_path(p2, sizeof p2, dir, 700, 0);
    CHECK(rename(p, p2) == 0);
    find(&found, 0, TPAR_OK);
    CHECK_EQ_INT(400, found.step);
    CHECK_STR_CONTAINS(found.warning, "step_00000700: the manifest is for step 500");
    CHECK(rename(p2, p) == 0);

    /* All corrupt: an error that says why, not a silent fresh start. */
    tpar_ckpt_path(p, sizeof p, dir, 500, 0);
    snprintf(mf, sizeof mf, "%s/manifest.json", p);
    io_test_write(mf, "{not json", 9);
    tpar_ckpt_path(p, sizeof p, dir, 400, 0);
    snprintf(mf, sizeof mf, "%s/manifest.json", p);
    unlink(mf);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_ckpt_find_latest(dir, 1, &found, &err));
    CHECK_STR_CONTAINS(err.msg, "no valid checkpoint");
    CHECK_STR_CONTAINS(err.msg, "step_00000500");
    CHECK_EQ_INT(2, found.skipped);
}

static void test_kv(void) {
    char p[1200];
    snprintf(p, sizeof p, "%s/state.json", dir);
    tpar_err_t err = {0};
    tpar_kv_t *kv = tpar_kv_new();
    CHECK_EQ_INT(TPAR_OK, tpar_kv_set_i64(kv, "step", -5));
    CHECK_EQ_INT(TPAR_OK, tpar_kv_set_i64(kv, "step", 1234567890123LL)); /* replaces */
    CHECK_EQ_INT(TPAR_OK, tpar_kv_set_u64(kv, "rng.0", 0xfedcba9876543210ull));
    CHECK_EQ_INT(TPAR_OK, tpar_kv_set_f64(kv, "lr", 0.1 + 0.2));
    CHECK_EQ_INT(TPAR_OK, tpar_kv_set_f64(kv, "loss", NAN));
    CHECK_EQ_INT(TPAR_OK, tpar_kv_set_str(kv, "config.model", "gpt2-124m"));
    CHECK_EQ_INT(TPAR_OK, tpar_kv_save(kv, p, &err));
    tpar_kv_free(kv);
    kv = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_kv_load(p, &kv, &err));
    int64_t i = 0;
    uint64_t u = 0;
    double d = 0;
    const char *s = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_kv_get_i64(kv, "step", &i, &err));
    CHECK_EQ_INT(1234567890123LL, i);
    CHECK_EQ_INT(TPAR_OK, tpar_kv_get_u64(kv, "rng.0", &u, &err));
    CHECK(u == 0xfedcba9876543210ull);
    CHECK_EQ_INT(TPAR_OK, tpar_kv_get_f64(kv, "lr", &d, &err));
    CHECK(d == 0.1 + 0.2); /* bit-exact through the text */
    CHECK_EQ_INT(TPAR_OK, tpar_kv_get_f64(kv, "loss", &d, &err));
    CHECK(isnan(d));
    CHECK_EQ_INT(TPAR_OK, tpar_kv_get_str(kv, "config.model", &s, &err));
    CHECK(s && strcmp(s, "gpt2-124m") == 0);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_kv_get_i64(kv, "missing", &i, &err));
    CHECK_STR_CONTAINS(err.msg, "missing key 'missing'");
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_kv_get_i64(kv, "config.model", &i, &err));
    CHECK_STR_CONTAINS(err.msg, "key 'config.model' is not an integer");
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_kv_get_u64(kv, "config.model", &u, &err));
    CHECK(tpar_kv_has(kv, "lr") && !tpar_kv_has(kv, "nope"));
    tpar_kv_free(kv);
    io_test_write(p, "{\"step\": 1,\n \"x\": }", 19);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_kv_load(p, &kv, &err));
    CHECK_STR_CONTAINS(err.msg, "line 2");
    snprintf(p, sizeof p, "%s/nope.json", dir);
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_kv_load(p, &kv, &err));

    /* Metrics: one object per line, appended across opens. */
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    kv = tpar_kv_new();
    for (int run = 0; run < 2; run++) {
        tpar_metrics_t *m = NULL;
        CHECK_EQ_INT(TPAR_OK, tpar_metrics_open(p, &m, &err));
        for (int step = 0; step < 2; step++) {
            tpar_kv_clear(kv);
            tpar_kv_set_i64(kv, "step", run * 2 + step);
            tpar_kv_set_f64(kv, "loss", step ? 2.5 : INFINITY);
            CHECK_EQ_INT(TPAR_OK, tpar_metrics_write(m, kv, &err));
        }
        tpar_metrics_close(m);
    }
    tpar_kv_free(kv);
    size_t n = 0;
    char *text = (char *)io_test_read(p, &n);
    CHECK(text && n > 0);
    if (text) {
        text = realloc(text, n + 1);
        text[n] = '\0';
        CHECK_STR_CONTAINS(text, "{\"step\":0,\"loss\":null}\n{\"step\":1,\"loss\":2.5}\n{\"step\":2,");
        CHECK_STR_CONTAINS(text, "{\"step\":3,\"loss\":2.5}\n");
        int lines = 0;
        for (size_t k = 0; k < n; k++) lines += text[k] == '\n';
        CHECK_EQ_INT(4, lines);
    }
    free(text);
}

/* A FIFO in place of a file never blocks: each open path of io reports it. */
static void test_fifo(void) {
    tpar_err_t err = {0};
    char p[1200], q[1200];
    poison_step = -1;
    CHECK_EQ_INT(TPAR_OK, save(10, 0));
    snprintf(p, sizeof p, "%s/step_00000010/state.json", dir);
    unlink(p);
    CHECK(mkfifo(p, 0644) == 0);
    tpar_kv_t *kv = NULL;
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_kv_load(p, &kv, &err));
    CHECK_STR_CONTAINS(err.msg, "is a FIFO, expected a regular file");
    tpar_ckpt_found_t found;
    snprintf(q, sizeof q, "%s/step_00000010", dir);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_ckpt_verify(q, 1, &err));
    CHECK_STR_CONTAINS(err.msg, "state.json: not a regular file");
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_ckpt_find_latest(dir, 0, &found, &err));
    tpar_st_file_t *f = NULL;
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_st_open(p, &f, &err));
    CHECK_STR_CONTAINS(err.msg, "is a FIFO");
    tpar_tokens_t t;
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_tokens_load(p, &t, &err));
    CHECK_STR_CONTAINS(err.msg, "data file");
    tpar_metrics_t *m = NULL;
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_metrics_open(p, &m, &err));
    uint64_t size;
    uint32_t crc;
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_file_crc32(p, &size, &crc, &err));
    /* The manifest itself a FIFO: the checkpoint is unusable, not a hang. */
    unlink(p);
    snprintf(p, sizeof p, "%s/step_00000010/manifest.json", dir);
    unlink(p);
    CHECK(mkfifo(p, 0644) == 0);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_ckpt_verify(q, 0, &err));
    CHECK_STR_CONTAINS(err.msg, "is a FIFO");
    /* A writer's file a FIFO. */
    tpar_st_writer_t *w = NULL;
    const int64_t shape[1] = {4};
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_new(&w, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "w", TPAR_ST_F32, 1, shape, &err));
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_st_writer_create(w, p, &err));
    tpar_st_writer_free(w);
    CHECK_EQ_INT(TPAR_OK, tpar_io_rmtree(q, &err));
}

/* `latest` cannot be replaced (its temporary file's name is taken by a directory, as a full disk
 * would fail the write): the checkpoint is still committed and found; a warning says why. */
static void test_latest(void) {
    tpar_err_t err = {0};
    char p[1200], warn[1024] = "x";
    CHECK_EQ_INT(TPAR_OK, save(20, 0));
    snprintf(p, sizeof p, "%s/latest.tmp", dir);
    CHECK(mkdir(p, 0755) == 0);
    char tmp[1200];
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_begin(dir, 30, tmp, sizeof tmp, &err));
    CHECK_EQ_INT(TPAR_OK, write_files(tmp, 30, 0, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_commit(dir, 30, 0, warn, sizeof warn, &err));
    CHECK_STR_CONTAINS(warn, "checkpoint step 30 is committed, but");
    CHECK_STR_CONTAINS(warn, "latest was not updated");
    snprintf(p, sizeof p, "%s/latest", dir);
    CHECK(access(p, F_OK) != 0); /* the stale pointer (step 20) is gone, not left wrong */
    tpar_ckpt_found_t found;
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_find_latest(dir, 1, &found, &err));
    CHECK(found.found && found.step == 30);
    snprintf(p, sizeof p, "%s/latest.tmp", dir);
    rmdir(p);
    CHECK_EQ_INT(TPAR_OK, save(40, 0)); /* and the next save writes it again */
    CHECK(warn[0]);
    snprintf(p, sizeof p, "%s/latest", dir);
    size_t n = 0;
    char *text = (char *)io_test_read(p, &n);
    CHECK(text && n == 14 && !memcmp(text, "step_00000040\n", 14));
    free(text);
}

/* Non-finite weights: the manifest records the tensor, loading refuses the checkpoint and falls
 * back to the finite one, and rotation never removes the newest finite checkpoint for it. */
static void test_nonfinite(void) {
    tpar_err_t err = {0};
    char p[1200];
    poison_step = 60;
    CHECK_EQ_INT(TPAR_OK, save(50, 0));
    CHECK_EQ_INT(TPAR_OK, save(60, 1)); /* keep 1: the NaN checkpoint must not count */
    CHECK(exists(50) && !exists(40)); /* the NaN one does not count: 50 is the one kept ... */
    CHECK(!exists(60));                /* ... and the NaN one, invalid, is removed like a corrupt one */
    snprintf(p, sizeof p, "%s/step_00000050", dir);
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_verify(p, 1, &err));
    tpar_ckpt_found_t found;
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_find_latest(dir, 0, &found, &err));
    CHECK(found.found && found.step == 50);
    poison_step = -1;
    /* A NaN written into a committed checkpoint in place (crc32s recomputed: a checkpoint from
     * before the manifest recorded it) is caught by the full check, naming the tensor. */
    CHECK_EQ_INT(TPAR_OK, save(70, 0));
    poison_step = 70;
    char tmp[1200];
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_begin(dir, 70, tmp, sizeof tmp, &err));
    CHECK_EQ_INT(TPAR_OK, write_files(tmp, 70, 0, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_commit(dir, 70, 0, NULL, 0, &err));
    poison_step = -1;
    snprintf(p, sizeof p, "%s/step_00000070/manifest.json", dir);
    size_t n = 0;
    char *text = (char *)io_test_read(p, &n);
    if (text && (text = realloc(text, n + 1))) text[n] = '\0'; /* a C string for strstr */
    CHECK(text && strstr(text, "\"nonfinite\": \"w\""));
    char *cut = text ? strstr(text, ",\n   \"nonfinite\": \"w\"") : NULL;
    CHECK(cut != NULL);
    if (cut) {
        memmove(cut, cut + strlen(",\n   \"nonfinite\": \"w\""), strlen(cut + strlen(",\n   \"nonfinite\": \"w\"")) + 1);
        io_test_write(p, text, strlen(text));
    }
    free(text);
    snprintf(p, sizeof p, "%s/step_00000070", dir);
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_verify(p, 0, &err)); /* sizes alone cannot see it */
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_ckpt_verify(p, 1, &err));
    CHECK_STR_CONTAINS(err.msg, "tensor 'w' holds non-finite values");
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_find_latest(dir, 1, &found, &err));
    CHECK(found.found && found.step == 50 && found.skipped == 1);
    CHECK_STR_CONTAINS(found.warning, "non-finite");

    /* By dtype: an I32 whose bits read as a float Inf is finite; a BF16 Inf and an F16 NaN are
     * not; the first in file order is named. */
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_begin(dir, 80, tmp, sizeof tmp, &err));
    CHECK_EQ_INT(TPAR_OK, write_files(tmp, 80, 0, &err));
    char xp[1300];
    snprintf(xp, sizeof xp, "%s/extra.safetensors", tmp);
    tpar_st_writer_t *w = NULL;
    const int64_t one[1] = {1}, two[1] = {2};
    const uint32_t ibits[1] = {0x7f800000u};
    const uint16_t bf[2] = {0x3f80u, 0xff80u}, hf[2] = {0x3c00u, 0x7e00u};
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_new(&w, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "i", TPAR_ST_I32, 1, one, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "b", TPAR_ST_BF16, 1, two, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_add(w, "h", TPAR_ST_F16, 1, two, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_create(w, xp, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "i", NULL, ibits, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "b", NULL, bf, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_write(w, "h", NULL, hf, &err));
    CHECK_EQ_INT(TPAR_OK, tpar_st_writer_close(w, &err));
    tpar_st_writer_free(w);
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_commit(dir, 80, 0, NULL, 0, &err));
    snprintf(p, sizeof p, "%s/step_00000080", dir);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_ckpt_verify(p, 0, &err));
    CHECK_STR_CONTAINS(err.msg, "extra.safetensors: tensor 'b' holds non-finite values");
    CHECK_EQ_INT(TPAR_OK, tpar_io_rmtree(p, &err));
}

/* One job per directory. */
static void test_lock(void) {
    tpar_err_t err = {0};
    char sub[1200], p[1300];
    snprintf(sub, sizeof sub, "%s/locked", dir);
    tpar_ckpt_lock_t *a = NULL, *b = NULL;
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_lock(sub, -1, 0, &a, &err));
    snprintf(p, sizeof p, "%s/%s", sub, TPAR_CKPT_LOCK);
    size_t n = 0;
    char *text = (char *)io_test_read(p, &n), want[32];
    snprintf(want, sizeof want, "%ld\n", (long)getpid());
    CHECK(text && n == strlen(want) && !memcmp(text, want, n));
    free(text);
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_ckpt_lock(sub, -1, 0, &b, &err));
    snprintf(want, sizeof want, "pid %ld holds", (long)getpid());
    CHECK_STR_CONTAINS(err.msg, want);
    CHECK_STR_CONTAINS(err.msg, "in use by another job");
    /* The descriptor handed to a child (a rank) is recognised as the lock (nothing to release);
     * another description of the same file is not. */
    b = a;
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_lock(sub, tpar_ckpt_lock_fd(a), 0, &b, &err));
    CHECK(b == NULL);
    int other = open(p, O_RDONLY);
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_ckpt_lock(sub, other, 0, &b, &err)); /* same file, not the holder */
    close(other);
    tpar_ckpt_unlock(a);
    /* A holder killed with SIGKILL releases it. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        tpar_ckpt_lock_t *c = NULL;
        char ok = tpar_ckpt_lock(sub, -1, 0, &c, NULL) == TPAR_OK ? 'y' : 'n';
        if (write(fds[1], &ok, 1) != 1) _exit(1);
        for (;;) pause();
    }
    char ok = 0;
    CHECK(read(fds[0], &ok, 1) == 1 && ok == 'y');
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_ckpt_lock(sub, -1, 0, &b, &err));
    snprintf(want, sizeof want, "pid %ld holds", (long)pid);
    CHECK_STR_CONTAINS(err.msg, want);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fds[0]), close(fds[1]);
    CHECK_EQ_INT(TPAR_OK, tpar_ckpt_lock(sub, -1, 0, &b, &err));
    tpar_ckpt_unlock(b);
}

int main(void) {
    char root[900];
    io_test_scratch(root, sizeof root, "ckpt");
    snprintf(dir, sizeof dir, "%s/run/ckpt", root); /* begin creates missing parents */
    test_checkpoints();
    alarm(60); /* a FIFO that blocks an open would hang: fail instead */
    snprintf(dir, sizeof dir, "%s/hostile", root);
    test_fifo();
    test_latest();
    test_nonfinite();
    test_lock();
    alarm(0);
    snprintf(dir, sizeof dir, "%s", root);
    test_kv();
    tpar_err_t err = {0};
    if (tpar_io_rmtree(root, &err) != TPAR_OK) fprintf(stderr, "cleanup: %s\n", err.msg);
    return check_finish("test_io_ckpt");
}
