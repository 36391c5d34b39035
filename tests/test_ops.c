/* CPU kernels and ops against float64 references computed here, on odd shapes, for every ISA path
 * this CPU has (the scalar _ref twins always), plus the thread pool and the sampler. */
#include "backend/cpu/kernels.h"
#include "quant/gptq.h"
#include "base/threads.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}

static const char *ISAS[] = {"ref", "avx2", "avx512"};

/* Each ISA's kernels vs float64: widening is exact, dot/axpy within fp32 rounding of the sum
 * (n * 2^-24 * sum|a*b| bounds it), exp within 2e-7 relative (the polynomial's error, checked over
 * the whole range softmax uses). */
static void kernels_vs_float64(void) {
  static const int64_t N[] = {1, 3, 7, 8, 15, 16, 17, 33, 64, 129, 1000, 4099};
  for (size_t k = 0; k < 3; k++) {
    const lb_kernels *K = lb_cpu_kernels_isa(ISAS[k]);
    if (!K) {
      printf("isa %s: not on this CPU\n", ISAS[k]);
      continue;
    }
    printf("isa %s: checked\n", ISAS[k]);
    for (size_t i = 0; i < sizeof N / sizeof N[0]; i++) {
      int64_t n = N[i];
      float *a = malloc(n * 4), *b = malloc(n * 4), *y = malloc(n * 4), *w = malloc(n * 4);
      uint16_t *h = malloc(n * 2), *bf = malloc(n * 2);
      for (int64_t j = 0; j < n; j++) {
        a[j] = frand(), b[j] = frand() * 3;
        h[j] = lb_f32_to_f16(a[j]), bf[j] = lb_f32_to_bf16(b[j]);
      }
      K->cvt_f32(w, h, LB_F16, n);
      for (int64_t j = 0; j < n; j++) CHECK(w[j] == lb_f16_to_f32(h[j]));
      K->cvt_f32(w, bf, LB_BF16, n);
      for (int64_t j = 0; j < n; j++) CHECK(w[j] == lb_bf16_to_f32(bf[j]));
      double ref = 0, mag = 0;
      for (int64_t j = 0; j < n; j++) ref += (double)a[j] * b[j], mag += fabs((double)a[j] * b[j]);
      double got = K->dot(a, b, n);
      CHECK_MSG(fabs(got - ref) <= (double)n * 0x1.0p-24 * mag + 1e-30, "%s dot n=%lld: %g vs %g",
                ISAS[k], (long long)n, got, ref);
      memcpy(y, b, n * 4);
      K->axpy(y, 0.75f, a, n);
      for (int64_t j = 0; j < n; j++) CHECK(fabs(y[j] - (b[j] + 0.75 * a[j])) <= 4e-7 * 4);
      for (int64_t j = 0; j < n; j++) y[j] = a[j] * 40 - 50; /* exp arguments in [-90, -10) */
      memcpy(w, y, n * 4);
      /* the kernels subtract the shift in fp32, so the reference takes that rounded argument */
      double sref = 0;
      for (int64_t j = 0; j < n; j++) sref += exp((double)(w[j] - 0.5f));
      double s = K->exp_sum(y, n, 0.5f);
      for (int64_t j = 0; j < n; j++) {
        double e = exp((double)(w[j] - 0.5f));
        if (w[j] - 0.5f > -87.3f)
          CHECK_MSG(fabs(y[j] - e) <= 2e-7 * e, "%s exp(%.9g) = %.9g, float64 %.9g", ISAS[k],
                    w[j] - 0.5f, y[j], e);
      }
      CHECK(fabs(s - sref) <= 1e-6 * sref + 1e-37 * (double)n);
      free(a), free(b), free(y), free(w), free(h), free(bf);
    }
  }
  /* the polynomial over a dense sweep of the softmax range [-87, 0] */
  double worst = 0;
  for (double x = -87; x <= 0; x += 0.00137) {
    double e = exp((double)(float)x), g = lb_expf_fast((float)x);
    worst = fmax(worst, fabs(g - e) / e);
  }
  printf("expf polynomial: worst relative error %.2e\n", worst);
  CHECK(worst < 2e-7);
}

