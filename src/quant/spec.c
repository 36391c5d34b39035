/* quantization_config <-> lb_quant_spec, and the per-Linear dispatch (spec.h). */
#include "quant/spec.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "io/json.h"
#include "quant/bnb.h"
#include "quant/ct.h"
#include "quant/hqq.h"

static void spec_init(lb_quant_spec *s) {
  memset(s, 0, sizeof *s);
  s->bits = 4;
  s->group = 128;
  s->gptq_version = LB_GPTQ_V1;
  s->damp = 0.01;
  s->nf4 = true;
  s->compute_dtype = LB_F32;
  s->int8_threshold = 6.0;
  s->block_r = s->block_c = 128;
  s->ct_strategy = LB_FP8_CHANNEL;
  s->act = LB_FP8_ACT_OFF;
  s->axis = 1;
  s->wdtype = LB_F32;
}

lb_status lb_quant_spec_default(const char *name, lb_quant_spec *out, lb_error *err) {
  spec_init(out);
  if (!strcmp(name, "rtn") || !strcmp(name, "gptq")) {
    out->method = LB_QM_GPTQ;
    out->rtn = name[0] == 'r';
  } else if (!strcmp(name, "awq")) {
    out->method = LB_QM_AWQ;
  } else if (!strcmp(name, "nf4") || !strcmp(name, "fp4")) {
    out->method = LB_QM_BNB4;
    out->nf4 = name[0] == 'n';
    out->group = 64;
  } else if (!strcmp(name, "int8")) {
    out->method = LB_QM_INT8;
    out->bits = 8;
  } else if (!strcmp(name, "fp8")) {
    out->method = LB_QM_FP8;
    out->bits = 8;
    out->act = LB_FP8_ACT_GROUP128; /* FineGrainedFP8Config's activation_scheme "dynamic" */
    out->act_group = 128;
  } else if (!strcmp(name, "hqq")) {
    out->method = LB_QM_HQQ;
    out->group = 64;
  } else {
    return lb_fail(err, LB_EINVAL,
                   "unknown method '%s' (expected rtn, gptq, awq, nf4, fp4, int8, fp8, hqq)", name);
  }
  return LB_OK;
}

void lb_quant_spec_free(lb_quant_spec *s) {
  for (size_t i = 0; i < s->n_skip; i++) free(s->skip[i]);
  s->n_skip = 0;
  for (size_t i = 0; i < s->n_ov; i++) {
    free(s->ov[i].pattern);
    if (s->ov[i].re) pcre2_code_free(s->ov[i].re);
  }
  free(s->ov);
  s->ov = NULL;
  s->n_ov = 0;
}

/* ---- per-module overrides ("dynamic") ---------------------------------------------------------- */

/* Appends rule r (its pattern compiled here from `pattern`); `what` names it in errors. */
static lb_status push_override(lb_quant_spec *s, const char *pattern, const lb_quant_override *r,
                               const char *what, lb_error *err) {
  if (s->method != LB_QM_GPTQ)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: per-module bit widths are written only in the GPTQ layout", what);
  if (s->n_ov == LB_QSPEC_MAX_OVERRIDE)
    return lb_fail(err, LB_EINVAL, "%s: more than %d per-module overrides", what,
                   LB_QSPEC_MAX_OVERRIDE);
  if (!r->skip && r->has_bits && r->bits != 2 && r->bits != 3 && r->bits != 4 && r->bits != 8)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: bits %d (expected 2, 3, 4 or 8)", what, r->bits);
  if (!r->skip && r->has_group && (r->group == 0 || r->group < -1))
    return lb_fail(err, LB_EINVAL, "%s: group_size %lld (expected -1 or a positive size)", what,
                   (long long)r->group);
  int code;
  PCRE2_SIZE off;
  /* re.match: anchored at the start only; Python 3 str patterns are Unicode-aware (\d, \w) */
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                 PCRE2_ANCHORED | PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(code, msg, sizeof msg);
    return lb_fail(err, LB_EINVAL, "%s: bad regex '%.200s': %s at offset %zu", what, pattern,
                   (char *)msg, (size_t)off);
  }
  if (!(s->n_ov % 8)) {
    lb_quant_override *n = realloc(s->ov, (s->n_ov + 8) * sizeof *n);
    if (!n) {
      pcre2_code_free(re);
      return lb_fail(err, LB_ENOMEM, "out of memory");
    }
    s->ov = n;
  }
  lb_quant_override *o = &s->ov[s->n_ov];
  *o = *r;
  o->re = re;
  if (!(o->pattern = strdup(pattern))) {
    pcre2_code_free(re);
    return lb_fail(err, LB_ENOMEM, "out of memory");
  }
  s->n_ov++;
  return LB_OK;
}

lb_status lb_quant_spec_add_override(lb_quant_spec *s, const char *pattern, bool skip, int bits,
                                     int64_t group, lb_error *err) {
  lb_quant_override r = {.skip = skip, .has_bits = !skip, .has_group = !skip, .bits = bits,
                         .group = group};
  char what[300];
  snprintf(what, sizeof what, "override '%.200s'", pattern);
  return push_override(s, pattern, &r, what, err);
}

const lb_quant_override *lb_quant_spec_match(const lb_quant_spec *s, const char *name) {
  if (!s->n_ov) return NULL;
  const lb_quant_override *hit = NULL;
  for (size_t i = 0; i < s->n_ov && !hit; i++) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(s->ov[i].re, NULL);
    if (!md) continue;
    if (pcre2_match(s->ov[i].re, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0)
      hit = &s->ov[i];
    pcre2_match_data_free(md);
  }
  return hit;
}

lb_quant_spec lb_quant_spec_for(const lb_quant_spec *s, const char *name) {
  lb_quant_spec e = *s;
  e.ov = NULL;
  e.n_ov = 0;
  const lb_quant_override *o = lb_quant_spec_match(s, name);
  if (o && !o->skip) {
    if (o->has_bits) e.bits = o->bits;
    if (o->has_group) e.group = o->group;
    if (o->has_sym) e.sym = o->sym;
    if (o->has_desc_act) e.desc_act = o->desc_act;
  }
  return e;
}

lb_status lb_quant_spec_add_skip(lb_quant_spec *s, const char *name, lb_error *err) {
  if (s->n_skip == LB_QSPEC_MAX_SKIP)
    return lb_fail(err, LB_EINVAL, "more than %d modules to skip", LB_QSPEC_MAX_SKIP);
  for (size_t i = 0; i < s->n_skip; i++)
    if (!strcmp(s->skip[i], name)) return LB_OK;
  if (!(s->skip[s->n_skip] = strdup(name))) return lb_fail(err, LB_ENOMEM, "out of memory");
  s->n_skip++;
  return LB_OK;
}

bool lb_quant_spec_skips(const lb_quant_spec *s, const char *name) {
  for (size_t i = 0; i < s->n_skip; i++)
    if (s->skip[i][0] && strstr(name, s->skip[i])) return true;
  const lb_quant_override *o = lb_quant_spec_match(s, name);
  return o && o->skip;
}

/* ---- parsing ---------------------------------------------------------------------------------- */

static bool in_list(const char *key, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(key, *list)) return true;
  return false;
}

static lb_status check_keys(const json_t *o, const char *label, const char *const *allowed,
                            lb_error *err) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)o, key, v) {
    (void)v;
    if (!in_list(key, allowed))
      return lb_fail(err, LB_EUNSUPPORTED, "%s: key '%s' is not supported", label, key);
  }
  return LB_OK;
}

