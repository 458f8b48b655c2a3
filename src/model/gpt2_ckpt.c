/* GPT-2 weights and optimizer moments in safetensors, by slices: each rank reads and writes
 * only its own shard, in Hugging Face's global names and layouts (docs/TRAINING.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "tpar/io.h"

/* Global shape of a tensor in the file. */
static int file_shape(const tpar_gpt2_tensor_t *t, int64_t shape[2]) {
    if (t->ndim == 1) {
        shape[0] = t->file_rows;
        return 1;
    }
    shape[0] = t->transposed ? t->cols : t->file_rows;
    shape[1] = t->transposed ? t->file_rows : t->cols;
    return 2;
}

/* The file block of a piece: a transposed tensor holds it as (nc, nr) at (c0, r0). */
static tpar_slice_t file_slice(const tpar_gpt2_tensor_t *t, const tpar_gpt2_piece_t *p) {
    if (t->ndim == 1) return tpar_slice_1d(p->r0, p->nr);
    if (t->transposed) return tpar_slice_2d(p->c0, p->nc, p->r0, p->nr);
    return tpar_slice_2d(p->r0, p->nr, p->c0, p->nc);
}

/* Between the rank's buffer and the dense file block of a piece. */
static void pack(const tpar_gpt2_tensor_t *t, const tpar_gpt2_piece_t *p, float *dense, const float *local) {
    for (int r = 0; r < p->nr; r++)
        for (int c = 0; c < p->nc; c++) {
            float v = local[p->local_off + (size_t)r * p->ld + c];
            if (t->transposed) dense[(size_t)c * p->nr + r] = v;
            else dense[(size_t)r * p->nc + c] = v;
        }
}

static void unpack(const tpar_gpt2_tensor_t *t, const tpar_gpt2_piece_t *p, float *local, const float *dense) {
    for (int r = 0; r < p->nr; r++)
        for (int c = 0; c < p->nc; c++)
            local[p->local_off + (size_t)r * p->ld + c] =
                t->transposed ? dense[(size_t)c * p->nr + r] : dense[(size_t)r * p->nc + c];
}

static float *piece_buffer(const tpar_gpt2_t *m, tpar_err_t *err) {
    size_t mx = 1;
    for (int i = 0; i < m->n_tensors; i++) {
        tpar_gpt2_piece_t pc[3];
        int np = tpar_gpt2_pieces(&m->tensors[i], m->tp.size, m->tp.rank, pc);
        for (int k = 0; k < np; k++)
            if ((size_t)pc[k].nr * pc[k].nc > mx) mx = (size_t)pc[k].nr * pc[k].nc;
    }
    float *b = malloc(mx * sizeof(float));
    if (!b) tpar_err_set(err, TPAR_ERR_NOMEM, "checkpoint: out of memory for a %zu-float slice buffer", mx);
    return b;
}

/* Every rank learns whether any failed writing its part; a rank that did not fail says which did. */
static tpar_status agree(tpar_comm_t *comm, tpar_status st, const char *path, tpar_err_t *err) {
    char what[TPAR_ERR_MSG_MAX / 2];
    snprintf(what, sizeof what, "checkpoint %s", path);
    return tpar_comm_agree(comm, st, what, err);
}

static const char *config_keys[5] = {"n_layer", "n_head", "n_embd", "vocab_size", "n_positions"};

static void config_values(const tpar_gpt2_config_t *c, int v[5]) {
    v[0] = c->n_layer, v[1] = c->n_head, v[2] = c->n_embd, v[3] = c->vocab_size, v[4] = c->n_positions;
}

static tpar_status declare(const tpar_gpt2_t *m, int nbuf, const char *const *suffixes, tpar_st_writer_t *w,
                           tpar_err_t *err) {
    tpar_status st = TPAR_OK;
    int v[5];
    config_values(&m->cfg, v);
    char num[32];
    for (int i = 0; i < 5 && !st; i++) {
        snprintf(num, sizeof num, "%d", v[i]);
        st = tpar_st_writer_meta(w, config_keys[i], num, err);
    }
    if (!st) st = tpar_st_writer_meta(w, "layer_norm_epsilon", "1e-05", err);
    if (!st) st = tpar_st_writer_meta(w, "format", "tpar-gpt2", err);
    for (int j = 0; j < nbuf; j++)
        for (int i = 0; i < m->n_tensors && !st; i++) {
            const tpar_gpt2_tensor_t *t = &m->tensors[i];
            char name[96];
            snprintf(name, sizeof name, "%s%s", t->name, suffixes[j]);
            int64_t shape[2];
            int nd = file_shape(t, shape);
            st = tpar_st_writer_add(w, name, TPAR_ST_F32, nd, shape, err);
        }
    return st;
}

