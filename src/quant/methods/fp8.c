/* FP8 weight quantization: absmax scaling per block, saturating cast (see quant/fp8.h for the two
 * reference rules). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/status.h"
#include "quant/fp8.h"

float lb_fp8_max(lb_dtype fp8) {
  return fp8 == LB_F8_E4M3 ? 448.0f : fp8 == LB_F8_E5M2 ? 57344.0f : 0.0f;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Rounds an intermediate result to the compute dtype, as a PyTorch op on bf16 tensors does (the op
 * runs in fp32 and its result is rounded once). */
static float rnd(float x, bool bf16) { return bf16 ? lb_bf16_to_f32(lb_f32_to_bf16(x)) : x; }

static uint8_t to_fp8(float x, lb_dtype fp8) {
  return fp8 == LB_F8_E4M3 ? lb_f32_to_e4m3(x, true) : lb_f32_to_e5m2(x, true);
}

static float clampf(float x, float m) { return x > m ? m : x < -m ? -m : x; }

/* v rounded to the nearest E4M3 value (ties to even), saturating at +-448: the quantum is 2^-9
 * below 2^-6 (subnormals), else 2^(E - 3) for |v| in [2^E, 2^(E+1)). Both are built from the
 * exponent bits, the scalings by them are exact, and (m + 2^23) - 2^23 rounds m in [0, 16] to the
 * nearest integer, ties to even (the default rounding mode): no branch and no libm call, so that
 * the compiler may vectorize the loops below. This equals lb_e4m3_to_f32(lb_f32_to_e4m3(v, true))
 * (tests/test_quant_fp8.c checks it on every fp16 value); a NaN stays NaN. */
static inline float e4m3_round(float v) {
  const float a = fminf(fabsf(v), 448.0f); /* saturates (a NaN too: restored at the end) */
  uint32_t e;
  memcpy(&e, &a, sizeof e);
  e &= 0x7F800000u;                                       /* 2^E */
  e = e < (127u - 6u) << 23 ? (127u - 6u) << 23 : e;      /* below 2^-6: E = -6 */
  const uint32_t qb = e - (3u << 23), ib = (254u << 23) - qb; /* 2^(E-3) and 2^(3-E) */
  float q, iq;
  memcpy(&q, &qb, sizeof q);
  memcpy(&iq, &ib, sizeof iq);
  const float r = copysignf(((a * iq + 8388608.0f) - 8388608.0f) * q, v);
  return v != v ? v : r;
}

float lb_fp8_e4m3_round(float v) { return e4m3_round(v); }

void lb_fp8_act_quant(const float *x, int64_t n, int64_t cols, int64_t group, float *out) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t c0 = 0; c0 < cols; c0 += group) {
      const float *xs = x + i * cols + c0;
      float *o = out + i * cols + c0;
      int64_t len = cols - c0 < group ? cols - c0 : group;
      float amax = 0.0f;
      for (int64_t c = 0; c < len; c++) amax = fmaxf(amax, fabsf(xs[c]));
      const float s = amax / 448.0f;
      if (s > 0.0f)
        for (int64_t c = 0; c < len; c++) o[c] = e4m3_round(xs[c] / s) * s;
      else
        for (int64_t c = 0; c < len; c++) o[c] = xs[c] * 0.0f;
    }
}

void lb_fp8_act_quant_static(const float *x, int64_t n, int64_t cols, float s, float *out) {
  for (int64_t i = 0; i < n * cols; i++) out[i] = e4m3_round(x[i] / s) * s;
}

const char *lb_fp8_act_describe(lb_fp8_act a, int64_t group, char *buf, size_t cap) {
  switch (a) {
  case LB_FP8_ACT_GROUP128: snprintf(buf, cap, "dynamic 1x%lld", (long long)group); break;
  case LB_FP8_ACT_TOKEN: snprintf(buf, cap, "dynamic per token"); break;
  case LB_FP8_ACT_STATIC: snprintf(buf, cap, "static per tensor"); break;
  case LB_FP8_ACT_AUTO: snprintf(buf, cap, "as the checkpoint declares"); break;
  default: snprintf(buf, cap, "none"); break;
  }
  return buf;
}

