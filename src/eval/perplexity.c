/* Perplexity over non-overlapping windows (the protocol of the shared model's README): each window of
 * ctx tokens runs from an empty KV cache and every one of its positions is scored against the token
 * that follows it in the text (the last position against the first token of the next window), so
 * every token after the first is predicted exactly once. NLL = logsumexp(logits) - logit[next],
 * summed in double. With a base model, each window runs through it too, and every position gets
 * KL(base || m) of the two next-token distributions (llama.cpp's --kl-divergence, without its
 * file of saved base logits: both models are open at once). */
#include <math.h>
#include <stdlib.h>

#include "base/progress.h"
#include "base/status.h"
#include "model/model_internal.h"

/* With mp, mq the rows' maxima, e_i = exp(p_i - mp), Sp = sum e_i, Sq = sum exp(q_i - mq):
 * KL = sum (e_i / Sp) ((p_i - mp - log Sp) - (q_i - mq - log Sq))
 *    = T / Sp - log Sp + log Sq, T = sum e_i ((p_i - mp) - (q_i - mq)), all in double. */
double lb_kl_logits(const float *p, const float *q, int64_t n, bool *same) {
  int64_t ip = 0, iq = 0;
  for (int64_t i = 1; i < n; i++) {
    if (p[i] > p[ip]) ip = i;
    if (q[i] > q[iq]) iq = i;
  }
  *same = ip == iq;
  const double mp = p[ip], mq = q[iq];
  if (!isfinite(mp) || !isfinite(mq)) return NAN;
  double sp = 0, sq = 0, t = 0;
  for (int64_t i = 0; i < n; i++) {
    const double a = (double)p[i] - mp, b = (double)q[i] - mq, e = exp(a);
    sp += e, sq += exp(b);
    if (e > 0) t += e * (a - b); /* (p_i = -inf adds nothing) */
  }
  const double kl = t / sp - log(sp) + log(sq);
  if (kl != kl) return NAN; /* a NaN entry */
  return kl > 0 ? kl : 0;   /* equal rows: rounding may leave -1e-17 */
}

typedef struct {
  const float *logits, *base;
  const int32_t *next;
  int64_t n, vocab;
  double *nll, *nll_base, *kl;
  bool *same;
} nll_job;

