/* mpi and hier backends.
 *
 * mpi: every call maps to its MPI counterpart, issued non-blocking (MPI_Iallreduce, ...) and
 * completed by an MPI_Test loop, so that TPAR_COMM_TIMEOUT holds here too. bfloat16
 * reductions run in float32 (converted in, reduced, rounded once on the way out).
 *
 * hier: ranks are grouped into hosts (MPI_COMM_TYPE_SHARED, or TPAR_COMM_HIER_HOST_SIZE
 * consecutive ranks per pretend host, to run the two-level path on one machine). Within a
 * host a shm communicator, between hosts one MPI communicator per local rank. All-reduce is
 * two-level: intra-host reduce-scatter (shm), inter-host all-reduce of each slice (MPI),
 * intra-host all-gather (shm). With a single host every call goes to shm; other calls across
 * hosts go to MPI on the whole group.
 *
 * shm under mpirun: the local leader makes the arena memfd and the others open it through
 * /proc/<pid>/fd/<fd> (same user; nothing is ever named in /dev/shm). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm_mpi.h"


int mpi_started_by_launcher(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

static tpar_status mpi_err(tpar_comm_t *c, int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return comm_fail(c, TPAR_ERR_SYS, "%s (MPI backend): %s", what, s);
}

static MPI_Datatype mpi_type(tpar_dtype dt) {
    switch (dt) {
    case TPAR_F32: return MPI_FLOAT;
    case TPAR_BF16: return MPI_UINT16_T; /* moved as bits; reduced in float32 */
    case TPAR_I32: return MPI_INT32_T;
    case TPAR_I64: return MPI_INT64_T;
    default: return MPI_DOUBLE;
    }
}

static MPI_Op mpi_op(tpar_op op) { return op == TPAR_SUM ? MPI_SUM : op == TPAR_MAX ? MPI_MAX : MPI_MIN; }

/* MPI cannot say which rank is missing from a collective; /proc can, for a peer on this host
 * that is stopped or gone (pids and hosts all-gathered at start-up). Writes " waiting for rank 1
 * (world rank 1, pid 4711), which is stopped (...)" naming each such member, or why it cannot. */
static void name_silent(const tpar_comm_t *c, char *buf, size_t n) {
    const comm_world_t *w = c->wstate;
    size_t len = 0;
    buf[0] = 0;
    for (int q = 0; w && w->nranks && q < c->size && len + 1 < n; q++) {
        int wr = c->world_ranks[q];
        if (q == c->rank || wr < 0 || wr >= w->nranks || w->hosts[wr] != w->hosts[c->world_rank]) continue;
        char state[96];
        comm_pid_state(w->pids[wr], state, sizeof state);
        if (state[0])
            len += (size_t)snprintf(buf + len, n - len, "%s rank %d (world rank %d, pid %d)%s",
                                    len ? " and" : " waiting for", q, wr, (int)w->pids[wr], state);
    }
    if (!buf[0])
        snprintf(buf, n, "; a rank did not take part (MPI cannot say which, and no rank on this host is stopped "
                         "or gone)");
}

/* Set-up traffic within the deadline too. MPI's communicator constructors (dup, split) have
 * no form that can be bounded, so each is preceded by a fence: a non-blocking barrier completed
 * within the deadline. A rank that stopped or died before a constructor then makes the others
 * fail with TPAR_ERR_TIMEOUT instead of waiting inside MPI forever (a rank stopped inside
 * MPI_Init itself is beyond reach: docs/FAULTS.md). c (may be NULL) names a stopped peer. */
