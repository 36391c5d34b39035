// Lab only (gemv_lab.cu): the batch-1 4-bit GEMV with its weights streamed by the SMs' copy
// engine (TMA bulk copies, cp.async.bulk, sm_90) into shared memory instead of by the threads'
// loads; measured against the library's GEMVs and not taken (bench/BENCHMARKS.md, 2026-11-24,
// third session). Teams of KS warps take row pairs in turn (pair p, p + all teams ...), each team
// with NBUF slots of shared memory: the pair's codes and scale entries, and an mbarrier that
// counts the bytes in. The first slot of pre4 teams in 4 is requested before the PDL wait; after
// it the block copies the activation row to shared memory (cp.async, swizzled so that a quarter
// warp reads 8 bank groups), requests the other slots behind it, and multiplies each pair as it
// arrives (FQ4One's decode, half2 products of a step summed and scaled in fp32, as the library's
// GEMV). CUT: loads only (the slots' words summed; no activations, no decode).
#ifndef LB_BENCH_CUDA_GEMV_BULK_CUH
#define LB_BENCH_CUDA_GEMV_BULK_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/tma.cuh"
#include "backend/cuda/util.cuh"

#define LB_BULK LB_TMA

// Where the activations' 16-byte chunk i is kept: the staged GEMV's order (a step's 4 chunks
// rotated by (step / 2) % 4: gemv_formats.cuh, xs_slot).
__device__ __forceinline__ int xswz(int i) { return xs_slot<4>(i / 4, i % 4); }

// One step of 2 rows (FQ4One's decode) against the activations in shared memory in that order:
// the staged GEMV's step.
__device__ __forceinline__ void mac_smem(const Frag (&f)[2], const uint4 *xs, const KW &w, int st, float (&acc)[2][1]) {
  KX x = {};
  x.xs = xs;
  FQ4One::mac<1, 2, true>(f, x, w, st, acc);
}

// A slot's layout for w: the pair's codes (2 rows), then its scale entries from the 16-byte
// boundary at or below the pair's first (weights' scales have 16 bytes to spare, in the lab as
// in the library's qweight.cu, so the copy's rounded-up end stays inside them).
struct BulkSlot {
  uint32_t row_bytes, slot_bytes;
  static __host__ __device__ BulkSlot of(const KW &w) {
    const uint32_t rb = (uint32_t)w.steps * 16, sb = ((uint32_t)w.ngroups * 8 + 15) / 16 * 16 + 16;
    return {rb, 2 * rb + sb};
  }
};

// A team of KS warps shares a row pair, its warps taking alternate steps (KS = 1: a warp a pair).
template <int KS>
__device__ __forceinline__ void team_sync(int team) {
  if (KS == 1) __syncwarp();
  else asm volatile("bar.sync %0, %1;" ::"r"(team + 1), "n"(KS * 32) : "memory");
}

