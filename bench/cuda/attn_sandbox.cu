// Prefill attention sandbox (issue 6): the flash kernel (lb_cuda_flash_attention) against a
// float64 reference on odd shapes, then timed against the GEMM path it replaces
// (lb_cuda_attention_gemm: cuBLAS Q K^T, the masked softmax, cuBLAS P V in blocks of 256 query
// rows, what the model runs with LOWBIT_CUDA_FLASH=0).
//
//   build/lb_attn_sandbox [REPS]   (needs a GPU; exits 1 when a check fails)
//
// Checks: q, k, v fp16 in (-2, 2) x (-1, 1) x (-1, 1); the cache past the last written key is
// filled with NaN (the kernel must not read it into the result) and the output rows past the
// call's rows with a marker (they must stay). Bound per output: 2^-9 * max |v|. The result is a
// convex combination of v rows: P rounded to fp16 moves each weight by 2^-11 of itself (2^-11 *
// max |v| in all), the fp16 output by 2^-11 of |O| <= max |v|, and the fp32 sums, exp2f and
// the fp32 scores (sums of exact fp16 products) stay below 2^-16 here; 2^-9 leaves a 2x margin.
// Timing: causal FLOPs (4 * heads * hd * visible keys summed over rows) over the time of REPS calls
// between two events, one sequence at pos 0.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "backend/cuda/cuda.h"

static lb_cuda_ctx *g_cx;
static lb_error g_err;
#define TRY(call)                                                                                  \
  do {                                                                                             \
    if ((call) != LB_OK) {                                                                         \
      fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, g_err.msg);                               \
      exit(2);                                                                                     \
    }                                                                                              \
  } while (0)

