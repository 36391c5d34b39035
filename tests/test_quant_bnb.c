/* bitsandbytes NF4 / FP4 (+ double quant) and LLM.int8: decision-tree ties, error bounds, round
 * trips through the Transformers layout, hostile files, NaN weights, the int8 matmul reference and
 * the runtime's threaded LLM.int8 lb_linear (bit for bit the reference).
 * Writes every case to argv[1]/model.safetensors (P = "<case>": the bnb tensors, plus "src.<case>"
 * F32 source weights) for tests/py/quant_bnb_ref.py, which recomputes them with numpy. */
#include <sys/stat.h>

#include "backend/cpu/kernels.h"
#include "quant/bnb.h"
#include "test.h"

static const char *OUT;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}

/* Weight-like values: small, a few large outliers, one all-zero 64-block when there is room. */
static float *make_w(int64_t rows, int64_t cols) {
  int64_t n = rows * cols;
  float *w = malloc((size_t)n * sizeof *w);
  for (int64_t i = 0; i < n; i++) w[i] = 0.02f * (frand() + frand() + frand());
  for (int64_t i = 0; i < n; i += 97) w[i] *= 25.0f;
  if (n >= 256)
    for (int64_t i = 128; i < 192; i++) w[i] = 0.0f;
  return w;
}

static float max_half_gap(const float *code, int n) {
  float s[256], g = 0;
  memcpy(s, code, (size_t)n * sizeof *s);
  for (int i = 1; i < n; i++) /* insertion sort */
    for (int j = i; j > 0 && s[j - 1] > s[j]; j--) { float t = s[j]; s[j] = s[j - 1], s[j - 1] = t; }
  for (int i = 1; i < n; i++) g = fmaxf(g, (s[i] - s[i - 1]) / 2);
  return g;
}

static void test_trees(void) {
  float fp4[16], dyn[256];
  lb_bnb_fp4_code(fp4);
  lb_bnb_dynamic_map(dyn);
  for (int i = 0; i < 16; i++) {
    CHECK_MSG(lb_bnb_nf4_index(lb_bnb_nf4_code[i]) == i, "nf4 %d", i);
    CHECK_MSG(lb_bnb_fp4_index(fp4[i]) == (i == 8 ? 0 : i), "fp4 %d", i); /* -0 is not < 0 */
  }
  for (int i = 1; i < 256; i++) CHECK_MSG(dyn[i - 1] < dyn[i], "dynamic map sorted at %d", i);
  /* -1 is not in the signed map (its negatives stop at -0.9929), +1 is */
  CHECK(dyn[0] > -1.0f && dyn[0] < -0.99f && dyn[255] == 1.0f && dyn[127] == 0.0f);
  for (int i = 0; i < 256; i++) CHECK_MSG(lb_bnb_dynamic_index(dyn, dyn[i]) == i, "dyn %d", i);
  /* ties: a value on a threshold goes to the lower code (the kernels test `x > t`) */
  CHECK(lb_bnb_nf4_index(0.03979014977812767f) == 7);
  CHECK(lb_bnb_nf4_index(nextafterf(0.03979014977812767f, 1)) == 8);
  CHECK(lb_bnb_nf4_index(-0.8480964004993439f) == 0);
  CHECK(lb_bnb_fp4_index(0.583333f) == 5 && lb_bnb_fp4_index(nextafterf(0.583333f, 1)) == 2);
  CHECK(lb_bnb_fp4_index(-0.583333f) == 13);
  CHECK(lb_bnb_nf4_index(NAN) == 0 && lb_bnb_fp4_index(NAN) == 0);
  CHECK(lb_bnb_dynamic_index(dyn, 1.5f) == 255 && lb_bnb_dynamic_index(dyn, -1.5f) == 0);
}

static void test_py_float(void) {
  static const struct { double v; const char *s; } k[] = {
      {0.5, "0.5"}, {1e-05, "1e-05"}, {(double)0.1f, "0.10000000149011612"}, {123.0, "123.0"},
      {1e16, "1e+16"}, {1e15, "1000000000000000.0"}, {0.0001, "0.0001"}, {-2.5e-7, "-2.5e-07"},
      {0.0, "0.0"}, {0.00012345, "0.00012345"}, {1.0 / 3, "0.3333333333333333"}};
  char buf[64];
  for (size_t i = 0; i < sizeof k / sizeof *k; i++)
    CHECK_MSG(strcmp(lb_bnb_py_float(k[i].v, buf, sizeof buf), k[i].s) == 0, "%s vs %s", buf,
              k[i].s);
}

/* The cases written for the python reference: shapes with odd numel, numel not a multiple of 64,
 * one nested block exactly (16384 = 256 * 64), several with a partial last one. */
static const int64_t k_shapes[][2] = {{7, 129}, {3, 5}, {33, 100}, {64, 256}, {40, 1000}, {1, 64}};
#define NSHAPES (sizeof k_shapes / sizeof *k_shapes)

