/* y = x W^T (+ bias) for packed quantized weights (qpack.h).
 *  - U4/U8: the activation rows are gathered (act-order), padded and quantized to int8 per block
 *    once (on the caller for a few rows, by the pool for many); then the pool splits the tiles of
 *    16 weight rows: each tile (8 or 16 bytes a column, in L1) runs against every activation row, 8
 *    at a time (AVX2: 4), so each weight byte is read from memory once per call.
 *  - NF4/FP8, up to SMALL_N rows: the pool splits the weight rows; each row's values are made in
 *    registers and dotted with up to 4 activation rows at a time (qdot_nf4 / qdot_fp8); more rows:
 *    tiles of dequantized rows and OpenBLAS sgemm (lb_sgemm_tiles, as dense weights). */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/qpack.h"
#include "base/status.h"

enum { SMALL_N = 4, SERIAL_ACT = 1 << 15, RT = 16 /* weight rows per unit (U4/U8: a tile) */ };


static bool is_u4(const lb_qpack *p) { return p->kind == LB_QP_U4; }

/* Activation row j: gathered by perm, padded with zeros, quantized; z = sum_k d * sum. */
static void quant_row(lb_qrun *j, int64_t i, float *xb, int32_t *sums) {
  const lb_qpack *p = j->p;
  const float *xr = j->x + i * p->cols;
  const float *src = xr;
  if (p->perm || p->colsp != p->cols) {
    if (p->perm)
      for (int64_t c = 0; c < p->cols; c++) xb[c] = xr[p->perm[c]];
    else
      memcpy(xb, xr, (size_t)p->cols * sizeof(float));
    memset(xb + p->cols, 0, (size_t)(p->colsp - p->cols) * sizeof(float));
    src = xb;
  }
  const int64_t nkb = j->a.nkb, kpg = p->group / p->kb;
  float *d = j->a.d + i * nkb, *z = j->a.z + i * p->ngroups;
  j->k->qact_s8(src, p->kb, nkb, j->a.q + i * p->colsp, d, sums);
  for (int64_t g = 0; g < p->ngroups; g++) {
    float s = 0.0f;
    for (int64_t k = g * kpg; k < (g + 1) * kpg; k++) s += d[k] * (float)sums[k];
    z[g] = s;
  }
}

static void quant_task(void *ctx, int ith, int nth) {
  lb_qrun *j = ctx;
  int64_t lo, hi;
  lb_split(j->n, ith, nth, &lo, &hi);
  for (int64_t i = lo; i < hi; i++)
    quant_row(j, i, j->xbuf + ith * j->p->colsp, j->sums + ith * j->a.nkb);
}

/* Tiles [lo, hi) of 16 weight rows against all n activation rows; share ith's buffer takes a
 * partial last tile. */
static void int_units(lb_qrun *j, int64_t lo, int64_t hi, int ith) {
  const lb_qpack *p = j->p;
  const int64_t colsp = p->colsp, ng = p->ngroups, nkb = j->a.nkb, kpg = p->group / p->kb;
  const int64_t tile_bytes = 16 * (is_u4(p) ? colsp / 2 : colsp);
  const int8_t *a = j->a.q;
  for (int64_t t = lo; t < hi; t++) {
    const int64_t r0 = 16 * t, nr = p->rows - r0 < 16 ? p->rows - r0 : 16;
    float *y = nr == 16 ? j->y + r0 : j->ybuf + (size_t)ith * (size_t)(16 * j->n);
    const int64_t ldy = nr == 16 ? p->rows : 16;
    const float *sc = p->scale + t * 16 * ng, *zs = p->zs + t * 16 * ng;
    (is_u4(p) ? j->k->qgemm_u4 : j->k->qgemm_u8)(p->codes + t * tile_bytes, sc, zs, a, colsp,
                                                 j->a.d, nkb, j->a.z, ng, (int)j->n, p->kb, nkb,
                                                 kpg, ng, y, ldy);
    for (int64_t i = 0; i < j->n; i++) {
      float *yo = j->y + i * p->rows + r0;
      for (int64_t r = 0; r < nr; r++) {
        if (nr < 16) yo[r] = y[i * 16 + r];
        if (j->bias) yo[r] += j->bias[r0 + r];
      }
    }
  }
}

/* Rows [r0, r1) of a packed NF4/FP8 weight dequantized, colsp floats apart (the prefill tiles). */
typedef struct {
  const lb_qpack *p;
  const lb_kernels *k;
} deq_ctx;

static void deq_rows(const void *ctx, int64_t r0, int64_t r1, float *out) {
  const deq_ctx *c = ctx;
  const lb_qpack *p = c->p;
  for (int64_t r = r0; r < r1; r++, out += p->colsp) {
    const float *s = p->scale + r * p->ngroups;
    if (p->kind == LB_QP_NF4)
      c->k->deq_nf4(p->codes + r * (p->colsp / 2), p->lut, s, p->group, p->colsp, out);
    else
      c->k->deq_fp8(p->codes + r * p->colsp, p->e5m2, s, p->group, p->colsp, out);
  }
}

/* Row tiles [lo, hi) of RT rows: each row's values made in registers and dotted with the (padded)
 * activation rows, 4 at a time. */
