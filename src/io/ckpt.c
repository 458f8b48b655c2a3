/* Atomic checkpoint directories: DIR/step_N.tmp is filled, checksummed, fsynced and renamed
 * to DIR/step_N (the commit point); DIR/latest is then replaced atomically and old
 * checkpoints rotated. Loading verifies the manifest and falls back to older checkpoints. */
#define _XOPEN_SOURCE 700
#include "io_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MANIFEST_FORMAT "tpar-checkpoint"
#define MANIFEST_VERSION 1
#define MANIFEST_MAX (64u << 20) /* bytes; a manifest lists files and tensors, far less */

tpar_status tpar_ckpt_path(char *buf, size_t cap, const char *dir, int64_t step, int tmp) {
    if (!buf || !dir || !*dir || step < 0) return TPAR_ERR_INVALID_ARG;
    int n = snprintf(buf, cap, "%s/step_%08lld%s", dir, (long long)step, tmp ? ".tmp" : "");
    return (n < 0 || (size_t)n >= cap) ? TPAR_ERR_INVALID_ARG : TPAR_OK;
}

static tpar_status ckpt_path_err(char *buf, size_t cap, const char *dir, int64_t step, int tmp, tpar_err_t *err) {
    if (tpar_ckpt_path(buf, cap, dir, step, tmp) != TPAR_OK)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "checkpoint: bad directory or step (%s, %lld)",
                            dir ? dir : "(null)", (long long)step);
    return TPAR_OK;
}