static void bound4(const lb_qweight *q, const float *w, const char *label) {
  /* |w - code[q] * absmax| <= absmax * (largest half gap of the code book): the trees pick the
   * nearest code up to their fp32 thresholds (FP4's are rounded to ~7 digits: 1e-6 relative).
   * With double quant the decoded absmax adds its own error, at most the nested absmax times the
   * dynamic map's largest half gap. */
  float hg = max_half_gap(q->code, 16), dg = max_half_gap(q->dq_code, 256);
  int64_t n = q->rows * q->cols;
  for (int64_t b = 0; b * q->block < n; b++) {
    float amax = 0, dq_err = 0;
    for (int64_t i = b * q->block; i < n && i < (b + 1) * q->block; i++) amax = fmaxf(amax, fabsf(w[i]));
    if (q->double_quant) {
      dq_err = q->dq_nested_absmax[b / q->dq_block] * dg * 1.0001f + 1e-7f;
      CHECK_MSG(fabsf(q->absmax[b] - amax) <= dq_err, "%s: absmax %lld", label, (long long)b);
    } else {
      CHECK_MSG(q->absmax[b] == amax, "%s: absmax %lld", label, (long long)b);
    }
    for (int64_t i = b * q->block; i < n && i < (b + 1) * q->block; i++) {
      float d = q->code[q->q[i]] * q->absmax[b];
      CHECK_MSG(q->q[i] < 16 && fabsf(w[i] - d) <= amax * hg * (1 + 1e-5f) + dq_err, "%s: %lld: "
                "%g vs %g", label, (long long)i, (double)w[i], (double)d);
    }
  }
}

static void bound8(const lb_qweight *q, const float *w, const char *label) {
  /* |h - q * SCB / 127| <= SCB / 254 where h is the fp16 value quantized: round to nearest of
   * h * 127 / SCB, plus fp32 rounding of the product (1e-6 relative) */
  for (int64_t r = 0; r < q->rows; r++) {
    float amax = 0;
    for (int64_t c = 0; c < q->cols; c++)
      amax = fmaxf(amax, fabsf(lb_f16_to_f32(lb_f32_to_f16(w[r * q->cols + c]))));
    CHECK_MSG(q->scale[r] == amax, "%s: SCB %lld", label, (long long)r);
    for (int64_t c = 0; c < q->cols; c++) {
      float h = lb_f16_to_f32(lb_f32_to_f16(w[r * q->cols + c]));
      float d = (float)(int8_t)q->q[r * q->cols + c] * amax / 127.0f;
      CHECK_MSG(fabsf(h - d) <= amax / 254.0f * (1 + 1e-5f), "%s: [%lld, %lld]", label,
                (long long)r, (long long)c);
    }
  }
}

static void same(const lb_qweight *a, const lb_qweight *b, const char *label) {
  int64_t n = a->rows * a->cols, ns = lb_qweight_nscales(a);
  CHECK_MSG(a->kind == b->kind && a->rows == b->rows && a->cols == b->cols && a->bits == b->bits,
            "%s: geometry", label);
  if (a->kind != b->kind || a->rows != b->rows || a->cols != b->cols) return;
  CHECK_MSG(memcmp(a->q, b->q, (size_t)n) == 0, "%s: codes", label);
  CHECK_MSG(!a->bias == !b->bias, "%s: bias presence", label);
  if (a->bias && b->bias)
    CHECK_MSG(memcmp(a->bias, b->bias, (size_t)a->rows * 4) == 0, "%s: bias", label);
  if (a->kind == LB_QK_INT8ROW) {
    CHECK_MSG(memcmp(a->scale, b->scale, (size_t)ns * 4) == 0, "%s: SCB", label);
    return;
  }
  CHECK_MSG(a->block == b->block && a->nf4 == b->nf4 && a->double_quant == b->double_quant,
            "%s: parameters", label);
  CHECK_MSG(memcmp(a->code, b->code, sizeof a->code) == 0, "%s: code", label);
  CHECK_MSG(memcmp(a->absmax, b->absmax, (size_t)ns * 4) == 0, "%s: absmax", label);
  if (!a->double_quant || !b->double_quant) return;
  CHECK_MSG(a->dq_block == b->dq_block && a->dq_offset == b->dq_offset, "%s: nested", label);
  CHECK_MSG(memcmp(a->dq_code, b->dq_code, sizeof a->dq_code) == 0, "%s: nested map", label);
  CHECK_MSG(memcmp(a->dq_absmax_q, b->dq_absmax_q, (size_t)ns) == 0, "%s: absmax codes", label);
  CHECK_MSG(memcmp(a->dq_nested_absmax, b->dq_nested_absmax,
                   (size_t)((ns + a->dq_block - 1) / a->dq_block) * 4) == 0, "%s: nested", label);
}

