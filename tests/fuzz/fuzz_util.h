/* Shared by the fuzz targets: the input goes into one scratch file per process (the readers
 * under test take paths), replaced for every input. */
#ifndef TPAR_FUZZ_UTIL_H
#define TPAR_FUZZ_UTIL_H

#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* mkdtemp */
#endif

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir_[512];

static int fuzz_rm_(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)ftw;
    return type == FTW_DP ? rmdir(p) : unlink(p);
}

static void fuzz_cleanup_(void) { nftw(fuzz_dir_, fuzz_rm_, 16, FTW_DEPTH | FTW_PHYS); }

/* A per-process scratch directory, made once under $TPAR_FUZZ_TMP (run_fuzz.sh's scratch) or
 * /tmp, and removed at exit. */
static const char *fuzz_dir(void) {
    if (!fuzz_dir_[0]) {
        const char *base = getenv("TPAR_FUZZ_TMP");
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/tpar_fuzz_XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(fuzz_dir_)) abort();
        atexit(fuzz_cleanup_);
    }
    return fuzz_dir_;
}

/* Writes data to dir/name (replacing it) and returns the path in a static buffer. */
static const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    return path;
}

#endif /* TPAR_FUZZ_UTIL_H */
