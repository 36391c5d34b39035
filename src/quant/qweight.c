/* The canonical quantized weight: allocation, reference dequantization, checks. */
#include "quant/qweight.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t lb_qweight_nscales(const lb_qweight *w) {
  switch (w->kind) {
  case LB_QK_AFFINE: return w->rows * w->ngroups;
  case LB_QK_CODEBOOK: return cdiv(w->rows * w->cols, w->block);
  case LB_QK_INT8ROW: return w->rows;
  case LB_QK_FP8: return cdiv(w->rows, w->block_r) * cdiv(w->cols, w->block_c);
  }
  return 0;
}

static void *zalloc(int64_t n, size_t size, bool *ok) {
  void *p = calloc(n > 0 ? (size_t)n : 1, size);
  if (!p) *ok = false;
  return p;
}

lb_status lb_qweight_alloc(lb_qweight *w, bool with_g_idx, bool with_bias, lb_error *err) {
  if (w->rows < 1 || w->cols < 1 || w->rows > (1ll << 31) || w->cols > (1ll << 31))
    return lb_fail(err, LB_EINVAL, "quantized weight: bad shape [%lld, %lld]", (long long)w->rows,
                   (long long)w->cols);
  if (w->kind == LB_QK_AFFINE) {
    if (w->bits < 1 || w->bits > 8 || w->group < 1)
      return lb_fail(err, LB_EINVAL, "quantized weight: %d bits, group %lld", w->bits,
                     (long long)w->group);
    w->ngroups = cdiv(w->cols, w->group);
  }
  if (w->kind == LB_QK_CODEBOOK && (w->block < 1 || (w->double_quant && w->dq_block < 1)))
    return lb_fail(err, LB_EINVAL, "quantized weight: block %lld", (long long)w->block);
  if (w->kind == LB_QK_FP8 && (w->block_r < 1 || w->block_c < 1))
    return lb_fail(err, LB_EINVAL, "quantized weight: fp8 block %lld x %lld", (long long)w->block_r,
                   (long long)w->block_c);
  bool ok = true;
  int64_t ns = lb_qweight_nscales(w);
  w->q = zalloc(w->rows * w->cols, 1, &ok);
  if (w->kind == LB_QK_CODEBOOK) {
    w->absmax = zalloc(ns, sizeof(float), &ok);
    if (w->double_quant) {
      w->dq_absmax_q = zalloc(ns, 1, &ok);
      w->dq_nested_absmax = zalloc(cdiv(ns, w->dq_block), sizeof(float), &ok);
    }
  } else {
    w->scale = zalloc(ns, sizeof(float), &ok);
  }
  if (w->kind == LB_QK_AFFINE) w->zero = zalloc(ns, sizeof(float), &ok);
  if (with_g_idx) w->g_idx = zalloc(w->cols, sizeof(int32_t), &ok);
  if (with_bias) w->bias = zalloc(w->rows, sizeof(float), &ok);
  if (!ok) {
    lb_qweight_free(w);
    return lb_fail(err, LB_ENOMEM, "out of memory for a [%lld, %lld] quantized weight",
                   (long long)w->rows, (long long)w->cols);
  }
  return LB_OK;
}

void lb_qweight_free(lb_qweight *w) {
  free(w->q);
  free(w->scale);
  free(w->zero);
  free(w->g_idx);
  free(w->absmax);
  free(w->dq_absmax_q);
  free(w->dq_nested_absmax);
  free(w->bias);
  w->q = NULL, w->scale = w->zero = w->absmax = w->dq_nested_absmax = w->bias = NULL;
  w->g_idx = NULL, w->dq_absmax_q = NULL;
}

void lb_qweight_dequant_row(const lb_qweight *w, int64_t r, float *out) {
  const uint8_t *q = w->q + r * w->cols;
  switch (w->kind) {
  case LB_QK_AFFINE: {
    const float *s = w->scale + r * w->ngroups, *z = w->zero + r * w->ngroups;
    for (int64_t c = 0; c < w->cols; c++) {
      int64_t g = w->g_idx ? w->g_idx[c] : c / w->group;
      out[c] = ((float)q[c] - z[g]) * s[g];
    }
    break;
  }
  case LB_QK_CODEBOOK:
    for (int64_t c = 0; c < w->cols; c++)
      out[c] = w->code[q[c] & 15] * w->absmax[(r * w->cols + c) / w->block];
    break;
  case LB_QK_INT8ROW:
    for (int64_t c = 0; c < w->cols; c++) out[c] = (float)(int8_t)q[c] * (w->scale[r] / 127.0f);
    break;
  case LB_QK_FP8: {
    const float *s = w->scale + (r / w->block_r) * cdiv(w->cols, w->block_c);
    for (int64_t c = 0; c < w->cols; c++) {
      float v = w->fp8 == LB_F8_E4M3 ? lb_e4m3_to_f32(q[c]) : lb_e5m2_to_f32(q[c]);
      out[c] = v * s[c / w->block_c];
    }
    break;
  }
  }
}

lb_status lb_quant_check_finite(const float *w, int64_t rows, int64_t cols, const char *name,
                                lb_error *err) {
  for (int64_t i = 0; i < rows * cols; i++)
    if (!isfinite(w[i]))
      return lb_fail(err, LB_EINVAL, "%s: weight [%lld, %lld] is %s; refusing to quantize", name,
                     (long long)(i / cols), (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
  return LB_OK;
}

lb_status lb_qweight_check(const lb_qweight *w, const char *name, lb_error *err) {
  int64_t ns = lb_qweight_nscales(w);
  const float *sc = w->kind == LB_QK_CODEBOOK ? w->absmax : w->scale;
  for (int64_t i = 0; i < ns; i++)
    if (!isfinite(sc[i]))
      return lb_fail(err, LB_EFORMAT, "%s: scale %lld is not finite", name, (long long)i);
  if (w->kind == LB_QK_AFFINE) {
    for (int64_t i = 0; i < ns; i++)
      if (!isfinite(w->zero[i]))
        return lb_fail(err, LB_EFORMAT, "%s: zero point %lld is not finite", name, (long long)i);
    int max = (1 << w->bits) - 1;
    for (int64_t i = 0; i < w->rows * w->cols; i++)
      if (w->q[i] > max)
        return lb_fail(err, LB_EFORMAT, "%s: code %d at %lld exceeds %d bits", name, w->q[i],
                       (long long)i, w->bits);
    for (int64_t c = 0; w->g_idx && c < w->cols; c++)
      if (w->g_idx[c] < 0 || w->g_idx[c] >= w->ngroups)
        return lb_fail(err, LB_EFORMAT, "%s: g_idx[%lld] = %d is not a group in [0, %lld)", name,
                       (long long)c, w->g_idx[c], (long long)w->ngroups);
  }
  if (w->kind == LB_QK_CODEBOOK)
    for (int64_t i = 0; i < w->rows * w->cols; i++)
      if (w->q[i] > 15) return lb_fail(err, LB_EFORMAT, "%s: 4-bit code %d", name, w->q[i]);
  return LB_OK;
}
