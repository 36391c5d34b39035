/* Name lookup over arrays of tensor pointers sorted by name (one file's, or a checkpoint's). */
#ifndef LB_IO_TENSOR_INDEX_H
#define LB_IO_TENSOR_INDEX_H

#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

/* qsort comparator for `const lb_tensor *` elements. */
static inline int lb_tensor_cmp_name(const void *a, const void *b) {
  return strcmp((*(const lb_tensor *const *)a)->name, (*(const lb_tensor *const *)b)->name);
}

static inline const lb_tensor *lb_tensor_bsearch(const lb_tensor *const *sorted, size_t n,
                                                 const char *name) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(sorted[mid]->name, name);
    if (c == 0) return sorted[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

#endif
