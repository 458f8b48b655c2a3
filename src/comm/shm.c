/* shm backend: ranks on one host exchange data through one shared-memory region per
 * communicator. See docs/COMM.md for the protocol; in short:
 *
 * - A job has one arena: a memfd made by `tpar launch` (or by the local leader under mpirun)
 *   and inherited by every rank. Nothing is ever named in /dev/shm, so nothing can be left
 *   behind, and only processes that hold the fd (or may ptrace its owner) can map it.
 * - Each communicator owns a region of the arena: the world's is placed by the arena's
 *   creator, a sub-communicator's is carved by its leader (bump allocation) during split and
 *   its offset handed to the members through the parent.
 * - Each rank has a staging slot with two halves (parity of the step number) and a step
 *   counter. A step is: write my half, publish my counter, wait until every counter reached
 *   the step, read the others' halves. Because a rank publishes step s+1 only after it has
 *   finished reading step s, a half can be rewritten two steps later without another wait.
 * - Every rank maps the whole arena, so buffers allocated from it (tpar_comm_mem_alloc) are
 *   readable by all: a large all-reduce on such buffers skips the slots and reads the peers'
 *   buffers in place.
 * - Reductions read the ranks' data in rank order 0..n-1 whoever computes them, so results
 *   are bit-identical on every rank, across runs and across algorithms. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "comm_internal.h"

#define ARENA_MAGIC 0x74706172415245ull /* "tparARE" */
#define REGION_MAGIC 0x7470617252474eull
#define PAGE 4096u
#define CACHELINE 64u

/* Sizes (bytes). The staging chunk is per rank and per parity; it bounds how much data one
 * step moves, so it trades synchronisation count against cache footprint (docs/COMM.md). */
#define DEFAULT_CHUNK (512u << 10)
#define DEFAULT_ONESHOT_MAX (32u << 10)
#define STREAM_MIN (32u << 10) /* smaller staging copies always use cached stores */
#define STREAM_EXPLORE 16       /* auto: every 16th large call of a kind and size tries the other policy */
#define SIZE_CLASSES 48         /* log2 of a call's bytes */
#define PUBLISH_BLOCK (8u << 10) /* all-reduce: reduce this much into L1, then publish it */
#define CHAN_BYTES (64u << 10)
#define DEFAULT_ARENA (16ull << 30)
#define MAX_SHM_RANKS 4096
#define BUF_MAGIC 0x7470617242554621ull /* heads a tpar_comm_mem_alloc buffer, a page before it */

typedef struct {
    uint64_t magic;
    uint64_t arena_bytes;
    uint64_t chunk;
    uint64_t header_bytes;
    uint64_t world_offset;
    _Atomic uint64_t bump; /* next free byte */
    int32_t world_size;
    int32_t pad_;
    _Atomic uint32_t dead[]; /* world_size flags, set by the launcher when a rank failed */
} arena_hdr_t;

typedef struct {
    uint64_t magic;
    int32_t size;
    _Atomic uint32_t futex;    /* bumped by a publish that finds sleepers; they wait on it */
    _Atomic uint32_t sleepers; /* ranks inside futex_wait */
    _Atomic int32_t refs;      /* attached ranks; the last to leave returns the pages */
} region_hdr_t;

typedef struct {
    /* One cache line: a peer that sees the step counter move fetches the descriptors with it. */
    _Atomic uint64_t posted; /* last step this rank published */
    call_desc_t desc[2];     /* by step parity */
    int32_t pid;
    int32_t world_rank;
    int64_t buf[2][2]; /* by parity: a large all-reduce's send and receive buffers' arena offsets, or -1 */
    char pad1[256 - 8 - 2 * sizeof(call_desc_t) - 8 - 4 * sizeof(int64_t)];
} ctrl_t;
_Static_assert(offsetof(ctrl_t, buf) == CACHELINE && sizeof(ctrl_t) == 256, "ctrl_t: hot fields in one line");

typedef struct {
    _Atomic uint64_t written; /* bytes the sender has put into the ring */
    char pad0[CACHELINE - 8];
    _Atomic uint64_t read;    /* bytes the receiver has taken */
    char pad1[CACHELINE - 8];
} chan_t;

typedef struct {
    int32_t tag, dt;
    uint64_t bytes;
} msg_hdr_t;

/* Seconds per byte of one kind and size class of call with cached (0) and streaming (1)
 * staging stores, moving averages; 0 = not measured yet. */
typedef struct {
    double sec_per_byte[2];
    uint32_t calls;
} stream_stats_t;

struct shm_comm {
    int fd;              /* arena fd (-1 for a private region); not owned unless fd_owned */
    int fd_owned;
    arena_hdr_t *arena;  /* the whole arena, mapped (sparse), or NULL */
    size_t arena_map;
    uint8_t *base;       /* this communicator's region */
    size_t bytes;
    uint64_t offset;
    region_hdr_t *hdr;
    ctrl_t *ctrl;
    chan_t *chan;        /* n * n, chan[src * n + dst] */
    uint8_t *slots;
    uint8_t *chandata;
    size_t chunk;
    size_t oneshot_max;
    int stream_mode;     /* TPAR_SHM_STREAM: -1 auto, 0 never, 1 always */
    int stream;          /* the current call streams its staging copies of >= STREAM_MIN bytes */
    int direct;          /* the current call staged nothing (an all-reduce on shared buffers) */
    stream_stats_t stats[COLL_KIND_END][SIZE_CLASSES];
    uint64_t step;
    int spin;            /* back-off: busy polls (at least this many, */
    double spin_s;       /*   and for at least this long), */
    double yield_s;      /* then sched_yield() until this long, then futex sleeps */
    const coll_t *cur;   /* the call in progress (for messages) */
    int n;               /* ranks */
};

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static size_t region_bytes(int n, size_t chunk) {
    size_t b = round_up(sizeof(region_hdr_t), 256);
    b += (size_t)n * sizeof(ctrl_t);
    b += (size_t)n * n * sizeof(chan_t);
    b = round_up(b, PAGE);
    b += (size_t)n * 2 * chunk;
    b += (size_t)n * n * CHAN_BYTES;
    return round_up(b, PAGE);
}

