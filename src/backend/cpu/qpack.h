/* Quantized weights in the layout the CPU kernels read, made once at load time from the canonical
 * lb_qweight (DESIGN.md "Fast quantized kernels"). Four kernel kinds cover every format:
 *
 *   LB_QP_U4   integer codes of 1..4 bits (RTN, GPTQ, AWQ, HQQ, compressed-tensors int), and
 *   LB_QP_U8   integer codes of 5..8 bits: multiplied by activations quantized to int8 per block of
 *              kb columns (u8 x s8 -> s32: vpdpbusd with AVX-512 VNNI; vpmaddubsw + vpmaddwd with
 *              AVX2, U8 codes split into nibbles so that nothing saturates). Rows come in tiles of
 *              16, interleaved: per 8 columns a 64-byte block holds 4 codes of each of the 16 rows
 *              (U4: columns 0-3 in the low nibbles, 4-7 in the high ones; U8: two such blocks), so
 *              each int32 lane of a 512-bit vector accumulates one output row and a broadcast of 4
 *              activation bytes feeds all 16 (no horizontal sums; llama.cpp's repacked Q4_0 and
 *              Marlin interleave for the same reason). Scales and zero terms are stored [group][16]
 *              per tile.
 *   LB_QP_NF4  bitsandbytes NF4/FP4 codes, two a byte: a 16-entry table in a register, fp32
 *              activations (no activation rounding at all).
 *   LB_QP_FP8  E4M3/E5M2 bytes turned into fp16 by shifts, then fp32: fp32 activations.
 *
 * Columns are padded with zeros (U4/U8 to a whole group, NF4/FP8 to a multiple of 64: byte i of a
 * 64-column NF4 chunk holds column i in its low nibble and column 32 + i in its high one); the
 * padded activations are zero, so the padding adds nothing. Act-order (g_idx) weights have their columns
 * sorted by group, so groups are contiguous; the activations are gathered by the same permutation.
 *
 * The integer kinds compute, for weight row r and activation row j,
 *   y = sum_k s[r, g(k)] * d[j, k] * sum_{c in k} q[r, c] * a[j, c]  -  sum_g zs[r, g] * z[j, g]
 * where a are the activation codes of block k (kb columns, a divisor of the group), d their scale,
 * zs = zero * scale, and z[j, g] = sum_{k in g} d[j, k] * sum_{c in k} a[j, c]: W = (q - zero) * s
 * with the zero point taken out of the integer sums. */
#ifndef LB_BACKEND_CPU_QPACK_H
#define LB_BACKEND_CPU_QPACK_H

#include "base/threads.h"
#include "lowbit.h"

struct lb_qweight;

typedef enum lb_qpkind { LB_QP_U4, LB_QP_U8, LB_QP_NF4, LB_QP_FP8 } lb_qpkind;

typedef struct lb_qpack {
  lb_qpkind kind;
  int64_t rows, cols, colsp; /* colsp: cols padded (U4/U8: to the group or kb; NF4/FP8: to 64
                                and the scale block) */
  int64_t rowsp;             /* U4/U8: rows padded to a multiple of 16 (tiles); else rows */
  int64_t group;   /* columns per scale: a weight group (U4/U8), absmax block (NF4), scale block
                      width (FP8); colsp when one scale covers the row */
  int64_t ngroups; /* scales per row: colsp / group */
  int64_t kb;      /* U4/U8: columns per activation block (divides group; multiple of 32) */
  uint8_t *codes;  /* rowsp x colsp / 2 (U4, NF4) or rowsp x colsp (U8, FP8) bytes */
  float *scale;    /* [rowsp * ngroups]; U4/U8: tile-major [tile][group][16] */
  float *zs;       /* U4/U8: zero * scale, as scale */
  int32_t *perm;   /* U4/U8 act-order: packed column i is weight column perm[i]; else NULL */
  float lut[16];   /* NF4: the code book */
  bool e5m2;       /* FP8: E5M2 (else E4M3) */
} lb_qpack;

/* Packs w. *out is NULL (and LB_OK) when no kernel takes w's geometry (a group that is not a
 * multiple of 32, NF4 blocks that span rows, act-order groups of unequal size ...): lb_linear then
 * runs the reference dequantization. LLM.int8 (LB_QK_INT8ROW) keeps its own kernel: never packed. */
lb_status lb_qpack_new(const struct lb_qweight *w, lb_qpack **out, lb_error *err);
void lb_qpack_free(lb_qpack *p);

/* y[n, rows] = x[n, cols] . W^T (+ bias[rows]) with the kernels of lb_cpu_kernels() (the CPU's
 * best, or LOWBIT_ISA's); _k: with the kernel set k (tests force each ISA and the scalar twins). */
struct lb_kernels;
lb_status lb_qpack_linear(lb_pool *pool, const lb_qpack *p, const float *bias, const float *x,
                          int64_t n, float *y, lb_error *err);
lb_status lb_qpack_linear_k(lb_pool *pool, const struct lb_kernels *k, const lb_qpack *p,
                            const float *bias, const float *x, int64_t n, float *y,
                            lb_error *err);

/* Activations quantized for the integer kinds, [n] rows of colsp int8 codes, d[n * nkb] block
 * scales (nkb = colsp / kb), z[n * ngroups] (see above). */
typedef struct lb_qact {
  int64_t nkb;
  int8_t *q;
  float *d, *z;
} lb_qact;

/* One Linear call split into units (weight-row tiles) that any share of a parallel region may run,
 * so several Linears reading the same input (q/k/v, gate/up) share one region (lb_linear_many).
 * prepare quantizes the activations (U4/U8) and allocates scratch for every share of pool; units
 * runs tiles [lo, hi) with share ith's scratch; done frees. NF4/FP8 take n <= 4 rows here. */
typedef struct lb_qrun {
  const lb_qpack *p;
  const struct lb_kernels *k;
  const float *x, *bias;
  float *y;
  int64_t n;
  int64_t units; /* tiles of 16 weight rows */
  _Atomic int64_t next; /* units claimed (lb_qpack_linear's region) */
  lb_qact a;      /* U4/U8: the quantized activations */
  float *xbuf;    /* U4/U8: per share [colsp], a gathered activation row; NF4/FP8: [n * colsp]
                     the activations padded, when colsp > cols (else NULL) */
  float *ybuf;    /* per share [n * 16]: a partial tile's outputs */
  int32_t *sums;  /* per share [nkb] */
} lb_qrun;

lb_status lb_qrun_prepare(lb_qrun *j, lb_pool *pool, const struct lb_kernels *k, const lb_qpack *p,
                          const float *bias, const float *x, int64_t n, float *y, lb_error *err);
void lb_qrun_units(lb_qrun *j, int64_t lo, int64_t hi, int ith);
void lb_qrun_done(lb_qrun *j);

#endif
