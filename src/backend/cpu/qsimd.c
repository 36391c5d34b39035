/* The quantized-weight kernels (qpack.h) in intrinsics, compiled per ISA: LB_ISA_AVX512 (AVX-512
 * F/BW/VL + VNNI: vpdpbusd, vpdpwssd, 64-byte vectors) or LB_ISA_AVX2 (AVX2 + FMA + F16C:
 * vpmaddubsw + vpmaddwd, 32-byte vectors). Each function's scalar twin, which defines what it
 * computes, is in qref.c. Integer sums are exact in any order; the fp32 sums differ from the
 * twin's only in order. */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/kernels.h"

#if defined(LB_ISA_AVX512)
#define SFX(name) name##_avx512
#elif defined(LB_ISA_AVX2)
#define SFX(name) name##_avx2
#else
#error "compile qsimd.c with LB_ISA_AVX2 or LB_ISA_AVX512"
#endif

#if defined(LB_ISA_AVX512)
typedef __m512 vf;
typedef __m512i vi;
enum { VB = 64 }; /* bytes per vector */
#define vf_zero _mm512_setzero_ps
#define vi_zero _mm512_setzero_si512
#define vf_set1 _mm512_set1_ps
#define vf_fma _mm512_fmadd_ps
#define vf_load _mm512_loadu_ps
#define vf_cvt _mm512_cvtepi32_ps
#define vi_load(p) _mm512_loadu_si512((const void *)(p))
static inline float vf_hsum(vf v) { return _mm512_reduce_add_ps(v); }
static inline vf vf_abs(vf v) { return _mm512_abs_ps(v); }
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline float vf_hmax(vf v) { return _mm512_reduce_max_ps(v); }
/* acc += sum of 2 adjacent s16 x s16 products per int32 lane */
#else
typedef __m256 vf;
typedef __m256i vi;
enum { VB = 32 };
#define vf_zero _mm256_setzero_ps
#define vi_zero _mm256_setzero_si256
#define vf_set1 _mm256_set1_ps
#define vf_fma _mm256_fmadd_ps
#define vf_load _mm256_loadu_ps
#define vf_cvt _mm256_cvtepi32_ps
#define vi_load(p) _mm256_loadu_si256((const __m256i *)(p))
static inline float vf_hsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline vf vf_abs(vf v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline float vf_hmax(vf v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif
enum { VF = VB / 4 }; /* floats per vector */

/* Block-wise activation quantization (see lb_qact_s8_ref): amax exact in any order, codes by the
 * same float multiply and round-to-nearest-even as the twin, so the codes are the twin's. */
static float block_amax(const float *x, int64_t kb) {
  vf m = vf_zero();
  for (int64_t c = 0; c < kb; c += VF) m = vf_max(m, vf_abs(vf_load(x + c)));
  return vf_hmax(m);
}

void SFX(lb_qact_s8)(const float *x, int64_t kb, int64_t nkb, int8_t *q, float *d, int32_t *sum) {
  for (int64_t k = 0; k < nkb; k++, x += kb, q += kb) {
    float amax = block_amax(x, kb);
    d[k] = amax / 127.0f;
    const vf id = vf_set1(amax > 0.0f ? 127.0f / amax : 0.0f);
    int32_t s = 0;
    for (int64_t c = 0; c < kb; c += VF) {
#if defined(LB_ISA_AVX512)
      __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + c), id));
      s += _mm512_reduce_add_epi32(v);
      _mm_storeu_si128((__m128i *)(q + c), _mm512_cvtepi32_epi8(v));
#else
      __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c), id));
      __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      h = _mm_hadd_epi32(h, h);
      s += _mm_cvtsi128_si32(h) + _mm_extract_epi32(h, 1);
      __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      _mm_storel_epi64((__m128i *)(q + c), _mm_packs_epi16(w16, w16));
#endif
    }
    sum[k] = s;
  }
}

