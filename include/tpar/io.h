/* tpar io: the storage layer under training and failure recovery.
 *
 *   1. safetensors files, read and written by slices: tensors carry their global
 *      (unsharded) names and shapes; every rank writes or reads only its own rectangular
 *      block, so a checkpoint saved at one TP size loads at any other.
 *   2. atomic checkpoint directories with a verified manifest, a `latest` pointer and
 *      rotation; a crash at any point leaves the previous checkpoint loadable.
 *   3. small flat JSON records (training state, metrics lines).
 *   4. token data: byte-level text or binary token files, a validation split, and a
 *      deterministic, resumable data loader.
 *
 * io never talks to other ranks (it does not depend on comm): it offers steps, and the
 * training code orders them with barriers. docs/CHECKPOINT.md shows the pattern, the file
 * formats and why they are as they are. Every function that can fail returns a tpar_status
 * and fills the caller's tpar_err_t (which may be NULL) with what, where and what was expected. */
#ifndef TPAR_IO_H
#define TPAR_IO_H

#include <stddef.h>
#include <stdint.h>

#include "tpar/core.h"

/* ============================== safetensors ============================================ */

/* The dtypes of the safetensors format (names as in the file: "F32", "BF16", ...). */
typedef enum {
    TPAR_ST_BOOL = 0,
    TPAR_ST_U8,
    TPAR_ST_I8,
    TPAR_ST_F8_E5M2,
    TPAR_ST_F8_E4M3,
    TPAR_ST_I16,
    TPAR_ST_U16,
    TPAR_ST_F16,
    TPAR_ST_BF16,
    TPAR_ST_I32,
    TPAR_ST_U32,
    TPAR_ST_F32,
    TPAR_ST_F64,
    TPAR_ST_I64,
    TPAR_ST_U64,
    TPAR_ST_DTYPE_COUNT
} tpar_st_dtype;

TPAR_API size_t tpar_st_dtype_size(tpar_st_dtype dt);      /* bytes per element; 0 for an invalid dtype */
TPAR_API const char *tpar_st_dtype_name(tpar_st_dtype dt); /* "F32", ...; "?" for an invalid dtype */
/* Parses a file's dtype name; TPAR_ERR_INVALID_ARG if unknown. */
TPAR_API tpar_status tpar_st_dtype_parse(const char *name, tpar_st_dtype *out);

#define TPAR_ST_MAX_DIMS 8
#define TPAR_ST_MAX_HEADER (100u << 20) /* 100 MiB, the reference implementation's limit */

/* A rectangular block of a tensor: for each dimension d, indices [start[d], start[d]+count[d]).
 * ndim 0 (or passing NULL for a slice) means the whole tensor. The block is dense in memory
 * in row-major order: a (count[0], count[1], ...) array. */
typedef struct {
    int ndim;
    int64_t start[TPAR_ST_MAX_DIMS];
    int64_t count[TPAR_ST_MAX_DIMS];
} tpar_slice_t;

TPAR_API tpar_slice_t tpar_slice_1d(int64_t start, int64_t count);
/* Rows [r0, r0+nr) and columns [c0, c0+nc) of a 2-D tensor. Column slices are strided in
 * the file: one pread/pwrite per row. */
TPAR_API tpar_slice_t tpar_slice_2d(int64_t r0, int64_t nr, int64_t c0, int64_t nc);

/* One tensor of an open file (header entry). Offsets are relative to the data buffer. */
typedef struct {
    const char *name;
    tpar_st_dtype dtype;
    int ndim;
    int64_t shape[TPAR_ST_MAX_DIMS];
    uint64_t begin, end; /* byte range in the data buffer */
} tpar_st_tensor_t;

/* ---- reading ---- */
typedef struct tpar_st_file tpar_st_file_t;

/* Opens and fully validates a safetensors file: header length sane and inside the file,
 * JSON well-formed with no duplicate names, dtypes known, shapes non-negative without
 * overflow, data_offsets inside the file and equal to prod(shape) * dtype size, tensors
 * neither overlapping nor leaving holes, the file neither truncated nor with trailing bytes.
 * TPAR_ERR_CORRUPT (or TPAR_ERR_IO if it cannot be opened) with the file, the tensor and
 * what was expected. */
