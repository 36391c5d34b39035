/* A Hugging Face checkpoint directory: config.json, generation_config.json, tokenizer files and the
 * tensors, checked against what the architecture and config imply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config_internal.h"
#include "io/fs.h"
#include "io/json.h"

#define CONFIG_MAX_BYTES (16u << 20)

static const char *const KNOWN_FILES[] = {"tokenizer.json", "tokenizer_config.json",
                                          "tokenizer.model", "special_tokens_map.json",
                                          "generation_config.json"};
enum { N_KNOWN = sizeof KNOWN_FILES / sizeof KNOWN_FILES[0] };

struct lb_checkpoint {
  char *dir;
  lb_config cfg;
  lb_generation_config gen;
  const lb_arch *arch;
  lb_tensors *tensors;
  char *quant_config; /* compact JSON or NULL */
  bool has[N_KNOWN];
};

void lb_checkpoint_close(lb_checkpoint *c) {
  if (!c) return;
  lb_tensors_close(c->tensors);
  free(c->quant_config);
  free(c->dir);
  free(c);
}

/* One expected tensor: present, floating point, with the given shape. */
static lb_status expect(const lb_checkpoint *c, const char *name, int64_t d0, int64_t d1,
                        lb_error *err) {
  const lb_tensor *t = lb_tensors_find(c->tensors, name);
  if (!t) return lb_fail(err, LB_ENOTFOUND, "%s: tensor '%s' is missing", c->dir, name);
  int nd = d1 ? 2 : 1;
  if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
    char got[96], want[64];
    const int64_t w[2] = {d0, d1};
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' has shape %s, config.json implies %s", t->file,
                   name, lb_shape_str(t->shape, t->ndim, got, sizeof got),
                   lb_shape_str(w, nd, want, sizeof want));
  }
  if (!lb_dtype_is_float(t->dtype))
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' is %s, expected a floating-point type",
                   t->file, name, lb_dtype_name(t->dtype));
  return LB_OK;
}

static lb_status validate(const lb_checkpoint *c, lb_error *err) {
  const lb_config *g = &c->cfg;
  const lb_arch *a = c->arch;
  char name[256];
  snprintf(name, sizeof name, "%s.weight", a->embed);
  LB_TRY(expect(c, name, g->vocab_size, g->hidden_size, err));
  snprintf(name, sizeof name, "%s.weight", a->final_norm);
  LB_TRY(expect(c, name, g->hidden_size, 0, err));
  bool quantized = c->quant_config != NULL; /* Linear layers are in a quantized layout */
  snprintf(name, sizeof name, "%s.weight", a->lm_head);
  char qhead[256]; /* a quantized lm_head (GPTQ "lm_head": true) is checked by its reader */
  snprintf(qhead, sizeof qhead, "%s.qweight", a->lm_head);
  bool head_quantized = quantized && !lb_tensors_find(c->tensors, name) &&
                        lb_tensors_find(c->tensors, qhead);
  if ((!g->tie_word_embeddings || lb_tensors_find(c->tensors, name)) && !head_quantized)
    LB_TRY(expect(c, name, g->vocab_size, g->hidden_size, err));
  for (int l = 0; l < g->num_hidden_layers; l++) {
    char block[64];
    lb_arch_block(a, l, block, sizeof block);
    snprintf(name, sizeof name, "%s.%s.weight", block, a->attn_norm);
    LB_TRY(expect(c, name, g->hidden_size, 0, err));
    snprintf(name, sizeof name, "%s.%s.weight", block, a->mlp_norm);
    LB_TRY(expect(c, name, g->hidden_size, 0, err));
    for (int k = 0; k < LB_LIN_COUNT; k++) {
      int64_t out, in;
      lb_arch_linear_shape(g, (lb_linear_kind)k, &out, &in);
      if (!quantized) {
        snprintf(name, sizeof name, "%s.%s.weight", block, a->linear[k]);
        LB_TRY(expect(c, name, out, in, err));
      }
      if (lb_arch_linear_has_bias(a, g, (lb_linear_kind)k)) {
        snprintf(name, sizeof name, "%s.%s.bias", block, a->linear[k]);
        LB_TRY(expect(c, name, out, 0, err));
      }
    }
  }
  return LB_OK;
}

static lb_status load_configs(lb_checkpoint *c, lb_error *err) {
  char *path = lb_path_join(c->dir, "config.json");
  if (!path) return lb_fail(err, LB_ENOMEM, "out of memory");
  json_t *root = NULL;
  lb_status s = lb_path_exists(path)
                    ? lb_json_load_file(path, CONFIG_MAX_BYTES, &root, err)
                    : lb_fail(err, LB_ENOTFOUND, "%s: config.json is missing", c->dir);
  if (s == LB_OK) s = lb_config_from_json(root, path, &c->cfg, err);
  if (s == LB_OK) {
    const json_t *q = json_object_get(root, "quantization_config");
    if (q && !json_is_null(q)) {
      if (!json_is_object(q))
        s = lb_fail(err, LB_EINVAL, "%s: key 'quantization_config': expected an object, got %s",
                    path, lb_json_type_name(q));
      else if (!(c->quant_config = json_dumps(q, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        s = lb_fail(err, LB_ENOMEM, "out of memory");
    }
  }
  json_decref(root);
  free(path);
  if (s != LB_OK) return s;
  c->arch = lb_arch_find(c->cfg.architecture, c->cfg.model_type);
  for (int i = 0; i < N_KNOWN; i++) {
    char *p = lb_path_join(c->dir, KNOWN_FILES[i]);
    c->has[i] = p && lb_path_exists(p);
    free(p);
  }
  if (lb_checkpoint_has_file(c, "generation_config.json")) {
    root = NULL;
    path = lb_path_join(c->dir, "generation_config.json");
    s = path ? lb_json_load_file(path, CONFIG_MAX_BYTES, &root, err)
             : lb_fail(err, LB_ENOMEM, "out of memory");
    if (s == LB_OK) s = lb_generation_config_from_json(root, path, &c->gen, err);
    if (root) json_decref(root);
    free(path);
  }
  return s;
}

lb_status lb_checkpoint_open(const char *dir, lb_checkpoint **out, lb_error *err) {
  *out = NULL;
  if (!lb_is_dir(dir)) return lb_fail(err, LB_ENOTFOUND, "%s: not a directory", dir);
  lb_checkpoint *c = calloc(1, sizeof *c);
  if (!c || !(c->dir = strdup(dir))) {
    free(c);
    return lb_fail(err, LB_ENOMEM, "out of memory");
  }
  lb_status s = load_configs(c, err);
  if (s == LB_OK) s = lb_tensors_open(dir, &c->tensors, err);
  if (s == LB_OK) s = validate(c, err);
  if (s != LB_OK) {
    lb_checkpoint_close(c);
    return s;
  }
  *out = c;
  return LB_OK;
}

const char *lb_checkpoint_dir(const lb_checkpoint *c) { return c->dir; }
const lb_config *lb_checkpoint_config(const lb_checkpoint *c) { return &c->cfg; }
const lb_generation_config *lb_checkpoint_generation(const lb_checkpoint *c) { return &c->gen; }
const lb_tensors *lb_checkpoint_tensors(const lb_checkpoint *c) { return c->tensors; }
const char *lb_checkpoint_quant_config(const lb_checkpoint *c) { return c->quant_config; }
const lb_arch *lb_checkpoint_arch(const lb_checkpoint *c) { return c->arch; }

const char *lb_checkpoint_companion(size_t i) { return i < N_KNOWN ? KNOWN_FILES[i] : NULL; }

bool lb_checkpoint_has_file(const lb_checkpoint *c, const char *name) {
  for (int i = 0; i < N_KNOWN; i++)
    if (strcmp(KNOWN_FILES[i], name) == 0) return c->has[i];
  char *p = lb_path_join(c->dir, name);
  bool r = p && lb_path_exists(p);
  free(p);
  return r;
}

/* Whether a tensor belongs to one of the decoder blocks' Linear layers (any of its tensors:
 * weight, bias, qweight, scales ...). */
static bool is_block_linear(const lb_checkpoint *c, const char *name) {
  const lb_arch *a = c->arch;
  size_t plen = strlen(a->blocks);
  if (strncmp(name, a->blocks, plen) != 0 || name[plen] != '.') return false;
  const char *p = name + plen + 1;
  while (*p >= '0' && *p <= '9') p++;
  if (*p++ != '.') return false;
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    size_t n = strlen(a->linear[k]);
    if (strncmp(p, a->linear[k], n) == 0 && p[n] == '.') return true;
  }
  return false;
}

lb_param_count lb_checkpoint_params(const lb_checkpoint *c) {
  lb_param_count r = {0};
  const lb_config *g = &c->cfg;
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    int64_t out, in;
    lb_arch_linear_shape(g, (lb_linear_kind)k, &out, &in);
    r.linear += (uint64_t)(out * in) * (uint64_t)g->num_hidden_layers;
  }
  r.n_linear = (uint64_t)LB_LIN_COUNT * (uint64_t)g->num_hidden_layers;
  bool quantized = c->quant_config != NULL;
  char qhead[256], head[256]; /* a quantized lm_head counts by its logical shape too */
  snprintf(qhead, sizeof qhead, "%s.qweight", c->arch->lm_head);
  snprintf(head, sizeof head, "%s.", c->arch->lm_head);
  bool head_q = quantized && lb_tensors_find(c->tensors, qhead);
  if (head_q) r.total += (uint64_t)(g->vocab_size * g->hidden_size);
  for (size_t i = 0; i < lb_tensors_count(c->tensors); i++) {
    const lb_tensor *t = lb_tensors_at(c->tensors, i);
    bool lin = is_block_linear(c, t->name) || (head_q && !strncmp(t->name, head, strlen(head)));
    /* dense: count what is stored; quantized: Linear weights by their logical shape below,
       but their biases as stored */
    size_t n = strlen(t->name);
    bool bias = n > 5 && strcmp(t->name + n - 5, ".bias") == 0;
    if (!quantized || !lin || bias) r.total += t->numel;
  }
  if (quantized) r.total += r.linear;
  return r;
}
