/* tpar_comm_agree: every rank learns the worst status of all, and a rank that did not fail is
 * told which rank did. The expected result is computed here from the same per-round inputs
 * every rank knows (no library code), so each rank checks the agreement independently. */
#include <stdio.h>

#include "comm_test.h"

/* Round r: the status rank q passes (most pass TPAR_OK). */
static tpar_status status_of(int r, int q, int n) {
    switch (r) {
    case 0: return TPAR_OK;                                         /* nobody failed */
    case 1: return q == n - 1 ? TPAR_ERR_IO : TPAR_OK;              /* the last rank */
    case 2: return q == 0 ? TPAR_ERR_SHAPE : q == n - 1 ? TPAR_ERR_TIMEOUT : TPAR_OK; /* two, different */
    default: return q % 2 ? TPAR_ERR_CORRUPT : TPAR_OK;             /* every odd rank, same status */
    }
}

int main(void) {
    tpar_comm_t *world = test_init();
    int me = tpar_comm_rank(world), n = tpar_comm_size(world);
    for (int r = 0; r < 4; r++) {
        tpar_status worst = TPAR_OK; /* the largest code; the lowest rank that has it */
        int who = -1;
        for (int q = 0; q < n; q++)
            if (status_of(r, q, n) > worst) worst = status_of(r, q, n), who = q;
        tpar_status mine = status_of(r, me, n);
        tpar_err_t err;
        tpar_err_set(&err, mine, "rank %d's own message", me);
        tpar_status got = tpar_comm_agree(world, mine, "round", &err);
        if (mine) { /* own status back, own message kept */
            CHECK_EQ_INT(mine, got);
            CHECK_STR_CONTAINS(err.msg, "'s own message");
        } else if (worst) {
            CHECK_EQ_INT(worst, got);
            char want[96];
            snprintf(want, sizeof want, "round: another rank failed (rank %d: %s)", who, tpar_status_str(worst));
            CHECK_STR_CONTAINS(err.msg, want);
        } else {
            CHECK_EQ_INT(TPAR_OK, got);
        }
    }
    /* A NULL communicator is a clear error. */
    tpar_err_t err;
    tpar_err_clear(&err);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_comm_agree(NULL, TPAR_OK, "x", &err));
    CHECK_STR_CONTAINS(err.msg, "comm is NULL");
    tpar_comm_free(world);
    return check_finish("test_agree");
}
