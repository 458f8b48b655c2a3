/* Internal to src/parallel: helpers shared by the layers. */
#ifndef TPAR_PARALLEL_INTERNAL_H
#define TPAR_PARALLEL_INTERNAL_H

#include "tpar/parallel.h"

/* Turns a failed collective into err, with the communicator's own message (it names
 * the missing rank) prefixed by what this layer was doing. */
tpar_status tpar_par_comm_err(const tpar_tp_t *tp, tpar_status st, const char *what, tpar_err_t *err);

/* Allocates n floats (zeroed) for a layer of the group tp, or fails with a message naming
 * `what`; tpar_par_free gives them back. */
tpar_status tpar_par_alloc(const tpar_tp_t *tp, float **out, size_t n, const char *what, tpar_err_t *err);
void tpar_par_free(const tpar_tp_t *tp, float *p); /* tp and p may be NULL */

/* Rows of an activation with this layout for N tokens (N/tp when split on sequence). */
int tpar_par_rows(const tpar_tp_t *tp, tpar_layout layout, int N);

/* Checks 1 <= N <= max and, under SP, N % tp == 0. `who` names the layer. */
tpar_status tpar_par_check_tokens(const tpar_tp_t *tp, const char *who, int N, int max_tokens,
                                  tpar_err_t *err);

#endif /* TPAR_PARALLEL_INTERNAL_H */
