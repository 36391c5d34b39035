/* A persistent thread pool: n-1 workers created once, woken for each parallel region. A region is
 * split into n shares (the task's ith of nth) that any thread may claim, the caller included, so a
 * worker the OS has not scheduled yet delays nothing: the caller runs its share. Workers spin
 * briefly after a region (decode issues many small regions per token) and then sleep on a
 * condition variable, so an idle pool leaves the cores to OpenBLAS's own threads. Scratch indexed
 * by ith is private to a share, whichever thread runs it. */
#ifndef LB_BASE_THREADS_H
#define LB_BASE_THREADS_H

#include <stdatomic.h>

#include "lowbit.h"

typedef struct lb_pool lb_pool;
/* One share of a parallel region: share ith of nth. */
typedef void (*lb_task)(void *ctx, int ith, int nth);

/* n <= 0: one thread per logical core. */
lb_status lb_pool_new(int n, lb_pool **out, lb_error *err);
void lb_pool_free(lb_pool *p);
int lb_pool_size(const lb_pool *p);
/* Runs fn(ctx, i, n) once for every i in [0, n) and returns when all have finished. Not reentrant;
 * one caller at a time. */
void lb_pool_run(lb_pool *p, lb_task fn, void *ctx);

/* Dynamic split inside a region: each call claims the next `chunk` of n items from the shared
 * counter (zeroed before the region); false when none is left. A share whose thread runs late
 * (another process on its core) then takes fewer chunks instead of holding up the region. */
static inline bool lb_claim(_Atomic int64_t *next, int64_t n, int64_t chunk, int64_t *lo,
                            int64_t *hi) {
  *lo = atomic_fetch_add_explicit(next, chunk, memory_order_relaxed);
  *hi = *lo + chunk < n ? *lo + chunk : n;
  return *lo < n;
}

/* [*lo, *hi) of ith's share when n items are split into nth nearly equal parts. */
static inline void lb_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
  *lo = n * ith / nth;
  *hi = n * (ith + 1) / nth;
}

#endif
