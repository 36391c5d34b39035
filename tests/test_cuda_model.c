/* The CUDA forward pass against the CPU one (itself checked against Transformers by test_model),
 * for each model folder given: a 64-token prefill with every row's logits, 8 decode steps (the
 * first captures the CUDA graph, the rest replay it), then a 20-token chunk on top of the cache.
 * Then a batch of 12 sequences (lb_model_forward_batch; other offsets of the same ids) on a GPU
 * model opened for 12: a 24-token prefill (several sequences a chunk, in groups), 4 decode steps
 * of all 12 (GEMVs of 8 and 4 rows, a graph of 12) and a 3-token chunk of each (36 rows: cuBLAS,
 * with the decode attention over 3 rows a sequence), each sequence's last logits against the CPU
 * running it alone; the same bounds. Last, sampling on the device on the batch model
 * (run_sampled).
 * Needs a GPU: ctest label "cuda" (scripts/test.sh --cuda); tests/cuda/run.sh makes the folders.
 *
 * The CPU side is the reference path (lb_model_options.reference: fp32 activations, the scalar
 * dequantization), as the packed CPU kernels round activations to int8 and the GPU does not.
 *
 * Bound: the GPU rounds what feeds each matrix product to fp16 (activations, weights that are
 * not 4-bit, the KV cache), relative 2^-11 each, where the CPU keeps fp32; through 10 blocks
 * that moved logits by at most 1.1e-3 of their range on the H100 (bf16, NF4, FP4, FP8). Each row
 * must agree to 1% of the row's largest logit (max |d| / max |logit|) and in mean KL(cpu || gpu)
 * below 1e-4 nats; the argmax must agree wherever the CPU's top two logits are more than that 1%
 * apart. A folder given as DIR@REL,KL[,TIE] has its own bounds (LLM.int8, W8A8: see
 * tests/cuda/run.sh), TIE the argmax's margin (default 1%).
 * LOWBIT_TEST_FP8_ACT=g128|token|static|auto opens every model with that W8A8 mode (unset: off,
 * weights-only): both sides then quantize the activations of FP8 weights to E4M3, the GPU from its
 * fp16 activations. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

enum { PREFILL = 64, DECODE = 8, CHUNK = 20, TOTAL = PREFILL + DECODE + CHUNK };
enum { NSEQ = 12, BP = 24, BD = 4, BC = 3, BSTEPS = 2 + BD, STRIDE = 5 }; /* sequence q: ids + q * STRIDE */
_Static_assert((NSEQ - 1) * STRIDE + BP + BD + BC <= TOTAL, "the batch's ids fit in the text's");

typedef struct {
  double worst_rel, kl_sum;
  int rows, argmax_bad;
  double tie; /* top two logits closer than this (of the row's largest) may swap */
} stats;

static void compare_row(const float *a, const float *b, int64_t V, stats *s) {
  double amax = 0, d = 0, ma = -INFINITY, mb = -INFINITY;
  int64_t ia = 0, ib = 0;
  for (int64_t i = 0; i < V; i++) {
    amax = fmax(amax, fabs(a[i]));
    d = fmax(d, fabs((double)a[i] - b[i]));
    if (a[i] > ma) ma = a[i], ia = i;
    if (b[i] > mb) mb = b[i], ib = i;
  }
  double za = 0, zb = 0;
  for (int64_t i = 0; i < V; i++) za += exp(a[i] - ma), zb += exp(b[i] - mb);
  double kl = 0;
  for (int64_t i = 0; i < V; i++) {
    double la = a[i] - ma - log(za), lb = b[i] - mb - log(zb);
    kl += exp(la) * (la - lb);
  }
  double second = -INFINITY;
  for (int64_t i = 0; i < V; i++)
    if (i != ia) second = fmax(second, a[i]);
  if (ia != ib && ma - second > s->tie * amax) s->argmax_bad++; /* a near tie may flip */
  s->worst_rel = fmax(s->worst_rel, d / (amax + 1e-30));
  s->kl_sum += kl;
  s->rows++;
}