static size_t arena_header_bytes(int world) {
    return round_up(sizeof(arena_hdr_t) + (size_t)world * sizeof(uint32_t), PAGE);
}

static void layout(shm_comm_t *s, int n) {
    uint8_t *p = s->base;
    s->hdr = (region_hdr_t *)p;
    p += round_up(sizeof(region_hdr_t), 256);
    s->ctrl = (ctrl_t *)p;
    p += (size_t)n * sizeof(ctrl_t);
    s->chan = (chan_t *)p;
    p += (size_t)n * n * sizeof(chan_t);
    p = s->base + round_up((size_t)(p - s->base), PAGE);
    s->slots = p;
    p += (size_t)n * 2 * s->chunk;
    s->chandata = p;
}

static uint8_t *slot(const shm_comm_t *s, int r, int par) {
    return s->slots + ((size_t)r * 2 + (size_t)par) * s->chunk;
}

static size_t shm_chunk_bytes(void) {
    long long v = DEFAULT_CHUNK;
    if (tpar_env_int("TPAR_SHM_CHUNK", DEFAULT_CHUNK, 4096, 1ll << 30, &v, NULL) != TPAR_OK) v = DEFAULT_CHUNK;
    return round_up((size_t)v, 4096);
}

/* ---- arena ------------------------------------------------------------------------------ */

tpar_status shm_arena_new_fd(int world, int *fd_out, tpar_err_t *err) {
    if (world < 1 || world > MAX_SHM_RANKS)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "shm: %d ranks (1..%d supported)", world, MAX_SHM_RANKS);
    long long arena_mb = (long long)(DEFAULT_ARENA >> 20);
    tpar_status st = tpar_env_int("TPAR_SHM_ARENA_MB", arena_mb, 16, 1ll << 22, &arena_mb, err);
    if (st) return st;
    size_t chunk = shm_chunk_bytes();
    size_t hb = arena_header_bytes(world), wb = region_bytes(world, chunk);
    size_t total = (size_t)arena_mb << 20;
    if (hb + wb > total)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "shm: arena of %lld MiB too small for %d ranks (need %zu MiB); raise TPAR_SHM_ARENA_MB",
                            arena_mb, world, (hb + wb) >> 20);
    int fd = memfd_create("tpar-comm", MFD_CLOEXEC);
    if (fd < 0) return tpar_err_set(err, TPAR_ERR_SYS, "shm: memfd_create: %s", strerror(errno));
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)total) != 0) {
        int e = errno;
        close(fd);
        return tpar_err_set(err, TPAR_ERR_SYS, "shm: sizing the arena (%zu bytes): %s", total, strerror(e));
    }
    arena_hdr_t *a = mmap(NULL, hb, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (a == MAP_FAILED) {
        int e = errno;
        close(fd);
        return tpar_err_set(err, TPAR_ERR_SYS, "shm: mapping the arena header: %s", strerror(e));
    }
    a->arena_bytes = total;
    a->chunk = chunk;
    a->header_bytes = hb;
    a->world_offset = hb;
    atomic_store(&a->bump, (uint64_t)(hb + wb));
    a->world_size = world;
    a->magic = ARENA_MAGIC;
    munmap(a, hb);
    *fd_out = fd;
    return TPAR_OK;
}

/* ---- the launcher's handle on the arena (comm.h) ---------------------------------------- */

struct tpar_comm_job {
    int fd;
    arena_hdr_t *arena;
    size_t map;
};

tpar_status tpar_comm_job_create(int world_size, tpar_comm_job_t **out, tpar_err_t *err) {
    *out = NULL;
    int fd = -1;
    tpar_status st = shm_arena_new_fd(world_size, &fd, err);
    if (st) return st;
    tpar_comm_job_t *j = calloc(1, sizeof *j);
    size_t hb = arena_header_bytes(world_size);
    void *a = j ? mmap(NULL, hb, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (a == MAP_FAILED) {
        close(fd);
        free(j);
        return tpar_err_set(err, TPAR_ERR_SYS, "shm: mapping the arena header for the launcher");
    }
    j->fd = fd;
    j->arena = a;
    j->map = hb;
    *out = j;
    return TPAR_OK;
}

int tpar_comm_job_fd(const tpar_comm_job_t *job) { return job->fd; }

void tpar_comm_job_mark_dead(tpar_comm_job_t *job, int rank) {
    if (rank >= 0 && rank < job->arena->world_size) atomic_store(&job->arena->dead[rank], 1u);
}

void tpar_comm_job_free(tpar_comm_job_t *job) {
    if (!job) return;
    munmap(job->arena, job->map);
    close(job->fd);
    free(job);
}

/* ---- waiting ---------------------------------------------------------------------------- */

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

/* Called right after a store that may satisfy a waiter. A waiter counts itself in `sleepers`
 * before its last look at the condition, and the fence orders our store before our read of
 * `sleepers`, so either it sees the store or we see it (then the bumped word makes its
 * FUTEX_WAIT return at once, or the wake reaches it). When nobody sleeps, no shared line is
 * written: the hot path stays free of a read-modify-write that both ranks would bounce. */
static void publish_wake(shm_comm_t *s) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&s->hdr->sleepers, memory_order_relaxed)) {
        atomic_fetch_add(&s->hdr->futex, 1u);
        futex(&s->hdr->futex, FUTEX_WAKE, INT_MAX, NULL);
    }
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* A condition being waited for: returns -1 when satisfied, else the rank it waits on. */
typedef int (*ready_fn)(const shm_comm_t *s, const void *arg);