static lb_status skip_list(lb_quant_spec *s, const json_t *o, const char *key, const char *label,
                           lb_error *err) {
  const json_t *a = json_object_get(o, key);
  if (!a || json_is_null(a)) return LB_OK;
  if (!json_is_array(a))
    return lb_fail(err, LB_EINVAL, "%s: key '%s': expected a list of module names, got %s", label,
                   key, lb_json_type_name(a));
  size_t i;
  const json_t *e;
  json_array_foreach(a, i, e) {
    if (!json_is_string(e))
      return lb_fail(err, LB_EINVAL, "%s: key '%s'[%zu]: expected a string", label, key, i);
    const char *n = json_string_value(e);
    /* compressed-tensors: "re:.*lm_head" */
    if (!strncmp(n, "re:", 3)) {
      n += 3;
      while (*n == '.' || *n == '*') n++;
    }
    LB_TRY(lb_quant_spec_add_skip(s, n, err));
  }
  return LB_OK;
}

static lb_status dtype_name(const char *n, const char *label, const char *key, lb_dtype *out,
                            lb_error *err) {
  if (!strncmp(n, "torch.", 6)) n += 6;
  if (!strcmp(n, "float32") || !strcmp(n, "float")) *out = LB_F32;
  else if (!strcmp(n, "bfloat16")) *out = LB_BF16;
  else if (!strcmp(n, "float16") || !strcmp(n, "half")) *out = LB_F16;
  else return lb_fail(err, LB_EUNSUPPORTED, "%s: key '%s': dtype \"%s\"", label, key, n);
  return LB_OK;
}

static const char *const GPTQ_KEYS[] = {
    "quant_method", "bits", "group_size", "sym", "desc_act", "checkpoint_format", "damp_percent",
    "damp_auto_increment", "true_sequential", "static_groups", "model_name_or_path",
    "model_file_base_name", "tokenizer", "dataset", "use_cuda_fp16", "model_seqlen",
    "block_name_to_quantize", "module_name_preceding_first_block", "batch_size", "pad_token_id",
    "use_exllama", "max_input_length", "exllama_config", "cache_block_outputs",
    "modules_in_block_to_quantize", "meta", "backend", "format", "lm_head", "pack_dtype",
    "modules_to_not_convert", "is_marlin_format", "quantizer", "v2", "mse", "hyb_act", "dynamic",
    NULL};

/* GPTQModel's per-module overrides: {"+:REGEX": {"bits": 8, ...}, "-:REGEX": {}, ...} in order. */
static lb_status parse_dynamic(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  const json_t *d = json_object_get(o, "dynamic");
  if (!d || json_is_null(d)) return LB_OK;
  if (!json_is_object(d))
    return lb_fail(err, LB_EINVAL, "%s: key 'dynamic': expected an object of regex -> overrides, "
                   "got %s", label, lb_json_type_name(d));
  static const char *const keys[] = {"bits", "group_size", "sym", "desc_act", NULL};
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)d, key, v) {
    char sub[400];
    snprintf(sub, sizeof sub, "%s: key 'dynamic.%.200s'", label, key);
    lb_quant_override r = {0};
    const char *pat = key;
    if (!strncmp(key, "-:", 2)) r.skip = true, pat += 2;
    else if (!strncmp(key, "+:", 2)) pat += 2;
    if (!json_is_object(v))
      return lb_fail(err, LB_EINVAL, "%s: expected an object of overrides, got %s", sub,
                     lb_json_type_name(v));
    const char *k;
    const json_t *x;
    json_object_foreach((json_t *)v, k, x) {
      if (!in_list(k, keys))
        return lb_fail(err, LB_EUNSUPPORTED, "%s: key '%s' is not supported (bits, group_size, "
                       "sym, desc_act)", sub, k);
    }
    if (lb_json_has(v, "bits")) {
      int64_t b;
      LB_TRY(lb_json_int(v, "bits", sub, true, 4, 2, 8, &b, err));
      r.has_bits = true;
      r.bits = (int)b;
    }
    if (lb_json_has(v, "group_size")) {
      LB_TRY(lb_json_int(v, "group_size", sub, true, 128, -1, 1 << 20, &r.group, err));
      r.has_group = true;
    }
    if (lb_json_has(v, "sym")) {
      LB_TRY(lb_json_bool(v, "sym", sub, true, false, &r.sym, err));
      r.has_sym = true;
    }
    if (lb_json_has(v, "desc_act")) {
      LB_TRY(lb_json_bool(v, "desc_act", sub, true, false, &r.desc_act, err));
      r.has_desc_act = true;
    }
    LB_TRY(push_override(s, pat, &r, sub, err));
  }
  return LB_OK;
}

static lb_status parse_gptq(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  LB_TRY(check_keys(o, label, GPTQ_KEYS, err));
  int64_t bits, group;
  LB_TRY(lb_json_int(o, "bits", label, true, 4, 2, 8, &bits, err));
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'bits': %lld (expected 2, 3, 4 or 8)", label,
                   (long long)bits);
  LB_TRY(lb_json_int(o, "group_size", label, false, 128, -1, 1 << 20, &group, err));
  if (group == 0)
    return lb_fail(err, LB_EINVAL, "%s: key 'group_size': 0 (expected -1 or a positive size)",
                   label);
  s->bits = (int)bits;
  s->group = group;
  LB_TRY(lb_json_bool(o, "sym", label, false, true, &s->sym, err));
  LB_TRY(lb_json_bool(o, "desc_act", label, false, false, &s->desc_act, err));
  LB_TRY(lb_json_bool(o, "static_groups", label, false, false, &s->static_groups, err));
  if (lb_json_has(o, "damp_percent")) {
    const json_t *d = json_object_get(o, "damp_percent");
    if (!json_is_number(d) || json_number_value(d) <= 0 || json_number_value(d) >= 1)
      return lb_fail(err, LB_EINVAL, "%s: key 'damp_percent': expected a number in (0, 1)", label);
    s->damp = json_number_value(d);
  }
  bool tseq;
  LB_TRY(lb_json_bool(o, "true_sequential", label, false, true, &tseq, err));
  if (!tseq && !s->rtn)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'true_sequential': false (lowbit's GPTQ is always "
                   "true-sequential)", label);
  LB_TRY(lb_json_bool(o, "lm_head", label, false, false, &s->lm_head, err));
  char fmt[32];
  LB_TRY(lb_json_str(o, "checkpoint_format", label, false, "gptq", fmt, sizeof fmt, err));
  if (!strcmp(fmt, "gptq")) s->gptq_version = LB_GPTQ_V1;
  else if (!strcmp(fmt, "gptq_v2")) s->gptq_version = LB_GPTQ_V2;
  else
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'checkpoint_format': \"%s\" (gptq, gptq_v2)",
                   label, fmt);
  if (lb_json_has(o, "format")) {
    LB_TRY(lb_json_str(o, "format", label, false, "gptq", fmt, sizeof fmt, err));
    if (strcmp(fmt, "gptq") && strcmp(fmt, "gptq_v2"))
      return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'format': \"%s\" (gptq, gptq_v2)", label, fmt);
    if (!strcmp(fmt, "gptq_v2")) s->gptq_version = LB_GPTQ_V2;
  }
  LB_TRY(skip_list(s, o, "modules_to_not_convert", label, err));
  LB_TRY(parse_dynamic(o, label, s, err));
  /* lowbit's calibration-free checkpoints say so in meta.quantizer */
  const json_t *meta = json_object_get(o, "meta"), *qz = meta ? json_object_get(meta, "quantizer") : NULL;
  if (qz && json_is_string(qz) && !strcmp(json_string_value(qz), "lowbit:rtn")) s->rtn = true;
  return LB_OK;
}

