/* Token data: byte-level text or binary token files, a validation split, and the
 * deterministic data loader whose position is part of the training state. */
#define _XOPEN_SOURCE 700
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd_u64(const unsigned char *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }

static void wr_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Binary token file body (after the header was read into raw) into t. */
static tpar_status parse_bin(const char *path, const unsigned char *raw, uint64_t size, tpar_tokens_t *t,
                             tpar_err_t *err) {
    if (size < TPAR_TOKENS_HEADER)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: token file header truncated (%llu of %d bytes)", path,
                            (unsigned long long)size, TPAR_TOKENS_HEADER);
    uint32_t version = rd_u32(raw + 4), width = rd_u32(raw + 8), vocab = rd_u32(raw + 12);
    uint64_t count = rd_u64(raw + 16);
    if (version != TPAR_TOKENS_VERSION)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: token file version %u, expected %u", path, version,
                            TPAR_TOKENS_VERSION);
    if (width != 2 && width != 4)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: token width %u bytes, expected 2 or 4", path, width);
    if (vocab == 0 || vocab > (width == 2 ? 65536u : (uint32_t)INT32_MAX))
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: vocabulary size %u is impossible for %u-byte tokens", path,
                            vocab, width);
    if (count > (size - TPAR_TOKENS_HEADER) / width || count * width != size - TPAR_TOKENS_HEADER)
        return tpar_err_set(err, TPAR_ERR_CORRUPT,
                            "%s: header says %llu tokens of %u bytes (%llu bytes after the header), the file has "
                            "%llu: truncated or trailing data",
                            path, (unsigned long long)count, width,
                            (unsigned long long)(count > UINT64_MAX / width ? UINT64_MAX : count * width),
                            (unsigned long long)(size - TPAR_TOKENS_HEADER));
    if (count == 0) return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: token file holds no tokens", path);
    if (!(t->data = malloc((size_t)count * sizeof *t->data)))
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory for %llu tokens", path, (unsigned long long)count);
    const unsigned char *p = raw + TPAR_TOKENS_HEADER;
    for (uint64_t i = 0; i < count; i++) {
        uint32_t v = width == 2 ? (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) : rd_u32(p + 4 * i);
        if (v >= vocab) {
            free(t->data);
            t->data = NULL;
            return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: token %llu is %u, outside the vocabulary [0, %u)", path,
                                (unsigned long long)i, v, vocab);
        }
        t->data[i] = (int32_t)v;
    }
    t->n = (size_t)count;
    t->vocab = (int)vocab;
    return TPAR_OK;
}

tpar_status tpar_tokens_load(const char *path, tpar_tokens_t *out, tpar_err_t *err) {
    if (!path || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tokens_load: NULL argument");
    memset(out, 0, sizeof *out);
    int fd;
    struct stat sb;
    tpar_status ost = tpar_io_open_file(path, O_RDONLY, "data file", &fd, err);
    if (ost != TPAR_OK) return ost;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot stat data file %s: %s", path, strerror(e));
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (!S_ISREG(sb.st_mode) || size == 0) {
        close(fd);
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "data file %s is empty or not a regular file", path);
    }
    unsigned char *raw = malloc((size_t)size);
    ssize_t r = raw ? tpar_io_pread_full(fd, raw, (size_t)size, 0) : -1;
    int e = errno;
    close(fd);
    tpar_status st = TPAR_OK;
    if (!raw) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory reading %s (%llu bytes)", path, (unsigned long long)size);
    } else if (r != (ssize_t)size) {
        st = tpar_err_set(err, TPAR_ERR_IO, "cannot read %s: %s", path, r < 0 ? strerror(e) : "short read");
    } else if (size >= 4 && memcmp(raw, TPAR_TOKENS_MAGIC, 4) == 0) {
        st = parse_bin(path, raw, size, out, err);
    } else if (!(out->data = malloc((size_t)size * sizeof *out->data))) {
        st = tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory for %llu tokens of %s", (unsigned long long)size, path);
    } else { /* byte-level text: every byte is a token */
        for (uint64_t i = 0; i < size; i++) out->data[i] = raw[i];
        out->n = (size_t)size;
        out->vocab = 256;
    }
    free(raw);
    if (st != TPAR_OK) return st;
    out->owned = 1;
    snprintf(out->source, sizeof out->source, "%s", path);
    return TPAR_OK;
}

