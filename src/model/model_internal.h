/* Internal to src/model: where a rank's shard of a tensor sits in the global tensor. */
#ifndef TPAR_MODEL_INTERNAL_H
#define TPAR_MODEL_INTERNAL_H

#include "tpar/model.h"

/* A block of the full in-memory (rows, cols) tensor: rows [r0, r0+nr), columns [c0, c0+nc),
 * held by this rank at local + local_off with row stride ld. */
typedef struct {
    int r0, nr, c0, nc;
    size_t local_off;
    int ld;
} tpar_gpt2_piece_t;

/* The pieces of rank `rank`'s shard (at most 3: one per third of the fused QKV); only rows
 * that exist in the file (the vocabulary padding is left out). Returns how many. */
int tpar_gpt2_pieces(const tpar_gpt2_tensor_t *t, int tp, int rank, tpar_gpt2_piece_t out[3]);

/* The padded vocabulary at this TP size (a multiple of 64 * tp). */
int tpar_gpt2_vocab_padded(int V, int tp);

/* The tensor table of cfg alone (TP of one, no buffers, nothing sized from cfg but the
 * table), after tpar_gpt2_check: to check a file's tensors before a model is built. */
tpar_status tpar_gpt2_table_new(const tpar_gpt2_config_t *cfg, tpar_gpt2_t **out, tpar_err_t *err);
void tpar_gpt2_table_free(tpar_gpt2_t *m); /* NULL is fine */

#endif /* TPAR_MODEL_INTERNAL_H */
