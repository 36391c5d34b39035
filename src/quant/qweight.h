/* The canonical in-memory quantized Linear weight (DESIGN.md: "one canonical in-memory quantized
 * weight; on-disk layouts and kernel layouts are conversions of it").
 *
 * W is [rows = out_features, cols = in_features]. Codes are unpacked, one per byte, row-major
 * q[r * cols + c]; each on-disk format (GPTQ, AWQ, bitsandbytes, HQQ, FP8, compressed-tensors) packs
 * and unpacks them, and fast kernels repack them at load time. What a code means depends on the kind:
 *
 *   LB_QK_AFFINE    q in [0, 2^bits): W[r,c] = (q - zero[r*ngroups + g]) * scale[r*ngroups + g],
 *                   g = g_idx ? g_idx[c] : c / group. zero is in code units and may be fractional
 *                   (HQQ). RTN, GPTQ, AWQ, HQQ, compressed-tensors int use it.
 *   LB_QK_CODEBOOK  q in [0, 16): W = code[q] * absmax[i / block] with i = r * cols + c, the
 *                   row-major flat index (bitsandbytes NF4/FP4; blocks may span rows). With double
 *                   quantization the absmax values are themselves 8-bit codes (dq_* below); absmax
 *                   always holds the float values they decode to.
 *   LB_QK_INT8ROW   q is an int8 (two's complement in the byte): W = q * scale[r] / 127 (LLM.int8,
 *                   scale = SCB = the row's absmax); `threshold` is the outlier threshold applied to
 *                   activations at run time (bnb llm_int8_threshold, 0 = none).
 *   LB_QK_FP8       q is an FP8 bit pattern of `fp8` (E4M3 or E5M2): W = decode(q) * scale[b] with
 *                   b = (r / block_r) * ceil(cols / block_c) + c / block_c (per tensor: block_r =
 *                   rows, block_c = cols; per channel: 1 x cols; DeepSeek-style: 128 x 128).
 */
#ifndef LB_QUANT_QWEIGHT_H
#define LB_QUANT_QWEIGHT_H

#include "lowbit.h"

typedef enum lb_qkind { LB_QK_AFFINE, LB_QK_CODEBOOK, LB_QK_INT8ROW, LB_QK_FP8 } lb_qkind;

typedef struct lb_qweight {
  lb_qkind kind;
  int64_t rows, cols;
  int bits;    /* bits per code: 1..8 (AFFINE), 4 (CODEBOOK), 8 (INT8ROW, FP8) */
  uint8_t *q;  /* [rows * cols] codes, one per byte */

  /* AFFINE */
  int64_t group;   /* columns per group (== cols: per channel) */
  int64_t ngroups; /* groups per row: ceil(cols / group) */
  bool sym;        /* symmetric: zero == 2^(bits-1) everywhere (kept for writing configs) */
  float *scale;    /* AFFINE [rows * ngroups]; INT8ROW [rows]; FP8 [nblocks]; unused for CODEBOOK */
  float *zero;     /* AFFINE [rows * ngroups] */
  int32_t *g_idx;  /* AFFINE [cols] or NULL (act-order: a column's group) */

  /* CODEBOOK */
  int64_t block;    /* weights per absmax block (64) */
  float code[16];   /* NF4 or FP4 code book, as bitsandbytes stores it in quant_map */
  bool nf4;         /* true: NF4, false: FP4 */
  float *absmax;    /* [ceil(rows * cols / block)] decoded values */
  bool double_quant;
  uint8_t *dq_absmax_q;    /* [nblocks] 8-bit codes of (absmax - dq_offset) */
  float *dq_nested_absmax; /* [ceil(nblocks / dq_block)] */
  float dq_code[256];      /* bitsandbytes' signed dynamic 8-bit map */
  float dq_offset;         /* mean of absmax, subtracted before nested quantization */
  int64_t dq_block;        /* 256 */

  /* INT8ROW */
  float threshold;

  /* FP8 */
  lb_dtype fp8;             /* LB_F8_E4M3 or LB_F8_E5M2 */
  int64_t block_r, block_c; /* scale block */

  float *bias; /* [rows] or NULL: a Linear bias that travels with the weight */
} lb_qweight;

/* Allocates q and the arrays the kind needs (zeroed) for the geometry already set in w: kind, rows,
 * cols, bits, and group (AFFINE), block (CODEBOOK; double_quant + dq_block allocate the dq arrays),
 * block_r/block_c (FP8). g_idx and bias are allocated only when with_g_idx / with_bias. */
lb_status lb_qweight_alloc(lb_qweight *w, bool with_g_idx, bool with_bias, lb_error *err);
void lb_qweight_free(lb_qweight *w);

/* Number of scale entries of each kind (AFFINE rows*ngroups, CODEBOOK absmax blocks, INT8ROW rows,
 * FP8 scale blocks). */
int64_t lb_qweight_nscales(const lb_qweight *w);

/* The scalar reference dequantization of row r into out[cols] (fp32). */
void lb_qweight_dequant_row(const lb_qweight *w, int64_t r, float *out);

/* Refuses weights holding NaN or Inf before they are quantized: "<name>: weight [r, c] is NaN;
 * refusing to quantize", naming the first bad element. Every quantizer calls it. */
lb_status lb_quant_check_finite(const float *w, int64_t rows, int64_t cols, const char *name,
                                lb_error *err);

/* Checks the codes and parameters for what the kind promises (codes in range, finite positive
 * scales, g_idx within ngroups ...); `name` labels errors ("model.layers.0.mlp.up_proj"). */
lb_status lb_qweight_check(const lb_qweight *w, const char *name, lb_error *err);

#endif
