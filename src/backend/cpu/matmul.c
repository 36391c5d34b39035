/* Linear layers y = x W^T + b on the CPU, W in its stored dtype (F32/F16/BF16) or quantized.
 *  - n <= SMALL_N rows of x (decode): the weight's rows are split over the pool's threads; each row is
 *    widened to fp32 once and dotted with every row of x, so W is read once from memory.
 *  - more rows (prefill, perplexity): tiles of W's rows are widened to fp32 by the pool and multiplied
 *    by OpenBLAS sgemm (which runs its own threads), writing the matching columns of y
 *    (lb_sgemm_tiles, which packed NF4/FP8 weights use too).
 *  - packed quantized weights: lb_qpack_linear (qmatmul.c).
 *  - LLM.int8 weights (LB_QK_INT8ROW), any n: bitsandbytes' mixed int8 / fp32 matmul (below). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/qpack.h"
#include "base/status.h"
#include "quant/fp8.h"
#include "quant/qweight.h"

enum { SMALL_N = 4, TILE_FLOATS = 1 << 22 /* 16 MB of fp32 weight per sgemm call */ };

typedef struct {
  const lb_mat *w;
  const float *bias, *x;
  int64_t n;
  float *y, *rowbuf; /* rowbuf: one W row of fp32 per thread */
  _Atomic int64_t next; /* rows claimed (few-row path) */
} lin_job;

/* Weight rows [lo, hi) of a few-row product: dequantized (canonical quantized weight) into a
 * buffer, or widened in registers by dotw. */
static void small_rows(lin_job *j, int64_t lo, int64_t hi, int ith) {
  const lb_kernels *k = lb_cpu_kernels();
  const lb_mat *w = j->w;
  size_t esz = lb_dtype_size(w->dtype);
  float *row = j->rowbuf ? j->rowbuf + (size_t)ith * (size_t)w->cols : NULL;
  hi = hi < w->rows ? hi : w->rows;
  for (int64_t r = lo; r < hi; r++) {
    const char *src = (const char *)w->data + (size_t)r * (size_t)w->cols * esz;
    float b = j->bias ? j->bias[r] : 0.0f, out[SMALL_N];
    if (w->qw) {
      lb_qweight_dequant_row(w->qw, r, row);
      for (int64_t t = 0; t < j->n; t++)
        j->y[t * w->rows + r] = k->dot(row, j->x + t * w->cols, w->cols) + b;
      continue;
    }
    k->dotw(src, w->dtype, j->x, w->cols, (int)j->n, w->cols, out);
    for (int64_t t = 0; t < j->n; t++) j->y[t * w->rows + r] = out[t] + b;
  }
}

static void small_task(void *p, int ith, int nth) {
  lin_job *j = p;
  int64_t lo, hi, chunk = j->w->rows / (8 * nth) + 1;
  while (lb_claim(&j->next, j->w->rows, chunk, &lo, &hi)) small_rows(j, lo, hi, ith);
}

typedef struct {
  lb_rows_fn fill;
  const void *ctx;
  int64_t r0, r1, ld;
  float *tile;
  const float *bias;
  float *y;
  int64_t n, rows;
} tiles_job;

static void fill_task(void *p, int ith, int nth) {
  tiles_job *t = p;
  int64_t lo, hi;
  lb_split(t->r1 - t->r0, ith, nth, &lo, &hi);
  if (lo < hi) t->fill(t->ctx, t->r0 + lo, t->r0 + hi, t->tile + lo * t->ld);
}

static void bias_task(void *p, int ith, int nth) {
  tiles_job *t = p;
  int64_t lo, hi;
  lb_split(t->n, ith, nth, &lo, &hi);
  for (int64_t i = lo; i < hi; i++)
    for (int64_t r = 0; r < t->rows; r++) t->y[i * t->rows + r] += t->bias[r];
}

