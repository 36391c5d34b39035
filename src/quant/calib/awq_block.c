/* AWQ over one decoder block, AutoAWQ's AwqQuantizer order (engine.h):
 *   1. the unquantized block runs over every calibration token: per input channel mean |x| of each
 *      Linear input, the rows of the search samples and the clipping rows kept; its outputs are
 *      the next block's inputs;
 *   2. the scale search of each group on the unquantized weights: q/k/v (loss on the attention
 *      output), o after v (only when v_proj and o_proj have the same shape, as AutoAWQ), gate/up (on
 *      the MLP output), down after up (on down's output);
 *   3. the scales folded in: norm or previous Linear divided, the group's columns multiplied;
 *   4. the clipping search of every quantized Linear but q and k (AutoAWQ's avoid_clipping);
 *   5. round-to-nearest with zero points (lb_awq_quantize). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/calib/engine.h"

enum { S_ATTN, S_O, S_MLP, S_DOWN, NSLOT };
static const lb_site SITES[NSLOT] = {LB_SITE_ATTN_IN, LB_SITE_O_IN, LB_SITE_MLP_IN, LB_SITE_DOWN_IN};

typedef struct {
  lb_calib *c;
  int64_t width[NSLOT];
  double *xsum[NSLOT];  /* sum over all tokens of |x| per channel */
  float *search[NSLOT]; /* [S * L, width] the search samples' rows */
  float *clip[NSLOT];   /* [Tc, width] every step-th token */
  int64_t S, step, Tc;
  int64_t *sidx;        /* per sample: its index among the search samples, or -1 */
  float *out, *ref;     /* [S * L, hidden] a module's output, and the unquantized one */
} awq_state;

static int slot_of(lb_site site) {
  for (int i = 0; i < NSLOT; i++)
    if (SITES[i] == site) return i;
  return -1;
}

static void capture_tap(void *ctx, lb_site site, const float *x, int64_t n, int64_t d) {
  awq_state *a = ctx;
  lb_calib *c = a->c;
  int i = slot_of(site);
  if (i < 0) return;
  for (int64_t t = 0; t < n; t++) {
    const float *row = x + t * d;
    double *s = a->xsum[i];
    for (int64_t k = 0; k < d; k++) s[k] += fabsf(row[k]);
    int64_t g = c->row0 + t, si = a->sidx[g / c->L];
    if (si >= 0) memcpy(a->search[i] + (si * c->L + g % c->L) * d, row, (size_t)d * sizeof(float));
    if (g % a->step == 0) memcpy(a->clip[i] + (g / a->step) * d, row, (size_t)d * sizeof(float));
  }
}

/* A module's output rows, collected at the site its forward stops at. */
static void out_tap(void *ctx, lb_site site, const float *x, int64_t n, int64_t d) {
  awq_state *a = ctx;
  if (site == LB_SITE_ATTN_OUT || site == LB_SITE_MLP_OUT)
    memcpy(a->out + a->c->row0 * d, x, (size_t)(n * d) * sizeof(float));
}

/* One scaling group's search. */
typedef struct {
  awq_state *a;
  int l, slot;
  const int *ks;        /* the Linears scaled */
  int nk;
  int inspect;          /* -1: the attention or MLP module; else the Linear whose output is compared */
  float **orig;         /* [nk] unquantized weights */
  lb_status st;
  lb_error *err;
} search_ctx;

/* Runs the inspected module on the search rows into a->out. */
static lb_status module_forward(search_ctx *x, lb_error *err) {
  awq_state *a = x->a;
  lb_calib *c = a->c;
  int64_t rows = a->S * c->L;
  if (x->inspect >= 0) {
    lb_layer *Ly = &c->m->layers[x->l];
    return lb_linear(c->m->pool, &Ly->lin[x->inspect], Ly->bias[x->inspect], a->search[x->slot],
                     rows, a->out, err);
  }
  bool attn = x->slot == S_ATTN;
  lb_block_tap t = {.fn = out_tap, .ctx = a, .start = attn ? LB_SITE_ATTN_IN : LB_SITE_MLP_IN,
                    .stop = attn ? LB_SITE_ATTN_OUT : LB_SITE_MLP_OUT};
  return lb_calib_feed(c, x->l, a->search[x->slot], rows, &t, NULL, err);
}

