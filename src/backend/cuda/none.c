/* The CUDA entry points of a build without the CUDA backend. */
#include "backend/cuda/cuda.h"
#include "base/status.h"
#include "lowbit.h"

bool lb_cuda_built(void) { return false; }

lb_status lb_cuda_devices(lb_gpu_info *out, int cap, int *count, lb_error *err) {
  (void)out, (void)cap, (void)err;
  *count = 0;
  return LB_OK;
}


lb_status lb_cuda_q4_upload(const struct lb_qweight *w, lb_cuda_q4 *out, lb_error *err) {
  (void)w;
  *out = (lb_cuda_q4){0};
  return lb_fail(err, LB_EUNSUPPORTED, "this build has no CUDA backend");
}

void lb_cuda_q4_free(lb_cuda_q4 *w) { (void)w; }

lb_status lb_cuda_gemv_q4(const lb_cuda_q4 *w, const void *x_f16, float *y, int batch,
                          void *stream, lb_error *err) {
  (void)w, (void)x_f16, (void)y, (void)batch, (void)stream;
  return lb_fail(err, LB_EUNSUPPORTED, "this build has no CUDA backend");
}
