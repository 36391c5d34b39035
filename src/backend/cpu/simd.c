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

/* int16 dot products (LLM.int8): plain loops that the compiler turns into multiply-add-pairs
 * (vpmaddwd) for this ISA; integer sums, so every order gives the reference's values. */
void SFX(lb_dot_s16x4)(const int16_t *w, int64_t ldw, const int16_t *x, int64_t ldx, int nx,
                       int64_t n, int32_t *out) {
  const int16_t *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
  if (nx == 4) {
    const int16_t *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
    int32_t s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
    int32_t s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
    for (int64_t c = 0; c < n; c++) {
      int32_t a0 = w0[c], a1 = w1[c], a2 = w2[c], a3 = w3[c];
      int32_t b0 = x0[c], b1 = x1[c], b2 = x2[c], b3 = x3[c];
      s00 += a0 * b0, s01 += a0 * b1, s02 += a0 * b2, s03 += a0 * b3;
      s10 += a1 * b0, s11 += a1 * b1, s12 += a1 * b2, s13 += a1 * b3;
      s20 += a2 * b0, s21 += a2 * b1, s22 += a2 * b2, s23 += a2 * b3;
      s30 += a3 * b0, s31 += a3 * b1, s32 += a3 * b2, s33 += a3 * b3;
    }
    const int32_t s[16] = {s00, s01, s02, s03, s10, s11, s12, s13,
                           s20, s21, s22, s23, s30, s31, s32, s33};
    memcpy(out, s, sizeof s);
    return;
  }
  for (int b = 0; b < nx; b++) {
    const int16_t *xb = x + b * ldx;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int64_t c = 0; c < n; c++) {
      int32_t v = xb[c];
      s0 += w0[c] * v, s1 += w1[c] * v, s2 += w2[c] * v, s3 += w3[c] * v;
    }
    out[b] = s0, out[4 + b] = s1, out[8 + b] = s2, out[12 + b] = s3;
  }
}

/* LLM.int8's outlier sums: f[a * ldf + i] = sum over o = 0, 1, ... of x[o * ldx + i] * w[a * ldw + o]
 * for a < na (1..4) and i < n. Vectorized across i only: each element is its own chain from 0 in
 * the order of o, each product rounded before the add (no FMA: this file is compiled with
 * -std=c17, which turns contraction off), so the values are the scalar reference's. */
void SFX(lb_sums_f32x4)(float *f, int64_t ldf, const float *x, int64_t ldx, const float *w,
                        int64_t ldw, int na, int64_t nk, int64_t n) {
  int64_t i = 0;
  if (na == 4)
    for (; i + 2 * VL <= n; i += 2 * VL) {
      vf s00 = {0}, s01 = {0}, s10 = {0}, s11 = {0}, s20 = {0}, s21 = {0}, s30 = {0}, s31 = {0};
      for (int64_t o = 0; o < nk; o++) {
        vf x0 = loadf(x + o * ldx + i), x1 = loadf(x + o * ldx + i + VL);
        float w0 = w[o], w1 = w[ldw + o], w2 = w[2 * ldw + o], w3 = w[3 * ldw + o];
        s00 += x0 * w0, s01 += x1 * w0, s10 += x0 * w1, s11 += x1 * w1;
        s20 += x0 * w2, s21 += x1 * w2, s30 += x0 * w3, s31 += x1 * w3;
      }
      storef(f + i, s00), storef(f + i + VL, s01);
      storef(f + ldf + i, s10), storef(f + ldf + i + VL, s11);
      storef(f + 2 * ldf + i, s20), storef(f + 2 * ldf + i + VL, s21);
      storef(f + 3 * ldf + i, s30), storef(f + 3 * ldf + i + VL, s31);
    }
  for (; i + VL <= n; i += VL)
    for (int a = 0; a < na; a++) {
      vf s = {0};
      for (int64_t o = 0; o < nk; o++) s += loadf(x + o * ldx + i) * w[a * ldw + o];
      storef(f + a * ldf + i, s);
    }
  for (; i < n; i++)
    for (int a = 0; a < na; a++) {
      float s = 0.0f;
      for (int64_t o = 0; o < nk; o++) s += x[o * ldx + i] * w[a * ldw + o];
      f[a * ldf + i] = s;
    }
}

/* One weight row in its stored dtype (F32, F16, BF16) widened in registers and dotted with nx
 * (1..4) fp32 rows: out[b] = sum_c w[c] * x[b * ldx + c] (decode's dense Linear: W read once). */
static inline vf widen(const void *w, lb_dtype dt, int64_t c) {
  vf f;
  if (dt == LB_F32) return loadf((const float *)w + c);
  vu16 h;
  memcpy(&h, (const uint16_t *)w + c, sizeof h);
  if (dt == LB_BF16) {
    vu32 u = __builtin_convertvector(h, vu32) << 16;
    memcpy(&f, &u, sizeof f);
    return f;
  }
#if VL == 16
  __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + c)));
