/* bitsandbytes quantization (NF4/FP4 with optional double quantization, LLM.int8) and the
 * Transformers/bitsandbytes safetensors layout of one quantized Linear.
 *
 * The quantizers reproduce bitsandbytes' kernels value for value where they are deterministic:
 * blockwise absmax over the row-major flattening, scaling by the fp32 reciprocal of the absmax, the
 * CUDA decision trees (kQuantizeBlockwise: dQuantizeNF4 / dQuantizeFP4 with their float thresholds,
 * a value on a threshold goes to the lower code) and the 8-bit binary search dQuantize<0> for the
 * nested absmax. Where bitsandbytes itself is not bit-reproducible (its CUDA build uses
 * --use_fast_math, so 1/absmax may differ by an ulp; torch's mean of absmax reduces in an
 * unspecified order), lowbit picks the correctly rounded variant and says so beside the code. */
#ifndef LB_QUANT_BNB_H
#define LB_QUANT_BNB_H

#include "quant/qweight.h"

/* bitsandbytes' code books, as get_4bit_type() / create_dynamic_map(signed=True) build them. */
extern const float lb_bnb_nf4_code[16];
void lb_bnb_fp4_code(float out[16]);       /* {0, .0625, 8, 12, 4, 6, 2, 3, -0, ...} / 12 */
void lb_bnb_dynamic_map(float out[256]);   /* signed dynamic 8-bit map, sorted ascending */

/* Index of x in the 4-bit code book through bitsandbytes' decision trees (x already scaled). */
uint8_t lb_bnb_nf4_index(float x);
uint8_t lb_bnb_fp4_index(float x);
/* Index of x in a sorted 256-entry code through bitsandbytes' dQuantize<0> binary search. */
uint8_t lb_bnb_dynamic_index(const float code[256], float x);

/* quantize_4bit: W [rows, cols] (row-major fp32) into a LB_QK_CODEBOOK weight. blocksize: a power of
 * two in [32, 4096] (bitsandbytes' default 64). double_quant (compress_statistics): absmax minus its
 * mean quantized blockwise (256) with the dynamic map; out->absmax then holds the decoded values
 * (what dequantize_4bit uses). `name` labels errors (a non-finite weight is refused). */
lb_status lb_bnb4_quantize(const float *w, int64_t rows, int64_t cols, bool nf4, int64_t blocksize,
                           bool double_quant, const char *name, lb_qweight *out, lb_error *err);

/* Int8Params quantization (LLM.int8 weights): the weight is first cast to fp16, as bitsandbytes
 * does, then SCB[r] = max |w[r,:]| and q = rint(w * (127 / SCB)) (ties to even; an all-zero row
 * gives q = 0). threshold is the run-time outlier threshold, stored in out->threshold. A non-finite
 * weight or one beyond fp16 range (65504) is refused naming `name`. */
lb_status lb_int8_quantize(const float *w, int64_t rows, int64_t cols, float threshold,
                           const char *name, lb_qweight *out, lb_error *err);

/* Reference LLM.int8 matmul with outlier decomposition, as bitsandbytes' MatMul8bitLt forward:
 * x [n, cols], y [n, rows] = x W^T (+ bias). Columns of x with |x| >= threshold in any row
 * (threshold > 0) are computed in fp32 with dequantized weight columns; the rest: each row of x
 * quantized to int8 with its absmax over the non-outlier values, int32 dot products with the codes,
 * scaled by SCA * SCB / 127^2. lb_linear runs its threaded twin (backend/cpu/matmul.c), equal to it
 * bit for bit. */
lb_status lb_int8_linear_ref(const lb_qweight *w, const float *x, int64_t n, float *y,
                             lb_error *err);

/* Writes one Linear as Transformers saves a bitsandbytes model (prefix "model.layers.0.mlp.up_proj"):
 *   4-bit: P.weight U8 [(numel+1)/2, 1] (element 2j in the high nibble), P.weight.absmax (F32, or
 *          U8 codes with double quant), P.weight.quant_map F32 [16], P.weight.nested_absmax,
 *          P.weight.nested_quant_map F32 [256], P.weight.quant_state.bitsandbytes__nf4|fp4 (U8 bytes
 *          of the JSON QuantState.as_dict(packed=True) writes, byte for byte as Python's json.dumps);
 *   8-bit: P.weight I8 [rows, cols], P.SCB F32 [rows], P.weight_format U8 scalar 0 ("row").
 * P.bias (when q->bias) is written in orig_dtype, which also names the quant_state "dtype". */
lb_status lb_bnb_write(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_dtype orig_dtype,
                       lb_error *err);

/* Reads what lb_bnb_write writes (and what Transformers writes), detecting 4- vs 8-bit from the
 * tensors present; every shape, dtype and JSON key is checked, errors name the tensor. orig_dtype
 * (may be NULL) gets the quant_state dtype (4-bit) or the dtype of P.bias / F16 (8-bit). The
 * threshold of an 8-bit weight is not stored in the tensors (it is llm_int8_threshold of the
 * config): it reads as 0. The caller frees out with lb_qweight_free; on error it is already freed. */
lb_status lb_bnb_read(const lb_tensors *t, const char *prefix, lb_qweight *out, lb_dtype *orig_dtype,
                      lb_error *err);

/* Python's repr() of a double (shortest round trip, '1e-05', '0.5', '2.0'), as json.dumps writes
 * floats. Returns buf. */
const char *lb_bnb_py_float(double v, char *buf, size_t cap);

#endif
