/* Shard assignment, vocabulary padding, layouts and the errors for shapes that do not
 * divide: all decided without communicating, so one process plays any TP size. */
#include "check.h"
#include "tpar/parallel.h"

/* A TP group of `size` seen from `rank`, without a communicator: only for code paths that
 * decide shapes (init, checks) and never communicate. */
static tpar_tp_t fake_tp(int size, int rank, int sp) { return (tpar_tp_t){NULL, size, rank, sp}; }

static void test_shard_size(void) {
    tpar_err_t err = {0};
    int l = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_shard_size("heads", 12, 4, &l, &err));
    CHECK_EQ_INT(3, l);
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_shard_size("heads NH", 12, 5, &l, &err));
    CHECK_STR_CONTAINS(err.msg, "heads NH = 12 is not divisible by the tensor-parallel size 5");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_shard_size("x", 12, 0, &l, &err));
}

static void test_vocab_padding(void) {
    CHECK_EQ_INT(50304, tpar_vocab_padded(50257, 1, 0)); // GPT-2's padded vocabulary
    CHECK_EQ_INT(50432, tpar_vocab_padded(50257, 2, 0)); // multiple of 256
    CHECK_EQ_INT(512, tpar_vocab_padded(50, 4, 0));
    CHECK_EQ_INT(128, tpar_vocab_padded(128, 1, 0));
    CHECK_EQ_INT(24, tpar_vocab_padded(17, 3, 8));
    CHECK_EQ_INT(-1, tpar_vocab_padded(0, 2, 0));
    CHECK_EQ_INT(-1, tpar_vocab_padded(2147483600, 4, 0));
}

/* Every kind: the ranks' shards placed back give the full tensor, and a few entries are
 * where the layout says. */
static void test_extract_place(void) {
    enum { R = 12, Cc = 8 };
    float full[R * Cc], back[R * Cc], loc[R * Cc];
    for (int i = 0; i < R * Cc; i++) full[i] = (float)i;
    tpar_err_t err = {0};
    for (int kind = 0; kind < TPAR_SHARD_KIND_COUNT; kind++)
        for (int tp = 1; tp <= 4; tp *= 2) {
            memset(back, 0, sizeof back);
            for (int r = 0; r < tp; r++) {
                CHECK_EQ_INT(TPAR_OK, tpar_shard_extract(kind, loc, full, R, Cc, tp, r, &err));
                CHECK_EQ_INT(TPAR_OK, tpar_shard_place(kind, back, loc, R, Cc, tp, r, &err));
            }
            CHECK_BYTES_EQ("shards placed back", full, back, sizeof full);
        }
    // tp = 2, rank 1: ROWS starts at row 6; COLS at column 4; QKV at rows 2, 6, 10
    CHECK_EQ_INT(TPAR_OK, tpar_shard_extract(TPAR_SHARD_ROWS, loc, full, R, Cc, 2, 1, &err));
    CHECK(loc[0] == full[6 * Cc]);
    CHECK_EQ_INT(TPAR_OK, tpar_shard_extract(TPAR_SHARD_COLS, loc, full, R, Cc, 2, 1, &err));
    CHECK(loc[0] == full[4] && loc[4] == full[Cc + 4]);
    CHECK_EQ_INT(TPAR_OK, tpar_shard_extract(TPAR_SHARD_QKV, loc, full, R, Cc, 2, 1, &err));
    CHECK(loc[0] == full[2 * Cc] && loc[2 * Cc] == full[6 * Cc] && loc[4 * Cc] == full[10 * Cc]);
    // the rectangles a loader would read: QKV at tp = 4, rank 3 owns rows 3, 7, 11
    tpar_shard_rect_t rect[3];
    int nrect = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_shard_rects(TPAR_SHARD_QKV, R, Cc, 4, 3, rect, &nrect, &err));
    CHECK_EQ_INT(3, nrect);
    CHECK(rect[0].row0 == 3 && rect[1].row0 == 7 && rect[2].row0 == 11 && rect[2].rows == 1 && rect[2].cols == Cc);
    CHECK_EQ_INT(TPAR_OK, tpar_shard_rects(TPAR_SHARD_COLS, R, Cc, 4, 2, rect, &nrect, &err));
    CHECK(nrect == 1 && rect[0].row0 == 0 && rect[0].rows == R && rect[0].col0 == 4 && rect[0].cols == 2);
    // shapes that do not divide
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_shard_extract(TPAR_SHARD_ROWS, loc, full, R, Cc, 5, 0, &err));
    CHECK_STR_CONTAINS(err.msg, "rows");
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_shard_extract(TPAR_SHARD_COLS, loc, full, R, Cc, 3, 0, &err));
    CHECK_STR_CONTAINS(err.msg, "columns");
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_shard_extract(TPAR_SHARD_QKV, loc, full, 10, Cc, 1, 0, &err));
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_shard_extract(TPAR_SHARD_QKV, loc, full, R, Cc, 3, 0, &err));
    CHECK_STR_CONTAINS(err.msg, "QKV");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_shard_extract(TPAR_SHARD_ROWS, loc, full, R, Cc, 2, 2, &err));
}

