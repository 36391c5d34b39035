/* The calibration engine's shared state (calib.h): engine.c runs blocks over the calibration
 * tokens, gptq_block.c, awq_block.c and fp8_block.c quantize one block each. */
#ifndef LB_QUANT_CALIB_ENGINE_H
#define LB_QUANT_CALIB_ENGINE_H

#include "model/model_internal.h"
#include "quant/calib.h"

struct lb_calib {
  lb_model *m;
  const lb_quant_spec *spec;
  lb_calib_opts o;
  int64_t N, L, T;        /* samples, tokens per sample, all tokens */
  int64_t d, qd, inter;   /* hidden, attention (heads * head_dim), intermediate widths */
  float *X;               /* [T, d]: the hidden states entering the current block */
  float *A;               /* GPTQ: [T, qd] attention outputs (o_proj's inputs) */
  float *w[LB_LIN_COUNT]; /* the current block's Linear weights, fp32, as the model now runs them */
  lb_mat orig[LB_LIN_COUNT];
  float *norm[2];         /* AWQ: rescaled attn / mlp norm weights of the current block */
  double *H;              /* [maxC, maxC] Hessian being accumulated (float64) */
  float *Hf;              /* [maxC, maxC] one chunk's X^T X */
  int64_t hc;             /* the width H is being accumulated for */
  lb_site hsite;          /* ... at this site */
  int64_t row0;           /* global index of the first row of the chunk being run */
  lb_calib_block out;
  int layer;
};

/* Runs block l over the calibration tokens in chunks of the model's chunk size, calling tap->fn at
 * its sites (c->row0 = global row of the chunk's first row). start LB_SITE_X or LB_SITE_ATTN_IN:
 * src [T, width] rows are whole sequences (positions 0 .. L - 1, in order) put in m->x or m->xn;
 * LB_SITE_MLP_RESID / LB_SITE_MLP_IN: any rows, put in m->x / m->xn. rows: how many of src's rows
 * (a multiple of L for attention starts). dst: NULL, or [rows, d] receiving m->x after each chunk
 * (the block's output when tap->stop is LB_SITE_OUT). */
lb_status lb_calib_feed(lb_calib *c, int l, const float *src, int64_t rows, lb_block_tap *tap,
                        float *dst, lb_error *err);

/* Hessian accumulation: lb_calib_h_reset(c, cols, site), then a tap (ctx = c) that adds
 * 2 / T x^T x of every chunk seen at `site`; lb_calib_h_final mirrors the upper triangle into the
 * full matrix. */
void lb_calib_h_reset(lb_calib *c, int64_t cols, lb_site site);
void lb_calib_h_tap(void *ctx, lb_site site, const float *x, int64_t n, int64_t d);
void lb_calib_h_final(lb_calib *c);

/* The module name of Linear k in block l ("model.layers.3.mlp.down_proj"). */
const char *lb_calib_module(const lb_calib *c, int l, int k, char *buf, size_t cap);

lb_status lb_calib_gptq_block(lb_calib *c, int l, lb_error *err);
lb_status lb_calib_awq_block(lb_calib *c, int l, lb_error *err);
lb_status lb_calib_fp8_block(lb_calib *c, int l, lb_error *err);

#endif