/* The same calls on both models; rows of logits compared as they come. */
static lb_status run(lb_model *cpu, lb_model *gpu, const int32_t *ids, int64_t V, stats *s,
                     lb_error *err) {
  float *a = malloc((size_t)(PREFILL * V) * sizeof(float));
  float *b = malloc((size_t)(PREFILL * V) * sizeof(float));
  if (!a || !b) {
    free(a), free(b);
    return LB_ENOMEM;
  }
  lb_status st = lb_model_forward(cpu, ids, PREFILL, a, true, err);
  if (st == LB_OK) st = lb_model_forward(gpu, ids, PREFILL, b, true, err);
  for (int64_t r = 0; st == LB_OK && r < PREFILL; r++) compare_row(a + r * V, b + r * V, V, s);
  for (int t = 0; st == LB_OK && t < DECODE; t++) {
    st = lb_model_forward(cpu, ids + PREFILL + t, 1, a, false, err);
    if (st == LB_OK) st = lb_model_forward(gpu, ids + PREFILL + t, 1, b, false, err);
    if (st == LB_OK) compare_row(a, b, V, s);
  }
  if (st == LB_OK) st = lb_model_forward(cpu, ids + PREFILL + DECODE, CHUNK, a, true, err);
  if (st == LB_OK) st = lb_model_forward(gpu, ids + PREFILL + DECODE, CHUNK, b, true, err);
  for (int64_t r = 0; st == LB_OK && r < CHUNK; r++) compare_row(a + r * V, b + r * V, V, s);
  free(a), free(b);
  return st;
}

/* The batch on gpu (opened for NSEQ), then each sequence alone on cpu; last rows compared. */
static lb_status run_batch(lb_model *cpu, lb_model *gpu, const int32_t *ids, int64_t V, stats *s,
                           lb_error *err) {
  float *b = malloc((size_t)(BSTEPS * NSEQ * V) * sizeof(float)); /* [step][seq][V] */
  float *a = malloc((size_t)(BC * V) * sizeof(float));
  int32_t *t = malloc((size_t)(NSEQ * BP) * sizeof *t);
  if (!a || !b || !t) {
    free(a), free(b), free(t);
    return LB_ENOMEM;
  }
  for (int q = 0; q < NSEQ; q++) memcpy(t + q * BP, ids + q * STRIDE, BP * sizeof *t);
  lb_status st = lb_model_forward_batch(gpu, NSEQ, t, BP, b, err);
  for (int d = 0; st == LB_OK && d < BD; d++) {
    for (int q = 0; q < NSEQ; q++) t[q] = ids[q * STRIDE + BP + d];
    st = lb_model_forward_batch(gpu, NSEQ, t, 1, b + (1 + d) * NSEQ * V, err);
  }
  for (int q = 0; q < NSEQ; q++) memcpy(t + q * BC, ids + q * STRIDE + BP + BD, BC * sizeof *t);
  if (st == LB_OK) st = lb_model_forward_batch(gpu, NSEQ, t, BC, b + (1 + BD) * NSEQ * V, err);
  for (int q = 0; st == LB_OK && q < NSEQ; q++) {
    const int32_t *x = ids + q * STRIDE;
    lb_model_reset(cpu);
    st = lb_model_forward(cpu, x, BP, a, false, err);
    if (st == LB_OK) compare_row(a, b + q * V, V, s);
    for (int d = 0; st == LB_OK && d < BD; d++) {
      st = lb_model_forward(cpu, x + BP + d, 1, a, false, err);
      if (st == LB_OK) compare_row(a, b + ((1 + d) * NSEQ + q) * V, V, s);
    }
    if (st == LB_OK) st = lb_model_forward(cpu, x + BP + BD, BC, a, false, err);
    if (st == LB_OK) compare_row(a, b + ((1 + BD) * NSEQ + q) * V, V, s);
  }
  free(a), free(b), free(t);
  return st;
}

