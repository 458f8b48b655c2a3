/* tpar comm: collectives between ranks, the way NCCL is for GPUs.
 *
 * A rank is a process with its own memory. Ranks on one host talk through shared
 * memory (backend "shm"); ranks on several hosts through MPI ("mpi"), or both in two
 * levels ("hier"). Every call is collective over the communicator unless it says
 * otherwise (send/recv), and every rank must make the same calls in the same order
 * with the same count, dtype, op and root: mismatches are detected where cheap and
 * reported as TPAR_ERR_MISMATCH.
 *
 * In-place: pass TPAR_IN_PLACE as sendbuf, with MPI's meaning:
 *   allreduce       data is in recvbuf, result replaces it
 *   allgather(v)    this rank's block is already at its place in recvbuf
 *   reduce_scatter  the full input (size * count) is in recvbuf; the result lands in
 *                   recvbuf[0 .. count)
 *
 * Determinism: for a given world size and inputs, every rank receives bit-identical
 * results and two runs give bit-identical results (reductions in a fixed order).
 *
 * Failure: every wait has a deadline (TPAR_COMM_TIMEOUT seconds). A peer that dies or
 * stops answering makes the call return TPAR_ERR_PEER_DEAD or TPAR_ERR_TIMEOUT, and
 * tpar_comm_error() names the collective, its sequence number and the missing rank.
 * After such an error the communicator is poisoned: later calls fail at once; free it. */
#ifndef TPAR_COMM_H
#define TPAR_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "tpar/core.h"

typedef enum {
    TPAR_F32 = 0,
    TPAR_BF16, /* stored as uint16_t; reductions accumulate in float32 and round once */
    TPAR_I32,
    TPAR_I64,
    TPAR_F64,
    TPAR_DTYPE_COUNT
} tpar_dtype;

typedef enum { TPAR_SUM = 0, TPAR_MAX, TPAR_MIN, TPAR_OP_COUNT } tpar_op;

typedef enum {
    TPAR_BACKEND_AUTO = 0, /* shm on one host, hier across hosts (from TPAR_COMM, else detected) */
    TPAR_BACKEND_SHM,
    TPAR_BACKEND_MPI,
    TPAR_BACKEND_HIER,
    TPAR_BACKEND_COUNT
} tpar_backend;

TPAR_API size_t tpar_dtype_size(tpar_dtype dt);       /* 0 for an invalid dtype */
TPAR_API const char *tpar_dtype_name(tpar_dtype dt);  /* "f32", "bf16", ... */
TPAR_API const char *tpar_op_name(tpar_op op);        /* "sum", "max", "min" */
TPAR_API const char *tpar_backend_name(tpar_backend b); /* "auto", "shm", "mpi", "hier" */

/* bfloat16 conversions (round to nearest even; NaN stays NaN). */
TPAR_API uint16_t tpar_f32_to_bf16(float f);
TPAR_API float tpar_bf16_to_f32(uint16_t h);

/* Marks an in-place collective (see above). */
#define TPAR_IN_PLACE ((const void *)(uintptr_t)1)

typedef struct tpar_comm tpar_comm_t;
typedef struct tpar_request tpar_request_t;

typedef struct {
    tpar_backend backend; /* AUTO: TPAR_COMM=shm|mpi|hier|auto, else detected */
    double timeout_s;     /* <= 0: TPAR_COMM_TIMEOUT, else the default (see docs/COMM.md) */
    int progress_thread;  /* -1: TPAR_COMM_PROGRESS=thread|inline, else thread when a core is spare;
                             0: progress inside test/wait; 1: a communication worker thread */
    int check_calls;      /* -1: TPAR_COMM_CHECK=0|1 (default 0); 1: the mpi and hier backends
                             compare every collective's kind, count, dtype, op and root across
                             ranks before running it (one small extra MPI_Allgather a call), so
                             mismatched calls fail with TPAR_ERR_MISMATCH instead of hanging or
                             mis-summing; shm always compares (free: it is in its first step) */
} tpar_comm_config_t;

/* The defaults: AUTO everywhere. */
TPAR_API tpar_comm_config_t tpar_comm_config_default(void);