/* lb_linear on both paths (few rows: per-row dots; many rows: widened tiles + sgemm) vs float64,
 * for every weight dtype, on odd shapes. Bound: fp32 accumulation over `cols` terms. */
static void linear_vs_float64(void) {
  lb_pool *pool;
  lb_error err = {0};
  CHECK_OK(lb_pool_new(3, &pool, &err), &err);
  static const int64_t ROWS[] = {1, 7, 129}, COLS[] = {1, 7, 33, 130}, NX[] = {1, 3, 4, 5, 70};
  static const lb_dtype DT[] = {LB_F32, LB_F16, LB_BF16};
  for (size_t d = 0; d < 3; d++)
    for (size_t r = 0; r < 3; r++)
      for (size_t c = 0; c < 4; c++)
        for (size_t q = 0; q < 5; q++) {
          int64_t rows = ROWS[r], cols = COLS[c], n = NX[q];
          float *wf = malloc(rows * cols * 4), *x = malloc(n * cols * 4), *y = malloc(n * rows * 4);
          float *bias = malloc(rows * 4);
          uint16_t *w16 = malloc(rows * cols * 2);
          for (int64_t i = 0; i < rows * cols; i++) {
            float v = frand();
            if (DT[d] == LB_F16) w16[i] = lb_f32_to_f16(v), v = lb_f16_to_f32(w16[i]);
            if (DT[d] == LB_BF16) w16[i] = lb_f32_to_bf16(v), v = lb_bf16_to_f32(w16[i]);
            wf[i] = v;
          }
          for (int64_t i = 0; i < n * cols; i++) x[i] = frand();
          for (int64_t i = 0; i < rows; i++) bias[i] = frand();
          lb_mat w = {DT[d], rows, cols, DT[d] == LB_F32 ? (void *)wf : (void *)w16, NULL, NULL, 0, 0.0f};
          CHECK_OK(lb_linear(pool, &w, bias, x, n, y, &err), &err);
          for (int64_t t = 0; t < n; t++)
            for (int64_t o = 0; o < rows; o++) {
              double ref = bias[o], mag = fabs(bias[o]);
              for (int64_t i = 0; i < cols; i++)
                ref += (double)x[t * cols + i] * wf[o * cols + i],
                    mag += fabs((double)x[t * cols + i] * wf[o * cols + i]);
              double got = y[t * rows + o];
              CHECK_MSG(fabs(got - ref) <= (double)(cols + 1) * 0x1.0p-23 * mag,
                        "%s [%lld x %lld] n=%lld: y[%lld,%lld] = %g, float64 %g",
                        lb_dtype_name(DT[d]), (long long)rows, (long long)cols, (long long)n,
                        (long long)t, (long long)o, got, ref);
            }
          free(wf), free(x), free(y), free(bias), free(w16);
        }
  /* a quantized weight: lb_linear on both paths equals float64 over its reference dequantization */
  for (size_t r = 0; r < 3; r++)
    for (size_t q = 0; q < 5; q++) {
      int64_t rows = ROWS[r], cols = 130, n = NX[q];
      float *wf = malloc(rows * cols * 4), *x = malloc(n * cols * 4), *y = malloc(n * rows * 4);
      for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand();
      for (int64_t i = 0; i < n * cols; i++) x[i] = frand();
      lb_qweight qw;
      CHECK_OK(lb_rtn_quantize(wf, rows, cols, 4, 32, false, "w", &qw, &err), &err);
      for (int64_t o = 0; o < rows; o++) lb_qweight_dequant_row(&qw, o, wf + o * cols);
      lb_mat w = {.rows = rows, .cols = cols, .qw = &qw};
      CHECK_OK(lb_linear(pool, &w, NULL, x, n, y, &err), &err);
      for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < rows; o++) {
          double ref = 0, mag = 0;
          for (int64_t i = 0; i < cols; i++)
            ref += (double)x[t * cols + i] * wf[o * cols + i],
                mag += fabs((double)x[t * cols + i] * wf[o * cols + i]);
          CHECK(fabs(y[t * rows + o] - ref) <= (double)(cols + 1) * 0x1.0p-23 * mag);
        }
      lb_qweight_free(&qw);
      free(wf), free(x), free(y);
    }
  lb_mat bad = {LB_I8, 1, 1, "x", NULL, NULL, 0, 0.0f};
  float one = 1, out;
  CHECK(lb_linear(pool, &bad, NULL, &one, 1, &out, &err) == LB_EUNSUPPORTED);
  lb_pool_free(pool);
}

