/* Looking up the tensors of one module's on-disk layout, shared by the format readers:
 * "<prefix><suffix>" with the suffix carrying its dot (".qweight", ".weight.absmax"). */
#ifndef LB_QUANT_FORMATS_LAYOUT_H
#define LB_QUANT_FORMATS_LAYOUT_H

#include "lowbit.h"

#define LB_LAYOUT_NAME_MAX 1024

/* "<prefix><suffix>" into buf (LB_LAYOUT_NAME_MAX bytes); LB_EINVAL when it does not fit. */
lb_status lb_layout_name(char *buf, const char *prefix, const char *suffix, lb_error *err);
/* The tensor "<prefix><suffix>" (its name into `name`): *t = NULL when absent and not required;
 * required and absent: LB_ENOTFOUND "<name>: tensor is missing". */
lb_status lb_layout_find(const lb_tensors *ts, const char *prefix, const char *suffix, bool required,
                         char *name, const lb_tensor **t, lb_error *err);
/* t must have dtype dt and shape {d0[, d1]} (ndim 1 or 2): LB_EFORMAT
 * "<name>: expected I32 [12, 64], got F16 [12, 64]". */
lb_status lb_layout_expect(const lb_tensor *t, const char *name, lb_dtype dt, int ndim, int64_t d0,
                           int64_t d1, lb_error *err);

#endif
