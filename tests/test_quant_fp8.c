/* FP8 quantization and its two layouts: error bounds, the three granularities, round trips through
 * compressed-tensors and fine-grained files, hostile files, NaN weights, config JSON. Writes its
 * source weights and checkpoints to argv[1] (one folder per case + cases.txt) for
 * tests/py/quant_fp8_ref.py, which recomputes codes and scales with numpy + ml_dtypes. */
#include <float.h>
#include <sys/stat.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/qpack.h"
#include "base/threads.h"
#include "io/json.h"
#include "quant/fp8.h"
#include "quant/spec.h"
#include "test.h"

static const char *OUT;
static uint64_t rng = 0x243F6A8885A308D3ull;
static float frand(void) { /* [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}

/* Weights spanning many binades (so that codes hit subnormals), one all-zero 128x128 block when the
 * matrix has one, and optionally rounded to bf16. */
static float *make_w(int64_t rows, int64_t cols, bool bf16) {
  float *w = malloc((size_t)(rows * cols) * sizeof *w);
  for (int64_t i = 0; i < rows * cols; i++) {
    float x = frand() * exp2f(-8.0f * fabsf(frand()));
    w[i] = bf16 ? lb_bf16_to_f32(lb_f32_to_bf16(x)) : x;
  }
  if (rows >= 256 && cols >= 256)
    for (int64_t r = 128; r < 256; r++)
      for (int64_t c = 128; c < 256; c++) w[r * cols + c] = 0.0f;
  return w;
}

static float dec(const lb_qweight *q, int64_t i) {
  return q->fp8 == LB_F8_E4M3 ? lb_e4m3_to_f32(q->q[i]) : lb_e5m2_to_f32(q->q[i]);
}

/* Relative error bound: E4M3 has 3 fraction bits, so round-to-nearest of a normal value y is within
 * half an ulp = 2^-4 |y| (E5M2: 2 bits, 2^-3). Below the smallest normal (2^-6, 2^-14) the spacing
 * is fixed and the bound is absolute: half a subnormal step, 2^-10 (E4M3) or 2^-17 (E5M2). The code
 * is checked against y = w / scale as the quantizer computed it, then the dequantized value against
 * w with the two extra fp32 roundings (w / s and q * s) allowed for. */
static void bounds(void) {
  lb_error err = {0};
  const int64_t R = 300, C = 260;
  float *w = make_w(R, C, false);
  lb_dtype types[2] = {LB_F8_E4M3, LB_F8_E5M2};
  for (int t = 0; t < 2; t++) {
    float rel = t == 0 ? 0x1p-4f : 0x1p-3f, minn = t == 0 ? 0x1p-6f : 0x1p-14f;
    float sub = t == 0 ? 0x1p-10f : 0x1p-17f;
    int64_t blocks[3][2] = {{R, C}, {1, C}, {128, 128}};
    for (int b = 0; b < 3; b++) {
      lb_qweight q;
      CHECK_OK(lb_fp8_quantize(w, R, C, types[t], blocks[b][0], blocks[b][1], &q, &err), &err);
      CHECK(lb_qweight_check(&q, "bounds", &err) == LB_OK);
      int64_t nbc = (C + q.block_c - 1) / q.block_c;
      CHECK(lb_qweight_nscales(&q) == ((R + q.block_r - 1) / q.block_r) * nbc);
      float *row = malloc((size_t)C * sizeof *row);
      int bad = 0, top = 0;
      for (int64_t r = 0; r < R; r++) {
        lb_qweight_dequant_row(&q, r, row);
        for (int64_t c = 0; c < C; c++) {
          float s = q.scale[(r / q.block_r) * nbc + c / q.block_c], x = w[r * C + c];
          float y = x / s, d = dec(&q, r * C + c);
          float lim = fabsf(y) >= minn ? rel * fabsf(y) : sub;
          if (fabsf(d - y) > lim) bad++;
          if (fabsf(row[c] - x) > (lim + 0x1p-22f * fabsf(y)) * s * (1 + 0x1p-22f)) bad++;
          if ((q.q[r * C + c] & 0x7f) == (t == 0 ? 0x7e : 0x7b)) top++; /* +-max finite */
        }
      }
      CHECK_MSG(bad == 0, "%s block %lld x %lld: %d weights out of bounds", lb_dtype_name(types[t]),
                (long long)q.block_r, (long long)q.block_c, bad);
      /* every non-zero block's absmax maps onto +-max exactly (amax / s rounds to fmax) */
      CHECK(top >= lb_qweight_nscales(&q) - 1);
      free(row);
      lb_qweight_free(&q);
    }
  }
  free(w);
}

static void zero_block_and_bad_input(void) {
  lb_error err = {0};
  float w[4 * 4] = {0};
  lb_qweight q;
  lb_fp8_opts hf = {LB_FP8_RULE_HF, LB_F32};
  CHECK_OK(lb_fp8_quantize(w, 4, 4, LB_F8_E4M3, 4, 4, &q, &err), &err);
  CHECK(q.scale[0] == FLT_EPSILON && q.q[0] == 0); /* compressed-tensors' clamp(min=eps) */
  lb_qweight_free(&q);
  CHECK_OK(lb_fp8_quantize_ex(w, 4, 4, LB_F8_E4M3, 2, 2, &hf, &q, &err), &err);
  CHECK(q.scale[3] == FLT_EPSILON && q.q[15] == 0);
  lb_qweight_free(&q);
  w[6] = NAN;
  CHECK(lb_fp8_quantize(w, 4, 4, LB_F8_E4M3, 4, 4, &q, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "[1, 2]") && strstr(err.msg, "NaN"));
  w[6] = INFINITY;
  CHECK(lb_fp8_quantize(w, 4, 4, LB_F8_E4M3, 4, 4, &q, &err) == LB_EINVAL);
  w[6] = 0;
  CHECK(lb_fp8_quantize(w, 4, 4, LB_F16, 4, 4, &q, &err) == LB_EINVAL);
  CHECK(lb_fp8_quantize(w, 4, 4, LB_F8_E4M3, 0, 4, &q, &err) == LB_EINVAL);
}

static bool same(const lb_qweight *a, const lb_qweight *b) {
  return a->rows == b->rows && a->cols == b->cols && a->block_r == b->block_r &&
         a->block_c == b->block_c && !memcmp(a->q, b->q, (size_t)(a->rows * a->cols)) &&
         !memcmp(a->scale, b->scale, (size_t)lb_qweight_nscales(a) * sizeof(float));
}

typedef struct {
  const char *name, *layout; /* "ct" or "fg" */
  lb_fp8_strategy strat;
  lb_fp8_rule rule;
  lb_dtype compute, scale_dtype;
  int64_t rows, cols;
} fp8_case;

/* Quantizes, writes <OUT>/<name>/model.safetensors (source weights "src" + the layer), reads it
 * back and compares with the in-memory weight. */
static void round_trip(const fp8_case *k, FILE *manifest) {
  lb_error err = {0};
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/%s", OUT, k->name);
  mkdir(dir, 0755);
  float *w = make_w(k->rows, k->cols, k->compute == LB_BF16);
  int64_t br = 128, bc = 128;
  lb_fp8_strategy_block(k->strat, k->rows, k->cols, &br, &bc);
  lb_fp8_opts o = {k->rule, k->compute};
  lb_qweight q, back = {0};
  CHECK_OK(lb_fp8_quantize_ex(w, k->rows, k->cols, LB_F8_E4M3, br, bc, &o, &q, &err), &err);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  int64_t shape[2] = {k->rows, k->cols};
  CHECK_OK(
      lb_st_writer_add(wr, "src", LB_F32, 2, shape, w, (uint64_t)(k->rows * k->cols) * 4, &err),
      &err);
  bool ct = !strcmp(k->layout, "ct");
  CHECK_OK(ct ? lb_fp8_ct_write(wr, "layer", &q, k->strat, k->scale_dtype, &err)
              : lb_fp8_fg_write(wr, "layer", &q, &err),
           &err);
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  lb_tensors *t;
  CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
  CHECK_OK(ct ? lb_fp8_ct_read(t, "layer", k->strat, 128, 128, &back, &err)
              : lb_fp8_fg_read(t, "layer", 128, 128, &back, &err),
           &err);
  CHECK_MSG(back.q && same(&q, &back), "case %s: read back differs", k->name);
  fprintf(manifest, "%s %s %d %s %s %lld %lld\n", k->name, k->layout, (int)k->strat,
          k->rule == LB_FP8_RULE_CT ? "ct" : "hf", lb_dtype_name(k->compute), (long long)br,
          (long long)bc);
  lb_tensors_close(t);
  lb_qweight_free(&back);
  lb_qweight_free(&q);
  free(w);
}

static void layouts(void) {
  static const fp8_case cases[] = {
      {"ct_tensor", "ct", LB_FP8_TENSOR, LB_FP8_RULE_CT, LB_F32, LB_F32, 192, 320},
      {"ct_channel", "ct", LB_FP8_CHANNEL, LB_FP8_RULE_CT, LB_F32, LB_F32, 192, 320},
      {"ct_block", "ct", LB_FP8_BLOCK, LB_FP8_RULE_CT, LB_F32, LB_F32, 300, 260},
      {"ct_channel_bf16", "ct", LB_FP8_CHANNEL, LB_FP8_RULE_CT, LB_BF16, LB_BF16, 192, 320},
      {"ct_block_bf16", "ct", LB_FP8_BLOCK, LB_FP8_RULE_CT, LB_BF16, LB_BF16, 256, 384},
      {"fg_block", "fg", LB_FP8_BLOCK, LB_FP8_RULE_HF, LB_F32, LB_F32, 300, 260},
      {"fg_block_bf16", "fg", LB_FP8_BLOCK, LB_FP8_RULE_HF, LB_BF16, LB_F32, 256, 384},
  };
  char path[1024];
  snprintf(path, sizeof path, "%s/cases.txt", OUT);
  FILE *m = fopen(path, "w");
  CHECK(m != NULL);
  if (!m) return;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) round_trip(&cases[i], m);
  fclose(m);
}

