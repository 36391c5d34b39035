/* The Transformers / bitsandbytes serialization of one quantized Linear (Linear4bit's
 * QuantState.as_dict(packed=True), Linear8bitLt's SCB + weight_format): writer and checked reader. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "io/json.h"
#include "quant/bnb.h"
#include "quant/formats/layout.h"


static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

const char *lb_bnb_py_float(double v, char *buf, size_t cap) {
  if (isnan(v)) return snprintf(buf, cap, "NaN"), buf;
  if (isinf(v)) return snprintf(buf, cap, v < 0 ? "-Infinity" : "Infinity"), buf;
  if (v == 0) return snprintf(buf, cap, signbit(v) ? "-0.0" : "0.0"), buf;
  /* the shortest correctly rounded digit string that reads back as v (what repr picks, save for a
   * tie at a power of two that no fp32 value reaches) */
  char tmp[48];
  for (int p = 1; p <= 17; p++) {
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
    if (strtod(tmp, NULL) == v) break;
  }
  char digits[24];
  int nd = 0, e = 0;
  const char *s = tmp;
  bool neg = *s == '-';
  if (neg) s++;
  for (; *s && *s != 'e'; s++)
    if (*s != '.') digits[nd++] = *s;
  if (*s == 'e') e = atoi(s + 1);
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = 0;
  char out[64];
  int k = 0;
  if (neg) out[k++] = '-';
  if (e >= -4 && e < 16) { /* repr's fixed notation, always with a fractional part */
    if (e < 0) {
      out[k++] = '0', out[k++] = '.';
      for (int i = 0; i < -e - 1; i++) out[k++] = '0';
      for (int i = 0; i < nd; i++) out[k++] = digits[i];
    } else {
      for (int i = 0; i <= e; i++) out[k++] = i < nd ? digits[i] : '0';
      out[k++] = '.';
      if (nd <= e + 1) out[k++] = '0';
      for (int i = e + 1; i < nd; i++) out[k++] = digits[i];
    }
    out[k] = 0;
  } else {
    out[k++] = digits[0];
    if (nd > 1) out[k++] = '.';
    for (int i = 1; i < nd; i++) out[k++] = digits[i];
    snprintf(out + k, sizeof out - (size_t)k, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
  }
  snprintf(buf, cap, "%s", out);
  return buf;
}

/* torch's str(dtype).strip("torch.") for the dtypes a Linear is kept in */
static const char *torch_dtype(lb_dtype t) {
  return t == LB_F16 ? "float16" : t == LB_BF16 ? "bfloat16" : t == LB_F32 ? "float32" : NULL;
}

static lb_status add(lb_st_writer *w, const char *prefix, const char *suffix, lb_dtype dt, int ndim,
                     const int64_t *shape, const void *data, uint64_t nbytes, lb_error *err) {
  char name[LB_LAYOUT_NAME_MAX];
  LB_TRY(lb_layout_name(name, prefix, suffix, err));
  return lb_st_writer_add(w, name, dt, ndim, shape, data, nbytes, err);
}

static lb_status write_bias(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_dtype dt,
                            lb_error *err) {
  if (!q->bias) return LB_OK;
  size_t es = lb_dtype_size(dt);
  void *buf = malloc((size_t)q->rows * es);
  if (!buf) return lb_fail(err, LB_ENOMEM, "%s.bias: out of memory", prefix);
  lb_status s = lb_convert(buf, dt, q->bias, LB_F32, (size_t)q->rows, LB_CONVERT_SATURATE, err);
  int64_t shape[1] = {q->rows};
  if (s == LB_OK) s = add(w, prefix, ".bias", dt, 1, shape, buf, (uint64_t)q->rows * es, err);
  free(buf);
  return s;
}

