// Decode GEMV for the quantized weights of cuda.h (lb_cuda_qw), one kernel shape for every format
// (gemv_formats.cuh says what differs). One warp per 2 weight rows; each lane reads 16 bytes of
// each row per step, so a warp step is 512 contiguous bytes of a row, and two warps of a block
// split a row's steps between them. The first step's loads are issued before the kernel waits
// for its input (PDL, util.cuh), so they overlap the kernel before; each later step's loads are
// issued before the math of the step before.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/util.cuh"

// One step of R rows from row0 (a missing row repeats row0, unused).
template <class F, int R>
__device__ __forceinline__ void load_step(const KW &w, int row0, int st, bool ok, Frag (&f)[R]) {
  const int g = st / w.spg;
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int row = row0 + r < w.rows ? row0 + r : row0;
    f[r].q = ok ? __ldcs(w.codes + (size_t)row * w.steps + st) : make_uint4(0, 0, 0, 0);
    f[r].s = F::STEP_SCALE && ok ? __ldcs(w.scales + (size_t)row * w.ngroups + g) : 0u;
  }
}

// A block of 8 warps: 8 / KS groups of R rows, the KS warps of a group taking alternate steps and
// summing in shared memory. SILU: the rows are interleaved (gate, up) pairs (R = 2), and the result
// is out16[b][pair] = silu(gate + bias) * (up + bias) instead of y.
template <class F, int B, int R, int KS, bool SILU>
__global__ void __launch_bounds__(256) gemv(const KW w, const KX x, float *__restrict__ y,
                                            const float *__restrict__ bias, __half *__restrict__ out16,
                                            bool accumulate) {
  static_assert(!SILU || R == 2, "SILU takes a (gate, up) pair a warp");
  typedef typename F::Acc Acc;
  lb_pdl_trigger();
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31, groups = 8 / KS;
  const int kpart = wib / groups, row0 = (blockIdx.x * groups + wib % groups) * R;
  const int stride = 32 * KS;
  const bool live = row0 < w.rows;
  __shared__ Acc part[8][R][B];
  int st = lane + 32 * kpart;
  Frag f[R];
  load_step<F, R>(w, row0, st, live && st < w.steps, f); // weights: before the wait
  lb_pdl_wait();
  Acc acc[R][B];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++) acc[r][b] = Acc();
  for (; live && st < w.steps; st += stride) {
    Frag nf[R];
    load_step<F, R>(w, row0, st + stride, st + stride < w.steps, nf);
    F::template mac<B, R>(f, x, w, st, acc);
#pragma unroll
    for (int r = 0; r < R; r++) f[r] = nf[r];
  }
  if (live) F::template tail<B, R>(w, x, row0, lane + 32 * kpart, stride, acc);
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++) {
      Acc v = acc[r][b];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v = v + shfl_xor(v, o);
      acc[r][b] = v;
      if (KS > 1 && lane == 0) part[wib][r][b] = v;
    }
  if (KS > 1) __syncthreads();
  if (kpart != 0 || lane != 0 || !live) return;
#pragma unroll
  for (int b = 0; b < B; b++) {
    float v[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      Acc a = acc[r][b];
      for (int k = 1; k < KS; k++) a = a + part[wib + k * groups][r][b];
      v[r] = F::finish(w, x, row0 + r < w.rows ? row0 + r : row0, b, a);
    }
    if (SILU) {
      const int inter = w.rows / 2, i = row0 / 2;
      float g = v[0], u = v[R - 1];
      if (bias) g += bias[i], u += bias[inter + i];
      out16[(size_t)b * inter + i] = __float2half(g / (1.0f + expf(-g)) * u);
    } else {
#pragma unroll
      for (int r = 0; r < R; r++)
        if (row0 + r < w.rows) {
          float *o = y + (size_t)b * w.rows + row0 + r;
          *o = accumulate ? *o + v[r] : v[r];
        }
    }
  }
}

// LLM.int8's activations (cuda.h, lb_cuda_i8x) from fp16 rows (up to LB_CUDA_I8X_ROWS), one
// block; each warp takes a contiguous share of the columns, 32 at a time (coalesced). First pass:
// each warp counts its outlier columns (any row's |x| >= threshold, by ballot) and each row's
// absmax over its values below the threshold, 8 rows at a time. Then the warps' counts become
// offsets (a prefix sum), and the second pass lists the outlier columns in ascending order with
// their values and writes int8_vectorwise_quant's codes (rint of x * 127 / SCA, clamped),
// outlier columns zeroed.
enum { PREP_THREADS = 1024, PREP_WARPS = PREP_THREADS / 32 };
__device__ __forceinline__ bool outlier_col(const __half *x, int batch, int cols, int c, float thr) {
  bool out = false;
  for (int b = 0; b < batch; b++) out |= fabsf(__half2float(x[(size_t)b * cols + c])) >= thr;
  return thr > 0.0f && c < cols && out;
}

