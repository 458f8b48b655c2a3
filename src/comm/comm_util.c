/* Helpers beneath the comm backends, used by the front end (comm.c) and by every backend:
 * the communicator object's creation and failure recording, the world's shared failure state,
 * and the description of a call for messages and cross-rank checks. Nothing here calls a
 * backend or the public collectives, so the dependencies form a tree:
 * front end (comm.c) -> backend tables (shm.c, mpi.c, hier.c) -> these helpers. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm_internal.h"

const char *coll_name(coll_kind k) {
    static const char *names[] = {"?", "allreduce", "allgather", "allgatherv", "reduce_scatter",
                                  "reduce_scatterv", "broadcast", "alltoall", "barrier", "send", "recv"};
    return (unsigned)k < COLL_KIND_END ? names[k] : "?";
}

/* ---- the world's shared state ------------------------------------------------------------ */

comm_world_t *comm_world_new(void) {
    comm_world_t *w = calloc(1, sizeof *w);
    if (w) atomic_init(&w->refs, 1);
    return w;
}

comm_world_t *comm_world_ref(comm_world_t *w) {
    if (w) atomic_fetch_add(&w->refs, 1);
    return w;
}

void comm_world_unref(comm_world_t *w) {
    if (!w || atomic_fetch_sub(&w->refs, 1) != 1) return;
    free(w->pids);
    free(w->hosts);
    free(w);
}

int comm_world_failed(const tpar_comm_t *c) { return c->wstate && atomic_load(&c->wstate->failed) != 0; }

/* The first failure that can leave peers waiting marks the world (see comm_world_t). */
static void world_mark_failed(tpar_comm_t *c, tpar_status code) {
    comm_world_t *w = c->wstate;
    int zero = 0;
    if (!w || code == TPAR_ERR_MISMATCH || !atomic_compare_exchange_strong(&w->failed, &zero, 1)) return;
    snprintf(w->msg, sizeof w->msg, "%s", c->err);
    w->code = code;
    atomic_store(&w->failed, 2);
}

void comm_pid_state(int pid, char *buf, size_t n) {
    buf[0] = 0;
    if (pid <= 0) return;
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) snprintf(buf, n, ", which no longer exists");
        return;
    }
    ssize_t got = read(fd, stat, sizeof stat - 1);
    close(fd);
    if (got <= 0) return;
    stat[got] = 0;
    const char *paren = strrchr(stat, ')'); /* "pid (comm) S ...": comm may hold spaces */
    char state = paren && paren[1] == ' ' ? paren[2] : '?';
    if (state == 'T' || state == 't')
        snprintf(buf, n, ", which is stopped (SIGSTOP or a debugger)");
    else if (state == 'Z' || state == 'X')
        snprintf(buf, n, ", which has exited");
}

tpar_status comm_fail(tpar_comm_t *c, tpar_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    if (code != TPAR_ERR_INVALID_ARG && c->poisoned == TPAR_OK) {
        c->poisoned = code;
        world_mark_failed(c, code);
    }
    return code;
}

int comm_local_ranks(int fallback) {
    static const char *vars[] = {"TPAR_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        long long v;
        const char *s = getenv(vars[i]);
        if (s && tpar_parse_int(s, 1, 1 << 20, &v) == TPAR_OK) return (int)v;
    }
    return fallback;
}

tpar_comm_t *comm_new(int rank, int size) {
    tpar_comm_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->world_ranks = calloc((size_t)size, sizeof *c->world_ranks);
    if (!c->world_ranks) {
        free(c);
        return NULL;
    }
    c->rank = rank;
    c->size = size;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    return c;
}

void comm_describe_call(const coll_t *call, char *buf, size_t n) {
    if (!call) {
        snprintf(buf, n, "communicator set-up");
    } else if (call->kind == COLL_BARRIER) {
        snprintf(buf, n, "barrier #%llu", (unsigned long long)call->seq);
    } else if (call->kind == COLL_SEND || call->kind == COLL_RECV) {
        snprintf(buf, n, "%s (%s %d, tag %d, %zu x %s)", coll_name(call->kind),
                 call->kind == COLL_SEND ? "to" : "from", call->peer, call->tag, call->count,
                 tpar_dtype_name(call->dt));
    } else {
        int reduces = call->kind == COLL_ALLREDUCE || call->kind == COLL_REDUCE_SCATTER ||
                      call->kind == COLL_REDUCE_SCATTERV;
        snprintf(buf, n, "%s #%llu (%zu x %s%s%s)", coll_name(call->kind), (unsigned long long)call->seq,
                 call->count, tpar_dtype_name(call->dt), reduces ? " " : "", reduces ? tpar_op_name(call->op) : "");
    }
}

call_desc_t comm_call_desc(const coll_t *k) {
    int v = k->kind == COLL_ALLGATHERV || k->kind == COLL_REDUCE_SCATTERV;
    return (call_desc_t){k->seq, v ? k->desc_hash : k->count, (uint8_t)k->kind, (uint8_t)k->dt, (uint8_t)k->op,
                         0, (int32_t)k->root};
}

tpar_status comm_mismatch(tpar_comm_t *c, const coll_t *k, int q, const call_desc_t *d) {
    call_desc_t mine = comm_call_desc(k);
    char what[160];
    comm_describe_call(k, what, sizeof what);
    int v = k->kind == COLL_ALLGATHERV || k->kind == COLL_REDUCE_SCATTERV;
    if (v && d->seq == mine.seq && d->kind == mine.kind && d->dt == mine.dt && d->root == mine.root &&
        d->op == mine.op)
        return comm_fail(c, TPAR_ERR_MISMATCH, "%s: rank %d passed other per-rank counts than this rank (%d)", what,
                         q, c->rank);
    char theirs[24] = "per-rank", ours[24] = "per-rank";
    if (!v) {
        snprintf(theirs, sizeof theirs, "%llu", (unsigned long long)d->size);
        snprintf(ours, sizeof ours, "%llu", (unsigned long long)mine.size);
    }
    return comm_fail(c, TPAR_ERR_MISMATCH,
                     "%s: rank %d called %s #%llu with %s x %s, %s, root %d, while this rank (%d) passed %s x %s, "
                     "%s, root %d",
                     what, q, d->kind > 0 && d->kind < COLL_KIND_END ? coll_name((coll_kind)d->kind) : "?",
                     (unsigned long long)d->seq, theirs, tpar_dtype_name((tpar_dtype)d->dt),
                     tpar_op_name((tpar_op)d->op), d->root, c->rank, ours, tpar_dtype_name(k->dt),
                     tpar_op_name(k->op), k->root);
}