/* Is rank q gone? Set by the launcher, or its pid no longer exists. */
static int peer_gone(const tpar_comm_t *c, int q, int check_pid) {
    const shm_comm_t *s = c->shm;
    int wr = c->world_ranks[q];
    if (s->arena && wr >= 0 && wr < s->arena->world_size && atomic_load(&s->arena->dead[wr])) return 1;
    pid_t pid = (pid_t)s->ctrl[q].pid;
    if (check_pid && pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) return 1;
    return 0;
}

static tpar_status shm_wait(tpar_comm_t *c, ready_fn ready, const void *arg) {
    shm_comm_t *s = c->shm;
    int q = ready(s, arg);
    if (q < 0) return TPAR_OK;
    double t0 = 0.0;
    for (int i = 0;; i++) {
        cpu_relax();
        if ((q = ready(s, arg)) < 0) return TPAR_OK;
        if (i >= s->spin && (i & 255) == 0) {
            double now = tpar_now();
            if (t0 == 0.0) t0 = now;
            if (now - t0 >= s->spin_s) break;
        }
    }
    double next_pid = t0 + 0.02;
    for (;;) {
        double now = tpar_now();
        int yielding = now - t0 < s->yield_s;
        if (now >= next_pid || !yielding) {
            int check_pid = now >= next_pid;
            if (check_pid) next_pid = now + 0.05;
            if (peer_gone(c, q, check_pid)) {
                char what[160];
                comm_describe_call(s->cur, what, sizeof what);
                return comm_fail(c, TPAR_ERR_PEER_DEAD,
                                 "%s on a %d-rank shm communicator: rank %d (world rank %d, pid %d) died "
                                 "before taking part",
                                 what, c->size, q, c->world_ranks[q], (int)s->ctrl[q].pid);
            }
            if (now - t0 > c->timeout_s) {
                char what[160], state[96];
                comm_describe_call(s->cur, what, sizeof what);
                comm_pid_state((int)s->ctrl[q].pid, state, sizeof state);
                return comm_fail(c, TPAR_ERR_TIMEOUT,
                                 "%s on a %d-rank shm communicator: timed out after %g s waiting for rank %d "
                                 "(world rank %d, pid %d)%s; hint: every rank must make the same calls "
                                 "(TPAR_COMM_TIMEOUT sets the deadline)",
                                 what, c->size, c->timeout_s, q, c->world_ranks[q], (int)s->ctrl[q].pid, state);
            }
        }
        if (yielding) {
            sched_yield();
        } else {
            uint32_t v = atomic_load(&s->hdr->futex);
            atomic_fetch_add(&s->hdr->sleepers, 1u);
            if ((q = ready(s, arg)) >= 0) {
                struct timespec ts = {0, 5 * 1000 * 1000}; /* wake up to look for dead peers */
                futex(&s->hdr->futex, FUTEX_WAIT, v, &ts);
            }
            atomic_fetch_sub(&s->hdr->sleepers, 1u);
        }
        if ((q = ready(s, arg)) < 0) return TPAR_OK;
    }
}

static int all_posted(const shm_comm_t *s, const void *arg) {
    uint64_t target = *(const uint64_t *)arg;
    for (int q = 0; q < s->n; q++)
        if (atomic_load_explicit(&s->ctrl[q].posted, memory_order_acquire) < target) return q;
    return -1;
}

static int next_parity(const shm_comm_t *s) { return (int)((s->step + 1) & 1); }

/* One step: publish my counter (and my description of the call, at its first step), wait
 * for everyone, and at the first step compare descriptions. */
static tpar_status step(tpar_comm_t *c, const coll_t *first) {
    shm_comm_t *s = c->shm;
    int par = next_parity(s);
    call_desc_t mine = {0};
    if (first) {
        mine = comm_call_desc(first);
        s->ctrl[c->rank].desc[par] = mine;
    }
    s->step++;
    atomic_store_explicit(&s->ctrl[c->rank].posted, s->step, memory_order_release);
    publish_wake(s);
    uint64_t target = s->step;
    tpar_status st = shm_wait(c, all_posted, &target);
    if (st || !first) return st;
    for (int q = 0; q < c->size; q++)
        if (memcmp(&s->ctrl[q].desc[par], &mine, sizeof mine))
            return comm_mismatch(c, first, q, &s->ctrl[q].desc[par]);
    return TPAR_OK;
}

/* ---- set-up ----------------------------------------------------------------------------- */

static tpar_status set_tuning(shm_comm_t *s, int nranks_here, tpar_err_t *err) {
    /* With a core per rank, spinning is the fastest wait; oversubscribed, a spinning rank
     * steals the core from the one it waits for, so give it away almost at once. */
    if (comm_local_ranks(nranks_here) <= tpar_num_cores()) {
        /* A core each: spin, but not for long: if the peer shares our core after all (a busy
         * machine), only sleeping lets it run; sched_yield() would hand the core to strangers. */
        s->spin = 4096;
        s->spin_s = 200e-6;
        s->yield_s = 0.0;
    } else {
        s->spin = 16;
        s->spin_s = 0.0;
        s->yield_s = 50e-6;
    }
    long long v = DEFAULT_ONESHOT_MAX;
    tpar_env_int("TPAR_SHM_ONESHOT_MAX", DEFAULT_ONESHOT_MAX, 0, 1ll << 40, &v, NULL);
    s->oneshot_max = (size_t)v;
    const char *e = getenv("TPAR_SHM_STREAM");
    s->stream_mode = !e || !*e || !strcmp(e, "auto") ? -1 : !strcmp(e, "1") ? 1 : !strcmp(e, "0") ? 0 : -2;
    if (s->stream_mode == -2)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "TPAR_SHM_STREAM='%s': expected auto, 1 or 0", e);
    return TPAR_OK;
}