static double search_loss(void *p, const float *s) {
  search_ctx *x = p;
  awq_state *a = x->a;
  lb_calib *c = a->c;
  if (x->st != LB_OK) return INFINITY;
  const lb_layer *Ly = &c->m->layers[x->l];
  for (int i = 0; i < x->nk; i++) {
    int k = x->ks[i];
    int64_t R = Ly->lin[k].rows, C = Ly->lin[k].cols;
    float *w = c->w[k];
    for (int64_t r = 0; r < R; r++)
      for (int64_t j = 0; j < C; j++) w[r * C + j] = x->orig[i][r * C + j] * s[j];
    lb_awq_fake_quant(w, R, C, c->spec->bits, c->spec->group);
    for (int64_t r = 0; r < R; r++)
      for (int64_t j = 0; j < C; j++) w[r * C + j] /= s[j];
  }
  x->st = module_forward(x, x->err);
  if (x->st != LB_OK) return INFINITY;
  int64_t n = a->S * c->L * (x->inspect >= 0 ? Ly->lin[x->inspect].rows : c->d);
  double e = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a->out[i] - (double)a->ref[i];
    e += d * d;
  }
  return e / (double)n;
}

/* Searches the scales of one group (the Linears ks reading slot's input); the best into s. */
static lb_status search(awq_state *a, int l, int slot, const int *ks, int nk, int inspect,
                        float *s, lb_error *err) {
  lb_calib *c = a->c;
  const lb_layer *Ly = &c->m->layers[l];
  int64_t C = a->width[slot];
  float *orig[LB_LIN_COUNT] = {0}, *xm = malloc((size_t)C * sizeof(float));
  float *wm = malloc((size_t)C * sizeof(float));
  const float *wl[LB_LIN_COUNT];
  int64_t rows[LB_LIN_COUNT];
  lb_status st = xm && wm ? LB_OK : lb_fail(err, LB_ENOMEM, "out of memory");
  for (int i = 0; i < nk && st == LB_OK; i++) {
    size_t n = (size_t)(Ly->lin[ks[i]].rows * C);
    if (!(orig[i] = malloc(n * sizeof(float)))) st = lb_fail(err, LB_ENOMEM, "out of memory");
    else memcpy(orig[i], c->w[ks[i]], n * sizeof(float));
    wl[i] = c->w[ks[i]], rows[i] = Ly->lin[ks[i]].rows;
  }
  if (st == LB_OK) {
    for (int64_t j = 0; j < C; j++) xm[j] = (float)(a->xsum[slot][j] / (double)c->T);
    lb_awq_w_mean(wl, rows, nk, C, c->spec->group, wm);
    search_ctx x = {a, l, slot, ks, nk, inspect, orig, LB_OK, err};
    float *keep = a->out;
    a->out = a->ref; /* the unquantized module's output */
    st = module_forward(&x, err);
    a->out = keep;
    if (st == LB_OK) {
      int best = lb_awq_search(xm, wm, C, c->o.awq_grid, search_loss, &x, s, NULL);
      st = x.st;
      if (st == LB_OK && best < 0) {
        char mod[256];
        st = lb_fail(err, LB_EINVAL, "%s: AWQ scale search found no finite loss (NaN activations?)",
                     lb_calib_module(c, l, ks[0], mod, sizeof mod));
      }
    }
    for (int i = 0; i < nk; i++) /* back to the unquantized weights */
      memcpy(c->w[ks[i]], orig[i], (size_t)(rows[i] * C) * sizeof(float));
  }
  for (int i = 0; i < nk; i++) free(orig[i]);
  free(xm), free(wm);
  return st;
}

