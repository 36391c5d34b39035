// Decode GEMV for the quantized weights of cuda.h (lb_cuda_qw), one kernel shape for every format
// (gemv_formats.cuh says what differs). One warp per 2 weight rows; each lane reads 16 bytes of
// each row per step, so a warp step is 512 contiguous bytes of a row, and two warps of a block
// split a row's steps between them. The first step's loads are issued before the kernel waits
// for its input (PDL, util.cuh), so they overlap the kernel before; for one activation row the
// second step is copied to shared memory before the wait too (cp.async: no register held) where
// that measured faster (launch_b); each later step's loads are issued before the math of the
// step before. One row of a weight small enough for two launches' blocks to hold it in shared
// memory at once takes gemv_staged instead (below).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/tma.cuh"
#include "backend/cuda/util.cuh"

// Where a lane reads its rows: the codes of its current step and the scale row, with the step's
// scale group kept by addition (a division a step cost more than the step's decode).
template <int R>
struct Cursor {
  const uint4 *c[R];
  const uint32_t *s[R];
  int g, gr, gs, rs, spg; // group, step within it; a stride's groups and steps; steps a group
  __device__ Cursor(const KW &w, int row0, int st, int stride) {
#pragma unroll
    for (int r = 0; r < R; r++) {
      const int row = row0 + r < w.rows ? row0 + r : row0; // a missing row repeats row0, unused
      c[r] = w.codes + (size_t)row * w.steps + st, s[r] = w.scales + (size_t)row * w.ngroups;
    }
    spg = w.spg, g = st / spg, gr = st - g * spg, gs = stride / spg, rs = stride - gs * spg;
  }
  __device__ __forceinline__ void advance(int stride) {
#pragma unroll
    for (int r = 0; r < R; r++) c[r] += stride;
    g += gs, gr += rs;
    if (gr >= spg) gr -= spg, g++;
  }
};

