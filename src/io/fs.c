#include "io/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *lb_path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t k = a;
  if (a && dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}

bool lb_path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

bool lb_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Opens a regular file for reading and gets its size; NULL (with err set) otherwise. */
static FILE *open_regular(const char *path, size_t *size, lb_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    lb_fail(err, LB_EIO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    lb_fail(err, LB_EIO, "%s: not a regular file", path);
    return NULL;
  }
  *size = (size_t)st.st_size;
  return f;
}

lb_status lb_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                       lb_error *err) {
  size_t n;
  FILE *f = open_regular(path, &n, err);
  if (!f) return LB_EIO;
  if (n > max_bytes) {
    fclose(f);
    return lb_fail(err, LB_EFORMAT, "%s: %zu bytes is larger than the %zu-byte limit", path, n,
                   max_bytes);
  }
  char *buf = malloc(n + 1);
  if (!buf) {
    fclose(f);
    return lb_fail(err, LB_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
  }
  size_t got = fread(buf, 1, n, f);
  fclose(f);
  if (got != n) {
    free(buf);
    return lb_fail(err, LB_EIO, "%s: short read (%zu of %zu bytes)", path, got, n);
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return LB_OK;
}

lb_status lb_fwrite_all(FILE *f, const void *buf, size_t len, const char *path, lb_error *err) {
  if (len && fwrite(buf, 1, len, f) != len)
    return lb_fail(err, LB_EIO, "%s: write failed: %s", path, strerror(errno));
  return LB_OK;
}

lb_status lb_fclose_sync(FILE *f, const char *path, lb_error *err) {
  int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
  int e = errno;
  bad |= fclose(f) != 0;
  if (bad) return lb_fail(err, LB_EIO, "%s: write failed: %s", path, strerror(e ? e : errno));
  return LB_OK;
}

lb_status lb_fcopy_range(FILE *dst, const char *dst_path, FILE *src, const char *src_path,
                         size_t len, lb_error *err) {
  enum { CHUNK = 1 << 20 };
  char *buf = malloc(CHUNK);
  if (!buf) return lb_fail(err, LB_ENOMEM, "%s: out of memory", dst_path);
  lb_status s = LB_OK;
  while (len && s == LB_OK) {
    size_t want = len < CHUNK ? len : CHUNK;
    size_t got = fread(buf, 1, want, src);
    if (got != want) {
      s = lb_fail(err, LB_EIO, "%s: short read while copying", src_path);
      break;
    }
    s = lb_fwrite_all(dst, buf, got, dst_path, err);
    len -= got;
  }
  free(buf);
  return s;
}

static char *tmp_name(const char *path) {
  size_t n = strlen(path) + 32;
  char *t = malloc(n);
  if (t) snprintf(t, n, "%s.tmp-%ld", path, (long)getpid());
  return t;
}

/* Ends a write to `tmp` begun with status s: sync and close f, rename tmp to path when all went
 * well, remove tmp otherwise. */
static lb_status finish_tmp(FILE *f, char *tmp, const char *path, lb_status s, lb_error *err) {
  lb_status c = lb_fclose_sync(f, tmp, err);
  if (s == LB_OK) s = c;
  if (s == LB_OK && rename(tmp, path) != 0)
    s = lb_fail(err, LB_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
  if (s != LB_OK) remove(tmp);
  free(tmp);
  return s;
}

/* Opens a temporary file beside path for writing. */
static FILE *open_tmp(const char *path, char **tmp, lb_error *err) {
  *tmp = tmp_name(path);
  FILE *f = *tmp ? fopen(*tmp, "wb") : NULL;
  if (!f) {
    lb_fail(err, LB_EIO, "%s: cannot create: %s", *tmp ? *tmp : path, strerror(errno));
    free(*tmp);
  }
  return f;
}

lb_status lb_write_file_atomic(const char *path, const void *data, size_t len, lb_error *err) {
  char *tmp;
  FILE *f = open_tmp(path, &tmp, err);
  if (!f) return LB_EIO;
  return finish_tmp(f, tmp, path, lb_fwrite_all(f, data, len, tmp, err), err);
}

lb_status lb_copy_file(const char *src, const char *dst, lb_error *err) {
  size_t size;
  FILE *in = open_regular(src, &size, err);
  if (!in) return LB_EIO;
  char *tmp;
  FILE *out = open_tmp(dst, &tmp, err);
  lb_status s = LB_EIO;
  if (out) s = finish_tmp(out, tmp, dst, lb_fcopy_range(out, tmp, in, src, size, err), err);
  fclose(in);
  return s;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

void lb_remove_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }
