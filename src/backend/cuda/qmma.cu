// Tensor-core product of a quantized weight (Q4, NF4 or FP8 of lb_cuda_qw, the GEMV's layout as
// it is) with up to 64 rows of fp16 activations: mma.sync m16n8k16, the weight as A (a tile of 16
// rows), the activations as B (8 rows a tile), fp32 sums. For the batches and short chunks where
// the GEMV repeats its products per row and dequantizing for cuBLAS writes the whole weight.
//
// Which column goes to which k of a fragment does not change the sum, so the layout is read as it
// lies: the four lanes of a quad (c = lane % 4) take steps 4s + c of the same two rows (q = lane / 4
// and q + 8). A warp load is then 64 contiguous bytes of each of 8 rows, each byte loaded once.
// Each lane puts its own step's pairs where the fragment wants its columns: k-tile t of the step
// takes pairs 2t (the fragment's columns 2c, 2c + 1) and 2t + 1 (columns 8 + 2c, 9 + 2c), for A
// from rows q and q + 8, for B from the same columns of activation row q of the tile; the quad's
// four steps fill the tile's four column slots. A lane decodes with the GEMV's format policy
// (gemv_formats.cuh) and scales in fp16, which is what the dequantization for prefill gives.
// The warps of a tile take super-steps (4 steps) in turn, then sum through shared memory. The
// first super-step's weights are loaded before the PDL wait.
// LLM.int8 (FI8) takes the same path on the integer tensor cores: mma.sync m16n8k32 of int8
// weights and the activations' int8 codes (LLM.int8's rounding, gemv.cu), int32 sums (exact); a
// lane's 16-byte step is two k-tiles of 8 bytes a row (the fragment's k 4c..4c+3 and 16+4c..
// 16+4c+3 take its words 2t and 2t + 1), and the activations' 16 bytes split alike. The outlier
// columns are added in fp32 in the epilogue, then bitsandbytes' scaling (FI8::finish).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdlib.h>

#include <type_traits>

#include "backend/cuda/cuda.h"
#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/util.cuh"

enum { MMA_WARPS = 8 };

// Rows ra and rb at step st (past the last step: zero codes with a zero scale, so zero).
__device__ __forceinline__ void mma_load(const KW &w, int ra, int rb, int st, Frag &a, Frag &b) {
  const bool ok = st < w.steps;
  const int g = st / w.spg;
  const uint4 z = make_uint4(0, 0, 0, 0);
  a.q = ok ? __ldcs(w.codes + (size_t)ra * w.steps + st) : z;
  b.q = ok ? __ldcs(w.codes + (size_t)rb * w.steps + st) : z;
  a.s = ok ? __ldcs(w.scales + (size_t)ra * w.ngroups + g) : 0u;
  b.s = ok ? __ldcs(w.scales + (size_t)rb * w.ngroups + g) : 0u;
}

__device__ __forceinline__ void mma16832(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
               "{%8, %9}, {%0, %1, %2, %3};"
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// What the tensor cores sum in: fp32, int32 for LLM.int8.
template <class F>
struct MmaAcc {
  typedef float T;
};
template <>
struct MmaAcc<FI8> {
  typedef int T;
};

// One lane's step st of rows (a, b) against NT tiles of 8 activation rows.
template <class F, int NT>
__device__ __forceinline__ void mma_step(const KW &w, const Frag &a, const Frag &b, int st, const __half *x, int n,
                                         int q, float (&acc)[NT][4]) {
  constexpr int N = F::COLS / 2, XV = F::COLS / 8; // half2 pairs a step; 16-byte activation loads
  __half2 da[N], db[N];
  const __half2 sa = __float2half2_rn(F::decode(a, w, da)), sb = __float2half2_rn(F::decode(b, w, db));
#pragma unroll
  for (int i = 0; i < N; i++) da[i] = __hmul2(da[i], sa), db[i] = __hmul2(db[i], sb);
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const int xr = 8 * t + q;
    uint4 xv[XV];
    const uint4 *xp = reinterpret_cast<const uint4 *>(x + (size_t)xr * w.cols + (size_t)st * F::COLS);
#pragma unroll
    for (int j = 0; j < XV; j++) xv[j] = xr < n && st < w.steps ? __ldg(xp + j) : make_uint4(0, 0, 0, 0);
    const uint32_t *xh = reinterpret_cast<const uint32_t *>(xv);
#pragma unroll
    for (int k = 0; k < N / 2; k++)
      mma16816(acc[t], h2u(da[2 * k]), h2u(db[2 * k]), h2u(da[2 * k + 1]), h2u(db[2 * k + 1]), xh[2 * k], xh[2 * k + 1]);
  }
}

