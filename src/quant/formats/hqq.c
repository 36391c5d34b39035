/* HQQ serialization: hqq's BitPack layouts and the encoded HQQLinear state_dict that Transformers'
 * HqqConfig checkpoints hold (meta values stored as small tensors by encode_safetensor_type: ints
 * as I32 [], bools as U8 [], strings and dtypes as U8 ascii, torch.Size as I64). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/hqq.h"

const char *lb_hqq_packing(int nbits) {
  switch (nbits) {
  case 8: return "8bit_u8";
  case 4: return "4bit_u8";
  case 3: return "3bit_32";
  case 2: return "2bit_u8";
  case 1: return "1bit_u8";
  }
  return NULL;
}

/* values per packed word: 8 / nbits slices of uint8, or 10 slices of int32 for 3 bits */
static int64_t slices(int nbits) { return nbits == 3 ? 10 : 8 / nbits; }

int64_t lb_hqq_packed_rows(int64_t n, int nbits) {
  return nbits == 3 ? (n + 9) / 10 : n / slices(nbits);
}

void lb_hqq_pack(const uint8_t *codes, int64_t n, int64_t g, int nbits, void *packed) {
  int64_t k = slices(nbits), step = lb_hqq_packed_rows(n, nbits);
  for (int64_t i = 0; i < step; i++)
    for (int64_t j = 0; j < g; j++) {
      uint32_t word = 0;
      for (int64_t m = 0; m < k; m++) {
        int64_t row = i + m * step; /* 3 bits: rows past n are hqq's zero padding */
        uint32_t v = row < n ? codes[row * g + j] : 0;
        word |= v << (nbits * (k - 1 - m));
      }
      if (nbits == 3)
        ((int32_t *)packed)[i * g + j] = (int32_t)word;
      else
        ((uint8_t *)packed)[i * g + j] = (uint8_t)word;
    }
}

void lb_hqq_unpack(const void *packed, int64_t n, int64_t g, int nbits, uint8_t *codes) {
  int64_t k = slices(nbits), step = lb_hqq_packed_rows(n, nbits);
  uint32_t mask = (1u << nbits) - 1;
  for (int64_t i = 0; i < step; i++)
    for (int64_t j = 0; j < g; j++) {
      uint32_t word = nbits == 3 ? (uint32_t)((const int32_t *)packed)[i * g + j]
                                 : ((const uint8_t *)packed)[i * g + j];
      for (int64_t m = 0; m < k; m++) {
        int64_t row = i + m * step;
        if (row < n) codes[row * g + j] = (uint8_t)((word >> (nbits * (k - 1 - m))) & mask);
      }
    }
}

static const char *torch_dtype(lb_dtype d) {
  return d == LB_BF16 ? "torch.bfloat16" : d == LB_F16 ? "torch.float16" : "torch.float32";
}

typedef struct {
  lb_st_writer *w;
  const char *prefix;
  lb_error *err;
  lb_status s;
} writer;

static void put_t(writer *wr, const char *key, lb_dtype dt, int ndim, const int64_t *shape,
                  const void *data, uint64_t nbytes) {
  if (wr->s != LB_OK) return;
  char name[512];
  if (snprintf(name, sizeof name, "%s.%s", wr->prefix, key) >= (int)sizeof name) {
    wr->s = lb_fail(wr->err, LB_EINVAL, "tensor name '%s.%s' is too long", wr->prefix, key);
    return;
  }
  wr->s = lb_st_writer_add(wr->w, name, dt, ndim, shape, data, nbytes, wr->err);
}
static void put_i32(writer *wr, const char *key, int32_t v) {
  put_t(wr, key, LB_I32, 0, NULL, &v, 4);
}
static void put_bool(writer *wr, const char *key, bool b) {
  uint8_t v = b;
  put_t(wr, key, LB_U8, 0, NULL, &v, 1);
}
static void put_str(writer *wr, const char *key, const char *s) {
  int64_t len = (int64_t)strlen(s);
  put_t(wr, key, LB_U8, 1, &len, s, (uint64_t)len);
}

