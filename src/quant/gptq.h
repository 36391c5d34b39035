/* Round-to-nearest affine quantization (GPTQ's Quantizer without the Hessian) and the
 * AutoGPTQ/GPTQModel on-disk layout (qweight / qzeros / scales / g_idx, checkpoint_format "gptq" = v1
 * with zero - 1 stored, or "gptq_v2"). */
#ifndef LB_QUANT_GPTQ_H
#define LB_QUANT_GPTQ_H

#include "quant/qweight.h"
#include "base/threads.h"

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

typedef struct lb_gptq_opts {
  int bits;           /* 2..8 */
  int64_t group;      /* group_size; <= 0: per channel */
  bool sym;
  bool desc_act;      /* act-order: columns by decreasing diag(H); g_idx written */
  bool static_groups; /* group parameters found before the updates (and the permutation) */
  bool v1_safe;       /* asym zero 0 -> zero 1, widened scale (checkpoint_format "gptq": v1) */
  double damp;        /* damp_percent: added to diag(H) as a fraction of its mean (0.01) */
  int blocksize;      /* columns per lazy batch (128) */
  double *trace;      /* tests: NULL, or [rows, cols] receives each column's value when it was
                         quantized (after the updates of the columns before it) */
} lb_gptq_opts;

typedef struct lb_gptq_info {
  double damp;  /* the damp_percent that made H positive definite (>= opts.damp) */
  int64_t dead; /* columns with diag(H) == 0: weights zeroed */
} lb_gptq_info;

struct lb_pool;
/* GPTQ for one Linear: W [rows, cols] fp32 and the Hessian H = 2/N X^T X of its calibration inputs
 * ([cols, cols], float64, full symmetric) -> LB_QK_AFFINE codes and parameters (by group index;
 * g_idx set when desc_act with groups). The steps of GPTQModel's GPTQ.quantize, in float64: dead
 * columns (diag 0: H[c,c] = 1, W[:, c] = 0), static-group parameters, act-order permutation
 * (stable sort), dampening with automatic increase while the Cholesky factorization fails, the
 * upper Cholesky factor of H^-1, then blocks of columns with lazy batch updates. Parameters per
 * group as lb_rtn_quantize computes them (float64), found when the column loop reaches the group
 * (on the values the reference reads: the block's columns as at the block's start). pool: NULL
 * or the threads rows are split over. */
lb_status lb_gptq_solve(const float *w, int64_t rows, int64_t cols, const double *h,
                        const lb_gptq_opts *o, struct lb_pool *pool, const char *name,
                        lb_qweight *out, lb_gptq_info *info, lb_error *err);

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
