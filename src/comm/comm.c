/* The communicator front end: configuration, argument checks, the queue of non-blocking
 * calls and its progress (worker thread or inside test/wait), accounting, and dispatch to
 * the backend through its operations table (comm_backend_ops_t). Backends only ever see validated calls, one at a time, in issue order. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm_internal.h"
#include "tpar/fault.h"

#define DEFAULT_TIMEOUT_S 60.0

tpar_comm_config_t tpar_comm_config_default(void) {
    tpar_comm_config_t c = {TPAR_BACKEND_AUTO, 0.0, -1, -1};
    return c;
}

static tpar_status backend_from_env(tpar_backend *b, tpar_err_t *err) {
    const char *v = getenv("TPAR_COMM");
    if (!v || !*v || !strcmp(v, "auto")) *b = TPAR_BACKEND_AUTO;
    else if (!strcmp(v, "shm")) *b = TPAR_BACKEND_SHM;
    else if (!strcmp(v, "mpi")) *b = TPAR_BACKEND_MPI;
    else if (!strcmp(v, "hier")) *b = TPAR_BACKEND_HIER;
    else return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "TPAR_COMM='%s': expected shm, mpi, hier or auto", v);
    return TPAR_OK;
}

static tpar_status resolve_config(const tpar_comm_config_t *in, tpar_comm_config_t *out, tpar_err_t *err) {
    *out = in ? *in : tpar_comm_config_default();
    if ((unsigned)out->backend >= TPAR_BACKEND_COUNT)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "comm config: unknown backend %d", (int)out->backend);
    tpar_status st;
    if (out->backend == TPAR_BACKEND_AUTO && (st = backend_from_env(&out->backend, err))) return st;
    if (out->timeout_s <= 0 &&
        (st = tpar_env_double("TPAR_COMM_TIMEOUT", DEFAULT_TIMEOUT_S, 0.001, 1e9, &out->timeout_s, err)))
        return st;
    if (out->progress_thread < 0) {
        const char *p = getenv("TPAR_COMM_PROGRESS");
        if (p && !strcmp(p, "thread")) out->progress_thread = 1;
        else if (p && !strcmp(p, "inline")) out->progress_thread = 0;
        else if (p && *p && strcmp(p, "auto"))
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "TPAR_COMM_PROGRESS='%s': expected thread, inline or auto", p);
        else /* a worker only helps when it has a core of its own */
            out->progress_thread = tpar_num_cores() > comm_local_ranks(1);
    }
    if (out->check_calls < 0) {
        long long v = 0;
        if ((st = tpar_env_int("TPAR_COMM_CHECK", 0, 0, 1, &v, err))) return st;
        out->check_calls = (int)v;
    }
    return TPAR_OK;
}

tpar_status tpar_comm_init(const tpar_comm_config_t *cfg, tpar_comm_t **out, tpar_err_t *err) {
    if (!out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_comm_init: out is NULL");
    *out = NULL;
    tpar_comm_config_t rc;
    tpar_status st = resolve_config(cfg, &rc, err);
    if (st) return st;
    int mpi_job = 0;
#ifdef TPAR_HAVE_MPI
    mpi_job = mpi_started_by_launcher();
#endif
    int tpar_job = getenv("TPAR_RANK") != NULL;
    if (rc.backend == TPAR_BACKEND_AUTO) rc.backend = (mpi_job && !tpar_job) ? TPAR_BACKEND_HIER : TPAR_BACKEND_SHM;
    if ((rc.backend == TPAR_BACKEND_MPI || rc.backend == TPAR_BACKEND_HIER) && tpar_job && !mpi_job)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "backend '%s' needs ranks started by mpirun/srun, not `tpar launch` (use shm there)",
                            tpar_backend_name(rc.backend));

    long long rank = 0, size = 1;
    if (tpar_job || rc.backend == TPAR_BACKEND_SHM) {
        if ((st = tpar_env_int("TPAR_WORLD_SIZE", 1, 1, 1 << 20, &size, err))) return st;
        if ((st = tpar_env_int("TPAR_RANK", 0, 0, size - 1, &rank, err))) return st;
    }
    tpar_comm_t *c = comm_new((int)rank, (int)size);
    if (!c) return tpar_err_set(err, TPAR_ERR_NOMEM, "tpar_comm_init: out of memory");
    c->wstate = comm_world_new();
    if (!c->wstate) {
        tpar_comm_free(c);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "tpar_comm_init: out of memory");
    }
    c->cfg = rc;
    c->backend = rc.backend;
    c->timeout_s = rc.timeout_s;
    c->world_rank = c->rank;
    for (int i = 0; i < c->size; i++) c->world_ranks[i] = i;

    /* The backend's table; shm under mpirun is shm for every call, MPI only to set up. */
    if (rc.backend == TPAR_BACKEND_SHM && (tpar_job || !mpi_job)) c->ops = &comm_shm_ops;
