/* Positional I/O that survives EINTR and short transfers; durable atomic file replacement. */
#define _XOPEN_SOURCE 700
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ssize_t tpar_io_pread_full(int fd, void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break; /* end of file */
        done += (size_t)r;
    }
    return (ssize_t)done;
}

int tpar_io_pwrite_full(int fd, const void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, (const char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

static const char *file_type(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a regular file";
}

tpar_status tpar_io_open_file(const char *path, int flags, const char *what, int *fd, tpar_err_t *err) {
    *fd = -1;
    struct stat sb;
    /* A write-only open of a FIFO without a reader fails with ENXIO even non-blocking: say what
     * it is first. The fstat below is the check that counts (no race with a swap). */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return tpar_err_set(err, TPAR_ERR_IO, "%s %s is %s, expected a regular file", what, path,
                            file_type(sb.st_mode));
    int f = open(path, flags | O_NONBLOCK | O_CLOEXEC, 0644);
    if (f < 0) return tpar_err_set(err, TPAR_ERR_IO, "cannot open %s %s: %s", what, path, strerror(errno));
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot stat %s %s: %s", what, path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return tpar_err_set(err, TPAR_ERR_IO, "%s %s is %s, expected a regular file", what, path,
                            file_type(sb.st_mode));
    }
    int fl = fcntl(f, F_GETFL);
    if (fl < 0 || fcntl(f, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(f);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot open %s %s: fcntl: %s", what, path, strerror(e));
    }
    *fd = f;
    return TPAR_OK;
}

tpar_status tpar_io_read_file(const char *path, const char *what, size_t max, char **buf, size_t *len,
                              tpar_err_t *err) {
    *buf = NULL;
    *len = 0;
    int fd;
    tpar_status st = tpar_io_open_file(path, O_RDONLY, what, &fd, err);
    if (st != TPAR_OK) return st;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot stat %s %s: %s", what, path, strerror(e));
    }
    if ((uint64_t)sb.st_size > max) {
        close(fd);
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s %s is %lld bytes, more than the %zu expected at most", what,
                            path, (long long)sb.st_size, max);
    }
    size_t n = (size_t)sb.st_size;
    char *b = malloc(n + 1);
    ssize_t r = b ? tpar_io_pread_full(fd, b, n, 0) : -1;
    int e = errno;
    close(fd);
    if (!b) return tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory reading %s %s", what, path);
    if (r != (ssize_t)n) {
        free(b);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot read %s %s: %s", what, path, r < 0 ? strerror(e) : "short read");
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return TPAR_OK;
}

tpar_status tpar_io_fsync_dir(const char *dir, tpar_err_t *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return tpar_err_set(err, TPAR_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* Some file systems cannot fsync directories (EINVAL); their renames are then as durable
     * as they can be made. */
    if (rc != 0 && e != EINVAL)
        return tpar_err_set(err, TPAR_ERR_IO, "fsync of directory %s failed: %s", dir, strerror(e));
    return TPAR_OK;
}

void tpar_io_parent_dir(const char *path, char *buf, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(buf, cap, ".");
    } else if (slash == path) {
        snprintf(buf, cap, "/");
    } else {
        snprintf(buf, cap, "%.*s", (int)(slash - path), path);
    }
}

tpar_status tpar_io_write_atomic(const char *path, const void *data, size_t len, tpar_err_t *err) {
    char tmp[TPAR_CKPT_PATH_MAX], dir[TPAR_CKPT_PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "path too long: %s", path);
    int fd;
    tpar_status st = tpar_io_open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, "temporary file", &fd, err);
    if (st != TPAR_OK) return st;
    if (tpar_io_pwrite_full(fd, data, len, 0) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return tpar_err_set(err, TPAR_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    tpar_io_parent_dir(path, dir, sizeof dir);
    return tpar_io_fsync_dir(dir, err);
}

static int rm_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    int rc = (type == FTW_DP) ? rmdir(p) : unlink(p);
    return (rc != 0 && errno != ENOENT) ? -1 : 0;
}

tpar_status tpar_io_rmtree(const char *path, tpar_err_t *err) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return TPAR_OK;
        return tpar_err_set(err, TPAR_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    }
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return tpar_err_set(err, TPAR_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return TPAR_OK;
}
