// W8A8 for FP8 weights (lb_model_options.fp8_act): the activations quantized to E4M3 per block, as
// lb_fp8_act_quant does on the host, either in place as fp16 (for the GEMV and the tensor-core
// product, which then read them as any fp16 row) or as E4M3 codes and block scales for the FP8
// tensor cores (cuBLASLt with 1 x 128 block scaling of both operands, lb_cuda_lt_fp8).
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/util.cuh"

namespace {

enum { THREADS = 256, BLK = 128 };

// v / s rounded to E4M3 (nearest even, saturating at 448: the cast's SATFINITE) as its code.
__device__ __forceinline__ __nv_fp8_storage_t e4m3(float v) {
  return __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
}
__device__ __forceinline__ float e4m3_val(__nv_fp8_storage_t q) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(q, __NV_E4M3)));
}

// v with scale s: its code, or fp16 code * s (a block of zeros, or a NaN, which v * 0 keeps).
__device__ __forceinline__ __nv_fp8_storage_t code(float v, float s) { return e4m3(s > 0.0f ? v / s : v * 0.0f); }
__device__ __forceinline__ __half fake(float v, float s) {
  return __float2half_rn(s > 0.0f ? e4m3_val(e4m3(v / s)) * s : v * 0.0f);
}
__device__ __forceinline__ void put(__half *x, uint8_t *codes, int64_t c, float s) {
  const float v = __half2float(x[c]);
  if (codes) codes[c] = code(v, s);
  else x[c] = fake(v, s);
}

// Blocks of BLK columns: a warp a block (blockIdx.x * 8 + warp of row blockIdx.y), a lane 4
// columns, read and written whole where the block is (cols % 4 == 0: 8-byte aligned halves).
// scales: [ceil(cols / BLK)][n], or NULL. fixed > 0: every block's scale (static), no amax.
__global__ void act_blocks(__half *x, int64_t n, int64_t cols, uint8_t *codes, float *scales, float fixed) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int64_t r = blockIdx.y, b = (int64_t)blockIdx.x * (THREADS / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t nblk = (cols + BLK - 1) / BLK;
  if (b >= nblk) return;
  __half *xr = x + r * cols;
  uint8_t *cr = codes ? codes + r * cols : nullptr;
  const int64_t c0 = b * BLK + lane * 4, len = cols - b * BLK < BLK ? cols - b * BLK : BLK;
  const bool whole = len == BLK && cols % 4 == 0;
  __half v[4];
  if (whole) *(uint2 *)v = *(const uint2 *)(xr + c0);
  else
    for (int k = 0; k < 4; k++) v[k] = lane * 4 + k < len ? xr[c0 + k] : __float2half(0.0f);
  float amax = 0.0f;
  for (int k = 0; k < 4; k++) amax = fmaxf(amax, fabsf(__half2float(v[k])));
  for (int o = 16; o; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float s = fixed > 0.0f ? fixed : amax / 448.0f;
  if (scales && lane == 0) scales[b * n + r] = s;
  if (!whole) {
    for (int k = 0; k < 4; k++)
      if (lane * 4 + k < len) put(xr, cr, c0 + k, s);
    return;
  }
  if (codes) {
    uint32_t q = 0;
    for (int k = 0; k < 4; k++) q |= (uint32_t)code(__half2float(v[k]), s) << (8 * k);
    *(uint32_t *)(cr + c0) = q;
  } else {
    for (int k = 0; k < 4; k++) v[k] = fake(__half2float(v[k]), s);
    *(uint2 *)(xr + c0) = *(uint2 *)v;
  }
}

// Per row: a block a row reduces the row's amax, then writes it. scales as act_blocks'.
__global__ void act_rows(__half *x, int64_t n, int64_t cols, uint8_t *codes, float *scales) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int64_t r = blockIdx.x;
  __half *xr = x + r * cols;
  uint8_t *cr = codes ? codes + r * cols : nullptr;
  const int64_t nblk = (cols + BLK - 1) / BLK;
  __shared__ float red[32];
  float amax = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += THREADS) amax = fmaxf(amax, fabsf(__half2float(xr[c])));
  const float s = block_reduce<true>(amax, red) / 448.0f;
  for (int64_t c = threadIdx.x; c < cols; c += THREADS) put(xr, cr, c, s);
  if (scales)
    for (int64_t b = threadIdx.x; b < nblk; b += THREADS) scales[b * n + r] = s;
}

