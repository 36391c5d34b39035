/* The AutoAWQ layout of one Linear, "gemm" and "gemv" (quant/awq.h has the layouts):
 *   gemm: qweight int32 [in, out/8], qzeros int32 [in/g, out/8] (interleaved nibbles along out),
 *         scales f16 [in/g, out]
 *   gemv: qweight int32 [out, in/8] (plain nibbles along in), qzeros int32 [out, Z],
 *         scales f16 [out, 8Z], Z = calculate_zeros_width(in, g)
 * Dequant: W[o, i] = (q[o, i] - zero[o, i/g]) * scale[o, i/g]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/awq.h"
#include "quant/formats/layout.h"

/* Nibble j of a gemm word holds output 8k + AWQ_ORDER[j]. */
static const int AWQ_ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};

int64_t lb_awq_gemv_zeros_width(int64_t in_features, int64_t group) {
  int64_t m;
  if (group >= 128)
    m = 1;
  else if (group == 64)
    m = 2;
  else if (group == 32)
    m = 4;
  else
    return -1;
  int64_t base = (in_features / group + 7) / 8;
  return (base + m - 1) / m * m;
}

static const char *version_name(lb_awq_version v) { return v == LB_AWQ_GEMM ? "gemm" : "gemv"; }

/* The tensors are views into mapped files: read their words without assuming alignment. */
static uint32_t ld32(const void *p, int64_t i) {
  uint32_t x;
  memcpy(&x, (const char *)p + i * 4, 4);
  return x;
}
static uint16_t ld16(const void *p, int64_t i) {
  uint16_t x;
  memcpy(&x, (const char *)p + i * 2, 2);
  return x;
}

static lb_status add(lb_st_writer *w, const char *prefix, const char *suffix, lb_dtype dt, int ndim,
                     int64_t d0, int64_t d1, const void *data, lb_error *err) {
  char n[LB_LAYOUT_NAME_MAX];
  LB_TRY(lb_layout_name(n, prefix, suffix, err));
  int64_t shape[2] = {d0, d1};
  uint64_t nbytes = (uint64_t)d0 * (uint64_t)(ndim == 2 ? d1 : 1) * lb_dtype_size(dt);
  return lb_st_writer_add(w, n, dt, ndim, shape, data, nbytes, err);
}

