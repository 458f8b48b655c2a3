/* safetensors files, read and written by rectangular slices.
 *
 * Format: u64 little-endian header length N | N bytes of JSON (padded with spaces to a
 * multiple of 8 so the data is aligned) | data buffer. The JSON maps tensor names to
 * {"dtype", "shape", "data_offsets": [begin, end)} (offsets into the data buffer) plus an
 * optional "__metadata__" object of strings. As in the reference implementation, the tensors
 * must tile the data buffer exactly: no overlap, no hole, nothing after the last one. */
#define _XOPEN_SOURCE 700
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- dtypes ------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t size;
} dtypes[TPAR_ST_DTYPE_COUNT] = {
    [TPAR_ST_BOOL] = {"BOOL", 1},       [TPAR_ST_U8] = {"U8", 1},   [TPAR_ST_I8] = {"I8", 1},
    [TPAR_ST_F8_E5M2] = {"F8_E5M2", 1}, [TPAR_ST_F8_E4M3] = {"F8_E4M3", 1},
    [TPAR_ST_I16] = {"I16", 2},         [TPAR_ST_U16] = {"U16", 2}, [TPAR_ST_F16] = {"F16", 2},
    [TPAR_ST_BF16] = {"BF16", 2},       [TPAR_ST_I32] = {"I32", 4}, [TPAR_ST_U32] = {"U32", 4},
    [TPAR_ST_F32] = {"F32", 4},         [TPAR_ST_F64] = {"F64", 8}, [TPAR_ST_I64] = {"I64", 8},
    [TPAR_ST_U64] = {"U64", 8},
};

size_t tpar_st_dtype_size(tpar_st_dtype dt) {
    return ((int)dt < 0 || dt >= TPAR_ST_DTYPE_COUNT) ? 0 : dtypes[dt].size;
}

const char *tpar_st_dtype_name(tpar_st_dtype dt) {
    return ((int)dt < 0 || dt >= TPAR_ST_DTYPE_COUNT) ? "?" : dtypes[dt].name;
}

tpar_status tpar_st_dtype_parse(const char *name, tpar_st_dtype *out) {
    for (int i = 0; name && i < TPAR_ST_DTYPE_COUNT; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (tpar_st_dtype)i;
            return TPAR_OK;
        }
    }
    return TPAR_ERR_INVALID_ARG;
}

/* ---- shapes and slices ------------------------------------------------------------------- */

tpar_slice_t tpar_slice_1d(int64_t start, int64_t count) {
    tpar_slice_t s = {.ndim = 1};
    s.start[0] = start;
    s.count[0] = count;
    return s;
}

tpar_slice_t tpar_slice_2d(int64_t r0, int64_t nr, int64_t c0, int64_t nc) {
    tpar_slice_t s = {.ndim = 2};
    s.start[0] = r0;
    s.count[0] = nr;
    s.start[1] = c0;
    s.count[1] = nc;
    return s;
}

/* "[3, 4]" */
static const char *fmt_dims(char *buf, size_t cap, int ndim, const int64_t *dims) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, d ? ", %lld" : "%lld", (long long)dims[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
    return buf;
}

/* "[0:3, 2:4]" */
static const char *fmt_slice(char *buf, size_t cap, const tpar_slice_t *s) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < s->ndim && len < cap; d++) {
        int64_t end; /* a caller's start + count may overflow: then print the count */
        if (__builtin_add_overflow(s->start[d], s->count[d], &end))
            len += (size_t)snprintf(buf + len, cap - len, d ? ", %lld:+%lld" : "%lld:+%lld", (long long)s->start[d],
                                    (long long)s->count[d]);
        else
            len += (size_t)snprintf(buf + len, cap - len, d ? ", %lld:%lld" : "%lld:%lld", (long long)s->start[d],
                                    (long long)end);
    }
    if (len < cap) snprintf(buf + len, cap - len, "]");
    return buf;
}

