/* Next-token choice: greedy, or temperature + top-k + top-p sampling with a seeded generator
 * (xoshiro256**, seeded through splitmix64) so that a seed reproduces a run. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/status.h"
#include "lowbit.h"
#include "model/model_internal.h"

typedef struct {
  float p; /* while selecting, the logit; then the probability */
  int32_t id;
} cand;

struct lb_sampler {
  lb_sampler_params p;
  int64_t vocab;
  uint64_t s[4];
  cand *c;  /* the candidates kept, best first */
  float *prob; /* every token's probability (unnormalized) */
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
  if (!s || !(s->c = malloc((size_t)vocab * sizeof *s->c)) || !(s->prob = malloc((size_t)vocab * sizeof *s->prob))) {
    if (s) free(s->c);
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
  free(s->prob);
  free(s);
}

static int by_value_desc(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->p != y->p) return x->p < y->p ? 1 : -1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* a before b in by_value_desc's order (ids are distinct, so no two candidates tie) */
static bool better(const cand *a, const cand *b) { return a->p > b->p || (a->p == b->p && a->id < b->id); }

static void swap(cand *c, int64_t i, int64_t j) {
  cand t = c[i];
  c[i] = c[j], c[j] = t;
}

/* h[0..k) as a heap with the worst candidate (by_value_desc) at the root: h[i] sifted down. */
static void sift_down(cand *h, int64_t k, int64_t i) {
  for (;;) {
    int64_t w = i;
    const int64_t l = 2 * i + 1, r = l + 1;
    if (l < k && better(&h[w], &h[l])) w = l;
    if (r < k && better(&h[w], &h[r])) w = r;
    if (w == i) return;
    swap(h, i, w);
    i = w;
  }
}

/* The k largest of v[0..n) (then the lowest index) into h[0..k), largest first: one pass against
 * the smallest kept so far (the root of a heap), which few entries beat, then a sort of the k. */
static void select_top(const float *v, int64_t n, int64_t k, cand *h) {
  for (int64_t i = 0; i < k; i++) h[i] = (cand){v[i], (int32_t)i};
  for (int64_t i = k < n ? k / 2 : 0; i-- > 0;) sift_down(h, k, i); /* (k == n: the sort alone) */
  for (int64_t i = k; i < n; i++)
    if (v[i] > h[0].p) h[0] = (cand){v[i], (int32_t)i}, sift_down(h, k, 0);
  qsort(h, (size_t)k, sizeof *h, by_value_desc);
}

/* The smallest prefix of c[0..m) (best first) whose mass reaches share * total, m when none does;
 * *mass: that prefix's mass (summed in order, as the draw sums it). */
static int64_t prefix_reaching(const cand *c, int64_t m, double share, double total, double *mass) {
  double acc = 0;
  int64_t i = 0;
  while (i < m && (acc += c[i++].p) < share * total) {}
  *mass = acc;
  return i;
}

static int32_t argmax(const float *l, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (l[i] > l[best]) best = i;
  return (int32_t)best;
}

/* Greedy settings: the argmax, no draw. */
static bool greedy(const lb_sampler *s) { return s->p.temperature == 0 || s->p.top_k == 1; }

/* Temperature, then top-k, then top-p of what top-k kept, then a draw. Candidates rank by logit,
 * then id (so two logits whose probabilities round to one float keep their order; the device's
 * sampler, lb_cuda_sample, ranks the same way). Only the candidates that can be kept are sorted:
 * for top-k the k best logits, of which only those k are exponentiated; for top-p alone the
 * best 64, then 8 times as many (or as many as their mass shows are needed at least) until their
 * mass reaches top_p, all of them once that is more than an eighth of the vocabulary. (A sort of
 * the whole vocabulary took 3-4 ms a token at 32000 entries: BENCHMARKS.md.) */
int32_t lb_sampler_next(lb_sampler *s, const float *logits) {
  const int64_t n = s->vocab;
  if (greedy(s)) return argmax(logits, n);
  const float mx = logits[argmax(logits, n)];
  const double it = 1.0 / s->p.temperature; /* (a multiply a token, as lb_cuda_sample does) */
  cand *c = s->c;
  double sum = 0;
  int64_t keep; /* candidates c[0..keep) kept */
  if (s->p.top_k > 0 && s->p.top_k < n) {
    const int64_t k = s->p.top_k;
    select_top(logits, n, k, c);
    for (int64_t i = 0; i < k; i++) c[i].p = expf((float)((c[i].p - mx) * it)), sum += c[i].p;
    keep = s->p.top_p < 1 ? prefix_reaching(c, k, s->p.top_p, sum, &sum) : k;
  } else {
    for (int64_t i = 0; i < n; i++) sum += s->prob[i] = expf((float)((logits[i] - mx) * it));
    if (s->p.top_p >= 1) { /* no cut: draw in token order */
      double r = uniform(s) * sum, acc = 0;
      for (int64_t i = 0; i < n; i++)
        if (r < (acc += s->prob[i])) return (int32_t)i;
      return (int32_t)(n - 1);
    }
    const double total = sum;
    for (int64_t m = 64;;) {
      m = m <= n / 8 ? m : n; /* (a nearly flat distribution sorts everything, as before) */
      select_top(logits, n, m, c);
      for (int64_t i = 0; i < m; i++) c[i].p = s->prob[c[i].id];
      if ((keep = prefix_reaching(c, m, s->p.top_p, total, &sum)) < m || m == n) break;
      /* none of the rest is above the best m's mean (sum / m here), so at least
       * m top_p total / sum are needed: 8 m, or that when more */
      const double need = (double)m * s->p.top_p * total / sum;
      m = need > 8.0 * (double)m ? (need < (double)n ? (int64_t)need + 1 : n) : 8 * m;
    }
  }
  /* sum: the kept prefix's mass, which the draw takes its share of */
  double r = uniform(s) * sum, acc = 0;
  for (int64_t i = 0; i < keep; i++)
    if (r < (acc += c[i].p)) return c[i].id;
  return c[keep - 1].id;
}

void lb_sampler_pick(lb_sampler *s, double *temperature, double *top_p, int64_t *top_k, double *u) {
  *temperature = s->p.temperature, *top_p = s->p.top_p, *top_k = s->p.top_k;
  *u = greedy(s) ? 0 : uniform(s); /* as lb_sampler_next draws */
}

int64_t lb_sampler_vocab(const lb_sampler *s) { return s->vocab; }
