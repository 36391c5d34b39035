/* config.json: the hyper-parameters of the Llama, Mistral and Qwen2 families, in both styles seen in
 * the wild (rope_theta / rope_scaling / torch_dtype at the top level, or the newer rope_parameters
 * and dtype). Shape-defining keys are required: a default would only be a wrong guess. */
#include <math.h>
#include <string.h>

#include "io/config_internal.h"
#include "io/json.h"

#define DIM_MAX (1 << 20)
#define VOCAB_MAX (1 << 24)

static lb_status parse_rope(const json_t *root, const lb_arch *a, const char *L, lb_rope *r,
                            lb_error *err) {
  const json_t *p = json_object_get(root, "rope_parameters");
  const json_t *scaling = json_object_get(root, "rope_scaling");
  const char *where = "rope_parameters";
  memset(r, 0, sizeof *r);
  r->factor = 1.0;
  if (p && !json_is_null(p)) {
    if (!json_is_object(p))
      return lb_fail(err, LB_EINVAL, "%s: key 'rope_parameters': expected an object, got %s", L,
                     lb_json_type_name(p));
  } else {
    p = (scaling && !json_is_null(scaling)) ? scaling : NULL;
    where = "rope_scaling";
    if (p && !json_is_object(p))
      return lb_fail(err, LB_EINVAL, "%s: key 'rope_scaling': expected an object or null, got %s",
                     L, lb_json_type_name(p));
  }
  /* theta: inside rope_parameters (new style) or at the top level (old style) */
  char label[LB_ERROR_MSG_MAX];
  snprintf(label, sizeof label, "%s: %s", L, where);
  if (p && lb_json_has(p, "rope_theta"))
    LB_TRY(lb_json_real(p, "rope_theta", label, true, 0, 1e-3, 1e12, &r->theta, err));
  else
    LB_TRY(lb_json_real(root, "rope_theta", L, false, a->default_rope_theta, 1e-3, 1e12,
                        &r->theta, err));
  if (!p) return LB_OK;
  char type[32];
  /* "rope_type" (current) or "type" (older rope_scaling dicts) */
  LB_TRY(lb_json_str(p, lb_json_has(p, "rope_type") ? "rope_type" : "type", label, false,
                     "default", type, sizeof type, err));
  static const struct {
    const char *name;
    lb_rope_type type;
  } TYPES[] = {{"default", LB_ROPE_DEFAULT}, {"linear", LB_ROPE_LINEAR},
               {"dynamic", LB_ROPE_DYNAMIC}, {"llama3", LB_ROPE_LLAMA3}, {"yarn", LB_ROPE_YARN}};
  size_t i = 0;
  while (i < sizeof TYPES / sizeof TYPES[0] && strcmp(TYPES[i].name, type) != 0) i++;
  if (i == sizeof TYPES / sizeof TYPES[0])
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: rope type '%s' is not supported (default, linear, dynamic, llama3, yarn)",
                   label, type);
  r->type = TYPES[i].type;
  if (r->type == LB_ROPE_DEFAULT) return LB_OK;
  LB_TRY(lb_json_real(p, "factor", label, true, 0, 1e-6, 1e6, &r->factor, err));
  if (r->type == LB_ROPE_LLAMA3) {
    LB_TRY(lb_json_real(p, "low_freq_factor", label, true, 0, 1e-6, 1e6, &r->low_freq_factor, err));
    LB_TRY(lb_json_real(p, "high_freq_factor", label, true, 0, 1e-6, 1e6, &r->high_freq_factor,
                        err));
    if (r->high_freq_factor <= r->low_freq_factor)
      return lb_fail(err, LB_EINVAL, "%s: high_freq_factor must exceed low_freq_factor", label);
  }
  bool need_orig = r->type == LB_ROPE_LLAMA3;
  LB_TRY(lb_json_int(p, "original_max_position_embeddings", label, need_orig, 0, 1, INT32_MAX,
                     &r->original_max_position_embeddings, err));
  return LB_OK;
}

