/* A progress bar on stderr for long work: label, bar, percent, done/total, rate and ETA.
 * Drawn only when stderr is a terminal (or LOWBIT_PROGRESS=1), at most 10 times a second. */
#ifndef LB_BASE_PROGRESS_H
#define LB_BASE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct lb_progress {
  const char *label;
  const char *unit; /* "MB", "layers", ... */
  double scale;     /* done/total are divided by this for display */
  uint64_t total;
  double t0, last;
  bool enabled;
} lb_progress;

void lb_progress_start(lb_progress *p, const char *label, uint64_t total, const char *unit,
                       double scale);
void lb_progress_update(lb_progress *p, uint64_t done);
void lb_progress_finish(lb_progress *p);
double lb_now(void); /* monotonic seconds */

#endif