// 16 and 4 bytes copied to shared memory without a register (sm_80 cp.async), and the wait for
// this thread's copies.
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async4(void *dst, const void *src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.commit_group;\ncp.async.wait_all;" ::: "memory"); }

// The cursor's step of R rows (zeros when !ok).
template <class F, int R>
__device__ __forceinline__ void load_step(const Cursor<R> &cu, bool ok, Frag (&f)[R]) {
#pragma unroll
  for (int r = 0; r < R; r++) {
    f[r].q = ok ? __ldcs(cu.c[r]) : make_uint4(0, 0, 0, 0);
    f[r].s = F::STEP_SCALE && ok ? __ldcs(cu.s[r] + cu.g) : 0u;
  }
}

#ifdef LB_GEMV_STAMPS
// Diagnostics, in a build with -DLB_GEMV_STAMPS only (bench/cuda/gemv_sandbox.cu reads them):
// thread 0 of every GEMV block records its weight, its block and when it started, when its PDL
// wait returned, when its steps were done and when its sums were ready, before its writes
// (%globaltimer ns).
enum { STAMP_FIELDS = 6 };
__device__ unsigned long long *g_stamps;
__device__ unsigned int g_stamp_cap, g_stamp_next;
__device__ __forceinline__ unsigned long long gtime() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
#define STAMP(i) (tg[i] = gtime())
// thread 0's record of its block: the weight, the block, and stamps 0-2 with 3 taken now
__device__ __forceinline__ void stamp_record(const void *codes, unsigned long long (&tg)[4]) {
  STAMP(3);
  const unsigned int k = atomicAdd(&g_stamp_next, 1u);
  if (k < g_stamp_cap) {
    unsigned long long *o = g_stamps + (size_t)k * STAMP_FIELDS;
    o[0] = (unsigned long long)(uintptr_t)codes, o[1] = blockIdx.x;
    o[2] = tg[0], o[3] = tg[1], o[4] = tg[2], o[5] = tg[3];
  }
}
extern "C" cudaError_t lb_gemv_stamps_set(unsigned long long *buf, unsigned int cap) {
  const unsigned int zero = 0;
  cudaError_t e = cudaMemcpyToSymbol(g_stamps, &buf, sizeof buf);
  if (e == cudaSuccess) e = cudaMemcpyToSymbol(g_stamp_cap, &cap, sizeof cap);
  if (e == cudaSuccess) e = cudaMemcpyToSymbol(g_stamp_next, &zero, sizeof zero);
  return e;
}
extern "C" cudaError_t lb_gemv_stamps_count(unsigned int *n) {
  return cudaMemcpyFromSymbol(n, g_stamp_next, sizeof *n);
}
#else
#define STAMP(i) ((void)0)
#endif

// A row group's results v (F::finish's) for activation row b: y (or added to it), or for SILU
// the (gate, up) pair's silu(gate + bias) * (up + bias) in out16.
template <bool SILU, int R>
__device__ __forceinline__ void put_rows(const KW &w, int row0, int b, const float (&v)[R], float *__restrict__ y,
                                         const float *__restrict__ bias, __half *__restrict__ out16, bool accumulate) {
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

// A block of 8 warps: 8 / KS groups of R rows, the KS warps of a group taking alternate steps and
// summing in shared memory. SILU: the rows are interleaved (gate, up) pairs (R = 2), and the result
// is out16[b][pair] = silu(gate + bias) * (up + bias) instead of y.
template <class F, int B, int R, int KS, bool SILU>
__global__ void __launch_bounds__(256) gemv(const KW w, const KX x0, float *__restrict__ y,
                                            const float *__restrict__ bias, __half *__restrict__ out16,
                                            bool accumulate, bool pre) {
  static_assert(!SILU || R == 2, "SILU takes a (gate, up) pair a warp");
  typedef typename F::Acc Acc;
#ifdef LB_GEMV_STAMPS
  unsigned long long tg[4];
#endif
  STAMP(0);
  lb_pdl_trigger();
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31, groups = 8 / KS;
  const int kpart = wib / groups, row0 = (blockIdx.x * groups + wib % groups) * R;
  const int stride = 32 * KS;
  const bool live = row0 < w.rows;
  __shared__ Acc part[8][R][B];
  __shared__ uint4 sq[B == 1 ? 8 : 1][R][32]; // pre: each lane's second step, copied before the wait
  __shared__ uint32_t ss[B == 1 ? 8 : 1][R][32];
  int st = lane + 32 * kpart;
  Cursor<R> cu(w, row0, st, stride);
  Frag f[R];
  load_step<F, R>(cu, live && st < w.steps, f); // weights before the wait: the first step
  pre = B == 1 && pre; // (B > 1: the compiler drops the copy; launch_b never asks for it)
  const bool ok1 = pre && live && st + stride < w.steps;
  if (ok1) {
    Cursor<R> c1 = cu;
    c1.advance(stride);
#pragma unroll
    for (int r = 0; r < R; r++) {
      cp_async16(&sq[B == 1 ? wib : 0][r][lane], c1.c[r]);
      if (F::STEP_SCALE) cp_async4(&ss[B == 1 ? wib : 0][r][lane], c1.s[r] + c1.g);
    }
  }
  lb_pdl_wait();
  STAMP(1);
  KX x = x0;
  F::prep(w, x); // FI8One: the activations' int8 codes (every thread of the block takes part)
  Acc acc[R][B];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++) acc[r][b] = Acc();
  for (int it = 0; live && st < w.steps; st += stride, it++) {
    Frag nf[R];
    cu.advance(stride);
    if (it > 0 || !pre) load_step<F, R>(cu, st + stride < w.steps, nf);
    F::template mac<B, R>(f, x, w, st, acc);
    if (it == 0 && pre) { // the copied step
      cp_async_wait();
#pragma unroll
      for (int r = 0; r < R; r++) {
        nf[r].q = ok1 ? sq[B == 1 ? wib : 0][r][lane] : make_uint4(0, 0, 0, 0);
        nf[r].s = F::STEP_SCALE && ok1 ? ss[B == 1 ? wib : 0][r][lane] : 0u;
      }
    }
#pragma unroll
    for (int r = 0; r < R; r++) f[r] = nf[r];
  }
  if (live) F::template tail<B, R>(w, x, row0, lane + 32 * kpart, stride, acc);
  STAMP(2);
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
#ifdef LB_GEMV_STAMPS
  if (threadIdx.x == 0) stamp_record(w.codes, tg);
#endif
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
    put_rows<SILU, R>(w, row0, b, v, y, bias, out16, accumulate);
  }
}

