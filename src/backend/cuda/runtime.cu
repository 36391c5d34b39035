// The CUDA context behind cuda.h: device 0, one stream, one cuBLAS handle (and a cuBLASLt one for
// FP8), memory, copies, the cuBLAS GEMMs, graph capture.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/util.cuh"

struct lb_cuda_ctx {
  cudaStream_t stream;
  cublasHandle_t blas;
  cublasLtHandle_t lt; // FP8 products
  void *workspace;
  uint64_t allocated;
};

enum { WORKSPACE = 32 << 20 }; // cuBLAS's recommendation for Hopper

static lb_status blas_check(lb_error *err, const char *what, cublasStatus_t s) {
  if (s == CUBLAS_STATUS_SUCCESS) return LB_OK;
  if (err) {
    err->code = LB_EIO;
    snprintf(err->msg, sizeof err->msg, "cublas: %s: status %d", what, (int)s);
  }
  return LB_EIO;
}

extern "C" lb_status lb_cuda_open(lb_cuda_ctx **out, lb_error *err) {
  *out = NULL;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
    cudaGetLastError();
    return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda: no CUDA device (lowbit devices lists them)");
  }
  lb_cuda_ctx *c = (lb_cuda_ctx *)calloc(1, sizeof *c);
  if (!c) return lb_cu_fail(err, LB_ENOMEM, "cuda: out of host memory");
  lb_status s = lb_cu_check(err, "cudaSetDevice", cudaSetDevice(0));
  if (s == LB_OK) s = lb_cu_check(err, "creating a stream", cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  if (s == LB_OK) s = blas_check(err, "cublasCreate", cublasCreate(&c->blas));
  if (s == LB_OK) s = blas_check(err, "cublasSetStream", cublasSetStream(c->blas, c->stream));
  if (s == LB_OK) s = lb_cuda_alloc(c, WORKSPACE, &c->workspace, err);
  if (s == LB_OK) s = blas_check(err, "cublasSetWorkspace", cublasSetWorkspace(c->blas, c->workspace, WORKSPACE));
  if (s == LB_OK) s = blas_check(err, "cublasLtCreate", cublasLtCreate(&c->lt));
  if (s != LB_OK) {
    lb_cuda_close(c);
    return s;
  }
  *out = c;
  return LB_OK;
}

extern "C" void lb_cuda_close(lb_cuda_ctx *c) {
  if (!c) return;
  if (c->stream) cudaStreamSynchronize(c->stream);
  if (c->blas) cublasDestroy(c->blas);
  if (c->lt) cublasLtDestroy(c->lt);
  cudaFree(c->workspace);
  if (c->stream) cudaStreamDestroy(c->stream);
  free(c);
}

extern "C" void *lb_cuda_stream(lb_cuda_ctx *c) { return c->stream; }

extern "C" lb_status lb_cuda_alloc(lb_cuda_ctx *c, size_t bytes, void **p, lb_error *err) {
  *p = NULL;
  if (bytes == 0) bytes = 16;
  cudaError_t e = cudaMalloc(p, bytes);
  if (e != cudaSuccess) {
    *p = NULL;
    char what[96];
    snprintf(what, sizeof what, "allocating %.1f MiB of device memory", (double)bytes / (1 << 20));
    return lb_cu_check(err, what, e);
  }
  if ((e = cudaMemset(*p, 0, bytes)) != cudaSuccess) {
    cudaFree(*p);
    *p = NULL;
    return lb_cu_check(err, "clearing device memory", e);
  }
  if (c) c->allocated += bytes;
  return LB_OK;
}

extern "C" void lb_cuda_release(void *p) { cudaFree(p); }
extern "C" uint64_t lb_cuda_allocated(const lb_cuda_ctx *c) { return c->allocated; }

extern "C" lb_status lb_cuda_host_alloc(size_t bytes, void **p, lb_error *err) {
  *p = NULL;
  lb_status s = lb_cu_check(err, "allocating page-locked host memory", cudaMallocHost(p, bytes ? bytes : 16));
  if (s != LB_OK) *p = NULL;
  return s;
}

extern "C" void lb_cuda_host_release(void *p) { cudaFreeHost(p); }