#ifdef TPAR_HAVE_MPI
    else if (rc.backend == TPAR_BACKEND_SHM) c->ops = &comm_shm_mpirun_ops;
    else if (rc.backend == TPAR_BACKEND_MPI) c->ops = &comm_mpi_ops;
    else if (rc.backend == TPAR_BACKEND_HIER) c->ops = &comm_hier_ops;
#endif
    if (c->ops)
        st = c->ops->world_init(c, err);
    else
        st = tpar_err_set(err, TPAR_ERR_UNSUPPORTED,
                          "backend '%s' needs MPI, and this tpar was built without it (TPAR_WITH_MPI=OFF or no "
                          "Open MPI found)",
                          tpar_backend_name(rc.backend));
    if (st) {
        /* peers may be left waiting in set-up: no MPI_Finalize (see comm_world_t) */
        if (st == TPAR_ERR_TIMEOUT || st == TPAR_ERR_PEER_DEAD || st == TPAR_ERR_SYS)
            comm_fail(c, st, "%s", err ? err->msg : "communicator set-up failed");
        tpar_comm_free(c);
        return st;
    }
    *out = c;
    return TPAR_OK;
}

/* ---- running calls ------------------------------------------------------------------------ */

static tpar_status run_call(tpar_comm_t *c, const coll_t *k) {
    if (c->poisoned) return c->poisoned;
    if (comm_world_failed(c)) { /* another communicator of this rank failed: peers will not come */
        comm_world_t *w = c->wstate;
        char what[160];
        comm_describe_call(k, what, sizeof what);
        return comm_fail(c, atomic_load(&w->failed) == 2 ? w->code : TPAR_ERR_PEER_DEAD,
                         "%s: not started, another communicator of this rank failed first: %.300s", what,
                         atomic_load(&w->failed) == 2 ? w->msg : "(message not yet written)");
    }
    if (!c->ops) return comm_fail(c, TPAR_ERR_INTERNAL, "no backend");
    return c->ops->exec(c, k);
}

/* Pops and runs the head of the queue (caller holds mu; released while it runs). */
static void run_head_locked(tpar_comm_t *c) {
    tpar_request_t *r = c->q_head;
    c->q_running = 1;
    pthread_mutex_unlock(&c->mu);
    tpar_status st = run_call(c, &r->call);
    pthread_mutex_lock(&c->mu);
    r->status = st;
    r->done = 1;
    c->q_head = r->next;
    if (!c->q_head) c->q_tail = NULL;
    c->q_running = 0;
    pthread_cond_broadcast(&c->cv);
}

static void *worker_main(void *arg) {
    tpar_comm_t *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->q_head && !c->q_running) run_head_locked(c);
        else if (c->worker_stop) break;
        else pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Runs queued calls until `until` is done (NULL: until the queue is empty). */
