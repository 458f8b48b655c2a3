/* Failure handling. One program, several modes (argv[1]):
 *
 *   args      wrong arguments return TPAR_ERR_INVALID_ARG and leave the communicator usable
 *   mismatch  ranks that disagree on count, dtype, op, root or the collective itself all get
 *             TPAR_ERR_MISMATCH naming the other rank (each case on a fresh sub-communicator,
 *             since a mismatch poisons it)
 *   kill      rank 1 SIGKILLs itself while everyone loops over 1 MiB all-reduces; the others
 *             must fail with TPAR_ERR_PEER_DEAD naming rank 1 and the collective, and every
 *             later call must fail at once (poisoned). Survivors print the error and exit 3.
 *   hang      rank 1 stops taking part (sleeps); with TPAR_COMM_TIMEOUT=1 the others fail with
 *             TPAR_ERR_TIMEOUT naming rank 1, print it and exit 3.
 *   stop FILE rank 1 writes its pid to FILE and stops itself (SIGSTOP) while everyone loops over
 *             all-reduces on a sub-communicator; the others must time out naming rank 1 as
 *             stopped, find the world failed too (its next call fails at once), free everything
 *             without waiting for rank 1 and end through tpar_comm_abort_unfinished (under
 *             mpirun: MPI_Abort, which ends the stopped rank too; alone: exit 3).
 *   stopend FILE  rank 1 writes its pid to FILE and stops itself after the last collective, before
 *             freeing its communicators; the others finish their work, and freeing the world
 *             must not wait in MPI_Finalize for the stopped rank: under mpirun the job ends
 *             through tpar_comm_abort_unfinished (MPI_Abort); elsewhere they exit 0.
 *   stopsplit FILE  rank 1 writes its pid to FILE and stops itself before a split (communicator
 *             set-up, where MPI's constructors have no deadline of their own): the others must
 *             fail the split with a timeout and end as in `stop`.
 * `kill` and `hang` are driven by test_fail.sh, which checks the messages, the launcher's
 * report and that no shared-memory entry is left behind; `stop` by test_stop.sh. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "comm_test.h"

static tpar_comm_t *C;
static int R, N;

static void expect_invalid(tpar_status st, const char *what) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s returns invalid argument (got %s)", what, tpar_status_str(st));
    check_record_(st == TPAR_ERR_INVALID_ARG, __FILE__, __LINE__, msg);
}

static void mode_args(void) {
    float x[4] = {1, 2, 3, 4}, y[4];
    tpar_request_t *req = NULL;
    expect_invalid(tpar_comm_allreduce(C, NULL, y, 4, TPAR_F32, TPAR_SUM), "allreduce NULL sendbuf");
    expect_invalid(tpar_comm_allreduce(C, x, NULL, 4, TPAR_F32, TPAR_SUM), "allreduce NULL recvbuf");
    expect_invalid(tpar_comm_allreduce(C, x, y, 4, TPAR_F32, (tpar_op)7), "allreduce unknown op");
    expect_invalid(tpar_comm_allreduce(C, x, y, 4, (tpar_dtype)9, TPAR_SUM), "allreduce unknown dtype");
    expect_invalid(tpar_comm_allreduce(C, x, y, SIZE_MAX / 2, TPAR_F32, TPAR_SUM), "allreduce count overflow");
    expect_invalid(tpar_comm_allgather(C, x, y, SIZE_MAX / 3, TPAR_F64), "allgather count overflow");
    expect_invalid(tpar_comm_broadcast(C, x, 4, TPAR_F32, N), "broadcast root out of range");
    expect_invalid(tpar_comm_broadcast(C, x, 4, TPAR_F32, -1), "broadcast negative root");
    expect_invalid(tpar_comm_send(C, x, 4, TPAR_F32, N + 3, 0), "send to a rank outside");
    expect_invalid(tpar_comm_recv(C, y, 4, TPAR_F32, R, 0), "recv from oneself");
    expect_invalid(tpar_comm_send(C, TPAR_IN_PLACE, 4, TPAR_F32, 0, 0), "send in place");
    expect_invalid(tpar_comm_allgatherv(C, x, 4, y, NULL, NULL, TPAR_F32), "allgatherv without counts");
    expect_invalid(tpar_comm_reduce_scatterv(C, x, y, NULL, TPAR_F32, TPAR_SUM), "reduce_scatterv without counts");
    expect_invalid(tpar_comm_iallreduce(C, x, y, 4, TPAR_F32, TPAR_SUM, NULL), "iallreduce without req");
    expect_invalid(tpar_comm_iallreduce(C, x, NULL, 4, TPAR_F32, TPAR_SUM, &req), "iallreduce NULL recvbuf");
    CHECK(req == NULL);
    CHECK_STR_CONTAINS(tpar_comm_error(C), "NULL buffer");
    /* NULL buffers are fine when there is nothing to move */
    CHECK_EQ_INT(TPAR_OK, tpar_comm_allreduce(C, NULL, NULL, 0, TPAR_F32, TPAR_SUM));
    /* and the communicator still works: argument errors never poison it */
    float v = (float)(R + 1), s = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_comm_allreduce(C, &v, &s, 1, TPAR_F32, TPAR_SUM));
    CHECK_EQ_INT((long long)N * (N + 1) / 2, (long long)s);
}