TPAR_API tpar_status tpar_st_open(const char *path, tpar_st_file_t **out, tpar_err_t *err);
TPAR_API void tpar_st_close(tpar_st_file_t *f); /* NULL is fine */

TPAR_API size_t tpar_st_count(const tpar_st_file_t *f);
TPAR_API const tpar_st_tensor_t *tpar_st_tensor(const tpar_st_file_t *f, size_t i); /* header order */
TPAR_API const tpar_st_tensor_t *tpar_st_find(const tpar_st_file_t *f, const char *name); /* NULL if absent */
TPAR_API const char *tpar_st_metadata(const tpar_st_file_t *f, const char *key);      /* NULL if absent */

/* Checks that tensor `name` exists with this dtype and global shape; otherwise TPAR_ERR_SHAPE
 * naming the file and tensor, what the file has and what was expected (or TPAR_ERR_CORRUPT
 * if the tensor is missing). */
TPAR_API tpar_status tpar_st_expect(const tpar_st_file_t *f, const char *name, tpar_st_dtype dtype, int ndim,
                                    const int64_t *shape, tpar_err_t *err);

/* Reads a slice of tensor `name` (NULL slice: the whole tensor) into dst, a dense block of
 * prod(slice counts) elements. The dtype must match (no conversion): TPAR_ERR_SHAPE otherwise,
 * also for a slice outside the tensor. */
TPAR_API tpar_status tpar_st_read(const tpar_st_file_t *f, const char *name, tpar_st_dtype dtype,
                                  const tpar_slice_t *slice, void *dst, tpar_err_t *err);

/* ---- writing (sharded) ----
 * The pattern, with every rank making the same declarations in the same order:
 *     all ranks:  tpar_st_writer_new, tpar_st_writer_add (each tensor, global shape),
 *                 tpar_st_writer_meta
 *     one rank:   tpar_st_writer_create(path)  -- header written, file at full size
 *     barrier
 *     others:     tpar_st_writer_open(path)    -- checks the header equals their own
 *     all ranks:  tpar_st_writer_write(name, slice, data)  -- their own blocks, pwrite
 *     all ranks:  tpar_st_writer_close         -- fsync, close
 *     barrier
 * The header is a pure function of the declarations, so no rank needs another's. */
typedef struct tpar_st_writer tpar_st_writer_t;

TPAR_API tpar_status tpar_st_writer_new(tpar_st_writer_t **out, tpar_err_t *err);
/* Declares a tensor; duplicate names, ndim > TPAR_ST_MAX_DIMS, negative dims or a size that
 * overflows are TPAR_ERR_INVALID_ARG. Fails after create/open (the header is fixed then). */
TPAR_API tpar_status tpar_st_writer_add(tpar_st_writer_t *w, const char *name, tpar_st_dtype dtype, int ndim,
                                        const int64_t *shape, tpar_err_t *err);
/* Adds a "__metadata__" string entry. */
TPAR_API tpar_status tpar_st_writer_meta(tpar_st_writer_t *w, const char *key, const char *value,
                                         tpar_err_t *err);
/* Total size the file will have (header included) with the declarations so far; 0 on error. */
TPAR_API uint64_t tpar_st_writer_file_size(const tpar_st_writer_t *w);
TPAR_API tpar_status tpar_st_writer_create(tpar_st_writer_t *w, const char *path, tpar_err_t *err);
TPAR_API tpar_status tpar_st_writer_open(tpar_st_writer_t *w, const char *path, tpar_err_t *err);
/* Writes `src`, the slice as a dense block (the layout tpar_st_read returns), into the file.
 * TPAR_ERR_SHAPE for a slice outside the tensor, TPAR_ERR_INVALID_ARG for an undeclared name. */
TPAR_API tpar_status tpar_st_writer_write(tpar_st_writer_t *w, const char *name, const tpar_slice_t *slice,
                                          const void *src, tpar_err_t *err);
/* fsyncs and closes the file (the writer may then be freed or reopened). */
TPAR_API tpar_status tpar_st_writer_close(tpar_st_writer_t *w, tpar_err_t *err);
TPAR_API void tpar_st_writer_free(tpar_st_writer_t *w); /* closes without fsync if still open; NULL is fine */