static inline vi bcast4(const int8_t *p) {
  int32_t v;
  memcpy(&v, p, 4);
#if defined(LB_ISA_AVX512)
  return _mm512_set1_epi32(v);
#else
  return _mm256_set1_epi32(v);
#endif
}

#if defined(LB_ISA_AVX512)
/* One tile: 16 weight rows x NJ activation rows; each int32 lane is one weight row, each step of
 * 8 columns is one 64-byte load (U4: columns 0-3 in the low nibbles, 4-7 in the high ones) or two
 * (U8), each multiplied by 4 activation bytes broadcast to every lane. */
static inline __attribute__((always_inline)) void
gemm16(const int NJ, const bool U8, const uint8_t *w, const float *sc, const float *zs,
       const int8_t *a, int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz,
       int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y, int64_t ldy) {
  const __m512i m = _mm512_set1_epi8(0x0F);
  __m512 f[8];
  for (int b = 0; b < NJ; b++) f[b] = _mm512_setzero_ps();
  const int64_t steps = kb / 8, bytes = U8 ? 128 : 64;
  for (int64_t k = 0; k < nkb; k++) {
    __m512i acc[8];
    for (int b = 0; b < NJ; b++) acc[b] = _mm512_setzero_si512();
    const uint8_t *ws = w + k * steps * bytes;
    const int8_t *as = a + k * kb;
    for (int64_t t = 0; t < steps; t++, ws += bytes, as += 8) {
      __m512i lo, hi;
      if (U8) {
        lo = _mm512_loadu_si512((const void *)ws);
        hi = _mm512_loadu_si512((const void *)(ws + 64));
      } else {
        __m512i v = _mm512_loadu_si512((const void *)ws);
        lo = _mm512_and_si512(v, m);
        hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m);
      }
      for (int b = 0; b < NJ; b++) {
        acc[b] = _mm512_dpbusd_epi32(acc[b], lo, bcast4(as + b * lda));
        acc[b] = _mm512_dpbusd_epi32(acc[b], hi, bcast4(as + b * lda + 4));
      }
    }
    const __m512 sv = _mm512_loadu_ps(sc + (k / kpg) * 16);
    for (int b = 0; b < NJ; b++)
      f[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[b]),
                             _mm512_mul_ps(sv, _mm512_set1_ps(d[b * ldd + k])), f[b]);
  }
  for (int64_t g = 0; g < ng; g++) {
    const __m512 zv = _mm512_loadu_ps(zs + g * 16);
    for (int b = 0; b < NJ; b++) f[b] = _mm512_fnmadd_ps(zv, _mm512_set1_ps(z[b * ldz + g]), f[b]);
  }
  for (int b = 0; b < NJ; b++) _mm512_storeu_ps(y + b * ldy, f[b]);
}
#else
/* AVX2: each 8-row half of the tile (bytes 0-31 / 32-63 of every 64-byte block), NJ <= 4 rows at
 * a time. vpmaddubsw cannot saturate: U4 codes are nibbles (2 * 15 * 127 per pair), and U8 codes
 * are split into their nibbles, code = 16 * hi + lo. */