/* Quantizes every shape with every method, checks bounds, writes all to OUT, reads back. */
static void test_roundtrip(void) {
  enum { NM = 5 };
  static const char *mname[NM] = {"nf4", "nf4_dq", "fp4", "fp4_dq", "int8"};
  static const lb_dtype mdt[NM] = {LB_BF16, LB_F16, LB_F32, LB_BF16, LB_F16};
  lb_qweight qs[NSHAPES][NM];
  char label[NSHAPES][NM][64];
  lb_error err = {0};
  lb_st_writer *wr;
  mkdir(OUT, 0755);
  CHECK_OK(lb_st_writer_open(OUT, 0, &wr, &err), &err);
  if (err.code) return;
  for (size_t s = 0; s < NSHAPES; s++) {
    int64_t rows = k_shapes[s][0], cols = k_shapes[s][1];
    float *w = make_w(rows, cols);
    for (int m = 0; m < NM; m++) {
      lb_qweight *q = &qs[s][m];
      snprintf(label[s][m], 64, "%s.%lldx%lld", mname[m], (long long)rows, (long long)cols);
      if (m < 4)
        CHECK_OK(lb_bnb4_quantize(w, rows, cols, m < 2, 64, m & 1, label[s][m], q, &err), &err);
      else
        CHECK_OK(lb_int8_quantize(w, rows, cols, 6.0f, label[s][m], q, &err), &err);
      if (m < 4) bound4(q, w, label[s][m]);
      else bound8(q, w, label[s][m]);
      if (s == 0 && m != 1) { /* a bias, exact in F32 and BF16-rounded otherwise */
        q->bias = malloc((size_t)rows * sizeof *q->bias);
        for (int64_t r = 0; r < rows; r++)
          q->bias[r] = mdt[m] == LB_F32 ? frand() : lb_bf16_to_f32(lb_f32_to_bf16(frand()));
        if (mdt[m] == LB_F16)
          for (int64_t r = 0; r < rows; r++) q->bias[r] = lb_f16_to_f32(lb_f32_to_f16(q->bias[r]));
      }
      CHECK_OK(lb_bnb_write(wr, label[s][m], q, mdt[m], &err), &err);
      char src[96];
      snprintf(src, sizeof src, "src.%.63s", label[s][m]);
      int64_t shape[2] = {rows, cols};
      CHECK_OK(lb_st_writer_add(wr, src, LB_F32, 2, shape, w, (uint64_t)(rows * cols) * 4, &err),
               &err);
    }
    free(w);
  }
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  lb_tensors *t = NULL;
  CHECK_OK(lb_tensors_open(OUT, &t, &err), &err);
  for (size_t s = 0; t && s < NSHAPES; s++)
    for (int m = 0; m < NM; m++) {
      lb_qweight back;
      lb_dtype dt = LB_DTYPE_COUNT;
      CHECK_OK(lb_bnb_read(t, label[s][m], &back, &dt, &err), &err);
      CHECK_MSG(dt == mdt[m], "%s: dtype %s", label[s][m], lb_dtype_name(dt));
      same(&qs[s][m], &back, label[s][m]);
      lb_qweight_free(&back);
    }
  lb_tensors_close(t);
  for (size_t s = 0; s < NSHAPES; s++)
    for (int m = 0; m < NM; m++) lb_qweight_free(&qs[s][m]);
}

static void test_nan_refused(void) {
  float w[3 * 70];
  for (int i = 0; i < 3 * 70; i++) w[i] = 0.01f * (float)i;
  w[75] = NAN;
  lb_qweight q;
  lb_error err = {0};
  CHECK(lb_bnb4_quantize(w, 3, 70, true, 64, true, "layers.0.up_proj", &q, &err) == LB_EINVAL);
  CHECK_MSG(strstr(err.msg, "layers.0.up_proj") && strstr(err.msg, "[1, 5]"), "%s", err.msg);
  CHECK(lb_int8_quantize(w, 3, 70, 6.0f, "layers.0.down_proj", &q, &err) == LB_EINVAL);
  CHECK_MSG(strstr(err.msg, "layers.0.down_proj"), "%s", err.msg);
  w[75] = 1e6f; /* beyond fp16, which Int8Params quantizes from */
  CHECK(lb_int8_quantize(w, 3, 70, 6.0f, "x", &q, &err) == LB_EINVAL && strstr(err.msg, "fp16"));
  w[75] = INFINITY;
  CHECK(lb_bnb4_quantize(w, 3, 70, false, 64, false, "y", &q, &err) == LB_EINVAL);
  CHECK(lb_bnb4_quantize(w, 3, 70, false, 48, false, "y", &q, &err) == LB_EINVAL);
}