/* "step_<digits>" -> step, else -1. */
static int64_t parse_step_name(const char *name) {
    if (strncmp(name, "step_", 5) != 0 || !name[5]) return -1;
    int64_t v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* a/b into buf; TPAR_ERR_INVALID_ARG if it does not fit. */
static tpar_status join_path(char *buf, size_t cap, const char *a, const char *b, tpar_err_t *err) {
    int n = snprintf(buf, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "path too long: %s/%s", a, b);
    return TPAR_OK;
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static tpar_status mkdir_p(const char *dir, tpar_err_t *err) {
    char p[TPAR_CKPT_PATH_MAX];
    if ((size_t)snprintf(p, sizeof p, "%s", dir) >= sizeof p)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "path too long: %s", dir);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return tpar_err_set(err, TPAR_ERR_IO, "cannot create directory %s: %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return tpar_err_set(err, TPAR_ERR_IO, "%s is not a directory", dir);
    return TPAR_OK;
}

/* ---- checksums --------------------------------------------------------------------------- */

/* Index of the first of the n / sizeof(T) elements at p whose bits under `mask` are all ones,
 * or -1: for a floating-point dtype, the first NaN or Inf (all exponent bits set). A
 * branch-free pass first (it vectorises: faster than the crc32 it rides along with), then the
 * search only when there is something to find. One function per element width. */
#define DEFINE_FIRST_ALL_ONES(name, T)                                                              \
    static int64_t name(const unsigned char *p, size_t n, T mask) {                                \
        size_t m = n / sizeof(T);                                                                  \
        T any = 0;                                                                                 \
        for (size_t i = 0; i < m; i++) {                                                           \
            T u;                                                                                   \
            memcpy(&u, p + i * sizeof(T), sizeof(T)); /* little-endian host (io_internal.h) */     \
            any |= (T)((u & mask) == mask);                                                        \
        }                                                                                          \
        for (size_t i = 0; any && i < m; i++) {                                                    \
            T u;                                                                                   \
            memcpy(&u, p + i * sizeof(T), sizeof(T));                                              \
            if ((u & mask) == mask) return (int64_t)i;                                             \
        }                                                                                          \
        return -1;                                                                                 \
    }
DEFINE_FIRST_ALL_ONES(first_all_ones8, uint8_t)
DEFINE_FIRST_ALL_ONES(first_all_ones16, uint16_t)
DEFINE_FIRST_ALL_ONES(first_all_ones32, uint32_t)
DEFINE_FIRST_ALL_ONES(first_all_ones64, uint64_t)

/* Index of the first NaN or Inf among the n bytes of elements of dtype dt, or -1 (dtypes that
 * have no non-finite values: integers, bool). F8_E4M3 (the "fn" variant) has no Inf and its
 * NaN is S.1111.111. */
static int64_t first_nonfinite(const unsigned char *p, size_t n, tpar_st_dtype dt) {
    switch (dt) {
    case TPAR_ST_F32: return first_all_ones32(p, n, 0x7f800000u);
    case TPAR_ST_F64: return first_all_ones64(p, n, 0x7ff0000000000000ull);
    case TPAR_ST_F16: return first_all_ones16(p, n, 0x7c00u);
    case TPAR_ST_BF16: return first_all_ones16(p, n, 0x7f80u);
    case TPAR_ST_F8_E5M2: return first_all_ones8(p, n, 0x7cu);
    case TPAR_ST_F8_E4M3: return first_all_ones8(p, n, 0x7fu);
    default: return -1;
    }
}

/* crc32 of up to len bytes from off (fewer at end of file); *got says how many. With a
 * tensor's dtype (not TPAR_ST_DTYPE_COUNT), *bad receives the index of its first non-finite
 * element, or -1. */
static tpar_status crc_range(int fd, const char *path, uint64_t off, uint64_t len, tpar_st_dtype dt, int64_t *bad,
                             uint64_t *got, uint32_t *crc, tpar_err_t *err) {
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf) return tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory checksumming %s", path);
    uLong c = crc32(0L, Z_NULL, 0);
    uint64_t done = 0;
    size_t es = dt < TPAR_ST_DTYPE_COUNT ? tpar_st_dtype_size(dt) : 0;
    if (bad) *bad = -1;
    while (done < len) {
        size_t want = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
        ssize_t r = tpar_io_pread_full(fd, buf, want, off + done);
        if (r < 0) {
            int e = errno;
            free(buf);
            return tpar_err_set(err, TPAR_ERR_IO, "cannot read %s: %s", path, strerror(e));
        }
        c = crc32(c, buf, (uInt)r);
        if (bad && es && *bad < 0) { /* chunks hold whole elements: CHUNK is a multiple of 8 */
            int64_t k = first_nonfinite(buf, (size_t)r, dt);
            if (k >= 0) *bad = (int64_t)(done / es) + k;
        }
        done += (uint64_t)r;
        if ((size_t)r < want) break;
    }
    free(buf);
    *got = done;
    *crc = (uint32_t)c;
    return TPAR_OK;
}

static int by_begin(const void *a, const void *b) {
    const tpar_st_tensor_t *x = *(const tpar_st_tensor_t *const *)a, *y = *(const tpar_st_tensor_t *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* The manifest entry of a file, in one sequential read: {"size", "crc32"} and, for a
 * safetensors file (validated on the way), "tensors": {name: crc32} so that a corrupted
 * checkpoint names the tensor, and "nonfinite": the first tensor (in file order) holding a NaN
 * or an Inf, if any. The file's crc32 combines the header's and the tensors'. */
static tpar_status file_entry(const char *path, int fd, json_t **out, tpar_err_t *err) {
    *out = NULL;
    tpar_st_file_t *sf = NULL;
    tpar_status st = has_suffix(path, ".safetensors") ? tpar_st_open(path, &sf, err) : TPAR_OK;
    if (st != TPAR_OK) return st;
    size_t n = tpar_st_count(sf);
    const tpar_st_tensor_t **order = malloc((n + 1) * sizeof *order);
    json_t *entry = json_object(), *tensors = sf ? json_object() : NULL;
    if (!order || !entry || (sf && !tensors)) st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory checksumming %s", path);
    for (size_t i = 0; st == TPAR_OK && i < n; i++) order[i] = tpar_st_tensor(sf, i);
    if (st == TPAR_OK && n) qsort(order, n, sizeof *order, by_begin);
    /* Range 0: the whole file, or a safetensors file's length field and header. */
    uint64_t base = sf ? tpar_io_st_data_start(sf) : 0, size = 0, got = 0;
    uint32_t crc = 0, c = 0;
    const tpar_st_tensor_t *nonfinite = NULL;
    if (st == TPAR_OK) st = crc_range(fd, path, 0, sf ? base : UINT64_MAX, TPAR_ST_DTYPE_COUNT, NULL, &size, &crc, err);
    for (size_t i = 0; st == TPAR_OK && i < n; i++) { /* the tensors tile the rest, in order */
        const tpar_st_tensor_t *t = order[i];
        int64_t bad = -1;
        st = crc_range(fd, path, base + t->begin, t->end - t->begin, t->dtype, &bad, &got, &c, err);
        if (bad >= 0 && !nonfinite) nonfinite = t;
        if (st == TPAR_OK && json_object_set_new(tensors, t->name, json_integer((json_int_t)c)) != 0)
            st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory checksumming %s", path);
        crc = (uint32_t)crc32_combine(crc, c, (z_off_t)got);
        size += got;
    }
    if (st == TPAR_OK && (json_object_set_new(entry, "size", json_integer((json_int_t)size)) != 0 ||
                          json_object_set_new(entry, "crc32", json_integer((json_int_t)crc)) != 0 ||
                          (tensors && json_object_set(entry, "tensors", tensors) != 0) ||
                          (nonfinite && json_object_set_new(entry, "nonfinite", json_string(nonfinite->name)) != 0)))
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory checksumming %s", path);
    json_decref(tensors);
    free(order);
    tpar_st_close(sf);
    if (st != TPAR_OK) {
        json_decref(entry);
        return st;
    }
    *out = entry;
    return TPAR_OK;
}

tpar_status tpar_file_crc32(const char *path, uint64_t *size, uint32_t *crc, tpar_err_t *err) {
    int fd;
    tpar_status st = tpar_io_open_file(path, O_RDONLY, "file", &fd, err);
    if (st != TPAR_OK) return st;
    st = crc_range(fd, path, 0, UINT64_MAX, TPAR_ST_DTYPE_COUNT, NULL, size, crc, err);
    close(fd);
    return st;
}

/* ---- saving ------------------------------------------------------------------------------ */

tpar_status tpar_ckpt_begin(const char *dir, int64_t step, char *tmp_dir, size_t cap, tpar_err_t *err) {
    tpar_status st = ckpt_path_err(tmp_dir, cap, dir, step, 1, err);
    if (st != TPAR_OK || (st = mkdir_p(dir, err)) != TPAR_OK) return st;
    /* Leftovers of crashed saves and half-done removals: never a checkpoint, safe to drop. */
    DIR *d = opendir(dir);
    if (!d) return tpar_err_set(err, TPAR_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    struct dirent *e;
    while (st == TPAR_OK && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "step_", 5) != 0 || !has_suffix(e->d_name, ".tmp")) continue;
        char p[TPAR_CKPT_PATH_MAX];
        if ((st = join_path(p, sizeof p, dir, e->d_name, err)) == TPAR_OK) st = tpar_io_rmtree(p, err);
    }
    closedir(d);
    if (st != TPAR_OK) return st;
    if (mkdir(tmp_dir, 0755) != 0)
        return tpar_err_set(err, TPAR_ERR_IO, "cannot create %s: %s", tmp_dir, strerror(errno));
    return TPAR_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Regular files of a checkpoint directory except the manifest, sorted. */
static tpar_status list_files(const char *dir, char ***names, size_t *count, tpar_err_t *err) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return tpar_err_set(err, TPAR_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    tpar_status st = TPAR_OK;
    size_t cap = 0;
    struct dirent *e;
    while (st == TPAR_OK && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, TPAR_CKPT_MANIFEST)) continue;
        char p[TPAR_CKPT_PATH_MAX];
        struct stat sb;
        if ((st = join_path(p, sizeof p, dir, e->d_name, err)) != TPAR_OK) {
            break;
        } else if (lstat(p, &sb) != 0) {
            st = tpar_err_set(err, TPAR_ERR_IO, "cannot stat %s: %s", p, strerror(errno));
        } else if (!S_ISREG(sb.st_mode)) {
            st = tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: checkpoints hold plain files only", p);
        } else {
            if (*count == cap) {
                cap = cap ? 2 * cap : 16;
                char **n = realloc(*names, cap * sizeof *n);
                if (!n) {
                    st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory listing %s", dir);
                    break;
                }
                *names = n;
            }
            if (!((*names)[*count] = strdup(e->d_name)))
                st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory listing %s", dir);
            else
                (*count)++;
        }
    }
    closedir(d);
    if (*count) qsort(*names, *count, sizeof **names, cmp_str);
    return st;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* fsyncs every file, reads each back once for size and crc32 (no rank needs another's data
 * for this), and writes the manifest. */
static tpar_status write_manifest(const char *tmp, int64_t step, tpar_err_t *err) {
    char **names;
    size_t n;
    tpar_status st = list_files(tmp, &names, &n, err);
    if (st == TPAR_OK && n == 0) st = tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: nothing to commit (no files)", tmp);
    json_t *root = json_pack("{s:s, s:i, s:I, s:{}}", "format", MANIFEST_FORMAT, "version", MANIFEST_VERSION,
                             "step", (json_int_t)step, "files");
    json_t *files = json_object_get(root, "files");
    if (st == TPAR_OK && !root) st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory for the manifest");
    for (size_t i = 0; st == TPAR_OK && i < n; i++) {
        char p[TPAR_CKPT_PATH_MAX];
        if ((st = join_path(p, sizeof p, tmp, names[i], err)) != TPAR_OK) break;
        int fd = -1;
        json_t *entry = NULL;
        if ((st = tpar_io_open_file(p, O_RDONLY, "checkpoint file", &fd, err)) != TPAR_OK) break;
        if (fsync(fd) != 0)
            st = tpar_err_set(err, TPAR_ERR_IO, "cannot flush %s: %s", p, strerror(errno));
        else
            st = file_entry(p, fd, &entry, err);
        if (st == TPAR_OK && json_object_set_new(files, names[i], entry) != 0)
            st = tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: file name is not valid UTF-8", p);
        if (fd >= 0) close(fd);
    }
    char *text = st == TPAR_OK ? json_dumps(root, JSON_INDENT(1)) : NULL;
    if (st == TPAR_OK && !text) st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory for the manifest");
    if (st == TPAR_OK) {
        char p[TPAR_CKPT_PATH_MAX];
        if ((st = join_path(p, sizeof p, tmp, TPAR_CKPT_MANIFEST, err)) == TPAR_OK)
            st = tpar_io_write_atomic(p, text, strlen(text), err);
    }
    free(text);
    json_decref(root);
    free_names(names, n);
    return st;
}

/* The steps of the step_N directories in DIR, newest first (none if DIR is missing). */
static tpar_status list_steps(const char *dir, int64_t **steps, size_t *count, tpar_err_t *err);

/* Keeps the newest `keep` valid checkpoints up to `step`; removes older and invalid ones there.
 * Checkpoints newer than `step` (an abandoned run resumed from an older one) are left alone.
 * A removal renames first, so a crash never leaves a half-deleted directory named step_N. */
static tpar_status rotate(const char *dir, int64_t step, int keep, tpar_err_t *err) {
    int64_t *steps;
    size_t n;
    tpar_status st = list_steps(dir, &steps, &n, err);
    int kept = 0;
    for (size_t i = 0; st == TPAR_OK && i < n; i++) {
        if (steps[i] > step) continue;
        char p[TPAR_CKPT_PATH_MAX], gone[TPAR_CKPT_PATH_MAX + 8];
        tpar_ckpt_path(p, sizeof p, dir, steps[i], 0);
        if (kept < keep && tpar_ckpt_verify(p, 0, NULL) == TPAR_OK) {
            kept++;
            continue;
        }
        snprintf(gone, sizeof gone, "%s.del.tmp", p);
        if (rename(p, gone) != 0)
            st = tpar_err_set(err, TPAR_ERR_IO, "cannot remove old checkpoint %s: %s", p, strerror(errno));
        else
            st = tpar_io_rmtree(gone, err);
    }
    free(steps);
    return st;
}

tpar_status tpar_ckpt_commit(const char *dir, int64_t step, int keep, char *warning, size_t wcap, tpar_err_t *err) {
    if (warning && wcap) warning[0] = 0;
    char tmp[TPAR_CKPT_PATH_MAX], fin[TPAR_CKPT_PATH_MAX], old[TPAR_CKPT_PATH_MAX + 8];
    tpar_status st = ckpt_path_err(tmp, sizeof tmp, dir, step, 1, err);
    if (st == TPAR_OK) st = ckpt_path_err(fin, sizeof fin, dir, step, 0, err);
    if (st == TPAR_OK) st = write_manifest(tmp, step, err);
    if (st == TPAR_OK) st = tpar_io_fsync_dir(tmp, err);
    if (st != TPAR_OK) return st;
    /* A checkpoint of the same step (a rerun) is moved aside first: rename cannot replace a
     * non-empty directory. */
    snprintf(old, sizeof old, "%s.old.tmp", fin);
    struct stat sb;
    if (stat(fin, &sb) == 0 && rename(fin, old) != 0)
        return tpar_err_set(err, TPAR_ERR_IO, "cannot move aside %s: %s", fin, strerror(errno));
    if (rename(tmp, fin) != 0)
        return tpar_err_set(err, TPAR_ERR_IO, "cannot rename %s to %s: %s", tmp, fin, strerror(errno));
    if ((st = tpar_io_fsync_dir(dir, err)) != TPAR_OK || (st = tpar_io_rmtree(old, err)) != TPAR_OK) return st;
    char latest[TPAR_CKPT_PATH_MAX], text[64];
    if ((st = join_path(latest, sizeof latest, dir, "latest", err)) != TPAR_OK) return st;
    int len = snprintf(text, sizeof text, "step_%08lld\n", (long long)step);
    /* The checkpoint is committed: `latest` is a pointer for people and tools (loading scans
     * the step directories), so failing to update it (a full disk) is a warning, not a failure
     * of the save. A stale `latest` is removed so that it does not point at the wrong step. */
    tpar_err_t le = {0};
    if (tpar_io_write_atomic(latest, text, (size_t)len, &le) != TPAR_OK) {
        int gone = unlink(latest) == 0 || errno == ENOENT;
        if (warning && wcap)
            snprintf(warning, wcap, "checkpoint step %lld is committed, but %s was not updated (%s); %s", (long long)step,
                     latest, le.msg, gone ? "it was removed (loading scans the step directories, not this pointer)"
                                          : "it is stale (loading scans the step directories, not this pointer)");
    }
    return keep > 0 ? rotate(dir, step, keep, err) : TPAR_OK;
}

/* ---- loading ----------------------------------------------------------------------------- */

static tpar_status nonfinite_error(const char *path, const char *tensor, tpar_err_t *err) {
    return tpar_err_set(err, TPAR_ERR_CORRUPT,
                        "%s: tensor '%s' holds non-finite values (NaN or Inf): the training had diverged; refusing "
                        "to use it (hint: an older checkpoint, or train again with a lower --lr)",
                        path, tensor);
}

/* Recomputes a file's manifest entry and compares it with the recorded one; a mismatch names
 * the first tensor whose bytes changed. */
static tpar_status check_entry(const char *path, json_t *want, tpar_err_t *err) {
    int fd;
    tpar_status st = tpar_io_open_file(path, O_RDONLY, "checkpoint file", &fd, err);
    if (st != TPAR_OK) return st;
    json_t *have = NULL;
    st = file_entry(path, fd, &have, err); /* a header now invalid fails here, named */
    close(fd);
    if (st != TPAR_OK) return st;
    json_t *hc = json_object_get(have, "crc32"), *wc = json_object_get(want, "crc32");
    if (!json_equal(json_object_get(have, "size"), json_object_get(want, "size")) || !json_equal(hc, wc)) {
        json_t *wt = json_object_get(want, "tensors"), *v;
        const char *name;
        json_object_foreach(json_object_get(have, "tensors"), name, v) {
            json_t *w = json_object_get(wt, name);
            if (!w) {
                st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: tensor '%s' is not in the manifest", path, name);
                break;
            }
            if (!json_equal(w, v)) {
                st = tpar_err_set(err, TPAR_ERR_CORRUPT,
                                  "%s: tensor '%s' has crc32 0x%08llx, the manifest says 0x%08llx (corrupted)", path,
                                  name, (unsigned long long)json_integer_value(v),
                                  (unsigned long long)json_integer_value(w));
                break;
            }
        }
        if (st == TPAR_OK)
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: crc32 0x%08llx, the manifest says 0x%08llx (corrupted)", path,
                              (unsigned long long)json_integer_value(hc), (unsigned long long)json_integer_value(wc));
    } else if (json_is_string(json_object_get(have, "nonfinite"))) { /* a checkpoint older than the check */
        st = nonfinite_error(path, json_string_value(json_object_get(have, "nonfinite")), err);
    }
    json_decref(have);
    return st;
}

tpar_status tpar_ckpt_verify(const char *ckpt_dir, int full, tpar_err_t *err) {
    char p[TPAR_CKPT_PATH_MAX];
    if (!ckpt_dir) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_ckpt_verify: NULL directory");
    tpar_status st = join_path(p, sizeof p, ckpt_dir, TPAR_CKPT_MANIFEST, err);
    if (st != TPAR_OK) return st;
    json_error_t je;
    struct stat sb;
    if (lstat(p, &sb) != 0 && errno == ENOENT)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: no %s (incomplete checkpoint)", ckpt_dir, TPAR_CKPT_MANIFEST);
    char *text;
    size_t len;
    tpar_err_t re = {0};
    if (tpar_io_read_file(p, "checkpoint manifest", MANIFEST_MAX, &text, &len, &re) != TPAR_OK)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s", re.msg); /* unreadable: not a usable checkpoint */
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s (line %d, column %d)", p, je.text, je.line, je.column);
    const char *format = NULL;
    int version = 0;
    json_t *files = NULL;
    json_int_t step = -1;
    const char *base = strrchr(ckpt_dir, '/');
    int64_t named = parse_step_name(base ? base + 1 : ckpt_dir);
    if (json_unpack(root, "{s:s, s:i, s:I, s:o}", "format", &format, "version", &version, "step", &step, "files",
                    &files) != 0 ||
        strcmp(format, MANIFEST_FORMAT) != 0 || version != MANIFEST_VERSION || !json_is_object(files))
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: not a version %d %s manifest", p, MANIFEST_VERSION,
                          MANIFEST_FORMAT);
    else if (named >= 0 && named != step) /* a directory renamed by hand */
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: the manifest is for step %lld", ckpt_dir, (long long)step);
    const char *name;
    json_t *v;
    json_object_foreach(files, name, v) {
        if (st != TPAR_OK) break;
        json_int_t want_size = -1, want_crc = -1;
        char fp[TPAR_CKPT_PATH_MAX];
        json_t *nf = json_object_get(v, "nonfinite");
        if (json_unpack(v, "{s:I, s:I}", "size", &want_size, "crc32", &want_crc) != 0 || want_size < 0 ||
            want_crc < 0 || want_crc > 0xffffffffLL || strchr(name, '/') || (nf && !json_is_string(nf))) {
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: bad entry for '%s'", p, name);
        } else if (join_path(fp, sizeof fp, ckpt_dir, name, NULL) != TPAR_OK || stat(fp, &sb) != 0) {
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s/%s: listed in the manifest but missing", ckpt_dir, name);
        } else if (!S_ISREG(sb.st_mode)) { /* a FIFO would block the reads that follow */
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: not a regular file", fp);
        } else if (nf) {
            st = nonfinite_error(fp, json_string_value(nf), err);
        } else if ((uint64_t)sb.st_size != (uint64_t)want_size) {
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %lld bytes, the manifest says %lld (truncated?)", fp,
                              (long long)sb.st_size, (long long)want_size);
        } else if (full) {
            st = check_entry(fp, v, err);
        }
    }
    json_decref(root);
    return st;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