static inline __attribute__((always_inline)) void
gemm16(const int NJ, const bool U8, const uint8_t *w, const float *sc, const float *zs,
       const int8_t *a, int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz,
       int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y, int64_t ldy) {
  const __m256i m = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  const int64_t steps = kb / 8, bytes = U8 ? 128 : 64;
  for (int h = 0; h < 2; h++) {
    __m256 f[4];
    for (int b = 0; b < NJ; b++) f[b] = _mm256_setzero_ps();
    for (int64_t k = 0; k < nkb; k++) {
      __m256i acc[4];
      for (int b = 0; b < NJ; b++) acc[b] = _mm256_setzero_si256();
      const uint8_t *ws = w + k * steps * bytes + 32 * h;
      const int8_t *as = a + k * kb;
      for (int64_t t = 0; t < steps; t++, ws += bytes, as += 8) {
        if (U8) {
          for (int half = 0; half < 2; half++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(ws + 64 * half));
            __m256i lo = _mm256_and_si256(v, m), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
            for (int b = 0; b < NJ; b++) {
              __m256i x = bcast4(as + b * lda + 4 * half);
              acc[b] = _mm256_add_epi32(acc[b], _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x), one));
              acc[b] = _mm256_add_epi32(acc[b], _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x), sixteen));
            }
          }
        } else {
          __m256i v = _mm256_loadu_si256((const __m256i *)ws);
          __m256i lo = _mm256_and_si256(v, m), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
          for (int b = 0; b < NJ; b++) {
            __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(as + b * lda)),
                                         _mm256_maddubs_epi16(hi, bcast4(as + b * lda + 4)));
            acc[b] = _mm256_add_epi32(acc[b], _mm256_madd_epi16(p, one));
          }
        }
      }
      const __m256 sv = _mm256_loadu_ps(sc + (k / kpg) * 16 + 8 * h);
      for (int b = 0; b < NJ; b++)
        f[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[b]),
                               _mm256_mul_ps(sv, _mm256_set1_ps(d[b * ldd + k])), f[b]);
    }
    for (int64_t g = 0; g < ng; g++) {
      const __m256 zv = _mm256_loadu_ps(zs + g * 16 + 8 * h);
      for (int b = 0; b < NJ; b++) f[b] = _mm256_fnmadd_ps(zv, _mm256_set1_ps(z[b * ldz + g]), f[b]);
    }
    for (int b = 0; b < NJ; b++) _mm256_storeu_ps(y + b * ldy + 8 * h, f[b]);
  }
}
#endif

#if defined(LB_ISA_AVX512)
enum { NJ_MAX = 8 };
#else
enum { NJ_MAX = 4 };
#endif

#define GEMM_DISPATCH(U8)                                                                          \
  for (int b0 = 0; b0 < nj; b0 += NJ_MAX) {                                                        \
    const int r = nj - b0 < NJ_MAX ? nj - b0 : NJ_MAX;                                             \
    const int8_t *ab = a + b0 * lda;                                                               \
    const float *db = d + b0 * ldd, *zb = z + b0 * ldz;                                            \
    float *yb = y + b0 * ldy;                                                                      \
    switch (r) {                                                                                   \
    case 1: gemm16(1, U8, w, sc, zs, ab, lda, db, ldd, zb, ldz, kb, nkb, kpg, ng, yb, ldy); break; \
    case 2: gemm16(2, U8, w, sc, zs, ab, lda, db, ldd, zb, ldz, kb, nkb, kpg, ng, yb, ldy); break; \
    case 3: gemm16(3, U8, w, sc, zs, ab, lda, db, ldd, zb, ldz, kb, nkb, kpg, ng, yb, ldy); break; \
    case 4: gemm16(4, U8, w, sc, zs, ab, lda, db, ldd, zb, ldz, kb, nkb, kpg, ng, yb, ldy); break; \
    GEMM_MORE(U8)                                                                                  \
    }                                                                                              \
  }
#if defined(LB_ISA_AVX512)
#define GEMM_MORE(U8)                                                                              \
  case 5: gemm16(5, U8, w, sc, zs, ab, lda, db, ldd, zb, ldz, kb, nkb, kpg, ng, yb, ldy); break;   \
  case 6: gemm16(6, U8, w, sc, zs, ab, lda, db, ldd, zb, ldz, kb, nkb, kpg, ng, yb, ldy); break;   \
  case 7: gemm16(7, U8, w, sc, zs, ab, lda, db, ldd, zb, ldz, kb, nkb, kpg, ng, yb, ldy); break;   \
  default: gemm16(8, U8, w, sc, zs, ab, lda, db, ldd, zb, ldz, kb, nkb, kpg, ng, yb, ldy); break;