/* Transformers' AwqConfig keys, and AutoAWQ's own quant_config keys (w_bit, q_group_size). */
static const char *const AWQ_KEYS[] = {
    "quant_method", "bits", "group_size", "zero_point", "version", "backend", "do_fuse",
    "fuse_max_seq_len", "modules_to_fuse", "modules_to_not_convert", "exllama_config", "w_bit",
    "q_group_size", "dataset", NULL};

static lb_status parse_awq(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  LB_TRY(check_keys(o, label, AWQ_KEYS, err));
  bool tb = lb_json_has(o, "bits"), ab = lb_json_has(o, "w_bit");
  bool tg = lb_json_has(o, "group_size"), ag = lb_json_has(o, "q_group_size");
  int64_t bits = 4, group = 128, v;
  if (tb) LB_TRY(lb_json_int(o, "bits", label, true, 4, 1, 16, &bits, err));
  if (ab) {
    LB_TRY(lb_json_int(o, "w_bit", label, true, 4, 1, 16, &v, err));
    if (tb && v != bits)
      return lb_fail(err, LB_EINVAL, "%s: keys 'bits' (%lld) and 'w_bit' (%lld) disagree", label,
                     (long long)bits, (long long)v);
    bits = v;
  }
  if (bits != 4)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key '%s': %lld (AutoAWQ's layouts hold 4-bit codes)",
                   label, ab ? "w_bit" : "bits", (long long)bits);
  if (tg) LB_TRY(lb_json_int(o, "group_size", label, true, 128, -1, 1 << 20, &group, err));
  if (ag) {
    LB_TRY(lb_json_int(o, "q_group_size", label, true, 128, -1, 1 << 20, &v, err));
    if (tg && v != group)
      return lb_fail(err, LB_EINVAL, "%s: keys 'group_size' (%lld) and 'q_group_size' (%lld) "
                     "disagree", label, (long long)group, (long long)v);
    group = v;
  }
  if (group == 0 || group < -1)
    return lb_fail(err, LB_EINVAL, "%s: key 'group_size': %lld (expected -1 or a positive size)",
                   label, (long long)group);
  bool zp;
  LB_TRY(lb_json_bool(o, "zero_point", label, false, true, &zp, err));
  if (!zp)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'zero_point': false (AutoAWQ's gemm and gemv "
                   "layouts store zero points; only zero_point true)", label);
  char ver[32];
  LB_TRY(lb_json_str(o, "version", label, false, "gemm", ver, sizeof ver, err));
  for (char *p = ver; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
  if (!strcmp(ver, "gemm")) s->awq_version = LB_AWQ_GEMM;
  else if (!strcmp(ver, "gemv")) s->awq_version = LB_AWQ_GEMV;
  else
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'version': \"%s\" (gemm, gemv)", label, ver);
  s->method = LB_QM_AWQ;
  s->bits = 4;
  s->group = group;
  s->sym = false;
  LB_TRY(skip_list(s, o, "modules_to_not_convert", label, err));
  return LB_OK;
}

static const char *const BNB_KEYS[] = {
    "quant_method", "load_in_4bit", "load_in_8bit", "_load_in_4bit", "_load_in_8bit",
    "llm_int8_threshold", "llm_int8_skip_modules", "llm_int8_enable_fp32_cpu_offload",
    "llm_int8_has_fp16_weight", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
    "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage", "modules_to_not_convert", NULL};

static lb_status parse_bnb(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  LB_TRY(check_keys(o, label, BNB_KEYS, err));
  bool l4, l8, u4, u8;
  LB_TRY(lb_json_bool(o, "load_in_4bit", label, false, false, &l4, err));
  LB_TRY(lb_json_bool(o, "load_in_8bit", label, false, false, &l8, err));
  LB_TRY(lb_json_bool(o, "_load_in_4bit", label, false, false, &u4, err));
  LB_TRY(lb_json_bool(o, "_load_in_8bit", label, false, false, &u8, err));
  l4 |= u4;
  l8 |= u8;
  if (l4 == l8)
    return lb_fail(err, LB_EINVAL, "%s: key 'load_in_4bit'/'load_in_8bit': exactly one must be true",
                   label);
  LB_TRY(lb_json_real(o, "llm_int8_threshold", label, false, 6.0, 0.0, 1e30, &s->int8_threshold,
                      err));
  bool fp16w;
  LB_TRY(lb_json_bool(o, "llm_int8_has_fp16_weight", label, false, false, &fp16w, err));
  if (fp16w)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'llm_int8_has_fp16_weight': true", label);
  char qt[16], cd[32];
  LB_TRY(lb_json_str(o, "bnb_4bit_quant_type", label, false, "fp4", qt, sizeof qt, err));
  if (strcmp(qt, "nf4") && strcmp(qt, "fp4"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'bnb_4bit_quant_type': \"%s\" (nf4, fp4)", label,
                   qt);
  s->nf4 = !strcmp(qt, "nf4");
  LB_TRY(lb_json_bool(o, "bnb_4bit_use_double_quant", label, false, false, &s->double_quant, err));
  LB_TRY(lb_json_str(o, "bnb_4bit_compute_dtype", label, false, "float32", cd, sizeof cd, err));
  LB_TRY(dtype_name(cd, label, "bnb_4bit_compute_dtype", &s->compute_dtype, err));
  if (lb_json_has(o, "bnb_4bit_quant_storage")) {
    LB_TRY(lb_json_str(o, "bnb_4bit_quant_storage", label, false, "uint8", cd, sizeof cd, err));
    if (strcmp(cd, "uint8") && strcmp(cd, "torch.uint8"))
      return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'bnb_4bit_quant_storage': \"%s\" (uint8)",
                     label, cd);
  }
  s->method = l4 ? LB_QM_BNB4 : LB_QM_INT8;
  s->bits = l4 ? 4 : 8;
  s->group = 64;
  LB_TRY(skip_list(s, o, "llm_int8_skip_modules", label, err));
  LB_TRY(skip_list(s, o, "modules_to_not_convert", label, err));
  return LB_OK;
}

static lb_status parse_fp8(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  static const char *const keys[] = {"quant_method", "activation_scheme", "weight_block_size",
                                     "modules_to_not_convert", "modules_to_convert", "dequantize",
                                     "scale_fmt", NULL};
  LB_TRY(check_keys(o, label, keys, err));
  /* Transformers' FineGrainedFP8Config writes modules_to_convert: null (every Linear) and
   * scale_fmt (null, or "ue8m0" for power-of-two scales): weight_scale_inv holds the multiplier
   * either way, and the reader checks its dtype */
  const json_t *fmt = json_object_get(o, "scale_fmt");
  if (fmt && !json_is_null(fmt) && !json_is_string(fmt))
    return lb_fail(err, LB_EINVAL, "%s: key 'scale_fmt': expected a string or null", label);
  const json_t *conv = json_object_get(o, "modules_to_convert");
  if (conv && !json_is_null(conv) && !(json_is_array(conv) && json_array_size(conv) == 0))
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: key 'modules_to_convert': only null (convert every Linear) is supported",
                   label);
  char act[32];
  LB_TRY(lb_json_str(o, "activation_scheme", label, false, "dynamic", act, sizeof act, err));
  if (strcmp(act, "dynamic"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'activation_scheme': \"%s\" (dynamic)", label, act);
  const json_t *b = json_object_get(o, "weight_block_size");
  s->block_r = s->block_c = 128;
  if (b && !json_is_null(b)) {
    if (!json_is_array(b) || json_array_size(b) != 2 || !json_is_integer(json_array_get(b, 0)) ||
        !json_is_integer(json_array_get(b, 1)) || json_integer_value(json_array_get(b, 0)) < 1 ||
        json_integer_value(json_array_get(b, 1)) < 1)
      return lb_fail(err, LB_EINVAL, "%s: key 'weight_block_size': expected [rows, cols] > 0",
                     label);
    s->block_r = json_integer_value(json_array_get(b, 0));
    s->block_c = json_integer_value(json_array_get(b, 1));
  }
  s->method = LB_QM_FP8;
  s->bits = 8;
  /* Transformers' FP8Linear quantizes its input in 1 x weight_block_size[1] blocks (act_quant) */
  s->act = LB_FP8_ACT_GROUP128;
  s->act_group = s->block_c;
  LB_TRY(skip_list(s, o, "modules_to_not_convert", label, err));
  return LB_OK;
}

