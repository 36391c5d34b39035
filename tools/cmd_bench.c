/* lowbit bench DIR... [-p 512] [-n 128] [-b 1] [-r 3] [-t THREADS] [--gen] [--md|--json] [--profile]
 * llama-bench's protocol: per model, prompt processing of p tokens (pp: one forward of p tokens
 * from an empty cache, logits of the last) and text generation of n tokens (tg: n one-token
 * forwards from an empty cache, logits each), after one untimed warm-up of each; r repetitions,
 * tokens/s as mean ± sample sd. Token ids are pseudo-random (BOS first), as llama-bench's.
 * With -b, each test runs b sequences at once (lb_model_forward_batch): b * p or b * n tokens.
 * --gen: the Transformers guides' table instead: per batch b and pair (p, n), a prefill of p
 * tokens of b sequences then n decode steps after it, each timed; memory as the row needs it. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "base/status.h"
#include "cli.h"

static const char *HELP =
    "usage: lowbit bench DIR... [-p N[,N...]] [-n N[,N...]] [-b B[,B...]] [-r R] [-t THREADS]\n"
    "                          [--gen] [--md|--json] [--profile] [--ref-kernels] [--device cpu|cuda]\n"
    "                          [--fp8-act auto|off|g128|token|static]\n"
    "  llama-bench's protocol for each model folder: ppN = one forward of N prompt tokens from an\n"
    "  empty cache; tgN = N one-token forwards from an empty cache; each test run R times after\n"
    "  an untimed warm-up, tokens/s as mean ± sd. Prints one markdown table for all models.\n"
    "  -p N,...        prompt lengths (default 512; 0: none)\n"
    "  -n N,...        generation lengths (default 128; 0: none)\n"
    "  -b B,...        batch sizes: B sequences at once, B * N tokens a test (default 1)\n"
    "  --gen           the Transformers guides' table: per batch size and pair of -p and -n (lists\n"
    "                  of one length, or of equal counts, paired in order), a prefill of N tokens of\n"
    "                  B sequences, then the -n decode steps after it; prefill and decode tokens/s\n"
    "                  and memory: on cuda the device memory the model holds less the KV cache\n"
    "                  rows the row does not reach, on the CPU the process's peak resident size\n"
    "  -r R            repetitions (default 3)\n"
    "  -t THREADS      threads (default: all cores)\n"
    "  --json          one JSON array of results instead of the table\n"
    "  --profile       also print the share of time per op for each test\n"
    "  --ref-kernels   quantized weights through the scalar reference dequantization\n"
    "  --device D      cpu (default) or cuda (the first GPU; the table adds its memory)\n"
    "  --fp8-act A     FP8 checkpoints' W8A8: auto (as the checkpoint declares; default), off,\n"
    "                  g128, token or static (generate --help)\n";

enum { MAX_LENS = 16, MAX_MODELS = 32 };

typedef struct {
  const char *dirs[MAX_MODELS];
  int ndirs;
  long long pp[MAX_LENS], tg[MAX_LENS], batch[MAX_LENS];
  int npp, ntg, nbatch;
  long long reps, threads;
  bool json, profile, ref, gen;
  lb_device device;
  lb_fp8_act fp8_act;
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

/* Comma-separated items in v. */
static int items(const char *v) {
  int n = 1;
  for (; *v; v++) n += *v == ',';
  return n;
}

