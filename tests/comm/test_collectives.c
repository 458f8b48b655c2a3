/* Every collective, dtype and op, counts 0, 1, 7, 1001 (not divisible by 2, 3, 4 or 8) and
 * 16 MiB, in place and out of place, against a serial reference each rank computes itself.
 * Results must also be bit-identical on every rank (hash compared through allgather).
 *
 * The 16 MiB cases cover one dtype per collective (f32; bf16 too for allreduce): the
 * chunked paths they exercise do not depend on the dtype, which the small counts already
 * cover for every dtype and op, and more would make the 8-rank run crawl on 2 cores.
 * All-reduce also runs on buffers from tpar_comm_mem_alloc, on every rank (the direct path
 * above the one-shot size) and on rank 0 only (all ranks must then stage), at the small
 * counts and at 100003 elements.
 * Run with TPAR_SHM_CHUNK=4096 the same program drives every multi-round path at small
 * counts (registered as test_collectives_chunk4k, with --small-only). The 16 MiB inputs
 * repeat with a prime period (elem_period in comm_test.h) so that eight ranks can afford
 * the reference. */
#include <malloc.h>

#include "comm_test.h"

static tpar_comm_t *C;
static int R, N, EXACT;
static int *ALL; /* 0 .. N-1 */
static const tpar_dtype DTS[] = {TPAR_F32, TPAR_BF16, TPAR_I32, TPAR_I64, TPAR_F64};
static const tpar_op OPS[] = {TPAR_SUM, TPAR_MAX, TPAR_MIN};
#define BIG_BYTES (16u << 20)

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    memset(p, 0xA5, bytes); /* junk that a missing write would leave behind */
    return p;
}

/* All ranks hold the same bytes? */
static void check_same_everywhere(const char *what, const void *buf, size_t bytes) {
    int64_t h = (int64_t)hash_bytes(buf, bytes);
    int64_t *all = xmalloc((size_t)N * sizeof *all);
    MUST(C, tpar_comm_allgather(C, &h, all, 1, TPAR_I64));
    int same = 1;
    for (int q = 0; q < N; q++) same &= all[q] == all[0];
    char msg[200];
    snprintf(msg, sizeof msg, "%.150s: result bit-identical on all %d ranks", what, N); /* %.150s: fits whatever what is */
    check_record_(same, __FILE__, __LINE__, msg);
    free(all);
}

/* Buffers for t_allreduce: malloc (staged path), tpar_comm_mem_alloc on every rank (direct
 * path for large counts), or on rank 0 only (every rank must then agree on staging). */
enum { MEM_HEAP, MEM_SHARED, MEM_MIXED };
static const char *MEM_NAME[] = {"", " shared buffers", " shared buffers on rank 0 only"};

static void *mem_alloc(int mem, size_t bytes) {
    if (mem == MEM_HEAP || (mem == MEM_MIXED && R != 0)) return xmalloc(bytes);
    void *p = tpar_comm_mem_alloc(C, bytes);
    if (!p) {
        fprintf(stderr, "tpar_comm_mem_alloc(%zu) failed\n", bytes);
        exit(1);
    }
    memset(p, 0xA5, bytes);
    return p;
}

static void mem_free(int mem, void *p) {
    if (mem == MEM_HEAP || (mem == MEM_MIXED && R != 0)) free(p);
    else tpar_comm_mem_free(C, p);
}

static void t_allreduce_mem(tpar_dtype dt, tpar_op op, size_t count, int inplace, int mem, uint64_t salt) {
    size_t e = tpar_dtype_size(dt);
    void *in = mem_alloc(mem, count * e), *out = mem_alloc(mem, count * e);
    void *ref = xmalloc(count * e), *keep = xmalloc(count * e);
    fill(dt, R, 0, count, in, salt);
    memcpy(keep, in, count * e);
    reference(dt, op, ALL, N, 0, count, ref, salt);
    if (inplace) {
        memcpy(out, in, count * e);
        MUST(C, tpar_comm_allreduce(C, TPAR_IN_PLACE, out, count, dt, op));
    } else {
        MUST(C, tpar_comm_allreduce(C, in, out, count, dt, op));
        CHECK(memcmp(in, keep, count * e) == 0); /* the send buffer is left alone */
    }
    char what[160];
    snprintf(what, sizeof what, "allreduce %s %s count %zu%s%s", tpar_dtype_name(dt), tpar_op_name(op), count,
             inplace ? " in place" : "", MEM_NAME[mem]);
    CHECK_VALS(what, dt, op, N, ref, out, count, EXACT);
    check_same_everywhere(what, out, count * e);
    mem_free(mem, in);
    mem_free(mem, out);
    free(ref);
    free(keep);
}