static lb_status parse_hqq(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  static const char *const keys[] = {"quant_method", "quant_config", "skip_modules", "nbits",
                                     "group_size", "axis", "view_as_float", "dynamic_config",
                                     "modules_to_not_convert", NULL};
  LB_TRY(check_keys(o, label, keys, err));
  const json_t *p = o;
  char sub[160];
  const json_t *qc = json_object_get(o, "quant_config");
  if (qc && !json_is_null(qc)) {
    if (!json_is_object(qc))
      return lb_fail(err, LB_EINVAL, "%s: key 'quant_config': expected an object", label);
    p = json_object_get(qc, "weight_quant_params");
    if (!p || !json_is_object(p))
      return lb_fail(err, LB_EINVAL, "%s: key 'quant_config.weight_quant_params' is missing",
                     label);
    snprintf(sub, sizeof sub, "%s.quant_config.weight_quant_params", label);
    label = sub;
    static const char *const wkeys[] = {"nbits", "channel_wise", "group_size", "optimize",
                                        "round_zero", "axis", "view_as_float", NULL};
    LB_TRY(check_keys(p, label, wkeys, err));
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)qc, k, v) {
      if (!strcmp(k, "weight_quant_params") || !strcmp(k, "offload_meta")) continue;
      if (!json_is_null(v))
        return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'quant_config.%s' is not supported",
                       label, k);
    }
  }
  int64_t nbits, group, axis;
  LB_TRY(lb_json_int(p, "nbits", label, true, 4, 1, 8, &nbits, err));
  if (!lb_hqq_packing((int)nbits))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'nbits': %lld (expected 1, 2, 3, 4 or 8)", label,
                   (long long)nbits);
  LB_TRY(lb_json_int(p, "group_size", label, false, 64, 1, 1 << 20, &group, err));
  LB_TRY(lb_json_int(p, "axis", label, false, 1, 0, 1, &axis, err));
  if (axis != 1)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'axis': 0 (lowbit stores axis 1 only)", label);
  bool vaf;
  LB_TRY(lb_json_bool(p, "view_as_float", label, false, false, &vaf, err));
  s->method = LB_QM_HQQ;
  s->bits = (int)nbits;
  s->group = group;
  s->axis = 1;
  LB_TRY(skip_list(s, o, "skip_modules", label, err));
  LB_TRY(skip_list(s, o, "modules_to_not_convert", label, err));
  return LB_OK;
}

