/* FP8 on-disk layouts: compressed-tensors "float-quantized" and fine-grained FP8 (DeepSeek-V3 /
 * Transformers FineGrainedFP8), plus the quantization_config objects that announce them. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/formats/layout.h"
#include "quant/fp8.h"

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void lb_fp8_strategy_block(lb_fp8_strategy s, int64_t rows, int64_t cols, int64_t *block_r,
                           int64_t *block_c) {
  if (s == LB_FP8_TENSOR) *block_r = rows, *block_c = cols;
  if (s == LB_FP8_CHANNEL) *block_r = 1, *block_c = cols;
}

static lb_status check_writable(const lb_qweight *q, const char *prefix, lb_error *err) {
  if (q->kind != LB_QK_FP8 || !q->q || !q->scale)
    return lb_fail(err, LB_EINVAL, "%s: not an FP8 quantized weight", prefix);
  if (q->fp8 != LB_F8_E4M3)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: %s codes: the FP8 checkpoint layouts store F8_E4M3 weights only", prefix,
                   lb_dtype_name(q->fp8));
  return LB_OK;
}

static lb_status add(lb_st_writer *w, const char *prefix, const char *suffix, lb_dtype dt, int ndim,
                     const int64_t *shape, const void *data, uint64_t nbytes, lb_error *err) {
  char name[512];
  if (snprintf(name, sizeof name, "%s.%s", prefix, suffix) >= (int)sizeof name)
    return lb_fail(err, LB_EINVAL, "tensor name '%s.%s' is too long", prefix, suffix);
  return lb_st_writer_add(w, name, dt, ndim, shape, data, nbytes, err);
}

/* weight, scale (converted to sdt, which must keep every value exactly) and bias. */
static lb_status write_common(lb_st_writer *w, const char *prefix, const lb_qweight *q,
                              const char *scale_name, lb_dtype sdt, int sndim,
                              const int64_t *sshape, lb_error *err) {
  int64_t wshape[2] = {q->rows, q->cols};
  int64_t ns = lb_qweight_nscales(q);
  size_t es = lb_dtype_size(sdt);
  void *buf = malloc((size_t)ns * es);
  if (!buf) return lb_fail(err, LB_ENOMEM, "%s.%s: out of memory", prefix, scale_name);
  lb_status s = lb_convert(buf, sdt, q->scale, LB_F32, (size_t)ns, 0, err);
  for (int64_t i = 0; s == LB_OK && sdt != LB_F32 && i < ns; i++) {
    float back =
        sdt == LB_BF16 ? lb_bf16_to_f32(((uint16_t *)buf)[i]) : lb_f16_to_f32(((uint16_t *)buf)[i]);
    if (back != q->scale[i])
      s = lb_fail(err, LB_EINVAL,
                  "%s.%s: scale %lld = %g is not exact in %s (quantize with that compute dtype)",
                  prefix, scale_name, (long long)i, (double)q->scale[i], lb_dtype_name(sdt));
  }
  /* scales are checked before anything is added, so a refusal leaves the writer unchanged */
  if (s == LB_OK)
    s = add(w, prefix, "weight", LB_F8_E4M3, 2, wshape, q->q, (uint64_t)(q->rows * q->cols), err);
  if (s == LB_OK) s = add(w, prefix, scale_name, sdt, sndim, sshape, buf, (uint64_t)ns * es, err);
  free(buf);
  if (s == LB_OK && q->bias)
    s = add(w, prefix, "bias", LB_F32, 1, &q->rows, q->bias, (uint64_t)q->rows * 4, err);
  return s;
}

lb_status lb_fp8_ct_write(lb_st_writer *w, const char *prefix, const lb_qweight *q,
                          lb_fp8_strategy strategy, lb_dtype scale_dtype, lb_error *err) {
  LB_TRY(check_writable(q, prefix, err));
  if (scale_dtype != LB_F32 && scale_dtype != LB_BF16 && scale_dtype != LB_F16)
    return lb_fail(err, LB_EINVAL, "%s.weight_scale: dtype %s (F32, BF16 or F16)", prefix,
                   lb_dtype_name(scale_dtype));
  bool whole_rows = q->block_c >= q->cols;
  int64_t shape[2] = {cdiv(q->rows, q->block_r), cdiv(q->cols, q->block_c)};
  int ndim = 2;
  if (strategy == LB_FP8_TENSOR && whole_rows && q->block_r >= q->rows) {
    ndim = 1, shape[0] = 1;
  } else if (strategy == LB_FP8_CHANNEL && whole_rows && q->block_r == 1) {
    shape[0] = q->rows, shape[1] = 1;
  } else if (strategy != LB_FP8_BLOCK) {
    return lb_fail(err, LB_EINVAL, "%s: scale blocks of %lld x %lld are not strategy %s", prefix,
                   (long long)q->block_r, (long long)q->block_c,
                   strategy == LB_FP8_TENSOR ? "tensor" : "channel");
  }
  return write_common(w, prefix, q, "weight_scale", scale_dtype, ndim, shape, err);
}

