/* The GPTQ solver (lb_gptq_solve) on small random problems, against float64 math written here:
 *  - obs: every column's update equals the closed-form optimal brain surgeon step
 *    w_F -= (w_c - q_c) / [H_F^-1]_cc * H_F^-1[:, c] over the columns F not yet quantized, with H_F^-1
 *    the inverse of the damped Hessian restricted to F (inverted here by Gauss-Jordan), for one
 *    block and for several lazy-batched blocks;
 *  - loss: GPTQ's proxy loss tr(dW H dW^T) is below round-to-nearest's on every case;
 *  - errors: NaN Hessian, bad bits, bad group.
 * It also writes every case (W, H, lowbit's codes, parameters, g_idx) to argv[1] for
 * tests/py/gptq_solve_ref.py, an independent numpy port of GPTQModel's GPTQ.quantize. */
#include <jansson.h>
#include <sys/stat.h>

#include "io/fs.h"

#include "base/threads.h"
#include "quant/gptq.h"
#include "test.h"

static const char *OUT;
static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double drand(void) { /* [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) * 0x1.0p-52 - 1.0;
}

/* A problem: W [R, C] and H = 2/N X^T X from N random inputs with a few loud channels and one
 * dead (all-zero) channel when `dead` >= 0. */
typedef struct {
  int64_t R, C;
  float *w;
  double *h;
} problem;

static problem make(int64_t R, int64_t C, int64_t N, int64_t dead) {
  problem p = {R, C, malloc((size_t)(R * C) * sizeof(float)), calloc((size_t)(C * C), sizeof(double))};
  for (int64_t i = 0; i < R * C; i++) p.w[i] = (float)(0.05 * drand() + (i % 97 == 0 ? 0.3 : 0));
  double *x = malloc((size_t)C * sizeof(double));
  for (int64_t t = 0; t < N; t++) {
    for (int64_t c = 0; c < C; c++)
      x[c] = c == dead ? 0 : drand() * (c % 13 == 5 ? 8.0 : 1.0) + 0.2 * drand();
    for (int64_t a = 0; a < C; a++)
      for (int64_t b = 0; b < C; b++) p.h[a * C + b] += 2.0 / (double)N * x[a] * x[b];
  }
  free(x);
  return p;
}

static void drop(problem *p) { free(p->w), free(p->h); }

/* In-place Gauss-Jordan inverse of an n x n matrix (symmetric positive definite here). */
static void invert(double *a, int64_t n) {
  double *b = calloc((size_t)(n * n), sizeof(double));
  for (int64_t i = 0; i < n; i++) b[i * n + i] = 1;
  for (int64_t i = 0; i < n; i++) {
    double p = a[i * n + i];
    for (int64_t k = 0; k < n; k++) a[i * n + k] /= p, b[i * n + k] /= p;
    for (int64_t r = 0; r < n; r++)
      if (r != i) {
        double f = a[r * n + i];
        for (int64_t k = 0; k < n; k++) a[r * n + k] -= f * a[i * n + k], b[r * n + k] -= f * b[i * n + k];
      }
  }
  memcpy(a, b, (size_t)(n * n) * sizeof(double));
  free(b);
}

/* GPTQ's find_params / quantize in float64 (the closed form's own copy). */
static void params(const double *x, int64_t n, int bits, double *s, double *z) {
  double maxq = (1 << bits) - 1, lo = 0, hi = 0;
  for (int64_t i = 0; i < n; i++) lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
  *s = (hi - lo) / maxq;
  *z = nearbyint(-lo / *s);
}

static double qdq(double x, double s, double z, int bits) {
  double q = nearbyint(x / s) + z, maxq = (1 << bits) - 1;
  return s * ((q < 0 ? 0 : q > maxq ? maxq : q) - z);
}

/* Sequential OBS over columns 0..C-1 with asym `bits`, groups of `group` found at each group's
 * first column on the current weights: the value of every column when it is quantized. */
static void obs(const problem *p, int bits, int64_t group, double damp, double *trace) {
  int64_t R = p->R, C = p->C;
  double *H = malloc((size_t)(C * C) * sizeof(double)), mean = 0;
  memcpy(H, p->h, (size_t)(C * C) * sizeof(double));
  for (int64_t c = 0; c < C; c++) mean += H[c * C + c] / (double)C;
  for (int64_t c = 0; c < C; c++) H[c * C + c] += damp * mean;
  double *sub = malloc((size_t)(C * C) * sizeof(double)), *w = malloc((size_t)C * sizeof(double));
  for (int64_t r = 0; r < R; r++) {
    for (int64_t c = 0; c < C; c++) w[c] = p->w[r * C + c];
    double s = 0, z = 0;
    for (int64_t c = 0; c < C; c++) {
      if (c % group == 0) params(w + c, group, bits, &s, &z);
      int64_t n = C - c; /* F = {c .. C-1} */
      for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) sub[a * n + b] = H[(c + a) * C + c + b];
      invert(sub, n);
      trace[r * C + c] = w[c];
      double e = (w[c] - qdq(w[c], s, z, bits)) / sub[0];
      for (int64_t a = 0; a < n; a++) w[c + a] -= e * sub[a * n]; /* column c of H_F^-1 */
    }
  }
  free(H), free(sub), free(w);
}

