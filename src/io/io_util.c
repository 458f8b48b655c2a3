/* Positional I/O that survives EINTR and short transfers; durable atomic file replacement. */
#define _XOPEN_SOURCE 700
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
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
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return tpar_err_set(err, TPAR_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
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
