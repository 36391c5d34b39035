/* lowbit quantize SRC DST --method M [options]
 * Quantizes the decoder Linear layers of a dense checkpoint and writes a complete Hugging Face folder
 * in the method's ecosystem layout. Streams layer by layer: calibration-free methods widen one
 * Linear at a time to fp32, quantize it and append it to the streaming safetensors writer; GPTQ and
 * AWQ run the calibration engine (quant/calib.h) one decoder block at a time and write that block.
 * Other tensors are copied as they are. DST is built under a temporary name and renamed at the end. */
#include <errno.h>
#include <jansson.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/progress.h"
#include "cli.h"
#include "io/fs.h"
#include "io/json.h"
#include "calib_input.h"
#include "model/model_internal.h"
#include "quant/calib.h"
#include "quant/spec.h"

static const char *HELP =
    "usage: lowbit quantize SRC DST --method gptq|awq|rtn|nf4|fp4|int8|fp8|hqq [options]\n"
    "  Quantizes the decoder Linear layers of SRC and writes DST, a complete Hugging Face folder in\n"
    "  the method's own layout (gptq, rtn: GPTQ (AutoGPTQ/GPTQModel) or compressed-tensors; awq:\n"
    "  AutoAWQ; nf4/fp4/int8: bitsandbytes; fp8: fine-grained FP8 or compressed-tensors; hqq:\n"
    "  HQQ). Embeddings and lm_head stay dense (rtn: --lm-head). gptq, awq and fp8 --scheme FP8\n"
    "  learn from calibration text (--calib).\n"
    "  --method M       gptq, awq, rtn, nf4, fp4, int8, fp8 or hqq\n"
    "  --format F       gptq, rtn: gptq (default; checkpoint_format \"gptq\", v1) or gptq_v2;\n"
    "                   rtn also compressed-tensors (\"pack-quantized\"); awq: gemm (default) or\n"
    "                   gemv (AutoAWQ's two layouts, 4-bit), or compressed-tensors (any --bits,\n"
    "                   as llm-compressor writes AWQ); fp8: fp8 (default) or compressed-tensors\n"
    "                   (\"float-quantized\", with --scheme)\n"
    "  --scheme S       fp8 --format compressed-tensors: llm-compressor's FP8 presets: FP8_DYNAMIC\n"
    "                   (default: per-channel weights, dynamic per-token activations), FP8\n"
    "                   (per-tensor weights, static activation scales calibrated from --calib) or\n"
    "                   FP8_BLOCK (128 x 128 weight blocks, dynamic 1 x 128 activation groups)\n"
    "  --bits B         gptq, rtn: 2, 3, 4, 8 (default 4); hqq: 1, 2, 3, 4, 8 (default 4);\n"
    "                   awq: 4 (2, 3, 8 with --format compressed-tensors)\n"
    "  --group G        gptq, rtn, awq group size (default 128; -1 per channel); hqq (default 64)\n"
    "  --sym            gptq, rtn: symmetric (default asymmetric)\n"
    "  --lm-head        rtn (GPTQ layout): quantize the lm_head too, with the same bits and group\n"
    "                   (GPTQModel's \"lm_head\": true; a tied model is untied: the embeddings stay\n"
    "                   as stored). Decode reads the lm_head every token.\n"
    "calibration (gptq, awq, fp8 with static activation scales: --scheme FP8, or a --config\n"
    "    whose input_activations are static per tensor):\n"
    "  --calib FILE     calibration text (e.g. ../shared/data/calibration/groups_merged.txt); or\n"
    "                   a --config file's \"dataset\" (a file path or a list of strings)\n"
    "  --calib-lines    the text holds one document per line (each tokenized on its own)\n"
    "  --nsamples N     windows of calibration tokens (default 128)\n"
    "  --seqlen L       tokens per window (default 512)\n"
    "  --seed S         which windows are drawn (default 0; same seed, same windows)\n"
    "  --desc-act       gptq: act-order (columns by decreasing Hessian diagonal; writes g_idx)\n"
    "  --static-groups  gptq: group parameters fixed before the updates\n"
    "  --damp P         gptq: damp_percent, a fraction of the mean Hessian diagonal (default 0.01)\n"
    "  --awq-search-samples N\n"
    "                   awq: windows the scale search measures its loss on (default 8; AutoAWQ\n"
    "                   uses all, on a GPU); the activation statistics always use all\n"
    "  --no-clip        awq: skip the weight clipping search\n"
    "  --threads T      threads (default: one per core)\n"
    "  --double-quant   nf4/fp4: quantize the absmax too (bnb_4bit_use_double_quant)\n"
    "  --skip REGEX     keep Linear modules whose name matches REGEX (POSIX ERE) dense\n"
    "  --override PATTERN=BITS[:GROUP]\n"
    "                   rtn --format gptq only, repeatable: Linear modules whose full name\n"
    "                   (model.layers.3.mlp.down_proj) matches the Python regex PATTERN from its\n"
    "                   start (re.match) get BITS (2, 3, 4, 8) and GROUP (-1 or a size; default\n"
    "                   --group); the first matching override wins. Written as GPTQModel's\n"
    "                   \"dynamic\" (e.g. --override '.*down_proj=8')\n"
    "  --config FILE    a quantization_config JSON (Transformers key names) instead of --method\n"
    "  --shard-size S   cut shards at S (e.g. 2GB; default one file)\n"
    "  --force          replace DST if it exists\n";

