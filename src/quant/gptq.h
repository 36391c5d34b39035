/* Round-to-nearest affine quantization (GPTQ's Quantizer without the Hessian) and the
 * AutoGPTQ/GPTQModel on-disk layout (qweight / qzeros / scales / g_idx, checkpoint_format "gptq" = v1
 * with zero - 1 stored, or "gptq_v2"). */
#ifndef LB_QUANT_GPTQ_H
#define LB_QUANT_GPTQ_H

#include "quant/qweight.h"

/* W [rows, cols] (fp32) -> LB_QK_AFFINE codes of `bits` (2..8) in groups of `group` columns (group >=
 * cols: one group per row). Parameters per (row, group) as GPTQ's Quantizer.find_params computes
 * them: asym: xmin = min(min x, 0), xmax = max(max x, 0), scale = (xmax - xmin) / maxq,
 * zero = round(-xmin / scale); sym: xmax = max(|xmin|, xmax), scale = 2 xmax / maxq,
 * zero = (maxq + 1) / 2; an all-zero group uses [-1, 1]; q = clamp(round(x / scale) + zero, 0, maxq),
 * rounding half to even (torch.round). NaN/Inf weights are refused naming `name`. */
lb_status lb_rtn_quantize(const float *w, int64_t rows, int64_t cols, int bits, int64_t group,
                          bool sym, const char *name, lb_qweight *out, lb_error *err);

/* Makes an asymmetric RTN weight safe for the v1 layout: v1 stores zero - 1, so a group whose zero
 * is 0 (all its weights >= -scale / 2) comes back as 2^bits from AutoGPTQ's kernels and lowbit, and
 * GPTQModel's packed +1 carries it into the next channel's zero. Such groups get zero 1 and
 * scale = xmax / (maxq - 1) (xmax = max(max x, 0)), which still spans the group ([-scale, xmax]
 * holds min x >= -scale / 2), and their codes are recomputed: q = clamp(round(x / scale) + 1). w is
 * the weight q was made from. Returns the number of groups changed. */
int64_t lb_rtn_v1_safe(const float *w, lb_qweight *q);

typedef enum { LB_GPTQ_V1, LB_GPTQ_V2 } lb_gptq_version;

/* Writes <prefix>.qweight/.qzeros/.scales/.g_idx (+ .bias) of one Linear. Scales are stored as F16
 * (what AutoGPTQ and GPTQModel load); zeros must be whole numbers in [0, 2^bits), and in [1, 2^bits)
 * for v1 (which stores zero - 1: see lb_rtn_v1_safe), else the write is refused. Needs
 * rows * bits and cols * bits to be multiples of 32. */
lb_status lb_gptq_write(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_gptq_version v,
                        lb_error *err);
/* Reads them back (bits and group size from the quantization_config); every shape and dtype is
 * checked, errors name the tensor. */
lb_status lb_gptq_read(const lb_tensors *t, const char *prefix, int bits, int64_t group,
                       lb_gptq_version v, lb_qweight *out, lb_error *err);

/* Bit-stream packing shared by the int layouts: n values of `bits` bits, value i at bit i * bits of
 * the little-endian 32-bit word stream, LSB first (3-bit values straddle words, as AutoGPTQ's pack). */
void lb_pack_bits(const uint8_t *v, int64_t n, int bits, uint32_t *words);
void lb_unpack_bits(const uint32_t *words, int64_t n, int bits, uint8_t *v);

#endif
