#include "base/threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/status.h"

/* A region is split into n shares (the task's ith/nth); any thread may run any share, claimed by
 * compare-and-swap on `state` = generation << 32 | shares claimed. The caller claims shares too, so
 * when a worker has not been scheduled yet (a busy machine, more threads than free cores) the caller
 * runs its share instead of waiting a whole time slice for it. A worker that wakes late finds its
 * generation gone or every share claimed, and goes back to waiting. */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

enum { SPIN_ROUNDS = 4000 }; /* ~50-100 microseconds of polling before sleeping or yielding */

struct lb_pool {
  int n;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  _Atomic uint64_t state; /* generation << 32 | next share */
  atomic_int done;        /* shares finished in the current region */
  atomic_bool stop;
  _Atomic(lb_task) fn;
  _Atomic(void *) ctx;
};

static uint32_t gen_of(uint64_t s) { return (uint32_t)(s >> 32); }

/* Claims and runs shares of generation g until none is left. */
static void run_shares(lb_pool *p, uint32_t g) {
  for (;;) {
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    if (gen_of(s) != g || (uint32_t)s >= (uint32_t)p->n) return;
    lb_task fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
    if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel,
                                               memory_order_acquire))
      continue;
    /* the claim succeeded for generation g, so fn/ctx (written before g was published and not
     * changed until all of g's shares are done) are g's */
    fn(ctx, (int)(uint32_t)s, p->n);
    atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
  }
}

static void *worker(void *arg) {
  lb_pool *p = arg;
  uint32_t seen = 0;
  for (;;) {
    uint32_t g;
    int spins = 0;
    while ((g = gen_of(atomic_load_explicit(&p->state, memory_order_acquire))) == seen &&
           !atomic_load(&p->stop) && spins < SPIN_ROUNDS) {
      cpu_relax();
      spins++;
    }
    if (g == seen && !atomic_load(&p->stop)) {
      pthread_mutex_lock(&p->mu);
      while ((g = gen_of(atomic_load(&p->state))) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop)) return NULL;
    seen = g;
    run_shares(p, g);
  }
}

lb_status lb_pool_new(int n, lb_pool **out, lb_error *err) {
  *out = NULL;
  if (n <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  if (n > 1024) return lb_fail(err, LB_EINVAL, "threads: %d is more than 1024", n);
  lb_pool *p = calloc(1, sizeof *p);
  if (!p || !(p->threads = calloc((size_t)n, sizeof *p->threads))) {
    free(p);
    return lb_fail(err, LB_ENOMEM, "threads: out of memory for a pool of %d", n);
  }
  p->n = 1;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  /* generation 0 with every share claimed: nothing to do until the first region */
  atomic_store(&p->state, (uint64_t)(uint32_t)n);
  for (int i = 1; i < n; i++) {
    if (pthread_create(&p->threads[i], NULL, worker, p) != 0) break;
    p->n = i + 1;
  }
  if (p->n != n) {
    int got = p->n;
    lb_pool_free(p);
    return lb_fail(err, LB_ENOMEM, "threads: could start only %d of %d threads", got, n);
  }
  *out = p;
  return LB_OK;
}

void lb_pool_free(lb_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->stop, true);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  free(p->threads);
  free(p);
}

int lb_pool_size(const lb_pool *p) { return p ? p->n : 1; }

void lb_pool_run(lb_pool *p, lb_task fn, void *ctx) {
  if (!p || p->n == 1) {
    fn(ctx, 0, 1);
    return;
  }
  atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
  atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
  atomic_store_explicit(&p->done, 0, memory_order_relaxed);
  uint32_t g = gen_of(atomic_load(&p->state)) + 1;
  pthread_mutex_lock(&p->mu);
  atomic_store_explicit(&p->state, (uint64_t)g << 32, memory_order_release);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  run_shares(p, g);
  /* every share is claimed; wait for those still running elsewhere */
  for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < p->n; spins++) {
    if (spins < SPIN_ROUNDS) cpu_relax();
    else sched_yield();
  }
}
