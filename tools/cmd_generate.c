/* lowbit generate DIR -p TEXT [-n N] [--temp T --top-k K --top-p P --seed S] [-t N] [--json]
 * Tokenizes the prompt (BOS as the tokenizer adds it), runs it through the model in one prefill,
 * then samples up to N tokens, streaming the text, until an end-of-sequence token. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "base/status.h"
#include "cli.h"

static const char *HELP =
    "usage: lowbit generate DIR -p TEXT [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
    "                       [-t THREADS] [--ctx N] [--ignore-eos] [--json] [--device cpu|cuda]\n"
    "                       [--fp8-act auto|off|g128|token|static] [--kv-cache auto|off]\n"
    "  Continues TEXT with the model in DIR (config.json, safetensors, tokenizer.json), printing the\n"
    "  new text as it is produced and then prefill/decode speed and peak memory on stderr.\n"
    "  -n N          at most N new tokens (default 128); generation also stops at EOS\n"
    "  --temp T      temperature; 0 = greedy (default: greedy, or generation_config.json's\n"
    "                temperature/top_k/top_p when it sets do_sample)\n"
    "  --top-k K     keep the K most likely tokens (0 = all)\n"
    "  --top-p P     keep the smallest set with probability mass >= P (1 = all)\n"
    "  --seed S      random seed for sampling (default 0)\n"
    "  -t THREADS    threads (default: all cores)\n"
    "  --ctx N       KV cache length (default: max_position_embeddings, at most 4096)\n"
    "  --ignore-eos  do not stop at EOS (for benchmarks: always N new tokens)\n"
    "  --json        no streaming: print one JSON object with ids, text and timings\n"
    "  --device D    cpu (default) or cuda (the first GPU)\n"
    "  --fp8-act A   FP8 checkpoints' activations (W8A8): auto (default) quantizes them to E4M3\n"
    "                as the checkpoint's quantization_config declares (Transformers' fp8: 1 x 128\n"
    "                blocks; compressed-tensors: per token, per group, or static with its\n"
    "                input_scale, or not at all); off: never (weights-only FP8); g128 (1 x 128\n"
    "                blocks), token or static force one. With W8A8 the GPU's prefill runs on FP8\n"
    "                tensor cores\n"
    "  --kv-cache K  a checkpoint's FP8 KV cache (compressed-tensors kv_cache_scheme): auto\n"
    "                (default) rounds keys and values to E4M3 times its k_scale / v_scale, as\n"
    "                Transformers runs it; off keeps them as computed (CPU only for now)\n";

typedef struct {
  const char *dir, *prompt;
  long long n, threads, ctx;
  bool json, temp_set, k_set, p_set, ignore_eos;
  lb_sampler_params sp;
  lb_device device;
  lb_fp8_act fp8_act;
  lb_kv_quant kv;
} opts;

typedef struct {
  int32_t ids[64];
  int n;
} eos_set;

static void eos_add(eos_set *e, int64_t id) {
  if (id < 0 || e->n == 64) return;
  for (int i = 0; i < e->n; i++)
    if (e->ids[i] == id) return;
  e->ids[e->n++] = (int32_t)id;
}

static bool eos_has(const eos_set *e, int32_t id) {
  for (int i = 0; i < e->n; i++)
    if (e->ids[i] == id) return true;
  return false;
}

typedef struct {
  int32_t *prompt, *out;
  size_t n_prompt, n_out;
  double t_prefill, t_decode;
} run_result;

static lb_status run(const opts *o, lb_model *m, const lb_tokenizer *tok, run_result *r,
                     lb_error *err) {
  const lb_config *cfg = lb_model_config(m);
  const lb_generation_config *g = lb_checkpoint_generation(lb_model_checkpoint(m));
  eos_set eos = {0};
  for (int i = 0; i < cfg->n_eos; i++) eos_add(&eos, cfg->eos_token_ids[i]);
  for (int i = 0; g->present && i < g->n_eos; i++) eos_add(&eos, g->eos_token_ids[i]);
  eos_add(&eos, lb_tokenizer_eos(tok));

  LB_TRY(lb_tokenize(tok, o->prompt, strlen(o->prompt), LB_TOK_ADD_SPECIAL, &r->prompt,
                     &r->n_prompt, err));
  if (r->n_prompt == 0) return lb_fail(err, LB_EINVAL, "generate: the prompt has no tokens");
  if ((int64_t)r->n_prompt + o->n > lb_model_ctx(m))
    return lb_fail(err, LB_EINVAL, "generate: %zu prompt + %lld new tokens exceed the context of "
                   "%lld (--ctx)", r->n_prompt, o->n, (long long)lb_model_ctx(m));
  if (!(r->out = malloc(((size_t)o->n + 1) * sizeof(int32_t))))
    return lb_fail(err, LB_ENOMEM, "out of memory");
  lb_sampler *smp = NULL;
  lb_detok_stream *ds = NULL;
  lb_status s = lb_sampler_new(&o->sp, cfg->vocab_size, &smp, err);
  if (s == LB_OK) s = lb_detok_stream_new(tok, LB_DETOK_SKIP_SPECIAL, &ds, err);
  /* each forward chooses the next token where it runs (on CUDA: no logits copied back) */
  int32_t next = 0;
  double t0 = lb_now();
  if (s == LB_OK) s = lb_model_forward_sample(m, 1, r->prompt, (int64_t)r->n_prompt, &smp, &next, NULL, err);
  double t1 = lb_now();
  r->t_prefill = t1 - t0;
  while (s == LB_OK && (long long)r->n_out < o->n) {
    r->out[r->n_out++] = next;
    if (!o->ignore_eos && eos_has(&eos, next)) break;
    if (!o->json) {
      const char *text;
      size_t len;
      s = lb_detok_stream_push(ds, next, &text, &len, err);
      if (s == LB_OK && len) fwrite(text, 1, len, stdout), fflush(stdout);
    }
    const int32_t cur = next;
    if (s == LB_OK && (long long)r->n_out < o->n) s = lb_model_forward_sample(m, 1, &cur, 1, &smp, &next, NULL, err);
  }
  r->t_decode = lb_now() - t1;
  if (s == LB_OK && !o->json) {
    const char *text;
    size_t len;
    s = lb_detok_stream_flush(ds, &text, &len, err);
    if (s == LB_OK) fwrite(text, 1, len, stdout), fputc('\n', stdout), fflush(stdout);
  }
  lb_detok_stream_free(ds);
  lb_sampler_free(smp);
  return s;
}

