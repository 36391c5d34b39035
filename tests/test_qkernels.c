/* The packed quantized kernels (src/backend/cpu/qpack.h) for every format of the format table, on
 * odd shapes, with every kernel set this CPU has (the scalar twins, AVX2 forced on an AVX-512
 * machine, AVX-512):
 *  1. each ISA equals the scalar twin up to fp32 summation order: |fast - twin| <= 1e-5 x the sum
 *     of |w x| (about 30 roundings of 2^-24 in a sum of up to 1000 terms; the weights' own rounding
 *     error is at least 1e-3 of that sum for 8-bit codes, 1e-2 for 4-bit ones, so the bound is far
 *     under it);
 *  2. the twin equals x . W^T in float64 with W from the canonical reference dequantization
 *     (lb_qweight_dequant_row):
 *       integer kinds: within the activation rounding, sum_c |w_c| * d_c / 2 (each x_c becomes
 *       d * round(x_c / d), d = the block's amax / 127) plus 1e-5 of sum |w x| for fp32;
 *       NF4/FP8 (fp32 activations): within 1e-5 of sum |w x|;
 *     which checks packing, interleaving, padding, act-order permutation, scales and zero points
 *     against an independent path;
 *  3. geometries no kernel takes are left unpacked (lb_linear then runs the reference);
 *  4. lb_linear_many equals separate lb_linear calls bit for bit, dotw and silu_mul their twins. */
#include <stdint.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/qpack.h"
#include "quant/qweight.h"
#include "test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [0, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static float frand(void) { return (float)(2 * urand() - 1); }

/* A canonical weight of the given kind with random codes and parameters. */
typedef struct {
  lb_qkind kind;
  int bits;
  int64_t group; /* AFFINE group (0: per channel); CODEBOOK block; FP8 block_c (0: per channel) */
  bool act_order, hqq, e5m2, fp4;
  const char *name;
} fmt;

static const fmt FORMATS[] = {
    {LB_QK_AFFINE, 4, 128, false, false, false, false, "int4 g128 (GPTQ/AWQ/RTN)"},
    {LB_QK_AFFINE, 4, 32, true, false, false, false, "int4 g32 act-order"},
    {LB_QK_AFFINE, 3, 64, false, false, false, false, "int3 g64"},
    {LB_QK_AFFINE, 2, 64, false, false, false, false, "int2 g64"},
    {LB_QK_AFFINE, 4, 64, false, true, false, false, "HQQ 4-bit g64 (fractional zero)"},
    {LB_QK_AFFINE, 8, 0, false, false, false, false, "int8 per channel"},
    {LB_QK_AFFINE, 8, 128, true, false, false, false, "int8 g128 act-order"},
    {LB_QK_AFFINE, 6, 256, false, false, false, false, "int6 g256"},
    {LB_QK_CODEBOOK, 4, 64, false, false, false, false, "NF4 block 64"},
    {LB_QK_CODEBOOK, 4, 64, false, false, false, true, "FP4 block 64"},
    {LB_QK_FP8, 8, 128, false, false, false, false, "FP8 E4M3 128x128 blocks"},
    {LB_QK_FP8, 8, 0, false, false, false, false, "FP8 E4M3 per channel"},
    {LB_QK_FP8, 8, 0, false, false, true, false, "FP8 E5M2 per tensor"},
};

static const float NF4[16] = {-1.0f, -0.6961928f, -0.5250731f, -0.3949175f, -0.2844414f,
                              -0.1847734f, -0.09105004f, 0.0f, 0.0795803f, 0.1609302f,
                              0.2461123f, 0.3379152f, 0.4407098f, 0.562617f, 0.7229568f, 1.0f};
static const float FP4[16] = {0.0f,  0.0052f, 0.6667f, 1.0f,  0.3333f, 0.5f,  0.1667f, 0.25f,
                              -0.0f, -0.0052f, -0.6667f, -1.0f, -0.3333f, -0.5f, -0.1667f, -0.25f};

