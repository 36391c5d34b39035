/* C entry points of the CUDA backend (the .cu files beside this header). Kernels take device
 * buffers the caller owns and run on the stream of a context (lb_cuda_ctx: one device, one
 * stream, one cuBLAS handle); they return a status and synchronize nothing unless the name says
 * so. A build without CUDA has stubs that return LB_EUNSUPPORTED (none.c).
 *
 * Conventions: activations that feed a matrix product are fp16 (what the tensor cores and the
 * GEMV take); the residual stream, GEMM outputs, q and the softmax are fp32; the KV cache is fp16.
 * Row-major everywhere: a weight is [rows = out_features][cols = in_features]. */
#ifndef LB_BACKEND_CUDA_CUDA_H
#define LB_BACKEND_CUDA_CUDA_H

#include "lowbit.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lb_qweight;

/* --- runtime (runtime.cu) --------------------------------------------------------------------- */

typedef struct lb_cuda_ctx lb_cuda_ctx;

/* Device 0, a stream, a cuBLAS handle with a fixed workspace (so a graph can capture it). */
lb_status lb_cuda_open(lb_cuda_ctx **out, lb_error *err);
void lb_cuda_close(lb_cuda_ctx *c);
void *lb_cuda_stream(lb_cuda_ctx *c);
/* Zeroed device memory, counted in lb_cuda_allocated (freed memory is not subtracted: a model
 * allocates everything at open, so the count is its peak). */
lb_status lb_cuda_alloc(lb_cuda_ctx *c, size_t bytes, void **p, lb_error *err);
void lb_cuda_release(void *p);
uint64_t lb_cuda_allocated(const lb_cuda_ctx *c);
/* Page-locked host memory (what a captured copy may read at replay time). */
lb_status lb_cuda_host_alloc(size_t bytes, void **p, lb_error *err);
void lb_cuda_host_release(void *p);
/* Copies on the context's stream; lb_cuda_get waits for it (and so for all work before it). */
lb_status lb_cuda_put(lb_cuda_ctx *c, void *dst, const void *src, size_t bytes, lb_error *err);
lb_status lb_cuda_get(lb_cuda_ctx *c, void *dst, const void *src, size_t bytes, lb_error *err);
lb_status lb_cuda_sync(lb_cuda_ctx *c, lb_error *err);

/* y[n][rows] (fp32) = x[n][cols] (fp16) . w[rows][cols]^T (fp16) through cuBLAS (tensor cores,
 * fp32 accumulation); acc: y += instead of y =. */
lb_status lb_cuda_gemm(lb_cuda_ctx *c, const void *w16, const void *x16, float *y, int64_t rows,
                       int64_t cols, int64_t n, bool acc, lb_error *err);

/* Strided batched product in cuBLAS's column-major terms: for b < batch,
 * C_b (m x n) = alpha op(A_b) op(B_b), op = transpose when ta / tb, A_b = A + b * sa elements
 * (fp16), B_b likewise, C_b = C + b * sc elements, fp16 when c16 else fp32; fp32 accumulation. */
lb_status lb_cuda_gemm_batched(lb_cuda_ctx *c, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                               float alpha, const void *A, int64_t lda, int64_t sa, const void *B,
                               int64_t ldb, int64_t sb, void *C, bool c16, int64_t ldc, int64_t sc,
                               int64_t batch, lb_error *err);

/* Programmatic dependent launch (Hopper and later): each kernel may be scheduled while the one
 * before it still runs, and a GEMV loads its first weights before it waits for its input, so
 * kernel boundaries and small kernels overlap the weight stream. On when device 0 has compute
 * capability 9 or more, unless LOWBIT_CUDA_PDL=0; lb_cuda_set_pdl overrides both (A/B runs). */
bool lb_cuda_pdl(void);
void lb_cuda_set_pdl(bool on);