/* floats [n] -> dt [n, 1] (rounded to nearest even, as HQQLinear's .to(compute_dtype)) */
static void put_floats(writer *wr, const char *key, const float *v, int64_t n, int ndim,
                       lb_dtype dt) {
  if (wr->s != LB_OK) return;
  void *buf = malloc((size_t)n * lb_dtype_size(dt));
  if (!buf) {
    wr->s = lb_fail(wr->err, LB_ENOMEM, "%s.%s: out of memory", wr->prefix, key);
    return;
  }
  int64_t shape[2] = {n, 1};
  wr->s = lb_convert(buf, dt, v, LB_F32, (size_t)n, 0, wr->err);
  put_t(wr, key, dt, ndim, shape, buf, (uint64_t)n * lb_dtype_size(dt));
  free(buf);
}

lb_status lb_hqq_write(lb_st_writer *w, const char *prefix, const lb_qweight *q,
                       lb_dtype compute_dtype, const lb_hqq_opts *opts, lb_error *err) {
  const char *packing = lb_hqq_packing(q->bits);
  if (q->kind != LB_QK_AFFINE || !packing || q->g_idx || q->group < 1 || q->cols % q->group)
    return lb_fail(err, LB_EINVAL,
                   "%s: not an HQQ-shaped affine weight (8/4/3/2/1 bits, groups dividing the "
                   "row, no g_idx)",
                   prefix);
  if (compute_dtype != LB_BF16 && compute_dtype != LB_F16 && compute_dtype != LB_F32)
    return lb_fail(err, LB_EINVAL, "%s: compute dtype %s (BF16, F16 or F32)", prefix,
                   lb_dtype_name(compute_dtype));
  const int64_t n = q->rows * q->cols / q->group, g = q->group;
  if (q->bits != 3 && n % slices(q->bits))
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s.W_q: %lld groups do not split into the %lld slices of hqq's %s packing",
                   prefix, (long long)n, (long long)slices(q->bits), packing);
  lb_hqq_opts def = lb_hqq_default_opts(q->bits);
  if (!opts) opts = &def;
  int64_t pr = lb_hqq_packed_rows(n, q->bits), wq_shape[2] = {pr, g};
  size_t esz = q->bits == 3 ? 4 : 1;
  void *packed = malloc((size_t)(pr * g) * esz);
  if (!packed) return lb_fail(err, LB_ENOMEM, "%s.W_q: out of memory", prefix);
  lb_hqq_pack(q->q, n, g, q->bits, packed);
  writer wr = {w, prefix, err, LB_OK};
  put_t(&wr, "W_q", q->bits == 3 ? LB_I32 : LB_U8, 2, wq_shape, packed, (uint64_t)(pr * g) * esz);
  free(packed);
  put_floats(&wr, "scale", q->scale, n, 2, compute_dtype);
  put_floats(&wr, "zero", q->zero, n, 2, compute_dtype);
  if (q->bias) put_floats(&wr, "bias", q->bias, q->rows, 1, compute_dtype);
  int64_t shape[2] = {q->rows, q->cols}, two = 2;
  put_t(&wr, "shape", LB_I64, 1, &two, shape, sizeof shape);
  put_i32(&wr, "nbits", q->bits);
  put_i32(&wr, "group_size", (int32_t)g);
  put_i32(&wr, "axis", 1);
  put_str(&wr, "packing", packing);
  put_str(&wr, "unpack_view_dtype", q->bits == 3 ? "torch.int32" : "torch.uint8");
  put_str(&wr, "compute_dtype", torch_dtype(compute_dtype));
  put_bool(&wr, "view_as_float", false);
  put_bool(&wr, "quant_scale", false);
  put_bool(&wr, "quant_zero", false);
  put_bool(&wr, "offload_meta", false);
  put_bool(&wr, "encoded_state_dict", true);
  put_bool(&wr, "stores_quant_config", true);
  put_bool(&wr, "channel_wise", true);
  put_bool(&wr, "optimize", opts->optimize);
  put_bool(&wr, "round_zero", opts->round_zero);
  return wr.s;
}

static const lb_tensor *get(const lb_tensors *t, const char *prefix, const char *key) {
  char name[512];
  snprintf(name, sizeof name, "%s.%s", prefix, key);
  return lb_tensors_find(t, name);
}

static lb_status need(const lb_tensors *t, const char *prefix, const char *key,
                      const lb_tensor **out, lb_error *err) {
  if (!(*out = get(t, prefix, key)))
    return lb_fail(err, LB_ENOTFOUND, "tensor '%s.%s' is missing", prefix, key);
  return LB_OK;
}

