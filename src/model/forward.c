/* The decoder forward pass, written once for Llama, Mistral and Qwen2 (they differ only in what the
 * config and architecture table say: biases, sliding window, rope type, tied lm_head):
 *   x = embed(tokens)
 *   per block: x += o_proj(attention(rope(q(norm1 x)), rope(k(...)), v(...)))
 *              x += down(silu(gate(norm2 x)) * up(norm2 x))
 *   logits = lm_head(norm(x))
 * Tokens are processed in chunks of m->chunk; keys and values go to the KV cache first, so a chunk
 * attends to everything before it. All math is fp32. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "base/status.h"
#include "model/model_internal.h"
#include "quant/fp8.h"

/* Profiling: the time since the last mark goes to *slot. */
static double mark(lb_model *m, double t0, double *slot) {
  if (!m->profiling) return 0;
  double t = lb_now();
  *slot += t - t0;
  return t;
}

void lb_model_profile_enable(lb_model *m, bool on) {
  m->profiling = on;
  memset(&m->prof, 0, sizeof m->prof);
}

void lb_model_profile_get(const lb_model *m, lb_model_profile *out) { *out = m->prof; }

typedef struct {
  lb_model *m;
  int64_t n, pos, l;
  int64_t nseq; /* attend_small_task: sequences stacked in the rows, n rows each */
  const float *w;
  float *a;
  float *b;
} job;

static void norm_task(void *p, int ith, int nth) {
  job *j = p;
  int64_t d = j->m->cfg->hidden_size, lo, hi;
  lb_split(j->n, ith, nth, &lo, &hi);
  for (int64_t t = lo; t < hi; t++) lb_rmsnorm(j->b + t * d, j->a + t * d, j->w, d,
                                               (float)j->m->cfg->rms_norm_eps);
}

static void silu_task(void *p, int ith, int nth) {
  job *j = p;
  int64_t lo, hi;
  lb_split(j->n * j->m->cfg->intermediate_size, ith, nth, &lo, &hi);
  lb_silu_mul(j->a + lo, j->b + lo, hi - lo);
}

static void add_task(void *p, int ith, int nth) { /* a += b over n * hidden */
  job *j = p;
  int64_t lo, hi;
  lb_split(j->n * j->m->cfg->hidden_size, ith, nth, &lo, &hi);
  for (int64_t i = lo; i < hi; i++) j->a[i] += j->b[i];
}

/* The first key position row i may see: 0, or i - window + 1 with a sliding window
 * (Transformers: kv_idx > q_idx - sliding_window). */
static int64_t first_key(const lb_model *m, int64_t l, int64_t i) {
  int64_t w = m->cfg->sliding_window;
  return m->layers[l].sliding && i - w + 1 > 0 ? i - w + 1 : 0;
}

/* The layer's keys and values of sequence q: sequence 0's at m->kcache / m->vcache (the running
 * sequence's cache when sequences run one after another), the others a whole cache further each. */
static size_t cache_floats(const lb_model *m) {
  const lb_config *c = m->cfg;
  return (size_t)(c->num_hidden_layers * m->ctx * c->num_key_value_heads * c->head_dim);
}