static void obs_step(void) {
  lb_error err = {0};
  lb_pool *pool;
  CHECK_OK(lb_pool_new(2, &pool, &err), &err);
  problem p = make(6, 48, 300, -1);
  double *want = malloc(6 * 48 * sizeof(double)), *got = malloc(6 * 48 * sizeof(double));
  struct { int64_t group; int bs; } cases[] = {{48, 128}, {48, 16}, {8, 8}, {16, 16}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    int64_t g = cases[k].group;
    obs(&p, 3, g, 0.01, want);
    lb_gptq_opts o = {.bits = 3, .group = g == 48 ? -1 : g, .damp = 0.01,
                      .blocksize = cases[k].bs, .trace = got};
    lb_qweight q;
    CHECK_OK(lb_gptq_solve(p.w, 6, 48, p.h, &o, k % 2 ? pool : NULL, "obs", &q, NULL, &err), &err);
    double worst = 0;
    for (int64_t i = 0; i < 6 * 48; i++)
      worst = fmax(worst, fabs(got[i] - want[i]) / (fabs(want[i]) + 1e-3));
    /* float64 both ways; the Cholesky route and explicit inverses differ by rounding only */
    CHECK_MSG(worst < 1e-9, "group %lld blocksize %d: worst relative difference %g",
              (long long)g, cases[k].bs, worst);
    /* and the codes are those of the traced values */
    int bad = 0;
    for (int64_t r = 0; r < 6; r++)
      for (int64_t c = 0; c < 48; c++) {
        int64_t gi = c / q.group;
        double s = q.scale[r * q.ngroups + gi], z = q.zero[r * q.ngroups + gi];
        double v = nearbyint(want[r * 48 + c] / s) + z;
        v = v < 0 ? 0 : v > 7 ? 7 : v;
        bad += q.q[r * 48 + c] != (uint8_t)v;
      }
    CHECK_MSG(bad == 0, "group %lld: %d codes differ from the closed form's", (long long)g, bad);
    lb_qweight_free(&q);
  }
  free(want), free(got);
  drop(&p);
  lb_pool_free(pool);
}

/* tr(dW H dW^T) for the dequantized q against w. */
static double proxy_loss(const problem *p, const lb_qweight *q) {
  int64_t C = p->C;
  double *d = malloc((size_t)C * sizeof(double)), *row = malloc((size_t)C * sizeof(float) * 2);
  float *deq = malloc((size_t)C * sizeof(float));
  double loss = 0;
  for (int64_t r = 0; r < p->R; r++) {
    lb_qweight_dequant_row(q, r, deq);
    for (int64_t c = 0; c < C; c++) d[c] = (double)deq[c] - (double)p->w[r * C + c];
    for (int64_t a = 0; a < C; a++) {
      double s = 0;
      for (int64_t b = 0; b < C; b++) s += p->h[a * C + b] * d[b];
      loss += d[a] * s;
    }
  }
  free(d), free(row), free(deq);
  return loss;
}

