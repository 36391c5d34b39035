/* Calibration-based quantization (GPTQ, AWQ): calibration samples from text, and the block-by-block
 * engine. The model is opened dense; the engine holds the hidden states of every calibration token
 * entering the current decoder block ([nsamples * seqlen, hidden]), quantizes that block's Linear
 * layers from what they see, and moves the hidden states through the block:
 *   GPTQ  true-sequential (q/k/v, then o, then gate/up, then down), each group's Hessian taken from
 *         the inputs produced by the already-quantized Linears before it; the next block's inputs
 *         are the outputs of the quantized block (GPTQModel, AutoGPTQ, the GPTQ paper's code).
 *   AWQ   AutoAWQ's order: the block's inputs of every Linear captured from the unquantized block,
 *         the scale searches (q/k/v after the attention norm, o after v when their shapes match,
 *         gate/up after the MLP norm, down after up), scales folded into the norm or Linear before,
 *         the clipping search, then round-to-nearest with zero points; the next block's inputs are
 *         the unquantized block's outputs (AutoAWQ's _get_input_feat runs the block before any
 *         change to it).
 *   FP8   static activations (compressed-tensors' FP8 scheme): each Linear's input_scale from the
 *         largest |x| its input reaches over the calibration tokens, the weights rounded to E4M3;
 *         the next block's inputs are the unquantized block's outputs.
 * Memory: the hidden states, one block's fp32 weights and a chunk of activations. */
#ifndef LB_QUANT_CALIB_H
#define LB_QUANT_CALIB_H

#include "quant/spec.h"

/* nsamples windows of seqlen token ids, row-major. */
typedef struct lb_calib_data {
  int32_t *tokens;
  int64_t nsamples, seqlen;
} lb_calib_data;

/* Calibration windows from documents: each document is tokenized (BOS added as the tokenizer
 * does), the documents are concatenated, cut into consecutive windows of seqlen tokens, and
 * nsamples of those windows are drawn without replacement by a seeded shuffle (the same seed, the
 * same windows). Fewer windows than nsamples is an error that says how many tokens there are. */
lb_status lb_calib_sample(const lb_tokenizer *tok, const char *const *docs, const size_t *lens,
                          size_t ndocs, int64_t nsamples, int64_t seqlen, uint64_t seed,
                          const char *label, lb_calib_data *out, lb_error *err);
void lb_calib_data_free(lb_calib_data *d);

typedef struct lb_calib_opts {
  /* GPTQ */
  double damp;          /* damp_percent (0.01) */
  bool static_groups;
  int blocksize;        /* 128 */
  /* AWQ */
  int awq_grid;             /* scale exponents tried: 0, 1/grid, ... (20) */
  int64_t awq_search_samples; /* calibration windows the scale search's loss is measured on (all
                                 when <= 0 or more than there are) */
  int64_t awq_clip_tokens;  /* tokens of the clipping search (512, AutoAWQ's n_sample_token) */
  bool awq_no_clip;         /* skip the clipping search */
} lb_calib_opts;

lb_calib_opts lb_calib_default_opts(void);

/* What the engine made of one block. */
typedef struct lb_calib_block {
  bool quantized[LB_LIN_COUNT]; /* q[k] holds the Linear (else it stays dense) */
  lb_qweight q[LB_LIN_COUNT];
  const float *dense[LB_LIN_COUNT]; /* a dense Linear AWQ rescaled: fp32 [rows, cols], else NULL */
  const float *attn_norm, *mlp_norm; /* norms AWQ rescaled: fp32 [hidden], else NULL */
  const float *bias[LB_LIN_COUNT];   /* AWQ: the Linear biases as they now are (fp32), else NULL */
  float act_scale[LB_LIN_COUNT];     /* FP8 static: each quantized Linear's input_scale */
} lb_calib_block;

typedef struct lb_calib lb_calib;
struct lb_model;

/* Whether spec learns from calibration text: LB_QM_GPTQ (not rtn), LB_QM_AWQ, or LB_QM_CT_FP8
 * with static activations (act LB_FP8_ACT_STATIC: calib/fp8_block.c). */
bool lb_calib_needed(const lb_quant_spec *spec);

/* spec: one that lb_calib_needed. The model must be dense, opened with a context of at
 * least d->seqlen. Embeds the calibration tokens. */
lb_status lb_calib_new(struct lb_model *m, const lb_quant_spec *spec, const lb_calib_data *d,
                       const lb_calib_opts *o, lb_calib **out, lb_error *err);
/* Quantizes block l (blocks in order 0, 1, ...) into *b; valid until the next call. */
lb_status lb_calib_block_run(lb_calib *c, int l, lb_calib_block *b, lb_error *err);
void lb_calib_free(lb_calib *c);

#endif
