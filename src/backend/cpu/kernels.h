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

  /* The quantized-weight kernels (qpack.h; the definitions are the scalar twins in qref.c). */
  /* Activations to int8 codes per block of kb values: d[k] block scale, sum[k] the codes' sum */
  void (*qact_s8)(const float *x, int64_t kb, int64_t nkb, int8_t *q, float *d, int32_t *sum);
  /* One tile of 16 interleaved U4 / U8 weight rows by nj activation rows (see qref.c) */
  void (*qgemm_u4)(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,
                   int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz, int nj,
                   int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y, int64_t ldy);
  void (*qgemm_u8)(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,
                   int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz, int nj,
                   int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y, int64_t ldy);
  /* A packed NF4/FP4 or FP8 row dequantized to fp32, times s[c / group] */
  void (*deq_nf4)(const uint8_t *w, const float *lut, const float *s, int64_t group,
                  int64_t colsp, float *out);
  void (*deq_fp8)(const uint8_t *w, bool e5m2, const float *s, int64_t group, int64_t colsp,
                  float *out);
  /* A packed NF4/FP8 row (colsp columns, the activations zero past cols) dotted with nx (1..4)
   * fp32 rows: out[b] = sum_g s[g] * sum_{c in g} value(c) * x[b][c] */
  void (*qdot_nf4)(const uint8_t *w, const float *lut, const float *s, int64_t group,
                   int64_t colsp, const float *x, int64_t ldx, int nx, float *out);
  void (*qdot_fp8)(const uint8_t *w, bool e5m2, const float *s, int64_t group, int64_t colsp,
                   const float *x, int64_t ldx, int nx, float *out);
  /* One weight row stored as F32/F16/BF16, widened in registers, dotted with nx (1..4) fp32 rows
   * of stride ldx: out[b] = sum_c w[c] * x[b][c] */
  void (*dotw)(const void *w, lb_dtype dt, const float *x, int64_t ldx, int nx, int64_t n,
               float *out);
  /* g[i] = g[i] / (1 + exp(-g[i])) * u[i], exp by lb_expf_fast's polynomial */
  void (*silu_mul)(float *g, const float *u, int64_t n);
  /* Attention of nq (<= LB_ATTN_QB) query rows of one head (q: row stride ldq, hd values, hd a
   * multiple of 16) over keys/values K, V (row stride ldkv): row t sees keys [ka[t], kb[t]);
   * o[t] = softmax(scale * q_t K^T) V over them, by key blocks of LB_ATTN_KB with the online
   * softmax (running max and sum, earlier outputs rescaled); scratch: LB_ATTN_SCRATCH(hd) floats */
  void (*attn_rows)(const float *q, int64_t ldq, const float *K, const float *V, int64_t ldkv,
                    int64_t hd, int64_t nq, const int64_t *ka, const int64_t *kb, float scale,
                    float *o, int64_t ldo, float *scratch);
} lb_kernels;

enum { LB_ATTN_QB = 64, LB_ATTN_KB = 64 };
#define LB_ATTN_SCRATCH(hd) ((hd) * LB_ATTN_KB + LB_ATTN_QB * LB_ATTN_KB + 2 * LB_ATTN_QB)

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
void lb_qact_s8_ref(const float *x, int64_t kb, int64_t nkb, int8_t *q, float *d, int32_t *sum);
void lb_qgemm_u4_ref(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,
                     int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz, int nj,
                     int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y, int64_t ldy);
void lb_qgemm_u8_ref(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,
                     int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz, int nj,
                     int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y, int64_t ldy);
void lb_silu_mul_ref(float *g, const float *u, int64_t n);
void lb_qdot_nf4_ref(const uint8_t *w, const float *lut, const float *s, int64_t group,
                     int64_t colsp, const float *x, int64_t ldx, int nx, float *out);
void lb_qdot_fp8_ref(const uint8_t *w, bool e5m2, const float *s, int64_t group, int64_t colsp,
                     const float *x, int64_t ldx, int nx, float *out);
void lb_attn_rows_ref(const float *q, int64_t ldq, const float *K, const float *V, int64_t ldkv,
                      int64_t hd, int64_t nq, const int64_t *ka, const int64_t *kb, float scale,
                      float *o, int64_t ldo, float *scratch);
void lb_dotw_ref(const void *w, lb_dtype dt, const float *x, int64_t ldx, int nx, int64_t n,
                 float *out);
void lb_deq_nf4_ref(const uint8_t *w, const float *lut, const float *s, int64_t group,
                    int64_t colsp, float *out);
void lb_deq_fp8_ref(const uint8_t *w, bool e5m2, const float *s, int64_t group, int64_t colsp,
                    float *out);

