/* RTN quantization and the GPTQ layout: bit packing, error bounds, round trips through v1 and v2
 * files, act-order g_idx, bad input. Writes its source weights and checkpoints to argv[1] for
 * tests/py/quant_gptq_ref.py, which checks them against an independent numpy implementation. */
#include <sys/stat.h>

#include "io/fs.h"
#include "quant/gptq.h"
#include "quant/spec.h"
#include "test.h"

static const char *OUT;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}

static void packing(void) {
  for (int bits = 2; bits <= 8; bits++) {
    enum { N = 96 }; /* 96 * bits is a multiple of 32 for every width */
    uint8_t v[N], back[N];
    uint32_t words[N];
    for (int i = 0; i < N; i++) v[i] = (uint8_t)((i * 37 + bits) % (1 << bits));
    lb_pack_bits(v, N, bits, words);
    lb_unpack_bits(words, N, bits, back);
    CHECK(!memcmp(v, back, N));
  }
  /* the AutoGPTQ 3-bit straddle: value 10 has its low 2 bits at the top of word 0 */
  uint8_t v[32] = {0};
  uint32_t w[3];
  v[10] = 5; /* 0b101 */
  lb_pack_bits(v, 32, 3, w);
  CHECK(w[0] == 1u << 30 && w[1] == 1u && w[2] == 0);
}

/* sym: every weight within scale/2 of its dequantized value (the grid covers [-xmax, xmax) and
 * clamping at the top costs at most xmax/maxq = scale/2); asym: within one scale (the zero point is
 * rounded, shifting the grid by up to scale/2, so an extreme value may be clamped by that much more). */
static void bounds(void) {
  lb_error err = {0};
  int64_t R = 32, C = 256;
  float *w = malloc(R * C * 4), *row = malloc(C * 4);
  for (int64_t i = 0; i < R * C; i++) w[i] = frand() * (1 + (i % 7));
  for (int bits = 2; bits <= 8; bits++)
    for (int sym = 0; sym < 2; sym++)
      for (int64_t group = 32; group <= 512; group *= 4) {
        lb_qweight q;
        CHECK_OK(lb_rtn_quantize(w, R, C, bits, group, sym, "w", &q, &err), &err);
        double worst = 0;
        for (int64_t r = 0; r < R; r++) {
          lb_qweight_dequant_row(&q, r, row);
          for (int64_t c = 0; c < C; c++) {
            double s = q.scale[r * q.ngroups + c / q.group];
            worst = fmax(worst, fabs(row[c] - w[r * C + c]) / s);
          }
        }
        CHECK_MSG(worst <= (sym ? 0.5 : 1.0) + 1e-5, "%d bits sym %d group %lld: %g scales", bits,
                  sym, (long long)group, worst);
        lb_qweight_free(&q);
      }
  free(w), free(row);
}

static void write_source(lb_st_writer *wr, const char *name, const float *w, int64_t R, int64_t C) {
  lb_error err = {0};
  char n[256];
  snprintf(n, sizeof n, "src.%s", name);
  int64_t shape[2] = {R, C};
  CHECK_OK(lb_st_writer_add(wr, n, LB_F32, 2, shape, w, (size_t)(R * C) * 4, &err), &err);
}

