/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fakevfio: libc entry points that libfakevfio.so interposes but that no
 * system header declares unless _FORTIFY_SOURCE is on.  The list of faked
 * ioctls and the environment contract are at the top of fakevfio.c.
 */

#ifndef FAKEVFIO_H
#define FAKEVFIO_H

#include <sys/types.h>

int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset,
                    size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t offset,
                      size_t buflen);

#endif /* FAKEVFIO_H */