static lb_status write4(lb_st_writer *w, const char *prefix, const lb_qweight *q, const char *dts,
                        lb_error *err) {
  int64_t n = q->rows * q->cols, nb = lb_qweight_nscales(q), npk = (n + 1) / 2;
  uint8_t *pk = malloc((size_t)npk);
  if (!pk) return lb_fail(err, LB_ENOMEM, "%s.weight: out of memory", prefix);
  /* an odd numel pads with the kernel's zero-filled load: the code of 0.0 */
  uint8_t pad = q->nf4 ? lb_bnb_nf4_index(0.0f) : lb_bnb_fp4_index(0.0f);
  for (int64_t j = 0; j < npk; j++)
    pk[j] = (uint8_t)(q->q[2 * j] << 4 | (2 * j + 1 < n ? q->q[2 * j + 1] : pad));
  int64_t sh[2] = {npk, 1};
  lb_status s = add(w, prefix, ".weight", LB_U8, 2, sh, pk, (uint64_t)npk, err);
  free(pk);
  LB_TRY(s);
  sh[0] = nb;
  if (q->double_quant)
    LB_TRY(add(w, prefix, ".weight.absmax", LB_U8, 1, sh, q->dq_absmax_q, (uint64_t)nb, err));
  else
    LB_TRY(add(w, prefix, ".weight.absmax", LB_F32, 1, sh, q->absmax, (uint64_t)nb * 4, err));
  sh[0] = 16;
  LB_TRY(add(w, prefix, ".weight.quant_map", LB_F32, 1, sh, q->code, sizeof q->code, err));
  char json[512], off[48];
  int len = snprintf(json, sizeof json,
                     "{\"quant_type\": \"%s\", \"blocksize\": %lld, \"dtype\": \"%s\", "
                     "\"shape\": [%lld, %lld]", q->nf4 ? "nf4" : "fp4", (long long)q->block, dts,
                     (long long)q->rows, (long long)q->cols);
  if (q->double_quant) {
    sh[0] = cdiv(nb, q->dq_block);
    LB_TRY(add(w, prefix, ".weight.nested_absmax", LB_F32, 1, sh, q->dq_nested_absmax,
               (uint64_t)sh[0] * 4, err));
    sh[0] = 256;
    LB_TRY(add(w, prefix, ".weight.nested_quant_map", LB_F32, 1, sh, q->dq_code,
               sizeof q->dq_code, err));
    len += snprintf(json + len, sizeof json - (size_t)len,
                    ", \"nested_blocksize\": %lld, \"nested_dtype\": \"float32\", "
                    "\"nested_offset\": %s", (long long)q->dq_block,
                    lb_bnb_py_float((double)q->dq_offset, off, sizeof off));
  }
  len += snprintf(json + len, sizeof json - (size_t)len, "}");
  sh[0] = len;
  return add(w, prefix, q->nf4 ? ".weight.quant_state.bitsandbytes__nf4"
                               : ".weight.quant_state.bitsandbytes__fp4",
             LB_U8, 1, sh, json, (uint64_t)len, err);
}

lb_status lb_bnb_write(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_dtype orig_dtype,
                       lb_error *err) {
  const char *dts = torch_dtype(orig_dtype);
  if (!dts)
    return lb_fail(err, LB_EINVAL, "%s: bitsandbytes original dtype %s: expected F16, BF16 or F32",
                   prefix, lb_dtype_name(orig_dtype));
  if (q->kind == LB_QK_CODEBOOK) {
    if (q->bits != 4 || (q->double_quant && q->dq_block < 1))
      return lb_fail(err, LB_EINVAL, "%s: not a bitsandbytes 4-bit weight", prefix);
    LB_TRY(write4(w, prefix, q, dts, err));
  } else if (q->kind == LB_QK_INT8ROW) {
    int64_t sh[2] = {q->rows, q->cols};
    LB_TRY(add(w, prefix, ".weight", LB_I8, 2, sh, q->q, (uint64_t)(q->rows * q->cols), err));
    LB_TRY(add(w, prefix, ".SCB", LB_F32, 1, sh, q->scale, (uint64_t)q->rows * 4, err));
    /* Linear8bitLt._save_to_state_dict: uint8 scalar, 0 = "row" (the only layout still written) */
    const uint8_t fmt = 0;
    LB_TRY(add(w, prefix, ".weight_format", LB_U8, 0, sh, &fmt, 1, err));
  } else {
    return lb_fail(err, LB_EINVAL, "%s: not a bitsandbytes weight (kind %d)", prefix, (int)q->kind);
  }
  return write_bias(w, prefix, q, orig_dtype, err);
}

/* ---- reading ---------------------------------------------------------------------------------- */

static lb_status finite_f32(const lb_tensor *t, const char *name, float *dst, lb_error *err) {
  memcpy(dst, t->data, t->nbytes); /* views are not guaranteed aligned */
  for (uint64_t i = 0; i < t->numel; i++)
    if (!isfinite(dst[i]))
      return lb_fail(err, LB_EFORMAT, "%s: element %llu is not finite", name,
                     (unsigned long long)i);
  return LB_OK;
}