/* CUDA graphs: everything issued on the stream between begin and end is recorded, not run. */
lb_status lb_cuda_capture_begin(lb_cuda_ctx *c, lb_error *err);
lb_status lb_cuda_capture_end(lb_cuda_ctx *c, void **graph, lb_error *err);
lb_status lb_cuda_graph_launch(lb_cuda_ctx *c, void *graph, lb_error *err);
void lb_cuda_graph_free(void *graph);

/* --- quantized weights (qweight.cu) and their decode GEMV (gemv.cu) -------------------------- */

/* A quantized Linear weight on the device in the layout its GEMV reads, repacked at load from the
 * canonical lb_qweight. Every kind is row-major, a lane's step is 16 bytes of a row, and each row
 * has `ngroups` scales of `group` columns (scales[row * ngroups + c / group]):
 *   LB_CUDA_Q4   affine 1..4-bit codes with integer zero points (GPTQ/AWQ/RTN, no act-order): 8
 *                codes a 32-bit word, nibbles in the column order 0, 2, 4, 6, 1, 3, 5, 7 (so that
 *                masking 0x000F000F yields the pairs (0, 1), (2, 3) ... as fp16 through the 0x6400
 *                exponent trick); scales are the fp16 pair (scale, 1024 + zero).
 *   LB_CUDA_Q4F  the same codes with fractional zero points (HQQ; in [-16, 31]): scales are the
 *                fp16 pair (scale, zero), and a pair decodes to q exactly, then q - zero rounded once.
 *   LB_CUDA_A8   affine codes of 5-8 bits, a byte each, with integer zero points (RTN, GPTQ and
 *                compressed-tensors 8-bit, no act-order); scales are the fp16 pair (scale, 4 +
 *                zero / 256), and a pair decodes to (q - zero) / 256 exactly.
 *   LB_CUDA_NF4  bitsandbytes NF4/FP4: 8 codes a word, the low 3 bits of column k's at bits 4k,
 *                its bit 3 at bit 8k + 7 (k < 4) or 8(k - 4) + 3; `code` the 16 values;
 *                scales the fp32 absmax of each block (blocks of whole rows: group = block).
 *   LB_CUDA_FP8  E4M3 bytes; scales fp32, the weight's scale blocks widened to one per row.
 *   LB_CUDA_I8   LLM.int8 rows: int8 bytes; one scale a row, SCB (the row's absmax);
 *                `threshold` the activations' outlier threshold (0: none). */
typedef enum lb_cuda_qkind { LB_CUDA_NONE, LB_CUDA_Q4, LB_CUDA_NF4, LB_CUDA_FP8, LB_CUDA_I8, LB_CUDA_Q4F, LB_CUDA_A8 } lb_cuda_qkind;

typedef struct lb_cuda_qw {
  lb_cuda_qkind kind;
  int64_t rows, cols, group, ngroups;
  float code[16];  /* NF4 */
  float threshold; /* I8 */
  void *codes;     /* [rows][row bytes] */
  void *scales;    /* [rows][ngroups] 32-bit entries, and 16 bytes to spare (gemv.cu: gemv_staged) */
  int32_t *perm;   /* act-order (Q4): device column i is the weight's column perm[i], so the
                      activations go in as x[perm[i]] (lb_cuda_gather_cols); NULL: in order */
} lb_cuda_qw;

/* Whether w can take a device layout (else NULL; or a reason in *why when why != NULL). Weights
 * that cannot (4-bit zero points off [-16, 31], 5-8-bit ones that are not integer codes,
 * act-order groups of unequal sizes, act-order with fractional zero points or more than 4 bits,
 * E5M2, widths off the 16-byte step) are dequantized to fp16 by the caller instead. */
bool lb_cuda_qw_fits(const struct lb_qweight *w, const char **why);
/* Repacks n weights of one kind and equal cols and scale groups, stacked by rows (q/k/v as one
 * weight), on the host and uploads them; pairs (n == 2, equal rows: gate and up) interleaves the
 * rows instead, gate row i at 2i and up row i at 2i + 1 (what lb_cuda_gemv_silu reads).
 * LB_EUNSUPPORTED when one does not fit or they differ. ctx NULL: plain cudaMalloc, uncounted. */