static void scale_cols(float *w, int64_t R, int64_t C, const float *s) {
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < C; j++) w[r * C + j] *= s[j];
}

static void free_state(awq_state *a) {
  for (int i = 0; i < NSLOT; i++) free(a->xsum[i]), free(a->search[i]), free(a->clip[i]);
  free(a->sidx), free(a->out), free(a->ref);
}

lb_status lb_calib_awq_block(lb_calib *c, int l, lb_error *err) {
  lb_model *m = c->m;
  lb_layer *Ly = &m->layers[l];
  awq_state a = {.c = c};
  a.S = c->o.awq_search_samples > 0 && c->o.awq_search_samples < c->N ? c->o.awq_search_samples : c->N;
  int64_t ct = c->o.awq_clip_tokens > 0 ? c->o.awq_clip_tokens : 512;
  a.step = c->T / ct > 1 ? c->T / ct : 1;
  a.Tc = (c->T + a.step - 1) / a.step;
  int64_t wd[NSLOT] = {c->d, c->qd, c->d, c->inter};
  lb_status st = LB_OK;
  a.sidx = malloc((size_t)c->N * sizeof(int64_t));
  a.out = malloc((size_t)(a.S * c->L * c->d) * sizeof(float));
  a.ref = malloc((size_t)(a.S * c->L * c->d) * sizeof(float));
  if (!a.sidx || !a.out || !a.ref) st = LB_ENOMEM;
  for (int i = 0; i < NSLOT && st == LB_OK; i++) {
    a.width[i] = wd[i];
    a.xsum[i] = calloc((size_t)wd[i], sizeof(double));
    a.search[i] = malloc((size_t)(a.S * c->L * wd[i]) * sizeof(float));
    a.clip[i] = malloc((size_t)(a.Tc * wd[i]) * sizeof(float));
    if (!a.xsum[i] || !a.search[i] || !a.clip[i]) st = LB_ENOMEM;
  }
  if (st != LB_OK) {
    free_state(&a);
    return lb_fail(err, LB_ENOMEM, "AWQ: out of memory for block %d's activations", l);
  }
  /* the search samples, spread over the calibration set */
  for (int64_t i = 0; i < c->N; i++) a.sidx[i] = -1;
  for (int64_t j = 0; j < a.S; j++) a.sidx[j * c->N / a.S] = j;
  /* 1. the unquantized block over every token; its output is the next block's input */
  lb_block_tap cap = {.fn = capture_tap, .ctx = &a, .start = LB_SITE_X, .stop = LB_SITE_OUT};
  st = lb_calib_feed(c, l, c->X, c->T, &cap, c->X, err);
  /* 2. the searches, each on the unquantized weights */
  static const int QKV[] = {LB_LIN_Q, LB_LIN_K, LB_LIN_V}, O[] = {LB_LIN_O},
                   GU[] = {LB_LIN_GATE, LB_LIN_UP}, DN[] = {LB_LIN_DOWN};
  bool vo = Ly->lin[LB_LIN_V].rows == Ly->lin[LB_LIN_O].rows &&
            Ly->lin[LB_LIN_V].cols == Ly->lin[LB_LIN_O].cols;
  float *s[4] = {0};
  for (int i = 0; i < 4 && st == LB_OK; i++)
    if (!(s[i] = malloc((size_t)a.width[i] * sizeof(float)))) st = lb_fail(err, LB_ENOMEM, "out of memory");
  if (st == LB_OK) st = search(&a, l, S_ATTN, QKV, 3, -1, s[0], err);
  if (st == LB_OK && vo) st = search(&a, l, S_O, O, 1, LB_LIN_O, s[1], err);
  if (st == LB_OK) st = search(&a, l, S_MLP, GU, 2, -1, s[2], err);
  if (st == LB_OK) st = search(&a, l, S_DOWN, DN, 1, LB_LIN_DOWN, s[3], err);
  /* 3. fold the scales in: x / s into the previous op, W * s; the clipping rows follow x / s */
  if (st == LB_OK) {
    int64_t d = c->d, qd = c->qd, I = c->inter;
    for (int i = 0; i < 2; i++) {
      float *n = realloc(c->norm[i], (size_t)d * sizeof(float));
      if (!n) {
        st = lb_fail(err, LB_ENOMEM, "out of memory");
        break;
      }
      c->norm[i] = n;
    }
    if (st == LB_OK) {
      for (int64_t j = 0; j < d; j++) {
        c->norm[0][j] = Ly->attn_norm[j] / s[0][j];
        c->norm[1][j] = Ly->mlp_norm[j] / s[2][j];
      }
      for (int i = 0; i < 3; i++) scale_cols(c->w[QKV[i]], Ly->lin[QKV[i]].rows, d, s[0]);
      if (vo) {
        for (int64_t r = 0; r < qd; r++) {
          for (int64_t j = 0; j < d; j++) c->w[LB_LIN_V][r * d + j] /= s[1][r];
          if (Ly->bias[LB_LIN_V]) Ly->bias[LB_LIN_V][r] /= s[1][r];
        }
        scale_cols(c->w[LB_LIN_O], d, qd, s[1]);
      }
      for (int i = 0; i < 2; i++) scale_cols(c->w[GU[i]], I, d, s[2]);
      for (int64_t r = 0; r < I; r++) {
        for (int64_t j = 0; j < d; j++) c->w[LB_LIN_UP][r * d + j] /= s[3][r];
        if (Ly->bias[LB_LIN_UP]) Ly->bias[LB_LIN_UP][r] /= s[3][r];
      }
      scale_cols(c->w[LB_LIN_DOWN], d, I, s[3]);
      for (int i = 0; i < NSLOT; i++) {
        if (i == S_O && !vo) continue;
        for (int64_t t = 0; t < a.Tc; t++)
          for (int64_t j = 0; j < a.width[i]; j++) a.clip[i][t * a.width[i] + j] /= s[i][j];
      }
      c->out.attn_norm = c->norm[0], c->out.mlp_norm = c->norm[1];
    }
  }
  /* 4-5. clipping (not q, k) and quantization of the modules not kept dense */
  char mod[256];
  static const int CLIP_SLOT[LB_LIN_COUNT] = {
      [LB_LIN_Q] = -1, [LB_LIN_K] = -1, [LB_LIN_V] = S_ATTN, [LB_LIN_O] = S_O,
      [LB_LIN_GATE] = S_MLP, [LB_LIN_UP] = S_MLP, [LB_LIN_DOWN] = S_DOWN};
  for (int k = 0; k < LB_LIN_COUNT && st == LB_OK; k++) {
    lb_calib_module(c, l, k, mod, sizeof mod);
    const lb_mat *w = &Ly->lin[k];
    if (lb_quant_spec_skips(c->spec, mod)) {
      c->out.dense[k] = c->w[k];
      continue;
    }
    st = lb_quant_spec_check_shape(c->spec, w->rows, w->cols, mod, err);
    if (st == LB_OK && CLIP_SLOT[k] >= 0 && !c->o.awq_no_clip)
      st = lb_awq_clip(c->w[k], w->rows, w->cols, c->spec->bits, c->spec->group,
                       a.clip[CLIP_SLOT[k]], a.Tc, mod, err);
    if (st == LB_OK)
      st = lb_awq_quantize(c->w[k], w->rows, w->cols, c->spec->bits, c->spec->group,
                           c->spec->awq_ct ? c->orig[k].dtype : LB_F16, mod, &c->out.q[k], err);
    if (st == LB_OK) c->out.quantized[k] = true;
  }
  for (int k = 0; k < LB_LIN_COUNT; k++) c->out.bias[k] = Ly->bias[k];
  for (int i = 0; i < 4; i++) free(s[i]);
  free_state(&a);
  return st;
}
