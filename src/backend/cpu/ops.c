/* Scalar reference kernels, the run-time choice of vectorized ones, and the row-wise ops of the
 * forward pass (RMSNorm, SiLU-gate, softmax). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"

void lb_cvt_f32_ref(float *dst, const void *src, lb_dtype dt, int64_t n) {
  if (dt == LB_F32) {
    memcpy(dst, src, (size_t)n * 4);
  } else if (dt == LB_BF16) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) {
      uint32_t u = (uint32_t)s[i] << 16;
      memcpy(&dst[i], &u, 4);
    }
  } else if (dt == LB_F16) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = lb_f16_to_f32(s[i]);
  }
}

float lb_dot_ref(const float *a, const float *b, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

float lb_expf_fast(float x) {
  x = x < -87.3f ? -87.3f : x > 88.0f ? 88.0f : x;
  float kf = x * 1.44269504088896341f;
  kf = (float)(int32_t)(kf + (kf >= 0 ? 0.5f : -0.5f));
  float r = x - kf * 0.693359375f;
  r = r + kf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = ((int32_t)kf + 127) << 23;
  float scale;
  memcpy(&scale, &e, 4);
  return p * scale;
}

float lb_exp_sum_ref(float *x, int64_t n, float shift) {
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += (x[i] = lb_expf_fast(x[i] - shift));
  return s;
}

void lb_dotw_ref(const void *w, lb_dtype dt, const float *x, int64_t ldx, int nx, int64_t n,
                 float *out) {
  float buf[256];
  for (int b = 0; b < nx; b++) out[b] = 0.0f;
  for (int64_t c0 = 0; c0 < n; c0 += 256) {
    int64_t m = n - c0 < 256 ? n - c0 : 256;
    lb_cvt_f32_ref(buf, (const char *)w + c0 * (int64_t)lb_dtype_size(dt), dt, m);
    for (int b = 0; b < nx; b++)
      for (int64_t i = 0; i < m; i++) out[b] += buf[i] * x[b * ldx + c0 + i];
  }
}

void lb_axpy_ref(float *y, float a, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void lb_dot_s16x4_ref(const int16_t *w, int64_t ldw, const int16_t *x, int64_t ldx, int nx,
                      int64_t n, int32_t *out) {
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < nx; b++) {
      int32_t s = 0;
      for (int64_t c = 0; c < n; c++) s += (int32_t)w[a * ldw + c] * x[b * ldx + c];
      out[a * 4 + b] = s;
    }
}

void lb_sums_f32x4_ref(float *f, int64_t ldf, const float *x, int64_t ldx, const float *w,
                       int64_t ldw, int na, int64_t nk, int64_t n) {
  for (int a = 0; a < na; a++)
    for (int64_t i = 0; i < n; i++) {
      float s = 0.0f;
      for (int64_t o = 0; o < nk; o++) s += x[o * ldx + i] * w[a * ldw + o];
      f[a * ldf + i] = s;
    }
}

#define LB_KERNEL_SET(name, sfx)                                                                   \
  {name,              lb_cvt_f32_##sfx,    lb_dot_##sfx,      lb_exp_sum_##sfx, lb_axpy_##sfx,     \
   lb_dot_s16x4_##sfx, lb_sums_f32x4_##sfx, lb_qact_s8_##sfx, lb_qgemm_u4_##sfx, lb_qgemm_u8_##sfx, \
   lb_deq_nf4_##sfx,  lb_deq_fp8_##sfx,    lb_qdot_nf4_##sfx, lb_qdot_fp8_##sfx,                    \
   lb_dotw_##sfx,     lb_silu_mul_##sfx,  lb_attn_rows_##sfx}
static const lb_kernels REF = LB_KERNEL_SET("ref", ref);
#if defined(__x86_64__)
static const lb_kernels AVX2 = LB_KERNEL_SET("avx2", avx2);
static const lb_kernels AVX512 = LB_KERNEL_SET("avx512", avx512);
#endif

const lb_kernels *lb_cpu_kernels_isa(const char *isa) {
  if (!strcmp(isa, "ref")) return &REF;
#if defined(__x86_64__)
  lb_cpu_info c;
  lb_cpu_detect(&c);
  bool avx2 = c.avx2 && c.fma && c.f16c;
  if (!strcmp(isa, "avx2")) return avx2 ? &AVX2 : NULL;
  /* the AVX-512 set needs VNNI (vpdpbusd, vpdpwssd): Ice Lake, Zen 4 and later; older AVX-512
   * CPUs (Skylake-X) take the AVX2 set */
  if (!strcmp(isa, "avx512"))
    return avx2 && c.avx512f && c.avx512bw && c.avx512vl && c.avx512_vnni ? &AVX512 : NULL;