/* Bytes of a tensor of this shape; -1 on a negative dimension or overflow. */
static int shape_bytes(tpar_st_dtype dt, int ndim, const int64_t *shape, uint64_t *out) {
    uint64_t n = tpar_st_dtype_size(dt);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[d], &n)) return -1;
    }
    *out = n;
    return 0;
}

/* Moves a slice between a dense buffer and the file, one pread/pwrite per contiguous run.
 * Trailing dimensions the slice covers fully merge into the run, so a row slice is a single
 * transfer and a column slice of a 2-D tensor is one transfer per row. */
static tpar_status slice_io(int fd, int writing, const char *path, const tpar_st_tensor_t *t,
                            uint64_t data_start, const tpar_slice_t *slice, void *buf, tpar_err_t *err) {
    tpar_slice_t whole = {.ndim = t->ndim};
    for (int d = 0; d < t->ndim; d++) whole.count[d] = t->shape[d];
    const tpar_slice_t *s = (slice && slice->ndim) ? slice : &whole;
    char a[160], b[160];
    if (s->ndim != t->ndim)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "%s: tensor '%s' has %d dimensions %s, the slice has %d", path,
                            t->name, t->ndim, fmt_dims(a, sizeof a, t->ndim, t->shape), s->ndim);
    uint64_t total = 1;
    for (int d = 0; d < s->ndim; d++) {
        if (s->start[d] < 0 || s->count[d] < 0 || s->start[d] > t->shape[d] ||
            s->count[d] > t->shape[d] - s->start[d])
            return tpar_err_set(err, TPAR_ERR_SHAPE, "%s: slice %s is outside tensor '%s' of shape %s", path,
                                fmt_slice(b, sizeof b, s), t->name, fmt_dims(a, sizeof a, t->ndim, t->shape));
        total *= (uint64_t)s->count[d]; /* bounded by the tensor's size, which fits */
    }
    if (total == 0) return TPAR_OK;

    const uint64_t es = tpar_st_dtype_size(t->dtype);
    int64_t stride[TPAR_ST_MAX_DIMS]; /* elements */
    int64_t acc = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        stride[d] = acc;
        acc *= t->shape[d];
    }
    /* The run: dimension `inner` from its start, with every dimension after it full. */
    int inner = t->ndim > 0 ? t->ndim - 1 : 0;
    uint64_t run = t->ndim > 0 ? (uint64_t)s->count[inner] : 1;
    while (inner > 0 && s->count[inner] == t->shape[inner]) {
        inner--;
        run *= (uint64_t)s->count[inner];
    }
    const size_t run_bytes = (size_t)(run * es);
    int64_t idx[TPAR_ST_MAX_DIMS] = {0}; /* odometer over dimensions [0, inner) */
    char *p = buf;
    for (uint64_t done = 0; done < total; done += run) {
        uint64_t el = t->ndim > 0 ? (uint64_t)s->start[inner] * (uint64_t)stride[inner] : 0;
        for (int d = 0; d < inner; d++) el += (uint64_t)(s->start[d] + idx[d]) * (uint64_t)stride[d];
        uint64_t off = data_start + t->begin + el * es;
        if (writing) {
            if (tpar_io_pwrite_full(fd, p, run_bytes, off) != 0)
                return tpar_err_set(err, TPAR_ERR_IO, "%s: writing tensor '%s' at offset %llu: %s", path, t->name,
                                    (unsigned long long)off, strerror(errno));
        } else {
            ssize_t r = tpar_io_pread_full(fd, p, run_bytes, off);
            if (r < 0)
                return tpar_err_set(err, TPAR_ERR_IO, "%s: reading tensor '%s' at offset %llu: %s", path, t->name,
                                    (unsigned long long)off, strerror(errno));
            if ((size_t)r != run_bytes)
                return tpar_err_set(err, TPAR_ERR_CORRUPT,
                                    "%s: file truncated while reading tensor '%s' (offset %llu)", path, t->name,
                                    (unsigned long long)off);
        }
        p += run_bytes;
        for (int d = inner - 1; d >= 0; d--) { /* next index, last dimension fastest */
            if (++idx[d] < s->count[d]) break;
            idx[d] = 0;
        }
    }
    return TPAR_OK;
}

