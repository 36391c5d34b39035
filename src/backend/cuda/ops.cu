// The decoder's ops other than matrix products (cuda.h): embedding, RMSNorm, bias + RoPE + KV
// store in one kernel, attention, SiLU-and-multiply. fp32 math throughout; fp16 where a result
// feeds a matrix product or the KV cache.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/util.cuh"

static cudaStream_t stream_of(lb_cuda_ctx *c) { return c ? (cudaStream_t)lb_cuda_stream(c) : 0; }

__global__ void to_f16_k(const void *__restrict__ src, int dt, int64_t n, __half *__restrict__ dst, int *bad) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = dt == LB_F32 ? ((const float *)src)[i]
          : dt == LB_F16 ? __half2float(((const __half *)src)[i])
                         : __bfloat162float(((const __nv_bfloat16 *)src)[i]);
  const __half h = __float2half_rn(v);
  dst[i] = h;
  if (bad && !isfinite(__half2float(h))) atomicAdd(bad, 1);
}

extern "C" lb_status lb_cuda_to_f16(lb_cuda_ctx *c, const void *src, lb_dtype dt, int64_t n, void *dst16,
                                    int *bad, lb_error *err) {
  if (dt != LB_F32 && dt != LB_F16 && dt != LB_BF16) return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda: to fp16 from an unknown type");
  return lb_cu_check(err, "launching a conversion to fp16",
                     lb_cu_launch(to_f16_k, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, stream_of(c),
                                  src, (int)dt, n, (__half *)dst16, bad));
}

__global__ void embed_k(const __half *__restrict__ table, const int32_t *__restrict__ ids, int64_t d,
                        float *__restrict__ x) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int64_t t = blockIdx.x, i = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
  if (i < d) x[t * d + i] = __half2float(table[(int64_t)ids[t] * d + i]);
}

extern "C" lb_status lb_cuda_embed(lb_cuda_ctx *c, const void *table16, const int32_t *ids, int64_t n,
                                   int64_t d, float *x, lb_error *err) {
  return lb_cu_check(err, "launching the embedding",
                     lb_cu_launch(embed_k, dim3((unsigned)n, (unsigned)((d + 255) / 256)), dim3(256), 0,
                                  stream_of(c), (const __half *)table16, ids, d, x));
}

__global__ void rmsnorm_k(const float *__restrict__ x, int64_t ldx, const float *__restrict__ w, float eps,
                          int64_t d, const int32_t *__restrict__ perm, __half *__restrict__ y) {
  lb_pdl_trigger();
  lb_pdl_wait();
  __shared__ float red[32];
  const float *r = x + blockIdx.x * ldx;
  const float inv = rms_inv(r, d, eps, red);
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const int64_t p = perm ? perm[i] : i;
    y[blockIdx.x * d + i] = __float2half(r[p] * inv * w[p]);
  }
}

extern "C" lb_status lb_cuda_rmsnorm(lb_cuda_ctx *c, const float *x, int64_t ldx, const float *w, float eps,
                                     int64_t n, int64_t d, const int32_t *perm, void *y16, lb_error *err) {
  // a block of up to 1024 threads per row: few loads per thread, so one row's latency is a few
  // memory round trips (256 threads took 16 us a row on the H100, a quarter of a 4-bit layer)
  const int threads = d >= 1024 ? 1024 : (int)((d + 31) / 32 * 32);
  return lb_cu_check(err, "launching RMSNorm", lb_cu_launch(rmsnorm_k, dim3((unsigned)n), dim3(threads), 0,
                                                            stream_of(c), x, ldx, w, eps, d, perm, (__half *)y16));
}

