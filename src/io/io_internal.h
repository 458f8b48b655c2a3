/* Helpers shared by the io sources (not part of the public API). */
#ifndef TPAR_IO_INTERNAL_H
#define TPAR_IO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tpar/io.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tpar io reads and writes little-endian files with raw memory copies: little-endian hosts only"
#endif

/* pread/pwrite until done, retrying on EINTR. pread returns the bytes read (less than n only
 * at end of file) or -1 with errno set; pwrite returns 0 or -1 with errno set. */
ssize_t tpar_io_pread_full(int fd, void *buf, size_t n, uint64_t off);
int tpar_io_pwrite_full(int fd, const void *buf, size_t n, uint64_t off);

/* fsync of a directory (so that a rename or a new entry in it is durable). */
tpar_status tpar_io_fsync_dir(const char *dir, tpar_err_t *err);
/* The directory holding path ("." if none) into buf. */
void tpar_io_parent_dir(const char *path, char *buf, size_t cap);
/* Writes data to path atomically: path.tmp, fsync, rename, fsync of the directory. */
tpar_status tpar_io_write_atomic(const char *path, const void *data, size_t len, tpar_err_t *err);
/* Removes a file or a directory tree (no symlinks followed). Missing is not an error. */
tpar_status tpar_io_rmtree(const char *path, tpar_err_t *err);

/* Where an open safetensors file's data buffer starts (8 + header length). */
uint64_t tpar_io_st_data_start(const tpar_st_file_t *f);

#endif /* TPAR_IO_INTERNAL_H */
