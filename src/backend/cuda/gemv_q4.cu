// Decode GEMV for 4-bit affine weights (cuda.h). One warp per 2 weight rows; each lane reads 16
// bytes (32 codes) of each row per step, so a warp step is 512 contiguous bytes of a row, and two
// warps of a block split a row's steps between them. The first step's loads are issued before the
// kernel waits for its input (PDL, util.cuh), so they overlap the kernel before. Codes become fp16
// by the exponent trick: (word >> 4i) & 0x000F000F | 0x64006400 is the half2 (1024 + q_a,
// 1024 + q_b), and subtracting the half2 (1024 + zero) leaves q - zero exactly (integer zero
// points, |q - z| < 16). The 16 products of a step accumulate in half2 (HFMA2), then the step's
// sum is scaled by its group's scale and added in fp32.
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

// Stacked (row r of weight i at r0_i + r), or interleaved pairs (row r of weight i at 2r + i).
static lb_status upload(lb_cuda_ctx *ctx, const lb_qweight *const *ws, int n, bool pairs,
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
  __half2 *sz = (__half2 *)malloc(nsc * sizeof(__half2));
  if (!codes || !sz) {
    free(codes), free(sz);
    return lb_cu_fail(err, LB_ENOMEM, "cuda q4: out of host memory");
  }
  for (int i = 0, r0 = 0; i < n; r0 += (int)ws[i]->rows, i++) {
    const lb_qweight *w = ws[i];
    for (int64_t r = 0; r < w->rows; r++) {
      const int64_t dst = pairs ? 2 * r + i : r0 + r;
      for (int64_t t = 0; t < cols / 8; t++) {
        uint32_t word = 0;
        for (int p = 0; p < 8; p++) word |= (uint32_t)(w->q[r * cols + 8 * t + ORDER[p]] & 15) << (4 * p);
        codes[dst * (cols / 8) + t] = word;
      }
      for (int64_t j = 0; j < ng; j++)
        sz[dst * ng + j] = __floats2half2_rn(w->scale[r * ng + j], 1024.0f + w->zero[r * ng + j]);
    }
  }
  lb_status s = LB_OK;
  *out = (lb_cuda_q4){rows, cols, group, ng, NULL, NULL};
  if ((s = lb_cuda_alloc(ctx, nwords * 4, &out->codes, err)) != LB_OK ||
      (s = lb_cuda_alloc(ctx, nsc * sizeof(__half2), &out->sz, err)) != LB_OK ||
      (s = lb_cu_check(err, "uploading a 4-bit weight", cudaMemcpy(out->codes, codes, nwords * 4, cudaMemcpyHostToDevice))) != LB_OK ||
      (s = lb_cu_check(err, "uploading a 4-bit weight", cudaMemcpy(out->sz, sz, nsc * sizeof(__half2), cudaMemcpyHostToDevice))) != LB_OK)
    lb_cuda_q4_free(out);
  free(codes), free(sz);
  return s;
}

extern "C" lb_status lb_cuda_q4_upload(lb_cuda_ctx *ctx, const lb_qweight *const *ws, int n,
                                       lb_cuda_q4 *out, lb_error *err) {
  return upload(ctx, ws, n, false, out, err);
}

extern "C" lb_status lb_cuda_q4_upload_pairs(lb_cuda_ctx *ctx, const lb_qweight *gate,
                                             const lb_qweight *up, lb_cuda_q4 *out, lb_error *err) {
  const lb_qweight *ws[2] = {gate, up};
  if (gate->rows != up->rows) return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda q4: gate and up differ in rows");
  return upload(ctx, ws, 2, true, out, err);
}

extern "C" void lb_cuda_q4_free(lb_cuda_q4 *w) {
  cudaFree(w->codes), cudaFree(w->sz);
  w->codes = w->sz = NULL;
}

