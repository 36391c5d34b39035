/* The AutoGPTQ / GPTQModel layout of one Linear (../shared/FORMATS.md, GPTQ):
 *   qweight int32 [cols * bits / 32, rows]  codes packed along the input dim, column by column
 *   qzeros  int32 [ngroups, rows * bits / 32] zero points packed along the output dim (v1: zero - 1)
 *   scales  f16   [ngroups, rows]
 *   g_idx   int32 [cols]                     group of each input column (act-order: any order)
 * Dequant: W[o, i] = scales[g_idx[i], o] * (q[i, o] - zero[g_idx[i], o]). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/formats/layout.h"
#include "quant/gptq.h"

void lb_pack_bits(const uint8_t *v, int64_t n, int bits, uint32_t *words) {
  memset(words, 0, (size_t)((n * bits + 31) / 32) * 4);
  for (int64_t i = 0; i < n; i++) {
    int64_t bit = i * bits;
    uint64_t x = (uint64_t)(v[i] & ((1u << bits) - 1)) << (bit % 32);
    words[bit / 32] |= (uint32_t)x;
    if (bit % 32 + bits > 32) words[bit / 32 + 1] |= (uint32_t)(x >> 32);
  }
}

void lb_unpack_bits(const uint32_t *words, int64_t n, int bits, uint8_t *v) {
  for (int64_t i = 0; i < n; i++) {
    int64_t bit = i * bits;
    uint64_t x = words[bit / 32] >> (bit % 32);
    if (bit % 32 + bits > 32) x |= (uint64_t)words[bit / 32 + 1] << (32 - bit % 32);
    v[i] = (uint8_t)(x & ((1u << bits) - 1));
  }
}

static char *tname(char *buf, size_t cap, const char *prefix, const char *suffix) {
  snprintf(buf, cap, "%s.%s", prefix, suffix);
  return buf;
}

lb_status lb_gptq_write(lb_st_writer *w, const char *prefix, const lb_qweight *q, lb_gptq_version v,
                        lb_error *err) {
  int b = q->bits;
  if (q->kind != LB_QK_AFFINE || (q->rows * b) % 32 || (q->cols * b) % 32)
    return lb_fail(err, LB_EINVAL, "%s: GPTQ layout needs integer codes with rows and columns times "
                   "%d bits divisible by 32 (shape [%lld, %lld])", prefix, b, (long long)q->rows,
                   (long long)q->cols);
  int64_t R = q->rows, C = q->cols, G = q->ngroups, maxq = (1 << b) - 1;
  float zmin = v == LB_GPTQ_V1 ? 1.0f : 0.0f;
  for (int64_t i = 0; i < R * G; i++)
    if (q->zero[i] != floorf(q->zero[i]) || q->zero[i] < zmin || q->zero[i] > (float)maxq)
      return lb_fail(err, LB_EINVAL,
                     "%s: zero point %g is not a whole number in [%g, %lld]%s", prefix,
                     (double)(q->zero[i] + 0.0f), (double)zmin, (long long)maxq,
                     v == LB_GPTQ_V1 ? " (v1 stores zero - 1: a zero of 0 would read back as 2^bits)"
                                     : "");
  size_t words_q = (size_t)(C * b / 32) * (size_t)R, words_z = (size_t)G * (size_t)(R * b / 32);
  uint32_t *qw = malloc(words_q * 4), *qz = malloc(words_z * 4), *col = malloc((size_t)(C * b / 32) * 4);
  uint16_t *sc = malloc((size_t)(G * R) * 2);
  int32_t *gi = malloc((size_t)C * 4);
  uint8_t *tmp = malloc((size_t)(C > R ? C : R));
  lb_status s = LB_OK;
  if (!qw || !qz || !col || !sc || !gi || !tmp) s = lb_fail(err, LB_ENOMEM, "%s: out of memory", prefix);
  if (s == LB_OK) {
    /* qweight[k, o]: word k of output column o holds codes of inputs 32k/b .. */
    for (int64_t o = 0; o < R; o++) {
      lb_pack_bits(q->q + o * C, C, b, col);
      for (int64_t k = 0; k < C * b / 32; k++) qw[k * R + o] = col[k];
    }
    for (int64_t g = 0; g < G; g++) {
      for (int64_t o = 0; o < R; o++) {
        int z = (int)q->zero[o * G + g];
        tmp[o] = (uint8_t)((v == LB_GPTQ_V1 ? z - 1 : z) & (int)maxq);
        sc[g * R + o] = lb_f32_to_f16(q->scale[o * G + g]);
      }
      lb_pack_bits(tmp, R, b, qz + g * (R * b / 32));
    }
    for (int64_t c = 0; c < C; c++) gi[c] = q->g_idx ? q->g_idx[c] : (int32_t)(c / q->group);
    char n[512];
    int64_t sq[2] = {C * b / 32, R}, sz[2] = {G, R * b / 32}, ss[2] = {G, R}, sg[1] = {C};
    s = lb_st_writer_add(w, tname(n, sizeof n, prefix, "qweight"), LB_I32, 2, sq, qw, words_q * 4, err);
    if (s == LB_OK)
      s = lb_st_writer_add(w, tname(n, sizeof n, prefix, "qzeros"), LB_I32, 2, sz, qz, words_z * 4, err);
    if (s == LB_OK)
      s = lb_st_writer_add(w, tname(n, sizeof n, prefix, "scales"), LB_F16, 2, ss, sc,
                           (size_t)(G * R) * 2, err);
    if (s == LB_OK)
      s = lb_st_writer_add(w, tname(n, sizeof n, prefix, "g_idx"), LB_I32, 1, sg, gi, (size_t)C * 4, err);
    if (s == LB_OK && q->bias) {
      for (int64_t o = 0; o < R; o++) sc[o] = lb_f32_to_f16(q->bias[o]);
      int64_t sb[1] = {R};
      s = lb_st_writer_add(w, tname(n, sizeof n, prefix, "bias"), LB_F16, 1, sb, sc, (size_t)R * 2, err);
    }
  }
  free(qw), free(qz), free(col), free(sc), free(gi), free(tmp);
  return s;
}

