/* Placement of the TP x DP grid on hosts: TP groups all-reduce in every layer, so they must
 * share a host (shared memory); DP all-reduces once a step and may cross the network. */
#define _DEFAULT_SOURCE /* gethostname */
#include "placement.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

tpar_status train_placement_check(const int *host_of, const char (*names)[TRAIN_HOST_NAME], int world, int tp,
                                  int allow_across, char *summary, size_t summary_size, tpar_err_t *err) {
    if (world < 1 || tp < 1 || world % tp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "placement: %d ranks do not form TP groups of %d", world, tp);
    int nhosts = 0, spans = 0;
    for (int r = 0; r < world; r++)
        if (host_of[r] + 1 > nhosts) nhosts = host_of[r] + 1;
    for (int g = 0; g < world / tp; g++) {
        const int *h = host_of + (size_t)g * tp;
        int q = 1;
        while (q < tp && h[q] == h[0]) q++;
        if (q == tp) continue;
        spans++;
        if (!allow_across)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                                "placement: TP group %d (ranks %d-%d) spans hosts: rank %d is on %s, rank %d on %s; "
                                "its all-reduces in every layer would cross the network (hint: give each host a "
                                "multiple of --tp %d consecutive ranks, e.g. mpirun --map-by slot with slots=%d per "
                                "host, or pass --allow-tp-across-hosts)",
                                g, g * tp, g * tp + tp - 1, g * tp, names[h[0]], g * tp + q, names[h[q]], tp, tp);
    }
    if (!summary || !summary_size) return TPAR_OK;
    size_t at = 0;
    int n = snprintf(summary, summary_size, "placement: %d host%s", nhosts, nhosts == 1 ? "" : "s");
    for (int g = 0; g < world / tp && n >= 0; g++) {
        at += (size_t)n;
        if (at >= summary_size) break;
        const int *h = host_of + (size_t)g * tp;
        int across = 0;
        for (int q = 1; q < tp; q++) across |= h[q] != h[0];
        if (g == 8 && world / tp > 9) {
            n = snprintf(summary + at, summary_size - at, " | ... (%d TP groups)", world / tp);
            break;
        }
        n = snprintf(summary + at, summary_size - at, " | TP group %d (ranks %d-%d) on %s%s", g, g * tp,
                     g * tp + tp - 1, names[h[0]], across ? " and other hosts (--allow-tp-across-hosts)" : "");
    }
    at += n > 0 ? (size_t)n : 0;
    if (at < summary_size && nhosts > 1 && world / tp > 1)
        snprintf(summary + at, summary_size - at, " | DP crosses hosts%s",
                 spans ? "" : ", TP stays inside each host");
    return TPAR_OK;
}

tpar_status train_placement(tpar_comm_t *world, int tp, int allow_across, char *summary, size_t summary_size,
                            tpar_err_t *err) {
    int n = tpar_comm_size(world);
    char mine[TRAIN_HOST_NAME] = "";
    if (gethostname(mine, sizeof mine - 1) != 0) snprintf(mine, sizeof mine, "unknown");
    mine[sizeof mine - 1] = 0;
    char(*all)[TRAIN_HOST_NAME] = calloc((size_t)n, sizeof *all);
    char(*names)[TRAIN_HOST_NAME] = calloc((size_t)n, sizeof *names);
    int *host_of = calloc((size_t)n, sizeof *host_of);
    tpar_status st = TPAR_OK;
    if (!all || !names || !host_of) st = tpar_err_set(err, TPAR_ERR_NOMEM, "placement: out of memory");
    // host names as int32 words: the collectives move typed elements
    if (!st && (st = tpar_comm_allgather(world, mine, all, TRAIN_HOST_NAME / sizeof(int32_t), TPAR_I32)))
        st = tpar_err_set(err, st, "placement: all-gather of the host names: %s", tpar_comm_error(world));
    int nhosts = 0;
    for (int r = 0; !st && r < n; r++) {
        int h = 0;
        while (h < nhosts && memcmp(names[h], all[r], TRAIN_HOST_NAME)) h++;
        if (h == nhosts) memcpy(names[nhosts++], all[r], TRAIN_HOST_NAME);
        host_of[r] = h;
    }
    if (!st)
        st = train_placement_check(host_of, (const char(*)[TRAIN_HOST_NAME])names, n, tp, allow_across, summary,
                                   summary_size, err);
    free(all);
    free(names);
    free(host_of);
    return st;
}
