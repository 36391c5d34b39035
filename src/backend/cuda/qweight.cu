// Quantized weights on the device (cuda.h, lb_cuda_qw): which canonical weights fit a device
// layout, the host repack and upload, and the dequantization to fp16 that prefill's GEMM reads.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/gemv_formats.cuh"
#include "backend/cuda/util.cuh"
extern "C" {
#include "quant/qweight.h"
}

// Whether w's columns are in act-order (a g_idx other than c / group). The device takes it when
// each group has the columns a group of that place would (group, the last one the rest): sorted
// by group, the columns are then a plain grouped weight, and *why stays NULL.
static bool act_order(const lb_qweight *w, int64_t group, const char **why) {
  if (!w->g_idx || w->ngroups <= 1) return false;
  bool plain = true;
  for (int64_t c = 0; plain && c < w->cols; c++) plain = w->g_idx[c] == c / group;
  if (plain) return false;
  int64_t *count = (int64_t *)calloc((size_t)w->ngroups, sizeof *count);
  if (!count) return *why = "out of host memory", true;
  for (int64_t c = 0; c < w->cols && !*why; c++)
    if (w->g_idx[c] < 0 || w->g_idx[c] >= w->ngroups) *why = "act-order group index out of range";
    else count[w->g_idx[c]]++;
  for (int64_t j = 0; j < w->ngroups && !*why; j++)
    if (count[j] != (w->cols - j * group < group ? w->cols - j * group : group))
      *why = "act-order groups of unequal sizes";
  free(count);
  return true;
}

// The device column order of an act-order weight: column perm[i] of w at i (grouped, stable);
// false when out of host memory.
static bool act_perm(const lb_qweight *w, int64_t group, int32_t *perm) {
  int64_t *next = (int64_t *)malloc((size_t)w->ngroups * sizeof *next);
  if (!next) return false;
  for (int64_t j = 0; j < w->ngroups; j++) next[j] = j * group;
  for (int64_t c = 0; c < w->cols; c++) perm[next[w->g_idx[c]]++] = (int32_t)c;
  free(next);
  return true;
}

// The device kind of w, or NONE with the reason in *why.
static lb_cuda_qkind kind_of(const lb_qweight *w, const char **why) {
  *why = NULL;
  switch (w->kind) {
  case LB_QK_AFFINE: {
    const int64_t group = w->ngroups > 1 ? w->group : w->cols;
    if (w->bits > 4) { // a byte a code (A8)
      const float top = (float)((1 << w->bits) - 1);
      if (w->bits > 8) *why = "affine codes of more than 8 bits";
      else if (w->cols % 16 || group % 16) *why = "columns or group not a multiple of 16";
      else if (w->cols > INT32_MAX) *why = "more than 2^31 columns";
      for (int64_t i = 0; !*why && i < w->rows * w->ngroups; i++)
        if (!(w->zero[i] >= 0.0f && w->zero[i] <= top) || w->zero[i] != floorf(w->zero[i]))
          *why = "5-8-bit zero points that are not integer codes";
      if (!*why && act_order(w, group, why) && !*why) *why = "act-order codes of more than 4 bits";
      return *why ? LB_CUDA_NONE : LB_CUDA_A8;
    }
    if (w->cols % 32 || group % 32) *why = "columns or group not a multiple of 32";
    else if (w->cols > INT32_MAX) *why = "more than 2^31 columns";
    bool whole = true; // integer zero points in [0, 15] (GPTQ, AWQ, RTN): Q4; else Q4F (HQQ)
    for (int64_t i = 0; !*why && i < w->rows * w->ngroups; i++) {
      const float z = w->zero[i];
      if (!(z >= -16.0f && z <= 31.0f)) *why = "zero points outside [-16, 31] (or not numbers)";
      else if (z != floorf(z) || z > 15.0f || z < 0.0f) whole = false;
    }
    if (!*why && act_order(w, group, why) && !*why && !whole) *why = "act-order with fractional zero points";
    return *why ? LB_CUDA_NONE : whole ? LB_CUDA_Q4 : LB_CUDA_Q4F;
  }
  case LB_QK_CODEBOOK:
    if (w->bits != 4 || w->block <= 0 || w->block % 32 || w->cols % w->block) *why = "absmax blocks that are not whole multiples of 32 columns of a row";
    return *why ? LB_CUDA_NONE : LB_CUDA_NF4;
  case LB_QK_FP8:
    if (w->fp8 != LB_F8_E4M3) *why = "FP8 E5M2 (its products may overflow fp16)";
    else if (w->cols % 16 || w->block_r <= 0 || w->block_c <= 0 || (w->block_c < w->cols && w->block_c % 16)) *why = "columns or scale blocks not a multiple of 16";
    return *why ? LB_CUDA_NONE : LB_CUDA_FP8;
  case LB_QK_INT8ROW:
    if (w->cols % 16) *why = "columns not a multiple of 16";
    return *why ? LB_CUDA_NONE : LB_CUDA_I8;
  }
  *why = "an unknown kind";
  return LB_CUDA_NONE;
}

