// A lab for batch-1 4-bit GEMV launch shapes, outside the library build: one nvcc call
// (bench/cuda/device.sh lab) compiles this file with the library's GEMV (gemv.cu, included) as the
// baseline, checks every variant against a float reference and times each one the way the kernel
// sandbox does (a graph of launches with PDL, weights cycled through more than twice the L2).
// Variants (more were tried and removed: bench/BENCHMARKS.md, 2026-11-24, describes them):
//   base          lb_cuda_gemv's register GEMV (gemv.cu; LOWBIT_CUDA_GEMV_TC=0)
//   tc            the tensor-core GEMV (gemv_tc.cu) whatever the shape
//   bulk ...      the weights through the copy engine (gemv_bulk.cuh): a team of 2 warps a row
//                 pair, half the teams' pairs requested before the PDL wait; `pre 1/4`, `pre
//                 all`: a quarter or all of them; `warp a pair`: teams of one warp; `2 slots`: two
//                 pairs in flight a team; `late`: the PDL trigger after the wait and every
//                 request of the launch (the next launch may start only then; else it is the
//                 kernel's first instruction); `~... loads only`: no activations, no math (unchecked)
//   staged        the library's staged GEMV (gemv.cu: gemv_staged) whatever the shape
//   staged tc     its tensor-core form (gemv_stage_tc.cuh: gemv_staged_tc)
//   stageR ...    its first version (gemv_stage.cuh): R rows a block, the PDL trigger `first`,
//                 after the `wait` or after the activations (`x`) landed; `~... cut`: loads only
//   cCrG RdD ...  a loader warp streams the block's R rows (at most D in flight) while C x G math
//                 warps wait, read their activations and take the rows as they land
//                 (gemv_stream.cuh); `late`: the trigger after the last request; `N/SM`: shared
//                 memory padded so that only N blocks of any launch fit an SM
// Built with -DLB_GEMV_STAMPS (device.sh: STAMPS=1), the blocks' timestamps of each 4096-row
// variant follow (gemv.cu's, gemv_stage_tc.cuh's and gemv_bulk.cuh's; the tensor-core GEMV has
// none); they cost time. LAB_STAMPS_DUMP=DIR writes their raw records (stamps_timeline.py).
// LAB_ONLY="base,staged tc": those variants alone; LAB_SHAPE=4096x4096: that weight alone;
// LAB_SAME=1: every copy of a weight the same bytes (as the sandbox's copies).
// `lab ITERS floor` times the floor instead: a read of 8.65 MB with a compute tail after the wait;
// `lab ITERS hol` how long an 8 KB read from the L2 takes while other SMs stream weights;
// `lab ITERS chain` chains of 48 products in one persistent kernel (gemv_chain.cuh), variants named
// `gG mM rR fF`: G row pairs a bulk copy, M math warps, a ring of R KB, at most F KB in flight;
// `~cut`: no products, loads only (unchecked); `poll`: the barriers polled with test_wait; `ybulk`:
// a block's outputs stored by one bulk copy; `bN`: N ns between polls of the input; `hot`: one
// weight, read from the L2; then where a product's time goes, from the blocks' timestamps, and
// which blocks come last.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <string>
#include <vector>

#include "backend/cuda/gemv.cu"
#include "backend/cuda/gemv_tc.cu"
#include "gemv_bulk.cuh"
#include "gemv_chain.cuh"
#include "gemv_stage.cuh"
#include "gemv_stream.cuh"
#include "timing.cuh"

extern "C" bool lb_cuda_pdl(void) { return true; }
cudaError_t i8x_prep(const lb_cuda_qw *, const __half *, const lb_cuda_i8x *, int, cudaStream_t, KX *) {
  return cudaErrorInvalidValue;
}


static int g_sms; // the device's SMs

