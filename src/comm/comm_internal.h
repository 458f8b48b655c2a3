/* Internal to src/comm: the communicator object, the description of one call, the helpers
 * beneath the backends (comm_util.c), and the operations table each backend (shm, mpi, hier)
 * exports. The front end (comm.c) reaches a backend only through its table. */
#ifndef TPAR_COMM_INTERNAL_H
#define TPAR_COMM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "tpar/comm.h"

/* The kinds of call a backend executes. */
typedef enum {
    COLL_ALLREDUCE = 1,
    COLL_ALLGATHER,
    COLL_ALLGATHERV,
    COLL_REDUCE_SCATTER,
    COLL_REDUCE_SCATTERV,
    COLL_BROADCAST,
    COLL_ALLTOALL,
    COLL_BARRIER,
    COLL_SEND,
    COLL_RECV,
    COLL_KIND_END
} coll_kind;

/* One call, validated. sbuf is already resolved: for in-place calls it points into rbuf
 * (sbuf == NULL never happens for count > 0). */
typedef struct {
    coll_kind kind;
    const void *sbuf;
    void *rbuf;
    size_t count;         /* elements: per rank block (allgather, reduce_scatter, alltoall) or total */
    const size_t *counts; /* v forms: per-rank counts */
    const size_t *displs; /* allgatherv: per-rank displacements (elements) */
    int in_place;
    tpar_dtype dt;
    tpar_op op;
    int root;             /* broadcast */
    int peer, tag;        /* send / recv */
    uint64_t seq;         /* collective sequence number on this communicator (1, 2, ...) */
    uint64_t desc_hash;   /* v forms: hash of the counts, so mismatched arrays are caught */
} coll_t;

const char *coll_name(coll_kind k);
/* "allreduce #12 (1024 x float32 sum)", for messages; "communicator set-up" for NULL. */
void comm_describe_call(const coll_t *call, char *buf, size_t n);

/* What a rank says it is doing, compared across ranks before a collective runs (shm: in the
 * region at its first step; mpi with TPAR_COMM_CHECK=1: all-gathered). 24 bytes. */
typedef struct {
    uint64_t seq;
    uint64_t size;             /* count; for the v forms, a hash of the per-rank counts */
    uint8_t kind, dt, op, pad; /* coll_kind, tpar_dtype, tpar_op */
    int32_t root;
} call_desc_t;
call_desc_t comm_call_desc(const coll_t *call);

/* Ranks on this host, from the launcher's environment (tpar launch, Open MPI, MPICH), else
 * fallback: decides spinning vs yielding and whether a progress thread has a spare core. */
int comm_local_ranks(int fallback);

/* What all communicators of one process's world share (the world and every communicator split
 * from it, hier's host-local ones included; refcounted, so any may be freed last): whether the
 * job failed, the first failure's message, and each world rank's pid and host (filled by the
 * mpi backend, to name a silent rank). A job fails on a timeout, a dead peer or a system
 * error: after one of those, peers may wait forever, so a world whose job failed is never
 * finalized and later calls fail at once. A mismatch (seen by every rank alike) or a bad
 * argument fails only its communicator. */
typedef struct {
    atomic_int refs;
    atomic_int failed;        /* 0, 1 while msg is written, 2 with msg set */
    char msg[TPAR_ERR_MSG_MAX];
    tpar_status code;         /* of the first failure */
    int nranks;               /* entries in pids/hosts (0: unknown) */
    int32_t *pids;            /* by world rank */
    uint64_t *hosts;          /* by world rank: hash of the host name */
} comm_world_t;

comm_world_t *comm_world_new(void);
comm_world_t *comm_world_ref(comm_world_t *w);
void comm_world_unref(comm_world_t *w);
int comm_world_failed(const tpar_comm_t *c); /* this communicator's world failed */
/* ", which is stopped (SIGSTOP or a debugger)", ", which no longer exists" or ", which has
 * exited" when /proc says so of pid, else "" (alive and running, or on another host). */
void comm_pid_state(int pid, char *buf, size_t n);

typedef struct shm_comm shm_comm_t;
typedef struct mpi_comm mpi_comm_t;

/* Where a split puts the calling rank: color (< 0: no group; then child is NULL) and key as
 * the caller passed them; leader, the parent rank of the child's rank 0; nmembers, the child's
 * size. Each backend uses what it needs. */
typedef struct {
    int color, key, leader, nmembers;
} comm_split_t;

/* A backend's operations (NCCL's transport table, ggml's backend interface). Every backend
 * exports one; tpar_comm_t.ops points at the table of the backend that made the communicator. */
typedef struct {
    const char *name;
    /* The world: c has rank, size, world_ranks from the environment (the backend may replace
     * them, as MPI does), timeout and config set; fills the backend's state. */
    tpar_status (*world_init)(tpar_comm_t *c, tpar_err_t *err);
    /* Collective over parent; child (rank, size, world_ranks, config set by the front end) is
     * NULL on ranks that join no group. Failures of the parent's own traffic are recorded on
     * the parent (comm_fail); err carries a set-up failure of the child. */
    tpar_status (*split)(tpar_comm_t *parent, tpar_comm_t *child, const comm_split_t *s, tpar_err_t *err);
    /* One validated call (see coll_t), in issue order. */
    tpar_status (*exec)(tpar_comm_t *c, const coll_t *call);
    /* Frees the backend's state (whatever world_init or split made, also after a failure). */
    void (*free)(tpar_comm_t *c);
    /* Shared memory that peers read in place (tpar_comm_mem_alloc); NULL: the backend has none. */
    void *(*mem_alloc)(tpar_comm_t *c, size_t bytes);
    int (*mem_free)(tpar_comm_t *c, void *p); /* 1 if p came from mem_alloc (and is freed) */
} comm_backend_ops_t;