/* eos_token_id: an integer, a list of integers, or null. */
static lb_status parse_eos(const json_t *obj, const char *L, int64_t *ids, int *n, lb_error *err) {
  const json_t *v = json_object_get(obj, "eos_token_id");
  *n = 0;
  if (!v || json_is_null(v)) return LB_OK;
  if (json_is_array(v)) {
    if (json_array_size(v) > 8)
      return lb_fail(err, LB_EINVAL, "%s: key 'eos_token_id': more than 8 ids", L);
    for (size_t i = 0; i < json_array_size(v); i++) {
      const json_t *x = json_array_get(v, i);
      if (!json_is_integer(x) || json_integer_value(x) < 0)
        return lb_fail(err, LB_EINVAL, "%s: key 'eos_token_id'[%zu]: expected a token id", L, i);
      ids[(*n)++] = json_integer_value(x);
    }
    return LB_OK;
  }
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return lb_fail(err, LB_EINVAL, "%s: key 'eos_token_id': expected a token id or a list, got %s",
                   L, lb_json_type_name(v));
  ids[(*n)++] = json_integer_value(v);
  return LB_OK;
}

lb_status lb_config_from_json(const json_t *root, const char *L, lb_config *c, lb_error *err) {
  memset(c, 0, sizeof *c);
  if (!json_is_object(root)) return lb_fail(err, LB_EFORMAT, "%s: expected a JSON object", L);
  const json_t *archs = json_object_get(root, "architectures");
  if (archs && !json_is_null(archs)) {
    if (!json_is_array(archs) || !json_array_size(archs) ||
        !json_is_string(json_array_get(archs, 0)))
      return lb_fail(err, LB_EINVAL, "%s: key 'architectures': expected a list of names", L);
    const char *a0 = json_string_value(json_array_get(archs, 0));
    if (strlen(a0) >= sizeof c->architecture)
      return lb_fail(err, LB_EINVAL, "%s: key 'architectures': name too long", L);
    strcpy(c->architecture, a0);
  }
  LB_TRY(lb_json_str(root, "model_type", L, false, "", c->model_type, sizeof c->model_type, err));
  if (!c->architecture[0] && !c->model_type[0])
    return lb_fail(err, LB_ENOTFOUND, "%s: neither 'architectures' nor 'model_type' is given", L);
  const lb_arch *a = lb_arch_find(c->architecture, c->model_type);
  if (!a) {
    char known[256] = "";
    for (size_t i = 0; i < lb_arch_count(); i++)
      snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
               lb_arch_at(i)->name);
    return lb_fail(err, LB_EUNSUPPORTED, "%s: architecture '%s' (model_type '%s') is not supported; known: %s",
                   L, c->architecture, c->model_type, known);
  }
  if (!c->architecture[0]) strcpy(c->architecture, a->name);
  if (!c->model_type[0]) strcpy(c->model_type, a->model_type);

  LB_TRY(lb_json_int(root, "vocab_size", L, true, 0, 1, VOCAB_MAX, &c->vocab_size, err));
  LB_TRY(lb_json_int(root, "hidden_size", L, true, 0, 1, DIM_MAX, &c->hidden_size, err));
  LB_TRY(lb_json_int(root, "intermediate_size", L, true, 0, 1, DIM_MAX, &c->intermediate_size,
                     err));
  LB_TRY(lb_json_int(root, "num_hidden_layers", L, true, 0, 1, 4096, &c->num_hidden_layers, err));
  LB_TRY(lb_json_int(root, "num_attention_heads", L, true, 0, 1, 4096, &c->num_attention_heads,
                     err));
  LB_TRY(lb_json_int(root, "num_key_value_heads", L, false, c->num_attention_heads, 1, 4096,
                     &c->num_key_value_heads, err));
  if (c->num_attention_heads % c->num_key_value_heads)
    return lb_fail(err, LB_EINVAL,
                   "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld", L,
                   (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
  if (!lb_json_has(root, "head_dim") && c->hidden_size % c->num_attention_heads)
    return lb_fail(err, LB_EINVAL,
                   "%s: hidden_size %lld is not a multiple of num_attention_heads %lld and no head_dim is given",
                   L, (long long)c->hidden_size, (long long)c->num_attention_heads);
  LB_TRY(lb_json_int(root, "head_dim", L, false, c->hidden_size / c->num_attention_heads, 1, 4096,
                     &c->head_dim, err));
  if (c->head_dim % 2)
    return lb_fail(err, LB_EINVAL, "%s: head_dim %lld is odd (RoPE needs pairs)", L,
                   (long long)c->head_dim);
  LB_TRY(lb_json_int(root, "max_position_embeddings", L, false, a->default_max_position_embeddings,
                     1, INT32_MAX, &c->max_position_embeddings, err));
  LB_TRY(lb_json_real(root, "rms_norm_eps", L, false, a->default_rms_norm_eps, 1e-30, 1.0,
                      &c->rms_norm_eps, err));
  LB_TRY(parse_rope(root, a, L, &c->rope, err));
  LB_TRY(lb_json_bool(root, "tie_word_embeddings", L, false, a->default_tie_word_embeddings,
                      &c->tie_word_embeddings, err));
  LB_TRY(lb_json_bool(root, "attention_bias", L, false, false, &c->attention_bias, err));
  LB_TRY(lb_json_bool(root, "mlp_bias", L, false, false, &c->mlp_bias, err));
  LB_TRY(lb_json_str(root, "hidden_act", L, false, "silu", c->hidden_act, sizeof c->hidden_act,
                     err));
  /* dtype (Transformers >= 4.56) or torch_dtype (older) */
  LB_TRY(lb_json_str(root, lb_json_has(root, "dtype") ? "dtype" : "torch_dtype", L, false, "",
                     c->dtype, sizeof c->dtype, err));
  if (a->sliding_window) {
    bool use = true; /* Mistral: a window whenever sliding_window is set */
    if (strcmp(a->model_type, "qwen2") == 0)
      LB_TRY(lb_json_bool(root, "use_sliding_window", L, false, false, &use, err));
    /* A missing key means the config class default (4096); an explicit null means no window. */
    const json_t *sw = json_object_get(root, "sliding_window");
    LB_TRY(lb_json_int(root, "sliding_window", L, false, sw ? 0 : 4096, 1, INT32_MAX,
                       &c->sliding_window, err));
    if (!use) c->sliding_window = 0;
    LB_TRY(lb_json_int(root, "max_window_layers", L, false, 28, 0, 4096, &c->max_window_layers,
                       err));
  }
  LB_TRY(lb_json_int(root, "bos_token_id", L, false, -1, 0, VOCAB_MAX, &c->bos_token_id, err));
  LB_TRY(parse_eos(root, L, c->eos_token_ids, &c->n_eos, err));
  return LB_OK;
}

lb_status lb_config_parse(const char *text, size_t len, const char *label, lb_config *out,
                          lb_error *err) {
  json_t *root;
  LB_TRY(lb_json_parse(text, len, label, &root, err));
  lb_status s = lb_config_from_json(root, label, out, err);
  json_decref(root);
  return s;
}

lb_status lb_generation_config_from_json(const json_t *root, const char *L,
                                         lb_generation_config *g, lb_error *err) {
  memset(g, 0, sizeof *g);
  if (!json_is_object(root)) return lb_fail(err, LB_EFORMAT, "%s: expected a JSON object", L);
  g->present = true;
  LB_TRY(lb_json_int(root, "bos_token_id", L, false, -1, 0, VOCAB_MAX, &g->bos_token_id, err));
  LB_TRY(lb_json_int(root, "pad_token_id", L, false, -1, 0, VOCAB_MAX, &g->pad_token_id, err));
  LB_TRY(parse_eos(root, L, g->eos_token_ids, &g->n_eos, err));
  LB_TRY(lb_json_bool(root, "do_sample", L, false, false, &g->do_sample, err));
  LB_TRY(lb_json_real(root, "temperature", L, false, 1.0, 0.0, 1e6, &g->temperature, err));
  LB_TRY(lb_json_real(root, "top_p", L, false, 1.0, 0.0, 1.0, &g->top_p, err));
  LB_TRY(lb_json_int(root, "top_k", L, false, 50, 0, VOCAB_MAX, &g->top_k, err));
  LB_TRY(lb_json_int(root, "max_new_tokens", L, false, -1, 0, INT32_MAX, &g->max_new_tokens, err));
  return LB_OK;
}