static bool make(const fmt *f, int64_t rows, int64_t cols, lb_qweight *w, lb_error *err) {
  memset(w, 0, sizeof *w);
  w->kind = f->kind, w->rows = rows, w->cols = cols, w->bits = f->bits;
  if (f->kind == LB_QK_AFFINE) w->group = f->group ? f->group : cols;
  if (f->kind == LB_QK_CODEBOOK) w->block = f->group;
  if (f->kind == LB_QK_FP8) {
    w->fp8 = f->e5m2 ? LB_F8_E5M2 : LB_F8_E4M3;
    w->block_r = f->group ? f->group : (f->e5m2 ? rows : 1);
    w->block_c = f->group ? f->group : cols;
  }
  if (lb_qweight_alloc(w, f->act_order, false, err) != LB_OK) return false;
  int64_t ns = lb_qweight_nscales(w), maxq = (1 << f->bits) - 1;
  for (int64_t i = 0; i < rows * cols; i++) {
    if (f->kind == LB_QK_FP8) {
      uint8_t b;
      do b = (uint8_t)(urand() * 256); /* any finite pattern */
      while (f->e5m2 ? (b & 0x7C) == 0x7C : (b & 0x7F) == 0x7F);
      w->q[i] = b;
    } else {
      w->q[i] = (uint8_t)(urand() * (double)(maxq + 1));
    }
  }
  if (f->kind == LB_QK_CODEBOOK) {
    memcpy(w->code, f->fp4 ? FP4 : NF4, sizeof w->code);
    for (int64_t i = 0; i < ns; i++) w->absmax[i] = (float)(0.01 + 0.1 * urand());
  } else {
    float unit = f->kind == LB_QK_FP8 ? (f->e5m2 ? 1e-5f : 1e-3f) : 0.02f;
    for (int64_t i = 0; i < ns; i++) w->scale[i] = unit * (float)(0.5 + urand());
  }
  if (f->kind == LB_QK_AFFINE)
    for (int64_t i = 0; i < ns; i++)
      w->zero[i] = f->hqq ? (float)(urand() * maxq) : (float)(int)(urand() * (maxq + 1));
  if (f->act_order) { /* group of column c: a random permutation of the columns cut in groups */
    int32_t *perm = malloc((size_t)cols * sizeof *perm);
    for (int64_t c = 0; c < cols; c++) perm[c] = (int32_t)c;
    for (int64_t c = cols - 1; c > 0; c--) {
      int64_t o = (int64_t)(urand() * (double)(c + 1));
      int32_t t = perm[c];
      perm[c] = perm[o], perm[o] = t;
    }
    for (int64_t i = 0; i < cols; i++) w->g_idx[perm[i]] = (int32_t)(i / w->group);
    free(perm);
  }
  return true;
}

/* float64 reference: y = x . deq(W)^T, plus per output the sums the bounds need. */
static void reference(const lb_qweight *w, const float *x, int64_t n, double *y, double *absum,
                      double *actbound, int64_t kb) {
  float *row = malloc((size_t)w->cols * sizeof *row);
  float *amax = calloc((size_t)(n * w->cols), sizeof *amax); /* per x element: its block's amax */
  for (int64_t i = 0; i < n && kb; i++) {
    for (int64_t c0 = 0; c0 < w->cols; c0 += kb) {
      float m = 0;
      for (int64_t c = c0; c < c0 + kb && c < w->cols; c++) m = fmaxf(m, fabsf(x[i * w->cols + c]));
      for (int64_t c = c0; c < c0 + kb && c < w->cols; c++) amax[i * w->cols + c] = m;
    }
  }
  for (int64_t r = 0; r < w->rows; r++) {
    lb_qweight_dequant_row(w, r, row);
    for (int64_t i = 0; i < n; i++) {
      double s = 0, a = 0, b = 0;
      for (int64_t c = 0; c < w->cols; c++) {
        s += (double)row[c] * x[i * w->cols + c];
        a += fabs((double)row[c] * x[i * w->cols + c]);
        b += fabs((double)row[c]) * amax[i * w->cols + c] / 127.0 / 2.0;
      }
      y[i * w->rows + r] = s, absum[i * w->rows + r] = a, actbound[i * w->rows + r] = b;
    }
  }
  free(row), free(amax);
}

