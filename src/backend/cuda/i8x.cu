// LLM.int8's activations (cuda.h, lb_cuda_i8x): bitsandbytes' int8_vectorwise_quant with its
// outlier columns, for up to LB_CUDA_I8X_ROWS fp16 rows, before the GEMV (gemv.cu) or the
// tensor-core product (qmma.cu). Two launches over tiles of 8 rows x 1024 columns (a thread: 8
// columns, one 16-byte load a row), so that no launch does more than a few loads a thread:
//   i8_scan   each tile's outlier columns (|x| >= threshold in any of its rows) as bits, 32
//             columns a word, and each row's absmax over its values below the threshold;
//   i8_quant  each tile ORs the columns' bits over the row tiles, counts the outlier columns
//             before it (words of the tiles to its left) for their place in the ascending list,
//             takes each row's scale from the first launch's partial maxima, and writes the codes
//             (rint of x * 127 / SCA, clamped; outlier columns 0) and the outlier list.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/util.cuh"

enum {
  XT = 128,        // threads a tile
  XR = 8,          // rows a tile
  XC = 8 * XT,     // columns a tile
  XW = XC / 32,    // outlier words a tile
  XG = LB_CUDA_I8X_ROWS / XR, // row tiles at most
};

static inline int tiles_of(int64_t cols) { return (int)((cols + XC - 1) / XC); }

// 8 fp16 values of row b at column c (c a multiple of 8; rows 16-byte aligned: cols % 8 == 0)
__device__ __forceinline__ void load8(const __half *x, int cols, int b, int c, float (&v)[8]) {
  unpack8(*reinterpret_cast<const uint4 *>(x + (size_t)b * cols + c), v);
}

// part[tile * LB_CUDA_I8X_ROWS + b]: row b's absmax below the threshold over the tile's columns;
// flag[rowtile * words + c / 32] bit c % 32: column c has a value >= the threshold in the row tile.
__global__ void __launch_bounds__(XT) i8_scan(const __half *__restrict__ x, int batch, int cols, float thr,
                                             float *__restrict__ part, uint32_t *__restrict__ flag) {
  lb_pdl_trigger();
  lb_pdl_wait();
  __shared__ float wmax[XT / 32][XR];
  const int t = threadIdx.x, lane = t & 31, c = (blockIdx.x * XT + t) * 8, b0 = blockIdx.y * XR;
  float m[XR];
  uint32_t fl = 0;
#pragma unroll
  for (int b = 0; b < XR; b++) {
    m[b] = 0.0f;
    if (c < cols && b0 + b < batch) {
      float v[8];
      load8(x, cols, b0 + b, c, v);
      fl |= i8_outliers8(v, thr, m[b]);
    }
  }
  // four lanes' 8 columns make a word
  uint32_t word = fl << (8 * (lane & 3));
  word |= __shfl_xor_sync(0xffffffffu, word, 1);
  word |= __shfl_xor_sync(0xffffffffu, word, 2);
  const int words = (cols + 31) / 32;
  if ((lane & 3) == 0 && c < cols) flag[(size_t)blockIdx.y * words + c / 32] = word;
#pragma unroll
  for (int b = 0; b < XR; b++) {
    float v = m[b];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) wmax[t >> 5][b] = v;
  }
  __syncthreads();
  if (t < XR && b0 + t < batch) {
    float v = wmax[0][t];
    for (int w = 1; w < XT / 32; w++) v = fmaxf(v, wmax[w][t]);
    part[(size_t)blockIdx.x * LB_CUDA_I8X_ROWS + b0 + t] = v;
  }
}

// a column word ORed over the row tiles
__device__ __forceinline__ uint32_t col_word(const uint32_t *flag, int words, int ry, int i) {
  uint32_t w = 0;
  for (int g = 0; g < ry; g++) w |= flag[(size_t)g * words + i];
  return w;
}

