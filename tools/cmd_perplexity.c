/* lowbit perplexity DIR -f FILE [--ctx N] [--max-windows K] [--kl-base BASE] [-t N] [--json]
 * The protocol of the shared model's README: the whole file tokenized once with BOS (as the
 * tokenizer adds it), cut into non-overlapping windows of N tokens, each run from an empty cache,
 * every position scored against its successor. --kl-base: BASE runs the same windows and every
 * position gets KL(BASE || DIR) of the two next-token distributions. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "base/status.h"
#include "cli.h"
#include "io/fs.h"

static const char *HELP =
    "usage: lowbit perplexity DIR -f FILE [--ctx N] [--max-windows K] [--kl-base BASE]\n"
    "                         [-t THREADS] [--json] [--ref-kernels] [--device cpu|cuda]\n"
    "                         [--fp8-act auto|off|g128|token|static] [--kv-cache auto|off]\n"
    "  Perplexity of the model in DIR on a text file: BOS + the whole file tokenized once, split\n"
    "  into non-overlapping windows of N tokens (a last partial window is dropped), every position\n"
    "  of a window predicting the next token. Prints ppl with its standard error.\n"
    "  --ctx N           window length in tokens (default 1024)\n"
    "  --max-windows K   score only the first K windows (default: all)\n"
    "  --kl-base BASE    also run the model in BASE (the one DIR was quantized from) on the same\n"
    "                    windows, and report the KL divergence KL(BASE || DIR) of the next-token\n"
    "                    distributions over the positions (mean with its standard error, median,\n"
    "                    99th percentile, max), how often both rank the same token first, and\n"
    "                    BASE's perplexity. Both models are open at once; the tokenizer is DIR's.\n"
    "  -t THREADS        threads (default: all cores)\n"
    "  --json            one JSON object: ppl, ppl_stderr, tokens, windows, tokens_per_s, ...\n"
    "  --ref-kernels     quantized weights through the scalar reference dequantization and fp32\n"
    "                    activations instead of the packed kernels (what the kernels change)\n"
    "  --device D        cpu (default) or cuda (the first GPU)\n"
    "  --fp8-act A       FP8 checkpoints' W8A8: auto (as the checkpoint declares; default), off,\n"
    "                    g128, token or static (generate --help)\n"
    "  --kv-cache K      a checkpoint's FP8 KV cache: auto (as declared; default) or off\n"
    "                    (generate --help)\n";

typedef struct {
  const char *dir, *file, *base;
  long long ctx, max_windows, threads;
  bool json, ref;
  lb_device device;
  lb_fp8_act fp8_act;
  lb_kv_quant kv;
} opts;

static lb_status run(const opts *o, lb_error *err) {
  lb_tokenizer *tok = NULL;
  lb_model *m = NULL;
  int32_t *ids = NULL;
  size_t n = 0;
  double t_tok = 0;
  lb_status s = cli_tokenize_file(o->dir, o->file, &tok, &ids, &n, &t_tok, err);
  lb_model_options mo = {.n_threads = (int)o->threads, .max_ctx = o->ctx, .reference = o->ref,
                          .device = o->device, .fp8_act = o->fp8_act, .kv_quant = o->kv};
  if (s == LB_OK) s = lb_model_open(o->dir, &mo, &m, err);
  lb_model *b = NULL;
  lb_model_options mb = mo; /* the base (bf16, as a rule) runs as its own checkpoint declares */
  mb.fp8_act = LB_FP8_ACT_AUTO, mb.kv_quant = LB_KV_AUTO;
  if (s == LB_OK && o->base) s = lb_model_open(o->base, &mb, &b, err);
  char actbuf[48];
  const char *act = s == LB_OK ? cli_fp8_act(m, actbuf, sizeof actbuf) : NULL;
  lb_ppl_result r = {0};
  lb_kl_result kl = {0};
  if (s == LB_OK) {
    int64_t windows = (int64_t)(n > 0 ? n - 1 : 0) / o->ctx; /* lb_perplexity's: ctx inputs + the next token */
    if (o->max_windows > 0 && windows > o->max_windows) windows = o->max_windows;
    if (!o->json)
      fprintf(stderr, "%s: %zu tokens (tokenized in %.2f s), %lld windows of %lld, %s%s%s%s\n",
              o->file, n, t_tok, (long long)windows, o->ctx,
              o->device == LB_DEVICE_CUDA ? "cuda" : "cpu", act ? ", W8A8: FP8 activations " : "",
              act ? act : "", lb_model_kv_fp8(m) ? ", FP8 KV cache" : "");
    lb_progress bar;
    lb_progress_start(&bar, "perplexity", (uint64_t)windows, "windows", 1);
    s = lb_perplexity_kl(m, b, ids, (int64_t)n, o->ctx, o->max_windows, cli_progress_cb, &bar, &r, &kl, err);
    lb_progress_finish(&bar);
  }
  if (s == LB_OK && o->json) {
    json_t *root = json_pack(
        "{s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:s, s:s, s:I, s:s}", "ppl", r.ppl,
        "ppl_stderr", r.ppl_stderr, "mean_nll", r.mean_nll, "tokens", (json_int_t)r.tokens,
        "windows", (json_int_t)r.windows, "ctx", (json_int_t)o->ctx, "file_tokens",
        (json_int_t)n, "tokens_per_s", r.tokens_per_s, "seconds", r.seconds, "model", o->dir,
        "file", o->file, "threads", (json_int_t)lb_model_threads(m), "device",
        o->device == LB_DEVICE_CUDA ? "cuda" : "cpu");
    if (root && json_object_set_new(root, "kv_cache", json_string(lb_model_kv_fp8(m) ? "fp8" : "as computed")))
      json_decref(root), root = NULL;
    if (root && json_object_set_new(root, "fp8_act", json_string(act ? act : "none")))
      json_decref(root), root = NULL;
    json_t *more = b ? json_pack("{s:s, s:f, s:f}", "kl_base", o->base, "base_ppl", kl.base_ppl,
                                 "base_ppl_stderr", kl.base_ppl_stderr)
                     : NULL;
    if (root && b && (!more || json_object_update(root, more) || !cli_kl_json(root, &kl)))
      json_decref(root), root = NULL;
    json_decref(more);
    if (!root) s = lb_fail(err, LB_ENOMEM, "perplexity: cannot build the JSON output");
    else {
      json_dumpf(root, stdout, JSON_INDENT(2));
      fputc('\n', stdout);
      json_decref(root);
    }
  } else if (s == LB_OK) {
    char a[32];
    printf("ppl %.4f ± %.4f  (%s tokens scored in %lld windows of %lld; %.1f tokens/s, %.1f s)\n",
           r.ppl, r.ppl_stderr, cli_count((uint64_t)r.tokens, a, sizeof a), (long long)r.windows,
           o->ctx, r.tokens_per_s, r.seconds);
    if (b) {
      printf("KL divergence from %s: mean %.6f ± %.6f, median %.6f, 99th percentile %.6f, max %.6f\n",
             o->base, kl.kl_mean, kl.kl_stderr, kl.kl_median, kl.kl_p99, kl.kl_max);
      printf("same top token: %.2f%%   base ppl %.4f ± %.4f (ppl ratio %.4f)\n", 100 * kl.same_top,
             kl.base_ppl, kl.base_ppl_stderr, r.ppl / kl.base_ppl);
    }
  }
  lb_model_free(b);
  lb_model_free(m);
  lb_tokenizer_free(tok);
  free(ids);
  return s;
}