/* An encoded int: one I32/I64/U8 element (shape [] or [1]). */
static lb_status read_int(const lb_tensors *t, const char *prefix, const char *key, int64_t *v,
                          lb_error *err) {
  const lb_tensor *x;
  LB_TRY(need(t, prefix, key, &x, err));
  if (x->numel != 1 || (x->dtype != LB_I32 && x->dtype != LB_I64 && x->dtype != LB_U8))
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s with %llu elements, expected one integer",
                   x->name, lb_dtype_name(x->dtype), (unsigned long long)x->numel);
  int32_t i32;
  int64_t i64;
  if (x->dtype == LB_I32)
    memcpy(&i32, x->data, 4), *v = i32;
  else if (x->dtype == LB_I64)
    memcpy(&i64, x->data, 8), *v = i64;
  else
    *v = *(const uint8_t *)x->data;
  return LB_OK;
}

static lb_status read_floats(const lb_tensor *x, int64_t n, float *out, lb_error *err) {
  char sb[96];
  bool fl = x->dtype == LB_F32 || x->dtype == LB_BF16 || x->dtype == LB_F16;
  if (!fl || x->ndim != 2 || x->shape[0] != n || x->shape[1] != 1)
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s %s, expected a float [%lld, 1]", x->name,
                   lb_dtype_name(x->dtype), lb_shape_str(x->shape, x->ndim, sb, sizeof sb),
                   (long long)n);
  return lb_convert(out, LB_F32, x->data, x->dtype, (size_t)n, 0, err);
}

lb_status lb_hqq_read(const lb_tensors *t, const char *prefix, lb_qweight *out, lb_error *err) {
  const lb_tensor *wq, *sc, *ze, *sh, *pk, *bias = get(t, prefix, "bias");
  LB_TRY(need(t, prefix, "W_q", &wq, err));
  LB_TRY(need(t, prefix, "scale", &sc, err));
  LB_TRY(need(t, prefix, "zero", &ze, err));
  LB_TRY(need(t, prefix, "shape", &sh, err));
  LB_TRY(need(t, prefix, "packing", &pk, err));
  int64_t nbits, gs, axis, vaf = 0, shape[2];
  LB_TRY(read_int(t, prefix, "nbits", &nbits, err));
  LB_TRY(read_int(t, prefix, "group_size", &gs, err));
  LB_TRY(read_int(t, prefix, "axis", &axis, err));
  if (get(t, prefix, "view_as_float")) LB_TRY(read_int(t, prefix, "view_as_float", &vaf, err));
  const char *packing = lb_hqq_packing((int)nbits);
  if (!packing || nbits != (int)nbits)
    return lb_fail(err, LB_EUNSUPPORTED, "tensor '%s.nbits': %lld bits (8, 4, 3, 2 or 1)", prefix,
                   (long long)nbits);
  if (axis != 1)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "tensor '%s.axis': %lld (only axis 1, groups along in_features, is supported)",
                   prefix, (long long)axis);
  if (pk->dtype != LB_U8 || pk->ndim != 1 || pk->numel != strlen(packing) ||
      memcmp(pk->data, packing, strlen(packing)))
    return lb_fail(err, LB_EFORMAT, "tensor '%s': expected the ascii bytes of \"%s\" for %lld bits",
                   pk->name, packing, (long long)nbits);
  if ((sh->dtype != LB_I64 && sh->dtype != LB_I32) || sh->ndim != 1 || sh->shape[0] != 2)
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s, expected an integer [2]", sh->name,
                   lb_dtype_name(sh->dtype));
  for (int d = 0; d < 2; d++) {
    int32_t v32;
    if (sh->dtype == LB_I64)
      memcpy(&shape[d], (const char *)sh->data + 8 * d, 8);
    else
      memcpy(&v32, (const char *)sh->data + 4 * d, 4), shape[d] = v32;
  }
  if (shape[0] < 1 || shape[1] < 1 || shape[0] > (1ll << 31) || shape[1] > (1ll << 31) || gs < 1 ||
      shape[1] % gs)
    return lb_fail(
        err, LB_EFORMAT,
        "tensor '%s': shape [%lld, %lld] does not split into groups of %lld (%s.group_size)",
        sh->name, (long long)shape[0], (long long)shape[1], (long long)gs, prefix);
  const int64_t n = shape[0] * shape[1] / gs, pr = lb_hqq_packed_rows(n, (int)nbits);
  const lb_dtype wdt = nbits == 3 ? LB_I32 : LB_U8;
  const uint64_t want_bytes = (uint64_t)(pr * gs) * lb_dtype_size(wdt);
  char sb[96];
  bool shape_ok = wq->dtype == wdt && wq->ndim == 2 && wq->shape[0] == pr && wq->shape[1] == gs;
  bool view_ok = vaf && lb_dtype_is_float(wq->dtype) && wq->nbytes == want_bytes; /* float view */
  if ((nbits != 3 && n % slices((int)nbits)) || !(shape_ok || view_ok))
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s %s, expected %s [%lld, %lld] for %lld groups",
                   wq->name, lb_dtype_name(wq->dtype),
                   lb_shape_str(wq->shape, wq->ndim, sb, sizeof sb), lb_dtype_name(wdt),
                   (long long)pr, (long long)gs, (long long)n);
  if (bias && ((bias->dtype != LB_F32 && bias->dtype != LB_BF16 && bias->dtype != LB_F16) ||
               bias->ndim != 1 || bias->shape[0] != shape[0]))
    return lb_fail(err, LB_EFORMAT, "tensor '%s': %s %s, expected a float [%lld]", bias->name,
                   lb_dtype_name(bias->dtype), lb_shape_str(bias->shape, bias->ndim, sb, sizeof sb),
                   (long long)shape[0]);
  lb_qweight q = {
      .kind = LB_QK_AFFINE, .rows = shape[0], .cols = shape[1], .bits = (int)nbits, .group = gs};
  LB_TRY(lb_qweight_alloc(&q, false, bias != NULL, err));
  lb_status s = LB_OK;
  void *words = malloc((size_t)want_bytes ? (size_t)want_bytes : 1); /* the view may be unaligned */
  if (!words) s = lb_fail(err, LB_ENOMEM, "%s: out of memory", wq->name);
  if (s == LB_OK) {
    memcpy(words, wq->data, (size_t)want_bytes);
    lb_hqq_unpack(words, n, gs, (int)nbits, q.q);
  }
  free(words);
  if (s == LB_OK) s = read_floats(sc, n, q.scale, err);
  if (s == LB_OK) s = read_floats(ze, n, q.zero, err);
  if (s == LB_OK && bias)
    s = lb_convert(q.bias, LB_F32, bias->data, bias->dtype, (size_t)q.rows, 0, err);
  if (s == LB_OK) s = lb_qweight_check(&q, prefix, err);
  if (s != LB_OK) {
    lb_qweight_free(&q);
    return s;
  }
  *out = q;
  return LB_OK;
}

