/* Internal to src/train: which host each rank runs on, and whether the TP groups stay inside a
 * host (placement.c, docs/HOSTS.md). */
#ifndef TPAR_TRAIN_PLACEMENT_H
#define TPAR_TRAIN_PLACEMENT_H

#include <stddef.h>

#include "tpar/comm.h"
#include "tpar/core.h"

#define TRAIN_HOST_NAME 64 /* bytes of a host name compared (longer names are cut) */

/* Checks a layout: host_of[r] is the host index of world rank r (0..nhosts-1, numbered in
 * order of first appearance), names[h] its name. TP group g is ranks g*tp .. g*tp+tp-1. A TP
 * group whose ranks are on more than one host is TPAR_ERR_INVALID_ARG naming the group, its
 * ranks and hosts, unless allow_across. On success, summary (if not NULL) gets one line
 * without a newline: the hosts and which host each TP group is on. */
tpar_status train_placement_check(const int *host_of, const char (*names)[TRAIN_HOST_NAME], int world, int tp,
                                  int allow_across, char *summary, size_t summary_size, tpar_err_t *err);

/* Gathers every rank's host name over world (gethostname: under Open MPI with one hostname per
 * node, the node names of its hostfile) and runs train_placement_check. */
tpar_status train_placement(tpar_comm_t *world, int tp, int allow_across, char *summary, size_t summary_size,
                            tpar_err_t *err);

#endif
