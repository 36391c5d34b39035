// Lab only (gemv_lab.cu, `lab ITERS chain`): a persistent kernel that runs a chain of batch-1
// 4-bit GEMVs, each product's input the product before's output, with no launch between products;
// measured and not taken (bench/BENCHMARKS.md, 2026-11-24, sixth session: 59-60% of the copy
// bandwidth at 4096 x 4096, below the register GEMV's 61%).
// One block an SM. A loader warp streams the block's rows of every product of the chain, one
// product after the other, through a ring of shared-memory slots (TMA bulk copies of g row pairs
// a slot), never waiting for the products themselves, and keeping at most `inflight` bytes asked
// for and not yet landed. M math warps read the activations, the product before's output, as they
// are written: each output is a 32-bit word, the fp16 value and a 16-bit tag (the product's
// number), so the read itself is the wait and no grid barrier is needed (the first version's
// barrier, a fence, an atomic and a poll, ran at the same speed). They copy the values to shared
// memory, take the block's chunks in turn as they land (g warps a chunk, a warp a pair: FQ4One's
// decode and half2 products, as gemv.cu), and write their rows with the next tag.
#ifndef LB_BENCH_CUDA_GEMV_CHAIN_CUH
#define LB_BENCH_CUDA_GEMV_CHAIN_CUH

#include "gemv_bulk.cuh"

// One product of the chain: y = W x. x and y: a word a value, tag << 16 | fp16 bits; x is read as
// xn4 chunks of 4 words repeated to `cols` columns (the product before may have fewer rows than
// this one's columns) once every word carries xtag; y is written with ytag. yf: the float results
// too (checks).
struct ChainOp {
  const uint8_t *codes;
  const uint32_t *scales; // (scale, 1024 + zero) a row's group, as the library's LB_CUDA_Q4
  const uint32_t *x;
  uint32_t *y;
  float *yf;
  int rows, cols, ng, spg, xn4;
  uint32_t xtag, ytag;
};