// One block per (token, head of q or k): a thread per rotate_half pair (i, i + hd/2) adds the bias,
// rotates, and stores (q: to q16 when asked; k: to the cache, with the same pair of v).
__global__ void rope_kv_k(float *__restrict__ qkv, const float *__restrict__ bias,
                          const float *__restrict__ cs, const int32_t *__restrict__ pos, int per,
                          int64_t ctx, int heads, int kvh, int hd, __half *__restrict__ kc,
                          __half *__restrict__ vc, __half *__restrict__ q16) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int t = blockIdx.x, h = blockIdx.y, half = hd / 2, qd = heads * hd, kvd = kvh * hd;
  const int64_t p = (int64_t)*pos + t % per, seq = t / per; // row t: sequence t / per
  kc += seq * ctx * kvd, vc += seq * ctx * kvd;
  float *row = qkv + (int64_t)t * (qd + 2 * kvd);
  const float *cp = cs + p * hd;
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const int o = h * hd + j; // k heads follow the q heads directly
    float x1 = row[o], x2 = row[o + half];
    if (bias) x1 += bias[o], x2 += bias[o + half];
    const float co = cp[j], si = cp[half + j], r1 = x1 * co - x2 * si, r2 = x2 * co + x1 * si;
    row[o] = r1, row[o + half] = r2;
    if (h < heads) {
      if (q16) q16[(int64_t)t * qd + o] = __float2half(r1), q16[(int64_t)t * qd + o + half] = __float2half(r2);
      continue;
    }
    const int64_t c = p * kvd + (h - heads) * hd + j;
    const int vo = qd + kvd + (h - heads) * hd + j;
    float v1 = row[vo], v2 = row[vo + half];
    if (bias) v1 += bias[vo], v2 += bias[vo + half];
    kc[c] = __float2half(r1), kc[c + half] = __float2half(r2);
    vc[c] = __float2half(v1), vc[c + half] = __float2half(v2);
  }
}

extern "C" lb_status lb_cuda_rope_kv(lb_cuda_ctx *c, float *qkv, const float *bias, int64_t n,
                                     int64_t per, const lb_cuda_attn *a, const float *cs,
                                     const int32_t *pos, void *kc16, void *vc16, void *q16,
                                     lb_error *err) {
  const int half = (int)a->head_dim / 2, threads = half <= 64 ? 64 : 128;
  dim3 grid((unsigned)n, (unsigned)(a->heads + a->kv_heads));
  return lb_cu_check(err, "launching RoPE and the KV store",
                     lb_cu_launch(rope_kv_k, grid, dim3(threads), 0, stream_of(c), qkv, bias, cs, pos,
                                  (int)per, a->ctx, (int)a->heads, (int)a->kv_heads, (int)a->head_dim, (__half *)kc16,
                                  (__half *)vc16, (__half *)q16));
}

// One block of 256 threads per (head, query row, split): the scores of its keys in shared memory
// (a thread a key, its key row's 16-byte loads all issued before the math), the softmax, then
// sum p V with each thread over 8 columns (one 16-byte load a key) of every (256 / (hd / 8))-th
// key, the key groups summed in shared memory. Key rows come from the fp16 cache; math is fp32.
// Split-KV (gridDim.z > 1, when heads x rows blocks would leave SMs idle): the visible keys are cut
// in spans of at least min_span, at most gridDim.z of them (fewer at early positions: the blocks
// past them return at once, and a single span is the plain path); split z leaves its max, sum
// and unnormalized p V in `sp`, and the last split of a (row, head) to finish (a counter, reset
// by it) rescales and adds them.
enum { ATTN_THREADS = 256, ATTN_SLOTS = 512 }; // slots: (row, head, split) partials at most

