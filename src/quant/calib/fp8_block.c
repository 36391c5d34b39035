/* Static FP8 activation scales over one decoder block (compressed-tensors' FP8 scheme: E4M3
 * weights and one calibrated input_scale per Linear, engine.h):
 *   1. the unquantized block runs over every calibration token, the largest |x| at the input of
 *      each Linear kept (the min-max observer over all tokens); its outputs are the next block's
 *      inputs;
 *   2. each quantized Linear's input_scale = that max / 448 (the largest input maps to E4M3's
 *      largest value; q/k/v and gate/up share their input, hence their scale), its weight
 *      quantized to E4M3 by round to nearest (lb_quant_spec_quantize: the spec's strategy). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/status.h"
#include "quant/calib/engine.h"

enum { NSITE = 4 };
static const lb_site SITES[NSITE] = {LB_SITE_ATTN_IN, LB_SITE_O_IN, LB_SITE_MLP_IN, LB_SITE_DOWN_IN};
/* the site each Linear reads */
static const int SITE_OF[LB_LIN_COUNT] = {[LB_LIN_Q] = 0, [LB_LIN_K] = 0, [LB_LIN_V] = 0, [LB_LIN_O] = 1,
                                          [LB_LIN_GATE] = 2, [LB_LIN_UP] = 2, [LB_LIN_DOWN] = 3};

typedef struct {
  float amax[NSITE];
  bool nonfinite;
} amax_state;

static void amax_tap(void *ctx, lb_site site, const float *x, int64_t n, int64_t d) {
  amax_state *a = ctx;
  for (int i = 0; i < NSITE; i++) {
    if (SITES[i] != site) continue;
    float m = a->amax[i];
    for (int64_t k = 0; k < n * d; k++) {
      const float v = fabsf(x[k]);
      if (!(v <= FLT_MAX)) a->nonfinite = true;
      else if (v > m) m = v;
    }
    a->amax[i] = m;
  }
}

lb_status lb_calib_fp8_block(lb_calib *c, int l, lb_error *err) {
  amax_state a = {0};
  lb_block_tap tap = {.fn = amax_tap, .ctx = &a, .start = LB_SITE_X, .stop = LB_SITE_OUT};
  LB_TRY(lb_calib_feed(c, l, c->X, c->T, &tap, c->X, err));
  if (a.nonfinite)
    return lb_fail(err, LB_EINVAL, "calibration: block %d's activations are not finite (NaN or "
                   "infinite values reach a Linear)", l);
  char mod[256], what[300];
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    lb_calib_module(c, l, k, mod, sizeof mod);
    if (lb_quant_spec_skips(c->spec, mod)) continue;
    const float amax = a.amax[SITE_OF[k]];
    /* an input that is zero on every token: any positive scale quantizes it exactly */
    c->out.act_scale[k] = amax > 0.0f ? amax / 448.0f : 1.0f;
    const lb_mat *w = &c->m->layers[l].lin[k];
    snprintf(what, sizeof what, "%s.weight", mod);
    LB_TRY(lb_quant_spec_quantize(c->spec, c->w[k], w->rows, w->cols, what, &c->out.q[k], err));
    c->out.quantized[k] = true;
  }
  return LB_OK;
}
