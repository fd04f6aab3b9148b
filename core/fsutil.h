/*
 * fsutil.h - file-system and file-descriptor helpers shared by the store,
 * the model hub cache and the tools.
 *
 * All return 0 or a negative errno; the fs_mkdirs() error also sets
 * err_msg() (core/err.h).  Thread-safe.
 */
#ifndef DYN_FSUTIL_H
#define DYN_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p: create path and every missing parent with mode. */
int fs_mkdirs(const char *path, mode_t mode);
/* Create every missing parent directory of the file path. */
int fs_mkdirs_parent(const char *path, mode_t mode);

/* write(2)/read(2) until all len bytes are done, retrying on EINTR.
 * fd_read_full returns -EIO at end of file before len bytes. */
int fd_write_all(int fd, const void *buf, size_t len);
int fd_read_full(int fd, void *buf, size_t len);

#endif