/* Quantizes a few layers, writes v1 and v2 checkpoints and reads them back. */
static void round_trip(void) {
  static const struct {
    const char *name;
    int64_t rows, cols, group;
    int bits;
    bool sym, act_order;
  } L[] = {{"a.w4g128", 64, 256, 128, 4, false, false}, {"a.w4sym", 64, 256, 128, 4, true, false},
           {"a.w3g128", 32, 384, 128, 3, false, false}, {"a.w2g64", 32, 128, 64, 2, false, false},
           {"a.w8pc", 32, 96, 96, 8, true, false},      {"a.w4act", 32, 256, 64, 4, false, true}};
  lb_error err = {0};
  for (int v = 0; v < 2; v++) {
    char dir[600], src[600];
    snprintf(dir, sizeof dir, "%s/gptq-v%d", OUT, v + 1);
    snprintf(src, sizeof src, "%s/source", OUT);
    lb_st_writer *wr, *ws = NULL;
    mkdir(dir, 0755), mkdir(src, 0755);
    CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
    if (v == 0) CHECK_OK(lb_st_writer_open(src, 0, &ws, &err), &err);
    lb_qweight qs[6];
    for (size_t i = 0; i < 6; i++) {
      int64_t R = L[i].rows, C = L[i].cols;
      float *w = malloc(R * C * 4);
      rng = 1000 + i; /* the same weights for v1 and v2 */
      for (int64_t k = 0; k < R * C; k++) w[k] = frand() * 0.05f * (1 + (k % 5));
      if (i == 0) w[5] = 0.3f, w[C + 7] = -0.4f; /* outliers */
      CHECK_OK(lb_rtn_quantize(w, R, C, L[i].bits, L[i].group, L[i].sym, L[i].name, &qs[i], &err), &err);
      if (L[i].act_order) { /* a g_idx as act-order produces: groups follow a column permutation */
        qs[i].g_idx = malloc(C * 4);
        for (int64_t c = 0; c < C; c++) qs[i].g_idx[(c * 37) % C] = (int32_t)(c / L[i].group);
      }
      CHECK_OK(lb_gptq_write(wr, L[i].name, &qs[i], v ? LB_GPTQ_V2 : LB_GPTQ_V1, &err), &err);
      if (ws) write_source(ws, L[i].name, w, R, C);
      free(w);
    }
    CHECK_OK(lb_st_writer_finish(wr, &err), &err);
    if (ws) CHECK_OK(lb_st_writer_finish(ws, &err), &err);
    lb_tensors *t;
    CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
    for (size_t i = 0; t && i < 6; i++) {
      lb_qweight back;
      CHECK_OK(lb_gptq_read(t, L[i].name, L[i].bits, L[i].group, v ? LB_GPTQ_V2 : LB_GPTQ_V1, &back, &err), &err);
      const lb_qweight *q = &qs[i];
      CHECK(back.rows == q->rows && back.cols == q->cols && back.ngroups == q->ngroups);
      CHECK(!memcmp(back.q, q->q, (size_t)(q->rows * q->cols)));
      for (int64_t k = 0; k < q->rows * q->ngroups; k++) {
        CHECK(back.scale[k] == lb_f16_to_f32(lb_f32_to_f16(q->scale[k])));
        /* v1 cannot hold a zero of 0: it reads back as 2^bits, as in AutoGPTQ */
        float z = v == 0 && q->zero[k] == 0 ? (float)(1 << q->bits) : q->zero[k];
        CHECK_MSG(back.zero[k] == z, "%s zero %lld: %g vs %g", L[i].name, (long long)k, back.zero[k], z);
      }
      for (int64_t c = 0; c < q->cols; c++)
        CHECK(back.g_idx[c] == (q->g_idx ? q->g_idx[c] : c / q->group));
      lb_qweight_free(&back);
    }
    lb_tensors_close(t);
    for (size_t i = 0; i < 6; i++) lb_qweight_free(&qs[i]);
  }
}

