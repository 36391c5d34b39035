/* HQQ (Half-Quadratic Quantization, the hqq package) and its serialization as Transformers'
 * HqqConfig checkpoints store it (the encoded state_dict of hqq's HQQLinear). */
#ifndef LB_QUANT_HQQ_H
#define LB_QUANT_HQQ_H

#include "quant/qweight.h"

/* Quantizer.quantize options (weight_quant_params) and optimize_weights_proximal's opt_params. */
typedef struct lb_hqq_opts {
  bool optimize;   /* run the half-quadratic solver (true in hqq's BaseQuantizeConfig) */
  bool round_zero; /* round the min/max zero before optimizing (BaseQuantizeConfig: nbits == 4) */
  float lp_norm;   /* 0.7 */
  double beta;     /* 1e1 (a Python float in hqq) */
  double kappa;    /* beta is multiplied by it after each round: 1 (hqq 0.2.x no longer grows beta;
                      releases before it used 1.01) */
  int iters;       /* 20 */
  bool early_stop; /* stop at the first iteration whose mean |W - W_r| does not improve */
  int threads;     /* solver threads (groups are split among them); <= 0: one per core. The result
                      does not depend on it. */
} lb_hqq_opts;

/* The settings Transformers' HqqConfig(nbits, group_size) produces through hqq's
 * BaseQuantizeConfig: optimize, round_zero = (nbits == 4), lp 0.7, beta 10 (fixed), 20 iters, as
 * hqq 0.2.8's optimize_weights_proximal_legacy (its default solver).
 */
lb_hqq_opts lb_hqq_default_opts(int nbits);

/* W [rows, cols] (fp32) -> LB_QK_AFFINE codes of nbits (8, 4, 3, 2, 1) as hqq's Quantizer.quantize
 * computes them in fp32 on the CPU. Per group of group_size: inverse scale
 *   s = min(maxq / (max - min), 2e4) (1 where |max - min| <= 1e-4), zero z = -min * s (rounded
 *   when round_zero);
 * then (optimize) optimize_weights_proximal, up to `iters` rounds of
 *   W_q = clamp(round(W s + z)); W_r = (W_q - z) / s; W_e = shrink_lp(W - W_r, beta);
 *   z = mean(W_q - (W - W_e) s); beta *= kappa (1),
 * stopping once the mean |W - W_r| over the whole tensor stops decreasing (z keeps the update of
 * that last round, as in hqq); finally W_q = clamp(round(W s + z)) and scale = 1 / s. The zero
 * stays fractional (code units): W = (q - zero) * scale.
 * axis = 1 groups along the input dimension (hqq reshapes W to [-1, group_size]): each group is
 * group_size consecutive columns of one row, lb_qweight's geometry; cols must be a multiple of
 * group_size. axis = 0 groups strided rows of one column (W reshaped to [group_size, -1]), which
 * lb_qweight cannot express: LB_EUNSUPPORTED. NaN/Inf weights are refused (LB_EINVAL). */
lb_status lb_hqq_quantize(const float *w, int64_t rows, int64_t cols, int nbits, int64_t group_size,
                          int axis, lb_qweight *out, lb_error *err);
lb_status lb_hqq_quantize_ex(const float *w, int64_t rows, int64_t cols, int nbits,
                             int64_t group_size, int axis, const lb_hqq_opts *opts, lb_qweight *out,
                             lb_error *err);

/* hqq's packing names: "8bit_u8", "4bit_u8", "3bit_32", "2bit_u8", "1bit_u8"; NULL otherwise. */
const char *lb_hqq_packing(int nbits);

/* hqq's BitPack over the [n, g] matrix of codes (n = rows * cols / group_size groups, one per row):
 * k = 8 / nbits (or 10 for 3 bits) consecutive slices of n / k rows share a word, the first slice
 * in the highest bits ("4bit_u8": row i in the high nibble, row i + n/2 in the low one). 3 bits
 * pack ten 3-bit fields into an int32 at shifts 27, 24, ..., 0, zero-padding n up to a multiple
 * of 10. `packed` holds lb_hqq_packed_rows(n, nbits) * g bytes (uint8) or int32 words (3 bits).
 * Other widths need n divisible by k (hqq pads nothing there). */
int64_t lb_hqq_packed_rows(int64_t n, int nbits);
void lb_hqq_pack(const uint8_t *codes, int64_t n, int64_t g, int nbits, void *packed);
void lb_hqq_unpack(const void *packed, int64_t n, int64_t g, int nbits, uint8_t *codes);

/* Writes one HQQLinear's encoded state_dict under prefix P: P.W_q (packed; U8, or I32 for 3 bits),
 * P.scale and P.zero ([n, 1] in compute_dtype: BF16, F16 or F32, as HQQLinear casts them), the meta
 * entries P.shape (I64 [2]), P.nbits, P.group_size, P.axis (I32 []), P.packing,
 * P.unpack_view_dtype, P.compute_dtype (U8 ascii: "4bit_u8", "torch.uint8", "torch.bfloat16"),
 * P.view_as_float, P.quant_scale, P.quant_zero, P.offload_meta, P.encoded_state_dict,
 * P.stores_quant_config, P.channel_wise, P.optimize, P.round_zero (U8 [] booleans), and P.bias
 * (compute_dtype) when q has one. `opts` gives the optimize / round_zero flags written (NULL: the
 * defaults for q->bits). */
lb_status lb_hqq_write(lb_st_writer *w, const char *prefix, const lb_qweight *q,
                       lb_dtype compute_dtype, const lb_hqq_opts *opts, lb_error *err);
/* Reads them back into an LB_QK_AFFINE weight (scale and zero widened to fp32). nbits, group_size,
 * axis (must be 1), shape and packing come from the meta tensors and must agree with each other and
 * with W_q / scale / zero; view_as_float W_q (bytes viewed as the compute dtype) is accepted. */
lb_status lb_hqq_read(const lb_tensors *t, const char *prefix, lb_qweight *out, lb_error *err);

/* The quantization_config of HqqConfig.to_dict(): {"quant_config":{"weight_quant_params":{nbits,
 * channel_wise, group_size, optimize, round_zero, axis, view_as_float},"scale_quant_params":null,
 * "zero_quant_params":null,"offload_meta":false},"quant_method":"hqq","skip_modules":[...]}. */
lb_status lb_hqq_config(int nbits, int64_t group_size, const lb_hqq_opts *opts,
                        const char *const *skip, size_t n_skip, char **json, lb_error *err);

#endif
