/* compressed-tensors integer weights ("pack-quantized"): error bounds by bit width, round trips
 * through the layout, refusals (NaN, widths the groups do not divide, hostile files), the config
 * JSON and its parser. Writes its source weights and layers to argv[1] (one folder per case +
 * cases.txt) for tests/py/quant_ct_ref.py, which recomputes scales, zero points, codes and packing
 * with an independent numpy implementation of compressed-tensors 0.20. */
#include <float.h>
#include <sys/stat.h>

#include "io/json.h"
#include "quant/ct.h"
#include "quant/gptq.h"
#include "quant/spec.h"
#include "test.h"

static const char *OUT;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}

static float to_dtype(float x, lb_dtype dt) {
  if (dt == LB_BF16) return lb_bf16_to_f32(lb_f32_to_bf16(x));
  if (dt == LB_F16) return lb_f16_to_f32(lb_f32_to_f16(x));
  return x;
}

/* Weights of a few magnitudes (rows scaled differently), some groups all positive or all
 * negative (so min' or max' is the clamped 0), one all-zero group, all exact in dt. */
static float *make_w(int64_t rows, int64_t cols, lb_dtype dt) {
  float *w = malloc((size_t)(rows * cols) * sizeof *w);
  for (int64_t r = 0; r < rows; r++) {
    float mag = exp2f(-2.0f - (float)(r % 7));
    for (int64_t c = 0; c < cols; c++) {
      float x = frand() * mag;
      if (r % 5 == 1) x = fabsf(x);
      if (r % 5 == 2) x = -fabsf(x);
      w[r * cols + c] = to_dtype(x, dt);
    }
  }
  for (int64_t c = 0; c < (cols < 32 ? cols : 32); c++) w[3 * cols + c] = 0.0f; /* row 3, group 0 */
  return w;
}

/* Unit roundoff of the compute dtype (half an ulp of 1). */
static float unit(lb_dtype dt) { return dt == LB_BF16 ? 0x1p-9f : dt == LB_F16 ? 0x1p-11f : 0x1p-24f; }

/* |dequant - w| <= scale * (1/2 + 4 * 2^b * u) per element. Why: the code is x / s + zp rounded
 * to the nearest integer (1/2 a step), and the range ends map within 1/2 a step of the clamp
 * limits (zp is itself rounded, by at most 1/2, which moves both ends together; symmetric: the
 * ends map to +-(2^b - 1) / 2, the half step beyond qmax is clamped back). The remaining slack is
 * the compute dtype's rounding of scale (twice for asymmetric: max' - min', then / range), of
 * min' / scale and of the zero point's subtraction: each a relative u on a quantity of at most
 * 2^b steps. fp32 compute leaves ~2^-16 of a step; bf16 up to 2 steps at 8 bits (0.06 at 4). */