/* Activations of the act-order kind are gathered before blocking: the blocks of the reference
 * bound must follow the packed order, so the bound uses the packed columns' amax. */
static void reference_packed_order(const lb_qweight *w, const lb_qpack *p, const float *x,
                                   int64_t n, double *actbound) {
  float *row = malloc((size_t)w->cols * sizeof *row);
  for (int64_t r = 0; r < w->rows; r++) {
    lb_qweight_dequant_row(w, r, row);
    for (int64_t i = 0; i < n; i++) {
      double b = 0;
      for (int64_t c0 = 0; c0 < p->cols; c0 += p->kb) {
        float m = 0;
        for (int64_t c = c0; c < c0 + p->kb && c < p->cols; c++)
          m = fmaxf(m, fabsf(x[i * w->cols + p->perm[c]]));
        for (int64_t c = c0; c < c0 + p->kb && c < p->cols; c++)
          b += fabs((double)row[p->perm[c]]) * m / 127.0 / 2.0;
      }
      actbound[i * w->rows + r] = b;
    }
  }
  free(row);
}

static void check_format(const fmt *f, lb_pool *pool) {
  static const int64_t ROWS[] = {1, 7, 129};
  static const int64_t NS[] = {1, 3, 9};
  lb_error err = {0};
  for (size_t ri = 0; ri < sizeof ROWS / sizeof ROWS[0]; ri++)
    for (int ci = 0; ci < 2; ci++) {
      int64_t rows = ROWS[ri];
      /* a width the group divides, and one that needs padding where the format allows it */
      int64_t unit = f->kind == LB_QK_AFFINE && f->group ? f->group : 64;
      int64_t cols = ci == 0 ? 4 * unit : (f->kind == LB_QK_AFFINE ? 3 * unit + 40 : 5 * unit);
      if (f->kind == LB_QK_AFFINE && f->group && ci == 1) cols = 3 * unit; /* groups divide */
      if (f->kind == LB_QK_AFFINE && !f->group && ci == 1) cols = 200;     /* per channel: any */
      if (f->kind == LB_QK_FP8 && ci == 1) cols = f->group ? 3 * 128 + 40 : 200;
      lb_qweight w;
      if (!make(f, rows, cols, &w, &err)) {
        CHECK_MSG(0, "%s: %s", f->name, err.msg);
        return;
      }
      lb_qpack *p = NULL;
      CHECK_OK(lb_qpack_new(&w, &p, &err), &err);
      CHECK_MSG(p != NULL, "%s [%lld, %lld] was not packed", f->name, (long long)rows, (long long)cols);
      if (!p) {
        lb_qweight_free(&w);
        continue;
      }
      bool integer = p->kind == LB_QP_U4 || p->kind == LB_QP_U8;
      for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
        int64_t n = NS[ni];
        float *x = malloc((size_t)(n * cols) * sizeof *x);
        for (int64_t i = 0; i < n * cols; i++) x[i] = frand() * (urand() < 0.01 ? 8.0f : 1.0f);
        double *y = malloc((size_t)(n * rows) * sizeof *y), *a = malloc((size_t)(n * rows) * 8);
        double *b = malloc((size_t)(n * rows) * sizeof *b);
        reference(&w, x, n, y, a, b, integer ? p->kb : 0);
        if (integer && p->perm) reference_packed_order(&w, p, x, n, b);
        float *twin = malloc((size_t)(n * rows) * sizeof *twin), *fast = malloc((size_t)(n * rows) * 4);
        CHECK_OK(lb_qpack_linear_k(pool, lb_cpu_kernels_isa("ref"), p, NULL, x, n, twin, &err), &err);
        double worst = 0;
        for (int64_t i = 0; i < n * rows; i++) {
          double bound = (integer ? b[i] : 0) + 1e-5 * a[i] + 1e-30;
          double e = fabs(twin[i] - y[i]);
          worst = e / bound > worst ? e / bound : worst;
        }
        CHECK_MSG(worst <= 1.0, "%s [%lld, %lld] n=%lld: the twin is off the float64 reference by "
                  "%.3g of its bound", f->name, (long long)rows, (long long)cols, (long long)n, worst);
        const char *isas[] = {"avx2", "avx512"};
        for (int k = 0; k < 2; k++) {
          const lb_kernels *ks = lb_cpu_kernels_isa(isas[k]);
          if (!ks) continue; /* the CPU lacks it: lb_cpu_kernels never picks it here either */
          CHECK_OK(lb_qpack_linear_k(pool, ks, p, NULL, x, n, fast, &err), &err);
          double fw = 0;
          for (int64_t i = 0; i < n * rows; i++) {
            double e = fabs((double)fast[i] - twin[i]) / (1e-5 * a[i] + 1e-30);
            fw = e > fw ? e : fw;
          }
          CHECK_MSG(fw <= 1.0, "%s %s [%lld, %lld] n=%lld: %.3g of the twin bound", f->name,
                    isas[k], (long long)rows, (long long)cols, (long long)n, fw);
        }
        free(x), free(y), free(a), free(b), free(twin), free(fast);
      }
      lb_qpack_free(p);
      lb_qweight_free(&w);
    }
}

