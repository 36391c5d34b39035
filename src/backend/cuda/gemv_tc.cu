// The batch-1 4-bit GEMV on the tensor cores, for weights with 128-column scale groups (GPTQ and
// AWQ's default), in the GEMV's layout as it is (gemv_formats.cuh). gemv.cu's run() sends a product
// here when q4tc_fits says so: on weights of many rows (a grid of more than one wave), where
// bench/cuda/gemv_lab.cu measured it faster than the register GEMV (BENCHMARKS.md, 2026-11-24).
//
// A block of 16 warps takes a tile of 16 rows: the mma's A holds rows g and g + 8 for lane
// 4 g + t, and the warps take the tile's 128-column groups in turn (warp k: groups k, k + 16, ...).
// Lane t of a quad takes the group's step t (16 bytes: columns 32 t .. 32 t + 31) of its two rows;
// its word j (columns 8 j .. 8 j + 7 of those, pairs in the layout's order) gives the k-pairs t
// and t + 4 of two mmas: columns 8 j + {0,1} and {2,3} for the first, {4,5} and {6,7} for the
// second. As a sum does not care which column is which k, B only has to hold the same columns:
// every lane reads the activations of its own 32 columns, so all 8 columns of B are x and every
// lane's c0 and c2 are its rows' sums. Codes become q - zero exactly in fp16 (FQ4One's decode); the
// mma sums a group's products in fp32, which the group's scale then multiplies in fp32.
//
// Both of a lane's first two groups are loaded before the PDL wait; after it the block copies the
// activation row to shared memory once (one 16-byte load a thread), then every warp reads it there.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/util.cuh"

enum { TC_WARPS = 16, TC_PRE = 2, TC_MAX_COLS = 16384 };

// A lane's codes and scale entries of one group of its two rows (zeros when !ok).
struct TcGroup {
  uint4 a, b;
  uint32_t sa, sb;
};

__device__ __forceinline__ TcGroup tc_load(const uint4 *ca, const uint4 *cb, const uint32_t *sa, const uint32_t *sb,
                                           int k, bool ok) {
  const uint4 z = make_uint4(0, 0, 0, 0);
  return {ok ? __ldcs(ca + 4 * k) : z, ok ? __ldcs(cb + 4 * k) : z, ok ? __ldcs(sa + k) : 0u, ok ? __ldcs(sb + k) : 0u};
}

// One group of a lane's rows against the staged activations xs: oa, ob += scale * sum (q - z) x.
// FQ4One decodes each row's 16-byte step into 16 pairs q - zero (pairs 4j .. 4j + 3 from word j:
// columns 8j + {0,1}, {2,3}, {4,5}, {6,7}) and gives its scale; word j feeds two mmas.
__device__ __forceinline__ void tc_group(const KW &w, const TcGroup &q, const uint4 *xs, int k, int t, float &oa,
                                         float &ob) {
  __half2 da[16], db[16];
  const float sa = FQ4One::decode({q.a, q.sa}, w, da), sb = FQ4One::decode({q.b, q.sb}, w, db);
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const uint4 xv = xs[16 * k + 4 * t + j];
    mma16816(c, h2u(da[4 * j]), h2u(db[4 * j]), h2u(da[4 * j + 1]), h2u(db[4 * j + 1]), xv.x, xv.y);
    mma16816(c, h2u(da[4 * j + 2]), h2u(db[4 * j + 2]), h2u(da[4 * j + 3]), h2u(db[4 * j + 3]), xv.z, xv.w);
  }
  oa = fmaf(sa, c[0], oa), ob = fmaf(sb, c[2], ob);
}