__global__ void __launch_bounds__(ATTN_THREADS)
attention_k(const float *__restrict__ qkv, const __half *__restrict__ kc, const __half *__restrict__ vc,
            const int32_t *__restrict__ pos, int per, int64_t ctx, int heads, int kvh, int hd, int window,
            float scale, __half *__restrict__ out, float *__restrict__ sp, int *__restrict__ count,
            int min_span) {
  lb_pdl_trigger();
  lb_pdl_wait();
  extern __shared__ float S[]; // [the split's keys]
  __shared__ float q[1024], red[32];
  __shared__ __align__(16) float part[ATTN_THREADS * 8]; // partial sums of p V
  __shared__ bool last;
  const int h = blockIdx.x, t = blockIdx.y, kv = h / (heads / kvh), kvd = kvh * hd, tid = threadIdx.x;
  const int64_t i = (int64_t)*pos + t % per, k0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
  kc += (int64_t)(t / per) * ctx * kvd, vc += (int64_t)(t / per) * ctx * kvd; // row t's sequence
  const int visible = (int)(i + 1 - k0), nz = gridDim.z;
  const int span = max(min_span, (visible + nz - 1) / nz), na = (visible + span - 1) / span;
  if ((int)blockIdx.z >= na) return; // the whole block: no keys left for it
  const bool one = na == 1;          // a single span: normalized straight into out
  const int ja = (int)blockIdx.z * span, nk = min(visible, ja + span) - ja, half = hd / 2;
  const float *qr = qkv + (int64_t)t * (heads * hd + 2 * kvd) + h * hd;
  for (int d = tid; d < hd; d += blockDim.x) q[d] = qr[d] * scale;
  __syncthreads();
  const __half *K = kc + (k0 + ja) * kvd + kv * hd, *V = vc + (k0 + ja) * kvd + kv * hd;
  const bool vec = (hd & 7) == 0 && ATTN_THREADS % (hd / 8) == 0;
  float mx = -INFINITY;
  for (int j = tid; j < nk; j += blockDim.x) {
    float s = 0;
    if ((hd & 7) == 0) {
      const uint4 *kr = reinterpret_cast<const uint4 *>(K + (int64_t)j * kvd);
      for (int d0 = 0; d0 < hd / 8; d0 += 16) { // 16 loads in flight, then their math
        uint4 u[16];
#pragma unroll
        for (int e = 0; e < 16; e++) u[e] = d0 + e < hd / 8 ? kr[d0 + e] : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int e = 0; e < 16; e++) {
          const __half2 *h2 = reinterpret_cast<const __half2 *>(&u[e]);
          const float *qe = q + 8 * (d0 + e);
          if (d0 + e < hd / 8)
#pragma unroll
            for (int c = 0; c < 4; c++) {
              const float2 k2 = __half22float2(h2[c]);
              s = fmaf(qe[2 * c], k2.x, fmaf(qe[2 * c + 1], k2.y, s));
            }
        }
      }
    } else {
      const __half2 *kr = reinterpret_cast<const __half2 *>(K + (int64_t)j * kvd);
      for (int d = 0; d < half; d++) {
        const float2 k2 = __half22float2(kr[d]);
        s = fmaf(q[2 * d], k2.x, fmaf(q[2 * d + 1], k2.y, s));
      }
    }
    S[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_reduce<true>(mx, red);
  float sum = 0;
  for (int j = tid; j < nk; j += blockDim.x) {
    const float e = expf(S[j] - mx);
    S[j] = e;
    sum += e;
  }
  sum = block_reduce<false>(sum, red); // its barriers also publish S
  // one split: normalized into out; else unnormalized into this split's slot of sp
  const float inv = one ? 1.0f / sum : 1.0f;
  const int slot = (t * heads + h) * nz + blockIdx.z;
  float *so = sp + (int64_t)slot * (hd + 2);
  __half *o = out + (int64_t)t * heads * hd + h * hd;
  if (vec) { // thread: 8 columns cc * 8 .. of the keys g, g + groups, ...
    const int c8 = hd / 8, groups = ATTN_THREADS / c8, g = tid / c8, cc = tid % c8;
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll 4
    for (int j = g; j < nk; j += groups) {
      const uint4 u = *reinterpret_cast<const uint4 *>(V + (int64_t)j * kvd + cc * 8);
      const __half2 *h2 = reinterpret_cast<const __half2 *>(&u);
      const float p = S[j];
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const float2 v = __half22float2(h2[e]);
        a[2 * e] = fmaf(p, v.x, a[2 * e]), a[2 * e + 1] = fmaf(p, v.y, a[2 * e + 1]);
      }
    }
    float4 *pp = reinterpret_cast<float4 *>(part + g * hd + cc * 8);
    pp[0] = make_float4(a[0], a[1], a[2], a[3]), pp[1] = make_float4(a[4], a[5], a[6], a[7]);
    __syncthreads();
    for (int d = tid; d < hd; d += blockDim.x) {
      float v = 0;
      for (int k = 0; k < groups; k++) v += part[k * hd + d];
      if (one) o[d] = __float2half(v * inv);
      else so[d] = v;
    }
  } else { // column pairs, one thread each, over every key
    __half2 *o2 = reinterpret_cast<__half2 *>(o);
    for (int cp = tid; cp < half; cp += blockDim.x) {
      float2 acc = make_float2(0, 0);
      for (int j = 0; j < nk; j++) {
        const float2 v = __half22float2(reinterpret_cast<const __half2 *>(V + (int64_t)j * kvd)[cp]);
        acc.x = fmaf(S[j], v.x, acc.x), acc.y = fmaf(S[j], v.y, acc.y);
      }
      if (one) o2[cp] = __floats2half2_rn(acc.x * inv, acc.y * inv);
      else so[2 * cp] = acc.x, so[2 * cp + 1] = acc.y;
    }
  }
  if (one) return;
  if (tid == 0) so[hd] = mx, so[hd + 1] = sum;
  __threadfence(); // this split's partials visible before it is counted
  __syncthreads();
  if (tid == 0) {
    int *c = count + t * heads + h;
    last = atomicAdd(c, 1) == na - 1;
    if (last) *c = 0; // for the next launch (which waits for this one to finish)
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  const float *s0 = sp + (int64_t)(t * heads + h) * nz * (hd + 2); // read past L1 (__ldcg)
  float m = -INFINITY, l = 0;
  for (int z = 0; z < na; z++) m = fmaxf(m, __ldcg(s0 + z * (hd + 2) + hd));
  for (int z = 0; z < na; z++) l += __ldcg(s0 + z * (hd + 2) + hd + 1) * expf(__ldcg(s0 + z * (hd + 2) + hd) - m);
  for (int d = tid; d < hd; d += blockDim.x) {
    float v = 0;
    for (int z = 0; z < na; z++) v += __ldcg(s0 + z * (hd + 2) + d) * expf(__ldcg(s0 + z * (hd + 2) + hd) - m);
    o[d] = __float2half(v / l);
  }
}

// The decode attention keeps a split's scores in shared memory: the context must fit there. The
// device's opt-in limit is read once; the kernel's limit is raised once when 48 KiB is not enough.
static const size_t ATTN_FIXED = (1024 + 32 + ATTN_THREADS * 8) * sizeof(float);

static int attention_smem_limit(void) {
  static int optin = 0;
  if (!optin) {
    int dev = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  }
  return optin;
}

extern "C" size_t lb_cuda_attention_scratch(const lb_cuda_attn *a) {
  return ATTN_SLOTS * ((size_t)a->head_dim + 2) * sizeof(float) + ATTN_SLOTS * sizeof(int);
}

extern "C" lb_status lb_cuda_attention_check(const lb_cuda_attn *a, lb_error *err) {
  if (a->head_dim > 1024 || (size_t)a->ctx * sizeof(float) + ATTN_FIXED > (size_t)attention_smem_limit())
    return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda attention: the context is longer than shared memory holds");
  return LB_OK;
}

extern "C" lb_status lb_cuda_attention(lb_cuda_ctx *c, const float *qkv, const void *kc16, const void *vc16,
                                       int64_t n, int64_t per, const int32_t *pos, const lb_cuda_attn *a,
                                       void *out16, lb_error *err) {
  static bool raised = false;
  // split the keys when heads x rows blocks are too few to keep the SMs' loads going (2 blocks
  // an SM on an H100 is 264), in spans of at least split_keys
  int64_t nz = 1;
  const int64_t blocks = a->heads * n;
  if (a->split && a->split_keys > 0 && blocks < 256) {
    nz = ATTN_SLOTS / blocks;
    if (a->ctx / a->split_keys < nz) nz = a->ctx / a->split_keys;
    if (nz < 2) nz = 1;
  }
  const size_t smem = (size_t)((a->ctx + nz - 1) / nz) * sizeof(float);
  lb_status s = lb_cuda_attention_check(a, err);
  if (s == LB_OK && smem > 48 * 1024 && !raised) {
    s = lb_cu_check(err, "raising attention's shared memory",
                    cudaFuncSetAttribute(attention_k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)(attention_smem_limit() - ATTN_FIXED)));
    raised = s == LB_OK;
  }
  if (s != LB_OK) return s;
  dim3 grid((unsigned)a->heads, (unsigned)n, (unsigned)nz);
  float *sp = (float *)a->split;
  int *count = (int *)(sp + ATTN_SLOTS * (a->head_dim + 2));
  return lb_cu_check(err, "launching attention",
                     lb_cu_launch(attention_k, grid, dim3(ATTN_THREADS), smem, stream_of(c), qkv,
                                  (const __half *)kc16, (const __half *)vc16, pos, (int)per, a->ctx,
                                  (int)a->heads,
                                  (int)a->kv_heads, (int)a->head_dim, (int)a->window, a->scale,
                                  (__half *)out16, sp, count, (int)(nz > 1 ? a->split_keys : 1)));
}