/* Few query rows: per (sequence, token, head), dot products with the keys, softmax, sum of values. */
static void attend_small_task(void *p, int ith, int nth) {
  job *j = p;
  lb_model *m = j->m;
  const lb_config *c = m->cfg;
  const lb_kernels *k = lb_cpu_kernels();
  int64_t hd = c->head_dim, nh = c->num_attention_heads, group = nh / c->num_key_value_heads;
  int64_t kvd = c->num_key_value_heads * hd, lo, hi;
  const size_t cache = cache_floats(m), layer = (size_t)j->l * (size_t)m->ctx * (size_t)kvd;
  float *s = m->scores + ith * m->ctx, scale = 1.0f / sqrtf((float)hd);
  lb_split(j->nseq * j->n * nh, ith, nth, &lo, &hi);
  for (int64_t e = lo; e < hi; e++) {
    int64_t r = e / nh, h = e % nh, t = r % j->n, kv = h / group, i = j->pos + t, k0 = first_key(m, j->l, i);
    const size_t at = (size_t)(r / j->n) * cache + layer;
    const float *K = m->kcache + at, *V = m->vcache + at;
    const float *q = m->q + r * nh * hd + h * hd;
    for (int64_t x = k0; x <= i; x++) s[x] = k->dot(q, K + x * kvd + kv * hd, hd) * scale;
    lb_softmax(s + k0, i + 1 - k0);
    float *o = m->att + r * nh * hd + h * hd;
    memset(o, 0, (size_t)hd * sizeof(float));
    for (int64_t x = k0; x <= i; x++) k->axpy(o, s[x], V + x * kvd + kv * hd, hd);
  }
}

/* Many query rows (prefill): work items of (query block of QB rows, head), spread over the pool
 * round-robin; each item multiplies its queries by the keys they may see only (causal: up to the
 * block's last position; sliding window: from the block's first visible key), S = Q K^T and O = S V
 * by single-threaded OpenBLAS sgemm (OpenBLAS's own threads are off meanwhile), with the masked
 * softmax between, in the share's slice of m->scores. */
enum { QB = LB_ATTN_QB };

static void attend_block_task(void *p, int ith, int nth) {
  job *j = p;
  lb_model *m = j->m;
  const lb_config *c = m->cfg;
  const int64_t hd = c->head_dim, nh = c->num_attention_heads, group = nh / c->num_key_value_heads;
  const int64_t kvd = c->num_key_value_heads * hd, qd = nh * hd, nqb = (j->n + QB - 1) / QB;
  const float *K = m->kcache + j->l * m->ctx * kvd, *V = m->vcache + j->l * m->ctx * kvd;
  const float scale = 1.0f / sqrtf((float)hd);
  float *S = m->scores + (size_t)ith * QB * (size_t)m->ctx;
  for (int64_t e = ith; e < nqb * nh; e += nth) {
    const int64_t qb = e / nh, h = e % nh, kv = h / group;
    const int64_t r0 = qb * QB, nr = j->n - r0 < QB ? j->n - r0 : QB;
    const int64_t k0 = first_key(m, j->l, j->pos + r0), k1 = j->pos + r0 + nr, nk = k1 - k0;
    if (hd % 16 == 0 && LB_ATTN_SCRATCH(hd) <= QB * m->ctx) { /* the fused kernel */
      int64_t ka[QB], kb[QB];
      for (int64_t t = 0; t < nr; t++) ka[t] = first_key(m, j->l, j->pos + r0 + t), kb[t] = j->pos + r0 + t + 1;
      lb_cpu_kernels()->attn_rows(m->q + r0 * qd + h * hd, qd, K + kv * hd, V + kv * hd, kvd, hd,
                                  nr, ka, kb, scale, m->att + r0 * qd + h * hd, qd, S);
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nk, (int)hd, scale,
                m->q + r0 * qd + h * hd, (int)qd, K + k0 * kvd + kv * hd, (int)kvd, 0.0f, S,
                (int)nk);
    for (int64_t t = 0; t < nr; t++) {
      float *row = S + t * nk;
      const int64_t i = j->pos + r0 + t, a = first_key(m, j->l, i) - k0, b = i + 1 - k0;
      memset(row, 0, (size_t)a * sizeof(float));
      lb_softmax(row + a, b - a);
      memset(row + b, 0, (size_t)(nk - b) * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)hd, (int)nk, 1.0f, S,
                (int)nk, V + k0 * kvd + kv * hd, (int)kvd, 0.0f, m->att + r0 * qd + h * hd,
                (int)qd);
  }
}