/* ============================== checkpoint directories ================================= */
/* Layout:  DIR/step_00000100/{manifest.json, model.safetensors, ...}   complete checkpoints
 *          DIR/step_00000200.tmp/                                       a save in progress
 *          DIR/latest                         "step_00000100\n", replaced atomically
 * A save: one rank calls tpar_ckpt_begin (removes leftover *.tmp, creates the temporary
 * directory), barrier, every rank writes its files into it, barrier, one rank calls
 * tpar_ckpt_commit (fsync, checksums, manifest, rename, latest, rotation). The rename is the
 * commit point: before it, the newest complete checkpoint is the previous one. */

#define TPAR_CKPT_PATH_MAX 4096
#define TPAR_CKPT_MANIFEST "manifest.json"

/* DIR/step_%08lld, or with tmp != 0 DIR/step_%08lld.tmp. TPAR_ERR_INVALID_ARG if it does not fit. */
TPAR_API tpar_status tpar_ckpt_path(char *buf, size_t cap, const char *dir, int64_t step, int tmp);

/* Creates DIR if needed, removes every leftover DIR/step_*.tmp, creates DIR/step_N.tmp and
 * returns its path in tmp_dir. */
TPAR_API tpar_status tpar_ckpt_begin(const char *dir, int64_t step, char *tmp_dir, size_t cap, tpar_err_t *err);

/* Finishes the save begun by tpar_ckpt_begin: fsyncs every file of the temporary directory,
 * reads each back once for its size and crc32 (per tensor too for *.safetensors files, which
 * are validated on the way, and the first tensor holding a NaN or an Inf is recorded as
 * "nonfinite"), writes manifest.json, fsyncs, renames the directory to DIR/step_N (replacing
 * an older one of the same step), updates DIR/latest, then (keep > 0) removes checkpoints up to
 * step N other than the newest `keep` valid ones (a checkpoint with non-finite tensors is not
 * valid, so it never displaces a finite one). Failing to write DIR/latest after the rename is
 * not an error: the checkpoint is committed; warning (may be NULL) then says so (else ""). An
 * error in rotation leaves the new checkpoint committed and loadable. */
TPAR_API tpar_status tpar_ckpt_commit(const char *dir, int64_t step, int keep, char *warning, size_t wcap, tpar_err_t *err);

/* Checks a checkpoint directory against its manifest (which must be for the step its name
 * says): every file present, a regular file, with its size and no non-finite tensor recorded,
 * and with full != 0 (one read of everything) its crc32s too, and that no floating-point tensor
 * holds a NaN or an Inf (which catches checkpoints written before the manifest recorded it).
 * TPAR_ERR_CORRUPT naming the file, the tensor and what was expected. */
TPAR_API tpar_status tpar_ckpt_verify(const char *ckpt_dir, int full, tpar_err_t *err);

typedef struct {
    int found;                       /* 0: no checkpoint at all (a fresh start) */
    int64_t step;
    char path[TPAR_CKPT_PATH_MAX];   /* DIR/step_N */
    int skipped;                     /* newer checkpoints that failed verification */
    char warning[1024];              /* why they were skipped ("" if none), for the user */
} tpar_ckpt_found_t;

/* Finds the newest complete and valid checkpoint in DIR (or DIR itself if it holds a
 * manifest). Invalid newer ones are skipped and described in out->warning. Returns TPAR_OK
 * with found = 0 if DIR is missing or holds no step_N directory; TPAR_ERR_CORRUPT if it holds
 * some but none is valid. *.tmp directories are ignored. */
TPAR_API tpar_status tpar_ckpt_find_latest(const char *dir, int full, tpar_ckpt_found_t *out, tpar_err_t *err);

/* One job per save directory: an exclusive flock(2) on DIR/tpar.lock, which holds the pid of
 * the process that took it. The lock belongs to the open file description, so the kernel
 * releases it when every process holding it has exited, however (kill -9 included); nothing
 * is left to clean up, and a stale lock file is simply locked again.
 *
 * tpar_ckpt_lock creates DIR if needed and takes the lock without waiting: a second job gets
 * TPAR_ERR_IO at once, naming the holder's pid and a hint. With inherit = 1 the descriptor
 * stays open across exec (for a process that execs into the supervisor of its ranks, which
 * keep it through the restarts of a job). inherited_fd >= 0 is a descriptor handed down by
 * such a parent (e.g. through an environment variable): if it refers to DIR's lock file and
 * holds the lock, the lock is the parent's (the same job): TPAR_OK with *out = NULL, and the
 * caller may close its inherited copy (then the lock goes the moment the parent goes);
 * otherwise it is ignored and the lock taken afresh. tpar_ckpt_unlock releases a handle (the
 * lock itself once no other process holds the descriptor); NULL is fine. */