typedef struct {
  const char *name;
  int64_t R, C, dead;
  lb_gptq_opts o;
} dump_case;

static void cases_and_dump(void) {
  lb_error err = {0};
  lb_pool *pool;
  CHECK_OK(lb_pool_new(2, &pool, &err), &err);
  dump_case cs[] = {
      {"w4g32", 40, 192, -1, {.bits = 4, .group = 32, .damp = 0.01, .blocksize = 128}},
      {"w4g32_dead", 24, 160, 77, {.bits = 4, .group = 32, .damp = 0.01, .blocksize = 128}},
      {"w3pc_sym", 33, 200, -1, {.bits = 3, .group = -1, .sym = true, .damp = 0.01, .blocksize = 128}},
      {"w4g64_act", 48, 320, 5, {.bits = 4, .group = 64, .desc_act = true, .damp = 0.01, .blocksize = 128}},
      {"w4g32_act_static", 40, 256, -1,
       {.bits = 4, .group = 32, .desc_act = true, .static_groups = true, .damp = 0.01, .blocksize = 128}},
      {"w2g16", 64, 96, -1, {.bits = 2, .group = 16, .damp = 0.05, .blocksize = 32}},
      {"w8g64_sym", 32, 128, -1, {.bits = 8, .group = 64, .sym = true, .damp = 0.01, .blocksize = 128}},
      {"w3g64_v1safe", 32, 256, -1, {.bits = 3, .group = 64, .v1_safe = true, .damp = 0.01, .blocksize = 128}},
  };
  size_t n = sizeof cs / sizeof cs[0];
  lb_st_writer *w;
  CHECK_OK(lb_st_writer_open(OUT, 0, &w, &err), &err);
  json_t *list = json_array();
  for (size_t k = 0; k < n; k++) {
    dump_case *c = &cs[k];
    problem p = make(c->R, c->C, 400, c->dead);
    if (c->o.v1_safe) /* rows of positive weights: asymmetric zero 0, which v1 cannot store */
      for (int64_t i = 0; i < 8 * p.C; i++) p.w[i] = fabsf(p.w[i]) + 0.01f;
    lb_qweight q, rtn;
    lb_gptq_info info;
    CHECK_OK(lb_gptq_solve(p.w, p.R, p.C, p.h, &c->o, pool, c->name, &q, &info, &err), &err);
    CHECK(info.dead == (c->dead >= 0));
    CHECK_OK(lb_rtn_quantize(p.w, p.R, p.C, c->o.bits, c->o.group > 0 ? c->o.group : p.C, c->o.sym,
                             c->name, &rtn, &err), &err);
    if (c->dead >= 0) /* GPTQ zeroes a dead column's weights; RTN keeps them (they cost nothing) */
      for (int64_t r = 0; r < p.R; r++) p.w[r * p.C + c->dead] = 0;
    double lg = proxy_loss(&p, &q), lr = proxy_loss(&p, &rtn);
    printf("  %-18s proxy loss gptq %.4g rtn %.4g (%.1f%%)\n", c->name, lg, lr, 100 * lg / lr);
    CHECK_MSG(lg < lr, "%s: GPTQ loss %g is not below RTN's %g", c->name, lg, lr);
    CHECK_OK(lb_qweight_check(&q, c->name, &err), &err);
    if (c->o.v1_safe)
      for (int64_t i = 0; i < q.rows * q.ngroups; i++) CHECK(q.zero[i] >= 1);
    char name[128];
    int64_t swh[2] = {p.R, p.C}, shh[2] = {p.C, p.C}, sg[2] = {p.R, q.ngroups}, sc[1] = {p.C};
    int32_t *gi = malloc((size_t)p.C * sizeof(int32_t));
    for (int64_t i = 0; i < p.C; i++) gi[i] = q.g_idx ? q.g_idx[i] : (int32_t)(i / q.group);
    snprintf(name, sizeof name, "%s.w", c->name);
    CHECK_OK(lb_st_writer_add(w, name, LB_F32, 2, swh, p.w, (size_t)(p.R * p.C) * 4, &err), &err);
    snprintf(name, sizeof name, "%s.h", c->name);
    CHECK_OK(lb_st_writer_add(w, name, LB_F64, 2, shh, p.h, (size_t)(p.C * p.C) * 8, &err), &err);
    snprintf(name, sizeof name, "%s.q", c->name);
    CHECK_OK(lb_st_writer_add(w, name, LB_U8, 2, swh, q.q, (size_t)(p.R * p.C), &err), &err);
    snprintf(name, sizeof name, "%s.scale", c->name);
    CHECK_OK(lb_st_writer_add(w, name, LB_F32, 2, sg, q.scale, (size_t)(p.R * q.ngroups) * 4, &err), &err);
    snprintf(name, sizeof name, "%s.zero", c->name);
    CHECK_OK(lb_st_writer_add(w, name, LB_F32, 2, sg, q.zero, (size_t)(p.R * q.ngroups) * 4, &err), &err);
    snprintf(name, sizeof name, "%s.g_idx", c->name);
    CHECK_OK(lb_st_writer_add(w, name, LB_I32, 1, sc, gi, (size_t)p.C * 4, &err), &err);
    json_t *o = json_pack("{s:s, s:i, s:I, s:b, s:b, s:b, s:b, s:f, s:i}", "name", c->name, "bits",
                          c->o.bits, "group", (json_int_t)c->o.group, "sym", c->o.sym, "desc_act",
                          c->o.desc_act, "static_groups", c->o.static_groups, "v1_safe",
                          c->o.v1_safe, "damp", c->o.damp, "blocksize", c->o.blocksize);
    json_array_append_new(list, o);
    free(gi);
    lb_qweight_free(&q), lb_qweight_free(&rtn);
    drop(&p);
  }
  CHECK_OK(lb_st_writer_finish(w, &err), &err);
  char path[1024];
  snprintf(path, sizeof path, "%s/gptq-solve.json", OUT);
  CHECK(json_dump_file(list, path, JSON_INDENT(1)) == 0);
  json_decref(list);
  lb_pool_free(pool);
}