/* ---- reading ----------------------------------------------------------------------------- */

struct tpar_st_file {
    int fd;
    char *path;
    json_t *root; /* keeps the tensor names alive */
    json_t *meta; /* borrowed from root, or NULL */
    tpar_st_tensor_t *t;
    size_t n;
    uint64_t data_start, data_size;
};

void tpar_st_close(tpar_st_file_t *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    json_decref(f->root);
    free(f->t);
    free(f->path);
    free(f);
}

/* One header entry into *t; error messages name the file and tensor. */
static tpar_status parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size,
                               tpar_st_tensor_t *t, tpar_err_t *err) {
    t->name = name;
    if (!json_is_object(v))
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: tensor '%s': header entry is not a JSON object", path, name);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return tpar_err_set(err, TPAR_ERR_CORRUPT,
                                "%s: tensor '%s': unexpected field '%s' (expected dtype, shape, data_offsets)",
                                path, name, key);
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (tpar_st_dtype_parse(json_string_value(jd), &t->dtype) != TPAR_OK)
        return tpar_err_set(err, TPAR_ERR_CORRUPT,
                            "%s: tensor '%s': unknown dtype \"%s\" (expected F32, F16, BF16, F64, I64, I32, ...)",
                            path, name, json_string_value(jd));
    if (!json_is_array(js) || json_array_size(js) > TPAR_ST_MAX_DIMS)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: tensor '%s': \"shape\" must be an array of at most %d integers",
                            path, name, TPAR_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    for (int d = 0; d < t->ndim; d++) {
        json_t *x = json_array_get(js, (size_t)d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return tpar_err_set(err, TPAR_ERR_CORRUPT,
                                "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, d);
        t->shape[d] = json_integer_value(x);
    }
    uint64_t nbytes;
    char a[160];
    if (shape_bytes(t->dtype, t->ndim, t->shape, &nbytes) != 0)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: tensor '%s': shape %s of %s overflows 64-bit sizes", path,
                            name, fmt_dims(a, sizeof a, t->ndim, t->shape), dtypes[t->dtype].name);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] integers",
                            path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: tensor '%s': data_offsets [%lld, %lld] are not a range",
                            path, name, (long long)b, (long long)e);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    if (t->end - t->begin != nbytes)
        return tpar_err_set(err, TPAR_ERR_CORRUPT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, expected %llu "
                            "(shape %s x %zu bytes of %s)",
                            path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                            (unsigned long long)(t->end - t->begin), (unsigned long long)nbytes,
                            fmt_dims(a, sizeof a, t->ndim, t->shape), dtypes[t->dtype].size, dtypes[t->dtype].name);
    if (t->end > data_size)
        return tpar_err_set(err, TPAR_ERR_CORRUPT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] go past the end of the data buffer "
                            "(%llu bytes): file truncated?",
                            path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                            (unsigned long long)data_size);
    return TPAR_OK;
}

static int by_offset(const void *pa, const void *pb) {
    const tpar_st_tensor_t *a = *(tpar_st_tensor_t *const *)pa, *b = *(tpar_st_tensor_t *const *)pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    return a->end < b->end ? -1 : (a->end > b->end);
}