extern const comm_backend_ops_t comm_shm_ops;        /* shm.c: ranks started by `tpar launch` */
#ifdef TPAR_HAVE_MPI
extern const comm_backend_ops_t comm_mpi_ops;        /* mpi.c */
extern const comm_backend_ops_t comm_shm_mpirun_ops; /* mpi.c: shm, with ranks started by mpirun */
extern const comm_backend_ops_t comm_hier_ops;       /* hier.c */
#endif

struct tpar_request {
    tpar_comm_t *comm;
    coll_t call;
    tpar_status status;
    int done;
    tpar_request_t *next; /* queue of pending non-blocking calls */
};

struct tpar_comm {
    tpar_backend backend;
    const comm_backend_ops_t *ops; /* NULL until the front end chose the backend */
    int rank, size;
    double timeout_s;
    int world_rank;          /* this process's rank in the world (for messages) */
    int *world_ranks;        /* world rank of each member (size entries) */
    uint64_t seq;            /* collectives issued so far */
    tpar_status poisoned;    /* TPAR_OK, or the error that broke this communicator */
    char err[TPAR_ERR_MSG_MAX];
    tpar_comm_stats_t stats;
    tpar_comm_config_t cfg;  /* as resolved (backend, timeout, progress) */

    shm_comm_t *shm;         /* shm, and hier within a host */
    mpi_comm_t *mpi;         /* mpi, and hier between hosts */
    int owns_mpi_init;       /* this (world) communicator called MPI_Init */
    comm_world_t *wstate;    /* shared with the world and its other communicators */

    /* Non-blocking calls: a FIFO executed by the worker thread, or inside test/wait. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tpar_request_t *q_head, *q_tail;
    int q_running;           /* the worker is executing a call right now */
    int worker_on, worker_stop;
    pthread_t worker;
};

/* A communicator with nothing attached yet (world_ranks allocated, zeroed); NULL if out of memory. */
tpar_comm_t *comm_new(int rank, int size);

/* Records err on the communicator (sets the message, poisons for fatal codes) and returns code. */
tpar_status comm_fail(tpar_comm_t *c, tpar_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Rank q described its call as *theirs, which differs from this rank's call k: records the
 * mismatch (naming both) and returns TPAR_ERR_MISMATCH. */
tpar_status comm_mismatch(tpar_comm_t *c, const coll_t *k, int q, const call_desc_t *theirs);

/* ---- helpers (comm_util.c): see the declarations above (coll_name ... comm_mismatch) ---- */

/* ---- reductions (reduce.c) ---- */
/* dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[n-1][i], strictly in that order (bf16 in
 * float32, rounded once). dst may alias srcs[k] only if it is identical (same pointer). */
void tpar_reduce_n(void *dst, const void *const *srcs, int n, size_t count, tpar_dtype dt, tpar_op op);
/* memcpy with streaming (non-temporal) stores, fenced on return: the bytes go to memory instead
 * of staying dirty in this core's cache, for staging that other cores read next. */
void tpar_copy_stream(void *dst, const void *src, size_t n);

/* ---- shm backend (shm.c), also for the backends built on it (mpi.c's shm under mpirun, hier.c) ---- */
tpar_status shm_world_init(tpar_comm_t *c, tpar_err_t *err); /* from TPAR_SHM_FD, or a private world of one */
/* Collective over parent; child is NULL on ranks that join no group. leader: parent rank of
 * the child's rank 0. */
tpar_status shm_split(tpar_comm_t *parent, tpar_comm_t *child, int leader, int nmembers, tpar_err_t *err);
tpar_status shm_exec(tpar_comm_t *c, const coll_t *call);
/* comm_shm_ops' entries, for the tables of the backends built on shm (mpi.c's shm under mpirun). */
tpar_status shm_split_op(tpar_comm_t *parent, tpar_comm_t *child, const comm_split_t *sp, tpar_err_t *err);
void *shm_mem_alloc_op(tpar_comm_t *c, size_t bytes);
int shm_mem_free_op(tpar_comm_t *c, void *p);
void shm_free(shm_comm_t *s);
void *shm_alloc(shm_comm_t *s, size_t bytes);  /* from the arena; NULL if none or full */
int shm_free_mem(shm_comm_t *s, void *p);      /* 1 if p came from shm_alloc (and is freed) */
/* Wraps an already-opened arena fd (hier under mpirun: fd obtained through /proc). */
tpar_status shm_attach_fd(tpar_comm_t *c, int fd, tpar_err_t *err);
/* For hier bootstrap: creates a fresh arena memfd for `local_size` ranks; returns fd. */
tpar_status shm_arena_new_fd(int local_size, int *fd, tpar_err_t *err);

#ifdef TPAR_HAVE_MPI
/* The front end's one question to mpi.c before it picks a table (the rest: comm_mpi.h). */
int mpi_started_by_launcher(void); /* OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK ... */
#endif

#endif /* TPAR_COMM_INTERNAL_H */