// The one-row GEMV with launches two deep (BENCHMARKS.md, 2026-11-25): a block of 8 warps takes
// 16 rows, a warp a row pair, its lanes alternate steps. Before the PDL wait one thread asks the
// copy engine (TMA bulk copies, sm_90) for all of the block's codes and scale entries, into
// shared memory. After the wait the kernel triggers its successor, copies the activation row to
// shared memory (F::XCOPY; FI8One rounds it there instead, F::prep), and multiplies from there.
// A block takes at most a quarter of an SM and a launch at most two blocks an SM (stage_fits), so
// the next launch's blocks fit beside the running ones and stream their rows while those
// compute; with the trigger after the wait, a launch's activations are asked for before the
// next launch's rows. Shared memory: F::smem, the row (XCOPY), the codes, the scales' 16-byte span.
enum { STAGE_ROWS = 16 };
struct StageLayout {
  uint32_t xs, codes, scales, bytes; // offsets into the dynamic shared memory; its size
  __host__ __device__ static StageLayout of(const KW &w, uint32_t pre, bool xcopy) {
    StageLayout l;
    l.xs = (pre + 127) / 128 * 128;
    l.codes = l.xs + (xcopy ? ((uint32_t)w.cols * 2 + 127) / 128 * 128 : 0);
    l.scales = l.codes + STAGE_ROWS * (uint32_t)w.steps * 16;
    l.bytes = l.scales + (STAGE_ROWS * (uint32_t)w.ngroups * 4 + 31) / 16 * 16; // 16 to spare: the span's start
    return l;
  }
};


// The parameters a staged kernel would first read after its PDL wait (the activations' and the
// outputs' addresses), copied to shared memory by thread 0 before it and read from there after
// (stage_start): a constant-cache miss after the wait queues behind the next launch's weight loads
// like any other read (4096 x 4096 4-bit in the kernel sandbox: 4.36 us against 4.53;
// BENCHMARKS.md, 2026-11-25, twelfth session). LB_PCOPY=0 (a build flag, for A/B runs): read as
// parameters.
#ifndef LB_PCOPY
#define LB_PCOPY 1
#endif
struct PostWait {
  const __half *x;
  float *y;
  const float *bias;
  __half *out16;
  int acc;
};

#if LB_TMA
// Thread 0's request of rows r0 .. r0 + nr - 1 into shared memory on one barrier: their codes to
// codes (16 KB a bulk copy; with a pitch other than a row's bytes, a copy a row, each pitch bytes
// after the one before), and the 16-byte span around their scale entries to scales (the weight's
// scales have 16 bytes to spare after them: qweight.cu). Returns where the rows' first entry lies
// in that span, in bytes.
__device__ __forceinline__ uint32_t stage_request(const KW &w, int r0, int nr, uint8_t *codes, uint8_t *scales,
                                                  uint64_t *bar, uint32_t pitch = 0) {
  const uint32_t rb = (uint32_t)w.steps * 16, tot = (uint32_t)nr * rb;
  const size_t s0 = (size_t)r0 * w.ngroups * 4, a0 = s0 & ~(size_t)15;
  const uint32_t sb = (uint32_t)((s0 + (size_t)nr * w.ngroups * 4 + 15 - a0) & ~(size_t)15);
  if (threadIdx.x == 0) {
    mbar_init(bar);
    mbar_expect(bar, tot + sb);
    const uint8_t *src = reinterpret_cast<const uint8_t *>(w.codes) + (size_t)r0 * rb;
    if (pitch == 0 || pitch == rb)
      for (uint32_t o = 0; o < tot; o += 16384) bulk_copy(codes + o, src + o, min(16384u, tot - o), bar);
    else
      for (int r = 0; r < nr; r++) bulk_copy(codes + r * pitch, src + (size_t)r * rb, rb, bar);
    bulk_copy(scales, reinterpret_cast<const uint8_t *>(w.scales) + a0, sb, bar);
  }
  return (uint32_t)(s0 & 15);
}

