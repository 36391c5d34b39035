/* Scalar twins of the quantized-weight kernels (qsimd.c): what each computes, in plain C. */
#include <math.h>
#include <string.h>

#include "backend/cpu/kernels.h"

/* Per block of kb values: amax, d = amax / 127, codes rint(x * (127 / amax)) (|code| <= 127: the
 * product is at most 127 in magnitude up to a rounding, which rint brings back to 127), and the
 * codes' sum. An all-zero block has d = 0 and zero codes. */
void lb_qact_s8_ref(const float *x, int64_t kb, int64_t nkb, int8_t *q, float *d, int32_t *sum) {
  for (int64_t k = 0; k < nkb; k++, x += kb, q += kb) {
    float amax = 0.0f;
    for (int64_t c = 0; c < kb; c++) amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
    d[k] = amax / 127.0f;
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int64_t c = 0; c < kb; c++) s += q[c] = (int8_t)rintf(x[c] * id);
    sum[k] = s;
  }
}

/* Code c of weight row i (< 16) of a tile: per 8 columns, a 64-byte block of 16 rows x 4 bytes;
 * U4: columns 0-3 in the low nibbles, 4-7 in the high ones; U8: two blocks, columns 0-3 then 4-7. */
static inline int32_t code_u4(const uint8_t *w, int i, int64_t c) {
  uint8_t b = w[c / 8 * 64 + i * 4 + c % 4];
  return c % 8 < 4 ? b & 15 : b >> 4;
}
static inline int32_t code_u8(const uint8_t *w, int i, int64_t c) {
  return w[c / 8 * 128 + (c % 8 < 4 ? 0 : 64) + i * 4 + c % 4];
}

/* y[b * ldy + i] (i < 16 rows of the tile, b < nj activation rows) =
 *   sum_k (float)(sum_{c in block k} code(i, c) * a[b][c]) * (sc[k / kpg][i] * d[b][k])
 *   - sum_g zs[g][i] * z[b][g] */
#define QGEMM_REF(CODE)                                                                            \
  for (int b = 0; b < nj; b++)                                                                     \
    for (int i = 0; i < 16; i++) {                                                                 \
      float acc = 0.0f;                                                                            \
      for (int64_t k = 0; k < nkb; k++) {                                                          \
        int32_t dot = 0;                                                                           \
        for (int64_t c = k * kb; c < (k + 1) * kb; c++)                                            \
          dot += CODE(w, i, c) * (int32_t)a[b * lda + c];                                          \
        acc += (float)dot * (sc[k / kpg * 16 + i] * d[b * ldd + k]);                               \
      }                                                                                            \
      for (int64_t g = 0; g < ng; g++) acc -= zs[g * 16 + i] * z[b * ldz + g];                     \
      y[b * ldy + i] = acc;                                                                        \
    }

void lb_qgemm_u4_ref(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,
                     int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz, int nj,
                     int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y, int64_t ldy) {
  QGEMM_REF(code_u4)
}

void lb_qgemm_u8_ref(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,
                     int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz, int nj,
                     int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y, int64_t ldy) {
  QGEMM_REF(code_u8)
}

void lb_deq_nf4_ref(const uint8_t *w, const float *lut, const float *s, int64_t group,
                    int64_t colsp, float *out) {
  for (int64_t c = 0; c < colsp; c += 64, w += 32)
    for (int i = 0; i < 64; i++)
      out[c + i] = lut[(i < 32 ? w[i] : w[i - 32] >> 4) & 15] * s[(c + i) / group];
}

/* E4M3 through fp16: sign to bit 15, exponent and mantissa shifted up 7 (the value times 2^-8,
 * which the pack's scale undoes; subnormals land on fp16 subnormals exactly); E5M2 is the top
 * byte of an fp16. */
void lb_deq_fp8_ref(const uint8_t *w, bool e5m2, const float *s, int64_t group, int64_t colsp,
                    float *out) {
  for (int64_t c = 0; c < colsp; c++) {
    uint16_t h = e5m2 ? (uint16_t)(w[c] << 8) : (uint16_t)((w[c] & 0x80) << 8 | (w[c] & 0x7F) << 7);
    out[c] = lb_f16_to_f32(h) * s[c / group];
  }
}


/* out[b] = sum_g s[g] * sum_{c in g} value(c) * x[b][c], value as lb_deq_*_ref without the scale. */
#define QDOT_REF(VALUE)                                                                            \
  for (int b = 0; b < nx; b++) {                                                                   \
    float acc = 0.0f;                                                                              \
    for (int64_t c0 = 0; c0 < colsp; c0 += group) {                                                \
      float g = 0.0f;                                                                              \
      for (int64_t c = c0; c < c0 + group; c++) g += (VALUE) * x[b * ldx + c];                     \
      acc += g * s[c0 / group];                                                                    \
    }                                                                                              \
    out[b] = acc;                                                                                  \
  }

void lb_qdot_nf4_ref(const uint8_t *w, const float *lut, const float *s, int64_t group,
                     int64_t colsp, const float *x, int64_t ldx, int nx, float *out) {
  QDOT_REF(lut[(c % 64 < 32 ? w[c / 64 * 32 + c % 32] : w[c / 64 * 32 + c % 32] >> 4) & 15])
}

void lb_qdot_fp8_ref(const uint8_t *w, bool e5m2, const float *s, int64_t group, int64_t colsp,
                     const float *x, int64_t ldx, int nx, float *out) {
  QDOT_REF(lb_f16_to_f32(e5m2 ? (uint16_t)(w[c] << 8)
                              : (uint16_t)((w[c] & 0x80) << 8 | (w[c] & 0x7F) << 7)))
}