tpar_status mpi_setup_done(const tpar_comm_t *c, MPI_Request *req, double timeout_s, const char *what,
                           tpar_err_t *err) {
    double t0 = tpar_now();
    for (long i = 0;; i++) {
        int flag = 0;
        if (MPI_Test(req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return tpar_err_set(err, TPAR_ERR_SYS, "communicator set-up (MPI): %s failed", what);
        if (flag) return TPAR_OK;
        if ((i & 63) == 0 && tpar_now() - t0 > timeout_s) {
            char who[320] = "; a rank did not take part (MPI cannot say which)";
            if (c && c->wstate && c->wstate->nranks) name_silent(c, who, sizeof who);
            return tpar_err_set(err, TPAR_ERR_TIMEOUT,
                                "communicator set-up (MPI): %s: timed out after %g s%s (TPAR_COMM_TIMEOUT sets the "
                                "deadline)",
                                what, timeout_s, who);
        }
        if (i > 4096) {
            struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        } else if (i > 256) {
            sched_yield();
        }
    }
}

tpar_status mpi_fence(const tpar_comm_t *c, MPI_Comm comm, double timeout_s, const char *what, tpar_err_t *err) {
    MPI_Request req;
    if (MPI_Ibarrier(comm, &req) != MPI_SUCCESS)
        return tpar_err_set(err, TPAR_ERR_SYS, "communicator set-up (MPI): %s failed", what);
    return mpi_setup_done(c, &req, timeout_s, what, err);
}

/* Completes req within the communicator's deadline; polls, then yields, then naps. */
static tpar_status mpi_complete(tpar_comm_t *c, MPI_Request *req, MPI_Status *status, const coll_t *k) {
    double t0 = tpar_now();
    for (long i = 0;; i++) {
        int flag = 0;
        int rc = MPI_Test(req, &flag, status ? status : MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_err(c, rc, coll_name(k->kind));
        if (flag) return TPAR_OK;
        if (i < 256) continue;
        if ((i & 63) == 0 && tpar_now() - t0 > c->timeout_s) {
            char what[160], who[320];
            comm_describe_call(k, what, sizeof what);
            name_silent(c, who, sizeof who);
            return comm_fail(c, TPAR_ERR_TIMEOUT,
                             "%s on a %d-rank MPI communicator: timed out after %g s%s (TPAR_COMM_TIMEOUT sets the "
                             "deadline)",
                             what, c->size, c->timeout_s, who);
        }
        if (i < 4096) {
            sched_yield();
        } else {
            struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

static int fits_int(size_t n) { return n <= (size_t)INT_MAX; }

static tpar_status too_big(tpar_comm_t *c, const coll_t *k) {
    return comm_fail(c, TPAR_ERR_UNSUPPORTED, "%s: %zu elements exceed MPI's int counts; split the call",
                     coll_name(k->kind), k->count);
}

float *mpi_bf16_to_f32(const uint16_t *h, size_t n) {
    float *f = malloc((n ? n : 1) * sizeof *f);
    if (f)
        for (size_t i = 0; i < n; i++) f[i] = tpar_bf16_to_f32(h[i]);
    return f;
}

/* All-reduce on an MPI communicator (also the inter-host step of hier). */
tpar_status mpi_allreduce_on(tpar_comm_t *c, MPI_Comm comm, const void *sbuf, void *rbuf, size_t count,
                             tpar_dtype dt, tpar_op op, const coll_t *k) {
    if (!fits_int(count)) return too_big(c, k);
    MPI_Request req;
    if (dt != TPAR_BF16) {
        int rc = MPI_Iallreduce(sbuf == rbuf ? MPI_IN_PLACE : sbuf, rbuf, (int)count, mpi_type(dt), mpi_op(op), comm,
                                &req);
        return rc != MPI_SUCCESS ? mpi_err(c, rc, "allreduce") : mpi_complete(c, &req, NULL, k);
    }
    float *f = mpi_bf16_to_f32(sbuf, count);
    if (!f) return comm_fail(c, TPAR_ERR_NOMEM, "allreduce: out of memory");
    int rc = MPI_Iallreduce(MPI_IN_PLACE, f, (int)count, MPI_FLOAT, mpi_op(op), comm, &req);
    tpar_status st = rc != MPI_SUCCESS ? mpi_err(c, rc, "allreduce") : mpi_complete(c, &req, NULL, k);
    for (size_t i = 0; !st && i < count; i++) ((uint16_t *)rbuf)[i] = tpar_f32_to_bf16(f[i]);
    free(f);
    return st;
}

/* reduce_scatter(v) with per-rank counts. */
static tpar_status mpi_reduce_scatter(tpar_comm_t *c, const coll_t *k, const size_t *counts) {
    int n = c->size;
    int *ic = malloc((size_t)n * sizeof *ic);
    if (!ic) return comm_fail(c, TPAR_ERR_NOMEM, "reduce_scatter: out of memory");
    size_t total = 0;
    for (int q = 0; q < n; q++) {
        if (!fits_int(counts[q])) {
            free(ic);
            return too_big(c, k);
        }
        ic[q] = (int)counts[q];
        total += counts[q];
    }
    MPI_Request req;
    tpar_status st;
    if (k->dt != TPAR_BF16) {
        int rc = MPI_Ireduce_scatter(k->in_place ? MPI_IN_PLACE : k->sbuf, k->rbuf, ic, mpi_type(k->dt),
                                     mpi_op(k->op), c->mpi->comm, &req);
        st = rc != MPI_SUCCESS ? mpi_err(c, rc, "reduce_scatter") : mpi_complete(c, &req, NULL, k);
    } else {
        float *f = mpi_bf16_to_f32(k->sbuf, total);
        if (!f) {
            free(ic);
            return comm_fail(c, TPAR_ERR_NOMEM, "reduce_scatter: out of memory");
        }
        int rc = MPI_Ireduce_scatter(MPI_IN_PLACE, f, ic, MPI_FLOAT, mpi_op(k->op), c->mpi->comm, &req);
        st = rc != MPI_SUCCESS ? mpi_err(c, rc, "reduce_scatter") : mpi_complete(c, &req, NULL, k);
        for (size_t i = 0; !st && i < counts[c->rank]; i++) ((uint16_t *)k->rbuf)[i] = tpar_f32_to_bf16(f[i]);
        free(f);
    }
    free(ic);
    return st;
}

static tpar_status mpi_allgatherv(tpar_comm_t *c, const coll_t *k) {
    int n = c->size;
    int *ic = malloc(2 * (size_t)n * sizeof *ic);
    if (!ic) return comm_fail(c, TPAR_ERR_NOMEM, "allgatherv: out of memory");
    for (int q = 0; q < n; q++) {
        size_t cnt = k->kind == COLL_ALLGATHER ? k->count : k->counts[q];
        size_t d = k->kind == COLL_ALLGATHER ? (size_t)q * k->count : k->displs[q];
        if (!fits_int(cnt) || !fits_int(d)) {
            free(ic);
            return too_big(c, k);
        }
        ic[q] = (int)cnt;
        ic[n + q] = (int)d;
    }
    MPI_Request req;
    int rc = MPI_Iallgatherv(k->in_place ? MPI_IN_PLACE : k->sbuf, ic[c->rank], mpi_type(k->dt), k->rbuf, ic,
                             ic + n, mpi_type(k->dt), c->mpi->comm, &req);
    free(ic);
    return rc != MPI_SUCCESS ? mpi_err(c, rc, "allgather") : mpi_complete(c, &req, NULL, k);
}

/* TPAR_COMM_CHECK=1: every rank's description of a collective, all-gathered and compared
 * before it runs (MPI itself would hang on some mismatches and mis-sum others). */
tpar_status mpi_check(tpar_comm_t *c, const coll_t *k) {
    if (!c->cfg.check_calls || k->kind == COLL_SEND || k->kind == COLL_RECV) return TPAR_OK;
    call_desc_t mine = comm_call_desc(k), *all = malloc((size_t)c->size * sizeof *all);
    if (!all) return comm_fail(c, TPAR_ERR_NOMEM, "%s: out of memory", coll_name(k->kind));
    MPI_Request req;
    int rc = MPI_Iallgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, c->mpi->comm, &req);
    tpar_status st = rc != MPI_SUCCESS ? mpi_err(c, rc, coll_name(k->kind)) : mpi_complete(c, &req, NULL, k);
    for (int q = 0; !st && q < c->size; q++)
        if (memcmp(&all[q], &mine, sizeof mine)) st = comm_mismatch(c, k, q, &all[q]);
    free(all);
    return st;
}

tpar_status mpi_exec(tpar_comm_t *c, const coll_t *k) {
    MPI_Comm comm = c->mpi->comm;
    MPI_Datatype t = mpi_type(k->dt);
    MPI_Request req;
    int rc;
    tpar_status cst = mpi_check(c, k);
    if (cst) return cst;
    switch (k->kind) {
    case COLL_ALLREDUCE: return mpi_allreduce_on(c, comm, k->sbuf, k->rbuf, k->count, k->dt, k->op, k);
    case COLL_REDUCE_SCATTER: {
        size_t *cnt = malloc((size_t)c->size * sizeof *cnt);
        if (!cnt) return comm_fail(c, TPAR_ERR_NOMEM, "reduce_scatter: out of memory");
        for (int q = 0; q < c->size; q++) cnt[q] = k->count;
        tpar_status st = mpi_reduce_scatter(c, k, cnt);
        free(cnt);
        return st;
    }
    case COLL_REDUCE_SCATTERV: return mpi_reduce_scatter(c, k, k->counts);
    case COLL_ALLGATHER:
    case COLL_ALLGATHERV: return mpi_allgatherv(c, k);
    case COLL_BROADCAST:
        if (!fits_int(k->count)) return too_big(c, k);
        rc = MPI_Ibcast(k->rbuf, (int)k->count, t, k->root, comm, &req);
        break;
    case COLL_ALLTOALL:
        if (!fits_int(k->count)) return too_big(c, k);
        rc = MPI_Ialltoall(k->in_place ? MPI_IN_PLACE : k->sbuf, (int)k->count, t, k->rbuf, (int)k->count, t,
                           comm, &req);
        break;
    case COLL_BARRIER: rc = MPI_Ibarrier(comm, &req); break;
    case COLL_SEND:
        if (!fits_int(k->count)) return too_big(c, k);
        rc = MPI_Isend(k->sbuf, (int)k->count, t, k->peer, k->tag, comm, &req);
        break;
    case COLL_RECV: {
        if (!fits_int(k->count)) return too_big(c, k);
        MPI_Status status;
        rc = MPI_Irecv(k->rbuf, (int)k->count, t, k->peer, k->tag, comm, &req);
        if (rc != MPI_SUCCESS) return mpi_err(c, rc, "recv");
        tpar_status st = mpi_complete(c, &req, &status, k);
        int got = 0;
        if (!st) MPI_Get_count(&status, t, &got);
        if (!st && (size_t)got != k->count)
            return comm_fail(c, TPAR_ERR_MISMATCH, "recv from rank %d, tag %d: expected %zu x %s, the message had %d",
                             k->peer, k->tag, k->count, tpar_dtype_name(k->dt), got);
        return st;
    }
    default: return comm_fail(c, TPAR_ERR_INTERNAL, "mpi: unknown call %d", (int)k->kind);
    }
    return rc != MPI_SUCCESS ? mpi_err(c, rc, coll_name(k->kind)) : mpi_complete(c, &req, NULL, k);
}

/* ---- set-up -------------------------------------------------------------------------------- */

static tpar_status adopt(tpar_comm_t *c, MPI_Comm comm, tpar_err_t *err) {
    c->mpi = calloc(1, sizeof *c->mpi);
    if (!c->mpi) return tpar_err_set(err, TPAR_ERR_NOMEM, "mpi: out of memory");
    c->mpi->comm = comm;
    c->mpi->cross = MPI_COMM_NULL;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    return TPAR_OK;
}

/* Every world rank's pid and host, for naming a silent rank after a timeout (name_silent). */
static tpar_status share_identity(tpar_comm_t *c, tpar_err_t *err) {
    comm_world_t *w = c->wstate;
    if (!w) return TPAR_OK;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the host name */
    for (const char *p = host; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    int64_t mine[2] = {(int64_t)getpid(), (int64_t)h}, *all = malloc(2 * (size_t)c->size * sizeof *all);
    w->pids = malloc((size_t)c->size * sizeof *w->pids);
    w->hosts = malloc((size_t)c->size * sizeof *w->hosts);
    if (!all || !w->pids || !w->hosts) {
        free(all);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "mpi: out of memory");
    }
    MPI_Request req;
    tpar_status st = MPI_Iallgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, c->mpi->comm, &req) != MPI_SUCCESS
                         ? tpar_err_set(err, TPAR_ERR_SYS, "mpi: MPI_Iallgather of the ranks' pids failed")
                         : mpi_setup_done(NULL, &req, c->timeout_s, "all-gather of the ranks' pids", err);
    if (st) {
        free(all);
        return st;
    }
    for (int q = 0; q < c->size; q++) {
        w->pids[q] = (int32_t)all[2 * q];
        w->hosts[q] = (uint64_t)all[2 * q + 1];
    }
    w->nranks = c->size;
    free(all);
    return TPAR_OK;
}

tpar_status mpi_world_init(tpar_comm_t *c, tpar_err_t *err) {
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
            return tpar_err_set(err, TPAR_ERR_SYS, "MPI_Init_thread failed");
        c->owns_mpi_init = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    /* A worker thread needs MPI to accept calls from any thread. */
    if (provided < MPI_THREAD_MULTIPLE) c->cfg.progress_thread = 0;
    MPI_Comm dup;
    tpar_status fst = mpi_fence(NULL, MPI_COMM_WORLD, c->timeout_s, "duplicating the world", err);
    if (fst) return fst;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &dup) != MPI_SUCCESS) return tpar_err_set(err, TPAR_ERR_SYS, "MPI_Comm_dup failed");
    MPI_Comm_rank(dup, &c->rank);
    MPI_Comm_size(dup, &c->size);
    int *wr = realloc(c->world_ranks, (size_t)c->size * sizeof *wr);
    if (!wr) {
        MPI_Comm_free(&dup);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "mpi: out of memory");
    }
    c->world_ranks = wr;
    for (int i = 0; i < c->size; i++) wr[i] = i;
    c->world_rank = c->rank;
    tpar_status st = adopt(c, dup, err);
    return st ? st : share_identity(c, err);
}

tpar_status mpi_split(tpar_comm_t *parent, tpar_comm_t *child, int color, int key) {
    MPI_Comm nc;
    tpar_err_t ferr;
    tpar_status fst = mpi_fence(parent, parent->mpi->comm, parent->timeout_s, "split", &ferr);
    if (fst) return comm_fail(parent, fst, "%s", ferr.msg);
    int rc = MPI_Comm_split(parent->mpi->comm, color < 0 ? MPI_UNDEFINED : color, key, &nc);
    if (rc != MPI_SUCCESS) return mpi_err(parent, rc, "split");
    if (!child) return TPAR_OK;
    tpar_err_t err;
    tpar_status st = adopt(child, nc, &err);
    if (st) return comm_fail(parent, st, "split: %s", err.msg);
    return TPAR_OK;
}

/* The arena for the ranks of `comm` (all on one host): rank 0 makes it, the others open it
 * through /proc. Returns an fd this process owns. */
tpar_status mpi_share_arena(const tpar_comm_t *c, MPI_Comm comm, int nranks, int *fd_out, tpar_err_t *err) {
    int me;
    MPI_Comm_rank(comm, &me);
    int info[3] = {0, -1, 0}; /* ok, fd, pid */
    tpar_err_t lerr;
    tpar_err_clear(&lerr);
    int fd = -1;
    if (me == 0) {
        tpar_status st = shm_arena_new_fd(nranks, &fd, &lerr);
        info[0] = st == TPAR_OK;
        info[1] = fd;
        info[2] = (int)getpid();
    }
    MPI_Request req;
    tpar_status bst = MPI_Ibcast(info, 3, MPI_INT, 0, comm, &req) != MPI_SUCCESS
                          ? tpar_err_set(err, TPAR_ERR_SYS, "shm under MPI: MPI_Ibcast failed")
                          : mpi_setup_done(c, &req, c->timeout_s, "broadcast of the host's arena", err);
    if (bst) {
        if (fd >= 0) close(fd);
        return bst;
    }
    if (!info[0]) return tpar_err_set(err, TPAR_ERR_SYS, "shm under MPI: the local leader could not make the arena%s%s",
                                      me == 0 ? ": " : "", me == 0 ? lerr.msg : "");
    if (me != 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd/%d", info[2], info[1]);
        fd = open(path, O_RDWR | O_CLOEXEC);
    }
    int ok = fd >= 0, all_ok = 0;
    /* The leader's fd must stay open until everyone has opened it. */
    tpar_status ast = MPI_Iallreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm, &req) != MPI_SUCCESS
                          ? tpar_err_set(err, TPAR_ERR_SYS, "shm under MPI: MPI_Iallreduce failed")
                          : mpi_setup_done(c, &req, c->timeout_s, "opening the host's arena", err);
    if (ast) {
        if (fd >= 0) close(fd);
        return ast;
    }
    if (!all_ok) {
        if (fd >= 0) close(fd);
        return tpar_err_set(err, TPAR_ERR_SYS,
                            "shm under MPI: a rank could not open the local leader's arena through /proc (ranks "
                            "must run as the same user on one host); use TPAR_COMM=mpi");
    }
    *fd_out = fd;
    return TPAR_OK;
}