// The staged kernels' start: thread 0's request of the block's rows r0 .. r0 + nr - 1 (pitch:
// stage_request's) and its copy of the parameters read after the wait (PostWait); the PDL wait,
// then the trigger. *s_off: stage_request's return.
__device__ __forceinline__ PostWait stage_start(const KW &w, int r0, int nr, const StageLayout &ly, uint8_t *sm,
                                               uint64_t *bar, uint32_t pitch, const PostWait &p, uint32_t *s_off) {
  __shared__ PostWait ps;
  *s_off = stage_request(w, r0, nr, sm + ly.codes, sm + ly.scales, bar, pitch);
  if (LB_PCOPY && threadIdx.x == 0) ps = p;
  __syncthreads(); // the barrier is initialised, the parameters copied
  lb_pdl_wait();
  lb_pdl_trigger();
  return LB_PCOPY ? ps : p;
}
#endif

template <class F, bool SILU>
__global__ void __launch_bounds__(256, 4) gemv_staged(const KW w, const KX x0, float *__restrict__ y,
                                                      const float *__restrict__ bias, __half *__restrict__ out16,
                                                      bool accumulate, StageLayout ly) {
#if LB_TMA
  typedef typename F::Acc Acc;
  extern __shared__ __align__(128) uint8_t sm[]; // (aligned to 128 for the copy engine's writes)
  __shared__ uint64_t bar;
#ifdef LB_GEMV_STAMPS
  unsigned long long tg[4]; // start, wait returned, rows landed, sums ready
#endif
  STAMP(0);
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r0 = blockIdx.x * STAGE_ROWS, nr = min(STAGE_ROWS, w.rows - r0);
  uint32_t s_off;
  const PostWait pw = stage_start(w, r0, nr, ly, sm, &bar, 0, {x0.x, y, bias, out16, accumulate}, &s_off);
  STAMP(1);
  KX x = x0;
  x.x = pw.x;
  F::prep(w, x); // FI8One: the row's int8 codes, at the start of the shared memory
  if constexpr (F::XCOPY) {
    constexpr int NC = F::COLS / 8; // chunks a step
    uint4 *xs = reinterpret_cast<uint4 *>(sm + ly.xs);
    const uint4 *xg = reinterpret_cast<const uint4 *>(x.x);
    for (int i = threadIdx.x; i < w.cols / 8; i += blockDim.x) cp_async16(&xs[xs_slot<NC>(i / NC, i % NC)], xg + i);
    cp_async_wait();
    __syncthreads();
    x.xs = xs;
  }
  mbar_wait(&bar, 0);
  STAMP(2);
  const int lr = 2 * wib;
  if (lr >= nr) return;
  const int rr = lr + 1 < nr ? 1 : 0; // the pair's second row (a missing one repeats the first, unused)
  const uint4 *c = reinterpret_cast<const uint4 *>(sm + ly.codes) + (size_t)lr * w.steps;
  const uint32_t *sc = reinterpret_cast<const uint32_t *>(sm + ly.scales + s_off) + (size_t)lr * w.ngroups;
  Acc acc[2][1] = {{Acc()}, {Acc()}};
  int g = lane / w.spg, gr = lane - g * w.spg;
  const int gs = 32 / w.spg, rs = 32 - gs * w.spg;
  for (int st = lane; st < w.steps; st += 32) {
    Frag f[2];
    f[0].q = c[st], f[1].q = c[rr * w.steps + st];
    f[0].s = F::STEP_SCALE ? sc[g] : 0u, f[1].s = F::STEP_SCALE ? sc[rr * w.ngroups + g] : 0u;
    F::template mac<1, 2, true>(f, x, w, st, acc);
    g += gs, gr += rs;
    if (gr >= w.spg) gr -= w.spg, g++;
  }
  F::template tail<1, 2>(w, x, r0 + lr, lane, 32, acc);
  float v[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    Acc t = acc[r][0];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) t = t + shfl_xor(t, o);
    v[r] = F::finish(w, x, r0 + lr + r * rr, 0, t);
  }
#ifdef LB_GEMV_STAMPS
  if (threadIdx.x == 0) stamp_record(w.codes, tg);
#endif
  if (lane == 0) put_rows<SILU, 2>(w, r0 + lr, 0, v, pw.y, pw.bias, pw.out16, pw.acc);
#endif
}

