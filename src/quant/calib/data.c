/* Calibration windows from text (calib.h). */
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/calib.h"

static uint64_t next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

lb_status lb_calib_sample(const lb_tokenizer *tok, const char *const *docs, const size_t *lens,
                          size_t ndocs, int64_t nsamples, int64_t seqlen, uint64_t seed,
                          const char *label, lb_calib_data *out, lb_error *err) {
  *out = (lb_calib_data){0};
  if (nsamples < 1 || seqlen < 2)
    return lb_fail(err, LB_EINVAL, "%s: %lld samples of %lld tokens (need at least 1 of 2)", label,
                   (long long)nsamples, (long long)seqlen);
  int32_t *all = NULL;
  size_t n = 0, cap = 0;
  for (size_t d = 0; d < ndocs; d++) {
    int32_t *ids;
    size_t k;
    lb_status s = lb_tokenize(tok, docs[d], lens[d], LB_TOK_ADD_SPECIAL, &ids, &k, err);
    if (s != LB_OK) {
      free(all);
      lb_error_prefix(err, "%s: document %zu", label, d + 1);
      return s;
    }
    if (n + k > cap) {
      size_t nc = (n + k) * 2;
      int32_t *p = realloc(all, nc * sizeof *all);
      if (!p) {
        free(ids), free(all);
        return lb_fail(err, LB_ENOMEM, "%s: out of memory for %zu tokens", label, n + k);
      }
      all = p, cap = nc;
    }
    memcpy(all + n, ids, k * sizeof *ids);
    n += k;
    free(ids);
  }
  int64_t windows = (int64_t)n / seqlen;
  if (windows < nsamples) {
    free(all);
    return lb_fail(err, LB_EINVAL,
                   "%s: %zu tokens make %lld windows of %lld, fewer than the %lld samples asked "
                   "for (give more text, or lower --nsamples / --seqlen)",
                   label, n, (long long)windows, (long long)seqlen, (long long)nsamples);
  }
  int64_t *idx = malloc((size_t)windows * sizeof *idx);
  out->tokens = malloc((size_t)(nsamples * seqlen) * sizeof(int32_t));
  if (!idx || !out->tokens) {
    free(idx), free(all), free(out->tokens);
    out->tokens = NULL;
    return lb_fail(err, LB_ENOMEM, "%s: out of memory", label);
  }
  /* Fisher-Yates over the window indices; the first nsamples are taken */
  for (int64_t i = 0; i < windows; i++) idx[i] = i;
  uint64_t st = seed;
  for (int64_t i = 0; i < nsamples; i++) {
    int64_t j = i + (int64_t)(next(&st) % (uint64_t)(windows - i));
    int64_t t = idx[i];
    idx[i] = idx[j], idx[j] = t;
    memcpy(out->tokens + i * seqlen, all + idx[i] * seqlen, (size_t)seqlen * sizeof(int32_t));
  }
  out->nsamples = nsamples, out->seqlen = seqlen;
  free(idx), free(all);
  return LB_OK;
}

void lb_calib_data_free(lb_calib_data *d) {
  free(d->tokens);
  *d = (lb_calib_data){0};
}
