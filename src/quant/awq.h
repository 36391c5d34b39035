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

#endif