lb_status lb_awq_write(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_awq_version v,
                       lb_error *err) {
  const char *vn = version_name(v);
  if (q->kind != LB_QK_AFFINE || q->bits != 4)
    return lb_fail(err, LB_EINVAL, "%s: the AutoAWQ layout holds only 4-bit integer codes (got %s%d bits)",
                   prefix, q->kind != LB_QK_AFFINE ? "a non-affine weight of " : "", q->bits);
  if (q->g_idx)
    return lb_fail(err, LB_EINVAL, "%s: the AutoAWQ layout has no g_idx (act-order groups cannot be "
                   "stored)", prefix);
  int64_t R = q->rows, C = q->cols, g = q->group;
  if (R < 1 || C < 1 || R % 8)
    return lb_fail(err, LB_EINVAL, "%s: AWQ %s needs out_features a multiple of 8 (shape [%lld, %lld])",
                   prefix, vn, (long long)R, (long long)C);
  if (g < 1 || C % g || q->ngroups != C / g)
    return lb_fail(err, LB_EINVAL, "%s: AWQ needs in_features %lld to be a multiple of the group size "
                   "%lld", prefix, (long long)C, (long long)g);
  int64_t G = C / g, Z = 0;
  if (v == LB_AWQ_GEMV) {
    Z = lb_awq_gemv_zeros_width(C, g);
    if (Z < 0)
      return lb_fail(err, LB_EINVAL, "%s: AWQ gemv supports group sizes 32, 64 and >= 128, not %lld",
                     prefix, (long long)g);
    if (C % 8)
      return lb_fail(err, LB_EINVAL, "%s: AWQ gemv needs in_features a multiple of 8 (shape [%lld, "
                     "%lld])", prefix, (long long)R, (long long)C);
  }
  for (int64_t i = 0; i < R * G; i++) {
    float z = q->zero[i];
    if (!(z >= 0.0f && z <= 15.0f) || z != floorf(z))
      return lb_fail(err, LB_EINVAL, "%s: zero point %g (row %lld, group %lld) is not a whole number "
                     "in [0, 15]", prefix, (double)z, (long long)(i / G), (long long)(i % G));
    if (!isfinite(lb_f16_to_f32(lb_f32_to_f16(q->scale[i]))))
      return lb_fail(err, LB_EINVAL, "%s: scale %g (row %lld, group %lld) is not finite in F16",
                     prefix, (double)q->scale[i], (long long)(i / G), (long long)(i % G));
  }
  for (int64_t c = 0; c < R * C; c++)
    if (q->q[c] > 15)
      return lb_fail(err, LB_EINVAL, "%s: code %d at [%lld, %lld] exceeds 4 bits", prefix, q->q[c],
                     (long long)(c / C), (long long)(c % C));

  size_t nqw = (size_t)(R * C / 8);
  size_t nqz = v == LB_AWQ_GEMM ? (size_t)(G * (R / 8)) : (size_t)(R * Z);
  size_t nsc = v == LB_AWQ_GEMM ? (size_t)(G * R) : (size_t)(R * Z * 8);
  uint32_t *qw = calloc(nqw, 4), *qz = calloc(nqz ? nqz : 1, 4);
  uint16_t *sc = calloc(nsc > (size_t)R ? nsc : (size_t)R, 2);
  lb_status s = LB_OK;
  if (!qw || !qz || !sc) s = lb_fail(err, LB_ENOMEM, "%s: out of memory", prefix);
  if (s == LB_OK && v == LB_AWQ_GEMM) {
    int64_t K = R / 8;
    for (int64_t i = 0; i < C; i++)
      for (int64_t k = 0; k < K; k++) {
        uint32_t word = 0;
        for (int j = 0; j < 8; j++) word |= (uint32_t)q->q[(8 * k + AWQ_ORDER[j]) * C + i] << (4 * j);
        qw[i * K + k] = word;
      }
    for (int64_t gi = 0; gi < G; gi++) {
      for (int64_t k = 0; k < K; k++) {
        uint32_t word = 0;
        for (int j = 0; j < 8; j++)
          word |= (uint32_t)q->zero[(8 * k + AWQ_ORDER[j]) * G + gi] << (4 * j);
        qz[gi * K + k] = word;
      }
      for (int64_t o = 0; o < R; o++) sc[gi * R + o] = lb_f32_to_f16(q->scale[o * G + gi]);
    }
    s = add(w, prefix, ".qweight", LB_I32, 2, C, K, qw, err);
    if (s == LB_OK) s = add(w, prefix, ".qzeros", LB_I32, 2, G, K, qz, err);
    if (s == LB_OK) s = add(w, prefix, ".scales", LB_F16, 2, G, R, sc, err);
  } else if (s == LB_OK) {
    int64_t K = C / 8;
    for (int64_t o = 0; o < R; o++) {
      for (int64_t k = 0; k < K; k++) {
        uint32_t word = 0;
        for (int j = 0; j < 8; j++) word |= (uint32_t)q->q[o * C + 8 * k + j] << (4 * j);
        qw[o * K + k] = word;
      }
      for (int64_t gi = 0; gi < G; gi++) {
        qz[o * Z + gi / 8] |= (uint32_t)q->zero[o * G + gi] << (4 * (gi % 8));
        sc[o * Z * 8 + gi] = lb_f32_to_f16(q->scale[o * G + gi]);
      }
    }
    s = add(w, prefix, ".qweight", LB_I32, 2, R, K, qw, err);
    if (s == LB_OK) s = add(w, prefix, ".qzeros", LB_I32, 2, R, Z, qz, err);
    if (s == LB_OK) s = add(w, prefix, ".scales", LB_F16, 2, R, Z * 8, sc, err);
  }
  if (s == LB_OK && q->bias) {
    for (int64_t o = 0; o < R; o++) sc[o] = lb_f32_to_f16(q->bias[o]);
    s = add(w, prefix, ".bias", LB_F16, 1, R, 0, sc, err);
  }
  free(qw), free(qz), free(sc);
  return s;
}

/* lb_layout_expect with the file named too. */
static lb_status expect(const lb_tensor *t, const char *name, lb_dtype dt, int64_t d0, int64_t d1,
                        lb_error *err) {
  lb_status s = lb_layout_expect(t, name, dt, 2, d0, d1, err);
  if (s != LB_OK) lb_error_prefix(err, "%s", t->file);
  return s;
}

