/* Every on-disk layout of the format table, driven the way `lowbit quantize --config` drives it:
 * a Transformers quantization_config -> lb_quant_spec_parse -> quantize -> write (safetensors) ->
 * read back -> dequantize, on random weights (normal, with planted outliers) and on real weights
 * (two Linear layers of pocket-llama). For each entry:
 *   - the read-back weight dequantizes bit for bit as the one that was written;
 *   - every weight is within the error bound of its kind and bit width (below, with the reason);
 *   - the relative L2 error is printed (and bounded by the same per-weight bound).
 * Adding a layout to spec.c without a row here leaves it untested: the table is the list. */
#include <sys/stat.h>

#include "quant/gptq.h"
#include "quant/spec.h"
#include "test.h"

typedef struct {
  const char *name;
  const char *config; /* quantization_config JSON */
} entry;

#define CT_INT(b, strat, g, sym)                                                                   \
  "{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\",\"config_groups\":{"  \
  "\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":" #b ",\"type\":\"int\","     \
  "\"symmetric\":" #sym ",\"strategy\":\"" strat "\",\"group_size\":" #g "}}}}"
#define CT_FP8(strat, extra)                                                                       \
  "{\"quant_method\":\"compressed-tensors\",\"format\":\"float-quantized\",\"config_groups\":{" \
  "\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":8,\"type\":\"float\","        \
  "\"symmetric\":true,\"strategy\":\"" strat "\"" extra "}}}}"

static const entry TABLE[] = {
    {"gptq int8 per-channel sym", "{\"quant_method\":\"rtn\",\"bits\":8,\"group_size\":-1,\"sym\":true}"},
    {"gptq int4 g128 asym", "{\"quant_method\":\"rtn\",\"bits\":4,\"group_size\":128,\"sym\":false}"},
    {"gptq int4 g32 sym", "{\"quant_method\":\"rtn\",\"bits\":4,\"group_size\":32,\"sym\":true}"},
    {"gptq int3 g128 asym", "{\"quant_method\":\"rtn\",\"bits\":3,\"group_size\":128,\"sym\":false}"},
    {"gptq int2 g64 asym", "{\"quant_method\":\"rtn\",\"bits\":2,\"group_size\":64,\"sym\":false}"},
    {"ct int4 g128 asym", CT_INT(4, "group", 128, false)},
    {"ct int8 channel sym", CT_INT(8, "channel", null, true)},
    {"bnb nf4", "{\"load_in_4bit\":true,\"bnb_4bit_quant_type\":\"nf4\"}"},
    {"bnb nf4 + double quant",
     "{\"load_in_4bit\":true,\"bnb_4bit_quant_type\":\"nf4\",\"bnb_4bit_use_double_quant\":true}"},
    {"bnb fp4", "{\"load_in_4bit\":true,\"bnb_4bit_quant_type\":\"fp4\"}"},
    {"bnb fp4 + double quant",
     "{\"load_in_4bit\":true,\"bnb_4bit_quant_type\":\"fp4\",\"bnb_4bit_use_double_quant\":true}"},
    {"bnb LLM.int8", "{\"load_in_8bit\":true}"},
    {"fp8 128x128 (weight_scale_inv)", "{\"quant_method\":\"fp8\",\"weight_block_size\":[128,128]}"},
    {"ct fp8 tensor", CT_FP8("tensor", "")},
    {"ct fp8 channel", CT_FP8("channel", "")},
    {"ct fp8 block", CT_FP8("block", ",\"block_structure\":[128,128]")},
    {"hqq 8-bit g64", "{\"quant_method\":\"hqq\",\"nbits\":8,\"group_size\":64}"},
    {"hqq 4-bit g64", "{\"quant_method\":\"hqq\",\"nbits\":4,\"group_size\":64}"},
    {"hqq 3-bit g64", "{\"quant_method\":\"hqq\",\"nbits\":3,\"group_size\":64}"},
    {"hqq 2-bit g64", "{\"quant_method\":\"hqq\",\"nbits\":2,\"group_size\":64}"},
    {"hqq 1-bit g64", "{\"quant_method\":\"hqq\",\"nbits\":1,\"group_size\":64}"},
};