lb_status lb_sgemm_tiles(lb_pool *pool, int64_t rows, int64_t cols, int64_t ld, lb_rows_fn fill,
                         const void *ctx, const float *bias, const float *x, int64_t n, float *y,
                         lb_error *err) {
  tiles_job t = {.fill = fill, .ctx = ctx, .ld = ld, .bias = bias, .y = y, .n = n, .rows = rows};
  int64_t tile_rows = TILE_FLOATS / ld;
  tile_rows = tile_rows < 16 ? 16 : tile_rows > rows ? rows : tile_rows;
  if (fill && !(t.tile = malloc((size_t)tile_rows * (size_t)ld * sizeof(float))))
    return lb_fail(err, LB_ENOMEM, "linear: out of memory for a weight tile");
  for (t.r0 = 0; t.r0 < rows; t.r0 += tile_rows) {
    t.r1 = t.r0 + tile_rows < rows ? t.r0 + tile_rows : rows;
    const float *wt = (const float *)ctx + t.r0 * ld;
    if (fill) {
      lb_pool_run(pool, fill_task, &t);
      wt = t.tile;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)(t.r1 - t.r0), (int)cols,
                1.0f, x, (int)cols, wt, (int)ld, 0.0f, y + t.r0, (int)rows);
  }
  free(t.tile);
  if (bias) lb_pool_run(pool, bias_task, &t);
  return LB_OK;
}

/* Rows [r0, r1) of a dense weight widened, or of a canonical quantized one dequantized. */
static void widen_rows(const void *ctx, int64_t r0, int64_t r1, float *out) {
  const lb_mat *w = ctx;
  if (w->qw) {
    for (int64_t r = r0; r < r1; r++) lb_qweight_dequant_row(w->qw, r, out + (r - r0) * w->cols);
    return;
  }
  const char *src = (const char *)w->data + (size_t)r0 * (size_t)w->cols * lb_dtype_size(w->dtype);
  lb_cpu_kernels()->cvt_f32(out, src, w->dtype, (r1 - r0) * w->cols);
}

/* LLM.int8 (bitsandbytes MatMul8bitLt), the threaded twin of lb_int8_linear_ref, equal to it bit for
 * bit: every output element goes through the same fp32 operations in the same order; only the int32
 * dot products (exact) are computed in another order.
 *   1. outlier columns (any |x| >= threshold, threshold > 0), split over columns;
 *   2. per activation row: SCA = absmax over the non-outlier values, int8 codes (held as int16, the
 *      kernel's input) with outlier columns zeroed, and the row's outlier values gathered, column-major
 *      (xo[o * n + i]); split over rows. Steps 1-2 run on the caller alone when x is small (decode).
 *   3. split over groups of 4 weight rows: the group widened to int16 once and its outlier columns
 *      dequantized once; int32 dots with every activation row (4 x 4 blocks), so the weight is read
 *      once per call; then the fp32 epilogue, vectorized across activation rows: each output
 *      element's outlier sum is its own chain, in column order as the reference adds it. */
enum { I8_SERIAL = 1 << 15 /* n * cols up to which steps 1-2 run on the caller */ };

typedef struct {
  const lb_qweight *w;
  const float *bias, *x;
  float *y;
  int64_t n, nout;
  uint8_t *outl;   /* [cols] outlier column flags */
  int64_t *ocol;   /* [nout] outlier columns, ascending */
  float *xo;       /* [nout * n] activations in the outlier columns, column-major */
  float *sca;      /* [n] */
  int16_t *xq;     /* [n * cols] int8 codes of the activations */
  int16_t *wbuf;   /* per share [4 * cols]: a group of weight rows */
  float *wdeq;     /* per share [4 * nout]: the group's dequantized outlier weights */
  int32_t *acc;    /* per share [4 * n]: the group's int32 dot products */
  float *facc;     /* per share [4 * n]: the group's fp32 outlier sums */
} i8_job;