/* One --override PATTERN=BITS[:GROUP], as given: the pattern is arg[0, pat_len). */
typedef struct {
  const char *arg;
  size_t pat_len;
  int bits;
  long long group; /* 0: --group's */
} override_arg;

typedef struct {
  const char *src, *dst, *method, *config, *skip, *format, *calib, *scheme;
  long long bits, group, nsamples, seqlen, seed, threads, search_samples;
  double damp;
  bool has_bits, has_group, sym, double_quant, force, calib_lines, desc_act, static_groups;
  bool has_damp, no_clip, has_calib_opts, lm_head;
  uint64_t shard;
  override_arg ov[LB_QSPEC_MAX_OVERRIDE];
  size_t n_ov;
} opts;

typedef struct {
  uint64_t qbytes, qparams, nq, ndense_lin;
} stats;

/* The --override rules, in order (cmd_quantize checked them and the method). */
static lb_status add_overrides(const opts *o, lb_quant_spec *s, lb_error *err) {
  for (size_t i = 0; i < o->n_ov; i++) {
    const override_arg *a = &o->ov[i];
    char *pat = strndup(a->arg, a->pat_len);
    if (!pat) {
      lb_quant_spec_free(s);
      return lb_fail(err, LB_ENOMEM, "out of memory");
    }
    lb_status st = lb_quant_spec_add_override(s, pat, false, a->bits,
                                              a->group ? a->group : s->group, err);
    free(pat);
    if (st != LB_OK) {
      lb_quant_spec_free(s);
      return st;
    }
  }
  return LB_OK;
}

/* --override PATTERN=BITS[:GROUP]: split at the last '=' (a pattern may hold one, "(?=...)"), the
 * numbers checked and the regex compiled. Returns 0, or the usage error's exit code. */
static int parse_override(const char *v, override_arg *out) {
  const char *eq = strrchr(v, '=');
  if (!eq || eq == v)
    return cli_usage_error("quantize", "--override '%s': expected PATTERN=BITS[:GROUP]", v);
  char num[64];
  snprintf(num, sizeof num, "%s", eq + 1);
  char *colon = strchr(num, ':');
  if (colon) *colon++ = 0;
  long long b, g = 0;
  if (!cli_parse_int(num, 2, 8, &b) || (b != 2 && b != 3 && b != 4 && b != 8))
    return cli_usage_error("quantize", "--override '%s': bits '%s' (expected 2, 3, 4 or 8)", v,
                           num);
  if (colon && (!cli_parse_int(colon, -1, 1 << 20, &g) || g == 0))
    return cli_usage_error("quantize",
                           "--override '%s': group '%s' (expected -1 or a positive size)", v,
                           colon);
  *out = (override_arg){.arg = v, .pat_len = (size_t)(eq - v), .bits = (int)b, .group = g};
  /* the regex, compiled once here so that a bad one is a usage error */
  lb_quant_spec t;
  lb_error err = {0};
  char *pat = strndup(v, out->pat_len);
  lb_status st = pat ? lb_quant_spec_default("rtn", &t, &err) : LB_ENOMEM;
  if (st == LB_OK) {
    st = lb_quant_spec_add_override(&t, pat, false, out->bits, g ? g : 128, &err);
    lb_quant_spec_free(&t);
  }
  free(pat);
  if (st != LB_OK) return cli_usage_error("quantize", "--%s", err.msg); /* "--override ..." */
  return 0;
}


static const char *calib_name(const lb_quant_spec *s) {
  return s->method == LB_QM_AWQ ? "awq" : s->method == LB_QM_CT_FP8 ? "fp8 static" : "gptq";
}

/* --method fp8 --format compressed-tensors --scheme S: llm-compressor's FP8 presets.
 *   FP8          per-tensor weights, static per-tensor activations (calibrated: --calib)
 *   FP8_DYNAMIC  per-channel weights, dynamic per-token activations (the default)
 *   FP8_BLOCK    128 x 128 weight blocks, dynamic 1 x 128 activation groups */
static lb_status fp8_scheme(const opts *o, lb_quant_spec *s, lb_error *err) {
  const bool ct = s->method == LB_QM_FP8 && o->format && !strcmp(o->format, "compressed-tensors");
  if (s->method == LB_QM_FP8 && o->format && !ct && strcmp(o->format, "fp8"))
    return lb_fail(err, LB_EINVAL, "--format %s: fp8 writes fp8 (Transformers' fine-grained FP8, "
                   "the default) or compressed-tensors", o->format);
  if (o->scheme && !ct)
    return lb_fail(err, LB_EINVAL, "--scheme applies to --method fp8 --format compressed-tensors");
  if (!ct) return LB_OK;
  const char *sc = o->scheme ? o->scheme : "FP8_DYNAMIC";
  s->method = LB_QM_CT_FP8;
  if (!strcmp(sc, "FP8")) {
    s->ct_strategy = LB_FP8_TENSOR, s->act = LB_FP8_ACT_STATIC, s->act_group = 0;
  } else if (!strcmp(sc, "FP8_DYNAMIC")) {
    s->ct_strategy = LB_FP8_CHANNEL, s->act = LB_FP8_ACT_TOKEN, s->act_group = 0;
  } else if (!strcmp(sc, "FP8_BLOCK")) {
    s->ct_strategy = LB_FP8_BLOCK, s->block_r = s->block_c = 128;
    s->act = LB_FP8_ACT_GROUP128, s->act_group = 128;
  } else {
    return lb_fail(err, LB_EINVAL, "--scheme %s: expected FP8, FP8_DYNAMIC or FP8_BLOCK", sc);
  }
  return LB_OK;
}

