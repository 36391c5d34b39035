/* The AutoAWQ layout ("gemm" and "gemv"): round trips of RTN weights and of hand-made zero points
 * spanning 0..15, the gemv zero-width padding, refusals on write and malformed files on read. Writes
 * its inputs (codes, F16-rounded scales, zeros, bias) and both checkpoints to argv[1] for
 * tests/py/quant_awq_ref.py, which checks them against a numpy implementation of AutoAWQ's packing. */
#include <sys/stat.h>

#include "io/fs.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "test.h"

static const char *OUT;
static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) { /* [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}

/* Keep in sync with LAYERS in tests/py/quant_awq_ref.py. */
static const struct {
  const char *name;
  int64_t rows, cols, group;
  bool bias, spread; /* spread: hand-made zeros 0..15 instead of RTN */
} L[] = {
    {"m.a", 256, 384, 128, true, false}, /* gemv: G 3 -> 1 zero word, 5 padding scales */
    {"m.b", 96, 256, 64, false, false},  /* gemv: G 4 -> 2 words (group 64 doubles the width) */
    {"m.c", 128, 512, 32, true, false},  /* gemv: G 16 -> 4 words, 2 of them padding */
    {"m.d", 64, 128, 128, false, false}, /* one group per row */
    {"m.e", 64, 1024, 64, true, false},  /* gemv: G 16 -> 2 words, no padding */
    {"m.z", 32, 256, 64, true, true},    /* zeros 0..15, every code */
};
enum { NL = sizeof L / sizeof L[0] };

static void make_layer(size_t i, lb_qweight *q) {
  lb_error err = {0};
  int64_t R = L[i].rows, C = L[i].cols;
  rng = 77 + i;
  if (L[i].spread) {
    *q = (lb_qweight){.kind = LB_QK_AFFINE, .rows = R, .cols = C, .bits = 4, .group = L[i].group};
    CHECK_OK(lb_qweight_alloc(q, false, L[i].bias, &err), &err);
    for (int64_t k = 0; k < R * C; k++) q->q[k] = (uint8_t)((k * 7 + k / C) % 16);
    for (int64_t k = 0; k < R * q->ngroups; k++) {
      q->zero[k] = (float)((k * 5 + k / 16) % 16);
      q->scale[k] = 0.001f + 0.01f * (float)(k % 13) + 0.003f * (frand() + 1);
    }
  } else {
    float *w = malloc((size_t)(R * C) * 4);
    for (int64_t k = 0; k < R * C; k++) w[k] = frand() * 0.02f * (1 + (k % 5));
    w[3] = 0.5f, w[C + 17] = -0.7f, w[R * C - 1] = 0.9f; /* outliers */
    for (int64_t c = 0; c < C; c++) w[2 * C + c] = fabsf(w[2 * C + c]) + 0.01f; /* row 2 >= 0: zero 0 */
    CHECK_OK(lb_rtn_quantize(w, R, C, 4, L[i].group, false, L[i].name, q, &err), &err);
    free(w);
    if (L[i].bias) {
      q->bias = malloc((size_t)R * 4);
      for (int64_t o = 0; o < R; o++) q->bias[o] = frand() * 0.5f;
    }
  }
}

static void write_inputs(lb_st_writer *ws, size_t i, const lb_qweight *q) {
  lb_error err = {0};
  char n[256];
  int64_t R = q->rows, C = q->cols, G = q->ngroups;
  float *s = malloc((size_t)(R * G) * 4);
  for (int64_t k = 0; k < R * G; k++) s[k] = lb_f16_to_f32(lb_f32_to_f16(q->scale[k]));
  int64_t sq[2] = {R, C}, sg[2] = {R, G}, sb[1] = {R};
  snprintf(n, sizeof n, "src.%s.q", L[i].name);
  CHECK_OK(lb_st_writer_add(ws, n, LB_U8, 2, sq, q->q, (size_t)(R * C), &err), &err);
  snprintf(n, sizeof n, "src.%s.scale", L[i].name);
  CHECK_OK(lb_st_writer_add(ws, n, LB_F32, 2, sg, s, (size_t)(R * G) * 4, &err), &err);
  snprintf(n, sizeof n, "src.%s.zero", L[i].name);
  CHECK_OK(lb_st_writer_add(ws, n, LB_F32, 2, sg, q->zero, (size_t)(R * G) * 4, &err), &err);
  if (q->bias) {
    for (int64_t o = 0; o < R; o++) s[o] = lb_f16_to_f32(lb_f32_to_f16(q->bias[o]));
    snprintf(n, sizeof n, "src.%s.bias", L[i].name);
    CHECK_OK(lb_st_writer_add(ws, n, LB_F32, 1, sb, s, (size_t)R * 4, &err), &err);
  }
  free(s);
}

static void zeros_width(void) {
  static const int64_t T[][3] = {{384, 128, 1},  {256, 64, 2},   {512, 32, 4},   {1024, 64, 2},
                                 {4096, 128, 4}, {11008, 128, 11}, {4096, 32, 16}, {96, 32, 4},
                                 {8192, 256, 4}, {256, 16, -1},  {256, 96, -1}};
  for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
    CHECK_MSG(lb_awq_gemv_zeros_width(T[i][0], T[i][1]) == T[i][2], "in %lld group %lld: %lld",
              (long long)T[i][0], (long long)T[i][1],
              (long long)lb_awq_gemv_zeros_width(T[i][0], T[i][1]));
}

static void round_trip(void) {
  lb_error err = {0};
  lb_qweight qs[NL];
  char src[600];
  snprintf(src, sizeof src, "%s/source", OUT);
  mkdir(src, 0755);
  lb_st_writer *ws;
  CHECK_OK(lb_st_writer_open(src, 0, &ws, &err), &err);
  for (size_t i = 0; i < NL; i++) {
    make_layer(i, &qs[i]);
    write_inputs(ws, i, &qs[i]);
  }
  CHECK_OK(lb_st_writer_finish(ws, &err), &err);
  /* the test data must reach both ends of the zero range, and the spread layer every code */
  bool z0 = false, z15 = false, rtn_z0 = false;
  for (size_t i = 0; i < NL; i++)
    for (int64_t k = 0; k < qs[i].rows * qs[i].ngroups; k++) {
      z0 |= qs[i].zero[k] == 0, z15 |= qs[i].zero[k] == 15;
      rtn_z0 |= !L[i].spread && qs[i].zero[k] == 0;
    }
  CHECK(z0 && z15 && rtn_z0);

  for (int v = 0; v < 2; v++) {
    lb_awq_version ver = v ? LB_AWQ_GEMV : LB_AWQ_GEMM;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", OUT, v ? "gemv" : "gemm");
    mkdir(dir, 0755);
    lb_st_writer *wr;
    CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
    for (size_t i = 0; i < NL; i++) CHECK_OK(lb_awq_write(wr, L[i].name, &qs[i], ver, &err), &err);
    CHECK_OK(lb_st_writer_finish(wr, &err), &err);
    lb_tensors *t;
    CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
    for (size_t i = 0; t && i < NL; i++) {
      const lb_qweight *q = &qs[i];
      int64_t R = q->rows, C = q->cols, G = q->ngroups;
      /* shapes as AutoAWQ allocates them */
      char n[256];
      snprintf(n, sizeof n, "%s.qzeros", L[i].name);
      const lb_tensor *qz = lb_tensors_find(t, n);
      snprintf(n, sizeof n, "%s.scales", L[i].name);
      const lb_tensor *sc = lb_tensors_find(t, n);
      snprintf(n, sizeof n, "%s.qweight", L[i].name);
      const lb_tensor *qw = lb_tensors_find(t, n);
      CHECK(qw && qz && sc);
      if (!qw || !qz || !sc) continue;
      int64_t Z = lb_awq_gemv_zeros_width(C, L[i].group);
      if (!v) {
        CHECK(qw->shape[0] == C && qw->shape[1] == R / 8 && qz->shape[0] == G && qz->shape[1] == R / 8);
        CHECK(sc->shape[0] == G && sc->shape[1] == R && sc->dtype == LB_F16);
      } else {
        CHECK(qw->shape[0] == R && qw->shape[1] == C / 8 && qz->shape[0] == R && qz->shape[1] == Z);
        CHECK(sc->shape[0] == R && sc->shape[1] == Z * 8 && sc->dtype == LB_F16);
      }
      for (int pc = 0; pc < 2; pc++) { /* the configured group, and -1 where it means the same */
        if (pc && L[i].group != C) continue;
        lb_qweight b;
        lb_status s = lb_awq_read(t, L[i].name, 4, pc ? -1 : L[i].group, ver, &b, &err);
        CHECK_OK(s, &err);
        if (s != LB_OK) continue;
        CHECK(b.kind == LB_QK_AFFINE && b.bits == 4 && b.rows == R && b.cols == C &&
              b.group == q->group && b.ngroups == G && !b.g_idx);
        CHECK_MSG(!memcmp(b.q, q->q, (size_t)(R * C)), "%s %s: codes", L[i].name, dir);
        for (int64_t k = 0; k < R * G; k++) {
          CHECK_MSG(b.zero[k] == q->zero[k], "%s zero %lld: %g vs %g", L[i].name, (long long)k,
                    b.zero[k], q->zero[k]);
          CHECK(b.scale[k] == lb_f16_to_f32(lb_f32_to_f16(q->scale[k])));
        }
        CHECK((b.bias != NULL) == (q->bias != NULL));
        for (int64_t o = 0; b.bias && q->bias && o < R; o++)
          CHECK(b.bias[o] == lb_f16_to_f32(lb_f32_to_f16(q->bias[o])));
        lb_qweight_free(&b);
      }
    }
    lb_tensors_close(t);
  }
  for (size_t i = 0; i < NL; i++) lb_qweight_free(&qs[i]);
}

static void refuse_write(void) {
  lb_error err = {0};
  char dir[600];
  snprintf(dir, sizeof dir, "%s/refused", OUT);
  mkdir(dir, 0755);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  float *w = malloc(64 * 256 * 4);
  for (int k = 0; k < 64 * 256; k++) w[k] = frand();
  lb_qweight q;
  /* 3 bits */
  CHECK_OK(lb_rtn_quantize(w, 64, 256, 3, 128, false, "x", &q, &err), &err);
  for (int v = 0; v < 2; v++)
    CHECK(lb_awq_write(wr, "layers.1.up", &q, v ? LB_AWQ_GEMV : LB_AWQ_GEMM, &err) == LB_EINVAL &&
          strstr(err.msg, "layers.1.up") && strstr(err.msg, "4-bit"));
  lb_qweight_free(&q);
  /* g_idx */
  CHECK_OK(lb_rtn_quantize(w, 64, 256, 4, 128, false, "x", &q, &err), &err);
  q.g_idx = calloc(256, 4);
  CHECK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMM, &err) == LB_EINVAL &&
        strstr(err.msg, "layers.1.up") && strstr(err.msg, "g_idx"));
  free(q.g_idx), q.g_idx = NULL;
  /* zeros: fractional, out of range */
  q.zero[5] = 2.5f;
  CHECK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMV, &err) == LB_EINVAL &&
        strstr(err.msg, "layers.1.up") && strstr(err.msg, "zero point 2.5"));
  q.zero[5] = 16;
  CHECK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMM, &err) == LB_EINVAL &&
        strstr(err.msg, "zero point 16"));
  q.zero[5] = -1;
  CHECK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMM, &err) == LB_EINVAL &&
        strstr(err.msg, "zero point -1"));
  q.zero[5] = 3;
  q.scale[7] = 1e6f; /* past F16's 65504 */
  CHECK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMM, &err) == LB_EINVAL &&
        strstr(err.msg, "F16"));
  lb_qweight_free(&q);
  /* out_features not a multiple of 8 */
  CHECK_OK(lb_rtn_quantize(w, 12, 256, 4, 128, false, "x", &q, &err), &err);
  CHECK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMM, &err) == LB_EINVAL &&
        strstr(err.msg, "layers.1.up") && strstr(err.msg, "multiple of 8"));
  lb_qweight_free(&q);
  /* a group not dividing in_features (RTN leaves a short last group) */
  CHECK_OK(lb_rtn_quantize(w, 64, 200, 4, 64, false, "x", &q, &err), &err);
  CHECK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMM, &err) == LB_EINVAL &&
        strstr(err.msg, "group size 64"));
  lb_qweight_free(&q);
  /* gemv supports groups 32, 64, >= 128 only (calculate_zeros_width); gemm takes 96 */
  CHECK_OK(lb_rtn_quantize(w, 64, 192, 4, 96, false, "x", &q, &err), &err);
  CHECK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMV, &err) == LB_EINVAL &&
        strstr(err.msg, "layers.1.up") && strstr(err.msg, "not 96"));
  CHECK_OK(lb_awq_write(wr, "layers.1.up", &q, LB_AWQ_GEMM, &err), &err);
  lb_qweight_free(&q);
  /* gemv: in_features 196 is one group of 196 (>= 128) but not a multiple of 8 */
  CHECK_OK(lb_rtn_quantize(w, 64, 196, 4, 196, false, "x", &q, &err), &err);
  CHECK(lb_awq_write(wr, "layers.2.up", &q, LB_AWQ_GEMV, &err) == LB_EINVAL &&
        strstr(err.msg, "multiple of 8"));
  lb_qweight_free(&q);
  lb_st_writer_abort(wr);
  free(w);
}