static lb_status print_json(const opts *o, const lb_model *m, const lb_tokenizer *tok,
                            const run_result *r, lb_error *err) {
  char *text;
  size_t len;
  LB_TRY(lb_detokenize(tok, r->out, r->n_out, LB_DETOK_SKIP_SPECIAL, &text, &len, err));
  json_t *ids = json_array(), *pids = json_array();
  for (size_t i = 0; i < r->n_out; i++) json_array_append_new(ids, json_integer(r->out[i]));
  for (size_t i = 0; i < r->n_prompt; i++) json_array_append_new(pids, json_integer(r->prompt[i]));
  size_t dec = r->n_out > 0 ? r->n_out - 1 : 0; /* forward passes after the prefill */
  json_t *root = json_pack(
      "{s:s, s:o, s:o, s:s%, s:I, s:f, s:I, s:f, s:I}", "prompt", o->prompt, "prompt_ids", pids,
      "ids", ids, "text", text, len, "prefill_tokens", (json_int_t)r->n_prompt,
      "prefill_tokens_per_s", r->t_prefill > 0 ? (double)r->n_prompt / r->t_prefill : 0.0,
      "decode_tokens", (json_int_t)dec, "decode_tokens_per_s",
      r->t_decode > 0 ? (double)dec / r->t_decode : 0.0, "peak_rss_bytes",
      (json_int_t)cli_peak_rss());
  free(text);
  char a[48];
  const char *act = cli_fp8_act(m, a, sizeof a);
  if (root && json_object_set_new(root, "fp8_act", json_string(act ? act : "none")))
    json_decref(root), root = NULL;
  if (!root) return lb_fail(err, LB_ENOMEM, "generate: cannot build the JSON output");
  json_dumpf(root, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
  fputc('\n', stdout);
  json_decref(root);
  return LB_OK;
}

static int parse(int argc, char **argv, opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    bool ok = true;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else if (!strcmp(a, "--json")) {
      o->json = true;
      continue;
    } else if (!strcmp(a, "--ignore-eos")) {
      o->ignore_eos = true;
      continue;
    } else if (a[0] == '-' && a[1]) {
      static const char *const VALUED[] = {"-p", "--prompt", "-n", "-t", "--threads", "--ctx", "--temp", "--top-p", "--top-k", "--seed", "--device", "--fp8-act", "--kv-cache"};
      bool known = false;
      for (size_t k = 0; k < sizeof VALUED / sizeof VALUED[0]; k++) known |= !strcmp(a, VALUED[k]);
      if (!known) return cli_usage_error("generate", "unknown option '%s'", a);
      if (!(v = cli_value(argc, argv, &i))) return cli_usage_error("generate", "%s needs a value", a);
      long long k;
      if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
      else if (!strcmp(a, "-n")) ok = cli_parse_int(v, 0, 1 << 20, &o->n);
      else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_int(v, 1, 1024, &o->threads);
      else if (!strcmp(a, "--ctx")) ok = cli_parse_int(v, 1, 1 << 20, &o->ctx);
      else if (!strcmp(a, "--temp")) ok = cli_parse_double(v, 0, 1e6, &o->sp.temperature), o->temp_set = true;
      else if (!strcmp(a, "--top-p")) ok = cli_parse_double(v, 1e-9, 1, &o->sp.top_p), o->p_set = true;
      else if (!strcmp(a, "--top-k")) ok = cli_parse_int(v, 0, INT32_MAX, &k), o->sp.top_k = k, o->k_set = true;
      else if (!strcmp(a, "--seed")) ok = cli_parse_int(v, 0, INT64_MAX, &k), o->sp.seed = (uint64_t)k;
      else if (!strcmp(a, "--device")) ok = cli_parse_device(v, &o->device);
      else if (!strcmp(a, "--fp8-act")) ok = cli_parse_fp8_act(v, &o->fp8_act);
      else if (!strcmp(a, "--kv-cache")) ok = cli_parse_kv_cache(v, &o->kv);
      else return cli_usage_error("generate", "unknown option '%s'", a);
      if (!ok) return cli_usage_error("generate", "%s '%s': not a valid value", a, v);
    } else if (!o->dir) {
      o->dir = a;
    } else {
      return cli_usage_error("generate", "unexpected argument '%s'", a);
    }
  }
  if (!o->dir) return cli_usage_error("generate", "needs a model folder DIR");
  if (!o->prompt) return cli_usage_error("generate", "needs a prompt (-p TEXT)");
  return -1;
}