static lb_status build_spec(const opts *o, lb_quant_spec *s, lb_error *err) {
  if (o->config) {
    char *text;
    size_t len;
    LB_TRY(lb_read_file(o->config, 1u << 20, &text, &len, err));
    lb_status st = lb_quant_spec_parse(text, len, o->config, s, err);
    free(text);
    LB_TRY(st);
    if (o->method || o->has_bits || o->has_group || o->sym || o->double_quant || o->format || o->scheme ||
        o->desc_act || o->static_groups || o->has_damp) {
      lb_quant_spec_free(s);
      return lb_fail(err, LB_EINVAL, "--config FILE replaces --method/--bits/--group/--sym/"
                                     "--double-quant/--format/--scheme/--desc-act/--static-groups/"
                                     "--damp; give one or the other");
    }
    bool act = s->method == LB_QM_GPTQ && s->desc_act;
    for (size_t i = 0; i < s->n_ov; i++)
      act |= !s->ov[i].skip && s->ov[i].has_desc_act && s->ov[i].desc_act;
    if (act && s->rtn) {
      lb_quant_spec_free(s);
      return lb_fail(err, LB_EUNSUPPORTED,
                     "%s: key 'desc_act': true needs calibration data (quant_method \"gptq\")",
                     o->config);
    }
    if (s->method == LB_QM_CT_INT) s->rtn = true;
    if (s->kv_fp8) {
      lb_quant_spec_free(s);
      return lb_fail(err, LB_EUNSUPPORTED, "%s: key 'kv_cache_scheme': lowbit quantize does not "
                     "calibrate KV cache scales (null: the KV cache in the model's precision)", o->config);
    }
    if (!lb_calib_needed(s) && o->has_calib_opts) {
      lb_quant_spec_free(s);
      return lb_fail(err, LB_EINVAL, "%s: calibration options are for quant_method \"gptq\", "
                     "\"awq\" and static FP8 activations", o->config);
    }
    return LB_OK;
  }
  if (!o->method) return lb_fail(err, LB_EINVAL, "--method or --config is required");
  LB_TRY(lb_quant_spec_default(o->method, s, err));
  const char *m = o->method;
  if (o->has_bits) {
    long long b = o->bits;
    bool ok = s->method == LB_QM_GPTQ   ? (b == 2 || b == 3 || b == 4 || b == 8)
              : s->method == LB_QM_HQQ  ? (b == 1 || b == 2 || b == 3 || b == 4 || b == 8)
              : s->method == LB_QM_BNB4 ? b == 4
                                        : b == 8;
    if (s->method == LB_QM_AWQ)
      ok = b == 4 || ((b == 2 || b == 3 || b == 8) && o->format &&
                      !strcmp(o->format, "compressed-tensors"));
    if (!ok)
      return lb_fail(err, LB_EINVAL, "--bits %lld is not available for --method %s (%s)", b, m,
                     s->method == LB_QM_GPTQ  ? "2, 3, 4 or 8"
                     : s->method == LB_QM_HQQ ? "1, 2, 3, 4 or 8"
                     : s->method == LB_QM_AWQ ? "4 in AutoAWQ's gemm/gemv; 2, 3, 4 or 8 with "
                                                "--format compressed-tensors"
                     : s->method == LB_QM_BNB4 ? "4"
                                               : "8");
    s->bits = (int)b;
  }
  if (o->has_group) {
    if (s->method != LB_QM_GPTQ && s->method != LB_QM_HQQ && s->method != LB_QM_AWQ)
      return lb_fail(err, LB_EINVAL, "--group applies to gptq, awq, rtn and hqq only");
    if (o->group == 0 || o->group < -1 || (o->group == -1 && s->method == LB_QM_HQQ))
      return lb_fail(err, LB_EINVAL, "--group %lld: expected a positive size%s", o->group,
                     s->method != LB_QM_HQQ ? " or -1 (per channel)" : "");
    s->group = o->group;
  }
  if (o->sym) {
    if (s->method != LB_QM_GPTQ) return lb_fail(err, LB_EINVAL, "--sym applies to gptq and rtn only");
    s->sym = true;
  }
  if ((o->desc_act || o->static_groups || o->has_damp) && !(s->method == LB_QM_GPTQ && !s->rtn))
    return lb_fail(err, LB_EINVAL, "--desc-act, --static-groups and --damp apply to gptq only");
  if ((o->search_samples || o->no_clip) && s->method != LB_QM_AWQ)
    return lb_fail(err, LB_EINVAL, "--awq-search-samples and --no-clip apply to awq only");
  LB_TRY(fp8_scheme(o, s, err));
  if (o->has_calib_opts && !lb_calib_needed(s))
    return lb_fail(err, LB_EINVAL, "calibration options (--calib, --nsamples, ...) apply to gptq, "
                   "awq and --scheme FP8 only");
  if (o->lm_head && !(s->method == LB_QM_GPTQ && s->rtn))
    return lb_fail(err, LB_EINVAL, "--lm-head applies to rtn (GPTQ layout) only");
  s->lm_head = o->lm_head;
  s->desc_act = o->desc_act;
  s->static_groups = o->static_groups;
  if (o->has_damp) s->damp = o->damp;
  if (o->double_quant) {
    if (s->method != LB_QM_BNB4)
      return lb_fail(err, LB_EINVAL, "--double-quant applies to nf4 and fp4 only");
    s->double_quant = true;
  }
  if (o->format) {
    const char *f = o->format;
    bool gptq_fmt = !strcmp(f, "gptq") || !strcmp(f, "gptq_v2");
    if (s->method == LB_QM_AWQ) {
      if (strcmp(f, "gemm") && strcmp(f, "gemv") && strcmp(f, "compressed-tensors"))
        return lb_fail(err, LB_EINVAL, "--format %s: awq writes gemm, gemv or compressed-tensors",
                       f);
      s->awq_version = !strcmp(f, "gemv") ? LB_AWQ_GEMV : LB_AWQ_GEMM;
      s->awq_ct = !strcmp(f, "compressed-tensors");
    } else if (s->method == LB_QM_GPTQ) {
      if (!gptq_fmt && (!s->rtn || strcmp(f, "compressed-tensors")))
        return lb_fail(err, LB_EINVAL, "--format %s: %s writes gptq or gptq_v2%s", f, m,
                       s->rtn ? " or compressed-tensors" : "");
      if (!strcmp(f, "gptq_v2")) s->gptq_version = LB_GPTQ_V2;
      if (!gptq_fmt)
        s->method = LB_QM_CT_INT; /* same bits, group and symmetry, compressed-tensors' rule */
    } else if (s->method != LB_QM_CT_FP8 && s->method != LB_QM_FP8) { /* fp8: fp8_scheme */
      return lb_fail(err, LB_EINVAL, "--format applies to gptq, rtn, awq and fp8 only");
    }
  }
  return add_overrides(o, s, err);
}