static tpar_status mpi_bootstrap_shm(tpar_comm_t *c, tpar_err_t *err) {
    MPI_Comm local;
    tpar_status st = mpi_fence(c, c->mpi->comm, c->timeout_s, "grouping the ranks by host", err);
    if (st) return st;
    MPI_Comm_split_type(c->mpi->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
    int ls;
    MPI_Comm_size(local, &ls);
    int all_local = 0, mine = ls == c->size;
    MPI_Request req;
    st = MPI_Iallreduce(&mine, &all_local, 1, MPI_INT, MPI_MIN, c->mpi->comm, &req) != MPI_SUCCESS
             ? tpar_err_set(err, TPAR_ERR_SYS, "shm under MPI: MPI_Iallreduce failed")
             : mpi_setup_done(c, &req, c->timeout_s, "grouping the ranks by host", err);
    int fd = -1;
    if (!st && !all_local)
        st = tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                          "TPAR_COMM=shm needs every rank on one host; these ranks span hosts (use hier or mpi)");
    if (!st) st = mpi_share_arena(c, local, c->size, &fd, err);
    MPI_Comm_free(&local);
    if (!st) st = shm_attach_fd(c, fd, err);
    return st;
}

void mpi_free(tpar_comm_t *c) {
    mpi_comm_t *m = c->mpi;
    int finalized = 0;
    MPI_Finalized(&finalized);
    /* MPI_Finalize waits for every rank with no deadline: first meet them all within it (a rank
     * stopped after the others finished would otherwise keep them there forever). */
    if (m && c->owns_mpi_init && !finalized && !c->poisoned && !comm_world_failed(c)) {
        tpar_err_t ferr;
        if (mpi_fence(c, m->comm, c->timeout_s, "finalize", &ferr)) comm_fail(c, TPAR_ERR_TIMEOUT, "%s", ferr.msg);
    }
    if (m) {
        tpar_comm_free(m->local);
        if (m->cross != MPI_COMM_NULL) MPI_Comm_free(&m->cross);
        MPI_Comm_free(&m->comm);
        free(m);
        c->mpi = NULL;
    }
    /* After a failure a peer may never reach MPI_Finalize; do not wait for it: the program
     * reports its error, then tpar_comm_abort_unfinished ends the job. */
    if (c->owns_mpi_init && !finalized && !c->poisoned && !comm_world_failed(c)) MPI_Finalize();
}