/* Hand-made gemm tensors of a [64 out, 256 in] g128 layer, one thing wrong per module. */
static void malformed(void) {
  lb_error err = {0};
  char dir[600];
  snprintf(dir, sizeof dir, "%s/malformed", OUT);
  mkdir(dir, 0755);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  static uint32_t zeros[256 * 64];
  static const struct {
    const char *module;
    int64_t qw[2], qz[2], sc[2], bias;
    lb_dtype qw_dt, sc_dt;
    bool no_zeros;
  } M[] = {
      {"ok", {256, 8}, {2, 8}, {2, 64}, 64, LB_I32, LB_F16, false},
      {"dtype", {256, 8}, {2, 8}, {2, 64}, 0, LB_F32, LB_F16, false},
      {"scdtype", {256, 8}, {2, 8}, {2, 64}, 0, LB_I32, LB_F32, false},
      {"shape", {256, 8}, {2, 8}, {2, 72}, 0, LB_I32, LB_F16, false},
      {"trunc", {256, 8}, {1, 8}, {2, 64}, 0, LB_I32, LB_F16, false},
      {"nozeros", {256, 8}, {2, 8}, {2, 64}, 0, LB_I32, LB_F16, true},
      {"bias", {256, 8}, {2, 8}, {2, 64}, 65, LB_I32, LB_F16, false},
  };
  for (size_t i = 0; i < sizeof M / sizeof M[0]; i++) {
    char n[128];
    snprintf(n, sizeof n, "%s.qweight", M[i].module);
    CHECK_OK(lb_st_writer_add(wr, n, M[i].qw_dt, 2, M[i].qw, zeros, (size_t)(M[i].qw[0] * M[i].qw[1]) * 4, &err), &err);
    if (!M[i].no_zeros) {
      snprintf(n, sizeof n, "%s.qzeros", M[i].module);
      CHECK_OK(lb_st_writer_add(wr, n, LB_I32, 2, M[i].qz, zeros, (size_t)(M[i].qz[0] * M[i].qz[1]) * 4, &err), &err);
    }
    snprintf(n, sizeof n, "%s.scales", M[i].module);
    CHECK_OK(lb_st_writer_add(wr, n, M[i].sc_dt, 2, M[i].sc, zeros,
                              (size_t)(M[i].sc[0] * M[i].sc[1]) * lb_dtype_size(M[i].sc_dt), &err), &err);
    if (M[i].bias) {
      snprintf(n, sizeof n, "%s.bias", M[i].module);
      int64_t sb[1] = {M[i].bias};
      CHECK_OK(lb_st_writer_add(wr, n, LB_F16, 1, sb, zeros, (size_t)M[i].bias * 2, &err), &err);
    }
  }
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  lb_tensors *t;
  CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
  if (!t) return;
  lb_qweight b;
  lb_status ok = lb_awq_read(t, "ok", 4, 128, LB_AWQ_GEMM, &b, &err);
  CHECK_OK(ok, &err);
  if (ok == LB_OK) {
    CHECK(b.rows == 64 && b.cols == 256 && b.ngroups == 2 && b.bias);
    lb_qweight_free(&b);
  }
  static const struct {
    const char *module, *needle;
    int bits;
    int64_t group;
    lb_awq_version v;
    lb_status code;
  } E[] = {
      {"dtype", "dtype.qweight", 4, 128, LB_AWQ_GEMM, LB_EFORMAT},
      {"scdtype", "scdtype.scales", 4, 128, LB_AWQ_GEMM, LB_EFORMAT},
      {"shape", "shape.scales", 4, 128, LB_AWQ_GEMM, LB_EFORMAT},
      {"trunc", "trunc.qzeros", 4, 128, LB_AWQ_GEMM, LB_EFORMAT},
      {"nozeros", "nozeros.qzeros", 4, 128, LB_AWQ_GEMM, LB_ENOTFOUND},
      {"bias", "bias.bias", 4, 128, LB_AWQ_GEMM, LB_EFORMAT},
      {"ok", "ok.qzeros", 4, 64, LB_AWQ_GEMM, LB_EFORMAT},     /* group 64 wants 4 zero rows */
      {"ok", "ok", 3, 128, LB_AWQ_GEMM, LB_EUNSUPPORTED},      /* 3 bits */
      {"ok", "ok.qweight", 4, 96, LB_AWQ_GEMM, LB_EFORMAT},    /* 96 does not divide 256 */
      {"ok", "ok.qweight", 4, 128, LB_AWQ_GEMV, LB_EFORMAT},   /* gemm read as gemv: in 64 */
      {"ok", "ok.qzeros", 4, -1, LB_AWQ_GEMV, LB_EFORMAT},     /* ... per row: zeros [256, 2] */
      {"ok", "ok", 4, 16, LB_AWQ_GEMV, LB_EUNSUPPORTED},       /* gemv group 16 */
      {"none", "none.qweight", 4, 128, LB_AWQ_GEMM, LB_ENOTFOUND},
  };
  for (size_t i = 0; i < sizeof E / sizeof E[0]; i++) {
    err = (lb_error){0};
    lb_status s = lb_awq_read(t, E[i].module, E[i].bits, E[i].group, E[i].v, &b, &err);
    CHECK_MSG(s == E[i].code && strstr(err.msg, E[i].needle), "%s: %s -> %s: %s", E[i].module,
              E[i].needle, lb_strerror(s), err.msg);
    /* format errors name the file as well */
    if (s == LB_EFORMAT) CHECK_MSG(strstr(err.msg, "model.safetensors") != NULL, "%s", err.msg);
    if (s == LB_OK) lb_qweight_free(&b);
  }
  lb_tensors_close(t);
}

int main(int argc, char **argv) {
  if (argc < 2) return fprintf(stderr, "usage: test_quant_awq OUTDIR\n"), 2;
  OUT = argv[1];
  lb_remove_tree(OUT);
  mkdir(OUT, 0755);
  static const lb_test_case cases[] = {
      {"zeros_width", zeros_width}, {"round_trip", round_trip},
      {"refuse_write", refuse_write}, {"malformed", malformed},
  };
  return lb_test_main(1, argv, cases, sizeof cases / sizeof cases[0]);
}
