/* Perplexity over non-overlapping windows (the protocol of the shared model's README): each window of
 * ctx tokens runs from an empty KV cache and every one of its positions is scored against the token
 * that follows it in the text (the last position against the first token of the next window), so
 * every token after the first is predicted exactly once. NLL = logsumexp(logits) - logit[next],
 * summed in double. */
#include <math.h>
#include <stdlib.h>

#include "base/progress.h"
#include "base/status.h"
#include "model/model_internal.h"

typedef struct {
  const float *logits;
  const int32_t *next;
  int64_t n, vocab;
  double *nll;
} nll_job;

static void nll_task(void *p, int ith, int nth) {
  nll_job *j = p;
  int64_t lo, hi;
  lb_split(j->n, ith, nth, &lo, &hi);
  for (int64_t t = lo; t < hi; t++) {
    const float *row = j->logits + t * j->vocab;
    j->nll[t] = lb_logsumexp(row, j->vocab) - (double)row[j->next[t]];
  }
}

lb_status lb_perplexity(lb_model *m, const int32_t *tokens, int64_t n, int64_t ctx,
                        int64_t max_windows, void (*progress)(void *, int64_t, int64_t),
                        void *progress_ctx, lb_ppl_result *out, lb_error *err) {
  *out = (lb_ppl_result){0};
  if (ctx < 2 || ctx > m->ctx)
    return lb_fail(err, LB_EINVAL, "perplexity: window %lld must be in [2, %lld] (the model context)",
                   (long long)ctx, (long long)m->ctx);
  int64_t windows = n > 0 ? (n - 1) / ctx : 0; /* each window needs its ctx inputs + 1 target */
  if (max_windows > 0 && windows > max_windows) windows = max_windows;
  if (windows < 1)
    return lb_fail(err, LB_EINVAL, "perplexity: %lld tokens are fewer than one window of %lld plus the token after it",
                   (long long)n, (long long)ctx);
  int64_t V = m->cfg->vocab_size;
  float *logits = malloc((size_t)ctx * (size_t)V * sizeof(float));
  double *nll = malloc((size_t)ctx * sizeof(double));
  if (!logits || !nll) {
    free(logits);
    free(nll);
    return lb_fail(err, LB_ENOMEM, "perplexity: out of memory for %lld x %lld logits",
                   (long long)ctx, (long long)V);
  }
  double sum = 0, sumsq = 0, t0 = lb_now();
  int64_t count = 0;
  lb_status s = LB_OK;
  for (int64_t w = 0; w < windows && s == LB_OK; w++) {
    const int32_t *win = tokens + w * ctx;
    lb_model_reset(m);
    s = lb_model_forward(m, win, ctx, logits, true, err);
    if (s != LB_OK) break;
    nll_job j = {logits, win + 1, ctx, V, nll};
    lb_pool_run(m->pool, nll_task, &j);
    for (int64_t t = 0; t < ctx; t++) {
      if (!isfinite(nll[t])) {
        s = lb_fail(err, LB_EFORMAT, "perplexity: non-finite loss at window %lld position %lld "
                    "(NaN or Inf in the weights or activations)", (long long)w, (long long)t);
        break;
      }
      sum += nll[t], sumsq += nll[t] * nll[t], count++;
    }
    if (progress) progress(progress_ctx, w + 1, windows);
  }
  lb_model_reset(m);
  free(logits);
  free(nll);
  if (s != LB_OK) return s;
  double mean = sum / (double)count, var = sumsq / (double)count - mean * mean;
  out->mean_nll = mean;
  out->ppl = exp(mean);
  out->ppl_stderr = out->ppl * sqrt((var > 0 ? var : 0) / (double)count);
  out->tokens = count;
  out->windows = windows;
  out->seconds = lb_now() - t0;
  out->tokens_per_s = out->seconds > 0 ? (double)(windows * ctx) / out->seconds : 0;
  return LB_OK;
}