static const char *OUT;

/* The most a weight may move, from the kind, its bit width and the stored parameters:
 *  AFFINE     round to nearest moves a weight by at most half a step (scale). Scales and zeros
 *             are stored rounded (fp16 for GPTQ: 2^-11; bf16 meta for HQQ / compressed-tensors on
 *             bf16 weights: 2^-9), which moves the far end of the grid by up to 2^b * u steps; a zero
 *             computed or stored in that dtype (compressed-tensors' zp, HQQ's fractional zero) and
 *             the rounding of (q - z) * s may move it as much again each: 3 * 2^b * u. HQQ's solver
 *             shifts the zero off the min/max grid (its refit of the group mean), so a clamped
 *             extreme may sit up to a further step away: 1.5 steps for HQQ.
 *  CODEBOOK   half the widest gap of the code book (NF4 -1 .. -0.6962 -> 0.1519, FP4 (bnb) 1/3 between
 *             2/3 and 1 -> 0.1667) times the block's true absmax (the codes are chosen against it),
 *             plus |true - stored absmax| (double quantization stores it as an 8-bit code; |code| <= 1).
 *  INT8ROW    half of SCB / 127, after the weight was rounded to fp16 (2^-11 relative).
 *  FP8 E4M3   half an ulp: 2^-4 relative (3 mantissa bits), or half the subnormal spacing 2^-10 of
 *             the scale, whichever is larger. */
static double bound(const lb_qweight *q, bool hqq, int64_t r, int64_t c, const float *w,
                    double absmax) {
  double x = fabs((double)w[r * q->cols + c]), tiny = 0x1p-24; /* fp16 subnormal rounding */
  switch (q->kind) {
  case LB_QK_AFFINE: {
    int64_t g = q->g_idx ? q->g_idx[c] : c / q->group;
    double s = q->scale[r * q->ngroups + g];
    return s * ((hqq ? 1.5 : 0.5) + 3 * ldexp(1.0, q->bits) * 0x1p-9) + tiny;
  }
  case LB_QK_CODEBOOK: {
    /* codes were chosen against the true absmax; the file decodes them with the stored one */
    double stored = q->absmax[(r * q->cols + c) / q->block];
    return absmax * (q->nf4 ? 0.1519 : 0.16667) * (1 + 1e-6) + fabs(stored - absmax) + tiny;
  }
  case LB_QK_INT8ROW: return q->scale[r] / 254.0 * (1 + 1e-6) + x * 0x1p-11 + tiny;
  case LB_QK_FP8: {
    int64_t b = (r / q->block_r) * ((q->cols + q->block_c - 1) / q->block_c) + c / q->block_c;
    return fmax(x * 0x1p-4, q->scale[b] * 0x1p-10) * (1 + 1e-6);
  }
  }
  return 0;
}

/* Writes q under `mod` into <OUT>/<tag>, reads it back into *back (the tensors stay open in *t). */
static void write_read(const lb_quant_spec *s, const lb_qweight *q, const char *mod, lb_dtype wdt,
                       const char *tag, lb_tensors **t, lb_qweight *back) {
  lb_error err = {0};
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/%s", OUT, tag);
  mkdir(dir, 0755);
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(dir, 0, &wr, &err), &err);
  CHECK_OK(lb_quant_spec_write(s, wr, mod, q, wdt, &err), &err);
  CHECK_OK(lb_st_writer_finish(wr, &err), &err);
  CHECK_OK(lb_tensors_open(dir, t, &err), &err);
  CHECK_OK(lb_quant_spec_read(s, *t, mod, back, &err), &err);
}

