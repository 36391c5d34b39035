// Decode GEMV for 4-bit affine weights (cuda.h). One warp per 2 weight rows; each lane reads 16
// bytes (32 codes) of each row per step, so a warp step is 512 contiguous bytes of a row. Codes become fp16 by the exponent
// trick: (word >> 4i) & 0x000F000F | 0x64006400 is the half2 (1024 + q_a, 1024 + q_b), and
// subtracting the half2 (1024 + zero) leaves q - zero exactly (integer zero points, |q - z| < 16).
// The 16 products of a 32-column step accumulate in half2 (HFMA2), then the step's sum is scaled
// by its group's scale and added in fp32.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/util.cuh"
extern "C" {
#include "quant/qweight.h"
}

// nibble position p of a word holds column ORDER[p] of its 8
static const int ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};

extern "C" bool lb_cuda_q4_fits(const lb_qweight *w, const char **why) {
  const char *r = NULL;
  const int64_t group = w->kind == LB_QK_AFFINE && w->ngroups > 1 ? w->group : w->cols;
  if (w->kind != LB_QK_AFFINE || w->bits > 4) r = "not an affine weight of at most 4 bits";
  else if (w->cols % 32 || group % 32) r = "columns or group not a multiple of 32";
  for (int64_t c = 0; !r && w->g_idx && w->ngroups > 1 && c < w->cols; c++)
    if (w->g_idx[c] != c / group) r = "act-order (g_idx)";
  for (int64_t i = 0; !r && i < w->rows * w->ngroups; i++)
    if (w->zero[i] != floorf(w->zero[i]) || w->zero[i] < 0 || w->zero[i] > 15)
      r = "zero points that are not integers in [0, 15]";
  if (why) *why = r;
  return r == NULL;
}

extern "C" lb_status lb_cuda_q4_upload(lb_cuda_ctx *ctx, const lb_qweight *const *ws, int n,
                                       lb_cuda_q4 *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  int64_t rows = 0;
  const int64_t cols = ws[0]->cols, ng = ws[0]->ngroups;
  for (int i = 0; i < n; i++) {
    const char *why;
    if (!lb_cuda_q4_fits(ws[i], &why)) {
      char msg[160];
      snprintf(msg, sizeof msg, "cuda q4: %s", why);
      return lb_cu_fail(err, LB_EUNSUPPORTED, msg);
    }
    if (ws[i]->cols != cols || ws[i]->ngroups != ng)
      return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda q4: stacked weights differ in columns or groups");
    rows += ws[i]->rows;
  }
  const int64_t group = ng == 1 ? cols : ws[0]->group;
  const size_t nwords = (size_t)(rows * cols / 8), nsc = (size_t)(rows * ng);
  uint32_t *codes = (uint32_t *)malloc(nwords * 4);
  __half *sc = (__half *)malloc(nsc * sizeof(__half)), *zr = (__half *)malloc(nsc * sizeof(__half));
  if (!codes || !sc || !zr) {
    free(codes), free(sc), free(zr);
    return lb_cu_fail(err, LB_ENOMEM, "cuda q4: out of host memory");
  }
  for (int i = 0, r0 = 0; i < n; r0 += (int)ws[i]->rows, i++) {
    const lb_qweight *w = ws[i];
    for (int64_t r = 0; r < w->rows; r++)
      for (int64_t t = 0; t < cols / 8; t++) {
        uint32_t word = 0;
        for (int p = 0; p < 8; p++) word |= (uint32_t)(w->q[r * cols + 8 * t + ORDER[p]] & 15) << (4 * p);
        codes[(r0 + r) * (cols / 8) + t] = word;
      }
    for (int64_t j = 0; j < w->rows * ng; j++)
      sc[r0 * ng + j] = __float2half(w->scale[j]), zr[r0 * ng + j] = __float2half(1024.0f + w->zero[j]);
  }
  lb_status s = LB_OK;
  *out = (lb_cuda_q4){rows, cols, group, ng, NULL, NULL, NULL};
  if ((s = lb_cuda_alloc(ctx, nwords * 4, &out->codes, err)) != LB_OK ||
      (s = lb_cuda_alloc(ctx, nsc * sizeof(__half), &out->scales, err)) != LB_OK ||
      (s = lb_cuda_alloc(ctx, nsc * sizeof(__half), &out->zeros, err)) != LB_OK ||
      (s = lb_cu_check(err, "uploading a 4-bit weight", cudaMemcpy(out->codes, codes, nwords * 4, cudaMemcpyHostToDevice))) != LB_OK ||
      (s = lb_cu_check(err, "uploading a 4-bit weight", cudaMemcpy(out->scales, sc, nsc * sizeof(__half), cudaMemcpyHostToDevice))) != LB_OK ||
      (s = lb_cu_check(err, "uploading a 4-bit weight", cudaMemcpy(out->zeros, zr, nsc * sizeof(__half), cudaMemcpyHostToDevice))) != LB_OK)
    lb_cuda_q4_free(out);
  free(codes), free(sc), free(zr);
  return s;
}