/* A folder holding <layer>.weight of wdt [r, c] and <layer>.<sname> of sdt with the given shape. */
static lb_status hostile_st(const char *sname, lb_dtype wdt, lb_dtype sdt, int sndim,
                            const int64_t *sshape, bool fg, lb_fp8_strategy st, lb_error *err) {
  char dir[1024];
  static int n;
  snprintf(dir, sizeof dir, "%s/hostile%d", lb_test_tmpdir(), n++);
  mkdir(dir, 0755);
  uint8_t wbuf[256 * 2] = {0};
  float sbuf[16] = {0};
  for (int i = 0; i < 16; i++) sbuf[i] = 1.0f;
  int64_t ws[2] = {16, 16};
  lb_st_writer *w;
  LB_TRY(lb_st_writer_open(dir, 0, &w, err));
  int64_t sn = 1;
  for (int d = 0; d < sndim; d++) sn *= sshape[d];
  lb_st_writer_add(w, "m.weight", wdt, 2, ws, wbuf, 256 * lb_dtype_size(wdt), err);
  lb_st_writer_add(w, sname, sdt, sndim, sshape, sbuf, (uint64_t)sn * lb_dtype_size(sdt), err);
  LB_TRY(lb_st_writer_finish(w, err));
  lb_tensors *t;
  LB_TRY(lb_tensors_open(dir, &t, err));
  lb_qweight q = {0};
  lb_status s =
      fg ? lb_fp8_fg_read(t, "m", 8, 8, &q, err) : lb_fp8_ct_read(t, "m", st, 8, 8, &q, err);
  lb_qweight_free(&q);
  lb_tensors_close(t);
  return s;
}