// LLM.int8: step st of rows (a, b) against NT tiles of 8 rows of int8 activation codes xq.
template <int NT>
__device__ __forceinline__ void mma_step_i8(const KW &w, const Frag &a, const Frag &b, int st, const int8_t *xq, int n,
                                            int q, int (&acc)[NT][4]) {
#pragma unroll
  for (int t = 0; t < NT; t++) {
    const int xr = 8 * t + q;
    const uint4 xv = xr < n && st < w.steps ? __ldg(reinterpret_cast<const uint4 *>(xq + (size_t)xr * w.cols) + st)
                                            : make_uint4(0, 0, 0, 0);
    mma16832(acc[t], a.q.x, b.q.x, a.q.y, b.q.y, xv.x, xv.y);
    mma16832(acc[t], a.q.z, b.q.z, a.q.w, b.q.w, xv.z, xv.w);
  }
}

// y[b][r] (=, or += when accumulate) for the block's 16 rows and b < n <= 8 NT; SILU: rows are
// interleaved (gate, up) pairs and out16[b][pair] = silu(gate + bias) * (up + bias). The 8 warps
// take super-steps (4 steps) in turn, each with D of them in flight (a ring of registers; the first
// D loaded before the PDL wait), then sum through shared memory.
template <class F, int NT, int D, bool SILU>
__global__ void __launch_bounds__(256) qmma(const KW w, const KX kx, int n, float *__restrict__ y,
                                            const float *__restrict__ bias, __half *__restrict__ out16,
                                            bool accumulate) {
  constexpr bool I8 = std::is_same<F, FI8>::value;
  typedef typename MmaAcc<F>::T Acc;
  lb_pdl_trigger();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, q = lane >> 2, c = lane & 3;
  const int row0 = blockIdx.x * 16, ra = min(row0 + q, w.rows - 1), rb = min(row0 + q + 8, w.rows - 1);
  const int nsup = (w.steps + 3) / 4;
  Acc acc[NT][4];
#pragma unroll
  for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = Acc(0);
  Frag fa[D], fb[D];
#pragma unroll
  for (int d = 0; d < D; d++) mma_load(w, ra, rb, 4 * (warp + d * MMA_WARPS) + c, fa[d], fb[d]); // before the wait
  lb_pdl_wait();
  for (int s = warp; s < nsup; s += D * MMA_WARPS)
#pragma unroll
    for (int d = 0; d < D; d++) {
      const int sd = s + d * MMA_WARPS;
      if (sd >= nsup) break;
      Frag na, nb; // the next load of this slot, issued before the math
      mma_load(w, ra, rb, 4 * (sd + D * MMA_WARPS) + c, na, nb);
      if constexpr (I8)
        mma_step_i8<NT>(w, fa[d], fb[d], 4 * sd + c, kx.q, n, q, acc);
      else
        mma_step<F, NT>(w, fa[d], fb[d], 4 * sd + c, kx.x, n, q, acc);
      fa[d] = na, fb[d] = nb;
    }
  __shared__ Acc red[MMA_WARPS][NT * 4][32]; // each warp's C fragments
#pragma unroll
  for (int t = 0; t < NT; t++)
#pragma unroll
    for (int e = 0; e < 4; e++) red[warp][t * 4 + e][lane] = acc[t][e];
  __syncthreads();
  // row r, activation row b: C fragment e = 2 (r / 8) + b % 2 of lane 4 (r % 8) + (b % 8) / 2
  auto sum = [&](int r, int b) {
    const int e = 2 * (r / 8) + b % 2, l = 4 * (r % 8) + (b % 8) / 2;
    Acc v = Acc(0);
#pragma unroll
    for (int k = 0; k < MMA_WARPS; k++) v += red[k][(b / 8) * 4 + e][l];
    return v;
  };
  // LLM.int8's outlier columns, a small product of the block's rows' weights in those columns and
  // the activations' values there, in fp32: chunks of 32 columns staged in shared memory, each
  // thread summing (in column order) the (row, activation row) elements tid, tid + 256, ...
  constexpr int OC = 32;
  __shared__ float wc[I8 ? 16 : 1][OC + 1], xs[I8 ? LB_CUDA_MMA_MAX : 1][OC], fo[I8 ? LB_CUDA_MMA_MAX : 1][16];
  if constexpr (I8) {
    const int no = *kx.nout;
    const int8_t *cd = reinterpret_cast<const int8_t *>(w.codes);
    float f[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int o0 = 0; o0 < no; o0 += OC) {
      const int m = min(OC, no - o0);
      __syncthreads(); // the chunk before is used
      for (int i = threadIdx.x; i < 16 * OC; i += blockDim.x) {
        const int r = i / OC, j = i % OC, row = min(row0 + r, w.rows - 1);
        wc[r][j] = j < m ? (float)cd[(size_t)row * w.cols + kx.ocol[o0 + j]] : 0.0f;
      }
      for (int i = threadIdx.x; i < n * OC; i += blockDim.x) {
        const int b = i / OC, j = i % OC;
        xs[b][j] = j < m ? kx.xo[(size_t)b * w.cols + o0 + j] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < 4; k++) {
        const int e = threadIdx.x + k * 256, b = e / 16, r = e % 16;
        if (e < 16 * n)
#pragma unroll 8
          for (int j = 0; j < OC; j++) f[k] = fmaf(wc[r][j], xs[b][j], f[k]);
      }
    }
#pragma unroll
    for (int k = 0; k < 4; k++) {
      const int e = threadIdx.x + k * 256;
      if (e < 16 * n) fo[e / 16][e % 16] = f[k];
    }
    __syncthreads();
  }
  // the block's row r (< rows) for activation row b as a float (LLM.int8: scaled as bitsandbytes)
  auto value = [&](int r, int b) -> float {
    if constexpr (I8)
      return FI8::finish(w, kx, row0 + r, b, I8Acc{(int)sum(r, b), fo[b][r]});
    else
      return sum(r, b);
  };
  if (SILU) {
    const int inter = w.rows / 2;
    for (int i = threadIdx.x; i < 8 * n; i += blockDim.x) {
      const int b = i / 8, p = i % 8, o = row0 / 2 + p;
      if (o >= inter) continue;
      float g = value(2 * p, b), u = value(2 * p + 1, b);
      if (bias) g += bias[o], u += bias[inter + o];
      out16[(size_t)b * inter + o] = __float2half(g / (1.0f + expf(-g)) * u);
    }
  } else {
    for (int i = threadIdx.x; i < 16 * n; i += blockDim.x) {
      const int b = i / 16, r = i % 16;
      if (row0 + r >= w.rows) continue;
      float *o = y + (size_t)b * w.rows + row0 + r;
      const float v = value(r, b);
      *o = accumulate ? *o + v : v;
    }
  }
}