#endif
  return NULL;
}

const lb_kernels *lb_cpu_kernels(void) {
  static const lb_kernels *chosen;
  if (chosen) return chosen;
  const char *force = getenv("LOWBIT_ISA");
  const lb_kernels *k = force ? lb_cpu_kernels_isa(force) : NULL;
  if (!k) k = lb_cpu_kernels_isa("avx512");
  if (!k) k = lb_cpu_kernels_isa("avx2");
  if (!k) k = &REF;
  chosen = k;
  return k;
}

/* As Transformers' LlamaRMSNorm in fp32: x * rsqrt(mean(x^2) + eps) * w (the sum in double). */
void lb_rmsnorm(float *y, const float *x, const float *w, int64_t d, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < d; i++) ss += (double)x[i] * x[i];
  float r = 1.0f / sqrtf((float)(ss / (double)d) + eps);
  for (int64_t i = 0; i < d; i++) y[i] = w[i] * (x[i] * r);
}

void lb_silu_mul_ref(float *g, const float *u, int64_t n) {
  for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + lb_expf_fast(-g[i])) * u[i];
}

void lb_silu_mul(float *g, const float *u, int64_t n) { lb_cpu_kernels()->silu_mul(g, u, n); }

/* The online-softmax attention the ISA kernels compute, block by block in the same order: per key
 * block, scores scale * q.k, the block's max m' = max(m, block max), the running sum
 * l = l * exp(m - m') + sum exp(s - m'), the output rescaled by exp(m - m') and += p v. */
void lb_attn_rows_ref(const float *q, int64_t ldq, const float *K, const float *V, int64_t ldkv,
                      int64_t hd, int64_t nq, const int64_t *ka, const int64_t *kb, float scale,
                      float *o, int64_t ldo, float *scratch) {
  float *p = scratch;
  for (int64_t t = 0; t < nq; t++) {
    float m = -INFINITY, l = 0.0f, *ot = o + t * ldo;
    memset(ot, 0, (size_t)hd * sizeof(float));
    int64_t first = ka[0];
    for (int64_t u = 0; u < nq; u++) first = ka[u] < first ? ka[u] : first;
    for (int64_t b0 = first; b0 < kb[t]; b0 += LB_ATTN_KB) {
      int64_t lo = ka[t] > b0 ? ka[t] : b0, hi = kb[t] < b0 + LB_ATTN_KB ? kb[t] : b0 + LB_ATTN_KB;
      if (lo >= hi) continue;
      float mx = -INFINITY;
      for (int64_t j = lo; j < hi; j++) {
        float s = 0.0f;
        for (int64_t d = 0; d < hd; d++) s += q[t * ldq + d] * K[j * ldkv + d];
        p[j - lo] = s * scale;
        mx = p[j - lo] > mx ? p[j - lo] : mx;
      }
      float mn = mx > m ? mx : m, corr = lb_expf_fast(m - mn);
      l = l * corr + lb_exp_sum_ref(p, hi - lo, mn);
      m = mn;
      for (int64_t d = 0; d < hd; d++) ot[d] *= corr;
      for (int64_t j = lo; j < hi; j++)
        for (int64_t d = 0; d < hd; d++) ot[d] += p[j - lo] * V[j * ldkv + d];
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int64_t d = 0; d < hd; d++) ot[d] *= inv;
  }
}

void lb_softmax(float *x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  float s = lb_cpu_kernels()->exp_sum(x, n, mx);
  float inv = 1.0f / s;
  for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

double lb_logsumexp(const float *x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  double s = 0;
  float buf[1024];
  const lb_kernels *k = lb_cpu_kernels();
  for (int64_t i = 0; i < n; i += 1024) {
    int64_t m = n - i < 1024 ? n - i : 1024;
    memcpy(buf, x + i, (size_t)m * 4);
    s += k->exp_sum(buf, m, mx);
  }
  return (double)mx + log(s);
}
