/* CPU kernels of the forward pass. Each vectorized kernel has a scalar `_ref` twin; simd.c is
 * compiled once per ISA (AVX2+FMA+F16C, AVX-512) with GCC vector extensions, and lb_cpu_kernels()
 * picks the best set the CPU has at run time (LOWBIT_ISA=ref|avx2|avx512 forces one). */
#ifndef LB_BACKEND_CPU_KERNELS_H
#define LB_BACKEND_CPU_KERNELS_H

#include "base/threads.h"
#include "lowbit.h"

typedef struct lb_kernels {
  const char *isa;
  /* dst[i] = float(src[i]) for F32/F16/BF16 sources */
  void (*cvt_f32)(float *dst, const void *src, lb_dtype dt, int64_t n);
  float (*dot)(const float *a, const float *b, int64_t n);
  /* x[i] = exp(x[i] - shift); returns the sum of the new x */
  float (*exp_sum)(float *x, int64_t n, float shift);
  /* y[i] += a * x[i] */
  void (*axpy)(float *y, float a, const float *x, int64_t n);
  /* int16 dot products of 4 rows of w (row stride ldw) with nx (1..4) rows of x (stride ldx), n
   * elements each: out[a * 4 + b] = sum_c w[a][c] * x[b][c] (int32; LLM.int8 codes, |v| <= 127) */
  void (*dot_s16x4)(const int16_t *w, int64_t ldw, const int16_t *x, int64_t ldx, int nx,
                    int64_t n, int32_t *out);
  /* f[a * ldf + i] = sum_o x[o * ldx + i] * w[a * ldw + o], a < na (1..4), i < n, o < nk: each sum
   * from 0 in the order of o, product then add, as a scalar loop (bit-identical in every ISA) */
  void (*sums_f32x4)(float *f, int64_t ldf, const float *x, int64_t ldx, const float *w,
                     int64_t ldw, int na, int64_t nk, int64_t n);
} lb_kernels;

const lb_kernels *lb_cpu_kernels(void);
const lb_kernels *lb_cpu_kernels_isa(const char *isa); /* NULL when the CPU lacks it */

/* The scalar references. */
void lb_cvt_f32_ref(float *dst, const void *src, lb_dtype dt, int64_t n);
float lb_dot_ref(const float *a, const float *b, int64_t n);
float lb_exp_sum_ref(float *x, int64_t n, float shift);
void lb_axpy_ref(float *y, float a, const float *x, int64_t n);
void lb_dot_s16x4_ref(const int16_t *w, int64_t ldw, const int16_t *x, int64_t ldx, int nx,
                      int64_t n, int32_t *out);
void lb_sums_f32x4_ref(float *f, int64_t ldf, const float *x, int64_t ldx, const float *w,
                       int64_t ldw, int na, int64_t nk, int64_t n);
float lb_expf_fast(float x); /* the polynomial every exp_sum uses (|rel err| < 2e-7) */

#define LB_DECLARE_ISA(sfx)                                                                        \
  void lb_cvt_f32_##sfx(float *dst, const void *src, lb_dtype dt, int64_t n);                      \
  float lb_dot_##sfx(const float *a, const float *b, int64_t n);                                   \
  float lb_exp_sum_##sfx(float *x, int64_t n, float shift);                                        \
  void lb_axpy_##sfx(float *y, float a, const float *x, int64_t n);                               \
  void lb_dot_s16x4_##sfx(const int16_t *w, int64_t ldw, const int16_t *x, int64_t ldx, int nx,    \
                          int64_t n, int32_t *out);                                        \
  void lb_sums_f32x4_##sfx(float *f, int64_t ldf, const float *x, int64_t ldx, const float *w,     \
                           int64_t ldw, int na, int64_t nk, int64_t n);
LB_DECLARE_ISA(avx2)
LB_DECLARE_ISA(avx512)

/* Row-wise ops on [n, d] fp32 activations. */
void lb_rmsnorm(float *y, const float *x, const float *w, int64_t d, float eps);
void lb_silu_mul(float *g, const float *u, int64_t n); /* g = silu(g) * u */
void lb_softmax(float *x, int64_t n);
double lb_logsumexp(const float *x, int64_t n);

struct lb_qweight;

/* A Linear weight: row-major [rows = out_features, cols = in_features], either as stored (data in
 * dtype F32/F16/BF16) or quantized (qw set; dtype and data unused). */
typedef struct lb_mat {
  lb_dtype dtype;
  int64_t rows, cols;
  const void *data;
  const struct lb_qweight *qw;
} lb_mat;

/* y[n, rows] = x[n, cols] . W^T (+ bias[rows]). Few rows of x: a threaded dequantize-dot per weight
 * row; more: weight tiles widened (or dequantized) to fp32 and multiplied by OpenBLAS sgemm. A
 * quantized weight goes through lb_qweight_dequant_row, the scalar reference of every format,
 * except LLM.int8 (LB_QK_INT8ROW), which runs bitsandbytes' int8 matmul with outlier decomposition
 * (equal bit for bit to lb_int8_linear_ref). The bias added, once, is `bias`, or when that is NULL
 * the quantized weight's own qw->bias (the model loader moves it into the layer's bias). */
lb_status lb_linear(lb_pool *pool, const lb_mat *w, const float *bias, const float *x, int64_t n,
                    float *y, lb_error *err);

#endif
