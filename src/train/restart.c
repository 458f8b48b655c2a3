/* A rank's view of the supervisor's restarts: the environment that `tpar launch --max-restarts`
 * sets for an attempt after a failure (docs/FAULTS.md), reported once by rank 0. */
#include <stdio.h>
#include <stdlib.h>

#include "restart.h"

static long long env_or(const char *name, long long def) {
    long long v;
    const char *s = getenv(name);
    return s && tpar_parse_int(s, -1, 1LL << 40, &v) == TPAR_OK ? v : def;
}

int train_restart_count(void) { return (int)env_or("TPAR_RESTART_COUNT", 0); }

tpar_status train_restart_log(int rank, int resumed_step, tpar_metrics_t *m, tpar_err_t *err) {
    int count = train_restart_count();
    if (count <= 0 || rank != 0) return TPAR_OK;
    long long last = env_or("TPAR_RESTART_LAST_STEP", -1);
    long long lost = last > resumed_step ? last - resumed_step : 0;
    const char *reason = getenv("TPAR_RESTART_REASON");
    printf("restart %d: resumed at step %d; %lld completed step%s lost (the failed attempt had completed step %lld): "
           "%s\n",
           count, resumed_step, lost, lost == 1 ? "" : "s", last, reason ? reason : "unknown failure");
    fflush(stdout);
    if (!m) return TPAR_OK;
    tpar_kv_t *kv = tpar_kv_new();
    if (!kv) return tpar_err_set(err, TPAR_ERR_NOMEM, "metrics: out of memory");
    tpar_status st = tpar_kv_set_str(kv, "event", "restart");
    if (!st) st = tpar_kv_set_i64(kv, "restart", count);
    if (!st) st = tpar_kv_set_i64(kv, "resumed_step", resumed_step);
    if (!st) st = tpar_kv_set_i64(kv, "failed_after_step", last);
    if (!st) st = tpar_kv_set_i64(kv, "lost_steps", lost);
    if (!st) st = tpar_kv_set_str(kv, "reason", reason ? reason : "unknown failure");
    if (st) st = tpar_err_set(err, st, "metrics: out of memory");
    else st = tpar_metrics_write(m, kv, err);
    tpar_kv_free(kv);
    return st;
}