static void i8_outliers(i8_job *j, int64_t c0, int64_t c1) {
  const int64_t cols = j->w->cols;
  const float thr = j->w->threshold;
  for (int64_t c = c0; c < c1; c++) j->outl[c] = 0;
  for (int64_t i = 0; i < j->n; i++) {
    const float *xr = j->x + i * cols;
    for (int64_t c = c0; c < c1; c++) j->outl[c] |= fabsf(xr[c]) >= thr;
  }
}

static void i8_outliers_task(void *p, int ith, int nth) {
  i8_job *j = p;
  int64_t lo, hi;
  lb_split(j->w->cols, ith, nth, &lo, &hi);
  i8_outliers(j, lo, hi);
}

/* int8_vectorwise_quant's rounding, as lb_int8_linear_ref's quant_one (rintf, then clamp to
 * +-127), reordered so that the compiler can vectorize it: clamp first (the same result: rint is
 * monotonic and +-127 are integers), then round to nearest even by adding and subtracting 1.5 * 2^23
 * (exact for |r| <= 127 in the default rounding mode, as rintf). */
static inline int16_t i8_quant(float v, float scale) {
  float r = v * scale;
  r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
  r = (r + 0x1.8p23f) - 0x1.8p23f;
  return (int16_t)r;
}

static void i8_quant_rows(i8_job *j, int64_t i0, int64_t i1) {
  const int64_t cols = j->w->cols, n = j->n, nout = j->nout;
  const float thr = j->w->threshold;
  for (int64_t i = i0; i < i1; i++) {
    const float *xr = j->x + i * cols;
    int16_t *q = j->xq + i * cols;
    float sca = 0.0f;
    for (int64_t c = 0; c < cols; c++) {
      float a = fabsf(xr[c]);
      if (!(thr > 0.0f && a >= thr)) sca = a > sca ? a : sca; /* fmaxf for non-NaN values */
    }
    j->sca[i] = sca;
    float s = sca > 0.0f ? 127.0f / sca : 0.0f;
    for (int64_t c = 0; c < cols; c++) q[c] = i8_quant(xr[c], s);
    for (int64_t o = 0; o < nout; o++) {
      q[j->ocol[o]] = 0;
      j->xo[o * n + i] = xr[j->ocol[o]];
    }
  }
}

static void i8_quant_task(void *p, int ith, int nth) {
  i8_job *j = p;
  int64_t lo, hi;
  lb_split(j->n, ith, nth, &lo, &hi);
  i8_quant_rows(j, lo, hi);
}

static void i8_dot_task(void *p, int ith, int nth) {
  i8_job *j = p;
  const lb_qweight *w = j->w;
  const int64_t rows = w->rows, cols = w->cols, n = j->n, nout = j->nout;
  const lb_kernels *k = lb_cpu_kernels();
  int16_t *wb = j->wbuf + (size_t)ith * 4 * (size_t)cols;
  float *wd = j->wdeq + (size_t)ith * 4 * (size_t)nout;
  int32_t *acc = j->acc + (size_t)ith * 4 * (size_t)n;
  float *facc = j->facc + (size_t)ith * 4 * (size_t)n;
  int64_t lo, hi;
  lb_split((rows + 3) / 4, ith, nth, &lo, &hi);
  for (int64_t g = lo; g < hi; g++) {
    const int64_t r0 = 4 * g, nr = rows - r0 < 4 ? rows - r0 : 4;
    for (int64_t a = 0; a < 4; a++) {
      int16_t *dst = wb + a * cols;
      if (a >= nr) {
        memset(dst, 0, (size_t)cols * sizeof *dst);
        continue;
      }
      const int8_t *q = (const int8_t *)w->q + (r0 + a) * cols;
      for (int64_t c = 0; c < cols; c++) dst[c] = q[c];
      /* int8_vectorwise_dequant of the outlier weight columns: q * SCB * 1/127 (fp32) */
      for (int64_t o = 0; o < nout; o++)
        wd[a * nout + o] = (float)q[j->ocol[o]] * w->scale[r0 + a] * 7.874015718698502e-3f;
    }
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
      const int nx = n - i0 < 4 ? (int)(n - i0) : 4;
      int32_t blk[16];
      k->dot_s16x4(wb, cols, j->xq + i0 * cols, cols, nx, cols, blk);
      for (int a = 0; a < 4; a++)
        for (int b = 0; b < nx; b++) acc[a * n + i0 + b] = blk[a * 4 + b];
    }
    if (nout) k->sums_f32x4(facc, n, j->xo, n, wd, nout, (int)nr, nout, n);
    for (int64_t a = 0; a < nr; a++) {
      const int64_t r = r0 + a;
      const float scb = w->scale[r], b = j->bias ? j->bias[r] : 0.0f;
      const int32_t *ac = acc + a * n;
      const float *f = facc + a * n;
      for (int64_t i = 0; i < n; i++) {
        /* int8_mm_dequant: acc * (SCA * SCB) * 1/127^2 (its fp32 constant) */
        float v = (float)ac[i] * (j->sca[i] * scb) * 6.200124e-05f;
        if (j->bias) v += b;
        if (nout) v += f[i];
        j->y[i * rows + r] = v;
      }
    }
  }
}

