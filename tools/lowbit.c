/* lowbit: the command-line program. Each subcommand lives in its own cmd_*.c file. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/progress.h"
#include "base/status.h"
#include "cli.h"
#include "io/fs.h"
#include "quant/fp8.h"

static const struct {
  const char *name;
  int (*run)(int, char **);
  const char *help;
} COMMANDS[] = {
    {"inspect", cmd_inspect, "architecture, parameters, tensors and memory footprint by method"},
    {"quantize", cmd_quantize, "quantize: gptq, awq (calibrated), rtn, nf4, fp4, int8, fp8, hqq"},
    {"convert", cmd_convert, "rewrite a checkpoint (re-shard, change dtype), tensors byte-exact"},
    {"generate", cmd_generate, "continue a prompt, streaming the text (greedy or sampled)"},
    {"perplexity", cmd_perplexity, "perplexity of a text file over fixed windows"},
    {"compare", cmd_compare, "quantized models against their base: size, perplexity, KL, a plot"},
    {"bench", cmd_bench, "prompt and generation speed, llama-bench's protocol (pp512, tg128)"},
    {"synth", cmd_synth, "a model of 7B-class shapes with random weights, for speed tests"},
    {"tokenize", cmd_tokenize, "token ids and pieces of a text"},
    {"devices", cmd_devices, "CPU features and CUDA GPUs this build can use"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: lowbit <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
    fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
  fprintf(f, "\n'lowbit <command> --help' describes a command's options.\n");
}

int cli_fail(const lb_error *err) {
  fprintf(stderr, "lowbit: error: %s\n", err->msg[0] ? err->msg : lb_strerror(err->code));
  return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "lowbit %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n(see 'lowbit %s --help')\n", cmd);
  va_end(ap);
  return 2;
}

const char *cli_bytes(uint64_t n, char *buf, size_t cap) {
  static const char *U[] = {"B", "kB", "MB", "GB", "TB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1000 && u < 4) v /= 1000, u++;
  snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", v, U[u]);
  return buf;
}

const char *cli_count(uint64_t n, char *buf, size_t cap) {
  char tmp[32];
  int len = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)n);
  size_t k = 0;
  for (int i = 0; i < len && k + 2 < cap; i++) {
    if (i && (len - i) % 3 == 0) buf[k++] = ',';
    buf[k++] = tmp[i];
  }
  buf[k] = 0;
  return buf;
}

bool cli_parse_size(const char *s, uint64_t *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || !(v >= 0)) return false;
  static const struct {
    const char *suffix;
    double mul;
  } U[] = {{"", 1},         {"B", 1},         {"KB", 1e3},       {"MB", 1e6},
           {"GB", 1e9},     {"TB", 1e12},     {"KiB", 1024.0},   {"MiB", 1048576.0},
           {"GiB", 1073741824.0}, {"K", 1e3}, {"M", 1e6},        {"G", 1e9}};
  for (size_t i = 0; i < sizeof U / sizeof U[0]; i++)
    if (strcmp(end, U[i].suffix) == 0) {
      double b = v * U[i].mul;
      if (b > 1.8e19) return false;
      *out = (uint64_t)b;
      return true;
    }
  return false;
}

bool cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool cli_parse_double(const char *s, double lo, double hi, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

uint64_t cli_peak_rss(void) {
  struct rusage r;
  if (getrusage(RUSAGE_SELF, &r) != 0) return 0;
  return (uint64_t)r.ru_maxrss * 1024; /* Linux reports kilobytes */
}

const char *cli_value(int argc, char **argv, int *i) { return *i + 1 < argc ? argv[++*i] : NULL; }

lb_status cli_tokenize_file(const char *model_dir, const char *path, lb_tokenizer **tok, int32_t **ids, size_t *n,
                            double *seconds, lb_error *err) {
  char *text = NULL;
  size_t len = 0;
  *tok = NULL, *ids = NULL, *n = 0, *seconds = 0;
  lb_status s = lb_read_file(path, 1u << 30, &text, &len, err);
  if (s == LB_OK) s = lb_tokenizer_load(model_dir, tok, err);
  const double t0 = lb_now();
  if (s == LB_OK) s = lb_tokenize(*tok, text, len, LB_TOK_ADD_SPECIAL, ids, n, err);
  *seconds = lb_now() - t0;
  free(text);
  return s;
}

void cli_progress_cb(void *p, int64_t done, int64_t total) {
  ((lb_progress *)p)->total = (uint64_t)total;
  lb_progress_update(p, (uint64_t)done);
}

bool cli_kl_json(json_t *obj, const lb_kl_result *kl) {
  json_t *m = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "kl_mean", kl->kl_mean, "kl_stderr", kl->kl_stderr,
                        "kl_median", kl->kl_median, "kl_p99", kl->kl_p99, "kl_max", kl->kl_max, "same_top",
                        kl->same_top);
  const bool ok = m && !json_object_update(obj, m);
  json_decref(m);
  return ok;
}

void cli_model_size(const lb_model *m, double *bytes, double *params) {
  const lb_checkpoint *ck = lb_model_checkpoint(m);
  const lb_tensors *ts = lb_checkpoint_tensors(ck);
  *bytes = 0;
  for (size_t i = 0; i < lb_tensors_count(ts); i++) *bytes += (double)lb_tensors_at(ts, i)->nbytes;
  *params = (double)lb_checkpoint_params(ck).total;
}

const char *cli_option_value(const char *cmd, int argc, char **argv, int *i, const char *const *valued, size_t n,
                             int *rc) {
  const char *a = argv[*i], *v;
  bool known = false;
  for (size_t k = 0; k < n; k++) known |= !strcmp(a, valued[k]);
  if (!known) return *rc = cli_usage_error(cmd, "unknown option '%s'", a), NULL;
  if (!(v = cli_value(argc, argv, i))) return *rc = cli_usage_error(cmd, "%s needs a value", a), NULL;
  return v;
}

bool cli_parse_device(const char *s, lb_device *out) {
  if (!strcmp(s, "cpu")) *out = LB_DEVICE_CPU;
  else if (!strcmp(s, "cuda")) *out = LB_DEVICE_CUDA;
  else return false;
  return true;
}

bool cli_parse_fp8_act(const char *s, lb_fp8_act *out) {
  if (!strcmp(s, "auto")) *out = LB_FP8_ACT_AUTO;
  else if (!strcmp(s, "off")) *out = LB_FP8_ACT_OFF;
  else if (!strcmp(s, "static")) *out = LB_FP8_ACT_STATIC;
  else if (!strcmp(s, "g128")) *out = LB_FP8_ACT_GROUP128;
  else if (!strcmp(s, "token")) *out = LB_FP8_ACT_TOKEN;
  else return false;
  return true;
}

bool cli_parse_kv_cache(const char *s, lb_kv_quant *out) {
  if (!strcmp(s, "auto")) *out = LB_KV_AUTO;
  else if (!strcmp(s, "off")) *out = LB_KV_OFF;
  else return false;
  return true;
}

const char *cli_fp8_act(const lb_model *m, char *buf, size_t cap) {
  int64_t group;
  lb_fp8_act a = lb_model_fp8_act(m, &group);
  return a == LB_FP8_ACT_OFF ? NULL : lb_fp8_act_describe(a, group, buf, cap);
}

const char *cli_w8a8_label(const char *name, const char *act, char *buf, size_t cap) {
  if (!act || !act[0]) return name;
  snprintf(buf, cap, "%s (W8A8 %s)", name, act);
  return buf;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
      !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("lowbit 0.1.0\n");
    return 0;
  }
  for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
    if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
  fprintf(stderr, "lowbit: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