/* Maps this communicator's region (offset in the arena, or a private one for a single
 * rank), registers this rank and waits until every member has. */
static tpar_status attach_region(tpar_comm_t *c, int fd, arena_hdr_t *arena, uint64_t offset, tpar_err_t *err) {
    shm_comm_t *s = calloc(1, sizeof *s);
    if (!s) return tpar_err_set(err, TPAR_ERR_NOMEM, "shm: out of memory");
    s->fd = fd;
    s->arena = arena;
    s->chunk = arena ? (size_t)arena->chunk : shm_chunk_bytes();
    s->bytes = region_bytes(c->size, s->chunk);
    s->offset = offset;
    if (fd >= 0)
        s->base = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
    else
        s->base = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s->base == MAP_FAILED) {
        int e = errno;
        size_t b = s->bytes;
        free(s);
        return tpar_err_set(err, TPAR_ERR_SYS, "shm: mapping a %zu-byte region: %s", b, strerror(e));
    }
    s->n = c->size;
    layout(s, c->size);
    tpar_status st = set_tuning(s, c->size, err);
    if (st) {
        munmap(s->base, s->bytes);
        free(s);
        return st;
    }
    c->shm = s;
    s->ctrl[c->rank].pid = (int32_t)getpid();
    s->ctrl[c->rank].world_rank = c->world_rank;
    s->hdr->size = c->size; /* every member writes the same values */
    s->hdr->magic = REGION_MAGIC;
    atomic_fetch_add(&s->hdr->refs, 1);
    st = step(c, NULL);
    if (st) {
        tpar_err_set(err, st, "%s", c->err);
        c->shm = NULL;
        shm_free(s);
    }
    return st;
}

/* Maps the whole arena (sparse: pages exist only where written), so that every rank sees every
 * other rank's tpar_comm_mem_alloc buffers at the same offsets. */
static tpar_status map_arena(int fd, int expect_world, arena_hdr_t **out, size_t *map, tpar_err_t *err) {
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (size_t)sb.st_size < PAGE)
        return tpar_err_set(err, TPAR_ERR_SYS, "shm: fd %d is not a tpar arena (start ranks with `tpar launch`)", fd);
    size_t total = (size_t)sb.st_size, hb = arena_header_bytes(expect_world);
    arena_hdr_t *a = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (a == MAP_FAILED) return tpar_err_set(err, TPAR_ERR_SYS, "shm: mapping the arena: %s", strerror(errno));
    if (a->magic != ARENA_MAGIC || a->world_size != expect_world || a->header_bytes != hb || a->arena_bytes != total) {
        int ws = a->world_size;
        munmap(a, total);
        return tpar_err_set(err, TPAR_ERR_CORRUPT,
                            "shm: fd %d is not an arena for %d ranks (found %d); start ranks with `tpar launch`",
                            fd, expect_world, ws);
    }
    *out = a;
    *map = total;
    return TPAR_OK;
}

tpar_status shm_attach_fd(tpar_comm_t *c, int fd, tpar_err_t *err) {
    arena_hdr_t *a = NULL;
    size_t map = 0;
    tpar_status st = map_arena(fd, c->size, &a, &map, err);
    if (st) return st;
    st = attach_region(c, fd, a, a->world_offset, err);
    if (st) {
        munmap(a, map);
        return st;
    }
    c->shm->arena_map = map;
    c->shm->fd_owned = 1;
    return TPAR_OK;
}

tpar_status shm_world_init(tpar_comm_t *c, tpar_err_t *err) {
    const char *fds = getenv("TPAR_SHM_FD");
    if (!fds || !*fds) {
        if (c->size == 1) return attach_region(c, -1, NULL, 0, err);
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                            "shm: TPAR_WORLD_SIZE=%d but no shared arena (TPAR_SHM_FD); hint: start the ranks "
                            "with `tpar launch -n %d`",
                            c->size, c->size);
    }
    long long fd;
    if (tpar_parse_int(fds, 0, INT_MAX, &fd) != TPAR_OK)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "shm: TPAR_SHM_FD='%s' is not a file descriptor", fds);
    /* The fd stays with this process only: children of a rank must not inherit it. */
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    return shm_attach_fd(c, (int)fd, err);
}

tpar_status shm_split(tpar_comm_t *parent, tpar_comm_t *child, int leader, int nmembers, tpar_err_t *err) {
    shm_comm_t *ps = parent->shm;
    /* The leader of each new group carves its region; offsets travel through the parent. */
    int64_t off = -1;
    if (child && child->rank == 0 && nmembers > 1 && ps->arena) {
        uint64_t need = region_bytes(nmembers, ps->chunk);
        uint64_t o = atomic_fetch_add(&ps->arena->bump, need);
        off = o + need <= ps->arena->arena_bytes ? (int64_t)o : -2;
    }
    int64_t *offs = calloc((size_t)parent->size, sizeof *offs);
    if (!offs) return tpar_err_set(err, TPAR_ERR_NOMEM, "split: out of memory");
    coll_t g = {.kind = COLL_ALLGATHER, .sbuf = &off, .rbuf = offs, .count = 1, .dt = TPAR_I64,
                .seq = ++parent->seq};
    tpar_status st = shm_exec(parent, &g);
    int64_t mine = st ? -1 : offs[leader];
    free(offs);
    if (st) return tpar_err_set(err, st, "%s", parent->err);
    if (!child) return TPAR_OK;
    if (nmembers == 1) return attach_region(child, -1, NULL, 0, err);
    if (mine < 0)
        return tpar_err_set(err, TPAR_ERR_NOMEM, "split: the shared arena is full (%llu MiB); raise TPAR_SHM_ARENA_MB",
                            (unsigned long long)(ps->arena ? ps->arena->arena_bytes >> 20 : 0));
    return attach_region(child, ps->fd, ps->arena, (uint64_t)mine, err);
}

