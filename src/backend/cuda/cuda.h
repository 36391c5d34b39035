/* C entry points of the CUDA kernels (the .cu files beside this header). Each takes device
 * buffers the caller owns and a stream (a cudaStream_t passed as void *, NULL: the default stream), and returns a
 * status; nothing is synchronized unless the name says so. A build without CUDA has stubs that
 * return LB_EUNSUPPORTED (none.c). */
#ifndef LB_BACKEND_CUDA_CUDA_H
#define LB_BACKEND_CUDA_CUDA_H

#include "lowbit.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lb_qweight;

/* A 4-bit affine weight (GPTQ/AWQ/RTN, groups of a multiple of 32 columns, no act-order) on the
 * device, in the layout the GEMV reads: row-major, 8 codes a 32-bit word with the nibbles in the
 * order of columns 0, 2, 4, 6, 1, 3, 5, 7 (so that masking 0x000F000F yields the pairs (0, 1),
 * (2, 3) ... as two fp16 values through the 0x6400 exponent trick), fp16 scales and fp16
 * (1024 + zero) per (row, group). */
typedef struct lb_cuda_q4 {
  int64_t rows, cols, group, ngroups;
  void *codes;  /* [rows][cols / 8] uint32 */
  void *scales; /* [rows][ngroups] fp16 */
  void *zeros;  /* [rows][ngroups] fp16: 1024 + zero point */
} lb_cuda_q4;

/* Repacks w on the host and uploads it; LB_EUNSUPPORTED for other geometries. */
lb_status lb_cuda_q4_upload(const struct lb_qweight *w, lb_cuda_q4 *out, lb_error *err);
void lb_cuda_q4_free(lb_cuda_q4 *w);

/* y[b * rows + r] = sum_c W[r, c] * x[b * cols + c] for b < batch (1..8): fp16 activations, fp16
 * products summed per 32 columns, scaled and accumulated in fp32 (y fp32). */
lb_status lb_cuda_gemv_q4(const lb_cuda_q4 *w, const void *x_f16, float *y, int batch,
                          void *stream, lb_error *err);

#ifdef __cplusplus
}
#endif
#endif
