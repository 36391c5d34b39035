/* The model as the forward pass sees it: weights resolved by name once, fp32 norms and biases, the
 * KV cache of one sequence, and scratch buffers for a chunk of tokens. */
#ifndef LB_MODEL_INTERNAL_H
#define LB_MODEL_INTERNAL_H

#include "backend/cpu/kernels.h"
#include "base/threads.h"
#include "lowbit.h"

typedef struct lb_layer {
  float *attn_norm, *mlp_norm; /* [hidden] */
  lb_mat lin[LB_LIN_COUNT];
  float *bias[LB_LIN_COUNT]; /* NULL when the Linear has none */
  struct lb_qweight *qw[LB_LIN_COUNT]; /* owned canonical quantized weights (lin[k].qw) */
  struct lb_qpack *pack[LB_LIN_COUNT]; /* owned packed weights (lin[k].pack); the canonical one is
                                          freed once packed */
  bool sliding;              /* attends to the last sliding_window positions only */
  float kv_scale[2];         /* FP8 KV cache: the attention's k_scale and v_scale (0: none) */
} lb_layer;

/* Rotary embedding: inverse frequencies for the positions of one forward call. */
typedef struct lb_rope_state {
  int64_t dim;      /* rotated dimensions (head_dim) */
  float *inv_freq;  /* [dim/2], for sequences up to the original context */
  float *dyn_freq;  /* [dim/2], dynamic NTK: recomputed when the sequence grows past it */
  int64_t dyn_len;  /* sequence length dyn_freq was made for; 0 = none */
  float attention_scaling;
  float *cs;                        /* cos/sin table of the last call's rows, or NULL */
  int64_t cs_n, cs_pos0, cs_seq;    /* what the table holds */
} lb_rope_state;

struct lb_model {
  lb_checkpoint *ck;
  const lb_config *cfg;
  const lb_arch *arch;
  lb_pool *pool;
  struct lb_quant_spec *qspec; /* the checkpoint's quantization_config, NULL when dense */
  lb_mat embed, lm_head;
  struct lb_qweight *head_qw; /* a quantized lm_head (quantization_config lm_head), owned */
  struct lb_qpack *head_pack;
  float *final_norm;
  lb_layer *layers;
  lb_rope_state rope;
  int64_t ctx, pos, chunk;
  bool reference; /* lb_model_options.reference */
  lb_fp8_act fp8_act; /* W8A8 as it runs (lb_model_options.fp8_act resolved; never AUTO) */
  int64_t act_group;  /* GROUP128: the block width (128, or the checkpoint's) */
  bool kv_fp8;        /* the KV cache rounded to E4M3 (lb_model_options.kv_quant resolved) */
  bool on_gpu;        /* lb_model_options.device == LB_DEVICE_CUDA */
  struct lb_gpu *gpu; /* the model there */
  bool profiling;
  lb_model_profile prof;
  int batch;              /* sequences (lb_model_options.batch) */
  float *kcache, *vcache; /* the running sequence's [layers][ctx][kv_heads * head_dim] */
  float *kc_all, *vc_all; /* every sequence's, kcache pointing into them: [batch][layers]... */
  /* scratch for up to `chunk` tokens */
  float *x, *xn, *q, *k, *v, *att, *gate, *up, *scores;
  float *sample_logits; /* [batch][vocab]: lb_model_forward_sample's on the host (at its first use) */
};

/* Points inside a decoder block where a tap sees the activations (calibration): [n, d] rows. */
typedef enum lb_site {
  LB_SITE_X,         /* the block's input (m->x) */
  LB_SITE_ATTN_IN,   /* norm1(x): the input of q/k/v [n, hidden] */
  LB_SITE_O_IN,      /* the attention output, input of o_proj [n, heads * head_dim] */
  LB_SITE_ATTN_OUT,  /* o_proj's output, before the residual add [n, hidden] */
  LB_SITE_MLP_RESID, /* the residual stream after attention (x + attn) [n, hidden] */
  LB_SITE_MLP_IN,    /* norm2 of it: the input of gate/up [n, hidden] */
  LB_SITE_DOWN_IN,   /* silu(gate) * up: the input of down_proj [n, intermediate] */
  LB_SITE_MLP_OUT,   /* down_proj's output, before the residual add [n, hidden] */
  LB_SITE_OUT,       /* the block's output (m->x) */
} lb_site;