static void bounds(void) {
  lb_error err = {0};
  const int64_t R = 40, C = 256;
  lb_dtype dts[3] = {LB_F32, LB_BF16, LB_F16};
  int bitss[4] = {2, 3, 4, 8};
  int64_t groups[3] = {32, 128, -1};
  float *row = malloc((size_t)C * sizeof *row);
  for (int d = 0; d < 3; d++) {
    float *w = make_w(R, C, dts[d]);
    for (int b = 0; b < 4; b++)
      for (int g = 0; g < 3; g++)
        for (int sym = 0; sym < 2; sym++)
          for (int eager = 0; eager < 2; eager++) {
            lb_ct_int_opts o = {dts[d], eager != 0};
            lb_qweight q;
            CHECK_OK(lb_ct_int_quantize(w, R, C, bitss[b], groups[g], sym, &o, "b", &q, &err),
                     &err);
            if (!q.q) continue;
            CHECK(lb_qweight_check(&q, "bounds", &err) == LB_OK);
            float slack = 0.5f + 4.0f * (float)(1 << bitss[b]) * unit(dts[d]);
            if (eager) slack += 2.0f * (float)(1 << bitss[b]) * unit(dts[d]); /* x/s, +zp rounded */
            int bad = 0, lo = 0, hi = 0;
            float worst = 0;
            for (int64_t r = 0; r < R; r++) {
              lb_qweight_dequant_row(&q, r, row);
              for (int64_t c = 0; c < C; c++) {
                float s = q.scale[r * q.ngroups + c / q.group], e = fabsf(row[c] - w[r * C + c]);
                if (e > slack * s * (1 + 0x1p-20f)) bad++;
                if (e / s > worst) worst = e / s;
                lo += q.q[r * C + c] == 0;
                hi += q.q[r * C + c] == (1 << bitss[b]) - 1;
              }
              for (int64_t k = 0; k < q.ngroups; k++) {
                float s = q.scale[r * q.ngroups + k], z = q.zero[r * q.ngroups + k];
                CHECK(s == to_dtype(s, dts[d]) && s > 0);
                if (sym) CHECK(z == (float)(1 << (bitss[b] - 1)));
              }
            }
            CHECK_MSG(bad == 0, "%s %d-bit group %lld %s%s: %d weights out of bounds (worst %g steps)",
                      lb_dtype_name(dts[d]), bitss[b], (long long)groups[g], sym ? "sym" : "asym",
                      eager ? " eager" : "", bad, (double)worst);
            /* the range is used: both ends of the code range occur (asym), the bottom one (sym) */
            CHECK(lo > 0 && (sym || hi > 0));
            /* the all-zero group: scale eps of the dtype, zero point 0 (stored 2^(b-1)) */
            float eps = dts[d] == LB_BF16 ? 0x1p-7f : dts[d] == LB_F16 ? 0x1p-10f : FLT_EPSILON;
            if (groups[g] == 32) {
              CHECK(q.scale[3 * q.ngroups] == eps);
              CHECK(q.zero[3 * q.ngroups] == (float)(1 << (bitss[b] - 1)));
              CHECK(q.q[3 * C] == 1 << (bitss[b] - 1));
            }
            lb_qweight_free(&q);
          }
    free(w);
  }
  free(row);
}

static void refusals(void) {
  lb_error err = {0};
  float w[4 * 64];
  for (int i = 0; i < 4 * 64; i++) w[i] = frand();
  lb_qweight q = {0};
  w[70] = NAN;
  CHECK(lb_ct_int_quantize(w, 4, 64, 4, 32, false, NULL, "model.layers.1.mlp.up_proj", &q, &err) ==
        LB_EINVAL);
  CHECK(strstr(err.msg, "model.layers.1.mlp.up_proj") && strstr(err.msg, "[1, 6]") &&
        strstr(err.msg, "NaN"));
  w[70] = INFINITY;
  CHECK(lb_ct_int_quantize(w, 4, 64, 4, 32, false, NULL, "m", &q, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "infinite"));
  w[70] = 0.1f;
  /* not a bf16 value: the reference would have rounded it on load */
  lb_ct_int_opts bf = {LB_BF16, false};
  CHECK(lb_ct_int_quantize(w, 4, 64, 4, 32, false, &bf, "m", &q, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "BF16"));
  /* widths the group does not divide: compressed-tensors refuses them, so does lowbit */
  CHECK(lb_ct_int_quantize(w, 4, 64, 4, 48, false, NULL, "model.layers.0.mlp.down_proj", &q,
                           &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "model.layers.0.mlp.down_proj") && strstr(err.msg, "in_features 64") &&
        strstr(err.msg, "group size 48"));
  CHECK(lb_ct_int_quantize(w, 4, 64, 9, 32, false, NULL, "m", &q, &err) == LB_EINVAL);
  lb_quant_spec s;
  CHECK_OK(lb_quant_spec_default("rtn", &s, &err), &err);
  s.method = LB_QM_CT_INT;
  s.group = 128;
  CHECK(lb_quant_spec_check_shape(&s, 512, 1000, "model.layers.2.mlp.down_proj", &err) ==
        LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "model.layers.2.mlp.down_proj") && strstr(err.msg, "1000"));
  CHECK(lb_quant_spec_quantize(&s, w, 4, 64, "model.layers.3.self_attn.q_proj", &q, &err) ==
        LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "model.layers.3.self_attn.q_proj"));
  s.group = -1; /* per channel: any width */
  CHECK_OK(lb_quant_spec_check_shape(&s, 512, 1000, "m", &err), &err);
  lb_quant_spec_free(&s);
}