static void t_allreduce(tpar_dtype dt, tpar_op op, size_t count, int inplace, uint64_t salt) {
    t_allreduce_mem(dt, op, count, inplace, MEM_HEAP, salt);
}

static void t_allgather(tpar_dtype dt, size_t count, int inplace, uint64_t salt) {
    size_t e = tpar_dtype_size(dt), tot = count * (size_t)N;
    void *in = xmalloc(count * e), *out = xmalloc(tot * e), *ref = xmalloc(tot * e);
    fill(dt, R, 0, count, in, salt);
    for (int q = 0; q < N; q++) fill(dt, q, 0, count, (char *)ref + (size_t)q * count * e, salt);
    if (inplace) {
        memcpy((char *)out + (size_t)R * count * e, in, count * e);
        MUST(C, tpar_comm_allgather(C, TPAR_IN_PLACE, out, count, dt));
    } else {
        MUST(C, tpar_comm_allgather(C, in, out, count, dt));
    }
    char what[128];
    snprintf(what, sizeof what, "allgather %s count %zu%s", tpar_dtype_name(dt), count, inplace ? " in place" : "");
    CHECK_VALS(what, dt, TPAR_MAX, N, ref, out, tot, 1);
    free(in);
    free(out);
    free(ref);
}

/* Blocks of count + q % 3 elements, placed in reverse rank order with a one-element gap that
 * must stay untouched. */
static void t_allgatherv(tpar_dtype dt, size_t count, int inplace, uint64_t salt) {
    size_t e = tpar_dtype_size(dt);
    size_t *counts = xmalloc((size_t)N * sizeof *counts), *displs = xmalloc((size_t)N * sizeof *displs);
    size_t pos = 0;
    for (int q = N - 1; q >= 0; q--) {
        counts[q] = count + (size_t)(q % 3);
        displs[q] = pos;
        pos += counts[q] + 1;
    }
    void *in = xmalloc(counts[R] * e), *out = xmalloc(pos * e), *ref = xmalloc(pos * e);
    memset(out, 0x5A, pos * e);
    memset(ref, 0x5A, pos * e);
    fill(dt, R, 0, counts[R], in, salt);
    for (int q = 0; q < N; q++) fill(dt, q, 0, counts[q], (char *)ref + displs[q] * e, salt);
    if (inplace) {
        memcpy((char *)out + displs[R] * e, in, counts[R] * e);
        MUST(C, tpar_comm_allgatherv(C, TPAR_IN_PLACE, counts[R], out, counts, displs, dt));
    } else {
        MUST(C, tpar_comm_allgatherv(C, in, counts[R], out, counts, displs, dt));
    }
    char what[128];
    snprintf(what, sizeof what, "allgatherv %s count %zu+%s", tpar_dtype_name(dt), count, inplace ? " in place" : "");
    CHECK_VALS(what, dt, TPAR_MAX, N, ref, out, pos, 1);
    free(in);
    free(out);
    free(ref);
    free(counts);
    free(displs);
}

/* v: blocks of count + q % 2 elements (equal blocks otherwise). */
static void t_reduce_scatter(tpar_dtype dt, tpar_op op, size_t count, int inplace, int v, uint64_t salt) {
    size_t e = tpar_dtype_size(dt);
    size_t *counts = xmalloc((size_t)N * sizeof *counts), tot = 0, start = 0;
    for (int q = 0; q < N; q++) {
        counts[q] = count + (v ? (size_t)(q % 2) : 0);
        if (q < R) start += counts[q];
        tot += counts[q];
    }
    void *in = xmalloc(tot * e), *out = xmalloc(tot * e), *ref = xmalloc(counts[R] * e);
    fill(dt, R, 0, tot, in, salt);
    reference(dt, op, ALL, N, start, counts[R], ref, salt);
    const void *sb = in;
    if (inplace) {
        memcpy(out, in, tot * e);
        sb = TPAR_IN_PLACE;
    }
    if (v) MUST(C, tpar_comm_reduce_scatterv(C, sb, out, counts, dt, op));
    else MUST(C, tpar_comm_reduce_scatter(C, sb, out, count, dt, op));
    char what[128];
    snprintf(what, sizeof what, "reduce_scatter%s %s %s count %zu%s", v ? "v" : "", tpar_dtype_name(dt),
             tpar_op_name(op), count, inplace ? " in place" : "");
    CHECK_VALS(what, dt, op, N, ref, out, counts[R], EXACT);
    free(in);
    free(out);
    free(ref);
    free(counts);
}