extern "C" bool lb_cuda_qw_fits(const lb_qweight *w, const char **why) {
  const char *r;
  const bool ok = kind_of(w, &r) != LB_CUDA_NONE;
  if (why) *why = r;
  return ok;
}

// The geometry of w's device layout: scale groups (columns each), and bytes of codes a row.
static void geometry(const lb_qweight *w, lb_cuda_qkind k, int64_t *group, int64_t *ngroups, int64_t *row_bytes) {
  switch (k) {
  case LB_CUDA_Q4:
  case LB_CUDA_Q4F: *group = w->ngroups > 1 ? w->group : w->cols, *row_bytes = w->cols / 2; break;
  case LB_CUDA_NF4: *group = w->block, *row_bytes = w->cols / 2; break;
  case LB_CUDA_FP8: *group = w->block_c < w->cols ? w->block_c : w->cols, *row_bytes = w->cols; break;
  case LB_CUDA_A8: *group = w->ngroups > 1 ? w->group : w->cols, *row_bytes = w->cols; break;
  default: *group = w->cols, *row_bytes = w->cols; break;
  }
  *ngroups = (w->cols + *group - 1) / *group;
}

// 8 codes (each < 16, one a byte) packed into a word in Q4's column order 0, 2, 4, 6, 1, 3, 5, 7, by
// shifts of the 8 bytes read as one little-endian uint64.
static uint32_t pack_q4(const uint8_t *q) {
  uint64_t v;
  memcpy(&v, q, 8);
  uint64_t e = v & 0x000F000F000F000Full, o = (v >> 8) & 0x000F000F000F000Full; // even, odd columns
  e |= e >> 12, o |= o >> 12; // two codes a byte at bytes 0 and 4
  e &= 0x000000FF000000FFull, o &= 0x000000FF000000FFull;
  e |= e >> 24, o |= o >> 24;
  return (uint32_t)(e & 0xFFFF) | (uint32_t)(o & 0xFFFF) << 16;
}

// NF4/FP4's word (cuda.h): nibble n keeps the low 3 bits of column n's code; the codes' bit 3 go to
// the nibbles' top bits, columns 0-3 at bits 7, 15, 23, 31 (each byte's sign, which one PRMT turns
// into a byte mask) and columns 4-7 at bits 3, 11, 19, 27 (the same after a shift by 4). The 8
// codes (each < 16) are read as one little-endian uint64 and packed by shifts, as pack_q4 does.
static uint32_t pack_nf4(const uint8_t *q) {
  uint64_t v;
  memcpy(&v, q, 8);
  const uint64_t b3 = v >> 3 & 0x0101010101010101ull; // each code's bit 3 at bit 8n
  uint64_t lo = v & 0x0707070707070707ull;              // the low 3 bits, nibbles gathered below
  lo = (lo | lo >> 4) & 0x00FF00FF00FF00FFull;
  lo = (lo | lo >> 8) & 0x0000FFFF0000FFFFull;
  return (uint32_t)(lo | lo >> 16) | (uint32_t)(b3 << 7 & 0x80808080u) | (uint32_t)(b3 >> 29 & 0x08080808u);
}