lb_status lb_gptq_read(const lb_tensors *t, const char *prefix, int bits, int64_t group,
                       lb_gptq_version v, lb_qweight *out, lb_error *err) {
  char n[LB_LAYOUT_NAME_MAX];
  const lb_tensor *qw, *qz, *sc, *gi, *bias;
  LB_TRY(lb_layout_find(t, prefix, ".qweight", true, n, &qw, err));
  if (bits < 2 || bits > 8 || qw->ndim != 2 || qw->dtype != LB_I32)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' must be I32 [in * %d / 32, out]", qw->file, n, bits);
  int64_t R = qw->shape[1], C = qw->shape[0] * 32 / bits;
  if (C * bits != qw->shape[0] * 32 || (R * bits) % 32 || R < 1)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' shape does not fit %d-bit packing", qw->file, n, bits);
  int64_t g = group > 0 && group < C ? group : C, G = (C + g - 1) / g;
  LB_TRY(lb_layout_find(t, prefix, ".qzeros", true, n, &qz, err));
  LB_TRY(lb_layout_expect(qz, n, LB_I32, 2, G, R * bits / 32, err));
  LB_TRY(lb_layout_find(t, prefix, ".scales", true, n, &sc, err));
  LB_TRY(lb_layout_expect(sc, n, LB_F16, 2, G, R, err));
  LB_TRY(lb_layout_find(t, prefix, ".g_idx", false, n, &gi, err));
  if (gi) LB_TRY(lb_layout_expect(gi, n, LB_I32, 1, C, 0, err));
  LB_TRY(lb_layout_find(t, prefix, ".bias", false, n, &bias, err));
  if (bias && (bias->ndim != 1 || bias->shape[0] != R || (bias->dtype != LB_F16 && bias->dtype != LB_F32 && bias->dtype != LB_BF16)))
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' must be a float [%lld]", bias->file, n, (long long)R);
  *out = (lb_qweight){.kind = LB_QK_AFFINE, .rows = R, .cols = C, .bits = bits, .group = g};
  LB_TRY(lb_qweight_alloc(out, gi != NULL, bias != NULL, err));
  uint32_t *col = malloc((size_t)(C * bits / 32) * 4);
  uint8_t *z = malloc((size_t)R);
  if (!col || !z) {
    free(col), free(z), lb_qweight_free(out);
    return lb_fail(err, LB_ENOMEM, "%s: out of memory", prefix);
  }
  const uint32_t *qd = qw->data, *zd = qz->data;
  const uint16_t *sd = sc->data;
  for (int64_t o = 0; o < R; o++) {
    for (int64_t k = 0; k < C * bits / 32; k++) col[k] = qd[k * R + o];
    lb_unpack_bits(col, C, bits, out->q + o * C);
  }
  for (int64_t j = 0; j < G; j++) {
    lb_unpack_bits(zd + j * (R * bits / 32), R, bits, z);
    for (int64_t o = 0; o < R; o++) {
      out->zero[o * G + j] = (float)(v == LB_GPTQ_V1 ? z[o] + 1 : z[o]);
      out->scale[o * G + j] = lb_f16_to_f32(sd[j * R + o]);
    }
  }
  if (gi) memcpy(out->g_idx, gi->data, (size_t)C * 4);
  free(col), free(z);
  lb_status s = bias ? lb_convert(out->bias, LB_F32, bias->data, bias->dtype, (size_t)R, 0, err) : LB_OK;
  if (s == LB_OK) s = lb_qweight_check(out, prefix, err);
  if (s != LB_OK) lb_qweight_free(out);
  return s;
}