void shm_free(shm_comm_t *s) {
    if (!s) return;
    /* The last rank to leave a sub-communicator's region gives its pages back to the system. */
    if (atomic_fetch_sub(&s->hdr->refs, 1) == 1 && s->fd >= 0 && !s->fd_owned)
        fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)s->offset, (off_t)s->bytes);
    munmap(s->base, s->bytes);
    if (s->fd_owned) {
        munmap(s->arena, s->arena_map);
        close(s->fd);
    }
    free(s);
}

/* ---- buffers every rank can read (tpar_comm_mem_alloc) -------------------------------------- */

/* Bump-allocated from the arena like communicator regions, a page-aligned block behind a
 * page that records its size. Freeing returns the pages to the system; the address range is
 * not reused, which suits what these are for: long-lived model and gradient buffers. */
typedef struct {
    uint64_t magic, bytes; /* bytes: the whole block, header page included */
} buf_hdr_t;

void *shm_alloc(shm_comm_t *s, size_t bytes) {
    if (!s->arena || bytes > s->arena->arena_bytes) return NULL;
    uint64_t need = round_up(bytes ? bytes : 1, PAGE) + PAGE;
    uint64_t o = atomic_fetch_add(&s->arena->bump, need);
    if (o + need > s->arena->arena_bytes) return NULL;
    buf_hdr_t *h = (buf_hdr_t *)((uint8_t *)s->arena + o);
    h->bytes = need;
    h->magic = BUF_MAGIC;
    return (uint8_t *)h + PAGE; /* fresh arena pages read as zero */
}

/* Where [p, p + bytes) lies in the arena, or -1 if it does not. */
static int64_t arena_offset(const shm_comm_t *s, const void *p, size_t bytes) {
    if (!s->arena || !p) return -1;
    uintptr_t b = (uintptr_t)s->arena, x = (uintptr_t)p;
    size_t total = s->arena->arena_bytes;
    if (x < b + s->arena->header_bytes || x - b > total || bytes > total - (x - b)) return -1;
    return (int64_t)(x - b);
}

int shm_free_mem(shm_comm_t *s, void *p) {
    int64_t o = arena_offset(s, p, 0);
    if (o < (int64_t)PAGE) return 0;
    buf_hdr_t *h = (buf_hdr_t *)((uint8_t *)p - PAGE);
    /* Punching the hole also clears the header, so a second free finds no magic. */
    if (h->magic == BUF_MAGIC && h->bytes <= s->arena->arena_bytes - (uint64_t)(o - PAGE))
        fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(o - PAGE), (off_t)h->bytes);
    return 1;
}

/* ---- collectives ------------------------------------------------------------------------ */

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* memcpy that accepts NULL with nothing to copy (count 0 calls may pass NULL buffers). */
static void copy(void *dst, const void *src, size_t n) {
    if (n) memcpy(dst, src, n);
}

/* How to write n bytes into a staging slot that other cores read next: with cached stores, or
 * with streaming stores that send them to memory. Which is faster depends on where the ranks'
 * cores sit: if they share a cache, readers find cached lines at once; if not, each dirty line
 * must be fetched from the writer's cache and invalidated there again at the next write, which
 * can be slower than a trip through memory (docs/COMM.md has the measurements). */
typedef void (*put_fn)(void *dst, const void *src, size_t n);
static put_fn put_for(const shm_comm_t *s, size_t n) {
    return s->stream_mode == 1 || (s->stream && n >= STREAM_MIN) ? tpar_copy_stream : copy;
}

/* TPAR_SHM_STREAM=auto: a VM's cores can move under it, so the choice is measured all along.
 * Every large call of a kind and size class uses the policy that has been faster so far for
 * that class, and every STREAM_EXPLORE-th tries the other; each rank decides from its own
 * timings (the ranks' counts of calls agree, so they explore together). The policy only
 * changes how bytes are stored, never which or in what order they are reduced. */
static stream_stats_t *stream_choose(shm_comm_t *s, const coll_t *k, size_t bytes) {
    s->stream = s->stream_mode == 1;
    if (s->stream_mode != -1 || bytes < STREAM_MIN || k->kind >= COLL_KIND_END) return NULL;
    int cls = 0;
    while (cls < SIZE_CLASSES - 1 && ((size_t)2 << cls) <= bytes) cls++;
    stream_stats_t *ss = &s->stats[k->kind][cls];
    const double *t = ss->sec_per_byte;
    int best = t[0] == 0.0 ? 0 : t[1] == 0.0 ? 1 : t[1] < t[0];
    s->stream = ++ss->calls % STREAM_EXPLORE == 0 ? !best : best;
    return ss;
}

static void stream_record(shm_comm_t *s, stream_stats_t *ss, size_t bytes, double seconds) {
    double *t = &ss->sec_per_byte[s->stream], x = seconds / (double)bytes;
    *t = *t == 0.0 ? x : 0.75 * *t + 0.25 * x;
}

/* Rank r's share [lo, hi) of m elements, boundaries on cache lines. */
static void share(size_t m, size_t esz, int r, int n, size_t *lo, size_t *hi) {
    size_t unit = CACHELINE / esz, units = (m + unit - 1) / unit;
    *lo = MIN(m, units * (size_t)r / (size_t)n * unit);
    *hi = MIN(m, units * (size_t)(r + 1) / (size_t)n * unit);
}

