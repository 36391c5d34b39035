/* GPTQ over one decoder block, true-sequential (engine.h):
 *   1. the block's inputs -> attention norm: H of q/k/v (shared input) -> q, k, v quantized;
 *   2. -> attention with the quantized q/k/v: H of o_proj, and its inputs kept -> o quantized;
 *   3. residual + o_proj (quantized) -> MLP norm: H of gate/up -> gate, up quantized;
 *   4. -> silu(gate) * up: H of down_proj -> down quantized;
 *   5. the quantized MLP gives the block's output: the next block's inputs. */
#include <string.h>

#include "base/status.h"
#include "quant/calib/engine.h"

/* Quantizes the listed Linears of block l with the Hessian in c->H; the model then runs their
 * dequantized weights. */
static lb_status quantize(lb_calib *c, int l, const int *ks, int nk, lb_error *err) {
  lb_layer *Ly = &c->m->layers[l];
  char mod[256];
  for (int i = 0; i < nk; i++) {
    int k = ks[i];
    lb_calib_module(c, l, k, mod, sizeof mod);
    if (lb_quant_spec_skips(c->spec, mod)) continue;
    lb_quant_spec e = lb_quant_spec_for(c->spec, mod); /* shallow; the module's override */
    lb_gptq_opts o = {.bits = e.bits, .group = e.group, .sym = e.sym, .desc_act = e.desc_act,
                      .static_groups = c->o.static_groups,
                      .v1_safe = e.gptq_version == LB_GPTQ_V1 && e.method == LB_QM_GPTQ,
                      .damp = c->o.damp, .blocksize = c->o.blocksize};
    const lb_mat *w = &Ly->lin[k];
    LB_TRY(lb_quant_spec_check_shape(c->spec, w->rows, w->cols, mod, err));
    lb_qweight *q = &c->out.q[k];
    LB_TRY(lb_gptq_solve(c->w[k], w->rows, w->cols, c->H, &o, c->m->pool, mod, q, NULL, err));
    c->out.quantized[k] = true;
    for (int64_t r = 0; r < w->rows; r++) lb_qweight_dequant_row(q, r, c->w[k] + r * w->cols);
  }
  return LB_OK;
}

/* o_proj's inputs: accumulated into H and kept for step 3. */
static void o_tap(void *ctx, lb_site site, const float *x, int64_t n, int64_t d) {
  lb_calib *c = ctx;
  if (site != LB_SITE_O_IN) return;
  memcpy(c->A + c->row0 * d, x, (size_t)(n * d) * sizeof(float));
  lb_calib_h_tap(ctx, site, x, n, d);
}

/* One Hessian from the inputs seen at `site` (cols wide) over every calibration row fed from
 * `start`, then the Linears ks quantized with it. */
static lb_status hessian_pass(lb_calib *c, int l, lb_site start, lb_site site, int64_t cols,
                              void (*fn)(void *, lb_site, const float *, int64_t, int64_t),
                              const int *ks, int nk, lb_error *err) {
  lb_calib_h_reset(c, cols, site);
  lb_block_tap t = {.fn = fn, .ctx = c, .stop = site, .start = start};
  LB_TRY(lb_calib_feed(c, l, c->X, c->T, &t, NULL, err));
  lb_calib_h_final(c);
  return quantize(c, l, ks, nk, err);
}

lb_status lb_calib_gptq_block(lb_calib *c, int l, lb_error *err) {
  lb_model *m = c->m;
  lb_layer *Ly = &m->layers[l];
  static const int QKV[] = {LB_LIN_Q, LB_LIN_K, LB_LIN_V}, O[] = {LB_LIN_O},
                   GU[] = {LB_LIN_GATE, LB_LIN_UP}, DN[] = {LB_LIN_DOWN};
  /* 1. q/k/v; 2. o (its inputs kept in c->A) */
  LB_TRY(hessian_pass(c, l, LB_SITE_X, LB_SITE_ATTN_IN, c->d, lb_calib_h_tap, QKV, 3, err));
  LB_TRY(hessian_pass(c, l, LB_SITE_X, LB_SITE_O_IN, c->qd, o_tap, O, 1, err));
  /* 3. X += o_proj(A): the residual after attention, in place; then gate/up's inputs */
  int64_t step = m->chunk;
  for (int64_t r = 0; r < c->T; r += step) {
    int64_t n = c->T - r < step ? c->T - r : step;
    LB_TRY(lb_linear(m->pool, &Ly->lin[LB_LIN_O], Ly->bias[LB_LIN_O], c->A + r * c->qd, n, m->xn,
                     err));
    float *x = c->X + r * c->d;
    for (int64_t i = 0; i < n * c->d; i++) x[i] += m->xn[i];
  }
  LB_TRY(hessian_pass(c, l, LB_SITE_MLP_RESID, LB_SITE_MLP_IN, c->d, lb_calib_h_tap, GU, 2, err));
  /* 4. down */
  LB_TRY(hessian_pass(c, l, LB_SITE_MLP_RESID, LB_SITE_DOWN_IN, c->inter, lb_calib_h_tap, DN, 1,
                      err));
  /* 5. the quantized block's outputs */
  lb_block_tap t5 = {.stop = LB_SITE_OUT, .start = LB_SITE_MLP_RESID};
  return lb_calib_feed(c, l, c->X, c->T, &t5, c->X, err);
}