static lb_status int8_linear(lb_pool *pool, const lb_qweight *w, const float *bias, const float *x,
                             int64_t n, float *y, lb_error *err) {
  const int64_t cols = w->cols;
  const size_t nth = (size_t)lb_pool_size(pool);
  const bool serial = n * cols <= I8_SERIAL;
  i8_job j = {.w = w, .bias = bias, .x = x, .y = y, .n = n};
  if (n <= 0 || w->rows <= 0) return LB_OK;
  j.outl = calloc((size_t)cols, 1);
  j.ocol = malloc((size_t)cols * sizeof *j.ocol);
  j.sca = malloc((size_t)n * sizeof *j.sca);
  j.xq = malloc((size_t)n * (size_t)cols * sizeof *j.xq);
  j.wbuf = malloc(nth * 4 * (size_t)cols * sizeof *j.wbuf);
  j.acc = malloc(nth * 4 * (size_t)n * sizeof *j.acc);
  lb_status s = LB_OK;
  if (!j.outl || !j.ocol || !j.sca || !j.xq || !j.wbuf || !j.acc) {
    s = lb_fail(err, LB_ENOMEM, "LLM.int8 linear: out of memory");
    goto done;
  }
  if (w->threshold > 0.0f) {
    if (serial) i8_outliers(&j, 0, cols);
    else lb_pool_run(pool, i8_outliers_task, &j);
    for (int64_t c = 0; c < cols; c++)
      if (j.outl[c]) j.ocol[j.nout++] = c;
  }
  if (j.nout) {
    j.xo = malloc((size_t)n * (size_t)j.nout * sizeof *j.xo);
    j.wdeq = malloc(nth * 4 * (size_t)j.nout * sizeof *j.wdeq);
    j.facc = malloc(nth * 4 * (size_t)n * sizeof *j.facc);
    if (!j.xo || !j.wdeq || !j.facc) {
      s = lb_fail(err, LB_ENOMEM, "LLM.int8 linear: out of memory for %lld outlier columns",
                  (long long)j.nout);
      goto done;
    }
  }
  if (serial) i8_quant_rows(&j, 0, n);
  else lb_pool_run(pool, i8_quant_task, &j);
  lb_pool_run(pool, i8_dot_task, &j);
done:
  free(j.outl), free(j.ocol), free(j.sca), free(j.xq), free(j.wbuf), free(j.acc);
  free(j.xo), free(j.wdeq), free(j.facc);
  return s;
}

typedef struct {
  const float *x;
  float *out;
  int64_t n, cols, group;
  float scale;
  _Atomic int64_t next;
} act_job;

static void act_rows(const act_job *j, int64_t lo, int64_t hi) {
  if (j->scale > 0.0f)
    lb_fp8_act_quant_static(j->x + lo * j->cols, hi - lo, j->cols, j->scale, j->out + lo * j->cols);
  else
    lb_fp8_act_quant(j->x + lo * j->cols, hi - lo, j->cols, j->group, j->out + lo * j->cols);
}