// Per row in one pass (cols % 8 == 0, at most THREADS * 8 * V columns, 16-byte aligned rows): a
// block a row, the row held in registers as V 16-byte vectors a thread, its amax reduced across
// the block, then each vector quantized from registers and written whole. act_rows reads the row
// twice in 2-byte loads, which made per-token W8A8 cost 12.6% of the 7B decode against 5.4% for
// act_blocks (BENCHMARKS.md, eighth session). scales as act_blocks'.
template <int V>
__global__ void act_rows_vec(__half *x, int64_t n, int64_t cols, uint8_t *codes, float *scales) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int64_t r = blockIdx.x;
  __half *xr = x + r * cols;
  const int nv = (int)(cols / 8);
  uint4 v[V];
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < V; i++) {
    const int j = threadIdx.x + i * THREADS;
    if (j >= nv) continue;
    v[i] = ((const uint4 *)xr)[j];
    const __half2 *h = (const __half2 *)&v[i];
#pragma unroll
    for (int k = 0; k < 4; k++)
      amax = fmaxf(amax, fmaxf(fabsf(__low2float(h[k])), fabsf(__high2float(h[k]))));
  }
  __shared__ float red[32];
  const float s = block_reduce<true>(amax, red) / 448.0f;
  if (scales)
    for (int64_t b = threadIdx.x; b < (cols + BLK - 1) / BLK; b += THREADS) scales[b * n + r] = s;
#pragma unroll
  for (int i = 0; i < V; i++) {
    const int j = threadIdx.x + i * THREADS;
    if (j >= nv) continue;
    __half2 *h = (__half2 *)&v[i];
    if (codes) {
      uint32_t q[2] = {0, 0};
#pragma unroll
      for (int k = 0; k < 4; k++)
        q[k / 2] |= ((uint32_t)code(__low2float(h[k]), s) | (uint32_t)code(__high2float(h[k]), s) << 8)
                    << (16 * (k % 2));
      *(uint2 *)(codes + r * cols + (int64_t)j * 8) = make_uint2(q[0], q[1]);
    } else {
#pragma unroll
      for (int k = 0; k < 4; k++) h[k] = __halves2half2(fake(__low2float(h[k]), s), fake(__high2float(h[k]), s));
      ((uint4 *)xr)[j] = v[i];
    }
  }
}

