/* Packing lb_qweight into the kernels' layout (qpack.h), once at load time. */
#include "backend/cpu/qpack.h"

#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "quant/qweight.h"

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

void lb_qpack_free(lb_qpack *p) {
  if (!p) return;
  free(p->codes), free(p->scale), free(p->zs), free(p->perm);
  free(p);
}

/* Act-order: the columns sorted by group (stable), or false when the groups are not `group`
 * consecutive columns each once sorted (then no kernel takes the weight). */
static bool group_perm(const lb_qweight *w, int32_t *perm) {
  int64_t *count = calloc((size_t)w->ngroups + 1, sizeof *count);
  if (!count) return false;
  for (int64_t c = 0; c < w->cols; c++) count[w->g_idx[c] + 1]++;
  bool ok = true;
  for (int64_t g = 0; g < w->ngroups; g++) {
    int64_t want = g + 1 < w->ngroups ? w->group : w->cols - g * w->group;
    if (count[g + 1] != want) ok = false;
    count[g + 1] += count[g];
  }
  for (int64_t c = 0; ok && c < w->cols; c++) perm[count[w->g_idx[c]]++] = (int32_t)c;
  free(count);
  return ok;
}

/* Rows r0 .. r0+15 (zeros past the last row) into the interleaved tile layout: per 8 columns a
 * 64-byte block of 16 rows x 4 codes (U4: columns 0-3 low nibbles, 4-7 high; U8: two blocks). */
static void pack_tile(const lb_qpack *p, const uint8_t *const *rowq, uint8_t *dst) {
  const bool u8 = p->kind == LB_QP_U8;
  for (int64_t c = 0; c < p->cols; c++) {
    const int64_t blk = c / 8 * (u8 ? 128 : 64), j = c % 8;
    for (int i = 0; i < 16; i++) {
      if (!rowq[i]) continue;
      uint8_t q = rowq[i][c];
      if (u8) dst[blk + (j < 4 ? 0 : 64) + i * 4 + j % 4] = q;
      else dst[blk + i * 4 + j % 4] |= (uint8_t)(j < 4 ? q : q << 4);
    }
  }
}

static void pack_nibbles(const uint8_t *q, int64_t cols, int64_t colsp, uint8_t *dst) {
  memset(dst, 0, (size_t)(colsp / 2));
  for (int64_t c = 0; c < cols; c++) {
    int64_t chunk = c / 64, i = c % 64;
    dst[chunk * 32 + i % 32] |= (uint8_t)(q[c] << (i < 32 ? 0 : 4));
  }
}

static bool fp8_finite(uint8_t b, bool e5m2) {
  return e5m2 ? (b & 0x7C) != 0x7C : (b & 0x7F) != 0x7F;
}

/* The geometry of the pack, or false when no kernel takes w. */
static bool plan(const lb_qweight *w, lb_qpack *p) {
  p->rows = w->rows, p->cols = w->cols;
  switch (w->kind) {
  case LB_QK_AFFINE: {
    p->kind = w->bits <= 4 ? LB_QP_U4 : LB_QP_U8;
    const int64_t align = 32; /* activation blocks: whole 8-column steps and 16-float vectors */
    if (w->ngroups == 1) { /* one scale per row (act-order changes nothing) */
      p->kb = w->cols <= 64 ? 64 : 128;
      p->colsp = round_up(w->cols, p->kb);
      p->group = p->colsp;
    } else {
      if (w->group % align) return false;
      p->group = w->group;
      p->kb = w->group <= 256 ? w->group : w->group % 128 == 0 ? 128 : w->group % 64 == 0 ? 64 : 32;
      if (p->kb % align) return false;
      p->colsp = round_up(w->cols, w->group);
    }
    p->ngroups = p->colsp / p->group;
    return p->ngroups == w->ngroups;
  }
  case LB_QK_CODEBOOK:
    p->kind = LB_QP_NF4;
    p->group = w->block;
    p->colsp = round_up(w->cols, 64);
    return w->cols % w->block == 0 && w->block % 16 == 0 && p->colsp % w->block == 0 &&
           ((p->ngroups = p->colsp / p->group), true);
  case LB_QK_FP8:
    p->kind = LB_QP_FP8;
    p->e5m2 = w->fp8 == LB_F8_E5M2;
    p->colsp = round_up(w->cols, 64);
    p->group = w->block_c >= w->cols ? p->colsp : w->block_c;
    if (p->group % 16) return false;
    if (p->group < p->colsp) p->colsp = round_up(p->colsp, p->group * (p->group % 64 ? 4 : 1));
    if (p->colsp % 64 || p->colsp % p->group) return false;
    p->ngroups = p->colsp / p->group;
    for (int64_t i = 0; i < w->rows * w->cols; i++)
      if (!fp8_finite(w->q[i], p->e5m2)) return false; /* NaN stays with the reference */
    return true;
  case LB_QK_INT8ROW: return false;
  }
  return false;
}

