/* Fault injection (TPAR_FAULT) and the progress board (TPAR_FAULT_BOARD_FD); see fault.h and
 * docs/FAULTS.md.
 *
 * The rank side keeps one process-wide state: the parsed TPAR_FAULT, this rank's board slot and
 * the count of communication calls. It is process-wide on purpose (the fault belongs to the
 * process, whatever communicators it makes) and read-only after the first use, except the call
 * counter, which is atomic. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tpar/fault.h"

typedef enum { K_KILL = 0, K_ABORT, K_EXIT, K_STOP, K_STALL, K_SPIN, K_NAN, K_COUNT } kind_t;
static const char *const kind_names[K_COUNT] = {"kill", "abort", "exit", "stop", "stall", "spin", "nan"};
static const char *const site_names[3] = {"step", "save", "coll"};

typedef struct {
    int rank;
    tpar_fault_site site;
    long long n;
    kind_t kind;
    long long attempt; /* -1: all */
} fault_t;

/* Parses TPAR_FAULT; *on = 0 when unset or empty. */
static tpar_status parse_fault(const char *s, fault_t *f, int *on, tpar_err_t *err) {
    *on = 0;
    if (!s || !*s) return TPAR_OK;
    *f = (fault_t){.rank = -1, .n = -1, .kind = K_COUNT, .attempt = 0};
    char buf[256];
    if (strlen(s) >= sizeof buf) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "TPAR_FAULT is too long");
    strcpy(buf, s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) goto bad;
        *eq = 0;
        const char *key = tok, *val = eq + 1;
        long long v;
        int site = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(key, site_names[i])) site = i;
        if (!strcmp(key, "rank")) {
            if (tpar_parse_int(val, 0, 1 << 20, &v)) goto bad;
            f->rank = (int)v;
        } else if (site >= 0) {
            if (tpar_parse_int(val, site == TPAR_FAULT_AT_COLL ? 1 : 0, 1000000000000LL, &v) || f->n >= 0) goto bad;
            f->site = (tpar_fault_site)site;
            f->n = v;
        } else if (!strcmp(key, "kind")) {
            int k = 0;
            while (k < K_COUNT && strcmp(val, kind_names[k])) k++;
            if (k == K_COUNT) goto bad;
            f->kind = (kind_t)k;
        } else if (!strcmp(key, "attempt")) {
            if (!strcmp(val, "all")) f->attempt = -1;
            else if (tpar_parse_int(val, 0, 1 << 20, &v)) goto bad;
            else f->attempt = v;
        } else {
            goto bad;
        }
    }
    if (f->rank < 0 || f->n < 0 || f->kind == K_COUNT) goto bad;
    if (f->kind == K_NAN && f->site != TPAR_FAULT_AT_STEP) goto bad; /* a NaN goes into a step's gradients */
    *on = 1;
    return TPAR_OK;
bad:
    return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                        "TPAR_FAULT='%s': expected rank=R,(step=S|save=S|coll=N),kind=(kill|abort|exit|stop|stall|"
                        "spin|nan)[,attempt=A|all], kind=nan with step=S only (see docs/FAULTS.md)",
                        s);
}

tpar_status tpar_fault_check_env(tpar_err_t *err) {
    fault_t f;
    int on;
    return parse_fault(getenv("TPAR_FAULT"), &f, &on, err);
}

/* ---- the board --------------------------------------------------------------------------- */

#define BOARD_MAGIC 0x54504642u /* "TPFB" */

typedef struct {
    uint32_t magic;
    int32_t world_size;
    int64_t pad;
    tpar_fault_slot_t slots[];
} board_mem_t;

struct tpar_fault_board {
    int fd;
    size_t bytes;
    board_mem_t *mem;
};

static size_t board_bytes(int world) { return sizeof(board_mem_t) + (size_t)world * sizeof(tpar_fault_slot_t); }

tpar_status tpar_fault_board_create(int world_size, tpar_fault_board_t **out, tpar_err_t *err) {
    *out = NULL;
    if (world_size < 1) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "fault board: world size %d", world_size);
    tpar_fault_board_t *b = calloc(1, sizeof *b);
    if (!b) return tpar_err_set(err, TPAR_ERR_NOMEM, "fault board: out of memory");
    b->bytes = board_bytes(world_size);
    b->fd = memfd_create("tpar-fault-board", 0); /* inherited by the ranks through exec */
    if (b->fd < 0 || ftruncate(b->fd, (off_t)b->bytes) != 0 ||
        (b->mem = mmap(NULL, b->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0)) == MAP_FAILED) {
        int e = errno;
        if (b->fd >= 0) close(b->fd);
        free(b);
        return tpar_err_set(err, TPAR_ERR_SYS, "fault board: memfd/mmap: %s", strerror(e));
    }
    b->mem->world_size = world_size;
    b->mem->magic = BOARD_MAGIC;
    tpar_fault_board_clear(b);
    *out = b;
    return TPAR_OK;
}

