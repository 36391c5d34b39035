/* Table 3 of DESIGN.md: the architectures lowbit knows, by config.json architectures[0].
 * Llama, Mistral and Qwen2 share one tensor layout; they differ in biases, the sliding window
 * and the defaults of their Transformers config classes (LlamaConfig, MistralConfig, Qwen2Config). */
#include <stdio.h>
#include <string.h>

#include "lowbit.h"

#define LLAMA_LAYOUT                                                                               \
  .embed = "model.embed_tokens", .final_norm = "model.norm", .lm_head = "lm_head",                 \
  .blocks = "model.layers",                                                                      \
  .linear = {[LB_LIN_Q] = "self_attn.q_proj", [LB_LIN_K] = "self_attn.k_proj",                     \
             [LB_LIN_V] = "self_attn.v_proj", [LB_LIN_O] = "self_attn.o_proj",                     \
             [LB_LIN_GATE] = "mlp.gate_proj", [LB_LIN_UP] = "mlp.up_proj",                         \
             [LB_LIN_DOWN] = "mlp.down_proj"},                                                     \
  .attn_norm = "input_layernorm", .mlp_norm = "post_attention_layernorm"

static const lb_arch ARCHS[] = {
    {.name = "LlamaForCausalLM", .model_type = "llama", LLAMA_LAYOUT,
     .default_rms_norm_eps = 1e-6, .default_rope_theta = 10000.0,
     .default_max_position_embeddings = 2048},
    {.name = "MistralForCausalLM", .model_type = "mistral", LLAMA_LAYOUT, .sliding_window = true,
     .default_rms_norm_eps = 1e-6, .default_rope_theta = 10000.0,
     .default_max_position_embeddings = 4096 * 32},
    {.name = "Qwen2ForCausalLM", .model_type = "qwen2", LLAMA_LAYOUT, .qkv_bias = true,
     .sliding_window = true, .default_rms_norm_eps = 1e-6, .default_rope_theta = 10000.0,
     .default_max_position_embeddings = 32768},
};

size_t lb_arch_count(void) { return sizeof ARCHS / sizeof ARCHS[0]; }
const lb_arch *lb_arch_at(size_t i) { return i < lb_arch_count() ? &ARCHS[i] : NULL; }

const lb_arch *lb_arch_find(const char *architecture, const char *model_type) {
  for (size_t i = 0; architecture && architecture[0] && i < lb_arch_count(); i++)
    if (strcmp(ARCHS[i].name, architecture) == 0) return &ARCHS[i];
  for (size_t i = 0; model_type && model_type[0] && i < lb_arch_count(); i++)
    if (strcmp(ARCHS[i].model_type, model_type) == 0) return &ARCHS[i];
  return NULL;
}

const char *lb_arch_block(const lb_arch *a, int l, char *buf, size_t cap) {
  snprintf(buf, cap, "%s.%d", a->blocks, l);
  return buf;
}

void lb_arch_linear_shape(const lb_config *c, lb_linear_kind k, int64_t *out, int64_t *in) {
  int64_t q = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
  switch (k) {
  case LB_LIN_Q: *out = q, *in = c->hidden_size; break;
  case LB_LIN_K:
  case LB_LIN_V: *out = kv, *in = c->hidden_size; break;
  case LB_LIN_O: *out = c->hidden_size, *in = q; break;
  case LB_LIN_GATE:
  case LB_LIN_UP: *out = c->intermediate_size, *in = c->hidden_size; break;
  case LB_LIN_DOWN: *out = c->hidden_size, *in = c->intermediate_size; break;
  default: *out = *in = 0;
  }
}

bool lb_arch_linear_has_bias(const lb_arch *a, const lb_config *c, lb_linear_kind k) {
  bool qkv = k == LB_LIN_Q || k == LB_LIN_K || k == LB_LIN_V;
  if (a->qkv_bias) return qkv; /* Qwen2: q/k/v always, o_proj and the MLP never */
  if (k <= LB_LIN_O) return c->attention_bias; /* LlamaAttention: o_proj too */
  return c->mlp_bias;
}