static void formats(void) {
  lb_pool *pool = NULL;
  lb_error err = {0};
  CHECK_OK(lb_pool_new(3, &pool, &err), &err);
  if (!lb_cpu_kernels_isa("avx2")) fprintf(stderr, "note: this CPU has no AVX2; twins only\n");
  if (!lb_cpu_kernels_isa("avx512")) fprintf(stderr, "note: this CPU has no AVX-512 VNNI\n");
  for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++) check_format(&FORMATS[i], pool);
  lb_pool_free(pool);
}

/* Geometries the kernels refuse stay canonical (lb_linear runs the reference for them). */
static void unpacked(void) {
  lb_error err = {0};
  struct {
    fmt f;
    int64_t cols;
  } cases[] = {
      {{LB_QK_AFFINE, 4, 48, false, false, false, false, "group 48"}, 96},
      {{LB_QK_CODEBOOK, 4, 64, false, false, false, false, "NF4 blocks across rows"}, 96},
      {{LB_QK_FP8, 8, 24, false, false, false, false, "FP8 blocks of 24 columns"}, 96},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    lb_qweight w;
    if (!make(&cases[i].f, 5, cases[i].cols, &w, &err)) continue;
    lb_qpack *p = (lb_qpack *)&w; /* anything non-NULL: lb_qpack_new must set it */
    CHECK_OK(lb_qpack_new(&w, &p, &err), &err);
    CHECK_MSG(p == NULL, "%s was packed", cases[i].f.name);
    lb_qpack_free(p == (lb_qpack *)&w ? NULL : p);
    lb_qweight_free(&w);
  }
  /* an FP8 NaN code keeps the reference (which propagates it) */
  lb_qweight w;
  fmt f = {LB_QK_FP8, 8, 0, false, false, false, false, "fp8"};
  if (make(&f, 3, 64, &w, &err)) {
    w.q[5] = 0x7F;
    lb_qpack *p = NULL;
    CHECK_OK(lb_qpack_new(&w, &p, &err), &err);
    CHECK(p == NULL);
    lb_qweight_free(&w);
  }
}

