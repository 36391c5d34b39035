#include "base/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double lb_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void lb_progress_start(lb_progress *p, const char *label, uint64_t total, const char *unit,
                       double scale) {
  const char *env = getenv("LOWBIT_PROGRESS");
  p->label = label;
  p->unit = unit;
  p->scale = scale > 0 ? scale : 1;
  p->total = total;
  p->t0 = lb_now();
  p->last = 0;
  p->enabled = env ? strcmp(env, "0") != 0 : isatty(STDERR_FILENO);
}

static void draw(lb_progress *p, uint64_t done, double now) {
  enum { W = 30 };
  double frac = p->total ? (double)done / (double)p->total : 1.0;
  if (frac > 1) frac = 1;
  char bar[W + 1];
  int fill = (int)(frac * W);
  for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
  bar[W] = 0;
  double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
  double eta = rate > 0 ? (double)(p->total - (done < p->total ? done : p->total)) / rate : 0;
  fprintf(stderr, "\r%-12s [%s] %3.0f%% %.1f/%.1f %s  %.1f %s/s  ETA %.0fs ", p->label, bar,
          100 * frac, (double)done / p->scale, (double)p->total / p->scale, p->unit,
          rate / p->scale, p->unit, eta);
  fflush(stderr);
}

void lb_progress_update(lb_progress *p, uint64_t done) {
  if (!p->enabled) return;
  double now = lb_now();
  if (now - p->last < 0.1 && done < p->total) return;
  p->last = now;
  draw(p, done, now);
}

void lb_progress_finish(lb_progress *p) {
  if (!p->enabled) return;
  draw(p, p->total, lb_now());
  fputc('\n', stderr);
}
