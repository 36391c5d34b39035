/* AWQ's model-free parts (awq.h): AutoAWQ's pseudo quantization, the scale statistics and grid,
 * and the clipping search. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/awq.h"
#include "quant/qweight.h"

/* One group of n values: AutoAWQ's scale and zero point. */
static void group_params(const float *w, int64_t n, float maxq, float *scale, float *zero) {
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < n; i++) lo = fminf(lo, w[i]), hi = fmaxf(hi, w[i]);
  float s = fmaxf(hi - lo, 1e-5f) / maxq;
  float z = -nearbyintf(lo / s);
  *scale = s;
  *zero = z < 0 ? 0 : z > maxq ? maxq : z;
}

static float code(float x, float s, float z, float maxq) {
  float q = nearbyintf(x / s) + z;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

void lb_awq_fake_quant(float *w, int64_t rows, int64_t cols, int bits, int64_t group) {
  float maxq = (float)((1 << bits) - 1);
  int64_t gs = group > 0 ? group : cols;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g0 = 0; g0 < cols; g0 += gs) {
      float *x = w + r * cols + g0, s, z;
      int64_t n = cols - g0 < gs ? cols - g0 : gs;
      group_params(x, n, maxq, &s, &z);
      for (int64_t i = 0; i < n; i++) x[i] = (code(x[i], s, z, maxq) - z) * s;
    }
}

static float round_to(float v, lb_dtype dt) {
  if (dt == LB_F16) return lb_f16_to_f32(lb_f32_to_f16(v));
  if (dt == LB_BF16) return lb_bf16_to_f32(lb_f32_to_bf16(v));
  return v;
}

lb_status lb_awq_quantize(const float *w, int64_t rows, int64_t cols, int bits, int64_t group,
                          lb_dtype scale_dtype, const char *name, lb_qweight *out, lb_error *err) {
  LB_TRY(lb_quant_check_finite(w, rows, cols, name, err));
  int64_t gs = group > 0 && group < cols ? group : cols;
  if (cols % gs)
    return lb_fail(err, LB_EINVAL, "%s: in_features %lld is not a multiple of the group size %lld",
                   name, (long long)cols, (long long)gs);
  *out = (lb_qweight){.kind = LB_QK_AFFINE, .rows = rows, .cols = cols, .bits = bits, .group = gs};
  LB_TRY(lb_qweight_alloc(out, false, false, err));
  float maxq = (float)((1 << bits) - 1);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < out->ngroups; g++) {
      const float *x = w + r * cols + g * gs;
      float *s = &out->scale[r * out->ngroups + g], *z = &out->zero[r * out->ngroups + g];
      group_params(x, gs, maxq, s, z);
      *s = round_to(*s, scale_dtype);
      for (int64_t i = 0; i < gs; i++) out->q[r * cols + g * gs + i] = (uint8_t)code(x[i], *s, *z, maxq);
    }
  return LB_OK;
}

void lb_awq_w_mean(const float *const *w, const int64_t *rows, int n, int64_t cols, int64_t group,
                   float *w_mean) {
  int64_t gs = group > 0 ? group : cols, total = 0;
  double *acc = calloc((size_t)cols, sizeof(double));
  if (!acc) { /* a statistic only: all-equal weights are the neutral fallback */
    for (int64_t c = 0; c < cols; c++) w_mean[c] = 1;
    return;
  }
  for (int k = 0; k < n; k++) {
    for (int64_t r = 0; r < rows[k]; r++)
      for (int64_t g0 = 0; g0 < cols; g0 += gs) {
        const float *x = w[k] + r * cols + g0;
        int64_t m = cols - g0 < gs ? cols - g0 : gs;
        float amax = 0;
        for (int64_t i = 0; i < m; i++) amax = fmaxf(amax, fabsf(x[i]));
        for (int64_t i = 0; i < m; i++) acc[g0 + i] += fabsf(x[i]) / (amax + 1e-6f);
      }
    total += rows[k];
  }
  for (int64_t c = 0; c < cols; c++) w_mean[c] = (float)(acc[c] / (double)total);
  free(acc);
}