/* lb_linear_many (one region) equals one lb_linear per weight, bit for bit, packed and dense. */
static void many(void) {
  lb_pool *pool = NULL;
  lb_error err = {0};
  CHECK_OK(lb_pool_new(2, &pool, &err), &err);
  fmt f = FORMATS[0];
  lb_qweight w0, w1;
  make(&f, 40, 256, &w0, &err);
  make(&f, 24, 256, &w1, &err);
  lb_qpack *p0 = NULL, *p1 = NULL;
  CHECK_OK(lb_qpack_new(&w0, &p0, &err), &err);
  CHECK_OK(lb_qpack_new(&w1, &p1, &err), &err);
  uint16_t *dense = malloc(33 * 256 * sizeof *dense);
  for (int i = 0; i < 33 * 256; i++) dense[i] = lb_f32_to_bf16(frand());
  float bias[40], x[3 * 256];
  for (int i = 0; i < 40; i++) bias[i] = frand();
  for (int i = 0; i < 3 * 256; i++) x[i] = frand();
  lb_mat m0 = {.dtype = LB_F32, .rows = 40, .cols = 256, .pack = p0};
  lb_mat m1 = {.dtype = LB_F32, .rows = 24, .cols = 256, .pack = p1};
  lb_mat m2 = {.dtype = LB_BF16, .rows = 33, .cols = 256, .data = dense};
  for (int64_t n = 1; n <= 3; n++) {
    float a0[120], a1[72], a2[99], b0[120], b1[72], b2[99];
    const lb_mat *ws[3] = {&m0, &m1, &m2};
    float *bs[3] = {bias, NULL, bias}, *ys[3] = {a0, a1, a2};
    CHECK_OK(lb_linear_many(pool, 3, ws, bs, x, n, ys, &err), &err);
    CHECK_OK(lb_linear(pool, &m0, bias, x, n, b0, &err), &err);
    CHECK_OK(lb_linear(pool, &m1, NULL, x, n, b1, &err), &err);
    CHECK_OK(lb_linear(pool, &m2, bias, x, n, b2, &err), &err);
    CHECK(!memcmp(a0, b0, (size_t)(40 * n) * 4) && !memcmp(a1, b1, (size_t)(24 * n) * 4));
    CHECK(!memcmp(a2, b2, (size_t)(33 * n) * 4));
  }
  free(dense);
  lb_qpack_free(p0), lb_qpack_free(p1);
  lb_qweight_free(&w0), lb_qweight_free(&w1);
  lb_pool_free(pool);
}

/* dotw (the dense decode kernel) against its twin; silu_mul equal to its twin bit for bit. */
static void dense_kernels(void) {
  const char *isas[] = {"avx2", "avx512"};
  enum { N = 1000 };
  static float x[4 * N], wf[N];
  static uint16_t wb[N], wh[N];
  for (int i = 0; i < 4 * N; i++) x[i] = frand();
  for (int i = 0; i < N; i++) wf[i] = frand(), wb[i] = lb_f32_to_bf16(wf[i]), wh[i] = lb_f32_to_f16(wf[i]);
  const void *ws[3] = {wf, wb, wh};
  lb_dtype dts[3] = {LB_F32, LB_BF16, LB_F16};
  for (int k = 0; k < 2; k++) {
    const lb_kernels *ks = lb_cpu_kernels_isa(isas[k]);
    if (!ks) continue;
    for (int d = 0; d < 3; d++)
      for (int nx = 1; nx <= 4; nx++)
        for (int64_t n = 1; n <= N; n += 333) {
          float a[4], b[4];
          lb_dotw_ref(ws[d], dts[d], x, N, nx, n, a);
          ks->dotw(ws[d], dts[d], x, N, nx, n, b);
          for (int i = 0; i < nx; i++) /* summation order: 1e-5 of sum |w x| <= n */
            CHECK_MSG(fabsf(a[i] - b[i]) <= 1e-5f * (float)n, "%s dotw %d: %g vs %g", isas[k], d, a[i], b[i]);
        }
    float g1[N], g2[N];
    for (int i = 0; i < N; i++) g1[i] = g2[i] = 12 * frand();
    lb_silu_mul_ref(g1, x, N);
    ks->silu_mul(g2, x, N);
    CHECK(!memcmp(g1, g2, sizeof g1));
  }
}