__global__ void __launch_bounds__(PREP_THREADS) i8_prep(const __half *__restrict__ x, int batch, int cols,
                                                        float thr, int8_t *__restrict__ q, float *__restrict__ sca,
                                                        int *__restrict__ nout, int *__restrict__ ocol,
                                                        float *__restrict__ xo) {
  lb_pdl_trigger();
  lb_pdl_wait();
  __shared__ int woff[PREP_WARPS + 1];
  __shared__ unsigned amax[LB_CUDA_I8X_ROWS];
  __shared__ float isc[LB_CUDA_I8X_ROWS];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int per = (cols + 32 * PREP_WARPS - 1) / (32 * PREP_WARPS) * 32; // a warp's columns
  const int c0 = min(cols, warp * per), c1 = min(cols, c0 + per);
  if (t < LB_CUDA_I8X_ROWS) amax[t] = 0;
  __syncthreads();
  int cnt = 0;
  for (int b0 = 0; b0 < batch; b0 += 8) {
    float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll 4
    for (int c = c0 + lane; c < c1 + lane; c += 32) { // every lane runs every round (ballot)
      if (b0 == 0) cnt += __popc(__ballot_sync(0xffffffffu, c < c1 && outlier_col(x, batch, cols, c, thr)));
#pragma unroll
      for (int b = 0; b < 8; b++) // SCA: over the row's values below the threshold
        if (b0 + b < batch && c < c1) {
          const float a = fabsf(__half2float(x[(size_t)(b0 + b) * cols + c]));
          if (!(thr > 0.0f && a >= thr)) m[b] = fmaxf(m[b], a);
        }
    }
#pragma unroll
    for (int b = 0; b < 8; b++) {
      float v = m[b];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
      if (lane == 0 && b0 + b < batch) atomicMax(&amax[b0 + b], __float_as_uint(v)); // non-negative floats order as their bits
    }
  }
  if (lane == 0) woff[warp] = cnt;
  __syncthreads();
  if (warp == 0) { // exclusive prefix sum of the warps' counts
    const int v = woff[lane];
    int inc = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int n = __shfl_up_sync(0xffffffffu, inc, o);
      if (lane >= o) inc += n;
    }
    __syncwarp();
    woff[lane] = inc - v;
    if (lane == 31) *nout = inc;
  }
  if (t < batch) {
    const float s = __uint_as_float(amax[t]);
    sca[t] = s, isc[t] = s > 0.0f ? 127.0f / s : 0.0f;
  }
  __syncthreads();
  int o = woff[warp];
  for (int c = c0 + lane; c < c1 + lane; c += 32) {
    const bool out = c < c1 && outlier_col(x, batch, cols, c, thr);
    const unsigned bal = __ballot_sync(0xffffffffu, out);
    const int k = o + __popc(bal & ((1u << lane) - 1));
    if (out) ocol[k] = c;
    for (int b = 0; b < batch && c < c1; b++) {
      const float v = __half2float(x[(size_t)b * cols + c]);
      q[(size_t)b * cols + c] = out ? 0 : (int8_t)__float2int_rn(fminf(fmaxf(v * isc[b], -127.0f), 127.0f));
      if (out) xo[(size_t)b * cols + k] = v;
    }
    o += __popc(bal);
  }
}

cudaError_t i8x_prep(const lb_cuda_qw *w, const __half *x, const lb_cuda_i8x *i8x, int batch, cudaStream_t st,
                     KX *kx) {
  kx->q = (const int8_t *)i8x->q, kx->sca = i8x->sca, kx->xo = i8x->xo, kx->nout = i8x->nout, kx->ocol = i8x->ocol;
  return lb_cu_launch(i8_prep, dim3(1), dim3(PREP_THREADS), 0, st, x, batch, (int)w->cols, w->threshold,
                      (int8_t *)i8x->q, i8x->sca, i8x->nout, i8x->ocol, i8x->xo);
}

extern "C" lb_status lb_cuda_i8x_alloc(lb_cuda_ctx *c, int64_t cols, lb_cuda_i8x *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  out->cols = cols;
  lb_status s;
  if ((s = lb_cuda_alloc(c, (size_t)(LB_CUDA_I8X_ROWS * cols), &out->q, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, LB_CUDA_I8X_ROWS * sizeof(float), (void **)&out->sca, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, sizeof(int), (void **)&out->nout, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, (size_t)cols * sizeof(int), (void **)&out->ocol, err)) != LB_OK ||
      (s = lb_cuda_alloc(c, (size_t)(LB_CUDA_I8X_ROWS * cols) * sizeof(float), (void **)&out->xo, err)) != LB_OK)
    lb_cuda_i8x_free(out);
  return s;
}

extern "C" void lb_cuda_i8x_free(lb_cuda_i8x *x) {
  void *p[] = {x->q, x->sca, x->nout, x->ocol, x->xo};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) lb_cuda_release(p[i]);
  memset(x, 0, sizeof *x);
}

enum { ROWS = 2, SPLIT = 2 }; // rows per warp; warps sharing a row (BENCHMARKS.md: variants)

