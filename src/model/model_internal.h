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
  struct lb_qweight *qw[LB_LIN_COUNT]; /* owned quantized weights (lin[k].qw), NULL when dense */
  bool sliding;              /* attends to the last sliding_window positions only */
} lb_layer;

/* Rotary embedding: inverse frequencies for the positions of one forward call. */
typedef struct lb_rope_state {
  int64_t dim;      /* rotated dimensions (head_dim) */
  float *inv_freq;  /* [dim/2], for sequences up to the original context */
  float *dyn_freq;  /* [dim/2], dynamic NTK: recomputed when the sequence grows past it */
  int64_t dyn_len;  /* sequence length dyn_freq was made for; 0 = none */
  float attention_scaling;
} lb_rope_state;

struct lb_model {
  lb_checkpoint *ck;
  const lb_config *cfg;
  const lb_arch *arch;
  lb_pool *pool;
  struct lb_quant_spec *qspec; /* the checkpoint's quantization_config, NULL when dense */
  lb_mat embed, lm_head;
  float *final_norm;
  lb_layer *layers;
  lb_rope_state rope;
  int64_t ctx, pos, chunk;
  float *kcache, *vcache; /* [layers][ctx][kv_heads * head_dim] */
  /* scratch for up to `chunk` tokens */
  float *x, *xn, *q, *k, *v, *att, *gate, *up, *scores;
};

/* rope.c */
lb_status lb_rope_init(lb_rope_state *r, const lb_config *cfg, lb_error *err);
void lb_rope_free(lb_rope_state *r);
/* Rotates n rows of `heads` vectors of head_dim (row stride `stride` floats) at positions
 * pos0 .. pos0+n-1, as Transformers' rotate_half form. seq_len: the length the call reaches. */
void lb_rope_apply(lb_rope_state *r, const lb_config *cfg, float *x, int64_t n, int64_t heads,
                   int64_t stride, int64_t pos0, int64_t seq_len);

#endif