#else
#define GEMM_MORE(U8)
#endif

void SFX(lb_qgemm_u4)(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,
                      int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz,
                      int nj, int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y,
                      int64_t ldy) {
  GEMM_DISPATCH(false)
}

void SFX(lb_qgemm_u8)(const uint8_t *w, const float *sc, const float *zs, const int8_t *a,
                      int64_t lda, const float *d, int64_t ldd, const float *z, int64_t ldz,
                      int nj, int64_t kb, int64_t nkb, int64_t kpg, int64_t ng, float *y,
                      int64_t ldy) {
  GEMM_DISPATCH(true)
}

/* NF4/FP4: VF codes 0..15 (the low bytes of `codes`) -> fp32 through the table t (load_lut) */
static inline vf lut16(const vf *t, __m128i codes) {
#if defined(LB_ISA_AVX512)
  return _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(codes), t[0]);
#else
  __m256i i = _mm256_cvtepu8_epi32(codes);
  __m256 a = _mm256_permutevar8x32_ps(t[0], i), b = _mm256_permutevar8x32_ps(t[1], i);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
#endif
}

/* Decode of NF4/FP8: one packed row dotted with nx (1..4) fp32 activation rows, the values made in
 * registers 16 (AVX2: 8) at a time and the scale applied once per group:
 * out[b] = sum_g s[g] * sum_{c in g} value(c) * x[b][c]. */
#if defined(LB_ISA_AVX512)
#define QD_FMA _mm512_fmadd_ps
#define QD_SET1 _mm512_set1_ps
#define QD_LOAD _mm512_loadu_ps
#else
#define QD_FMA _mm256_fmadd_ps
#define QD_SET1 _mm256_set1_ps
#define QD_LOAD _mm256_loadu_ps
#endif

/* The 16-entry table in registers (AVX-512: one vector; AVX2: two). */
static inline void load_lut(const float *lut, vf *t) {
#if defined(LB_ISA_AVX512)
  t[0] = t[1] = _mm512_loadu_ps(lut);
#else
  t[0] = _mm256_loadu_ps(lut), t[1] = _mm256_loadu_ps(lut + 8);
#endif
}

/* values of columns c .. c + VF - 1 */
static inline vf nf4_vals(const uint8_t *w, int64_t c, const vf *lut) {
  const uint8_t *chunk = w + c / 64 * 32;
  const int64_t i = c % 64; /* 0, 16, 32, 48 (AVX2: every 8) */
#if defined(LB_ISA_AVX512)
  __m128i b = _mm_loadu_si128((const __m128i *)(chunk + i % 32));
#else /* 8 codes: 8 bytes (16 would run past the last chunk of a row) */
  __m128i b = _mm_loadl_epi64((const __m128i *)(chunk + i % 32));
#endif
  if (i >= 32) b = _mm_srli_epi16(b, 4);
  return lut16(lut, _mm_and_si128(b, _mm_set1_epi8(0x0F)));
}

static inline vf fp8_vals(const uint8_t *w, int64_t c, bool e5m2) {
#if defined(LB_ISA_AVX512)
  __m256i h = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w + c)));
  if (e5m2) h = _mm256_slli_epi16(h, 8);
  else
    h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x80)), 8),
                        _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7F)), 7));
  return _mm512_cvtph_ps(h);
#else
  __m128i h = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(w + c)));
  if (e5m2) h = _mm_slli_epi16(h, 8);
  else
    h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(h, _mm_set1_epi16(0x80)), 8),
                     _mm_slli_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7F)), 7));
  return _mm256_cvtph_ps(h);
#endif
}

/* Dequantized rows for the prefill tiles: out[c] = value(c) * s[c / group], c < colsp (a group is
 * a multiple of 16 columns, so a vector lies in one). */