static void bad_input(void) {
  lb_error err = {0};
  float w[64];
  for (int i = 0; i < 64; i++) w[i] = frand();
  lb_qweight q;
  w[9] = NAN;
  CHECK(lb_rtn_quantize(w, 2, 32, 4, 32, false, "layers.3.up", &q, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "layers.3.up") && strstr(err.msg, "[0, 9]"));
  w[9] = 0;
  CHECK(lb_rtn_quantize(w, 2, 32, 9, 32, false, "x", &q, &err) == LB_EINVAL);
  /* 3 bits x 20 columns is not a whole number of words */
  CHECK_OK(lb_rtn_quantize(w, 2, 20, 3, 20, false, "x", &q, &err), &err);
  char dir[600];
  snprintf(dir, sizeof dir, "%s/bad", OUT);
  mkdir(dir, 0755);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  CHECK(lb_gptq_write(wr, "x", &q, LB_GPTQ_V1, &err) == LB_EINVAL && strstr(err.msg, "divisible"));
  lb_qweight_free(&q);
  CHECK_OK(lb_rtn_quantize(w, 2, 32, 4, 32, false, "x", &q, &err), &err);
  lb_st_writer_abort(wr);
  lb_qweight_free(&q);
  /* reading: wrong bits for the stored shape, missing tensors */
  char good[600];
  snprintf(good, sizeof good, "%s/gptq-v1", OUT);
  lb_tensors *t;
  CHECK_OK(lb_tensors_open(good, &t, &err), &err);
  if (!t) return;
  lb_qweight b;
  CHECK(lb_gptq_read(t, "a.w4g128", 4, 64, LB_GPTQ_V1, &b, &err) == LB_EFORMAT); /* wrong group */
  CHECK(strstr(err.msg, "a.w4g128.qzeros") != NULL);
  CHECK(lb_gptq_read(t, "a.nope", 4, 128, LB_GPTQ_V1, &b, &err) == LB_ENOTFOUND);
  CHECK(strstr(err.msg, "a.nope.qweight") != NULL);
  lb_tensors_close(t);
}

/* A real layer: RTN 4-bit g128 asym of pocket-llama's first q_proj (bf16) loses little. */
static void real_layer(void) {
  lb_error err = {0};
  lb_tensors *t;
  CHECK_OK(lb_tensors_open(lb_test_shared("models/pocket-llama-48m"), &t, &err), &err);
  if (!t) return;
  const lb_tensor *x = lb_tensors_find(t, "model.layers.0.self_attn.q_proj.weight");
  CHECK(x && x->dtype == LB_BF16);
  int64_t R = x->shape[0], C = x->shape[1];
  float *w = malloc(R * C * 4), *row = malloc(C * 4);
  const uint16_t *d = x->data;
  for (int64_t i = 0; i < R * C; i++) w[i] = lb_bf16_to_f32(d[i]);
  double rel[3];
  int bits[3] = {8, 4, 3};
  for (int k = 0; k < 3; k++) {
    lb_qweight q;
    CHECK_OK(lb_rtn_quantize(w, R, C, bits[k], 128, false, "q_proj", &q, &err), &err);
    double num = 0, den = 0;
    for (int64_t r = 0; r < R; r++) {
      lb_qweight_dequant_row(&q, r, row);
      for (int64_t c = 0; c < C; c++) {
        double e = row[c] - w[r * C + c];
        num += e * e, den += (double)w[r * C + c] * w[r * C + c];
      }
    }
    rel[k] = sqrt(num / den);
    lb_qweight_free(&q);
  }
  printf("pocket q_proj RTN g128 asym: relative L2 error 8 bits %.4f, 4 bits %.4f, 3 bits %.4f\n",
         rel[0], rel[1], rel[2]);
  /* uniform grid: error halves per extra bit (x16 from 4 to 8 bits; allow 2x slack) */
  CHECK(rel[0] < rel[1] / 8 && rel[1] < rel[2] / 1.5 && rel[1] < 0.15);
  free(w), free(row);
  lb_tensors_close(t);
}

/* ---- per-module overrides: GPTQModel's `dynamic` ---------------------------------------------- */

static lb_status parse_dyn(const char *dynamic, lb_quant_spec *s, lb_error *err) {
  char buf[2048];
  snprintf(buf, sizeof buf, "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, "
           "\"sym\": true, \"dynamic\": %s}", dynamic);
  return lb_quant_spec_parse(buf, strlen(buf), "quantization_config", s, err);
}