/* The tensors must tile [0, data_size) exactly. */
static tpar_status check_tiling(const tpar_st_file_t *f, tpar_err_t *err) {
    if (f->n == 0) {
        if (f->data_size != 0)
            return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: no tensors, but %llu bytes of data follow the header",
                                f->path, (unsigned long long)f->data_size);
        return TPAR_OK;
    }
    const tpar_st_tensor_t **order = malloc(f->n * sizeof *order);
    if (!order) return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n; i++) order[i] = &f->t[i];
    qsort(order, f->n, sizeof *order, by_offset);
    tpar_status st = TPAR_OK;
    uint64_t at = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < f->n && st == TPAR_OK; i++) {
        const tpar_st_tensor_t *t = order[i];
        if (t->begin < at)
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: tensors '%s' and '%s' overlap (bytes %llu..%llu)", f->path,
                              prev, t->name, (unsigned long long)t->begin, (unsigned long long)at);
        else if (t->begin > at)
            st = tpar_err_set(err, TPAR_ERR_CORRUPT,
                              "%s: data bytes [%llu, %llu) belong to no tensor (hole before '%s')", f->path,
                              (unsigned long long)at, (unsigned long long)t->begin, t->name);
        at = t->end;
        prev = t->name;
    }
    if (st == TPAR_OK && at != f->data_size)
        st = tpar_err_set(err, TPAR_ERR_CORRUPT,
                          "%s: %llu trailing bytes after the last tensor '%s' (data buffer %llu bytes, tensors end at %llu)",
                          f->path, (unsigned long long)(f->data_size - at), prev, (unsigned long long)f->data_size,
                          (unsigned long long)at);
    free(order);
    return st;
}

static tpar_status parse_header(tpar_st_file_t *f, const char *hdr, size_t len, tpar_err_t *err) {
    if (len == 0 || hdr[0] != '{')
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: header does not start with '{' (not a safetensors file?)",
                            f->path);
    json_error_t je;
    f->root = json_loadb(hdr, len, JSON_REJECT_DUPLICATES, &je);
    if (!f->root)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: header is not valid JSON: %s (header byte %d)", f->path,
                            je.text, je.position);
    if (!json_is_object(f->root))
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: header is not a JSON object", f->path);
    size_t n = json_object_size(f->root);
    f->t = calloc(n ? n : 1, sizeof *f->t);
    if (!f->t) return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory for %zu tensors", f->path, n);
    const char *name;
    json_t *v;
    json_object_foreach(f->root, name, v) {
        if (strcmp(name, "__metadata__") == 0) {
            if (!json_is_object(v))
                return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: __metadata__ is not a JSON object", f->path);
            const char *k;
            json_t *mv;
            json_object_foreach(v, k, mv) {
                if (!json_is_string(mv))
                    return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: __metadata__ value of '%s' is not a string",
                                        f->path, k);
            }
            f->meta = v;
            continue;
        }
        tpar_status st = parse_entry(f->path, name, v, f->data_size, &f->t[f->n], err);
        if (st != TPAR_OK) return st;
        f->n++;
    }
    return check_tiling(f, err);
}

tpar_status tpar_st_open(const char *path, tpar_st_file_t **out, tpar_err_t *err) {
    if (!path || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_st_open: NULL argument");
    *out = NULL;
    tpar_st_file_t *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    }
    char *hdr = NULL;
    tpar_status st = TPAR_OK;
    struct stat sb;
    unsigned char lenb[8];
    if ((st = tpar_io_open_file(path, O_RDONLY, "safetensors file", &f->fd, err)) != TPAR_OK) goto done;
    if (fstat(f->fd, &sb) != 0) {
        st = tpar_err_set(err, TPAR_ERR_IO, "cannot stat safetensors file %s: %s", path, strerror(errno));
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: file is %llu bytes, too short for the 8-byte header length",
                          path, (unsigned long long)size);
        goto done;
    }
    ssize_t r = tpar_io_pread_full(f->fd, lenb, 8, 0);
    if (r != 8) {
        st = tpar_err_set(err, TPAR_ERR_IO, "%s: cannot read the header length: %s", path,
                          r < 0 ? strerror(errno) : "short read");
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    if (hlen == 0 || hlen > TPAR_ST_MAX_HEADER || hlen > size - 8) {
        st = tpar_err_set(err, TPAR_ERR_CORRUPT,
                          "%s: header length %llu is impossible (expected 1..%u and at most the %llu bytes after "
                          "the length field): not a safetensors file, or truncated",
                          path, (unsigned long long)hlen, TPAR_ST_MAX_HEADER, (unsigned long long)(size - 8));
        goto done;
    }
    hdr = malloc((size_t)hlen);
    if (!hdr) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path,
                          (unsigned long long)hlen);
        goto done;
    }
    r = tpar_io_pread_full(f->fd, hdr, (size_t)hlen, 8);
    if (r != (ssize_t)hlen) {
        st = tpar_err_set(err, TPAR_ERR_IO, "%s: cannot read the header: %s", path,
                          r < 0 ? strerror(errno) : "short read");
        goto done;
    }
    f->data_start = 8 + hlen;
    f->data_size = size - f->data_start;
    st = parse_header(f, hdr, (size_t)hlen, err);