int tpar_fault_board_fd(const tpar_fault_board_t *b) { return b ? b->fd : -1; }

void tpar_fault_board_clear(tpar_fault_board_t *b) {
    for (int r = 0; r < b->mem->world_size; r++)
        b->mem->slots[r] = (tpar_fault_slot_t){.step = -1, .first_step = -1};
}

void tpar_fault_board_read(const tpar_fault_board_t *b, int rank, tpar_fault_slot_t *out) {
    *out = (tpar_fault_slot_t){.step = -1, .first_step = -1};
    if (!b || rank < 0 || rank >= b->mem->world_size) return;
    *out = b->mem->slots[rank];
    out->coll[sizeof out->coll - 1] = 0; /* a rank killed mid-copy leaves no unterminated string */
    out->error[sizeof out->error - 1] = 0;
}

void tpar_fault_board_free(tpar_fault_board_t *b) {
    if (!b) return;
    munmap(b->mem, b->bytes);
    close(b->fd);
    free(b);
}

/* ---- the rank side --------------------------------------------------------------------------- */

static struct {
    pthread_once_t once;
    int on;             /* a fault is set for this rank and attempt */
    fault_t f;
    tpar_fault_slot_t *slot; /* this rank's board slot, or NULL */
    atomic_llong calls;
} g = {.once = PTHREAD_ONCE_INIT};

static long long env_ll(const char *name, long long def) {
    long long v;
    const char *s = getenv(name);
    return s && tpar_parse_int(s, 0, 1LL << 40, &v) == TPAR_OK ? v : def;
}

static void rank_init(void) {
    int rank = (int)env_ll("TPAR_RANK", env_ll("OMPI_COMM_WORLD_RANK", env_ll("PMI_RANK", 0)));
    long long attempt = env_ll("TPAR_RESTART_COUNT", 0);
    int on = 0;
    if (parse_fault(getenv("TPAR_FAULT"), &g.f, &on, NULL) == TPAR_OK && on)
        g.on = g.f.rank == rank && (g.f.attempt < 0 || g.f.attempt == attempt);
    long long fd = env_ll("TPAR_FAULT_BOARD_FD", -1);
    if (fd < 0) return;
    /* Map the header first to learn the size; a wrong fd just leaves the board off. */
    board_mem_t *h = mmap(NULL, sizeof *h, PROT_READ, MAP_SHARED, (int)fd, 0);
    if (h == MAP_FAILED) return;
    int ok = h->magic == BOARD_MAGIC && rank < h->world_size;
    size_t bytes = ok ? board_bytes(h->world_size) : 0;
    munmap(h, sizeof *h);
    if (!ok) return;
    board_mem_t *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    if (m != MAP_FAILED) g.slot = &m->slots[rank]; /* mapped for the life of the process */
}

static void fire(void) {
    switch (g.f.kind) {
    case K_KILL: raise(SIGKILL); break;
    case K_ABORT: abort();
    case K_EXIT: _exit(TPAR_FAULT_EXIT_CODE);
    case K_STOP: raise(SIGSTOP); return; /* resumed by SIGCONT: carry on */
    case K_STALL:
        for (;;) {
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
    case K_SPIN:
        for (volatile unsigned long i = 0;; i++) {
        }
    case K_NAN: return; /* not an action on the process: the trainer asks tpar_fault_nan */
    default: break;
    }
}

void tpar_fault_point(tpar_fault_site site, long long n) {
    pthread_once(&g.once, rank_init);
    if (g.slot && site != TPAR_FAULT_AT_COLL) {
        if (site == TPAR_FAULT_AT_STEP && g.slot->first_step < 0) g.slot->first_step = n;
        g.slot->step = n;
        g.slot->saving = site == TPAR_FAULT_AT_SAVE;
    }
    if (g.on && g.f.site == site && g.f.n == n) fire();
}

int tpar_fault_nan(long long step) {
    pthread_once(&g.once, rank_init);
    return g.on && g.f.kind == K_NAN && g.f.site == TPAR_FAULT_AT_STEP && g.f.n == step;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

void tpar_fault_coll(const char *name, unsigned long long seq, size_t count, const char *dtype, int comm_size) {
    pthread_once(&g.once, rank_init);
    long long n = atomic_fetch_add(&g.calls, 1) + 1;
    if (g.slot)
        snprintf(g.slot->coll, sizeof g.slot->coll, "%s #%llu (%zu x %s) on a %d-rank communicator, call %lld of this rank",
                 name, seq, count, dtype, comm_size, n);
    if (g.on && g.f.site == TPAR_FAULT_AT_COLL && g.f.n == n) fire();
}

void tpar_fault_note_error(const char *msg) {
    pthread_once(&g.once, rank_init);
    if (g.slot && msg) copy_str(g.slot->error, sizeof g.slot->error, msg);
}
