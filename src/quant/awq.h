/* The AutoAWQ on-disk layout of one Linear (quant_method "awq", versions "gemm" and "gemv"), as
 * AutoAWQ writes it in awq/modules/linear/gemm.py and gemv.py (WQLinear_*.from_linear) and reads it
 * back in awq/utils/packing_utils.py (unpack_awq, reverse_awq_order, dequantize_gemm). AutoAWQ packs
 * only 4-bit codes (w_bit 4): eight codes per int32 word, code j of a word at bits 4j .. 4j+3.
 * Shapes are PyTorch order; out = rows of the canonical weight, in = cols, G = in / group.
 *
 *   "gemm": codes and zeros packed along the OUTPUT dim, in AWQ's interleaved order: nibble j of
 *           word k holds output column 8k + AWQ_ORDER[j], AWQ_ORDER = {0, 2, 4, 6, 1, 3, 5, 7}
 *           (the reverse map, nibble of column 8k + m, is {0, 4, 1, 5, 2, 6, 3, 7}[m]).
 *     qweight int32 [in, out / 8]   word [i, k]: codes of W[8k + AWQ_ORDER[j], i]
 *     qzeros  int32 [G, out / 8]    word [g, k]: zeros of outputs 8k + AWQ_ORDER[j] in group g
 *     scales  f16   [G, out]
 *   "gemv": codes packed along the INPUT dim in plain order, per output row; the zero and scale
 *           rows are padded to Z = calculate_zeros_width(in, group) words:
 *           Z = ceil(ceil(G / 8) / m) * m with m = 1 (group >= 128), 2 (group 64), 4 (group 32);
 *           other group sizes are refused by AutoAWQ (NotImplementedError), and so here.
 *     qweight int32 [out, in / 8]   word [o, k]: nibble j = code of W[o, 8k + j]
 *     qzeros  int32 [out, Z]        word [o, k]: nibble j = zero of group 8k + j (8k + j < G; the
 *                                   rest, and words past ceil(G / 8), are 0)
 *     scales  f16   [out, Z * 8]    scales[o, g] for g < G; the padding is 0
 *   both: bias f16 [out] when the Linear has one.
 * Zeros are stored as they are (no "- 1" as in GPTQ v1), whole numbers in [0, 15]:
 *   W[o, i] = (q[o, i] - zero[o, i / group]) * scale[o, i / group].
 * Both versions need out % 8 == 0 and in % group == 0 (AutoAWQ's asserts); "gemv" also in % 8 == 0.
 * group_size -1 in a config means one group per row (AutoAWQ: group_size = in_features). */
#ifndef LB_QUANT_AWQ_H
#define LB_QUANT_AWQ_H

#include "quant/qweight.h"

typedef enum { LB_AWQ_GEMM, LB_AWQ_GEMV } lb_awq_version;

/* Writes <prefix>.qweight/.qzeros/.scales (+ .bias as F16) of one Linear in the given version. q must
 * be LB_QK_AFFINE with 4-bit codes, no g_idx, a group dividing cols, zeros whole numbers in [0, 15]
 * and scales (and bias) finite in F16; the layout's shape constraints above are checked. Every
 * refusal is LB_EINVAL naming prefix. */
lb_status lb_awq_write(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_awq_version v,
                       lb_error *err);

/* Reads them back: bits (must be 4) and group (-1: one group per row) come from the
 * quantization_config. Every dtype and shape is checked (errors name the tensor and its file); the
 * gemv padding is ignored. *out is a fresh LB_QK_AFFINE weight (lb_qweight_free); on error
 * nothing is left to free. */
lb_status lb_awq_read(const lb_tensors *t, const char *prefix, int bits, int64_t group,
                      lb_awq_version v, lb_qweight *out, lb_error *err);

/* AutoAWQ's calculate_zeros_width: words per output row of the gemv qzeros (see above); -1 for a
 * group size it does not support. */
int64_t lb_awq_gemv_zeros_width(int64_t in_features, int64_t group);

/* ---- the method (AutoAWQ's AwqQuantizer), the parts that do not run the model ------------------ */

/* AutoAWQ's pseudo_quantize_tensor with zero_point, per row and group of `group` columns: the
 * group's own min and max (not widened to include 0), scale = max(max - min, 1e-5) / maxq,
 * zero = clamp(-round(min / scale), 0, maxq), q = clamp(round(w / scale) + zero, 0, maxq).
 * lb_awq_fake_quant replaces w by (q - zero) * scale in place; lb_awq_quantize makes the codes. */
void lb_awq_fake_quant(float *w, int64_t rows, int64_t cols, int bits, int64_t group);
/* scale_dtype: the dtype the file stores scales in (F16 for gemm/gemv, the model's for
 * compressed-tensors): each scale is rounded to it before the codes are chosen, so the codes fit
 * the stored scale (AutoAWQ computes in the model's fp16). */
lb_status lb_awq_quantize(const float *w, int64_t rows, int64_t cols, int bits, int64_t group,
                          lb_dtype scale_dtype, const char *name, lb_qweight *out, lb_error *err);

/* The weight statistic of a scaling group (Linears sharing an input, n of them): per row and group
 * |w| / (max |w| of the group + 1e-6), averaged over all rows of all of them, per column. */
void lb_awq_w_mean(const float *const *w, const int64_t *rows, int n, int64_t cols, int64_t group,
                   float *w_mean);
/* The candidate scales of exponent `ratio` (duo scaling): s = max(x_mean^ratio /
 * (w_mean^(1 - ratio) + 1e-4), 1e-4), then s / sqrt(max s * min s); NaN or Inf entries become 1. */
void lb_awq_scales(const float *x_mean, const float *w_mean, int64_t cols, double ratio, float *s);
/* AutoAWQ's _search_best_scale: for ratio = i / grid, i = 0 .. grid - 1, the scales of that ratio
 * and loss(ctx, s) (the caller's output error of the module with its Linears replaced by
 * fake_quant(W * s) / s); returns the i with the smallest loss (the first on ties) and its scales
 * in best_s, or -1 when no loss is finite. losses: NULL or [grid]. */
int lb_awq_search(const float *x_mean, const float *w_mean, int64_t cols, int grid,
                  double (*loss)(void *ctx, const float *s), void *ctx, float *best_s,
                  double *losses);
/* AutoAWQ's _compute_best_clip for one Linear W [rows, cols] (scaled) with n sampled input rows x
 * [n, cols]: per row and group, max_val = max |w| * (1 - i / 20), i = 0 .. 9; the one whose
 * fake-quantized clamp(w, -max_val, max_val) gives the smallest mean squared error of the group's
 * partial outputs x_g . w_g over the n rows; W is clamped to it in place. The partial outputs are
 * OpenBLAS sgemms (threaded by OpenBLAS). */
lb_status lb_awq_clip(float *w, int64_t rows, int64_t cols, int bits, int64_t group, const float *x,
                      int64_t n, const char *name, lb_error *err);

#endif