#else
  __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + c)));
#endif
  memcpy(&f, &v, sizeof f);
  return f;
}

void SFX(lb_dotw)(const void *w, lb_dtype dt, const float *x, int64_t ldx, int nx, int64_t n,
                  float *out) {
  vf s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
  int64_t c = 0;
  if (nx == 1) { /* four chains, so FMA latency does not bound one long sum */
    for (; c + 4 * VL <= n; c += 4 * VL) {
      s0 += widen(w, dt, c) * loadf(x + c);
      s1 += widen(w, dt, c + VL) * loadf(x + c + VL);
      s2 += widen(w, dt, c + 2 * VL) * loadf(x + c + 2 * VL);
      s3 += widen(w, dt, c + 3 * VL) * loadf(x + c + 3 * VL);
    }
    s0 = (s0 + s1) + (s2 + s3);
    s1 = s2 = s3 = (vf){0};
  }
  for (; c + VL <= n; c += VL) {
    vf v = widen(w, dt, c);
    s0 += v * loadf(x + c);
    if (nx > 1) s1 += v * loadf(x + ldx + c);
    if (nx > 2) s2 += v * loadf(x + 2 * ldx + c);
    if (nx > 3) s3 += v * loadf(x + 3 * ldx + c);
  }
  float t[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
  if (c < n) {
    float tail[VL];
    lb_cvt_f32_ref(tail, (const char *)w + c * (int64_t)lb_dtype_size(dt), dt, n - c);
    for (int b = 0; b < nx; b++)
      for (int64_t i = c; i < n; i++) t[b] += tail[i - c] * x[b * ldx + i];
  }
  for (int b = 0; b < nx; b++) out[b] = t[b];
}

/* silu(g) * u lane by lane with vexp: the same operations as lb_silu_mul_ref (no FMA here), so the
 * same values. */
void SFX(lb_silu_mul)(float *g, const float *u, int64_t n) {
  int64_t i = 0;
  for (; i + VL <= n; i += VL) {
    vf x = loadf(g + i);
    storef(g + i, x / (1.0f + vexp((vf){0} - x)) * loadf(u + i));
  }
  for (; i < n; i++) g[i] = g[i] / (1.0f + lb_expf_fast(-g[i])) * u[i];
}

/* Fused multiply-add and broadcast for the attention kernel (this file is compiled without FP
 * contraction, so a * b + c would round twice and take two instructions). */
#if VL == 16
#define VFMA(a, b, c) ((vf)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#define VSET1(s) ((vf)_mm512_set1_ps(s))
#else
#define VFMA(a, b, c) ((vf)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define VSET1(s) ((vf)_mm256_set1_ps(s))
#endif

/* Attention of nq (<= LB_ATTN_QB) query rows of one head (see lb_attn_rows_ref): key blocks of
 * LB_ATTN_KB, each block's keys transposed into scratch so that a vector holds VL keys and a
 * broadcast query element feeds them all (no horizontal sums), scores for 4 query rows at a time,
 * then the online softmax per row and O += P V for 4 rows at a time. */
static float vmax_range(const float *s, int64_t lo, int64_t hi) {
  vf m = (vf){0} - INFINITY;
  int64_t j = lo;
  for (; j + VL <= hi; j += VL) {
    vf v = loadf(s + j);
    m = vsel((vi)(v > m), v, m);
  }
  float r = -INFINITY;
  for (int i = 0; i < VL; i++) r = m[i] > r ? m[i] : r;
  for (; j < hi; j++) r = s[j] > r ? s[j] : r;
  return r;
}

void SFX(lb_attn_rows)(const float *q, int64_t ldq, const float *K, const float *V, int64_t ldkv,
                       int64_t hd, int64_t nq, const int64_t *ka, const int64_t *kb, float scale,
                       float *o, int64_t ldo, float *scratch) {
  enum { KB = LB_ATTN_KB };
  float *kt = scratch, *S = kt + hd * KB, *mrow = S + LB_ATTN_QB * KB, *lrow = mrow + LB_ATTN_QB;
  int64_t k0 = ka[0], k1 = kb[0];
  for (int64_t t = 0; t < nq; t++) {
    k0 = ka[t] < k0 ? ka[t] : k0, k1 = kb[t] > k1 ? kb[t] : k1;
    mrow[t] = -INFINITY, lrow[t] = 0.0f;
    memset(o + t * ldo, 0, (size_t)hd * sizeof(float));
  }
  for (int64_t b0 = k0; b0 < k1; b0 += KB) {
    const int64_t nk = k1 - b0 < KB ? k1 - b0 : KB, nkv = (nk + VL - 1) / VL * VL;
    for (int64_t d = 0; d < hd; d++) {
      for (int64_t j = 0; j < nk; j++) kt[d * KB + j] = K[(b0 + j) * ldkv + d];
      for (int64_t j = nk; j < nkv; j++) kt[d * KB + j] = 0.0f;
    }
    for (int64_t t = 0; t < nq; t += 4) {
      const int nr = nq - t < 4 ? (int)(nq - t) : 4;
      for (int64_t j = 0; j < nkv; j += VL) {
        vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        const float *q0 = q + t * ldq;
        for (int64_t d = 0; d < hd; d++) {
          vf k = loadf(kt + d * KB + j);
          a0 = VFMA(VSET1(q0[d]), k, a0);
          if (nr > 1) a1 = VFMA(VSET1(q0[ldq + d]), k, a1);
          if (nr > 2) a2 = VFMA(VSET1(q0[2 * ldq + d]), k, a2);
          if (nr > 3) a3 = VFMA(VSET1(q0[3 * ldq + d]), k, a3);
        }
        storef(S + t * KB + j, a0 * VSET1(scale));
        if (nr > 1) storef(S + (t + 1) * KB + j, a1 * VSET1(scale));
        if (nr > 2) storef(S + (t + 2) * KB + j, a2 * VSET1(scale));
        if (nr > 3) storef(S + (t + 3) * KB + j, a3 * VSET1(scale));
      }
    }
    for (int64_t t = 0; t < nq; t++) { /* the row's visible keys in this block: [lo, hi) */
      float *s = S + t * KB;
      int64_t lo = ka[t] - b0, hi = kb[t] - b0;
      lo = lo < 0 ? 0 : lo, hi = hi > nk ? nk : hi;
      if (lo >= hi) {
        memset(s, 0, (size_t)nk * sizeof(float));
        continue;
      }
      const float mx = vmax_range(s, lo, hi);
      const float m = mx > mrow[t] ? mx : mrow[t], corr = lb_expf_fast(mrow[t] - m);
      memset(s, 0, (size_t)lo * sizeof(float));
      lrow[t] = lrow[t] * corr + SFX(lb_exp_sum)(s + lo, hi - lo, m);
      memset(s + hi, 0, (size_t)(nk - hi) * sizeof(float));
      mrow[t] = m;
      if (corr != 1.0f)
        for (int64_t d = 0; d < hd; d += VL) storef(o + t * ldo + d, loadf(o + t * ldo + d) * VSET1(corr));
    }
    for (int64_t t = 0; t < nq; t += 4) {
      const int nr = nq - t < 4 ? (int)(nq - t) : 4;
      for (int64_t d = 0; d < hd; d += 2 * VL) {
        const bool two = d + VL < hd;
        vf o00 = loadf(o + t * ldo + d), o01 = two ? loadf(o + t * ldo + d + VL) : (vf){0};
        vf o10 = {0}, o11 = {0}, o20 = {0}, o21 = {0}, o30 = {0}, o31 = {0};
        if (nr > 1) o10 = loadf(o + (t + 1) * ldo + d), o11 = two ? loadf(o + (t + 1) * ldo + d + VL) : o11;
        if (nr > 2) o20 = loadf(o + (t + 2) * ldo + d), o21 = two ? loadf(o + (t + 2) * ldo + d + VL) : o21;
        if (nr > 3) o30 = loadf(o + (t + 3) * ldo + d), o31 = two ? loadf(o + (t + 3) * ldo + d + VL) : o31;
        for (int64_t j = 0; j < nk; j++) {
          const float *vr = V + (b0 + j) * ldkv + d;
          vf v0 = loadf(vr), v1 = two ? loadf(vr + VL) : (vf){0};
          const float *p = S + t * KB + j;
          o00 = VFMA(VSET1(p[0]), v0, o00), o01 = VFMA(VSET1(p[0]), v1, o01);
          if (nr > 1) o10 = VFMA(VSET1(p[KB]), v0, o10), o11 = VFMA(VSET1(p[KB]), v1, o11);
          if (nr > 2) o20 = VFMA(VSET1(p[2 * KB]), v0, o20), o21 = VFMA(VSET1(p[2 * KB]), v1, o21);
          if (nr > 3) o30 = VFMA(VSET1(p[3 * KB]), v0, o30), o31 = VFMA(VSET1(p[3 * KB]), v1, o31);
        }
        storef(o + t * ldo + d, o00);
        if (two) storef(o + t * ldo + d + VL, o01);
        if (nr > 1) { storef(o + (t + 1) * ldo + d, o10); if (two) storef(o + (t + 1) * ldo + d + VL, o11); }
        if (nr > 2) { storef(o + (t + 2) * ldo + d, o20); if (two) storef(o + (t + 2) * ldo + d + VL, o21); }
        if (nr > 3) { storef(o + (t + 3) * ldo + d, o30); if (two) storef(o + (t + 3) * ldo + d + VL, o31); }
      }
    }
  }
  for (int64_t t = 0; t < nq; t++) {
    const float inv = lrow[t] > 0.0f ? 1.0f / lrow[t] : 0.0f;
    for (int64_t d = 0; d < hd; d += VL) storef(o + t * ldo + d, loadf(o + t * ldo + d) * VSET1(inv));
  }
}
