/* lowbit synth OUT --shape llama-7b|llama-8b|mistral-7b|tiny [--layers N] [--dtype bf16|f16]
 *                  [--seed S] [--force] [--method M [quantize options]]
 * A model of a real architecture's shapes with random weights, so that 7B-class speed can be
 * measured where no such checkpoint can be brought: Linear weights and embeddings N(0, 0.02^2)
 * (Llama's initializer_range), norms 1 + N(0, 0.02^2). With --method the dense model is written
 * beside OUT first and then quantized into OUT by `lowbit quantize` (any calibration-free method
 * and its options); the dense copy is removed. No tokenizer is written: bench needs none. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/progress.h"
#include "base/status.h"
#include "base/threads.h"
#include "cli.h"
#include "io/fs.h"

static const char *HELP =
    "usage: lowbit synth OUT --shape llama-7b|llama-8b|mistral-7b|tiny [--layers N]\n"
    "                    [--dtype bf16|f16] [--seed S] [--force] [--method M [options]]\n"
    "  Writes a Hugging Face folder of the shape's config with random weights (normal, std 0.02,\n"
    "  as Llama is initialized; norms near 1) to measure speed where no real checkpoint is at hand.\n"
    "  --shape S    llama-7b (Llama-2-7B), llama-8b (Llama-3-8B), mistral-7b (Mistral-7B-v0.1),\n"
    "               tiny (2 layers of 256, for tests), tiny-qwen2 (+ q/k/v biases, a sliding\n"
    "               window of 24 in layer 1), tiny-llama-bias (+ a bias on every Linear)\n"
    "  --layers N   fewer (or more) decoder layers than the shape has\n"
    "  --dtype D    bf16 (default) or f16\n"
    "  --seed S     random seed (default 0); the same seed gives the same weights\n"
    "  --method M   then quantize it: rtn, nf4, fp4, int8, fp8 or hqq; the options after M go to\n"
    "               `lowbit quantize` (--bits, --group, --format, --double-quant ...)\n"
    "  --force      replace OUT if it exists\n";

typedef struct {
  const char *name, *arch, *type;
  int64_t hidden, inter, layers, heads, kv_heads, vocab, ctx, window;
  double theta;
  bool tied;
  unsigned bias; /* bit k: Linear k (q, k, v, o, gate, up, down) has a bias */
} shape_t;

enum { QKV_BIAS = 7, ALL_BIAS = 127 };

/* tiny-qwen2 (q/k/v biases, a window of 24 from layer 1 on) and tiny-llama-bias (attention_bias and
 * mlp_bias: every Linear has one) exist to test what the small model does not have. */
static const shape_t SHAPES[] = {
    {"llama-7b", "LlamaForCausalLM", "llama", 4096, 11008, 32, 32, 32, 32000, 4096, 0, 1e4, false, 0},
    {"llama-8b", "LlamaForCausalLM", "llama", 4096, 14336, 32, 32, 8, 128256, 8192, 0, 5e5, false, 0},
    {"mistral-7b", "MistralForCausalLM", "mistral", 4096, 14336, 32, 32, 8, 32000, 32768, 4096, 1e4, false, 0},
    {"tiny", "LlamaForCausalLM", "llama", 256, 768, 2, 4, 2, 32000, 2048, 0, 1e4, true, 0},
    {"tiny-qwen2", "Qwen2ForCausalLM", "qwen2", 256, 768, 2, 4, 2, 32000, 2048, 24, 1e6, true, QKV_BIAS},
    {"tiny-llama-bias", "LlamaForCausalLM", "llama", 256, 768, 2, 4, 2, 32000, 2048, 0, 1e4, false, ALL_BIAS},
};

typedef struct {
  const shape_t *sh;
  const char *out;
  long long layers, seed;
  lb_dtype dtype;
  bool force;
  int qargc; /* argv from --method on, for quantize */
  char **qargv;
} opts;

/* splitmix64: a seed per row, so the weights do not depend on the thread count */
static uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

typedef struct {
  uint16_t *buf;
  int64_t rows, cols;
  uint64_t seed;
  float mean, std;
  lb_dtype dtype;
} fill_job;

static void fill_task(void *p, int ith, int nth) {
  fill_job *j = p;
  int64_t lo, hi;
  lb_split(j->rows, ith, nth, &lo, &hi);
  for (int64_t r = lo; r < hi; r++) {
    uint64_t s = mix(j->seed ^ mix((uint64_t)r));
    for (int64_t c = 0; c < j->cols; c += 2) { /* Box-Muller: two normals per two uniforms */
      s = mix(s);
      double u1 = ((s >> 11) + 1.0) / 9007199254740993.0, u2 = (double)(mix(s) >> 11) / 9007199254740992.0;
      double rad = sqrt(-2 * log(u1)), z[2] = {rad * cos(2 * M_PI * u2), rad * sin(2 * M_PI * u2)};
      for (int k = 0; k < 2 && c + k < j->cols; k++) {
        float v = j->mean + j->std * (float)z[k];
        j->buf[r * j->cols + c + k] = j->dtype == LB_F16 ? lb_f32_to_f16(v) : lb_f32_to_bf16(v);
      }
    }
  }
}