/* An all-zero block (NaN scaled value in the kernels) decodes to zeros; an all-zero int8 row too. */
static void test_zero_blocks(void) {
  float w[2 * 64] = {0};
  w[70] = 0.5f;
  lb_qweight q;
  lb_error err = {0};
  CHECK_OK(lb_bnb4_quantize(w, 2, 64, true, 64, false, "z", &q, &err), &err);
  float row[64];
  lb_qweight_dequant_row(&q, 0, row);
  for (int c = 0; c < 64; c++) CHECK(row[c] == 0.0f && q.q[c] == 0);
  lb_qweight_free(&q);
  CHECK_OK(lb_int8_quantize(w, 2, 64, 0.0f, "z", &q, &err), &err);
  CHECK(q.scale[0] == 0.0f && q.q[0] == 0 && q.q[6 + 64] == 127);
  lb_qweight_free(&q);
}

/* ---- hostile files: one tensor of a good file replaced or dropped ------------------------------ */

typedef struct {
  const char *name; /* tensor replaced (or dropped when dt == LB_DTYPE_COUNT) */
  lb_dtype dt;
  int ndim;
  int64_t shape[2];
  const void *data;
  uint64_t nbytes;
} repl;

static int g_variant;

static lb_tensors *variant(const lb_tensors *good, const repl *r) {
  char dir[600];
  snprintf(dir, sizeof dir, "%s/v%d", lb_test_tmpdir(), g_variant++);
  mkdir(dir, 0755);
  lb_st_writer *w;
  lb_tensors *t = NULL;
  lb_error err = {0};
  CHECK_OK(lb_st_writer_open(dir, 0, &w, &err), &err);
  if (err.code) return NULL;
  for (size_t i = 0; i < lb_tensors_count(good); i++) {
    const lb_tensor *x = lb_tensors_at(good, i);
    if (strcmp(x->name, r->name) != 0)
      CHECK_OK(lb_st_writer_add(w, x->name, x->dtype, x->ndim, x->shape, x->data, x->nbytes, &err),
               &err);
  }
  if (r->dt != LB_DTYPE_COUNT)
    CHECK_OK(lb_st_writer_add(w, r->name, r->dt, r->ndim, r->shape, r->data, r->nbytes, &err), &err);
  CHECK_OK(lb_st_writer_finish(w, &err), &err);
  CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
  return t;
}

/* Reading `prefix` from the variant must fail with `code` and a message containing `want`. */
static void expect_fail(const lb_tensors *good, const repl *r, const char *prefix, lb_status code,
                        const char *want) {
  lb_tensors *t = variant(good, r);
  if (!t) return;
  lb_qweight q;
  lb_error err = {0};
  lb_status s = lb_bnb_read(t, prefix, &q, NULL, &err);
  CHECK_MSG(s == code && strstr(err.msg, want) != NULL, "replacing %s: %s (%s), wanted %s naming "
            "'%s'", r->name, lb_strerror(s), err.msg, lb_strerror(code), want);
  CHECK(q.q == NULL && q.absmax == NULL && q.scale == NULL);
  lb_tensors_close(t);
}

static lb_tensors *good_file(void) {
  char dir[600];
  snprintf(dir, sizeof dir, "%s/good", lb_test_tmpdir());
  mkdir(dir, 0755);
  float *w = make_w(7, 129);
  lb_qweight m, f, e;
  lb_error err = {0};
  lb_st_writer *wr;
  lb_tensors *t = NULL;
  CHECK_OK(lb_bnb4_quantize(w, 7, 129, true, 64, true, "m", &m, &err), &err);
  CHECK_OK(lb_bnb4_quantize(w, 7, 129, false, 64, false, "f", &f, &err), &err);
  CHECK_OK(lb_int8_quantize(w, 7, 129, 6.0f, "e", &e, &err), &err);
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  CHECK_OK(lb_bnb_write(wr, "m", &m, LB_BF16, &err), &err);
  CHECK_OK(lb_bnb_write(wr, "f", &f, LB_F16, &err), &err);
  CHECK_OK(lb_bnb_write(wr, "e", &e, LB_F16, &err), &err);
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
  lb_qweight_free(&m), lb_qweight_free(&f), lb_qweight_free(&e);
  free(w);
  return t;
}

#define QS "m.weight.quant_state.bitsandbytes__nf4"
#define JSON_HEAD "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", "
#define JSON_TAIL ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.5}"

static void json_case(const lb_tensors *good, const char *json, const char *want) {
  repl r = {QS, LB_U8, 1, {(int64_t)strlen(json)}, json, strlen(json)};
  expect_fail(good, &r, "m", LB_EFORMAT, want);
}

