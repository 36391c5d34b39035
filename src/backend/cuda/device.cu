// CUDA device query behind the C API. Compiled only when the CUDA backend is built.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

#include "lowbit.h"

bool lb_cuda_built(void) { return true; }

lb_status lb_cuda_devices(lb_gpu_info *out, int cap, int *count, lb_error *err) {
  *count = 0;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
    cudaGetLastError();  // clear the sticky error: no GPU is not a failure
    return LB_OK;
  }
  if (e != cudaSuccess) {
    if (err) {
      err->code = LB_EIO;
      snprintf(err->msg, sizeof err->msg, "cuda: cudaGetDeviceCount: %s", cudaGetErrorString(e));
    }
    return LB_EIO;
  }
  for (int i = 0; i < n && i < cap; i++) {
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, i)) != cudaSuccess) {
      if (err) {
        err->code = LB_EIO;
        snprintf(err->msg, sizeof err->msg, "cuda: device %d: %s", i, cudaGetErrorString(e));
      }
      return LB_EIO;
    }
    lb_gpu_info *g = &out[i];
    snprintf(g->name, sizeof g->name, "%.127s", p.name);
    g->cc_major = p.major;
    g->cc_minor = p.minor;
    g->sm_count = p.multiProcessorCount;
    g->memory_bytes = p.totalGlobalMem;
  }
  *count = n;
  return LB_OK;
}
