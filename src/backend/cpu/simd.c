/* Vectorized kernels, written once with GCC vector extensions and compiled per ISA:
 * LB_ISA_AVX2 (8 lanes) or LB_ISA_AVX512 (16 lanes). See kernels.h for what each does. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/kernels.h"

#if defined(LB_ISA_AVX512)
#define VL 16
#define SFX(name) name##_avx512
#elif defined(LB_ISA_AVX2)
#define VL 8
#define SFX(name) name##_avx2
#else
#error "compile simd.c with LB_ISA_AVX2 or LB_ISA_AVX512"
#endif

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
typedef uint32_t vu32 __attribute__((vector_size(VL * 4)));
typedef uint16_t vu16 __attribute__((vector_size(VL * 2)));

static inline vf loadf(const float *p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void storef(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline float hsum(vf v) {
  float s = 0;
  for (int i = 0; i < VL; i++) s += v[i];
  return s;
}

void SFX(lb_cvt_f32)(float *dst, const void *src, lb_dtype dt, int64_t n) {
  int64_t i = 0;
  if (dt == LB_BF16) {
    const uint16_t *s = src;
    for (; i + VL <= n; i += VL) {
      vu16 h;
      memcpy(&h, s + i, sizeof h);
      vu32 u = __builtin_convertvector(h, vu32) << 16;
      vf f;
      memcpy(&f, &u, sizeof f);
      storef(dst + i, f);
    }
  } else if (dt == LB_F16) {
    const uint16_t *s = src; /* F16C (clang 14 has no _Float16 vectors on x86) */
    for (; i + VL <= n; i += VL) {
#if VL == 16
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
#else
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
#endif
    }
  } else if (dt == LB_F32) {
    memcpy(dst, src, (size_t)n * 4);
    return;
  }
  if (i < n) lb_cvt_f32_ref(dst + i, (const char *)src + i * (dt == LB_F32 ? 4 : 2), dt, n - i);
}

float SFX(lb_dot)(const float *a, const float *b, int64_t n) {
  vf s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
  int64_t i = 0;
  for (; i + 4 * VL <= n; i += 4 * VL) {
    s0 += loadf(a + i) * loadf(b + i);
    s1 += loadf(a + i + VL) * loadf(b + i + VL);
    s2 += loadf(a + i + 2 * VL) * loadf(b + i + 2 * VL);
    s3 += loadf(a + i + 3 * VL) * loadf(b + i + 3 * VL);
  }
  for (; i + VL <= n; i += VL) s0 += loadf(a + i) * loadf(b + i);
  float s = hsum((s0 + s1) + (s2 + s3));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

/* exp by range reduction x = k ln2 + r, |r| <= ln2/2, and a degree-6 polynomial for e^r (Cephes
 * coefficients); the same formula as lb_expf_fast, lane by lane. */
static inline vf vsel(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }

static inline vf vexp(vf x) {
  const vf lo = (vf){0} - 87.3f, hi = (vf){0} + 88.0f;
  x = vsel(x < lo, lo, x);
  x = vsel(x > hi, hi, x);
  vf kf = x * 1.44269504088896341f;
  vf half = (vf)(((vi)kf & (int32_t)0x80000000) | (vi)((vf){0} + 0.5f)); /* +-0.5, sign of kf */
  kf = __builtin_convertvector(__builtin_convertvector(kf + half, vi), vf);
  vf r = x - kf * 0.693359375f;
  r = r + kf * 2.12194440e-4f;
  vf p = (vf){0} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  vi e = (__builtin_convertvector(kf, vi) + 127) << 23;
  vf scale;
  memcpy(&scale, &e, sizeof scale);
  return p * scale;
}

float SFX(lb_exp_sum)(float *x, int64_t n, float shift) {
  vf acc = {0};
  int64_t i = 0;
  for (; i + VL <= n; i += VL) {
    vf e = vexp(loadf(x + i) - shift);
    storef(x + i, e);
    acc += e;
  }
  float s = hsum(acc);
  for (; i < n; i++) s += (x[i] = lb_expf_fast(x[i] - shift));
  return s;
}

void SFX(lb_axpy)(float *y, float a, const float *x, int64_t n) {
  int64_t i = 0;
  for (; i + VL <= n; i += VL) storef(y + i, loadf(y + i) + a * loadf(x + i));
  for (; i < n; i++) y[i] += a * x[i];
}