lb_status lb_fp8_fg_write(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_error *err) {
  LB_TRY(check_writable(q, prefix, err));
  int64_t shape[2] = {cdiv(q->rows, q->block_r), cdiv(q->cols, q->block_c)};
  return write_common(w, prefix, q, "weight_scale_inv", LB_F32, 2, shape, err);
}

static bool is_float16_32(lb_dtype d) { return d == LB_F32 || d == LB_BF16 || d == LB_F16; }

/* Reads weight + the scale tensor whose accepted shapes the caller lists (alt: a second one). */
static lb_status read_common(const lb_tensors *t, const char *prefix, const char *scale_name,
                             int64_t block_r, int64_t block_c, int ndim, const int64_t *shape,
                             int alt_ndim, const int64_t *alt_shape, lb_qweight *out,
                             lb_error *err) {
  const lb_tensor *wt, *st, *bt;
  char name[LB_LAYOUT_NAME_MAX], sfx[128];
  snprintf(sfx, sizeof sfx, ".%s", scale_name);
  LB_TRY(lb_layout_find(t, prefix, ".weight", true, name, &wt, err));
  LB_TRY(lb_layout_find(t, prefix, sfx, true, name, &st, err));
  LB_TRY(lb_layout_find(t, prefix, ".bias", false, name, &bt, err));
  char sb[96], eb[96];
  if (wt->dtype != LB_F8_E4M3 || wt->ndim != 2)
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s %s, expected F8_E4M3 [out, in]", wt->name,
                   lb_dtype_name(wt->dtype), lb_shape_str(wt->shape, wt->ndim, sb, sizeof sb));
  int64_t rows = wt->shape[0], cols = wt->shape[1];
  if (block_r == 0) block_r = rows; /* 0: the whole dimension (per tensor / per channel) */
  if (block_c == 0) block_c = cols;
  if (block_r < 1 || block_c < 1)
    return lb_fail(err, LB_EINVAL, "%s: fp8 block %lld x %lld", prefix, (long long)block_r,
                   (long long)block_c);
  /* shapes are given for the caller's geometry; fill in the weight's where asked (-1 = rows...) */
  int64_t exp[2], alt[2];
  for (int d = 0; d < 2; d++) {
    exp[d] = shape[d] == -1   ? rows
             : shape[d] == -2 ? cdiv(rows, block_r)
             : shape[d] == -3 ? cdiv(cols, block_c)
                              : shape[d];
    alt[d] = alt_shape ? alt_shape[d] : 0;
  }
  bool ok = st->ndim == ndim && !memcmp(st->shape, exp, (size_t)ndim * sizeof *exp);
  ok = ok || (alt_shape && st->ndim == alt_ndim &&
              !memcmp(st->shape, alt, (size_t)alt_ndim * sizeof *alt));
  if (!ok)
    return lb_fail(err, LB_EFORMAT, "tensor '%s': shape %s, expected %s for weight [%lld, %lld]",
                   st->name, lb_shape_str(st->shape, st->ndim, sb, sizeof sb),
                   lb_shape_str(exp, ndim, eb, sizeof eb), (long long)rows, (long long)cols);
  if (!is_float16_32(st->dtype))
    return lb_fail(err, LB_EFORMAT, "tensor '%s': dtype %s, expected F32, BF16 or F16", st->name,
                   lb_dtype_name(st->dtype));
  if (bt && (!is_float16_32(bt->dtype) || bt->ndim != 1 || bt->shape[0] != rows))
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s %s, expected a float [%lld]", bt->name,
                   lb_dtype_name(bt->dtype), lb_shape_str(bt->shape, bt->ndim, sb, sizeof sb),
                   (long long)rows);
  lb_qweight q = {.kind = LB_QK_FP8,
                  .rows = rows,
                  .cols = cols,
                  .bits = 8,
                  .fp8 = LB_F8_E4M3,
                  .block_r = block_r,
                  .block_c = block_c};
  LB_TRY(lb_qweight_alloc(&q, false, bt != NULL, err));
  memcpy(q.q, wt->data, (size_t)(rows * cols));
  lb_status s = lb_convert(q.scale, LB_F32, st->data, st->dtype, st->numel, 0, err);
  if (s == LB_OK && bt) s = lb_convert(q.bias, LB_F32, bt->data, bt->dtype, bt->numel, 0, err);
  for (int64_t i = 0; s == LB_OK && i < lb_qweight_nscales(&q); i++)
    if (!(q.scale[i] >= 0.0f) || isinf(q.scale[i])) /* 0 occurs: Transformers' zero blocks */
      s = lb_fail(err, LB_EFORMAT, "tensor '%s': scale %lld = %g is not a finite value >= 0",
                  st->name, (long long)i, (double)q.scale[i]);
  for (int64_t i = 0; s == LB_OK && i < rows * cols; i++)
    if ((q.q[i] & 0x7f) == 0x7f)
      s = lb_fail(err, LB_EFORMAT, "tensor '%s': code at [%lld, %lld] is NaN", wt->name,
                  (long long)(i / cols), (long long)(i % cols));
  if (s != LB_OK) {
    lb_qweight_free(&q);
    return s;
  }
  *out = q;
  return LB_OK;
}

