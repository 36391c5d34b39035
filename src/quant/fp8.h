/* FP8 weight quantization (E4M3 / E5M2 codes, one fp32 multiplier per scale block) and its two
 * on-disk layouts: compressed-tensors "float-quantized" (weight + weight_scale) and the
 * fine-grained FP8 of Transformers' FineGrainedFP8Config / DeepSeek-V3 (weight + weight_scale_inv).
 */
#ifndef LB_QUANT_FP8_H
#define LB_QUANT_FP8_H

#include "quant/qweight.h"

/* Largest finite value: 448 (E4M3), 57344 (E5M2); 0 for other dtypes. */
float lb_fp8_max(lb_dtype fp8);

/* How the block scale is computed. Both keep the dequant multiplier in lb_qweight.scale.
 *  LB_FP8_RULE_CT (compressed-tensors calculate_qparams + _quantize): s = amax / fmax, clamped
 *    below at FLT_EPSILON (torch.finfo(float32).eps: this is also what an all-zero block gets);
 *    q = fp8(clamp(w / s, -fmax, fmax)).
 *  LB_FP8_RULE_HF (Transformers' FineGrainedFP8 create_quantized_param): m = fmax / amax;
 *    q = fp8(clamp(w * m, -fmax, fmax)); stored multiplier s = 1 / m (the "weight_scale_inv").
 *    Transformers itself turns an all-zero block into NaN codes (0 * inf); lowbit gives such a
 *    block codes 0 and s = FLT_EPSILON instead, as the CT rule does.
 * `compute` is the dtype the reference runs its arithmetic in: LB_F32 (fp32 weights), or LB_BF16
 * (a bf16 checkpoint quantized in its own dtype, as llm-compressor does): every intermediate result
 * (amax / fmax, w / s, ...) is then rounded to bf16 as PyTorch does, and w must hold bf16 values. */
typedef enum { LB_FP8_RULE_CT, LB_FP8_RULE_HF } lb_fp8_rule;
typedef struct lb_fp8_opts {
  lb_fp8_rule rule;
  lb_dtype compute; /* LB_F32 or LB_BF16 */
} lb_fp8_opts;

/* W [rows, cols] -> LB_QK_FP8 codes of `fp8` (LB_F8_E4M3 or LB_F8_E5M2) with one scale per
 * block_r x block_c block (per tensor: rows x cols; per channel: 1 x cols; DeepSeek: 128 x 128;
 * edge blocks may be partial). Codes are saturating round-to-nearest-even casts. NaN or infinite
 * weights are refused (LB_EINVAL, naming row and column). lb_fp8_quantize = CT rule, fp32. */
lb_status lb_fp8_quantize(const float *w, int64_t rows, int64_t cols, lb_dtype fp8, int64_t block_r,
                          int64_t block_c, lb_qweight *out, lb_error *err);
lb_status lb_fp8_quantize_ex(const float *w, int64_t rows, int64_t cols, lb_dtype fp8,
                             int64_t block_r, int64_t block_c, const lb_fp8_opts *opts,
                             lb_qweight *out, lb_error *err);

/* W8A8 activations: each row of x [n, cols] quantized to E4M3 and back in blocks of `group`
 * columns (the last may be shorter), as an FP8 product on FP8 tensor cores sees it: s = amax / 448,
 * out = e4m3(x / s) * s (round to nearest even, saturating), all in fp32; a block of zeros stays
 * zeros (and a NaN stays NaN). group 128 is Transformers' FineGrainedFP8 (act_quant, 1 x 128 blocks); group = cols is
 * compressed-tensors' dynamic per-token scheme (FP8_DYNAMIC). out may be x. */
void lb_fp8_act_quant(const float *x, int64_t n, int64_t cols, int64_t group, float *out);
/* One value rounded to E4M3 as lb_fp8_act_quant does (== lb_e4m3_to_f32(lb_f32_to_e4m3(v, true))). */
float lb_fp8_e4m3_round(float v);
/* W8A8 with one fixed scale (a static input_scale): out = e4m3(x / s) * s, saturating at 448 * s;
 * s must be > 0. out may be x. */
void lb_fp8_act_quant_static(const float *x, int64_t n, int64_t cols, float s, float *out);
/* A W8A8 mode in words: "none", "dynamic 1x128", "dynamic per token", "static per tensor". */
const char *lb_fp8_act_describe(lb_fp8_act a, int64_t group, char *buf, size_t cap);