static void rows_ops(void) {
  enum { D = 37 };
  float x[D], w[D], y[D];
  for (int i = 0; i < D; i++) x[i] = frand() * 5, w[i] = frand();
  lb_rmsnorm(y, x, w, D, 1e-5f);
  double ss = 0;
  for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
  for (int i = 0; i < D; i++) {
    double ref = w[i] * (x[i] / sqrt(ss / D + 1e-5));
    CHECK(fabs(y[i] - ref) <= 1e-6 * (fabs(ref) + 1e-6));
  }
  float p[D];
  memcpy(p, x, sizeof p);
  lb_softmax(p, D);
  double mx = -1e9, z = 0, sum = 0;
  for (int i = 0; i < D; i++) mx = fmax(mx, x[i]);
  for (int i = 0; i < D; i++) z += exp((double)x[i] - mx);
  for (int i = 0; i < D; i++) {
    double ref = exp((double)x[i] - mx) / z;
    CHECK(fabs(p[i] - ref) <= 1e-6 * ref + 1e-12);
    sum += p[i];
  }
  CHECK(fabs(sum - 1) < 1e-6);
  CHECK(fabs(lb_logsumexp(x, D) - (mx + log(z))) < 1e-6);
  float g[D], u[D];
  for (int i = 0; i < D; i++) g[i] = x[i], u[i] = w[i];
  lb_silu_mul(g, u, D);
  for (int i = 0; i < D; i++) {
    double ref = x[i] / (1 + exp(-(double)x[i])) * w[i];
    CHECK(fabs(g[i] - ref) <= 1e-6 * (fabs(ref) + 1e-6));
  }
}

typedef struct {
  int64_t n;
  int64_t *out;
} sum_job;

static void sum_task(void *p, int ith, int nth) {
  sum_job *j = p;
  int64_t lo, hi, s = 0;
  lb_split(j->n, ith, nth, &lo, &hi);
  for (int64_t i = lo; i < hi; i++) s += i;
  j->out[ith] = s;
}

/* Every share runs exactly once per region, over many regions (workers sleep and wake). */
static void thread_pool(void) {
  lb_error err = {0};
  for (int n = 1; n <= 5; n++) {
    lb_pool *p;
    CHECK_OK(lb_pool_new(n, &p, &err), &err);
    int64_t out[8];
    for (int rep = 0; rep < 2000; rep++) {
      sum_job j = {1000 + rep, out};
      for (int i = 0; i < 8; i++) out[i] = -1;
      lb_pool_run(p, sum_task, &j);
      int64_t s = 0;
      for (int i = 0; i < n; i++) s += out[i];
      if (s != j.n * (j.n - 1) / 2 || out[n] != -1) {
        CHECK_MSG(0, "pool of %d, region %d: sum %lld", n, rep, (long long)s);
        break;
      }
    }
    lb_pool_free(p);
  }
  lb_pool *p;
  CHECK(lb_pool_new(5000, &p, &err) == LB_EINVAL);
}

/* The sampler's algorithm written plainly, as lb_sampler_next did before it selected instead of
 * sorting (sampler.c): the same generator (xoshiro256** seeded through splitmix64), every
 * candidate sorted by logit (then id), the top-k prefix, the top-p prefix of its mass, a draw.
 * The library must make the same choices. */