/* The fused prefill attention (attn_rows): twin and ISAs against float64 softmax(q K^T / sqrt(hd)) V
 * over each row's visible keys (causal, and a sliding window), head dims 64 and 128, odd row and
 * key counts. Bound: 2e-6 x max |v| (fp32 sums of up to ~300 terms of exp-weighted values; the
 * exp polynomial's 2e-7). */
static void attention(void) {
  const char *isas[] = {"ref", "avx2", "avx512"};
  for (int hdi = 0; hdi < 2; hdi++) {
    const int64_t hd = hdi ? 128 : 64, nq = 37, ld = hd + 16, pos = 250;
    float *q = malloc((size_t)(nq * ld) * 4), *K = malloc((size_t)((pos + nq) * ld) * 4);
    float *V = malloc((size_t)((pos + nq) * ld) * 4), *o = malloc((size_t)(nq * ld) * 4);
    float *scratch = malloc((size_t)LB_ATTN_SCRATCH(hd) * 4);
    for (int64_t i = 0; i < nq * ld; i++) q[i] = 2 * frand();
    for (int64_t i = 0; i < (pos + nq) * ld; i++) K[i] = 2 * frand(), V[i] = frand();
    for (int window = 0; window < 2; window++) {
      int64_t ka[64], kb[64];
      for (int64_t t = 0; t < nq; t++) {
        kb[t] = pos + t + 1;
        ka[t] = window && kb[t] - 100 > 0 ? kb[t] - 100 : 0;
      }
      const float scale = 1.0f / sqrtf((float)hd);
      for (int k = 0; k < 3; k++) {
        const lb_kernels *ks = lb_cpu_kernels_isa(isas[k]);
        if (!ks) continue;
        for (int64_t i = 0; i < nq * ld; i++) o[i] = NAN; /* every output must be written */
        ks->attn_rows(q, ld, K, V, ld, hd, nq, ka, kb, scale, o, ld, scratch);
        double worst = 0;
        for (int64_t t = 0; t < nq; t++) {
          double mx = -INFINITY, z = 0;
          double *s = malloc((size_t)kb[t] * sizeof *s);
          for (int64_t j = ka[t]; j < kb[t]; j++) {
            double a = 0;
            for (int64_t d = 0; d < hd; d++) a += (double)q[t * ld + d] * K[j * ld + d];
            s[j] = a * scale, mx = s[j] > mx ? s[j] : mx;
          }
          for (int64_t j = ka[t]; j < kb[t]; j++) z += exp(s[j] - mx);
          for (int64_t d = 0; d < hd; d++) {
            double r = 0;
            for (int64_t j = ka[t]; j < kb[t]; j++) r += exp(s[j] - mx) / z * V[j * ld + d];
            double e = fabs(o[t * ld + d] - r);
            worst = isnan(o[t * ld + d]) ? INFINITY : e > worst ? e : worst;
          }
          free(s);
        }
        CHECK_MSG(worst <= 2e-6, "%s attention hd %lld window %d: off float64 by %g", isas[k],
                  (long long)hd, window, worst);
      }
    }
    free(q), free(K), free(V), free(o), free(scratch);
  }
}

int main(int argc, char **argv) {
  static const lb_test_case cases[] = {{"formats", formats},
                                       {"unpacked", unpacked},
                                       {"many", many},
                                       {"dense_kernels", dense_kernels},
                                       {"attention", attention}};
  return lb_test_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