typedef struct {
  const char *name;
  int bits;
  int64_t group; /* -1 per channel */
  bool sym;
  lb_dtype compute;
  bool eager;
  int64_t rows, cols;
} ct_case;

static bool same(const lb_qweight *a, const lb_qweight *b) {
  int64_t ns = a->rows * a->ngroups;
  return a->rows == b->rows && a->cols == b->cols && a->bits == b->bits && a->group == b->group &&
         a->ngroups == b->ngroups && !memcmp(a->q, b->q, (size_t)(a->rows * a->cols)) &&
         !memcmp(a->scale, b->scale, (size_t)ns * sizeof(float)) &&
         !memcmp(a->zero, b->zero, (size_t)ns * sizeof(float));
}

/* Quantizes, writes <OUT>/<name>/model.safetensors (source "src" F32 + the layer "layer"), reads
 * it back by the layout reader and through a spec parsed from the config lowbit writes, and
 * compares codes, scales, zeros and the dequantized rows. */
static void round_trip(const ct_case *k, FILE *manifest) {
  lb_error err = {0};
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/%s", OUT, k->name);
  mkdir(dir, 0755);
  float *w = make_w(k->rows, k->cols, k->compute);
  lb_ct_int_opts o = {k->compute, k->eager};
  lb_qweight q = {0}, back = {0}, back2 = {0};
  CHECK_OK(lb_ct_int_quantize(w, k->rows, k->cols, k->bits, k->group, k->sym, &o, k->name, &q, &err),
           &err);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  int64_t shape[2] = {k->rows, k->cols};
  CHECK_OK(lb_st_writer_add(wr, "src", LB_F32, 2, shape, w, (uint64_t)(k->rows * k->cols) * 4, &err),
           &err);
  CHECK_OK(lb_ct_int_write(wr, "layer", &q, k->compute, &err), &err);
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  lb_tensors *t;
  CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
  CHECK_OK(lb_ct_int_read(t, "layer", k->bits, k->group, k->sym, &back, &err), &err);
  CHECK_MSG(back.q && same(&q, &back), "case %s: read back differs", k->name);
  char *cfg = NULL;
  lb_quant_spec s;
  CHECK_OK(lb_ct_int_config(k->bits, k->group, k->sym, NULL, 0, &cfg, &err), &err);
  CHECK_OK(lb_quant_spec_parse(cfg, strlen(cfg), "cfg", &s, &err), &err);
  CHECK(s.method == LB_QM_CT_INT && s.bits == k->bits && s.group == k->group && s.sym == k->sym);
  CHECK_OK(lb_quant_spec_read(&s, t, "layer", &back2, &err), &err);
  CHECK_MSG(back2.q && same(&q, &back2), "case %s: read through the spec differs", k->name);
  if (back.q) {
    float *r1 = malloc((size_t)k->cols * 4), *r2 = malloc((size_t)k->cols * 4);
    int diff = 0;
    for (int64_t r = 0; r < k->rows; r++) {
      lb_qweight_dequant_row(&q, r, r1);
      lb_qweight_dequant_row(&back, r, r2);
      diff += memcmp(r1, r2, (size_t)k->cols * 4) != 0;
    }
    CHECK_MSG(diff == 0, "case %s: %d dequantized rows differ", k->name, diff);
    free(r1), free(r2);
  }
  fprintf(manifest, "%s %d %lld %d %s %d\n", k->name, k->bits, (long long)k->group, (int)k->sym,
          lb_dtype_name(k->compute), (int)k->eager);
  free(cfg);
  lb_quant_spec_free(&s);
  lb_tensors_close(t);
  lb_qweight_free(&back);
  lb_qweight_free(&back2);
  lb_qweight_free(&q);
  free(w);
}