void SFX(lb_deq_nf4)(const uint8_t *w, const float *lut, const float *s, int64_t group,
                     int64_t colsp, float *out) {
  vf t[2];
  load_lut(lut, t);
  for (int64_t c = 0; c < colsp; c += VF) {
    vf v = nf4_vals(w, c, t) * QD_SET1(s[c / group]);
    memcpy(out + c, &v, sizeof v);
  }
}

void SFX(lb_deq_fp8)(const uint8_t *w, bool e5m2, const float *s, int64_t group, int64_t colsp,
                     float *out) {
  for (int64_t c = 0; c < colsp; c += VF) {
    vf v = fp8_vals(w, c, e5m2) * QD_SET1(s[c / group]);
    memcpy(out + c, &v, sizeof v);
  }
}

#define QDOT_BODY(VALS)                                                                            \
  vf acc[4], g[4];                                                                                 \
  for (int b = 0; b < 4; b++) acc[b] = vf_zero();                                                  \
  for (int64_t c0 = 0; c0 < colsp; c0 += group) {                                                  \
    for (int b = 0; b < 4; b++) g[b] = vf_zero();                                                  \
    for (int64_t c = c0; c < c0 + group; c += VF) {                                                \
      vf v = VALS;                                                                                 \
      g[0] = QD_FMA(v, QD_LOAD(x + c), g[0]);                                                      \
      if (nx > 1) g[1] = QD_FMA(v, QD_LOAD(x + ldx + c), g[1]);                                    \
      if (nx > 2) g[2] = QD_FMA(v, QD_LOAD(x + 2 * ldx + c), g[2]);                                \
      if (nx > 3) g[3] = QD_FMA(v, QD_LOAD(x + 3 * ldx + c), g[3]);                                \
    }                                                                                              \
    const vf sg = QD_SET1(s[c0 / group]);                                                          \
    for (int b = 0; b < nx; b++) acc[b] = QD_FMA(g[b], sg, acc[b]);                                \
  }                                                                                                \
  for (int b = 0; b < nx; b++) out[b] = vf_hsum(acc[b])

void SFX(lb_qdot_nf4)(const uint8_t *w, const float *lut, const float *s, int64_t group,
                      int64_t colsp, const float *x, int64_t ldx, int nx, float *out) {
  vf t[2];
  load_lut(lut, t);
  if (group % 64 == 0 && nx == 1) { /* decode: a 64-column chunk's 32 bytes unpacked at once */
    const __m256i m = _mm256_set1_epi8(0x0F);
    vf acc = vf_zero();
    for (int64_t c0 = 0; c0 < colsp; c0 += group) {
      vf g0 = vf_zero(), g1 = vf_zero();
      for (int64_t c = c0; c < c0 + group; c += 64) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(w + c / 2));
        __m256i lo = _mm256_and_si256(b, m), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m);
        __m128i q[4] = {_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1),
                        _mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1)};
        for (int k = 0; k < 4; k++) {
#if defined(LB_ISA_AVX512)
          if (k & 1) g1 = QD_FMA(lut16(t, q[k]), QD_LOAD(x + c + 16 * k), g1);
          else g0 = QD_FMA(lut16(t, q[k]), QD_LOAD(x + c + 16 * k), g0);
#else /* 16 codes: two vectors of 8 */
          g0 = QD_FMA(lut16(t, q[k]), QD_LOAD(x + c + 16 * k), g0);
          g1 = QD_FMA(lut16(t, _mm_srli_si128(q[k], 8)), QD_LOAD(x + c + 16 * k + 8), g1);
#endif
        }
      }
      acc = QD_FMA(g0 + g1, QD_SET1(s[c0 / group]), acc);
    }
    out[0] = vf_hsum(acc);
    return;
  }
  QDOT_BODY(nf4_vals(w, c, t));
}

void SFX(lb_qdot_fp8)(const uint8_t *w, bool e5m2, const float *s, int64_t group, int64_t colsp,
                      const float *x, int64_t ldx, int nx, float *out) {
  QDOT_BODY(fp8_vals(w, c, e5m2));
}
