/* Linear layers y = x W^T + b on the CPU, W in its stored dtype (F32/F16/BF16).
 *  - n <= SMALL_N rows of x (decode): the weight's rows are split over the pool's threads; each row is
 *    widened to fp32 once and dotted with every row of x, so W is read once from memory.
 *  - more rows (prefill, perplexity): tiles of W's rows are widened to fp32 by the pool and multiplied
 *    by OpenBLAS sgemm (which runs its own threads), writing the matching columns of y. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "base/status.h"
#include "quant/qweight.h"

enum { SMALL_N = 4, TILE_FLOATS = 1 << 22 /* 16 MB of fp32 weight per sgemm call */ };

typedef struct {
  const lb_mat *w;
  const float *bias, *x;
  int64_t n;
  float *y, *rowbuf; /* rowbuf: one W row of fp32 per thread */
  int64_t r0, r1;    /* tile rows (sgemm path) */
  float *tile;
} lin_job;

static void small_task(void *p, int ith, int nth) {
  lin_job *j = p;
  const lb_kernels *k = lb_cpu_kernels();
  const lb_mat *w = j->w;
  size_t esz = lb_dtype_size(w->dtype);
  float *row = j->rowbuf + (size_t)ith * (size_t)w->cols;
  int64_t lo, hi;
  lb_split(w->rows, ith, nth, &lo, &hi);
  for (int64_t r = lo; r < hi; r++) {
    const char *src = (const char *)w->data + (size_t)r * (size_t)w->cols * esz;
    const float *wr = row;
    if (w->qw)
      lb_qweight_dequant_row(w->qw, r, row);
    else if (w->dtype == LB_F32)
      wr = (const float *)src;
    else
      k->cvt_f32(row, src, w->dtype, w->cols);
    float b = j->bias ? j->bias[r] : 0.0f;
    for (int64_t t = 0; t < j->n; t++)
      j->y[t * w->rows + r] = k->dot(wr, j->x + t * w->cols, w->cols) + b;
  }
}

static void widen_task(void *p, int ith, int nth) {
  lin_job *j = p;
  const lb_mat *w = j->w;
  size_t esz = lb_dtype_size(w->dtype);
  int64_t lo, hi, rows = j->r1 - j->r0;
  lb_split(rows, ith, nth, &lo, &hi);
  if (w->qw) {
    for (int64_t r = lo; r < hi; r++) lb_qweight_dequant_row(w->qw, j->r0 + r, j->tile + r * w->cols);
    return;
  }
  const char *src = (const char *)w->data + (size_t)(j->r0 + lo) * (size_t)w->cols * esz;
  lb_cpu_kernels()->cvt_f32(j->tile + lo * w->cols, src, w->dtype, (hi - lo) * w->cols);
}

static void bias_task(void *p, int ith, int nth) {
  lin_job *j = p;
  int64_t lo, hi;
  lb_split(j->n, ith, nth, &lo, &hi);
  for (int64_t t = lo; t < hi; t++)
    for (int64_t r = 0; r < j->w->rows; r++) j->y[t * j->w->rows + r] += j->bias[r];
}

lb_status lb_linear(lb_pool *pool, const lb_mat *w, const float *bias, const float *x, int64_t n,
                    float *y, lb_error *err) {
  if (!w->qw && w->dtype != LB_F32 && w->dtype != LB_F16 && w->dtype != LB_BF16)
    return lb_fail(err, LB_EUNSUPPORTED, "linear: weights of dtype %s are not supported",
                   lb_dtype_name(w->dtype));
  lin_job j = {.w = w, .bias = bias, .x = x, .n = n, .y = y};
  int nth = lb_pool_size(pool);
  if (n <= SMALL_N) {
    j.rowbuf = malloc((size_t)nth * (size_t)w->cols * sizeof(float));
    if (!j.rowbuf) return lb_fail(err, LB_ENOMEM, "linear: out of memory");
    lb_pool_run(pool, small_task, &j);
    free(j.rowbuf);
    return LB_OK;
  }
  int64_t tile_rows = TILE_FLOATS / w->cols;
  if (tile_rows < 16) tile_rows = 16;
  if (tile_rows > w->rows) tile_rows = w->rows;
  bool widen = w->qw || w->dtype != LB_F32;
  if (widen) {
    j.tile = malloc((size_t)tile_rows * (size_t)w->cols * sizeof(float));
    if (!j.tile) return lb_fail(err, LB_ENOMEM, "linear: out of memory for a weight tile");
  }
  for (int64_t r0 = 0; r0 < w->rows; r0 += tile_rows) {
    j.r0 = r0;
    j.r1 = r0 + tile_rows < w->rows ? r0 + tile_rows : w->rows;
    const float *wt = widen ? NULL : (const float *)w->data + r0 * w->cols;
    if (widen) {
      lb_pool_run(pool, widen_task, &j);
      wt = j.tile;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)(j.r1 - r0), (int)w->cols,
                1.0f, x, (int)w->cols, wt, (int)w->cols, 0.0f, y + r0, (int)w->rows);
  }
  free(j.tile);
  if (bias) lb_pool_run(pool, bias_task, &j);
  return LB_OK;
}