#define LB_DECLARE_ISA(sfx)                                                                        \
  void lb_cvt_f32_##sfx(float *dst, const void *src, lb_dtype dt, int64_t n);                      \
  float lb_dot_##sfx(const float *a, const float *b, int64_t n);                                   \
  float lb_exp_sum_##sfx(float *x, int64_t n, float shift);                                        \
  void lb_axpy_##sfx(float *y, float a, const float *x, int64_t n);                               \
  void lb_dot_s16x4_##sfx(const int16_t *w, int64_t ldw, const int16_t *x, int64_t ldx, int nx,    \
                          int64_t n, int32_t *out);                                        \
  void lb_sums_f32x4_##sfx(float *f, int64_t ldf, const float *x, int64_t ldx, const float *w,     \
                           int64_t ldw, int na, int64_t nk, int64_t n);                            \
  void lb_qact_s8_##sfx(const float *x, int64_t kb, int64_t nkb, int8_t *q, float *d,             \
                        int32_t *sum);                                                             \
  void lb_qgemm_u4_##sfx(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,      \
                         int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz,    \
                         int nj, int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y,       \
                         int64_t ldy);                                                             \
  void lb_qgemm_u8_##sfx(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,      \
                         int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz,    \
                         int nj, int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y,       \
                         int64_t ldy);                                                             \
  void lb_deq_nf4_##sfx(const uint8_t *w, const float *lut, const float *s, int64_t group,         \
                        int64_t colsp, float *out);                                                \
  void lb_deq_fp8_##sfx(const uint8_t *w, bool e5m2, const float *s, int64_t group,               \
                        int64_t colsp, float *out);                                                \
  void lb_dotw_##sfx(const void *w, lb_dtype dt, const float *x, int64_t ldx, int nx, int64_t n,   \
                     float *out);                                                                  \
  void lb_silu_mul_##sfx(float *g, const float *u, int64_t n);                                    \
  void lb_qdot_nf4_##sfx(const uint8_t *w, const float *lut, const float *s, int64_t group,        \
                         int64_t colsp, const float *x, int64_t ldx, int nx, float *out);          \
  void lb_qdot_fp8_##sfx(const uint8_t *w, bool e5m2, const float *s, int64_t group,               \
                         int64_t colsp, const float *x, int64_t ldx, int nx, float *out);          \
  void lb_attn_rows_##sfx(const float *q, int64_t ldq, const float *K, const float *V,             \
                          int64_t ldkv, int64_t hd, int64_t nq, const int64_t *ka,                 \
                          const int64_t *kb, float scale, float *o, int64_t ldo, float *scratch);
LB_DECLARE_ISA(avx2)
LB_DECLARE_ISA(avx512)

/* Row-wise ops on [n, d] fp32 activations. */
void lb_rmsnorm(float *y, const float *x, const float *w, int64_t d, float eps);
void lb_silu_mul(float *g, const float *u, int64_t n); /* g = silu(g) * u (the chosen kernel) */
void lb_softmax(float *x, int64_t n);
double lb_logsumexp(const float *x, int64_t n);

struct lb_qweight;

struct lb_qpack;

/* A Linear weight: row-major [rows = out_features, cols = in_features], either as stored (data in
 * dtype F32/F16/BF16) or quantized: packed for the fast kernels (pack set, qpack.h), or canonical
 * (qw set: the reference dequantization); dtype and data unused then. */
typedef struct lb_mat {
  lb_dtype dtype;
  int64_t rows, cols;
  const void *data;
  const struct lb_qweight *qw;
  const struct lb_qpack *pack;
  int64_t act_group; /* > 0: W8A8, x quantized to E4M3 in blocks of this many columns first
                        (lb_fp8_act_quant; lb_model_options.fp8_act); 0: x as it is */
  float act_scale;   /* > 0 (with act_group): one fixed scale instead, the checkpoint's static
                        input_scale (lb_fp8_act_quant_static) */
} lb_mat;

/* y[n, rows] = x[n, cols] . W^T (+ bias[rows]); with act_group, of x quantized to E4M3 and back.
 * A packed weight runs lb_qpack_linear (qmatmul.c).
 * Otherwise, few rows of x: a threaded dequantize-dot per weight row; more: weight tiles widened
 * (or dequantized) to fp32 and multiplied by OpenBLAS sgemm. A canonical quantized weight goes
 * through lb_qweight_dequant_row, the scalar reference of every format, except LLM.int8
 * (LB_QK_INT8ROW), which runs bitsandbytes' int8 matmul with outlier decomposition (equal bit for
 * bit to lb_int8_linear_ref). The bias added, once, is `bias`, or when that is NULL
 * the quantized weight's own qw->bias (the model loader moves it into the layer's bias). */
lb_status lb_linear(lb_pool *pool, const lb_mat *w, const float *bias, const float *x, int64_t n,
                    float *y, lb_error *err);

/* y[n, rows] = x[n, cols] . W^T (+ bias) by OpenBLAS sgemm over tiles of W's rows (16 MB of fp32
 * each): fill(ctx, r0, r1, out) writes rows [r0, r1) as fp32, ld floats apart (the pool splits
 * each tile's rows); fill NULL: ctx is W itself, fp32 with rows ld floats apart. The prefill path
 * of dense, canonical quantized and packed NF4/FP8 weights. */
typedef void (*lb_rows_fn)(const void *ctx, int64_t r0, int64_t r1, float *out);
lb_status lb_sgemm_tiles(lb_pool *pool, int64_t rows, int64_t cols, int64_t ld, lb_rows_fn fill,
                         const void *ctx, const float *bias, const float *x, int64_t n, float *y,
                         lb_error *err);

/* y[i] = x . w[i]^T + bias[i] for count (<= LB_MANY_MAX) Linears reading the same x (q/k/v,
 * gate/up): with few rows of x one parallel region runs them all (decode makes ~100 regions a
 * token otherwise); the results are lb_linear's. */
enum { LB_MANY_MAX = 4 };
lb_status lb_linear_many(lb_pool *pool, int count, const lb_mat *const *w, float *const *bias,
                         const float *x, int64_t n, float *const *y, lb_error *err);

#endif