/* config_groups must hold one group targeting ["Linear"]; its name and object. */
static lb_status ct_group(const json_t *o, const char *label, const char **gname,
                          const json_t **grp, lb_error *err) {
  const json_t *g = json_object_get(o, "config_groups");
  if (!json_is_object(g) || json_object_size(g) != 1)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'config_groups': expected one group", label);
  void *it = json_object_iter((json_t *)g);
  *gname = json_object_iter_key(it);
  *grp = json_object_iter_value(it);
  if (!json_is_object(*grp))
    return lb_fail(err, LB_EINVAL, "%s: key 'config_groups.%s': expected an object", label, *gname);
  const json_t *t = json_object_get(*grp, "targets");
  if (!json_is_array(t) || json_array_size(t) != 1 ||
      strcmp(json_string_value(json_array_get(t, 0)) ? json_string_value(json_array_get(t, 0)) : "",
             "Linear"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'config_groups.%s.targets': expected [\"Linear\"]",
                   label, *gname);
  return LB_OK;
}

/* An object-valued key that must be absent, null or {} (sparsity_config, transform_config). */
static lb_status ct_empty(const json_t *o, const char *key, const char *label, lb_error *err) {
  const json_t *v = json_object_get(o, key);
  if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key '%s': only an empty %s is supported", label, key,
                   key);
  return LB_OK;
}

/* format "pack-quantized": integer weights of one group, no activation quantization. */
static lb_status parse_ct_int(const json_t *o, const char *label, lb_quant_spec *s,
                              lb_error *err) {
  const char *gname = "";
  const json_t *grp = NULL;
  char sub[200], fmt[48], status[32];
  LB_TRY(ct_group(o, label, &gname, &grp, err));
  /* "frozen" would mean dense weights beside the scales: not this layout */
  LB_TRY(lb_json_str(o, "quantization_status", label, false, "compressed", status, sizeof status,
                     err));
  if (strcmp(status, "compressed"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'quantization_status': \"%s\" (compressed)",
                   label, status);
  LB_TRY(ct_empty(o, "sparsity_config", label, err));
  LB_TRY(ct_empty(o, "transform_config", label, err));
  snprintf(sub, sizeof sub, "%s.config_groups.%s", label, gname);
  static const char *const gkeys[] = {"targets", "weights", "input_activations",
                                      "output_activations", "format", NULL};
  LB_TRY(check_keys(grp, sub, gkeys, err));
  if (lb_json_has(grp, "input_activations") || lb_json_has(grp, "output_activations"))
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: key 'input_activations'/'output_activations': activation quantization is "
                   "not supported (weights only)",
                   sub);
  LB_TRY(lb_json_str(grp, "format", sub, false, "pack-quantized", fmt, sizeof fmt, err));
  if (strcmp(fmt, "pack-quantized"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'format': \"%s\" (pack-quantized)", sub, fmt);
  const json_t *w = json_object_get(grp, "weights");
  snprintf(sub, sizeof sub, "%s.config_groups.%s.weights", label, gname);
  if (!json_is_object(w)) return lb_fail(err, LB_EINVAL, "%s: missing", sub);
  static const char *const wkeys[] = {"num_bits", "type", "symmetric", "group_size", "strategy",
                                      "block_structure", "dynamic", "actorder", "scale_dtype",
                                      "zp_dtype", "observer", "observer_kwargs", NULL};
  LB_TRY(check_keys(w, sub, wkeys, err));
  int64_t nb, group;
  char type[16], strat[16], v[32];
  bool sym, dyn;
  LB_TRY(lb_json_int(w, "num_bits", sub, true, 8, 1, 64, &nb, err));
  LB_TRY(lb_json_str(w, "type", sub, false, "int", type, sizeof type, err));
  if (strcmp(type, "int"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'type': \"%s\" (pack-quantized holds int)", sub,
                   type);
  if (nb < 1 || nb > 8)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'num_bits': %lld (pack-quantized holds 1 to 8)",
                   sub, (long long)nb);
  LB_TRY(lb_json_bool(w, "symmetric", sub, false, true, &sym, err));
  LB_TRY(lb_json_bool(w, "dynamic", sub, false, false, &dyn, err));
  if (dyn) return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'dynamic': true (static weights only)", sub);
  LB_TRY(lb_json_int(w, "group_size", sub, false, 0, -1, 1 << 20, &group, err));
  LB_TRY(lb_json_str(w, "strategy", sub, false, group > 0 ? "group" : group == -1 ? "channel" : "",
                     strat, sizeof strat, err));
  if (!strcmp(strat, "group")) {
    if (group < 1)
      return lb_fail(err, LB_EINVAL, "%s: key 'group_size': strategy \"group\" needs a positive size",
                     sub);
  } else if (!strcmp(strat, "channel")) {
    if (group > 0)
      return lb_fail(err, LB_EINVAL, "%s: key 'group_size': %lld with strategy \"channel\"", sub,
                     (long long)group);
    group = -1;
  } else {
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'strategy': \"%s\" (group, channel)", sub,
                   strat[0] ? strat : "tensor");
  }
  if (lb_json_has(w, "block_structure"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'block_structure'", sub);
  if (lb_json_has(w, "scale_dtype"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'scale_dtype' (the weight's dtype only)", sub);
  if (lb_json_has(w, "zp_dtype")) {
    LB_TRY(lb_json_str(w, "zp_dtype", sub, false, "", v, sizeof v, err));
    if (strcmp(v, "torch.int8") && strcmp(v, "int8"))
      return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'zp_dtype': \"%s\" (torch.int8)", sub, v);
  }
  /* actorder "weight" (alias "static") only reorders calibration; group act-order (g_idx) is refused */
  const json_t *ao = json_object_get(w, "actorder");
  if (ao && !json_is_null(ao) && !json_is_false(ao) &&
      !(json_is_string(ao) && (!strcmp(json_string_value(ao), "weight") ||
                               !strcmp(json_string_value(ao), "static"))))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'actorder' (null or \"weight\")", sub);
  s->method = LB_QM_CT_INT;
  s->bits = (int)nb;
  s->group = group;
  s->sym = sym;
  LB_TRY(skip_list(s, o, "ignore", label, err));
  return LB_OK;
}

/* The quantization args at parent.key (label: parent's) of 8-bit float, symmetric activations or
 * KV cache entries (`what`): *on false when the key is absent or null; else its dynamic flag,
 * group_size (0 when none) and strategy, and its label in sub. */
static lb_status ct_float8_args(const json_t *parent, const char *key, const char *label, const char *what,
                                bool *on, bool *dyn, int64_t *group, char strat[16], char sub[220],
                                lb_error *err) {
  const json_t *a = json_object_get(parent, key);
  *on = a && !json_is_null(a);
  if (!*on) return LB_OK;
  snprintf(sub, 220, "%s.%s", label, key);
  if (!json_is_object(a))
    return lb_fail(err, LB_EINVAL, "%s: expected an object or null, got %s", sub,
                   lb_json_type_name(a));
  static const char *const keys[] = {"num_bits", "type", "symmetric", "group_size", "strategy",
                                     "block_structure", "dynamic", "actorder", "scale_dtype",
                                     "zp_dtype", "observer", "observer_kwargs", NULL};
  LB_TRY(check_keys(a, sub, keys, err));
  int64_t nb;
  char type[16];
  bool sym;
  LB_TRY(lb_json_int(a, "num_bits", sub, false, 8, 1, 64, &nb, err));
  LB_TRY(lb_json_str(a, "type", sub, false, "int", type, sizeof type, err));
  if (nb != 8 || strcmp(type, "float"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'num_bits'/'type': %lld-bit %s %s (8-bit float only)",
                   sub, (long long)nb, type, what);
  LB_TRY(lb_json_bool(a, "symmetric", sub, false, true, &sym, err));
  if (!sym) return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'symmetric': false", sub);
  if (json_is_string(json_object_get(a, "dynamic")))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'dynamic': \"%s\" (true or false)", sub,
                   json_string_value(json_object_get(a, "dynamic")));
  LB_TRY(lb_json_bool(a, "dynamic", sub, false, false, dyn, err));
  LB_TRY(lb_json_int(a, "group_size", sub, false, 0, -1, 1 << 20, group, err));
  LB_TRY(lb_json_str(a, "strategy", sub, false, *group > 0 ? "group" : "tensor", strat, 16, err));
  static const char *const nulls[] = {"block_structure", "actorder", "scale_dtype", "zp_dtype"};
  for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
    if (lb_json_has(a, nulls[i]))
      return lb_fail(err, LB_EUNSUPPORTED, "%s: key '%s' (null for FP8 %s)", sub, nulls[i], what);
  return LB_OK;
}

/* input_activations of a "float-quantized" group, as compressed-tensors' FP8 W8A8 schemes write
 * them: null (weights only), dynamic per token (FP8_DYNAMIC) or per group (FP8_BLOCK), static per
 * tensor (FP8: a calibrated <module>.input_scale). Other activation schemes are refused. */
static lb_status parse_ct_fp8_act(const json_t *grp, const char *label, lb_quant_spec *s,
                                  lb_error *err) {
  s->act = LB_FP8_ACT_OFF;
  s->act_group = 0;
  if (lb_json_has(grp, "output_activations"))
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: key 'output_activations': output quantization is not supported", label);
  char sub[220], strat[16];
  int64_t group;
  bool on, dyn;
  LB_TRY(ct_float8_args(grp, "input_activations", label, "activations", &on, &dyn, &group, strat, sub, err));
  if (!on) return LB_OK;
  if (dyn && !strcmp(strat, "token")) {
    s->act = LB_FP8_ACT_TOKEN;
  } else if (dyn && !strcmp(strat, "group")) {
    if (group < 1)
      return lb_fail(err, LB_EINVAL, "%s: key 'group_size': strategy \"group\" needs a positive size",
                     sub);
    s->act = LB_FP8_ACT_GROUP128;
    s->act_group = group;
  } else if (!dyn && !strcmp(strat, "tensor")) {
    s->act = LB_FP8_ACT_STATIC;
  } else {
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: %s activations with strategy \"%s\" (dynamic token or group, static tensor)",
                   sub, dyn ? "dynamic" : "static", strat);
  }
  return LB_OK;
}

/* kv_cache_scheme: null (the KV cache in the model's precision), or an FP8 KV cache, static per
 * tensor: each attention's <attn>.k_scale and v_scale, which Transformers + compressed-tensors
 * apply to the keys after RoPE and to the values (llm-compressor's kv_cache_scheme). Dynamic,
 * per-head and integer KV schemes are refused, naming the key. */
static lb_status parse_ct_kv(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  char sub[220], strat[16];
  int64_t group;
  bool on, dyn;
  s->kv_fp8 = false;
  LB_TRY(ct_float8_args(o, "kv_cache_scheme", label, "KV cache", &on, &dyn, &group, strat, sub, err));
  if (!on) return LB_OK;
  if (dyn) return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'dynamic': true (static k_scale / v_scale only)", sub);
  if (strcmp(strat, "tensor"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'strategy': \"%s\" (tensor)", sub, strat);
  s->kv_fp8 = true;
  return LB_OK;
}

static lb_status parse_ct(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  static const char *const keys[] = {
      "quant_method", "config_groups", "format", "quantization_status", "ignore",
      "global_compression_ratio", "kv_cache_scheme", "sparsity_config", "version",
      "transform_config", "quant_method_version", "moe_sparsity_config", NULL};
  LB_TRY(check_keys(o, label, keys, err));
  char fmt[48];
  LB_TRY(lb_json_str(o, "format", label, true, "", fmt, sizeof fmt, err));
  if (strcmp(fmt, "float-quantized") && strcmp(fmt, "pack-quantized"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'format': \"%s\" (float-quantized, pack-quantized)",
                   label, fmt);
  LB_TRY(parse_ct_kv(o, label, s, err));
  if (lb_json_has(o, "moe_sparsity_config"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'moe_sparsity_config'", label);
  if (!strcmp(fmt, "pack-quantized")) return parse_ct_int(o, label, s, err);
  const char *gname = "";
  const json_t *grp = NULL;
  LB_TRY(ct_group(o, label, &gname, &grp, err));
  char sub[200];
  snprintf(sub, sizeof sub, "%s.config_groups.%s", label, gname);
  static const char *const gkeys[] = {"targets", "weights", "input_activations",
                                      "output_activations", "format", NULL};
  LB_TRY(check_keys(grp, sub, gkeys, err));
  LB_TRY(parse_ct_fp8_act(grp, sub, s, err));
  const json_t *w = json_object_get(grp, "weights");
  snprintf(sub, sizeof sub, "%s.config_groups.%s.weights", label, gname);
  if (!json_is_object(w)) return lb_fail(err, LB_EINVAL, "%s: missing", sub);
  int64_t nb;
  char type[16], strat[16];
  bool sym, dyn;
  LB_TRY(lb_json_int(w, "num_bits", sub, true, 8, 1, 64, &nb, err));
  LB_TRY(lb_json_str(w, "type", sub, true, "", type, sizeof type, err));
  LB_TRY(lb_json_str(w, "strategy", sub, true, "", strat, sizeof strat, err));
  LB_TRY(lb_json_bool(w, "symmetric", sub, false, true, &sym, err));
  LB_TRY(lb_json_bool(w, "dynamic", sub, false, false, &dyn, err));
  if (nb != 8 || strcmp(type, "float"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'num_bits'/'type': %lld-bit %s (8-bit float)",
                   sub, (long long)nb, type);
  if (!sym || dyn) return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'symmetric'/'dynamic'", sub);
  if (!strcmp(strat, "tensor")) s->ct_strategy = LB_FP8_TENSOR;
  else if (!strcmp(strat, "channel")) s->ct_strategy = LB_FP8_CHANNEL;
  else if (!strcmp(strat, "block")) {
    s->ct_strategy = LB_FP8_BLOCK;
    const json_t *b = json_object_get(w, "block_structure");
    if (!json_is_array(b) || json_array_size(b) != 2 || json_integer_value(json_array_get(b, 0)) < 1 ||
        json_integer_value(json_array_get(b, 1)) < 1)
      return lb_fail(err, LB_EINVAL, "%s: key 'block_structure': expected [rows, cols]", sub);
    s->block_r = json_integer_value(json_array_get(b, 0));
    s->block_c = json_integer_value(json_array_get(b, 1));
  } else
    return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'strategy': \"%s\" (tensor, channel, block)",
                   sub, strat);
  s->method = LB_QM_CT_FP8;
  s->bits = 8;
  LB_TRY(skip_list(s, o, "ignore", label, err));
  return LB_OK;
}

static lb_status parse_obj(const json_t *o, const char *label, lb_quant_spec *s, lb_error *err) {
  if (!json_is_object(o))
    return lb_fail(err, LB_EINVAL, "%s: expected a JSON object, got %s", label,
                   lb_json_type_name(o));
  char m[40];
  LB_TRY(lb_json_str(o, "quant_method", label, false, "", m, sizeof m, err));
  if (!m[0]) {
    if (lb_json_has(o, "load_in_4bit") || lb_json_has(o, "load_in_8bit")) strcpy(m, "bitsandbytes");
    else return lb_fail(err, LB_ENOTFOUND, "%s: key 'quant_method' is missing", label);
  }
  if (!strcmp(m, "gptq") || !strcmp(m, "rtn")) {
    s->method = LB_QM_GPTQ;
    s->rtn = !strcmp(m, "rtn");
    return parse_gptq(o, label, s, err);
  }
  if (!strcmp(m, "bitsandbytes")) return parse_bnb(o, label, s, err);
  if (!strcmp(m, "awq")) return parse_awq(o, label, s, err);
  if (!strcmp(m, "fp8")) return parse_fp8(o, label, s, err);
  if (!strcmp(m, "hqq")) return parse_hqq(o, label, s, err);
  if (!strcmp(m, "compressed-tensors")) return parse_ct(o, label, s, err);
  return lb_fail(err, LB_EUNSUPPORTED,
                 "%s: key 'quant_method': \"%s\" (gptq, rtn, awq, bitsandbytes, fp8, hqq, "
                 "compressed-tensors)",
                 label, m);
}

lb_status lb_quant_spec_parse(const char *json, size_t len, const char *label, lb_quant_spec *out,
                              lb_error *err) {
  spec_init(out);
  json_t *root;
  LB_TRY(lb_json_parse(json, len, label, &root, err));
  lb_status s = parse_obj(root, label, out, err);
  json_decref(root);
  if (s != LB_OK) lb_quant_spec_free(out);
  return s;
}

/* ---- writing ---------------------------------------------------------------------------------- */

static json_t *skip_array(const lb_quant_spec *s) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < s->n_skip; i++) json_array_append_new(a, json_string(s->skip[i]));
  return a;
}

static const char *dtype_torch(lb_dtype d) {
  return d == LB_BF16 ? "bfloat16" : d == LB_F16 ? "float16" : "float32";
}

lb_status lb_quant_spec_to_json(const lb_quant_spec *s, char **json, lb_error *err) {
  *json = NULL;
  if (s->kv_fp8) /* (its k_scale / v_scale come from calibration, which no writer does) */
    return lb_fail(err, LB_EUNSUPPORTED, "quantization_config: an FP8 kv_cache_scheme is read, not written");
  if (s->method == LB_QM_FP8)
    return lb_fp8_fg_config(s->block_r, s->block_c, (const char *const *)s->skip, s->n_skip, json,
                            err);
  if (s->method == LB_QM_CT_FP8)
    return lb_fp8_ct_config(s->ct_strategy, s->block_r, s->block_c, s->act, s->act_group,
                            (const char *const *)s->skip, s->n_skip, json, err);
  if (s->method == LB_QM_CT_INT)
    return lb_ct_int_config(s->bits, s->group, s->sym, (const char *const *)s->skip, s->n_skip,
                            json, err);
  if (s->method == LB_QM_HQQ) {
    lb_hqq_opts o = lb_hqq_default_opts(s->bits);
    return lb_hqq_config(s->bits, s->group, &o, (const char *const *)s->skip, s->n_skip, json, err);
  }
  if (s->method == LB_QM_AWQ && s->awq_ct)
    return lb_ct_int_config(s->bits, s->group, false, (const char *const *)s->skip, s->n_skip, json,
                            err);
  json_t *o = json_object();
  if (!o) return lb_fail(err, LB_ENOMEM, "out of memory");
  if (s->method == LB_QM_AWQ) {
    /* AutoAWQ's quantization_config, key for key */
    json_object_set_new(o, "quant_method", json_string("awq"));
    json_object_set_new(o, "zero_point", json_true());
    json_object_set_new(o, "group_size", json_integer(s->group));
    json_object_set_new(o, "bits", json_integer(s->bits));
    json_object_set_new(o, "version", json_string(s->awq_version == LB_AWQ_GEMV ? "gemv" : "gemm"));
    json_object_set_new(o, "modules_to_not_convert", s->n_skip ? skip_array(s) : json_null());
  } else if (s->method == LB_QM_GPTQ) {
    json_object_set_new(o, "quant_method", json_string("gptq"));
    json_object_set_new(o, "bits", json_integer(s->bits));
    json_object_set_new(o, "group_size", json_integer(s->group));
    json_object_set_new(o, "sym", json_boolean(s->sym));
    json_object_set_new(o, "desc_act", json_boolean(s->desc_act));
    json_object_set_new(o, "static_groups", json_boolean(s->static_groups));
    json_object_set_new(o, "true_sequential", json_true());
    json_object_set_new(o, "damp_percent", json_real(s->damp));
    json_object_set_new(o, "damp_auto_increment", json_real(0.0025));
    json_object_set_new(o, "pack_dtype", json_string("int32"));
    json_object_set_new(o, "lm_head", json_boolean(s->lm_head));
    json_object_set_new(o, "checkpoint_format",
                        json_string(s->gptq_version == LB_GPTQ_V2 ? "gptq_v2" : "gptq"));
    json_object_set_new(o, "modules_to_not_convert", skip_array(s));
    if (s->n_ov) {
      /* GPTQModel's `dynamic`: rule order kept (JSON_PRESERVE_ORDER) since the first match wins */
      json_t *dyn = json_object();
      for (size_t i = 0; dyn && i < s->n_ov; i++) {
        const lb_quant_override *r = &s->ov[i];
        size_t n = strlen(r->pattern) + 3;
        char *k = malloc(n);
        json_t *v = json_object();
        if (!k || !v) {
          free(k);
          json_decref(v);
          json_decref(dyn);
          json_decref(o);
          return lb_fail(err, LB_ENOMEM, "out of memory");
        }
        snprintf(k, n, "%s%s", r->skip ? "-:" : "+:", r->pattern);
        if (!r->skip) {
          json_object_set_new(v, "bits", json_integer(r->has_bits ? r->bits : s->bits));
          json_object_set_new(v, "group_size", json_integer(r->has_group ? r->group : s->group));
          if (r->has_sym) json_object_set_new(v, "sym", json_boolean(r->sym));
          if (r->has_desc_act) json_object_set_new(v, "desc_act", json_boolean(r->desc_act));
        }
        json_object_set_new(dyn, k, v);
        free(k);
      }
      json_object_set_new(o, "dynamic", dyn);
    }
    json_t *meta = json_object();
    json_object_set_new(meta, "quantizer", json_string(s->rtn ? "lowbit:rtn" : "lowbit:gptq"));
    json_object_set_new(o, "meta", meta);
  } else {
    bool four = s->method == LB_QM_BNB4;
    json_object_set_new(o, "quant_method", json_string("bitsandbytes"));
    json_object_set_new(o, "_load_in_4bit", json_boolean(four));
    json_object_set_new(o, "_load_in_8bit", json_boolean(!four));
    json_object_set_new(o, "bnb_4bit_compute_dtype", json_string(dtype_torch(s->compute_dtype)));
    json_object_set_new(o, "bnb_4bit_quant_storage", json_string("uint8"));
    json_object_set_new(o, "bnb_4bit_quant_type", json_string(s->nf4 ? "nf4" : "fp4"));
    json_object_set_new(o, "bnb_4bit_use_double_quant", json_boolean(s->double_quant));
    json_object_set_new(o, "llm_int8_enable_fp32_cpu_offload", json_false());
    json_object_set_new(o, "llm_int8_has_fp16_weight", json_false());
    json_object_set_new(o, "llm_int8_skip_modules", json_null());
    json_object_set_new(o, "llm_int8_threshold", json_real(s->int8_threshold));
    json_object_set_new(o, "load_in_4bit", json_boolean(four));
    json_object_set_new(o, "load_in_8bit", json_boolean(!four));
    json_object_set_new(o, "modules_to_not_convert", skip_array(s));
  }
  *json = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!*json) return lb_fail(err, LB_ENOMEM, "out of memory");
  return LB_OK;
}

const char *lb_quant_spec_describe(const lb_quant_spec *s, char *buf, size_t cap) {
  switch (s->method) {
  case LB_QM_GPTQ:
    if (s->group > 0)
      snprintf(buf, cap, "%s int%d g%lld %s", s->rtn ? "rtn" : "gptq", s->bits,
               (long long)s->group, s->sym ? "sym" : "asym");
    else
      snprintf(buf, cap, "%s int%d per-channel %s", s->rtn ? "rtn" : "gptq", s->bits,
               s->sym ? "sym" : "asym");
    break;
  case LB_QM_BNB4:
    snprintf(buf, cap, "bitsandbytes %s b64%s", s->nf4 ? "nf4" : "fp4",
             s->double_quant ? " double-quant" : "");
    break;
  case LB_QM_INT8: snprintf(buf, cap, "bitsandbytes LLM.int8 (threshold %g)", s->int8_threshold); break;
  case LB_QM_FP8:
  case LB_QM_CT_FP8: {
    char a[48];
    lb_fp8_act_describe(s->act, s->act_group, a, sizeof a);
    if (s->method == LB_QM_FP8)
      snprintf(buf, cap, "fp8 e4m3 block %lldx%lld, activations %s", (long long)s->block_r,
               (long long)s->block_c, a);
    else
      snprintf(buf, cap, "compressed-tensors fp8 e4m3 %s, activations %s",
               s->ct_strategy == LB_FP8_TENSOR    ? "per tensor"
               : s->ct_strategy == LB_FP8_CHANNEL ? "per channel"
                                                  : "block",
               a);
    break;
  }
  case LB_QM_CT_INT:
    if (s->group > 0)
      snprintf(buf, cap, "%scompressed-tensors int%d g%lld %s (pack-quantized)", s->rtn ? "rtn " : "",
               s->bits, (long long)s->group, s->sym ? "sym" : "asym");
    else
      snprintf(buf, cap, "%scompressed-tensors int%d per-channel %s (pack-quantized)",
               s->rtn ? "rtn " : "", s->bits, s->sym ? "sym" : "asym");
    break;
  case LB_QM_HQQ:
    snprintf(buf, cap, "hqq %d-bit g%lld axis %d", s->bits, (long long)s->group, s->axis);
    break;
  case LB_QM_AWQ:
    snprintf(buf, cap, "awq int%d g%lld zero-point %s", s->bits, (long long)s->group,
             s->awq_ct ? "compressed-tensors (pack-quantized)"
             : s->awq_version == LB_AWQ_GEMV ? "gemv" : "gemm");
    break;
  }
  size_t n = strlen(buf);
  if (s->n_ov && n < cap)
    snprintf(buf + n, cap - n, " + %zu override%s", s->n_ov, s->n_ov == 1 ? "" : "s");
  return buf;
}

/* ---- per-Linear dispatch ---------------------------------------------------------------------- */

lb_status lb_quant_spec_check_shape(const lb_quant_spec *s, int64_t rows, int64_t cols,
                                    const char *name, lb_error *err) {
  if (s->n_ov) {
    lb_quant_spec e = lb_quant_spec_for(s, name);
    return lb_quant_spec_check_shape(&e, rows, cols, name, err);
  }
  switch (s->method) {
  case LB_QM_GPTQ:
    if (s->group > 0 && cols % s->group)
      return lb_fail(err, LB_EUNSUPPORTED,
                     "%s: in_features %lld is not a multiple of the group size %lld (use a group "
                     "size that divides it, or --group -1 for per-channel)",
                     name, (long long)cols, (long long)s->group);
    if ((rows * s->bits) % 32 || (cols * s->bits) % 32)
      return lb_fail(err, LB_EUNSUPPORTED,
                     "%s: [%lld, %lld] at %d bits does not pack into 32-bit words (GPTQ layout)",
                     name, (long long)rows, (long long)cols, s->bits);
    break;
  case LB_QM_CT_INT:
    if (s->group > 0 && cols % s->group)
      return lb_fail(err, LB_EUNSUPPORTED,
                     "%s: in_features %lld is not a multiple of the group size %lld "
                     "(compressed-tensors needs whole groups; use a group size that divides it, or "
                     "--group -1 for per-channel)",
                     name, (long long)cols, (long long)s->group);
    break;
  case LB_QM_HQQ:
    if (cols % s->group)
      return lb_fail(err, LB_EUNSUPPORTED,
                     "%s: in_features %lld is not a multiple of the group size %lld", name,
                     (long long)cols, (long long)s->group);
    break;
  case LB_QM_AWQ:
    if (s->awq_ct) {
      if (s->group > 0 && cols % s->group)
        return lb_fail(err, LB_EUNSUPPORTED,
                       "%s: in_features %lld is not a multiple of the group size %lld", name,
                       (long long)cols, (long long)s->group);
      break;
    }
    if ((s->group > 0 && cols % s->group) || rows % 8 || cols % 8)
      return lb_fail(err, LB_EUNSUPPORTED,
                     "%s: [%lld, %lld] does not fit AutoAWQ's layout (out_features a multiple of 8, "
                     "in_features of 8 and of the group size %lld)",
                     name, (long long)rows, (long long)cols, (long long)s->group);
    if (s->awq_version == LB_AWQ_GEMV && lb_awq_gemv_zeros_width(cols, s->group > 0 ? s->group : cols) < 0)
      return lb_fail(err, LB_EUNSUPPORTED, "%s: AutoAWQ's gemv layout takes group sizes 32, 64 or "
                     ">= 128 (got %lld)", name, (long long)s->group);
    break;
  default: break;
  }
  return LB_OK;
}

lb_status lb_quant_spec_quantize(const lb_quant_spec *s, const float *w, int64_t rows, int64_t cols,
                                 const char *name, lb_qweight *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  if (s->n_ov) {
    lb_quant_spec e = lb_quant_spec_for(s, name);
    return lb_quant_spec_quantize(&e, w, rows, cols, name, out, err);
  }
  LB_TRY(lb_quant_spec_check_shape(s, rows, cols, name, err));
  lb_status st;
  switch (s->method) {
  case LB_QM_AWQ:
    return lb_fail(err, LB_EUNSUPPORTED, "%s: AWQ needs calibration data", name);
  case LB_QM_GPTQ:
    if (!s->rtn)
      return lb_fail(err, LB_EUNSUPPORTED, "%s: GPTQ needs calibration data (or use rtn)", name);
    if (s->desc_act)
      return lb_fail(err, LB_EUNSUPPORTED, "%s: desc_act needs calibration data (GPTQ)", name);
    st = lb_rtn_quantize(w, rows, cols, s->bits, s->group > 0 ? s->group : cols, s->sym, name,
                         out, err);
    /* v1 cannot store a zero of 0 (see lb_rtn_v1_safe) */
    if (st == LB_OK && s->gptq_version == LB_GPTQ_V1) lb_rtn_v1_safe(w, out);
    return st;
  case LB_QM_BNB4:
    return lb_bnb4_quantize(w, rows, cols, s->nf4, 64, s->double_quant, name, out, err);
  case LB_QM_INT8:
    return lb_int8_quantize(w, rows, cols, (float)s->int8_threshold, name, out, err);
  case LB_QM_FP8:
  case LB_QM_CT_FP8: {
    int64_t br = s->block_r, bc = s->block_c;
    if (s->method == LB_QM_CT_FP8) lb_fp8_strategy_block(s->ct_strategy, rows, cols, &br, &bc);
    st = lb_fp8_quantize(w, rows, cols, LB_F8_E4M3, br, bc, out, err);
    break;
  }
  case LB_QM_HQQ: st = lb_hqq_quantize(w, rows, cols, s->bits, s->group, 1, out, err); break;
  case LB_QM_CT_INT: {
    /* parameters in the weight's own dtype, codes in fp32 (compressed-tensors on a GPU) */
    lb_ct_int_opts o = {.compute = s->wdtype, .eager = false};
    return lb_ct_int_quantize(w, rows, cols, s->bits, s->group, s->sym, &o, name, out, err);
  }
  default: return lb_fail(err, LB_EINVAL, "%s: unknown method", name);
  }
  if (st != LB_OK) lb_error_prefix(err, "%s", name);
  return st;
}

lb_status lb_quant_spec_write(const lb_quant_spec *s, lb_st_writer *w, const char *prefix,
                              const lb_qweight *q, lb_dtype orig_dtype, lb_error *err) {
  if (s->n_ov) {
    lb_quant_spec e = lb_quant_spec_for(s, prefix);
    return lb_quant_spec_write(&e, w, prefix, q, orig_dtype, err);
  }
  switch (s->method) {
  case LB_QM_GPTQ: return lb_gptq_write(w, prefix, q, s->gptq_version, err);
  case LB_QM_BNB4:
  case LB_QM_INT8: return lb_bnb_write(w, prefix, q, orig_dtype, err);
  case LB_QM_FP8: return lb_fp8_fg_write(w, prefix, q, err);
  case LB_QM_CT_FP8: return lb_fp8_ct_write(w, prefix, q, s->ct_strategy, LB_F32, err);
  case LB_QM_HQQ: return lb_hqq_write(w, prefix, q, orig_dtype, NULL, err);
  case LB_QM_CT_INT: return lb_ct_int_write(w, prefix, q, s->wdtype, err);
  case LB_QM_AWQ:
    if (s->awq_ct) return lb_ct_int_write(w, prefix, q, s->wdtype, err);
    return lb_awq_write(w, prefix, q, s->awq_version, err);
  }
  return lb_fail(err, LB_EINVAL, "%s: unknown method", prefix);
}

lb_status lb_quant_spec_read(const lb_quant_spec *s, const lb_tensors *t, const char *prefix,
                             lb_qweight *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  if (s->n_ov) {
    lb_quant_spec e = lb_quant_spec_for(s, prefix);
    return lb_quant_spec_read(&e, t, prefix, out, err);
  }
  lb_status st = LB_EINVAL;
  switch (s->method) {
  case LB_QM_GPTQ:
    st = lb_gptq_read(t, prefix, s->bits, s->group, s->gptq_version, out, err);
    break;
  case LB_QM_BNB4:
  case LB_QM_INT8:
    st = lb_bnb_read(t, prefix, out, NULL, err);
    if (st == LB_OK && out->kind == LB_QK_INT8ROW) out->threshold = (float)s->int8_threshold;
    if (st == LB_OK && (out->kind == LB_QK_CODEBOOK) != (s->method == LB_QM_BNB4))
      st = lb_fail(err, LB_EFORMAT, "%s: stored as %s-bit but the config says %s-bit", prefix,
                   out->kind == LB_QK_CODEBOOK ? "4" : "8", s->method == LB_QM_BNB4 ? "4" : "8");
    break;
  case LB_QM_FP8: st = lb_fp8_fg_read(t, prefix, s->block_r, s->block_c, out, err); break;
  case LB_QM_CT_FP8:
    st = lb_fp8_ct_read(t, prefix, s->ct_strategy, s->block_r, s->block_c, out, err);
    break;
  case LB_QM_HQQ: st = lb_hqq_read(t, prefix, out, err); break;
  case LB_QM_CT_INT: st = lb_ct_int_read(t, prefix, s->bits, s->group, s->sym, out, err); break;
  case LB_QM_AWQ: st = lb_awq_read(t, prefix, s->bits, s->group, s->awq_version, out, err); break;
  }
  if (st == LB_OK) st = lb_qweight_check(out, prefix, err);
  if (st != LB_OK) lb_qweight_free(out);
  return st;
}