static tpar_status mpi_split_op(tpar_comm_t *parent, tpar_comm_t *child, const comm_split_t *sp, tpar_err_t *err) {
    (void)err; /* failures are recorded on the parent */
    return mpi_split(parent, child, sp->color, sp->key);
}

const comm_backend_ops_t comm_mpi_ops = {"mpi", mpi_world_init, mpi_split_op, mpi_exec, mpi_free, NULL, NULL};

/* shm with ranks started by mpirun: MPI only to set up the world (and to end it), shm for
 * every call; its splits are plain shm communicators. */
static tpar_status shm_mpirun_world_init(tpar_comm_t *c, tpar_err_t *err) {
    tpar_status st = mpi_world_init(c, err); /* sets rank, size, world_ranks from MPI */
    return st ? st : mpi_bootstrap_shm(c, err);
}

static void shm_mpirun_free(tpar_comm_t *c) {
    comm_shm_ops.free(c);
    mpi_free(c);
}

const comm_backend_ops_t comm_shm_mpirun_ops = {"shm",           shm_mpirun_world_init, shm_split_op,   shm_exec,
                                                shm_mpirun_free, shm_mem_alloc_op,      shm_mem_free_op};

int tpar_comm_abort_unfinished(int status) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized) return status;
    fflush(NULL);
    MPI_Abort(MPI_COMM_WORLD, status ? status : 1);
    return status; /* not reached: MPI_Abort ends the process */
}