// Row r of w into the device layout: codes (row_bytes) and scales (ngroups entries); perm (or
// NULL): the act-order column at each place.
static void repack_row(const lb_qweight *w, lb_cuda_qkind k, int64_t r, int64_t ngroups, const int32_t *perm,
                       uint8_t *codes, uint32_t *sc) {
  const int64_t cols = w->cols;
  const uint8_t *q = w->q + r * cols;
  switch (k) {
  case LB_CUDA_Q4:
  case LB_CUDA_Q4F:
  case LB_CUDA_NF4: {
    uint8_t row[8]; // codes masked to 4 bits, 8 at a time
    for (int64_t t = 0; t < cols / 8; t++) {
      for (int i = 0; i < 8; i++) row[i] = q[perm ? perm[8 * t + i] : 8 * t + i] & 15;
      const uint32_t word = k == LB_CUDA_NF4 ? pack_nf4(row) : pack_q4(row);
      memcpy(codes + 4 * t, &word, 4);
    }
    break;
  }
  default: memcpy(codes, q, (size_t)cols); break;
  }
  for (int64_t j = 0; j < ngroups; j++) {
    float f = 0.0f;
    switch (k) {
    case LB_CUDA_Q4:
    case LB_CUDA_Q4F:
    case LB_CUDA_A8: { // the fp16 pair (scale, the zero as each decode subtracts it: cuda.h)
      const float z = w->zero[r * ngroups + j];
      const float zh = k == LB_CUDA_Q4 ? 1024.0f + z : k == LB_CUDA_A8 ? 4.0f + z / 256.0f : z;
      __half2 h = __floats2half2_rn(w->scale[r * ngroups + j], zh);
      memcpy(&sc[j], &h, 4);
      continue;
    }
    case LB_CUDA_NF4: f = w->absmax[r * ngroups + j]; break; // blocks are whole parts of rows
    case LB_CUDA_FP8: f = w->scale[(r / w->block_r) * ngroups + j]; break;
    default: f = w->scale[r]; break;
    }
    memcpy(&sc[j], &f, 4);
  }
}

extern "C" lb_status lb_cuda_qw_upload(lb_cuda_ctx *ctx, const lb_qweight *const *ws, int n, bool pairs,
                                       lb_cuda_qw *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  lb_cuda_qkind k = LB_CUDA_NONE;
  int64_t group = 0, ng = 0, rb = 0, rows = 0;
  for (int i = 0; i < n; i++) { // each weight's fit is checked once
    const lb_qweight *w = ws[i];
    const char *why;
    const lb_cuda_qkind ki = kind_of(w, &why);
    if (ki == LB_CUDA_NONE) {
      char msg[200];
      snprintf(msg, sizeof msg, "cuda weights: %s", why);
      return lb_cu_fail(err, LB_EUNSUPPORTED, msg);
    }
    int64_t gi, ngi, rbi;
    geometry(w, ki, &gi, &ngi, &rbi);
    if (i == 0) k = ki, group = gi, ng = ngi, rb = rbi;
    const bool q4s = (k == LB_CUDA_Q4 || k == LB_CUDA_Q4F) && (ki == LB_CUDA_Q4 || ki == LB_CUDA_Q4F);
    if (q4s && ki == LB_CUDA_Q4F) k = LB_CUDA_Q4F; // integer zero points stacked with fractional ones (HQQ)
    if ((ki != k && !q4s) || w->cols != ws[0]->cols || gi != group ||
             (k == LB_CUDA_NF4 && memcmp(w->code, ws[0]->code, sizeof w->code)) ||
             (k == LB_CUDA_I8 && w->threshold != ws[0]->threshold))
      return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda weights: stacked weights differ in kind, columns, groups, code book or threshold");
    rows += w->rows;
  }
  if (pairs && (n != 2 || ws[0]->rows != ws[1]->rows))
    return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda weights: pairs are two weights of equal rows");
  // act-order: stacked weights share one column order (q/k/v and gate/up see the same inputs, so
  // GPTQ orders their columns alike), which the caller applies to the activations
  const char *why = NULL;
  const bool perm = (k == LB_CUDA_Q4 || k == LB_CUDA_Q4F) && act_order(ws[0], group, &why);
  for (int i = 1; i < n && !why; i++) {
    const bool pi = act_order(ws[i], group, &why);
    if (!why && (pi != perm || (perm && memcmp(ws[i]->g_idx, ws[0]->g_idx, (size_t)ws[0]->cols * 4))))
      why = "stacked weights in different act-orders";
  }
  if (!why && perm && k == LB_CUDA_Q4F) why = "act-order weights stacked with fractional zero points";
  if (why) return lb_cu_fail(err, LB_EUNSUPPORTED, why);
  const int64_t cols = ws[0]->cols;
  const size_t cbytes = (size_t)(rows * rb), sbytes = (size_t)(rows * ng) * 4;
  uint8_t *codes = (uint8_t *)malloc(cbytes);
  uint32_t *sc = (uint32_t *)malloc(sbytes);
  int32_t *hp = perm ? (int32_t *)malloc((size_t)cols * 4) : NULL;
  if (!codes || !sc || (perm && (!hp || !act_perm(ws[0], group, hp)))) {
    free(codes), free(sc), free(hp);
    return lb_cu_fail(err, LB_ENOMEM, "cuda weights: out of host memory");
  }
  for (int i = 0, r0 = 0; i < n; r0 += (int)ws[i]->rows, i++)
    for (int64_t r = 0; r < ws[i]->rows; r++) {
      const int64_t dst = pairs ? 2 * r + i : r0 + r;
      repack_row(ws[i], k, r, ng, hp, codes + dst * rb, sc + dst * ng);
    }
  out->kind = k, out->rows = rows, out->cols = ws[0]->cols, out->group = group, out->ngroups = ng;
  memcpy(out->code, ws[0]->code, sizeof out->code);
  out->threshold = ws[0]->threshold;
  lb_status s = LB_OK;
  if ((s = lb_cuda_alloc(ctx, cbytes, &out->codes, err)) != LB_OK ||
      (s = lb_cuda_alloc(ctx, sbytes + 16, &out->scales, err)) != LB_OK || // 16 to spare: gemv_staged's copies
      (s = lb_cu_check(err, "uploading a weight", cudaMemcpy(out->codes, codes, cbytes, cudaMemcpyHostToDevice))) != LB_OK ||
      (s = lb_cu_check(err, "uploading a weight", cudaMemcpy(out->scales, sc, sbytes, cudaMemcpyHostToDevice))) != LB_OK ||
      (hp && ((s = lb_cuda_alloc(ctx, (size_t)cols * 4, (void **)&out->perm, err)) != LB_OK ||
              (s = lb_cu_check(err, "uploading a weight", cudaMemcpy(out->perm, hp, (size_t)cols * 4, cudaMemcpyHostToDevice))) != LB_OK)))
    lb_cuda_qw_free(out);
  free(codes), free(sc), free(hp);
  return s;
}