static lb_status write_config(const opts *o, const lb_quant_spec *s, const char *out_dir,
                              lb_error *err) {
  char *in = lb_path_join(o->src, "config.json"), *out = lb_path_join(out_dir, "config.json");
  char *qtext = NULL;
  json_t *root = NULL, *q = NULL;
  lb_status st = in && out ? LB_OK : lb_fail(err, LB_ENOMEM, "out of memory");
  if (st == LB_OK) st = lb_json_load_file(in, 16u << 20, &root, err);
  if (st == LB_OK) st = lb_quant_spec_to_json(s, &qtext, err);
  if (st == LB_OK) st = lb_json_parse(qtext, strlen(qtext), "quantization_config", &q, err);
  if (st == LB_OK) {
    if (s->lm_head) json_object_set_new(root, "tie_word_embeddings", json_false());
    json_object_set_new(root, "quantization_config", q);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) st = lb_fail(err, LB_ENOMEM, "out of memory");
    else {
      size_t len = strlen(text);
      text[len] = '\n';
      st = lb_write_file_atomic(out, text, len + 1, err);
      free(text);
    }
  }
  json_decref(root);
  free(qtext);
  free(in);
  free(out);
  return st;
}

static bool is_float(lb_dtype d) { return d == LB_F32 || d == LB_F16 || d == LB_BF16; }

/* Quantizes one Linear weight tensor and appends it in the method's layout. */
static lb_status quantize_one(const lb_quant_spec *s, lb_st_writer *w, const lb_tensor *t,
                              const char *mod, float **buf, size_t *cap, stats *st,
                              lb_error *err) {
  if (t->ndim != 2 || !is_float(t->dtype))
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' is not a 2-D float weight", t->file, t->name);
  int64_t rows = t->shape[0], cols = t->shape[1];
  size_t n = (size_t)rows * (size_t)cols;
  if (n > *cap) {
    free(*buf);
    if (!(*buf = malloc(n * sizeof(float)))) {
      *cap = 0;
      return lb_fail(err, LB_ENOMEM, "out of memory widening '%s'", t->name);
    }
    *cap = n;
  }
  LB_TRY(lb_convert(*buf, LB_F32, t->data, t->dtype, n, 0, err));
  /* shallow: the module's override applied (bits, group), wdtype set; never freed */
  lb_quant_spec sl = lb_quant_spec_for(s, mod);
  sl.wdtype = t->dtype; /* compressed-tensors int computes and stores scales in it */
  lb_qweight q;
  LB_TRY(lb_quant_spec_quantize(&sl, *buf, rows, cols, t->name, &q, err));
  lb_status r = lb_quant_spec_write(&sl, w, mod, &q, t->dtype, err);
  lb_qweight_free(&q);
  st->qparams += n;
  st->nq++;
  return r;
}

/* An fp32 array written in the tensor's own dtype under its name and shape. */
static lb_status write_f32(lb_st_writer *w, const lb_tensor *t, const float *v, lb_error *err) {
  size_t n = t->nbytes / lb_dtype_size(t->dtype);
  void *buf = malloc(t->nbytes ? t->nbytes : 1);
  if (!buf) return lb_fail(err, LB_ENOMEM, "out of memory writing '%s'", t->name);
  lb_status r = lb_convert(buf, t->dtype, v, LB_F32, n, 0, err);
  if (r == LB_OK) r = lb_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, buf, t->nbytes, err);
  free(buf);
  return r;
}