lb_status lb_awq_read(const lb_tensors *t, const char *prefix, int bits, int64_t group,
                      lb_awq_version v, lb_qweight *out, lb_error *err) {
  const char *vn = version_name(v);
  if (bits != 4)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: the AutoAWQ layout holds only 4-bit codes, not %d bits",
                   prefix, bits);
  char n[LB_LAYOUT_NAME_MAX];
  const lb_tensor *qw, *qz, *sc, *bias;
  LB_TRY(lb_layout_find(t, prefix, ".qweight", true, n, &qw, err));
  if (qw->dtype != LB_I32 || qw->ndim != 2 || qw->shape[0] < 1 || qw->shape[1] < 1)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' must be I32 %s (AWQ %s), got %s with %d dims",
                   qw->file, n, v == LB_AWQ_GEMM ? "[in, out / 8]" : "[out, in / 8]", vn,
                   lb_dtype_name(qw->dtype), qw->ndim);
  int64_t R = v == LB_AWQ_GEMM ? qw->shape[1] * 8 : qw->shape[0];
  int64_t C = v == LB_AWQ_GEMM ? qw->shape[0] : qw->shape[1] * 8;
  int64_t g = group == -1 ? C : group;
  if (g < 1 || C % g)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s': in_features %lld is not a multiple of the "
                   "group size %lld", qw->file, n, (long long)C, (long long)group);
  int64_t G = C / g, Z = 0;
  if (v == LB_AWQ_GEMV && (Z = lb_awq_gemv_zeros_width(C, g)) < 0)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: AWQ gemv supports group sizes 32, 64 and >= 128, "
                   "not %lld", prefix, (long long)g);
  LB_TRY(lb_layout_find(t, prefix, ".qzeros", true, n, &qz, err));
  if (v == LB_AWQ_GEMM)
    LB_TRY(expect(qz, n, LB_I32, G, R / 8, err));
  else
    LB_TRY(expect(qz, n, LB_I32, R, Z, err));
  LB_TRY(lb_layout_find(t, prefix, ".scales", true, n, &sc, err));
  if (v == LB_AWQ_GEMM)
    LB_TRY(expect(sc, n, LB_F16, G, R, err));
  else
    LB_TRY(expect(sc, n, LB_F16, R, Z * 8, err));
  LB_TRY(lb_layout_find(t, prefix, ".bias", false, n, &bias, err));
  if (bias && (bias->ndim != 1 || bias->shape[0] != R ||
               (bias->dtype != LB_F16 && bias->dtype != LB_F32 && bias->dtype != LB_BF16)))
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' must be a float [%lld]", bias->file, n,
                   (long long)R);

  lb_qweight r = {.kind = LB_QK_AFFINE, .rows = R, .cols = C, .bits = 4, .group = g};
  LB_TRY(lb_qweight_alloc(&r, false, bias != NULL, err));
  if (v == LB_AWQ_GEMM) {
    int64_t K = R / 8;
    for (int64_t i = 0; i < C; i++)
      for (int64_t k = 0; k < K; k++) {
        uint32_t word = ld32(qw->data, i * K + k);
        for (int j = 0; j < 8; j++) r.q[(8 * k + AWQ_ORDER[j]) * C + i] = (word >> (4 * j)) & 15;
      }
    for (int64_t gi = 0; gi < G; gi++) {
      for (int64_t k = 0; k < K; k++) {
        uint32_t word = ld32(qz->data, gi * K + k);
        for (int j = 0; j < 8; j++) r.zero[(8 * k + AWQ_ORDER[j]) * G + gi] = (float)((word >> (4 * j)) & 15);
      }
      for (int64_t o = 0; o < R; o++) r.scale[o * G + gi] = lb_f16_to_f32(ld16(sc->data, gi * R + o));
    }
  } else {
    int64_t K = C / 8;
    for (int64_t o = 0; o < R; o++) {
      for (int64_t k = 0; k < K; k++) {
        uint32_t word = ld32(qw->data, o * K + k);
        for (int j = 0; j < 8; j++) r.q[o * C + 8 * k + j] = (word >> (4 * j)) & 15;
      }
      for (int64_t gi = 0; gi < G; gi++) {
        r.zero[o * G + gi] = (float)((ld32(qz->data, o * Z + gi / 8) >> (4 * (gi % 8))) & 15);
        r.scale[o * G + gi] = lb_f16_to_f32(ld16(sc->data, o * Z * 8 + gi));
      }
    }
  }
  lb_status s = bias ? lb_convert(r.bias, LB_F32, bias->data, bias->dtype, (size_t)R, 0, err) : LB_OK;
  if (s == LB_OK) s = lb_qweight_check(&r, prefix, err);
  if (s != LB_OK) {
    lb_qweight_free(&r);
    return s;
  }
  *out = r;
  return LB_OK;
}
