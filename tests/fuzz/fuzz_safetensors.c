/* libFuzzer target: tpar_st_open on arbitrary bytes, then everything a loader does with an
 * opened file (tensor table, metadata, tpar_st_expect, whole and sliced reads of each tensor,
 * including slices out of bounds and with overflowing start + count). */
#include "fuzz_util.h"
#include "tpar/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("f.safetensors", data, size);
    tpar_st_file_t *f = NULL;
    tpar_err_t err = {0};
    if (tpar_st_open(path, &f, &err) != TPAR_OK) return 0;
    (void)tpar_st_metadata(f, "format");
    (void)tpar_st_metadata(f, "n_embd");
    for (size_t i = 0; i < tpar_st_count(f); i++) {
        const tpar_st_tensor_t *t = tpar_st_tensor(f, i);
        if (tpar_st_find(f, t->name) != t) abort(); /* names are unique */
        (void)tpar_st_expect(f, t->name, TPAR_ST_F32, t->ndim, t->shape, &err);
        uint64_t bytes = t->end - t->begin;
        if (bytes > (1u << 20)) continue; /* validated against the file size: never more than the input */
        void *buf = malloc(bytes ? bytes : 1);
        if (!buf) abort();
        if (tpar_st_read(f, t->name, t->dtype, NULL, buf, &err) != TPAR_OK) abort(); /* a valid file reads */
        if (t->ndim > 0) { /* the last half of dimension 0, then a slice that overflows */
            tpar_slice_t s = {.ndim = t->ndim};
            for (int d = 0; d < t->ndim; d++) s.count[d] = t->shape[d];
            s.start[0] = t->shape[0] / 2;
            s.count[0] = t->shape[0] - s.start[0];
            if (tpar_st_read(f, t->name, t->dtype, &s, buf, &err) != TPAR_OK) abort();
            s.start[0] = INT64_MAX, s.count[0] = INT64_MAX;
            if (tpar_st_read(f, t->name, t->dtype, &s, buf, &err) == TPAR_OK) abort();
        }
        free(buf);
    }
    tpar_st_close(f);
    return 0;
}
