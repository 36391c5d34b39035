/* The block-by-block calibration engine (calib.h, engine.h). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/calib/engine.h"

lb_calib_opts lb_calib_default_opts(void) {
  return (lb_calib_opts){.damp = 0.01, .blocksize = 128, .awq_grid = 20,
                         .awq_search_samples = 8, .awq_clip_tokens = 512};
}

const char *lb_calib_module(const lb_calib *c, int l, int k, char *buf, size_t cap) {
  char blk[64];
  lb_arch_block(c->m->arch, l, blk, sizeof blk);
  snprintf(buf, cap, "%s.%s", blk, c->m->arch->linear[k]);
  return buf;
}

static void free_out(lb_calib *c) {
  for (int k = 0; k < LB_LIN_COUNT; k++)
    if (c->out.quantized[k]) lb_qweight_free(&c->out.q[k]);
  memset(&c->out, 0, sizeof c->out);
}

bool lb_calib_needed(const lb_quant_spec *s) {
  return (s->method == LB_QM_GPTQ && !s->rtn) || s->method == LB_QM_AWQ ||
         (s->method == LB_QM_CT_FP8 && s->act == LB_FP8_ACT_STATIC);
}

lb_status lb_calib_new(lb_model *m, const lb_quant_spec *spec, const lb_calib_data *d,
                       const lb_calib_opts *o, lb_calib **out, lb_error *err) {
  *out = NULL;
  if (m->qspec)
    return lb_fail(err, LB_EINVAL, "%s: calibration needs a dense model (this one is quantized)",
                   lb_checkpoint_dir(m->ck));
  if (!lb_calib_needed(spec))
    return lb_fail(err, LB_EINVAL, "calibration: the method calibrates nothing");
  if (d->seqlen > m->ctx)
    return lb_fail(err, LB_EINVAL, "calibration: sequences of %lld tokens exceed the model's "
                   "context of %lld", (long long)d->seqlen, (long long)m->ctx);
  const lb_config *cfg = m->cfg;
  lb_calib *c = calloc(1, sizeof *c);
  if (!c) return lb_fail(err, LB_ENOMEM, "out of memory");
  c->m = m, c->spec = spec, c->o = *o, c->layer = -1;
  c->N = d->nsamples, c->L = d->seqlen, c->T = c->N * c->L;
  c->d = cfg->hidden_size, c->qd = cfg->num_attention_heads * cfg->head_dim;
  c->inter = cfg->intermediate_size;
  int64_t maxc = c->d > c->qd ? c->d : c->qd;
  if (c->inter > maxc) maxc = c->inter;
  c->X = malloc((size_t)(c->T * c->d) * sizeof(float));
  c->H = malloc((size_t)(maxc * maxc) * sizeof(double));
  c->Hf = malloc((size_t)(maxc * maxc) * sizeof(float));
  if (spec->method == LB_QM_GPTQ) c->A = malloc((size_t)(c->T * c->qd) * sizeof(float));
  if (!c->X || !c->H || !c->Hf || (spec->method == LB_QM_GPTQ && !c->A)) {
    lb_calib_free(c);
    return lb_fail(err, LB_ENOMEM, "calibration: out of memory for %lld tokens of hidden states",
                   (long long)c->T);
  }
  for (int64_t t = 0; t < c->T; t++) {
    int32_t id = d->tokens[t];
    if (id < 0 || id >= cfg->vocab_size) {
      lb_calib_free(c);
      return lb_fail(err, LB_EINVAL, "calibration: token id %d is outside the vocabulary (%lld)",
                     id, (long long)cfg->vocab_size);
    }
    lb_cvt_f32_ref(c->X + t * c->d,
                   (const char *)m->embed.data + (size_t)id * (size_t)c->d * lb_dtype_size(m->embed.dtype),
                   m->embed.dtype, c->d);
  }
  *out = c;
  return LB_OK;
}

void lb_calib_free(lb_calib *c) {
  if (!c) return;
  free_out(c);
  if (c->layer >= 0)
    for (int k = 0; k < LB_LIN_COUNT; k++) c->m->layers[c->layer].lin[k] = c->orig[k];
  for (int k = 0; k < LB_LIN_COUNT; k++) free(c->w[k]);
  free(c->norm[0]), free(c->norm[1]);
  free(c->X), free(c->A), free(c->H), free(c->Hf);
  free(c);
}

lb_status lb_calib_feed(lb_calib *c, int l, const float *src, int64_t rows, lb_block_tap *tap,
                        float *dst, lb_error *err) {
  lb_model *m = c->m;
  lb_site start = tap ? tap->start : LB_SITE_X;
  bool seq = start == LB_SITE_X || start == LB_SITE_ATTN_IN;
  int64_t width = c->d;
  float *in = start == LB_SITE_X || start == LB_SITE_MLP_RESID ? m->x : m->xn;
  int64_t step = m->chunk;
  for (int64_t r0 = 0; r0 < rows; r0 += seq ? c->L : step) {
    int64_t span = seq ? c->L : (rows - r0 < step ? rows - r0 : step);
    for (int64_t p = 0; p < span; p += step) { /* positions p .. within one sequence */
      int64_t n = span - p < step ? span - p : step;
      memcpy(in, src + (r0 + p) * width, (size_t)(n * width) * sizeof(float));
      c->row0 = r0 + p;
      LB_TRY(lb_model_block(m, l, n, seq ? p : 0, tap, err));
      if (dst) memcpy(dst + (r0 + p) * c->d, m->x, (size_t)(n * c->d) * sizeof(float));
    }
  }
  return LB_OK;
}

