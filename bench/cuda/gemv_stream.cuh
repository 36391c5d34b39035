// Lab only (gemv_lab.cu): the batch-1 4-bit GEMV with a loader warp; measured and not taken
// (bench/BENCHMARKS.md, 2026-11-24, fifth session). Each block takes R rows with CW x RG math
// warps and one loader warp. The loader never waits for the kernel before (PDL): one lane asks
// the copy engine (TMA bulk copies) for the block's rows one after the other, each into its own
// shared memory, keeping at most D rows in flight (it waits for row r - D before asking for row
// r), so that the memory system holds a short queue when the activations are read. The math
// warps wait (PDL), read their activations into registers (column warp c, lane l: steps
// (k CW + c) 32 + l, 16 bytes of codes and 32 columns each), then take their rows (row group g:
// rows g, g + RG, ...) as they land, two at a time: FQ4One's decode, half2 products summed per
// step and scaled in fp32; the rows' sums over lanes and warps go through shared memory at the
// end. LATE: the PDL trigger after the loader's last request instead of first.
#ifndef LB_BENCH_CUDA_GEMV_STREAM_CUH
#define LB_BENCH_CUDA_GEMV_STREAM_CUH

#include "gemv_bulk.cuh"

// Math warp w: column warp w % CW (steps (k CW + w % CW) 32 + lane), rows w / CW, + RG, ...
template <int CW, int RG, int KPL, int R, bool LATE>
__global__ void __launch_bounds__(32 * (CW * RG + 1)) gemv_stream(const KW w, const __half *__restrict__ x,
                                                                  float *__restrict__ y, int D, uint32_t sc_off) {
#if LB_BULK
  enum { M = CW * RG, NRW = R / RG, TPR = M * 32 / R };
  static_assert(R % RG == 0 && (M * 32) % R == 0 && TPR <= 32 && NRW % 2 == 0, "row split");
#ifdef LB_GEMV_STAMPS
  unsigned long long tg[4];
#endif
  STAMP(0);
  extern __shared__ __align__(128) uint8_t ssm[];
  __shared__ uint64_t bar[R];
  __shared__ float part[R][CW * 32];
  if (!LATE) lb_pdl_trigger();
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31, cw = wib % CW, rg = wib / CW;
  const int row0 = blockIdx.x * R, nr = w.rows - row0 < R ? w.rows - row0 : R;
  const uint32_t rb = (uint32_t)w.steps * 16, sbr = (uint32_t)w.ngroups * 4;
  const size_t s0 = (size_t)row0 * sbr, sa = s0 & ~(size_t)15;
  if (threadIdx.x == 0)
    for (int r = 0; r < nr; r++) mbar_init(&bar[r]);
  __syncthreads();
  if (wib == M) { // the loader
    if (lane == 0) {
      const uint8_t *codes = reinterpret_cast<const uint8_t *>(w.codes) + (size_t)row0 * rb;
      const uint32_t sb = (uint32_t)((s0 + (size_t)nr * sbr + 15 - sa) & ~(size_t)15);
      for (int r = 0; r < nr; r++) {
        if (r >= D) mbar_wait(&bar[r - D], 0);
        mbar_expect(&bar[r], rb + (r == 0 ? sb : 0));
        if (r == 0) bulk_copy(ssm + sc_off, reinterpret_cast<const uint8_t *>(w.scales) + sa, sb, &bar[0]);
        bulk_copy(ssm + (size_t)r * rb, codes + (size_t)r * rb, rb, &bar[r]);
      }
    }
    __syncwarp();
    if (LATE) lb_pdl_trigger();
    return;
  }
  lb_pdl_wait();
  STAMP(1);
  uint4 xv[KPL][4];
#pragma unroll
  for (int k = 0; k < KPL; k++) {
    const int st = (k * CW + cw) * 32 + lane;
    const uint4 *xb = reinterpret_cast<const uint4 *>(x) + (size_t)st * 4;
#pragma unroll
    for (int j = 0; j < 4; j++) xv[k][j] = st < w.steps ? __ldg(xb + j) : make_uint4(0, 0, 0, 0);
  }
  const uint32_t *sc = reinterpret_cast<const uint32_t *>(ssm + sc_off + (s0 - sa));
  mbar_wait(&bar[0], 0); // the scales come with row 0
  float acc[NRW];
#pragma unroll
  for (int i = 0; i < NRW; i += 2) {
    const int ra = rg + i * RG, rbw = ra + RG;
    if (ra < nr) mbar_wait(&bar[ra], 0);
    if (rbw < nr) mbar_wait(&bar[rbw], 0);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = h ? rbw : ra;
      float a = 0.0f;
      if (r < nr) {
        const uint4 *c = reinterpret_cast<const uint4 *>(ssm + (size_t)r * rb);
#pragma unroll
        for (int k = 0; k < KPL; k++) {
          const int st = (k * CW + cw) * 32 + lane;
          if (st < w.steps) {
            Frag f;
            f.q = c[st], f.s = sc[(size_t)r * w.ngroups + st / w.spg];
            __half2 d[16];
            const float s = FQ4One::decode(f, w, d);
            const __half2 *xh = reinterpret_cast<const __half2 *>(xv[k]);
            __half2 h0 = __hmul2(d[0], xh[0]), h1 = __hmul2(d[1], xh[1]);
#pragma unroll
            for (int j = 2; j < 16; j += 2) h0 = __hfma2(d[j], xh[j], h0), h1 = __hfma2(d[j + 1], xh[j + 1], h1);
            const float2 t = __half22float2(__hadd2(h0, h1));
            a = fmaf(s, t.x + t.y, a);
          }
        }
      }
      acc[i + h] = a;
    }
  }
