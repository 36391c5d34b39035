// Kernel sandbox for the CUDA decode GEMV (issue 6): each weight format's kernel against the CPU
// reference on odd shapes, then timed in GB/s against the device's copy bandwidth.
//
//   build/lb_kernel_sandbox [ITERS [FORMAT]]   (needs a GPU; exits 1 when a check fails; FORMAT:
//                                              one of the names below, e.g. "int8", alone;
//                                              SANDBOX_PART=gemv: the checks and the GEMV's
//                                              table alone, gemvtime: that table alone, mma:
//                                              the batch table alone; SANDBOX_SHAPE=4096x4096:
//                                              the GEMV table for that weight alone;
//                                              SANDBOX_STAMPS_DUMP=DIR: a stamps build writes
//                                              its raw records there, stamps_timeline.py)
//
// Weights: int4 g128 (random codes, integer zero points), NF4 with double quantization, FP8 E4M3
// per channel and in 128 x 128 blocks, LLM.int8 with threshold 6, made by the project's quantizers
// from random weights, HQQ-like 4-bit g64 (random codes, fractional zero points in [-2, 17] and
// scales, both fp16 values as HQQ's checkpoints hold them) and 8-bit affine g128 (random codes and
// integer zero points, as RTN or GPTQ 8-bit); activations are fp16 in (-1, 1), with some columns of
// rows 0, 9, 18, ... at 6..10 (LLM.int8's outliers).
// Correctness: the fp16 formats against the float64 sum of dequant(W) (lb_qweight_dequant_row)
// times the same fp16 values. Bound per output: (2^-6 + 2^-10) * sum |w x|: each of a step's at
// most 16 half2 adds rounds by at most 2^-11 of a partial sum no larger than the step's sum |w x|
// (32 * 2^-11 with margin), NF4's code book and HQQ's q - zero are rounded to fp16 (2^-11 of
// each weight), and fp32 accumulation adds 1e-6. LLM.int8 against lb_int8_linear_ref (bitsandbytes' product on the CPU:
// the same int8 codes and int32 sums, the outlier columns in fp32 in another order): 1e-5 *
// sum |w x|. The typical error is printed too.
// Timing: ITERS launches captured in a CUDA graph, between two events; bytes = codes + scales + x
// read once. Warm relaunches one copy of the weight; cold cycles through copies that together
// exceed twice the L2 (the decode step's case: every weight comes from memory), with programmatic
// dependent launch off and on. LLM.int8's time includes its activation quantization. Copy:
// cudaMemcpyAsync device to device of 1 GiB, counted as read + write. The dequantization to fp16
// (prefill's extra cost over an fp16 model) is timed alone, its bytes the codes and scales read
// and the fp16 weight written.
// The floor of one launch a weight, in the same timing: an empty kernel, and one that only reads
// as many bytes (all its loads before the PDL wait).
#include <algorithm>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/util.cuh"
extern "C" {
#include "quant/bnb.h"
#include "quant/fp8.h"
#include "quant/qweight.h"
}
#include "timing.cuh"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand() {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

enum Kind { K_Q4, K_NF4, K_FP8, K_FP8B, K_I8, K_HQ4, K_A8, K_COUNT };
static const char *const KNAME[K_COUNT] = {"int4 g128", "nf4 dq", "fp8 channel", "fp8 128x128", "int8", "hqq4 g64",
                                           "int8 affine g128"};

static void die(const char *what, const lb_error &err) {
  fprintf(stderr, "%s: %s\n", what, err.msg);
  exit(2);
}

// A weight of kind k: random, roughly normal values of scale 0.02, quantized by the project.
static void make(Kind k, int64_t rows, int64_t cols, lb_qweight *w) {
  memset(w, 0, sizeof *w);
  lb_error err = {};
  if (k == K_Q4 || k == K_HQ4 || k == K_A8) {
    const int levels = k == K_A8 ? 256 : 16;
    w->kind = LB_QK_AFFINE, w->rows = rows, w->cols = cols, w->bits = k == K_A8 ? 8 : 4, w->group = k == K_HQ4 ? 64 : 128;
    if (lb_qweight_alloc(w, false, false, &err) != LB_OK) die("alloc", err);
    for (int64_t i = 0; i < rows * cols; i++) w->q[i] = (uint8_t)(urand() * levels);
    for (int64_t i = 0; i < rows * w->ngroups; i++)
      if (k != K_HQ4)
        w->scale[i] = (float)((0.005 + 0.02 * urand()) * 16 / levels), w->zero[i] = (float)(int)(urand() * levels);
      else // HQQ: fractional zero points, a little past the codes' range, both as fp16 (as its checkpoints hold them)
        w->scale[i] = __half2float(__float2half((float)(0.005 + 0.02 * urand()))),
        w->zero[i] = __half2float(__float2half((float)(19 * urand() - 2)));
    return;
  }
  float *f = (float *)malloc((size_t)(rows * cols) * 4);
  for (int64_t i = 0; i < rows * cols; i++) f[i] = (float)(0.02 * (urand() + urand() + urand() - 1.5));
  lb_status s = k == K_NF4    ? lb_bnb4_quantize(f, rows, cols, true, 64, true, "sandbox", w, &err)
                : k == K_FP8  ? lb_fp8_quantize(f, rows, cols, LB_F8_E4M3, 1, cols, w, &err)
                : k == K_FP8B ? lb_fp8_quantize(f, rows, cols, LB_F8_E4M3, 128, 128, w, &err)
                              : lb_int8_quantize(f, rows, cols, 6.0f, "sandbox", w, &err);
  free(f);
  if (s != LB_OK) die("quantize", err);
}

static void upload(const lb_qweight *const *ws, int n, bool pairs, lb_cuda_qw *dw) {
  lb_error err = {};
  if (lb_cuda_qw_upload(NULL, ws, n, pairs, dw, &err) != LB_OK) die("upload", err);
}