// One thread per 32-bit word: 8 fp16 weights (s * (q - z)) written as one 16-byte store.
__global__ void dequant_q4(const uint32_t *__restrict__ codes, const __half2 *__restrict__ sz,
                           uint4 *__restrict__ out, int64_t words, int cols, int group, int ngroups) {
  lb_pdl_trigger();
  lb_pdl_wait(); // out may still be read by the kernel before
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= words) return;
  const int64_t r = i / (cols / 8), c = (i % (cols / 8)) * 8, g = r * ngroups + c / group;
  const __half2 z = __high2half2(sz[g]), s = __low2half2(sz[g]);
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
  return lb_cu_check(err, "launching the 4-bit dequantization",
                     lb_cu_launch(dequant_q4, dim3((unsigned)((words + 255) / 256)), dim3(256), 0,
                                  c ? (cudaStream_t)lb_cuda_stream(c) : 0, (const uint32_t *)w->codes,
                                  (const __half2 *)w->sz, (uint4 *)out16, words, (int)w->cols,
                                  (int)w->group, (int)w->ngroups));
}

// One step of R rows from row0: the codes and (scale, 1024 + zero) of the 32 columns at step st.
template <int R>
__device__ __forceinline__ void load_step(const uint4 *__restrict__ codes, const __half2 *__restrict__ sz,
                                          int rows, int steps, int ngroups, int spg, int row0, int st,
                                          bool ok, uint4 (&q)[R], __half2 (&s)[R]) {
  const int g = st / spg;
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int row = row0 + r < rows ? row0 + r : row0; // a missing row repeats row0, unused
    q[r] = ok ? __ldcs(codes + (size_t)row * steps + st) : make_uint4(0, 0, 0, 0);
    s[r] = ok ? __ldcs(sz + (size_t)row * ngroups + g) : __half2half2(__float2half(0.0f));
  }
}

// acc[r][b] += scale * sum over the step's 32 columns of (q - zero) * x[b]
template <int B, int R>
__device__ __forceinline__ void mac_step(const uint4 (&q)[R], const __half2 (&s)[R],
                                         const __half *__restrict__ x, int cols, int st,
                                         float (&acc)[R][B]) {
  __half2 d[R][16]; // q - zero for the 32 columns of each row, in pairs (0, 1), (2, 3) ...
  float sc[R];
#pragma unroll
  for (int r = 0; r < R; r++) {
    const __half2 z2 = __high2half2(s[r]);
    sc[r] = __low2float(s[r]);
    const uint32_t wv[4] = {q[r].x, q[r].y, q[r].z, q[r].w};
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
      acc[r][b] = fmaf(sc[r], f.x + f.y, acc[r][b]);
    }
  }
}

// A block of 8 warps: 8 / KS groups of R rows, the KS warps of a group taking alternate steps and
// summing in shared memory. Each step's loads are issued before the math of the step before. SILU: the rows are interleaved (gate, up) pairs (R = 2), and the result is
// out16[b][pair] = silu(gate + bias) * (up + bias) instead of y.
template <int B, int R, int KS, bool SILU>
__global__ void __launch_bounds__(256) gemv_q4(const uint4 *__restrict__ codes,
                                               const __half2 *__restrict__ sz,
                                               const __half *__restrict__ x, float *__restrict__ y,
                                               const float *__restrict__ bias, __half *__restrict__ out16,
                                               int rows, int cols, int spg, int ngroups, bool accumulate) {
  static_assert(!SILU || R == 2, "SILU takes a (gate, up) pair a warp");
  lb_pdl_trigger();
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31, groups = 8 / KS;
  const int kpart = wib / groups, row0 = (blockIdx.x * groups + wib % groups) * R;
  const int steps = cols / 32, stride = 32 * KS;
  const bool live = row0 < rows;
  __shared__ float part[8][R][B];
  int st = lane + 32 * kpart;
  uint4 q[R];
  __half2 s[R];
  load_step<R>(codes, sz, rows, steps, ngroups, spg, row0, st, live && st < steps, q, s); // weights: before the wait
  lb_pdl_wait();
  float acc[R][B];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++) acc[r][b] = 0.0f;
  for (; live && st < steps; st += stride) {
    uint4 nq[R];
    __half2 ns[R];
    load_step<R>(codes, sz, rows, steps, ngroups, spg, row0, st + stride, st + stride < steps, nq, ns);
    mac_step<B, R>(q, s, x, cols, st, acc);
#pragma unroll
    for (int r = 0; r < R; r++) q[r] = nq[r], s[r] = ns[r];
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
  if (kpart == 0 && lane == 0 && live) {
#pragma unroll
    for (int b = 0; b < B; b++) {
      float v[R];
#pragma unroll
      for (int r = 0; r < R; r++) {
        v[r] = acc[r][b];
        for (int k = 1; k < KS; k++) v[r] += part[wib + k * groups][r][b];
      }
      if (SILU) {
        const int inter = rows / 2, i = row0 / 2;
        float g = v[0], u = v[R - 1];
        if (bias) g += bias[i], u += bias[inter + i];
        out16[(size_t)b * inter + i] = __float2half(g / (1.0f + expf(-g)) * u);
      } else {
#pragma unroll
        for (int r = 0; r < R; r++)
          if (row0 + r < rows) {
            float *o = y + (size_t)b * rows + row0 + r;
            *o = accumulate ? *o + v[r] : v[r];
          }
      }
    }
  }
}