static void errors(void) {
  lb_error err = {0};
  problem p = make(4, 32, 50, -1);
  lb_qweight q;
  lb_gptq_opts o = {.bits = 4, .group = 16, .damp = 0.01, .blocksize = 128};
  p.h[3 * 32 + 5] = NAN;
  CHECK(lb_gptq_solve(p.w, 4, 32, p.h, &o, NULL, "model.layers.0.mlp.up_proj", &q, NULL, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "model.layers.0.mlp.up_proj") && strstr(err.msg, "Hessian"));
  p.h[3 * 32 + 5] = 0;
  o.bits = 9;
  CHECK(lb_gptq_solve(p.w, 4, 32, p.h, &o, NULL, "m", &q, NULL, &err) == LB_EINVAL);
  o.bits = 4, o.group = 12;
  CHECK(lb_gptq_solve(p.w, 4, 32, p.h, &o, NULL, "m", &q, NULL, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "group size 12"));
  p.w[7] = INFINITY, o.group = 16;
  CHECK(lb_gptq_solve(p.w, 4, 32, p.h, &o, NULL, "m", &q, NULL, &err) == LB_EINVAL);
  drop(&p);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_quant_gptq_solve OUTDIR\n");
    return 2;
  }
  OUT = argv[1];
  lb_remove_tree(OUT);
  mkdir(OUT, 0755);
  static const lb_test_case cases[] = {
      {"obs_step", obs_step}, {"cases_and_dump", cases_and_dump}, {"errors", errors}};
  return lb_test_main(1, argv, cases, sizeof cases / sizeof cases[0]);
}