int cmd_generate(int argc, char **argv) {
  opts o = {.n = 128, .sp = {.temperature = 0, .top_p = 1, .top_k = 0}};
  int rc = parse(argc, argv, &o);
  if (rc >= 0) return rc;
  lb_error err = {0};
  lb_tokenizer *tok = NULL;
  lb_model *m = NULL;
  lb_model_options mo = {.n_threads = (int)o.threads, .max_ctx = o.ctx, .device = o.device,
                         .fp8_act = o.fp8_act, .kv_quant = o.kv};
  if (lb_tokenizer_load(o.dir, &tok, &err) != LB_OK) return cli_fail(&err);
  if (lb_model_open(o.dir, &mo, &m, &err) != LB_OK) {
    lb_tokenizer_free(tok);
    return cli_fail(&err);
  }
  /* generation_config.json's sampling settings apply unless flags override them */
  const lb_generation_config *g = lb_checkpoint_generation(lb_model_checkpoint(m));
  if (g->present && g->do_sample) {
    if (!o.temp_set) o.sp.temperature = g->temperature;
    if (!o.k_set) o.sp.top_k = g->top_k;
    if (!o.p_set) o.sp.top_p = g->top_p;
  }
  run_result r = {0};
  lb_status s = run(&o, m, tok, &r, &err);
  if (s == LB_OK && o.json) s = print_json(&o, m, tok, &r, &err);
  if (s == LB_OK && !o.json) {
    size_t dec = r.n_out > 0 ? r.n_out - 1 : 0;
    char mem[32];
    fprintf(stderr,
            "prefill: %zu tokens in %.3f s (%.1f tokens/s) | decode: %zu tokens in %.3f s "
            "(%.1f tokens/s) | %d threads | peak memory %s",
            r.n_prompt, r.t_prefill, r.t_prefill > 0 ? (double)r.n_prompt / r.t_prefill : 0.0, dec,
            r.t_decode, r.t_decode > 0 ? (double)dec / r.t_decode : 0.0, lb_model_threads(m),
            cli_bytes(cli_peak_rss(), mem, sizeof mem));
    if (lb_model_device(m) == LB_DEVICE_CUDA)
      fprintf(stderr, " | device memory %s", cli_bytes(lb_model_device_bytes(m), mem, sizeof mem));
    char a[48];
    const char *act = cli_fp8_act(m, a, sizeof a);
    if (act) fprintf(stderr, " | W8A8: FP8 activations %s", act);
    if (lb_model_kv_fp8(m)) fprintf(stderr, " | FP8 KV cache (static scales)");
    fputc('\n', stderr);
  }
  free(r.prompt);
  free(r.out);
  lb_model_free(m);
  lb_tokenizer_free(tok);
  return s == LB_OK ? 0 : cli_fail(&err);
}