/* Block l's tensor t from what the calibration engine made of the block. */
static lb_status write_calibrated(const lb_quant_spec *s, lb_st_writer *w, const lb_checkpoint *c,
                                  const char *blk, const lb_tensor *t, const lb_calib_block *b,
                                  stats *st, lb_error *err) {
  const lb_arch *a = lb_checkpoint_arch(c);
  char mod[256], name[300];
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    snprintf(mod, sizeof mod, "%s.%s", blk, a->linear[k]);
    snprintf(name, sizeof name, "%s.weight", mod);
    if (!strcmp(t->name, name)) {
      if (b->quantized[k]) {
        lb_quant_spec sl = lb_quant_spec_for(s, mod);
        sl.wdtype = t->dtype; /* compressed-tensors stores scales in it */
        st->qparams += (uint64_t)(b->q[k].rows * b->q[k].cols);
        st->nq++;
        LB_TRY(lb_quant_spec_write(&sl, w, mod, &b->q[k], t->dtype, err));
        if (s->method != LB_QM_CT_FP8 || s->act != LB_FP8_ACT_STATIC) return LB_OK;
        /* [1] in the weight's dtype, as compressed-tensors stores it */
        char sn[300];
        uint8_t v[4];
        int64_t one = 1;
        snprintf(sn, sizeof sn, "%s.input_scale", mod);
        LB_TRY(lb_convert(v, t->dtype, &b->act_scale[k], LB_F32, 1, 0, err));
        return lb_st_writer_add(w, sn, t->dtype, 1, &one, v, lb_dtype_size(t->dtype), err);
      }
      st->ndense_lin++;
      if (b->dense[k]) return write_f32(w, t, b->dense[k], err);
      break;
    }
    snprintf(name, sizeof name, "%s.bias", mod);
    if (!strcmp(t->name, name) && b->bias[k]) return write_f32(w, t, b->bias[k], err);
  }
  const char *norms[2] = {a->attn_norm, a->mlp_norm};
  const float *vals[2] = {b->attn_norm, b->mlp_norm};
  for (int i = 0; i < 2; i++) {
    snprintf(name, sizeof name, "%s.%s.weight", blk, norms[i]);
    if (!strcmp(t->name, name) && vals[i]) return write_f32(w, t, vals[i], err);
  }
  return lb_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, err);
}

static lb_status write_tensors(const opts *o, const lb_quant_spec *s, const lb_checkpoint *c,
                               lb_calib *cal, const char *out_dir, stats *st, lb_error *err) {
  const lb_tensors *ts = lb_checkpoint_tensors(c);
  const lb_arch *a = lb_checkpoint_arch(c);
  const lb_config *cfg = lb_checkpoint_config(c);
  lb_st_writer *w;
  LB_TRY(lb_st_writer_open(out_dir, o->shard, &w, err));
  lb_progress bar;
  lb_progress_start(&bar, cal ? calib_name(s) : "quantize",
                    (uint64_t)cfg->num_hidden_layers, "layers", 1);
  lb_status r = LB_OK;
  float *buf = NULL;
  size_t cap = 0;
  char blk[64], mod[256];
  size_t nblocks = strlen(a->blocks);
  /* layer by layer (layers are interleaved in name order: model.layers.1, .10, .11, ...) */
  for (int l = 0; l < cfg->num_hidden_layers && r == LB_OK; l++) {
    lb_arch_block(a, l, blk, sizeof blk);
    size_t nb = strlen(blk);
    lb_calib_block cb;
    if (cal) r = lb_calib_block_run(cal, l, &cb, err);
    for (size_t i = 0; i < lb_tensors_count(ts) && r == LB_OK; i++) {
      const lb_tensor *t = lb_tensors_at(ts, i);
      if (strncmp(t->name, blk, nb) || t->name[nb] != '.') continue;
      if (cal) {
        r = write_calibrated(s, w, c, blk, t, &cb, st, err);
        continue;
      }
      bool done = false;
      for (int k = 0; k < LB_LIN_COUNT && !done; k++) {
        snprintf(mod, sizeof mod, "%s.%s", blk, a->linear[k]);
        size_t nm = strlen(mod);
        if (strncmp(t->name, mod, nm) || strcmp(t->name + nm, ".weight")) continue;
        done = true;
        if (lb_quant_spec_skips(s, mod)) {
          st->ndense_lin++;
          r = lb_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, err);
        } else {
          r = quantize_one(s, w, t, mod, &buf, &cap, st, err);
        }
      }
      if (!done)
        r = lb_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, err);
    }
    lb_progress_update(&bar, (uint64_t)l + 1);
  }
  /* everything outside the blocks (embeddings, final norm, lm_head), as stored; with --lm-head
   * the lm_head quantized (from the embeddings when they are tied) */
  char head[256];
  snprintf(head, sizeof head, "%s.weight", a->lm_head);
  for (size_t i = 0; i < lb_tensors_count(ts) && r == LB_OK; i++) {
    const lb_tensor *t = lb_tensors_at(ts, i);
    if (!strncmp(t->name, a->blocks, nblocks) && t->name[nblocks] == '.') continue;
    if (s->lm_head && !strcmp(t->name, head)) {
      r = quantize_one(s, w, t, a->lm_head, &buf, &cap, st, err);
      continue;
    }
    r = lb_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, err);
    char embed[256];
    snprintf(embed, sizeof embed, "%s.weight", a->embed);
    if (r == LB_OK && s->lm_head && cfg->tie_word_embeddings && !strcmp(t->name, embed)) {
      lb_tensor h = *t;
      h.name = head;
      r = quantize_one(s, w, &h, a->lm_head, &buf, &cap, st, err);
    }
  }
  free(buf);
  if (r != LB_OK) {
    lb_st_writer_abort(w);
    return r;
  }
  lb_progress_finish(&bar);
  return lb_st_writer_finish(w, err);
}

