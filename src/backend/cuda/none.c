/* The CUDA entry points of a build without the CUDA backend. */
#include "lowbit.h"

bool lb_cuda_built(void) { return false; }

lb_status lb_cuda_devices(lb_gpu_info *out, int cap, int *count, lb_error *err) {
  (void)out, (void)cap, (void)err;
  *count = 0;
  return LB_OK;
}