// One block per (row, head): max, exp and sum over the visible keys, P = e / sum in fp16.
__global__ void softmax_rows_k(const float *__restrict__ S, __half *__restrict__ P, int64_t n, int64_t nk,
                               int64_t ld, int64_t pos, int64_t window) {
  lb_pdl_trigger();
  lb_pdl_wait();
  __shared__ float red[32];
  const int64_t t = blockIdx.x, h = blockIdx.y, i = pos + t;
  const int64_t a = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0, b = i + 1 < nk ? i + 1 : nk;
  const float *s = S + (h * n + t) * ld;
  __half *p = P + (h * n + t) * ld;
  float mx = -INFINITY;
  for (int64_t j = a + threadIdx.x; j < b; j += blockDim.x) mx = fmaxf(mx, s[j]);
  mx = block_reduce<true>(mx, red);
  float sum = 0;
  for (int64_t j = a + threadIdx.x; j < b; j += blockDim.x) sum += expf(s[j] - mx);
  sum = block_reduce<false>(sum, red);
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < nk; j += blockDim.x)
    p[j] = __float2half(j >= a && j < b ? expf(s[j] - mx) * inv : 0.0f);
}

extern "C" lb_status lb_cuda_softmax_rows(lb_cuda_ctx *c, const float *S, void *P16, int64_t heads, int64_t n,
                                          int64_t nk, int64_t ld, int64_t pos, int64_t window, lb_error *err) {
  dim3 grid((unsigned)n, (unsigned)heads);
  return lb_cu_check(err, "launching the attention softmax",
                     lb_cu_launch(softmax_rows_k, grid, dim3(256), 0, stream_of(c), S, (__half *)P16, n,
                                  nk, ld, pos, window));
}