tpar_status tpar_tokens_write_bin(const char *path, const int32_t *tokens, size_t n, int width, int vocab,
                                  tpar_err_t *err) {
    if (!path || (!tokens && n)) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tokens_write_bin: NULL argument");
    if ((width != 2 && width != 4) || vocab < 1 || (width == 2 && vocab > 65536))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: token width %d with vocabulary %d is impossible", path,
                            width, vocab);
    size_t bytes;
    if (tpar_mul_size(n, (size_t)width, &bytes) != 0 || bytes > SIZE_MAX - TPAR_TOKENS_HEADER)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: too many tokens", path);
    unsigned char *buf = malloc(TPAR_TOKENS_HEADER + bytes);
    if (!buf) return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, TPAR_TOKENS_MAGIC, 4);
    wr_u32(buf + 4, TPAR_TOKENS_VERSION);
    wr_u32(buf + 8, (uint32_t)width);
    wr_u32(buf + 12, (uint32_t)vocab);
    wr_u32(buf + 16, (uint32_t)n);
    wr_u32(buf + 20, (uint32_t)((uint64_t)n >> 32));
    unsigned char *p = buf + TPAR_TOKENS_HEADER;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= vocab) {
            free(buf);
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: token %zu is %d, outside the vocabulary [0, %d)", path,
                                i, (int)tokens[i], vocab);
        }
        for (int k = 0; k < width; k++) p[(size_t)width * i + (size_t)k] = (unsigned char)((uint32_t)tokens[i] >> (8 * k));
    }
    tpar_status st = tpar_io_write_atomic(path, buf, TPAR_TOKENS_HEADER + bytes, err);
    free(buf);
    return st;
}

void tpar_tokens_free(tpar_tokens_t *t) {
    if (!t) return;
    if (t->owned) free(t->data);
    memset(t, 0, sizeof *t);
}

tpar_status tpar_tokens_split(const tpar_tokens_t *all, double val_frac, tpar_tokens_t *train, tpar_tokens_t *val,
                              tpar_err_t *err) {
    if (!all || !train || !val) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tokens_split: NULL argument");
    if (!(val_frac > 0.0 && val_frac < 1.0))
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "validation fraction %g must be in (0, 1)", val_frac);
    size_t nval = (size_t)((double)all->n * val_frac);
    if (nval == 0 || nval >= all->n)
        return tpar_err_set(err, TPAR_ERR_SHAPE, "%s: %zu tokens cannot be split with validation fraction %g",
                            all->source, all->n, val_frac);
    size_t ntrain = all->n - nval;
    *train = (tpar_tokens_t){.data = all->data, .n = ntrain, .vocab = all->vocab};
    *val = (tpar_tokens_t){.data = all->data + ntrain, .n = nval, .vocab = all->vocab};
    snprintf(train->source, sizeof train->source, "%.200s (training split)", all->source);
    snprintf(val->source, sizeof val->source, "%.200s (validation split)", all->source);
    return TPAR_OK;
}

/* ---- the loader -------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound), without modulo bias. */
static uint64_t below(uint64_t *s, uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t x = splitmix64(s);
        if (x >= threshold) return x % bound;
    }
}

/* The window order of an epoch: Fisher-Yates driven by a stream seeded from (seed, epoch). */
static void make_perm(tpar_loader_t *L, uint64_t epoch) {
    uint64_t s = L->seed;
    s = splitmix64(&s) ^ (epoch * 0xd1b54a32d192ed03ull);
    for (uint64_t i = 0; i < L->nwin; i++) L->perm[i] = i;
    for (uint64_t i = L->nwin - 1; i > 0; i--) {
        uint64_t j = below(&s, i + 1), tmp = L->perm[i];
        L->perm[i] = L->perm[j];
        L->perm[j] = tmp;
    }
    L->perm_epoch = epoch;
}