static void attend_gemm(lb_model *m, int64_t l, int64_t n, int64_t pos) {
  job j = {.m = m, .n = n, .pos = pos, .l = l};
  openblas_set_num_threads(1);
  lb_pool_run(m->pool, attend_block_task, &j);
  openblas_set_num_threads(lb_pool_size(m->pool));
}

enum { SMALL_N = 4, INLINE_WORK = 1 << 14 };

/* A row-wise or element-wise op over `work` values: on the caller when that is small (decode:
 * waking the pool costs more than the op), else split over the pool. */
static void run_op(lb_model *m, lb_task fn, job *j, int64_t work) {
  if (work <= INLINE_WORK) fn(j, 0, 1);
  else lb_pool_run(m->pool, fn, j);
}

/* Calls the tap at `site` with the [n, d] rows at x; true when the block stops there. */
static bool tap_at(const lb_block_tap *tap, lb_site site, const float *x, int64_t n, int64_t d) {
  if (!tap) return false;
  if (tap->fn) tap->fn(tap->ctx, site, x, n, d);
  return tap->stop == site;
}

/* x += o_proj(attention(rope(q(norm1 x)), rope(k(...)), v(...))) for nseq sequences of n rows
 * each at positions pos .. pos + n - 1 (nseq > 1: n <= SMALL_N, forward_cpu_batch), the rows of
 * sequence q at q * n in every buffer and its cache a whole cache after sequence 0's. */
static lb_status attn_part(lb_model *m, int64_t l, int64_t nseq, int64_t n, int64_t pos,
                           const lb_block_tap *tap, bool *stopped, lb_error *err) {
  const lb_config *c = m->cfg;
  lb_layer *L = &m->layers[l];
  int64_t hd = c->head_dim, nh = c->num_attention_heads, nkv = c->num_key_value_heads;
  int64_t kvd = nkv * hd, d = c->hidden_size, rows = nseq * n;
  job j = {.m = m, .n = n, .pos = pos, .l = l, .nseq = nseq, .w = L->attn_norm, .a = m->x, .b = m->xn};
  lb_model_profile *P = &m->prof;
  double t = m->profiling ? lb_now() : 0;
  j.n = rows;
  if (!tap || tap->start != LB_SITE_ATTN_IN) run_op(m, norm_task, &j, rows * d);
  j.n = n;
  t = mark(m, t, &P->other);
  if ((*stopped = tap_at(tap, LB_SITE_ATTN_IN, m->xn, n, d))) return LB_OK;
  const lb_mat *qkv[3] = {&L->lin[LB_LIN_Q], &L->lin[LB_LIN_K], &L->lin[LB_LIN_V]};
  float *qkv_b[3] = {L->bias[LB_LIN_Q], L->bias[LB_LIN_K], L->bias[LB_LIN_V]};
  float *qkv_y[3] = {m->q, m->k, m->v};
  LB_TRY(lb_linear_many(m->pool, 3, qkv, qkv_b, m->xn, rows, qkv_y, err));
  t = mark(m, t, &P->qkv);
  const size_t off = ((size_t)l * (size_t)m->ctx + (size_t)pos) * (size_t)kvd, cache = cache_floats(m);
  for (int64_t q = 0; q < nseq; q++) {
    lb_rope_apply(&m->rope, c, m->q + q * n * nh * hd, n, nh, nh * hd, pos, pos + n);
    lb_rope_apply(&m->rope, c, m->k + q * n * kvd, n, nkv, kvd, pos, pos + n);
    if (L->kv_scale[0] > 0.0f) { /* FP8 KV cache: what enters it is rounded to E4M3 x scale */
      lb_fp8_act_quant_static(m->k + q * n * kvd, n, kvd, L->kv_scale[0], m->kcache + q * cache + off);
      lb_fp8_act_quant_static(m->v + q * n * kvd, n, kvd, L->kv_scale[1], m->vcache + q * cache + off);
      continue;
    }
    memcpy(m->kcache + q * cache + off, m->k + q * n * kvd, (size_t)(n * kvd) * sizeof(float));
    memcpy(m->vcache + q * cache + off, m->v + q * n * kvd, (size_t)(n * kvd) * sizeof(float));
  }
  if (n <= SMALL_N)
    lb_pool_run(m->pool, attend_small_task, &j);
  else
    attend_gemm(m, l, n, pos);
  t = mark(m, t, &P->attention);
  if ((*stopped = tap_at(tap, LB_SITE_O_IN, m->att, n, nh * hd))) return LB_OK;
  LB_TRY(lb_linear(m->pool, &L->lin[LB_LIN_O], L->bias[LB_LIN_O], m->att, rows, m->xn, err));
  t = mark(m, t, &P->o_proj);
  if ((*stopped = tap_at(tap, LB_SITE_ATTN_OUT, m->xn, n, d))) return LB_OK;
  j.a = m->x, j.b = m->xn, j.n = rows;
  run_op(m, add_task, &j, rows * d);
  mark(m, t, &P->other);
  return LB_OK;
}