// batch rows of fp16 activations (and their float values); outliers every 97th column in rows
// 0, 9, 18, ... (each its own columns, so LLM.int8's row tiles of 8 (i8x.cu) each see others)
static __half *activations(int batch, int64_t cols, float *xf) {
  __half *hx = (__half *)malloc((size_t)(batch * cols) * 2);
  for (int64_t i = 0; i < batch * cols; i++) {
    double v = 2 * urand() - 1;
    const int64_t b = i / cols, c = i % cols;
    if (b % 9 == 0 && c % 97 == (5 + 11 * b) % 97) v = (v < 0 ? -1 : 1) * (6 + 4 * urand());
    hx[i] = __float2half((float)v), xf[i] = __half2float(hx[i]);
  }
  return hx;
}

// ref[b * rows + r] and mag (sum |w x|) of the product on the CPU (float64, or bitsandbytes' int8)
static void reference(Kind k, const lb_qweight *w, const float *xf, int batch, double *ref, double *mag) {
  float *row = (float *)malloc((size_t)w->cols * 4);
  for (int64_t r = 0; r < w->rows; r++) {
    lb_qweight_dequant_row(w, r, row);
    for (int b = 0; b < batch; b++) {
      double s = 0, m = 0;
      for (int64_t c = 0; c < w->cols; c++) {
        const double t = (double)row[c] * xf[b * w->cols + c];
        s += t, m += fabs(t);
      }
      ref[b * w->rows + r] = s, mag[b * w->rows + r] = m;
    }
  }
  free(row);
  if (k != K_I8) return;
  float *y = (float *)malloc((size_t)(batch * w->rows) * 4);
  lb_error err = {};
  if (lb_int8_linear_ref(w, xf, batch, y, &err) != LB_OK) die("int8 reference", err);
  for (int64_t i = 0; i < batch * w->rows; i++) ref[i] = y[i];
  free(y);
}

// mma: lb_cuda_qmma, whose weights reach the tensor cores as fp16 through at most three roundings
// of 2^-11 each (NF4's code book or HQQ's q - zero, the scale, their product) and whose sums are fp32: 2^-9 of
// sum |w x|, and 1e-6 for the sums. LLM.int8 keeps the GEMV's bound on either path: the same int8
// codes and exact int32 sums, only the fp32 outlier sum in another order.
static double bound_of(Kind k, double mag, bool mma = false) {
  return (k == K_I8 ? 1e-5 : mma ? 0.001953125 + 1e-6 : 0.015625 + 0.0009765625 + 1e-6) * mag + 1e-30;
}

static void product(const lb_cuda_qw *w, const void *dx, lb_cuda_i8x *i8x, float *dy, int batch, bool acc, bool mma,
                    cudaStream_t st) {
  lb_error err = {};
  const lb_status s = mma ? lb_cuda_qmma(w, dx, i8x, dy, batch, acc, st, &err) : lb_cuda_gemv(w, dx, i8x, dy, batch, acc, st, &err);
  if (s != LB_OK) die(mma ? "qmma" : "gemv", err);
}

// The dequantized fp16 weight: the reference value rounded to fp16 (2^-11), Q4's scale is
// rounded to fp16 too (2^-11 more; the HQQ-like weight's scale is an fp16 value, and its q - zero
// is rounded instead). 0 when within, INFINITY when not.
static double check_dequant(const lb_qweight *w, const lb_cuda_qw *dw) {
  const int64_t rows = w->rows, cols = w->cols;
  lb_error err = {};
  __half *dq, *hq = (__half *)malloc((size_t)(rows * cols) * 2);
  float *row = (float *)malloc((size_t)cols * 4);
  CK(cudaMalloc((void **)&dq, (size_t)(rows * cols) * 2));
  if (lb_cuda_qw_dequant(NULL, dw, dq, &err) != LB_OK) die("dequant", err);
  CK(cudaMemcpy(hq, dq, (size_t)(rows * cols) * 2, cudaMemcpyDeviceToHost));
  double worst = 0;
  for (int64_t r = 0; r < rows; r++) {
    lb_qweight_dequant_row(w, r, row);
    for (int64_t c = 0; c < cols; c++) {
      double v = row[c], e = fabs((double)__half2float(hq[r * cols + c]) - v);
      if (e > fabs(v) * (1.0 / 1024) + 1e-7) worst = INFINITY;
    }
  }
  CK(cudaFree(dq));
  free(hq), free(row);
  return worst;
}

