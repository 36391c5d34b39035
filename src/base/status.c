#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *lb_strerror(lb_status code) {
  switch (code) {
  case LB_OK: return "success";
  case LB_EIO: return "i/o error";
  case LB_EFORMAT: return "malformed file";
  case LB_EINVAL: return "invalid value";
  case LB_ENOMEM: return "out of memory";
  case LB_ENOTFOUND: return "not found";
  case LB_EUNSUPPORTED: return "not supported";
  case LB_EEXIST: return "already exists";
  }
  return "unknown error";
}

lb_status lb_fail(lb_error *err, lb_status code, const char *fmt, ...) {
  if (err) {
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

void lb_error_prefix(lb_error *err, const char *fmt, ...) {
  if (!err) return;
  char prefix[LB_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  char old[LB_ERROR_MSG_MAX];
  memcpy(old, err->msg, sizeof old);
  snprintf(err->msg, sizeof err->msg, "%.300s: %.700s", prefix, old);
}

const char *lb_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
  if (!cap) return buf;
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i <= ndim; i++) {
    char part[32];
    if (i < ndim) snprintf(part, sizeof part, "%s%lld", i ? ", " : "[", (long long)shape[i]);
    else snprintf(part, sizeof part, "%s]", ndim ? "" : "[");
    size_t n = strlen(part);
    if (k + n + 4 > cap) { /* no room: mark the cut */
      snprintf(buf + k, cap - k, "%s", cap - k > 3 ? "..." : "");
      return buf;
    }
    memcpy(buf + k, part, n + 1);
    k += n;
  }
  return buf;
}
