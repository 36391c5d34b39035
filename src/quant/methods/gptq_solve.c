/* GPTQ (Frantar et al. 2022) for one Linear, as GPTQModel's / AutoGPTQ's GPTQ.quantize does it, in
 * float64: dead columns, optional act-order permutation, dampening, the upper Cholesky factor of
 * H^-1, then columns in blocks of `blocksize`: each column is quantized with its group's parameters,
 * its error divided by the pivot spreads over the block's later columns, and the block's errors
 * update all later columns at once (lazy batch update). Rows are independent given H^-1, so the
 * column loop of a block runs split over rows on the pool and the lazy update is one dgemm. */
#include <cblas.h>
#include <f77blas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/gptq.h"

/* GPTQ's Quantizer.find_params over one row's n values (float64): see lb_rtn_quantize. v1_safe:
 * a zero of 0 becomes 1 with scale = xmax / (maxq - 1) (lb_rtn_v1_safe's rule). */
static void find_params(const double *x, int64_t n, const lb_gptq_opts *o, double *scale,
                        double *zero) {
  double maxq = (double)((1 << o->bits) - 1), xmin = 0, xmax = 0;
  for (int64_t i = 0; i < n; i++) xmin = fmin(xmin, x[i]), xmax = fmax(xmax, x[i]);
  if (o->sym) {
    xmax = fmax(fabs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
  *scale = (xmax - xmin) / maxq;
  *zero = o->sym ? (maxq + 1) / 2 : nearbyint(-xmin / *scale);
  if (o->v1_safe && !o->sym && *zero == 0) *scale = xmax / (maxq - 1), *zero = 1;
}

static double quant1(double x, double scale, double zero, double maxq, uint8_t *code) {
  double q = nearbyint(x / scale) + zero;
  q = q < 0 ? 0 : q > maxq ? maxq : q;
  *code = (uint8_t)q;
  return scale * (q - zero);
}

typedef struct {
  const lb_gptq_opts *o;
  int64_t rows, cols, gs, ngroups, i1, i2;
  double *W;          /* [rows, cols], permuted columns */
  const double *Hinv; /* [cols, cols] upper factor */
  double *err;        /* [rows, i2 - i1] this block's scaled errors */
  double *sc, *zr;    /* [rows, ngroups] parameters by group index */
  const int32_t *perm;
  uint8_t *Q;         /* [rows, cols] codes, permuted columns */
  double *snap;       /* per share: the row's block columns as they were at the block's start */
  double *trace;      /* NULL, or [rows, cols]: each column's value when it was quantized */
} solve_job;

static void block_task(void *p, int ith, int nth) {
  solve_job *j = p;
  const lb_gptq_opts *o = j->o;
  int64_t lo, hi, C = j->cols, G = j->ngroups, B = j->i2 - j->i1;
  double maxq = (double)((1 << o->bits) - 1), *snap = j->snap + (int64_t)ith * (B + j->gs);
  lb_split(j->rows, ith, nth, &lo, &hi);
  for (int64_t r = lo; r < hi; r++) {
    double *w = j->W + r * C, *e = j->err + r * B;
    memcpy(snap, w + j->i1, (size_t)B * sizeof(double));
    for (int64_t i = j->i1; i < j->i2; i++) {
      int64_t g; /* the group whose parameters quantize column i */
      if (!(o->group > 0)) {
        g = 0; /* per channel: found once on the whole row before the loop */
      } else if (o->static_groups) {
        g = (o->desc_act ? j->perm[i] : i) / j->gs; /* found before the permutation */
      } else {
        g = i / j->gs;
        if (i % j->gs == 0) {
          /* the reference reads the group from its outer W, which has not yet received this
           * block's updates: block columns as they were at the block's start */
          int64_t n = C - i < j->gs ? C - i : j->gs;
          double *x = snap + B;
          for (int64_t k = 0; k < n; k++) x[k] = i + k < j->i2 ? snap[i + k - j->i1] : w[i + k];
          find_params(x, n, o, &j->sc[r * G + g], &j->zr[r * G + g]);
        }
      }
      double d = j->Hinv[i * C + i];
      double q = quant1(w[i], j->sc[r * G + g], j->zr[r * G + g], maxq, &j->Q[r * C + i]);
      if (j->trace) j->trace[r * C + i] = w[i];
      double er = (w[i] - q) / d;
      const double *h = j->Hinv + i * C;
      for (int64_t k = i + 1; k < j->i2; k++) w[k] -= er * h[k];
      e[i - j->i1] = er;
    }
  }
}

/* The upper Cholesky factor U of H^-1 (H^-1 = U^T U) in place, row-major: LAPACK (OpenBLAS) on the
 * column-major view, where 'L' is the row-major upper triangle. Returns LAPACK's info. */
static int chol_inverse_upper(double *h, int64_t n) {
  blasint nn = (blasint)n, info = 0;
  char lo = 'L';
  dpotrf_(&lo, &nn, h, &nn, &info);
  if (info) return (int)info;
  dpotri_(&lo, &nn, h, &nn, &info); /* H^-1 in the same triangle */
  if (info) return (int)info;
  dpotrf_(&lo, &nn, h, &nn, &info);
  if (info) return (int)info;
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = 0; k < i; k++) h[i * n + k] = 0; /* keep the upper factor only */
  return 0;
}

typedef struct {
  double d;
  int32_t c;
} diag_entry;

static int cmp_desc(const void *a, const void *b) {
  const diag_entry *x = a, *y = b;
  if (x->d != y->d) return x->d > y->d ? -1 : 1;
  return (x->c > y->c) - (x->c < y->c); /* stable: ties keep column order */
}

lb_status lb_gptq_solve(const float *w, int64_t rows, int64_t cols, const double *h_in,
                        const lb_gptq_opts *o, lb_pool *pool, const char *name, lb_qweight *out,
                        lb_gptq_info *info, lb_error *err) {
  memset(out, 0, sizeof *out);
  if (o->bits < 2 || o->bits > 8)
    return lb_fail(err, LB_EINVAL, "%s: %d bits (GPTQ takes 2 to 8)", name, o->bits);
  if (o->group > 0 && cols % o->group)
    return lb_fail(err, LB_EINVAL, "%s: in_features %lld is not a multiple of the group size %lld",
                   name, (long long)cols, (long long)o->group);
  LB_TRY(lb_quant_check_finite(w, rows, cols, name, err));
  for (int64_t i = 0; i < cols * cols; i++)
    if (!isfinite(h_in[i]))
      return lb_fail(err, LB_EINVAL, "%s: the Hessian of the calibration inputs is not finite "
                     "(NaN or Inf activations at column %lld)", name, (long long)(i / cols));
  int64_t R = rows, C = cols, gs = o->group > 0 ? o->group : C, G = C / gs;
  int64_t bs = o->blocksize > 0 ? o->blocksize : 128;
  int nth = pool ? lb_pool_size(pool) : 1;
  double *W = malloc((size_t)(R * C) * sizeof(double)), *H = malloc((size_t)(C * C) * sizeof(double));
  double *H0 = malloc((size_t)(C * C) * sizeof(double));
  double *sc = calloc((size_t)(R * G), sizeof(double)), *zr = calloc((size_t)(R * G), sizeof(double));
  double *E = malloc((size_t)(R * bs) * sizeof(double));
  double *snap = malloc((size_t)nth * (size_t)(bs + gs) * sizeof(double));
  diag_entry *diag = malloc((size_t)C * sizeof(diag_entry));
  int32_t *perm = malloc((size_t)C * sizeof(int32_t));
  uint8_t *Q = malloc((size_t)(R * C));
  double *trace = o->trace ? malloc((size_t)(R * C) * sizeof(double)) : NULL;
  lb_status st = LB_OK;
  if (!W || !H || !H0 || !sc || !zr || !E || !snap || !diag || !perm || !Q || (o->trace && !trace)) {
    st = lb_fail(err, LB_ENOMEM, "%s: out of memory for GPTQ (%lld x %lld)", name, (long long)R,
                 (long long)C);
    goto done;
  }
  for (int64_t i = 0; i < R * C; i++) W[i] = w[i];
  memcpy(H, h_in, (size_t)(C * C) * sizeof(double));
  /* per channel: one set per row, found on the whole row before dead columns are zeroed (as the
   * reference does) */
  if (!(o->group > 0))
    for (int64_t r = 0; r < R; r++) find_params(W + r * C, C, o, &sc[r], &zr[r]);
  int64_t dead = 0;
  for (int64_t c = 0; c < C; c++)
    if (H[c * C + c] == 0) { /* a column no calibration token ever touched */
      H[c * C + c] = 1;
      for (int64_t r = 0; r < R; r++) W[r * C + c] = 0;
      dead++;
    }
  /* static groups: per group, after the dead columns, before the permutation */
  if (o->group > 0 && o->static_groups)
    for (int64_t r = 0; r < R; r++)
      for (int64_t g = 0; g < G; g++) find_params(W + r * C + g * gs, gs, o, &sc[r * G + g], &zr[r * G + g]);
  for (int64_t c = 0; c < C; c++) perm[c] = (int32_t)c;
  if (o->desc_act) {
    for (int64_t c = 0; c < C; c++) diag[c] = (diag_entry){H[c * C + c], (int32_t)c};
    qsort(diag, (size_t)C, sizeof *diag, cmp_desc);
    for (int64_t c = 0; c < C; c++) perm[c] = diag[c].c;
    double *row = malloc((size_t)C * sizeof(double));
    if (!row) {
      st = lb_fail(err, LB_ENOMEM, "%s: out of memory", name);
      goto done;
    }
    for (int64_t r = 0; r < R; r++) {
      for (int64_t c = 0; c < C; c++) row[c] = W[r * C + perm[c]];
      memcpy(W + r * C, row, (size_t)C * sizeof(double));
    }
    free(row);
    memcpy(H0, H, (size_t)(C * C) * sizeof(double));
    for (int64_t a = 0; a < C; a++)
      for (int64_t b = 0; b < C; b++) H[a * C + b] = H0[(int64_t)perm[a] * C + perm[b]];
  }
  /* dampening: damp_percent of the mean diagonal; when H is still not positive definite, more
   * (GPTQModel's damp_auto_increment, 0.0025 a step) */
  double mean = 0;
  for (int64_t c = 0; c < C; c++) mean += H[c * C + c];
  mean /= (double)C;
  memcpy(H0, H, (size_t)(C * C) * sizeof(double));
  double damp = o->damp;
  for (;;) {
    memcpy(H, H0, (size_t)(C * C) * sizeof(double));
    for (int64_t c = 0; c < C; c++) H[c * C + c] += damp * mean;
    if (chol_inverse_upper(H, C) == 0) break;
    damp += 0.0025;
    if (damp >= 1.0) {
      st = lb_fail(err, LB_EINVAL, "%s: the Hessian is not positive definite even with damp %.4f "
                   "(too few or degenerate calibration tokens?)", name, damp);
      goto done;
    }
  }
  for (int64_t i1 = 0; i1 < C; i1 += bs) {
    int64_t i2 = i1 + bs < C ? i1 + bs : C, B = i2 - i1;
    solve_job j = {.o = o, .rows = R, .cols = C, .gs = gs, .ngroups = G, .i1 = i1, .i2 = i2,
                   .W = W, .Hinv = H, .err = E, .sc = sc, .zr = zr, .perm = perm, .Q = Q,
                   .snap = snap, .trace = trace};
    if (pool) lb_pool_run(pool, block_task, &j);
    else block_task(&j, 0, 1);
    if (i2 < C) /* W[:, i2:] -= Err1 Hinv[i1:i2, i2:] */
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)(C - i2), (int)B, -1.0,
                  E, (int)B, H + i1 * C + i2, (int)C, 1.0, W + i2, (int)C);
  }
  *out = (lb_qweight){.kind = LB_QK_AFFINE, .rows = R, .cols = C, .bits = o->bits, .group = gs,
                      .sym = o->sym};
  st = lb_qweight_alloc(out, o->desc_act && o->group > 0, false, err);
  if (st != LB_OK) goto done;
  for (int64_t r = 0; r < R; r++)
    for (int64_t c = 0; c < C; c++) {
      out->q[r * C + perm[c]] = Q[r * C + c];
      if (trace) o->trace[r * C + perm[c]] = trace[r * C + c];
    }
  for (int64_t i = 0; i < R * G; i++) out->scale[i] = (float)sc[i], out->zero[i] = (float)zr[i];
  if (out->g_idx)
    for (int64_t c = 0; c < C; c++)
      out->g_idx[perm[c]] = (int32_t)((o->static_groups ? perm[c] : c) / gs);
  if (info) *info = (lb_gptq_info){.damp = damp, .dead = dead};
done:
  free(W), free(H), free(H0), free(sc), free(zr), free(E), free(snap), free(diag), free(perm);
  free(Q), free(trace);
  return st;
}