static bool pow2_in(int64_t v, int64_t lo, int64_t hi) {
  return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

/* The quant_state JSON: checks every key bitsandbytes' QuantState.from_dict reads, and no others. */
static lb_status parse_state(const lb_tensor *t, const char *name, bool nf4, lb_qweight *q,
                             lb_dtype *dtype, lb_error *err) {
  if (t->dtype != LB_U8 || t->ndim != 1)
    return lb_fail(err, LB_EFORMAT, "%s: expected U8 JSON bytes of one dimension, got %s with %d "
                   "dimensions", name, lb_dtype_name(t->dtype), t->ndim);
  json_t *js;
  LB_TRY(lb_json_parse(t->data, t->nbytes, name, &js, err));
  lb_status s = LB_OK;
  static const char *keys[] = {"quant_type", "blocksize", "dtype", "shape", "nested_blocksize",
                               "nested_dtype", "nested_offset"};
  const char *key;
  json_t *v;
  char qt[8], dts[16], ndt[16];
  int64_t bs, nbs;
  double off;
  if (!json_is_object(js)) {
    s = lb_fail(err, LB_EFORMAT, "%s: expected a JSON object", name);
    goto done;
  }
  json_object_foreach(js, key, v) {
    size_t k = 0;
    while (k < sizeof keys / sizeof *keys && strcmp(keys[k], key) != 0) k++;
    if (k == sizeof keys / sizeof *keys) {
      s = lb_fail(err, LB_EFORMAT, "%s: unknown key '%s'", name, key);
      goto done;
    }
  }
  if ((s = lb_json_str(js, "quant_type", name, true, NULL, qt, sizeof qt, err)) ||
      (s = lb_json_int(js, "blocksize", name, true, 0, 1, 1 << 20, &bs, err)) ||
      (s = lb_json_str(js, "dtype", name, true, NULL, dts, sizeof dts, err)))
    goto done;
  if (strcmp(qt, nf4 ? "nf4" : "fp4") != 0) {
    s = lb_fail(err, LB_EFORMAT, "%s: quant_type '%s' does not match the tensor name", name, qt);
    goto done;
  }
  if (!pow2_in(bs, 32, 4096)) {
    s = lb_fail(err, LB_EFORMAT, "%s: blocksize %lld: expected a power of two in [32, 4096]", name,
                (long long)bs);
    goto done;
  }
  *dtype = !strcmp(dts, "float16") ? LB_F16 : !strcmp(dts, "bfloat16") ? LB_BF16 : LB_F32;
  if (strcmp(dts, torch_dtype(*dtype)) != 0) {
    s = lb_fail(err, LB_EFORMAT, "%s: dtype '%s': expected float16, bfloat16 or float32", name, dts);
    goto done;
  }
  const json_t *sh = json_object_get(js, "shape");
  if (!json_is_array(sh) || json_array_size(sh) != 2 || !json_is_integer(json_array_get(sh, 0)) ||
      !json_is_integer(json_array_get(sh, 1)) || json_integer_value(json_array_get(sh, 0)) < 1 ||
      json_integer_value(json_array_get(sh, 1)) < 1 ||
      json_integer_value(json_array_get(sh, 0)) > (1ll << 31) ||
      json_integer_value(json_array_get(sh, 1)) > (1ll << 31)) {
    s = lb_fail(err, LB_EFORMAT, "%s: shape: expected [out_features, in_features] of positive "
                "integers", name);
    goto done;
  }
  q->rows = json_integer_value(json_array_get(sh, 0));
  q->cols = json_integer_value(json_array_get(sh, 1));
  q->block = bs;
  q->nf4 = nf4;
  q->double_quant = json_object_get(js, "nested_offset") != NULL;
  if (q->double_quant) {
    if ((s = lb_json_int(js, "nested_blocksize", name, true, 0, 1, 1 << 20, &nbs, err)) ||
        (s = lb_json_str(js, "nested_dtype", name, true, NULL, ndt, sizeof ndt, err)) ||
        (s = lb_json_real(js, "nested_offset", name, true, 0, -1e30, 1e30, &off, err)))
      goto done;
    if (!pow2_in(nbs, 64, 4096) || strcmp(ndt, "float32") != 0) {
      s = lb_fail(err, LB_EFORMAT, "%s: nested_blocksize %lld / nested_dtype '%s': expected a "
                  "power of two in [64, 4096] and float32", name, (long long)nbs, ndt);
      goto done;
    }
    q->dq_block = nbs;
    q->dq_offset = (float)off; /* from_dict: torch.tensor(float(offset)), fp32 */
  } else if (json_object_get(js, "nested_blocksize") || json_object_get(js, "nested_dtype")) {
    s = lb_fail(err, LB_EFORMAT, "%s: nested keys without nested_offset", name);
  }
done:
  json_decref(js);
  if (s == LB_EINVAL) { /* a bad value in a file is a malformed file */
    s = LB_EFORMAT;
    if (err) err->code = s;
  }
  return s;
}

static lb_status read_bias(const lb_tensors *ts, const char *prefix, lb_qweight *q, lb_dtype *dt,
                           lb_error *err) {
  char name[LB_LAYOUT_NAME_MAX];
  const lb_tensor *t;
  LB_TRY(lb_layout_find(ts, prefix, ".bias", false, name, &t, err));
  if (!t) return LB_OK;
  if ((t->dtype != LB_F32 && t->dtype != LB_F16 && t->dtype != LB_BF16) || t->ndim != 1 ||
      t->shape[0] != q->rows)
    return lb_layout_expect(t, name, LB_F32, 1, q->rows, 0, err); /* names what was found */
  if (dt) *dt = t->dtype;
  if (!(q->bias = malloc((size_t)q->rows * sizeof *q->bias)))
    return lb_fail(err, LB_ENOMEM, "%s: out of memory", name);
  LB_TRY(lb_convert(q->bias, LB_F32, t->data, t->dtype, (size_t)q->rows, 0, err));
  for (int64_t i = 0; i < q->rows; i++)
    if (!isfinite(q->bias[i]))
      return lb_fail(err, LB_EFORMAT, "%s: element %lld is not finite", name, (long long)i);
  return LB_OK;
}

static lb_status read4(const lb_tensors *ts, const char *prefix, lb_qweight *q, lb_dtype *dt,
                       lb_error *err) {
  char name[LB_LAYOUT_NAME_MAX], n2[LB_LAYOUT_NAME_MAX];
  const lb_tensor *st, *st2, *t;
  LB_TRY(lb_layout_find(ts, prefix, ".weight.quant_state.bitsandbytes__nf4", false, name, &st, err));
  LB_TRY(lb_layout_find(ts, prefix, ".weight.quant_state.bitsandbytes__fp4", false, n2, &st2, err));
  if (!st && !st2)
    return lb_fail(err, LB_ENOTFOUND, "%s: tensor is missing (nor is %s there)", name, n2);
  if (st && st2) return lb_fail(err, LB_EFORMAT, "%s: both it and %s are present", name, n2);
  bool nf4 = st != NULL;
  if (!nf4) st = st2, memcpy(name, n2, sizeof name);
  q->kind = LB_QK_CODEBOOK, q->bits = 4;
  LB_TRY(parse_state(st, name, nf4, q, dt, err));
  int64_t n = q->rows * q->cols, nb = cdiv(n, q->block);

  LB_TRY(lb_layout_find(ts, prefix, ".weight", true, name, &t, err));
  if (t->dtype != LB_U8)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: 4-bit storage %s: only U8 (bnb_4bit_quant_storage "
                   "uint8) is supported", name, lb_dtype_name(t->dtype));
  LB_TRY(lb_layout_expect(t, name, LB_U8, 2, (n + 1) / 2, 1, err));
  const lb_tensor *wt = t;
  LB_TRY(lb_qweight_alloc(q, false, false, err));
  const uint8_t *pk = wt->data;
  for (int64_t i = 0; i < n; i++) q->q[i] = (uint8_t)(i & 1 ? pk[i / 2] & 15 : pk[i / 2] >> 4);

  LB_TRY(lb_layout_find(ts, prefix, ".weight.quant_map", true, name, &t, err));
  LB_TRY(lb_layout_expect(t, name, LB_F32, 1, 16, 0, err));
  LB_TRY(finite_f32(t, name, q->code, err));
  /* bitsandbytes' dequantization kernels hard-code the code books: a different map would be
   * ignored by it, so it is refused rather than honoured */
  float want[16];
  if (nf4) memcpy(want, lb_bnb_nf4_code, sizeof want);
  else lb_bnb_fp4_code(want);
  for (int i = 0; i < 16; i++)
    if (q->code[i] != want[i])
      return lb_fail(err, LB_EFORMAT, "%s: entry %d is %.9g, not bitsandbytes' %s value %.9g", name,
                     i, (double)q->code[i], nf4 ? "NF4" : "FP4", (double)want[i]);

  LB_TRY(lb_layout_find(ts, prefix, ".weight.absmax", true, name, &t, err));
  if (!q->double_quant) {
    LB_TRY(lb_layout_expect(t, name, LB_F32, 1, nb, 0, err));
    return finite_f32(t, name, q->absmax, err);
  }
  LB_TRY(lb_layout_expect(t, name, LB_U8, 1, nb, 0, err));
  memcpy(q->dq_absmax_q, t->data, (size_t)nb);
  int64_t nn = cdiv(nb, q->dq_block);
  LB_TRY(lb_layout_find(ts, prefix, ".weight.nested_absmax", true, name, &t, err));
  LB_TRY(lb_layout_expect(t, name, LB_F32, 1, nn, 0, err));
  LB_TRY(finite_f32(t, name, q->dq_nested_absmax, err));
  LB_TRY(lb_layout_find(ts, prefix, ".weight.nested_quant_map", true, name, &t, err));
  LB_TRY(lb_layout_expect(t, name, LB_F32, 1, 256, 0, err));
  LB_TRY(finite_f32(t, name, q->dq_code, err));
  /* dequantize_blockwise, then + offset, in fp32 as bitsandbytes does */
  for (int64_t i = 0; i < nb; i++)
    q->absmax[i] = q->dq_code[q->dq_absmax_q[i]] * q->dq_nested_absmax[i / q->dq_block] +
                   q->dq_offset;
  return LB_OK;
}

static lb_status read8(const lb_tensors *ts, const char *prefix, const lb_tensor *scb,
                       lb_qweight *q, lb_error *err) {
  char name[LB_LAYOUT_NAME_MAX];
  const lb_tensor *t;
  LB_TRY(lb_layout_find(ts, prefix, ".weight", true, name, &t, err));
  if (t->dtype != LB_I8 || t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1)
    return lb_fail(err, LB_EFORMAT, "%s: expected I8 [out_features, in_features], got %s with %d "
                   "dimensions", name, lb_dtype_name(t->dtype), t->ndim);
  q->kind = LB_QK_INT8ROW, q->bits = 8;
  q->rows = t->shape[0], q->cols = t->shape[1];
  LB_TRY(lb_qweight_alloc(q, false, false, err));
  memcpy(q->q, t->data, t->nbytes);
  LB_TRY(lb_layout_name(name, prefix, ".SCB", err));
  LB_TRY(lb_layout_expect(scb, name, LB_F32, 1, q->rows, 0, err));
  LB_TRY(finite_f32(scb, name, q->scale, err));
  for (int64_t r = 0; r < q->rows; r++)
    if (q->scale[r] < 0)
      return lb_fail(err, LB_EFORMAT, "%s: element %lld is negative (a row absmax)", name,
                     (long long)r);
  LB_TRY(lb_layout_find(ts, prefix, ".weight_format", false, name, &t, err));
  if (t) {
    if (t->dtype != LB_U8 || t->numel != 1)
      return lb_fail(err, LB_EFORMAT, "%s: expected one U8 value, got %s of %llu elements", name,
                     lb_dtype_name(t->dtype), (unsigned long long)t->numel);
    uint8_t f = *(const uint8_t *)t->data;
    if (f != 0)
      return lb_fail(err, LB_EUNSUPPORTED, "%s: layout %d (col32 / col_turing / col_ampere) is not "
                     "supported, only 0 (row)", name, f);
  }
  return LB_OK;
}

lb_status lb_bnb_read(const lb_tensors *ts, const char *prefix, lb_qweight *out, lb_dtype *orig_dtype,
                      lb_error *err) {
  memset(out, 0, sizeof *out);
  char name[LB_LAYOUT_NAME_MAX];
  const lb_tensor *scb;
  lb_dtype dt = LB_F16; /* Int8Params quantizes from fp16 */
  lb_status s = lb_layout_find(ts, prefix, ".SCB", false, name, &scb, err);
  if (s == LB_OK) s = scb ? read8(ts, prefix, scb, out, err) : read4(ts, prefix, out, &dt, err);
  if (s == LB_OK) s = read_bias(ts, prefix, out, scb ? &dt : NULL, err);
  if (s == LB_OK) s = lb_qweight_check(out, prefix, err);
  if (s != LB_OK) {
    lb_qweight_free(out);
    return s;
  }
  if (orig_dtype) *orig_dtype = dt;
  return LB_OK;
}