static lb_status hostile(const char *sname, lb_dtype wdt, lb_dtype sdt, int sndim,
                         const int64_t *sshape, bool fg, lb_error *err) {
  return hostile_st(sname, wdt, sdt, sndim, sshape, fg, LB_FP8_CHANNEL, err);
}

/* lb_fp8_input_scale on a file holding m.input_scale of dtype dt, shape (ndim, shape), value v. */
static lb_status input_scale_file(lb_dtype dt, int ndim, const int64_t *shape, float v, float *out,
                                  lb_error *err) {
  char dir[1024];
  static int n;
  snprintf(dir, sizeof dir, "%s/input_scale%d", lb_test_tmpdir(), n++);
  mkdir(dir, 0755);
  float buf[4] = {v, v, v, v};
  uint16_t h[4];
  for (int i = 0; i < 4; i++) h[i] = lb_f32_to_bf16(v);
  int64_t numel = 1;
  for (int d = 0; d < ndim; d++) numel *= shape[d];
  lb_st_writer *w;
  LB_TRY(lb_st_writer_open(dir, 0, &w, err));
  lb_st_writer_add(w, "m.input_scale", dt, ndim, shape, dt == LB_BF16 ? (void *)h : (void *)buf,
                   (uint64_t)numel * lb_dtype_size(dt), err);
  LB_TRY(lb_st_writer_finish(w, err));
  lb_tensors *t;
  LB_TRY(lb_tensors_open(dir, &t, err));
  lb_status s = lb_fp8_input_scale(t, "m", out, err);
  lb_tensors_close(t);
  return s;
}

