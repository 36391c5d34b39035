/* lowbit compare BASE MODEL... -f FILE [--ctx N] [--max-windows K] [--svg OUT.svg] [--json] [-t N]
 *                [--device D]
 * Which quantized model is the smallest that still works: each MODEL against BASE on the same
 * windows of FILE (perplexity's protocol and KL divergence, lb_perplexity_kl), one table of size,
 * bits per weight, perplexity and KL, and optionally the plot of KL against bits per weight. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "base/status.h"
#include "cli.h"
#include "io/fs.h"
#include "plot.h"

static const char *HELP =
    "usage: lowbit compare BASE MODEL... -f FILE [--ctx N] [--max-windows K] [--svg OUT.svg]\n"
    "                      [--json] [-t THREADS] [--device cpu|cuda]\n"
    "  Each MODEL (quantized from BASE) against BASE on the same windows of FILE, as\n"
    "  `perplexity --kl-base` scores them: one table of checkpoint size, bits per weight,\n"
    "  perplexity (and its ratio to BASE's), mean and 99th-percentile KL(BASE || MODEL) of the\n"
    "  next-token distributions, and how often both rank the same token first. BASE runs again\n"
    "  beside each MODEL (two models open at a time); the tokenizer is BASE's.\n"
    "  --ctx N           window length in tokens (default 512)\n"
    "  --max-windows K   score only the first K windows (default 40; 0: all)\n"
    "  --svg OUT.svg     also plot mean KL (log scale) against bits per weight, a point a model\n"
    "  -t THREADS        threads (default: all cores)\n"
    "  --json            one JSON object instead of the table\n"
    "  --device D        cpu (default) or cuda (the first GPU)\n";

#define MAX_MODELS 64

typedef struct {
  const char *base, *file, *svg, *models[MAX_MODELS];
  int nmodels;
  long long ctx, max_windows, threads;
  bool json;
  lb_device device;
} opts;

typedef struct {
  const char *dir;
  double size, params;
  lb_ppl_result ppl;
  lb_kl_result kl;
  char act[48]; /* W8A8: the FP8 activations' mode (cli_fp8_act), or "" */
} row;

/* The folder's last name (for tables and labels): "out/pocket-nf4/" gives "pocket-nf4". */
static const char *short_name(const char *dir, char *buf, size_t cap) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && dir[b - 1] != '/') b--;
  snprintf(buf, cap, "%.*s", (int)(n - b), dir + b);
  return buf;
}

static double bpw(const row *r) { return r->params > 0 ? 8 * r->size / r->params : 0; }

static lb_status write_svg(const opts *o, const row *base, const row *rows, lb_error *err) {
  cli_point pts[MAX_MODELS + 1];
  char names[MAX_MODELS + 1][128], title[200], note[300], bn[128];
  short_name(o->base, bn, sizeof bn);
  pts[0] = (cli_point){bpw(base), 0, short_name(o->base, names[0], sizeof names[0])};
  for (int i = 0; i < o->nmodels; i++)
    pts[i + 1] = (cli_point){bpw(&rows[i]), rows[i].kl.kl_mean, short_name(rows[i].dir, names[i + 1], sizeof names[i + 1])};
  snprintf(title, sizeof title, "KL divergence from %s against bits per weight", bn);
  const char *file = strrchr(o->file, '/') ? strrchr(o->file, '/') + 1 : o->file;
  snprintf(note, sizeof note, "%s: %lld positions in %lld windows of %lld tokens; hollow: %s itself (KL 0)",
           file, (long long)rows[0].ppl.tokens, (long long)rows[0].ppl.windows, o->ctx, bn);
  const cli_plot p = {title, "bits per weight (checkpoint bytes x 8 / parameters)", "mean KL(base || model), nats",
                      true, note, pts, (size_t)o->nmodels + 1};
  return cli_plot_svg_file(&p, o->svg, err);
}