static tpar_status list_steps(const char *dir, int64_t **steps, size_t *count, tpar_err_t *err) {
    *steps = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return TPAR_OK;
        return tpar_err_set(err, TPAR_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    }
    size_t cap = 0;
    tpar_status st = TPAR_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t s = parse_step_name(e->d_name);
        if (s < 0) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *n = realloc(*steps, cap * sizeof *n);
            if (!n) {
                st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            *steps = n;
        }
        (*steps)[(*count)++] = s;
    }
    closedir(d);
    if (*count) qsort(*steps, *count, sizeof **steps, cmp_desc);
    return st;
}

tpar_status tpar_ckpt_find_latest(const char *dir, int full, tpar_ckpt_found_t *out, tpar_err_t *err) {
    if (!dir || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_ckpt_find_latest: NULL argument");
    memset(out, 0, sizeof *out);
    char p[TPAR_CKPT_PATH_MAX];
    if (join_path(p, sizeof p, dir, TPAR_CKPT_MANIFEST, err) != TPAR_OK) return TPAR_ERR_INVALID_ARG;
    if (access(p, F_OK) == 0) { /* DIR is itself a checkpoint */
        tpar_status st = tpar_ckpt_verify(dir, full, err); /* reads the manifest safely first */
        if (st != TPAR_OK) return st;
        char *text = NULL;
        size_t len = 0;
        json_int_t step = -1;
        if ((st = tpar_io_read_file(p, "checkpoint manifest", MANIFEST_MAX, &text, &len, err)) != TPAR_OK) return st;
        json_t *root = json_loadb(text, len, 0, NULL);
        free(text);
        if (root) json_unpack(root, "{s:I}", "step", &step);
        json_decref(root);
        out->found = 1;
        out->step = step;
        snprintf(out->path, sizeof out->path, "%s", dir);
        return TPAR_OK;
    }
    int64_t *steps;
    size_t n;
    tpar_status st = list_steps(dir, &steps, &n, err);
    size_t wlen = 0;
    for (size_t i = 0; st == TPAR_OK && i < n && !out->found; i++) {
        tpar_ckpt_path(p, sizeof p, dir, steps[i], 0);
        tpar_err_t e = {0};
        if (tpar_ckpt_verify(p, full, &e) == TPAR_OK) {
            out->found = 1;
            out->step = steps[i];
            snprintf(out->path, sizeof out->path, "%s", p);
        } else {
            out->skipped++;
            if (wlen < sizeof out->warning)
                wlen += (size_t)snprintf(out->warning + wlen, sizeof out->warning - wlen,
                                         "%sskipped checkpoint %s: %s", wlen ? "; " : "", p, e.msg);
        }
    }
    free(steps);
    if (st == TPAR_OK && n > 0 && !out->found)
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "no valid checkpoint in %s: %s", dir, out->warning);
    return st;
}