done:
    free(hdr);
    if (st != TPAR_OK) {
        tpar_st_close(f);
        return st;
    }
    *out = f;
    return TPAR_OK;
}

size_t tpar_st_count(const tpar_st_file_t *f) { return f ? f->n : 0; }

uint64_t tpar_io_st_data_start(const tpar_st_file_t *f) { return f ? f->data_start : 0; }

const tpar_st_tensor_t *tpar_st_tensor(const tpar_st_file_t *f, size_t i) {
    return (f && i < f->n) ? &f->t[i] : NULL;
}

const tpar_st_tensor_t *tpar_st_find(const tpar_st_file_t *f, const char *name) {
    for (size_t i = 0; f && name && i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *tpar_st_metadata(const tpar_st_file_t *f, const char *key) {
    if (!f || !f->meta || !key) return NULL;
    return json_string_value(json_object_get(f->meta, key));
}

static tpar_status find_typed(const tpar_st_file_t *f, const char *name, tpar_st_dtype dtype,
                              const tpar_st_tensor_t **out, tpar_err_t *err) {
    if (!f || !name) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors: NULL file or tensor name");
    const tpar_st_tensor_t *t = tpar_st_find(f, name);
    if (!t) return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: no tensor named '%s'", f->path, name);
    if (t->dtype != dtype)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "%s: tensor '%s' is %s, expected %s", f->path, name,
                            tpar_st_dtype_name(t->dtype), tpar_st_dtype_name(dtype));
    *out = t;
    return TPAR_OK;
}

tpar_status tpar_st_expect(const tpar_st_file_t *f, const char *name, tpar_st_dtype dtype, int ndim,
                           const int64_t *shape, tpar_err_t *err) {
    const tpar_st_tensor_t *t = NULL;
    tpar_status st = find_typed(f, name, dtype, &t, err);
    if (st != TPAR_OK) return st;
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    char a[160], b[160];
    if (!same)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", f->path, name,
                            fmt_dims(a, sizeof a, t->ndim, t->shape), fmt_dims(b, sizeof b, ndim, shape));
    return TPAR_OK;
}

tpar_status tpar_st_read(const tpar_st_file_t *f, const char *name, tpar_st_dtype dtype,
                         const tpar_slice_t *slice, void *dst, tpar_err_t *err) {
    const tpar_st_tensor_t *t = NULL;
    tpar_status st = find_typed(f, name, dtype, &t, err);
    if (st != TPAR_OK) return st;
    return slice_io(f->fd, 0, f->path, t, f->data_start, slice, dst, err);
}

/* ---- writing ----------------------------------------------------------------------------- */

struct tpar_st_writer {
    tpar_st_tensor_t *t; /* names owned */
    size_t n, cap;
    json_t *meta;
    unsigned char *hdr; /* length field + JSON + padding, built once the layout is fixed */
    size_t hdr_len;
    uint64_t data_size;
    int fd;
    char *path;
};

