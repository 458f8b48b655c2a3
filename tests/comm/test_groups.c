/* Sub-communicators from tpar_comm_split: ordering by (key, rank), ranks that join no group,
 * a TP x DP grid (TP groups of 2 consecutive ranks, DP groups across them; 2x2 on 4 ranks)
 * with collectives interleaved in both directions, a nested split, and results that must
 * equal a serial reference over the members' world ranks and be the same on every member. */
#include "comm_test.h"

static int W, WN; /* world rank and size */

/* A few collectives on g, whose members are the world ranks in members[0..n). */
static void exercise(tpar_comm_t *g, const int *members, const char *name, uint64_t salt) {
    int n = tpar_comm_size(g), r = tpar_comm_rank(g);
    int exact = exact_order(g);
    CHECK_EQ_INT(W, members[r]);
    enum { CNT = 1001 };
    float in[CNT * 8], out[CNT * 8], ref[CNT * 8];
    char what[160];

    fill(TPAR_F32, W, 0, CNT, in, salt);
    reference(TPAR_F32, TPAR_SUM, members, n, 0, CNT, ref, salt);
    MUST(g, tpar_comm_allreduce(g, in, out, CNT, TPAR_F32, TPAR_SUM));
    snprintf(what, sizeof what, "%s: allreduce", name);
    CHECK_VALS(what, TPAR_F32, TPAR_SUM, n, ref, out, CNT, exact);

    for (int q = 0; q < n; q++) fill(TPAR_F32, members[q], 0, CNT, ref + (size_t)q * CNT, salt + 1);
    fill(TPAR_F32, W, 0, CNT, in, salt + 1);
    MUST(g, tpar_comm_allgather(g, in, out, CNT, TPAR_F32));
    snprintf(what, sizeof what, "%s: allgather", name);
    CHECK_VALS(what, TPAR_F32, TPAR_MAX, n, ref, out, (size_t)n * CNT, 1);

    size_t per = CNT / (size_t)n;
    fill(TPAR_F32, W, 0, per * (size_t)n, in, salt + 2);
    reference(TPAR_F32, TPAR_MAX, members, n, per * (size_t)r, per, ref, salt + 2);
    MUST(g, tpar_comm_reduce_scatter(g, in, out, per, TPAR_F32, TPAR_MAX));
    snprintf(what, sizeof what, "%s: reduce_scatter max", name);
    CHECK_VALS(what, TPAR_F32, TPAR_MAX, n, ref, out, per, 1);

    int root = n - 1;
    fill(TPAR_F32, members[root], 0, CNT, ref, salt + 3);
    if (r == root) memcpy(out, ref, sizeof(float) * CNT);
    MUST(g, tpar_comm_broadcast(g, out, CNT, TPAR_F32, root));
    snprintf(what, sizeof what, "%s: broadcast", name);
    CHECK_VALS(what, TPAR_F32, TPAR_MAX, n, ref, out, CNT, 1);
}

int main(void) {
    tpar_comm_t *world = test_init();
    W = tpar_comm_rank(world);
    WN = tpar_comm_size(world);
    int members[64];

    /* Reverse order by key; rank 0 joins no group when there are others. */
    int color = (WN > 1 && W == 0) ? -1 : W % 2;
    tpar_comm_t *rev = NULL;
    MUST(world, tpar_comm_split(world, color, -W, &rev));
    if (color < 0) {
        CHECK(rev == NULL);
    } else {
        int n = 0;
        for (int q = WN - 1; q >= 0; q--)
            if (!(WN > 1 && q == 0) && q % 2 == color) members[n++] = q;
        CHECK_EQ_INT(n, tpar_comm_size(rev));
        exercise(rev, members, "reversed odd/even group", 10);
    }

    /* TP x DP grid: TP groups of 2 consecutive ranks (1 if the world is odd-sized). */
    int tpn = WN % 2 == 0 ? 2 : 1, dpn = WN / tpn;
    tpar_comm_t *tp = NULL, *dp = NULL;
    MUST(world, tpar_comm_split(world, W / tpn, W, &tp));
    MUST(world, tpar_comm_split(world, W % tpn, W, &dp));
    CHECK_EQ_INT(tpn, tpar_comm_size(tp));
    CHECK_EQ_INT(dpn, tpar_comm_size(dp));
    int tpm[64], dpm[64];
    for (int i = 0; i < tpn; i++) tpm[i] = W / tpn * tpn + i;
    for (int i = 0; i < dpn; i++) dpm[i] = W % tpn + i * tpn;
    for (int round = 0; round < 3; round++) { /* interleaved: tp, dp, tp, dp, ... */
        exercise(tp, tpm, "tp group", 100 + (uint64_t)round * 10);
        exercise(dp, dpm, "dp group", 200 + (uint64_t)round * 10);
    }
    /* A split of a split: the DP group halves again (by parity of its rank). */
    tpar_comm_t *sub = NULL;
    int dr = tpar_comm_rank(dp);
    MUST(dp, tpar_comm_split(dp, dr % 2, dr, &sub));
    int sm[64], sn = 0;
    for (int i = 0; i < dpn; i++)
        if (i % 2 == dr % 2) sm[sn++] = dpm[i];
    exercise(sub, sm, "split of the dp group", 300);
    /* The world still works, interleaved with the groups. */
    for (int i = 0; i < WN; i++) members[i] = i;
    exercise(world, members, "world", 400);
    exercise(tp, tpm, "tp group again", 500);

    tpar_comm_free(sub);
    tpar_comm_free(tp);
    tpar_comm_free(dp);
    tpar_comm_free(rev);
    tpar_comm_free(world);
    return check_finish("test_groups");
}