extern "C" void lb_cuda_q4_free(lb_cuda_q4 *w) {
  cudaFree(w->codes), cudaFree(w->scales), cudaFree(w->zeros);
  w->codes = w->scales = w->zeros = NULL;
}

// One thread per 32-bit word: 8 fp16 weights (s * (q - z)) written as one 16-byte store.
__global__ void dequant_q4(const uint32_t *__restrict__ codes, const __half *__restrict__ scales,
                           const __half *__restrict__ zeros, uint4 *__restrict__ out, int64_t words,
                           int cols, int group, int ngroups) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= words) return;
  const int64_t r = i / (cols / 8), c = (i % (cols / 8)) * 8, g = r * ngroups + c / group;
  const __half2 z = __half2half2(zeros[g]), s = __half2half2(scales[g]);
  const uint32_t w = codes[i];
  uint4 o;
  uint32_t *ov = &o.x;
#pragma unroll
  for (int k = 0; k < 4; k++) { // nibbles k and k + 4 hold columns 2k and 2k + 1
    uint32_t t = ((w >> (4 * k)) & 0x000F000Fu) | 0x64006400u;
    __half2 v = __hmul2(__hsub2(*reinterpret_cast<__half2 *>(&t), z), s);
    ov[k] = *reinterpret_cast<uint32_t *>(&v);
  }
  out[i] = o;
}

extern "C" lb_status lb_cuda_q4_dequant(lb_cuda_ctx *c, const lb_cuda_q4 *w, void *out16, lb_error *err) {
  const int64_t words = w->rows * w->cols / 8;
  dequant_q4<<<(unsigned)((words + 255) / 256), 256, 0, c ? (cudaStream_t)lb_cuda_stream(c) : 0>>>(
      (const uint32_t *)w->codes, (const __half *)w->scales, (const __half *)w->zeros, (uint4 *)out16,
      words, (int)w->cols, (int)w->group, (int)w->ngroups);
  return lb_cu_launched(err, "launching the 4-bit dequantization");
}

