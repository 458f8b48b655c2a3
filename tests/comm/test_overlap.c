/* Non-blocking collectives under overlap: several requests in flight at once, a GEMM-like
 * loop while they proceed, a blocking call issued behind them (ordered after them), completion
 * through both test() and wait(). Results must equal the serial reference like the blocking
 * forms. Registered twice: TPAR_COMM_PROGRESS=thread (worker thread) and =inline. */
#include "comm_test.h"

/* Something for the CPU to do while the collectives run: C = A * B, 96 x 96. */
static float busy_work(int reps) {
    enum { M = 96 };
    static float a[M * M], b[M * M], c[M * M];
    for (int i = 0; i < M * M; i++) {
        a[i] = (float)(i % 7) * 0.25f;
        b[i] = (float)(i % 5) * 0.5f;
    }
    for (int rep = 0; rep < reps; rep++)
        for (int i = 0; i < M; i++)
            for (int k = 0; k < M; k++)
                for (int j = 0; j < M; j++) c[i * M + j] += a[i * M + k] * b[k * M + j];
    return c[M + 1];
}

int main(void) {
    tpar_comm_t *C = test_init();
    int R = tpar_comm_rank(C), N = tpar_comm_size(C), exact = exact_order(C);
    int *all = malloc((size_t)N * sizeof *all);
    for (int q = 0; q < N; q++) all[q] = q;
    size_t n = 300007; /* 1.2 MB of f32: several chunks, not divisible by any rank count */
    size_t per = n / (size_t)N;
    float *ar_in = malloc(n * 4), *ar_out = malloc(n * 4), *ar_ref = malloc(n * 4);
    float *ag_in = malloc(per * 4), *ag_out = malloc(per * (size_t)N * 4), *ag_ref = malloc(per * (size_t)N * 4);
    float *rs_in = malloc(per * (size_t)N * 4), *rs_out = malloc(per * 4), *rs_ref = malloc(per * 4);
    uint16_t *bc = malloc(n * 2), *bc_ref = malloc(n * 2);
    double *bl = malloc(1000 * 8), *bl_ref = malloc(1000 * 8);
    if (!all || !ar_in || !ar_out || !ar_ref || !ag_in || !ag_out || !ag_ref || !rs_in || !rs_out || !rs_ref ||
        !bc || !bc_ref || !bl || !bl_ref)
        return 1;

    for (int iter = 0; iter < 3; iter++) {
        uint64_t salt = 1000 + (uint64_t)iter * 10;
        fill(TPAR_F32, R, 0, n, ar_in, salt);
        reference(TPAR_F32, TPAR_SUM, all, N, 0, n, ar_ref, salt);
        fill(TPAR_F32, R, 0, per, ag_in, salt + 1);
        for (int q = 0; q < N; q++) fill(TPAR_F32, q, 0, per, ag_ref + (size_t)q * per, salt + 1);
        fill(TPAR_F32, R, 0, per * (size_t)N, rs_in, salt + 2);
        reference(TPAR_F32, TPAR_MIN, all, N, per * (size_t)R, per, rs_ref, salt + 2);
        fill(TPAR_BF16, 0, 0, n, bc_ref, salt + 3);
        if (R == 0) memcpy(bc, bc_ref, n * 2);
        fill(TPAR_F64, R, 0, 1000, bl, salt + 4);
        reference(TPAR_F64, TPAR_MAX, all, N, 0, 1000, bl_ref, salt + 4);

        tpar_request_t *r1, *r2, *r3, *r4;
        MUST(C, tpar_comm_iallreduce(C, ar_in, ar_out, n, TPAR_F32, TPAR_SUM, &r1));
        MUST(C, tpar_comm_iallgather(C, ag_in, ag_out, per, TPAR_F32, &r2));
        MUST(C, tpar_comm_ireduce_scatter(C, rs_in, rs_out, per, TPAR_F32, TPAR_MIN, &r3));
        MUST(C, tpar_comm_ibroadcast(C, bc, n, TPAR_BF16, 0, &r4));
        volatile float sink = busy_work(2);
        (void)sink;
        /* a blocking call behind four pending ones: runs after them, on every rank alike */
        MUST(C, tpar_comm_allreduce(C, TPAR_IN_PLACE, bl, 1000, TPAR_F64, TPAR_MAX));
        int done = 0;
        while (!done) MUST(C, tpar_comm_test(r1, &done)); /* test frees r1 once done */
        MUST(C, tpar_comm_wait(r3));                        /* out of order: fine */
        MUST(C, tpar_comm_wait(r2));
        MUST(C, tpar_comm_wait(r4));
        CHECK_VALS("iallreduce f32 sum", TPAR_F32, TPAR_SUM, N, ar_ref, ar_out, n, exact);
        CHECK_VALS("iallgather f32", TPAR_F32, TPAR_MAX, N, ag_ref, ag_out, per * (size_t)N, 1);
        CHECK_VALS("ireduce_scatter f32 min", TPAR_F32, TPAR_MIN, N, rs_ref, rs_out, per, 1);
        CHECK_VALS("ibroadcast bf16", TPAR_BF16, TPAR_MAX, N, bc_ref, bc, n, 1);
        CHECK_VALS("blocking allreduce behind them", TPAR_F64, TPAR_MAX, N, bl_ref, bl, 1000, 1);
    }
    tpar_comm_stats_t st;
    tpar_comm_stats(C, &st);
    CHECK_EQ_INT(15, (long long)st.calls);
    CHECK(st.wait_s > 0.0);
    tpar_comm_stats_reset(C);
    tpar_comm_stats(C, &st);
    CHECK_EQ_INT(0, (long long)st.calls);

    free(all);
    free(ar_in), free(ar_out), free(ar_ref), free(ag_in), free(ag_out), free(ag_ref);
    free(rs_in), free(rs_out), free(rs_ref), free(bc), free(bc_ref), free(bl), free(bl_ref);
    tpar_comm_free(C);
    return check_finish("test_overlap");
}
