/* HQQ: min/max init + the half-quadratic proximal solver of hqq's optimize_weights_proximal, in
 * fp32 as hqq runs it on the CPU (see quant/hqq.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "base/threads.h"
#include "quant/hqq.h"

/* PyTorch evaluates W * scale + zero as two rounded ops; a fused multiply-add would change codes at
 * rounding ties, so contraction stays off whatever flags the build adds. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

lb_hqq_opts lb_hqq_default_opts(int nbits) {
  lb_hqq_opts o = {.optimize = true,
                   .round_zero = nbits == 4,
                   .lp_norm = 0.7f,
                   .beta = 1e1,
                   .kappa = 1.0,
                   .iters = 20,
                   .early_stop = true};
  return o;
}

lb_status lb_hqq_quantize(const float *w, int64_t rows, int64_t cols, int nbits, int64_t group_size,
                          int axis, lb_qweight *out, lb_error *err) {
  lb_hqq_opts o = lb_hqq_default_opts(nbits);
  return lb_hqq_quantize_ex(w, rows, cols, nbits, group_size, axis, &o, out, err);
}

static float clampq(float v, float maxv) { return v < 0.0f ? 0.0f : v > maxv ? maxv : v; }

static float signf(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }

/* One solver round over groups [k0, k1): the new zeros go to znew and each group's sum of |W - W_r|
 * (of the codes the round started from) to gerr. Per-group sums are in double: PyTorch and numpy
 * both sum fp32 pairwise/vectorized, each close to the exact sum, the common target. */
static void prox_groups(const float *w, int64_t k0, int64_t k1, int64_t gs, const float *s,
                        const float *z, float *znew, double *gerr, float maxv, float inv_beta,
                        float p1) {
  /* The shrink is positive only where |d|^(1-p) > 1/beta, i.e. |d| > (1/beta)^(1/(1-p)) (p < 1):
   * 0.17 for beta 10, p -0.3, far above the residuals of real weights. Below 0.999 of that bound
   * the clamped value is exactly 0 whatever powf rounds to (the margin is 1000x float rounding), so
   * the powf call is skipped there: same results, several times faster. */
  const double thr = p1 < 1.0f ? 0.999 * pow((double)inv_beta, 1.0 / (1.0 - (double)p1)) : 0.0;
  for (int64_t k = k0; k < k1; k++) {
    const float *x = w + k * gs;
    double acc = 0.0, err = 0.0;
    for (int64_t j = 0; j < gs; j++) {
      float t = x[j] * s[k];
      float q = clampq(rintf(t + z[k]), maxv);
      float wr = (q - z[k]) / s[k];
      float d = x[j] - wr, ad = fabsf(d);
      /* shrink_lp_op: sign(x) * relu(|x| - (1 / beta) * pow(|x|, p - 1)); |x| = 0 gives
       * 0 - inf, clamped to 0, as in PyTorch. x - (+-0) is x. */
      float a = x[j];
      if ((double)ad >= thr) {
        float sh = ad - inv_beta * powf(ad, p1);
        a = x[j] - signf(d) * (sh > 0.0f ? sh : 0.0f);
      }
      float b = a * s[k];
      acc += (double)(q - b);
      err += (double)ad;
    }
    znew[k] = (float)(acc / (double)gs);
    gerr[k] = err;
  }
}

typedef struct {
  const float *w, *s;
  float *z, *znew;
  double *gerr;
  int64_t n, gs;
  float maxv, inv_beta;
  float p1;
} prox_job;

static void prox_task(void *ctx, int ith, int nth) {
  prox_job *j = ctx;
  int64_t lo, hi;
  lb_split(j->n, ith, nth, &lo, &hi);
  prox_groups(j->w, lo, hi, j->gs, j->s, j->z, j->znew, j->gerr, j->maxv, j->inv_beta, j->p1);
}

/* One solver round over all groups on the pool: updates z and returns the mean |W - W_r|, summed
 * group by group in order (the same value whatever the number of threads). */
static float prox_round(lb_pool *pool, prox_job *j) {
  lb_pool_run(pool, prox_task, j);
  memcpy(j->z, j->znew, (size_t)j->n * sizeof *j->z);
  double err = 0.0;
  for (int64_t k = 0; k < j->n; k++) err += j->gerr[k];
  return (float)(err / (double)(j->n * j->gs));
}

