/* Internal error helpers: every failure path writes one message naming where and what. */
#ifndef LB_BASE_STATUS_H
#define LB_BASE_STATUS_H

#include "lowbit.h"

/* Writes "fmt ..." into err (when non-NULL) and returns code, so that a failure is one statement:
 *   return lb_fail(err, LB_EFORMAT, "%s: tensor '%s': shape ...", path, name); */
lb_status lb_fail(lb_error *err, lb_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an error message already set (used to add the file or tensor context). */
void lb_error_prefix(lb_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LB_TRY(expr)                                                                               \
  do {                                                                                             \
    lb_status lb_try_s_ = (expr);                                                                  \
    if (lb_try_s_ != LB_OK) return lb_try_s_;                                                      \
  } while (0)

#endif