/* Each case: rank 1 (of a fresh sub-communicator) deviates in one way. */
static void mode_mismatch(void) {
    if (N < 2) check_skip("mismatch needs at least 2 ranks");
    for (int kase = 0; kase < 5; kase++) {
        tpar_comm_t *g = NULL;
        MUST(C, tpar_comm_split(C, 0, R, &g));
        int odd = R == 1;
        float x[8] = {0}, y[8 * 8];
        tpar_status st;
        switch (kase) {
        case 0: st = tpar_comm_allreduce(g, x, y, odd ? 5 : 4, TPAR_F32, TPAR_SUM); break;
        case 1: st = tpar_comm_allreduce(g, x, y, 2, odd ? TPAR_I32 : TPAR_F32, TPAR_SUM); break;
        case 2: st = tpar_comm_allreduce(g, x, y, 4, TPAR_F32, odd ? TPAR_MAX : TPAR_SUM); break;
        case 3: st = tpar_comm_broadcast(g, x, 4, TPAR_F32, odd ? 1 : 0); break;
        default:
            st = odd ? tpar_comm_allgather(g, x, y, 4, TPAR_F32) : tpar_comm_allreduce(g, x, y, 4, TPAR_F32, TPAR_SUM);
        }
        char msg[120];
        snprintf(msg, sizeof msg, "mismatch case %d reported as mismatch (got %s)", kase, tpar_status_str(st));
        check_record_(st == TPAR_ERR_MISMATCH, __FILE__, __LINE__, msg);
        CHECK_STR_CONTAINS(tpar_comm_error(g), R == 1 ? "rank 0" : "rank 1");
        /* poisoned: the next call fails at once with the same code */
        CHECK_EQ_INT(TPAR_ERR_MISMATCH, tpar_comm_barrier(g));
        tpar_comm_free(g);
    }
    MUST(C, tpar_comm_barrier(C));
}

static void *killer(void *arg) {
    (void)arg;
    usleep(200 * 1000);
    raise(SIGKILL);
    return NULL;
}

static int mode_fatal(int hang) {
    if (N < 2) check_skip("needs at least 2 ranks");
    size_t n = (1u << 20) / 4;
    float *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
    if (!a || !b) return 1;
    MUST(C, tpar_comm_barrier(C));
    if (R == 1) {
        if (hang) {
            sleep(60); /* stops answering; the launcher ends it */
            return 0;
        }
        pthread_t t;
        pthread_create(&t, NULL, killer, NULL);
    }
    for (int it = 0; it < 1000000; it++) {
        tpar_status st = tpar_comm_allreduce(C, a, b, n, TPAR_F32, TPAR_SUM);
        if (st == TPAR_OK) continue;
        fprintf(stderr, "[rank %d] error: %s: %s\n", R, tpar_status_str(st), tpar_comm_error(C));
        tpar_status again = tpar_comm_allreduce(C, a, b, 1, TPAR_F32, TPAR_SUM);
        fprintf(stderr, "[rank %d] next call: %s\n", R, tpar_status_str(again));
        tpar_comm_free(C);
        free(a);
        free(b);
        return 3;
    }
    return 0;
}