void lb_awq_scales(const float *x_mean, const float *w_mean, int64_t cols, double ratio, float *s) {
  float lo = INFINITY, hi = 0;
  for (int64_t c = 0; c < cols; c++) {
    float v = powf(x_mean[c], (float)ratio) / (powf(w_mean[c], (float)(1 - ratio)) + 1e-4f);
    s[c] = fmaxf(v, 1e-4f);
    lo = fminf(lo, s[c]), hi = fmaxf(hi, s[c]);
  }
  float norm = sqrtf(hi * lo);
  for (int64_t c = 0; c < cols; c++) {
    s[c] /= norm;
    if (!isfinite(s[c])) s[c] = 1;
  }
}

int lb_awq_search(const float *x_mean, const float *w_mean, int64_t cols, int grid,
                  double (*loss)(void *ctx, const float *s), void *ctx, float *best_s,
                  double *losses) {
  float *s = malloc((size_t)cols * sizeof(float));
  if (!s) return -1;
  int best = -1;
  double best_loss = INFINITY;
  for (int i = 0; i < grid; i++) {
    lb_awq_scales(x_mean, w_mean, cols, (double)i / grid, s);
    double l = loss(ctx, s);
    if (losses) losses[i] = l;
    if (l < best_loss) {
      best_loss = l, best = i;
      memcpy(best_s, s, (size_t)cols * sizeof(float));
    }
  }
  free(s);
  return best;
}

lb_status lb_awq_clip(float *w, int64_t rows, int64_t cols, int bits, int64_t group, const float *x,
                      int64_t n, const char *name, lb_error *err) {
  int64_t gs = group > 0 ? group : cols, R = rows;
  float maxq = (float)((1 << bits) - 1);
  float *org = malloc((size_t)(n * R) * sizeof(float)), *out = malloc((size_t)(n * R) * sizeof(float));
  float *q = malloc((size_t)(R * gs) * sizeof(float)), *amax = malloc((size_t)R * sizeof(float));
  float *best = malloc((size_t)R * sizeof(float));
  double *minerr = malloc((size_t)R * sizeof(double));
  lb_status st = LB_OK;
  if (!org || !out || !q || !amax || !best || !minerr) {
    st = lb_fail(err, LB_ENOMEM, "%s: out of memory for the clipping search", name);
    goto done;
  }
  for (int64_t g0 = 0; g0 < cols; g0 += gs) {
    /* the group's partial outputs with the weights as they are */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)R, (int)gs, 1.0f, x + g0,
                (int)cols, w + g0, (int)cols, 0.0f, org, (int)R);
    for (int64_t r = 0; r < R; r++) {
      float a = 0;
      for (int64_t i = 0; i < gs; i++) a = fmaxf(a, fabsf(w[r * cols + g0 + i]));
      amax[r] = best[r] = a;
      minerr[r] = 1e9;
    }
    for (int s = 0; s < 10; s++) { /* max_shrink 0.5 of n_grid 20 */
      for (int64_t r = 0; r < R; r++) {
        float mv = amax[r] * (1.0f - (float)s / 20.0f), sc, z;
        float *qr = q + r * gs;
        for (int64_t i = 0; i < gs; i++) qr[i] = fminf(fmaxf(w[r * cols + g0 + i], -mv), mv);
        group_params(qr, gs, maxq, &sc, &z);
        for (int64_t i = 0; i < gs; i++) qr[i] = (code(qr[i], sc, z, maxq) - z) * sc;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)R, (int)gs, 1.0f, x + g0,
                  (int)cols, q, (int)gs, 0.0f, out, (int)R);
      for (int64_t r = 0; r < R; r++) {
        double e = 0;
        for (int64_t t = 0; t < n; t++) {
          double d = (double)out[t * R + r] - (double)org[t * R + r];
          e += d * d;
        }
        e /= (double)n;
        if (e < minerr[r]) minerr[r] = e, best[r] = amax[r] * (1.0f - (float)s / 20.0f);
      }
    }
    for (int64_t r = 0; r < R; r++)
      for (int64_t i = 0; i < gs; i++) {
        float *v = &w[r * cols + g0 + i];
        *v = fminf(fmaxf(*v, -best[r]), best[r]);
      }
  }
done:
  free(org), free(out), free(q), free(amax), free(best), free(minerr);
  return st;
}