static void test_hostile4(void) {
  lb_tensors *good = good_file();
  if (!good) return;
  lb_qweight ok;
  lb_error err = {0};
  CHECK_OK(lb_bnb_read(good, "m", &ok, NULL, &err), &err); /* the base file is fine */
  lb_qweight_free(&ok);
  const int64_t nb = (7 * 129 + 63) / 64, npk = (7 * 129 + 1) / 2; /* 15 blocks, 452 bytes */
  static float f32[512];
  static uint8_t u8[512];
  memset(f32, 0, sizeof f32), memset(u8, 0, sizeof u8);
  const repl absmax_f16 = {"m.weight.absmax", LB_F16, 1, {nb}, u8, (uint64_t)nb * 2};
  expect_fail(good, &absmax_f16, "m", LB_EFORMAT, "m.weight.absmax: expected U8 [15]");
  const repl absmax_long = {"m.weight.absmax", LB_U8, 1, {nb + 1}, u8, (uint64_t)nb + 1};
  expect_fail(good, &absmax_long, "m", LB_EFORMAT, "m.weight.absmax");
  const repl absmax_2d = {"f.weight.absmax", LB_F32, 2, {nb, 1}, f32, (uint64_t)nb * 4};
  expect_fail(good, &absmax_2d, "f", LB_EFORMAT, "f.weight.absmax: expected F32 [15]");
  f32[3] = NAN;
  const repl absmax_nan = {"f.weight.absmax", LB_F32, 1, {nb}, f32, (uint64_t)nb * 4};
  expect_fail(good, &absmax_nan, "f", LB_EFORMAT, "f.weight.absmax: element 3 is not finite");
  const repl nested_nan = {"m.weight.nested_absmax", LB_F32, 1, {1}, f32 + 3, 4};
  expect_fail(good, &nested_nan, "m", LB_EFORMAT, "m.weight.nested_absmax");
  f32[3] = 0;
  const repl no_nested = {"m.weight.nested_absmax", LB_DTYPE_COUNT, 0, {0}, NULL, 0};
  expect_fail(good, &no_nested, "m", LB_ENOTFOUND, "m.weight.nested_absmax: tensor is missing");
  const repl no_nmap = {"m.weight.nested_quant_map", LB_DTYPE_COUNT, 0, {0}, NULL, 0};
  expect_fail(good, &no_nmap, "m", LB_ENOTFOUND, "m.weight.nested_quant_map");
  const repl no_state = {QS, LB_DTYPE_COUNT, 0, {0}, NULL, 0};
  expect_fail(good, &no_state, "m", LB_ENOTFOUND, QS);
  const repl qmap = {"m.weight.quant_map", LB_F32, 1, {16}, f32, 64};
  expect_fail(good, &qmap, "m", LB_EFORMAT, "m.weight.quant_map: entry 0");
  const repl w_f16 = {"m.weight", LB_F16, 2, {npk / 2, 1}, u8, (uint64_t)npk};
  expect_fail(good, &w_f16, "m", LB_EUNSUPPORTED, "m.weight: 4-bit storage F16");
  const repl w_1d = {"f.weight", LB_U8, 1, {npk}, u8, (uint64_t)npk};
  expect_fail(good, &w_1d, "f", LB_EFORMAT, "f.weight: expected U8 [452, 1]");
  const repl state_f32 = {QS, LB_F32, 1, {2}, f32, 8};
  expect_fail(good, &state_f32, "m", LB_EFORMAT, QS);

  json_case(good, "{\"quant_type\": \"nf4\", ", QS ":1:");
  json_case(good, "[1, 2]", QS ": expected a JSON object");
  json_case(good, JSON_HEAD "\"shape\": [7, 129], \"extra\": 1" JSON_TAIL, "unknown key 'extra'");
  json_case(good, "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", "
            "\"shape\": [7, 129]" JSON_TAIL, "quant_type 'fp4'");
  json_case(good, JSON_HEAD "\"shape\": [7, 130]" JSON_TAIL, "m.weight: expected U8 [455, 1]");
  json_case(good, JSON_HEAD "\"shape\": [903]" JSON_TAIL, QS ": shape");
  json_case(good, JSON_HEAD "\"shape\": [7, -129]" JSON_TAIL, QS ": shape");
  json_case(good, "{\"quant_type\": \"nf4\", \"blocksize\": 48, \"dtype\": \"bfloat16\", "
            "\"shape\": [7, 129]" JSON_TAIL, "blocksize 48");
  json_case(good, "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"int8\", "
            "\"shape\": [7, 129]" JSON_TAIL, "dtype 'int8'");
  json_case(good, JSON_HEAD "\"shape\": [7, 129]}", "m.weight.absmax: expected F32 [15]");
  json_case(good, JSON_HEAD "\"shape\": [7, 129], \"nested_blocksize\": 256, \"nested_dtype\": "
            "\"float16\", \"nested_offset\": 0.5}", "nested_dtype 'float16'");
  json_case(good, JSON_HEAD "\"shape\": [7, 129], \"nested_blocksize\": 256, \"nested_dtype\": "
            "\"float32\", \"nested_offset\": \"x\"}", "nested_offset");
  lb_qweight q;
  CHECK(lb_bnb_read(good, "absent", &q, NULL, &err) == LB_ENOTFOUND);
  CHECK_MSG(strstr(err.msg, "absent.weight.quant_state"), "%s", err.msg);
  lb_tensors_close(good);
}