static void t_broadcast(tpar_dtype dt, size_t count, int root, uint64_t salt) {
    size_t e = tpar_dtype_size(dt);
    void *buf = xmalloc(count * e), *ref = xmalloc(count * e);
    fill(dt, root, 0, count, ref, salt);
    if (R == root) memcpy(buf, ref, count * e);
    MUST(C, tpar_comm_broadcast(C, buf, count, dt, root));
    char what[128];
    snprintf(what, sizeof what, "broadcast %s count %zu root %d", tpar_dtype_name(dt), count, root);
    CHECK_VALS(what, dt, TPAR_MAX, N, ref, buf, count, 1);
    free(buf);
    free(ref);
}

/* Block q of rank r's input is its elements [q*count, (q+1)*count); so block s of the output
 * is rank s's elements [r*count, (r+1)*count). */
static void t_alltoall(tpar_dtype dt, size_t count, int inplace, uint64_t salt) {
    size_t e = tpar_dtype_size(dt), tot = count * (size_t)N;
    void *in = xmalloc(tot * e), *out = xmalloc(tot * e), *ref = xmalloc(tot * e);
    fill(dt, R, 0, tot, in, salt);
    for (int s = 0; s < N; s++) fill(dt, s, (size_t)R * count, count, (char *)ref + (size_t)s * count * e, salt);
    if (inplace) {
        memcpy(out, in, tot * e);
        MUST(C, tpar_comm_alltoall(C, TPAR_IN_PLACE, out, count, dt));
    } else {
        MUST(C, tpar_comm_alltoall(C, in, out, count, dt));
    }
    char what[128];
    snprintf(what, sizeof what, "alltoall %s count %zu%s", tpar_dtype_name(dt), count, inplace ? " in place" : "");
    CHECK_VALS(what, dt, TPAR_MAX, N, ref, out, tot, 1);
    free(in);
    free(out);
    free(ref);
}

/* A ring: even ranks send then receive, odd ones the other way round, so messages larger than
 * a channel's buffer cannot deadlock. */
static void t_sendrecv(tpar_dtype dt, size_t count, uint64_t salt) {
    if (N == 1) return;
    size_t e = tpar_dtype_size(dt);
    int to = (R + 1) % N, from = (R + N - 1) % N;
    void *in = xmalloc(count * e), *out = xmalloc(count * e), *ref = xmalloc(count * e);
    fill(dt, R, 0, count, in, salt);
    fill(dt, from, 0, count, ref, salt);
    for (int phase = 0; phase < 2; phase++) {
        if ((R % 2 == 0) == (phase == 0)) MUST(C, tpar_comm_send(C, in, count, dt, to, 7));
        else MUST(C, tpar_comm_recv(C, out, count, dt, from, 7));
    }
    char what[128];
    snprintf(what, sizeof what, "send/recv %s count %zu", tpar_dtype_name(dt), count);
    CHECK_VALS(what, dt, TPAR_MAX, N, ref, out, count, 1);
    free(in);
    free(out);
    free(ref);
}

/* Bus bytes (what `tpar plan` predicts): a ring's traffic out of each rank, per kind,
 * worked out here from the definition in comm.h for 1000 floats at N ranks. */
