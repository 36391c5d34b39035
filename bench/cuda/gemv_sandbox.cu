// Kernel sandbox for the CUDA decode GEMV (issue 6): each kernel against the CPU reference on odd
// shapes, then timed in GB/s against the device's copy bandwidth.
//
//   build/lb_kernel_sandbox [ITERS]        (needs a GPU; exits 1 when a check fails)
//
// Correctness: random 4-bit g128 weights (lb_qweight, integer zero points) and fp16 activations;
// the reference is float64 sum of dequant(W) (lb_qweight_dequant_row) times the same fp16 values.
// Bound per output: 2^-6 * sum |w x| (each of a 32-column step's 16 half2 adds rounds by at most
// 2^-11 of a partial sum no larger than the step's sum |w x|: 32 * 2^-11) + 1e-6 * sum |w x|
// (fp32 accumulation of the steps); the typical error is printed too.
// Timing: ITERS launches captured in a CUDA graph, between two events; bytes = codes + scales +
// zeros + x read once. Warm relaunches one copy of the weight; cold cycles through copies that
// together exceed twice the L2 (the decode step's case: every weight comes from memory), with
// programmatic dependent launch off and on. Copy: cudaMemcpyAsync device to device of 1 GiB,
// counted as read + write.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
extern "C" {
#include "quant/qweight.h"
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand() {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

#define CK(call)                                                                                   \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));       \
      exit(2);                                                                                     \
    }                                                                                              \
  } while (0)

static bool make(int64_t rows, int64_t cols, int64_t group, lb_qweight *w) {
  memset(w, 0, sizeof *w);
  w->kind = LB_QK_AFFINE, w->rows = rows, w->cols = cols, w->bits = 4, w->group = group;
  lb_error err = {};
  if (lb_qweight_alloc(w, false, false, &err) != LB_OK) return false;
  for (int64_t i = 0; i < rows * cols; i++) w->q[i] = (uint8_t)(urand() * 16);
  for (int64_t i = 0; i < rows * w->ngroups; i++)
    w->scale[i] = (float)(0.005 + 0.02 * urand()), w->zero[i] = (float)(int)(urand() * 16);
  return true;
}