static void test_hostile8(void) {
  lb_tensors *good = good_file();
  if (!good) return;
  static float f32[16];
  static uint8_t u8[7 * 129];
  memset(f32, 0, sizeof f32);
  const repl scb_long = {"e.SCB", LB_F32, 1, {8}, f32, 32};
  expect_fail(good, &scb_long, "e", LB_EFORMAT, "e.SCB: expected F32 [7], got F32 [8]");
  const repl scb_f16 = {"e.SCB", LB_F16, 1, {7}, f32, 14};
  expect_fail(good, &scb_f16, "e", LB_EFORMAT, "e.SCB: expected F32 [7], got F16 [7]");
  f32[2] = -1.0f;
  const repl scb_neg = {"e.SCB", LB_F32, 1, {7}, f32, 28};
  expect_fail(good, &scb_neg, "e", LB_EFORMAT, "e.SCB: element 2 is negative");
  f32[2] = INFINITY;
  expect_fail(good, &scb_neg, "e", LB_EFORMAT, "e.SCB: element 2 is not finite");
  f32[2] = 0;
  const uint8_t col32 = 1;
  const repl fmt1 = {"e.weight_format", LB_U8, 0, {0}, &col32, 1};
  expect_fail(good, &fmt1, "e", LB_EUNSUPPORTED, "e.weight_format: layout 1");
  const repl fmt_f32 = {"e.weight_format", LB_F32, 1, {2}, f32, 8};
  expect_fail(good, &fmt_f32, "e", LB_EFORMAT, "e.weight_format");
  const repl w_u8 = {"e.weight", LB_U8, 2, {7, 129}, u8, sizeof u8};
  expect_fail(good, &w_u8, "e", LB_EFORMAT, "e.weight: expected I8");
  const repl w_1d = {"e.weight", LB_I8, 1, {7 * 129}, u8, sizeof u8};
  expect_fail(good, &w_1d, "e", LB_EFORMAT, "e.weight: expected I8");
  const repl no_w = {"e.weight", LB_DTYPE_COUNT, 0, {0}, NULL, 0};
  expect_fail(good, &no_w, "e", LB_ENOTFOUND, "e.weight: tensor is missing");
  const repl bias = {"e.bias", LB_F32, 1, {8}, f32, 32};
  expect_fail(good, &bias, "e", LB_EFORMAT, "e.bias: expected F32 [7]");
  const repl bias_i32 = {"m.bias", LB_I32, 1, {7}, f32, 28};
  expect_fail(good, &bias_i32, "m", LB_EFORMAT, "m.bias");
  /* weight_format absent (older files) is "row" */
  const repl no_fmt = {"e.weight_format", LB_DTYPE_COUNT, 0, {0}, NULL, 0};
  lb_tensors *t = variant(good, &no_fmt);
  lb_qweight q;
  lb_error err = {0};
  lb_dtype dt;
  CHECK_OK(lb_bnb_read(t, "e", &q, &dt, &err), &err);
  CHECK(dt == LB_F16 && q.kind == LB_QK_INT8ROW && q.rows == 7 && q.cols == 129);
  lb_qweight_free(&q);
  lb_tensors_close(t);
  lb_tensors_close(good);
}

/* ---- the LLM.int8 matmul reference -------------------------------------------------------------- */

static void test_int8_linear(void) {
  enum { R = 9, C = 40, N = 3 };
  float *w = make_w(R, C), x[N * C], y[N * R];
  for (int i = 0; i < N * C; i++) x[i] = frand();
  lb_qweight q;
  lb_error err = {0};
  CHECK_OK(lb_int8_quantize(w, R, C, 6.0f, "lin", &q, &err), &err);
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) x[1 * C + 5] = 10.0f, x[2 * C + 7] = -6.0f; /* outlier columns 5 and 7 */
    CHECK_OK(lb_int8_linear_ref(&q, x, N, y, &err), &err);
    for (int n = 0; n < N; n++) {
      /* the activation's int8 error is <= SCA / 254 per element (SCA: row absmax over values
       * below the threshold), so |y - x Wd^T| <= SCA / 254 * sum |Wd| over non-outlier columns;
       * plus fp32 accumulation (1e-5 of sum |x||Wd|) */
      float sca = 0;
      for (int c = 0; c < C; c++)
        if (fabsf(x[n * C + c]) < 6.0f) sca = fmaxf(sca, fabsf(x[n * C + c]));
      for (int r = 0; r < R; r++) {
        double ref = 0, bound = 0, mag = 0;
        for (int c = 0; c < C; c++) {
          double wd = (int8_t)q.q[r * C + c] * (double)q.scale[r] / 127.0;
          bool out = pass == 1 && (c == 5 || c == 7);
          ref += x[n * C + c] * wd, mag += fabs(x[n * C + c] * wd);
          if (!out) bound += fabs(wd) * sca / 254.0;
        }
        CHECK_MSG(fabs(y[n * R + r] - ref) <= bound + 1e-5 * mag + 1e-7, "pass %d y[%d,%d] = %g vs "
                  "%g (bound %g)", pass, n, r, (double)y[n * R + r], ref, bound);
      }
    }
  }
  /* only outlier columns nonzero: the fp32 path alone, bitsandbytes' dequantization exactly */
  memset(x, 0, sizeof x);
  x[C + 5] = 7.0f;
  CHECK_OK(lb_int8_linear_ref(&q, x, N, y, &err), &err);
  for (int r = 0; r < R; r++) {
    float wd = (float)(int8_t)q.q[r * C + 5] * q.scale[r] * 7.874015718698502e-3f;
    CHECK(y[R + r] == 7.0f * wd && y[r] == 0.0f);
  }
  lb_qweight_free(&q);
  free(w);
}

