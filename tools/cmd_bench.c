/* lowbit bench DIR... [-p 512] [-n 128] [-r 3] [-t THREADS] [--md|--json] [--profile]
 * llama-bench's protocol: per model, prompt processing of p tokens (pp: one forward of p tokens
 * from an empty cache, logits of the last) and text generation of n tokens (tg: n one-token
 * forwards from an empty cache, logits each), after one untimed warm-up of each; r repetitions,
 * tokens/s as mean ± sample sd. Token ids are pseudo-random (BOS first), as llama-bench's. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "base/status.h"
#include "cli.h"

static const char *HELP =
    "usage: lowbit bench DIR... [-p N[,N...]] [-n N[,N...]] [-r R] [-t THREADS] [--md|--json]\n"
    "                          [--profile] [--ref-kernels] [--device cpu|cuda]\n"
    "  llama-bench's protocol for each model folder: ppN = one forward of N prompt tokens from an\n"
    "  empty cache; tgN = N one-token forwards from an empty cache; each test run R times after\n"
    "  an untimed warm-up, tokens/s as mean ± sd. Prints one markdown table for all models.\n"
    "  -p N,...        prompt lengths (default 512; 0: none)\n"
    "  -n N,...        generation lengths (default 128; 0: none)\n"
    "  -r R            repetitions (default 3)\n"
    "  -t THREADS      threads (default: all cores)\n"
    "  --json          one JSON array of results instead of the table\n"
    "  --profile       also print the share of time per op for each test\n"
    "  --ref-kernels   quantized weights through the scalar reference dequantization\n"
    "  --device D      cpu (default) or cuda (the first GPU; the table adds its memory)\n";

enum { MAX_LENS = 16, MAX_MODELS = 32 };

typedef struct {
  const char *dirs[MAX_MODELS];
  int ndirs;
  long long pp[MAX_LENS], tg[MAX_LENS];
  int npp, ntg;
  long long reps, threads;
  bool json, profile, ref;
  lb_device device;
} opts;

static bool parse_list(const char *v, long long *out, int *n) {
  *n = 0;
  char buf[256];
  if (strlen(v) >= sizeof buf) return false;
  strcpy(buf, v);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    long long x;
    if (*n == MAX_LENS || !cli_parse_int(t, 0, 1 << 20, &x)) return false;
    if (x > 0) out[(*n)++] = x;
  }
  return true;
}

static uint32_t rng_next(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

/* One timed run: seconds for pp (n tokens at once) or tg (n single tokens). */
static lb_status run_once(lb_model *m, bool tg, int64_t n, int32_t bos, uint64_t *seed,
                          float *logits, double *secs, lb_error *err) {
  const lb_config *c = lb_model_config(m);
  lb_model_reset(m);
  int32_t *ids = malloc((size_t)n * sizeof *ids);
  if (!ids) return lb_fail(err, LB_ENOMEM, "bench: out of memory");
  for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)(rng_next(seed) % (uint32_t)c->vocab_size);
  if (bos >= 0 && bos < c->vocab_size) ids[0] = bos;
  double t0 = lb_now();
  lb_status s = LB_OK;
  if (!tg) s = lb_model_forward(m, ids, n, logits, false, err);
  for (int64_t i = 0; tg && i < n && s == LB_OK; i++) s = lb_model_forward(m, ids + i, 1, logits, false, err);
  *secs = lb_now() - t0;
  free(ids);
  return s;
}

typedef struct {
  const char *model, *test;
  double mean, sd, size, params;
  uint64_t device_bytes;
  lb_model_profile prof;
} result;