typedef struct lb_block_tap {
  void (*fn)(void *ctx, lb_site site, const float *x, int64_t n, int64_t d); /* may be NULL */
  void *ctx;
  lb_site stop;  /* the block returns right after this site (LB_SITE_OUT: runs whole) */
  lb_site start; /* where the block starts: LB_SITE_X (the whole block, from m->x);
                    LB_SITE_ATTN_IN (m->xn holds the attention input: norm1 skipped; the
                    residual add is skipped too, so stop at LB_SITE_ATTN_OUT);
                    LB_SITE_MLP_RESID (m->x holds the residual after attention: the MLP half);
                    LB_SITE_MLP_IN (m->xn holds the MLP input: norm2 skipped; stop at
                    LB_SITE_MLP_OUT) */
} lb_block_tap;

/* One decoder block over the n rows of m->x (positions pos .. pos + n - 1; the keys and values of
 * earlier positions of this layer are in the KV cache), in place; tap NULL: the plain forward. */
/* KL(P || Q) in nats of the softmaxes of the logit rows p and q (n entries), in double; *same:
 * whether their largest entries are at the same index (the lowest on ties). NaN when a row holds
 * a NaN or an infinity. (src/eval/perplexity.c) */
double lb_kl_logits(const float *p, const float *q, int64_t n, bool *same);

lb_status lb_model_block(lb_model *m, int64_t l, int64_t n, int64_t pos, const lb_block_tap *tap,
                         lb_error *err);

/* rope.c */
lb_status lb_rope_init(lb_rope_state *r, const lb_config *cfg, lb_error *err);
void lb_rope_free(lb_rope_state *r);
/* Rotates n rows of `heads` vectors of head_dim (row stride `stride` floats) at positions
 * pos0 .. pos0+n-1, as Transformers' rotate_half form. seq_len: the length the call reaches. */
void lb_rope_apply(lb_rope_state *r, const lb_config *cfg, float *x, int64_t n, int64_t heads,
                   int64_t stride, int64_t pos0, int64_t seq_len);
/* The cos/sin rows lb_rope_apply uses for positions pos0 .. pos0+n-1 of a call reaching seq_len:
 * cs[t * head_dim ...], cos in the first half, sin (both times attention_scaling) in the second. */
void lb_rope_table(lb_rope_state *r, const lb_config *cfg, int64_t pos0, int64_t n, int64_t seq_len,
                   float *cs);

/* sampler.c: s's settings and the draw its next choice takes (0 for greedy), the generator
 * advanced as lb_sampler_next advances it (for a choice made elsewhere: lb_cuda_sample). */
void lb_sampler_pick(lb_sampler *s, double *temperature, double *top_p, int64_t *top_k, double *u);
int64_t lb_sampler_vocab(const lb_sampler *s);

/* gpu.c: the model on a CUDA device (lb_model_options.device). lb_gpu_open uploads what setup()
 * loaded (the canonical quantized weights, kept unpacked for it); the forward pass then runs
 * there, and the host keeps only the checkpoint's mapping. */
struct lb_gpu;
lb_status lb_gpu_open(lb_model *m, lb_error *err);
void lb_gpu_free(struct lb_gpu *g);
/* nseq sequences of n tokens (tokens [nseq][n]); logits [nseq][V] of each last position, or with
 * all (nseq 1) [n][V] of every position. samplers (NULL, or [nseq] without all): next[q] is
 * sequence q's next token, chosen on the device from its last logits as lb_sampler_next would. */
lb_status lb_gpu_forward(lb_model *m, int64_t nseq, const int32_t *tokens, int64_t n, float *logits,
                         bool all, lb_sampler *const *samplers, int32_t *next, lb_error *err);
uint64_t lb_gpu_bytes(const struct lb_gpu *g);
/* LOWBIT_CUDA_SAMPLE=host: the GPU model's logits go back and lb_sampler_next chooses (A/B runs). */
bool lb_gpu_host_sample(const struct lb_gpu *g);

#endif