void lb_calib_h_reset(lb_calib *c, int64_t cols, lb_site site) {
  c->hc = cols, c->hsite = site;
  memset(c->H, 0, (size_t)(cols * cols) * sizeof(double));
}

void lb_calib_h_tap(void *ctx, lb_site site, const float *x, int64_t n, int64_t d) {
  lb_calib *c = ctx;
  if (site != c->hsite || d != c->hc) return;
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)n, 1.0f, x, (int)d, 0.0f, c->Hf,
              (int)d);
  double s = 2.0 / (double)c->T;
  for (int64_t a = 0; a < d; a++)
    for (int64_t b = a; b < d; b++) c->H[a * d + b] += s * (double)c->Hf[a * d + b];
}

void lb_calib_h_final(lb_calib *c) {
  int64_t d = c->hc;
  for (int64_t a = 0; a < d; a++)
    for (int64_t b = 0; b < a; b++) c->H[a * d + b] = c->H[b * d + a];
}

lb_status lb_calib_block_run(lb_calib *c, int l, lb_calib_block *b, lb_error *err) {
  lb_model *m = c->m;
  if (l != c->layer + 1 || l >= m->cfg->num_hidden_layers)
    return lb_fail(err, LB_EINVAL, "calibration: block %d out of order (next is %d)", l,
                   c->layer + 1);
  free_out(c);
  if (c->layer >= 0)
    for (int k = 0; k < LB_LIN_COUNT; k++) m->layers[c->layer].lin[k] = c->orig[k];
  c->layer = l;
  lb_layer *Ly = &m->layers[l];
  /* the block's weights widened to fp32: the model runs these from now on */
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    c->orig[k] = Ly->lin[k];
    const lb_mat *w = &Ly->lin[k];
    size_t n = (size_t)(w->rows * w->cols);
    float *p = realloc(c->w[k], n * sizeof(float));
    if (!p) return lb_fail(err, LB_ENOMEM, "calibration: out of memory for block %d", l);
    c->w[k] = p;
    lb_cvt_f32_ref(p, w->data, w->dtype, (int64_t)n);
    Ly->lin[k] = (lb_mat){.dtype = LB_F32, .rows = w->rows, .cols = w->cols, .data = p};
    char name[300];
    lb_calib_module(c, l, k, name, sizeof name - 8);
    strcat(name, ".weight"); /* NaN / Inf refused before they reach any activation */
    LB_TRY(lb_quant_check_finite(p, w->rows, w->cols, name, err));
  }
  lb_status s = c->spec->method == LB_QM_AWQ      ? lb_calib_awq_block(c, l, err)
                : c->spec->method == LB_QM_CT_FP8 ? lb_calib_fp8_block(c, l, err)
                                                  : lb_calib_gptq_block(c, l, err);
  if (s != LB_OK) return s;
  *b = c->out;
  return LB_OK;
}