/* Large, staged: per chunk, stage the other ranks' shares of my vector (they reduce those);
 * reduce my share (my own part read straight from the input) into the output a block at a
 * time, publishing each block from L1 into my slot's other half; then copy the others'
 * reduced shares. Every byte crosses between cores once each way. */
static tpar_status allreduce_staged(tpar_comm_t *c, const coll_t *k, const void **src) {
    shm_comm_t *s = c->shm;
    int n = c->size, me = c->rank;
    size_t esz = tpar_dtype_size(k->dt), per = s->chunk / esz, blk = PUBLISH_BLOCK / esz;
    size_t rounds = (k->count + per - 1) / per;
    for (size_t r = 0; r < rounds; r++) {
        size_t off = r * per, m = MIN(per, k->count - off), lo, hi;
        const uint8_t *cin = (const uint8_t *)k->sbuf + off * esz; // (m,) this chunk of my input
        uint8_t *cout = (uint8_t *)k->rbuf + off * esz;            // (m,) and of my output
        int par = next_parity(s);
        put_fn put = put_for(s, m * esz / (size_t)n); /* my share's size */
        share(m, esz, me, n, &lo, &hi);
        put(slot(s, me, par), cin, lo * esz);
        put(slot(s, me, par) + hi * esz, cin + hi * esz, (m - hi) * esz);
        tpar_status st = step(c, NULL);
        if (st) return st;
        for (size_t b = lo; b < hi; b += blk) {
            size_t e = MIN(hi, b + blk);
            for (int q = 0; q < n; q++) src[q] = (q == me ? cin : slot(s, q, par)) + b * esz;
            tpar_reduce_n(cout + b * esz, src, n, e - b, k->dt, k->op);
            put(slot(s, me, par ^ 1) + b * esz, cout + b * esz, (e - b) * esz);
        }
        if ((st = step(c, NULL))) return st;
        for (int q = 0; q < n; q++) {
            if (q == me) continue;
            share(m, esz, q, n, &lo, &hi);
            copy(cout + lo * esz, slot(s, q, par ^ 1) + lo * esz, (hi - lo) * esz);
        }
    }
    return TPAR_OK;
}

/* Large, every rank's buffers in the arena (tpar_comm_mem_alloc): no staging. Rank r reduces its
 * share straight from everyone's input into its output; step; it copies the other shares
 * from their owners' outputs; a last step keeps every rank in the call until nobody reads
 * its buffers any more. In place is safe: while r writes share r of its buffer, others read
 * only their own shares of it. offs[q] = {input, output} offsets of rank q. */
static tpar_status allreduce_direct(tpar_comm_t *c, const coll_t *k, const void **src, const int64_t (*offs)[2]) {
    shm_comm_t *s = c->shm;
    int n = c->size, me = c->rank;
    const uint8_t *base = (const uint8_t *)s->arena;
    size_t esz = tpar_dtype_size(k->dt), lo, hi;
    s->direct = 1; /* its timings say nothing about staging stores */
    share(k->count, esz, me, n, &lo, &hi);
    for (int q = 0; q < n; q++) src[q] = base + offs[q][0] + lo * esz;
    tpar_reduce_n((uint8_t *)k->rbuf + lo * esz, src, n, hi - lo, k->dt, k->op);
    tpar_status st = step(c, NULL);
    if (st) return st;
    for (int q = 0; q < n; q++) {
        if (q == me) continue;
        share(k->count, esz, q, n, &lo, &hi);
        copy((uint8_t *)k->rbuf + lo * esz, base + offs[q][1] + lo * esz, (hi - lo) * esz);
    }
    return step(c, NULL);
}

static tpar_status allreduce(tpar_comm_t *c, const coll_t *k) {
    shm_comm_t *s = c->shm;
    int n = c->size, me = c->rank;
    size_t esz = tpar_dtype_size(k->dt), total = k->count * esz;
    const void **src = malloc((size_t)n * sizeof *src);
    int64_t (*offs)[2] = malloc((size_t)n * sizeof *offs);
    tpar_status st = TPAR_OK;
    if (!src || !offs) {
        st = comm_fail(c, TPAR_ERR_NOMEM, "allreduce: out of memory");
    } else if (total <= s->oneshot_max && total <= s->chunk) {
        /* One shot: everyone stages its vector, everyone reduces all of them. */
        int par = next_parity(s);
        copy(slot(s, me, par), k->sbuf, total);
        if (!(st = step(c, k))) {
            for (int q = 0; q < n; q++) src[q] = slot(s, q, par);
            tpar_reduce_n(k->rbuf, src, n, k->count, k->dt, k->op);
        }
    } else {
        /* Large: a first step trades the call's description and where each rank's buffers lie
         * in the arena; direct if all of them do, staged otherwise. */
        int par = next_parity(s), direct = 1;
        s->ctrl[me].buf[par][0] = arena_offset(s, k->sbuf, total);
        s->ctrl[me].buf[par][1] = arena_offset(s, k->rbuf, total);
        if (!(st = step(c, k))) {
            for (int q = 0; q < n; q++) {
                offs[q][0] = s->ctrl[q].buf[par][0];
                offs[q][1] = s->ctrl[q].buf[par][1];
                direct &= offs[q][0] >= 0 && offs[q][1] >= 0;
            }
            st = direct ? allreduce_direct(c, k, src, (const int64_t(*)[2])offs) : allreduce_staged(c, k, src);
        }
    }
    free(src);
    free(offs);
    return st;
}

