/* HQQ: bit packing, reconstruction error against plain min/max RTN (random and real weights), round
 * trips through the HQQLinear state_dict layout, hostile files, config JSON. Writes source weights
 * and fp32 checkpoints to argv[1] (one folder per case + cases.txt) for tests/py/quant_hqq_ref.py,
 * which runs an independent numpy port of hqq's quantize + optimize_weights_proximal on them. */
#include <sys/stat.h>

#include "io/json.h"
#include "quant/hqq.h"
#include "test.h"

static const char *OUT;
static uint64_t rng = 0x13198A2E03707344ull;
static float frand(void) { /* [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}
/* Roughly Gaussian with a few outliers, like trained Linear weights. */
static float *rand_w(int64_t n) {
  float *w = malloc((size_t)n * sizeof *w);
  for (int64_t i = 0; i < n; i++) {
    float g = (frand() + frand() + frand() + frand()) * 0.03f;
    w[i] = (i % 97 == 0) ? g * 6.0f : g;
  }
  return w;
}

/* A bf16 Linear of the shared pocket-llama checkpoint, widened to fp32 (NULL on failure). */
static float *real_w(const char *name, int64_t *rows, int64_t *cols) {
  lb_error err = {0};
  lb_tensors *t = NULL;
  CHECK_OK(lb_tensors_open(lb_test_shared("models/pocket-llama-48m"), &t, &err), &err);
  if (!t) return NULL;
  const lb_tensor *x = lb_tensors_find(t, name);
  CHECK(x && x->dtype == LB_BF16 && x->ndim == 2);
  float *w = NULL;
  if (x && x->dtype == LB_BF16 && x->ndim == 2) {
    *rows = x->shape[0], *cols = x->shape[1];
    w = malloc((size_t)x->numel * sizeof *w);
    for (uint64_t i = 0; i < x->numel; i++) {
      uint16_t h;
      memcpy(&h, (const char *)x->data + 2 * i, 2);
      w[i] = lb_bf16_to_f32(h);
    }
  }
  lb_tensors_close(t);
  return w;
}

static void packing(void) {
  int bits[5] = {8, 4, 3, 2, 1};
  int64_t ns[3] = {40, 24, 80}, g = 6;
  for (int b = 0; b < 5; b++)
    for (int i = 0; i < 3; i++) {
      int64_t n = ns[i];
      if (bits[b] != 3 && n % (8 / bits[b])) continue;
      uint8_t *c = malloc((size_t)(n * g)), *back = calloc((size_t)(n * g), 1);
      int32_t *p = calloc((size_t)(lb_hqq_packed_rows(n, bits[b]) * g), 4);
      for (int64_t k = 0; k < n * g; k++) c[k] = (uint8_t)((k * 7 + 3) % (1 << bits[b]));
      lb_hqq_pack(c, n, g, bits[b], p);
      lb_hqq_unpack(p, n, g, bits[b], back);
      CHECK_MSG(!memcmp(c, back, (size_t)(n * g)), "%d bits, %lld rows", bits[b], (long long)n);
      free(c), free(back), free(p);
    }
  /* "4bit_u8": row i in the high nibble, row i + n/2 in the low one */
  uint8_t c4[4] = {0xA, 0x1, 0x5, 0xF}, p4[2];
  lb_hqq_pack(c4, 4, 1, 4, p4);
  CHECK(p4[0] == 0xA5 && p4[1] == 0x1F);
  /* "3bit_32": 12 rows pad to 20, 2 rows per slice; row 2 (slice 1) sits at bit 24 of word 0 */
  uint8_t c3[12] = {0}, b3[12];
  int32_t p3[2];
  c3[0] = 5, c3[2] = 7, c3[11] = 3; /* row 11: slice 5, word 1, shift 12 */
  lb_hqq_pack(c3, 12, 1, 3, p3);
  CHECK(p3[0] == (5 << 27 | 7 << 24) && p3[1] == 3 << 12);
  lb_hqq_unpack(p3, 12, 1, 3, b3);
  CHECK(!memcmp(c3, b3, 12));
  uint8_t c1[8] = {1, 0, 0, 0, 0, 0, 0, 1}, p1;
  lb_hqq_pack(c1, 8, 1, 1, &p1);
  CHECK(p1 == 0x81);
}

static double err_l1(const lb_qweight *q, const float *w) {
  float *row = malloc((size_t)q->cols * sizeof *row);
  double e = 0;
  for (int64_t r = 0; r < q->rows; r++) {
    lb_qweight_dequant_row(q, r, row);
    for (int64_t c = 0; c < q->cols; c++) e += fabs((double)row[c] - w[r * q->cols + c]);
  }
  free(row);
  return e / (double)(q->rows * q->cols);
}

/* HQQ minimizes an lp (p < 1) reconstruction loss and its early stop watches the mean |W - W_r|, so
 * that is the error compared with RTN (same min/max start, no solver, no zero rounding). */
static void beats_rtn_on(const char *label, const float *w, int64_t rows, int64_t cols) {
  lb_error err = {0};
  int bits[2] = {4, 3};
  for (int b = 0; b < 2; b++) {
    lb_qweight h, r;
    lb_hqq_opts rtn = lb_hqq_default_opts(bits[b]);
    rtn.optimize = false, rtn.round_zero = false;
    CHECK_OK(lb_hqq_quantize(w, rows, cols, bits[b], 64, 1, &h, &err), &err);
    CHECK_OK(lb_hqq_quantize_ex(w, rows, cols, bits[b], 64, 1, &rtn, &r, &err), &err);
    if (!h.q || !r.q) return;
    CHECK(lb_qweight_check(&h, label, &err) == LB_OK);
    double eh = err_l1(&h, w), er = err_l1(&r, w);
    printf("  %s %d-bit g64: mean |W - W_r| hqq %.4g, rtn %.4g (%.1f%% lower)\n", label, bits[b],
           eh, er, 100.0 * (1.0 - eh / er));
    CHECK_MSG(eh < er, "%s %d bits: hqq %g >= rtn %g", label, bits[b], eh, er);
    lb_qweight_free(&h);
    lb_qweight_free(&r);
  }
}

static void beats_rtn(void) {
  float *w = rand_w(256 * 512);
  beats_rtn_on("random [256, 512]", w, 256, 512);
  free(w);
  int64_t rows = 0, cols = 0;
  const char *names[2] = {"model.layers.0.self_attn.q_proj.weight",
                          "model.layers.1.mlp.down_proj.weight"};
  for (int i = 0; i < 2; i++) {
    w = real_w(names[i], &rows, &cols);
    if (w) beats_rtn_on(names[i], w, rows, cols);
    free(w);
  }
}

static bool same_codes(const lb_qweight *a, const lb_qweight *b) {
  return a->rows == b->rows && a->cols == b->cols && a->group == b->group && a->bits == b->bits &&
         !memcmp(a->q, b->q, (size_t)(a->rows * a->cols));
}

static float via(float x, lb_dtype d) {
  return d == LB_BF16  ? lb_bf16_to_f32(lb_f32_to_bf16(x))
         : d == LB_F16 ? lb_f16_to_f32(lb_f32_to_f16(x))
                       : x;
}

/* Writes <dir>/model.safetensors with "src" and the layer "layer", reads it back and compares. */
static void write_read(const char *dir, const float *w, int64_t rows, int64_t cols, int nbits,
                       int64_t gs, lb_dtype cdt) {
  lb_error err = {0};
  mkdir(dir, 0755);
  lb_qweight q, back = {0};
  CHECK_OK(lb_hqq_quantize(w, rows, cols, nbits, gs, 1, &q, &err), &err);
  if (!q.q) return;
  q.bias = malloc((size_t)rows * sizeof(float));
  for (int64_t r = 0; r < rows; r++) q.bias[r] = frand();
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  int64_t shape[2] = {rows, cols};
  CHECK_OK(lb_st_writer_add(wr, "src", LB_F32, 2, shape, w, (uint64_t)(rows * cols) * 4, &err),
           &err);
  CHECK_OK(lb_hqq_write(wr, "layer", &q, cdt, NULL, &err), &err);
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  lb_tensors *t;
  CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
  CHECK_OK(lb_hqq_read(t, "layer", &back, &err), &err);
  CHECK_MSG(back.q && same_codes(&q, &back), "%s: codes differ", dir);
  int bad = 0;
  for (int64_t i = 0; back.q && i < lb_qweight_nscales(&q); i++)
    bad += back.scale[i] != via(q.scale[i], cdt) || back.zero[i] != via(q.zero[i], cdt);
  for (int64_t r = 0; back.bias && r < rows; r++) bad += back.bias[r] != via(q.bias[r], cdt);
  CHECK_MSG(bad == 0 && back.bias, "%s: %d scale/zero/bias values differ", dir, bad);
  lb_tensors_close(t);
  lb_qweight_free(&back);
  lb_qweight_free(&q);
}

static void layouts(void) {
  char path[1024], dir[1100];
  snprintf(path, sizeof path, "%s/cases.txt", OUT);
  FILE *m = fopen(path, "w");
  CHECK(m != NULL);
  if (!m) return;
  static const struct {
    const char *name;
    int nbits;
    int64_t gs, rows, cols;
  } cases[] = {{"rand_8b_g128", 8, 128, 64, 256},
               {"rand_4b_g64", 4, 64, 96, 256},
               {"rand_3b_g64", 3, 64, 72, 192},
               {"rand_2b_g16", 2, 16, 64, 128},
               {"rand_1b_g8", 1, 8, 64, 64}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    float *w = rand_w(cases[i].rows * cases[i].cols);
    snprintf(dir, sizeof dir, "%s/%s", OUT, cases[i].name);
    write_read(dir, w, cases[i].rows, cases[i].cols, cases[i].nbits, cases[i].gs, LB_F32);
    fprintf(m, "%s %d %lld\n", cases[i].name, cases[i].nbits, (long long)cases[i].gs);
    snprintf(dir, sizeof dir, "%s/tmp_%s_bf16", lb_test_tmpdir(), cases[i].name);
    write_read(dir, w, cases[i].rows, cases[i].cols, cases[i].nbits, cases[i].gs, LB_BF16);
    free(w);
  }
  int64_t rows = 0, cols = 0;
  float *w = real_w("model.layers.0.self_attn.k_proj.weight", &rows, &cols);
  if (w) {
    snprintf(dir, sizeof dir, "%s/real_4b_g64", OUT);
    write_read(dir, w, rows, cols, 4, 64, LB_F32);
    fprintf(m, "real_4b_g64 4 64\n");
    snprintf(dir, sizeof dir, "%s/real_3b_g64", OUT);
    write_read(dir, w, rows, cols, 3, 64, LB_F32);
    fprintf(m, "real_3b_g64 3 64\n");
    snprintf(dir, sizeof dir, "%s/tmp_real_f16", lb_test_tmpdir());
    write_read(dir, w, rows, cols, 4, 64, LB_F16);
  }
  free(w);
  fclose(m);
}

/* Writes a valid 4-bit layer, then rewrites it with tensor `key` replaced by (dt, shape, data). */
static lb_status tampered(const char *key, lb_dtype dt, int ndim, const int64_t *shape,
                          const void *data, uint64_t nbytes, lb_error *err) {
  static int n;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/hostile%d", lb_test_tmpdir(), n++);
  mkdir(dir, 0755);
  float w[16 * 32];
  for (int i = 0; i < 16 * 32; i++) w[i] = frand();
  lb_qweight q;
  LB_TRY(lb_hqq_quantize(w, 16, 32, 4, 16, 1, &q, err));
  /* write everything to a scratch writer first, then copy all but `key` */
  char dir0[1100];
  snprintf(dir0, sizeof dir0, "%s.src", dir);
  mkdir(dir0, 0755);
  lb_st_writer *w0, *w1;
  LB_TRY(lb_st_writer_open(dir0, 0, &w0, err));
  LB_TRY(lb_hqq_write(w0, "m", &q, LB_BF16, NULL, err));
  LB_TRY(lb_st_writer_finish(w0, err));
  lb_qweight_free(&q);
  lb_tensors *t0, *t;
  LB_TRY(lb_tensors_open(dir0, &t0, err));
  LB_TRY(lb_st_writer_open(dir, 0, &w1, err));
  char full[256];
  snprintf(full, sizeof full, "m.%s", key);
  for (size_t i = 0; i < lb_tensors_count(t0); i++) {
    const lb_tensor *x = lb_tensors_at(t0, i);
    if (strcmp(x->name, full))
      lb_st_writer_add(w1, x->name, x->dtype, x->ndim, x->shape, x->data, x->nbytes, err);
  }
  if (data) lb_st_writer_add(w1, full, dt, ndim, shape, data, nbytes, err);
  lb_tensors_close(t0);
  LB_TRY(lb_st_writer_finish(w1, err));
  LB_TRY(lb_tensors_open(dir, &t, err));
  lb_qweight back = {0};
  lb_status s = lb_hqq_read(t, "m", &back, err);
  lb_qweight_free(&back);
  lb_tensors_close(t);
  return s;
}

static void hostile(void) {
  lb_error err = {0};
  int32_t zero = 0, three = 3;
  int64_t s8[2] = {8, 32}, s1[2] = {32, 1}, wrong1[2] = {16, 2}, n7 = 7;
  uint8_t buf[512] = {0};
  CHECK(tampered("none", LB_U8, 0, NULL, NULL, 0, &err) == LB_OK);
  CHECK(tampered("axis", LB_I32, 0, NULL, &zero, 4, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "m.axis"));
  CHECK(tampered("nbits", LB_I32, 0, NULL, &three, 4, &err) == LB_EFORMAT); /* packing disagrees */
  CHECK(strstr(err.msg, "'m.packing'"));
  CHECK(tampered("packing", LB_U8, 1, &n7, "4bit_32", 7, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.packing'"));
  CHECK(tampered("W_q", LB_U8, 2, s8, buf, 256, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.W_q'") && strstr(err.msg, "[8, 32]"));
  CHECK(tampered("scale", LB_BF16, 2, wrong1, buf, 64, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.scale'") && strstr(err.msg, "[16, 2]"));
  CHECK(tampered("zero", LB_I32, 2, s1, buf, 128, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.zero'") && strstr(err.msg, "I32"));
  CHECK(tampered("shape", LB_U8, 0, NULL, NULL, 0, &err) == LB_ENOTFOUND);
  CHECK(strstr(err.msg, "'m.shape'"));
  float nanv[32];
  for (int i = 0; i < 32; i++) nanv[i] = NAN;
  CHECK(tampered("scale", LB_F32, 2, s1, nanv, 128, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "m:") && strstr(err.msg, "not finite"));

  /* the quantizer's own refusals */
  float w[4 * 64] = {0};
  lb_qweight q;
  CHECK(lb_hqq_quantize(w, 4, 64, 4, 64, 0, &q, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "axis 0"));
  CHECK(lb_hqq_quantize(w, 4, 64, 4, 48, 1, &q, &err) == LB_EUNSUPPORTED);
  CHECK(lb_hqq_quantize(w, 4, 64, 5, 64, 1, &q, &err) == LB_EINVAL);
  w[70] = NAN;
  CHECK(lb_hqq_quantize(w, 4, 64, 4, 64, 1, &q, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "[1, 6]") && strstr(err.msg, "NaN"));
  w[70] = 0;
  /* a flat group (|max - min| <= 1e-4): inverse scale 1, every (zero) weight exact */
  CHECK_OK(lb_hqq_quantize(w, 4, 64, 4, 64, 1, &q, &err), &err);
  CHECK(q.q && q.scale[0] == 1.0f && err_l1(&q, w) == 0.0);
  lb_qweight_free(&q);
}

static void config(void) {
  lb_error err = {0};
  const char *skip[] = {"lm_head"};
  char *s = NULL;
  CHECK_OK(lb_hqq_config(4, 64, NULL, skip, 1, &s, &err), &err);
  json_t *j = NULL;
  CHECK_OK(lb_json_parse(s, strlen(s), "hqq config", &j, &err), &err);
  json_t *wp = json_object_get(json_object_get(j, "quant_config"), "weight_quant_params");
  CHECK(!strcmp(json_string_value(json_object_get(j, "quant_method")), "hqq"));
  CHECK(json_integer_value(json_object_get(wp, "nbits")) == 4);
  CHECK(json_integer_value(json_object_get(wp, "group_size")) == 64);
  CHECK(json_integer_value(json_object_get(wp, "axis")) == 1);
  CHECK(json_is_true(json_object_get(wp, "round_zero")) &&
        json_is_true(json_object_get(wp, "optimize")));
  CHECK(
      !strcmp(json_string_value(json_array_get(json_object_get(j, "skip_modules"), 0)), "lm_head"));
  json_decref(j);
  free(s);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_quant_hqq OUTDIR\n");
    return 2;
  }
  OUT = argv[1];
  mkdir(OUT, 0755);
  static const lb_test_case cases[] = {
      {"packing", packing}, {"beats_rtn", beats_rtn}, {"layouts", layouts},
      {"hostile", hostile}, {"config", config},
  };
  return lb_test_main(1, argv, cases, sizeof cases / sizeof *cases);
}