static uint32_t rng_next(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

/* One timed run from an empty cache, b sequences: a forward of p tokens each (secs[0]), then n
 * one-token steps (secs[1]). Ids [b][p] then [n][b], pseudo-random, each sequence's first BOS. */
static lb_status run_once(lb_model *m, int64_t b, int64_t p, int64_t n, int32_t bos, uint64_t *seed,
                          float *logits, double secs[2], lb_error *err) {
  const lb_config *c = lb_model_config(m);
  lb_model_reset(m);
  int32_t *ids = malloc((size_t)(b * (p + n)) * sizeof *ids);
  if (!ids) return lb_fail(err, LB_ENOMEM, "bench: out of memory");
  for (int64_t i = 0; i < b * (p + n); i++) ids[i] = (int32_t)(rng_next(seed) % (uint32_t)c->vocab_size);
  for (int64_t q = 0; q < b && bos >= 0 && bos < c->vocab_size; q++) ids[q * (p ? p : 1)] = bos;
  double t0 = lb_now();
  lb_status s = p ? lb_model_forward_batch(m, b, ids, p, logits, err) : LB_OK;
  double t1 = lb_now();
  for (int64_t i = 0; i < n && s == LB_OK; i++) s = lb_model_forward_batch(m, b, ids + b * (p + i), 1, logits, err);
  secs[0] = t1 - t0, secs[1] = lb_now() - t1;
  free(ids);
  return s;
}

typedef struct {
  const char *model, *test;
  int64_t batch, p, n;    /* --gen: the row's batch, prefill and decode lengths */
  double mean, sd;        /* tokens/s (--gen: of the prefill) */
  double mean2, sd2;      /* --gen: of the decode */
  double size, params;
  uint64_t device_bytes;  /* what the model holds; --gen: what the row needs (see HELP) */
  char act[48];           /* W8A8: the FP8 activations' mode (cli_fp8_act), or "" */
  lb_model_profile prof;
} result;

static void stats(const double *x, int n, double *mean, double *sd) {
  double s = 0, q = 0;
  for (int i = 0; i < n; i++) s += x[i];
  *mean = s / n;
  for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
  *sd = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

/* The i-th (prefill, decode) pair of --gen: -p and -n paired in order, a single value repeated. */
static int gen_pairs(const opts *o) { return o->npp > o->ntg ? o->npp : o->ntg; }
static int64_t gen_p(const opts *o, int i) { return o->pp[o->npp == 1 ? 0 : i]; }
static int64_t gen_n(const opts *o, int i) { return o->tg[o->ntg == 1 ? 0 : i]; }

typedef struct {
  const opts *o;
  lb_model *m;
  int32_t bos;
  uint64_t seed;
  float *logits;
  double *t, *t2; /* [reps] */
  double size, params;
} bench_ctx;

/* llama-bench's tests (pp, tg) of batch b: rate = b * tokens / seconds. */
static lb_status llama_bench_tests(bench_ctx *x, int64_t b, const char *dir, result *res, int *nres,
                                   lb_error *err) {
  const opts *o = x->o;
  lb_status s = LB_OK;
  for (int kind = 0; kind < 2 && s == LB_OK; kind++) {
    int cnt = kind ? o->ntg : o->npp;
    for (int li = 0; li < cnt && s == LB_OK; li++) {
      int64_t n = kind ? o->tg[li] : o->pp[li], p = kind ? 0 : n, g = kind ? n : 0;
      double w[2];
      s = run_once(x->m, b, p, g, x->bos, &x->seed, x->logits, w, err); /* warm-up */
      lb_model_profile_enable(x->m, o->profile);
      for (int r = 0; r < o->reps && s == LB_OK; r++) {
        s = run_once(x->m, b, p, g, x->bos, &x->seed, x->logits, w, err);
        x->t[r] = (double)(b * n) / w[kind];
      }
      if (s != LB_OK) break;
      result *e = &res[(*nres)++];
      char *test = malloc(48);
      if (!test) return lb_fail(err, LB_ENOMEM, "bench: out of memory");
      snprintf(test, 48, "%s%lld", kind ? "tg" : "pp", (long long)n);
      *e = (result){.model = dir, .test = test, .batch = b, .size = x->size, .params = x->params,
                    .device_bytes = lb_model_device_bytes(x->m)};
      stats(x->t, (int)o->reps, &e->mean, &e->sd);
      lb_model_profile_get(x->m, &e->prof);
      lb_model_profile_enable(x->m, false);
      if (!o->json)
        fprintf(stderr, "  %s %s b%lld: %.1f ± %.1f tokens/s\n", dir, test, (long long)b, e->mean, e->sd);
    }
  }
  return s;
}

/* The guides' rows of batch b: a prefill of p tokens each, then n decode steps after it. */
static lb_status gen_tests(bench_ctx *x, int64_t b, const char *dir, result *res, int *nres,
                           lb_error *err) {
  const opts *o = x->o;
  const lb_model *m = x->m;
  lb_status s = LB_OK;
  for (int i = 0; i < gen_pairs(o) && s == LB_OK; i++) {
    const int64_t p = gen_p(o, i), n = gen_n(o, i);
    double w[2];
    s = run_once(x->m, b, p, n < 2 ? n : 2, x->bos, &x->seed, x->logits, w, err); /* warm-up */
    for (int r = 0; r < o->reps && s == LB_OK; r++) {
      s = run_once(x->m, b, p, n, x->bos, &x->seed, x->logits, w, err);
      x->t[r] = (double)(b * p) / w[0], x->t2[r] = (double)(b * n) / w[1];
    }
    if (s != LB_OK) break;
    /* on the device: less the cache rows of the sequences and positions this row leaves unused */
    uint64_t unused = (uint64_t)(lb_model_batch(m) * lb_model_ctx(m) - b * (p + n)) * lb_model_kv_bytes(m);
    uint64_t mem = lb_model_device(m) == LB_DEVICE_CUDA ? lb_model_device_bytes(m) - unused : cli_peak_rss();
    result *e = &res[(*nres)++];
    *e = (result){.model = dir, .batch = b, .p = p, .n = n, .size = x->size, .params = x->params,
                  .device_bytes = mem};
    stats(x->t, (int)o->reps, &e->mean, &e->sd);
    stats(x->t2, (int)o->reps, &e->mean2, &e->sd2);
    fprintf(stderr, "  %s b%lld p%lld n%lld: prefill %.1f, decode %.1f tokens/s\n", dir, /* long runs */
              (long long)b, (long long)p, (long long)n, e->mean, e->mean2);
  }
  return s;
}

static lb_status bench_model(const opts *o, const char *dir, result *res, int *nres,
                             lb_error *err) {
  lb_model_options mo = {.n_threads = (int)o->threads, .reference = o->ref, .device = o->device,
                         .fp8_act = o->fp8_act};
  int64_t need = 1, bmax = 1;
  for (int i = 0; o->gen && i < gen_pairs(o); i++)
    need = gen_p(o, i) + gen_n(o, i) > need ? gen_p(o, i) + gen_n(o, i) : need;
  for (int i = 0; !o->gen && i < o->npp; i++) need = o->pp[i] > need ? o->pp[i] : need;
  for (int i = 0; !o->gen && i < o->ntg; i++) need = o->tg[i] > need ? o->tg[i] : need;
  for (int i = 0; i < o->nbatch; i++) bmax = o->batch[i] > bmax ? o->batch[i] : bmax;
  mo.max_ctx = need, mo.batch = (int)bmax;
  bench_ctx x = {.o = o, .seed = 42};
  LB_TRY(lb_model_open(dir, &mo, &x.m, err));
  cli_model_size(x.m, &x.size, &x.params);
  x.bos = (int32_t)lb_checkpoint_generation(lb_model_checkpoint(x.m))->bos_token_id;
  const lb_config *c = lb_model_config(x.m);
  x.logits = malloc((size_t)(bmax * c->vocab_size) * sizeof(float));
  x.t = malloc((size_t)o->reps * sizeof(double));
  x.t2 = malloc((size_t)o->reps * sizeof(double));
  lb_status s = x.logits && x.t && x.t2 ? LB_OK : lb_fail(err, LB_ENOMEM, "bench: out of memory");
  const int first = *nres;
  for (int bi = 0; bi < o->nbatch && s == LB_OK; bi++)
    s = o->gen ? gen_tests(&x, o->batch[bi], dir, res, nres, err)
               : llama_bench_tests(&x, o->batch[bi], dir, res, nres, err);
  char a[48];
  const char *act = cli_fp8_act(x.m, a, sizeof a);
  for (int i = first; i < *nres; i++) snprintf(res[i].act, sizeof res[i].act, "%s", act ? act : "");
  free(x.logits), free(x.t), free(x.t2);
  lb_model_free(x.m);
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

/* The table's model cell: the folder's name, and the W8A8 mode when there is one. */
static const char *model_cell(const result *r, char *buf, size_t cap) {
  return cli_w8a8_label(base(r->model), r->act, buf, cap);
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

static bool any_batch(const opts *o) { return o->nbatch > 1 || o->batch[0] != 1; }

static json_t *gen_json(const opts *o, const result *r) {
  json_t *e = json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "model",
                        r->model, "batch", (json_int_t)r->batch, "prefill_len", (json_int_t)r->p,
                        "decode_len", (json_int_t)r->n, "prefill_tokens_per_s", r->mean,
                        "prefill_tokens_per_s_sd", r->sd, "decode_tokens_per_s", r->mean2,
                        "decode_tokens_per_s_sd", r->sd2, "memory_bytes", (double)r->device_bytes,
                        "size_bytes", r->size, "params", r->params, "device",
                        o->device == LB_DEVICE_CUDA ? "cuda" : "cpu");
  if (e && o->device != LB_DEVICE_CUDA) json_object_set_new(e, "threads", json_integer(o->threads));
  return e;
}

/* The guides' table: Batch Size | Prefill Length | Decode Length | Prefill tokens/s | Decode
 * tokens/s | Memory. */
static void gen_table(const opts *o, const result *res, int n) {
  const bool gpu = o->device == LB_DEVICE_CUDA;
  printf("| model | batch | prefill | decode | prefill t/s | decode t/s | %s |\n",
         gpu ? "device memory" : "peak RSS");
  printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (int i = 0; i < n; i++) {
    const result *r = &res[i];
    char mem[32];
    char cell[400];
    printf("| %s | %lld | %lld | %lld | %.2f ± %.2f | %.2f ± %.2f | %s |\n", model_cell(r, cell, sizeof cell),
           (long long)r->batch, (long long)r->p, (long long)r->n, r->mean, r->sd, r->mean2, r->sd2,
           cli_bytes(r->device_bytes, mem, sizeof mem));
  }
}

static int report(const opts *o, const result *res, int n) {
  if (o->json) {
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
      const result *r = &res[i];
      json_t *e = o->gen ? gen_json(o, r)
                         : json_pack("{s:s, s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:I}", "model", r->model,
                                     "test", r->test, "batch", (json_int_t)r->batch, "tokens_per_s",
                                     r->mean, "tokens_per_s_sd", r->sd, "size_bytes", r->size, "params",
                                     r->params, "bits_per_weight", 8 * r->size / r->params, "threads",
                                     (json_int_t)o->threads);
      if (e && json_object_set_new(e, "fp8_act", json_string(r->act[0] ? r->act : "none")))
        json_decref(e), e = NULL;
      if (e && !o->gen && o->device == LB_DEVICE_CUDA)
        json_object_update_new(e, json_pack("{s:s, s:f}", "device", "cuda", "device_bytes",
                                            (double)r->device_bytes));
      if (e && !o->gen && o->profile)
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
  if (o->gen) {
    gen_table(o, res, n);
    return 0;
  }
  const bool gpu = o->device == LB_DEVICE_CUDA, batch = any_batch(o);
  printf("| model | size | params | bpw | %s | %stest | t/s |\n", gpu ? "device (memory)" : "threads",
         batch ? "batch | " : "");
  printf("| --- | ---: | ---: | ---: | ---: | %s---: | ---: |\n", batch ? "---: | " : "");
  for (int i = 0; i < n; i++) {
    const result *r = &res[i];
    char where[48], b[32] = "";
    if (gpu) snprintf(where, sizeof where, "cuda (%.0f MiB)", (double)r->device_bytes / 1048576.0);
    else snprintf(where, sizeof where, "%lld", o->threads);
    if (batch) snprintf(b, sizeof b, "%lld | ", (long long)r->batch);
    char cell[400];
    printf("| %s | %.2f MiB | %.2f M | %.2f | %s | %s%s | %.2f ± %.2f |\n", model_cell(r, cell, sizeof cell),
           r->size / 1048576.0, r->params / 1e6, 8 * r->size / r->params, where, b, r->test, r->mean,
           r->sd);
  }
  if (o->profile) {
    printf("\nshare of time per op:\n");
    for (int i = 0; i < n; i++) print_profile(&res[i]);
  }
  return 0;
}

int cmd_bench(int argc, char **argv) {
  opts o = {.pp = {512}, .tg = {128}, .batch = {1}, .npp = 1, .ntg = 1, .nbatch = 1, .reps = 3};
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
    } else if (!strcmp(a, "--gen")) {
      o.gen = true;
    } else if (a[0] == '-' && a[1]) {
      if (strcmp(a, "-p") && strcmp(a, "-n") && strcmp(a, "-b") && strcmp(a, "-r") && strcmp(a, "-t") &&
          strcmp(a, "--threads") && strcmp(a, "--device") && strcmp(a, "--fp8-act"))
        return cli_usage_error("bench", "unknown option '%s'", a);
      if (!(v = cli_value(argc, argv, &i))) return cli_usage_error("bench", "%s needs a value", a);
      if (!strcmp(a, "-p")) ok = parse_list(v, o.pp, &o.npp);
      else if (!strcmp(a, "-n")) ok = parse_list(v, o.tg, &o.ntg);
      else if (!strcmp(a, "-b")) ok = parse_list(v, o.batch, &o.nbatch) && o.nbatch == items(v); /* no 0 */
      else if (!strcmp(a, "-r")) ok = cli_parse_int(v, 1, 1000, &o.reps);
      else if (!strcmp(a, "--device")) ok = cli_parse_device(v, &o.device);
      else if (!strcmp(a, "--fp8-act")) ok = cli_parse_fp8_act(v, &o.fp8_act);
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
  for (int i = 0; i < o.nbatch; i++)
    if (o.batch[i] > LB_MAX_BATCH)
      return cli_usage_error("bench", "-b %lld: at most %d sequences", o.batch[i], LB_MAX_BATCH);
  if (o.gen && (!o.npp || !o.ntg || (o.npp != o.ntg && o.npp != 1 && o.ntg != 1)))
    return cli_usage_error("bench", "--gen pairs -p and -n: give both, of equal counts or one length");
  if (!o.threads) {
    lb_cpu_info ci;
    lb_cpu_detect(&ci);
    o.threads = ci.logical_cores;
  }
  result *res = calloc((size_t)(o.ndirs * 2 * MAX_LENS * MAX_LENS), sizeof *res);
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