// One shape: returns the worst error as a fraction of its bound (> 1: failed). mma: the
// tensor-core product (lb_cuda_qmma) instead of the GEMV, and no dequantization check.
static double check(Kind k, int64_t rows, int64_t cols, int batch, double *typical, bool mma = false) {
  lb_qweight w;
  make(k, rows, cols, &w);
  const lb_qweight *wp = &w;
  lb_cuda_qw dw;
  upload(&wp, 1, false, &dw);
  lb_cuda_i8x i8x;
  lb_error err = {};
  if (lb_cuda_i8x_alloc(NULL, cols, &i8x, &err) != LB_OK) die("i8x", err);
  const size_t nx = (size_t)(batch * cols), ny = (size_t)(batch * rows);
  float *xf = (float *)malloc(nx * 4), *hy = (float *)malloc(ny * 4), *hy2 = (float *)malloc(ny * 4);
  __half *hx = activations(batch, cols, xf);
  double *ref = (double *)malloc(ny * 8), *mag = (double *)malloc(ny * 8);
  reference(k, &w, xf, batch, ref, mag);
  void *dx;
  float *dy;
  CK(cudaMalloc(&dx, nx * 2));
  CK(cudaMalloc((void **)&dy, ny * 4));
  CK(cudaMemcpy(dx, hx, nx * 2, cudaMemcpyHostToDevice));
  product(&dw, dx, &i8x, dy, batch, false, mma, NULL);
  CK(cudaMemcpy(hy, dy, ny * 4, cudaMemcpyDeviceToHost));
  double worst = 0, sq = 0;
  for (size_t i = 0; i < ny; i++) {
    const double e = fabs(hy[i] - ref[i]);
    worst = fmax(worst, e / bound_of(k, mag[i], mma));
    sq += (e / (mag[i] + 1e-30)) * (e / (mag[i] + 1e-30));
  }
  *typical = sqrt(sq / (double)ny);
  // acc: a second product added onto the first is twice it (up to one fp32 rounding)
  product(&dw, dx, &i8x, dy, batch, true, mma, NULL);
  CK(cudaMemcpy(hy2, dy, ny * 4, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < ny; i++)
    if (fabs(hy2[i] - 2.0 * hy[i]) > 1e-6 * fabs(hy[i]) + 1e-30) worst = INFINITY;
  if (!mma) worst = fmax(worst, check_dequant(&w, &dw));
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  lb_cuda_qw_free(&dw);
  lb_cuda_i8x_free(&i8x);
  lb_qweight_free(&w);
  free(hx), free(xf), free(hy), free(hy2), free(ref), free(mag);
  return worst;
}

// Stacked HQQ weights (q/k/v as one upload): one with integer zero points in [0, 15] beside one
// with fractional ones goes up as fractional (LB_CUDA_Q4F) and multiplies as both do alone (the
// GEMV's bound); an act-order weight beside a fractional one is refused with LB_EUNSUPPORTED (the
// model then keeps the stack in fp16). Returns the worst error / bound, INFINITY when the kind or
// the refusal is wrong.
static double check_stacks() {
  const int64_t rows = 96, cols = 512;
  lb_qweight a, b, c;
  make(K_HQ4, rows, cols, &a);
  make(K_HQ4, rows, cols, &b);
  for (int64_t i = 0; i < rows * a.ngroups; i++) a.zero[i] = rintf(fminf(fmaxf(a.zero[i], 0.0f), 15.0f));
  const lb_qweight *ws[2] = {&a, &b};
  lb_cuda_qw dw;
  upload(ws, 2, false, &dw);
  double worst = dw.kind == LB_CUDA_Q4F ? 0.0 : INFINITY;
  float *xf = (float *)malloc((size_t)cols * 4), *hy = (float *)malloc((size_t)(2 * rows) * 4);
  __half *hx = activations(1, cols, xf);
  double ref[2 * rows], mag[2 * rows];
  reference(K_HQ4, &a, xf, 1, ref, mag);
  reference(K_HQ4, &b, xf, 1, ref + rows, mag + rows);
  void *dx;
  float *dy;
  CK(cudaMalloc(&dx, (size_t)cols * 2));
  CK(cudaMalloc((void **)&dy, (size_t)(2 * rows) * 4));
  CK(cudaMemcpy(dx, hx, (size_t)cols * 2, cudaMemcpyHostToDevice));
  product(&dw, dx, NULL, dy, 1, false, false, NULL);
  CK(cudaMemcpy(hy, dy, (size_t)(2 * rows) * 4, cudaMemcpyDeviceToHost));
  for (int64_t r = 0; r < 2 * rows; r++) worst = fmax(worst, fabs(hy[r] - ref[r]) / bound_of(K_HQ4, mag[r]));
  lb_cuda_qw_free(&dw);
  // a GPTQ-like act-order weight (each column's group r % groups: equal groups, not in place)
  memset(&c, 0, sizeof c);
  c.kind = LB_QK_AFFINE, c.rows = rows, c.cols = cols, c.bits = 4, c.group = 64;
  lb_error err = {};
  if (lb_qweight_alloc(&c, true, false, &err) != LB_OK) die("alloc", err);
  for (int64_t i = 0; i < rows * cols; i++) c.q[i] = (uint8_t)(urand() * 16);
  for (int64_t i = 0; i < rows * c.ngroups; i++) c.scale[i] = 0.01f, c.zero[i] = 8.0f;
  for (int64_t j = 0; j < cols; j++) c.g_idx[j] = (int32_t)(j % c.ngroups);
  const lb_qweight *wc[2] = {&c, &b};
  const lb_status st = lb_cuda_qw_upload(NULL, wc, 2, false, &dw, &err);
  if (st == LB_OK) lb_cuda_qw_free(&dw);
  if (st != LB_EUNSUPPORTED) worst = INFINITY;
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  lb_qweight_free(&a), lb_qweight_free(&b), lb_qweight_free(&c);
  free(hx), free(xf), free(hy);
  return worst;
}

// The gate/up GEMV with SiLU in its epilogue (interleaved pairs) against silu(g) * u of the
// references. Bound: g and u each within the GEMV's bound e (above); |d silu(g) / dg| <= 1.1, so
// the result moves by at most 1.1 |u| e_g + |silu(g)| e_u, plus its fp16 rounding (2^-11 of it).
static double check_silu(Kind k, int64_t inter, int64_t cols, int batch, bool mma = false) {
  lb_qweight wg, wu;
  make(k, inter, cols, &wg);
  make(k, inter, cols, &wu);
  const lb_qweight *ws[2] = {&wg, &wu};
  lb_cuda_qw dw;
  upload(ws, 2, true, &dw);
  lb_cuda_i8x i8x;
  lb_error err = {};
  if (lb_cuda_i8x_alloc(NULL, cols, &i8x, &err) != LB_OK) die("i8x", err);
  const size_t nx = (size_t)(batch * cols), ny = (size_t)(batch * inter);
  float *xf = (float *)malloc(nx * 4), *bias = (float *)malloc((size_t)(2 * inter) * 4);
  __half *hx = activations(batch, cols, xf), *ho = (__half *)malloc(ny * 2);
  for (int64_t i = 0; i < 2 * inter; i++) bias[i] = (float)(urand() - 0.5);
  double *rg = (double *)malloc(ny * 8), *mg = (double *)malloc(ny * 8);
  double *ru = (double *)malloc(ny * 8), *mu = (double *)malloc(ny * 8);
  reference(k, &wg, xf, batch, rg, mg);
  reference(k, &wu, xf, batch, ru, mu);
  void *dx, *dout;
  float *db;
  CK(cudaMalloc(&dx, nx * 2));
  CK(cudaMalloc(&dout, ny * 2));
  CK(cudaMalloc((void **)&db, (size_t)(2 * inter) * 4));
  CK(cudaMemcpy(dx, hx, nx * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(db, bias, (size_t)(2 * inter) * 4, cudaMemcpyHostToDevice));
  if ((mma ? lb_cuda_qmma_silu(&dw, dx, &i8x, db, dout, batch, NULL, &err)
           : lb_cuda_gemv_silu(&dw, dx, &i8x, db, dout, batch, NULL, &err)) != LB_OK)
    die("gate/up with SiLU", err);
  CK(cudaMemcpy(ho, dout, ny * 2, cudaMemcpyDeviceToHost));
  double worst = 0;
  for (int64_t i = 0; i < inter; i++)
    for (int b = 0; b < batch; b++) {
      const size_t j = (size_t)(b * inter + i);
      const double g = rg[j] + bias[i], u = ru[j] + bias[inter + i], sg = g / (1 + exp(-g)), ref = sg * u;
      const double bound = 1.1 * fabs(u) * bound_of(k, mg[j], mma) + fabs(sg) * bound_of(k, mu[j], mma) + fabs(ref) / 2048 + 1e-6;
      worst = fmax(worst, fabs(__half2float(ho[j]) - ref) / bound);
    }
  CK(cudaFree(dx));
  CK(cudaFree(dout));
  CK(cudaFree(db));
  lb_cuda_qw_free(&dw);
  lb_cuda_i8x_free(&i8x);
  lb_qweight_free(&wg);
  lb_qweight_free(&wu);
  free(hx), free(ho), free(xf), free(bias), free(rg), free(mg), free(ru), free(mu);
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

// Microseconds per launch of `iters` GEMVs (mma: lb_cuda_qmma) captured in one graph, cycling
// through `copies` copies of the weight (copies > 1: more bytes than the L2 holds, so every launch
// reads from memory).
static double time_launches(const lb_cuda_qw *ws, int copies, lb_cuda_i8x *i8x, const void *dx, float *dy,
                            int batch, int iters, bool mma = false) {
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  const double us = time_graph(st, 2 * copies, iters,
                               [&](int i) { product(&ws[i % copies], dx, i8x, dy, batch, false, mma, st); });
  CK(cudaStreamDestroy(st));
  return us;
}

// Bytes of a device weight's codes and scales.
static size_t cb_of(const lb_cuda_qw *w) {
  return (size_t)(w->rows * w->cols / (w->kind == LB_CUDA_Q4 || w->kind == LB_CUDA_Q4F || w->kind == LB_CUDA_NF4 ? 2 : 1));
}
static size_t sb_of(const lb_cuda_qw *w) { return (size_t)(w->rows * w->ngroups * 4); }

// How many copies of `bytes` together exceed twice the L2 (at most MAXC).
enum { MAXC = 64 };
static int copies_for(size_t bytes, size_t l2) {
  const int n = (int)(2 * l2 / bytes + 2);
  return n < MAXC ? n : MAXC;
}

// Copies of a quantized weight, together more than twice the L2 (ws[0] is the original).
static int weight_copies(lb_cuda_qw *ws, size_t l2) {
  const size_t cb = cb_of(&ws[0]), sb = sb_of(&ws[0]);
  const int copies = copies_for(cb + sb, l2);
  for (int i = 1; i < copies; i++) {
    ws[i] = ws[0];
    CK(cudaMalloc(&ws[i].codes, cb));
    CK(cudaMalloc(&ws[i].scales, sb + 16)); // 16 to spare, as the library's (cuda.h)
    CK(cudaMemcpy(ws[i].codes, ws[0].codes, cb, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy(ws[i].scales, ws[0].scales, sb, cudaMemcpyDeviceToDevice));
  }
  return copies;
}

static void free_copies(lb_cuda_qw *ws, int copies) {
  for (int i = 1; i < copies; i++) {
    CK(cudaFree(ws[i].codes));
    CK(cudaFree(ws[i].scales));
  }
  lb_cuda_qw_free(&ws[0]);
}

// What a timing needs: a weight of kind k with its copies (more than twice the L2), activations
// for `batch` rows on the device and an output.
struct Timed {
  lb_qweight w;
  lb_cuda_qw ws[MAXC];
  lb_cuda_i8x i8x;
  int copies;
  void *dx;
  float *dy;
  Timed(Kind k, int64_t rows, int64_t cols, int batch, size_t l2) {
    make(k, rows, cols, &w);
    const lb_qweight *wp = &w;
    upload(&wp, 1, false, &ws[0]);
    lb_error err = {};
    if (lb_cuda_i8x_alloc(NULL, cols, &i8x, &err) != LB_OK) die("i8x", err);
    copies = weight_copies(ws, l2);
    float *xf = (float *)malloc((size_t)(batch * cols) * 4);
    __half *hx = activations(batch, cols, xf);
    CK(cudaMalloc(&dx, (size_t)(batch * cols) * 2));
    CK(cudaMemcpy(dx, hx, (size_t)(batch * cols) * 2, cudaMemcpyHostToDevice));
    CK(cudaMalloc((void **)&dy, (size_t)(batch * rows) * 4));
    free(xf), free(hx);
  }
  ~Timed() {
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    free_copies(ws, copies);
    lb_cuda_i8x_free(&i8x);
    lb_qweight_free(&w);
  }
};

static void time_shape(Kind k, int64_t rows, int64_t cols, int batch, int iters, double copy, size_t l2) {
  Timed T(k, rows, cols, batch, l2);
  lb_cuda_qw *ws = T.ws;
  lb_cuda_i8x &i8x = T.i8x;
  const int copies = T.copies;
  void *dx = T.dx;
  float *dy = T.dy;
  const size_t cb = cb_of(&ws[0]), sb = sb_of(&ws[0]);
  const bool pdl = lb_cuda_pdl();
  lb_cuda_set_pdl(false);
  const double warm = time_launches(ws, 1, &i8x, dx, dy, batch, iters);
  const double cold = time_launches(ws, copies, &i8x, dx, dy, batch, iters);
  lb_cuda_set_pdl(true);
  const double cold_pdl = time_launches(ws, copies, &i8x, dx, dy, batch, iters);
  lb_cuda_set_pdl(pdl);
  const double bytes = (double)(cb + sb) + 2.0 * batch * cols;
  const double gw = bytes / (warm * 1e-6) / 1e9, gc = bytes / (cold * 1e-6) / 1e9;
  const double gp = bytes / (cold_pdl * 1e-6) / 1e9;
  printf("| %s | %lld x %lld | %d | %.1f | %.2f | %.0f%% | %.2f | %.0f%% | %.2f | %.0f | %.0f%% |\n", KNAME[k],
         (long long)rows, (long long)cols, batch, bytes / 1e6, warm, 100 * gw / copy, cold, 100 * gc / copy,
         cold_pdl, gp, 100 * gp / copy);
}

// What one launch a weight can reach at best, in the GEMV's timing (a graph of launches with PDL,
// buffers cycled through more than twice the L2): a kernel that does nothing but trigger and wait,
// and one that only reads `bytes` (16-byte streaming loads, 4 in flight a thread, all issued
// before the PDL wait, as the GEMV does with its weights; grid of 4 blocks of 256 an SM).
__global__ void __launch_bounds__(256) floor_empty(unsigned *out) {
  lb_pdl_trigger();
  lb_pdl_wait();
  if (threadIdx.x == 1024) *out = 0; // never: a kernel with a body
}
__global__ void __launch_bounds__(256) floor_read(const uint4 *__restrict__ p, size_t n, unsigned *out) {
  lb_pdl_trigger();
  unsigned acc = 0;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int j = 0; j < 4; j++) v[j] = i + j * stride < n ? __ldcs(p + i + j * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int j = 0; j < 4; j++) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  lb_pdl_wait();
  if (acc == 0x9E3779B9u) *out = acc; // keeps the loads; the random bytes never xor to it in practice
}

static void time_floor(double mb, int iters, double copy, size_t l2, int sms) {
  const size_t bytes = (size_t)(mb * 1e6) / 16 * 16, n = bytes / 16;
  const int copies = copies_for(bytes, l2);
  void *buf[MAXC];
  unsigned *out;
  CK(cudaMalloc((void **)&out, 4));
  for (int i = 0; i < copies; i++) {
    CK(cudaMalloc(&buf[i], bytes));
    CK(cudaMemset(buf[i], 0x5A + i, bytes));
  }
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  const bool pdl = lb_cuda_pdl();
  lb_cuda_set_pdl(true);
  const double empty = time_graph(st, 4, iters, [&](int) { CK(lb_cu_launch(floor_empty, dim3(sms * 4), dim3(256), 0, st, out)); });
  const double rd = time_graph(st, 2 * copies, iters, [&](int i) {
    CK(lb_cu_launch(floor_read, dim3(sms * 4), dim3(256), 0, st, (const uint4 *)buf[i % copies], n, out));
  });
  lb_cuda_set_pdl(pdl);
  const double gbs = (double)bytes / (rd * 1e-6) / 1e9;
  printf("| %.1f | %.2f | %.2f | %.0f | %.0f%% |\n", bytes / 1e6, empty, rd, gbs, 100 * gbs / copy);
  CK(cudaStreamDestroy(st));
  for (int i = 0; i < copies; i++) CK(cudaFree(buf[i]));
  CK(cudaFree(out));
}

// The dequantization alone (prefill's cost over fp16), copies of the weight cycled into one
// fp16 output as the model does: us, and GB/s of codes and scales read plus fp16 written.
static void time_dequant(lb_cuda_ctx *cx, Kind k, int64_t rows, int64_t cols, int iters, double copy, size_t l2) {
  Timed T(k, rows, cols, 1, l2);
  lb_error err = {};
  void *deq;
  CK(cudaMalloc(&deq, (size_t)(rows * cols) * 2));
  cudaStream_t st = (cudaStream_t)lb_cuda_stream(cx);
  const double us = time_graph(st, 2 * T.copies, iters, [&](int i) {
    if (lb_cuda_qw_dequant(cx, &T.ws[i % T.copies], deq, &err) != LB_OK) die("dequant", err);
  });
  const double gbs = ((double)(cb_of(&T.ws[0]) + sb_of(&T.ws[0])) + 2.0 * rows * cols) / (us * 1e-6) / 1e9;
  printf("| %s | %lld x %lld | %.2f | %.0f | %.0f%% |\n", KNAME[k], (long long)rows, (long long)cols, us, gbs,
         100 * gbs / copy);
  CK(cudaFree(deq));
}

// The batches' paths for one shape, cold with PDL (us a product): the GEMV (up to 8 rows), the
// tensor-core product, the dequantization and cuBLAS (the model's path beyond the GEMV before
// lb_cuda_qmma), and cuBLAS on an fp16 weight of the same shape (the fp16 model's cost).
static void time_mma_shape(lb_cuda_ctx *cx, Kind k, int64_t rows, int64_t cols, const int *batches, int nb, int iters,
                           double copy, size_t l2) {
  Timed T(k, rows, cols, batches[nb - 1], l2);
  lb_cuda_qw *ws = T.ws;
  lb_cuda_i8x &i8x = T.i8x;
  const int copies = T.copies;
  void *dx = T.dx;
  float *dy = T.dy;
  lb_error err = {};
  const size_t b16 = (size_t)(rows * cols) * 2;
  const int c16 = copies_for(b16, l2);
  void *w16[MAXC], *deq;
  CK(cudaMalloc(&deq, b16));
  for (int i = 0; i < c16; i++) {
    CK(cudaMalloc(&w16[i], b16));
    if (lb_cuda_qw_dequant(NULL, &ws[0], w16[i], &err) != LB_OK) die("dequant", err);
  }
  cudaStream_t st = (cudaStream_t)lb_cuda_stream(cx);
  const bool pdl = lb_cuda_pdl();
  lb_cuda_set_pdl(true);
  const double wbytes = (double)(cb_of(&ws[0]) + sb_of(&ws[0]));
  for (int j = 0; j < nb; j++) {
    const int b = batches[j];
    const double gemv = b <= 8 ? time_graph(st, 2 * copies, iters, [&](int i) {
      product(&ws[i % copies], dx, &i8x, dy, b, false, false, st);
    }) : NAN;
    double mt[3], mma = INFINITY; // 1, 2 and 4 super-steps in flight
    for (int t = 0; t < 3; t++) {
      lb_cuda_set_mma_depth(1 << t);
      mt[t] = time_graph(st, 2 * copies, iters, [&](int i) { product(&ws[i % copies], dx, &i8x, dy, b, false, true, st); });
      mma = fmin(mma, mt[t]);
    }
    lb_cuda_set_mma_depth(0);
    const double dq = time_graph(st, 2, iters / 4 + 1, [&](int i) {
      if (lb_cuda_qw_dequant(cx, &ws[i % copies], deq, &err) != LB_OK ||
          lb_cuda_gemm(cx, deq, dx, dy, rows, cols, b, false, &err) != LB_OK)
        die("dequant + cuBLAS", err);
    });
    const double fp16 = time_graph(st, 2, iters / 4 + 1, [&](int i) {
      if (lb_cuda_gemm(cx, w16[i % c16], dx, dy, rows, cols, b, false, &err) != LB_OK) die("cuBLAS", err);
    });
    const double gbs = (wbytes + 2.0 * b * cols) / (mma * 1e-6) / 1e9;
    printf("| %s | %lld x %lld | %d | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f%% | %.1f | %.2f | %.2f |\n", KNAME[k],
           (long long)rows, (long long)cols, b, gemv, mt[0], mt[1], mt[2], gbs, 100 * gbs / copy,
           2.0 * b * rows * cols / (mma * 1e-6) / 1e12, dq, fp16);
  }
  lb_cuda_set_pdl(pdl);
  CK(cudaFree(deq));
  for (int i = 0; i < c16; i++) CK(cudaFree(w16[i]));
}

#ifdef LB_GEMV_STAMPS
// A build with -DLB_GEMV_STAMPS (gemv.cu): where a batch-1 GEMV's time goes, from the stamps of
// every block of the launches of one cold timing with PDL (the second run of its graph). Per
// launch: s = first block start, w = first PDL wait return, e = last block's sums ready.
extern "C" cudaError_t lb_gemv_stamps_set(unsigned long long *buf, unsigned int cap);
extern "C" cudaError_t lb_gemv_stamps_count(unsigned int *n);
enum { SF = 6 }; // fields a record (gemv.cu: STAMP_FIELDS)
struct Launch {
  uint64_t ptr;
  int n;
  double s, w, wl, e, pre, steps, sums; // ns; pre, steps, sums: sums over the blocks
};
static void stamps_report(Kind k, int64_t rows, int64_t cols, size_t l2) {
  Timed T(k, rows, cols, 1, l2);
  const unsigned cap = 1u << 20, iters = 40;
  unsigned long long *dbuf, *hb = (unsigned long long *)malloc((size_t)cap * SF * 8);
  CK(cudaMalloc(&dbuf, (size_t)cap * SF * 8));
  CK(lb_gemv_stamps_set(dbuf, cap));
  const double us = time_launches(T.ws, T.copies, &T.i8x, T.dx, T.dy, 1, iters);
  unsigned n;
  CK(lb_gemv_stamps_count(&n));
  n = n < cap ? n : cap;
  CK(cudaMemcpy(hb, dbuf, (size_t)n * SF * 8, cudaMemcpyDeviceToHost));
  unsigned nblocks = 1; // a launch's blocks (8 or 16 rows a block, whichever kernel ran)
  for (unsigned i = 0; i < n; i++) nblocks = hb[i * SF + 1] + 1 > nblocks ? (unsigned)hb[i * SF + 1] + 1 : nblocks;
  if (const char *dump = getenv("SANDBOX_STAMPS_DUMP")) { // the raw records, for a closer look
    char path[512];
    snprintf(path, sizeof path, "%s/%s-%lldx%lld.bin", dump, KNAME[k], (long long)rows, (long long)cols);
    for (char *c = path + strlen(dump) + 1; *c; c++) *c = *c == ' ' ? '_' : *c;
    FILE *f = fopen(path, "wb");
    if (f) fwrite(hb, 8, (size_t)n * SF, f), fclose(f);
  }
  // records in start order; a weight's blocks make one launch until all nblocks are in (the same
  // copy is next launched copies >= 3 launches later, after this one has ended)
  unsigned *ord = (unsigned *)malloc(n * sizeof *ord);
  for (unsigned i = 0; i < n; i++) ord[i] = i;
  std::sort(ord, ord + n, [&](unsigned a, unsigned b) { return hb[a * SF + 2] < hb[b * SF + 2]; });
  Launch *ls = (Launch *)calloc(n / nblocks + 2, sizeof *ls);
  int nl = 0;
  uint64_t res = UINT64_MAX, prev = 0;
  for (unsigned j = 0; j < n; j++) {
    const unsigned long long *r = hb + (size_t)ord[j] * SF;
    if (r[2] > prev && prev) res = r[2] - prev < res ? r[2] - prev : res;
    prev = r[2];
    int l = nl - 1;
    while (l >= 0 && !(ls[l].ptr == r[0] && ls[l].n < (int)nblocks)) l--;
    if (l < 0) ls[l = nl++] = Launch{r[0], 0, (double)r[2], 1e300, 0, 0, 0, 0, 0};
    Launch &L = ls[l];
    L.n++, L.w = fmin(L.w, (double)r[3]), L.wl = fmax(L.wl, (double)r[3]), L.e = fmax(L.e, (double)r[5]);
    L.pre += (double)(r[3] - r[2]), L.steps += (double)(r[4] - r[3]), L.sums += (double)(r[5] - r[4]);
  }
  // the launches of the second graph run, less its first
  double period = 0, span = 0, rel = 0, spread = 0, pre = 0, steps = 0, sums = 0;
  int m = 0;
  for (int l = nl - (int)iters + 1; l + 1 < nl; l++, m++) {
    period += ls[l + 1].s - ls[l].s, span += ls[l].e - ls[l].s, rel += ls[l + 1].w - ls[l].e;
    spread += ls[l].wl - ls[l].w, pre += ls[l].pre / ls[l].n, steps += ls[l].steps / ls[l].n;
    sums += ls[l].sums / ls[l].n;
  }
  printf("| %s | %lld x %lld | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %llu |\n", KNAME[k],
         (long long)rows, (long long)cols, us, period / m / 1e3, span / m / 1e3, rel / m / 1e3, spread / m / 1e3,
         pre / m / 1e3, steps / m / 1e3, sums / m / 1e3, (unsigned long long)res);
  CK(lb_gemv_stamps_set(NULL, 0));
  CK(cudaFree(dbuf));
  free(hb), free(ord), free(ls);
}
#endif

int main(int argc, char **argv) {
  int iters = argc > 1 ? atoi(argv[1]) : 200;
  const char *only = argc > 2 ? argv[2] : NULL;
  bool run[K_COUNT];
  for (int k = 0; k < K_COUNT; k++) run[k] = !only || strcmp(only, KNAME[k]) == 0;
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  printf("device: %s\n\n", p.name);
  int failed = 0, checked = 0; // checks failed, and run (SANDBOX_PART may leave them all out)
  // SANDBOX_PART=mma: the batch table alone; =gemv: the checks and the GEMV's table alone;
  // =gemvtime: the GEMV's table alone
  const char *part = getenv("SANDBOX_PART");
  const bool checks = !(part && strcmp(part, "gemvtime") == 0);
  const bool all = !(part && strcmp(part, "mma") == 0), rest = !(part && strcmp(part, "gemv") == 0) && checks;
  printf("| format | check rows x cols | batch | worst error / bound | typical relative error |\n");
  printf("| --- | --- | ---: | ---: | ---: |\n");
  // (9001 x 4160: a grid of 1126 blocks, 8 an SM up to 140 SMs, so that one row's GEMV copies its second step to shared
  // memory before the PDL wait for every format, gemv.cu launch_b; 11008 x 4096: one 4-bit g128 row
  // on the tensor cores, gemv_tc.cu; 1000 x 4224 takes it too with LOWBIT_CUDA_GEMV_TC=force, rows
  // off its 16-row tile; NF4's one-row GEMV with a warp a row pair, gemv.cu's tall_fits, takes
  // 11008 x 4096 with LOWBIT_CUDA_GEMV_TALL=force)
  const int64_t shapes[][2] = {{1, 4096}, {7, 192}, {129, 4160}, {4096, 4096}, {1024, 11008}, {9001, 4160},
                               {11008, 4096}, {1000, 4224}};
  for (int k = 0; k < K_COUNT; k++)
    for (size_t i = 0; all && checks && run[k] && i < sizeof shapes / sizeof shapes[0]; i++)
      for (int batch = 1; batch <= 8; batch *= 2) {
        if (shapes[i][0] > 1000 && batch > 1) continue; // the reference is slow; odd shapes cover it
        double typ, worst = check((Kind)k, shapes[i][0], shapes[i][1], batch > 4 ? 5 : batch, &typ);
        printf("| %s | %lld x %lld | %d | %.3f | %.2e |\n", KNAME[k], (long long)shapes[i][0],
               (long long)shapes[i][1], batch > 4 ? 5 : batch, worst, typ);
        failed += !(worst <= 1.0), checked++;
      }
  const int64_t pairs[][2] = {{3, 192}, {129, 4160}, {1024, 4096}, {5504, 4096}};
  for (int k = 0; k < K_COUNT; k++)
    for (size_t i = 0; all && checks && run[k] && i < sizeof pairs / sizeof pairs[0]; i++)
      for (int batch = 1; batch <= 5; batch += 4) {
        double worst = check_silu((Kind)k, pairs[i][0], pairs[i][1], batch);
        printf("| %s | gate/up + SiLU %lld x %lld | %d | %.3f | |\n", KNAME[k], (long long)pairs[i][0],
               (long long)pairs[i][1], batch, worst);
        failed += !(worst <= 1.0), checked++;
      }
  if (all && checks && run[K_HQ4]) {
    const double worst = check_stacks();
    printf("| %s | stacked with integer zeros; act-order refused | 1 | %.3f | |\n", KNAME[K_HQ4], worst);
    failed += !(worst <= 1.0), checked++;
  }
  // the tensor-core product: odd shapes (fewer rows than a tile, a step count off the 4-step
  // stride), batches across its row tiles and beyond one launch (70 > LB_CUDA_MMA_MAX)
  const int64_t mshapes[][2] = {{7, 192}, {129, 4160}, {1024, 4096}};
  const int mbatch[] = {1, 3, 9, 16, 37, 64, 70};
  for (int k = 0; k < K_COUNT; k++)
    for (size_t i = 0; all && checks && run[k] && i < sizeof mshapes / sizeof mshapes[0]; i++)
      for (size_t j = 0; j < sizeof mbatch / sizeof mbatch[0]; j++) {
        if (mshapes[i][0] > 1000 && mbatch[j] != 37) continue; // the reference is slow
        // LLM.int8 past one launch: each launch takes its own outlier columns (cuda.h), the
        // reference those of the whole call
        if (k == K_I8 && mbatch[j] > LB_CUDA_MMA_MAX) continue;
        double typ, worst = check((Kind)k, mshapes[i][0], mshapes[i][1], mbatch[j], &typ, true);
        printf("| %s | qmma %lld x %lld | %d | %.3f | %.2e |\n", KNAME[k], (long long)mshapes[i][0],
               (long long)mshapes[i][1], mbatch[j], worst, typ);
        failed += !(worst <= 1.0), checked++;
      }
  for (int k = 0; k < K_COUNT; k++)
    for (size_t i = 0; all && checks && run[k] && i < 2; i++)
      for (int batch = 1; batch <= 37; batch += 36) {
        double worst = check_silu((Kind)k, pairs[i][0], pairs[i][1], batch, true);
        printf("| %s | qmma gate/up + SiLU %lld x %lld | %d | %.3f | |\n", KNAME[k], (long long)pairs[i][0],
               (long long)pairs[i][1], batch, worst);
        failed += !(worst <= 1.0), checked++;
      }
  double copy = copy_gbs(iters);
  printf("\ncopy bandwidth (cudaMemcpy D2D, 1 GiB, read + write): %.0f GB/s; L2 %.0f MB\n\n", copy,
         p.l2CacheSize / 1e6);
  printf("warm: one copy of the weight, relaunched (partly served by the L2); cold: copies cycled, "
         "more than twice the L2, every launch from memory; PDL: each launch loads its first "
         "weights while the one before finishes (as in the decode step)\n\n");
  printf("| format | weight rows x cols | batch | MB read | warm us | of copy | cold us | of copy | cold+PDL us | GB/s | of copy |\n");
  printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  const int64_t timed[][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {14336, 4096}, {4096, 14336}};
  const char *tshape = getenv("SANDBOX_SHAPE"); // e.g. 4096x4096: the GEMV's table for that weight alone
  for (int k = 0; k < K_COUNT; k++)
    for (size_t i = 0; all && run[k] && i < sizeof timed / sizeof timed[0]; i++) {
      char sname[48];
      snprintf(sname, sizeof sname, "%lldx%lld", (long long)timed[i][0], (long long)timed[i][1]);
      if (tshape && strcmp(tshape, sname)) continue;
      for (int batch = 1; batch <= 8; batch *= (k == K_Q4 ? 2 : 8)) // batch 1 and 8 beyond int4
        time_shape((Kind)k, timed[i][0], timed[i][1], batch, iters, copy, (size_t)p.l2CacheSize);
    }
  printf("\nThe floor of a launch a weight (graph, PDL, cold): an empty kernel, and a kernel that only "
         "reads the bytes (all its loads before the PDL wait), us and share of the copy bandwidth\n\n");
  printf("| MB read | empty us | read us | GB/s | of copy |\n| ---: | ---: | ---: | ---: | ---: |\n");
  for (double mb : {8.9, 17.3, 24.0, 45.1, 90.0})
    if (all && rest) time_floor(mb, iters, copy, (size_t)p.l2CacheSize, p.multiProcessorCount);
#ifdef LB_GEMV_STAMPS
  printf("\nStamps (us, means over the launches of a graph; block times are means over the blocks): "
         "us a launch (graph timing), start to start, first start to last block done, last block "
         "done to the next launch's first wait return, first to last wait return; a block: start "
         "to its wait return, wait return to steps done, steps done to sums ready; globaltimer step ns\n\n");
  printf("| format | weight | us | period | span | release | wait spread | pre-wait | steps | sums | ns |\n");
  printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (int k = 0; k < K_COUNT; k++)
    for (size_t i = 0; run[k] && k != K_I8 && i < 3; i++) stamps_report((Kind)k, timed[i][0], timed[i][1], (size_t)p.l2CacheSize);
#endif
  lb_cuda_ctx *cx;
  lb_error err = {};
  if (lb_cuda_open(&cx, &err) != LB_OK) die("cuda", err);
  printf("\nThe dequantization to fp16 (prefill), cold, us and GB/s read + written\n\n");
  printf("| format | weight rows x cols | us | GB/s | of copy |\n| --- | --- | ---: | ---: | ---: |\n");
  const int64_t dshapes[][2] = {{4096, 4096}, {11008, 4096}, {22016, 4096}};
  for (int k = 0; k < K_COUNT; k++)
    for (size_t i = 0; all && rest && run[k] && i < sizeof dshapes / sizeof dshapes[0]; i++)
      time_dequant(cx, (Kind)k, dshapes[i][0], dshapes[i][1], iters / 4 + 1, copy, (size_t)p.l2CacheSize);
  printf("\nBatches, cold with PDL, us a product: the GEMV, the tensor-core product (qmma) with 1, 2 "
         "and 4 super-steps of loads in flight (GB/s, share of the copy bandwidth and TFLOP/s of the best), the "
         "dequantization then cuBLAS, cuBLAS on fp16 weights of the same shape\n\n");
  printf("| format | weight rows x cols | batch | GEMV us | qmma 1 | qmma 2 | qmma 4 | GB/s | of copy | TFLOP/s | dequant + cuBLAS us | cuBLAS fp16 us |\n");
  printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  const int mb[] = {1, 2, 4, 8, 16, 32, 64};
  for (int k = 0; k < K_COUNT; k++)
    for (size_t i = 0; rest && run[k] && k != K_FP8B && i < 3; i++)
      time_mma_shape(cx, (Kind)k, timed[i][0], timed[i][1], mb, 7, iters, copy, (size_t)p.l2CacheSize);
  lb_cuda_close(cx);
  printf("\n%s\n", failed ? "FAILED" : checked ? "all checks passed" : "no checks run (SANDBOX_PART)");
  return failed ? 1 : 0;
}