static lb_status print_json(const opts *o, const row *base, const row *rows) {
  json_t *list = json_array();
  for (int i = 0; list && i < o->nmodels; i++) {
    const row *r = &rows[i];
    json_t *e = json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:f}", "model", r->dir, "size_bytes", r->size, "params",
                          r->params, "bits_per_weight", bpw(r), "ppl", r->ppl.ppl, "ppl_stderr", r->ppl.ppl_stderr,
                          "ppl_ratio", r->ppl.ppl / r->kl.base_ppl);
    if (e && !cli_kl_json(e, &r->kl)) json_decref(e), e = NULL;
    if (e && json_object_set_new(e, "fp8_act", json_string(r->act[0] ? r->act : "none")))
      json_decref(e), e = NULL;
    if (!e || json_array_append_new(list, e)) json_decref(list), list = NULL;
  }
  json_t *root = list ? json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:s, s:I, s:I, s:I, s:o}", "base", o->base,
                                  "base_size_bytes", base->size, "base_params", base->params,
                                  "base_bits_per_weight", bpw(base), "base_ppl", rows[0].kl.base_ppl,
                                  "base_ppl_stderr", rows[0].kl.base_ppl_stderr, "file", o->file, "ctx",
                                  (json_int_t)o->ctx, "windows", (json_int_t)rows[0].ppl.windows, "tokens",
                                  (json_int_t)rows[0].ppl.tokens, "models", list)
                      : NULL;
  if (!root) return LB_ENOMEM;
  json_dumpf(root, stdout, JSON_INDENT(2));
  fputc('\n', stdout);
  json_decref(root);
  return LB_OK;
}

