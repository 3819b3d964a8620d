#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int open_regular_at(int dirfd, const char *name, struct stat *st, enum open_result *why,
                    int *error_number)
{
    *why = OPEN_OK;
    *error_number = 0;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        struct stat lst;
        if (e == ENOENT)
            *why = OPEN_MISSING;
        else if (e == ELOOP || (fstatat(dirfd, name, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
                                S_ISLNK(lst.st_mode)))
            *why = OPEN_LINK;
        else {
            *why = OPEN_ERROR;
            *error_number = e;
        }
        return -1;
    }
    if (fstat(fd, st) != 0) {
        *why = OPEN_ERROR;
        *error_number = errno;
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        *why = OPEN_NOT_REGULAR;
        close(fd);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        *why = OPEN_ERROR;
        *error_number = errno;
        close(fd);
        return -1;
    }
    return fd;
}

/* Write all of `len` bytes, at the file offset (offset < 0) or at `offset`. */
static bool drain(int fd, const void *data, size_t len, off_t offset)
{
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = offset < 0 ? write(fd, p + done, len - done)
                               : pwrite(fd, p + done, len - done, offset + (off_t)done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (n == 0) {
            errno = EIO;
            return false;
        }
        done += (size_t)n;
    }
    return true;
}

bool write_all(int fd, const void *data, size_t len)
{
    return drain(fd, data, len, -1);
}

bool pwrite_all(int fd, const void *data, size_t len, off_t offset)
{
    return drain(fd, data, len, offset);
}

/* Read until `len` bytes or end of file, from the file offset (offset < 0) or at `offset`. */
static ssize_t fill(int fd, void *data, size_t len, off_t offset)
{
    char *p = data;
    size_t got = 0;
    while (got < len) {
        ssize_t n = offset < 0 ? read(fd, p + got, len - got)
                               : pread(fd, p + got, len - got, offset + (off_t)got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t read_full(int fd, void *data, size_t len)
{
    return fill(fd, data, len, -1);
}

ssize_t pread_full(int fd, void *data, size_t len, off_t offset)
{
    return fill(fd, data, len, offset);
}