// y[row] (=, or += when acc) for the block's 16 rows; SILU: rows are (gate, up) pairs and
// out16[pair] = silu(gate + bias) * (up + bias) instead.
template <bool SILU>
__global__ void __launch_bounds__(TC_WARPS * 32, 2) gemv_tc(const KW w, const __half *__restrict__ x, float *__restrict__ y,
                                                         const float *__restrict__ bias, __half *__restrict__ out16,
                                                         bool acc) {
  extern __shared__ uint4 xs[]; // the activation row, cols / 8 entries
  lb_pdl_trigger();
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int groups = w.cols / 128, row0 = blockIdx.x * 16;
  const int ra = row0 + g < w.rows ? row0 + g : w.rows - 1, rb = row0 + g + 8 < w.rows ? row0 + g + 8 : w.rows - 1;
  const uint4 *ca = w.codes + (size_t)ra * w.steps + t, *cb = w.codes + (size_t)rb * w.steps + t;
  const uint32_t *sa = w.scales + (size_t)ra * w.ngroups, *sb = w.scales + (size_t)rb * w.ngroups;
  TcGroup pre[TC_PRE];
#pragma unroll
  for (int p = 0; p < TC_PRE; p++) pre[p] = tc_load(ca, cb, sa, sb, wid + TC_WARPS * p, wid + TC_WARPS * p < groups);
  lb_pdl_wait();
  for (int i = threadIdx.x; i < w.cols / 8; i += TC_WARPS * 32) xs[i] = __ldg(reinterpret_cast<const uint4 *>(x) + i);
  __syncthreads();
  float oa = 0.0f, ob = 0.0f;
#pragma unroll
  for (int p = 0; p < TC_PRE; p++)
    if (wid + TC_WARPS * p < groups) tc_group(w, pre[p], xs, wid + TC_WARPS * p, t, oa, ob);
  for (int k = wid + TC_WARPS * TC_PRE; k < groups; k += TC_WARPS) tc_group(w, tc_load(ca, cb, sa, sb, k, true), xs, k, t, oa, ob);
  __shared__ float part[TC_WARPS][16];
  if (t == 0) part[wid][g] = oa, part[wid][g + 8] = ob;
  __syncthreads();
  const int r = threadIdx.x;
  if (SILU) {
    if (r >= 8 || row0 + 2 * r + 1 >= w.rows) return;
    float gs = 0.0f, us = 0.0f;
#pragma unroll
    for (int k = 0; k < TC_WARPS; k++) gs += part[k][2 * r], us += part[k][2 * r + 1];
    const int inter = w.rows / 2, i = row0 / 2 + r;
    if (bias) gs += bias[i], us += bias[inter + i];
    out16[i] = __float2half(gs / (1.0f + expf(-gs)) * us);
  } else {
    if (r >= 16 || row0 + r >= w.rows) return;
    float v = 0.0f;
#pragma unroll
    for (int k = 0; k < TC_WARPS; k++) v += part[k][r];
    y[row0 + r] = acc ? y[row0 + r] + v : v;
  }
}

// LOWBIT_CUDA_GEMV_TC: unset, the rule below; 0 never; force wherever the weight fits (the
// checks use it so that small models take this path too).
static int tc_mode(void) {
  static int mode = -1;
  return lb_cu_env_mode("LOWBIT_CUDA_GEMV_TC", &mode);
}

bool q4tc_fits(const lb_cuda_qw *w, int batch) {
  const int mode = tc_mode();
  if (mode == 0 || batch != 1 || w->kind != LB_CUDA_Q4 || w->cols % 128 || w->cols > TC_MAX_COLS) return false;
  if (w->group != 128) return false; // (qweight.cu: a one-group row's group is its width)
  if (mode == 2) return true;
  // measured faster where a lane has at most 2 groups and a tail (cols <= 4224) and the grid of
  // 2 blocks an SM is more than one wave; the register GEMV elsewhere (4096 x 4096, 4096 x 11008)
  const int64_t blocks = (w->rows + 15) / 16;
  return w->cols <= 33 * 128 && blocks > 2 * (int64_t)lb_cu_sm_count();
}

cudaError_t q4tc_launch(const lb_cuda_qw *w, const __half *x, float *y, const float *bias, __half *out16, bool acc,
                        bool silu, cudaStream_t st) {
  KW kw = kw_of(w);
  kw.steps = (int)(w->cols / FQ4::COLS);
  const dim3 grid((unsigned)((kw.rows + 15) / 16)), block(TC_WARPS * 32);
  const size_t smem = (size_t)kw.cols * 2;
  return silu ? lb_cu_launch(gemv_tc<true>, grid, block, smem, st, kw, x, y, bias, out16, false)
              : lb_cu_launch(gemv_tc<false>, grid, block, smem, st, kw, x, y, bias, out16, acc);
}