/* Real bits per weight: bytes of the quantized Linear tensors (bias excluded) in the output. */
static lb_status measure(const lb_quant_spec *s, const lb_checkpoint *c, const char *dir,
                         stats *st, uint64_t *total, lb_error *err) {
  lb_tensors *t;
  LB_TRY(lb_tensors_open(dir, &t, err));
  const lb_arch *a = lb_checkpoint_arch(c);
  const lb_config *cfg = lb_checkpoint_config(c);
  char blk[64], mod[256];
  *total = 0;
  for (size_t i = 0; i < lb_tensors_count(t); i++) {
    const lb_tensor *x = lb_tensors_at(t, i);
    *total += x->nbytes;
    size_t nh = strlen(a->lm_head);
    if (s->lm_head && !strncmp(x->name, a->lm_head, nh) && x->name[nh] == '.') st->qbytes += x->nbytes;
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
      lb_arch_block(a, l, blk, sizeof blk);
      for (int k = 0; k < LB_LIN_COUNT; k++) {
        snprintf(mod, sizeof mod, "%s.%s", blk, a->linear[k]);
        size_t n = strlen(mod);
        if (!strncmp(x->name, mod, n) && x->name[n] == '.' && strcmp(x->name + n, ".bias") &&
            !lb_quant_spec_skips(s, mod))
          st->qbytes += x->nbytes;
      }
    }
  }
  lb_tensors_close(t);
  return LB_OK;
}

static lb_status add_skips(const opts *o, lb_quant_spec *s, const lb_checkpoint *c, lb_error *err) {
  const lb_arch *a = lb_checkpoint_arch(c);
  if (!s->lm_head && !lb_quant_spec_skips(s, a->lm_head))
    LB_TRY(lb_quant_spec_add_skip(s, a->lm_head, err));
  if (!o->skip) return LB_OK;
  regex_t re;
  int rc = regcomp(&re, o->skip, REG_EXTENDED | REG_NOSUB);
  if (rc) {
    char msg[128];
    regerror(rc, &re, msg, sizeof msg);
    return lb_fail(err, LB_EINVAL, "--skip '%s': %s", o->skip, msg);
  }
  lb_status r = LB_OK;
  char blk[64], mod[256];
  const lb_config *cfg = lb_checkpoint_config(c);
  for (int l = 0; l < cfg->num_hidden_layers && r == LB_OK; l++) {
    lb_arch_block(a, l, blk, sizeof blk);
    for (int k = 0; k < LB_LIN_COUNT && r == LB_OK; k++) {
      snprintf(mod, sizeof mod, "%s.%s", blk, a->linear[k]);
      if (!regexec(&re, mod, 0, NULL, 0)) r = lb_quant_spec_add_skip(s, mod, err);
    }
  }
  regfree(&re);
  return r;
}

typedef struct {
  const opts *o;
  const lb_quant_spec *spec;
  const lb_checkpoint *c;
  lb_calib *cal;
  stats *st;
} quant_ctx;

static lb_status fill(void *p, const char *tmp, lb_error *err) {
  quant_ctx *x = p;
  LB_TRY(write_tensors(x->o, x->spec, x->c, x->cal, tmp, x->st, err));
  return write_config(x->o, x->spec, tmp, err);
}

typedef struct {
  cli_docs docs;
  lb_calib_data data;
  lb_model *model;
  lb_calib *cal;
  const char *source;
} calib_run;

static void calib_free(calib_run *r) {
  lb_calib_free(r->cal);
  lb_model_free(r->model);
  lb_calib_data_free(&r->data);
  cli_docs_free(&r->docs);
}

/* The calibration windows, the dense model and the engine. */
static lb_status calib_setup(const opts *o, const lb_quant_spec *spec, calib_run *r,
                             lb_error *err) {
  bool found = false;
  if (o->calib) {
    LB_TRY(cli_calib_docs_file(o->calib, o->calib_lines, &r->docs, err));
    r->source = o->calib;
  } else if (o->config) {
    LB_TRY(cli_calib_docs_config(o->config, o->calib_lines, &found, &r->docs, err));
    r->source = "the config's dataset";
  }
  if (!o->calib && !found)
    return lb_fail(err, LB_EINVAL, "%s needs calibration text: --calib FILE (e.g. "
                   "../shared/data/calibration/groups_merged.txt)%s",
                   calib_name(spec),
                   o->config ? " or a \"dataset\" in the config" : "");
  lb_tokenizer *tok;
  LB_TRY(lb_tokenizer_load(o->src, &tok, err));
  lb_status s = lb_calib_sample(tok, r->docs.docs, r->docs.lens, r->docs.n, o->nsamples, o->seqlen,
                                (uint64_t)o->seed, r->source, &r->data, err);
  lb_tokenizer_free(tok);
  LB_TRY(s);
  lb_model_options mo = {.n_threads = (int)o->threads, .max_ctx = o->seqlen};
  LB_TRY(lb_model_open(o->src, &mo, &r->model, err));
  lb_calib_opts co = lb_calib_default_opts();
  co.damp = spec->damp;
  co.static_groups = spec->static_groups;
  if (o->search_samples) co.awq_search_samples = o->search_samples;
  co.awq_no_clip = o->no_clip;
  return lb_calib_new(r->model, spec, &r->data, &co, &r->cal, err);
}

