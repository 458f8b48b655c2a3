/* Shared bits of the io tests: a scratch directory and raw file helpers. */
#ifndef TPAR_TESTS_IO_UTIL_H
#define TPAR_TESTS_IO_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io_internal.h"
#include "tpar/io.h"

/* A fresh directory under $TMPDIR (or /tmp); exits on failure (nothing could be tested). */
static inline void io_test_scratch(char *buf, size_t cap, const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, cap, "%s/tpar_%s_XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
}

static inline int io_test_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Whole file into a malloc'd buffer (NULL on failure); *n its size. */
static inline unsigned char *io_test_read(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = (size_t)size;
    return buf;
}

#endif /* TPAR_TESTS_IO_UTIL_H */
