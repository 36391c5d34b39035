/* LLM.int8 (bitsandbytes Int8Params / MatMul8bitLt): row-wise absmax int8 weights, and the scalar
 * reference of the mixed int8 / fp32 matmul with outlier decomposition. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/bnb.h"

/* Int8Params._quantize casts the weight to fp16 before int8_vectorwise_quant: the codes and SCB are
 * those of the fp16 values. */
static float to_f16(float v) { return lb_f16_to_f32(lb_f32_to_f16(v)); }

/* int8_vectorwise_quant's rounding: torch.round (ties to even) of w * (127 / SCB), both products in
 * fp32 (the CUDA kernel's __fdividef may differ by an ulp before rounding; not reproduced). */
static int8_t quant_one(float v, float scale) {
  float r = rintf(v * scale);
  return (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
}

lb_status lb_int8_quantize(const float *w, int64_t rows, int64_t cols, float threshold,
                           const char *name, lb_qweight *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  if (!name) name = "weight";
  if (!(threshold >= 0.0f) || !isfinite(threshold))
    return lb_fail(err, LB_EINVAL, "%s: LLM.int8 threshold %g: expected a finite value >= 0", name,
                   (double)threshold);
  for (int64_t i = 0; i < rows * cols; i++)
    if (!isfinite(to_f16(w[i])))
      return lb_fail(err, LB_EINVAL, "%s: weight [%lld, %lld] = %g is not finite in fp16, which "
                     "LLM.int8 quantizes from", name, (long long)(i / cols), (long long)(i % cols),
                     (double)w[i]);
  out->kind = LB_QK_INT8ROW;
  out->rows = rows, out->cols = cols, out->bits = 8;
  out->threshold = threshold;
  lb_status s = lb_qweight_alloc(out, false, false, err);
  if (s != LB_OK) {
    lb_error_prefix(err, "%s", name);
    return s;
  }
  for (int64_t r = 0; r < rows; r++) {
    const float *row = w + r * cols;
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(to_f16(row[c])));
    out->scale[r] = amax;
    /* an all-zero row: 0 * (127 / 0) is NaN in bitsandbytes, which its int8 cast makes 0 */
    float scale = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t c = 0; c < cols; c++) out->q[r * cols + c] = (uint8_t)quant_one(to_f16(row[c]), scale);
  }
  return LB_OK;
}

lb_status lb_int8_linear_ref(const lb_qweight *w, const float *x, int64_t n, float *y,
                             lb_error *err) {
  if (w->kind != LB_QK_INT8ROW)
    return lb_fail(err, LB_EINVAL, "LLM.int8 matmul: the weight is not LB_QK_INT8ROW");
  const int64_t rows = w->rows, cols = w->cols;
  const float thr = w->threshold;
  bool *outlier = calloc((size_t)cols, sizeof *outlier);
  int8_t *xq = malloc((size_t)cols);
  if (!outlier || !xq) {
    free(outlier), free(xq);
    return lb_fail(err, LB_ENOMEM, "LLM.int8 matmul: out of memory");
  }
  /* an outlier column: any activation with |x| >= threshold (int8_vectorwise_quant's `>=`) */
  bool any_outlier = false;
  for (int64_t i = 0; thr > 0.0f && i < n; i++)
    for (int64_t c = 0; c < cols; c++)
      if (fabsf(x[i * cols + c]) >= thr) outlier[c] = any_outlier = true;
  for (int64_t i = 0; i < n; i++) {
    const float *xr = x + i * cols;
    /* SCA: the row's absmax over the non-outlier values (outlier values were zeroed before it);
     * outlier columns are then zeroed in the int8 activations */
    float sca = 0.0f;
    for (int64_t c = 0; c < cols; c++) {
      float a = fabsf(xr[c]);
      if (!(thr > 0.0f && a >= thr)) sca = fmaxf(sca, a);
    }
    float s = sca > 0.0f ? 127.0f / sca : 0.0f;
    for (int64_t c = 0; c < cols; c++) xq[c] = outlier[c] ? 0 : quant_one(xr[c], s);
    for (int64_t r = 0; r < rows; r++) {
      const int8_t *q = (const int8_t *)w->q + r * cols;
      int32_t acc = 0;
      for (int64_t c = 0; c < cols; c++) acc += (int32_t)xq[c] * (int32_t)q[c];
      /* int8_mm_dequant: acc * (SCA * SCB) * 1/127^2 (its fp32 constant) */
      float v = (float)acc * (sca * w->scale[r]) * 6.200124e-05f;
      if (w->bias) v += w->bias[r];
      if (any_outlier) {
        /* int8_vectorwise_dequant of the outlier weight columns: q * SCB * 1/127 (fp32) */
        float acc_f = 0.0f;
        for (int64_t c = 0; c < cols; c++)
          if (outlier[c]) acc_f += xr[c] * ((float)q[c] * w->scale[r] * 7.874015718698502e-3f);
        v += acc_f;
      }
      y[i * rows + r] = v;
    }
  }
  free(outlier), free(xq);
  return LB_OK;
}
