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

/* Opens path with open(2)'s flags (mode 0644 with O_CREAT) only if it is a regular file, so
 * that a FIFO, a device or a directory in its place is a clear error instead of an open() that
 * blocks forever: the open is O_NONBLOCK (cleared afterwards) and followed by fstat. `what`
 * names the file in messages ("safetensors file"). TPAR_ERR_IO naming the path and its type. */
tpar_status tpar_io_open_file(const char *path, int flags, const char *what, int *fd, tpar_err_t *err);
/* Reads a whole regular file of at most max bytes (tpar_io_open_file) into a NUL-terminated
 * buffer the caller frees. TPAR_ERR_IO (cannot open or read), TPAR_ERR_CORRUPT (larger than max). */
tpar_status tpar_io_read_file(const char *path, const char *what, size_t max, char **buf, size_t *len,
                              tpar_err_t *err);

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