__global__ void __launch_bounds__(XT) i8_quant(const __half *__restrict__ x, int batch, int cols, const float *__restrict__ part,
                                              const uint32_t *__restrict__ flag, int8_t *__restrict__ q,
                                              float *__restrict__ sca, int *__restrict__ nout, int *__restrict__ ocol,
                                              float *__restrict__ xo) {
  lb_pdl_trigger();
  lb_pdl_wait();
  __shared__ float isc[XR];
  __shared__ int wsum[XT / 32][2];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5, c = (blockIdx.x * XT + t) * 8, b0 = blockIdx.y * XR;
  const int words = (cols + 31) / 32, ry = gridDim.y;
  const uint32_t fl = c < cols ? (col_word(flag, words, ry, c / 32) >> (8 * ((c / 8) & 3))) & 0xFFu : 0u;
  int before = 0; // outlier columns of the tiles to the left
#pragma unroll 4
  for (int i = t; i < (int)blockIdx.x * XW; i += XT) before += __popc(col_word(flag, words, ry, i));
  if (t < XR && b0 + t < batch) {
    float s = 0.0f;
    for (int k = 0; k < (int)gridDim.x; k++) s = fmaxf(s, part[(size_t)k * LB_CUDA_I8X_ROWS + b0 + t]);
    isc[t] = s > 0.0f ? 127.0f / s : 0.0f;
    if (blockIdx.x == 0) sca[b0 + t] = s;
  }
  // this thread's place: before (summed over the tile) + the outlier columns of threads below it
  const int mine = __popc(fl);
  int inc = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) before += __shfl_xor_sync(0xffffffffu, before, o);
  if (lane == 31) wsum[warp][0] = inc, wsum[warp][1] = before;
  __syncthreads();
  int k = inc - mine;
  for (int w = 0; w < XT / 32; w++) k += wsum[w][1] + (w < warp ? wsum[w][0] : 0);
  if (blockIdx.x == gridDim.x - 1 && blockIdx.y == 0 && t == XT - 1) *nout = k + mine;
  if (c >= cols) return;
  if (blockIdx.y == 0)
    for (int j = 0, r = k; j < 8; j++)
      if (fl >> j & 1) ocol[r++] = c + j;
#pragma unroll
  for (int b = 0; b < XR; b++) {
    if (b0 + b >= batch) break;
    float v[8];
    load8(x, cols, b0 + b, c, v);
    *reinterpret_cast<uint2 *>(q + (size_t)(b0 + b) * cols + c) = i8_codes8(v, fl, isc[b]);
#pragma unroll
    for (int j = 0, r = k; j < 8; j++)
      if (fl >> j & 1) xo[(size_t)(b0 + b) * cols + r++] = v[j];
  }
}

cudaError_t i8x_prep(const lb_cuda_qw *w, const __half *x, const lb_cuda_i8x *i8x, int batch, cudaStream_t st,
                     KX *kx) {
  kx->q = (const int8_t *)i8x->q, kx->sca = i8x->sca, kx->xo = i8x->xo, kx->nout = i8x->nout, kx->ocol = i8x->ocol;
  const int cols = (int)w->cols;
  const dim3 grid(tiles_of(cols), (batch + XR - 1) / XR);
  cudaError_t e = lb_cu_launch(i8_scan, grid, dim3(XT), 0, st, x, batch, cols, w->threshold, i8x->part, i8x->flag);
  if (e == cudaSuccess)
    e = lb_cu_launch(i8_quant, grid, dim3(XT), 0, st, x, batch, cols, (const float *)i8x->part,
                     (const uint32_t *)i8x->flag, (int8_t *)i8x->q, i8x->sca, i8x->nout, i8x->ocol, i8x->xo);
  return e;
}

extern "C" lb_status lb_cuda_i8x_alloc(lb_cuda_ctx *c, int64_t cols, lb_cuda_i8x *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  if (cols <= 0 || cols % 8 || cols > INT32_MAX / LB_CUDA_I8X_ROWS)
    return lb_cu_fail(err, LB_EINVAL, "cuda: LLM.int8 activations need a positive multiple of 8 columns");
  out->cols = cols;
  const size_t rows = LB_CUDA_I8X_ROWS, words = (size_t)(cols + 31) / 32;
  lb_status s;
  if ((s = lb_cuda_alloc(c, rows * (size_t)cols, &out->q, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, rows * sizeof(float), (void **)&out->sca, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, sizeof(int), (void **)&out->nout, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, (size_t)cols * sizeof(int), (void **)&out->ocol, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, rows * (size_t)cols * sizeof(float), (void **)&out->xo, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, (size_t)tiles_of(cols) * rows * sizeof(float), (void **)&out->part, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, (size_t)XG * words * sizeof(uint32_t), (void **)&out->flag, err)) != LB_OK)
    lb_cuda_i8x_free(out);
  return s;
}

extern "C" void lb_cuda_i8x_free(lb_cuda_i8x *x) {
  void *p[] = {x->q, x->sca, x->nout, x->ocol, x->xo, x->part, x->flag};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) lb_cuda_release(p[i]);
  memset(x, 0, sizeof *x);
}