static void progress_until(tpar_comm_t *c, const tpar_request_t *until) {
    pthread_mutex_lock(&c->mu);
    for (;;) {
        int finished = until ? until->done : (c->q_head == NULL && !c->q_running);
        if (finished) break;
        if (c->worker_on || c->q_running) pthread_cond_wait(&c->cv, &c->mu);
        else run_head_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
}

static tpar_status blocking(tpar_comm_t *c, const coll_t *k) {
    tpar_fault_coll(coll_name(k->kind), k->seq, k->count, tpar_dtype_name(k->dt), c->size); /* fault.h */
    double t0 = tpar_now();
    progress_until(c, NULL);
    tpar_status st = run_call(c, k);
    c->stats.wait_s += tpar_now() - t0;
    return st;
}

static tpar_status enqueue(tpar_comm_t *c, const coll_t *k, tpar_request_t **req) {
    tpar_fault_coll(coll_name(k->kind), k->seq, k->count, tpar_dtype_name(k->dt), c->size); /* fault.h */
    tpar_request_t *r = calloc(1, sizeof *r);
    if (!r) return comm_fail(c, TPAR_ERR_NOMEM, "%s: out of memory for the request", coll_name(k->kind));
    r->comm = c;
    r->call = *k;
    pthread_mutex_lock(&c->mu);
    if (c->cfg.progress_thread && !c->worker_on) {
        if (pthread_create(&c->worker, NULL, worker_main, c) == 0) c->worker_on = 1;
        else c->cfg.progress_thread = 0; /* no thread: progress inside test/wait */
    }
    if (c->q_tail) c->q_tail->next = r;
    else c->q_head = r;
    c->q_tail = r;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    *req = r;
    return TPAR_OK;
}

tpar_status tpar_comm_wait(tpar_request_t *req) {
    if (!req) return TPAR_ERR_INVALID_ARG;
    tpar_comm_t *c = req->comm;
    double t0 = tpar_now();
    progress_until(c, req);
    tpar_status st = req->status;
    free(req);
    c->stats.wait_s += tpar_now() - t0;
    return st;
}

tpar_status tpar_comm_test(tpar_request_t *req, int *done) {
    if (!req || !done) return TPAR_ERR_INVALID_ARG;
    tpar_comm_t *c = req->comm;
    double t0 = tpar_now();
    pthread_mutex_lock(&c->mu);
    int worker = c->worker_on;
    pthread_mutex_unlock(&c->mu);
    /* Without a worker, test drives the queue itself (the call completes within this test). */
    if (!worker) progress_until(c, req);
    pthread_mutex_lock(&c->mu);
    *done = req->done;
    pthread_mutex_unlock(&c->mu);
    c->stats.wait_s += tpar_now() - t0;
    if (!*done) return TPAR_OK;
    tpar_status st = req->status;
    free(req);
    return st;
}

/* ---- argument checks ------------------------------------------------------------------------ */

static tpar_status bad(tpar_comm_t *c, const char *fn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static tpar_status bad(tpar_comm_t *c, const char *fn, const char *fmt, ...) {
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return comm_fail(c, TPAR_ERR_INVALID_ARG, "tpar_comm_%s: %s", fn, what);
}

static uint64_t hash_counts(const size_t *counts, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        h ^= (uint64_t)counts[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Counts a call's ring bus bytes (see tpar_comm_stats_t); `whole` is the full buffer in
 * bytes (all blocks of an all-gather, reduce-scatter or all-to-all). */
static void count_bus(tpar_comm_t *c, coll_kind kind, uint64_t whole) {
    uint64_t n = (uint64_t)c->size;
    if (n <= 1) return;
    switch (kind) {
    case COLL_ALLREDUCE: c->stats.bus_bytes += 2 * (n - 1) * (whole / n) + 2 * (n - 1) * (whole % n) / n; break;
    case COLL_BROADCAST:
    case COLL_SEND: c->stats.bus_bytes += whole; break;
    case COLL_RECV:
    case COLL_BARRIER: break;
    default: c->stats.bus_bytes += (n - 1) * (whole / n) + (n - 1) * (whole % n) / n; break;
    }
}

/* Checks a call, numbers it, counts it in the stats and fills k. The v forms count their
 * bus bytes themselves (their whole buffer is the sum of the counts). */
static tpar_status prepare(tpar_comm_t *c, coll_kind kind, const void *sbuf, void *rbuf, size_t count,
                           tpar_dtype dt, tpar_op op, coll_t *k) {
    const char *fn = coll_name(kind);
    if (!c) return TPAR_ERR_INVALID_ARG;
    if (c->poisoned)
        return c->poisoned; /* the message of the original failure stays in c->err */
    *k = (coll_t){.kind = kind, .sbuf = sbuf, .rbuf = rbuf, .count = count, .dt = dt, .op = op};
    size_t esz = tpar_dtype_size(dt);
    if (kind == COLL_BARRIER) {
        k->dt = TPAR_F32;
        k->count = 0;
        k->seq = ++c->seq;
        return TPAR_OK;
    }
    if (!esz) return bad(c, fn, "unknown dtype %d", (int)dt);
    int reducing = kind == COLL_ALLREDUCE || kind == COLL_REDUCE_SCATTER || kind == COLL_REDUCE_SCATTERV;
    if (reducing && (unsigned)op >= TPAR_OP_COUNT) return bad(c, fn, "unknown op %d", (int)op);
    if (!reducing) k->op = TPAR_SUM;
    size_t blocks = (kind == COLL_ALLGATHER || kind == COLL_REDUCE_SCATTER || kind == COLL_ALLTOALL)
                        ? (size_t)c->size : 1;
    size_t tmp;
    if (tpar_mul_size(count, esz, &tmp) || tpar_mul_size(tmp, blocks, &tmp) || tmp > (SIZE_MAX >> 2))
        return bad(c, fn, "count %zu of %s overflows the address space", count, tpar_dtype_name(dt));
    if (sbuf == TPAR_IN_PLACE) {
        if (kind == COLL_SEND || kind == COLL_RECV || kind == COLL_BROADCAST)
            return bad(c, fn, "TPAR_IN_PLACE is not allowed here");
        k->in_place = 1;
        k->sbuf = (kind == COLL_ALLGATHER || kind == COLL_ALLGATHERV) ? NULL : rbuf;
    }
    int needs_s = !k->in_place && kind != COLL_RECV && kind != COLL_BROADCAST;
    int needs_r = kind != COLL_SEND;
    if (count > 0 && ((needs_s && !sbuf) || (needs_r && !rbuf)))
        return bad(c, fn, "NULL buffer with count %zu", count);
    if (kind != COLL_SEND && kind != COLL_RECV) k->seq = ++c->seq;
    c->stats.calls++;
    c->stats.bytes += count * esz;
    if (kind != COLL_ALLGATHERV && kind != COLL_REDUCE_SCATTERV) count_bus(c, kind, tmp);
    return TPAR_OK;
}

static int bad_rank(tpar_comm_t *c, int r) { return r < 0 || r >= c->size; }

/* ---- blocking calls -------------------------------------------------------------------------- */

tpar_status tpar_comm_allreduce(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                tpar_dtype dt, tpar_op op) {
    coll_t k;
    tpar_status st = prepare(comm, COLL_ALLREDUCE, sendbuf, recvbuf, count, dt, op, &k);
    return st ? st : blocking(comm, &k);
}

tpar_status tpar_comm_allgather(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                tpar_dtype dt) {
    coll_t k;
    tpar_status st = prepare(comm, COLL_ALLGATHER, sendbuf, recvbuf, count, dt, TPAR_SUM, &k);
    return st ? st : blocking(comm, &k);
}

/* Shared by the v forms: counts must exist, and sum without overflow. */
static tpar_status check_counts(tpar_comm_t *c, const char *fn, const size_t *counts, tpar_dtype dt,
                                size_t *total) {
    if (!counts) return bad(c, fn, "counts is NULL");
    size_t esz = tpar_dtype_size(dt), t = 0;
    if (!esz) return bad(c, fn, "unknown dtype %d", (int)dt);
    for (int i = 0; i < c->size; i++) {
        if (counts[i] > (SIZE_MAX >> 3) / esz || t + counts[i] > (SIZE_MAX >> 3) / esz)
            return bad(c, fn, "counts overflow the address space");
        t += counts[i];
    }
    *total = t;
    return TPAR_OK;
}

tpar_status tpar_comm_allgatherv(tpar_comm_t *comm, const void *sendbuf, size_t sendcount, void *recvbuf,
                                 const size_t *recvcounts, const size_t *displs, tpar_dtype dt) {
    if (!comm) return TPAR_ERR_INVALID_ARG;
    if (comm->poisoned) return comm->poisoned;
    size_t total = 0;
    tpar_status st = check_counts(comm, "allgatherv", recvcounts, dt, &total);
    if (st) return st;
    if (!displs) return bad(comm, "allgatherv", "displs is NULL");
    if (recvcounts[comm->rank] != sendcount)
        return bad(comm, "allgatherv", "sendcount %zu differs from recvcounts[%d] = %zu", sendcount, comm->rank,
                   recvcounts[comm->rank]);
    if (total > 0 && !recvbuf) return bad(comm, "allgatherv", "recvbuf is NULL");
    coll_t k;
    if ((st = prepare(comm, COLL_ALLGATHERV, sendbuf, recvbuf, sendcount, dt, TPAR_SUM, &k))) return st;
    k.counts = recvcounts;
    k.displs = displs;
    k.desc_hash = hash_counts(recvcounts, comm->size);
    count_bus(comm, COLL_ALLGATHERV, total * tpar_dtype_size(dt));
    return blocking(comm, &k);
}

tpar_status tpar_comm_reduce_scatter(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t recvcount,
                                     tpar_dtype dt, tpar_op op) {
    coll_t k;
    tpar_status st = prepare(comm, COLL_REDUCE_SCATTER, sendbuf, recvbuf, recvcount, dt, op, &k);
    return st ? st : blocking(comm, &k);
}

tpar_status tpar_comm_reduce_scatterv(tpar_comm_t *comm, const void *sendbuf, void *recvbuf,
                                      const size_t *recvcounts, tpar_dtype dt, tpar_op op) {
    if (!comm) return TPAR_ERR_INVALID_ARG;
    if (comm->poisoned) return comm->poisoned;
    size_t total = 0;
    tpar_status st = check_counts(comm, "reduce_scatterv", recvcounts, dt, &total);
    if (st) return st;
    if (total > 0 && ((sendbuf != TPAR_IN_PLACE && !sendbuf) || !recvbuf))
        return bad(comm, "reduce_scatterv", "NULL buffer with %zu elements in total", total);
    coll_t k;
    /* count = this rank's block, for the checks and the accounting */
    if ((st = prepare(comm, COLL_REDUCE_SCATTERV, sendbuf, recvbuf, recvcounts[comm->rank], dt, op, &k))) return st;
    k.counts = recvcounts;
    k.desc_hash = hash_counts(recvcounts, comm->size);
    count_bus(comm, COLL_REDUCE_SCATTERV, total * tpar_dtype_size(dt));
    return blocking(comm, &k);
}

tpar_status tpar_comm_broadcast(tpar_comm_t *comm, void *buf, size_t count, tpar_dtype dt, int root) {
    coll_t k;
    tpar_status st = prepare(comm, COLL_BROADCAST, buf, buf, count, dt, TPAR_SUM, &k);
    if (st) return st;
    if (bad_rank(comm, root)) return bad(comm, "broadcast", "root %d outside [0, %d)", root, comm->size);
    k.root = root;
    return blocking(comm, &k);
}

tpar_status tpar_comm_alltoall(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                               tpar_dtype dt) {
    coll_t k;
    tpar_status st = prepare(comm, COLL_ALLTOALL, sendbuf, recvbuf, count, dt, TPAR_SUM, &k);
    return st ? st : blocking(comm, &k);
}

tpar_status tpar_comm_barrier(tpar_comm_t *comm) {
    coll_t k;
    tpar_status st = prepare(comm, COLL_BARRIER, NULL, NULL, 0, TPAR_F32, TPAR_SUM, &k);
    return st ? st : blocking(comm, &k);
}

static tpar_status p2p(tpar_comm_t *comm, coll_kind kind, const void *sbuf, void *rbuf, size_t count,
                       tpar_dtype dt, int peer, int tag) {
    coll_t k;
    tpar_status st = prepare(comm, kind, sbuf, rbuf, count, dt, TPAR_SUM, &k);
    if (st) return st;
    if (bad_rank(comm, peer) || peer == comm->rank)
        return bad(comm, coll_name(kind), "peer %d is not another rank of this %d-rank communicator", peer,
                   comm->size);
    k.peer = peer;
    k.tag = tag;
    return blocking(comm, &k);
}

tpar_status tpar_comm_send(tpar_comm_t *comm, const void *buf, size_t count, tpar_dtype dt, int dst, int tag) {
    return p2p(comm, COLL_SEND, buf, NULL, count, dt, dst, tag);
}

tpar_status tpar_comm_recv(tpar_comm_t *comm, void *buf, size_t count, tpar_dtype dt, int src, int tag) {
    return p2p(comm, COLL_RECV, NULL, buf, count, dt, src, tag);
}

/* ---- agreeing on a status ---------------------------------------------------------------------- */

tpar_status tpar_comm_agree(tpar_comm_t *comm, tpar_status status, const char *what, tpar_err_t *err) {
    if (!what) what = "agreeing on a status";
    if (!comm) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "%s: tpar_comm_agree: comm is NULL", what);
    /* One int64 all-reduce (max): the status in the high half, INT32_MAX - rank in the low half,
     * so the maximum is the worst status and, among its ranks, the lowest. */
    int64_t v = ((int64_t)status << 32) | (int64_t)(INT32_MAX - comm->rank);
    tpar_status cs = tpar_comm_allreduce(comm, TPAR_IN_PLACE, &v, 1, TPAR_I64, TPAR_MAX);
    if (cs) return tpar_err_set(err, cs, "%s: %s", what, tpar_comm_error(comm));
    tpar_status worst = (tpar_status)(v >> 32);
    if (status || !worst) return status;
    int who = INT32_MAX - (int)(v & 0xffffffff);
    return tpar_err_set(err, worst, "%s: another rank failed (rank %d: %s)", what, who, tpar_status_str(worst));
}

/* ---- non-blocking calls ------------------------------------------------------------------------ */

static tpar_status start(tpar_comm_t *comm, coll_t *k, tpar_status st, tpar_request_t **req) {
    if (!req) return comm ? bad(comm, coll_name(k->kind), "req is NULL") : TPAR_ERR_INVALID_ARG;
    *req = NULL;
    return st ? st : enqueue(comm, k, req);
}

tpar_status tpar_comm_iallreduce(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                 tpar_dtype dt, tpar_op op, tpar_request_t **req) {
    coll_t k = {.kind = COLL_ALLREDUCE};
    return start(comm, &k, prepare(comm, COLL_ALLREDUCE, sendbuf, recvbuf, count, dt, op, &k), req);
}

tpar_status tpar_comm_iallgather(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                 tpar_dtype dt, tpar_request_t **req) {
    coll_t k = {.kind = COLL_ALLGATHER};
    return start(comm, &k, prepare(comm, COLL_ALLGATHER, sendbuf, recvbuf, count, dt, TPAR_SUM, &k), req);
}

tpar_status tpar_comm_ireduce_scatter(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t recvcount,
                                      tpar_dtype dt, tpar_op op, tpar_request_t **req) {
    coll_t k = {.kind = COLL_REDUCE_SCATTER};
    return start(comm, &k, prepare(comm, COLL_REDUCE_SCATTER, sendbuf, recvbuf, recvcount, dt, op, &k), req);
}

tpar_status tpar_comm_ibroadcast(tpar_comm_t *comm, void *buf, size_t count, tpar_dtype dt, int root,
                                 tpar_request_t **req) {
    coll_t k = {.kind = COLL_BROADCAST};
    tpar_status st = prepare(comm, COLL_BROADCAST, buf, buf, count, dt, TPAR_SUM, &k);
    if (!st && bad_rank(comm, root)) st = bad(comm, "ibroadcast", "root %d outside [0, %d)", root, comm->size);
    k.root = root;
    return start(comm, &k, st, req);
}

/* ---- groups ------------------------------------------------------------------------------------ */

tpar_status tpar_comm_split(tpar_comm_t *comm, int color, int key, tpar_comm_t **out) {
    if (!comm || !out) return TPAR_ERR_INVALID_ARG;
    *out = NULL;
    if (comm->poisoned) return comm->poisoned;
    progress_until(comm, NULL);
    int n = comm->size;
    int64_t mine[2] = {color, key};
    int64_t *all = malloc((size_t)n * 2 * sizeof *all);
    int *members = malloc((size_t)n * sizeof *members);
    if (!all || !members) {
        free(all);
        free(members);
        return comm_fail(comm, TPAR_ERR_NOMEM, "split: out of memory");
    }
    coll_t g = {.kind = COLL_ALLGATHER, .sbuf = mine, .rbuf = all, .count = 2, .dt = TPAR_I64, .seq = ++comm->seq};
    tpar_status st = run_call(comm, &g);
    /* Members of my color, ordered by (key, rank in comm): a stable insertion sort. */
    int m = 0, me = -1;
    for (int r = 0; !st && color >= 0 && r < n; r++) {
        if (all[2 * r] != color) continue;
        int i = m++;
        while (i > 0 && all[2 * members[i - 1] + 1] > all[2 * r + 1]) {
            members[i] = members[i - 1];
            i--;
        }
        members[i] = r;
    }
    for (int i = 0; i < m; i++)
        if (members[i] == comm->rank) me = i;
    tpar_comm_t *child = NULL;
    if (!st && color >= 0) {
        child = comm_new(me, m);
        if (!child) st = comm_fail(comm, TPAR_ERR_NOMEM, "split: out of memory");
    }
    if (child) {
        child->cfg = comm->cfg;
        child->backend = comm->backend;
        child->ops = comm->ops;
        child->timeout_s = comm->timeout_s;
        child->world_rank = comm->world_rank;
        child->wstate = comm_world_ref(comm->wstate);
        for (int i = 0; i < m; i++) child->world_ranks[i] = comm->world_ranks[members[i]];
    }
    tpar_err_t err;
    tpar_err_clear(&err);
    if (!st) {
        comm_split_t sp = {color, key, child ? members[0] : 0, m};
        st = comm->ops ? comm->ops->split(comm, child, &sp, &err)
                       : comm_fail(comm, TPAR_ERR_INTERNAL, "split: no backend");
    }
    /* The parent carries the message; it is poisoned only if its own traffic failed. */
    if (st && err.msg[0]) {
        if (st == TPAR_ERR_TIMEOUT || st == TPAR_ERR_PEER_DEAD || st == TPAR_ERR_SYS)
            comm_fail(comm, st, "split: %.400s", err.msg); /* peers may be left waiting: the world failed */
        else
            snprintf(comm->err, sizeof comm->err, "split: %.400s", err.msg);
    }
    free(all);
    free(members);
    if (st) {
        tpar_comm_free(child);
        return st;
    }
    *out = child;
    return TPAR_OK;
}

void tpar_comm_free(tpar_comm_t *comm) {
    if (!comm) return;
    progress_until(comm, NULL);
    if (comm->worker_on) {
        pthread_mutex_lock(&comm->mu);
        comm->worker_stop = 1;
        pthread_cond_broadcast(&comm->cv);
        pthread_mutex_unlock(&comm->mu);
        pthread_join(comm->worker, NULL);
    }
    if (comm->ops) comm->ops->free(comm);
    comm_world_unref(comm->wstate);
    pthread_mutex_destroy(&comm->mu);
    pthread_cond_destroy(&comm->cv);
    free(comm->world_ranks);
    free(comm);
}

void *tpar_comm_mem_alloc(tpar_comm_t *comm, size_t bytes) {
    void *p = comm && comm->ops && comm->ops->mem_alloc ? comm->ops->mem_alloc(comm, bytes) : NULL;
    return p ? p : tpar_calloc_aligned(bytes ? bytes : 1, 1);
}

void tpar_comm_mem_free(tpar_comm_t *comm, void *p) {
    if (p && !(comm && comm->ops && comm->ops->mem_free && comm->ops->mem_free(comm, p))) tpar_free(p);
}

#ifndef TPAR_HAVE_MPI
int tpar_comm_abort_unfinished(int status) { return status; } /* no MPI: nothing can be unfinished */
#endif

int tpar_comm_rank(const tpar_comm_t *comm) { return comm ? comm->rank : -1; }
int tpar_comm_size(const tpar_comm_t *comm) { return comm ? comm->size : 0; }
tpar_backend tpar_comm_backend(const tpar_comm_t *comm) { return comm ? comm->backend : TPAR_BACKEND_AUTO; }
const char *tpar_comm_error(const tpar_comm_t *comm) { return comm ? comm->err : "no communicator"; }

void tpar_comm_stats(const tpar_comm_t *comm, tpar_comm_stats_t *out) {
    if (!out) return;
    if (!comm) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = comm->stats;
}

void tpar_comm_stats_reset(tpar_comm_t *comm) {
    if (comm) memset(&comm->stats, 0, sizeof comm->stats);
}