static void act_task(void *p, int ith, int nth) {
  (void)ith;
  act_job *j = p;
  int64_t lo, hi;
  while (lb_claim(&j->next, j->n, j->n / (4 * nth) + 1, &lo, &hi)) act_rows(j, lo, hi);
}

/* x quantized to E4M3 and back as w asks (blocks of w->act_group columns, or w->act_scale), into
 * a new buffer (*out). */
static lb_status act_fp8(lb_pool *pool, const lb_mat *w, const float *x, int64_t n, float **out,
                         lb_error *err) {
  if (!(*out = malloc((size_t)(n * w->cols) * sizeof(float))))
    return lb_fail(err, LB_ENOMEM, "linear: out of memory for %lld FP8 activation rows", (long long)n);
  act_job j = {.x = x, .out = *out, .n = n, .cols = w->cols, .group = w->act_group,
               .scale = w->act_scale};
  if (n * w->cols <= I8_SERIAL) act_rows(&j, 0, n);
  else lb_pool_run(pool, act_task, &j);
  return LB_OK;
}

lb_status lb_linear(lb_pool *pool, const lb_mat *w, const float *bias, const float *x, int64_t n,
                    float *y, lb_error *err) {
  if (w->act_group > 0 && n > 0) {
    float *xq;
    LB_TRY(act_fp8(pool, w, x, n, &xq, err));
    lb_mat plain = *w;
    plain.act_group = 0, plain.act_scale = 0.0f;
    lb_status s = lb_linear(pool, &plain, bias, xq, n, y, err);
    free(xq);
    return s;
  }
  if (w->pack) return lb_qpack_linear(pool, w->pack, bias, x, n, y, err);
  if (!w->qw && w->dtype != LB_F32 && w->dtype != LB_F16 && w->dtype != LB_BF16)
    return lb_fail(err, LB_EUNSUPPORTED, "linear: weights of dtype %s are not supported",
                   lb_dtype_name(w->dtype));
  if (!bias && w->qw) bias = w->qw->bias;
  if (w->qw && w->qw->kind == LB_QK_INT8ROW) {
    if (w->qw->rows != w->rows || w->qw->cols != w->cols)
      return lb_fail(err, LB_EINVAL, "linear: LLM.int8 weight is [%lld, %lld], the layer [%lld, %lld]",
                     (long long)w->qw->rows, (long long)w->qw->cols, (long long)w->rows,
                     (long long)w->cols);
    return int8_linear(pool, w->qw, bias, x, n, y, err);
  }
  lin_job j = {.w = w, .bias = bias, .x = x, .n = n, .y = y};
  int nth = lb_pool_size(pool);
  if (n <= SMALL_N && !w->qw) {
    lb_pool_run(pool, small_task, &j);
    return LB_OK;
  }
  if (n <= SMALL_N) {
    j.rowbuf = malloc((size_t)nth * (size_t)w->cols * sizeof(float));
    if (!j.rowbuf) return lb_fail(err, LB_ENOMEM, "linear: out of memory");
    lb_pool_run(pool, small_task, &j);
    free(j.rowbuf);
    return LB_OK;
  }
  bool widen = w->qw || w->dtype != LB_F32;
  return lb_sgemm_tiles(pool, w->rows, w->cols, w->cols, widen ? widen_rows : NULL,
                        widen ? (const void *)w : w->data, bias, x, n, y, err);
}

/* Several Linears reading the same x, for few rows of x (decode), in one parallel region: each is
 * prepared (activations quantized once per packed weight), then the shares take contiguous ranges
 * of all their tiles together. Other cases run lb_linear one by one. */
typedef struct {
  int count;
  lb_qrun run[LB_MANY_MAX];
  lin_job dense[LB_MANY_MAX];
  int64_t first[LB_MANY_MAX + 1]; /* units before part i */
  _Atomic int64_t next;           /* units claimed */
} many_job;

enum { DENSE_RT = 16 };