/* allgather and allgatherv: byte windows of every rank's block, one step per window. */
static tpar_status allgatherv(tpar_comm_t *c, const coll_t *k, const size_t *counts, const size_t *displs) {
    shm_comm_t *s = c->shm;
    int n = c->size, me = c->rank;
    size_t esz = tpar_dtype_size(k->dt), maxb = 0;
    for (int q = 0; q < n; q++) maxb = counts[q] * esz > maxb ? counts[q] * esz : maxb;
    size_t rounds = maxb ? (maxb + s->chunk - 1) / s->chunk : 1;
    const uint8_t *in = k->in_place ? (const uint8_t *)k->rbuf + displs[me] * esz : k->sbuf;
    uint8_t *out = k->rbuf;
    for (size_t r = 0; r < rounds; r++) {
        size_t off = r * s->chunk;
        int par = next_parity(s);
        size_t mine = counts[me] * esz;
        if (off < mine) put_for(s, mine)(slot(s, me, par), in + off, MIN(s->chunk, mine - off));
        tpar_status st = step(c, r == 0 ? k : NULL);
        if (st) return st;
        for (int q = 0; q < n; q++) {
            size_t b = counts[q] * esz;
            if (q == me && k->in_place) continue;
            if (off < b) copy(out + displs[q] * esz + off, slot(s, q, par), MIN(s->chunk, b - off));
        }
    }
    return TPAR_OK;
}

/* reduce_scatter(v) and alltoall: each step moves one window of every block; block q's
 * window sits at q * w in the slot. */
static tpar_status blockwise(tpar_comm_t *c, const coll_t *k, const size_t *counts, int reduce) {
    shm_comm_t *s = c->shm;
    int n = c->size, me = c->rank;
    size_t esz = tpar_dtype_size(k->dt);
    size_t w = s->chunk / (size_t)n / CACHELINE * CACHELINE / esz; /* elements per block window */
    size_t maxc = 0;
    size_t *start = malloc((size_t)n * sizeof *start);
    const void **src = malloc((size_t)n * sizeof *src);
    if (!start || !src) {
        free(start);
        free(src);
        return comm_fail(c, TPAR_ERR_NOMEM, "%s: out of memory", coll_name(k->kind));
    }
    size_t acc = 0;
    for (int q = 0; q < n; q++) {
        start[q] = acc;
        acc += counts[q];
        maxc = counts[q] > maxc ? counts[q] : maxc;
    }
    size_t rounds = maxc ? (maxc + w - 1) / w : 1;
    const uint8_t *in = k->sbuf;
    uint8_t *out = k->rbuf;
    tpar_status st = TPAR_OK;
    put_fn put = put_for(s, maxc * esz);
    for (size_t r = 0; r < rounds && !st; r++) {
        size_t off = r * w;
        int par = next_parity(s);
        uint8_t *mine = slot(s, me, par);
        for (int q = 0; q < n; q++)
            if (off < counts[q])
                put(mine + (size_t)q * w * esz, in + (start[q] + off) * esz, MIN(w, counts[q] - off) * esz);
        if ((st = step(c, r == 0 ? k : NULL))) break;
        if (reduce) {
            if (off >= counts[me]) continue;
            for (int q = 0; q < n; q++) src[q] = slot(s, q, par) + (size_t)me * w * esz;
            tpar_reduce_n(out + off * esz, src, n, MIN(w, counts[me] - off), k->dt, k->op);
        } else {
            if (off >= k->count) continue;
            for (int q = 0; q < n; q++)
                copy(out + ((size_t)q * k->count + off) * esz, slot(s, q, par) + (size_t)me * w * esz,
                       MIN(w, k->count - off) * esz);
        }
    }
    free(start);
    free(src);
    return st;
}

static tpar_status broadcast(tpar_comm_t *c, const coll_t *k) {
    shm_comm_t *s = c->shm;
    size_t total = k->count * tpar_dtype_size(k->dt);
    size_t rounds = total ? (total + s->chunk - 1) / s->chunk : 1;
    uint8_t *buf = k->rbuf;
    for (size_t r = 0; r < rounds; r++) {
        size_t off = r * s->chunk, m = total ? MIN(s->chunk, total - off) : 0;
        int par = next_parity(s);
        if (c->rank == k->root) put_for(s, total)(slot(s, k->root, par), buf + off, m);
        tpar_status st = step(c, r == 0 ? k : NULL);
        if (st) return st;
        if (c->rank != k->root) copy(buf + off, slot(s, k->root, par), m);
    }
    return TPAR_OK;
}

/* ---- point to point: one byte ring per ordered pair ---------------------------------------- */

typedef struct {
    int src, dst;
    uint64_t need; /* sender: ring must have room up to this many written bytes; receiver: data up to */
    int sender;
} chan_wait_t;

static int chan_ready(const shm_comm_t *s, const void *arg) {
    const chan_wait_t *w = arg;
    const chan_t *ch = &s->chan[(size_t)w->src * s->n + w->dst];
    if (w->sender)
        return atomic_load_explicit(&ch->read, memory_order_acquire) + CHAN_BYTES >= w->need ? -1 : w->dst;
    return atomic_load_explicit(&ch->written, memory_order_acquire) >= w->need ? -1 : w->src;
}

static uint8_t *ring(const shm_comm_t *s, int src, int dst) {
    return s->chandata + ((size_t)src * s->n + dst) * CHAN_BYTES;
}

static tpar_status chan_send(tpar_comm_t *c, int dst, const void *data, size_t len) {
    shm_comm_t *s = c->shm;
    chan_t *ch = &s->chan[(size_t)c->rank * c->size + dst];
    uint8_t *rb = ring(s, c->rank, dst);
    const uint8_t *p = data;
    uint64_t wr = atomic_load(&ch->written);
    while (len) {
        chan_wait_t w = {c->rank, dst, wr + 1, 1};
        tpar_status st = shm_wait(c, chan_ready, &w);
        if (st) return st;
        size_t room = CHAN_BYTES - (size_t)(wr - atomic_load(&ch->read));
        size_t pos = (size_t)(wr % CHAN_BYTES), m = MIN(len, MIN(room, CHAN_BYTES - pos));
        copy(rb + pos, p, m);
        p += m;
        len -= m;
        wr += m;
        atomic_store_explicit(&ch->written, wr, memory_order_release);
        publish_wake(s);
    }
    return TPAR_OK;
}