// One shape: returns the worst error as a fraction of its bound (> 1: failed).
static double check(int64_t rows, int64_t cols, int batch, double *typical) {
  lb_qweight w;
  if (!make(rows, cols, 128, &w)) return INFINITY;
  lb_cuda_q4 dw;
  lb_error err = {};
  const lb_qweight *wp = &w;
  if (lb_cuda_q4_upload(NULL, &wp, 1, &dw, &err) != LB_OK) {
    fprintf(stderr, "upload: %s\n", err.msg);
    exit(2);
  }
  size_t nx = (size_t)(batch * cols);
  __half *hx = (__half *)malloc(nx * sizeof(__half));
  float *xf = (float *)malloc(nx * sizeof(float)), *row = (float *)malloc((size_t)cols * 4);
  for (size_t i = 0; i < nx; i++) hx[i] = __float2half((float)(2 * urand() - 1)), xf[i] = __half2float(hx[i]);
  void *dx;
  float *dy, *hy = (float *)malloc((size_t)(batch * rows) * 4);
  CK(cudaMalloc(&dx, nx * sizeof(__half)));
  CK(cudaMalloc((void **)&dy, (size_t)(batch * rows) * 4));
  CK(cudaMemcpy(dx, hx, nx * sizeof(__half), cudaMemcpyHostToDevice));
  if (lb_cuda_gemv_q4(&dw, dx, dy, batch, false, NULL, &err) != LB_OK) {
    fprintf(stderr, "gemv: %s\n", err.msg);
    exit(2);
  }
  CK(cudaMemcpy(hy, dy, (size_t)(batch * rows) * 4, cudaMemcpyDeviceToHost));
  double worst = 0, sq = 0;
  for (int64_t r = 0; r < rows; r++) {
    lb_qweight_dequant_row(&w, r, row);
    for (int b = 0; b < batch; b++) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; c++) {
        double t = (double)row[c] * xf[b * cols + c];
        ref += t, mag += fabs(t);
      }
      double e = fabs(hy[b * rows + r] - ref), bound = (0.015625 + 1e-6) * mag + 1e-30;
      worst = fmax(worst, e / bound);
      sq += (e / (mag + 1e-30)) * (e / (mag + 1e-30));
    }
  }
  *typical = sqrt(sq / (double)(rows * batch));
  // acc: a second product added onto the first is twice it (up to one fp32 rounding)
  float *hy2 = (float *)malloc((size_t)(batch * rows) * 4);
  if (lb_cuda_gemv_q4(&dw, dx, dy, batch, true, NULL, &err) != LB_OK) exit(2);
  CK(cudaMemcpy(hy2, dy, (size_t)(batch * rows) * 4, cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < rows * batch; i++)
    if (fabs(hy2[i] - 2.0 * hy[i]) > 1e-6 * fabs(hy[i]) + 1e-30) worst = INFINITY;
  // the dequantized fp16 weight: (q - z) exact, times the fp16 scale, one fp16 rounding
  __half *dq, *hq = (__half *)malloc((size_t)(rows * cols) * 2);
  CK(cudaMalloc((void **)&dq, (size_t)(rows * cols) * 2));
  if (lb_cuda_q4_dequant(NULL, &dw, dq, &err) != LB_OK) exit(2);
  CK(cudaMemcpy(hq, dq, (size_t)(rows * cols) * 2, cudaMemcpyDeviceToHost));
  for (int64_t r = 0; r < rows; r++) {
    lb_qweight_dequant_row(&w, r, row);
    for (int64_t c = 0; c < cols; c++) {
      // the scale is rounded to fp16 too: 2^-11 each, so 2^-10 in all
      double ref = row[c], e = fabs((double)__half2float(hq[r * cols + c]) - ref);
      if (e > fabs(ref) * (1.0 / 1024) + 1e-7) worst = INFINITY;
    }
  }
  CK(cudaFree(dq));
  free(hq), free(hy2);
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  lb_cuda_q4_free(&dw);
  lb_qweight_free(&w);
  free(hx), free(xf), free(row), free(hy);
  return worst;
}

// The gate/up GEMV with SiLU in its epilogue (interleaved pairs) against float64 silu(g) * u.
// Bound: g and u each within the GEMV's bound e (above); |d silu(g) / dg| <= 1.1, so the result
// moves by at most 1.1 |u| e_g + |silu(g)| e_u, plus its fp16 rounding (2^-11 of it).
static double check_silu(int64_t inter, int64_t cols, int batch) {
  lb_qweight wg, wu;
  if (!make(inter, cols, 128, &wg) || !make(inter, cols, 128, &wu)) return INFINITY;
  lb_cuda_q4 dw;
  lb_error err = {};
  if (lb_cuda_q4_upload_pairs(NULL, &wg, &wu, &dw, &err) != LB_OK) {
    fprintf(stderr, "upload pairs: %s\n", err.msg);
    exit(2);
  }
  const size_t nx = (size_t)(batch * cols);
  __half *hx = (__half *)malloc(nx * 2), *ho = (__half *)malloc((size_t)(batch * inter) * 2);
  float *xf = (float *)malloc(nx * 4), *bias = (float *)malloc((size_t)(2 * inter) * 4);
  float *rg = (float *)malloc((size_t)cols * 4), *ru = (float *)malloc((size_t)cols * 4);
  for (size_t i = 0; i < nx; i++) hx[i] = __float2half((float)(2 * urand() - 1)), xf[i] = __half2float(hx[i]);
  for (int64_t i = 0; i < 2 * inter; i++) bias[i] = (float)(urand() - 0.5);
  void *dx, *dout;
  float *db;
  CK(cudaMalloc(&dx, nx * 2));
  CK(cudaMalloc(&dout, (size_t)(batch * inter) * 2));
  CK(cudaMalloc((void **)&db, (size_t)(2 * inter) * 4));
  CK(cudaMemcpy(dx, hx, nx * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(db, bias, (size_t)(2 * inter) * 4, cudaMemcpyHostToDevice));
  if (lb_cuda_gemv_q4_silu(&dw, dx, db, dout, batch, NULL, &err) != LB_OK) {
    fprintf(stderr, "gemv silu: %s\n", err.msg);
    exit(2);
  }
  CK(cudaMemcpy(ho, dout, (size_t)(batch * inter) * 2, cudaMemcpyDeviceToHost));
  double worst = 0;
  for (int64_t i = 0; i < inter; i++) {
    lb_qweight_dequant_row(&wg, i, rg);
    lb_qweight_dequant_row(&wu, i, ru);
    for (int b = 0; b < batch; b++) {
      double g = bias[i], u = bias[inter + i], mg = 0, mu = 0;
      for (int64_t c = 0; c < cols; c++) {
        const double x = xf[b * cols + c];
        g += rg[c] * x, u += ru[c] * x, mg += fabs(rg[c] * x), mu += fabs(ru[c] * x);
      }
      const double sg = g / (1 + exp(-g)), ref = sg * u, eb = 0.015625 + 1e-6;
      const double bound = 1.1 * fabs(u) * eb * mg + fabs(sg) * eb * mu + fabs(ref) / 2048 + 1e-6;
      worst = fmax(worst, fabs(__half2float(ho[b * inter + i]) - ref) / bound);
    }
  }
  CK(cudaFree(dx));
  CK(cudaFree(dout));
  CK(cudaFree(db));
  lb_cuda_q4_free(&dw);
  lb_qweight_free(&wg);
  lb_qweight_free(&wu);
  free(hx), free(ho), free(xf), free(bias), free(rg), free(ru);
  return worst;
}

static double copy_gbs(int iters) {
  size_t n = (size_t)1 << 30;
  void *a, *b;
  CK(cudaMalloc(&a, n));
  CK(cudaMalloc(&b, n));
  CK(cudaMemset(a, 1, n));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice));
  CK(cudaEventRecord(e0));
  for (int i = 0; i < iters / 10 + 1; i++) CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice));
  CK(cudaEventRecord(e1));
  CK(cudaEventSynchronize(e1));
  float ms;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  CK(cudaFree(a));
  CK(cudaFree(b));
  return 2.0 * (double)n * (iters / 10 + 1) / (ms * 1e-3) / 1e9;
}