#define TPAR_CKPT_LOCK "tpar.lock"
typedef struct tpar_ckpt_lock tpar_ckpt_lock_t;
TPAR_API tpar_status tpar_ckpt_lock(const char *dir, int inherited_fd, int inherit, tpar_ckpt_lock_t **out, tpar_err_t *err);
TPAR_API int tpar_ckpt_lock_fd(const tpar_ckpt_lock_t *l);
TPAR_API void tpar_ckpt_unlock(tpar_ckpt_lock_t *l);

/* Size and zlib crc32 of a whole file (what the manifest records). */
TPAR_API tpar_status tpar_file_crc32(const char *path, uint64_t *size, uint32_t *crc, tpar_err_t *err);

/* ============================== small JSON records ===================================== */
/* A flat JSON object: string keys to integers, unsigned 64-bit integers, doubles or strings.
 * Used for the training state (saved as a file) and metrics (one line per record).
 * u64 values (RNG states) are stored as decimal strings so that no JSON reader rounds them.
 * Non-finite doubles are written as null. Dotted keys ("rng.dropout") group by convention. */
typedef struct tpar_kv tpar_kv_t;

TPAR_API tpar_kv_t *tpar_kv_new(void); /* NULL on allocation failure */
TPAR_API void tpar_kv_free(tpar_kv_t *kv);
TPAR_API void tpar_kv_clear(tpar_kv_t *kv);
/* Setters replace an existing key; TPAR_ERR_NOMEM or TPAR_ERR_INVALID_ARG (NULL key). */
TPAR_API tpar_status tpar_kv_set_i64(tpar_kv_t *kv, const char *key, int64_t v);
TPAR_API tpar_status tpar_kv_set_u64(tpar_kv_t *kv, const char *key, uint64_t v);
TPAR_API tpar_status tpar_kv_set_f64(tpar_kv_t *kv, const char *key, double v);
TPAR_API tpar_status tpar_kv_set_str(tpar_kv_t *kv, const char *key, const char *v);
TPAR_API int tpar_kv_has(const tpar_kv_t *kv, const char *key);
/* Getters: TPAR_ERR_CORRUPT naming the key if it is missing or of another type. get_str's
 * result lives as long as the record is unchanged. get_f64 accepts integers; null reads NaN. */
TPAR_API tpar_status tpar_kv_get_i64(const tpar_kv_t *kv, const char *key, int64_t *out, tpar_err_t *err);
TPAR_API tpar_status tpar_kv_get_u64(const tpar_kv_t *kv, const char *key, uint64_t *out, tpar_err_t *err);
TPAR_API tpar_status tpar_kv_get_f64(const tpar_kv_t *kv, const char *key, double *out, tpar_err_t *err);
TPAR_API tpar_status tpar_kv_get_str(const tpar_kv_t *kv, const char *key, const char **out, tpar_err_t *err);

/* Writes the record as a JSON file atomically (PATH.tmp, fsync, rename, fsync directory). */
TPAR_API tpar_status tpar_kv_save(const tpar_kv_t *kv, const char *path, tpar_err_t *err);
/* Reads a JSON file holding one flat object; TPAR_ERR_CORRUPT with line and column if not. */
TPAR_API tpar_status tpar_kv_load(const char *path, tpar_kv_t **out, tpar_err_t *err);

/* JSON-lines metrics: opened in append mode (a resumed run appends); each write is one
 * line holding the record, flushed. */
typedef struct tpar_metrics tpar_metrics_t;
TPAR_API tpar_status tpar_metrics_open(const char *path, tpar_metrics_t **out, tpar_err_t *err);
TPAR_API tpar_status tpar_metrics_write(tpar_metrics_t *m, const tpar_kv_t *record, tpar_err_t *err);
TPAR_API void tpar_metrics_close(tpar_metrics_t *m); /* NULL is fine */