static void override_parse(void) {
  lb_error err = {0};
  lb_quant_spec s;
  /* first match wins; keys a rule leaves out keep the base's; no prefix means "+:" */
  CHECK_OK(parse_dyn("{\"+:model\\\\.layers\\\\.0\\\\..*\": {\"bits\": 8, \"sym\": false},"
                     " \"+:.*down_proj\": {\"bits\": 2, \"group_size\": 64},"
                     " \"-:.*layers\\\\.\\\\d+\\\\.self_attn\\\\.k_proj\": {},"
                     " \".*v_proj\": {\"group_size\": -1, \"desc_act\": true}}", &s, &err), &err);
  CHECK(s.n_ov == 4 && s.bits == 4 && s.group == 128 && s.sym);
  CHECK(!strcmp(s.ov[0].pattern, "model\\.layers\\.0\\..*") && !s.ov[0].skip);
  CHECK(s.ov[2].skip && !strcmp(s.ov[2].pattern, ".*layers\\.\\d+\\.self_attn\\.k_proj"));
  lb_quant_spec e = lb_quant_spec_for(&s, "model.layers.0.mlp.down_proj"); /* rule 0, not 1 */
  CHECK(e.bits == 8 && e.group == 128 && !e.sym && e.n_ov == 0 && e.ov == NULL);
  e = lb_quant_spec_for(&s, "model.layers.1.mlp.down_proj");
  CHECK(e.bits == 2 && e.group == 64 && e.sym);
  e = lb_quant_spec_for(&s, "model.layers.1.mlp.up_proj"); /* no rule: the base */
  CHECK(e.bits == 4 && e.group == 128 && e.sym && lb_quant_spec_match(&s, "model.layers.1.mlp.up_proj") == NULL);
  e = lb_quant_spec_for(&s, "model.layers.7.self_attn.v_proj");
  CHECK(e.bits == 4 && e.group == -1 && e.desc_act);
  /* "-:" keeps a module dense (\d as Python's); layer 0's k_proj matches rule 0 first */
  CHECK(lb_quant_spec_skips(&s, "model.layers.3.self_attn.k_proj"));
  CHECK(!lb_quant_spec_skips(&s, "model.layers.0.self_attn.k_proj"));
  CHECK(!lb_quant_spec_skips(&s, "model.layers.3.self_attn.q_proj"));
  char d[96];
  CHECK(!strcmp(lb_quant_spec_describe(&s, d, sizeof d), "gptq int4 g128 sym + 4 overrides"));
  lb_quant_spec copy = s; /* a by-value copy shares the rules; only the original is freed */
  CHECK(lb_quant_spec_match(&copy, "model.layers.2.mlp.down_proj") == &s.ov[1]);
  lb_quant_spec_free(&s);
  CHECK(s.n_ov == 0 && s.ov == NULL);

  /* re.match: anchored at the start of the full name, not at the end */
  CHECK_OK(lb_quant_spec_default("rtn", &s, &err), &err);
  CHECK_OK(lb_quant_spec_add_override(&s, "down_proj", false, 8, 128, &err), &err);
  CHECK_OK(lb_quant_spec_add_override(&s, "model.layers.1", false, 2, 64, &err), &err);
  CHECK_OK(lb_quant_spec_add_override(&s, ".*down_proj", false, 3, 128, &err), &err);
  CHECK(lb_quant_spec_match(&s, "model.layers.0.mlp.down_proj") == &s.ov[2]); /* not "down_proj" */
  CHECK(lb_quant_spec_match(&s, "down_proj") == &s.ov[0]);
  CHECK(lb_quant_spec_match(&s, "model.layers.10.mlp.down_proj") == &s.ov[1]); /* no end anchor */
  CHECK(lb_quant_spec_match(&s, "xmodel.layers.1.mlp.up_proj") == NULL);
  CHECK(lb_quant_spec_for(&s, "model.layers.0.mlp.down_proj").bits == 3);
  lb_quant_spec_free(&s);
  /* only the GPTQ layout records per-module widths */
  CHECK_OK(lb_quant_spec_default("hqq", &s, &err), &err);
  CHECK(lb_quant_spec_add_override(&s, ".*", false, 8, 64, &err) == LB_EUNSUPPORTED &&
        strstr(err.msg, "GPTQ layout"));
  lb_quant_spec_free(&s);
}