static void *stopper(void *arg) {
    (void)arg;
    usleep(200 * 1000);
    raise(SIGSTOP);
    return NULL;
}

static int mode_stop(const char *pidfile) {
    if (N < 2) check_skip("needs at least 2 ranks");
    /* A sub-communicator, as the TP group of a trainer: its failure must reach the world. */
    tpar_comm_t *g = NULL;
    MUST(C, tpar_comm_split(C, 0, R, &g));
    size_t n = (1u << 16) / 4;
    float *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
    if (!a || !b) return 1;
    MUST(g, tpar_comm_barrier(g));
    if (R == 1) {
        FILE *f = fopen(pidfile, "w");
        if (!f) return 1;
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
        pthread_t t;
        pthread_create(&t, NULL, stopper, NULL);
    }
    for (long it = 0;; it++) {
        tpar_status st = tpar_comm_allreduce(g, a, b, n, TPAR_F32, TPAR_SUM);
        if (st == TPAR_OK) continue;
        fprintf(stderr, "[rank %d] error: %s: %s\n", R, tpar_status_str(st), tpar_comm_error(g));
        tpar_status again = tpar_comm_barrier(C);
        fprintf(stderr, "[rank %d] world next call: %s: %s\n", R, tpar_status_str(again), tpar_comm_error(C));
        tpar_comm_free(g);
        tpar_comm_free(C); /* must not wait for the stopped rank */
        free(a);
        free(b);
        fprintf(stderr, "[rank %d] freed\n", R);
        return tpar_comm_abort_unfinished(3);
    }
}

static int mode_stopsplit(const char *pidfile) {
    if (N < 2) check_skip("needs at least 2 ranks");
    MUST(C, tpar_comm_barrier(C));
    if (R == 1) {
        FILE *f = fopen(pidfile, "w");
        if (!f) return 1;
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
        raise(SIGSTOP);
    }
    tpar_comm_t *g = NULL;
    tpar_status st = tpar_comm_split(C, 0, R, &g);
    fprintf(stderr, "[rank %d] split: %s: %s\n", R, tpar_status_str(st), tpar_comm_error(C));
    tpar_comm_free(g);
    tpar_comm_free(C); /* must not wait for the stopped rank */
    fprintf(stderr, "[rank %d] freed\n", R);
    return tpar_comm_abort_unfinished(st ? 3 : 0);
}

static int mode_stopend(const char *pidfile) {
    if (N < 2) check_skip("needs at least 2 ranks");
    MUST(C, tpar_comm_barrier(C));
    if (R == 1) {
        FILE *f = fopen(pidfile, "w");
        if (!f) return 1;
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
        raise(SIGSTOP); /* before freeing anything; the launcher ends it */
    }
    tpar_comm_free(C); /* must not wait for the stopped rank */
    fprintf(stderr, "[rank %d] freed\n", R);
    return tpar_comm_abort_unfinished(0);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    C = test_init();
    R = tpar_comm_rank(C);
    N = tpar_comm_size(C);
    if (!strcmp(mode, "kill") || !strcmp(mode, "hang")) return mode_fatal(mode[0] == 'h');
    if (!strcmp(mode, "stop") && argc > 2) return mode_stop(argv[2]);
    if (!strcmp(mode, "stopend") && argc > 2) return mode_stopend(argv[2]);
    if (!strcmp(mode, "stopsplit") && argc > 2) return mode_stopsplit(argv[2]);
    if (!strcmp(mode, "args")) mode_args();
    else if (!strcmp(mode, "mismatch")) mode_mismatch();
    else {
        fprintf(stderr, "usage: test_fail args|mismatch|kill|hang|stop|stopend|stopsplit PIDFILE\n");
        return 2;
    }
    tpar_comm_free(C);
    return check_finish(mode);
}
