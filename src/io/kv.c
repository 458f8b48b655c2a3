/* Flat JSON records (training state files, metrics lines), on top of jansson. */
#define _XOPEN_SOURCE 700
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A training state record is a few hundred bytes: anything past this is not one. */
#define TPAR_KV_MAX_FILE (16u << 20)

struct tpar_kv {
    json_t *obj;
};

tpar_kv_t *tpar_kv_new(void) {
    tpar_kv_t *kv = malloc(sizeof *kv);
    if (kv && !(kv->obj = json_object())) {
        free(kv);
        kv = NULL;
    }
    return kv;
}

void tpar_kv_free(tpar_kv_t *kv) {
    if (!kv) return;
    json_decref(kv->obj);
    free(kv);
}

void tpar_kv_clear(tpar_kv_t *kv) {
    if (kv) json_object_clear(kv->obj);
}

static tpar_status kv_set(tpar_kv_t *kv, const char *key, json_t *v) {
    if (!kv || !key) {
        json_decref(v);
        return TPAR_ERR_INVALID_ARG;
    }
    if (!v) return TPAR_ERR_NOMEM;
    return json_object_set_new(kv->obj, key, v) == 0 ? TPAR_OK : TPAR_ERR_INVALID_ARG; /* key not UTF-8 */
}

tpar_status tpar_kv_set_i64(tpar_kv_t *kv, const char *key, int64_t v) {
    return kv_set(kv, key, json_integer((json_int_t)v));
}

tpar_status tpar_kv_set_u64(tpar_kv_t *kv, const char *key, uint64_t v) {
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    return kv_set(kv, key, json_string(s));
}

tpar_status tpar_kv_set_f64(tpar_kv_t *kv, const char *key, double v) {
    return kv_set(kv, key, isfinite(v) ? json_real(v) : json_null());
}

tpar_status tpar_kv_set_str(tpar_kv_t *kv, const char *key, const char *v) {
    if (!v) return TPAR_ERR_INVALID_ARG;
    json_t *s = json_string(v);
    if (!s) return TPAR_ERR_INVALID_ARG; /* not UTF-8 */
    return kv_set(kv, key, s);
}

int tpar_kv_has(const tpar_kv_t *kv, const char *key) {
    return kv && key && json_object_get(kv->obj, key) != NULL;
}

static tpar_status kv_get(const tpar_kv_t *kv, const char *key, json_t **v, tpar_err_t *err) {
    if (!kv || !key) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_kv_get: NULL argument");
    if (!(*v = json_object_get(kv->obj, key)))
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "missing key '%s'", key);
    return TPAR_OK;
}

static tpar_status wrong_type(const char *key, const char *want, tpar_err_t *err) {
    return tpar_err_set(err, TPAR_ERR_CORRUPT, "key '%s' is not %s", key, want);
}

tpar_status tpar_kv_get_i64(const tpar_kv_t *kv, const char *key, int64_t *out, tpar_err_t *err) {
    json_t *v = NULL;
    tpar_status st = kv_get(kv, key, &v, err);
    if (st != TPAR_OK) return st;
    if (!json_is_integer(v)) return wrong_type(key, "an integer", err);
    *out = (int64_t)json_integer_value(v);
    return TPAR_OK;
}

tpar_status tpar_kv_get_u64(const tpar_kv_t *kv, const char *key, uint64_t *out, tpar_err_t *err) {
    json_t *v = NULL;
    tpar_status st = kv_get(kv, key, &v, err);
    if (st != TPAR_OK) return st;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return TPAR_OK;
    }
    const char *s = json_string_value(v);
    if (!s || *s < '0' || *s > '9') return wrong_type(key, "an unsigned 64-bit integer (decimal string)", err);
    errno = 0;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end) return wrong_type(key, "an unsigned 64-bit integer (decimal string)", err);
    *out = (uint64_t)x;
    return TPAR_OK;
}

tpar_status tpar_kv_get_f64(const tpar_kv_t *kv, const char *key, double *out, tpar_err_t *err) {
    json_t *v = NULL;
    tpar_status st = kv_get(kv, key, &v, err);
    if (st != TPAR_OK) return st;
    if (json_is_null(v)) {
        *out = NAN;
        return TPAR_OK;
    }
    if (!json_is_number(v)) return wrong_type(key, "a number", err);
    *out = json_number_value(v);
    return TPAR_OK;
}

tpar_status tpar_kv_get_str(const tpar_kv_t *kv, const char *key, const char **out, tpar_err_t *err) {
    json_t *v = NULL;
    tpar_status st = kv_get(kv, key, &v, err);
    if (st != TPAR_OK) return st;
    if (!json_is_string(v)) return wrong_type(key, "a string", err);
    *out = json_string_value(v);
    return TPAR_OK;
}

tpar_status tpar_kv_save(const tpar_kv_t *kv, const char *path, tpar_err_t *err) {
    if (!kv || !path) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_kv_save: NULL argument");
    /* 17 significant digits: doubles read back bit-exactly. */
    char *text = json_dumps(kv->obj, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    if (!text) return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    tpar_status st = tpar_io_write_atomic(path, line, len + 1, err);
    free(line);
    return st;
}

tpar_status tpar_kv_load(const char *path, tpar_kv_t **out, tpar_err_t *err) {
    if (!path || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_kv_load: NULL argument");
    *out = NULL;
    json_error_t je;
    char *text;
    size_t len;
    tpar_status st = tpar_io_read_file(path, "JSON file", TPAR_KV_MAX_FILE, &text, &len, err);
    if (st != TPAR_OK) return st;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s (line %d, column %d)", path, je.text, je.line, je.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: expected a JSON object", path);
    }
    tpar_kv_t *kv = malloc(sizeof *kv);
    if (!kv) {
        json_decref(root);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    }
    kv->obj = root;
    *out = kv;
    return TPAR_OK;
}

/* ---- metrics ----------------------------------------------------------------------------- */

struct tpar_metrics {
    FILE *f;
    char *path;
};

tpar_status tpar_metrics_open(const char *path, tpar_metrics_t **out, tpar_err_t *err) {
    if (!path || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_metrics_open: NULL argument");
    tpar_metrics_t *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    }
    int fd;
    tpar_status st = tpar_io_open_file(path, O_WRONLY | O_CREAT | O_APPEND, "metrics file", &fd, err);
    if (st == TPAR_OK && !(m->f = fdopen(fd, "a"))) {
        st = tpar_err_set(err, TPAR_ERR_IO, "cannot open metrics file %s: %s", path, strerror(errno));
        close(fd);
    }
    if (st != TPAR_OK) {
        free(m->path);
        free(m);
        return st;
    }
    *out = m;
    return TPAR_OK;
}

tpar_status tpar_metrics_write(tpar_metrics_t *m, const tpar_kv_t *record, tpar_err_t *err) {
    if (!m || !record) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_metrics_write: NULL argument");
    char *text = json_dumps(record->obj, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (!text) return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", m->path);
    int bad = fputs(text, m->f) == EOF || fputc('\n', m->f) == EOF || fflush(m->f) != 0;
    free(text);
    if (bad) return tpar_err_set(err, TPAR_ERR_IO, "cannot append to %s: %s", m->path, strerror(errno));
    return TPAR_OK;
}

void tpar_metrics_close(tpar_metrics_t *m) {
    if (!m) return;
    fclose(m->f);
    free(m->path);
    free(m);
}