extern "C" void lb_cuda_qw_free(lb_cuda_qw *w) {
  cudaFree(w->codes), cudaFree(w->scales), cudaFree(w->perm);
  w->codes = w->scales = NULL, w->perm = NULL;
  w->kind = LB_CUDA_NONE;
}

struct Table16 {
  float v[16];
};

// One thread per 8 columns of a row, written as one 16-byte store of fp16; 32-bit index math
// (units < 2^32, checked by the caller: 64-bit division is a long instruction sequence).
template <int K>
__global__ void dequant(const uint8_t *__restrict__ codes, const uint32_t *__restrict__ sc, uint4 *__restrict__ out,
                        uint32_t units, uint32_t cols, uint32_t group, uint32_t ngroups, Table16 tab) {
  lb_pdl_trigger();
  __shared__ float tb[16]; // NF4's code book (a parameter indexed by a code would go to local memory)
  if (K == LB_CUDA_NF4 && threadIdx.x == 0)
#pragma unroll
    for (int j = 0; j < 16; j++) tb[j] = tab.v[j];
  __syncthreads();
  lb_pdl_wait(); // out may still be read by the kernel before
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x, upr = cols / 8;
  if (i >= units) return;
  const uint32_t r = i / upr, c = (i - r * upr) * 8;
  const uint32_t s = sc[(size_t)r * ngroups + c / group];
  uint4 o;
  __half *h = reinterpret_cast<__half *>(&o);
  if (K == LB_CUDA_Q4 || K == LB_CUDA_Q4F) { // the GEMV's decoding (gemv_formats.cuh), times the scale
    const uint32_t w = reinterpret_cast<const uint32_t *>(codes)[i];
    const __half2 sz = as_h2(s), z = __high2half2(sz), sc2 = __low2half2(sz);
    uint32_t *ov = &o.x;
#pragma unroll
    for (int k = 0; k < 4; k++) { // nibbles k and k + 4 hold columns 2k and 2k + 1
      const __half2 v = __hmul2(K == LB_CUDA_Q4 ? q4_pair(w, k, z) : q4f_pair(w, k, z), sc2);
      ov[k] = *reinterpret_cast<const uint32_t *>(&v);
    }
  } else {
    const float f = __uint_as_float(s);
    if (K == LB_CUDA_NF4) {
      const uint32_t word = reinterpret_cast<const uint32_t *>(codes)[i];
#pragma unroll
      for (int k = 0; k < 8; k++) h[k] = __float2half(tb[nf4_code(word, k)] * f);
    } else if (K == LB_CUDA_A8 || K == LB_CUDA_FP8) { // the GEMV's byte-pair decodings, exact: 8-bit
      // affine's (q - zero) / 256 and E4M3's value times 2^-8, each times 256 * scale
      const uint2 b = reinterpret_cast<const uint2 *>(codes)[i];
      const __half2 z = __high2half2(as_h2(s));
      const float sc = 256.0f * (K == LB_CUDA_A8 ? __low2float(as_h2(s)) : f);
      auto pair = [&](uint32_t word, bool hi) {
        return K == LB_CUDA_A8 ? a8_pair(word, hi ? 0x4342u : 0x4140u, z) : e4m3_pair(word, hi ? 0x3424u : 0x1404u);
      };
      const __half2 p[4] = {pair(b.x, false), pair(b.x, true), pair(b.y, false), pair(b.y, true)};
#pragma unroll
      for (int k = 0; k < 4; k++) {
        const float2 v = __half22float2(p[k]);
        h[2 * k] = __float2half(v.x * sc), h[2 * k + 1] = __float2half(v.y * sc);
      }
    } else {
      const uint2 b = reinterpret_cast<const uint2 *>(codes)[i];
#pragma unroll
      for (int k = 0; k < 8; k++) { // int8_vectorwise_dequant: q * SCB * 1/127
        const int8_t q = (int8_t)(((k < 4 ? b.x : b.y) >> (8 * (k & 3))) & 0xFF);
        h[k] = __float2half((float)q * f * 7.874015718698502e-3f);
      }
    }
  }
  out[i] = o;
}