// ---- mma<P, WPT>: tensor cores at batch 1 (g128 only). A block of 16 warps takes 16 / WPT tiles
// of 16 rows (the mma's A: rows g and g + 8 of lane g * 4 + t), WPT warps a tile, a warp its
// tile's 128-column groups k, k + WPT, ...; lane t of a quad takes the group's step t (16 bytes,
// columns 32t..32t + 31) of its two rows, its word j giving the k-pairs t (columns 8j, 8j + 1) and
// t + 4 (8j + 2, 8j + 3) of one mma and the same of the next (8j + 4 ..). Every lane loads the
// activations of its own columns, so all 8 columns of B are x and every lane's c0 / c2 hold its
// rows' sums. Codes decoded to q - zero as FQ4One does; each group's sum scaled in fp32. The first
// P groups of a lane are loaded before the PDL wait. ----
// ---- the floor with a tail: 4 blocks of 256 an SM each read 4 x 16 bytes a thread before the
// PDL wait (registers, or cp.async to shared memory), then after it W rounds of 4 dependent FMA
// chains; `pad` bytes of dynamic shared memory a block keep (or not) the next launch off the SM ----
template <bool ASYNC>
__global__ void __launch_bounds__(256) floor_tail(const uint4 *__restrict__ p, int w, unsigned *out) {
  extern __shared__ uint4 fsm[];
  lb_pdl_trigger();
  const size_t stride = (size_t)gridDim.x * blockDim.x, i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  uint4 v[4];
  if (ASYNC) {
#pragma unroll
    for (int j = 0; j < 4; j++) cp_async16(&fsm[j * 256 + threadIdx.x], p + i + j * stride);
  } else {
#pragma unroll
    for (int j = 0; j < 4; j++) v[j] = __ldcs(p + i + j * stride);
  }
  lb_pdl_wait();
  if (ASYNC) {
    cp_async_wait();
#pragma unroll
    for (int j = 0; j < 4; j++) v[j] = fsm[j * 256 + threadIdx.x];
  }
  float a[4];
#pragma unroll
  for (int j = 0; j < 4; j++) a[j] = __uint_as_float((v[j].x ^ v[j].y ^ v[j].z ^ v[j].w) & 0x3FFFFFFFu);
  for (int k = 0; k < w; k++)
#pragma unroll
    for (int j = 0; j < 4; j++) a[j] = fmaf(a[j], 0.999f, 0.001f);
  if (a[0] + a[1] + a[2] + a[3] == 1234.5f) *out = 1; // keeps the work; never in practice
}