static void many_task(void *p, int ith, int nth) {
  many_job *mj = p;
  int64_t lo, hi, total = mj->first[mj->count], chunk = total / (8 * nth) + 1;
  while (lb_claim(&mj->next, total, chunk, &lo, &hi))
  for (int i = 0; i < mj->count && lo < hi; i++) {
    int64_t a = lo > mj->first[i] ? lo : mj->first[i];
    int64_t b = hi < mj->first[i + 1] ? hi : mj->first[i + 1];
    if (a >= b) continue;
    if (mj->run[i].p) {
      lb_qrun_units(&mj->run[i], a - mj->first[i], b - mj->first[i], ith);
    } else {
      lin_job *j = &mj->dense[i];
      small_rows(j, (a - mj->first[i]) * DENSE_RT, (b - mj->first[i]) * DENSE_RT, ith);
    }
  }
}

static lb_status linear_many(lb_pool *pool, int count, const lb_mat *const *w, float *const *bias,
                             const float *x, int64_t n, float *const *y, lb_error *err);

lb_status lb_linear_many(lb_pool *pool, int count, const lb_mat *const *w, float *const *bias,
                         const float *x, int64_t n, float *const *y, lb_error *err) {
  /* W8A8 weights of one block size (q/k/v of an FP8 model): x quantized once for all of them */
  bool same = count > 0 && count <= LB_MANY_MAX && w[0]->act_group > 0 && n > 0;
  for (int i = 1; same && i < count; i++)
    same = w[i]->act_group == w[0]->act_group && w[i]->act_scale == w[0]->act_scale &&
           w[i]->cols == w[0]->cols;
  if (!same) return linear_many(pool, count, w, bias, x, n, y, err);
  float *xq;
  LB_TRY(act_fp8(pool, w[0], x, n, &xq, err));
  lb_mat plain[LB_MANY_MAX];
  const lb_mat *pw[LB_MANY_MAX];
  for (int i = 0; i < count; i++)
    plain[i] = *w[i], plain[i].act_group = 0, plain[i].act_scale = 0.0f, pw[i] = &plain[i];
  lb_status s = linear_many(pool, count, pw, bias, xq, n, y, err);
  free(xq);
  return s;
}

static lb_status linear_many(lb_pool *pool, int count, const lb_mat *const *w, float *const *bias,
                             const float *x, int64_t n, float *const *y, lb_error *err) {
  bool merge = n <= SMALL_N && count <= LB_MANY_MAX;
  for (int i = 0; merge && i < count; i++)
    if (w[i]->act_group || /* W8A8 weights of mixed blocks: lb_linear quantizes for each */
        (!w[i]->pack && (w[i]->qw || (w[i]->dtype != LB_F32 && w[i]->dtype != LB_F16 &&
                                      w[i]->dtype != LB_BF16))))
      merge = false;
  if (!merge) {
    for (int i = 0; i < count; i++) LB_TRY(lb_linear(pool, w[i], bias[i], x, n, y[i], err));
    return LB_OK;
  }
  many_job mj = {.count = count};
  lb_status s = LB_OK;
  int prepared = 0;
  for (int i = 0; i < count; i++, prepared++) {
    if (w[i]->pack) {
      s = lb_qrun_prepare(&mj.run[i], pool, lb_cpu_kernels(), w[i]->pack, bias[i], x, n, y[i], err);
      if (s != LB_OK) break;
      mj.first[i + 1] = mj.first[i] + mj.run[i].units;
    } else {
      mj.dense[i] = (lin_job){.w = w[i], .bias = bias[i], .x = x, .n = n, .y = y[i]};
      mj.first[i + 1] = mj.first[i] + (w[i]->rows + DENSE_RT - 1) / DENSE_RT;
    }
  }
  if (s == LB_OK) lb_pool_run(pool, many_task, &mj);
  for (int i = 0; i < prepared; i++)
    if (mj.run[i].p) lb_qrun_done(&mj.run[i]);
  return s;
}