/* x += down(silu(gate(norm2 x)) * up(norm2 x)) */
static lb_status mlp_part(lb_model *m, int64_t l, int64_t n, const lb_block_tap *tap, lb_error *err) {
  lb_layer *L = &m->layers[l];
  int64_t d = m->cfg->hidden_size;
  job j = {.m = m, .n = n, .l = l, .w = L->mlp_norm, .a = m->x, .b = m->xn};
  bool from_in = tap && tap->start == LB_SITE_MLP_IN;
  lb_model_profile *P = &m->prof;
  double t = m->profiling ? lb_now() : 0;
  if (!from_in && tap_at(tap, LB_SITE_MLP_RESID, m->x, n, d)) return LB_OK;
  if (!from_in) run_op(m, norm_task, &j, n * d);
  t = mark(m, t, &P->other);
  if (tap_at(tap, LB_SITE_MLP_IN, m->xn, n, d)) return LB_OK;
  const lb_mat *gu[2] = {&L->lin[LB_LIN_GATE], &L->lin[LB_LIN_UP]};
  float *gu_b[2] = {L->bias[LB_LIN_GATE], L->bias[LB_LIN_UP]}, *gu_y[2] = {m->gate, m->up};
  LB_TRY(lb_linear_many(m->pool, 2, gu, gu_b, m->xn, n, gu_y, err));
  t = mark(m, t, &P->gate_up);
  j.a = m->gate, j.b = m->up;
  run_op(m, silu_task, &j, n * m->cfg->intermediate_size);
  t = mark(m, t, &P->other);
  if (tap_at(tap, LB_SITE_DOWN_IN, m->gate, n, m->cfg->intermediate_size)) return LB_OK;
  LB_TRY(lb_linear(m->pool, &L->lin[LB_LIN_DOWN], L->bias[LB_LIN_DOWN], m->gate, n, m->xn, err));
  t = mark(m, t, &P->down);
  if (tap_at(tap, LB_SITE_MLP_OUT, m->xn, n, d)) return LB_OK;
  j.a = m->x, j.b = m->xn;
  run_op(m, add_task, &j, n * d);
  mark(m, t, &P->other);
  tap_at(tap, LB_SITE_OUT, m->x, n, d);
  return LB_OK;
}

/* Layer l over nseq sequences of n rows (attn_part); the MLP takes all their rows as one. */
static lb_status block(lb_model *m, int64_t l, int64_t nseq, int64_t n, int64_t pos, const lb_block_tap *tap,
                       lb_error *err) {
  bool stopped = false;
  if (!tap || tap->start == LB_SITE_X || tap->start == LB_SITE_ATTN_IN) {
    LB_TRY(attn_part(m, l, nseq, n, pos, tap, &stopped, err));
    if (stopped) return LB_OK;
  }
  return mlp_part(m, l, nseq * n, tap, err);
}