static void time_floors(int iters, double copy, int l2) {
  const size_t n = (size_t)g_sms * 4 * 256 * 4, bytes = n * 16; // 4 uint4 a thread: 8.65 MB
  const int copies = (int)(2 * (size_t)l2 / bytes) + 2;
  std::vector<uint4 *> buf(copies);
  unsigned *out;
  CK(cudaMalloc((void **)&out, 4));
  for (auto &b : buf) {
    CK(cudaMalloc((void **)&b, bytes));
    CK(cudaMemset(b, 0x5A, bytes));
  }
  CK(cudaFuncSetAttribute(floor_tail<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, 120 * 1024));
  CK(cudaFuncSetAttribute(floor_tail<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, 120 * 1024));
  CK(cudaFuncSetAttribute(floor_tail<false>, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
  CK(cudaFuncSetAttribute(floor_tail<true>, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  printf("\nThe floor with a tail (%.2f MB a launch, 4 blocks of 256 an SM; us a launch, share of copy):\n\n",
         bytes / 1e6);
  printf("| loads | next launch | W=0 | W=32 | W=128 | W=512 |\n| --- | --- | ---: | ---: | ---: | ---: |\n");
  for (int async = 0; async < 2; async++)
    for (int apart = 0; apart < 2; apart++) {
      const size_t smem = apart ? 40 * 1024 : async ? 16 * 1024 : 0; // 4 x 40 KB: no room beside
      printf("| %s | %s |", async ? "cp.async" : "registers", apart ? "kept off" : "may share");
      for (int w : {0, 32, 128, 512}) {
        const double us = time_graph(st, 2 * copies, iters, [&](int i) {
          if (async)
            CK(lb_cu_launch(floor_tail<true>, dim3(g_sms * 4), dim3(256), smem, st, (const uint4 *)buf[i % copies], w, out));
          else
            CK(lb_cu_launch(floor_tail<false>, dim3(g_sms * 4), dim3(256), smem, st, (const uint4 *)buf[i % copies], w, out));
        });
        printf(" %.2f (%.0f%%) |", us, 100.0 * bytes / (us * 1e-6) / 1e9 / copy);
      }
      printf("\n");
    }
  CK(cudaStreamDestroy(st));
  for (auto &b : buf) CK(cudaFree(b));
  CK(cudaFree(out));
}

// ---- where a read waits behind the weight stream: one block an SM; loader blocks ask the copy
// engine for `per` bytes at their start, then (all blocks) after `delay` ns read 8 KB that sit in
// the L2 (ld.global.cg) and record how long that took. Readers (every M-th block) ask for nothing. ----
__global__ void hol(const uint8_t *big, uint32_t per, const uint4 *x, int m, unsigned long long *out, int delay) {
#if LB_BULK
  extern __shared__ __align__(128) uint8_t hsm[];
  __shared__ uint64_t hb;
  unsigned long long t0, t1, t2;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  const bool loader = m > 0 && blockIdx.x % m != 0;
  if (threadIdx.x == 0) {
    mbar_init(&hb);
    if (loader && per) {
      mbar_expect(&hb, per);
      for (uint32_t o = 0; o < per; o += 16384)
        bulk_copy(hsm, big + (size_t)blockIdx.x * per + o, 16384, &hb);
    }
  }
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
  while (t1 - t0 < (unsigned long long)delay);
  uint4 v0, v1;
  asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v0.x), "=r"(v0.y), "=r"(v0.z), "=r"(v0.w) : "l"(x + threadIdx.x));
  asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v1.x), "=r"(v1.y), "=r"(v1.z), "=r"(v1.w) : "l"(x + 256 + threadIdx.x));
  __shared__ unsigned sink;
  const unsigned dep = v0.x ^ v0.w ^ v1.y ^ v1.z;
  asm volatile("st.shared.u32 [%0], %1;" ::"r"(smem_addr(&sink)), "r"(dep) : "memory");
  __syncthreads();
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t2)::"memory");
  if (threadIdx.x == 0) {
    if (loader && per) mbar_wait(&hb, 0);
    out[blockIdx.x * 2] = t2 - t1, out[blockIdx.x * 2 + 1] = loader;
  }
#endif
}

static void time_hol() {
  const uint32_t per = 192 * 1024; // 132 x 192 KB: 26 MB, about 8.6 us of stream
  uint8_t *big;
  uint4 *x;
  unsigned long long *d;
  CK(cudaMalloc((void **)&big, (size_t)g_sms * per));
  CK(cudaMemset(big, 1, (size_t)g_sms * per));
  CK(cudaMalloc((void **)&x, 8192));
  CK(cudaMemset(x, 2, 8192));
  CK(cudaMalloc((void **)&d, g_sms * 16));
  CK(cudaFuncSetAttribute(hol, cudaFuncAttributeMaxDynamicSharedMemorySize, 120 * 1024));
  std::vector<unsigned long long> h(g_sms * 2);
  printf("\nAn 8 KB L2 read while loaders stream 26 MB (one block an SM), us: mean over readers / loaders\n\n"
         "| setting | delay ns | readers | loaders |\n| --- | ---: | ---: | ---: |\n");
  for (int mode = 0; mode < 4; mode++)
    for (int delay : {300, 1500, 4000}) {
      const int m = mode == 0 ? 0 : mode == 1 ? 2 : mode == 2 ? 8 : 1000000;
      for (int rep = 0; rep < 3; rep++) {
        CK(cudaMemset(big, rep, 4096)); // the big buffer leaves the L2 (26 MB < 50 MB: flush by rewriting)
        uint8_t *flush;
        CK(cudaMalloc((void **)&flush, 128 << 20));
        CK(cudaMemset(flush, 0, 128 << 20));
        CK(cudaFree(flush));
        CK(cudaMemset(x, 2, 8192));
        hol<<<g_sms, 256, 100 * 1024>>>(big, per, x, m, d, delay);
        CK(cudaDeviceSynchronize());
      }
      CK(cudaMemcpy(h.data(), d, g_sms * 16, cudaMemcpyDeviceToHost));
      double sr = 0, sl = 0;
      int nr = 0, nl = 0;
      for (int b = 0; b < g_sms; b++)
        if (h[2 * b + 1]) sl += h[2 * b], nl++;
        else sr += h[2 * b], nr++;
      printf("| %s | %d | %.2f | %.2f |\n", mode == 0 ? "no loads" : mode == 1 ? "every 2nd SM reads only" : mode == 2 ? "every 8th SM reads only" : "1 reader SM", delay,
             nr ? sr / nr / 1e3 : 0.0, nl ? sl / nl / 1e3 : 0.0);
    }
  CK(cudaFree(big));
  CK(cudaFree(x));
  CK(cudaFree(d));
}