static void layouts(void) {
  /* rows 100 and 37 make the zero-point streams end mid-word; cols 96 / 160 make 3-bit codes
   * straddle words and rows end mid-word */
  static const ct_case cases[] = {
      {"int4_g32_asym_bf16", 4, 32, false, LB_BF16, false, 100, 256},
      {"int4_g128_sym_bf16", 4, 128, true, LB_BF16, false, 64, 256},
      {"int4_g32_asym_bf16_eager", 4, 32, false, LB_BF16, true, 100, 256},
      {"int4_channel_asym_f32", 4, -1, false, LB_F32, false, 37, 160},
      {"int8_channel_sym_bf16", 8, -1, true, LB_BF16, false, 64, 96},
      {"int8_g64_asym_f16", 8, 64, false, LB_F16, false, 37, 128},
      {"int3_g32_asym_bf16", 3, 32, false, LB_BF16, false, 100, 96},
      {"int3_channel_sym_f32", 3, -1, true, LB_F32, true, 37, 160},
      {"int2_g32_asym_bf16", 2, 32, false, LB_BF16, false, 100, 128},
      {"int2_g64_sym_f16", 2, 64, true, LB_F16, true, 37, 128},
  };
  char path[1024];
  snprintf(path, sizeof path, "%s/cases.txt", OUT);
  FILE *m = fopen(path, "w");
  CHECK(m != NULL);
  if (!m) return;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) round_trip(&cases[i], m);
  fclose(m);
}

/* A folder with the tensors given; reads "m" back with the layout reader. */
typedef struct {
  const char *name;
  lb_dtype dt;
  int ndim;
  int64_t shape[2];
  const void *data;
} tdesc;

static lb_status read_files(const tdesc *ts, int n, int bits, int64_t group, bool sym,
                            lb_qweight *q, lb_error *err) {
  char dir[1024];
  static int k;
  snprintf(dir, sizeof dir, "%s/hostile%d", lb_test_tmpdir(), k++);
  mkdir(dir, 0755);
  lb_st_writer *w;
  LB_TRY(lb_st_writer_open(dir, 0, &w, err));
  for (int i = 0; i < n; i++) {
    int64_t numel = 1;
    for (int d = 0; d < ts[i].ndim; d++) numel *= ts[i].shape[d];
    LB_TRY(lb_st_writer_add(w, ts[i].name, ts[i].dt, ts[i].ndim, ts[i].shape, ts[i].data,
                            (uint64_t)numel * lb_dtype_size(ts[i].dt), err));
  }
  LB_TRY(lb_st_writer_finish(w, err));
  lb_tensors *t;
  LB_TRY(lb_tensors_open(dir, &t, err));
  *q = (lb_qweight){0};
  lb_status s = lb_ct_int_read(t, "m", bits, group, sym, q, err);
  lb_tensors_close(t);
  return s;
}

