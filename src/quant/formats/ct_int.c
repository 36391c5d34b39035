/* compressed-tensors "pack-quantized" layout of one Linear and the quantization_config that
 * announces it (see ct.h for the layout). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/ct.h"
#include "quant/formats/layout.h"
#include "quant/gptq.h"

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Words per stream of n codes: 0.20 packs densely (a code may straddle two words); older versions
 * put 32 / bits whole codes in each word and left the high bits unused. */
static int64_t dense_words(int64_t n, int bits) { return cdiv(n * bits, 32); }
static int64_t legacy_words(int64_t n, int bits) { return cdiv(n, 32 / bits); }

static void unpack_legacy(const uint32_t *words, int64_t n, int bits, uint8_t *v) {
  int per = 32 / bits;
  for (int64_t i = 0; i < n; i++)
    v[i] = (uint8_t)((words[i / per] >> (bits * (i % per))) & ((1u << bits) - 1));
}

static void unpack_stream(const uint32_t *words, int64_t n, int bits, bool legacy, uint8_t *v) {
  if (legacy) unpack_legacy(words, n, bits, v);
  else lb_unpack_bits(words, n, bits, v);
}

static lb_status add(lb_st_writer *w, const char *prefix, const char *suffix, lb_dtype dt, int ndim,
                     const int64_t *shape, const void *data, uint64_t nbytes, lb_error *err) {
  char name[LB_LAYOUT_NAME_MAX];
  LB_TRY(lb_layout_name(name, prefix, suffix, err));
  return lb_st_writer_add(w, name, dt, ndim, shape, data, nbytes, err);
}

lb_status lb_ct_int_write(lb_st_writer *w, const char *prefix, const lb_qweight *q,
                          lb_dtype scale_dtype, lb_error *err) {
  if (q->kind != LB_QK_AFFINE || !q->q || !q->scale || !q->zero)
    return lb_fail(err, LB_EINVAL, "%s: not an integer (affine) quantized weight", prefix);
  if (q->bits < 1 || q->bits > 8)
    return lb_fail(err, LB_EINVAL, "%s: %d bits (pack-quantized takes 1 to 8)", prefix, q->bits);
  if (q->g_idx)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: act-order (g_idx) has no place in the pack-quantized layout", prefix);
  if (q->cols % q->group)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: in_features %lld is not a multiple of the group size %lld", prefix,
                   (long long)q->cols, (long long)q->group);
  if (scale_dtype != LB_F32 && scale_dtype != LB_BF16 && scale_dtype != LB_F16)
    return lb_fail(err, LB_EINVAL, "%s.weight_scale: dtype %s (F32, BF16 or F16)", prefix,
                   lb_dtype_name(scale_dtype));
  const int b = q->bits, half = 1 << (b - 1);
  const int64_t R = q->rows, C = q->cols, G = q->ngroups, maxq = (1 << b) - 1;
  for (int64_t i = 0; i < R * G; i++) {
    float z = q->zero[i];
    if (!(z >= 0 && z <= (float)maxq) || z != floorf(z) || (q->sym && z != (float)half))
      return lb_fail(err, LB_EINVAL, "%s: zero point %lld = %g is not %s", prefix, (long long)i,
                     (double)z, q->sym ? "2^(bits-1) (symmetric)" : "a whole number of the code range");
  }
  const int64_t wq = dense_words(C, b), wz = dense_words(R, b);
  size_t es = lb_dtype_size(scale_dtype);
  uint32_t *packed = malloc((size_t)(R * wq) * 4), *zp = q->sym ? NULL : malloc((size_t)(wz * G) * 4);
  uint32_t *col = malloc((size_t)wz * 4);
  uint8_t *tmp = malloc((size_t)R);
  void *sc = malloc((size_t)(R * G) * es);
  lb_status s = LB_OK;
  if (!packed || (!q->sym && !zp) || !col || !tmp || !sc)
    s = lb_fail(err, LB_ENOMEM, "%s: out of memory", prefix);
  if (s == LB_OK) s = lb_convert(sc, scale_dtype, q->scale, LB_F32, (size_t)(R * G), 0, err);
  for (int64_t i = 0; s == LB_OK && scale_dtype != LB_F32 && i < R * G; i++) {
    uint16_t h = ((uint16_t *)sc)[i];
    float back = scale_dtype == LB_BF16 ? lb_bf16_to_f32(h) : lb_f16_to_f32(h);
    if (back != q->scale[i])
      s = lb_fail(err, LB_EINVAL,
                  "%s.weight_scale: scale %lld = %g is not exact in %s (quantize with that "
                  "compute dtype)",
                  prefix, (long long)i, (double)q->scale[i], lb_dtype_name(scale_dtype));
  }
  if (s == LB_OK) {
    /* the stored codes are q + 2^(b-1): lowbit's unsigned codes as they are */
    for (int64_t r = 0; r < R; r++) lb_pack_bits(q->q + r * C, C, b, packed + r * wq);
    for (int64_t g = 0; zp && g < G; g++) { /* along dim 0: one stream per column */
      for (int64_t r = 0; r < R; r++) tmp[r] = (uint8_t)q->zero[r * G + g];
      lb_pack_bits(tmp, R, b, col);
      for (int64_t k = 0; k < wz; k++) zp[k * G + g] = col[k];
    }
    int64_t sp[2] = {R, wq}, ss[2] = {R, G}, sz[2] = {wz, G}, sh[1] = {2};
    int64_t shape[2] = {R, C};
    s = add(w, prefix, ".weight_packed", LB_I32, 2, sp, packed, (uint64_t)(R * wq) * 4, err);
    if (s == LB_OK) s = add(w, prefix, ".weight_shape", LB_I64, 1, sh, shape, 16, err);
    if (s == LB_OK)
      s = add(w, prefix, ".weight_scale", scale_dtype, 2, ss, sc, (uint64_t)(R * G) * es, err);
    if (s == LB_OK && zp)
      s = add(w, prefix, ".weight_zero_point", LB_I32, 2, sz, zp, (uint64_t)(wz * G) * 4, err);
    if (s == LB_OK && q->bias)
      s = add(w, prefix, ".bias", LB_F32, 1, &q->rows, q->bias, (uint64_t)R * 4, err);
  }
  free(packed), free(zp), free(col), free(tmp), free(sc);
  return s;
}