typedef struct {
  float l, p;
  int32_t id;
} ref_cand;
static int ref_desc(const void *a, const void *b) {
  const ref_cand *x = a, *y = b;
  if (x->l != y->l) return x->l < y->l ? 1 : -1;
  return x->id < y->id ? -1 : x->id > y->id;
}
static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static void ref_seed(uint64_t *q, uint64_t seed) {
  for (int i = 0; i < 4; i++) {
    uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    q[i] = z ^ (z >> 31);
  }
}
static double ref_uniform(uint64_t *q) {
  const uint64_t r = ref_rotl(q[1] * 5, 7) * 9, t = q[1] << 17;
  q[2] ^= q[0], q[3] ^= q[1], q[1] ^= q[2], q[0] ^= q[3], q[2] ^= t, q[3] = ref_rotl(q[3], 45);
  return (double)(r >> 11) * 0x1.0p-53;
}
static int32_t ref_sample(uint64_t *q, const lb_sampler_params *sp, const float *l, int64_t n, ref_cand *c) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (l[i] > l[best]) best = i;
  if (sp->temperature == 0 || sp->top_k == 1) return (int32_t)best;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    c[i] = (ref_cand){l[i], expf((float)((l[i] - l[best]) * (1.0 / sp->temperature))), (int32_t)i};
    sum += c[i].p;
  }
  int64_t keep = n;
  if ((sp->top_k > 0 && sp->top_k < n) || sp->top_p < 1) {
    qsort(c, (size_t)n, sizeof *c, ref_desc);
    if (sp->top_k > 0 && sp->top_k < n) keep = sp->top_k;
    double kept = 0, acc = 0;
    for (int64_t i = 0; i < keep; i++) kept += c[i].p;
    for (int64_t i = 0; sp->top_p < 1 && i < keep; i++)
      if ((acc += c[i].p) >= sp->top_p * kept) keep = i + 1;
    sum = 0;
    for (int64_t i = 0; i < keep; i++) sum += c[i].p;
  }
  double r = ref_uniform(q) * sum, acc = 0;
  for (int64_t i = 0; i < keep; i++)
    if (r < (acc += c[i].p)) return c[i].id;
  return c[keep - 1].id;
}

/* The sampler against ref_sample, draw for draw, on 5000-token vocabularies: peaked (a few large
 * logits over a uniform spread), flat (every logit equal: ties everywhere, broken by id), mostly
 * hopeless (probabilities that underflow to 0, fewer non-zero than top-k keeps), slowly decaying
 * (top-p past its first 64 candidates), and pairs of logits a float apart whose probabilities
 * tie, over temperatures, top-k and top-p alone and together. */
static void sampler_vs_reference(void) {
  enum { N = 5000, DRAWS = 300 };
  float *l = malloc(N * sizeof *l);
  ref_cand *c = malloc(N * sizeof *c);
  const lb_sampler_params ps[] = {
      {.temperature = 0.7, .top_p = 0.9, .seed = 1},   {.temperature = 1, .top_p = 0.5, .seed = 2},
      {.temperature = 3, .top_p = 0.999, .seed = 3},   {.temperature = 1, .top_k = 5, .top_p = 1, .seed = 4},
      {.temperature = 1, .top_k = 50, .top_p = 0.9, .seed = 5}, {.temperature = 0.5, .top_k = 4999, .top_p = 1, .seed = 6},
      {.temperature = 2, .top_k = 300, .top_p = 0.3, .seed = 7}, {.temperature = 1, .top_p = 1, .seed = 8},
  };
  for (int dist = 0; dist < 5; dist++) {
    for (int i = 0; i < N; i++) l[i] = dist == 1 ? 0.25f : 2.5f * frand();
    if (dist == 0) l[17] = 9, l[99] = 8, l[4000] = 7.5f;
    if (dist == 2)
      for (int i = 0; i < N; i++) l[i] = i % 97 == 0 ? frand() : -1e4f;
    if (dist == 3) /* a slow decay in scattered order: top-p 0.9 at T 1 needs about 230 tokens */
      for (int i = 0; i < N; i++) l[(int)((int64_t)i * 7919 % N)] = -0.01f * (float)i;
    if (dist == 4) /* neighbours a float apart, the larger second, whose probabilities often round
                      to one float: they rank by logit, not by id */
      for (int i = 0; i + 1 < N; i += 2) l[i] = -0.002f * (float)i, l[i + 1] = nextafterf(l[i], 1.0f);
    for (size_t j = 0; j < sizeof ps / sizeof ps[0]; j++) {
      lb_error err = {0};
      lb_sampler *s;
      CHECK_OK(lb_sampler_new(&ps[j], N, &s, &err), &err);
      uint64_t q[4];
      ref_seed(q, ps[j].seed);
      int same = 0;
      for (int d = 0; d < DRAWS; d++) same += lb_sampler_next(s, l) == ref_sample(q, &ps[j], l, N, c);
      CHECK_MSG(same == DRAWS, "distribution %d, settings %zu: %d of %d draws as the reference", dist, j, same, DRAWS);
      lb_sampler_free(s);
    }
  }
  free(l), free(c);
}