static tpar_status chan_recv(tpar_comm_t *c, int src, void *data, size_t len) {
    shm_comm_t *s = c->shm;
    chan_t *ch = &s->chan[(size_t)src * c->size + c->rank];
    uint8_t *rb = ring(s, src, c->rank);
    uint8_t *p = data;
    uint64_t rd = atomic_load(&ch->read);
    while (len) {
        chan_wait_t w = {src, c->rank, rd + 1, 0};
        tpar_status st = shm_wait(c, chan_ready, &w);
        if (st) return st;
        size_t avail = (size_t)(atomic_load_explicit(&ch->written, memory_order_acquire) - rd);
        size_t pos = (size_t)(rd % CHAN_BYTES), m = MIN(len, MIN(avail, CHAN_BYTES - pos));
        copy(p, rb + pos, m);
        p += m;
        len -= m;
        rd += m;
        atomic_store_explicit(&ch->read, rd, memory_order_release);
        publish_wake(s);
    }
    return TPAR_OK;
}

static tpar_status p2p(tpar_comm_t *c, const coll_t *k) {
    size_t bytes = k->count * tpar_dtype_size(k->dt);
    if (k->kind == COLL_SEND) {
        msg_hdr_t h = {k->tag, (int32_t)k->dt, bytes};
        tpar_status st = chan_send(c, k->peer, &h, sizeof h);
        return st ? st : chan_send(c, k->peer, k->sbuf, bytes);
    }
    msg_hdr_t h;
    tpar_status st = chan_recv(c, k->peer, &h, sizeof h);
    if (st) return st;
    if (h.tag != k->tag || h.dt != (int32_t)k->dt || h.bytes != bytes)
        /* The stream is now out of step with the sender: poison rather than guess. */
        return comm_fail(c, TPAR_ERR_MISMATCH,
                         "recv from rank %d: expected tag %d, %zu x %s, but the next message from that rank "
                         "has tag %d, %llu bytes of %s (messages from one rank are received in the order "
                         "sent)",
                         k->peer, k->tag, k->count, tpar_dtype_name(k->dt), h.tag, (unsigned long long)h.bytes,
                         tpar_dtype_name((tpar_dtype)h.dt));
    return chan_recv(c, k->peer, k->rbuf, bytes);
}

tpar_status shm_exec(tpar_comm_t *c, const coll_t *k) {
    shm_comm_t *s = c->shm;
    s->cur = k;
    tpar_status st;
    size_t n = (size_t)c->size, bytes = k->count * tpar_dtype_size(k->dt);
    int staged = k->kind != COLL_BARRIER && k->kind != COLL_SEND && k->kind != COLL_RECV;
    stream_stats_t *ss = staged ? stream_choose(s, k, bytes) : NULL;
    double t0 = ss ? tpar_now() : 0.0;
    s->direct = 0;
    switch (k->kind) {
    case COLL_ALLREDUCE: st = allreduce(c, k); break;
    case COLL_ALLGATHER: {
        size_t *cd = malloc(2 * n * sizeof *cd);
        if (!cd) return comm_fail(c, TPAR_ERR_NOMEM, "allgather: out of memory");
        for (size_t q = 0; q < n; q++) {
            cd[q] = k->count;
            cd[n + q] = q * k->count;
        }
        st = allgatherv(c, k, cd, cd + n);
        free(cd);
        break;
    }
    case COLL_ALLGATHERV: st = allgatherv(c, k, k->counts, k->displs); break;
    case COLL_REDUCE_SCATTER:
    case COLL_ALLTOALL: {
        size_t *cd = malloc(n * sizeof *cd);
        if (!cd) return comm_fail(c, TPAR_ERR_NOMEM, "%s: out of memory", coll_name(k->kind));
        for (size_t q = 0; q < n; q++) cd[q] = k->count;
        st = blockwise(c, k, cd, k->kind == COLL_REDUCE_SCATTER);
        free(cd);
        break;
    }
    case COLL_REDUCE_SCATTERV: st = blockwise(c, k, k->counts, 1); break;
    case COLL_BROADCAST: st = broadcast(c, k); break;
    case COLL_BARRIER: st = step(c, k); break;
    case COLL_SEND:
    case COLL_RECV: st = p2p(c, k); break;
    default: st = comm_fail(c, TPAR_ERR_INTERNAL, "shm: unknown call %d", (int)k->kind);
    }
    if (ss && !st && !s->direct) stream_record(s, ss, bytes, tpar_now() - t0);
    s->cur = NULL;
    return st;
}

/* ---- the table ---------------------------------------------------------------------------- */

tpar_status shm_split_op(tpar_comm_t *parent, tpar_comm_t *child, const comm_split_t *sp, tpar_err_t *err) {
    return shm_split(parent, child, sp->leader, sp->nmembers, err);
}

static void shm_free_op(tpar_comm_t *c) {
    shm_free(c->shm);
    c->shm = NULL;
}

void *shm_mem_alloc_op(tpar_comm_t *c, size_t bytes) { return c->shm ? shm_alloc(c->shm, bytes) : NULL; }
int shm_mem_free_op(tpar_comm_t *c, void *p) { return c->shm && shm_free_mem(c->shm, p); }

const comm_backend_ops_t comm_shm_ops = {"shm",       shm_world_init,   shm_split_op,   shm_exec,
                                         shm_free_op, shm_mem_alloc_op, shm_mem_free_op};