static lb_status run(const opts *o, lb_error *err) {
  lb_quant_spec spec;
  LB_TRY(build_spec(o, &spec, err));
  double t0 = lb_now();
  lb_checkpoint *c = NULL;
  lb_status s = lb_checkpoint_open(o->src, &c, err);
  if (s == LB_OK && lb_checkpoint_quant_config(c))
    s = lb_fail(err, LB_EINVAL, "%s: already quantized (has a quantization_config)", o->src);
  if (s == LB_OK && lb_path_exists(o->dst) && !o->force) /* before any work */
    s = lb_fail(err, LB_EEXIST, "%s: already exists (use --force to replace it)", o->dst);
  if (s == LB_OK) s = add_skips(o, &spec, c, err);
  /* refuse unsupported shapes before writing anything; count the modules each override takes */
  uint64_t ov_hits[LB_QSPEC_MAX_OVERRIDE] = {0};
  if (s == LB_OK) {
    const lb_arch *a = lb_checkpoint_arch(c);
    const lb_config *cfg = lb_checkpoint_config(c);
    char blk[64], mod[256];
    for (int l = 0; l < cfg->num_hidden_layers && s == LB_OK; l++)
      for (int k = 0; k < LB_LIN_COUNT && s == LB_OK; k++) {
        lb_arch_block(a, l, blk, sizeof blk);
        snprintf(mod, sizeof mod, "%s.%s", blk, a->linear[k]);
        int64_t out, in;
        lb_arch_linear_shape(cfg, (lb_linear_kind)k, &out, &in);
        const lb_quant_override *hit = lb_quant_spec_match(&spec, mod);
        if (hit) ov_hits[hit - spec.ov]++;
        if (!lb_quant_spec_skips(&spec, mod))
          s = lb_quant_spec_check_shape(&spec, out, in, mod, err);
      }
  }
  stats st = {0};
  uint64_t total = 0;
  quant_ctx x = {o, &spec, c, NULL, &st};
  calib_run cr = {0};
  if (s == LB_OK && lb_calib_needed(&spec)) s = calib_setup(o, &spec, &cr, err);
  x.cal = cr.cal;
  if (s == LB_OK) s = cli_build_output(o->dst, o->force, c, fill, &x, err);
  if (s == LB_OK) s = measure(&spec, c, o->dst, &st, &total, err);
  if (s == LB_OK) {
    char d[96], b1[32], b2[32];
    printf("quantized %s -> %s\n", o->src, o->dst);
    printf("  method:          %s\n", lb_quant_spec_describe(&spec, d, sizeof d));
    for (size_t i = 0; i < spec.n_ov; i++) {
      const lb_quant_override *r = &spec.ov[i];
      lb_quant_spec e = lb_quant_spec_for(&spec, ""); /* the base, to fill keys a rule leaves */
      if (r->has_bits) e.bits = r->bits;
      if (r->has_group) e.group = r->group;
      if (r->skip) snprintf(d, sizeof d, "dense");
      else if (e.group > 0) snprintf(d, sizeof d, "int%d g%lld", e.bits, (long long)e.group);
      else snprintf(d, sizeof d, "int%d per-channel", e.bits);
      printf("  %-17s%c:%s -> %s (%llu module%s)\n", i ? "" : "overrides:", r->skip ? '-' : '+',
             r->pattern, d, (unsigned long long)ov_hits[i], ov_hits[i] == 1 ? "" : "s");
    }
    printf("  linear layers:   %llu quantized, %llu kept dense (%s parameters quantized)\n",
           (unsigned long long)st.nq, (unsigned long long)st.ndense_lin,
           cli_count(st.qparams, b1, sizeof b1));
    printf("  bits per weight: %.3f (quantized layers, scales and zeros included)\n",
           st.qparams ? 8.0 * (double)st.qbytes / (double)st.qparams : 0.0);
    printf("  size:            %s (tensors)\n", cli_bytes(total, b2, sizeof b2));
    if (cr.cal)
      printf("  calibration:     %lld x %lld tokens of %s (seed %lld)\n",
             (long long)cr.data.nsamples, (long long)cr.data.seqlen, cr.source, o->seed);
    printf("  time:            %.1f s\n", lb_now() - t0);
  }
  calib_free(&cr);
  lb_checkpoint_close(c);
  lb_quant_spec_free(&spec);
  return s;
}