/* ---- on-disk layouts ------------------------------------------------------------------------- */

typedef enum { LB_FP8_TENSOR, LB_FP8_CHANNEL, LB_FP8_BLOCK } lb_fp8_strategy;

/* The block a strategy means for a [rows, cols] weight (block: block_r x block_c as given). */
void lb_fp8_strategy_block(lb_fp8_strategy s, int64_t rows, int64_t cols, int64_t *block_r,
                           int64_t *block_c);

/* compressed-tensors "float-quantized": <prefix>.weight F8_E4M3 [out, in] and <prefix>.weight_scale
 * of `scale_dtype` (LB_F32, or LB_BF16 / LB_F16 when every scale is exact there: compressed-tensors
 * keeps the scale in the weight's dtype) with the shape compressed-tensors gives it for the
 * strategy the config announces: [1] (tensor), [out, 1] (channel), [ceil(out/br), ceil(in/bc)]
 * (block; also when one block covers the whole weight). The qweight's block must fit the strategy.
 * Optional <prefix>.bias (F32). E5M2 is refused: the config has no way to say it. */
lb_status lb_fp8_ct_write(lb_st_writer *w, const char *prefix, const lb_qweight *q,
                          lb_fp8_strategy strategy, lb_dtype scale_dtype, lb_error *err);
/* Reads them back; the strategy (and block for LB_FP8_BLOCK) comes from the config. Shapes and
 * dtypes are checked, errors name the tensor. A scalar weight_scale ([]) is accepted per tensor. */
lb_status lb_fp8_ct_read(const lb_tensors *t, const char *prefix, lb_fp8_strategy s,
                         int64_t block_r, int64_t block_c, lb_qweight *out, lb_error *err);

/* Fine-grained FP8 (quant_method "fp8"): <prefix>.weight F8_E4M3 and <prefix>.weight_scale_inv F32
 * [ceil(out/br), ceil(in/bc)], the dequant multiplier. */
lb_status lb_fp8_fg_write(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_error *err);
lb_status lb_fp8_fg_read(const lb_tensors *t, const char *prefix, int64_t block_r, int64_t block_c,
                         lb_qweight *out, lb_error *err);

/* compressed-tensors' static activation scale (input_activations dynamic false, strategy tensor):
 * <prefix>.input_scale, F32 / BF16 / F16 of one element ([1], or []), finite and > 0. */
lb_status lb_fp8_input_scale(const lb_tensors *t, const char *prefix, float *out, lb_error *err);
/* The same check of <prefix><suffix>: also an FP8 KV cache's <attention>.k_scale and .v_scale. */
lb_status lb_fp8_scale_scalar(const lb_tensors *t, const char *prefix, const char *suffix, float *out,
                              lb_error *err);

/* quantization_config objects as compact JSON text (malloc'd, caller frees).
 * compressed-tensors: {"config_groups":{"group_0":{"targets":["Linear"],"weights":{"num_bits":8,
 * "type":"float","symmetric":true,"strategy":...,"block_structure":...,"dynamic":false,...},
 * "input_activations":...}},"format":"float-quantized","quant_method":"compressed-tensors",
 * "quantization_status":"compressed","ignore":[...],...}. act: input_activations null (OFF),
 * dynamic per token (TOKEN: the FP8_DYNAMIC scheme), per group of act_group (GROUP128: the
 * FP8_BLOCK scheme with act_group 128) or static per tensor (STATIC: the FP8 scheme; each Linear
 * then needs its calibrated <prefix>.input_scale, which the caller writes). */
lb_status lb_fp8_ct_config(lb_fp8_strategy s, int64_t block_r, int64_t block_c, lb_fp8_act act,
                           int64_t act_group, const char *const *ignore, size_t n_ignore,
                           char **json, lb_error *err);
/* {"quant_method":"fp8","activation_scheme":"dynamic","weight_block_size":[br,bc]} (+
 * "modules_to_not_convert" when n_ignore > 0). */
lb_status lb_fp8_fg_config(int64_t block_r, int64_t block_c, const char *const *ignore,
                           size_t n_ignore, char **json, lb_error *err);

#endif