// ---- reference: float, one thread a row ----
__global__ void gemv_ref(const uint8_t *codes, const uint32_t *scales, int rows, int cols, int group, int ng,
                         const __half *x, float *y, float *mag) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  double s = 0, m = 0;
  for (int c = 0; c < cols; c += 8) { // word: columns c + 0, 2, 4, 6 in the low nibbles' half, 1, 3, 5, 7 high
    uint32_t wd;
    memcpy(&wd, codes + (size_t)r * cols / 2 + c / 2, 4);
    const __half2 sz = *reinterpret_cast<const __half2 *>(&scales[(size_t)r * ng + c / group]);
    const float sc = __low2float(sz), z = __high2float(sz) - 1024.0f;
    for (int i = 0; i < 4; i++) {
      const double a = (double)sc * (((wd >> (4 * i)) & 15) - z) * __half2float(x[c + 2 * i]);
      const double b = (double)sc * (((wd >> (16 + 4 * i)) & 15) - z) * __half2float(x[c + 2 * i + 1]);
      s += a + b, m += fabs(a) + fabs(b);
    }
  }
  y[r] = (float)s, mag[r] = (float)m;
}


struct Weight {
  lb_cuda_qw qw;
  KW kw;
};

typedef void (*Launch)(const Weight &, const __half *, float *, cudaStream_t);


static void run_tc(const Weight &w, const __half *x, float *y, cudaStream_t st) {
  CK(q4tc_launch(&w.qw, x, y, NULL, NULL, false, false, st));
}

static void run_base(const Weight &w, const __half *x, float *y, cudaStream_t st) {
  lb_error err;
  if (lb_cuda_gemv(&w.qw, x, NULL, y, 1, false, st, &err) != LB_OK) fprintf(stderr, "%s\n", err.msg), exit(1);
}

template <int NBUF, int KS, int PRE, bool CUT = false, bool LATE = false>
static void run_bulk(const Weight &w, const __half *x, float *y, cudaStream_t st) {
  CK((bulk_launch<NBUF, KS, CUT, LATE>(w.kw, x, y, st, PRE)));
}

template <int CW, int RG, int R, int D, int PADK = 0, bool LATE = false>
static void run_stream(const Weight &w, const __half *x, float *y, cudaStream_t st) {
  CK((stream_launch<CW, RG, R, LATE>(w.kw, x, y, st, D, PADK * 1024)));
}

template <int RPB, int TRIG, bool CUT = false>
static void run_stage(const Weight &w, const __half *x, float *y, cudaStream_t st) {
  CK((stage_launch<RPB, TRIG, CUT>(w.kw, x, y, st)));
}

static void run_staged(const Weight &w, const __half *x, float *y, cudaStream_t st) {
  const StageLayout ly = StageLayout::of(w.kw, 0, true);
  const KX kx = {x, NULL, NULL, NULL, NULL, NULL, 0.0f, NULL, NULL};
  CK((launch_staged<FQ4One, false>(w.kw, kx, ly, (w.kw.rows + STAGE_ROWS - 1) / STAGE_ROWS, y, NULL, NULL, false, st)));
}

