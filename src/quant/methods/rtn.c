/* Round-to-nearest affine quantization with GPTQ's parameter formulas (see gptq.h). */
#include <math.h>
#include <stdlib.h>

#include "base/status.h"
#include "quant/gptq.h"

lb_status lb_rtn_quantize(const float *w, int64_t rows, int64_t cols, int bits, int64_t group,
                          bool sym, const char *name, lb_qweight *out, lb_error *err) {
  if (bits < 2 || bits > 8)
    return lb_fail(err, LB_EINVAL, "%s: %d bits (rtn takes 2 to 8)", name, bits);
  LB_TRY(lb_quant_check_finite(w, rows, cols, name, err));
  *out = (lb_qweight){.kind = LB_QK_AFFINE, .rows = rows, .cols = cols, .bits = bits,
                      .group = group < cols ? group : cols, .sym = sym};
  LB_TRY(lb_qweight_alloc(out, false, false, err));
  float maxq = (float)((1 << bits) - 1);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < out->ngroups; g++) {
      const float *x = w + r * cols + g * out->group;
      int64_t n = cols - g * out->group < out->group ? cols - g * out->group : out->group;
      float xmin = 0, xmax = 0;
      for (int64_t i = 0; i < n; i++) xmin = fminf(xmin, x[i]), xmax = fmaxf(xmax, x[i]);
      if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0) xmin = -xmax;
      }
      if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
      float scale = (xmax - xmin) / maxq;
      float zero = sym ? (maxq + 1) / 2 : nearbyintf(-xmin / scale);
      out->scale[r * out->ngroups + g] = scale;
      out->zero[r * out->ngroups + g] = zero;
      uint8_t *q = out->q + r * cols + g * out->group;
      for (int64_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] / scale) + zero; /* default rounding mode: half to even */
        q[i] = (uint8_t)(v < 0 ? 0 : v > maxq ? maxq : v);
      }
    }
  return LB_OK;
}

int64_t lb_rtn_v1_safe(const float *w, lb_qweight *q) {
  int64_t changed = 0;
  if (q->kind != LB_QK_AFFINE || q->sym || q->g_idx) return 0;
  float maxq = (float)((1 << q->bits) - 1);
  for (int64_t r = 0; r < q->rows; r++)
    for (int64_t g = 0; g < q->ngroups; g++) {
      if (q->zero[r * q->ngroups + g] != 0.0f) continue;
      const float *x = w + r * q->cols + g * q->group;
      int64_t n = q->cols - g * q->group < q->group ? q->cols - g * q->group : q->group;
      float xmax = 0;
      for (int64_t i = 0; i < n; i++) xmax = fmaxf(xmax, x[i]);
      float scale = xmax / (maxq - 1.0f); /* xmax > 0: a zero of 0 needs max x > scale / 2 > 0 */
      q->scale[r * q->ngroups + g] = scale;
      q->zero[r * q->ngroups + g] = 1.0f;
      uint8_t *c = q->q + r * q->cols + g * q->group;
      for (int64_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] / scale) + 1.0f;
        c[i] = (uint8_t)(v < 0 ? 0 : v > maxq ? maxq : v);
      }
      changed++;
    }
  return changed;
}