/* ---- one job per directory --------------------------------------------------------------- */

struct tpar_ckpt_lock {
    int fd;
};

/* The pid written in the lock file, or -1. */
static long lock_holder(int fd) {
    char buf[32];
    ssize_t r = tpar_io_pread_full(fd, buf, sizeof buf - 1, 0);
    if (r <= 0) return -1;
    buf[r] = 0;
    char *end;
    long pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : -1;
}

tpar_status tpar_ckpt_lock(const char *dir, int inherited_fd, int inherit, tpar_ckpt_lock_t **out, tpar_err_t *err) {
    if (!dir || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_ckpt_lock: NULL argument");
    *out = NULL;
    char p[TPAR_CKPT_PATH_MAX];
    tpar_status st = mkdir_p(dir, err);
    if (st != TPAR_OK || (st = join_path(p, sizeof p, dir, TPAR_CKPT_LOCK, err)) != TPAR_OK) return st;
    tpar_ckpt_lock_t *l = malloc(sizeof *l);
    if (!l) return tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory locking %s", dir);
    l->fd = -1;
    struct stat a, b;
    /* The parent's descriptor: the same file, and this description holds the lock (flock on a
     * description that holds it succeeds; on one that does not, it fails or takes it). */
    if (inherited_fd >= 0 && fstat(inherited_fd, &a) == 0 && stat(p, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino && flock(inherited_fd, LOCK_EX | LOCK_NB) == 0) {
        free(l); /* the parent's lock: nothing of ours to release */
        return TPAR_OK;
    }
    if ((st = tpar_io_open_file(p, O_RDWR | O_CREAT, "lock file", &l->fd, err)) != TPAR_OK) {
        free(l);
        return st;
    }
    if (inherit) fcntl(l->fd, F_SETFD, 0); /* kept across exec: the supervisor and the ranks */
    if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        long pid = lock_holder(l->fd);
        close(l->fd);
        free(l);
        if (e == EWOULDBLOCK) {
            char who[48] = "a process that did not write its pid";
            if (pid > 0) snprintf(who, sizeof who, "pid %ld", pid);
            return tpar_err_set(err, TPAR_ERR_IO,
                                "save directory %s is in use by another job (%s holds %s): two jobs writing one "
                                "directory would mix their checkpoints (hint: another --save-dir, or wait for that "
                                "job to end)",
                                dir, who, p);
        }
        return tpar_err_set(err, TPAR_ERR_SYS, "cannot lock %s: %s", p, strerror(e));
    }
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(l->fd, 0) != 0 || tpar_io_pwrite_full(l->fd, text, (size_t)n, 0) != 0) {
        int e = errno;
        close(l->fd);
        free(l);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot write %s: %s", p, strerror(e));
    }
    *out = l;
    return TPAR_OK;
}

int tpar_ckpt_lock_fd(const tpar_ckpt_lock_t *l) { return l ? l->fd : -1; }

void tpar_ckpt_unlock(tpar_ckpt_lock_t *l) {
    if (!l) return;
    close(l->fd); /* the lock goes with the last descriptor of the description */
    free(l);
}