static void run_staged_tc(const Weight &w, const __half *x, float *y, cudaStream_t st) {
  const StageLayout ly = stc_layout(w.kw);
  const KX kx = {x, NULL, NULL, NULL, NULL, NULL, 0.0f, NULL, NULL};
  CK((launch_staged<FQ4One, false, true>(w.kw, kx, ly, (w.kw.rows + STAGE_ROWS - 1) / STAGE_ROWS, y, NULL, NULL, false, st)));
}

struct Variant {
  const char *name;
  Launch fn;
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next32() {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

#ifdef LB_GEMV_STAMPS
// Where one launch's time goes (blocks' stamps, -DLB_GEMV_STAMPS): 12 launches on 12 copies after
// a warm-up; for launches 3..9, from the launch's first block start: the first PDL wait return,
// the blocks' 3rd field (data in / steps done) at the 10th, 50th and 90th percentile, the last
// block's end, and the start of the next launch.
static std::vector<std::string> g_stamp_lines;
static void stamps(const char *name, Launch fn, std::vector<Weight> &ws, const __half *x, float *y, cudaStream_t st) {
  const unsigned cap = 1u << 16;
  unsigned long long *d;
  CK(cudaMalloc((void **)&d, (size_t)cap * 6 * 8));
  for (int i = 0; i < 12; i++) fn(ws[i], x, y, st);
  CK(cudaStreamSynchronize(st));
  CK(lb_gemv_stamps_set(d, cap));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < 12; i++) fn(ws[i], x, y, st);
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, st));
  CK(cudaStreamSynchronize(st));
  unsigned n;
  CK(lb_gemv_stamps_count(&n));
  n = n < cap ? n : cap;
  std::vector<unsigned long long> h((size_t)n * 6);
  CK(cudaMemcpy(h.data(), d, h.size() * 8, cudaMemcpyDeviceToHost));
  if (const char *dump = getenv("LAB_STAMPS_DUMP")) { // the raw records, for a closer look
    std::string path = std::string(dump) + "/" + name + ".bin";
    for (char &c : path) c = c == ' ' || c == '(' || c == ')' ? '_' : c;
    if (FILE *f = fopen(path.c_str(), "wb")) fwrite(h.data(), 8, h.size(), f), fclose(f);
  }
  CK(lb_gemv_stamps_set(NULL, 0));
  double acc[6] = {0};
  for (int l = 3; l < 10; l++) {
    std::vector<double> mid;
    double s0 = 1e300, w0 = 1e300, e = 0, ns = 1e300;
    for (unsigned i = 0; i < n; i++) {
      const unsigned long long *r = &h[(size_t)i * 6];
      if (r[0] == (uintptr_t)ws[l + 1].qw.codes) ns = fmin(ns, (double)r[2]);
      if (r[0] != (uintptr_t)ws[l].qw.codes) continue;
      s0 = fmin(s0, (double)r[2]), w0 = fmin(w0, (double)r[3]), e = fmax(e, (double)r[5]);
      mid.push_back((double)r[4]);
    }
    std::sort(mid.begin(), mid.end());
    const size_t m = mid.size();
    if (!m) return;
    acc[0] += w0 - s0, acc[1] += mid[m / 10] - s0, acc[2] += mid[m / 2] - s0, acc[3] += mid[m * 9 / 10] - s0;
    acc[4] += e - s0, acc[5] += ns - s0;
  }
  char line[256];
  snprintf(line, sizeof line, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |", name, acc[0] / 7e3, acc[1] / 7e3,
           acc[2] / 7e3, acc[3] / 7e3, acc[4] / 7e3, acc[5] / 7e3);
  g_stamp_lines.push_back(line);
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaFree(d));
}

#endif