/* Joins the world: rank and size from TPAR_RANK/TPAR_WORLD_SIZE (set by `tpar launch`)
 * or from MPI (mpirun/srun). A process started alone is a world of one.
 * cfg may be NULL (defaults). On failure *out is NULL and err says why. */
TPAR_API tpar_status tpar_comm_init(const tpar_comm_config_t *cfg, tpar_comm_t **out, tpar_err_t *err);

/* Splits comm into sub-groups: ranks with the same color form a group, ordered by
 * (key, rank in comm). Collective over comm. TP, DP and PP groups are built from it. */
TPAR_API tpar_status tpar_comm_split(tpar_comm_t *comm, int color, int key, tpar_comm_t **out);

/* Releases a communicator (sub-groups before their parent). NULL is allowed. A timeout, a dead
 * peer or a system error on any communicator marks the whole world failed (every later call of
 * this rank's communicators fails at once); freeing such a world does not call MPI_Finalize,
 * which would wait forever for the failed peer: see tpar_comm_abort_unfinished. */
TPAR_API void tpar_comm_free(tpar_comm_t *comm);

/* The last call of a program that may run under mpirun, after it reported its error: when MPI
 * is initialised and was not finalized (a failed world was freed, or a world was never freed),
 * calls MPI_Abort(MPI_COMM_WORLD, status ? status : 1), which does not return: the MPI launcher
 * then ends every rank, also a stopped or stalled one (exiting without it would leave the
 * launcher waiting). Otherwise (no MPI, or MPI finalized) returns status. */
TPAR_API int tpar_comm_abort_unfinished(int status);

/* ---- memory every rank of the host can read (like NCCL's registered buffers) ------------
 * Zeroed, page-aligned memory from the job's shared arena. A large all-reduce whose buffers
 * all come from here (on every rank, allocated through any communicator of the job) reads the
 * peers' buffers directly instead of staging them through shared memory: fewer copies, less
 * memory traffic (docs/COMM.md). Without an arena (one rank, the mpi backend) or with the
 * arena full (TPAR_SHM_ARENA_MB) it is ordinary aligned memory, and every call works on it
 * just the same. Meant for long-lived buffers (activations, gradients): freeing returns the
 * pages, not the address range. Free with the same communicator, before freeing that. */
TPAR_API void *tpar_comm_mem_alloc(tpar_comm_t *comm, size_t bytes);
TPAR_API void tpar_comm_mem_free(tpar_comm_t *comm, void *p); /* p may be NULL */

TPAR_API int tpar_comm_rank(const tpar_comm_t *comm);
TPAR_API int tpar_comm_size(const tpar_comm_t *comm);
TPAR_API tpar_backend tpar_comm_backend(const tpar_comm_t *comm);
/* The message of the last error on this communicator ("" if none). */
TPAR_API const char *tpar_comm_error(const tpar_comm_t *comm);

/* ---- blocking collectives (counts are in elements) ------------------------------------- */
TPAR_API tpar_status tpar_comm_allreduce(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                         tpar_dtype dt, tpar_op op);
/* recvbuf holds size * count elements, rank r's block at r * count. */
TPAR_API tpar_status tpar_comm_allgather(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                         tpar_dtype dt);
/* Per-rank counts; rank r's block lands at recvbuf + displs[r] (elements). */
TPAR_API tpar_status tpar_comm_allgatherv(tpar_comm_t *comm, const void *sendbuf, size_t sendcount, void *recvbuf,
                                          const size_t *recvcounts, const size_t *displs, tpar_dtype dt);
/* sendbuf holds size * recvcount elements; rank r receives the reduction of block r. */
TPAR_API tpar_status tpar_comm_reduce_scatter(tpar_comm_t *comm, const void *sendbuf, void *recvbuf,
                                              size_t recvcount, tpar_dtype dt, tpar_op op);
/* Blocks of recvcounts[r] elements laid end to end in sendbuf. */
TPAR_API tpar_status tpar_comm_reduce_scatterv(tpar_comm_t *comm, const void *sendbuf, void *recvbuf,
                                               const size_t *recvcounts, tpar_dtype dt, tpar_op op);