/* Quantizes w [rows, cols] with the entry's config, writes and reads it back twice: the second
 * read must equal the first bit for bit (what a file holds survives a rewrite; a layout that rounds
 * parameters on the first write, as HQQ's bf16 meta does, rounds nothing more), and every weight of
 * what the file holds must be within the bound. */
static void one(const entry *e, const char *tag, const float *w, lb_dtype wdt, int64_t rows,
                int64_t cols) {
  lb_error err = {0};
  lb_quant_spec s;
  CHECK_OK(lb_quant_spec_parse(e->config, strlen(e->config), e->name, &s, &err), &err);
  s.wdtype = wdt;
  lb_qweight q = {0}, back = {0}, back2 = {0};
  lb_tensors *t = NULL, *t2 = NULL;
  const char *mod = "model.layers.0.mlp.down_proj";
  char tag2[80];
  snprintf(tag2, sizeof tag2, "%s-again", tag);
  CHECK_OK(lb_quant_spec_quantize(&s, w, rows, cols, mod, &q, &err), &err);
  write_read(&s, &q, mod, wdt, tag, &t, &back);
  write_read(&s, &back, mod, wdt, tag2, &t2, &back2);
  float *a = malloc((size_t)cols * sizeof *a), *b = malloc((size_t)cols * sizeof *b);
  double e2 = 0, w2 = 0, worst = 0;
  bool same = back.rows == rows && back.cols == cols && back2.rows == rows && back2.cols == cols;
  for (int64_t r = 0; same && r < rows; r++) {
    lb_qweight_dequant_row(&back, r, a);
    lb_qweight_dequant_row(&back2, r, b);
    same = !memcmp(a, b, (size_t)cols * sizeof *a);
    for (int64_t c = 0; c < cols; c++) {
      /* the absmax of the weight's flat block (code books; blocks of q.block over r * cols + c) */
      double absmax = 0;
      if (back.kind == LB_QK_CODEBOOK) {
        int64_t i0 = (r * cols + c) / back.block * back.block, i1 = i0 + back.block;
        for (int64_t i = i0; i < i1 && i < rows * cols; i++) absmax = fmax(absmax, fabs(w[i]));
      }
      double d = fabs((double)a[c] - w[r * cols + c]);
      double bd = bound(&back, s.method == LB_QM_HQQ, r, c, w, absmax);
      worst = fmax(worst, d / bd);
      e2 += d * d, w2 += (double)w[r * cols + c] * w[r * cols + c];
    }
  }
  CHECK(same);
  CHECK(worst <= 1.0);
  printf("  %-32s %-6s rel L2 %.5f   worst error / bound %.3f\n", e->name, tag + strlen(tag) - 4,
         sqrt(e2 / w2), worst);
  if (!same || worst > 1.0) fprintf(stderr, "FAIL %s on %s\n", e->name, tag);
  free(a), free(b);
  lb_tensors_close(t), lb_tensors_close(t2);
  lb_qweight_free(&q), lb_qweight_free(&back), lb_qweight_free(&back2);
  lb_quant_spec_free(&s);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uniform(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static void random_weights(void) {
  const int64_t rows = 96, cols = 256;
  float *w = malloc((size_t)(rows * cols) * sizeof *w);
  for (int64_t i = 0; i < rows * cols; i++) {
    double n = sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
    w[i] = (float)(0.02 * n * (uniform() < 0.002 ? 10.0 : 1.0)); /* 0.2% outliers at 10 sigma */
  }
  for (size_t i = 0; i < sizeof TABLE / sizeof *TABLE; i++) {
    char tag[64];
    snprintf(tag, sizeof tag, "%02zu-rand", i);
    one(&TABLE[i], tag, w, LB_F32, rows, cols);
  }
  free(w);
}

static void real_weights(void) {
  lb_error err = {0};
  lb_checkpoint *c;
  CHECK_OK(lb_checkpoint_open(lb_test_shared("models/pocket-llama-48m"), &c, &err), &err);
  const char *names[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.5.mlp.down_proj.weight"};
  for (size_t k = 0; k < 2; k++) {
    const lb_tensor *t = lb_tensors_find(lb_checkpoint_tensors(c), names[k]);
    CHECK(t && t->dtype == LB_BF16 && t->ndim == 2);
    if (!t) continue;
    float *w = malloc((size_t)t->numel * sizeof *w);
    CHECK_OK(lb_convert(w, LB_F32, t->data, LB_BF16, (size_t)t->numel, 0, &err), &err);
    for (size_t i = 0; i < sizeof TABLE / sizeof *TABLE; i++) {
      char tag[64];
      snprintf(tag, sizeof tag, "%02zu-%zu-real", i, k);
      one(&TABLE[i], tag, w, LB_BF16, t->shape[0], t->shape[1]);
    }
    free(w);
  }
  lb_checkpoint_close(c);
}

/* GPTQ v1 stores zero - 1: a group whose weights are all >= 0 has zero 0 under GPTQ's formulas,
 * which v1 readers decode as 2^bits. The v1 path moves such groups to zero 1 (lb_rtn_v1_safe), the
 * writer refuses a zero of 0 in v1 and accepts it in v2. */
static void gptq_v1_zero(void) {
  lb_error err = {0};
  float w[8 * 64]; /* row 0 all positive (zero 0 under GPTQ's formulas), the others mixed */
  for (int i = 0; i < 8 * 64; i++) w[i] = i < 64 ? 0.001f * (float)(i + 1) : 0.002f * (float)(i % 64 - 26);
  lb_quant_spec s;
  const char *cfg = "{\"quant_method\":\"rtn\",\"bits\":4,\"group_size\":64,\"sym\":false}";
  CHECK_OK(lb_quant_spec_parse(cfg, strlen(cfg), "qc", &s, &err), &err);
  lb_qweight q = {0}, raw = {0};
  if (lb_quant_spec_quantize(&s, w, 8, 64, "m", &q, &err) != LB_OK ||
      lb_rtn_quantize(w, 8, 64, 4, 64, false, "m", &raw, &err) != LB_OK) {
    CHECK(!"quantize");
    return;
  }
  CHECK(raw.zero[0] == 0.0f && raw.zero[1] != 0.0f); /* GPTQ's formulas: zero 0 for row 0 */
  CHECK(q.zero[0] == 1.0f && q.scale[0] == 0.064f / 14.0f && q.zero[1] == raw.zero[1]);
  float row[64];
  lb_qweight_dequant_row(&q, 0, row);
  for (int c = 0; c < 64; c++) CHECK(fabsf(row[c] - w[c]) <= 0.5f * q.scale[0] * (1 + 1e-6f));
  lb_st_writer *wr;
  CHECK_OK(lb_st_writer_open(lb_test_tmpdir(), 0, &wr, &err), &err);
  CHECK(lb_gptq_write(wr, "a", &raw, LB_GPTQ_V1, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "a: zero point 0") && strstr(err.msg, "v1 stores zero - 1"));
  CHECK_OK(lb_gptq_write(wr, "b", &raw, LB_GPTQ_V2, &err), &err);
  CHECK_OK(lb_gptq_write(wr, "c", &q, LB_GPTQ_V1, &err), &err);
  lb_st_writer_abort(wr);
  lb_qweight_free(&q), lb_qweight_free(&raw);
  lb_quant_spec_free(&s);
}

int main(int argc, char **argv) {
  OUT = argc > 1 ? argv[1] : lb_test_tmpdir();
  mkdir(OUT, 0755);
  static const lb_test_case cases[] = {{"random_weights", random_weights},
                                       {"real_weights", real_weights},
                                       {"gptq_v1_zero", gptq_v1_zero}};
  return lb_test_main(argc > 1 ? 1 : argc, argv, cases, sizeof cases / sizeof *cases);
}