lb_status lb_cuda_qw_upload(lb_cuda_ctx *c, const struct lb_qweight *const *w, int n, bool pairs,
                            lb_cuda_qw *out, lb_error *err);
void lb_cuda_qw_free(lb_cuda_qw *w);
/* The whole weight as fp16 [rows][cols] (prefill: then lb_cuda_gemm). */
lb_status lb_cuda_qw_dequant(lb_cuda_ctx *c, const lb_cuda_qw *w, void *out16, lb_error *err);

/* The most activation rows one GEMV call takes (a kernel per 8 of them). */
enum { LB_CUDA_GEMV_MAX = 32, LB_CUDA_I8X_ROWS = 64 };

/* LLM.int8's activations for up to LB_CUDA_I8X_ROWS rows (what one GEMV or tensor-core call takes)
 * of up to `cols` columns: int8 codes with
 * the outlier columns (of all the call's rows, as bitsandbytes MatMul8bitLt) zeroed, each row's
 * scale (absmax over the other columns), the outlier columns and their values. Only LB_CUDA_I8
 * weights use it. */
typedef struct lb_cuda_i8x {
  int64_t cols;
  void *q;    /* int8 [LB_CUDA_I8X_ROWS][cols] */
  float *sca; /* [LB_CUDA_I8X_ROWS] */
  int *nout;  /* [1] outlier columns */
  int *ocol;  /* [cols] ascending */
  float *xo;  /* [LB_CUDA_I8X_ROWS][cols]: row b's value in outlier column o at b * cols + o */
  float *part;    /* scratch (i8x.cu): each 1024-column tile's absmax of each row */
  uint32_t *flag; /* scratch: outlier columns as bits, a word a 32 columns, per 8 rows */
} lb_cuda_i8x;
/* cols: a positive multiple of 8 */
lb_status lb_cuda_i8x_alloc(lb_cuda_ctx *c, int64_t cols, lb_cuda_i8x *out, lb_error *err);
void lb_cuda_i8x_free(lb_cuda_i8x *x);

/* y[b * rows + r] (=, or += when acc) sum_c W[r, c] * x[b * cols + c] for b < batch (1..32: a
 * kernel per 8 rows, each reading the whole weight), x fp16. Q4/NF4/FP8: fp16 products summed per 16 or 32 columns (a lane's step), scaled and
 * accumulated in fp32. I8: x rounded to int8 per row into i8x (not NULL; at batch 1 each block
 * of the GEMV rounds the row itself, to the same codes, and i8x is not touched), int32 dot
 * products, the outlier columns in fp32, as bitsandbytes. */
lb_status lb_cuda_gemv(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x, float *y,
                       int batch, bool acc, void *stream, lb_error *err);
/* The gate/up GEMV with SiLU-and-multiply in its epilogue, w uploaded as pairs:
 * out16[b * inter + i] = silu(g_i + bias[i]) * (u_i + bias[inter + i]), inter = rows / 2, bias
 * [gate | up] or NULL. */
lb_status lb_cuda_gemv_silu(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x,
                            const float *bias, void *out16, int batch, void *stream, lb_error *err);

/* The same product on tensor cores for batches and short chunks (qmma.cu): any n >= 1, a launch
 * per LB_CUDA_MMA_MAX rows, each reading the whole weight. Q4/NF4/FP8: the weight reaches the
 * tensor cores as fp16 (dequantized and scaled in fp16, as prefill's dequantization gives), the
 * products are summed in fp32. I8: the activations are rounded to int8 into i8x (not NULL) as for
 * the GEMV, but per launch of up to LB_CUDA_MMA_MAX rows (bitsandbytes takes the outlier columns
 * of the whole call), int8 x int8 products summed in int32 (exact) plus the outlier columns in
 * fp32: the GEMV's result up to fp32 rounding. */