static void nll_task(void *p, int ith, int nth) {
  nll_job *j = p;
  int64_t lo, hi;
  lb_split(j->n, ith, nth, &lo, &hi);
  for (int64_t t = lo; t < hi; t++) {
    const float *row = j->logits + t * j->vocab;
    j->nll[t] = lb_logsumexp(row, j->vocab) - (double)row[j->next[t]];
    if (!j->base) continue;
    const float *b = j->base + t * j->vocab;
    j->nll_base[t] = lb_logsumexp(b, j->vocab) - (double)b[j->next[t]];
    j->kl[t] = lb_kl_logits(b, row, j->vocab, &j->same[t]);
  }
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ppl and its stderr (delta method) from the sum and sum of squares of count NLLs */
static void ppl_of(double sum, double sumsq, int64_t count, double *ppl, double *se, double *mean_nll) {
  const double mean = sum / (double)count, var = sumsq / (double)count - mean * mean;
  *mean_nll = mean, *ppl = exp(mean);
  *se = *ppl * sqrt((var > 0 ? var : 0) / (double)count);
}

lb_status lb_perplexity(lb_model *m, const int32_t *tokens, int64_t n, int64_t ctx,
                        int64_t max_windows, void (*progress)(void *, int64_t, int64_t),
                        void *progress_ctx, lb_ppl_result *out, lb_error *err) {
  return lb_perplexity_kl(m, NULL, tokens, n, ctx, max_windows, progress, progress_ctx, out, NULL, err);
}

lb_status lb_perplexity_kl(lb_model *m, lb_model *base, const int32_t *tokens, int64_t n, int64_t ctx,
                           int64_t max_windows, void (*progress)(void *, int64_t, int64_t),
                           void *progress_ctx, lb_ppl_result *out, lb_kl_result *kl, lb_error *err) {
  *out = (lb_ppl_result){0};
  if (kl) *kl = (lb_kl_result){0};
  if (base && !kl) return lb_fail(err, LB_EINVAL, "perplexity: a base model needs a KL result");
  if (base && base->cfg->vocab_size != m->cfg->vocab_size)
    return lb_fail(err, LB_EINVAL, "perplexity: the base model's vocabulary has %lld entries, the model's %lld",
                   (long long)base->cfg->vocab_size, (long long)m->cfg->vocab_size);
  if (base && ctx > base->ctx)
    return lb_fail(err, LB_EINVAL, "perplexity: window %lld is longer than the base model's context %lld",
                   (long long)ctx, (long long)base->ctx);
  if (ctx < 2 || ctx > m->ctx)
    return lb_fail(err, LB_EINVAL, "perplexity: window %lld must be in [2, %lld] (the model context)",
                   (long long)ctx, (long long)m->ctx);
  int64_t windows = n > 0 ? (n - 1) / ctx : 0; /* each window needs its ctx inputs + 1 target */
  if (max_windows > 0 && windows > max_windows) windows = max_windows;
  if (windows < 1)
    return lb_fail(err, LB_EINVAL, "perplexity: %lld tokens are fewer than one window of %lld plus the token after it",
                   (long long)n, (long long)ctx);
  const int64_t V = m->cfg->vocab_size, nb = base ? 1 : 0;
  const size_t rows = (size_t)ctx * (size_t)V;
  float *logits = malloc(rows * sizeof(float)), *blogits = base ? malloc(rows * sizeof(float)) : NULL;
  double *nll = malloc((size_t)ctx * (1 + 2 * nb) * sizeof(double)), *all_kl = NULL; /* nll, base nll, kl */
  bool *same = base ? malloc((size_t)ctx * sizeof *same) : NULL;
  if (base) all_kl = malloc((size_t)(windows * ctx) * sizeof *all_kl);
  lb_status s = LB_OK;
  if (!logits || !nll || (base && (!blogits || !same || !all_kl)))
    s = lb_fail(err, LB_ENOMEM, "perplexity: out of memory for %lld x %lld logits%s", (long long)ctx,
                (long long)V, base ? " of two models" : "");
  double sum = 0, sumsq = 0, bsum = 0, bsumsq = 0, klsum = 0, klsq = 0, t0 = lb_now();
  int64_t count = 0, nsame = 0;
  for (int64_t w = 0; w < windows && s == LB_OK; w++) {
    const int32_t *win = tokens + w * ctx;
    if (base) {
      lb_model_reset(base);
      if ((s = lb_model_forward(base, win, ctx, blogits, true, err)) != LB_OK) break;
    }
    lb_model_reset(m);
    s = lb_model_forward(m, win, ctx, logits, true, err);
    if (s != LB_OK) break;
    nll_job j = {logits, blogits, win + 1, ctx, V, nll, base ? nll + ctx : NULL, base ? nll + 2 * ctx : NULL, same};
    lb_pool_run(m->pool, nll_task, &j);
    for (int64_t t = 0; t < ctx; t++) {
      if (!isfinite(nll[t]) || (base && (!isfinite(j.nll_base[t]) || !isfinite(j.kl[t])))) {
        s = lb_fail(err, LB_EFORMAT, "perplexity: non-finite %s at window %lld position %lld "
                    "(NaN or Inf in the weights or activations)", !isfinite(nll[t]) ? "loss" : "base loss or KL",
                    (long long)w, (long long)t);
        break;
      }
      sum += nll[t], sumsq += nll[t] * nll[t];
      if (base) {
        const double b = j.nll_base[t], d = j.kl[t];
        bsum += b, bsumsq += b * b, klsum += d, klsq += d * d, nsame += j.same[t];
        all_kl[count] = d;
      }
      count++;
    }
    if (progress) progress(progress_ctx, w + 1, windows);
  }
  lb_model_reset(m);
  if (base) lb_model_reset(base);
  if (s == LB_OK) {
    ppl_of(sum, sumsq, count, &out->ppl, &out->ppl_stderr, &out->mean_nll);
    if (base) {
      double unused;
      ppl_of(bsum, bsumsq, count, &kl->base_ppl, &kl->base_ppl_stderr, &unused);
      const double mk = klsum / (double)count, vk = klsq / (double)count - mk * mk;
      kl->kl_mean = mk, kl->kl_stderr = sqrt((vk > 0 ? vk : 0) / (double)count);
      qsort(all_kl, (size_t)count, sizeof *all_kl, cmp_double);
      kl->kl_median = count % 2 ? all_kl[count / 2] : 0.5 * (all_kl[count / 2 - 1] + all_kl[count / 2]);
      kl->kl_p99 = all_kl[(count - 1) * 99 / 100], kl->kl_max = all_kl[count - 1];
      kl->same_top = (double)nsame / (double)count;
    }
  }
  free(logits), free(blogits), free(nll), free(same), free(all_kl);
  if (s != LB_OK) return s;
  out->tokens = count;
  out->windows = windows;
  out->seconds = lb_now() - t0;
  out->tokens_per_s = out->seconds > 0 ? (double)(windows * ctx) / out->seconds : 0;
  return LB_OK;
}