template <class F, bool SILU, int B>
static cudaError_t launch_b(const KW &kw, const KX &kx, float *y, const float *bias, __half *out16, bool acc,
                            cudaStream_t st) {
  const int per_block = 8 / SPLIT * ROWS, blocks = (kw.rows + per_block - 1) / per_block;
  return lb_cu_launch(gemv<F, B, ROWS, SPLIT, SILU>, dim3(blocks), dim3(256), 0, st, kw, kx, y, bias, out16, acc);
}

// kw without its steps: the format's columns a step (F::COLS) give them.
template <class F, bool SILU>
static cudaError_t launch(const lb_cuda_qw *w, KW kw, const KX &kx, float *y, const float *bias, __half *out16,
                          int batch, bool acc, cudaStream_t st) {
  kw.steps = (int)(w->cols / F::COLS), kw.spg = (int)(w->group / F::COLS);
  switch (batch) {
  case 1: return launch_b<F, SILU, 1>(kw, kx, y, bias, out16, acc, st);
  case 2: return launch_b<F, SILU, 2>(kw, kx, y, bias, out16, acc, st);
  case 3: return launch_b<F, SILU, 3>(kw, kx, y, bias, out16, acc, st);
  case 4: return launch_b<F, SILU, 4>(kw, kx, y, bias, out16, acc, st);
  case 5: return launch_b<F, SILU, 5>(kw, kx, y, bias, out16, acc, st);
  case 6: return launch_b<F, SILU, 6>(kw, kx, y, bias, out16, acc, st);
  case 7: return launch_b<F, SILU, 7>(kw, kx, y, bias, out16, acc, st);
  default: return launch_b<F, SILU, 8>(kw, kx, y, bias, out16, acc, st);
  }
}

// Up to LB_CUDA_GEMV_MAX rows: LLM.int8's activations prepared for all at once, then a GEMV per 8.
template <bool SILU>
static lb_status run(const lb_cuda_qw *w, const void *x16, lb_cuda_i8x *i8x, float *y, const float *bias,
                     void *out16, int batch, bool acc, void *stream, lb_error *err) {
  if (batch < 1 || batch > LB_CUDA_GEMV_MAX) return lb_cu_fail(err, LB_EINVAL, "cuda gemv: batch must be 1..32");
  const KW kw = kw_of(w);
  KX kx = {(const __half *)x16, NULL, NULL, NULL, NULL, NULL};
  cudaStream_t st = (cudaStream_t)stream;
  cudaError_t e = cudaSuccess;
  if (w->kind == LB_CUDA_I8) {
    if (!i8x || i8x->cols < w->cols) return lb_cu_fail(err, LB_EINVAL, "cuda gemv: LLM.int8 needs activation scratch as wide as the weight");
    e = i8x_prep(w, kx.x, i8x, batch, st, &kx);
    if (e != cudaSuccess) return lb_cu_check(err, "launching LLM.int8's activation quantization", e);
  }
  for (int r0 = 0; r0 < batch && e == cudaSuccess; r0 += 8) {
    const int n = batch - r0 < 8 ? batch - r0 : 8;
    KX ks = kx; // rows r0 .. of the activations, and of the output
    ks.x += (size_t)r0 * w->cols;
    if (w->kind == LB_CUDA_I8) ks.q += (size_t)r0 * w->cols, ks.sca += r0, ks.xo += (size_t)r0 * w->cols;
    float *yr = y ? y + (size_t)r0 * w->rows : NULL;
    __half *o = out16 ? (__half *)out16 + (size_t)r0 * (w->rows / 2) : NULL;
    switch (w->kind) {
    case LB_CUDA_Q4: e = launch<FQ4, SILU>(w, kw, ks, yr, bias, o, n, acc, st); break;
    case LB_CUDA_NF4: e = launch<FNF4, SILU>(w, kw, ks, yr, bias, o, n, acc, st); break;
    case LB_CUDA_FP8: e = launch<FFP8, SILU>(w, kw, ks, yr, bias, o, n, acc, st); break;
    case LB_CUDA_I8: e = launch<FI8, SILU>(w, kw, ks, yr, bias, o, n, acc, st); break;
    default: return lb_cu_fail(err, LB_EINVAL, "cuda gemv: not a device weight");
    }
  }
  return lb_cu_check(err, "launching the GEMV", e);
}

extern "C" lb_status lb_cuda_gemv(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x, float *y, int batch,
                                  bool acc, void *stream, lb_error *err) {
  return run<false>(w, x_f16, i8x, y, NULL, NULL, batch, acc, stream, err);
}

extern "C" lb_status lb_cuda_gemv_silu(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x, const float *bias,
                                       void *out16, int batch, void *stream, lb_error *err) {
  if (w->rows % 2) return lb_cu_fail(err, LB_EINVAL, "cuda gemv: gate/up pairs need an even row count");
  return run<true>(w, x_f16, i8x, NULL, bias, out16, batch, false, stream, err);
}