TPAR_API tpar_status tpar_comm_broadcast(tpar_comm_t *comm, void *buf, size_t count, tpar_dtype dt, int root);
/* count elements to each rank: block r of sendbuf goes to rank r, block s of recvbuf comes from s. */
TPAR_API tpar_status tpar_comm_alltoall(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                        tpar_dtype dt);
TPAR_API tpar_status tpar_comm_barrier(tpar_comm_t *comm);

/* Agreeing on a status: a collective over comm (one all-reduce) after which every rank knows
 * the worst status of all (the largest code; the lowest rank among those that have it).
 * Returns this rank's own status when it failed (err untouched: it holds this rank's message);
 * when only others failed, the worst of theirs, with err saying "<what>: another rank failed
 * (rank R: <status>)"; when the all-reduce itself fails, its status, with err saying
 * "<what>: <the communicator's message>". TPAR_OK when every rank passed TPAR_OK. */
TPAR_API tpar_status tpar_comm_agree(tpar_comm_t *comm, tpar_status status, const char *what, tpar_err_t *err);

/* Point to point (not collective): matched by (source, tag) in order. */
TPAR_API tpar_status tpar_comm_send(tpar_comm_t *comm, const void *buf, size_t count, tpar_dtype dt, int dst,
                                    int tag);
TPAR_API tpar_status tpar_comm_recv(tpar_comm_t *comm, void *buf, size_t count, tpar_dtype dt, int src, int tag);

/* ---- non-blocking collectives --------------------------------------------------------
 * Start the operation and return a request; buffers must stay untouched until it
 * completes. Non-blocking calls are ordered with blocking ones like any other call.
 * wait completes and frees the request; test sets *done and frees it once done. */
TPAR_API tpar_status tpar_comm_iallreduce(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                          tpar_dtype dt, tpar_op op, tpar_request_t **req);
TPAR_API tpar_status tpar_comm_iallgather(tpar_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                          tpar_dtype dt, tpar_request_t **req);
TPAR_API tpar_status tpar_comm_ireduce_scatter(tpar_comm_t *comm, const void *sendbuf, void *recvbuf,
                                               size_t recvcount, tpar_dtype dt, tpar_op op, tpar_request_t **req);
TPAR_API tpar_status tpar_comm_ibroadcast(tpar_comm_t *comm, void *buf, size_t count, tpar_dtype dt, int root,
                                          tpar_request_t **req);
TPAR_API tpar_status tpar_comm_wait(tpar_request_t *req);
TPAR_API tpar_status tpar_comm_test(tpar_request_t *req, int *done);

/* ---- accounting, for the communication share of a step ---------------------------------- */
typedef struct {
    double wait_s;      /* time the caller spent blocked in collectives and waits */
    uint64_t calls;     /* collectives started */
    uint64_t bytes;     /* payload bytes this rank contributed */
    uint64_t bus_bytes; /* bytes a ring algorithm moves out of this rank (NCCL's "bus" bytes):
                         * 2(n-1)/n of the buffer for an all-reduce, (n-1)/n of the whole
                         * buffer for all-gather, reduce-scatter and all-to-all, the buffer for
                         * broadcast and send; 0 on one rank. The unit of `tpar plan`. */
} tpar_comm_stats_t;
TPAR_API void tpar_comm_stats(const tpar_comm_t *comm, tpar_comm_stats_t *out);
TPAR_API void tpar_comm_stats_reset(tpar_comm_t *comm);

/* ---- launcher support (used by `tpar launch`) ---------------------------------------------
 * A job is the shared arena of one launch: an anonymous memfd (mode 0600, never named in
 * /dev/shm) that every rank inherits as TPAR_SHM_FD. The launcher marks failed ranks in it so
 * that peers waiting on them fail at once instead of at the deadline. */
typedef struct tpar_comm_job tpar_comm_job_t;
TPAR_API tpar_status tpar_comm_job_create(int world_size, tpar_comm_job_t **out, tpar_err_t *err);
TPAR_API int tpar_comm_job_fd(const tpar_comm_job_t *job);
TPAR_API void tpar_comm_job_mark_dead(tpar_comm_job_t *job, int rank);
TPAR_API void tpar_comm_job_free(tpar_comm_job_t *job);

#endif /* TPAR_COMM_H */