/* Static activation scales: [1] or [] in F32 / BF16 / F16, finite and > 0; anything else refused
 * naming the tensor. */
static void input_scales(void) {
  lb_error err = {0};
  float s = 0;
  static const int64_t two = 2, oneone[2] = {1, 1};
  int64_t one = 1;
  CHECK_OK(input_scale_file(LB_BF16, 1, &one, 0.015625f, &s, &err), &err);
  CHECK(s == 0.015625f);
  CHECK_OK(input_scale_file(LB_F32, 0, NULL, 0.25f, &s, &err), &err);
  CHECK(s == 0.25f);
  const struct {
    lb_dtype dt;
    int ndim;
    const int64_t *shape;
    float v;
    const char *msg;
  } bad[] = {
      {LB_F32, 1, &two, 0.5f, "expected a float [1]"},   {LB_F32, 2, oneone, 0.5f, "[1, 1]"},
      {LB_I32, 1, &one, 0.5f, "I32"},                     {LB_F32, 1, &one, 0.0f, "input scale 0"},
      {LB_F32, 1, &one, -1.0f, "input scale -1"},         {LB_F32, 1, &one, NAN, "not a finite"},
      {LB_F32, 1, &one, INFINITY, "not a finite"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_MSG(input_scale_file(bad[i].dt, bad[i].ndim, bad[i].shape, bad[i].v, &s, &err) == LB_EFORMAT,
              "case %zu", i);
    CHECK_MSG(strstr(err.msg, "'m.input_scale'") && strstr(err.msg, bad[i].msg), "case %zu: %s", i, err.msg);
  }
  lb_tensors *t = NULL; /* missing */
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/no_input_scale", lb_test_tmpdir());
  mkdir(dir, 0755);
  lb_st_writer *w;
  CHECK_OK(lb_st_writer_open(dir, 0, &w, &err), &err);
  CHECK_OK(lb_st_writer_add(w, "m.weight", LB_F32, 1, &one, &s, 4, &err), &err);
  CHECK_OK(lb_st_writer_finish(w, &err), &err);
  CHECK_OK(lb_tensors_open(dir, &t, &err), &err);
  CHECK(lb_fp8_input_scale(t, "m", &s, &err) == LB_ENOTFOUND && strstr(err.msg, "m.input_scale"));
  lb_tensors_close(t);
}

static void hostile_files(void) {
  lb_error err = {0};
  int64_t chan[2] = {16, 1}, wrong[2] = {1, 16}, blk[2] = {2, 2}, blk_bad[2] = {2, 3};
  CHECK(hostile("m.weight_scale", LB_F8_E4M3, LB_F32, 2, chan, false, &err) == LB_OK);
  CHECK(hostile("m.weight_scale", LB_F8_E4M3, LB_BF16, 2, chan, false, &err) == LB_OK);
  CHECK(hostile("m.weight_scale", LB_F8_E4M3, LB_F32, 2, wrong, false, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.weight_scale'") && strstr(err.msg, "[1, 16]"));
  CHECK(hostile("m.weight_scale", LB_F8_E4M3, LB_I32, 2, chan, false, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.weight_scale'") && strstr(err.msg, "I32"));
  CHECK(hostile("m.weight_scale", LB_F16, LB_F32, 2, chan, false, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.weight'") && strstr(err.msg, "F16"));
  int64_t one = 1;
  CHECK(hostile_st("m.weight_scale", LB_F8_E4M3, LB_F32, 1, &one, false, LB_FP8_TENSOR, &err) ==
        LB_OK);
  CHECK(hostile_st("m.weight_scale", LB_F8_E4M3, LB_F32, 0, NULL, false, LB_FP8_TENSOR, &err) ==
        LB_OK); /* a scalar, as older compressed-tensors saved it */
  CHECK(hostile_st("m.weight_scale", LB_F8_E4M3, LB_F32, 2, chan, false, LB_FP8_TENSOR, &err) ==
        LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.weight_scale'") && strstr(err.msg, "expected [1]"));
  CHECK(hostile_st("m.weight_scale", LB_F8_E4M3, LB_F32, 2, blk, false, LB_FP8_BLOCK, &err) ==
        LB_OK);
  CHECK(hostile("m.other", LB_F8_E4M3, LB_F32, 2, chan, false, &err) == LB_ENOTFOUND);
  CHECK(strstr(err.msg, "m.weight_scale"));
  CHECK(hostile("m.weight_scale_inv", LB_F8_E4M3, LB_F32, 2, blk, true, &err) == LB_OK);
  CHECK(hostile("m.weight_scale_inv", LB_F8_E4M3, LB_F32, 2, blk_bad, true, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.weight_scale_inv'") && strstr(err.msg, "[2, 3]"));
  CHECK(hostile("m.weight_scale_inv", LB_F8_E4M3, LB_F8_E4M3, 2, blk, true, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "'m.weight_scale_inv'") && strstr(err.msg, "F8_E4M3"));

  /* writers refuse what the layouts cannot say */
  float w[64];
  for (int i = 0; i < 64; i++) w[i] = frand();
  lb_qweight q;
  CHECK_OK(lb_fp8_quantize(w, 8, 8, LB_F8_E5M2, 8, 8, &q, &err), &err);
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/e5m2", lb_test_tmpdir());
  mkdir(dir, 0755);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  CHECK(lb_fp8_ct_write(wr, "m", &q, LB_FP8_TENSOR, LB_F32, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "m:") && strstr(err.msg, "F8_E5M2"));
  lb_qweight_free(&q);
  CHECK_OK(lb_fp8_quantize(w, 8, 8, LB_F8_E4M3, 8, 8, &q, &err), &err);
  /* fp32 scales that bf16 cannot hold exactly */
  CHECK(lb_fp8_ct_write(wr, "m", &q, LB_FP8_TENSOR, LB_BF16, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "m.weight_scale"));
  CHECK(lb_fp8_ct_write(wr, "m", &q, LB_FP8_CHANNEL, LB_F32, &err) == LB_EINVAL); /* 8x8 block */
  CHECK(strstr(err.msg, "m:") && strstr(err.msg, "channel"));
  lb_st_writer_abort(wr);
  lb_qweight_free(&q);
}

/* A compressed-tensors float-quantized config whose group has input_activations `act` (JSON). */
static lb_status parse_ct_act(const char *act, lb_quant_spec *sp, lb_error *err) {
  char js[1024];
  snprintf(js, sizeof js,
           "{\"quant_method\":\"compressed-tensors\",\"format\":\"float-quantized\","
           "\"config_groups\":{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":8,"
           "\"type\":\"float\",\"symmetric\":true,\"strategy\":\"channel\",\"dynamic\":false},"
           "\"input_activations\":%s,\"output_activations\":null}}}",
           act);
  return lb_quant_spec_parse(js, strlen(js), "qc", sp, err);
}

/* What each declared activation scheme reads as (lb_quant_spec.act), what is refused, and how the
 * config is written back. The schemes as llm-compressor's presets write them: FP8 (static per
 * tensor), FP8_DYNAMIC (per token), FP8_BLOCK (groups of 128). */
static void ct_activations(void) {
  lb_error err = {0};
  lb_quant_spec sp;
  static const struct {
    const char *act;
    lb_fp8_act want;
    int64_t group;
  } ok[] = {
      {"null", LB_FP8_ACT_OFF, 0},
      {"{\"num_bits\":8,\"type\":\"float\",\"symmetric\":true,\"strategy\":\"tensor\","
       "\"dynamic\":false,\"observer\":\"minmax\"}",
       LB_FP8_ACT_STATIC, 0},
      {"{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"token\",\"dynamic\":true,"
       "\"observer\":null,\"group_size\":null,\"block_structure\":null}",
       LB_FP8_ACT_TOKEN, 0},
      {"{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"group\",\"group_size\":128,"
       "\"dynamic\":true}",
       LB_FP8_ACT_GROUP128, 128},
      {"{\"num_bits\":8,\"type\":\"float\",\"group_size\":64,\"dynamic\":true}", /* strategy
                                                                                  inferred: group */
       LB_FP8_ACT_GROUP128, 64},
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    CHECK_OK(parse_ct_act(ok[i].act, &sp, &err), &err);
    CHECK_MSG(sp.method == LB_QM_CT_FP8 && sp.act == ok[i].want && sp.act_group == ok[i].group,
              "case %zu: act %d group %lld", i, (int)sp.act, (long long)sp.act_group);
    /* written back: the same scheme */
    char *out = NULL;
    CHECK_OK(lb_quant_spec_to_json(&sp, &out, &err), &err);
    lb_quant_spec back;
    CHECK_OK(lb_quant_spec_parse(out, strlen(out), "back", &back, &err), &err);
    CHECK(back.act == sp.act && back.act_group == sp.act_group);
    lb_quant_spec_free(&back);
    free(out);
    lb_quant_spec_free(&sp);
  }
  static const struct {
    const char *act, *msg;
  } bad[] = {
      {"{\"num_bits\":8,\"type\":\"int\",\"strategy\":\"token\",\"dynamic\":true}",
       "qc.config_groups.group_0.input_activations: key 'num_bits'/'type': 8-bit int"},
      {"{\"num_bits\":4,\"type\":\"float\",\"strategy\":\"tensor_group\",\"dynamic\":\"local\","
       "\"group_size\":16}",
       "key 'num_bits'/'type': 4-bit float"},
      {"{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"tensor\",\"dynamic\":true}",
       "dynamic activations with strategy \"tensor\""},
      {"{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"token\",\"dynamic\":false}",
       "static activations with strategy \"token\""},
      {"{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"group\",\"dynamic\":true}",
       "key 'group_size'"},
      {"{\"num_bits\":8,\"type\":\"float\",\"symmetric\":false,\"strategy\":\"token\","
       "\"dynamic\":true}",
       "key 'symmetric'"},
      {"{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"token\",\"dynamic\":true,\"scale\":1}",
       "key 'scale' is not supported"},
      {"[8]", "input_activations: expected an object or null, got array"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_MSG(parse_ct_act(bad[i].act, &sp, &err) != LB_OK, "case %zu parsed", i);
    CHECK_MSG(strstr(err.msg, bad[i].msg), "case %zu: %s", i, err.msg);
  }
  const char *outq = "{\"quant_method\":\"compressed-tensors\",\"format\":\"float-quantized\","
                     "\"config_groups\":{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{"
                     "\"num_bits\":8,\"type\":\"float\",\"strategy\":\"channel\"},"
                     "\"output_activations\":{\"num_bits\":8}}}}";
  CHECK(lb_quant_spec_parse(outq, strlen(outq), "qc", &sp, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "output_activations"));
  /* Transformers' fp8: activations in 1 x weight_block_size[1] blocks */
  const char *fg = "{\"quant_method\":\"fp8\",\"weight_block_size\":[128,64]}";
  CHECK_OK(lb_quant_spec_parse(fg, strlen(fg), "qc", &sp, &err), &err);
  CHECK(sp.act == LB_FP8_ACT_GROUP128 && sp.act_group == 64);
  lb_quant_spec_free(&sp);
}

static void configs(void) {
  lb_error err = {0};
  const char *ign[] = {"lm_head"};
  char *s = NULL;
  CHECK_OK(lb_fp8_ct_config(LB_FP8_BLOCK, 128, 128, LB_FP8_ACT_GROUP128, 128, ign, 1, &s, &err), &err);
  json_t *j = lb_test_json(s);
  json_t *wq =
      json_object_get(json_object_get(json_object_get(j, "config_groups"), "group_0"), "weights");
  CHECK(!strcmp(json_string_value(json_object_get(j, "format")), "float-quantized"));
  CHECK(!strcmp(json_string_value(json_object_get(j, "quant_method")), "compressed-tensors"));
  CHECK(!strcmp(json_string_value(json_object_get(wq, "type")), "float"));
  CHECK(!strcmp(json_string_value(json_object_get(wq, "strategy")), "block"));
  CHECK(json_integer_value(json_object_get(wq, "num_bits")) == 8);
  CHECK(json_integer_value(json_array_get(json_object_get(wq, "block_structure"), 1)) == 128);
  CHECK(!strcmp(json_string_value(json_array_get(json_object_get(j, "ignore"), 0)), "lm_head"));
  json_decref(j);
  free(s);
  CHECK_OK(lb_fp8_ct_config(LB_FP8_CHANNEL, 0, 0, LB_FP8_ACT_OFF, 0, NULL, 0, &s, &err), &err);
  j = lb_test_json(s);
  CHECK(json_is_null(json_object_get(
      json_object_get(json_object_get(j, "config_groups"), "group_0"), "input_activations")));
  json_decref(j);
  free(s);
  CHECK_OK(lb_fp8_fg_config(128, 128, NULL, 0, &s, &err), &err);
  CHECK(!strcmp(s, "{\"quant_method\":\"fp8\",\"activation_scheme\":\"dynamic\","
                   "\"weight_block_size\":[128,128]}"));
  free(s);
  /* what Transformers' FineGrainedFP8Config.to_dict() writes (5.17): modules_to_convert null */
  const char *hf = "{\"quant_method\":\"fp8\",\"activation_scheme\":\"dynamic\","
                   "\"weight_block_size\":[128,128],\"modules_to_not_convert\":null,"
                   "\"modules_to_convert\":null,\"dequantize\":false,\"scale_fmt\":null}";
  lb_quant_spec sp;
  CHECK_OK(lb_quant_spec_parse(hf, strlen(hf), "qc", &sp, &err), &err);
  CHECK(sp.method == LB_QM_FP8 && sp.block_r == 128 && sp.block_c == 128);
  lb_quant_spec_free(&sp);
  const char *only = "{\"quant_method\":\"fp8\",\"modules_to_convert\":[\"q_proj\"]}";
  CHECK(lb_quant_spec_parse(only, strlen(only), "qc", &sp, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "qc: key 'modules_to_convert'"));
  ct_activations();
}

/* The fast E4M3 rounding of the activations against the generic narrowing (itself checked against
 * ml_dtypes by tests/py/dtype_ref.py): every fp16 value in the E4M3 range and beyond, times a few
 * scales, ties and 10^6 random floats. */
static void act_rounding(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++)
    for (int k = 0; k < 3; k++) {
      float v = lb_f16_to_f32((uint16_t)h) * (k == 0 ? 1.0f : k == 1 ? 0.0078125f : 1.37f);
      if (isnan(v)) continue;
      float want = lb_e4m3_to_f32(lb_f32_to_e4m3(v, true)), got = lb_fp8_e4m3_round(v);
      if (memcmp(&want, &got, 4)) bad += !bad ? (fprintf(stderr, "  %a: %a, want %a\n", v, got, want), 1) : 1;
    }
  for (int i = 0; i < 1000000; i++) {
    float v = frand() * exp2f(16.0f * frand());
    float want = lb_e4m3_to_f32(lb_f32_to_e4m3(v, true)), got = lb_fp8_e4m3_round(v);
    bad += memcmp(&want, &got, 4) != 0;
  }
  CHECK_MSG(bad == 0, "%d values round differently", bad);
  CHECK(isnan(lb_fp8_e4m3_round(NAN)));
}

/* W8A8: activations quantized by lb_fp8_act_quant and a packed FP8 weight's product with them
 * (lb_linear with act_group, the decode and the prefill path), written to <OUT>/act for
 * tests/py/quant_fp8_ref.py: x, the weight in the fine-grained layout, x quantized in 1 x 128
 * blocks, per row (token), with the static scale 0.02 and in 1 x 128 blocks of a 200-column row
 * (a short last block), and the
 * products y3 (3 rows) and y40 (40 rows) with 1 x 128 blocks. */
static void act_quant(void) {
  enum { N = 40, C = 384, R = 72, C2 = 200 };
  lb_error err = {0};
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/act", OUT);
  mkdir(dir, 0755);
  float *x = malloc(N * C * 4), *g = malloc(N * C * 4), *t = malloc(N * C * 4);
  float *x2 = malloc(N * C2 * 4), *g2 = malloc(N * C2 * 4), *y3 = malloc(3 * R * 4), *y40 = malloc(N * R * 4);
  for (int i = 0; i < N * C; i++) x[i] = frand() * exp2f(6.0f * frand()); /* blocks of wide range */
  for (int c = 0; c < 128; c++) x[5 * C + 128 + c] = 0.0f;                 /* one block of zeros */
  for (int i = 0; i < N * C2; i++) x2[i] = frand();
  lb_fp8_act_quant(x, N, C, 128, g);
  lb_fp8_act_quant(x, N, C, C, t);
  lb_fp8_act_quant(x2, N, C2, 128, g2);
  /* static: one scale, below the largest |x| / 448, so that some inputs saturate */
  float *st = malloc(N * C * 4);
  lb_fp8_act_quant_static(x, N, C, 0.02f, st);
  float *wf = make_w(R, C, false);
  lb_qweight q;
  CHECK_OK(lb_fp8_quantize(wf, R, C, LB_F8_E4M3, 128, 128, &q, &err), &err);
  lb_qpack *pk = NULL;
  lb_pool *pool = NULL;
  CHECK_OK(lb_pool_new(2, &pool, &err), &err);
  CHECK_OK(lb_qpack_new(&q, &pk, &err), &err);
  CHECK(pk != NULL);
  lb_mat m = {.dtype = LB_F32, .rows = R, .cols = C, .pack = pk, .act_group = 128};
  CHECK_OK(lb_linear(pool, &m, NULL, x, 3, y3, &err), &err);
  CHECK_OK(lb_linear(pool, &m, NULL, x, N, y40, &err), &err);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  int64_t sx[2] = {N, C}, sx2[2] = {N, C2}, s3[2] = {3, R}, s40[2] = {N, R};
  CHECK_OK(lb_st_writer_add(wr, "x", LB_F32, 2, sx, x, N * C * 4, &err), &err);
  CHECK_OK(lb_st_writer_add(wr, "g128", LB_F32, 2, sx, g, N * C * 4, &err), &err);
  CHECK_OK(lb_st_writer_add(wr, "token", LB_F32, 2, sx, t, N * C * 4, &err), &err);
  CHECK_OK(lb_st_writer_add(wr, "static", LB_F32, 2, sx, st, N * C * 4, &err), &err);
  CHECK_OK(lb_st_writer_add(wr, "x2", LB_F32, 2, sx2, x2, N * C2 * 4, &err), &err);
  CHECK_OK(lb_st_writer_add(wr, "x2_g128", LB_F32, 2, sx2, g2, N * C2 * 4, &err), &err);
  CHECK_OK(lb_st_writer_add(wr, "y3", LB_F32, 2, s3, y3, 3 * R * 4, &err), &err);
  CHECK_OK(lb_st_writer_add(wr, "y40", LB_F32, 2, s40, y40, N * R * 4, &err), &err);
  CHECK_OK(lb_fp8_fg_write(wr, "layer", &q, &err), &err);
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  lb_qpack_free(pk);
  lb_pool_free(pool);
  lb_qweight_free(&q);
  free(x), free(g), free(t), free(st), free(x2), free(g2), free(y3), free(y40), free(wf);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_quant_fp8 OUTDIR\n");
    return 2;
  }
  OUT = argv[1];
  mkdir(OUT, 0755);
  static const lb_test_case cases[] = {
      {"bounds", bounds},   {"zero_block_and_bad_input", zero_block_and_bad_input},
      {"layouts", layouts}, {"hostile_files", hostile_files},
      {"configs", configs}, {"act_rounding", act_rounding},
      {"act_quant", act_quant},   {"input_scales", input_scales},
  };
  return lb_test_main(1, argv, cases, sizeof cases / sizeof *cases);
}