tpar_status tpar_st_writer_new(tpar_st_writer_t **out, tpar_err_t *err) {
    tpar_st_writer_t *w = calloc(1, sizeof *w);
    if (!w || !(w->meta = json_object())) {
        free(w);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->fd = -1;
    *out = w;
    return TPAR_OK;
}

void tpar_st_writer_free(tpar_st_writer_t *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    for (size_t i = 0; i < w->n; i++) free((char *)w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w->hdr);
    free(w->path);
    free(w);
}

tpar_status tpar_st_writer_add(tpar_st_writer_t *w, const char *name, tpar_st_dtype dtype, int ndim,
                               const int64_t *shape, tpar_err_t *err) {
    if (!w || !name || !*name || (ndim > 0 && !shape))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors writer: missing tensor name or shape");
    if (w->hdr)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "safetensors writer: cannot add '%s' after the file was created or opened", name);
    if (strcmp(name, "__metadata__") == 0 || tpar_st_dtype_size(dtype) == 0 || ndim < 0 || ndim > TPAR_ST_MAX_DIMS)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "safetensors writer: tensor '%s': reserved name, bad dtype or ndim %d (max %d)", name,
                            ndim, TPAR_ST_MAX_DIMS);
    uint64_t nbytes;
    if (shape_bytes(dtype, ndim, shape, &nbytes) != 0 || nbytes > (uint64_t)INT64_MAX - w->data_size)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors writer: tensor '%s': negative or too large shape",
                            name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors writer: tensor '%s' declared twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        tpar_st_tensor_t *t = realloc(w->t, cap * sizeof *t);
        if (!t) return tpar_err_set(err, TPAR_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = t;
        w->cap = cap;
    }
    tpar_st_tensor_t *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return tpar_err_set(err, TPAR_ERR_NOMEM, "safetensors writer: out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->begin = w->data_size; /* declaration order, packed: the tensors tile the buffer */
    t->end = t->begin + nbytes;
    w->data_size = t->end;
    w->n++;
    return TPAR_OK;
}

tpar_status tpar_st_writer_meta(tpar_st_writer_t *w, const char *key, const char *value, tpar_err_t *err) {
    if (!w || !key || !value) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors writer: NULL metadata");
    if (w->hdr)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors writer: metadata '%s' after the file was created",
                            key);
    if (json_object_set_new(w->meta, key, json_string(value)) != 0)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors writer: metadata '%s' is not valid UTF-8", key);
    return TPAR_OK;
}

/* Header bytes: a pure function of the declarations, identical on every rank. */
static tpar_status build_header(tpar_st_writer_t *w, tpar_err_t *err) {
    if (w->hdr) return TPAR_OK;
    json_t *root = json_object();
    int bad = !root || (json_object_size(w->meta) && json_object_set(root, "__metadata__", w->meta) != 0);
    for (size_t i = 0; i < w->n && !bad; i++) {
        const tpar_st_tensor_t *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = 0; shape && d < t->ndim; d++) bad |= json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", tpar_st_dtype_name(t->dtype), "shape", shape,
                              "data_offsets", (json_int_t)t->begin, (json_int_t)t->end);
        bad |= !e || json_object_set_new(root, t->name, e) != 0;
    }
    char *text = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "safetensors writer: cannot build the header (names must be valid UTF-8)");
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7; /* the data starts 8-byte aligned */
    w->hdr = malloc(8 + padded);
    if (!w->hdr) {
        free(text);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "safetensors writer: out of memory");
    }
    for (int i = 0; i < 8; i++) w->hdr[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(w->hdr + 8, text, len);
    memset(w->hdr + 8 + len, ' ', padded - len);
    w->hdr_len = 8 + padded;
    free(text);
    return TPAR_OK;
}

uint64_t tpar_st_writer_file_size(const tpar_st_writer_t *w) {
    if (!w) return 0;
    if (w->hdr) return w->hdr_len + w->data_size;
    tpar_st_writer_t probe = *w; /* builds a header without fixing the declarations */
    if (build_header(&probe, NULL) != TPAR_OK) return 0;
    free(probe.hdr);
    return probe.hdr_len + w->data_size;
}

static tpar_status writer_set_path(tpar_st_writer_t *w, const char *path, tpar_err_t *err) {
    if (w->fd >= 0) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors writer: %s is already open", w->path);
    free(w->path);
    if (!(w->path = strdup(path))) return tpar_err_set(err, TPAR_ERR_NOMEM, "safetensors writer: out of memory");
    return build_header(w, err);
}

