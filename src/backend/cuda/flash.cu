// Prefill attention in one kernel, flash-attention style (cuda.h, lb_cuda_flash_attention): the
// scores never leave the SM. A block of 4 warps takes 64 query rows of one head, a warp 16 of
// them, and walks the visible keys in tiles of 64: S = Q K^T on the tensor cores (m16n8k16, fp16
// in, fp32 sums), the masked online softmax in fp32 (running max and sum a row, base 2), then
// O += P V with P rounded to fp16 straight from S's registers (an S tile's accumulator layout is
// the A operand's layout of P). K and V tiles are double-buffered in shared memory (cp.async),
// their 16-byte chunks swizzled (chunk c of row r at c ^ (r & 7)) so that ldmatrix reads 8 rows
// without bank conflicts. Rows and keys past the end are zero-filled: the cache past the last
// written key may hold anything, and 0 * NaN in P V would spread.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/util.cuh"

enum { FA_ROWS = 64, FA_KEYS = 64, FA_THREADS = 128 };

__device__ __forceinline__ uint32_t fa_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], uint32_t a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldsm4t(uint32_t (&r)[4], uint32_t a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
// 16 bytes to shared memory, zeros when !ok (src must still point at readable memory)
__device__ __forceinline__ void cp16z(uint32_t dst, const void *src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// 64 rows of HD fp16 from src (row stride ld elements) into a swizzled tile; rows >= ok are zeros.
template <int HD> __device__ __forceinline__ void load_tile(uint4 *dst, const __half *src, int64_t ld, int ok) {
  constexpr int C = HD / 8;
#pragma unroll
  for (int i = threadIdx.x; i < 64 * C; i += FA_THREADS) {
    const int r = i / C, c = i % C;
    cp16z(fa_smem(dst + r * C + (c ^ (r & 7))), src + (int64_t)(r < ok ? r : 0) * ld + c * 8, r < ok);
  }
}
// ldmatrix's row address for lane l: row (within the tile) and logical chunk c
template <int HD> __device__ __forceinline__ uint32_t tile_addr(const uint4 *tile, int row, int c) {
  return fa_smem(tile + row * (HD / 8) + (c ^ (row & 7)));
}

template <int HD>
__global__ void __launch_bounds__(FA_THREADS) flash_k(const __half *__restrict__ q, const __half *__restrict__ kc,
                                                      const __half *__restrict__ vc, int64_t seq_stride, int per,
                                                      int pos, int heads, int kvh, int window, float sl2,
                                                      __half *__restrict__ out) {
  constexpr int C = HD / 8, KK = HD / 16;
  extern __shared__ uint4 fsm[]; // Q [64][C], K [2][64][C], V [2][64][C]
  uint4 *sq = fsm, *sk = fsm + FA_ROWS * C, *sv = sk + 2 * FA_KEYS * C;
  lb_pdl_trigger();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  // the blocks of the last rows (the most keys) first
  const int r0 = (int)(gridDim.x - 1 - blockIdx.x) * FA_ROWS, h = blockIdx.y, s = blockIdx.z;
  const int kv = h / (heads / kvh), qd = heads * HD, kvd = kvh * HD;
  const __half *Q = q + ((int64_t)s * per + r0) * qd + (int64_t)h * HD;
  const __half *K = kc + s * seq_stride + (int64_t)kv * HD, *V = vc + s * seq_stride + (int64_t)kv * HD;
  const int last = min(per, r0 + FA_ROWS) - 1, kend = pos + last + 1; // keys 0 .. kend - 1 exist
  const int klo = window > 0 ? max(0, pos + r0 - window + 1) : 0, t0 = klo / FA_KEYS, t1 = (kend - 1) / FA_KEYS;
  const int qw0 = pos + r0 + warp * 16; // the warp's first row's position
  lb_pdl_wait();
  load_tile<HD>(sq, Q, qd, per - r0);
  load_tile<HD>(sk, K + (int64_t)t0 * FA_KEYS * kvd, kvd, kend - t0 * FA_KEYS);
  load_tile<HD>(sv, V + (int64_t)t0 * FA_KEYS * kvd, kvd, kend - t0 * FA_KEYS);
  cp_commit();
  uint32_t qf[KK][4];
  float o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f; // rows g and g + 8: max, partial sum
  for (int tile = t0; tile <= t1; tile++) {
    const int b = (tile - t0) & 1, k0 = tile * FA_KEYS;
    if (tile < t1) {
      const int64_t nx = (int64_t)(k0 + FA_KEYS) * kvd;
      load_tile<HD>(sk + (b ^ 1) * FA_KEYS * C, K + nx, kvd, kend - k0 - FA_KEYS);
      load_tile<HD>(sv + (b ^ 1) * FA_KEYS * C, V + nx, kvd, kend - k0 - FA_KEYS);
      cp_commit();
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
    if (tile == t0)
#pragma unroll
      for (int kk = 0; kk < KK; kk++)
        ldsm4(qf[kk], tile_addr<HD>(sq, warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, 2 * kk + (lane >> 4)));
    const uint4 *tk = sk + b * FA_KEYS * C, *tv = sv + b * FA_KEYS * C;
    float sc[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) {
      sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < KK; kk += 2) {
        uint32_t kb[4];
        ldsm4(kb, tile_addr<HD>(tk, j * 8 + (lane & 7), 2 * kk + (lane >> 3)));
        mma16816(sc[j], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], kb[0], kb[1]);
        mma16816(sc[j], qf[kk + 1][0], qf[kk + 1][1], qf[kk + 1][2], qf[kk + 1][3], kb[2], kb[3]);
      }
    }
    // keys after a row's position, or before its window, are masked (only tiles that reach them)
    if (k0 + FA_KEYS - 1 > qw0 || (window > 0 && k0 < qw0 + 16 - window)) {
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int key = k0 + j * 8 + 2 * t + (e & 1), qp = qw0 + g + (e >> 1) * 8;
          if (key > qp || (window > 0 && key <= qp - window)) sc[j][e] = -INFINITY;
        }
    }
    float x0 = m0, x1 = m1;
#pragma unroll
    for (int j = 0; j < 8; j++) x0 = fmaxf(x0, fmaxf(sc[j][0], sc[j][1])), x1 = fmaxf(x1, fmaxf(sc[j][2], sc[j][3]));
#pragma unroll
    for (int w = 1; w < 4; w <<= 1)
      x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, w)), x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, w));
    // a row with no visible key so far keeps max -inf: its terms are taken against 0 (all 0)
    const float ms0 = x0 == -INFINITY ? 0.0f : x0 * sl2, ms1 = x1 == -INFINITY ? 0.0f : x1 * sl2;
    const float a0 = exp2f(m0 * sl2 - ms0), a1 = exp2f(m1 * sl2 - ms1);
    m0 = x0, m1 = x1, l0 *= a0, l1 *= a1;
