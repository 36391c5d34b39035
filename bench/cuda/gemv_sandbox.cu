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
// Timing: 200 launches captured in a CUDA graph, between two events; bytes = codes + scales +
// zeros + x read once. Copy: cudaMemcpyAsync device to device of 1 GiB, counted as read + write.
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

static void time_shape(int64_t rows, int64_t cols, int batch, int iters, double copy) {
  lb_qweight w;
  if (!make(rows, cols, 128, &w)) exit(2);
  lb_cuda_q4 dw;
  lb_error err = {};
  const lb_qweight *wp = &w;
  if (lb_cuda_q4_upload(NULL, &wp, 1, &dw, &err) != LB_OK) exit(2);
  void *dx;
  float *dy;
  CK(cudaMalloc(&dx, (size_t)(batch * cols) * 2));
  CK(cudaMemset(dx, 0, (size_t)(batch * cols) * 2));
  CK(cudaMalloc((void **)&dy, (size_t)(batch * rows) * 4));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  for (int i = 0; i < 10; i++) lb_cuda_gemv_q4(&dw, dx, dy, batch, false, st, &err);
  // the launches captured in a CUDA graph (as the decode step will be): no launch gaps
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < iters; i++) lb_cuda_gemv_q4(&dw, dx, dy, batch, false, st, &err);
  CK(cudaStreamEndCapture(st, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  CK(cudaGraphLaunch(exec, st));
  CK(cudaEventRecord(e0, st));
  CK(cudaGraphLaunch(exec, st));
  CK(cudaEventRecord(e1, st));
  CK(cudaEventSynchronize(e1));
  float ms;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  double us = ms * 1e3 / iters;
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaStreamDestroy(st));
  double bytes = (double)rows * cols / 2 + 2.0 * 2 * rows * dw.ngroups + 2.0 * batch * cols;
  double gbs = bytes / (us * 1e-6) / 1e9;
  printf("| %lld x %lld | %d | %.2f | %.1f | %.0f | %.0f%% |\n", (long long)rows, (long long)cols,
         batch, us, bytes / 1e6, gbs, 100 * gbs / copy);
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  lb_cuda_q4_free(&dw);
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
  double copy = copy_gbs(iters);
  printf("\ncopy bandwidth (cudaMemcpy D2D, 1 GiB, read + write): %.0f GB/s\n\n", copy);
  printf("| weight rows x cols | batch | us | MB read | GB/s | of copy |\n");
  printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  const int64_t timed[][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {14336, 4096}, {4096, 14336}};
  for (size_t i = 0; i < sizeof timed / sizeof timed[0]; i++)
    for (int batch = 1; batch <= 8; batch *= 2) time_shape(timed[i][0], timed[i][1], batch, iters, copy);
  printf("\n%s\n", failed ? "FAILED" : "all checks passed");
  return failed ? 1 : 0;
}
