/* Rotary position embeddings as Transformers computes them (modeling_rope_utils.py): inverse
 * frequencies 1 / theta^(2i/d) in fp32, adjusted by the rope type (default, linear, dynamic NTK,
 * llama3), angles pos * inv_freq in fp32, the rotate_half pairing (i, i + d/2). */
#include <math.h>
#include <stdlib.h>

#include "base/status.h"
#include "model/model_internal.h"

static void base_freqs(float *f, int64_t dim, double theta) {
  for (int64_t i = 0; i < dim / 2; i++)
    f[i] = (float)(1.0 / pow(theta, (double)(float)(2 * i) / (double)dim));
}

lb_status lb_rope_init(lb_rope_state *r, const lb_config *cfg, lb_error *err) {
  const lb_rope *p = &cfg->rope;
  r->dim = cfg->head_dim;
  r->attention_scaling = 1.0f;
  r->dyn_len = 0;
  r->cs = NULL;
  r->cs_n = 0;
  if (r->dim % 2)
    return lb_fail(err, LB_EUNSUPPORTED, "config.json: head_dim %lld is odd", (long long)r->dim);
  if (p->type == LB_ROPE_YARN)
    return lb_fail(err, LB_EUNSUPPORTED, "config.json: rope_type \"yarn\" is not supported yet");
  r->inv_freq = malloc((size_t)r->dim / 2 * sizeof(float));
  r->dyn_freq = malloc((size_t)r->dim / 2 * sizeof(float));
  if (!r->inv_freq || !r->dyn_freq) return lb_fail(err, LB_ENOMEM, "rope: out of memory");
  base_freqs(r->inv_freq, r->dim, p->theta);
  if (p->type == LB_ROPE_LINEAR) {
    for (int64_t i = 0; i < r->dim / 2; i++) r->inv_freq[i] /= (float)p->factor;
  } else if (p->type == LB_ROPE_LLAMA3) {
    double old = (double)p->original_max_position_embeddings;
    double low_wl = old / p->low_freq_factor, high_wl = old / p->high_freq_factor;
    for (int64_t i = 0; i < r->dim / 2; i++) {
      double f = r->inv_freq[i], wl = 2 * M_PI / f;
      if (wl > low_wl) {
        f /= p->factor; /* long wavelengths: interpolated */
      } else if (wl >= high_wl) {
        double s = (old / wl - p->low_freq_factor) / (p->high_freq_factor - p->low_freq_factor);
        f = (1 - s) * f / p->factor + s * f; /* between: a smooth blend */
      }
      r->inv_freq[i] = (float)f;
    }
  }
  return LB_OK;
}

void lb_rope_free(lb_rope_state *r) {
  free(r->inv_freq);
  free(r->dyn_freq);
  free(r->cs);
  r->inv_freq = r->dyn_freq = r->cs = NULL;
}

/* Dynamic NTK (Transformers' dynamic_rope_update): past the original context, theta grows with the
 * sequence length, base * ((factor * len / orig) - (factor - 1)) ^ (d / (d - 2)). */
static const float *freqs_for(lb_rope_state *r, const lb_config *cfg, int64_t seq_len) {
  int64_t orig = cfg->max_position_embeddings;
  if (cfg->rope.type != LB_ROPE_DYNAMIC || seq_len <= orig) return r->inv_freq;
  if (r->dyn_len != seq_len) {
    double f = cfg->rope.factor, d = (double)r->dim;
    double base = cfg->rope.theta * pow(f * (double)seq_len / (double)orig - (f - 1), d / (d - 2));
    base_freqs(r->dyn_freq, r->dim, base);
    r->dyn_len = seq_len;
  }
  return r->dyn_freq;
}

/* cos and sin of row t at cs[t * dim] (cos in the first half, sin in the second). A forward
 * pass rotates q and k of every layer at the same positions, so the table of the last call is
 * kept and reused while positions and length match (up to TABLE_ROWS rows). */
enum { TABLE_ROWS = 512 };

static void angles(const lb_rope_state *r, const float *inv, int64_t pos, float *cs) {
  const int64_t half = r->dim / 2;
  for (int64_t i = 0; i < half; i++) {
    float a = (float)pos * inv[i];
    cs[i] = cosf(a) * r->attention_scaling;
    cs[half + i] = sinf(a) * r->attention_scaling;
  }
}

static void rotate(const float *cs, int64_t dim, float *x, int64_t heads) {
  const int64_t half = dim / 2;
  for (int64_t h = 0; h < heads; h++) {
    float *v = x + h * dim;
    for (int64_t i = 0; i < half; i++) {
      float x1 = v[i], x2 = v[i + half], c = cs[i], s = cs[half + i];
      v[i] = x1 * c - x2 * s;
      v[i + half] = x2 * c + x1 * s;
    }
  }
}

void lb_rope_apply(lb_rope_state *r, const lb_config *cfg, float *x, int64_t n, int64_t heads,
                   int64_t stride, int64_t pos0, int64_t seq_len) {
  const float *inv = freqs_for(r, cfg, seq_len);
  if (!r->cs) r->cs = malloc((size_t)(TABLE_ROWS * r->dim) * sizeof(float));
  bool cached = r->cs && r->cs_n >= n && r->cs_pos0 == pos0 && r->cs_seq == seq_len;
  if (r->cs && !cached && n <= TABLE_ROWS) {
    lb_rope_table(r, cfg, pos0, n, seq_len, r->cs);
    r->cs_n = n, r->cs_pos0 = pos0, r->cs_seq = seq_len;
    cached = true;
  }
  float one[2048]; /* head_dim <= 1024 is checked at model open */
  for (int64_t t = 0; t < n; t++) {
    const float *cs = one;
    if (cached) cs = r->cs + t * r->dim;
    else angles(r, inv, pos0 + t, one);
    rotate(cs, r->dim, x + t * stride, heads);
  }
}

void lb_rope_table(lb_rope_state *r, const lb_config *cfg, int64_t pos0, int64_t n, int64_t seq_len,
                   float *cs) {
  const float *inv = freqs_for(r, cfg, seq_len);
  for (int64_t t = 0; t < n; t++) angles(r, inv, pos0 + t, cs + t * r->dim);
}