lb_status lb_model_block(lb_model *m, int64_t l, int64_t n, int64_t pos, const lb_block_tap *tap,
                         lb_error *err) {
  return block(m, l, 1, n, pos, tap, err);
}

/* m->x's first rows: the embeddings of tokens[0 .. rows - 1]. */
static void embed_rows(lb_model *m, const int32_t *tokens, int64_t rows) {
  const int64_t d = m->cfg->hidden_size;
  const size_t esz = lb_dtype_size(m->embed.dtype);
  for (int64_t r = 0; r < rows; r++)
    lb_cvt_f32_ref(m->x + r * d, (const char *)m->embed.data + (size_t)tokens[r] * d * esz, m->embed.dtype, d);
}

/* logits[rn][vocab] of the rn rows of x (the final norm, then lm_head). */
static lb_status head_rows(lb_model *m, float *x, int64_t rn, float *logits, lb_error *err) {
  job j = {.m = m, .n = rn, .w = m->final_norm, .a = x, .b = m->xn};
  double t = m->profiling ? lb_now() : 0;
  run_op(m, norm_task, &j, rn * m->cfg->hidden_size);
  t = mark(m, t, &m->prof.other);
  LB_TRY(lb_linear(m->pool, &m->lm_head, NULL, m->xn, rn, logits, err));
  mark(m, t, &m->prof.lm_head);
  return LB_OK;
}

/* One sequence on the CPU, its cache at m->kcache / m->vcache. */
static lb_status forward_cpu(lb_model *m, const int32_t *tokens, int64_t n, float *logits, bool all,
                             lb_error *err) {
  const lb_config *c = m->cfg;
  int64_t d = c->hidden_size, V = c->vocab_size;
  for (int64_t t0 = 0; t0 < n; t0 += m->chunk) {
    int64_t cn = n - t0 < m->chunk ? n - t0 : m->chunk;
    embed_rows(m, tokens + t0, cn);
    for (int64_t l = 0; l < c->num_hidden_layers; l++) LB_TRY(block(m, l, 1, cn, m->pos, NULL, err));
    m->pos += cn;
    bool last = t0 + cn == n;
    if (!logits || (!all && !last)) continue;
    /* all: every row of the chunk; else the final row only */
    int64_t r0 = all ? 0 : cn - 1, rn = all ? cn : 1;
    LB_TRY(head_rows(m, m->x + r0 * d, rn, logits + (all ? t0 * V : 0), err));
  }
  return LB_OK;
}

/* nseq sequences of n (<= SMALL_N) tokens each, together: their rows stacked through the norms
 * and the Linears (each weight read once a step for all of them), attention per sequence over its
 * own cache. logits: each sequence's last row. */
static lb_status forward_cpu_batch(lb_model *m, int64_t nseq, const int32_t *tokens, int64_t n,
                                   float *logits, lb_error *err) {
  const int64_t d = m->cfg->hidden_size;
  embed_rows(m, tokens, nseq * n);
  for (int64_t l = 0; l < m->cfg->num_hidden_layers; l++) LB_TRY(block(m, l, nseq, n, m->pos, NULL, err));
  if (!logits) return LB_OK;
  for (int64_t q = 0; q < nseq; q++) /* the last rows, packed */
    memmove(m->x + q * d, m->x + (q * n + n - 1) * d, (size_t)d * sizeof(float));
  return head_rows(m, m->x, nseq, logits, err);
}