static void override_refuse(void) {
  lb_error err = {0};
  lb_quant_spec s;
  static const struct {
    const char *dyn, *needle;
  } bad[] = {
      {"{\"+:.*down(\": {\"bits\": 8}}", "key 'dynamic.+:.*down(': bad regex"},
      {"{\"+:.*down_proj\": {\"bits\": 8, \"frob\": 1}}", "key 'frob' is not supported"},
      {"{\"+:.*down_proj\": {\"bits\": 5}}", "key 'dynamic.+:.*down_proj': bits 5"},
      {"{\"+:.*down_proj\": {\"bits\": 16}}", "key 'bits'"},
      {"{\"+:.*down_proj\": {\"group_size\": 0}}", "key 'dynamic.+:.*down_proj': group_size 0"},
      {"{\"+:.*down_proj\": {\"group_size\": -2}}", "key 'group_size'"},
      {"{\"+:.*down_proj\": {\"sym\": 1}}", "key 'sym'"},
      {"{\"+:.*down_proj\": 8}", "key 'dynamic.+:.*down_proj': expected an object"},
      {"[\".*down_proj\"]", "key 'dynamic': expected an object"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err = (lb_error){0};
    CHECK_MSG(parse_dyn(bad[i].dyn, &s, &err) != LB_OK && strstr(err.msg, bad[i].needle) &&
                  strstr(err.msg, "quantization_config"),
              "%s: %s", bad[i].dyn, err.msg);
  }
  /* a later bad rule frees the earlier ones (ASan) */
  CHECK(parse_dyn("{\"+:a\": {\"bits\": 8}, \"-:b\": {}, \"+:(\": {}}", &s, &err) == LB_EINVAL);
  CHECK_OK(parse_dyn("null", &s, &err), &err);
  CHECK(s.n_ov == 0);
  lb_quant_spec_free(&s);
}

static void override_json(void) {
  lb_error err = {0};
  lb_quant_spec s, back;
  char *json;
  CHECK_OK(lb_quant_spec_default("rtn", &s, &err), &err);
  CHECK_OK(lb_quant_spec_to_json(&s, &json, &err), &err);
  CHECK(!strstr(json, "dynamic")); /* only when overrides exist */
  free(json);
  CHECK_OK(lb_quant_spec_add_override(&s, ".*down_proj", false, 8, 128, &err), &err);
  CHECK_OK(lb_quant_spec_add_override(&s, ".*layers\\.0\\.", false, 2, -1, &err), &err);
  CHECK_OK(lb_quant_spec_add_override(&s, ".*k_proj", true, 0, 0, &err), &err);
  CHECK_OK(lb_quant_spec_to_json(&s, &json, &err), &err);
  CHECK_MSG(strstr(json, "\"dynamic\":{\"+:.*down_proj\":{\"bits\":8,\"group_size\":128},"
                         "\"+:.*layers\\\\.0\\\\.\":{\"bits\":2,\"group_size\":-1},"
                         "\"-:.*k_proj\":{}}") != NULL, "%s", json);
  CHECK_OK(lb_quant_spec_parse(json, strlen(json), "qc", &back, &err), &err);
  CHECK(back.n_ov == 3);
  for (size_t i = 0; i < back.n_ov && i < 3; i++) {
    CHECK(!strcmp(back.ov[i].pattern, s.ov[i].pattern) && back.ov[i].skip == s.ov[i].skip);
    if (!s.ov[i].skip) CHECK(back.ov[i].bits == s.ov[i].bits && back.ov[i].group == s.ov[i].group);
  }
  CHECK(lb_quant_spec_skips(&back, "model.layers.4.self_attn.k_proj"));
  CHECK(lb_quant_spec_for(&back, "model.layers.0.mlp.down_proj").bits == 8);
  CHECK(lb_quant_spec_for(&back, "model.layers.0.mlp.up_proj").group == -1);
  char *again;
  CHECK_OK(lb_quant_spec_to_json(&back, &again, &err), &err);
  CHECK(!strcmp(json, again));
  free(again), free(json);
  lb_quant_spec_free(&back);
  lb_quant_spec_free(&s);
}

/* Two modules at different widths through the spec's own dispatch: quantize, write, read. */
static void override_round_trip(void) {
  lb_error err = {0};
  lb_quant_spec s;
  CHECK_OK(lb_quant_spec_default("rtn", &s, &err), &err);
  CHECK_OK(lb_quant_spec_add_override(&s, ".*down_proj", false, 8, 64, &err), &err);
  static const char *const mods[2] = {"model.layers.0.mlp.down_proj", "model.layers.0.mlp.up_proj"};
  int64_t R = 32, C = 256;
  /* the width check is per module: a base group of 96 does not divide 256, the override's 64 does */
  lb_quant_spec g = s;
  g.group = 96;
  CHECK(lb_quant_spec_check_shape(&g, R, C, mods[0], &err) == LB_OK); /* override: g64 */
  CHECK(lb_quant_spec_check_shape(&g, R, C, mods[1], &err) == LB_EUNSUPPORTED &&
        strstr(err.msg, mods[1]));
  char dir[600];
  snprintf(dir, sizeof dir, "%s/override", OUT);
  mkdir(dir, 0755);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  float *w = malloc(R * C * 4);
  lb_qweight q[2];
  for (int m = 0; m < 2; m++) {
    for (int64_t k = 0; k < R * C; k++) w[k] = frand() * 0.05f * (1 + (k % 3));
    CHECK_OK(lb_quant_spec_quantize(&s, w, R, C, mods[m], &q[m], &err), &err);
    CHECK_OK(lb_quant_spec_write(&s, wr, mods[m], &q[m], LB_BF16, &err), &err);
  }
  CHECK(q[0].bits == 8 && q[0].group == 64 && q[1].bits == 4 && q[1].group == 128);
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  lb_tensors *t;
  CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
  const lb_tensor *qw0 = t ? lb_tensors_find(t, "model.layers.0.mlp.down_proj.qweight") : NULL;
  const lb_tensor *qw1 = t ? lb_tensors_find(t, "model.layers.0.mlp.up_proj.qweight") : NULL;
  CHECK(qw0 && qw0->shape[0] == C * 8 / 32 && qw1 && qw1->shape[0] == C * 4 / 32);
  for (int m = 0; t && m < 2; m++) {
    lb_qweight back;
    CHECK_OK(lb_quant_spec_read(&s, t, mods[m], &back, &err), &err);
    CHECK(back.bits == q[m].bits && back.group == q[m].group && back.ngroups == q[m].ngroups);
    CHECK(!memcmp(back.q, q[m].q, (size_t)(R * C)));
    lb_qweight_free(&back);
  }
  /* the base spec alone (no override) cannot read the 8-bit module */
  lb_quant_spec plain = s;
  plain.n_ov = 0, plain.ov = NULL;
  lb_qweight bad;
  CHECK(t && lb_quant_spec_read(&plain, t, mods[0], &bad, &err) != LB_OK);
  lb_tensors_close(t);
  for (int m = 0; m < 2; m++) lb_qweight_free(&q[m]);
  free(w);
  lb_quant_spec_free(&s);
}

int main(int argc, char **argv) {
  if (argc < 2) return fprintf(stderr, "usage: test_quant_gptq OUTDIR\n"), 2;
  OUT = argv[1];
  lb_remove_tree(OUT);
  mkdir(OUT, 0755);
  static const lb_test_case cases[] = {
      {"packing", packing}, {"bounds", bounds}, {"round_trip", round_trip},
      {"bad_input", bad_input}, {"real_layer", real_layer},
      {"override_parse", override_parse}, {"override_refuse", override_refuse},
      {"override_json", override_json}, {"override_round_trip", override_round_trip},
  };
  return lb_test_main(1, argv, cases, sizeof cases / sizeof cases[0]);
}