template <int NBUF, int KS, bool CUT, bool LATE>
__global__ void __launch_bounds__(256) gemv_bulk(const KW w, const __half *__restrict__ x, float *__restrict__ y,
                                                 int pre4, uint32_t slot0) {
#if LB_BULK
#ifdef LB_GEMV_STAMPS
  unsigned long long tg[4];
#endif
  STAMP(0);
  extern __shared__ __align__(128) uint8_t bsm[];
  __shared__ uint64_t bar[8 / KS][NBUF];
  __shared__ float part[2][8][2];
  if (!LATE) lb_pdl_trigger();
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31, teams = (blockDim.x >> 5) / KS;
  const int team = wib % teams, kpart = wib / teams;
  const int gt = blockIdx.x * teams + team, tt = gridDim.x * teams, npairs = (w.rows + 1) / 2;
  const bool leader = kpart == 0 && lane == 0;
  const BulkSlot ly = BulkSlot::of(w);
  uint4 *xs = reinterpret_cast<uint4 *>(bsm);
  uint8_t *slots = bsm + slot0 + (size_t)team * NBUF * ly.slot_bytes;
  const uint8_t *codes = reinterpret_cast<const uint8_t *>(w.codes);
  const uint8_t *scales = reinterpret_cast<const uint8_t *>(w.scales);
  // pair p into slot k (the team's leader): its rows' codes, and the 16-byte span of their scales
  auto request = [&](int p, int k) {
    const int r0 = 2 * p, nr = r0 + 1 < w.rows ? 2 : 1;
    const size_t s0 = (size_t)r0 * w.ngroups * 4, a = s0 & ~(size_t)15;
    const uint32_t sb = (uint32_t)((s0 + (size_t)nr * w.ngroups * 4 + 15 - a) & ~(size_t)15);
    uint8_t *d = slots + (size_t)k * ly.slot_bytes;
    mbar_expect(&bar[team][k], nr * ly.row_bytes + sb);
    bulk_copy(d, codes + (size_t)r0 * ly.row_bytes, nr * ly.row_bytes, &bar[team][k]);
    bulk_copy(d + 2 * ly.row_bytes, scales + a, sb, &bar[team][k]);
  };
  const int early = CUT || (gt & 3) < pre4 ? 1 : 0;
  if (leader) {
#pragma unroll
    for (int k = 0; k < NBUF; k++) mbar_init(&bar[team][k]);
    if (early && gt < npairs) request(gt, 0);
  }
  __syncthreads();
  lb_pdl_wait();
  STAMP(1);
  if (!CUT) { // the activations to shared memory, asked for before the later slots
    const uint4 *xg = reinterpret_cast<const uint4 *>(x);
    for (int i = threadIdx.x; i < w.cols / 8; i += blockDim.x) cp_async16(&xs[xswz(i)], xg + i);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  if (leader)
    for (int k = early; k < NBUF; k++)
      if (gt + k * tt < npairs) request(gt + k * tt, k);
  if (LATE) lb_pdl_trigger(); // LATE: the next launch only once this one's reads are all asked for
  if (!CUT) {
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
  }
  STAMP(2);
  const int stride = 32 * KS, spg = w.spg, gs = stride / spg, rs = stride % spg;
  for (int i = 0, p = gt; p < npairs; i++, p += tt) {
    const int k = i % NBUF;
    mbar_wait(&bar[team][k], (uint32_t)(i / NBUF) & 1);
    const uint8_t *d = slots + (size_t)k * ly.slot_bytes;
    const uint4 *c = reinterpret_cast<const uint4 *>(d);
    const uint32_t *s = reinterpret_cast<const uint32_t *>(d + 2 * ly.row_bytes + (((size_t)2 * p * w.ngroups * 4) & 15));
    float acc[2][1] = {{0.0f}, {0.0f}};
    int st = lane + 32 * kpart, g = st / spg, gr = st - g * spg;
    for (; st < w.steps; st += stride) {
      Frag f[2];
#pragma unroll
      for (int r = 0; r < 2; r++) f[r].q = c[r * w.steps + st], f[r].s = s[r * w.ngroups + g];
      if (CUT) acc[0][0] += __uint_as_float((f[0].q.x ^ f[1].q.w ^ f[0].s) & 0x3FFFFFFFu);
      else mac_smem(f, xs, w, st, acc);
      g += gs, gr += rs;
      if (gr >= spg) gr -= spg, g++;
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][0] += shfl_xor(acc[r][0], o);
      if (KS > 1 && kpart > 0 && lane == 0) part[i & 1][wib][r] = acc[r][0];
    }
    team_sync<KS>(team); // the slot is read and the team's sums are in
    if (!leader) continue;
    if (p + NBUF * tt < npairs) {
      fence_async();
      request(p + NBUF * tt, k);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float a = acc[r][0];
      for (int j = 1; j < KS; j++) a += part[i & 1][wib + j * teams][r];
      if (2 * p + r < w.rows) y[2 * p + r] = a;
    }
  }
#ifdef LB_GEMV_STAMPS
  __syncthreads(); // the block's end: its last team
  if (threadIdx.x == 0) stamp_record(w.codes, tg);
#endif
#endif
}

// The launch: blocks of 8 warps (8 / KS teams; fewer warps where a block's slots would pass 112
// KB), as many blocks as fit the SMs at once or as the pairs need. The weight's scales need 16
// bytes to spare after them (a slot's copy rounds its span up).
template <int NBUF, int KS, bool CUT = false, bool LATE = false>
static cudaError_t bulk_launch(const KW &kw, const __half *x, float *y, cudaStream_t st, int pre4) {
  static size_t allowed = 48 * 1024; // the dynamic shared memory a block may take without asking
  cudaError_t e = cudaSuccess;
  const BulkSlot ly = BulkSlot::of(kw);
  const size_t slot0 = ((size_t)kw.cols * 2 + 127) / 128 * 128;
  int warps = 8;
  while (warps > KS && slot0 + (size_t)warps / KS * NBUF * ly.slot_bytes > 112 * 1024) warps /= 2;
  const size_t smem = slot0 + (size_t)warps / KS * NBUF * ly.slot_bytes;
  if (smem > allowed) {
    if ((e = cudaFuncSetAttribute(gemv_bulk<NBUF, KS, CUT, LATE>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) !=
        cudaSuccess)
      return e;
    allowed = smem;
  }
  int per_sm = 0;
  if ((e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_bulk<NBUF, KS, CUT, LATE>, warps * 32, smem)) !=
      cudaSuccess)
    return e;
  if (per_sm < 1) return cudaErrorInvalidConfiguration;
  const int teams = warps / KS, npairs = (kw.rows + 1) / 2, need = (npairs + teams - 1) / teams;
  const int fit = per_sm * lb_cu_sm_count();
  return lb_cu_launch(gemv_bulk<NBUF, KS, CUT, LATE>, dim3(need < fit ? need : fit), dim3(warps * 32), smem, st, kw, x, y,
                      pre4, (uint32_t)slot0);
}

#endif