// Super-steps in flight a warp (cuda.h: lb_cuda_set_mma_depth; LOWBIT_CUDA_MMA_DEPTH, read once).
// 0: measured defaults (H100 sandbox, BENCHMARKS.md): up to 8 activation rows, 4 when the grid
// fits two blocks an SM (7B's 4096-row weights: 6.4 against 7.2 us at 4096 x 4096) and 1 when it
// does not (more depth, more registers, fewer blocks resident); 2 for 9..16 rows, 1 beyond.
static int mma_depth = -1;
extern "C" void lb_cuda_set_mma_depth(int depth) { mma_depth = depth == 1 || depth == 2 || depth == 4 ? depth : 0; }

template <class F, int NT, bool SILU>
static cudaError_t launch_nt(const KW &kw, const KX &x, int n, float *y, const float *bias, __half *out16,
                             bool acc, cudaStream_t st) {
  if (mma_depth < 0) {
    const char *e = getenv("LOWBIT_CUDA_MMA_DEPTH");
    lb_cuda_set_mma_depth(e ? atoi(e) : 0);
  }
  const int blocks = (kw.rows + 15) / 16;
  const int depth = mma_depth ? mma_depth : NT == 1 ? (blocks <= 2 * lb_cu_sm_count() ? 4 : 1) : NT == 2 ? 2 : 1;
  const dim3 grid((unsigned)blocks), block(32 * MMA_WARPS);
  if (depth == 1) return lb_cu_launch(qmma<F, NT, 1, SILU>, grid, block, 0, st, kw, x, n, y, bias, out16, acc);
  if (depth == 2) return lb_cu_launch(qmma<F, NT, 2, SILU>, grid, block, 0, st, kw, x, n, y, bias, out16, acc);
  return lb_cu_launch(qmma<F, NT, 4, SILU>, grid, block, 0, st, kw, x, n, y, bias, out16, acc);
}