// Query heads i, i + group, ... share kv heads 0, 1, ..., so each of the group's offsets is one
// strided batch over the kv heads.
extern "C" lb_status lb_cuda_attention_gemm(lb_cuda_ctx *c, const void *q16, const void *kc16, const void *vc16,
                                            int64_t n, int64_t pos, const lb_cuda_attn *a, float *S, void *P16,
                                            void *out16, lb_error *err) {
  const int64_t hd = a->head_dim, H = a->heads, kvh = a->kv_heads, grp = H / kvh, kvd = kvh * hd, qd = H * hd;
  const int64_t rows = LB_CUDA_ATT_ROWS;
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    const int64_t rn = n - r0 < rows ? n - r0 : rows, nk = pos + r0 + rn;
    const char *q = (const char *)q16 + (size_t)(r0 * qd) * 2, *P = (const char *)P16;
    char *o = (char *)out16 + (size_t)(r0 * qd) * 2;
    lb_status s = LB_OK;
    for (int64_t i = 0; i < grp && s == LB_OK; i++) // S_h^T (nk x rn) = K_j (nk x hd) . Q_h^T
      s = lb_cuda_gemm_batched(c, true, false, nk, rn, hd, a->scale, kc16, kvd, hd, q + (size_t)(i * hd) * 2, qd,
                               grp * hd, S + i * rn * nk, false, nk, grp * rn * nk, kvh, err);
    if (s == LB_OK) s = lb_cuda_softmax_rows(c, S, P16, H, rn, nk, nk, pos + r0, a->window, err);
    for (int64_t i = 0; i < grp && s == LB_OK; i++) // O_h^T (hd x rn) = V_j^T (hd x nk) . P_h^T
      s = lb_cuda_gemm_batched(c, false, false, hd, rn, nk, 1.0f, vc16, kvd, hd, P + (size_t)(i * rn * nk) * 2, nk,
                               grp * rn * nk, o + (size_t)(i * hd) * 2, true, qd, grp * hd, kvh, err);
    if (s != LB_OK) return s;
  }
  return LB_OK;
}

