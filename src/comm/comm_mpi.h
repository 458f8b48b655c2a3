/* Internal to src/comm: the mpi backend's pieces that hier (hier.c) builds on. The front end
 * does not include this header; it reaches mpi and hier through their tables. */
#ifndef TPAR_COMM_MPI_H
#define TPAR_COMM_MPI_H

#include <mpi.h>

#include "comm_internal.h"

struct mpi_comm {
    MPI_Comm comm;       /* all members */
    tpar_comm_t *local;  /* hier: shm among the members on this host */
    MPI_Comm cross;      /* hier: members with the same local rank, one per host */
    int nhosts;
    int two_level;       /* hier: every host has the same number of members */
};

tpar_status mpi_world_init(tpar_comm_t *c, tpar_err_t *err);
tpar_status mpi_split(tpar_comm_t *parent, tpar_comm_t *child, int color, int key);
tpar_status mpi_exec(tpar_comm_t *c, const coll_t *call);
void mpi_free(tpar_comm_t *c);
/* Completes a set-up request within timeout_s, naming a silent rank; 'what' goes in the message. */
tpar_status mpi_setup_done(const tpar_comm_t *c, MPI_Request *req, double timeout_s, const char *what,
                           tpar_err_t *err);
/* A barrier with a deadline before a blocking MPI set-up call (split, finalize). */
tpar_status mpi_fence(const tpar_comm_t *c, MPI_Comm comm, double timeout_s, const char *what, tpar_err_t *err);
/* The arena for the ranks of `comm` (all on one host): rank 0 makes it, the others open it
 * through /proc. Returns an fd this process owns. */
tpar_status mpi_share_arena(const tpar_comm_t *c, MPI_Comm comm, int nranks, int *fd_out, tpar_err_t *err);
/* All-reduce of count elements on comm (a sub-communicator of c's), failures recorded on c. */
tpar_status mpi_allreduce_on(tpar_comm_t *c, MPI_Comm comm, const void *sbuf, void *rbuf, size_t count,
                             tpar_dtype dt, tpar_op op, const coll_t *k);
/* TPAR_COMM_CHECK: the call's description compared across c's ranks. */
tpar_status mpi_check(tpar_comm_t *c, const coll_t *k);
/* bfloat16 -> a new float32 array (NULL if out of memory). */
float *mpi_bf16_to_f32(const uint16_t *h, size_t n);

#endif /* TPAR_COMM_MPI_H */
