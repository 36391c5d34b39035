/* bitsandbytes 4-bit quantization (quantize_4bit): NF4 / FP4 code books, blockwise absmax over the
 * row-major flattening, optional double quantization of the absmax (compress_statistics). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/bnb.h"

/* get_4bit_type("nf4"): the QLoRA values; bitsandbytes divides by their absmax (1.0), a no-op. */
const float lb_bnb_nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* get_4bit_type("fp4"): E2M1 with bias 3 (index bits: sign, then the pattern below), divided by its
 * absmax 12 in fp32 (torch's `data /= data.abs().max()`), so index 8 keeps its -0. */
void lb_bnb_fp4_code(float out[16]) {
  static const float raw[16] = {0.0f,  0.0625f,  8.0f,  12.0f,  4.0f,  6.0f,  2.0f,  3.0f,
                                -0.0f, -0.0625f, -8.0f, -12.0f, -4.0f, -6.0f, -2.0f, -3.0f};
  for (int i = 0; i < 16; i++) out[i] = raw[i] / 12.0f;
}

/* create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for exponent i = 0..6, the
 * midpoints of torch.linspace(0.1, 1, 2^i + 1) (fp32) times +-10^(i-6), then 0 and 1, sorted.
 * torch's CPU linspace computes step = (end - start) / (steps - 1) in fp32 and fills the first half
 * as start + step * k, the second as end - step * (steps - 1 - k); the python scalar 10^(i-6) is
 * cast to fp32 before the product (a wrapped number takes the tensor's dtype). */
void lb_bnb_dynamic_map(float out[256]) {
  int n = 0;
  for (int i = 0; i < 7; i++) {
    int steps = (1 << i) + 1, half = steps / 2;
    const float start = 0.1f, end = 1.0f, step = (end - start) / (float)(steps - 1);
    float b[65];
    for (int k = 0; k < steps; k++)
      b[k] = k < half ? start + step * (float)k : end - step * (float)(steps - 1 - k);
    const float pw = (float)pow(10.0, i - 6), nw = (float)-pow(10.0, i - 6);
    for (int k = 0; k + 1 < steps; k++) out[n++] = pw * ((b[k] + b[k + 1]) / 2.0f);
    for (int k = 0; k + 1 < steps; k++) out[n++] = nw * ((b[k] + b[k + 1]) / 2.0f);
  }
  out[n++] = 0.0f;
  out[n++] = 1.0f;
  /* insertion sort: 256 values, once */
  for (int i = 1; i < n; i++) {
    float v = out[i];
    int j = i - 1;
    for (; j >= 0 && out[j] > v; j--) out[j + 1] = out[j];
    out[j + 1] = v;
  }
}

/* dQuantizeNF4 of bitsandbytes' kernels: a binary tree over the midpoints of the code book, written
 * as fp32 literals; `x > t` sends a value equal to a threshold (and NaN) to the lower side. */
uint8_t lb_bnb_nf4_index(float x) {
  if (x > 0.03979014977812767f) {
    if (x > 0.3893125355243683f) {
      if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 15 : 14;
      return x > 0.5016634166240692f ? 13 : 12;
    }
    if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 11 : 10;
    return x > 0.1202552504837513f ? 9 : 8;
  }
  if (x > -0.33967943489551544f) {
    if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 7 : 6;
    return x > -0.23460740596055984f ? 5 : 4;
  }
  if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 3 : 2;
  return x > -0.8480964004993439f ? 1 : 0;
}

/* dQuantizeFP4: the sign from x < 0, then a tree over |x| with bitsandbytes' (rounded) pivots. */
uint8_t lb_bnb_fp4_index(float x) {
  uint8_t sign = x < 0 ? 8 : 0;
  x = fabsf(x);
  if (x > 0.29166667f) {
    if (x > 0.583333f) return (uint8_t)((x > 0.8333333f ? 3 : 2) + sign);
    return (uint8_t)((x > 0.4166667f ? 5 : 4) + sign);
  }
  if (x > 0.0859375f) return (uint8_t)((x > 0.20833333f ? 7 : 6) + sign);
  return (uint8_t)((x > 0.00260417f ? 1 : 0) + sign);
}

/* dQuantize<0> (non-stochastic) of kQuantizeBlockwise, literally: seven halving steps from pivot
 * 127, then a choice between the pivot and the last neighbour passed on x's side. */
uint8_t lb_bnb_dynamic_index(const float code[256], float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f, val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot, lower = val, pivot += i;
    } else {
      upper_pivot = pivot, upper = val, pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) return (uint8_t)(x > (upper + val) * 0.5f ? upper_pivot : pivot);
  return (uint8_t)(x < (lower + val) * 0.5f ? lower_pivot : pivot);
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The kernel multiplies by 1.0f / absmax (fp32; the CUDA build's fast-math reciprocal may differ by
 * an ulp, which we do not reproduce). An all-zero block gives 0 * inf = NaN, which both trees send
 * to index 0 (NF4 -1, FP4 +0): times absmax 0 that still decodes to 0. */
static float inv_absmax(float amax) { return amax > 0.0f ? 1.0f / amax : INFINITY; }

/* compress_statistics: offset = absmax.mean(), (absmax - offset) through quantize_blockwise with the
 * dynamic map and block dq_block; absmax is replaced by what dequantize_blockwise + offset gives. */
static lb_status double_quant(lb_qweight *q, const char *name, lb_error *err) {
  int64_t nb = lb_qweight_nscales(q);
  float *x = malloc((size_t)nb * sizeof *x);
  if (!x) return lb_fail(err, LB_ENOMEM, "%s: out of memory for the nested absmax", name);
  /* torch reduces the mean in fp32 in an unspecified order; a sequential fp64 sum rounded once is
   * the deterministic choice (the python reference does the same). */
  double sum = 0;
  for (int64_t i = 0; i < nb; i++) sum += q->absmax[i];
  q->dq_offset = (float)(sum / (double)nb);
  for (int64_t i = 0; i < nb; i++) x[i] = q->absmax[i] - q->dq_offset;
  for (int64_t b = 0; b * q->dq_block < nb; b++) {
    int64_t lo = b * q->dq_block, hi = lo + q->dq_block < nb ? lo + q->dq_block : nb;
    float amax = 0.0f;
    for (int64_t i = lo; i < hi; i++) amax = fmaxf(amax, fabsf(x[i]));
    q->dq_nested_absmax[b] = amax;
    float inv = inv_absmax(amax);
    for (int64_t i = lo; i < hi; i++) {
      q->dq_absmax_q[i] = lb_bnb_dynamic_index(q->dq_code, x[i] * inv);
      q->absmax[i] = q->dq_code[q->dq_absmax_q[i]] * amax + q->dq_offset;
    }
  }
  free(x);
  return LB_OK;
}

lb_status lb_bnb4_quantize(const float *w, int64_t rows, int64_t cols, bool nf4, int64_t blocksize,
                           bool double_quant_, const char *name, lb_qweight *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  if (!name) name = "weight";
  if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)))
    return lb_fail(err, LB_EINVAL, "%s: bitsandbytes 4-bit blocksize %lld: expected a power of two "
                   "in [32, 4096]", name, (long long)blocksize);
  LB_TRY(lb_quant_check_finite(w, rows, cols, name, err));
  out->kind = LB_QK_CODEBOOK;
  out->rows = rows, out->cols = cols, out->bits = 4;
  out->block = blocksize;
  out->nf4 = nf4;
  out->double_quant = double_quant_;
  out->dq_block = double_quant_ ? 256 : 0;
  lb_status s = lb_qweight_alloc(out, false, false, err);
  if (s != LB_OK) {
    lb_error_prefix(err, "%s", name);
    return s;
  }
  if (nf4) memcpy(out->code, lb_bnb_nf4_code, sizeof out->code);
  else lb_bnb_fp4_code(out->code);
  if (double_quant_) lb_bnb_dynamic_map(out->dq_code);

  int64_t n = rows * cols, nb = cdiv(n, blocksize);
  for (int64_t b = 0; b < nb; b++) {
    int64_t lo = b * blocksize, hi = lo + blocksize < n ? lo + blocksize : n;
    float amax = 0.0f;
    for (int64_t i = lo; i < hi; i++) amax = fmaxf(amax, fabsf(w[i]));
    out->absmax[b] = amax;
    float inv = inv_absmax(amax);
    for (int64_t i = lo; i < hi; i++)
      out->q[i] = nf4 ? lb_bnb_nf4_index(w[i] * inv) : lb_bnb_fp4_index(w[i] * inv);
  }
  if (double_quant_ && (s = double_quant(out, name, err)) != LB_OK) {
    lb_qweight_free(out);
    return s;
  }
  return LB_OK;
}