static void print_table(const opts *o, const row *base, const row *rows) {
  char n[128], sz[32];
  printf("| model | size | bpw | ppl | ppl / base | KL mean | KL p99 | same top token |\n"
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  printf("| %s (base) | %s | %.2f | %.4f ± %.4f | 1 | | | |\n", short_name(o->base, n, sizeof n),
         cli_bytes((uint64_t)base->size, sz, sizeof sz), bpw(base), rows[0].kl.base_ppl, rows[0].kl.base_ppl_stderr);
  for (int i = 0; i < o->nmodels; i++) {
    const row *r = &rows[i];
    char cell[200];
    printf("| %s | %s | %.2f | %.4f ± %.4f | %.4f | %.5f ± %.5f | %.4f | %.2f%% |\n",
           cli_w8a8_label(short_name(r->dir, n, sizeof n), r->act, cell, sizeof cell),
           cli_bytes((uint64_t)r->size, sz, sizeof sz), bpw(r), r->ppl.ppl, r->ppl.ppl_stderr,
           r->ppl.ppl / r->kl.base_ppl, r->kl.kl_mean, r->kl.kl_stderr, r->kl.kl_p99, 100 * r->kl.same_top);
  }
  printf("\n%s: %lld positions in %lld windows of %lld tokens\n", o->file, (long long)rows[0].ppl.tokens,
         (long long)rows[0].ppl.windows, o->ctx);
}

static lb_status run(const opts *o, lb_error *err) {
  if (o->svg) { /* the plot's folder before minutes of work, not after */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", o->svg);
    char *slash = strrchr(dir, '/');
    if (slash) slash == dir ? (void)(slash[1] = 0) : (void)(*slash = 0);
    if (slash && !lb_is_dir(dir)) return lb_fail(err, LB_EIO, "--svg %s: no folder %s", o->svg, dir);
  }
  row base = {.dir = o->base}, *rows = calloc((size_t)o->nmodels, sizeof *rows);
  if (!rows) return lb_fail(err, LB_ENOMEM, "compare: out of memory");
  lb_tokenizer *tok = NULL;
  lb_model *b = NULL;
  int32_t *ids = NULL;
  size_t n = 0;
  double t_tok;
  lb_status s = cli_tokenize_file(o->base, o->file, &tok, &ids, &n, &t_tok, err);
  const lb_model_options mo = {.n_threads = (int)o->threads, .max_ctx = o->ctx, .device = o->device};
  if (s == LB_OK) s = lb_model_open(o->base, &mo, &b, err);
  if (s == LB_OK) cli_model_size(b, &base.size, &base.params);
  for (int i = 0; i < o->nmodels && s == LB_OK; i++) {
    lb_model *m = NULL;
    char label[160], nm[128];
    rows[i].dir = o->models[i];
    if ((s = lb_model_open(o->models[i], &mo, &m, err)) != LB_OK) break;
    cli_model_size(m, &rows[i].size, &rows[i].params);
    char actbuf[48];
    const char *act = cli_fp8_act(m, actbuf, sizeof actbuf);
    snprintf(rows[i].act, sizeof rows[i].act, "%s", act ? act : "");
    snprintf(label, sizeof label, "%s (%d/%d)", short_name(o->models[i], nm, sizeof nm), i + 1, o->nmodels);
    lb_progress bar; /* its total: from the first window's callback */
    lb_progress_start(&bar, label, 1, "windows", 1);
    s = lb_perplexity_kl(m, b, ids, (int64_t)n, o->ctx, o->max_windows, cli_progress_cb, &bar, &rows[i].ppl, &rows[i].kl,
                         err);
    lb_progress_finish(&bar);
    lb_model_free(m);
    if (s != LB_OK) {
      char msg[sizeof err->msg];
      snprintf(msg, sizeof msg, "%s", err->msg);
      s = lb_fail(err, s, "compare: %s: %s", o->models[i], msg);
    }
  }
  if (s == LB_OK && o->svg) s = write_svg(o, &base, rows, err);
  if (s == LB_OK && o->json && print_json(o, &base, rows) != LB_OK)
    s = lb_fail(err, LB_ENOMEM, "compare: cannot build the JSON output");
  if (s == LB_OK && !o->json) print_table(o, &base, rows);
  if (s == LB_OK && o->svg && !o->json) printf("plot: %s\n", o->svg);
  lb_model_free(b);
  lb_tokenizer_free(tok);
  free(ids), free(rows);
  return s;
}

int cmd_compare(int argc, char **argv) {
  static const char *const VALUED[] = {"-f", "--file", "--ctx", "--max-windows", "--svg", "-t", "--threads", "--device"};
  opts o = {.ctx = 512, .max_windows = 40};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    int rc = 0;
    bool ok = true;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return fputs(HELP, stdout), 0;
    if (!strcmp(a, "--json")) {
      o.json = true;
      continue;
    }
    if (a[0] != '-' || !a[1]) { /* BASE, then the models */
      if (o.base && o.nmodels >= MAX_MODELS) return cli_usage_error("compare", "at most %d models", MAX_MODELS);
      if (!o.base) o.base = a;
      else o.models[o.nmodels++] = a;
      continue;
    }
    if (!(v = cli_option_value("compare", argc, argv, &i, VALUED, sizeof VALUED / sizeof VALUED[0], &rc))) return rc;
    if (!strcmp(a, "-f") || !strcmp(a, "--file")) o.file = v;
    else if (!strcmp(a, "--svg")) o.svg = v;
    else if (!strcmp(a, "--ctx")) ok = cli_parse_int(v, 2, 1 << 20, &o.ctx);
    else if (!strcmp(a, "--max-windows")) ok = cli_parse_int(v, 0, INT32_MAX, &o.max_windows);
    else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_int(v, 1, 1024, &o.threads);
    else ok = cli_parse_device(v, &o.device);
    if (!ok) return cli_usage_error("compare", "%s '%s': not a valid value", a, v);
  }
  if (!o.base || !o.nmodels) return cli_usage_error("compare", "needs a BASE folder and at least one MODEL");
  if (!o.file) return cli_usage_error("compare", "needs a text file (-f FILE)");
  lb_error err = {0};
  return run(&o, &err) == LB_OK ? 0 : cli_fail(&err);
}