/* Layers reject shapes that do not divide at init, naming the dimension. */
static void test_layer_shape_errors(void) {
    tpar_tp_t tp3 = fake_tp(3, 1, 0), tp4sp = fake_tp(4, 0, 1);
    tpar_err_t err = {0};
    tpar_col_linear_t col;
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_col_linear_init(&col, &tp3, 16, 16, 0, 8, &err));
    CHECK_STR_CONTAINS(err.msg, "output features OC = 16");
    tpar_row_linear_t row;
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_row_linear_init(&row, &tp3, 16, 12, 0, 8, &err));
    CHECK_STR_CONTAINS(err.msg, "input features C = 16");
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_row_linear_init(&row, &tp3, 12, 12, TPAR_LINEAR_GATHER_OUTPUT, 8, &err));
    tpar_tp_mlp_t mlp;
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_tp_mlp_init(&mlp, &tp3, 12, 64, 0, 8, &err));
    CHECK_STR_CONTAINS(err.msg, "hidden features H = 64");
    tpar_tp_attention_t att;
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_tp_attention_init(&att, &tp3, 16, 4, 0, 2, 4, &err));
    CHECK_STR_CONTAINS(err.msg, "heads NH = 4");
    tpar_vocab_embedding_t emb;
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_vocab_embedding_init(&emb, &tp3, 50, 128, 8, 8, &err));
    CHECK_STR_CONTAINS(err.msg, "padded vocabulary Vp = 128");
    CHECK_STR_CONTAINS(err.msg, "384"); // the hint: tpar_vocab_padded(50, 3, 0)
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_vocab_embedding_init(&emb, &tp3, 500, 384, 8, 8, &err));
    tpar_vocab_xent_t xent;
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_vocab_xent_init(&xent, &tp3, 50, 384, 7, 8, &err));
    CHECK_STR_CONTAINS(err.msg, "ignore_index");
    // sequence parallelism needs the tokens to divide
    tpar_block_t blk;
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_block_init(&blk, &tp4sp, 16, 4, 64, 1, 6, 0.0f, 1, &err));
    CHECK_STR_CONTAINS(err.msg, "tokens N = B*T = 6");
    CHECK_EQ_INT(TPAR_OK, tpar_col_linear_init(&col, &tp4sp, 16, 16, 0, 16, &err));
    float buf[16 * 16] = {0};
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_col_linear_forward(&col, buf, buf, 10, &err));
    CHECK_STR_CONTAINS(err.msg, "not divisible by the tensor-parallel size 4");
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_col_linear_forward(&col, buf, buf, 20, &err)); // more than max_tokens
    tpar_col_linear_free(&col);
}

/* Layers declare their layouts; a composition that disagrees fails when it is built. */
static void test_layouts(void) {
    tpar_err_t err = {0};
    for (int sp = 0; sp <= 1; sp++) {
        tpar_tp_t tp = fake_tp(2, 0, sp);
        tpar_col_linear_t col;
        tpar_row_linear_t row_par, row_rep;
        CHECK_EQ_INT(TPAR_OK, tpar_col_linear_init(&col, &tp, 8, 16, 0, 8, &err));
        CHECK_EQ_INT(TPAR_OK, tpar_row_linear_init(&row_par, &tp, 16, 8, TPAR_LINEAR_INPUT_IS_PARALLEL, 8, &err));
        CHECK_EQ_INT(TPAR_OK, tpar_row_linear_init(&row_rep, &tp, 16, 8, 0, 8, &err));
        CHECK_EQ_INT(sp ? TPAR_LAYOUT_SPLIT_SEQ : TPAR_LAYOUT_REPLICATED, col.in.layout);
        CHECK_EQ_INT(TPAR_LAYOUT_SPLIT_LAST, col.out.layout);
        CHECK_EQ_INT(sp ? TPAR_LAYOUT_SPLIT_SEQ : TPAR_LAYOUT_REPLICATED, row_par.out.layout);
        CHECK_EQ_INT(TPAR_OK, tpar_layout_connect("fc", col.out, "proj", row_par.in, &err));
        CHECK_EQ_INT(TPAR_OK, tpar_layout_connect("proj", row_par.out, "fc", col.in, &err));
        CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_layout_connect("fc", col.out, "proj", row_rep.in, &err));
        CHECK_STR_CONTAINS(err.msg, "fc produces split-last (N, 16) but proj expects replicated (N, 16)");
        tpar_act_spec_t wide = {TPAR_LAYOUT_SPLIT_LAST, 32};
        CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_layout_connect("fc", col.out, "wide", wide, &err));
        tpar_col_linear_free(&col);
        tpar_row_linear_free(&row_par);
        tpar_row_linear_free(&row_rep);
    }
}

int main(void) {
    test_shard_size();
    test_vocab_padding();
    test_extract_place();
    test_layer_shape_errors();
    test_layouts();
    return check_finish("test_parallel_shard");
}
