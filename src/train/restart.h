/* Internal to src/train: what a rank knows of the restarts of its job (restart.c). */
#ifndef TPAR_TRAIN_RESTART_H
#define TPAR_TRAIN_RESTART_H

#include "tpar/io.h"

/* Restarts so far (TPAR_RESTART_COUNT, set by the supervisor `tpar launch --max-restarts`);
 * 0 for the first attempt or without a supervisor. */
int train_restart_count(void);

/* After a restart resumed at resumed_step: rank 0 prints the restart, the failure that caused
 * it and the completed steps lost, and writes them as an {"event": "restart", ...} line to the
 * metrics (m may be NULL). A no-op on the first attempt. */
tpar_status train_restart_log(int rank, int resumed_step, tpar_metrics_t *m, tpar_err_t *err);

#endif
