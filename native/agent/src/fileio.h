/* File helpers that never follow a link the untrusted side planted and never block on a FIFO,
 * plus whole-buffer reads and writes (the kernel may transfer less than asked). */
#ifndef AGENT_FILEIO_H
#define AGENT_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Why open_regular_at refused. */
enum open_result {
    OPEN_OK = 0,
    OPEN_MISSING,     /* no such file */
    OPEN_LINK,        /* a symbolic link */
    OPEN_NOT_REGULAR, /* a folder, FIFO, socket or device */
    OPEN_ERROR,       /* any other error; errno is kept in *error_number */
};

/* Open dirfd/name for reading: O_NOFOLLOW (a link is refused), O_NONBLOCK while opening (a FIFO
 * cannot stall us), then checked to be a regular file and switched back to blocking reads.
 * Returns the descriptor (close-on-exec) and its stat, or -1 and why. */
int open_regular_at(int dirfd, const char *name, struct stat *st, enum open_result *why,
                    int *error_number);

bool write_all(int fd, const void *data, size_t len);
/* The same at a file offset (the descriptor's offset is not used or moved). */
bool pwrite_all(int fd, const void *data, size_t len, off_t offset);
/* Read until `len` bytes or end of file; returns the bytes read, or -1 on an error. */
ssize_t read_full(int fd, void *data, size_t len);
ssize_t pread_full(int fd, void *data, size_t len, off_t offset);

#endif
