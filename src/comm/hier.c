/* hier backend: ranks are grouped into hosts (MPI_COMM_TYPE_SHARED, or TPAR_COMM_HIER_HOST_SIZE
 * consecutive ranks per pretend host, to run the two-level path on one machine). Within a
 * host a shm communicator, between hosts one MPI communicator per local rank. All-reduce is
 * two-level: intra-host reduce-scatter (shm), inter-host all-reduce of each slice (MPI),
 * intra-host all-gather (shm). With a single host every call goes to shm; other calls across
 * hosts go to MPI on the whole group. Built on the mpi backend (comm_mpi.h) and shm; the
 * host-local communicator's reduce-scatterv / all-gatherv still go through the public calls
 * (tpar_comm_reduce_scatterv, tpar_comm_allgatherv), which number and check them. */
#include <stdlib.h>

#include "comm_mpi.h"

static tpar_status hier_setup(tpar_comm_t *c, tpar_err_t *err) {
    mpi_comm_t *m = c->mpi;
    long long host_size = 0;
    tpar_status st = tpar_env_int("TPAR_COMM_HIER_HOST_SIZE", 0, 0, 1 << 20, &host_size, err);
    if (st) return st;
    MPI_Comm local;
    if ((st = mpi_fence(c, m->comm, c->timeout_s, "grouping the ranks by host", err))) return st;
    if (host_size > 0) /* pretend hosts: consecutive world ranks */
        MPI_Comm_split(m->comm, (int)(c->world_rank / host_size), c->rank, &local);
    else
        MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
    int lr, ls;
    MPI_Comm_rank(local, &lr);
    MPI_Comm_size(local, &ls);
    if ((st = mpi_fence(c, m->comm, c->timeout_s, "grouping the ranks across hosts", err))) {
        MPI_Comm_free(&local);
        return st;
    }
    MPI_Comm_split(m->comm, lr, c->rank, &m->cross);
    MPI_Comm_set_errhandler(m->cross, MPI_ERRORS_RETURN);
    int cs;
    MPI_Comm_size(m->cross, &cs);
    int mm[3] = {ls, -ls, cs}, agg[3];
    MPI_Request req;
    st = MPI_Iallreduce(mm, agg, 3, MPI_INT, MPI_MAX, m->comm, &req) != MPI_SUCCESS
             ? tpar_err_set(err, TPAR_ERR_SYS, "hier: MPI_Iallreduce failed")
             : mpi_setup_done(c, &req, c->timeout_s, "counting the hosts", err);
    if (st) {
        MPI_Comm_free(&local);
        return st;
    }
    m->two_level = agg[0] == -agg[1]; /* same number of ranks on every host */
    m->nhosts = agg[2];

    tpar_comm_t *l = comm_new(lr, ls);
    int fd = -1;
    st = l ? TPAR_OK : tpar_err_set(err, TPAR_ERR_NOMEM, "hier: out of memory");
    if (!st) {
        l->backend = l->cfg.backend = TPAR_BACKEND_SHM;
        l->ops = &comm_shm_ops;
        l->timeout_s = l->cfg.timeout_s = c->timeout_s;
        l->cfg.progress_thread = 0; /* the hier communicator's own queue drives it */
        l->world_rank = c->world_rank;
        l->wstate = comm_world_ref(c->wstate);
        m->local = l; /* freed with c, whatever happens below */
        st = MPI_Iallgather(&c->world_rank, 1, MPI_INT, l->world_ranks, 1, MPI_INT, local, &req) != MPI_SUCCESS
                 ? tpar_err_set(err, TPAR_ERR_SYS, "hier: MPI_Iallgather failed")
                 : mpi_setup_done(c, &req, c->timeout_s, "the host's world ranks", err);
    }
    if (!st) st = mpi_share_arena(c, local, ls, &fd, err);
    if (!st) st = shm_attach_fd(l, fd, err);
    MPI_Comm_free(&local);
    return st;
}

/* Copies a failure of the host-local communicator onto the hier communicator. */
static tpar_status from_local(tpar_comm_t *c, tpar_status st) {
    if (st) comm_fail(c, st, "%s (within host, shm)", tpar_comm_error(c->mpi->local));
    return st;
}

/* Two levels: my local rank owns slice [displs[lr], +counts[lr]) of the vector. */
static tpar_status two_level(tpar_comm_t *c, const void *sbuf, void *rbuf, size_t count, tpar_dtype dt,
                             const coll_t *k) {
    mpi_comm_t *m = c->mpi;
    tpar_comm_t *l = m->local;
    int ls = l->size, lr = l->rank;
    size_t esz = tpar_dtype_size(dt);
    size_t *counts = malloc(2 * (size_t)ls * sizeof *counts);
    void *slice = NULL;
    if (counts) {
        for (int i = 0; i < ls; i++) {
            counts[i] = count * (size_t)(i + 1) / (size_t)ls - count * (size_t)i / (size_t)ls;
            counts[ls + i] = count * (size_t)i / (size_t)ls;
        }
        slice = malloc(counts[lr] * esz + 1);
    }
    if (!counts || !slice) {
        free(counts);
        return comm_fail(c, TPAR_ERR_NOMEM, "allreduce: out of memory");
    }
    tpar_status st = from_local(c, tpar_comm_reduce_scatterv(l, sbuf, slice, counts, dt, k->op));
    if (!st) st = mpi_allreduce_on(c, m->cross, slice, slice, counts[lr], dt, k->op, k);
    if (!st) st = from_local(c, tpar_comm_allgatherv(l, slice, counts[lr], rbuf, counts, counts + ls, dt));
    free(slice);
    free(counts);
    return st;
}

static tpar_status hier_exec(tpar_comm_t *c, const coll_t *k) {
    mpi_comm_t *m = c->mpi;
    if (m->nhosts == 1) return from_local(c, shm_exec(m->local, k)); /* one host: its ranks are all ranks */
    if (k->kind != COLL_ALLREDUCE || !m->two_level) return mpi_exec(c, k);
    /* Each host's shm checks only its own ranks: compare across hosts first. */
    tpar_status st = mpi_check(c, k);
    if (st) return st;
    if (k->dt != TPAR_BF16) return two_level(c, k->sbuf, k->rbuf, k->count, k->dt, k);
    /* bfloat16: both levels in float32, rounded once at the end */
    float *f = mpi_bf16_to_f32(k->sbuf, k->count);
    if (!f) return comm_fail(c, TPAR_ERR_NOMEM, "allreduce: out of memory");
    st = two_level(c, f, f, k->count, TPAR_F32, k);
    for (size_t i = 0; !st && i < k->count; i++) ((uint16_t *)k->rbuf)[i] = tpar_f32_to_bf16(f[i]);
    free(f);
    return st;
}

static tpar_status hier_world_init(tpar_comm_t *c, tpar_err_t *err) {
    tpar_status st = mpi_world_init(c, err); /* sets rank, size, world_ranks from MPI */
    return st ? st : hier_setup(c, err);
}

static tpar_status hier_split(tpar_comm_t *parent, tpar_comm_t *child, const comm_split_t *sp, tpar_err_t *err) {
    tpar_status st = mpi_split(parent, child, sp->color, sp->key);
    if (!st && child) st = hier_setup(child, err);
    return st;
}

const comm_backend_ops_t comm_hier_ops = {"hier", hier_world_init, hier_split, hier_exec, mpi_free, NULL, NULL};
