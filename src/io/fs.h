/* Small filesystem helpers with lowbit errors. */
#ifndef LB_IO_FS_H
#define LB_IO_FS_H

#include <stdio.h>
#include <stdlib.h>

#include "base/status.h"

/* Reads a whole file (at most max_bytes) into a malloc'd, NUL-terminated buffer. */
lb_status lb_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                       lb_error *err);
/* Writes a whole file under a temporary name in the same folder, then renames it into place. */
lb_status lb_write_file_atomic(const char *path, const void *data, size_t len, lb_error *err);
/* Copies a file (to a temporary name, renamed when complete). */
lb_status lb_copy_file(const char *src, const char *dst, lb_error *err);
/* Writes all of buf to f, naming `path` on failure. */
lb_status lb_fwrite_all(FILE *f, const void *buf, size_t len, const char *path, lb_error *err);
/* Appends the bytes [off, off+len) of file `src` to f. */
lb_status lb_fcopy_range(FILE *dst, const char *dst_path, FILE *src, const char *src_path,
                         size_t len, lb_error *err);
/* Flushes, fsyncs and closes f. */
lb_status lb_fclose_sync(FILE *f, const char *path, lb_error *err);
bool lb_path_exists(const char *path);
bool lb_is_dir(const char *path);
/* Removes a directory tree (best effort; used to clean up failed outputs). */
void lb_remove_tree(const char *path);
/* "dir/name" into a malloc'd string. */
char *lb_path_join(const char *dir, const char *name);

#endif
