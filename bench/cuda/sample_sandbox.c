/* The device sampler (lb_cuda_sample, src/backend/cuda/sample.cu) against the host's
 * (lb_sampler_next), then timed against what it replaces: copying the logits back and choosing on
 * the host.
 *   build/lb_sample_sandbox [DRAWS]   (needs a GPU; exits 1 when a check fails; default 40)
 *
 * Check: for vocabularies of 1, 7, 5000, 32000 and 128256 tokens and six kinds of logits (a normal
 * spread with three tokens above it, flat, mostly -1e4, a slow decay, neighbours a float apart
 * whose probabilities tie, and a spread with a quarter -inf), one launch takes 11 rows: the same
 * logits under 11 settings (greedy, top-k, top-p, both, neither, at several temperatures), each row
 * with its own seed. A host sampler with that seed chooses from the same logits; the device's
 * rows draw from a second sampler with the seed (lb_sampler_pick). Every choice must be equal.
 * Why exactly: the device sums mass in fixed point with an error under vocab *
 * 2^-min(47, 63 - bits(vocab)) of the mass (2^-29 at 128256), the host in doubles; they can part only for a draw that
 * close to a boundary between two tokens, and over this run's draws the expected count of such
 * draws is below 1e-3. Its exponentials are rounded once from double, glibc's expf within 0.502
 * ulp: a probability differs by an ulp in rare cases, which moves a boundary by 2^-24 of that one
 * token's probability.
 *
 * Timing: us a call (picks up, the launch, ids back; the mean of 200 after 10 untimed), for 1 and 16 rows, against
 * the host path of the same rows (their logits copied to pageable memory, then lb_sampler_next
 * for each), which is what generate did before. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "base/progress.h"
#include "model/model_internal.h"

enum { NSET = 11, NDIST = 6 }; /* (SETS[11]: timing only) */
static const lb_sampler_params SETS[NSET + 1] = {
    {.temperature = 0, .top_p = 1},
    {.temperature = 0.7, .top_p = 0.9},
    {.temperature = 1, .top_p = 0.5},
    {.temperature = 3, .top_p = 0.999},
    {.temperature = 1, .top_k = 5, .top_p = 1},
    {.temperature = 1, .top_k = 50, .top_p = 0.9},
    {.temperature = 0.5, .top_k = -1, .top_p = 1}, /* top_k -1: vocabulary - 1 */
    {.temperature = 2, .top_k = 300, .top_p = 0.3},
    {.temperature = 1, .top_p = 1},
    {.temperature = 0.6, .top_k = 1, .top_p = 0.9},
    {.temperature = 0.8, .top_k = 40, .top_p = 0.95},
    {.temperature = 1, .top_k = 50, .top_p = 1},
};
static const char *const DIST[NDIST] = {"peaked", "flat", "mostly -1e4", "slow decay", "float-apart pairs",
                                        "quarter -inf"};

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return (double)(rs >> 11) * 0x1.0p-53;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 0x1.0p-60)) * cos(6.283185307179586 * urand()); }

static void logits_of(int dist, int64_t n, float *l) {
  for (int64_t i = 0; i < n; i++) l[i] = (float)(2.5 * nrand());
  if (dist == 0 && n > 3) l[n / 3] = 14, l[n / 2] = 13, l[n - 1] = 12.5f;
  if (dist == 1)
    for (int64_t i = 0; i < n; i++) l[i] = 0.25f;
  if (dist == 2)
    for (int64_t i = 0; i < n; i++) l[i] = i % 97 == 0 ? (float)urand() : -1e4f;
  if (dist == 3)
    for (int64_t i = 0; i < n; i++) l[(i * 7919) % n] = -20.0f * (float)i / (float)n;
  if (dist == 4)
    for (int64_t i = 0; i + 1 < n; i += 2) l[i] = -8.0f * (float)i / (float)n, l[i + 1] = nextafterf(l[i], 1.0f);
  if (dist == 5)
    for (int64_t i = 0; i < n; i++)
      if (i % 4 == 1) l[i] = -INFINITY;
}

static void die(const char *what, const lb_error *e) {
  fprintf(stderr, "lb_sample_sandbox: %s: %s\n", what, e->msg);
  exit(2);
}
#define TRY(what, call) \
  do { \
    if ((call) != LB_OK) die(what, &err); \
  } while (0)

typedef struct {
  lb_cuda_ctx *cx;
  float *dl, *dp; /* device logits and probabilities [NSET][vmax] */
  lb_cuda_pick *dk, *hk;
  int32_t *did;
} dev;

/* One launch over rows: the picks drawn from smp, the chosen ids back into ids (which waits). */
static void launch(dev *d, lb_sampler **smp, int rows, int64_t n, int32_t *ids) {
  lb_error err = {0};
  for (int r = 0; r < rows; r++) lb_sampler_pick(smp[r], &d->hk[r].temperature, &d->hk[r].top_p, &d->hk[r].top_k, &d->hk[r].u);
  TRY("picks", lb_cuda_put(d->cx, d->dk, d->hk, (size_t)rows * sizeof *d->hk, &err));
  TRY("sample", lb_cuda_sample(d->cx, d->dl, d->dp, rows, n, d->dk, d->did, &err));
  TRY("ids", lb_cuda_get(d->cx, ids, d->did, (size_t)rows * 4, &err));
}

static lb_sampler_params params(int s, int64_t n, uint64_t seed) {
  lb_sampler_params p = SETS[s];
  if (p.top_k < 0) p.top_k = n - 1;
  p.seed = seed;
  return p;
}