typedef struct {
  const opts *o;
  lb_pool *pool;
} synth_ctx;

static lb_status add(synth_ctx *x, lb_st_writer *w, const char *name, int64_t rows, int64_t cols,
                     float mean, float std, uint64_t id, uint16_t *buf, lb_error *err) {
  fill_job j = {buf, rows, cols, mix((uint64_t)x->o->seed * 1000003ull + id), mean, std, x->o->dtype};
  lb_pool_run(x->pool, fill_task, &j);
  int64_t shape[2] = {rows, cols};
  return lb_st_writer_add(w, name, x->o->dtype, cols == 1 ? 1 : 2, shape, buf,
                          (uint64_t)(rows * cols) * 2, err);
}

static lb_status write_config(const opts *o, const char *dir, lb_error *err) {
  const shape_t *s = o->sh;
  json_t *c = json_pack("{s:[s], s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:s, s:b, "
                        "s:I, s:I, s:s, s:b, s:b}",
                        "architectures", s->arch, "model_type", s->type, "hidden_size", (json_int_t)s->hidden,
                        "intermediate_size", (json_int_t)s->inter, "num_hidden_layers", (json_int_t)o->layers,
                        "num_attention_heads", (json_int_t)s->heads, "num_key_value_heads",
                        (json_int_t)s->kv_heads, "vocab_size", (json_int_t)s->vocab,
                        "max_position_embeddings", (json_int_t)s->ctx, "rms_norm_eps", 1e-5,
                        "rope_theta", s->theta, "hidden_act", "silu", "tie_word_embeddings", s->tied,
                        "bos_token_id", (json_int_t)1, "eos_token_id", (json_int_t)2, "torch_dtype",
                        o->dtype == LB_F16 ? "float16" : "bfloat16", "attention_bias",
                        s->bias == ALL_BIAS, "mlp_bias", s->bias == ALL_BIAS);
  if (c && s->window) json_object_set_new(c, "sliding_window", json_integer(s->window));
  if (c && s->window && !strcmp(s->type, "qwen2")) {
    json_object_set_new(c, "use_sliding_window", json_true());
    json_object_set_new(c, "max_window_layers", json_integer(1));
  }
  if (c) json_object_set_new(c, "lowbit_synthetic", json_string(s->name));
  char *text = c ? json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
  json_decref(c);
  if (!text) return lb_fail(err, LB_ENOMEM, "synth: cannot build config.json");
  char *path = lb_path_join(dir, "config.json");
  size_t len = strlen(text);
  text[len] = '\n';
  lb_status st = path ? lb_write_file_atomic(path, text, len + 1, err) : lb_fail(err, LB_ENOMEM, "out of memory");
  free(path);
  free(text);
  return st;
}

static lb_status fill(void *p, const char *dir, lb_error *err) {
  synth_ctx *x = p;
  const opts *o = x->o;
  const shape_t *s = o->sh;
  int64_t hd = s->hidden / s->heads, kvd = s->kv_heads * hd;
  int64_t biggest = s->vocab * s->hidden > s->inter * s->hidden ? s->vocab * s->hidden : s->inter * s->hidden;
  uint16_t *buf = malloc((size_t)biggest * 2);
  if (!buf) return lb_fail(err, LB_ENOMEM, "synth: out of memory");
  lb_st_writer *w = NULL;
  lb_status st = write_config(o, dir, err);
  if (st == LB_OK) st = lb_st_writer_open(dir, 4ull << 30, &w, err);
  lb_progress bar;
  lb_progress_start(&bar, "synth", (uint64_t)o->layers, "layers", 1);
  uint64_t id = 0;
  if (st == LB_OK) st = add(x, w, "model.embed_tokens.weight", s->vocab, s->hidden, 0, 0.02f, id++, buf, err);
  static const char *const LIN[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                    "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
  const int64_t rows[] = {s->heads * hd, kvd, kvd, s->hidden, s->inter, s->inter, s->hidden};
  const int64_t cols[] = {s->hidden, s->hidden, s->hidden, s->heads * hd, s->hidden, s->hidden, s->inter};
  for (int64_t l = 0; l < o->layers && st == LB_OK; l++) {
    char name[128];
    for (int k = 0; k < 7 && st == LB_OK; k++) {
      snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l, LIN[k]);
      st = add(x, w, name, rows[k], cols[k], 0, 0.02f, id++, buf, err);
      if (st == LB_OK && s->bias >> k & 1) { /* biases large enough to matter: N(0, 0.1^2) */
        snprintf(name, sizeof name, "model.layers.%lld.%s.bias", (long long)l, LIN[k]);
        st = add(x, w, name, rows[k], 1, 0, 0.1f, id++, buf, err);
      }
    }
    snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
    if (st == LB_OK) st = add(x, w, name, s->hidden, 1, 1, 0.02f, id++, buf, err);
    snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
    if (st == LB_OK) st = add(x, w, name, s->hidden, 1, 1, 0.02f, id++, buf, err);
    lb_progress_update(&bar, (uint64_t)l + 1);
  }
  if (st == LB_OK) st = add(x, w, "model.norm.weight", s->hidden, 1, 1, 0.02f, id++, buf, err);
  if (st == LB_OK && !s->tied) st = add(x, w, "lm_head.weight", s->vocab, s->hidden, 0, 0.02f, id++, buf, err);
  lb_progress_finish(&bar);
  if (st == LB_OK) st = lb_st_writer_finish(w, err);
  else if (w) lb_st_writer_abort(w);
  free(buf);
  return st;
}