#pragma unroll
    for (int d = 0; d < HD / 8; d++) o[d][0] *= a0, o[d][1] *= a0, o[d][2] *= a1, o[d][3] *= a1;
    uint32_t pf[8][2]; // P in fp16: tile j's rows g and g + 8
#pragma unroll
    for (int j = 0; j < 8; j++) {
      const float p0 = exp2f(fmaf(sc[j][0], sl2, -ms0)), p1 = exp2f(fmaf(sc[j][1], sl2, -ms0));
      const float p2 = exp2f(fmaf(sc[j][2], sl2, -ms1)), p3 = exp2f(fmaf(sc[j][3], sl2, -ms1));
      l0 += p0 + p1, l1 += p2 + p3;
      pf[j][0] = h2u(__floats2half2_rn(p0, p1)), pf[j][1] = h2u(__floats2half2_rn(p2, p3));
    }
#pragma unroll
    for (int kc2 = 0; kc2 < 4; kc2++) // 16 keys: S tiles 2 kc2 and 2 kc2 + 1 make P's A fragment
#pragma unroll
      for (int d = 0; d < HD / 8; d += 2) {
        uint32_t vb[4];
        ldsm4t(vb, tile_addr<HD>(tv, kc2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, d + (lane >> 4)));
        mma16816(o[d], pf[2 * kc2][0], pf[2 * kc2][1], pf[2 * kc2 + 1][0], pf[2 * kc2 + 1][1], vb[0], vb[1]);
        mma16816(o[d + 1], pf[2 * kc2][0], pf[2 * kc2][1], pf[2 * kc2 + 1][0], pf[2 * kc2 + 1][1], vb[2], vb[3]);
      }
    __syncthreads(); // the buffer is read before the next tile's copies overwrite it
  }