lb_status lb_hqq_config(int nbits, int64_t group_size, const lb_hqq_opts *opts,
                        const char *const *skip, size_t n_skip, char **json, lb_error *err) {
  if (!lb_hqq_packing(nbits) || group_size < 1)
    return lb_fail(err, LB_EINVAL, "hqq config: nbits %d, group_size %lld", nbits,
                   (long long)group_size);
  lb_hqq_opts def = lb_hqq_default_opts(nbits);
  if (!opts) opts = &def;
  size_t cap = 512;
  for (size_t i = 0; i < n_skip; i++) cap += 2 * strlen(skip[i]) + 4;
  char *b = malloc(cap);
  if (!b) return lb_fail(err, LB_ENOMEM, "out of memory for a quantization_config");
  int k =
      snprintf(b, cap,
               "{\"quant_config\":{\"weight_quant_params\":{\"nbits\":%d,\"channel_wise\":true,"
               "\"group_size\":%lld,\"optimize\":%s,\"round_zero\":%s,\"axis\":1,"
               "\"view_as_float\":false},\"scale_quant_params\":null,\"zero_quant_params\":null,"
               "\"offload_meta\":false},\"quant_method\":\"hqq\",\"skip_modules\":[",
               nbits, (long long)group_size, opts->optimize ? "true" : "false",
               opts->round_zero ? "true" : "false");
  size_t len = (size_t)k;
  for (size_t i = 0; i < n_skip; i++) {
    if (i) b[len++] = ',';
    b[len++] = '"';
    for (const char *c = skip[i]; *c; c++) {
      if (*c == '"' || *c == '\\') b[len++] = '\\';
      b[len++] = (unsigned char)*c < 0x20 ? ' ' : *c; /* module names have no control chars */
    }
    b[len++] = '"';
  }
  memcpy(b + len, "]}", 3);
  *json = b;
  return LB_OK;
}