static void stats(const double *x, int n, double *mean, double *sd) {
  double s = 0, q = 0;
  for (int i = 0; i < n; i++) s += x[i];
  *mean = s / n;
  for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
  *sd = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

static lb_status bench_model(const opts *o, const char *dir, result *res, int *nres,
                             lb_error *err) {
  lb_model_options mo = {.n_threads = (int)o->threads, .reference = o->ref, .device = o->device};
  int64_t need = 1;
  for (int i = 0; i < o->npp; i++) need = o->pp[i] > need ? o->pp[i] : need;
  for (int i = 0; i < o->ntg; i++) need = o->tg[i] > need ? o->tg[i] : need;
  mo.max_ctx = need;
  lb_model *m = NULL;
  LB_TRY(lb_model_open(dir, &mo, &m, err));
  const lb_checkpoint *ck = lb_model_checkpoint(m);
  const lb_tensors *ts = lb_checkpoint_tensors(ck);
  double bytes = 0;
  for (size_t i = 0; i < lb_tensors_count(ts); i++) bytes += (double)lb_tensors_at(ts, i)->nbytes;
  double params = (double)lb_checkpoint_params(ck).total;
  const lb_config *c = lb_model_config(m);
  float *logits = malloc((size_t)c->vocab_size * sizeof(float));
  double *t = malloc((size_t)o->reps * sizeof(double));
  lb_status s = logits && t ? LB_OK : lb_fail(err, LB_ENOMEM, "bench: out of memory");
  uint64_t seed = 42;
  int32_t bos = (int32_t)lb_checkpoint_generation(ck)->bos_token_id;
  for (int kind = 0; kind < 2 && s == LB_OK; kind++) {
    int cnt = kind ? o->ntg : o->npp;
    for (int li = 0; li < cnt && s == LB_OK; li++) {
      int64_t n = kind ? o->tg[li] : o->pp[li];
      double w;
      s = run_once(m, kind, n, bos, &seed, logits, &w, err); /* warm-up */
      lb_model_profile_enable(m, o->profile);
      for (int r = 0; r < o->reps && s == LB_OK; r++) {
        double secs;
        s = run_once(m, kind, n, bos, &seed, logits, &secs, err);
        t[r] = (double)n / secs;
      }
      if (s != LB_OK) break;
      result *x = &res[(*nres)++];
      char *test = malloc(32);
      if (!test) {
        s = lb_fail(err, LB_ENOMEM, "bench: out of memory");
        break;
      }
      snprintf(test, 32, "%s%lld", kind ? "tg" : "pp", (long long)n);
      *x = (result){.model = dir, .test = test, .size = bytes, .params = params,
                    .device_bytes = lb_model_device_bytes(m)};
      stats(t, (int)o->reps, &x->mean, &x->sd);
      lb_model_profile_get(m, &x->prof);
      lb_model_profile_enable(m, false);
      if (!o->json)
        fprintf(stderr, "  %s %s: %.1f ± %.1f tokens/s\n", dir, test, x->mean, x->sd);
    }
  }
  free(logits), free(t);
  lb_model_free(m);
  return s;
}

/* The folder's last name ("out/pocket-gptq/" -> "pocket-gptq/"). */
static const char *base(const char *path) {
  const char *b = strrchr(path, '/');
  if (b && b[1] == 0 && b > path) { /* a trailing slash: the name before it */
    const char *p = b - 1;
    while (p > path && *p != '/') p--;
    return *p == '/' ? p + 1 : p;
  }
  return b ? b + 1 : path;
}

static void print_profile(const result *r) {
  const lb_model_profile *p = &r->prof;
  double tot = p->qkv + p->attention + p->o_proj + p->gate_up + p->down + p->lm_head + p->other;
  if (tot <= 0) return;
  printf("  %-24s %-7s qkv %4.1f%%  attention %4.1f%%  o %4.1f%%  gate/up %4.1f%%  down %4.1f%%  "
         "lm_head %4.1f%%  other %4.1f%%\n",
         base(r->model), r->test, 100 * p->qkv / tot, 100 * p->attention / tot, 100 * p->o_proj / tot,
         100 * p->gate_up / tot, 100 * p->down / tot, 100 * p->lm_head / tot, 100 * p->other / tot);
}

static int report(const opts *o, const result *res, int n) {
  if (o->json) {
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
      const result *r = &res[i];
      json_t *e = json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:I}", "model", r->model, "test",
                            r->test, "tokens_per_s", r->mean, "tokens_per_s_sd", r->sd,
                            "size_bytes", r->size, "params", r->params, "bits_per_weight",
                            8 * r->size / r->params, "threads", (json_int_t)o->threads);
      if (e && o->device == LB_DEVICE_CUDA)
        json_object_update_new(e, json_pack("{s:s, s:f}", "device", "cuda", "device_bytes",
                                            (double)r->device_bytes));
      if (e && o->profile)
        json_object_set_new(e, "profile_s", json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "qkv",
                            r->prof.qkv, "attention", r->prof.attention, "o_proj", r->prof.o_proj,
                            "gate_up", r->prof.gate_up, "down", r->prof.down, "lm_head",
                            r->prof.lm_head, "other", r->prof.other));
      if (!e || json_array_append_new(arr, e)) {
        json_decref(arr);
        arr = NULL;
      }
    }
    if (!arr) {
      fprintf(stderr, "lowbit: error: bench: cannot build the JSON output\n");
      return 1;
    }
    json_dumpf(arr, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(arr);
    return 0;
  }
  const bool gpu = o->device == LB_DEVICE_CUDA;
  printf("| model | size | params | bpw | %s | test | t/s |\n", gpu ? "device (memory)" : "threads");
  printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (int i = 0; i < n; i++) {
    const result *r = &res[i];
    char where[48];
    if (gpu) snprintf(where, sizeof where, "cuda (%.0f MiB)", (double)r->device_bytes / 1048576.0);
    else snprintf(where, sizeof where, "%lld", o->threads);
    printf("| %s | %.2f MiB | %.2f M | %.2f | %s | %s | %.2f ± %.2f |\n", base(r->model),
           r->size / 1048576.0, r->params / 1e6, 8 * r->size / r->params, where, r->test, r->mean,
           r->sd);
  }
  if (o->profile) {
    printf("\nshare of time per op:\n");
    for (int i = 0; i < n; i++) print_profile(&res[i]);
  }
  return 0;
}

