#include "quant/formats/layout.h"

#include <stdio.h>

#include "base/status.h"

lb_status lb_layout_name(char *buf, const char *prefix, const char *suffix, lb_error *err) {
  if ((size_t)snprintf(buf, LB_LAYOUT_NAME_MAX, "%s%s", prefix, suffix) >= LB_LAYOUT_NAME_MAX)
    return lb_fail(err, LB_EINVAL, "%.200s: module name too long", prefix);
  return LB_OK;
}

lb_status lb_layout_find(const lb_tensors *ts, const char *prefix, const char *suffix, bool required,
                         char *name, const lb_tensor **t, lb_error *err) {
  LB_TRY(lb_layout_name(name, prefix, suffix, err));
  *t = lb_tensors_find(ts, name);
  if (!*t && required) return lb_fail(err, LB_ENOTFOUND, "%s: tensor is missing", name);
  return LB_OK;
}

lb_status lb_layout_expect(const lb_tensor *t, const char *name, lb_dtype dt, int ndim, int64_t d0,
                           int64_t d1, lb_error *err) {
  int64_t want[2] = {d0, d1};
  bool ok = t->dtype == dt && t->ndim == ndim;
  for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == want[d];
  if (ok) return LB_OK;
  char a[96], b[96];
  return lb_fail(err, LB_EFORMAT, "%s: expected %s %s, got %s %s", name, lb_dtype_name(dt),
                 lb_shape_str(want, ndim, a, sizeof a), lb_dtype_name(t->dtype),
                 lb_shape_str(t->shape, t->ndim, b, sizeof b));
}
