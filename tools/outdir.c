/* Building an output checkpoint folder safely (convert, quantize): DST is made under a temporary name
 * beside it, filled, given SRC's companion files, and renamed into place only when complete; an
 * existing DST is replaced (with --force) only after the new one is in place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "cli.h"
#include "io/fs.h"

/* mkdir -p of the folder that will hold path (its parent), so DST may name a new subfolder. */
static lb_status make_parents(const char *path, lb_error *err) {
  char *p = strdup(path);
  if (!p) return lb_fail(err, LB_ENOMEM, "out of memory");
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      lb_status r = lb_fail(err, LB_EIO, "%s: cannot create: %s", p, strerror(errno));
      free(p);
      return r;
    }
    *s = '/';
  }
  free(p);
  return LB_OK;
}

lb_status cli_build_output(const char *dst, bool force, const lb_checkpoint *src, cli_fill_fn fill,
                           void *ctx, lb_error *err) {
  if (lb_path_exists(dst) && !force)
    return lb_fail(err, LB_EEXIST, "%s: already exists (use --force to replace it)", dst);
  size_t n = strlen(dst) + 48;
  char *tmp = malloc(n), *old = malloc(n);
  lb_status s = tmp && old ? make_parents(dst, err) : lb_fail(err, LB_ENOMEM, "out of memory");
  if (s == LB_OK) {
    snprintf(tmp, n, "%s.lowbit-tmp-%ld", dst, (long)getpid());
    snprintf(old, n, "%s.lowbit-old-%ld", dst, (long)getpid());
    if (mkdir(tmp, 0755) != 0) s = lb_fail(err, LB_EIO, "%s: cannot create: %s", tmp, strerror(errno));
  }
  if (s == LB_OK) {
    s = fill(ctx, tmp, err);
    const char *name;
    for (size_t i = 0; src && (name = lb_checkpoint_companion(i)) && s == LB_OK; i++) {
      if (!lb_checkpoint_has_file(src, name)) continue;
      char *a = lb_path_join(lb_checkpoint_dir(src), name), *b = lb_path_join(tmp, name);
      s = a && b ? lb_copy_file(a, b, err) : lb_fail(err, LB_ENOMEM, "out of memory");
      free(a);
      free(b);
    }
    bool moved_old = false;
    if (s == LB_OK && lb_path_exists(dst)) {
      if (rename(dst, old) != 0) s = lb_fail(err, LB_EIO, "%s: cannot move aside: %s", dst, strerror(errno));
      else moved_old = true;
    }
    if (s == LB_OK && rename(tmp, dst) != 0) {
      s = lb_fail(err, LB_EIO, "%s: cannot rename into place: %s", dst, strerror(errno));
      if (moved_old) rename(old, dst);
      moved_old = false;
    }
    if (moved_old) lb_remove_tree(old);
    if (s != LB_OK) lb_remove_tree(tmp);
  }
  free(tmp);
  free(old);
  return s;
}