tpar_status tpar_gpt2_save(const tpar_gpt2_t *m, int nbuf, const float *const *bufs, const char *const *suffixes,
                           const char *path, tpar_comm_t *comm, int writer, tpar_err_t *err) {
    int rank0 = tpar_comm_rank(comm) == 0;
    tpar_st_writer_t *w = NULL;
    float *tmp = NULL;
    tpar_status st = TPAR_OK;
    if (writer) {
        st = tpar_st_writer_new(&w, err);
        if (!st) st = declare(m, nbuf, suffixes, w, err);
        if (!st && !(tmp = piece_buffer(m, err))) st = TPAR_ERR_NOMEM;
        if (!st && rank0) st = tpar_st_writer_create(w, path, err); // header written, file at full size
    }
    if ((st = agree(comm, st, path, err))) goto out;
    if (writer && !rank0) st = tpar_st_writer_open(w, path, err);
    uint64_t done = 0, total = (uint64_t)nbuf * m->num_params * sizeof(float); // this rank's bytes, for progress
    char what[80];
    snprintf(what, sizeof what, "saving %s", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    for (int j = 0; writer && !st && j < nbuf * m->n_tensors; j++) {
        const tpar_gpt2_tensor_t *t = &m->tensors[j % m->n_tensors];
        const float *buf = bufs[j / m->n_tensors];
        tpar_progress_report(&m->progress, what, done, total);
        done += t->numel * sizeof(float);
        if (t->kind == TPAR_SHARD_REPLICATED && m->tp.rank != 0) continue; // one copy is enough
        char name[96];
        snprintf(name, sizeof name, "%s%s", t->name, suffixes[j / m->n_tensors]);
        tpar_gpt2_piece_t pc[3];
        int np = tpar_gpt2_pieces(t, m->tp.size, m->tp.rank, pc);
        for (int k = 0; k < np && !st; k++) {
            pack(t, &pc[k], tmp, buf + t->offset);
            tpar_slice_t sl = file_slice(t, &pc[k]);
            st = tpar_st_writer_write(w, name, &sl, tmp, err);
        }
    }
    if (writer && !st) st = tpar_st_writer_close(w, err);
    if (writer && !st) tpar_progress_report(&m->progress, what, total, total);
    st = agree(comm, st, path, err);
out:
    tpar_st_writer_free(w);
    free(tmp);
    return st;
}

static tpar_status check_config(const tpar_st_file_t *f, const tpar_gpt2_config_t *c, const char *path,
                                tpar_err_t *err) {
    int v[5];
    config_values(c, v);
    for (int i = 0; i < 5; i++) {
        const char *s = tpar_st_metadata(f, config_keys[i]);
        long long x;
        if (!s || tpar_parse_int(s, 1, 1 << 30, &x))
            return tpar_err_set(err, TPAR_ERR_CORRUPT, "checkpoint %s: metadata '%s' missing or not an integer", path,
                                config_keys[i]);
        if (x != v[i])
            return tpar_err_set(err, TPAR_ERR_SHAPE, "checkpoint %s: %s is %lld, the model has %d", path,
                                config_keys[i], x, v[i]);
    }
    return TPAR_OK;
}

/* Every tensor of nbuf buffers of m's table is in the file with its global shape and F32. */
static tpar_status check_tensors(const tpar_st_file_t *f, const tpar_gpt2_t *m, int nbuf, const char *const *suffixes,
                                 tpar_err_t *err) {
    tpar_status st = TPAR_OK;
    for (int j = 0; !st && j < nbuf * m->n_tensors; j++) {
        const tpar_gpt2_tensor_t *t = &m->tensors[j % m->n_tensors];
        char name[96];
        snprintf(name, sizeof name, "%s%s", t->name, suffixes[j / m->n_tensors]);
        int64_t shape[2];
        int nd = file_shape(t, shape);
        st = tpar_st_expect(f, name, TPAR_ST_F32, nd, shape, err);
    }
    return st;
}

tpar_status tpar_gpt2_read_config(const char *path, tpar_gpt2_config_t *cfg, tpar_err_t *err) {
    tpar_st_file_t *f = NULL;
    tpar_status st = tpar_st_open(path, &f, err);
    if (st) return st;
    memset(cfg, 0, sizeof *cfg);
    int *dst[5] = {&cfg->n_layer, &cfg->n_head, &cfg->n_embd, &cfg->vocab_size, &cfg->n_positions};
    for (int i = 0; i < 5 && !st; i++) {
        const char *s = tpar_st_metadata(f, config_keys[i]);
        long long x;
        if (!s || tpar_parse_int(s, 1, 1 << 30, &x))
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "checkpoint %s: metadata '%s' missing or not an integer", path,
                              config_keys[i]);
        else *dst[i] = (int)x;
    }
    // The metadata decides the sizes of everything that follows: check it, then that the file
    // holds the tensors it implies (names, shapes, F32; st_open checked their byte ranges), so
    // that a few bytes of metadata can never make anyone allocate for a model that is not there.
    tpar_gpt2_t *table = NULL;
    tpar_err_t e = {0};
    if (!st && tpar_gpt2_table_new(cfg, &table, &e))
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "checkpoint %s: the config in its metadata is impossible: %s", path,
                          e.msg);
    const char *const plain[1] = {""};
    if (!st) st = check_tensors(f, table, 1, plain, err);
    tpar_gpt2_table_free(table);
    tpar_st_close(f);
    return st;
}

tpar_status tpar_gpt2_load(tpar_gpt2_t *m, int nbuf, float *const *bufs, const char *const *suffixes,
                           const char *path, tpar_err_t *err) {
    tpar_st_file_t *f = NULL;
    float *tmp = NULL;
    tpar_status st = tpar_st_open(path, &f, err);
    if (!st) st = check_config(f, &m->cfg, path, err);
    if (!st) st = check_tensors(f, m, nbuf, suffixes, err); // all of them before reading any
    if (!st && !(tmp = piece_buffer(m, err))) st = TPAR_ERR_NOMEM;
    for (int j = 0; !st && j < nbuf; j++) memset(bufs[j], 0, m->num_params * sizeof(float)); // padding stays 0
    uint64_t done = 0, total = (uint64_t)nbuf * m->num_params * sizeof(float); // this rank's bytes, for progress
    char what[80];
    snprintf(what, sizeof what, "loading %s", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    for (int j = 0; !st && j < nbuf * m->n_tensors; j++) {
        const tpar_gpt2_tensor_t *t = &m->tensors[j % m->n_tensors];
        float *buf = bufs[j / m->n_tensors];
        tpar_progress_report(&m->progress, what, done, total);
        done += t->numel * sizeof(float);
        char name[96];
        snprintf(name, sizeof name, "%s%s", t->name, suffixes[j / m->n_tensors]);
        int64_t shape[2];
        int nd = file_shape(t, shape);
        if ((st = tpar_st_expect(f, name, TPAR_ST_F32, nd, shape, err))) break;
        tpar_gpt2_piece_t pc[3];
        int np = tpar_gpt2_pieces(t, m->tp.size, m->tp.rank, pc);
        for (int k = 0; k < np && !st; k++) {
            tpar_slice_t sl = file_slice(t, &pc[k]);
            if ((st = tpar_st_read(f, name, TPAR_ST_F32, &sl, tmp, err))) break;
            size_t n = (size_t)pc[k].nr * pc[k].nc;
            for (size_t i = 0; i < n && !st; i++)
                if (!isfinite(tmp[i])) // a diverged run's weights: generating or resuming from them is garbage
                    st = tpar_err_set(err, TPAR_ERR_CORRUPT,
                                      "checkpoint %s: tensor '%s' holds a non-finite value (%g) at element %zu of this "
                                      "rank's block: refusing to load it (hint: an older checkpoint)",
                                      path, name, (double)tmp[i], i);
            if (!st) unpack(t, &pc[k], buf + t->offset, tmp);
        }
    }
    if (!st) tpar_progress_report(&m->progress, what, total, total);
    tpar_st_close(f);
    free(tmp);
    return st;
}