#pragma unroll
  for (int w = 1; w < 4; w <<= 1) l0 += __shfl_xor_sync(0xffffffffu, l0, w), l1 += __shfl_xor_sync(0xffffffffu, l1, w);
  const float i0 = 1.0f / l0, i1 = 1.0f / l1;
  const int ra = r0 + warp * 16 + g, rb = ra + 8;
  __half *oa = out + ((int64_t)s * per + ra) * qd + (int64_t)h * HD + 2 * t, *ob = oa + 8 * (int64_t)qd;
#pragma unroll
  for (int d = 0; d < HD / 8; d++) {
    if (ra <= last) *reinterpret_cast<__half2 *>(oa + d * 8) = __floats2half2_rn(o[d][0] * i0, o[d][1] * i0);
    if (rb <= last) *reinterpret_cast<__half2 *>(ob + d * 8) = __floats2half2_rn(o[d][2] * i1, o[d][3] * i1);
  }
}

extern "C" bool lb_cuda_flash_fits(const lb_cuda_attn *a) {
  return (a->head_dim == 64 || a->head_dim == 128) && a->kv_heads > 0 && a->heads % a->kv_heads == 0 &&
         a->ctx <= INT32_MAX / 2;
}

template <int HD>
static cudaError_t flash_launch(const __half *q16, const __half *kc, const __half *vc, int64_t seq_stride, int64_t nseq,
                                int64_t per, int64_t pos, const lb_cuda_attn *a, __half *out, cudaStream_t st) {
  static bool raised = false;
  const size_t smem = (size_t)(FA_ROWS + 4 * FA_KEYS) * (HD / 8) * 16;
  cudaError_t e = cudaSuccess;
  if (!raised && (e = cudaFuncSetAttribute(flash_k<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) != cudaSuccess)
    return e;
  raised = true;
  const dim3 grid((unsigned)((per + FA_ROWS - 1) / FA_ROWS), (unsigned)a->heads, (unsigned)nseq);
  return lb_cu_launch(flash_k<HD>, grid, dim3(FA_THREADS), smem, st, q16, kc, vc, seq_stride, (int)per, (int)pos,
                      (int)a->heads, (int)a->kv_heads, (int)a->window, a->scale * 1.4426950408889634f, out);
}

extern "C" lb_status lb_cuda_flash_attention(lb_cuda_ctx *c, const void *q16, const void *kc16, const void *vc16,
                                             int64_t seq_stride, int64_t nseq, int64_t per, int64_t pos,
                                             const lb_cuda_attn *a, void *out16, lb_error *err) {
  if (!lb_cuda_flash_fits(a) || nseq < 1 || per < 1 || pos < 0 || pos + per > a->ctx || nseq > 65535 ||
      a->heads > 65535)
    return lb_cu_fail(err, LB_EINVAL, "cuda flash attention: unsupported shape");
  cudaStream_t st = c ? (cudaStream_t)lb_cuda_stream(c) : 0;
  const __half *q = (const __half *)q16, *k = (const __half *)kc16, *v = (const __half *)vc16;
  __half *o = (__half *)out16;
  const cudaError_t e = a->head_dim == 64 ? flash_launch<64>(q, k, v, seq_stride, nseq, per, pos, a, o, st)
                                          : flash_launch<128>(q, k, v, seq_stride, nseq, per, pos, a, o, st);
  return lb_cu_check(err, "launching flash attention", e);
}