static void float_units(lb_qrun *j, int64_t lo, int64_t hi) {
  const lb_qpack *p = j->p;
  const int64_t colsp = p->colsp, ng = p->ngroups;
  const float *x = j->xbuf ? j->xbuf : j->x; /* zero-padded to colsp */
  lo *= RT, hi = hi * RT < p->rows ? hi * RT : p->rows;
  for (int64_t r = lo; r < hi; r++) {
    float out[4], b = j->bias ? j->bias[r] : 0.0f;
    for (int64_t i0 = 0; i0 < j->n; i0 += 4) {
      const int nx = j->n - i0 < 4 ? (int)(j->n - i0) : 4;
      if (p->kind == LB_QP_NF4)
        j->k->qdot_nf4(p->codes + r * (colsp / 2), p->lut, p->scale + r * ng, p->group, colsp,
                       x + i0 * colsp, colsp, nx, out);
      else
        j->k->qdot_fp8(p->codes + r * colsp, p->e5m2, p->scale + r * ng, p->group, colsp,
                       x + i0 * colsp, colsp, nx, out);
      for (int b2 = 0; b2 < nx; b2++) j->y[(i0 + b2) * p->rows + r] = out[b2] + b;
    }
  }
}

void lb_qrun_units(lb_qrun *j, int64_t lo, int64_t hi, int ith) {
  if (j->p->kind == LB_QP_NF4 || j->p->kind == LB_QP_FP8) float_units(j, lo, hi);
  else int_units(j, lo, hi, ith);
}

static void units_task(void *ctx, int ith, int nth) {
  lb_qrun *j = ctx;
  int64_t lo, hi, chunk = j->units / (8 * nth) + 1;
  while (lb_claim(&j->next, j->units, chunk, &lo, &hi)) lb_qrun_units(j, lo, hi, ith);
}

void lb_qrun_done(lb_qrun *j) {
  free(j->a.q), free(j->a.d), free(j->a.z), free(j->xbuf), free(j->sums), free(j->ybuf);
  memset(j, 0, sizeof *j);
}

lb_status lb_qrun_prepare(lb_qrun *j, lb_pool *pool, const lb_kernels *k, const lb_qpack *p,
                          const float *bias, const float *x, int64_t n, float *y, lb_error *err) {
  *j = (lb_qrun){.p = p, .k = k, .x = x, .bias = bias, .y = y, .n = n};
  const size_t colsp = (size_t)p->colsp;
  if (p->kind == LB_QP_NF4 || p->kind == LB_QP_FP8) {
    j->units = (p->rows + RT - 1) / RT;
    if (p->colsp != p->cols) { /* the kernels read whole groups: the activations padded */
      if (!(j->xbuf = calloc((size_t)n * colsp, sizeof(float))))
        return lb_fail(err, LB_ENOMEM, "linear: out of memory");
      for (int64_t i = 0; i < n; i++)
        memcpy(j->xbuf + i * p->colsp, x + i * p->cols, (size_t)p->cols * sizeof(float));
    }
    return LB_OK;
  }
  const size_t nth = (size_t)lb_pool_size(pool);
  j->units = p->rowsp / RT;
  j->a.nkb = p->colsp / p->kb;
  j->a.q = malloc((size_t)n * colsp);
  j->a.d = malloc((size_t)(n * j->a.nkb) * sizeof(float));
  j->a.z = malloc((size_t)(n * p->ngroups) * sizeof(float));
  j->xbuf = malloc(nth * colsp * sizeof(float));
  j->sums = malloc(nth * (size_t)j->a.nkb * sizeof(int32_t));
  j->ybuf = malloc(nth * (size_t)(16 * n) * sizeof(float));
  if (!j->a.q || !j->a.d || !j->a.z || !j->xbuf || !j->sums || !j->ybuf) {
    lb_qrun_done(j);
    return lb_fail(err, LB_ENOMEM, "linear: out of memory for %lld activation rows", (long long)n);
  }
  if (n * p->colsp <= SERIAL_ACT)
    for (int64_t i = 0; i < n; i++) quant_row(j, i, j->xbuf, j->sums);
  else
    lb_pool_run(pool, quant_task, j);
  return LB_OK;
}

lb_status lb_qpack_linear_k(lb_pool *pool, const lb_kernels *k, const lb_qpack *p,
                            const float *bias, const float *x, int64_t n, float *y,
                            lb_error *err) {
  if (n <= 0) return LB_OK;
  if ((p->kind == LB_QP_NF4 || p->kind == LB_QP_FP8) && n > SMALL_N) { /* prefill */
    const deq_ctx c = {p, k};
    return lb_sgemm_tiles(pool, p->rows, p->cols, p->colsp, deq_rows, &c, bias, x, n, y, err);
  }
  lb_qrun j;
  LB_TRY(lb_qrun_prepare(&j, pool, k, p, bias, x, n, y, err));
  lb_pool_run(pool, units_task, &j);
  lb_qrun_done(&j);
  return LB_OK;
}

lb_status lb_qpack_linear(lb_pool *pool, const lb_qpack *p, const float *bias, const float *x,
                          int64_t n, float *y, lb_error *err) {
  return lb_qpack_linear_k(pool, lb_cpu_kernels(), p, bias, x, n, y, err);
}