/* Sampling on the device (lb_model_forward_sample) on gpu (opened for NSEQ): a BP-token prefill of
 * each sequence, then SSTEPS decode steps that feed back the chosen tokens, each sequence with
 * its own settings and seed. Host samplers with the same seeds choose from the logits the same
 * calls copy back; every choice must be equal (sample.cu: the two sums part only for a draw within
 * 2^-29 of the mass of a boundary; bench/cuda/sample_sandbox.c). Returns the disagreements. */
enum { SSTEPS = 6 };
static int run_sampled(lb_model *gpu, const int32_t *ids, int64_t V, lb_error *err, lb_status *st) {
  static const lb_sampler_params P[4] = {{.temperature = 0, .top_p = 1},
                                         {.temperature = 0.8, .top_p = 0.9},
                                         {.temperature = 1, .top_k = 40, .top_p = 1},
                                         {.temperature = 1.2, .top_p = 1}};
  lb_sampler *dev[NSEQ] = {0}, *host[NSEQ] = {0};
  float *l = malloc((size_t)(NSEQ * V) * sizeof *l);
  int32_t *t = malloc((size_t)(NSEQ * BP) * sizeof *t), next[NSEQ];
  int bad = 0;
  *st = l && t ? LB_OK : LB_ENOMEM;
  for (int q = 0; q < NSEQ && *st == LB_OK; q++) {
    lb_sampler_params p = P[q % 4];
    p.seed = 77 + (uint64_t)q;
    *st = lb_sampler_new(&p, V, &dev[q], err);
    if (*st == LB_OK) *st = lb_sampler_new(&p, V, &host[q], err);
    if (t) memcpy(t + q * BP, ids + q * STRIDE, BP * sizeof *t);
  }
  lb_model_reset(gpu);
  for (int k = 0; k <= SSTEPS && *st == LB_OK; k++) {
    *st = lb_model_forward_sample(gpu, NSEQ, t, k ? 1 : BP, dev, next, l, err);
    for (int q = 0; q < NSEQ && *st == LB_OK; q++) {
      const int32_t want = lb_sampler_next(host[q], l + q * V);
      if (next[q] != want && bad++ < 5)
        printf("  sampling: step %d, sequence %d: device chose %d, the host %d\n", k, q, next[q], want);
      t[q] = next[q];
    }
  }
  for (int q = 0; q < NSEQ; q++) lb_sampler_free(dev[q]), lb_sampler_free(host[q]);
  free(l), free(t);
  return bad;
}