int cmd_quantize(int argc, char **argv) {
  opts o = {.nsamples = 128, .seqlen = 512};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else if (!strcmp(a, "--force")) {
      o.force = true;
    } else if (!strcmp(a, "--sym")) {
      o.sym = true;
    } else if (!strcmp(a, "--double-quant")) {
      o.double_quant = true;
    } else if (!strcmp(a, "--calib-lines")) {
      o.calib_lines = o.has_calib_opts = true;
    } else if (!strcmp(a, "--desc-act")) {
      o.desc_act = true;
    } else if (!strcmp(a, "--lm-head")) {
      o.lm_head = true;
    } else if (!strcmp(a, "--static-groups")) {
      o.static_groups = true;
    } else if (!strcmp(a, "--no-clip")) {
      o.no_clip = true;
    } else if (!strcmp(a, "--calib") || !strcmp(a, "--nsamples") || !strcmp(a, "--seqlen") ||
               !strcmp(a, "--seed") || !strcmp(a, "--damp") || !strcmp(a, "--threads") ||
               !strcmp(a, "--awq-search-samples")) {
      if (!(v = cli_value(argc, argv, &i)))
        return cli_usage_error("quantize", "%s needs a value", a);
      if (!strcmp(a, "--calib")) {
        o.calib = v, o.has_calib_opts = true;
      } else if (!strcmp(a, "--nsamples")) {
        if (!cli_parse_int(v, 1, 1 << 20, &o.nsamples))
          return cli_usage_error("quantize", "--nsamples '%s': expected a positive count", v);
        o.has_calib_opts = true;
      } else if (!strcmp(a, "--seqlen")) {
        if (!cli_parse_int(v, 2, 1 << 20, &o.seqlen))
          return cli_usage_error("quantize", "--seqlen '%s': expected 2 or more tokens", v);
        o.has_calib_opts = true;
      } else if (!strcmp(a, "--seed")) {
        if (!cli_parse_int(v, 0, INT64_MAX, &o.seed))
          return cli_usage_error("quantize", "--seed '%s': expected a non-negative integer", v);
        o.has_calib_opts = true;
      } else if (!strcmp(a, "--damp")) {
        if (!cli_parse_double(v, 1e-9, 0.999, &o.damp))
          return cli_usage_error("quantize", "--damp '%s': expected a fraction in (0, 1)", v);
        o.has_damp = true;
      } else if (!strcmp(a, "--threads")) {
        if (!cli_parse_int(v, 1, 4096, &o.threads))
          return cli_usage_error("quantize", "--threads '%s': expected 1 to 4096", v);
      } else if (!cli_parse_int(v, 1, 1 << 20, &o.search_samples)) {
        return cli_usage_error("quantize", "--awq-search-samples '%s': expected a positive count", v);
      }
    } else if (!strcmp(a, "--method") || !strcmp(a, "--config") || !strcmp(a, "--skip") ||
               !strcmp(a, "--bits") || !strcmp(a, "--group") || !strcmp(a, "--shard-size") ||
               !strcmp(a, "--format") || !strcmp(a, "--override") || !strcmp(a, "--scheme")) {
      if (!(v = cli_value(argc, argv, &i)))
        return cli_usage_error("quantize", "%s needs a value", a);
      if (!strcmp(a, "--method")) {
        if (strcmp(v, "rtn") && strcmp(v, "nf4") && strcmp(v, "fp4") && strcmp(v, "int8") &&
            strcmp(v, "fp8") && strcmp(v, "hqq") && strcmp(v, "gptq") && strcmp(v, "awq"))
          return cli_usage_error("quantize", "--method '%s': expected gptq, awq, rtn, nf4, fp4, "
                                 "int8, fp8 or hqq", v);
        o.method = v;
      } else if (!strcmp(a, "--format")) {
        if (strcmp(v, "gptq") && strcmp(v, "gptq_v2") && strcmp(v, "compressed-tensors") &&
            strcmp(v, "gemm") && strcmp(v, "gemv") && strcmp(v, "fp8"))
          return cli_usage_error("quantize", "--format '%s': expected gptq, gptq_v2, "
                                 "compressed-tensors, gemm, gemv or fp8", v);
        o.format = v;
      } else if (!strcmp(a, "--scheme")) {
        o.scheme = v;
      } else if (!strcmp(a, "--override")) {
        if (o.n_ov == LB_QSPEC_MAX_OVERRIDE)
          return cli_usage_error("quantize", "more than %d --override", LB_QSPEC_MAX_OVERRIDE);
        int rc = parse_override(v, &o.ov[o.n_ov]);
        if (rc) return rc;
        o.n_ov++;
      } else if (!strcmp(a, "--config")) o.config = v;
      else if (!strcmp(a, "--skip")) o.skip = v;
      else if (!strcmp(a, "--bits")) {
        if (!cli_parse_int(v, 1, 8, &o.bits))
          return cli_usage_error("quantize", "--bits '%s': expected 1 to 8", v);
        o.has_bits = true;
      } else if (!strcmp(a, "--group")) {
        if (!cli_parse_int(v, -1, 1 << 20, &o.group))
          return cli_usage_error("quantize", "--group '%s': expected -1 or a size", v);
        o.has_group = true;
      } else if (!cli_parse_size(v, &o.shard) || o.shard == 0) {
        return cli_usage_error("quantize", "--shard-size '%s': expected a size like 2GB", v);
      }
    } else if (a[0] == '-') {
      return cli_usage_error("quantize", "unknown option '%s'", a);
    } else if (!o.src) {
      o.src = a;
    } else if (!o.dst) {
      o.dst = a;
    } else {
      return cli_usage_error("quantize", "unexpected argument '%s'", a);
    }
  }
  if (!o.src || !o.dst) return cli_usage_error("quantize", "needs SRC and DST");
  if (!o.method && !o.config) return cli_usage_error("quantize", "needs --method or --config");
  if (o.n_ov && (o.config || (strcmp(o.method, "rtn") && strcmp(o.method, "gptq")) ||
                   (o.format && strcmp(o.format, "gptq") && strcmp(o.format, "gptq_v2"))))
    return cli_usage_error("quantize",
                           "--override needs --method rtn --format gptq: per-module bit widths are "
                           "written only in the GPTQ layout (GPTQModel's \"dynamic\")%s",
                           o.config ? "; with --config, put them in its \"dynamic\" key" : "");
  lb_error err = {0};
  if (run(&o, &err) != LB_OK) return cli_fail(&err);
  return 0;
}