lb_status lb_fp8_quantize(const float *w, int64_t rows, int64_t cols, lb_dtype fp8, int64_t block_r,
                          int64_t block_c, lb_qweight *out, lb_error *err) {
  lb_fp8_opts o = {LB_FP8_RULE_CT, LB_F32};
  return lb_fp8_quantize_ex(w, rows, cols, fp8, block_r, block_c, &o, out, err);
}

lb_status lb_fp8_quantize_ex(const float *w, int64_t rows, int64_t cols, lb_dtype fp8,
                             int64_t block_r, int64_t block_c, const lb_fp8_opts *opts,
                             lb_qweight *out, lb_error *err) {
  if (fp8 != LB_F8_E4M3 && fp8 != LB_F8_E5M2)
    return lb_fail(err, LB_EINVAL, "fp8 quantization: dtype %s is not F8_E4M3 or F8_E5M2",
                   lb_dtype_name(fp8));
  if (!opts || (opts->compute != LB_F32 && opts->compute != LB_BF16) ||
      (opts->rule != LB_FP8_RULE_CT && opts->rule != LB_FP8_RULE_HF))
    return lb_fail(err, LB_EINVAL, "fp8 quantization: options must pick a rule and F32 or BF16");
  if (block_r < 1 || block_c < 1)
    return lb_fail(err, LB_EINVAL, "fp8 quantization: block %lld x %lld", (long long)block_r,
                   (long long)block_c);
  LB_TRY(lb_quant_check_finite(w, rows, cols, "fp8 quantization", err));
  lb_qweight q = {.kind = LB_QK_FP8,
                  .rows = rows,
                  .cols = cols,
                  .bits = 8,
                  .fp8 = fp8,
                  .block_r = block_r,
                  .block_c = block_c};
  LB_TRY(lb_qweight_alloc(&q, false, false, err));

  const bool bf = opts->compute == LB_BF16;
  const float fmax = lb_fp8_max(fp8);
  const int64_t nbc = cdiv(cols, block_c);
  for (int64_t br = 0; br < cdiv(rows, block_r); br++) {
    for (int64_t bc = 0; bc < nbc; bc++) {
      int64_t r0 = br * block_r, r1 = r0 + block_r < rows ? r0 + block_r : rows;
      int64_t c0 = bc * block_c, c1 = c0 + block_c < cols ? c0 + block_c : cols;
      float amax = 0.0f; /* max(|min(x, 0)|, max(x, 0)) of compressed-tensors is the same value */
      for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(w[r * cols + c]));
      float s, m = 0.0f;
      if (opts->rule == LB_FP8_RULE_CT) {
        /* scales = max_val_pos / (bit_range / 2), then clamp(min=finfo(float32).eps) */
        s = fmaxf(rnd(amax / fmax, bf), FLT_EPSILON);
      } else if (amax > 0.0f) {
        m = rnd(fmax / amax, bf); /* scale = fp8_max / max_abs */
        s = rnd(1.0f / m, bf);    /* weight_scale_inv = scale.reciprocal() */
      } else {
        s = FLT_EPSILON; /* Transformers would give NaN codes here (0 * inf) */
      }
      q.scale[br * nbc + bc] = s;
      for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) {
          float x = w[r * cols + c];
          float y = opts->rule == LB_FP8_RULE_CT ? rnd(x / s, bf) : rnd(x * m, bf);
          /* clamp first (the references clamp, since the plain cast is not saturating) */
          q.q[r * cols + c] = to_fp8(clampf(y, fmax), fp8);
        }
    }
  }
  *out = q;
  return LB_OK;
}
