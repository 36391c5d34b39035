// Error helpers shared by the .cu files: a CUDA or cuBLAS failure becomes an lb_error naming the
// operation.
#ifndef LB_BACKEND_CUDA_UTIL_CUH
#define LB_BACKEND_CUDA_UTIL_CUH

#include <cuda_runtime.h>
#include <stdio.h>

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

// After a launch: the launch error, if any, named.
static inline lb_status lb_cu_launched(lb_error *err, const char *what) {
  return lb_cu_check(err, what, cudaGetLastError());
}

#endif
