/* Next-token choice: greedy, or temperature + top-k + top-p sampling with a seeded generator
 * (xoshiro256**, seeded through splitmix64) so that a seed reproduces a run. */
#include <math.h>
#include <stdlib.h>

#include "base/status.h"
#include "lowbit.h"

typedef struct {
  float p;
  int32_t id;
} cand;

struct lb_sampler {
  lb_sampler_params p;
  int64_t vocab;
  uint64_t s[4];
  cand *c;
};

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static double uniform(lb_sampler *s) { /* [0, 1) with 53 random bits */
  uint64_t *q = s->s, r = rotl(q[1] * 5, 7) * 9, t = q[1] << 17;
  q[2] ^= q[0], q[3] ^= q[1], q[1] ^= q[2], q[0] ^= q[3], q[2] ^= t, q[3] = rotl(q[3], 45);
  return (double)(r >> 11) * 0x1.0p-53;
}

lb_status lb_sampler_new(const lb_sampler_params *p, int64_t vocab, lb_sampler **out,
                         lb_error *err) {
  *out = NULL;
  if (!(p->temperature >= 0) || !(p->top_p > 0 && p->top_p <= 1) || p->top_k < 0 || vocab < 1)
    return lb_fail(err, LB_EINVAL,
                   "sampler: temperature %g must be >= 0, top-p %g in (0, 1], top-k %lld >= 0",
                   p->temperature, p->top_p, (long long)p->top_k);
  lb_sampler *s = calloc(1, sizeof *s);
  if (!s || !(s->c = malloc((size_t)vocab * sizeof *s->c))) {
    free(s);
    return lb_fail(err, LB_ENOMEM, "sampler: out of memory");
  }
  s->p = *p;
  s->vocab = vocab;
  uint64_t x = p->seed;
  for (int i = 0; i < 4; i++) s->s[i] = splitmix(&x);
  *out = s;
  return LB_OK;
}

void lb_sampler_free(lb_sampler *s) {
  if (!s) return;
  free(s->c);
  free(s);
}

static int by_prob_desc(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->p != y->p) return x->p < y->p ? 1 : -1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t argmax(const float *l, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (l[i] > l[best]) best = i;
  return (int32_t)best;
}

int32_t lb_sampler_next(lb_sampler *s, const float *logits) {
  int64_t n = s->vocab;
  if (s->p.temperature == 0 || s->p.top_k == 1) return argmax(logits, n);
  float mx = logits[argmax(logits, n)];
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    s->c[i].id = (int32_t)i;
    s->c[i].p = expf((float)((logits[i] - mx) / s->p.temperature));
    sum += s->c[i].p;
  }
  int64_t keep = n;
  if ((s->p.top_k > 0 && s->p.top_k < n) || s->p.top_p < 1) {
    qsort(s->c, (size_t)n, sizeof *s->c, by_prob_desc);
    if (s->p.top_k > 0 && s->p.top_k < n) keep = s->p.top_k;
    double kept = 0;
    for (int64_t i = 0; i < keep; i++) kept += s->c[i].p;
    if (s->p.top_p < 1) { /* smallest prefix whose share of the kept mass reaches top_p */
      double acc = 0;
      for (int64_t i = 0; i < keep; i++) {
        acc += s->c[i].p;
        if (acc >= s->p.top_p * kept) {
          keep = i + 1;
          break;
        }
      }
    }
    sum = 0;
    for (int64_t i = 0; i < keep; i++) sum += s->c[i].p;
  }
  double r = uniform(s) * sum, acc = 0;
  for (int64_t i = 0; i < keep; i++) {
    acc += s->c[i].p;
    if (r < acc) return s->c[i].id;
  }
  return s->c[keep - 1].id;
}