/* The int8 kernels of every ISA this CPU has equal the scalar references bit for bit. */
static void test_int8_kernels(void) {
  static const char *isa[] = {"ref", "avx2", "avx512"};
  const lb_kernels *ref = lb_cpu_kernels_isa("ref");
  enum { LD = 301 };
  int16_t w[4 * LD], x[4 * LD];
  float xf[40 * LD], wf[4 * 40];
  for (int i = 0; i < 4 * LD; i++)
    w[i] = (int16_t)(frand() * 127.5f), x[i] = (int16_t)(frand() * 127.5f);
  for (int i = 0; i < 40 * LD; i++) xf[i] = 8.0f * frand();
  for (int i = 0; i < 4 * 40; i++) wf[i] = frand();
  for (size_t s = 0; s < sizeof isa / sizeof isa[0]; s++) {
    const lb_kernels *k = lb_cpu_kernels_isa(isa[s]);
    if (!k) continue;
    for (int64_t n = 0; n <= LD; n += n < 40 ? 1 : 37)
      for (int nx = 1; nx <= 4; nx++) {
        int32_t a[16], b[16];
        k->dot_s16x4(w, LD, x, LD, nx, n, a);
        ref->dot_s16x4(w, LD, x, LD, nx, n, b);
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < nx; j++)
            CHECK_MSG(a[i * 4 + j] == b[i * 4 + j], "%s dot_s16x4 n=%lld nx=%d", isa[s], (long long)n, nx);
      }
    for (int64_t n = 0; n <= LD; n += n < 70 ? 1 : 29)
      for (int na = 1; na <= 4; na++)
        for (int64_t nk = 0; nk <= 40; nk += 13) {
          static float fa[4 * LD], fb[4 * LD];
          k->sums_f32x4(fa, LD, xf, LD, wf, 40, na, nk, n);
          ref->sums_f32x4(fb, LD, xf, LD, wf, 40, na, nk, n);
          for (int a = 0; a < na; a++)
            CHECK_MSG(!memcmp(fa + a * LD, fb + a * LD, (size_t)n * sizeof(float)),
                      "%s sums_f32x4 n=%lld na=%d nk=%lld", isa[s], (long long)n, na, (long long)nk);
        }
  }
}

/* lb_linear on an LB_QK_INT8ROW weight (the runtime's threaded LLM.int8) equals lb_int8_linear_ref
 * bit for bit, over odd shapes, 1..600 activation rows, threshold 0 and 6, planted outlier columns
 * or none, bias or none, 1 and 2 threads; and is within the int8 activation-rounding bound of the
 * float64 x . W_deq^T. */