/* U4/U8: tiles of 16 rows, codes interleaved (pack_tile), columns in act-order's order, scales and
 * zero * scale stored [tile][group][16]. */
static lb_status pack_affine(const lb_qweight *w, lb_qpack *p, lb_error *err) {
  const int64_t rows = p->rows, cols = p->cols, ng = p->ngroups;
  const int64_t tile_bytes = 16 * (p->kind == LB_QP_U4 ? p->colsp / 2 : p->colsp);
  uint8_t *perm_rows = p->perm ? malloc((size_t)(16 * cols)) : NULL;
  if (p->perm && !perm_rows) return lb_fail(err, LB_ENOMEM, "out of memory packing a weight");
  for (int64_t t = 0; t < p->rowsp / 16; t++) {
    const uint8_t *rowq[16] = {0};
    for (int i = 0; i < 16 && t * 16 + i < rows; i++) {
      rowq[i] = w->q + (t * 16 + i) * cols;
      if (p->perm) {
        for (int64_t c = 0; c < cols; c++) perm_rows[i * cols + c] = rowq[i][p->perm[c]];
        rowq[i] = perm_rows + i * cols;
      }
      for (int64_t g = 0; g < ng; g++) {
        int64_t src = (t * 16 + i) * ng + g, dst = (t * ng + g) * 16 + i;
        p->scale[dst] = w->scale[src];
        p->zs[dst] = w->zero[src] * w->scale[src];
      }
    }
    pack_tile(p, rowq, p->codes + t * tile_bytes);
  }
  free(perm_rows);
  return LB_OK;
}

/* NF4: row-major 64-column nibble chunks, absmax per block; FP8: bytes, scales expanded per row. */
static void pack_float(const lb_qweight *w, lb_qpack *p) {
  const int64_t rows = p->rows, cols = p->cols, colsp = p->colsp, ng = p->ngroups;
  for (int64_t r = 0; r < rows; r++) {
    if (p->kind == LB_QP_NF4) pack_nibbles(w->q + r * cols, cols, colsp, p->codes + r * (colsp / 2));
    else memcpy(p->codes + r * colsp, w->q + r * cols, (size_t)cols);
  }
  if (p->kind == LB_QP_NF4) {
    memcpy(p->lut, w->code, sizeof p->lut);
    for (int64_t r = 0; r < rows; r++)
      memcpy(p->scale + r * ng, w->absmax + r * (cols / w->block),
             (size_t)(cols / w->block) * sizeof(float));
    return;
  }
  int64_t ncb = (cols + w->block_c - 1) / w->block_c;
  float unit = p->e5m2 ? 1.0f : 256.0f; /* E4M3 goes through fp16 at 2^-8 of its value */
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ng && g < ncb; g++)
      p->scale[r * ng + g] = w->scale[(r / w->block_r) * ncb + g] * unit;
}

lb_status lb_qpack_new(const lb_qweight *w, lb_qpack **out, lb_error *err) {
  *out = NULL;
  lb_qpack *p = calloc(1, sizeof *p);
  if (!p) return lb_fail(err, LB_ENOMEM, "out of memory packing a quantized weight");
  if (!plan(w, p)) {
    free(p);
    return LB_OK;
  }
  const bool nib = p->kind == LB_QP_U4 || p->kind == LB_QP_NF4;
  const bool affine = p->kind == LB_QP_U4 || p->kind == LB_QP_U8;
  const bool perm = affine && w->g_idx && p->ngroups > 1;
  p->rowsp = affine ? round_up(p->rows, 16) : p->rows;
  const int64_t rowsp = p->rowsp, ng = p->ngroups;
  p->codes = calloc((size_t)(rowsp * (nib ? p->colsp / 2 : p->colsp)), 1);
  p->scale = calloc((size_t)(rowsp * ng), sizeof *p->scale);
  if (affine) p->zs = calloc((size_t)(rowsp * ng), sizeof *p->zs);
  if (perm) p->perm = malloc((size_t)p->cols * sizeof *p->perm);
  if (!p->codes || !p->scale || (affine && !p->zs) || (perm && !p->perm)) {
    lb_qpack_free(p);
    return lb_fail(err, LB_ENOMEM, "out of memory packing a [%lld, %lld] quantized weight",
                   (long long)w->rows, (long long)w->cols);
  }
  if (perm && !group_perm(w, p->perm)) { /* groups of unequal size: the reference runs it */
    lb_qpack_free(p);
    return LB_OK;
  }
  if (affine) {
    lb_status s = pack_affine(w, p, err);
    if (s != LB_OK) {
      lb_qpack_free(p);
      return s;
    }
  } else {
    pack_float(w, p);
  }
  *out = p;
  return LB_OK;
}