static int check(dev *d, int64_t n, int dist, int draws, float *l) {
  lb_error err = {0};
  logits_of(dist, n, l);
  for (int r = 0; r < NSET; r++) TRY("logits", lb_cuda_put(d->cx, d->dl + r * n, l, (size_t)n * 4, &err));
  lb_sampler *host[NSET], *gpu[NSET];
  for (int r = 0; r < NSET; r++) {
    const lb_sampler_params p = params(r, n, 1000 + (uint64_t)(r * 7 + dist));
    TRY("sampler", lb_sampler_new(&p, n, &host[r], &err));
    TRY("sampler", lb_sampler_new(&p, n, &gpu[r], &err));
  }
  int bad = 0, distinct = 0;
  int32_t ids[NSET], first[NSET];
  for (int k = 0; k < draws; k++) {
    launch(d, gpu, NSET, n, ids);
    for (int r = 0; r < NSET; r++) {
      const int32_t want = lb_sampler_next(host[r], l);
      if (ids[r] != want && bad++ < 5)
        printf("  MISMATCH vocab %lld, %s, settings %d, draw %d: device %d, host %d\n", (long long)n, DIST[dist], r, k,
               ids[r], want);
      if (k == 0) first[r] = ids[r];
      else distinct += ids[r] != first[r];
    }
  }
  for (int r = 0; r < NSET; r++) lb_sampler_free(host[r]), lb_sampler_free(gpu[r]);
  printf("| %lld | %s | %d | %d | %s |\n", (long long)n, DIST[dist], NSET * draws, distinct, bad ? "FAILED" : "equal");
  return bad;
}

/* us a launch of rows rows under settings s (the mean of 200), and of the host path. */
static void timing(dev *d, int64_t n, int rows, int s, const char *name, float *l, float *hl) {
  lb_error err = {0};
  logits_of(name[0] == 'f' ? 1 : 0, n, l);
  for (int r = 0; r < rows; r++) TRY("logits", lb_cuda_put(d->cx, d->dl + r * n, l, (size_t)n * 4, &err));
  lb_sampler *smp[16];
  for (int r = 0; r < rows; r++) {
    const lb_sampler_params p = params(s, n, (uint64_t)r);
    TRY("sampler", lb_sampler_new(&p, n, &smp[r], &err));
  }
  int32_t ids[16];
  for (int k = 0; k < 10; k++) launch(d, smp, rows, n, ids);
  double t0 = lb_now();
  for (int k = 0; k < 200; k++) launch(d, smp, rows, n, ids);
  const double dev_us = (lb_now() - t0) / 200 * 1e6;
  t0 = lb_now();
  for (int k = 0; k < 200; k++) {
    TRY("logits back", lb_cuda_get(d->cx, hl, d->dl, (size_t)(rows * n) * 4, &err));
    for (int r = 0; r < rows; r++) ids[r] = lb_sampler_next(smp[r], hl + r * n);
  }
  const double host_us = (lb_now() - t0) / 200 * 1e6;
  for (int r = 0; r < rows; r++) lb_sampler_free(smp[r]);
  printf("| %s | %lld | %d | %.1f | %.1f | %.1fx |\n", name, (long long)n, rows, dev_us, host_us, host_us / dev_us);
}

int main(int argc, char **argv) {
  const int draws = argc > 1 ? atoi(argv[1]) : 40;
  static const int64_t VOCABS[] = {1, 7, 5000, 32000, 128256};
  const int64_t vmax = 128256;
  lb_error err = {0};
  dev d = {0};
  TRY("open", lb_cuda_open(&d.cx, &err));
  TRY("alloc", lb_cuda_alloc(d.cx, (size_t)(16 * vmax) * 4, (void **)&d.dl, &err));
  TRY("alloc", lb_cuda_alloc(d.cx, (size_t)(16 * vmax) * 4, (void **)&d.dp, &err));
  TRY("alloc", lb_cuda_alloc(d.cx, 16 * sizeof *d.dk, (void **)&d.dk, &err));
  TRY("alloc", lb_cuda_alloc(d.cx, 16 * 4, (void **)&d.did, &err));
  TRY("alloc", lb_cuda_host_alloc(16 * sizeof *d.hk, (void **)&d.hk, &err));
  float *l = malloc((size_t)vmax * 4), *hl = malloc((size_t)(16 * vmax) * 4);
  if (!l || !hl) return 2;
  printf("Device sampler against lb_sampler_next (%d draws a row):\n\n", draws);
  printf("| vocabulary | logits | draws | draws unlike the first | device vs host |\n| ---: | --- | ---: | ---: | --- |\n");
  int bad = 0;
  for (size_t v = 0; v < sizeof VOCABS / sizeof VOCABS[0]; v++)
    for (int dist = 0; dist < NDIST; dist++) bad += check(&d, VOCABS[v], dist, VOCABS[v] > 5000 ? draws : 5 * draws, l);
  printf("\nus a call: device (lb_cuda_sample, picks up, ids back) against host (logits back, lb_sampler_next):\n\n");
  printf("| settings | vocabulary | rows | device | host | host / device |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
  static const struct {
    int set;
    const char *name;
  } T[] = {{0, "greedy"}, {11, "T 1, top-k 50"}, {5, "T 1, top-k 50, top-p 0.9"}, {1, "T 0.7, top-p 0.9"},
           {8, "T 1, no cut"}, {1, "flat: T 0.7, top-p 0.9"}};
  for (int v = 3; v < 5; v++)
    for (int rows = 1; rows <= 16; rows += 15)
      for (size_t t = 0; t < sizeof T / sizeof T[0]; t++) timing(&d, VOCABS[v], rows, T[t].set, T[t].name, l, hl);
  printf("\n%s\n", bad ? "FAILED" : "all checks passed");
  free(l), free(hl);
  lb_cuda_host_release(d.hk);
  lb_cuda_close(d.cx);
  return bad ? 1 : 0;
}