// `copies` random 4-bit weights of rows x cols (LB_CUDA_Q4, groups of `group`): codes uniform,
// zero points 0..15, scales uniform in [lo, lo + span); the scales with 16 bytes to spare.
static std::vector<Weight> make_weights(int rows, int cols, int group, int copies, double lo, double span) {
  const int ng = (cols + group - 1) / group;
  const size_t cb = (size_t)rows * cols / 2, sb = (size_t)rows * ng * 4;
  std::vector<uint8_t> hc(cb);
  std::vector<uint32_t> hs((size_t)rows * ng);
  std::vector<Weight> ws(copies);
  for (int c = 0; c < copies; c++) {
    for (auto &b : hc) b = (uint8_t)next32();
    for (auto &s : hs) {
      __half2 h = __floats2half2_rn((float)(lo + span * (next32() & 1023) / 1024.0), 1024.0f + (float)(next32() % 16));
      memcpy(&s, &h, 4);
    }
    lb_cuda_qw &q = ws[c].qw;
    memset(&q, 0, sizeof q);
    q.kind = LB_CUDA_Q4, q.rows = rows, q.cols = cols, q.group = group, q.ngroups = ng;
    CK(cudaMalloc(&q.codes, cb));
    CK(cudaMalloc(&q.scales, sb + 16));
    if (c > 0 && getenv("LAB_SAME")) { // (an experiment: every copy the same bytes, as the sandbox's)
      CK(cudaMemcpy(q.codes, ws[0].qw.codes, cb, cudaMemcpyDeviceToDevice));
      CK(cudaMemcpy(q.scales, ws[0].qw.scales, sb, cudaMemcpyDeviceToDevice));
    } else {
      CK(cudaMemcpy(q.codes, hc.data(), cb, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(q.scales, hs.data(), sb, cudaMemcpyHostToDevice));
    }
    ws[c].kw = kw_of(&q);
    ws[c].kw.steps = cols / 32, ws[c].kw.spg = group / 32;
  }
  return ws;
}

#include "gemv_chain_lab.cuh" // time_chain: after the weights, gemv_ref and run_base it uses

int main(int argc, char **argv) {
  const int iters = argc > 1 ? atoi(argv[1]) : 100;
  setenv("LOWBIT_CUDA_GEMV_TC", "0", 1); // base: the register GEMV whatever the shape
  setenv("LOWBIT_CUDA_GEMV_STAGE", "0", 1);
  CK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0));
  int l2 = 0;
  CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
  // copy bandwidth (read + write), as the sandbox measures it
  double copy;
  {
    const size_t n = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0));
    for (int i = 0; i < 10; i++) CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    copy = 2.0 * n * 10 / (ms * 1e-3) / 1e9;
    CK(cudaFree(a));
    CK(cudaFree(b));
  }
  printf("copy %.0f GB/s, L2 %d MB, %d SMs, %d launches a timing\n\n", copy, l2 >> 20, g_sms, iters);
  if (argc > 2 && !strcmp(argv[2], "hol")) {
    time_hol();
    return 0;
  }
  if (argc > 2 && !strcmp(argv[2], "chain")) {
    time_chain(iters, copy, l2);
    return 0;
  }
  if (argc > 2 && !strcmp(argv[2], "floor")) {
    time_floors(iters, copy, l2);
    return 0;
  }
  const Variant vs[] = {
      {"base", run_base},
      {"tc", run_tc},
      {"bulk", run_bulk<1, 2, 2>},
      {"staged (library)", run_staged},
      {"staged tc", run_staged_tc},
      {"stage16 first", run_stage<16, 0>},
      {"stage16 wait", run_stage<16, 1>},
      {"stage16 x", run_stage<16, 2>},
      {"stage8 x", run_stage<8, 2>},
      {"stage32 x", run_stage<32, 2>},
      {"~stage16 cut", run_stage<16, 2, true>},
  };
  const int nv = sizeof vs / sizeof vs[0];
  const int shapes[][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {14336, 4096}, {12288, 4096}, {1000, 4224}};
  printf("| weight | bytes MB |");
  for (int v = 0; v < nv; v++) printf(" %s |", vs[v].name);
  printf("\n| --- | ---: |");
  for (int v = 0; v < nv; v++) printf(" ---: |");
  printf("\n");
  const char *only = getenv("LAB_ONLY"), *shape = getenv("LAB_SHAPE");
  for (const auto &sh : shapes) {
    if (shape && std::to_string(sh[0]) + "x" + std::to_string(sh[1]) != shape) continue;
    const int rows = sh[0], cols = sh[1], group = 128, ng = (cols + group - 1) / group;
    const size_t cb = (size_t)rows * cols / 2, sb = (size_t)rows * ng * 4, bytes = cb + sb + (size_t)cols * 2;
    int copies = (int)(2 * (size_t)l2 / (cb + sb)) + 2;
    if (copies > 64) copies = 64;
    std::vector<Weight> ws = make_weights(rows, cols, group, copies, 0.002, 0.01);
    std::vector<__half> hx(cols);
    for (auto &v : hx) v = __float2half((float)((int)(next32() % 2001) - 1000) / 1000.0f);
    __half *dx;
    float *dy, *dr, *dm;
    CK(cudaMalloc((void **)&dm, rows * 4));
    CK(cudaMalloc((void **)&dx, cols * 2));
    CK(cudaMalloc((void **)&dy, rows * 4));
    CK(cudaMalloc((void **)&dr, rows * 4));
    CK(cudaMemcpy(dx, hx.data(), cols * 2, cudaMemcpyHostToDevice));
    gemv_ref<<<(rows + 127) / 128, 128>>>((const uint8_t *)ws[0].qw.codes, (const uint32_t *)ws[0].qw.scales, rows,
                                          cols, group, ng, dx, dr, dm);
    CK(cudaDeviceSynchronize());
    std::vector<float> ref(rows), mag(rows), got(rows);
    CK(cudaMemcpy(ref.data(), dr, rows * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(mag.data(), dm, rows * 4, cudaMemcpyDeviceToHost));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    printf("| %d x %d | %.2f |", rows, cols, bytes / 1e6);
    for (int v = 0; v < nv; v++) {
      if (only && ("," + std::string(only) + ",").find("," + std::string(vs[v].name) + ",") == std::string::npos) {
        printf(" |");
        continue;
      }
      CK(cudaMemset(dy, 0xFF, rows * 4));
      vs[v].fn(ws[0], dx, dy, st);
      CK(cudaStreamSynchronize(st));
      CK(cudaGetLastError());
      CK(cudaMemcpy(got.data(), dy, rows * 4, cudaMemcpyDeviceToHost));
      // bound: a step's 32 products (q - z) x are summed in fp16 (16 HFMA2 then one add), each of
      // the 32 roundings within 2^-11 of a partial sum <= the step's sum |(q - z) x|: 2^-6 of
      // sum |w x| at worst (the decode and the scaling are exact or fp32)
      double worst = 0;
      for (int r = 0; r < rows; r++) {
        const double d = fabs((double)got[r] - ref[r]) / (mag[r] / 64.0 + 1e-30);
        if (!(d <= worst)) worst = d != d ? INFINITY : d;
      }
      if (!(worst <= 1.0) && vs[v].name[0] != '~') { // '~': parts left out, timed only
        printf(" FAIL %.3g |", worst);
        continue;
      }
      const double us = time_graph(st, 2 * copies, iters, [&](int i) { vs[v].fn(ws[i % copies], dx, dy, st); });
      printf(" %.2f (%.0f%%) |", us, 100.0 * bytes / (us * 1e-6) / 1e9 / copy);
      fflush(stdout);
#ifdef LB_GEMV_STAMPS
      if (rows == 4096 && copies >= 12) stamps(vs[v].name, vs[v].fn, ws, dx, dy, st);
#endif
    }
    printf("\n");
    CK(cudaStreamDestroy(st));
    for (auto &w : ws) {
      CK(cudaFree(w.qw.codes));
      CK(cudaFree(w.qw.scales));
    }
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    CK(cudaFree(dr));
    CK(cudaFree(dm));
  }
#ifdef LB_GEMV_STAMPS
  printf("\nStamps, 4096 rows, us from a launch's first block start: first wait return, the blocks' third "
         "stamp (bulk: first data in; base: steps done) at p10 / p50 / p90, last end, next launch's start\n\n"
         "| variant | wait | p10 | p50 | p90 | end | next |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (auto &l : g_stamp_lines) printf("%s\n", l.c_str());
#endif
  return 0;
}