static lb_status forward_seqs(lb_model *m, int64_t nseq, const int32_t *tokens, int64_t n,
                              float *logits, bool all, lb_sampler *const *samplers, int32_t *next,
                              lb_error *err) {
  const lb_config *c = m->cfg;
  const int64_t V = c->vocab_size;
  if (n < 1) return lb_fail(err, LB_EINVAL, "forward: no tokens");
  if (nseq < 1 || nseq > m->batch)
    return lb_fail(err, LB_EINVAL, "forward: %lld sequences, the model was opened for %d (batch)",
                   (long long)nseq, m->batch);
  if (m->pos + n > m->ctx)
    return lb_fail(err, LB_EINVAL, "forward: %lld + %lld tokens exceed the context of %lld",
                   (long long)m->pos, (long long)n, (long long)m->ctx);
  for (int64_t t = 0; t < nseq * n; t++)
    if (tokens[t] < 0 || tokens[t] >= V)
      return lb_fail(err, LB_EINVAL, "forward: token id %d at %lld is outside the vocabulary (%lld)",
                     tokens[t], (long long)t, (long long)V);
  if (m->gpu) return lb_gpu_forward(m, nseq, tokens, n, logits, all, samplers, next, err);
  const size_t cache = cache_floats(m);
  const int64_t pos = m->pos;
  lb_status s = LB_OK;
  /* decode steps: up to SMALL_N rows of sequences at once (more rows take the Linears' prefill
   * path, slower for a handful of rows than two passes: bench/BENCHMARKS.md) */
  const int64_t rows = m->chunk < SMALL_N ? m->chunk : SMALL_N, per = !all && n <= rows ? rows / n : 1;
  for (int64_t q = 0, g = 1; q < nseq && s == LB_OK; q += g) { /* each over its own cache */
    g = nseq - q < per ? nseq - q : per;
    m->kcache = m->kc_all + (size_t)q * cache, m->vcache = m->vc_all + (size_t)q * cache;
    m->pos = pos;
    float *lq = logits ? logits + q * V : NULL;
    s = g > 1 ? forward_cpu_batch(m, g, tokens + q * n, n, lq, err) : forward_cpu(m, tokens + q * n, n, lq, all, err);
  }
  m->kcache = m->kc_all, m->vcache = m->vc_all;
  m->pos = s == LB_OK ? pos + n : pos;
  return s;
}

lb_status lb_model_forward(lb_model *m, const int32_t *tokens, int64_t n, float *logits, bool all,
                           lb_error *err) {
  return forward_seqs(m, 1, tokens, n, logits, all, NULL, NULL, err);
}

lb_status lb_model_forward_batch(lb_model *m, int64_t nseq, const int32_t *tokens, int64_t n,
                                 float *logits, lb_error *err) {
  return forward_seqs(m, nseq, tokens, n, logits, false, NULL, NULL, err);
}

lb_status lb_model_forward_sample(lb_model *m, int64_t nseq, const int32_t *tokens, int64_t n,
                                  lb_sampler *const *samplers, int32_t *next, float *logits,
                                  lb_error *err) {
  const int64_t V = m->cfg->vocab_size;
  for (int64_t q = 0; q < nseq && q < m->batch; q++) {
    if (!samplers || !samplers[q]) return lb_fail(err, LB_EINVAL, "forward: sequence %lld has no sampler", (long long)q);
    if (lb_sampler_vocab(samplers[q]) != V)
      return lb_fail(err, LB_EINVAL, "forward: sequence %lld's sampler is for %lld tokens, the model has %lld",
                     (long long)q, (long long)lb_sampler_vocab(samplers[q]), (long long)V);
  }
  if (m->gpu && !lb_gpu_host_sample(m->gpu))
    return forward_seqs(m, nseq, tokens, n, logits, false, samplers, next, err);
  /* on the host: the logits (the caller's, or a buffer kept for the calls to come), then a choice */
  if (!logits && !m->sample_logits && !(m->sample_logits = malloc((size_t)(m->batch * V) * sizeof(float))))
    return lb_fail(err, LB_ENOMEM, "forward: out of memory for %d rows of logits", m->batch);
  float *l = logits ? logits : m->sample_logits;
  LB_TRY(forward_seqs(m, nseq, tokens, n, l, false, NULL, NULL, err));
  for (int64_t q = 0; q < nseq; q++) next[q] = lb_sampler_next(samplers[q], l + q * V);
  return LB_OK;
}