/* ============================== token data ============================================= */
/* Tokens in memory are int32. Text files give byte-level tokens (vocab 256). Binary token
 * files: a 24-byte little-endian header
 *     "TPTK" | u32 version (1) | u32 token width in bytes (2 or 4) | u32 vocab | u64 count
 * then `count` tokens of that width; the size must match exactly and every token be < vocab. */
#define TPAR_TOKENS_MAGIC "TPTK"
#define TPAR_TOKENS_VERSION 1u
#define TPAR_TOKENS_HEADER 24

typedef struct {
    int32_t *data;     /* owned, unless this is a view from tpar_tokens_split */
    size_t n;
    int vocab;
    int owned;
    char source[256];  /* file name and part, for messages */
} tpar_tokens_t;

/* Loads a binary token file if it starts with the magic, otherwise the bytes of a text file.
 * Missing or empty files are TPAR_ERR_IO / TPAR_ERR_CORRUPT naming the file. */
TPAR_API tpar_status tpar_tokens_load(const char *path, tpar_tokens_t *out, tpar_err_t *err);
/* Writes a binary token file (width 2 or 4; every token must be in [0, vocab)). */
TPAR_API tpar_status tpar_tokens_write_bin(const char *path, const int32_t *tokens, size_t n, int width, int vocab,
                                           tpar_err_t *err);
TPAR_API void tpar_tokens_free(tpar_tokens_t *t); /* frees owned data; views are left alone */

/* Splits into train (the first part) and validation (the last val_frac, in (0, 1)) views
 * into `all`, which must outlive them. */
TPAR_API tpar_status tpar_tokens_split(const tpar_tokens_t *all, double val_frac, tpar_tokens_t *train,
                                       tpar_tokens_t *val, tpar_err_t *err);

/* The data loader. Sample k of the stream is a window of T+1 tokens: window w starts at
 * token w*T, there are nwin = (n-1)/T windows; epoch e = k / nwin visits them in the order of
 * a permutation drawn from (seed, e) (identity with shuffle = 0). A step consumes
 * dp_size * accum * B samples; micro-batch m of DP rank r takes samples
 *     pos + (m * dp_size + r) * B + b,   b in [0, B)
 * where pos, the position, counts the samples consumed so far. A batch is thus a pure
 * function of (seed, pos, r, m): saving seed and pos in the training state resumes
 * bit-exactly, even with a different DP layout. */
typedef struct {
    const tpar_tokens_t *tokens; /* borrowed */
    int B, T;
    int dp_rank, dp_size, accum;
    int shuffle;
    uint64_t seed;
    uint64_t pos;      /* samples consumed before the current step */
    uint64_t nwin;
    uint64_t *perm;    /* the current epoch's window order (NULL without shuffle) */
    uint64_t perm_epoch;
} tpar_loader_t;

/* TPAR_ERR_SHAPE if the tokens are fewer than T+1 (naming the source), TPAR_ERR_INVALID_ARG
 * for bad B, T, ranks or accum. */
TPAR_API tpar_status tpar_loader_init(tpar_loader_t *L, const tpar_tokens_t *tokens, int B, int T, int dp_rank,
                                      int dp_size, int accum, uint64_t seed, int shuffle, tpar_err_t *err);
TPAR_API void tpar_loader_free(tpar_loader_t *L);
/* Micro-batch `micro` (0..accum-1) of the current step for this rank: inputs and targets,
 * each (B, T), targets shifted by one token. */
TPAR_API tpar_status tpar_loader_batch(tpar_loader_t *L, int micro, int32_t *inputs, int32_t *targets,
                                       tpar_err_t *err);
TPAR_API void tpar_loader_advance(tpar_loader_t *L); /* end of step: pos += dp_size * accum * B */

/* Stores / restores "data.seed" and "data.pos" in a training-state record. */
TPAR_API tpar_status tpar_loader_save_state(const tpar_loader_t *L, tpar_kv_t *state);
TPAR_API tpar_status tpar_loader_load_state(tpar_loader_t *L, const tpar_kv_t *state, tpar_err_t *err);

#endif /* TPAR_IO_H */