enum { ROWS = 2, SPLIT = 2 }; // rows per warp; warps sharing a row (BENCHMARKS.md: variants)

// Whether NF4's one-row GEMV takes a warp a row pair (no split, 16 rows a block; F::TALL) for a
// grid of b16 such blocks. LOWBIT_CUDA_GEMV_TALL: unset, where the grid is 1.5 waves of 4 blocks an
// SM or more (measured: 6-8% faster at 14336 x 4096, the same at 11008 x 4096, slower on 4096-row
// weights, whose 256 blocks leave 16 warps an SM: BENCHMARKS.md); 0 never; force always.
static bool tall_fits(int b16) {
  static int mode = -1;
  const int m = lb_cu_env_mode("LOWBIT_CUDA_GEMV_TALL", &mode);
  return m == 2 || (m == 1 && 2 * (int64_t)b16 >= 3 * 4 * (int64_t)lb_cu_sm_count());
}

// Whether a one-row GEMV takes the staged kernel (gemv_staged) with that layout and grid: an
// sm_90 device (TMA), a block's shared memory at most a quarter of an SM's (1 KB a block is the
// system's), and at most two blocks an SM, so that two launches fit the SMs at once (measured:
// BENCHMARKS.md, 2026-11-25), for the formats that measured faster so (F::STAGE).
// LOWBIT_CUDA_GEMV_STAGE: unset, that rule; 0 never; force wherever the shared memory allows,
// whatever the format (the checks: every weight of a small model, many-wave grids).
static bool stage_fits(const StageLayout &ly, int blocks, bool format) {
  static int mode = -1, per_sm = -1;
  const int m = lb_cu_env_mode("LOWBIT_CUDA_GEMV_STAGE", &mode);
  if (per_sm < 0) {
    int dev = 0, major = 0, bytes = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess)
      cudaGetLastError(), major = 0;
    per_sm = major >= 9 ? bytes : 0;
  }
  if (m == 0 || 4 * ((int64_t)ly.bytes + 1024 + 64) > per_sm) return false;
  return m == 2 || (format && blocks <= 2 * lb_cu_sm_count());
}

#include "backend/cuda/gemv_stage_tc.cuh"

// Whether a one-row 4-bit GEMV (F::STAGE_TC) that is staged takes the tensor-core kernel
// (gemv_stage_tc.cuh): LOWBIT_CUDA_GEMV_STAGE_TC=force, and columns and scale groups multiples of
// 128. Off by default: in the kernel sandbox it measured no faster than gemv_staged (BENCHMARKS.md,
// 2026-11-25, twelfth session).
static bool stage_tc_fits(const KW &kw) {
  static int mode = -1;
  return lb_cu_env_mode("LOWBIT_CUDA_GEMV_STAGE_TC", &mode) == 2 && kw.cols % STC_CHUNK == 0 && kw.spg % 4 == 0;
}

// TC: gemv_staged_tc instead of gemv_staged<F>.
template <class F, bool SILU, bool TC = false>
static cudaError_t launch_staged(const KW &kw, const KX &kx, const StageLayout &ly, int blocks, float *y,
                                 const float *bias, __half *out16, bool acc, cudaStream_t st) {
  void (*kern)(const KW, const KX, float *, const float *, __half *, bool, StageLayout) =
      TC ? gemv_staged_tc<SILU> : gemv_staged<F, SILU>;
  static int allowed = 0; // the dynamic shared memory a block may take (0: the kernel not yet set up)
  if ((int)ly.bytes > allowed) {
    // all of an SM's shared memory for its blocks, whatever the L1 then keeps: two launches' blocks at once
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)ly.bytes);
    if (e != cudaSuccess) return e;
    allowed = (int)ly.bytes;
  }
  return lb_cu_launch(kern, dim3(blocks), dim3(256), ly.bytes, st, kw, kx, y, bias, out16, acc, ly);
}