static uint64_t rng = 0x243F6A8885A308D3ull;
static float uni() { // (-1, 1)
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

struct Shape {
  int hd, heads, kvh, per, pos, nseq, window, ctx;
};

static void *dev(size_t bytes) {
  void *p;
  TRY(lb_cuda_alloc(g_cx, bytes, &p, &g_err));
  return p;
}

// float64 attention of row r of sequence s, head h, into o[hd]
static void reference(const Shape &S, const std::vector<__half> &q, const std::vector<__half> &kc,
                      const std::vector<__half> &vc, int s, int r, int h, double *o) {
  const int qd = S.heads * S.hd, kvd = S.kvh * S.hd, kv = h / (S.heads / S.kvh), i = S.pos + r;
  const int k0 = S.window > 0 && i - S.window + 1 > 0 ? i - S.window + 1 : 0;
  const size_t base = (size_t)s * S.ctx * kvd;
  std::vector<double> sc(i + 1 - k0);
  double mx = -INFINITY, sum = 0;
  for (int j = k0; j <= i; j++) {
    double d = 0;
    for (int e = 0; e < S.hd; e++)
      d += (double)__half2float(q[((size_t)s * S.per + r) * qd + h * S.hd + e]) *
           __half2float(kc[base + (size_t)j * kvd + kv * S.hd + e]);
    sc[j - k0] = d / sqrt((double)S.hd);
    mx = fmax(mx, sc[j - k0]);
  }
  for (auto &v : sc) sum += v = exp(v - mx);
  for (int e = 0; e < S.hd; e++) {
    double a = 0;
    for (int j = k0; j <= i; j++) a += sc[j - k0] * __half2float(vc[base + (size_t)j * kvd + kv * S.hd + e]);
    o[e] = a / sum;
  }
}

static lb_cuda_attn attn_of(const Shape &S) {
  lb_cuda_attn a = {};
  a.heads = S.heads, a.kv_heads = S.kvh, a.head_dim = S.hd, a.ctx = S.ctx, a.window = S.window;
  a.scale = 1.0f / sqrtf((float)S.hd);
  return a;
}

static bool check(const Shape &S) {
  const int qd = S.heads * S.hd, kvd = S.kvh * S.hd, n = S.per * S.nseq, spare = 3;
  std::vector<__half> q((size_t)n * qd), kc((size_t)S.nseq * S.ctx * kvd), vc(kc.size());
  for (auto &x : q) x = __float2half(2.0f * uni());
  const __half nan = __ushort_as_half(0x7FFF);
  for (int s = 0; s < S.nseq; s++)
    for (int j = 0; j < S.ctx; j++)
      for (int e = 0; e < kvd; e++) {
        const size_t i = ((size_t)s * S.ctx + j) * kvd + e;
        const bool written = j < S.pos + S.per;
        kc[i] = written ? __float2half(uni()) : nan, vc[i] = written ? __float2half(uni()) : nan;
      }
  const __half mark = __float2half(1000.0f);
  std::vector<__half> out((size_t)(n + spare) * qd, mark);
  void *dq = dev(q.size() * 2), *dk = dev(kc.size() * 2), *dv = dev(vc.size() * 2), *dout = dev(out.size() * 2);
  TRY(lb_cuda_put(g_cx, dq, q.data(), q.size() * 2, &g_err));
  TRY(lb_cuda_put(g_cx, dk, kc.data(), kc.size() * 2, &g_err));
  TRY(lb_cuda_put(g_cx, dv, vc.data(), vc.size() * 2, &g_err));
  TRY(lb_cuda_put(g_cx, dout, out.data(), out.size() * 2, &g_err));
  const lb_cuda_attn a = attn_of(S);
  TRY(lb_cuda_flash_attention(g_cx, dq, dk, dv, (int64_t)S.ctx * kvd, S.nseq, S.per, S.pos, &a, dout, &g_err));
  TRY(lb_cuda_get(g_cx, out.data(), dout, out.size() * 2, &g_err));
  double worst = 0, typ = 0;
  size_t cnt = 0;
  bool marks = true;
  std::vector<double> o(S.hd);
  for (int s = 0; s < S.nseq; s++)
    for (int r = 0; r < S.per; r++)
      for (int h = 0; h < S.heads; h++) {
        reference(S, q, kc, vc, s, r, h, o.data());
        for (int e = 0; e < S.hd; e++) {
          const double d = fabs((double)__half2float(out[((size_t)s * S.per + r) * qd + h * S.hd + e]) - o[e]);
          worst = d != d ? INFINITY : fmax(worst, d), typ += d, cnt++;
        }
      }
  for (size_t i = (size_t)n * qd; i < out.size(); i++) marks = marks && __half2float(out[i]) == 1000.0f;
  const double bound = 1.0 / 512; // 2^-9 * max |v| (max |v| < 1): see the header
  const bool ok = worst <= bound && marks;
  printf("| %d | %d / %d | %d | %d | %d | %d | %.2e | %.2e | %s |\n", S.hd, S.heads, S.kvh, S.per, S.pos, S.nseq,
         S.window, worst, typ / cnt, ok ? "ok" : marks ? "FAIL" : "FAIL (wrote past its rows)");
  void *p[] = {dq, dk, dv, dout};
  for (void *x : p) lb_cuda_release(x);
  return ok;
}

static void timing(const Shape &S, int reps) {
  const int qd = S.heads * S.hd, kvd = S.kvh * S.hd;
  std::vector<__half> h((size_t)S.ctx * (qd > kvd ? qd : kvd));
  for (auto &x : h) x = __float2half(uni());
  void *q = dev((size_t)S.per * qd * 2), *kc = dev((size_t)S.ctx * kvd * 2), *vc = dev((size_t)S.ctx * kvd * 2);
  void *o = dev((size_t)S.per * qd * 2);
  TRY(lb_cuda_put(g_cx, q, h.data(), (size_t)S.per * qd * 2, &g_err));
  TRY(lb_cuda_put(g_cx, kc, h.data(), (size_t)S.ctx * kvd * 2, &g_err));
  TRY(lb_cuda_put(g_cx, vc, h.data(), (size_t)S.ctx * kvd * 2, &g_err));
  const size_t scores = (size_t)S.heads * LB_CUDA_ATT_ROWS * S.per;
  float *sc = (float *)dev(scores * 4);
  void *p16 = dev(scores * 2);
  const lb_cuda_attn a = attn_of(S);
  double flop = 0;
  for (int r = 0; r < S.per; r++) flop += 4.0 * S.heads * S.hd * (r + 1);
  cudaStream_t st = (cudaStream_t)lb_cuda_stream(g_cx);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  double ms[2];
  for (int v = 0; v < 2; v++) {
    auto run = [&] {
      if (v) TRY(lb_cuda_attention_gemm(g_cx, q, kc, vc, S.per, 0, &a, sc, p16, o, &g_err));
      else TRY(lb_cuda_flash_attention(g_cx, q, kc, vc, 0, 1, S.per, 0, &a, o, &g_err));
    };
    run();
    cudaEventRecord(e0, st);
    for (int i = 0; i < reps; i++) run();
    cudaEventRecord(e1, st);
    cudaEventSynchronize(e1);
    float t;
    cudaEventElapsedTime(&t, e0, e1);
    ms[v] = t / reps;
  }
  printf("| %d | %d / %d | %d | %.3f | %.0f | %.3f | %.0f | %.2fx | %.0f |\n", S.hd, S.heads, S.kvh, S.per, ms[0],
         flop / ms[0] / 1e9, ms[1], flop / ms[1] / 1e9, ms[1] / ms[0], scores * 6 / 1048576.0);
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  void *p[] = {q, kc, vc, o, sc, p16};
  for (void *x : p) lb_cuda_release(x);
}

int main(int argc, char **argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 10;
  TRY(lb_cuda_open(&g_cx, &g_err));
  printf("Flash attention against float64 (bound 2^-9 of max |v|; NaN past the written keys)\n\n"
         "| hd | heads / kv | rows | pos | seqs | window | worst | mean | |\n"
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
  const Shape checks[] = {
      {64, 8, 4, 100, 0, 1, 0, 160},     {64, 8, 4, 1, 0, 1, 0, 64},      {64, 2, 2, 3, 61, 3, 0, 70},
      {128, 4, 1, 200, 37, 2, 0, 300},   {128, 8, 8, 130, 300, 1, 96, 440}, {128, 6, 2, 64, 64, 1, 0, 130},
      {64, 4, 2, 257, 0, 2, 33, 260},    {128, 32, 8, 520, 0, 1, 0, 600},
  };
  bool ok = true;
  for (const auto &s : checks) ok = check(s) && ok;
  printf("\nCausal prefill at pos 0, ms a call and TFLOP/s (causal FLOPs); GEMM path scratch: its S and P\n\n"
         "| hd | heads / kv | rows | flash ms | TFLOP/s | GEMM path ms | TFLOP/s | speed-up | GEMM scratch MiB |\n"
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (int per : {512, 2048, 4096, 8192}) timing({128, 32, 32, per, 0, 1, 0, per}, reps);
  for (int per : {2048, 8192}) timing({128, 32, 8, per, 0, 1, 0, per}, reps);
  timing({64, 8, 4, 2048, 0, 1, 0, 2048}, reps);
  lb_cuda_close(g_cx);
  printf("\n%s\n", ok ? "all checks passed" : "FAILED");
  return ok ? 0 : 1;
}