// Microseconds per launch of `iters` GEMVs captured in one graph, cycling through `copies` copies
// of the weight (copies > 1: more bytes than the L2 holds, so every launch reads from memory).
static double time_launches(const lb_cuda_q4 *ws, int copies, const void *dx, float *dy, int batch,
                            int iters) {
  lb_error err = {};
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  for (int i = 0; i < 2 * copies; i++) lb_cuda_gemv_q4(&ws[i % copies], dx, dy, batch, false, st, &err);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < iters; i++) lb_cuda_gemv_q4(&ws[i % copies], dx, dy, batch, false, st, &err);
  CK(cudaStreamEndCapture(st, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  CK(cudaGraphLaunch(exec, st));
  CK(cudaEventRecord(e0, st));
  CK(cudaGraphLaunch(exec, st));
  CK(cudaEventRecord(e1, st));
  CK(cudaEventSynchronize(e1));
  float ms;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaStreamDestroy(st));
  if (err.code) {
    fprintf(stderr, "gemv: %s\n", err.msg);
    exit(2);
  }
  return ms * 1e3 / iters;
}

static void time_shape(int64_t rows, int64_t cols, int batch, int iters, double copy, size_t l2) {
  lb_qweight w;
  if (!make(rows, cols, 128, &w)) exit(2);
  lb_error err = {};
  const lb_qweight *wp = &w;
  enum { MAXC = 64 };
  lb_cuda_q4 ws[MAXC];
  if (lb_cuda_q4_upload(NULL, &wp, 1, &ws[0], &err) != LB_OK) exit(2);
  const size_t cb = (size_t)(rows * cols / 2), sb = (size_t)(rows * ws[0].ngroups * 4);
  int copies = (int)((2 * l2) / (cb + sb) + 2);
  if (copies > MAXC) copies = MAXC;
  for (int i = 1; i < copies; i++) { // more copies: together twice the L2 or more
    ws[i] = ws[0];
    CK(cudaMalloc(&ws[i].codes, cb));
    CK(cudaMalloc(&ws[i].sz, sb));
    CK(cudaMemcpy(ws[i].codes, ws[0].codes, cb, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy(ws[i].sz, ws[0].sz, sb, cudaMemcpyDeviceToDevice));
  }
  void *dx;
  float *dy;
  CK(cudaMalloc(&dx, (size_t)(batch * cols) * 2));
  CK(cudaMemset(dx, 0, (size_t)(batch * cols) * 2));
  CK(cudaMalloc((void **)&dy, (size_t)(batch * rows) * 4));
  const bool pdl = lb_cuda_pdl();
  lb_cuda_set_pdl(false);
  const double warm = time_launches(ws, 1, dx, dy, batch, iters);
  const double cold = time_launches(ws, copies, dx, dy, batch, iters);
  lb_cuda_set_pdl(true);
  const double cold_pdl = time_launches(ws, copies, dx, dy, batch, iters);
  lb_cuda_set_pdl(pdl);
  const double bytes = (double)(cb + sb) + 2.0 * batch * cols;
  const double gw = bytes / (warm * 1e-6) / 1e9, gc = bytes / (cold * 1e-6) / 1e9;
  const double gp = bytes / (cold_pdl * 1e-6) / 1e9;
  printf("| %lld x %lld | %d | %.1f | %.2f | %.0f%% | %.2f | %.0f%% | %.2f | %.0f | %.0f%% |\n",
         (long long)rows, (long long)cols, batch, bytes / 1e6, warm, 100 * gw / copy, cold,
         100 * gc / copy, cold_pdl, gp, 100 * gp / copy);
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  for (int i = 0; i < copies; i++) lb_cuda_q4_free(&ws[i]);
  lb_qweight_free(&w);
}

int main(int argc, char **argv) {
  int iters = argc > 1 ? atoi(argv[1]) : 200;
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  printf("device: %s\n\n", p.name);
  int failed = 0;
  printf("| check rows x cols | batch | worst error / bound | typical relative error |\n");
  printf("| --- | ---: | ---: | ---: |\n");
  const int64_t shapes[][2] = {{1, 4096}, {7, 160}, {129, 4128}, {4096, 4096}, {11008, 4096}, {4096, 11008}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int batch = 1; batch <= 8; batch *= 2) {
      if (shapes[i][0] > 1000 && batch > 1) continue; // the reference is slow; odd shapes cover it
      double typ, worst = check(shapes[i][0], shapes[i][1], batch > 4 ? 5 : batch, &typ);
      printf("| %lld x %lld | %d | %.3f | %.2e |\n", (long long)shapes[i][0],
             (long long)shapes[i][1], batch > 4 ? 5 : batch, worst, typ);
      failed += !(worst <= 1.0);
    }
  const int64_t pairs[][2] = {{3, 160}, {129, 4128}, {1024, 4096}};
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
    for (int batch = 1; batch <= 5; batch += 4) {
      double worst = check_silu(pairs[i][0], pairs[i][1], batch);
      printf("| gate/up + SiLU %lld x %lld | %d | %.3f | |\n", (long long)pairs[i][0],
             (long long)pairs[i][1], batch, worst);
      failed += !(worst <= 1.0);
    }
  double copy = copy_gbs(iters);
  printf("\ncopy bandwidth (cudaMemcpy D2D, 1 GiB, read + write): %.0f GB/s; L2 %.0f MB\n\n", copy,
         p.l2CacheSize / 1e6);
  printf("warm: one copy of the weight, relaunched (partly served by the L2); cold: copies cycled, "
         "more than twice the L2, every launch from memory; PDL: each launch loads its first "
         "weights while the one before finishes (as in the decode step)\n\n");
  printf("| weight rows x cols | batch | MB read | warm us | of copy | cold us | of copy | cold+PDL us | GB/s | of copy |\n");
  printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  const int64_t timed[][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {14336, 4096}, {4096, 14336}};
  for (size_t i = 0; i < sizeof timed / sizeof timed[0]; i++)
    for (int batch = 1; batch <= 8; batch *= 2) time_shape(timed[i][0], timed[i][1], batch, iters, copy, (size_t)p.l2CacheSize);
  printf("\n%s\n", failed ? "FAILED" : "all checks passed");
  return failed ? 1 : 0;
}