lb_status lb_fp8_ct_read(const lb_tensors *t, const char *prefix, lb_fp8_strategy s,
                         int64_t block_r, int64_t block_c, lb_qweight *out, lb_error *err) {
  static const int64_t one[2] = {1, 0}, chan[2] = {-1, 1}, blk[2] = {-2, -3};
  switch (s) {
  case LB_FP8_TENSOR: /* [1], or [] as older compressed-tensors versions saved it */
    return read_common(t, prefix, "weight_scale", 0, 0, 1, one, 0, one, out, err);
  case LB_FP8_CHANNEL:
    return read_common(t, prefix, "weight_scale", 1, 0, 2, chan, 0, NULL, out, err);
  case LB_FP8_BLOCK:
    return read_common(t, prefix, "weight_scale", block_r, block_c, 2, blk, 0, NULL, out, err);
  }
  return lb_fail(err, LB_EINVAL, "%s: unknown fp8 strategy %d", prefix, (int)s);
}

lb_status lb_fp8_fg_read(const lb_tensors *t, const char *prefix, int64_t block_r, int64_t block_c,
                         lb_qweight *out, lb_error *err) {
  static const int64_t blk[2] = {-2, -3};
  return read_common(t, prefix, "weight_scale_inv", block_r, block_c, 2, blk, 0, NULL, out, err);
}

lb_status lb_fp8_input_scale(const lb_tensors *t, const char *prefix, float *out, lb_error *err) {
  return lb_fp8_scale_scalar(t, prefix, ".input_scale", out, err);
}

lb_status lb_fp8_scale_scalar(const lb_tensors *t, const char *prefix, const char *suffix, float *out,
                              lb_error *err) {
  const lb_tensor *st;
  char name[LB_LAYOUT_NAME_MAX], sb[96];
  LB_TRY(lb_layout_find(t, prefix, suffix, true, name, &st, err));
  if (!is_float16_32(st->dtype) || st->numel != 1 || st->ndim > 1)
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s %s, expected a float [1] (or [])", st->name,
                   lb_dtype_name(st->dtype), lb_shape_str(st->shape, st->ndim, sb, sizeof sb));
  float v;
  LB_TRY(lb_convert(&v, LB_F32, st->data, st->dtype, 1, 0, err));
  if (!(v > 0.0f) || isinf(v)) { /* named by the suffix: "input scale", "k scale" */
    char what[32];
    snprintf(what, sizeof what, "%s", suffix + (suffix[0] == '.'));
    for (char *p = what; *p; p++)
      if (*p == '_') *p = ' ';
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s %g is not a finite value > 0", st->name, what,
                   (double)v);
  }
  *out = v;
  return LB_OK;
}

/* ---- quantization_config JSON ---------------------------------------------------------------- */