static int run(const opts *o) {
  lb_error err = {0};
  synth_ctx x = {.o = o};
  if (lb_pool_new(0, &x.pool, &err) != LB_OK) return cli_fail(&err);
  if (!o->qargc) {
    lb_status s = cli_build_output(o->out, o->force, NULL, fill, &x, &err);
    lb_pool_free(x.pool);
    return s == LB_OK ? 0 : cli_fail(&err);
  }
  /* dense beside OUT, then quantize into OUT */
  char dense[4096];
  snprintf(dense, sizeof dense, "%s.lowbit-dense-%ld", o->out, (long)getpid());
  lb_status s = cli_build_output(dense, false, NULL, fill, &x, &err);
  lb_pool_free(x.pool);
  if (s != LB_OK) return cli_fail(&err);
  int argc = o->qargc + 3 + (o->force ? 1 : 0), rc;
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  if (!argv) rc = 1;
  else {
    argv[0] = "quantize", argv[1] = dense, argv[2] = (char *)o->out;
    for (int i = 0; i < o->qargc; i++) argv[3 + i] = o->qargv[i];
    if (o->force) argv[argc - 1] = "--force";
    rc = cmd_quantize(argc, argv);
    free(argv);
  }
  lb_remove_tree(dense);
  return rc;
}

int cmd_synth(int argc, char **argv) {
  opts o = {.dtype = LB_BF16, .layers = -1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else if (!strcmp(a, "--force")) {
      o.force = true;
    } else if (!strcmp(a, "--method")) {
      o.qargc = argc - i, o.qargv = argv + i; /* --method M and the rest go to quantize */
      if (o.qargc < 2) return cli_usage_error("synth", "--method needs a value");
      break;
    } else if (!strcmp(a, "--shape") || !strcmp(a, "--layers") || !strcmp(a, "--dtype") ||
               !strcmp(a, "--seed")) {
      if (!(v = cli_value(argc, argv, &i))) return cli_usage_error("synth", "%s needs a value", a);
      bool ok = true;
      if (!strcmp(a, "--shape")) {
        o.sh = NULL;
        for (size_t k = 0; k < sizeof SHAPES / sizeof SHAPES[0]; k++)
          if (!strcmp(v, SHAPES[k].name)) o.sh = &SHAPES[k];
        ok = o.sh != NULL;
      } else if (!strcmp(a, "--layers")) {
        ok = cli_parse_int(v, 1, 1024, &o.layers);
      } else if (!strcmp(a, "--seed")) {
        ok = cli_parse_int(v, 0, INT64_MAX, &o.seed);
      } else {
        ok = !strcmp(v, "bf16") || !strcmp(v, "f16");
        o.dtype = !strcmp(v, "f16") ? LB_F16 : LB_BF16;
      }
      if (!ok) return cli_usage_error("synth", "%s '%s': not a valid value", a, v);
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("synth", "unknown option '%s'", a);
    } else if (!o.out) {
      o.out = a;
    } else {
      return cli_usage_error("synth", "unexpected argument '%s'", a);
    }
  }
  if (!o.out) return cli_usage_error("synth", "needs an output folder OUT");
  if (!o.sh) return cli_usage_error("synth", "needs --shape (llama-7b, llama-8b, mistral-7b, tiny, ...)");
  if (o.layers < 0) o.layers = o.sh->layers;
  if (lb_path_exists(o.out) && !o.force) {
    lb_error err;
    lb_fail(&err, LB_EEXIST, "%s: already exists (use --force to replace it)", o.out);
    return cli_fail(&err);
  }
  return run(&o);
}