#pragma unroll
  for (int i = 0; i < NRW; i++) part[rg + i * RG][cw * 32 + lane] = acc[i];
  STAMP(2);
  asm volatile("bar.sync 1, %0;" ::"n"(M * 32) : "memory");
#ifdef LB_GEMV_STAMPS
  if (threadIdx.x == 0) stamp_record(w.codes, tg);
#endif
  const int r = threadIdx.x / TPR, t = threadIdx.x % TPR;
  float a = 0.0f;
#pragma unroll
  for (int j = t; j < CW * 32; j += TPR) a += part[r][j];
#pragma unroll
  for (int o = TPR / 2; o > 0; o >>= 1) a += shfl_xor(a, o);
  if (t == 0 && r < nr) y[row0 + r] = a;
#endif
}

// R rows a block, D of them in flight; CW x RG math warps; the lane's steps a row (KPL) from the
// width. The weight's scales need 16 bytes to spare after them (row 0 copies their 16-byte span).
template <int CW, int RG, int R, bool LATE = false>
static cudaError_t stream_launch(const KW &kw, const __half *x, float *y, cudaStream_t st, int D, uint32_t pad = 0) {
  const int kpl = (kw.steps + 32 * CW - 1) / (32 * CW);
  const uint32_t rb = (uint32_t)kw.steps * 16;
  const uint32_t sc_off = (uint32_t)R * rb;
  uint32_t smem = sc_off + ((uint32_t)R * kw.ngroups * 4 + 32 + 15) / 16 * 16;
  if (smem < pad) smem = pad; // pad: keeps other blocks (this launch's or the next's) off the SM
  if (D < 1) return cudaErrorInvalidValue;
  const dim3 grid((kw.rows + R - 1) / R), block(32 * (CW * RG + 1));
#define LB_STREAM_CASE(K)                                                                                    \
  case K: {                                                                                                  \
    cudaError_t e = cudaFuncSetAttribute(gemv_stream<CW, RG, K, R, LATE>,                                    \
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);            \
    return e != cudaSuccess ? e : lb_cu_launch(gemv_stream<CW, RG, K, R, LATE>, grid, block, smem, st, kw, x, y, D, sc_off); \
  }
  switch (kpl) {
    LB_STREAM_CASE(1)
    LB_STREAM_CASE(2)
    LB_STREAM_CASE(3)
  default: return cudaErrorInvalidValue;
  }
#undef LB_STREAM_CASE
}

#endif
