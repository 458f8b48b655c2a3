/* Core helpers: status names, error detail, number parsing, env parsing, aligned memory. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "tpar/core.h"

static void test_status_names(void) {
    for (int s = 0; s < TPAR_STATUS_COUNT; s++) {
        CHECK(tpar_status_str((tpar_status)s) != NULL);
        CHECK(strcmp(tpar_status_str((tpar_status)s), "unknown status") != 0);
    }
    CHECK(strcmp(tpar_status_str(TPAR_STATUS_COUNT), "unknown status") == 0);
    CHECK(strcmp(tpar_status_str((tpar_status)-1), "unknown status") == 0);
}

static void test_err(void) {
    tpar_err_t e;
    tpar_err_clear(&e);
    CHECK_EQ_INT(TPAR_OK, e.code);
    CHECK_EQ_INT(0, strlen(e.msg));
    CHECK_EQ_INT(TPAR_ERR_SHAPE, tpar_err_set(&e, TPAR_ERR_SHAPE, "tensor %s: expected %d, got %d", "wte", 3, 4));
    CHECK_EQ_INT(TPAR_ERR_SHAPE, e.code);
    CHECK_STR_CONTAINS(e.msg, "tensor wte: expected 3, got 4");
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_err_set(NULL, TPAR_ERR_IO, "no sink")); /* NULL is allowed */
    char big[2 * TPAR_ERR_MSG_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tpar_err_set(&e, TPAR_ERR_IO, "%s", big); /* truncates, stays terminated */
    CHECK_EQ_INT(TPAR_ERR_MSG_MAX - 1, strlen(e.msg));
}

static void test_parse(void) {
    long long v = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_parse_int("42", 0, 100, &v));
    CHECK_EQ_INT(42, v);
    CHECK_EQ_INT(TPAR_OK, tpar_parse_int("-7", -10, 10, &v));
    CHECK_EQ_INT(-7, v);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_parse_int("101", 0, 100, &v));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_parse_int("4x", 0, 100, &v));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_parse_int("", 0, 100, &v));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_parse_int("99999999999999999999999", 0, INT64_MAX, &v));
    double d = 0;
    CHECK_EQ_INT(TPAR_OK, tpar_parse_double("3e-4", 0, 1, &d));
    CHECK_CLOSE(3e-4, d, 0, 0);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_parse_double("nan", -1e9, 1e9, &d));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_parse_double("inf", -1e9, 1e300, &d));
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_parse_double("1.5.", 0, 10, &d));
}

static void test_env(void) {
    tpar_err_t e;
    tpar_err_clear(&e);
    long long v = 0;
    unsetenv("TPAR_TEST_ENV");
    CHECK_EQ_INT(TPAR_OK, tpar_env_int("TPAR_TEST_ENV", 5, 0, 10, &v, &e));
    CHECK_EQ_INT(5, v);
    setenv("TPAR_TEST_ENV", "8", 1);
    CHECK_EQ_INT(TPAR_OK, tpar_env_int("TPAR_TEST_ENV", 5, 0, 10, &v, &e));
    CHECK_EQ_INT(8, v);
    setenv("TPAR_TEST_ENV", "eleven", 1);
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_env_int("TPAR_TEST_ENV", 5, 0, 10, &v, &e));
    CHECK_STR_CONTAINS(e.msg, "TPAR_TEST_ENV='eleven'");
    double d = 0;
    setenv("TPAR_TEST_ENV", "2.5", 1);
    CHECK_EQ_INT(TPAR_OK, tpar_env_double("TPAR_TEST_ENV", 1.0, 0.0, 3.0, &d, &e));
    CHECK_CLOSE(2.5, d, 0, 0);
    unsetenv("TPAR_TEST_ENV");
}

static void test_memory(void) {
    size_t out = 0;
    CHECK_EQ_INT(0, tpar_mul_size(1000, 4, &out));
    CHECK_EQ_INT(4000, out);
    CHECK_EQ_INT(-1, tpar_mul_size(SIZE_MAX / 2, 3, &out));
    float *p = tpar_calloc_aligned(1000, sizeof(float));
    CHECK(p != NULL);
    CHECK_EQ_INT(0, (uintptr_t)p % 64);
    int zero = 1;
    for (int i = 0; p && i < 1000; i++) zero &= p[i] == 0.0f;
    CHECK(zero);
    tpar_free(p);
    CHECK(tpar_calloc_aligned(SIZE_MAX / 2, 4) == NULL); /* overflow is refused, not wrapped */
    void *z = tpar_calloc_aligned(0, 4);                 /* empty tensors get a freeable pointer */
    CHECK(z != NULL);
    tpar_free(z);
}

static void test_misc(void) {
    CHECK(tpar_num_cores() >= 1);
    double t0 = tpar_now(), t1 = tpar_now();
    CHECK(t1 >= t0);
    tpar_build_info_t bi;
    tpar_build_info(&bi);
    CHECK_STR_CONTAINS(bi.version, TPAR_VERSION_STRING);
    CHECK(bi.blas != NULL && bi.blas[0] != '\0');
}

int main(void) {
    test_status_names();
    test_err();
    test_parse();
    test_env();
    test_memory();
    test_misc();
    return check_finish("test_core");
}