enum { LB_CUDA_MMA_MAX = 64 };
lb_status lb_cuda_qmma(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x, float *y, int64_t n,
                       bool acc, void *stream, lb_error *err);
lb_status lb_cuda_qmma_silu(const lb_cuda_qw *w, const void *x_f16, lb_cuda_i8x *i8x,
                            const float *bias, void *out16, int64_t n, void *stream, lb_error *err);
/* Super-steps of weight loads a warp of the tensor-core product keeps in flight (1, 2 or 4; else
 * the default, or LOWBIT_CUDA_MMA_DEPTH): for A/B runs. */
void lb_cuda_set_mma_depth(int depth);

/* --- W8A8: FP8 activations for FP8 weights (fp8act.cu; lb_model_options.fp8_act) ------------- */

/* x16 [n][cols] quantized to E4M3 in blocks of `group` columns (128, or cols: one scale a row) as
 * lb_fp8_act_quant does (s = amax / 448, the code rounded to nearest even, saturating), or with
 * the one scale `fixed` when it is > 0 (static: lb_fp8_act_quant_static; group then unused).
 * codes NULL: in place, each value replaced by fp16(code * s). Else the codes [n][cols] go to
 * codes, the scales to scales [ceil(cols / 128)][n] (a row's scale repeated per block), and x16
 * is not written. */
lb_status lb_cuda_fp8_act(lb_cuda_ctx *c, void *x16, int64_t n, int64_t cols, int64_t group,
                          float fixed, void *codes, float *scales, lb_error *err);
/* lb_cuda_rmsnorm (no column order) with its output quantized as lb_cuda_fp8_act does in place
 * (group 128 or d, or the scale `fixed` > 0), but from the fp32 normalized values: the norm before
 * W8A8 q/k/v or gate/up, one launch instead of two. */
lb_status lb_cuda_rmsnorm_fp8(lb_cuda_ctx *c, const float *x, int64_t ldx, const float *w, float eps,
                              int64_t n, int64_t d, int64_t group, float fixed, void *y16, lb_error *err);
/* Whether lb_cuda_gemm_fp8 can take w: LB_CUDA_FP8, cols a multiple of 128, rows of 4, scale
 * groups of whole 128-column blocks. */
bool lb_cuda_fp8_tc_fits(const lb_cuda_qw *w);
/* y[n][rows] (=, or += when acc) of activation codes [n][cols] with their scales (lb_cuda_fp8_act)
 * and w on the FP8 tensor cores: cuBLASLt with both operands scaled in 1 x 128 blocks (Hopper,
 * cuBLAS 12.9 or later), fp32 sums; wscales: scratch of rows * cols / 128 floats for w's scales in
 * that form. LB_EUNSUPPORTED where there is no such kernel (the caller takes the fp16 path). */
lb_status lb_cuda_gemm_fp8(lb_cuda_ctx *c, const lb_cuda_qw *w, const void *codes, const float *xscales,
                           float *wscales, float *y, int64_t n, bool acc, lb_error *err);
/* The cuBLASLt call beneath (runtime.cu): E4M3 w8 [rows][cols] and x8 [n][cols], scales
 * [cols / 128][rows] and [cols / 128][n]. */
lb_status lb_cuda_lt_fp8(lb_cuda_ctx *c, const void *w8, const float *wscale, const void *x8,
                         const float *xscale, float *y, int64_t rows, int64_t cols, int64_t n, bool acc,
                         lb_error *err);

/* --- the decoder's other ops (ops.cu) -------------------------------------------------------- */

/* dst16[i] = fp16(src[i]) for src of LB_F32, LB_F16 or LB_BF16 (round to nearest even); the
 * device int *bad (may be NULL) is incremented for each result that is not finite. */
lb_status lb_cuda_to_f16(lb_cuda_ctx *c, const void *src, lb_dtype dt, int64_t n, void *dst16,
                         int *bad, lb_error *err);