int cmd_perplexity(int argc, char **argv) {
  opts o = {.ctx = 1024};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    bool ok = true;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else if (!strcmp(a, "--json")) {
      o.json = true;
    } else if (!strcmp(a, "--ref-kernels")) {
      o.ref = true;
    } else if (a[0] == '-' && a[1]) {
      static const char *const VALUED[] = {"-f", "--file", "--ctx", "--max-windows", "--kl-base", "-t", "--threads", "--fp8-act", "--kv-cache", "--device"};
      int rc = 0;
      if (!(v = cli_option_value("perplexity", argc, argv, &i, VALUED, sizeof VALUED / sizeof VALUED[0], &rc))) return rc;
      if (!strcmp(a, "-f") || !strcmp(a, "--file")) o.file = v;
      else if (!strcmp(a, "--kl-base")) o.base = v;
      else if (!strcmp(a, "--ctx")) ok = cli_parse_int(v, 2, 1 << 20, &o.ctx);
      else if (!strcmp(a, "--max-windows")) ok = cli_parse_int(v, 1, INT32_MAX, &o.max_windows);
      else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_int(v, 1, 1024, &o.threads);
      else if (!strcmp(a, "--fp8-act")) ok = cli_parse_fp8_act(v, &o.fp8_act);
      else if (!strcmp(a, "--kv-cache")) ok = cli_parse_kv_cache(v, &o.kv);
      else ok = cli_parse_device(v, &o.device); /* --device: the last of VALUED */
      if (!ok) return cli_usage_error("perplexity", "%s '%s': not a valid value", a, v);
    } else if (!o.dir) {
      o.dir = a;
    } else {
      return cli_usage_error("perplexity", "unexpected argument '%s'", a);
    }
  }
  if (!o.dir) return cli_usage_error("perplexity", "needs a model folder DIR");
  if (!o.file) return cli_usage_error("perplexity", "needs a text file (-f FILE)");
  lb_error err = {0};
  return run(&o, &err) == LB_OK ? 0 : cli_fail(&err);
}