template <class F, bool SILU>
static cudaError_t launch(const lb_cuda_qw *w, const KX &x, int n, float *y, const float *bias, __half *out16,
                          bool acc, cudaStream_t st) {
  KW kw = kw_of(w);
  kw.steps = (int)(w->cols / F::COLS), kw.spg = (int)(w->group / F::COLS);
  if (n <= 8) return launch_nt<F, 1, SILU>(kw, x, n, y, bias, out16, acc, st);
  if (n <= 16) return launch_nt<F, 2, SILU>(kw, x, n, y, bias, out16, acc, st);
  if (n <= 32) return launch_nt<F, 4, SILU>(kw, x, n, y, bias, out16, acc, st);
  return launch_nt<F, 8, SILU>(kw, x, n, y, bias, out16, acc, st);
}

// Any n: a launch per LB_CUDA_MMA_MAX rows (each reads the whole weight; LLM.int8 rounds each
// launch's activations first).
template <bool SILU>
static lb_status run(const lb_cuda_qw *w, const void *x16, lb_cuda_i8x *i8x, float *y, const float *bias, void *out16,
                     int64_t n, bool acc, void *stream, lb_error *err) {
  if (n < 1) return lb_cu_fail(err, LB_EINVAL, "cuda qmma: no rows");
  if (w->kind != LB_CUDA_Q4 && w->kind != LB_CUDA_Q4F && w->kind != LB_CUDA_A8 && w->kind != LB_CUDA_NF4 &&
      w->kind != LB_CUDA_FP8 && w->kind != LB_CUDA_I8)
    return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda qmma: not a device weight");
  if (w->kind == LB_CUDA_I8 && (!i8x || i8x->cols < w->cols))
    return lb_cu_fail(err, LB_EINVAL, "cuda qmma: LLM.int8 needs activation scratch as wide as the weight");
  cudaError_t e = cudaSuccess;
  for (int64_t r0 = 0; r0 < n && e == cudaSuccess; r0 += LB_CUDA_MMA_MAX) {
    const int64_t most = LB_CUDA_MMA_MAX;
    const int k = (int)(n - r0 < most ? n - r0 : most);
    KX kx = {(const __half *)x16 + (size_t)r0 * w->cols, NULL, NULL, NULL, NULL, NULL, w->threshold, NULL, NULL};
    float *yr = y ? y + (size_t)r0 * w->rows : NULL;
    __half *o = out16 ? (__half *)out16 + (size_t)r0 * (w->rows / 2) : NULL;
    cudaStream_t st = (cudaStream_t)stream;
    switch (w->kind) {
    case LB_CUDA_Q4: e = launch<FQ4, SILU>(w, kx, k, yr, bias, o, acc, st); break;
    case LB_CUDA_Q4F: e = launch<FQ4F, SILU>(w, kx, k, yr, bias, o, acc, st); break;
    case LB_CUDA_NF4: e = launch<FNF4, SILU>(w, kx, k, yr, bias, o, acc, st); break;
    case LB_CUDA_FP8: e = launch<FFP8, SILU>(w, kx, k, yr, bias, o, acc, st); break;
    case LB_CUDA_A8: e = launch<FA8, SILU>(w, kx, k, yr, bias, o, acc, st); break;
    default:
      if ((e = i8x_prep(w, kx.x, i8x, k, st, &kx)) == cudaSuccess) e = launch<FI8, SILU>(w, kx, k, yr, bias, o, acc, st);
      break;
    }
  }
  return lb_cu_check(err, "launching the tensor-core product", e);
}

extern "C" lb_status lb_cuda_qmma(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x, float *y, int64_t n,
                                  bool acc, void *stream, lb_error *err) {
  return run<false>(w, x_f16, i8x, y, NULL, NULL, n, acc, stream, err);
}

extern "C" lb_status lb_cuda_qmma_silu(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x, const float *bias,
                                       void *out16, int64_t n, void *stream, lb_error *err) {
  if (w->rows % 2) return lb_cu_fail(err, LB_EINVAL, "cuda qmma: gate/up pairs need an even row count");
  return run<true>(w, x_f16, i8x, NULL, bias, out16, n, false, stream, err);
}