lb_status lb_hqq_quantize_ex(const float *w, int64_t rows, int64_t cols, int nbits,
                             int64_t group_size, int axis, const lb_hqq_opts *opts, lb_qweight *out,
                             lb_error *err) {
  if (nbits != 8 && nbits != 4 && nbits != 3 && nbits != 2 && nbits != 1)
    return lb_fail(err, LB_EINVAL, "hqq: nbits %d (hqq supports 8, 4, 3, 2, 1)", nbits);
  if (axis != 0 && axis != 1) return lb_fail(err, LB_EINVAL, "hqq: axis %d (0 or 1)", axis);
  if (axis == 0)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "hqq: axis 0 groups strided rows of a column (W reshaped to [group_size, -1]); "
                   "lowbit's affine weights group columns of a row: use axis 1");
  if (rows < 1 || cols < 1 || group_size < 1 || cols % group_size)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "hqq: weight [%lld, %lld] with group_size %lld: in_features must be a multiple "
                   "of the group size (a group may not straddle rows)",
                   (long long)rows, (long long)cols, (long long)group_size);
  if (!opts || opts->iters < 0 || !(opts->beta > 0.0) || !(opts->kappa > 0.0))
    return lb_fail(err, LB_EINVAL, "hqq: bad solver options");
  LB_TRY(lb_quant_check_finite(w, rows, cols, "hqq", err));

  lb_qweight q = {
      .kind = LB_QK_AFFINE, .rows = rows, .cols = cols, .bits = nbits, .group = group_size};
  LB_TRY(lb_qweight_alloc(&q, false, false, err));
  const int64_t n = rows * cols / group_size, gs = group_size;
  const float maxv = (float)((1 << nbits) - 1);
  float *s = malloc((size_t)n * sizeof *s), *znew = malloc((size_t)n * sizeof *znew);
  double *gerr = malloc((size_t)n * sizeof *gerr);
  lb_pool *pool = NULL;
  lb_status st = !s || !znew || !gerr ? lb_fail(err, LB_ENOMEM, "hqq: out of memory for %lld groups",
                                                 (long long)n)
                 : opts->optimize     ? lb_pool_new(opts->threads, &pool, err)
                                      : LB_OK;
  if (st != LB_OK) {
    free(s), free(znew), free(gerr);
    lb_qweight_free(&q);
    return st;
  }
  float *z = q.zero; /* groups are row-major (row r, group g) = k: lb_qweight's order too */
  for (int64_t k = 0; k < n; k++) {
    float mn = w[k * gs], mx = mn;
    for (int64_t j = 1; j < gs; j++) {
      mn = fminf(mn, w[k * gs + j]);
      mx = fmaxf(mx, w[k * gs + j]);
    }
    /* scale = max_v / (_max - _min); 1 where |_max - _min| <= 1e-4 (a flat group); then
     * .clamp(max=2e4) */
    float denom = mx - mn, inv = maxv / denom;
    if (fabsf(denom) <= 1e-4f) inv = 1.0f;
    s[k] = inv > 2e4f ? 2e4f : inv;
    z[k] = -mn * s[k];
    if (opts->round_zero) z[k] = rintf(z[k]);
  }
  if (opts->optimize) {
    prox_job job = {.w = w, .s = s, .z = z, .znew = znew, .gerr = gerr, .n = n, .gs = gs,
                    .maxv = maxv, .p1 = (float)((double)opts->lp_norm - 1.0)}; /* Python: lp_norm - 1 */
    double beta = opts->beta;
    float best = INFINITY;
    for (int it = 0; it < opts->iters; it++) {
      job.inv_beta = (float)(1.0 / beta);
      float cur = prox_round(pool, &job);
      beta *= opts->kappa;
      if (opts->early_stop) {
        if (cur < best)
          best = cur;
        else
          break; /* z already holds this round's update, as in hqq */
      }
    }
    lb_pool_free(pool);
  }
  for (int64_t k = 0; k < n; k++) {
    for (int64_t j = 0; j < gs; j++) {
      float t = w[k * gs + j] * s[k];
      q.q[k * gs + j] = (uint8_t)clampq(rintf(t + z[k]), maxv);
    }
    q.scale[k] = 1.0f / s[k];
  }
  free(s), free(znew), free(gerr);
  *out = q;
  return LB_OK;
}
