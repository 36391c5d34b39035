// Helpers shared by the .cu files: a CUDA or cuBLAS failure becomes an lb_error naming the
// operation; the environment's A/B switches; programmatic dependent launch.
#ifndef LB_BACKEND_CUDA_UTIL_CUH
#define LB_BACKEND_CUDA_UTIL_CUH

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "lowbit.h"

static inline lb_status lb_cu_fail(lb_error *err, lb_status code, const char *msg) {
  if (err) {
    err->code = code;
    snprintf(err->msg, sizeof err->msg, "%s", msg);
  }
  return code;
}

static inline lb_status lb_cu_check(lb_error *err, const char *what, cudaError_t e) {
  if (e == cudaSuccess) return LB_OK;
  if (err) {
    err->code = e == cudaErrorMemoryAllocation ? LB_ENOMEM : LB_EIO;
    snprintf(err->msg, sizeof err->msg, "cuda: %s: %s", what, cudaGetErrorString(e));
  }
  return e == cudaErrorMemoryAllocation ? LB_ENOMEM : LB_EIO;
}

// An A/B switch between a kernel and its alternative: the variable unset (or any other value) is
// 1, the library's rule; "0" never; "force" always (the checks use it so that small models take
// the path too) is 2. Read once a process, through *cache (start it at -1).
static inline int lb_cu_env_mode(const char *name, int *cache) {
  if (*cache < 0) {
    const char *e = getenv(name);
    *cache = !e ? 1 : strcmp(e, "0") == 0 ? 0 : strcmp(e, "force") == 0 ? 2 : 1;
  }
  return *cache;
}

// Programmatic dependent launch (Hopper; cuda.h, lb_cuda_pdl). Every kernel of the backend calls
// lb_pdl_trigger first (so its successor may be scheduled early) and lb_pdl_wait before it reads
// what an earlier kernel wrote or writes anything: the wait returns once the kernel before has
// finished and its writes are visible. As every kernel waits before it ends, the end of one
// implies the end of all before it. Weights, which no kernel writes, may be loaded before the
// wait. Both are no-ops before sm_90 and in a kernel launched without PDL.
__device__ __forceinline__ void lb_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void lb_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Block-wide sum (max when MAX) of one value per thread; blockDim.x a multiple of 32, <= 1024;
// red: shared memory for 32 floats.
template <bool MAX> __device__ __forceinline__ float block_reduce(float v, float *red) {
  for (int o = 16; o > 0; o >>= 1) {
    float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = MAX ? fmaxf(v, u) : v + u;
  }
  const int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads(); // red may still be read by a previous reduction
  if ((threadIdx.x & 31) == 0) red[w] = v;
  __syncthreads();
  v = red[0];
  for (int i = 1; i < nw; i++) v = MAX ? fmaxf(v, red[i]) : v + red[i];
  return v;
}

// RMSNorm's factor of one row r of d floats, by the whole block: rsqrt(mean(r^2) + eps).
__device__ __forceinline__ float rms_inv(const float *__restrict__ r, int64_t d, float eps, float *red) {
  float ss = 0;
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += r[i] * r[i];
  ss = block_reduce<false>(ss, red);
  return rsqrtf(ss / (float)d + eps);
}

// The device's SM count, read once per translation unit (132 when it cannot be read).
static inline int lb_cu_sm_count(void) {
  static int n = 0;
  int dev = 0;
  if (!n && (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess))
    cudaGetLastError(), n = 0;
  return n > 0 ? n : 132;
}

// A kernel launch that may overlap the kernel before it on the stream when PDL is on.
template <typename... P, typename... A>
static inline cudaError_t lb_cu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                                       cudaStream_t stream, A... args) {
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = stream;
  cfg.attrs = at, cfg.numAttrs = lb_cuda_pdl() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

#endif