enum { Q4_ROWS = 2, Q4_SPLIT = 2 }; // rows per warp; warps sharing a row (BENCHMARKS.md: variants)

template <int B, bool SILU>
static cudaError_t launch_q4(const lb_cuda_q4 *w, const __half *x, float *y, const float *bias,
                             __half *out16, bool acc, cudaStream_t st) {
  enum { R = Q4_ROWS, KS = Q4_SPLIT };
  const int per_block = 8 / KS * R, blocks = (int)((w->rows + per_block - 1) / per_block);
  const uint4 *c = (const uint4 *)w->codes;
  const __half2 *sz = (const __half2 *)w->sz;
  const int r = (int)w->rows, k = (int)w->cols, spg = (int)(w->group / 32), ng = (int)w->ngroups;
  return lb_cu_launch(gemv_q4<B, R, KS, SILU>, dim3(blocks), dim3(256), 0, st, c, sz, x, y,
                      bias, out16, r, k, spg, ng, acc);
}

template <bool SILU>
static lb_status gemv(const lb_cuda_q4 *w, const void *x16, float *y, const float *bias, void *out16,
                      int batch, bool acc, void *stream, lb_error *err) {
  if (batch < 1 || batch > 8) return lb_cu_fail(err, LB_EINVAL, "cuda q4 gemv: batch must be 1..8");
  cudaStream_t s = (cudaStream_t)stream;
  const __half *x = (const __half *)x16;
  __half *o = (__half *)out16;
  cudaError_t e;
  switch (batch) {
  case 1: e = launch_q4<1, SILU>(w, x, y, bias, o, acc, s); break;
  case 2: e = launch_q4<2, SILU>(w, x, y, bias, o, acc, s); break;
  case 3: e = launch_q4<3, SILU>(w, x, y, bias, o, acc, s); break;
  case 4: e = launch_q4<4, SILU>(w, x, y, bias, o, acc, s); break;
  case 5: e = launch_q4<5, SILU>(w, x, y, bias, o, acc, s); break;
  case 6: e = launch_q4<6, SILU>(w, x, y, bias, o, acc, s); break;
  case 7: e = launch_q4<7, SILU>(w, x, y, bias, o, acc, s); break;
  default: e = launch_q4<8, SILU>(w, x, y, bias, o, acc, s); break;
  }
  return lb_cu_check(err, "launching the 4-bit GEMV", e);
}

extern "C" lb_status lb_cuda_gemv_q4(const lb_cuda_q4 *w, const void *x_f16, float *y, int batch,
                                     bool acc, void *stream, lb_error *err) {
  return gemv<false>(w, x_f16, y, NULL, NULL, batch, acc, stream, err);
}

extern "C" lb_status lb_cuda_gemv_q4_silu(const lb_cuda_q4 *w, const void *x_f16, const float *bias,
                                          void *out16, int batch, void *stream, lb_error *err) {
  if (w->rows % 2) return lb_cu_fail(err, LB_EINVAL, "cuda q4 gemv: gate/up pairs need an even row count");
  return gemv<true>(w, x_f16, NULL, bias, out16, batch, false, stream, err);
}
