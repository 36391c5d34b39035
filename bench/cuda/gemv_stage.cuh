// Lab only (gemv_lab.cu): the first version of the library's staged GEMV (gemv.cu: gemv_staged),
// kept for its variants (bench/BENCHMARKS.md, 2026-11-25). The batch-1 4-bit GEMV with launches
// two deep on the SMs. A block
// takes RPB rows. Before the PDL wait one thread asks the copy engine (TMA bulk copies) for all of
// them, codes and scale entries, into the block's shared memory. After the wait the block copies
// the activation row (swizzled as gemv_bulk.cuh's), then a warp a row pair multiplies from shared
// memory (FQ4One's decode, as mac_smem). A block takes about a quarter of an SM, so the next
// launch's blocks fit beside the running ones and stream their rows while those compute; the
// running launch's activations are asked for before the next launch's rows when the trigger
// comes after them. TRIG: the PDL trigger first (0), after the wait (1), after the activations
// landed (2). CUT: no activations, no math (loads only, unchecked).
#ifndef LB_BENCH_CUDA_GEMV_STAGE_CUH
#define LB_BENCH_CUDA_GEMV_STAGE_CUH

#include "gemv_bulk.cuh"

template <int RPB, int TRIG, bool CUT>
__global__ void __launch_bounds__(RPB * 16, 64 / RPB) gemv_stage(const KW w, const __half *__restrict__ x,
                                                                 float *__restrict__ y) {
#if LB_BULK
  extern __shared__ __align__(128) uint8_t ssm[];
  __shared__ uint64_t bar;
  if (TRIG == 0) lb_pdl_trigger();
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r0 = blockIdx.x * RPB, nr = min(RPB, w.rows - r0);
  const uint32_t xbytes = ((uint32_t)w.cols * 2 + 127) / 128 * 128;
  uint4 *xs = reinterpret_cast<uint4 *>(ssm);
  uint8_t *cs = ssm + xbytes, *ss = cs + (size_t)RPB * w.steps * 16;
  const uint32_t s_off = stage_request(w, r0, nr, cs, ss, &bar); // (gemv.cu)
  __syncthreads();
  lb_pdl_wait();
  if (TRIG == 1) lb_pdl_trigger();
  if (!CUT) {
    const uint4 *xg = reinterpret_cast<const uint4 *>(x);
    for (int i = threadIdx.x; i < w.cols / 8; i += blockDim.x) cp_async16(&xs[xswz(i)], xg + i);
    cp_async_wait();
    __syncthreads();
  }
  if (TRIG == 2) lb_pdl_trigger();
  mbar_wait(&bar, 0);
  const int lr = 2 * wib;
  if (lr >= nr) return;
  const bool two = lr + 1 < nr;
  const uint4 *c = reinterpret_cast<const uint4 *>(cs) + (size_t)lr * w.steps;
  const uint32_t *s = reinterpret_cast<const uint32_t *>(ss + s_off) + (size_t)lr * w.ngroups;
  float acc[2][1] = {{0.0f}, {0.0f}};
  for (int st = lane; st < w.steps; st += 32) {
    const int g = st / w.spg;
    Frag f[2];
    f[0].q = c[st], f[0].s = s[g];
    f[1].q = c[two ? w.steps + st : st], f[1].s = s[two ? w.ngroups + g : g];
    if (CUT) acc[0][0] += __uint_as_float((f[0].q.x ^ f[1].q.w ^ f[0].s) & 0x3FFFFFFFu);
    else mac_smem(f, xs, w, st, acc);
  }
#pragma unroll
  for (int r = 0; r < 2; r++)
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[r][0] += shfl_xor(acc[r][0], o);
  if (lane == 0) {
    y[r0 + lr] = acc[0][0];
    if (two) y[r0 + lr + 1] = acc[1][0];
  }
#endif
}

// The launch: a block of RPB / 2 warps per RPB rows; its shared memory is the activation row, the
// rows' codes and their scale entries' 16-byte span (the weight's scales need 16 bytes to spare).
template <int RPB, int TRIG, bool CUT = false>
static cudaError_t stage_launch(const KW &kw, const __half *x, float *y, cudaStream_t st) {
  static size_t allowed = 48 * 1024;
  cudaError_t e = cudaSuccess;
  const size_t smem = ((size_t)kw.cols * 2 + 127) / 128 * 128 + (size_t)RPB * kw.steps * 16 +
                      ((size_t)RPB * kw.ngroups * 4 + 31) / 16 * 16;
  if (smem > allowed) {
    if ((e = cudaFuncSetAttribute(gemv_stage<RPB, TRIG, CUT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) !=
        cudaSuccess)
      return e;
    if ((e = cudaFuncSetAttribute(gemv_stage<RPB, TRIG, CUT>, cudaFuncAttributePreferredSharedMemoryCarveout, 100)) !=
        cudaSuccess)
      return e;
    allowed = smem;
  }
  return lb_cu_launch(gemv_stage<RPB, TRIG, CUT>, dim3((kw.rows + RPB - 1) / RPB), dim3(RPB * 16), smem, st, kw, x, y);
}

#endif