extern "C" lb_status lb_cuda_qw_dequant(lb_cuda_ctx *c, const lb_cuda_qw *w, void *out16, lb_error *err) {
  const int64_t units = w->rows * w->cols / 8;
  if (units >= ((int64_t)1 << 32)) return lb_cu_fail(err, LB_EUNSUPPORTED, "cuda: a weight of 2^35 or more values cannot be dequantized in one launch");
  const dim3 grid((unsigned)((units + 255) / 256)), block(256);
  cudaStream_t st = c ? (cudaStream_t)lb_cuda_stream(c) : 0;
  const uint8_t *codes = (const uint8_t *)w->codes;
  const uint32_t *sc = (const uint32_t *)w->scales;
  uint4 *o = (uint4 *)out16;
  const uint32_t cols = (uint32_t)w->cols, group = (uint32_t)w->group, ng = (uint32_t)w->ngroups, u = (uint32_t)units;
  Table16 tab;
  memcpy(tab.v, w->code, sizeof tab.v);
  cudaError_t e = cudaErrorInvalidValue;
  switch (w->kind) {
  case LB_CUDA_Q4: e = lb_cu_launch(dequant<LB_CUDA_Q4>, grid, block, 0, st, codes, sc, o, u, cols, group, ng, tab); break;
  case LB_CUDA_Q4F: e = lb_cu_launch(dequant<LB_CUDA_Q4F>, grid, block, 0, st, codes, sc, o, u, cols, group, ng, tab); break;
  case LB_CUDA_NF4: e = lb_cu_launch(dequant<LB_CUDA_NF4>, grid, block, 0, st, codes, sc, o, u, cols, group, ng, tab); break;
  case LB_CUDA_FP8: e = lb_cu_launch(dequant<LB_CUDA_FP8>, grid, block, 0, st, codes, sc, o, u, cols, group, ng, tab); break;
  case LB_CUDA_A8: e = lb_cu_launch(dequant<LB_CUDA_A8>, grid, block, 0, st, codes, sc, o, u, cols, group, ng, tab); break;
  case LB_CUDA_I8: e = lb_cu_launch(dequant<LB_CUDA_I8>, grid, block, 0, st, codes, sc, o, u, cols, group, ng, tab); break;
  default: break;
  }
  return lb_cu_check(err, "launching a weight's dequantization", e);
}