static void t_bus_bytes(void) {
    enum { K = 1000 };
    float *a = calloc((size_t)K * N, sizeof *a), *b = calloc((size_t)K * N, sizeof *b);
    size_t counts[64], displs[64];
    CHECK(a && b && N <= 64);
    if (!a || !b || N > 64) goto out;
    for (int i = 0; i < N; i++) counts[i] = (size_t)(i + 1), displs[i] = (size_t)(i * (i + 1) / 2);
    uint64_t n = (uint64_t)N, whole = (uint64_t)K * sizeof(float), vsum = n * (n + 1) / 2 * sizeof(float);
    struct {
        const char *what;
        uint64_t expect;
    } cases[] = {
        {"allreduce", 2 * (n - 1) * whole / n}, {"allgather", (n - 1) * whole},
        {"reduce_scatter", (n - 1) * whole},    {"allgatherv", (n - 1) * vsum / n},
        {"reduce_scatterv", (n - 1) * vsum / n}, {"broadcast", N > 1 ? whole : 0},
        {"barrier", 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tpar_comm_stats_t s0, s1;
        tpar_comm_stats(C, &s0);
        switch (c) {
        case 0: MUST(C, tpar_comm_allreduce(C, a, b, K, TPAR_F32, TPAR_SUM)); break;
        case 1: MUST(C, tpar_comm_allgather(C, a, b, K, TPAR_F32)); break;
        case 2: MUST(C, tpar_comm_reduce_scatter(C, a, b, K, TPAR_F32, TPAR_SUM)); break;
        case 3: MUST(C, tpar_comm_allgatherv(C, a, counts[R], b, counts, displs, TPAR_F32)); break;
        case 4: MUST(C, tpar_comm_reduce_scatterv(C, a, b, counts, TPAR_F32, TPAR_SUM)); break;
        case 5: MUST(C, tpar_comm_broadcast(C, a, K, TPAR_F32, 0)); break;
        default: MUST(C, tpar_comm_barrier(C)); break;
        }
        tpar_comm_stats(C, &s1);
        long long got = (long long)(s1.bus_bytes - s0.bus_bytes);
        if (!CHECK(got == (long long)cases[c].expect))
            fprintf(stderr, "bus bytes of %s at %d ranks: expected %llu, got %lld\n", cases[c].what, N,
                    (unsigned long long)cases[c].expect, got);
    }
out:
    free(a);
    free(b);
}

int main(int argc, char **argv) {
    int small_only = argc > 1 && !strcmp(argv[1], "--small-only");
    /* Keep freed buffers in the heap: page faults dominate 16 MiB tests on small VMs. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    C = test_init();
    R = tpar_comm_rank(C);
    N = tpar_comm_size(C);
    EXACT = exact_order(C);
    ALL = xmalloc((size_t)N * sizeof *ALL);
    for (int q = 0; q < N; q++) ALL[q] = q;
    /* tpar_comm_mem_alloc: zeroed and aligned, from the arena or (one rank, MPI) the heap. */
    unsigned char *z = tpar_comm_mem_alloc(C, 12345);
    CHECK(z && ((uintptr_t)z & 63) == 0);
    size_t nonzero = 0;
    for (size_t i = 0; z && i < 12345; i++) nonzero += z[i] != 0;
    CHECK_EQ_INT(0, nonzero);
    tpar_comm_mem_free(C, z);
    tpar_comm_mem_free(C, NULL);
    static const size_t counts[] = {0, 1, 7, 1001};
    uint64_t salt = 1;
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        size_t n = counts[ci];
        for (size_t d = 0; d < sizeof DTS / sizeof DTS[0]; d++) {
            for (int ip = 0; ip < 2; ip++) {
                for (size_t o = 0; o < sizeof OPS / sizeof OPS[0]; o++) {
                    for (int mem = MEM_HEAP; mem <= MEM_MIXED; mem++) t_allreduce_mem(DTS[d], OPS[o], n, ip, mem, salt++);
                    t_reduce_scatter(DTS[d], OPS[o], n, ip, 0, salt++);
                    t_reduce_scatter(DTS[d], OPS[o], n, ip, 1, salt++);
                }
                t_allgather(DTS[d], n, ip, salt++);
                t_allgatherv(DTS[d], n, ip, salt++);
                t_alltoall(DTS[d], n, ip, salt++);
            }
            t_broadcast(DTS[d], n, 0, salt++);
            t_broadcast(DTS[d], n, N - 1, salt++);
            t_sendrecv(DTS[d], n, salt++);
        }
        MUST(C, tpar_comm_barrier(C));
    }
    /* Above the one-shot size, where shared buffers take the direct path: a count whose
     * shares are not whole cache lines, every op, in place and not. */
    for (int ip = 0; ip < 2; ip++)
        for (size_t o = 0; o < sizeof OPS / sizeof OPS[0]; o++)
            for (int mem = MEM_HEAP; mem <= MEM_MIXED; mem++) t_allreduce_mem(TPAR_F32, OPS[o], 100003, ip, mem, salt++);
    t_allreduce_mem(TPAR_BF16, TPAR_SUM, 100003, 0, MEM_SHARED, salt++);
    t_allreduce_mem(TPAR_F64, TPAR_MAX, 100003, 1, MEM_SHARED, salt++);
    /* 16 MiB messages (see the top of the file for why only these dtypes). */
    if (small_only) goto done;
    elem_period = 65521;
    size_t big = BIG_BYTES / 4;
    t_allreduce(TPAR_F32, TPAR_SUM, big, 0, salt++);
    t_allreduce(TPAR_F32, TPAR_SUM, big, 1, salt++);
    t_allreduce_mem(TPAR_F32, TPAR_SUM, big, 0, MEM_SHARED, salt++);
    t_allreduce(TPAR_BF16, TPAR_SUM, BIG_BYTES / 2, 0, salt++);
    t_allgather(TPAR_F32, big / (size_t)N, 0, salt++);
    t_reduce_scatter(TPAR_F32, TPAR_SUM, big / (size_t)N, 1, 0, salt++);
    t_broadcast(TPAR_F32, big, N / 2, salt++);
    t_alltoall(TPAR_F32, big / (size_t)N, 0, salt++);
    t_sendrecv(TPAR_F32, big / 16, salt++); /* 1 MiB: many times a channel's buffer */
done:;

    tpar_comm_stats_t st;
    tpar_comm_stats(C, &st);
    CHECK(st.calls > 100);
    CHECK(st.bytes > (small_only ? 1000u : BIG_BYTES));
    t_bus_bytes();
    free(ALL);
    tpar_comm_free(C);
    return check_finish("test_collectives");
}