extern "C" lb_status lb_cuda_put(lb_cuda_ctx *c, void *dst, const void *src, size_t bytes, lb_error *err) {
  return lb_cu_check(err, "copying to the device", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
}

extern "C" lb_status lb_cuda_get(lb_cuda_ctx *c, void *dst, const void *src, size_t bytes, lb_error *err) {
  lb_status s = lb_cu_check(err, "copying from the device", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
  return s == LB_OK ? lb_cuda_sync(c, err) : s;
}

extern "C" lb_status lb_cuda_sync(lb_cuda_ctx *c, lb_error *err) {
  return lb_cu_check(err, "running the stream", cudaStreamSynchronize(c->stream));
}

// Row-major y[n][rows] = x[n][cols] w[rows][cols]^T is, in cuBLAS's column-major terms,
// Y (rows x n) = W^T (W read as a cols x rows matrix) times X (cols x n).
extern "C" lb_status lb_cuda_gemm(lb_cuda_ctx *c, const void *w16, const void *x16, float *y,
                                  int64_t rows, int64_t cols, int64_t n, bool acc, lb_error *err) {
  const float one = 1.0f, beta = acc ? 1.0f : 0.0f;
  return blas_check(err, "cublasGemmEx",
                    cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n, (int)cols,
                                 &one, w16, CUDA_R_16F, (int)cols, x16, CUDA_R_16F, (int)cols,
                                 &beta, y, CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

// The same product with E4M3 operands on the FP8 tensor cores: in cuBLASLt's column-major terms
// Y (rows x n) = W^T X with W stored cols x rows ("T") and X cols x n ("N"), the form FP8 takes;
// both scaled in 1 x 128 blocks along cols, the scale tensors [cols / 128][rows] and
// [cols / 128][n] (the outer dimension contiguous, as PyTorch's _scaled_mm passes them).
// LB_EUNSUPPORTED where cuBLASLt has no kernel for it (before Hopper, or an older cuBLAS).
extern "C" lb_status lb_cuda_lt_fp8(lb_cuda_ctx *c, const void *w8, const float *wscale, const void *x8,
                                    const float *xscale, float *y, int64_t rows, int64_t cols, int64_t n,
                                    bool acc, lb_error *err) {
  cublasLtMatmulDesc_t op = NULL;
  cublasLtMatrixLayout_t la = NULL, lx = NULL, ly = NULL;
  cublasLtMatmulPreference_t pref = NULL;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  const uint64_t wsize = WORKSPACE;
  cublasStatus_t s = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (!s) s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
  if (!s) s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
  if (!s) s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof mode);
  if (!s) s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof mode);
  if (!s) s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wscale, sizeof wscale);
  if (!s) s = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xscale, sizeof xscale);
  if (!s) s = cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, (uint64_t)cols, (uint64_t)rows, cols);
  if (!s) s = cublasLtMatrixLayoutCreate(&lx, CUDA_R_8F_E4M3, (uint64_t)cols, (uint64_t)n, cols);
  if (!s) s = cublasLtMatrixLayoutCreate(&ly, CUDA_R_32F, (uint64_t)rows, (uint64_t)n, rows);
  if (!s) s = cublasLtMatmulPreferenceCreate(&pref);
  if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsize, sizeof wsize);
  cublasLtMatmulHeuristicResult_t h;
  int found = 0;
  if (!s) s = cublasLtMatmulAlgoGetHeuristic(c->lt, op, la, lx, ly, ly, pref, 1, &h, &found);
  lb_status r = LB_OK;
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || (!s && !found)) {
    r = lb_cu_fail(err, LB_EUNSUPPORTED, "cublasLt: no FP8 kernel with 1 x 128 block scales here");
  } else if (s) {
    r = blas_check(err, "cublasLt FP8 set-up", s);
  } else {
    const float one = 1.0f, beta = acc ? 1.0f : 0.0f;
    r = blas_check(err, "cublasLtMatmul (FP8)",
                   cublasLtMatmul(c->lt, op, &one, w8, la, x8, lx, &beta, y, ly, y, ly, &h.algo, c->workspace,
                                  WORKSPACE, c->stream));
  }
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (ly) cublasLtMatrixLayoutDestroy(ly);
  if (lx) cublasLtMatrixLayoutDestroy(lx);
  if (la) cublasLtMatrixLayoutDestroy(la);
  if (op) cublasLtMatmulDescDestroy(op);
  return r;
}

extern "C" lb_status lb_cuda_gemm_batched(lb_cuda_ctx *c, bool ta, bool tb, int64_t m, int64_t n,
                                          int64_t k, float alpha, const void *A, int64_t lda,
                                          int64_t sa, const void *B, int64_t ldb, int64_t sb, void *C,
                                          bool c16, int64_t ldc, int64_t sc, int64_t batch,
                                          lb_error *err) {
  const float beta = 0.0f;
  return blas_check(err, "cublasGemmStridedBatchedEx",
                    cublasGemmStridedBatchedEx(c->blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                               tb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)m, (int)n, (int)k,
                                               &alpha, A, CUDA_R_16F, (int)lda, sa, B, CUDA_R_16F,
                                               (int)ldb, sb, &beta, C, c16 ? CUDA_R_16F : CUDA_R_32F,
                                               (int)ldc, sc, (int)batch, CUBLAS_COMPUTE_32F,
                                               CUBLAS_GEMM_DEFAULT));
}

static int pdl = -1; // unknown until first asked

extern "C" bool lb_cuda_pdl(void) {
  if (pdl < 0) {
    int dev = 0, major = 0;
    const char *env = getenv("LOWBIT_CUDA_PDL");
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
      cudaGetLastError(), major = 0;
    pdl = major >= 9 && !(env && strcmp(env, "0") == 0);
  }
  return pdl == 1;
}

extern "C" void lb_cuda_set_pdl(bool on) { pdl = on; }

extern "C" lb_status lb_cuda_capture_begin(lb_cuda_ctx *c, lb_error *err) {
  return lb_cu_check(err, "beginning a graph capture",
                     cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
}

extern "C" lb_status lb_cuda_capture_end(lb_cuda_ctx *c, void **graph, lb_error *err) {
  *graph = NULL;
  cudaGraph_t g = NULL;
  lb_status s = lb_cu_check(err, "ending a graph capture", cudaStreamEndCapture(c->stream, &g));
  if (s != LB_OK) return s;
  cudaGraphExec_t x = NULL;
  s = lb_cu_check(err, "instantiating a graph", cudaGraphInstantiate(&x, g, 0));
  cudaGraphDestroy(g);
  if (s == LB_OK) *graph = x;
  return s;
}

extern "C" lb_status lb_cuda_graph_launch(lb_cuda_ctx *c, void *graph, lb_error *err) {
  return lb_cu_check(err, "launching a graph", cudaGraphLaunch((cudaGraphExec_t)graph, c->stream));
}

extern "C" void lb_cuda_graph_free(void *graph) {
  if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}