template <class F, bool SILU, int B>
static cudaError_t launch_b(const KW &kw, const KX &kx, float *y, const float *bias, __half *out16, bool acc,
                            cudaStream_t st) {
  const int per_block = 8 / SPLIT * ROWS, blocks = (kw.rows + per_block - 1) / per_block;
  // one activation row: the second step through shared memory where a warp streams on after it
  // (FP8's and 8-bit affine's rows have twice the steps), where the blocks round LLM.int8's
  // activations after the wait, or where the grid is many waves long (BENCHMARKS.md: a
  // one-wave grid whose weights all load before the wait keeps the next launch from loading
  // until it ends; with more rows the copy made every format slower)
  const bool pre = B == 1 && (F::PRE || blocks >= 8 * lb_cu_sm_count());
  if constexpr (B == 1) { // weights that two launches' blocks can hold in shared memory at once
    const int b16 = (kw.rows + STAGE_ROWS - 1) / STAGE_ROWS;
    if (F::STAGE_TC && stage_tc_fits(kw)) {
      const StageLayout ly = stc_layout(kw);
      if (stage_fits(ly, b16, F::STAGE)) return launch_staged<F, SILU, true>(kw, kx, ly, b16, y, bias, out16, acc, st);
    }
    const StageLayout ly = StageLayout::of(kw, (uint32_t)F::smem(kw.cols), F::XCOPY);
    if (stage_fits(ly, b16, F::STAGE)) return launch_staged<F, SILU>(kw, kx, ly, b16, y, bias, out16, acc, st);
  }
  if constexpr (F::TALL) { // NF4 at one row: a warp a row pair (16 rows a block) on many-wave grids
    const int b16 = (kw.rows + 15) / 16;
    if (tall_fits(b16)) // (its steps' pre-copy by the same rule, for these blocks)
      return lb_cu_launch(gemv<F, B, ROWS, 1, SILU>, dim3(b16), dim3(256), F::smem(kw.cols), st, kw, kx, y, bias,
                          out16, acc, b16 >= 8 * lb_cu_sm_count());
  }
  return lb_cu_launch(gemv<F, B, ROWS, SPLIT, SILU>, dim3(blocks), dim3(256), F::smem(kw.cols), st, kw, kx, y, bias,
                      out16, acc, pre);
}

// kw without its steps: the format's columns a step (F::COLS) give them. F1: the format's policy
// for one activation row (FQ4One for 4-bit; the format itself otherwise).
template <class F, bool SILU, class F1 = F>
static cudaError_t launch(const lb_cuda_qw *w, KW kw, const KX &kx, float *y, const float *bias, __half *out16,
                          int batch, bool acc, cudaStream_t st) {
  static_assert((int)F1::COLS == (int)F::COLS, "one step layout");
  kw.steps = (int)(w->cols / F::COLS), kw.spg = (int)(w->group / F::COLS);
  switch (batch) {
  case 1: return launch_b<F1, SILU, 1>(kw, kx, y, bias, out16, acc, st);
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
  KX kx = {(const __half *)x16, NULL, NULL, NULL, NULL, NULL, w->threshold, NULL, NULL};
  cudaStream_t st = (cudaStream_t)stream;
  cudaError_t e = cudaSuccess;
  if (w->kind == LB_CUDA_I8 && batch == 1 && FI8One::smem((int)w->cols) <= 32768) // one row: the GEMV rounds
    // the activations itself (FI8One), in shared memory beside the kernel's own
    return lb_cu_check(err, "launching the GEMV", launch<FI8, SILU, FI8One>(w, kw, kx, y, bias, (__half *)out16, 1, acc, st));
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
    case LB_CUDA_Q4:
      e = q4tc_fits(w, n) ? q4tc_launch(w, ks.x, yr, bias, o, acc, SILU, st) // one row of a g128 weight (gemv_tc.cu)
                          : launch<FQ4, SILU, FQ4One>(w, kw, ks, yr, bias, o, n, acc, st);
      break;
    case LB_CUDA_Q4F: e = launch<FQ4F, SILU>(w, kw, ks, yr, bias, o, n, acc, st); break;
    case LB_CUDA_NF4: e = launch<FNF4, SILU, FNF4One>(w, kw, ks, yr, bias, o, n, acc, st); break;
    case LB_CUDA_FP8: e = launch<FFP8, SILU>(w, kw, ks, yr, bias, o, n, acc, st); break;
    case LB_CUDA_A8: e = launch<FA8, SILU>(w, kw, ks, yr, bias, o, n, acc, st); break;
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