static void hostile_files(void) {
  lb_error err = {0};
  static int32_t words[64 * 64];
  static uint16_t scales[64 * 8];
  for (int i = 0; i < 64 * 8; i++) scales[i] = lb_f32_to_bf16(0.01f);
  int64_t shp[2] = {16, 64}, shp3[3] = {16, 64, 1};
  int32_t shp_i32[2] = {16, 64};
  lb_qweight q;
  /* 16 x 64 at 4 bits, group 32, asymmetric: packed [16, 8], scale [16, 2], zero [2, 2] */
  tdesc ok[] = {{"m.weight_packed", LB_I32, 2, {16, 8}, words},
                {"m.weight_shape", LB_I64, 1, {2, 0}, shp},
                {"m.weight_scale", LB_BF16, 2, {16, 2}, scales},
                {"m.weight_zero_point", LB_I32, 2, {2, 2}, words}};
  CHECK_OK(read_files(ok, 4, 4, 32, false, &q, &err), &err);
  CHECK(q.q && q.rows == 16 && q.cols == 64 && q.ngroups == 2 && q.zero[0] == 0.0f);
  lb_qweight_free(&q);
  tdesc t[4];
  memcpy(t, ok, sizeof ok);
  t[1] = (tdesc){"m.weight_shape", LB_I32, 1, {2, 0}, shp_i32}; /* I32 shape accepted */
  CHECK_OK(read_files(t, 4, 4, 32, false, &q, &err), &err);
  lb_qweight_free(&q);
  CHECK(read_files(ok, 3, 4, 32, false, &q, &err) == LB_ENOTFOUND); /* asym needs the zero point */
  CHECK(strstr(err.msg, "m.weight_zero_point") && strstr(err.msg, "missing"));
  CHECK_OK(read_files(ok, 3, 4, 32, true, &q, &err), &err); /* symmetric: none */
  CHECK(q.q && q.zero[5] == 8.0f);
  lb_qweight_free(&q);
  memcpy(t, ok, sizeof ok);
  t[0].shape[1] = 9;
  CHECK(read_files(t, 4, 4, 32, false, &q, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "m.weight_packed") && strstr(err.msg, "[16, 9]"));
  memcpy(t, ok, sizeof ok);
  t[2].shape[1] = 4;
  CHECK(read_files(t, 4, 4, 32, false, &q, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "m.weight_scale") && strstr(err.msg, "[16, 4]"));
  memcpy(t, ok, sizeof ok);
  t[2].dt = LB_I16;
  CHECK(read_files(t, 4, 4, 32, false, &q, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "m.weight_scale") && strstr(err.msg, "I16"));
  memcpy(t, ok, sizeof ok);
  t[3].shape[0] = 3;
  CHECK(read_files(t, 4, 4, 32, false, &q, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "m.weight_zero_point") && strstr(err.msg, "[3, 2]"));
  memcpy(t, ok, sizeof ok);
  t[1] = (tdesc){"m.weight_shape", LB_I64, 1, {3, 0}, shp3};
  CHECK(read_files(t, 4, 4, 32, false, &q, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "m.weight_shape"));
  CHECK(read_files(ok, 4, 4, 48, false, &q, &err) == LB_EFORMAT); /* 64 % 48 */
  CHECK(strstr(err.msg, "group size 48"));
  /* the older layout: ten 3-bit codes per word (width ceil(64 / 10) = 7; dense would be 6) */
  uint8_t codes[16 * 64];
  for (int i = 0; i < 16 * 64; i++) codes[i] = (uint8_t)((i * 5 + i / 64) % 8);
  static uint32_t legacy[16 * 7];
  memset(legacy, 0, sizeof legacy);
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 64; c++) legacy[r * 7 + c / 10] |= (uint32_t)codes[r * 64 + c] << (3 * (c % 10));
  memcpy(t, ok, sizeof ok);
  t[0] = (tdesc){"m.weight_packed", LB_I32, 2, {16, 7}, legacy};
  t[2].shape[1] = 1; /* per channel */
  CHECK_OK(read_files(t, 3, 3, -1, true, &q, &err), &err);
  CHECK(q.q && !memcmp(q.q, codes, sizeof codes) && q.ngroups == 1);
  lb_qweight_free(&q);
  /* and the dense one of 0.20 */
  static uint32_t dense[16 * 6];
  for (int r = 0; r < 16; r++) lb_pack_bits(codes + r * 64, 64, 3, dense + r * 6);
  t[0] = (tdesc){"m.weight_packed", LB_I32, 2, {16, 6}, dense};
  CHECK_OK(read_files(t, 3, 3, -1, true, &q, &err), &err);
  CHECK(q.q && !memcmp(q.q, codes, sizeof codes));
  lb_qweight_free(&q);

  /* the writer refuses what the layout cannot say, before adding anything */
  float w[8 * 64];
  for (int i = 0; i < 8 * 64; i++) w[i] = frand();
  CHECK_OK(lb_ct_int_quantize(w, 8, 64, 4, 32, false, NULL, "m", &q, &err), &err);
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/writer", lb_test_tmpdir());
  mkdir(dir, 0755);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  CHECK(lb_ct_int_write(wr, "m", &q, LB_BF16, &err) == LB_EINVAL); /* fp32 scales */
  CHECK(strstr(err.msg, "m.weight_scale") && strstr(err.msg, "BF16"));
  q.zero[3] = 2.5f;
  CHECK(lb_ct_int_write(wr, "m", &q, LB_F32, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "zero point 3"));
  q.zero[3] = 8.0f;
  q.sym = true;
  q.zero[0] = 7.0f;
  CHECK(lb_ct_int_write(wr, "m", &q, LB_F32, &err) == LB_EINVAL); /* sym needs 2^(b-1) */
  lb_st_writer_abort(wr);
  lb_qweight_free(&q);
}

/* A pack-quantized config with `weights` replaced by the given JSON text (or a whole-config edit). */
static lb_status parse_variant(const char *weights, const char *extra, lb_quant_spec *s,
                               lb_error *err) {
  char buf[2048];
  snprintf(buf, sizeof buf,
           "{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\","
           "\"quantization_status\":\"compressed\",\"ignore\":[\"lm_head\"]%s,"
           "\"config_groups\":{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":%s}}}",
           extra, weights);
  lb_status st = lb_quant_spec_parse(buf, strlen(buf), "qc", s, err);
  if (st == LB_OK) lb_quant_spec_free(s);
  return st;
}