static bool is_float(lb_dtype d) { return d == LB_F32 || d == LB_BF16 || d == LB_F16; }

/* The packed width of n codes: dense (0.20) or legacy, else an error naming the tensor. */
static lb_status stream_width(const lb_tensor *t, const char *name, int64_t n, int bits,
                              int64_t got, bool *legacy, lb_error *err) {
  *legacy = false;
  if (got == dense_words(n, bits)) return LB_OK;
  if (got == legacy_words(n, bits)) {
    *legacy = true;
    return LB_OK;
  }
  char sb[96];
  return lb_fail(err, LB_EFORMAT,
                 "%s: shape %s does not hold %lld %d-bit codes per stream (%lld words packed "
                 "densely)",
                 name, lb_shape_str(t->shape, t->ndim, sb, sizeof sb), (long long)n, bits,
                 (long long)dense_words(n, bits));
}

lb_status lb_ct_int_read(const lb_tensors *t, const char *prefix, int bits, int64_t group,
                         bool sym, lb_qweight *out, lb_error *err) {
  char n[LB_LAYOUT_NAME_MAX], sb[96];
  const lb_tensor *pk, *sh, *sc, *zt, *bt;
  if (bits < 1 || bits > 8)
    return lb_fail(err, LB_EINVAL, "%s: %d bits (pack-quantized takes 1 to 8)", prefix, bits);
  LB_TRY(lb_layout_find(t, prefix, ".weight_shape", true, n, &sh, err));
  if ((sh->dtype != LB_I64 && sh->dtype != LB_I32) || sh->ndim != 1 || sh->shape[0] != 2)
    return lb_fail(err, LB_EFORMAT, "%s: expected I64 [2] (out, in), got %s %s", n,
                   lb_dtype_name(sh->dtype), lb_shape_str(sh->shape, sh->ndim, sb, sizeof sb));
  int64_t R, C;
  if (sh->dtype == LB_I64) {
    int64_t d[2];
    memcpy(d, sh->data, sizeof d); /* views need not be aligned */
    R = d[0], C = d[1];
  } else {
    int32_t d[2];
    memcpy(d, sh->data, sizeof d);
    R = d[0], C = d[1];
  }
  if (R < 1 || C < 1 || R > (1ll << 31) || C > (1ll << 31))
    return lb_fail(err, LB_EFORMAT, "%s: weight shape (%lld, %lld)", n, (long long)R, (long long)C);
  int64_t g = group == -1 ? C : group;
  if (g < 1 || C % g)
    return lb_fail(err, LB_EFORMAT,
                   "%s: in_features %lld (weight_shape) is not a multiple of the group size %lld",
                   prefix, (long long)C, (long long)g);
  int64_t G = C / g;
  bool legacy_q = false, legacy_z = false;
  LB_TRY(lb_layout_find(t, prefix, ".weight_packed", true, n, &pk, err));
  if (pk->dtype != LB_I32 || pk->ndim != 2 || pk->shape[0] != R)
    return lb_fail(err, LB_EFORMAT, "%s: expected I32 [%lld, %lld], got %s %s", n, (long long)R,
                   (long long)dense_words(C, bits), lb_dtype_name(pk->dtype),
                   lb_shape_str(pk->shape, pk->ndim, sb, sizeof sb));
  LB_TRY(stream_width(pk, n, C, bits, pk->shape[1], &legacy_q, err));
  LB_TRY(lb_layout_find(t, prefix, ".weight_scale", true, n, &sc, err));
  if (!is_float(sc->dtype) || sc->ndim != 2 || sc->shape[0] != R || sc->shape[1] != G)
    return lb_fail(err, LB_EFORMAT, "%s: expected a float [%lld, %lld], got %s %s", n,
                   (long long)R, (long long)G, lb_dtype_name(sc->dtype),
                   lb_shape_str(sc->shape, sc->ndim, sb, sizeof sb));
  zt = NULL;
  if (!sym) {
    LB_TRY(lb_layout_find(t, prefix, ".weight_zero_point", true, n, &zt, err));
    if (zt->dtype != LB_I32 || zt->ndim != 2 || zt->shape[1] != G)
      return lb_fail(err, LB_EFORMAT, "%s: expected I32 [%lld, %lld], got %s %s", n,
                     (long long)dense_words(R, bits), (long long)G, lb_dtype_name(zt->dtype),
                     lb_shape_str(zt->shape, zt->ndim, sb, sizeof sb));
    LB_TRY(stream_width(zt, n, R, bits, zt->shape[0], &legacy_z, err));
  }
  LB_TRY(lb_layout_find(t, prefix, ".bias", false, n, &bt, err));
  if (bt && (!is_float(bt->dtype) || bt->ndim != 1 || bt->shape[0] != R))
    return lb_fail(err, LB_EFORMAT, "%s: expected a float [%lld], got %s %s", n, (long long)R,
                   lb_dtype_name(bt->dtype), lb_shape_str(bt->shape, bt->ndim, sb, sizeof sb));
  *out = (lb_qweight){.kind = LB_QK_AFFINE, .rows = R, .cols = C, .bits = bits, .group = g,
                      .sym = sym};
  LB_TRY(lb_qweight_alloc(out, false, bt != NULL, err));
  const int64_t wq = pk->shape[1], wz = zt ? zt->shape[0] : 0;
  uint32_t *col = malloc((size_t)(wz > 0 ? wz : 1) * 4);
  uint8_t *z = malloc((size_t)R);
  lb_status s = col && z ? LB_OK : lb_fail(err, LB_ENOMEM, "%s: out of memory", prefix);
  const uint32_t *pd = pk->data;
  for (int64_t r = 0; s == LB_OK && r < R; r++)
    unpack_stream(pd + r * wq, C, bits, legacy_q, out->q + r * C);
  if (s == LB_OK) s = lb_convert(out->scale, LB_F32, sc->data, sc->dtype, (size_t)(R * G), 0, err);
  for (int64_t j = 0; s == LB_OK && j < G; j++) {
    if (zt) {
      const uint32_t *zd = zt->data;
      for (int64_t k = 0; k < wz; k++) col[k] = zd[k * G + j];
      unpack_stream(col, R, bits, legacy_z, z);
    }
    for (int64_t r = 0; r < R; r++) out->zero[r * G + j] = zt ? (float)z[r] : (float)(1 << (bits - 1));
  }
  if (s == LB_OK && bt) s = lb_convert(out->bias, LB_F32, bt->data, bt->dtype, (size_t)R, 0, err);
  if (s == LB_OK) s = lb_qweight_check(out, prefix, err);
  free(col), free(z);
  if (s != LB_OK) lb_qweight_free(out);
  return s;
}