static int check_dir(const char *arg, const char *text) {
  char dir[4096];
  double rel_bound = 0.01, kl_bound = 1e-4, tie = 0.01;
  snprintf(dir, sizeof dir, "%s", arg);
  char *at = strchr(dir, '@');
  if (at) *at = 0, sscanf(at + 1, "%lf,%lf,%lf", &rel_bound, &kl_bound, &tie);
  lb_error err = {0};
  lb_model *cpu = NULL, *gpu = NULL, *gpub = NULL;
  lb_tokenizer *tok = NULL;
  int32_t *ids = NULL;
  size_t n = 0;
  const char *fa = getenv("LOWBIT_TEST_FP8_ACT");
  const lb_fp8_act act = !fa || !strcmp(fa, "off") ? LB_FP8_ACT_OFF
                         : !strcmp(fa, "auto")      ? LB_FP8_ACT_AUTO
                         : !strcmp(fa, "static")    ? LB_FP8_ACT_STATIC
                         : !strcmp(fa, "token")     ? LB_FP8_ACT_TOKEN
                                                    : LB_FP8_ACT_GROUP128;
  lb_model_options oc = {.max_ctx = 128, .reference = true, .fp8_act = act};
  lb_model_options og = {.max_ctx = 128, .device = LB_DEVICE_CUDA, .fp8_act = act};
  lb_model_options ob = {.max_ctx = 128, .device = LB_DEVICE_CUDA, .batch = NSEQ, .fp8_act = act};
  lb_status s = LB_OK;
  if (text) {
    s = lb_tokenizer_load(dir, &tok, &err);
    if (s == LB_OK) s = lb_tokenize(tok, text, strlen(text), LB_TOK_ADD_SPECIAL, &ids, &n, &err);
  } else if ((ids = malloc(TOTAL * sizeof *ids))) { /* --random-ids: a model without a tokenizer */
    uint64_t x = 12345;
    for (n = 0; n < TOTAL; n++) x = x * 6364136223846793005ull + 1442695040888963407ull, ids[n] = (int32_t)((x >> 33) % 32000);
  }
  if (s == LB_OK && n < TOTAL) s = LB_EINVAL, snprintf(err.msg, sizeof err.msg, "text too short");
  if (s == LB_OK) s = lb_model_open(dir, &oc, &cpu, &err);
  for (size_t i = 0; s == LB_OK && !text && i < n; i++) ids[i] %= (int32_t)lb_model_config(cpu)->vocab_size;
  if (s == LB_OK) s = lb_model_open(dir, &og, &gpu, &err);
  stats st = {.tie = tie}, sb = {.tie = tie};
  if (s == LB_OK) s = run(cpu, gpu, ids, lb_model_config(cpu)->vocab_size, &st, &err);
  const double mib = (double)lb_model_device_bytes(gpu) / 1048576.0;
  lb_model_free(gpu); /* the batch model in its place */
  gpu = NULL;
  if (s == LB_OK) s = lb_model_open(dir, &ob, &gpub, &err);
  if (s == LB_OK) s = run_batch(cpu, gpub, ids, lb_model_config(cpu)->vocab_size, &sb, &err);
  const int sampled = s == LB_OK ? run_sampled(gpub, ids, lb_model_config(cpu)->vocab_size, &err, &s) : 0;
  int bad = 0;
  if (s != LB_OK) {
    printf("%s: FAILED: %s: %s\n", dir, lb_strerror(s), err.msg);
    bad = 1;
  } else {
    double kl = st.kl_sum / st.rows, klb = sb.kl_sum / sb.rows;
    bad = !(st.worst_rel <= rel_bound) || !(kl <= kl_bound) || st.argmax_bad;
    bad |= !(sb.worst_rel <= rel_bound) || !(klb <= kl_bound) || sb.argmax_bad || sampled;
    printf("%s: %d rows, worst max|d|/max|logit| %.2e, mean KL %.2e, argmax disagreements %d, "
           "device memory %.1f MiB; batch of %d: %d rows, %.2e, %.2e, %d; %d device samples, %d unlike "
           "the host's: %s\n",
           dir, st.rows, st.worst_rel, kl, st.argmax_bad, mib, NSEQ, sb.rows, sb.worst_rel, klb,
           sb.argmax_bad, NSEQ * (SSTEPS + 1), sampled, bad ? "FAILED" : "ok");
  }
  lb_model_free(cpu);
  lb_model_free(gpu);
  lb_model_free(gpub);
  lb_tokenizer_free(tok);
  free(ids);
  return bad;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: test_cuda_model TEXT_FILE|--random-ids MODEL_DIR...\n");
    return 2;
  }
  if (!strcmp(argv[1], "--random-ids")) { /* ids below 32000, for lowbit synth's models */
    int failed = 0;
    for (int i = 2; i < argc; i++) failed += check_dir(argv[i], NULL);
    printf("%d passed, %d failed\n", argc - 2 - failed, failed);
    return failed ? 1 : 0;
  }
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    fprintf(stderr, "test_cuda_model: cannot open %s\n", argv[1]);
    return 1;
  }
  static char text[1 << 14];
  size_t len = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[len] = 0;
  char *nl = strrchr(text, '\n'); /* whole lines only: no UTF-8 sequence cut in two */
  if (nl) nl[1] = 0;
  int failed = 0;
  for (int i = 2; i < argc; i++) failed += check_dir(argv[i], text);
  printf("%d passed, %d failed\n", argc - 2 - failed, failed);
  return failed ? 1 : 0;
}