tpar_status tpar_loader_init(tpar_loader_t *L, const tpar_tokens_t *tokens, int B, int T, int dp_rank, int dp_size,
                             int accum, uint64_t seed, int shuffle, tpar_err_t *err) {
    if (!L || !tokens) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_loader_init: NULL argument");
    memset(L, 0, sizeof *L);
    if (B < 1 || T < 1 || dp_size < 1 || dp_rank < 0 || dp_rank >= dp_size || accum < 1)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "data loader: batch %d, sequence %d, DP rank %d of %d, %d micro-batches: each must be "
                            "positive and the rank below the DP size",
                            B, T, dp_rank, dp_size, accum);
    if (tokens->n < (size_t)T + 1)
        return tpar_err_set(err, TPAR_ERR_SHAPE,
                            "%s has %zu tokens; a sequence of %d needs at least %d (inputs plus the next token)",
                            tokens->source, tokens->n, T, T + 1);
    *L = (tpar_loader_t){.tokens = tokens, .B = B, .T = T, .dp_rank = dp_rank, .dp_size = dp_size,
                         .accum = accum, .shuffle = !!shuffle, .seed = seed, .nwin = (tokens->n - 1) / (size_t)T,
                         .perm_epoch = UINT64_MAX};
    if (L->shuffle && !(L->perm = malloc(L->nwin * sizeof *L->perm)))
        return tpar_err_set(err, TPAR_ERR_NOMEM, "data loader: out of memory for %llu windows",
                            (unsigned long long)L->nwin);
    return TPAR_OK;
}

void tpar_loader_free(tpar_loader_t *L) {
    if (!L) return;
    free(L->perm);
    L->perm = NULL;
}

tpar_status tpar_loader_batch(tpar_loader_t *L, int micro, int32_t *inputs, int32_t *targets, tpar_err_t *err) {
    if (!L || !L->tokens || !inputs || !targets || micro < 0 || micro >= L->accum)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "data loader: bad micro-batch %d (of %d) or NULL buffer", micro,
                            L ? L->accum : 0);
    const int32_t *tok = L->tokens->data;
    const size_t T = (size_t)L->T;
    for (int b = 0; b < L->B; b++) {
        uint64_t k = L->pos + ((uint64_t)micro * (uint64_t)L->dp_size + (uint64_t)L->dp_rank) * (uint64_t)L->B + (uint64_t)b;
        uint64_t epoch = k / L->nwin, w = k % L->nwin;
        if (L->shuffle) {
            if (L->perm_epoch != epoch) make_perm(L, epoch);
            w = L->perm[w];
        }
        const int32_t *src = tok + w * T;
        memcpy(inputs + (size_t)b * T, src, T * sizeof *inputs);     // (B, T)
        memcpy(targets + (size_t)b * T, src + 1, T * sizeof *targets); // (B, T), shifted by one
    }
    return TPAR_OK;
}

void tpar_loader_advance(tpar_loader_t *L) {
    L->pos += (uint64_t)L->dp_size * (uint64_t)L->accum * (uint64_t)L->B;
}

tpar_status tpar_loader_save_state(const tpar_loader_t *L, tpar_kv_t *state) {
    tpar_status st = tpar_kv_set_u64(state, "data.seed", L->seed);
    return st != TPAR_OK ? st : tpar_kv_set_u64(state, "data.pos", L->pos);
}

tpar_status tpar_loader_load_state(tpar_loader_t *L, const tpar_kv_t *state, tpar_err_t *err) {
    uint64_t seed, pos;
    tpar_status st = tpar_kv_get_u64(state, "data.seed", &seed, err);
    if (st == TPAR_OK) st = tpar_kv_get_u64(state, "data.pos", &pos, err);
    if (st != TPAR_OK) return st;
    L->seed = seed;
    L->pos = pos;
    L->perm_epoch = UINT64_MAX; /* the cached order belonged to the old seed */
    return TPAR_OK;
}