/* ---- quantization_config ----------------------------------------------------------------------- */

static bool put(char **p, size_t *n, size_t *cap, const char *s) {
  size_t k = strlen(s);
  if (*n + k + 1 > *cap) {
    size_t c = (*n + k + 1) * 2;
    char *q = realloc(*p, c);
    if (!q) return false;
    *p = q, *cap = c;
  }
  memcpy(*p + *n, s, k + 1);
  *n += k;
  return true;
}

lb_status lb_ct_int_config(int bits, int64_t group, bool sym, const char *const *ignore,
                           size_t n_ignore, char **json, lb_error *err) {
  *json = NULL;
  if (bits < 1 || bits > 8 || group == 0 || group < -1)
    return lb_fail(err, LB_EINVAL, "compressed-tensors config: %d bits, group %lld", bits,
                   (long long)group);
  char *p = NULL, buf[320];
  size_t n = 0, cap = 0;
  bool ok = true;
  if (group > 0)
    snprintf(buf, sizeof buf, "\"group_size\":%lld,\"num_bits\":%d,\"strategy\":\"group\"",
             (long long)group, bits);
  else
    snprintf(buf, sizeof buf, "\"group_size\":null,\"num_bits\":%d,\"strategy\":\"channel\"", bits);
  ok = ok && put(&p, &n, &cap,
                 "{\"config_groups\":{\"group_0\":{\"format\":\"pack-quantized\","
                 "\"input_activations\":null,\"output_activations\":null,\"targets\":[\"Linear\"],"
                 "\"weights\":{\"dynamic\":false,");
  ok = ok && put(&p, &n, &cap, buf);
  ok = ok && put(&p, &n, &cap, sym ? ",\"symmetric\":true" : ",\"symmetric\":false");
  ok = ok && put(&p, &n, &cap,
                 ",\"type\":\"int\"}}},\"format\":\"pack-quantized\","
                 "\"global_compression_ratio\":null,\"ignore\":[");
  for (size_t i = 0; ok && i < n_ignore; i++) {
    ok = put(&p, &n, &cap, i ? ",\"" : "\"");
    for (const char *c = ignore[i]; ok && *c; c++) {
      if (*c == '"' || *c == '\\') snprintf(buf, sizeof buf, "\\%c", *c);
      else if ((unsigned char)*c < 0x20) snprintf(buf, sizeof buf, "\\u%04x", (unsigned)*c);
      else snprintf(buf, sizeof buf, "%c", *c);
      ok = put(&p, &n, &cap, buf);
    }
    ok = ok && put(&p, &n, &cap, "\"");
  }
  ok = ok && put(&p, &n, &cap,
                 "],\"kv_cache_scheme\":null,\"moe_sparsity_config\":null,"
                 "\"quant_method\":\"compressed-tensors\",\"quantization_status\":\"compressed\","
                 "\"sparsity_config\":{},\"transform_config\":{},\"version\":\"0.20.0\"}");
  if (!ok) {
    free(p);
    return lb_fail(err, LB_ENOMEM, "out of memory for a quantization_config");
  }
  *json = p;
  return LB_OK;
}