// RMSNorm of a row (x * rsqrt(mean(x^2) + eps) * w, fp32) whose fp16 output is at once the E4M3
// quantization of the fp32 result: per row (group == d), in blocks of BLK columns, or with the
// scale `fixed` > 0. A block a row; blockDim.x a multiple of BLK, so a column block is 4 warps.
__global__ void rmsnorm_fp8(const float *__restrict__ x, int64_t ldx, const float *__restrict__ w,
                            float eps, int64_t d, int64_t group, float fixed, __half *__restrict__ y) {
  lb_pdl_trigger();
  lb_pdl_wait();
  __shared__ float red[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float *r = x + blockIdx.x * ldx;
  __half *yr = y + blockIdx.x * d;
  const float inv = rms_inv(r, d, eps, red); // as lb_cuda_rmsnorm computes it
  if (fixed > 0.0f || group != BLK) { // one scale for the row
    float s = fixed;
    if (!(fixed > 0.0f)) {
      float amax = 0.0f;
      for (int64_t i = threadIdx.x; i < d; i += blockDim.x) amax = fmaxf(amax, fabsf(r[i] * inv * w[i]));
      s = block_reduce<true>(amax, red) / 448.0f;
    }
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = fake(r[i] * inv * w[i], s);
    return;
  }
  for (int64_t base = 0; base < d; base += blockDim.x) { // 1 x BLK blocks: 4 warps each
    const int64_t i = base + threadIdx.x;
    const float v = i < d ? r[i] * inv * w[i] : 0.0f;
    float amax = fabsf(v);
    for (int o = 16; o; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    __syncthreads(); // red may still be read (rms_inv, the step before)
    if (lane == 0) red[warp] = amax;
    __syncthreads();
    const int g0 = warp / (BLK / 32) * (BLK / 32);
    amax = red[g0];
    for (int k = 1; k < BLK / 32; k++) amax = fmaxf(amax, red[g0 + k]);
    if (i < d) yr[i] = fake(v, amax / 448.0f);
  }
}

// The weight's scales [rows][ngroups] (groups of `group` columns) as cuBLASLt's 1 x 128 blocks:
// out[b * rows + r] = scales[r * ngroups + b * BLK / group].
__global__ void wscales(const float *scales, int64_t rows, int64_t ngroups, int64_t group, int64_t nblk,
                        float *out) {
  lb_pdl_trigger();
  lb_pdl_wait();
  const int64_t i = (int64_t)blockIdx.x * THREADS + threadIdx.x;
  if (i >= rows * nblk) return;
  const int64_t b = i / rows, r = i % rows;
  out[i] = scales[r * ngroups + b * BLK / group];
}

} // namespace

extern "C" lb_status lb_cuda_fp8_act(lb_cuda_ctx *c, void *x16, int64_t n, int64_t cols, int64_t group,
                                     float fixed, void *codes, float *scales, lb_error *err) {
  if (n <= 0) return LB_OK;
  if (fixed > 0.0f) group = BLK; // one scale for all: the blocks' kernel, its amax unused
  else if (group != BLK && group != cols)
    return lb_cu_fail(err, LB_EINVAL, "cuda: FP8 activations: blocks of 128 columns or whole rows only");
  cudaStream_t st = (cudaStream_t)lb_cuda_stream(c);
  const int64_t nblk = (cols + BLK - 1) / BLK, per = THREADS / 32;
  if (group == BLK || cols <= BLK) // a row of one block is a block
    return lb_cu_check(err, "FP8 activations",
                       lb_cu_launch(act_blocks, dim3((unsigned)((nblk + per - 1) / per), (unsigned)n), dim3(THREADS), 0,
                                    st, (__half *)x16, n, cols, (uint8_t *)codes, scales, fixed));
  const bool vec = cols % 8 == 0 && (uintptr_t)x16 % 16 == 0 && (uintptr_t)codes % 8 == 0;
  const int64_t span = THREADS * 8; // columns one vector a thread covers
  auto rows = !vec || cols > 8 * span ? act_rows
              : cols <= span          ? act_rows_vec<1>
              : cols <= 2 * span      ? act_rows_vec<2>
              : cols <= 4 * span      ? act_rows_vec<4>
                                      : act_rows_vec<8>;
  return lb_cu_check(err, "FP8 activations",
                     lb_cu_launch(rows, dim3((unsigned)n), dim3(THREADS), 0, st, (__half *)x16, n, cols,
                                  (uint8_t *)codes, scales));
}

extern "C" lb_status lb_cuda_rmsnorm_fp8(lb_cuda_ctx *c, const float *x, int64_t ldx, const float *w, float eps,
                                        int64_t n, int64_t d, int64_t group, float fixed, void *y16,
                                        lb_error *err) {
  if (n <= 0) return LB_OK;
  if (!(fixed > 0.0f) && group != BLK && group != d)
    return lb_cu_fail(err, LB_EINVAL, "cuda: FP8 activations: blocks of 128 columns or whole rows only");
  // as lb_cuda_rmsnorm: up to 1024 threads a row, here a multiple of BLK
  const int threads = d >= 1024 ? 1024 : (int)((d + BLK - 1) / BLK * BLK);
  return lb_cu_check(err, "launching RMSNorm + FP8 activations",
                     lb_cu_launch(rmsnorm_fp8, dim3((unsigned)n), dim3(threads), 0,
                                  (cudaStream_t)lb_cuda_stream(c), x, ldx, w, eps, d, group, fixed, (__half *)y16));
}

extern "C" bool lb_cuda_fp8_tc_fits(const lb_cuda_qw *w) {
  return w->kind == LB_CUDA_FP8 && w->cols % BLK == 0 && w->rows % 4 == 0 &&
         (w->group % BLK == 0 || w->group == w->cols);
}

extern "C" lb_status lb_cuda_gemm_fp8(lb_cuda_ctx *c, const lb_cuda_qw *w, const void *codes,
                                      const float *xscales, float *wscales_out, float *y, int64_t n, bool acc,
                                      lb_error *err) {
  if (!lb_cuda_fp8_tc_fits(w)) return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda: FP8 tensor cores: weight shape");
  const int64_t nblk = w->cols / BLK, total = w->rows * nblk;
  // per tensor or channel, one group a row: each 1 x 128 block takes the row's scale
  const int64_t group = w->ngroups == 1 ? w->cols : w->group;
  lb_status s = lb_cu_check(err, "FP8 weight scales",
                            lb_cu_launch(wscales, dim3((unsigned)((total + THREADS - 1) / THREADS)), dim3(THREADS), 0,
                                         (cudaStream_t)lb_cuda_stream(c), (const float *)w->scales, w->rows,
                                         w->ngroups, group, nblk, wscales_out));
  if (s != LB_OK) return s;
  return lb_cuda_lt_fp8(c, w->codes, wscales_out, codes, xscales, y, w->rows, w->cols, n, acc, err);
}