__global__ void silu_mul_k(const float *__restrict__ gu, const float *__restrict__ bias, int64_t n,
                           int64_t inter, bool interleaved, __half *__restrict__ out) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n * inter) return;
  const int64_t t = i / inter, j = i % inter;
  const float *row = gu + t * 2 * inter;
  float g = interleaved ? row[2 * j] : row[j], u = interleaved ? row[2 * j + 1] : row[inter + j];
  if (bias) g += bias[j], u += bias[inter + j];
  out[i] = __float2half(g / (1.0f + expf(-g)) * u);
}

extern "C" lb_status lb_cuda_silu_mul(lb_cuda_ctx *c, const float *gu, const float *bias, int64_t n,
                                      int64_t inter, bool interleaved, void *out16, lb_error *err) {
  const int64_t total = n * inter;
  return lb_cu_check(err, "launching SiLU-and-multiply",
                     lb_cu_launch(silu_mul_k, dim3((unsigned)((total + 255) / 256)), dim3(256), 0,
                                  stream_of(c), gu, bias, n, inter, interleaved, (__half *)out16));
}

__global__ void add_bias_k(float *__restrict__ y, const float *__restrict__ b, int64_t total, int64_t rows) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < total) y[i] += b[i % rows];
}

extern "C" lb_status lb_cuda_add_bias(lb_cuda_ctx *c, float *y, const float *b, int64_t n, int64_t rows,
                                      lb_error *err) {
  const int64_t total = n * rows;
  return lb_cu_check(err, "launching a bias add",
                     lb_cu_launch(add_bias_k, dim3((unsigned)((total + 255) / 256)), dim3(256), 0,
                                  stream_of(c), y, b, total, rows));
}

// A thread per column: its source column read before the wait (the order is a weight's), then
// that column of every row. (A block a row through shared memory, every access coalesced, made
// 4-layer 7B-wide act-order decode 1.5x slower: one block at one row, no overlap before its wait.)
__global__ void gather_cols_k(const __half *__restrict__ x, const int32_t *__restrict__ perm, int64_t n,
                              int64_t cols, __half *__restrict__ out) {
  lb_pdl_trigger();
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t p = i < cols ? perm[i] : 0;
  lb_pdl_wait();
  if (i >= cols) return;
  for (int64_t t = blockIdx.y; t < n; t += gridDim.y) out[t * cols + i] = x[t * cols + p];
}

extern "C" lb_status lb_cuda_gather_cols(lb_cuda_ctx *c, const void *x16, const int32_t *perm, int64_t n,
                                         int64_t cols, void *out16, lb_error *err) {
  const dim3 grid((unsigned)((cols + 255) / 256), (unsigned)(n < 1024 ? n : 1024));
  return lb_cu_check(err, "launching an activation gather",
                     lb_cu_launch(gather_cols_k, grid, dim3(256), 0, stream_of(c), (const __half *)x16, perm, n,
                                  cols, (__half *)out16));
}