static void configs(void) {
  lb_error err = {0};
  const char *ign[] = {"lm_head", "model.layers.0.mlp.down_proj"};
  char *s = NULL;
  CHECK_OK(lb_ct_int_config(4, 128, false, ign, 2, &s, &err), &err);
  CHECK(!strcmp(
      s, "{\"config_groups\":{\"group_0\":{\"format\":\"pack-quantized\",\"input_activations\":null,"
         "\"output_activations\":null,\"targets\":[\"Linear\"],\"weights\":{\"dynamic\":false,"
         "\"group_size\":128,\"num_bits\":4,\"strategy\":\"group\",\"symmetric\":false,\"type\":"
         "\"int\"}}},\"format\":\"pack-quantized\",\"global_compression_ratio\":null,\"ignore\":["
         "\"lm_head\",\"model.layers.0.mlp.down_proj\"],\"kv_cache_scheme\":null,"
         "\"moe_sparsity_config\":null,\"quant_method\":\"compressed-tensors\","
         "\"quantization_status\":\"compressed\",\"sparsity_config\":{},\"transform_config\":{},"
         "\"version\":\"0.20.0\"}"));
  json_t *j = lb_test_json(s);
  CHECK(j != NULL);
  json_decref(j);
  lb_quant_spec sp;
  CHECK_OK(lb_quant_spec_parse(s, strlen(s), "qc", &sp, &err), &err);
  CHECK(sp.method == LB_QM_CT_INT && sp.bits == 4 && sp.group == 128 && !sp.sym);
  CHECK(lb_quant_spec_skips(&sp, "model.layers.0.mlp.down_proj") &&
        !lb_quant_spec_skips(&sp, "model.layers.1.mlp.down_proj"));
  char d[96];
  CHECK(strstr(lb_quant_spec_describe(&sp, d, sizeof d), "int4 g128 asym"));
  char *again = NULL;
  CHECK_OK(lb_quant_spec_to_json(&sp, &again, &err), &err);
  CHECK(again && !strcmp(again, s));
  free(again);
  lb_quant_spec_free(&sp);
  free(s);
  CHECK_OK(lb_ct_int_config(8, -1, true, NULL, 0, &s, &err), &err);
  CHECK(strstr(s, "\"group_size\":null,\"num_bits\":8,\"strategy\":\"channel\",\"symmetric\":true"));
  CHECK_OK(lb_quant_spec_parse(s, strlen(s), "qc", &sp, &err), &err);
  CHECK(sp.method == LB_QM_CT_INT && sp.group == -1 && sp.sym && sp.bits == 8);
  lb_quant_spec_free(&sp);
  free(s);

  /* what older compressed-tensors versions wrote (every field spelled out) is read too */
  CHECK_OK(parse_variant("{\"num_bits\":4,\"type\":\"int\",\"symmetric\":true,\"group_size\":128,"
                         "\"strategy\":\"group\",\"block_structure\":null,\"dynamic\":false,"
                         "\"actorder\":null,\"observer\":\"minmax\",\"observer_kwargs\":{}}",
                         ",\"kv_cache_scheme\":null,\"sparsity_config\":{},\"version\":\"0.9.2\"",
                         &sp, &err),
           &err);
  CHECK_OK(parse_variant("{\"num_bits\":3,\"group_size\":-1}", "", &sp, &err), &err);
  /* an FP8 KV cache (llm-compressor's kv_cache_scheme, static per tensor) is read, never written */
  {
    const char *kv = "{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\","
                     "\"kv_cache_scheme\":{\"num_bits\":8,\"type\":\"float\",\"symmetric\":true,"
                     "\"strategy\":\"tensor\",\"dynamic\":false,\"group_size\":null,\"observer\":"
                     "\"minmax\",\"observer_kwargs\":{}},\"config_groups\":{\"group_0\":{\"targets\":"
                     "[\"Linear\"],\"weights\":{\"num_bits\":4,\"group_size\":128}}}}";
    CHECK_OK(lb_quant_spec_parse(kv, strlen(kv), "qc", &sp, &err), &err);
    CHECK(sp.kv_fp8 && sp.method == LB_QM_CT_INT && sp.bits == 4);
    char *txt = NULL;
    CHECK(lb_quant_spec_to_json(&sp, &txt, &err) == LB_EUNSUPPORTED && !txt && strstr(err.msg, "kv_cache_scheme"));
    lb_quant_spec_free(&sp);
    CHECK_OK(parse_variant("{\"num_bits\":4,\"group_size\":128}", ",\"kv_cache_scheme\":null", &sp, &err), &err);
  }
  /* refusals name the key */
  struct {
    const char *weights_extra, *top_extra, *key;
  } bad[] = {
      {",\"dynamic\":true", "", "'dynamic'"},
      {",\"frobnicate\":1", "", "'frobnicate'"},
      {",\"block_structure\":[128,128]", "", "'block_structure'"},
      {",\"scale_dtype\":\"torch.float8_e4m3fn\"", "", "'scale_dtype'"},
      {",\"actorder\":\"group\"", "", "'actorder'"},
      {"", ",\"kv_cache_scheme\":{\"num_bits\":8}", "kv_cache_scheme: key 'num_bits'/'type'"},
      {"", ",\"kv_cache_scheme\":{\"num_bits\":8,\"type\":\"float\",\"dynamic\":true}",
       "kv_cache_scheme: key 'dynamic'"},
      {"", ",\"kv_cache_scheme\":{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"attn_head\"}",
       "kv_cache_scheme: key 'strategy'"},
      {"", ",\"kv_cache_scheme\":{\"num_bits\":8,\"type\":\"float\",\"symmetric\":false}",
       "kv_cache_scheme: key 'symmetric'"},
      {"", ",\"kv_cache_scheme\":[8]", "kv_cache_scheme: expected an object"},
      {"", ",\"sparsity_config\":{\"format\":\"sparse-bitmask\"}", "'sparsity_config'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char wbuf[512];
    snprintf(wbuf, sizeof wbuf,
             "{\"num_bits\":4,\"type\":\"int\",\"symmetric\":true,\"group_size\":128,"
             "\"strategy\":\"group\"%s}",
             bad[i].weights_extra);
    CHECK(parse_variant(wbuf, bad[i].top_extra, &sp, &err) != LB_OK);
    CHECK_MSG(strstr(err.msg, bad[i].key), "case %zu: %s", i, err.msg);
  }
  CHECK(parse_variant("{\"num_bits\":4,\"type\":\"float\"}", "", &sp, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "'type'") && strstr(err.msg, "float"));
  CHECK(parse_variant("{\"num_bits\":16,\"type\":\"int\",\"group_size\":128}", "", &sp, &err) ==
        LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "'num_bits'"));
  CHECK(parse_variant("{\"num_bits\":4,\"type\":\"int\",\"strategy\":\"tensor\"}", "", &sp,
                      &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "'strategy'") && strstr(err.msg, "tensor"));
  CHECK(parse_variant("{\"num_bits\":4,\"type\":\"int\"}", "", &sp, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "'strategy'")); /* no group_size: per tensor */
  CHECK(parse_variant("{\"num_bits\":4,\"strategy\":\"group\"}", "", &sp, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "'group_size'"));
  CHECK(parse_variant("{\"num_bits\":4,\"group_size\":128}",
                      ",\"quantization_status\":\"frozen\"", &sp, &err) != LB_OK);
  const char *acts = "{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\","
                     "\"config_groups\":{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{"
                     "\"num_bits\":4,\"group_size\":128},\"input_activations\":{\"num_bits\":8,"
                     "\"type\":\"int\",\"strategy\":\"token\",\"dynamic\":true}}}}";
  CHECK(lb_quant_spec_parse(acts, strlen(acts), "qc", &sp, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "input_activations"));
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_quant_ct OUTDIR\n");
    return 2;
  }
  OUT = argv[1];
  mkdir(OUT, 0755);
  static const lb_test_case cases[] = {
      {"bounds", bounds},
      {"refusals", refusals},
      {"layouts", layouts},
      {"hostile_files", hostile_files},
      {"configs", configs},
  };
  return lb_test_main(1, argv, cases, sizeof cases / sizeof *cases);
}