/* x[t][:] = table[ids[t]][:] (fp16 table, fp32 x) */
lb_status lb_cuda_embed(lb_cuda_ctx *c, const void *table16, const int32_t *ids, int64_t n,
                        int64_t d, float *x, lb_error *err);
/* y16[t] = x[t] / rms(x[t]) * w, per row of d (Transformers' RMSNorm in fp32); x's rows ldx
 * floats apart, y16's d; perm (or NULL): column i of y16 is the norm's column perm[i] (the
 * act-order of the weight that reads y16, lb_cuda_qw.perm) */
lb_status lb_cuda_rmsnorm(lb_cuda_ctx *c, const float *x, int64_t ldx, const float *w, float eps,
                          int64_t n, int64_t d, const int32_t *perm, void *y16, lb_error *err);

/* The shapes of attention. q/k/v are one row of qkv per token: [q heads*hd | k kvh*hd | v kvh*hd].
 * Positions come from *pos on the device (the first token's), so that a captured decode step
 * replays at any position. Several sequences in lockstep: rows t of a call belong to sequence
 * t / per at position pos + t % per, and sequence s's cache starts ctx rows after s - 1's. */
typedef struct lb_cuda_attn {
  int64_t heads, kv_heads, head_dim, ctx;
  int64_t window; /* sliding window (keys i - window + 1 .. i), 0: none */
  float scale;    /* 1 / sqrt(head_dim) */
  /* split-KV decode: when heads x rows blocks are too few for the GPU, a row's keys are split
   * in spans of at least split_keys (0: never) across blocks, combined through `split`
   * (lb_cuda_attention_scratch bytes of zeroed device memory, may be shared by the layers) */
  int64_t split_keys;
  void *split;
} lb_cuda_attn;

size_t lb_cuda_attention_scratch(const lb_cuda_attn *a);

/* Adds bias (NULL: none) to the n rows of qkv, rotates q and k by the cos/sin table rows
 * cs[p * hd ...] of each row's position p (cos in the first half, sin in the second), and stores
 * k and v at row p of its sequence's fp16 caches [ctx][kv_heads * hd] (per rows a sequence, see
 * above); q16 (NULL: not written) gets the rotated q in fp16 [n][heads * hd] (GEMM attention). */
lb_status lb_cuda_rope_kv(lb_cuda_ctx *c, float *qkv, const float *bias, int64_t n, int64_t per,
                          const lb_cuda_attn *a, const float *cs, const int32_t *pos, void *kc16,
                          void *vc16, void *q16, lb_error *err);
/* Causal (and sliding-window) softmax of scores S [heads][n][ld] fp32 (row t of a head holds the
 * scores of keys 0 .. nk - 1, and sees keys first_key(pos + t) .. pos + t), written as P16 of the
 * same shape in fp16, masked keys 0. */
lb_status lb_cuda_softmax_rows(lb_cuda_ctx *c, const float *S, void *P16, int64_t heads, int64_t n,
                               int64_t nk, int64_t ld, int64_t pos, int64_t window, lb_error *err);
/* LB_EUNSUPPORTED when lb_cuda_attention cannot take a's context (its scores live in shared
 * memory); a model checks at open. */
lb_status lb_cuda_attention_check(const lb_cuda_attn *a, lb_error *err);
/* out16[t][h * hd ...] = softmax(q . K^T * scale) V over the keys of its sequence (per rows a
 * sequence) that row t's position may see. */
lb_status lb_cuda_attention(lb_cuda_ctx *c, const float *qkv, const void *kc16, const void *vc16,
                            int64_t n, int64_t per, const int32_t *pos, const lb_cuda_attn *a,
                            void *out16, lb_error *err);