int cmd_bench(int argc, char **argv) {
  opts o = {.pp = {512}, .tg = {128}, .npp = 1, .ntg = 1, .reps = 3};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    bool ok = true;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else if (!strcmp(a, "--json")) {
      o.json = true;
    } else if (!strcmp(a, "--md")) {
      o.json = false;
    } else if (!strcmp(a, "--profile")) {
      o.profile = true;
    } else if (!strcmp(a, "--ref-kernels")) {
      o.ref = true;
    } else if (a[0] == '-' && a[1]) {
      if (strcmp(a, "-p") && strcmp(a, "-n") && strcmp(a, "-r") && strcmp(a, "-t") &&
          strcmp(a, "--threads") && strcmp(a, "--device"))
        return cli_usage_error("bench", "unknown option '%s'", a);
      if (!(v = cli_value(argc, argv, &i))) return cli_usage_error("bench", "%s needs a value", a);
      if (!strcmp(a, "-p")) ok = parse_list(v, o.pp, &o.npp);
      else if (!strcmp(a, "-n")) ok = parse_list(v, o.tg, &o.ntg);
      else if (!strcmp(a, "-r")) ok = cli_parse_int(v, 1, 1000, &o.reps);
      else if (!strcmp(a, "--device")) ok = cli_parse_device(v, &o.device);
      else ok = cli_parse_int(v, 1, 1024, &o.threads);
      if (!ok) return cli_usage_error("bench", "%s '%s': not a valid value", a, v);
    } else if (o.ndirs == MAX_MODELS) {
      return cli_usage_error("bench", "at most %d models", MAX_MODELS);
    } else {
      o.dirs[o.ndirs++] = a;
    }
  }
  if (!o.ndirs) return cli_usage_error("bench", "needs at least one model folder DIR");
  if (!o.npp && !o.ntg) return cli_usage_error("bench", "nothing to run (-p 0 and -n 0)");
  if (!o.threads) {
    lb_cpu_info ci;
    lb_cpu_detect(&ci);
    o.threads = ci.logical_cores;
  }
  result *res = calloc((size_t)(o.ndirs * 2 * MAX_LENS), sizeof *res);
  if (!res) return 1;
  int nres = 0, rc = 0;
  lb_error err = {0};
  for (int d = 0; d < o.ndirs && !rc; d++)
    if (bench_model(&o, o.dirs[d], res, &nres, &err) != LB_OK) rc = cli_fail(&err);
  if (!rc) rc = report(&o, res, nres);
  for (int i = 0; i < nres; i++) free((char *)res[i].test);
  free(res);
  return rc;
}
