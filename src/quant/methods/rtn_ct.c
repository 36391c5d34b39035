/* Round-to-nearest with compressed-tensors' parameter rule (calculate_qparams + _quantize), see
 * ct.h. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "base/status.h"
#include "quant/ct.h"

/* x rounded to dt (to nearest, ties to even), as a PyTorch op of that dtype leaves its result. */
static float rnd(float x, lb_dtype dt) {
  if (dt == LB_BF16) return lb_bf16_to_f32(lb_f32_to_bf16(x));
  if (dt == LB_F16) return lb_f16_to_f32(lb_f32_to_f16(x));
  return x;
}

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

lb_status lb_ct_int_quantize(const float *w, int64_t rows, int64_t cols, int bits, int64_t group,
                             bool sym, const lb_ct_int_opts *opts, const char *name,
                             lb_qweight *out, lb_error *err) {
  lb_dtype dt = opts ? opts->compute : LB_F32;
  bool eager = opts && opts->eager;
  if (bits < 1 || bits > 8)
    return lb_fail(err, LB_EINVAL, "%s: %d bits (compressed-tensors int takes 1 to 8)", name, bits);
  if (dt != LB_F32 && dt != LB_BF16 && dt != LB_F16)
    return lb_fail(err, LB_EINVAL, "%s: compute dtype %s (F32, BF16 or F16)", name,
                   lb_dtype_name(dt));
  if (group == -1) group = cols;
  if (group < 1 || cols % group)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: in_features %lld is not a multiple of the group size %lld "
                   "(compressed-tensors needs whole groups; use a group size that divides it, or "
                   "--group -1 for per-channel)",
                   name, (long long)cols, (long long)group);
  LB_TRY(lb_quant_check_finite(w, rows, cols, name, err));
  for (int64_t i = 0; dt != LB_F32 && i < rows * cols; i++)
    if (rnd(w[i], dt) != w[i])
      return lb_fail(err, LB_EINVAL, "%s: weight [%lld, %lld] = %g is not a %s value", name,
                     (long long)(i / cols), (long long)(i % cols), (double)w[i],
                     lb_dtype_name(dt));
  *out = (lb_qweight){.kind = LB_QK_AFFINE, .rows = rows, .cols = cols, .bits = bits,
                      .group = group, .sym = sym};
  LB_TRY(lb_qweight_alloc(out, false, false, err));
  const float qmin = -(float)(1 << (bits - 1)), qmax = (float)((1 << (bits - 1)) - 1);
  const float range = qmax - qmin; /* 2^b - 1, exact in every compute dtype for b <= 8 */
  const float eps = dt == LB_BF16 ? 0x1p-7f : dt == LB_F16 ? 0x1p-10f : FLT_EPSILON;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < out->ngroups; g++) {
      const float *x = w + r * cols + g * group;
      float mn = 0, mx = 0;
      for (int64_t i = 0; i < group; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
      float s, zp = 0;
      if (sym) {
        s = rnd(fmaxf(-mn, mx) / (range / 2), dt);
      } else {
        s = rnd(rnd(mx - mn, dt) / range, dt);
        /* s == 0 gives 0 / 0 = NaN (all zero) or +inf (clamped to qmax), as in the reference */
        zp = nearbyintf(clampf(rnd(qmin - rnd(mn / s, dt), dt), qmin, qmax));
        if (isnan(zp)) zp = 0; /* NaN cast to int8 is 0 on x86 and CUDA */
      }
      if (s == 0) s = eps;
      out->scale[r * out->ngroups + g] = s;
      out->zero[r * out->ngroups + g] = zp - qmin;
      uint8_t *q = out->q + r * cols + g * group;
      for (int64_t i = 0; i < group; i++) {
        float y = eager ? rnd(x[i] / s, dt) : x[i] / s;
        y = eager ? rnd(y + zp, dt) : y + zp;
        q[i] = (uint8_t)(nearbyintf(clampf(y, qmin, qmax)) - qmin); /* half to even */
      }
    }
  return LB_OK;
}