tpar_status tpar_st_writer_create(tpar_st_writer_t *w, const char *path, tpar_err_t *err) {
    if (!w || !path) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_st_writer_create: NULL argument");
    tpar_status st = writer_set_path(w, path, err);
    if (st != TPAR_OK) return st;
    if ((st = tpar_io_open_file(path, O_RDWR | O_CREAT | O_TRUNC, "safetensors file", &w->fd, err)) != TPAR_OK)
        return st;
    uint64_t size = w->hdr_len + w->data_size;
    int rc = tpar_io_pwrite_full(w->fd, w->hdr, w->hdr_len, 0) != 0 || ftruncate(w->fd, (off_t)size) != 0;
    if (rc) return tpar_err_set(err, TPAR_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    /* Reserve the blocks now so that a full disk shows here, not halfway through the slices. */
    if (size > w->hdr_len) {
        int e = posix_fallocate(w->fd, (off_t)w->hdr_len, (off_t)(size - w->hdr_len));
        if (e == ENOSPC || e == EFBIG)
            return tpar_err_set(err, TPAR_ERR_IO, "cannot allocate %llu bytes for %s: %s", (unsigned long long)size,
                                path, strerror(e));
    }
    return TPAR_OK;
}

tpar_status tpar_st_writer_open(tpar_st_writer_t *w, const char *path, tpar_err_t *err) {
    if (!w || !path) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_st_writer_open: NULL argument");
    tpar_status st = writer_set_path(w, path, err);
    if (st != TPAR_OK) return st;
    tpar_err_t oe = {0};
    if ((st = tpar_io_open_file(path, O_RDWR, "safetensors file", &w->fd, &oe)) != TPAR_OK)
        return tpar_err_set(err, st, "%s (was it created first?)", oe.msg);
    struct stat sb;
    if (fstat(w->fd, &sb) != 0)
        return tpar_err_set(err, TPAR_ERR_IO, "cannot open %s for writing: %s (was it created first?)", path,
                            strerror(errno));
    unsigned char *have = malloc(w->hdr_len);
    if (!have) return tpar_err_set(err, TPAR_ERR_NOMEM, "safetensors writer: out of memory");
    ssize_t r = tpar_io_pread_full(w->fd, have, w->hdr_len, 0);
    int same = r == (ssize_t)w->hdr_len && memcmp(have, w->hdr, w->hdr_len) == 0 &&
               (uint64_t)sb.st_size == w->hdr_len + w->data_size;
    free(have);
    if (!same)
        return tpar_err_set(err, TPAR_ERR_MISMATCH,
                            "%s: the file's header or size differs from this rank's declarations (%zu tensors, "
                            "%llu bytes): ranks must declare the same tensors in the same order",
                            path, w->n, (unsigned long long)(w->hdr_len + w->data_size));
    return TPAR_OK;
}

tpar_status tpar_st_writer_write(tpar_st_writer_t *w, const char *name, const tpar_slice_t *slice,
                                 const void *src, tpar_err_t *err) {
    if (!w || !name || !src) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_st_writer_write: NULL argument");
    if (w->fd < 0)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "safetensors writer: write of '%s' before create/open", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return slice_io(w->fd, 1, w->path, &w->t[i], w->hdr_len, slice, (void *)src, err);
    return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: tensor '%s' was not declared", w->path, name);
}

tpar_status tpar_st_writer_close(tpar_st_writer_t *w, tpar_err_t *err) {
    if (!w || w->fd < 0) return TPAR_OK;
    int e = fsync(w->fd) != 0 ? errno : 0;
    if (close(w->fd) != 0 && !e) e = errno;
    w->fd = -1;
    if (e) return tpar_err_set(err, TPAR_ERR_IO, "cannot flush %s: %s", w->path, strerror(e));
    return TPAR_OK;
}