static void test_int8_runtime(void) {
  static const int64_t RC[] = {1, 7, 129}, NX[] = {1, 3, 4, 5, 7, 64, 600};
  lb_error err = {0};
  for (int threads = 1; threads <= 2; threads++) {
    lb_pool *pool = NULL;
    CHECK_OK(lb_pool_new(threads, &pool, &err), &err);
    if (!pool) return;
    for (size_t ri = 0; ri < 3; ri++)
      for (size_t ci = 0; ci < 3; ci++)
        for (size_t ni = 0; ni < sizeof NX / sizeof NX[0]; ni++)
          for (int var = 0; var < 8; var++) {
            const int64_t rows = RC[ri], cols = RC[ci], n = NX[ni];
            const float thr = var & 1 ? 6.0f : 0.0f;
            const bool plant = var & 2, with_bias = var & 4;
            float *w = make_w(rows, cols), *x = malloc((size_t)(n * cols) * sizeof *x);
            float *y = malloc((size_t)(n * rows) * sizeof *y), *yr = malloc((size_t)(n * rows) * sizeof *yr);
            float *bias = malloc((size_t)rows * sizeof *bias);
            for (int64_t i = 0; i < n * cols; i++) x[i] = 2.5f * frand();
            for (int64_t r = 0; r < rows; r++) bias[r] = frand();
            if (plant) /* outliers in columns 0 and 5 (when there), one exactly at the threshold, one just
                        * below it; the rest of those columns stays small */
              for (int64_t i = 0; i < n; i += 3) {
                x[i * cols] = (i & 1 ? -1.0f : 1.0f) * (i % 2 ? 6.0f : 9.5f + frand());
                if (cols > 5) x[i * cols + 5] = i % 6 ? 5.99f : -40.0f;
                if (cols > 6 && i + 1 < n) x[(i + 1) * cols + 6] = -6.0f;
              }
            lb_qweight q;
            CHECK_OK(lb_int8_quantize(w, rows, cols, thr, "lin", &q, &err), &err);
            char label[128];
            snprintf(label, sizeof label, "[%lld x %lld] n=%lld thr=%g %s%s, %d threads", (long long)rows,
                     (long long)cols, (long long)n, (double)thr, plant ? "outliers" : "no outliers",
                     with_bias ? ", bias" : "", threads);
            if (with_bias) q.bias = bias;
            CHECK_OK(lb_int8_linear_ref(&q, x, n, yr, &err), &err);
            lb_mat m = {.dtype = LB_F32, .rows = rows, .cols = cols, .qw = &q};
            /* the bias as the argument (as the model passes it; qw->bias NULL), then as qw->bias with
             * a NULL argument, then both: added once in every case */
            for (int how = 0; how < (with_bias ? 3 : 1); how++) {
              q.bias = how >= 1 ? bias : NULL;
              memset(y, 0xff, (size_t)(n * rows) * sizeof *y);
              CHECK_OK(lb_linear(pool, &m, with_bias && how != 1 ? bias : NULL, x, n, y, &err), &err);
              CHECK_MSG(!memcmp(y, yr, (size_t)(n * rows) * sizeof *y), "%s (bias case %d): lb_linear "
                        "differs from lb_int8_linear_ref", label, how);
            }
            q.bias = NULL;
            /* float64: the int8 path rounds each non-outlier activation to a multiple of SCA / 127, an
             * error <= SCA / 254 (half a step; |x| <= SCA there, so no clamping), which moves the
             * output by at most sum |Wd| * SCA / 254 over the non-outlier columns; Wd = q * SCB / 127
             * is exact in both. On top: int8_mm_dequant's constant 6.200124e-05 is 1.8e-5 above
             * 1 / 127^2 and three fp32 roundings (< 2e-5 relative to the int8 part), and the fp32
             * outlier sum of nout terms plus the bias and final adds ((nout + 6) ulps of the
             * magnitude |b| + sum (|x| + SCA / 254) |Wd|). */
            bool *outl = calloc((size_t)cols, 1);
            int64_t nout = 0;
            for (int64_t c = 0; c < cols; c++) {
              for (int64_t i = 0; thr > 0 && i < n; i++) outl[c] |= fabsf(x[i * cols + c]) >= thr;
              nout += outl[c];
            }
            for (int64_t i = 0; i < n; i++) {
              const float *xr = x + i * cols;
              double sca = 0;
              for (int64_t c = 0; c < cols; c++)
                if (!(thr > 0 && fabsf(xr[c]) >= thr)) sca = fmax(sca, fabs((double)xr[c]));
              for (int64_t r = 0; r < rows; r++) {
                double ref = with_bias ? bias[r] : 0, act = 0, mag = with_bias ? fabs(bias[r]) : 0;
                for (int64_t c = 0; c < cols; c++) {
                  double wd = (int8_t)q.q[r * cols + c] * (double)q.scale[r] / 127.0;
                  ref += xr[c] * wd;
                  mag += (fabs(xr[c]) + sca / 254) * fabs(wd);
                  if (!outl[c]) act += fabs(wd) * sca / 254;
                }
                double got = y[i * rows + r], bound = act + (2e-5 + (double)(nout + 6) * 0x1p-24) * mag;
                CHECK_MSG(fabs(got - ref) <= bound, "%s: y[%lld, %lld] = %.9g, float64 %.9g, bound %g",
                          label, (long long)i, (long long)r, got, ref, bound);
              }
            }
            free(outl);
            lb_qweight_free(&q);
            free(w), free(x), free(y), free(yr), free(bias);
          }
    lb_pool_free(pool);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s OUTDIR [tests]\n", argv[0]);
    return 2;
  }
  OUT = argv[1];
  static const lb_test_case cases[] = {
      {"trees", test_trees},           {"py_float", test_py_float},
      {"roundtrip", test_roundtrip},   {"nan_refused", test_nan_refused},
      {"zero_blocks", test_zero_blocks}, {"hostile4", test_hostile4},
      {"hostile8", test_hostile8},     {"int8_linear", test_int8_linear},
      {"int8_kernels", test_int8_kernels}, {"int8_runtime", test_int8_runtime},
  };
  argv[1] = argv[0];
  return lb_test_main(argc - 1, argv + 1, cases, sizeof cases / sizeof cases[0]);
}
