/* The placement check of src/train/placement.c on hand-made layouts (no MPI needed): a TP group
 * whose ranks are on more than one host is refused naming the group, the ranks and the hosts,
 * unless forced; the summary names each TP group's host. The layouts are written out here, not
 * computed by the code under test. */
#include <string.h>

#include "check.h"
#include "train/placement.h"

static const char names[3][TRAIN_HOST_NAME] = {"alpha", "beta", "gamma"};

static tpar_status run(const int *host_of, int world, int tp, int allow, char *sum, tpar_err_t *err) {
    memset(err, 0, sizeof *err);
    return train_placement_check(host_of, names, world, tp, allow, sum, 512, err);
}

int main(void) {
    char sum[512];
    tpar_err_t err;
    // 2 hosts x 2 ranks, TP=2 by slot: each TP group on one host
    const int slot[4] = {0, 0, 1, 1};
    CHECK_EQ_INT(TPAR_OK, run(slot, 4, 2, 0, sum, &err));
    CHECK_STR_CONTAINS(sum, "placement: 2 hosts | TP group 0 (ranks 0-1) on alpha | TP group 1 (ranks 2-3) on beta");
    CHECK_STR_CONTAINS(sum, "DP crosses hosts, TP stays inside each host");
    // the same ranks by node (round robin): both TP groups span alpha and beta
    const int node[4] = {0, 1, 0, 1};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, run(node, 4, 2, 0, sum, &err));
    CHECK_STR_CONTAINS(err.msg, "TP group 0 (ranks 0-1) spans hosts: rank 0 is on alpha, rank 1 on beta");
    CHECK_STR_CONTAINS(err.msg, "--allow-tp-across-hosts");
    CHECK_EQ_INT(TPAR_OK, run(node, 4, 2, 1, sum, &err)); // forced
    CHECK_STR_CONTAINS(sum, "TP group 0 (ranks 0-1) on alpha and other hosts");
    // TP=1 (pure DP) never spans; a rank count uneven over hosts only matters where a group splits
    CHECK_EQ_INT(TPAR_OK, run(node, 4, 1, 0, sum, &err));
    const int uneven[6] = {0, 0, 0, 1, 1, 1}; // 3 + 3 ranks, TP=2: group 1 = ranks 2 (alpha), 3 (beta)
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, run(uneven, 6, 2, 0, sum, &err));
    CHECK_STR_CONTAINS(err.msg, "TP group 1 (ranks 2-3) spans hosts: rank 2 is on alpha, rank 3 on beta");
    CHECK_EQ_INT(TPAR_OK, run(uneven, 6, 3, 0, sum, &err)); // TP=3 fits 3 per host
    // the third rank of a TP=4 group is the first elsewhere: it is the one named
    const int late[8] = {0, 0, 2, 2, 1, 1, 1, 1};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, run(late, 8, 4, 0, sum, &err));
    CHECK_STR_CONTAINS(err.msg, "rank 0 is on alpha, rank 2 on gamma");
    // one host: no DP remark
    const int one[4] = {0, 0, 0, 0};
    CHECK_EQ_INT(TPAR_OK, run(one, 4, 2, 0, sum, &err));
    CHECK_STR_CONTAINS(sum, "placement: 1 host | TP group 0 (ranks 0-1) on alpha | TP group 1 (ranks 2-3) on alpha");
    CHECK(strstr(sum, "DP crosses") == NULL);
    // bad shapes are errors, not crashes
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, run(one, 3, 2, 0, sum, &err));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, run(one, 4, 0, 0, sum, &err));
    // many groups: the summary stays within its buffer and says how many there are
    int many[64];
    for (int r = 0; r < 64; r++) many[r] = r / 32;
    CHECK_EQ_INT(TPAR_OK, run(many, 64, 2, 0, sum, &err));
    CHECK_STR_CONTAINS(sum, "... (32 TP groups)");
    char small[16];
    CHECK_EQ_INT(TPAR_OK, train_placement_check(many, names, 64, 2, 0, small, sizeof small, &err));
    CHECK(strlen(small) < sizeof small);
    return check_finish("test_placement");
}