typedef struct {
  char *p;
  size_t n, cap;
  bool oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (b->n + (size_t)k + 1 > b->cap) {
    size_t cap = (b->n + (size_t)k + 1) * 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p, b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

static void put_names(sbuf *b, const char *const *names, size_t n) {
  put(b, "[");
  for (size_t i = 0; i < n; i++) {
    put(b, "%s\"", i ? "," : "");
    for (const char *c = names[i]; *c; c++) {
      if (*c == '"' || *c == '\\')
        put(b, "\\%c", *c);
      else if ((unsigned char)*c < 0x20)
        put(b, "\\u%04x", (unsigned)*c);
      else
        put(b, "%c", *c);
    }
    put(b, "\"");
  }
  put(b, "]");
}

static lb_status finish(sbuf *b, char **json, lb_error *err) {
  if (b->oom || !b->p) {
    free(b->p);
    return lb_fail(err, LB_ENOMEM, "out of memory for a quantization_config");
  }
  *json = b->p;
  return LB_OK;
}

/* One QuantizationArgs object of compressed-tensors, every field spelled out as its model_dump. */
static void put_args(sbuf *b, const char *strategy, int64_t group, const int64_t *block,
                     bool dynamic) {
  put(b, "{\"num_bits\":8,\"type\":\"float\",\"symmetric\":true,");
  if (group > 0)
    put(b, "\"group_size\":%lld,", (long long)group);
  else
    put(b, "\"group_size\":null,");
  put(b, "\"strategy\":\"%s\",", strategy);
  if (block)
    put(b, "\"block_structure\":[%lld,%lld],", (long long)block[0], (long long)block[1]);
  else
    put(b, "\"block_structure\":null,");
  put(b, "\"dynamic\":%s,\"actorder\":null,\"observer\":%s,\"observer_kwargs\":{}}",
      dynamic ? "true" : "false", dynamic ? "null" : "\"minmax\"");
}

lb_status lb_fp8_ct_config(lb_fp8_strategy s, int64_t block_r, int64_t block_c, lb_fp8_act act,
                           int64_t act_group, const char *const *ignore, size_t n_ignore,
                           char **json, lb_error *err) {
  static const char *names[] = {"tensor", "channel", "block"};
  if ((int)s < 0 || s > LB_FP8_BLOCK || (s == LB_FP8_BLOCK && (block_r < 1 || block_c < 1)))
    return lb_fail(err, LB_EINVAL, "fp8 config: strategy %d, block %lld x %lld", (int)s,
                   (long long)block_r, (long long)block_c);
  if (act != LB_FP8_ACT_OFF && act != LB_FP8_ACT_TOKEN && act != LB_FP8_ACT_STATIC &&
      !(act == LB_FP8_ACT_GROUP128 && act_group > 0))
    return lb_fail(err, LB_EINVAL, "fp8 config: activations %d (group %lld)", (int)act,
                   (long long)act_group);
  sbuf b = {0};
  int64_t blk[2] = {block_r, block_c};
  put(&b, "{\"config_groups\":{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":");
  put_args(&b, names[s], 0, s == LB_FP8_BLOCK ? blk : NULL, false);
  put(&b, ",\"input_activations\":");
  if (act == LB_FP8_ACT_OFF)
    put(&b, "null");
  else if (act == LB_FP8_ACT_GROUP128)
    put_args(&b, "group", act_group, NULL, true); /* FP8_BLOCK scheme */
  else if (act == LB_FP8_ACT_STATIC)
    put_args(&b, "tensor", 0, NULL, false); /* FP8: the writer adds each input_scale */
  else
    put_args(&b, "token", 0, NULL, true); /* FP8_DYNAMIC */
  put(&b, ",\"output_activations\":null}},"
          "\"format\":\"float-quantized\",\"global_compression_ratio\":null,\"ignore\":");
  put_names(&b, ignore, n_ignore);
  put(&b, ",\"kv_cache_scheme\":null,\"quant_method\":\"compressed-tensors\","
          "\"quantization_status\":\"compressed\"}");
  return finish(&b, json, err);
}

lb_status lb_fp8_fg_config(int64_t block_r, int64_t block_c, const char *const *ignore,
                           size_t n_ignore, char **json, lb_error *err) {
  if (block_r < 1 || block_c < 1)
    return lb_fail(err, LB_EINVAL, "fp8 config: weight_block_size [%lld, %lld]", (long long)block_r,
                   (long long)block_c);
  sbuf b = {0};
  put(&b,
      "{\"quant_method\":\"fp8\",\"activation_scheme\":\"dynamic\",\"weight_block_size\":"
      "[%lld,%lld]",
      (long long)block_r, (long long)block_c);
  if (n_ignore) {
    put(&b, ",\"modules_to_not_convert\":");
    put_names(&b, ignore, n_ignore);
  }
  put(&b, "}");
  return finish(&b, json, err);
}