// R rows per warp share each activation load; U steps per iteration, their R * U weight loads of
// 16 bytes issued before any math, so each lane keeps that many in flight.
template <int B, int R, int U, int KS>
__global__ void __launch_bounds__(256) gemv_q4(const uint4 *__restrict__ codes,
                                               const __half *__restrict__ scales,
                                               const __half *__restrict__ zeros,
                                               const __half *__restrict__ x, float *__restrict__ y,
                                               int rows, int cols, int group, int ngroups,
                                               bool accumulate) {
  // KS warps of the block share each group of R rows, warp k taking every KS-th step; their sums
  // meet in shared memory (more warps in flight for the same rows and activation reuse)
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31, groups = (int)(blockDim.x >> 5) / KS;
  const int kpart = wib / groups, row0 = (blockIdx.x * groups + wib % groups) * R;
  const int steps = cols / 32;
  __shared__ float part[8][R][B];
  float acc[R][B];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++) acc[r][b] = 0.0f;
  for (int st0 = lane + 32 * U * kpart; st0 < steps && row0 < rows; st0 += 32 * U * KS) {
    uint4 q[U][R]; // every weight load of the iteration issued before any math
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < R; r++) {
        const int row = row0 + r < rows ? row0 + r : row0, st = st0 + 32 * u;
        q[u][r] = st < steps ? __ldcs(codes + (size_t)row * steps + st) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int st = st0 + 32 * u;
      if (st >= steps) break;
      const int g = st * 32 / group;
      __half2 d[R][16]; // q - zero for the 32 columns of each row, in pairs (0, 1), (2, 3) ...
      float s[R];
#pragma unroll
      for (int r = 0; r < R; r++) {
        const int row = row0 + r < rows ? row0 + r : row0; // a missing row repeats row0, unused
        const __half2 z2 = __half2half2(zeros[(size_t)row * ngroups + g]);
        s[r] = __half2float(scales[(size_t)row * ngroups + g]);
        const uint32_t wv[4] = {q[u][r].x, q[u][r].y, q[u][r].z, q[u][r].w};
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
          for (int i = 0; i < 4; i++) {
            uint32_t t = ((wv[j] >> (4 * i)) & 0x000F000Fu) | 0x64006400u;
            d[r][4 * j + i] = __hsub2(*reinterpret_cast<__half2 *>(&t), z2);
          }
      }
#pragma unroll
      for (int b = 0; b < B; b++) {
        const uint4 *xb = reinterpret_cast<const uint4 *>(x + (size_t)b * cols + (size_t)st * 32);
        uint4 xv[4];
#pragma unroll
        for (int j = 0; j < 4; j++) xv[j] = __ldg(xb + j);
        const __half2 *xh = reinterpret_cast<const __half2 *>(xv);
#pragma unroll
        for (int r = 0; r < R; r++) {
          __half2 a = __float2half2_rn(0.0f);
#pragma unroll
          for (int i = 0; i < 16; i++) a = __hfma2(d[r][i], xh[i], a);
          const float2 f = __half22float2(a);
          acc[r][b] = fmaf(s[r], f.x + f.y, acc[r][b]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++) {
      float v = acc[r][b];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      acc[r][b] = v;
      if (KS > 1 && lane == 0) part[wib][r][b] = v;
    }
  if (KS > 1) __syncthreads();
  if (kpart != 0 || lane != 0) return;
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++) {
      float v = acc[r][b];
      for (int k = 1; k < KS; k++) v += part[wib + k * groups][r][b];
      if (row0 + r < rows) {
        float *o = y + (size_t)b * rows + row0 + r;
        *o = accumulate ? *o + v : v;
      }
    }
}

extern "C" lb_status lb_cuda_gemv_q4(const lb_cuda_q4 *w, const void *x_f16, float *y, int batch,
                                     bool acc, void *stream, lb_error *err) {
  if (batch < 1 || batch > 8) return lb_cu_fail(err, LB_EINVAL, "cuda q4 gemv: batch must be 1..8");
#ifndef LB_Q4_ROWS
#define LB_Q4_ROWS 2 /* rows per warp */
#endif
#ifndef LB_Q4_UNROLL
#define LB_Q4_UNROLL 1 /* steps per iteration (2 and 4 measured slower, BENCHMARKS.md) */
#endif
#ifndef LB_Q4_SPLIT
#define LB_Q4_SPLIT 2 /* warps sharing a group of rows (split-K inside a block) */
#endif
  enum { R = LB_Q4_ROWS, U = LB_Q4_UNROLL, KS = LB_Q4_SPLIT };
  const int threads = 256, per_block = 8 / KS * R;
  const int blocks = (int)((w->rows + per_block - 1) / per_block);
  cudaStream_t s = (cudaStream_t)stream;
  const uint4 *c = (const uint4 *)w->codes;
  const __half *sc = (const __half *)w->scales, *z = (const __half *)w->zeros;
  const __half *x = (const __half *)x_f16;
  const int r = (int)w->rows, k = (int)w->cols, g = (int)w->group, ng = (int)w->ngroups;
  switch (batch) {
  case 1: gemv_q4<1, R, U, KS><<<blocks, threads, 0, s>>>(c, sc, z, x, y, r, k, g, ng, acc); break;
  case 2: gemv_q4<2, R, U, KS><<<blocks, threads, 0, s>>>(c, sc, z, x, y, r, k, g, ng, acc); break;
  case 3: gemv_q4<3, R, U, KS><<<blocks, threads, 0, s>>>(c, sc, z, x, y, r, k, g, ng, acc); break;
  case 4: gemv_q4<4, R, U, KS><<<blocks, threads, 0, s>>>(c, sc, z, x, y, r, k, g, ng, acc); break;
  case 5: gemv_q4<5, R, U, KS><<<blocks, threads, 0, s>>>(c, sc, z, x, y, r, k, g, ng, acc); break;
  case 6: gemv_q4<6, R, U, KS><<<blocks, threads, 0, s>>>(c, sc, z, x, y, r, k, g, ng, acc); break;
  case 7: gemv_q4<7, R, U, KS><<<blocks, threads, 0, s>>>(c, sc, z, x, y, r, k, g, ng, acc); break;
  default: gemv_q4<8, R, U, KS><<<blocks, threads, 0, s>>>(c, sc, z, x, y, r, k, g, ng, acc); break;
  }
  return lb_cu_launched(err, "launching the 4-bit GEMV");
}