static void sampler(void) {
  lb_error err = {0};
  float lg[6] = {1, 3, 3, -2, 0.5f, 2.9f};
  lb_sampler *s;
  lb_sampler_params greedy = {.temperature = 0, .top_p = 1};
  CHECK_OK(lb_sampler_new(&greedy, 6, &s, &err), &err);
  CHECK(lb_sampler_next(s, lg) == 1); /* ties: the lowest id */
  lb_sampler_free(s);
  /* top-k 2 at T=1: only ids 1 and 2 (equal logits), each about half the time */
  lb_sampler_params k2 = {.temperature = 1, .top_k = 2, .top_p = 1, .seed = 7};
  CHECK_OK(lb_sampler_new(&k2, 6, &s, &err), &err);
  int counts[6] = {0};
  for (int i = 0; i < 4000; i++) counts[lb_sampler_next(s, lg)]++;
  CHECK(counts[0] + counts[3] + counts[4] + counts[5] == 0);
  CHECK(abs(counts[1] - 2000) < 200); /* binomial sd ~32: 6 sd */
  lb_sampler_free(s);
  /* full softmax at T=1: frequencies follow the probabilities (4000 draws, 6 sd bounds) */
  lb_sampler_params full = {.temperature = 1, .top_p = 1, .seed = 11};
  CHECK_OK(lb_sampler_new(&full, 6, &s, &err), &err);
  memset(counts, 0, sizeof counts);
  for (int i = 0; i < 40000; i++) counts[lb_sampler_next(s, lg)]++;
  double z = 0;
  for (int i = 0; i < 6; i++) z += exp(lg[i]);
  for (int i = 0; i < 6; i++) {
    double pr = exp(lg[i]) / z, sd = sqrt(40000 * pr * (1 - pr));
    CHECK_MSG(fabs(counts[i] - 40000 * pr) < 6 * sd, "id %d: %d draws, expected %.0f", i, counts[i],
              40000 * pr);
  }
  lb_sampler_free(s);
  /* top-p 0.5: ids 1, 2 hold 0.33 each; the smallest set reaching 0.5 is {1, 2} */
  lb_sampler_params tp = {.temperature = 1, .top_p = 0.5, .seed = 3};
  CHECK_OK(lb_sampler_new(&tp, 6, &s, &err), &err);
  for (int i = 0; i < 500; i++) {
    int32_t t = lb_sampler_next(s, lg);
    CHECK(t == 1 || t == 2);
  }
  lb_sampler_free(s);
  /* the same seed, the same draws */
  lb_sampler *a, *b;
  CHECK_OK(lb_sampler_new(&full, 6, &a, &err), &err);
  CHECK_OK(lb_sampler_new(&full, 6, &b, &err), &err);
  for (int i = 0; i < 100; i++) CHECK(lb_sampler_next(a, lg) == lb_sampler_next(b, lg));
  lb_sampler_free(a), lb_sampler_free(b);
  lb_sampler_params bad = {.temperature = -1, .top_p = 1};
  CHECK(lb_sampler_new(&bad, 6, &s, &err) == LB_EINVAL);
  bad = (lb_sampler_params){.temperature = 1, .top_p = 0};
  CHECK(lb_sampler_new(&bad, 6, &s, &err) == LB_EINVAL);
}

int main(int argc, char **argv) {
  static const lb_test_case cases[] = {
      {"kernels_vs_float64", kernels_vs_float64},
      {"linear_vs_float64", linear_vs_float64},
      {"rows_ops", rows_ops},
      {"thread_pool", thread_pool},
      {"sampler", sampler},
      {"sampler_vs_reference", sampler_vs_reference},
  };
  return lb_test_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