#if LB_BULK
__device__ __forceinline__ void mbar_init_n(uint64_t *b, unsigned n) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n"
               "fence.mbarrier_init.release.cluster;" ::"r"(smem_addr(b)), "r"(n)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(b)) : "memory");
}
__device__ __forceinline__ uint4 ld_relaxed4(const uint4 *p) {
  uint4 v;
  asm volatile("ld.relaxed.gpu.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}
__device__ __forceinline__ bool tagged(const uint4 &v, uint32_t t) {
  return ((v.x >> 16) == t) & ((v.y >> 16) == t) & ((v.z >> 16) == t) & ((v.w >> 16) == t);
}
#endif

// The block's row pairs of a product: [p0, p1) of rows / 2, split evenly over the grid.
// (in units of 4 pairs: a block's outputs start on a 16-byte boundary (YBULK), and its pairs are
// whole chunks of up to 4)
__device__ __forceinline__ void chain_pairs(int rows, int *p0, int *p1) {
  const int nq = rows / 8;
  *p0 = 4 * (int)((long)nq * blockIdx.x / gridDim.x), *p1 = 4 * (int)((long)nq * (blockIdx.x + 1) / gridDim.x);
}

enum { CHAIN_SLOTS = 64, CHAIN_OPS = 64, CHAIN_MAX_COLS = 11008 };

// Shared memory: nslots slots of slot_bytes, the activations (xbytes), two scale buffers of
// sc_bytes. MODE bits: 1 CUT (no products: the loads only, unchecked), 2 POLL (the barriers polled
// with test_wait instead of try_wait), 4 YBULK (the block's outputs staged in shared memory and
// stored by one bulk copy after its last warp). backoff: ns between polls of the input.
template <int M, int MODE>
__global__ void __launch_bounds__(32 * (M + 1), 1)
    gemv_chain(const ChainOp *__restrict__ ops, int L, uint32_t nslots, uint32_t slot_bytes,
               uint32_t inflight, uint32_t xbytes, uint32_t sc_bytes, unsigned long long *stamps, unsigned backoff,
               int g) { // g: pairs a chunk (a slot, a bulk copy), read by g warps
#if LB_BULK
  extern __shared__ __align__(128) uint8_t csm[];
  __shared__ uint64_t full[CHAIN_SLOTS], empty[CHAIN_SLOTS], scf[2], sce[2];
  __shared__ __align__(16) uint32_t ybuf[256]; // YBULK: the block's outputs of a product
  enum { CUT = MODE & 1, POLL = MODE & 2, YBULK = MODE & 4 };
  __shared__ unsigned long long tmax, tloop; // (stamps) the longest wait of any warp for a slot; the last loop end
  __shared__ ChainOp sops[CHAIN_OPS];  // the chain, read once: a global read inside the loop queues behind the stream
  uint8_t *slots = csm, *scb = csm + (size_t)nslots * slot_bytes + xbytes;
  uint4 *xs = reinterpret_cast<uint4 *>(csm + (size_t)nslots * slot_bytes);
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int k = threadIdx.x; k < L; k += blockDim.x) sops[k] = ops[k];
  if (threadIdx.x == 0) {
    for (uint32_t s = 0; s < nslots; s++) mbar_init_n(&full[s], 1), mbar_init_n(&empty[s], g);
    for (int s = 0; s < 2; s++) mbar_init_n(&scf[s], 1), mbar_init_n(&sce[s], 1);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();
  if (wib == M) { // the loader
    if (lane != 0) return;
    uint32_t i = 0, land = 0, fly = 0, szr[CHAIN_SLOTS];
    for (int k = 0; k < L; k++) {
      const ChainOp &op = sops[k];
      int p0, p1;
      chain_pairs(op.rows, &p0, &p1);
      const uint32_t pb = (uint32_t)op.cols, sb = (uint32_t)(p1 - p0) * 2 * op.ng * 4; // a pair's codes; the scales
      if (k >= 2) mbar_wait<POLL>(&sce[k & 1], ((k >> 1) - 1) & 1);
      if (stamps) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        stamps[((size_t)k * gridDim.x + blockIdx.x) * 6 + 4] = t;
      }
      mbar_expect(&scf[k & 1], sb);
      if (sb) bulk_copy(scb + (k & 1) * sc_bytes, reinterpret_cast<const uint8_t *>(op.scales) + (size_t)p0 * 2 * op.ng * 4, sb, &scf[k & 1]);
      for (int p = p0; p < p1; p += g, i++) {
        const uint32_t s = i % nslots, u = i / nslots, cb = pb * g;
        if (u) mbar_wait<POLL>(&empty[s], (u - 1) & 1); // chunk i - nslots is read (so it has landed)
        for (; land + nslots <= i; land++) fly -= szr[land % nslots];
        for (; fly + cb > inflight && land < i; land++) {
          mbar_wait<POLL>(&full[land % nslots], (land / nslots) & 1);
          fly -= szr[land % nslots];
        }
        szr[s] = cb, fly += cb;
        mbar_expect(&full[s], cb);
        bulk_copy(slots + (size_t)s * slot_bytes, op.codes + (size_t)p * pb, cb, &full[s]);
      }
      if (stamps) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        stamps[((size_t)k * gridDim.x + blockIdx.x) * 6 + 5] = t;
      }
    }
    return;
  }
  const KW kw = {};
  uint32_t base = 0; // the block's chunk number of its first pair of product k
  for (int k = 0; k < L; k++) {
    const ChainOp &op = sops[k];
    int p0, p1;
    chain_pairs(op.rows, &p0, &p1);
    { // the activations: every thread's chunks of 4 words asked for at once, then asked again until tagged
      enum { XC = (CHAIN_MAX_COLS / 4 + M * 32 - 1) / (M * 32) };
      const uint4 *xg = reinterpret_cast<const uint4 *>(op.x);
      const int nch = op.cols / 4;
      uint4 v[XC];
      unsigned pending = 0;
#pragma unroll
      for (int j = 0; j < XC; j++) {
        const int c = threadIdx.x + j * M * 32;
        if (c < nch) v[j] = ld_relaxed4(xg + c % op.xn4), pending |= 1u << j;
      }
      for (unsigned spins = 0; pending && spins < (1u << 22); spins++) { // (bounded: a lab bug fails the check, not hangs)
        if (spins && backoff) __nanosleep(backoff);
#pragma unroll
        for (int j = 0; j < XC; j++) {
          if (!(pending >> j & 1)) continue;
          const int c = threadIdx.x + j * M * 32;
          if (tagged(v[j], op.xtag)) {
            const uint2 h = make_uint2(prmt(v[j].x, v[j].y, 0x5410u), prmt(v[j].z, v[j].w, 0x5410u));
            reinterpret_cast<uint2 *>(xs)[2 * xswz(c >> 1) + (c & 1)] = h;
            pending &= ~(1u << j);
          } else {
            v[j] = ld_relaxed4(xg + c % op.xn4);
          }
        }
      }
    }
    if (YBULK && threadIdx.x == 0) asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory"); // ybuf free
    asm volatile("bar.sync 1, %0;" ::"n"(M * 32) : "memory");
    unsigned long long t1 = 0, tw = 0;
    if (k == 0 && threadIdx.x == 0) tmax = 0, tloop = 0;
    if (stamps) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
    mbar_wait<POLL>(&scf[k & 1], (k >> 1) & 1);
    const uint32_t *sc = reinterpret_cast<const uint32_t *>(scb + (k & 1) * sc_bytes);
    const int steps = op.cols / 32;
    const int T = M / g, member = wib / T;
    for (int jj = wib % T; p0 + g * jj < p1; jj += T) {
      const int p = p0 + g * jj + member;
      const uint32_t i = base + (uint32_t)jj, s = i % nslots;
      unsigned long long ta = 0, tb = 0;
      if (stamps) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ta));
      mbar_wait<POLL>(&full[s], (i / nslots) & 1);
      if (stamps) {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tb));
        tw += tb - ta;
      }
      const uint4 *c = reinterpret_cast<const uint4 *>(slots + (size_t)s * slot_bytes + (size_t)member * op.cols);
      const uint32_t *s0 = sc + (size_t)(p - p0) * 2 * op.ng;
      float acc[2][1] = {{0.0f}, {0.0f}};
      for (int st = lane; st < steps; st += 32) {
        Frag f[2];
        f[0].q = c[st], f[0].s = s0[st / op.spg];
        f[1].q = c[steps + st], f[1].s = s0[op.ng + st / op.spg];
        if (CUT) acc[0][0] += __uint_as_float((f[0].q.x ^ f[1].q.w ^ f[0].s) & 0x3FFFFFFFu);
        else mac_smem(f, xs, kw, st, acc);
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[s]);
#pragma unroll
      for (int r = 0; r < 2; r++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[r][0] += shfl_xor(acc[r][0], o);
      if (lane == 0) {
        const uint32_t t = op.ytag << 16;
        const uint2 yv = make_uint2(t | __half_as_ushort(__float2half_rn(acc[0][0])), t | __half_as_ushort(__float2half_rn(acc[1][0])));
        if (YBULK) reinterpret_cast<uint2 *>(ybuf)[p - p0] = yv;
        else *reinterpret_cast<uint2 *>(op.y + 2 * p) = yv;
        if (op.yf) op.yf[2 * p] = acc[0][0], op.yf[2 * p + 1] = acc[1][0];
      }
    }
    base += (uint32_t)(p1 - p0) / g;
    if (stamps && lane == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      atomicMax(&tmax, tw), atomicMax(&tloop, t - t1);
    }
    asm volatile("bar.sync 1, %0;" ::"n"(M * 32) : "memory");
    if (threadIdx.x == 0) {
      mbar_arrive(&sce[k & 1]);
      if (YBULK && p1 > p0) {
        const uint32_t bytes = (uint32_t)(p1 - p0) * 8;
        asm volatile("fence.proxy.async.shared::cta;\n"
                     "cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n"
                     "cp.async.bulk.commit_group;" ::"l"(op.y + 2 * p0), "r"(smem_addr(ybuf)), "r"(bytes)
                     : "memory");
      }
      if (stamps) {
        unsigned long long t2;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t2));
        unsigned long long *o = stamps + ((size_t)k * gridDim.x + blockIdx.x) * 6;
        o[0] = t1, o[1] = t2, o[2] = tmax, o[3] = tloop;
        tmax = 0, tloop = 0;
      }
    }
  }
