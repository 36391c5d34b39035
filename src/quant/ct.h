/* compressed-tensors integer weights: the RTN quantizer with compressed-tensors' own parameter
 * rule, and the "pack-quantized" on-disk layout (compressed-tensors 0.20.0,
 * compressors/pack_quantized/, quantization/lifecycle/forward*.py, quantization/utils/helpers.py).
 *
 * Per Linear (W is [out, in], b bits, G = in / group_size groups, G = 1 per channel):
 *   weight_packed     I32 [out, ceil(in * b / 32)]  signed codes q in [-2^(b-1), 2^(b-1) - 1]
 *                     stored as q + 2^(b-1); each row is a bit stream, element j at bit j * b,
 *                     LSB first, values straddling words (3, 5, 6, 7 bits); rows padded to a word
 *   weight_shape      I64 [2] = (out, in)
 *   weight_scale      [out, G] in the weight's float dtype
 *   weight_zero_point I32 [ceil(out * b / 32), G], asymmetric only: the signed zero points, packed
 *                     the same way along dim 0 (each column of G is one stream over the rows)
 * Dequant: W = (q - zp) * scale. In lb_qweight (LB_QK_AFFINE) the codes and zeros are the stored
 * unsigned values: q_u = q + 2^(b-1), zero = zp + 2^(b-1) (2^(b-1) everywhere when symmetric).
 */
#ifndef LB_QUANT_CT_H
#define LB_QUANT_CT_H

#include "quant/qweight.h"

/* How the numbers are computed, as compressed-tensors computes them.
 * `compute` is the weight's dtype (LB_F32, LB_BF16 or LB_F16; w must hold values of it):
 * calculate_qparams runs in it, so every intermediate result is rounded to it (PyTorch rounds
 * each op's fp32 result once), and the scale is a value of it:
 *   min' = min(min x, 0), max' = max(max x, 0), range = 2^b - 1;
 *   symmetric:  scale = max(|min'|, max') / (range / 2), zp = 0;
 *   asymmetric: scale = (max' - min') / range,
 *               zp = round_half_even(clamp(-2^(b-1) - min' / scale, -2^(b-1), 2^(b-1) - 1));
 *   scale == 0 (an all-zero group) becomes the dtype's epsilon (fp32 2^-23, bf16 2^-7, fp16
 *   2^-10); its zero point (0 / 0 in the reference, NaN cast to int8) is taken as 0.
 * Codes: q = round_half_even(clamp(x / scale + zp, -2^(b-1), 2^(b-1) - 1)).
 *   eager false: x / scale and + zp in fp32 (compressed-tensors' Triton kernel, what a GPU runs;
 *                also the eager path on fp32 weights);
 *   eager true:  each of the two results rounded to `compute` (the eager PyTorch path on CPU). */
typedef struct lb_ct_int_opts {
  lb_dtype compute;
  bool eager;
} lb_ct_int_opts;

/* W [rows, cols] -> LB_QK_AFFINE codes of `bits` (1..8) per group of `group` columns (-1: per
 * channel). group must divide cols (compressed-tensors refuses other widths). NaN/Inf weights and
 * weights not exact in opts->compute are refused naming `name` and the element. */
lb_status lb_ct_int_quantize(const float *w, int64_t rows, int64_t cols, int bits, int64_t group,
                             bool sym, const lb_ct_int_opts *opts, const char *name,
                             lb_qweight *out, lb_error *err);

/* Writes <prefix>.weight_packed / weight_shape / weight_scale (+ weight_zero_point when q is
 * asymmetric, + bias F32 when q has one). scale_dtype: LB_F32, LB_BF16 or LB_F16, and every scale
 * must be exact in it (quantize with that compute dtype), else nothing is written. Zeros must be
 * whole numbers in [0, 2^bits); act-order (g_idx) is refused. */
lb_status lb_ct_int_write(lb_st_writer *w, const char *prefix, const lb_qweight *q,
                          lb_dtype scale_dtype, lb_error *err);

/* Reads them back; bits, group (-1 per channel) and symmetry come from the config. Every shape
 * and dtype is checked against weight_shape, errors name the tensor. Besides the 0.20 layout, the
 * older one (32 / bits whole codes per word, high bits unused: differs for 3, 5, 6, 7 bits) is
 * recognised by its width and read too. */
lb_status lb_ct_int_read(const lb_tensors *t, const char *prefix, int bits, int64_t group,
                         bool sym, lb_qweight *out, lb_error *err);

/* The quantization_config compressed-tensors 0.20.0 writes for one group of Linear weights
 * (key order as its json.dump(sort_keys=True)): config_groups.group_0 {format "pack-quantized",
 * input_activations null, output_activations null, targets ["Linear"], weights {dynamic false,
 * group_size, num_bits, strategy "group"|"channel", symmetric, type "int"}}, format
 * "pack-quantized", global_compression_ratio null, ignore [...], kv_cache_scheme null,
 * moe_sparsity_config null, quant_method "compressed-tensors", quantization_status "compressed",
 * sparsity_config {}, transform_config {}, version "0.20.0". Compact JSON text, malloc'd. */
lb_status lb_ct_int_config(int bits, int64_t group, bool sym, const char *const *ignore,
                           size_t n_ignore, char **json, lb_error *err);

#endif