/* Prefill attention through cuBLAS, for the shapes lb_cuda_flash_attention does not take (or
 * LOWBIT_CUDA_FLASH=0), as Transformers' eager path: one sequence's n query rows at positions
 * pos .. pos + n - 1 (q16 and out16 [n][heads * hd] fp16, its caches kc16 / vc16 as above), per
 * block of LB_CUDA_ATT_ROWS rows S = Q K^T * scale over the keys up to the block's last row, the
 * causal softmax into P16, O = P V. S (fp32) and P16 (fp16) hold heads x LB_CUDA_ATT_ROWS x
 * (pos + n) entries. */
enum { LB_CUDA_ATT_ROWS = 256 };
lb_status lb_cuda_attention_gemm(lb_cuda_ctx *c, const void *q16, const void *kc16, const void *vc16, int64_t n,
                                 int64_t pos, const lb_cuda_attn *a, float *S, void *P16, void *out16, lb_error *err);
/* Whether lb_cuda_flash_attention takes a's shapes: head_dim 64 or 128, heads a multiple of kv_heads. */
bool lb_cuda_flash_fits(const lb_cuda_attn *a);
/* Prefill attention in one kernel (flash-attention style, the scores never stored): for nseq
 * sequences of per query rows at positions pos .. pos + per - 1, out16[s * per + r][h * hd ...] =
 * softmax(q . K^T * scale) V over the keys that row's position may see (causal, a->window), q from
 * q16 [nseq * per][heads * hd] fp16, sequence s's keys and values from kc16 / vc16 + s * seq_stride
 * (fp16 elements; [ctx][kv_heads * hd]). Keys 0 .. pos + per - 1 must be written. */
lb_status lb_cuda_flash_attention(lb_cuda_ctx *c, const void *q16, const void *kc16, const void *vc16,
                                  int64_t seq_stride, int64_t nseq, int64_t per, int64_t pos,
                                  const lb_cuda_attn *a, void *out16, lb_error *err);
/* out16[t][i] = x16[t][perm[i]] for t < n, i < cols (fp16): an act-order weight's activations. */
lb_status lb_cuda_gather_cols(lb_cuda_ctx *c, const void *x16, const int32_t *perm, int64_t n, int64_t cols,
                              void *out16, lb_error *err);
/* out16[t][i] = silu(g + bg) * (u + bu) with gu[t] = [g inter | u inter], or when interleaved
 * [g0 u0 g1 u1 ...]; bias [gate inter | up inter] or NULL */
lb_status lb_cuda_silu_mul(lb_cuda_ctx *c, const float *gu, const float *bias, int64_t n,
                           int64_t inter, bool interleaved, void *out16, lb_error *err);
/* y[t][r] += b[r] */
lb_status lb_cuda_add_bias(lb_cuda_ctx *c, float *y, const float *b, int64_t n, int64_t rows,
                           lb_error *err);

/* --- next-token choice (sample.cu) ------------------------------------------------------------ */

/* One row's sampling settings and its draw u in [0, 1) (the host generator's, so that a seed
 * gives the host sampler's choices). */
typedef struct lb_cuda_pick {
  double temperature, top_p, u;
  int64_t top_k;
} lb_cuda_pick;
/* ids[r] = the token lb_sampler_next would choose from logits[r][vocab] with those settings and
 * that draw: temperature 0 or top_k 1 the argmax (the lowest id on ties); else p = exp((l -
 * max) / T), the top_k best (logit descending, then id), the shortest prefix of those whose mass
 * reaches top_p of theirs, and the first whose running mass exceeds u times the prefix's.
 * Mass is summed in fixed point (sample.cu: the same choice every run; the host's sums differ
 * only for a draw within vocab * 2^-min(47, 63 - bits(vocab)) of the mass of a boundary). probs: scratch
 * [rows][vocab] floats; picks and ids device arrays [rows]; one block of 1024 threads a row. */
lb_status lb_cuda_sample(lb_cuda_ctx *c, const float *logits, float *probs, int64_t rows, int64_t vocab,
                         const lb_cuda_pick *picks, int32_t *ids, lb_error *err);

#ifdef __cplusplus
}
#endif
#endif