#endif
}

// The chain's launch: one block an SM (a product waits for all blocks' outputs of the one before,
// so they must all be resident), a ring of at most ring_bytes (and CHAIN_SLOTS slots) of g of the
// widest row pairs, a multiple of M / g slots (a warp waits for chunk i only once it has read
// chunk i - nslots itself, so the slot's barrier is never two phases behind).
template <int M, int MODE = 0>
static cudaError_t chain_launch(const ChainOp *ops, int L, int max_cols, int max_sc, uint32_t ring_bytes,
                                uint32_t inflight, cudaStream_t st, unsigned long long *stamps = NULL, unsigned backoff = 0,
                                int g = 1) {
  if (g < 1 || g > 4 || M % g) return cudaErrorInvalidValue;
  const uint32_t slot_bytes = (uint32_t)max_cols * g, xbytes = (uint32_t)max_cols * 2;
  const uint32_t sc_bytes = ((uint32_t)max_sc + 127) / 128 * 128;
  uint32_t nslots = ring_bytes / slot_bytes;
  const uint32_t room = 227 * 1024 - xbytes - 2 * sc_bytes - 8192; // (static: the barriers and the chain)
  if (nslots * slot_bytes > room) nslots = room / slot_bytes;
  if (nslots > CHAIN_SLOTS) nslots = CHAIN_SLOTS;
  nslots -= nslots % (M / g);
  if (nslots < (uint32_t)(M / g) || max_cols > CHAIN_MAX_COLS || L > CHAIN_OPS || max_sc > 16 * 1024) return cudaErrorInvalidValue;
  const size_t smem = (size_t)nslots * slot_bytes + xbytes + 2 * sc_bytes;
  cudaError_t e = cudaFuncSetAttribute(gemv_chain<M, MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  gemv_chain<M, MODE><<<lb_cu_sm_count(), 32 * (M + 1), smem, st>>>(ops, L, nslots, slot_bytes, inflight, xbytes, sc_bytes, stamps, backoff, g);
  return cudaGetLastError();
}

#endif
