/* The decoder on a CUDA device: the same forward pass as forward.c, issued as the kernels of
 * backend/cuda on one stream.
 *
 * Fused modules, as Transformers' guides describe them: q/k/v are one weight (their rows stacked),
 * gate/up are one weight; a Linear's bias is added in the kernel after it (RoPE for q/k/v,
 * SiLU-and-multiply for gate/up); o_proj and down_proj accumulate into the residual stream.
 * Weights: quantized weights that fit a device layout (cuda.h, lb_cuda_qw: 4-bit GPTQ/AWQ/RTN
 * without act-order, NF4/FP4, FP8 E4M3, LLM.int8) keep it: a GEMV for the fewest rows, the
 * tensor-core product for up to 64 (GEMV_ROWS below), dequantized to fp16 then cuBLAS for more;
 * every other weight is dequantized once at load to fp16 for cuBLAS.
 * A decode step (one token of each sequence) is captured in a CUDA graph the first time and
 * replayed after (LOWBIT_CUDA_GRAPH=0 turns that off).
 *
 * Several sequences (lb_model_forward_batch) run in lockstep: a call's rows are `per` tokens of
 * each of a few sequences, so the weights are read once for all of them; RoPE, the KV store and
 * attention map row t to sequence t / per, whose cache is ctx rows after the one before. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "base/status.h"
#include "model/model_internal.h"
#include "quant/qweight.h"

/* A quantized weight is read by the GEMV up to GEMV_ROWS[kind] rows; beyond, up to
 * MMA_ROWS[kind], by the tensor-core product (lb_cuda_qmma; LLM.int8's on int8 tensor
 * cores); beyond that it is dequantized for cuBLAS. Where each line lies was measured (H100 kernel
 * sandbox and 7B decode, BENCHMARKS.md): the tensor-core product is faster from 2 rows for 4-bit
 * affine and NF4, from 3 for FP8 (2 to 4 are close) and from 9 for LLM.int8, and than the
 * dequantization and cuBLAS up to 64 rows, LLM.int8 up to 16 (its one-block activation kernel
 * grows with the rows). HQQ's 4-bit (Q4F) and 8-bit affine (A8) take their neighbours' lines
 * (4-bit, FP8), not measured apart.
 * LOWBIT_CUDA_GEMV_ROWS=N (0..32) and LOWBIT_CUDA_MMA_ROWS=N (0: off), every kind, move the lines
 * for A/B runs. Up to SMALL_N rows a sequence, attention is the decode kernel's. */
enum { LOGIT_ROWS = LB_MAX_BATCH, MAX_CHUNK = 2048, SMALL_N = 8 };
static const int64_t GEMV_ROWS[] = {[LB_CUDA_Q4] = 1, [LB_CUDA_Q4F] = 1, [LB_CUDA_NF4] = 1,
                                    [LB_CUDA_FP8] = 2, [LB_CUDA_A8] = 2, [LB_CUDA_I8] = 8};
static const int64_t MMA_ROWS[] = {[LB_CUDA_Q4] = 64, [LB_CUDA_Q4F] = 64, [LB_CUDA_NF4] = 64,
                                   [LB_CUDA_FP8] = 64, [LB_CUDA_A8] = 64, [LB_CUDA_I8] = 16};

typedef struct glin {
  int64_t rows, cols;
  void *w16;     /* fp16 [rows][cols], or NULL */
  lb_cuda_qw qw; /* qw.codes when quantized on the device */
  bool pairs;    /* gate/up quantized: rows interleaved (lb_cuda_qw_upload) */
  bool normed;   /* act-order q/k/v or gate/up: the RMSNorm before it writes its inputs in its order */
  float *bias;   /* added after the product (o_proj, down_proj), or NULL */
  int64_t act_group; /* W8A8 (lb_mat.act_group): the activations quantized to E4M3 first */
  float act_scale;   /* static W8A8 (lb_mat.act_scale): their fixed scale, else 0 */
} glin;

typedef struct glayer {
  float *attn_norm, *mlp_norm;
  glin qkv, o, gu, down;
  float *qkv_bias, *gu_bias; /* [rows of qkv / gu], or NULL */
  void *kc, *vc;             /* fp16 [batch][ctx][kv_heads * head_dim] */
  lb_cuda_attn attn;
} glayer;

typedef struct lb_gpu lb_gpu;

struct lb_gpu {
  lb_cuda_ctx *cx;
  glayer *layers;
  int nlayers, batch;
  void *embed16;
  glin head; /* w16 may alias embed16 (tied) */
  bool head_tied;
  float *final_norm;
  float *cs;          /* rope table [ctx][head_dim] */
  bool dynamic_rope;  /* rows recomputed for every call */
  float *host_cs;     /* [MAX_CHUNK][head_dim] (dynamic rope) */
  int32_t *ids, *pos; /* device: a chunk's token ids, its first position */
  int32_t *pinned;    /* host page-locked: ids [chunk], then pos */
  int64_t chunk;
  float *x, *qkv, *gu, *logits;
  void *xn16, *att16, *act16, *deq16;
  lb_cuda_i8x i8x; /* LLM.int8's activations (when a weight is LB_CUDA_I8) */
  void *q16;      /* rotated q in fp16 (prefill attention) */
  void *xperm16;  /* a call's activations in an act-order weight's column order, or NULL */
  void *attn_split; /* split-KV decode attention's partials, shared by the layers */
  int64_t split_keys; /* 256 (LOWBIT_CUDA_ATTN_SPLIT=N: at least N keys a split; 0: no split) */
  bool flash;     /* prefill attention in one kernel (LOWBIT_CUDA_FLASH=0: the GEMM path below) */
  float *S;       /* the GEMM path's attention scores [heads][LB_CUDA_ATT_ROWS][ctx] (not with flash) */
  void *P16;      /* their softmax, fp16, same shape */
  float *probs;              /* sampling on the device (allocated at its first use): p [batch][V], */
  lb_cuda_pick *picks, *pin_picks; /* the settings and draws [batch], on the device and page-locked */
  int32_t *next;             /* and the chosen ids [batch] */
  bool host_sample;          /* LOWBIT_CUDA_SAMPLE=host: logits copied back, lb_sampler_next (A/B runs) */
  void **graph; /* [batch + 1]: the decode step of n sequences, once captured */
  bool graphs;
  bool fuse_silu; /* SiLU in the gate/up GEMV's epilogue (LOWBIT_CUDA_FUSE=none: a kernel of its own) */
  bool fuse_fp8norm; /* W8A8: the RMSNorm before q/k/v and gate/up quantizes its output (lb_cuda_rmsnorm_fp8) */
  const struct glin *xn_fp8; /* the weight xn16 was last quantized for by the norm, or NULL */
  int64_t gemv_rows, mma_rows; /* -1: GEMV_ROWS / MMA_ROWS of the kind (LOWBIT_CUDA_GEMV_ROWS, _MMA_ROWS) */
  unsigned skip; /* stages left out (LOWBIT_CUDA_SKIP: timing breakdowns only; logits are wrong) */
  /* W8A8 prefill on the FP8 tensor cores: the activations' codes [chunk][cols] and scales, the
   * weight's scales in cuBLASLt's form; fp8_tc off (LOWBIT_CUDA_FP8_TC=0, or no such kernel on
   * this device): the codes times their scales in fp16, then the fp16 path */
  void *f8x;
  float *f8xs, *f8ws;
  bool fp8_tc;
};

/* LOWBIT_CUDA_SKIP=norm,rope,attn,qkv,o,gu,down,head: for a breakdown of the decode step's time
 * by stage (bench/cuda/device.sh breakdown); the logits are meaningless then. */
enum { SK_NORM = 1, SK_ROPE = 2, SK_ATTN = 4, SK_QKV = 8, SK_O = 16, SK_GU = 32, SK_DOWN = 64, SK_HEAD = 128 };
static const char *const SKIPS[] = {"norm", "rope", "attn", "qkv", "o", "gu", "down", "head"};
static const char *const FUSES[] = {"silu", "fp8norm"};

/* The bits of the names in the comma-separated list of variable var that are in names[n]. */
static unsigned env_set(const char *var, const char *const *names, unsigned n, unsigned dflt) {
  const char *e = getenv(var);
  if (!e) return dflt;
  unsigned m = 0;
  for (const char *t = e; *t;) {
    size_t len = strcspn(t, ",");
    for (unsigned i = 0; i < n; i++)
      if (strlen(names[i]) == len && strncmp(t, names[i], len) == 0) m |= 1u << i;
    t += len + (t[len] == ',');
  }
  return m;
}
#define STAGE(bit, call) \
  do { \
    if (!(g->skip & (bit))) LB_TRY(call); \
  } while (0)

uint64_t lb_gpu_bytes(const struct lb_gpu *g) { return g ? lb_cuda_allocated(g->cx) : 0; }

static lb_status dev_f32(lb_gpu *g, const float *host, int64_t n, float **out, lb_error *err) {
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)n * sizeof(float), (void **)out, err));
  return lb_cuda_put(g->cx, *out, host, (size_t)n * sizeof(float), err);
}

/* Uploads n values of src (F32, F16 or BF16) to dst16 as fp16 through a staging buffer, converting
 * on the device; non-finite results (an overflow of fp16's range, a NaN weight) are an error
 * naming `what`. */
static lb_status to_f16(lb_gpu *g, const void *src, lb_dtype dt, int64_t n, void *dst16,
                        const char *what, lb_error *err) {
  size_t bytes = (size_t)n * lb_dtype_size(dt);
  void *stage = NULL;
  int *bad = NULL, nbad = 0;
  lb_status s = lb_cuda_alloc(NULL, bytes, &stage, err);
  if (s == LB_OK) s = lb_cuda_alloc(NULL, sizeof(int), (void **)&bad, err);
  if (s == LB_OK) s = lb_cuda_put(g->cx, stage, src, bytes, err);
  if (s == LB_OK) s = lb_cuda_to_f16(g->cx, stage, dt, n, dst16, bad, err);
  if (s == LB_OK) s = lb_cuda_get(g->cx, &nbad, bad, sizeof nbad, err);
  lb_cuda_release(stage);
  lb_cuda_release(bad);
  if (s == LB_OK && nbad)
    s = lb_fail(err, LB_EFORMAT, "%s: %d values are not finite in fp16 (NaN, or beyond 65504)",
                what, nbad);
  return s;
}

/* n Linear weights (equal cols) stacked by rows into one: in a device layout when all fit one
 * (gate/up then interleaved, for the fused SiLU), else fp16. */
static lb_status upload_lin(lb_gpu *g, const lb_mat *const *ms, int n, bool pairs, const char *what,
                            glin *out, lb_error *err) {
  memset(out, 0, sizeof *out);
  out->cols = ms[0]->cols;
  out->act_group = ms[0]->act_group; /* one model option: the same for stacked weights */
  out->act_scale = ms[0]->act_scale; /* static: the loader gave stacked weights their largest */
  for (int i = 1; i < n; i++)
    if (ms[i]->act_group != out->act_group) /* one FP8, one not (modules_to_not_convert) */
      return lb_fail(err, LB_EUNSUPPORTED, "%s: W8A8 with stacked weights that are not all FP8", what);
    else if (ms[i]->act_scale != out->act_scale)
      return lb_fail(err, LB_EINVAL, "%s: stacked weights with different static input scales", what);
  if (out->act_group && out->act_group != 128 && out->act_group != out->cols && !out->act_scale)
    return lb_fail(err, LB_EUNSUPPORTED,
                   "%s: FP8 activations in blocks of %lld columns: the GPU quantizes them in 1 x "
                   "128 blocks or per row (--fp8-act g128, token or off)",
                   what, (long long)out->act_group);
  bool quant = true;
  const lb_qweight *qws[4];
  for (int i = 0; i < n; i++) {
    out->rows += ms[i]->rows;
    qws[i] = ms[i]->qw;
    quant = quant && qws[i];
  }
  if (quant) {
    out->pairs = pairs && n == 2 && qws[0]->rows == qws[1]->rows;
    lb_error e2;
    lb_status s = lb_cuda_qw_upload(g->cx, qws, n, out->pairs, &out->qw, &e2);
    if (s == LB_OK) return LB_OK;
    if (s != LB_EUNSUPPORTED) return lb_fail(err, s, "%s: %s", what, e2.msg);
    out->pairs = false; /* a kind without a device layout: fp16 below */
  }
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(out->rows * out->cols) * 2, &out->w16, err));
  int64_t r0 = 0;
  for (int i = 0; i < n; i++) {
    const lb_mat *m = ms[i];
    char *dst = (char *)out->w16 + (size_t)(r0 * out->cols) * 2;
    if (!m->qw) {
      LB_TRY(to_f16(g, m->data, m->dtype, m->rows * m->cols, dst, what, err));
    } else { /* the reference dequantization, then fp16 */
      float *rows = malloc((size_t)(m->rows * m->cols) * sizeof(float));
      if (!rows) return lb_fail(err, LB_ENOMEM, "%s: out of host memory", what);
      for (int64_t r = 0; r < m->rows; r++) lb_qweight_dequant_row(m->qw, r, rows + r * m->cols);
      lb_status s = to_f16(g, rows, LB_F32, m->rows * m->cols, dst, what, err);
      free(rows);
      LB_TRY(s);
    }
    r0 += m->rows;
  }
  return LB_OK;
}

static void free_lin(glin *l, const void *alias) {
  if (l->w16 != alias) lb_cuda_release(l->w16);
  lb_cuda_qw_free(&l->qw);
  lb_cuda_release(l->bias);
}

/* The biases of stacked Linears as one device vector (zeros where one has none); NULL if none. */
static lb_status stack_bias(lb_gpu *g, float *const *b, const int64_t *rows, int n, float **out,
                            lb_error *err) {
  *out = NULL;
  int64_t total = 0;
  bool any = false;
  for (int i = 0; i < n; i++) total += rows[i], any = any || b[i];
  if (!any) return LB_OK;
  float *h = calloc((size_t)total, sizeof(float));
  if (!h) return lb_fail(err, LB_ENOMEM, "out of host memory");
  for (int i = 0, r0 = 0; i < n; r0 += (int)rows[i], i++)
    if (b[i]) memcpy(h + r0, b[i], (size_t)rows[i] * sizeof(float));
  lb_status s = dev_f32(g, h, total, out, err);
  free(h);
  return s;
}

static lb_status upload_layer(lb_model *m, lb_gpu *g, int l, lb_error *err) {
  const lb_config *c = m->cfg;
  lb_layer *L = &m->layers[l];
  glayer *G = &g->layers[l];
  char what[96];
  snprintf(what, sizeof what, "layer %d", l);
  int64_t d = c->hidden_size, kvd = c->num_key_value_heads * c->head_dim;
  LB_TRY(dev_f32(g, L->attn_norm, d, &G->attn_norm, err));
  LB_TRY(dev_f32(g, L->mlp_norm, d, &G->mlp_norm, err));
  const lb_mat *qkv[3] = {&L->lin[LB_LIN_Q], &L->lin[LB_LIN_K], &L->lin[LB_LIN_V]};
  const lb_mat *gu[2] = {&L->lin[LB_LIN_GATE], &L->lin[LB_LIN_UP]};
  const lb_mat *o = &L->lin[LB_LIN_O], *down = &L->lin[LB_LIN_DOWN];
  LB_TRY(upload_lin(g, qkv, 3, false, what, &G->qkv, err));
  LB_TRY(upload_lin(g, gu, 2, g->fuse_silu, what, &G->gu, err));
  G->qkv.normed = G->qkv.qw.perm != NULL, G->gu.normed = G->gu.qw.perm != NULL; /* their norms gather */
  LB_TRY(upload_lin(g, &o, 1, false, what, &G->o, err));
  LB_TRY(upload_lin(g, &down, 1, false, what, &G->down, err));
  float *qb[3] = {L->bias[LB_LIN_Q], L->bias[LB_LIN_K], L->bias[LB_LIN_V]};
  int64_t qr[3] = {qkv[0]->rows, qkv[1]->rows, qkv[2]->rows};
  float *gb[2] = {L->bias[LB_LIN_GATE], L->bias[LB_LIN_UP]};
  int64_t gr[2] = {gu[0]->rows, gu[1]->rows};
  LB_TRY(stack_bias(g, qb, qr, 3, &G->qkv_bias, err));
  LB_TRY(stack_bias(g, gb, gr, 2, &G->gu_bias, err));
  if (L->bias[LB_LIN_O]) LB_TRY(dev_f32(g, L->bias[LB_LIN_O], o->rows, &G->o.bias, err));
  if (L->bias[LB_LIN_DOWN]) LB_TRY(dev_f32(g, L->bias[LB_LIN_DOWN], down->rows, &G->down.bias, err));
  size_t cache = (size_t)(m->batch * m->ctx * kvd) * 2;
  LB_TRY(lb_cuda_alloc(g->cx, cache, &G->kc, err));
  LB_TRY(lb_cuda_alloc(g->cx, cache, &G->vc, err));
  G->attn = (lb_cuda_attn){.heads = c->num_attention_heads, .kv_heads = c->num_key_value_heads,
                           .head_dim = c->head_dim, .ctx = m->ctx,
                           .window = L->sliding ? c->sliding_window : 0,
                           .scale = 1.0f / sqrtf((float)c->head_dim),
                           .split_keys = g->split_keys, .split = g->attn_split};
  LB_TRY(lb_cuda_attention_check(&G->attn, err));
  /* the host's copies are not needed any more: the canonical codes are the big part */
  for (int k = 0; k < LB_LIN_COUNT; k++)
    if (L->qw[k]) {
      lb_qweight_free(L->qw[k]);
      free(L->qw[k]);
      L->qw[k] = NULL, L->lin[k].qw = NULL, L->lin[k].data = NULL;
    }
  return LB_OK;
}

/* What the quantized weights need of the scratch, the largest over them. */
typedef struct {
  size_t deq;               /* a weight's fp16 size (prefill) */
  int64_t i8cols, permcols; /* LLM.int8's width, an act-order weight's width */
  int64_t f8cols, f8wsc;    /* W8A8 on the FP8 tensor cores: activation row, weight scales */
} needs;

static void scratch_need(const glin *w, needs *nd) {
  if (!w->qw.codes) return;
  if ((size_t)(w->rows * w->cols) > nd->deq) nd->deq = (size_t)(w->rows * w->cols);
  if (w->qw.kind == LB_CUDA_I8 && w->cols > nd->i8cols) nd->i8cols = w->cols;
  if (w->qw.perm && w->cols > nd->permcols) nd->permcols = w->cols;
  if (!w->act_group || !lb_cuda_fp8_tc_fits(&w->qw)) return;
  if (w->cols > nd->f8cols) nd->f8cols = w->cols;
  if (w->rows * (w->cols / 128) > nd->f8wsc) nd->f8wsc = w->rows * (w->cols / 128);
}

static lb_status scratch(lb_model *m, lb_gpu *g, lb_error *err) {
  const lb_config *c = m->cfg;
  int64_t ch = g->chunk, d = c->hidden_size, inter = c->intermediate_size;
  int64_t qd = c->num_attention_heads * c->head_dim, kvd = c->num_key_value_heads * c->head_dim;
  needs nd = {0};
  for (int l = 0; l < g->nlayers; l++) {
    const glayer *G = &g->layers[l];
    scratch_need(&G->qkv, &nd), scratch_need(&G->o, &nd), scratch_need(&G->gu, &nd), scratch_need(&G->down, &nd);
  }
  scratch_need(&g->head, &nd);
  const char *tc = getenv("LOWBIT_CUDA_FP8_TC");
  g->fp8_tc = nd.f8cols > 0 && !(tc && strcmp(tc, "0") == 0);
  if (g->fp8_tc) {
    LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * nd.f8cols), &g->f8x, err));
    LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * (nd.f8cols / 128)) * 4, (void **)&g->f8xs, err));
    LB_TRY(lb_cuda_alloc(g->cx, (size_t)nd.f8wsc * 4, (void **)&g->f8ws, err));
  }
  if (nd.permcols) LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * nd.permcols) * 2, &g->xperm16, err));
  if (nd.i8cols) LB_TRY(lb_cuda_i8x_alloc(g->cx, nd.i8cols, &g->i8x, err));
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * d) * 4, (void **)&g->x, err));
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * (qd + 2 * kvd)) * 4, (void **)&g->qkv, err));
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * 2 * inter) * 4, (void **)&g->gu, err));
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(LOGIT_ROWS * c->vocab_size) * 4, (void **)&g->logits, err));
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * d) * 2, &g->xn16, err));
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * qd) * 2, &g->att16, err));
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * inter) * 2, &g->act16, err));
  if (nd.deq) LB_TRY(lb_cuda_alloc(g->cx, nd.deq * 2, &g->deq16, err));
  size_t scores = (size_t)(c->num_attention_heads * (ch < LB_CUDA_ATT_ROWS ? ch : LB_CUDA_ATT_ROWS) * m->ctx);
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch * qd) * 2, &g->q16, err));
  if (!g->flash) {
    LB_TRY(lb_cuda_alloc(g->cx, scores * 4, (void **)&g->S, err));
    LB_TRY(lb_cuda_alloc(g->cx, scores * 2, &g->P16, err));
  }
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(ch + 1) * 4, (void **)&g->ids, err));
  g->pos = g->ids + ch;
  LB_TRY(lb_cuda_host_alloc((size_t)(ch + 1) * 4, (void **)&g->pinned, err));
  return LB_OK;
}

static lb_status open_gpu(lb_model *m, lb_gpu *g, lb_error *err) {
  const lb_config *c = m->cfg;
  LB_TRY(lb_cuda_open(&g->cx, err));
  /* a chunk takes several whole sequences when they fit (each chunk dequantizes every quantized
   * weight for cuBLAS: a batch of short prompts should not pay that per prompt) */
  const int64_t all = m->ctx * m->batch;
  g->chunk = all < MAX_CHUNK ? all : MAX_CHUNK;
  if (g->chunk < m->batch) g->chunk = m->batch; /* a decode step is one chunk */
  g->batch = m->batch;
  if (!(g->graph = calloc((size_t)m->batch + 1, sizeof *g->graph)))
    return lb_fail(err, LB_ENOMEM, "out of memory");
  const char *env = getenv("LOWBIT_CUDA_GRAPH");
  g->graphs = !(env && strcmp(env, "0") == 0);
  const unsigned fuse = env_set("LOWBIT_CUDA_FUSE", FUSES, 2, 3); /* for A/B runs */
  g->fuse_silu = fuse & 1, g->fuse_fp8norm = fuse & 2;
  g->skip = env_set("LOWBIT_CUDA_SKIP", SKIPS, 8, 0);
  const char *smp = getenv("LOWBIT_CUDA_SAMPLE");
  g->host_sample = smp && strcmp(smp, "host") == 0;
  const char *rows = getenv("LOWBIT_CUDA_GEMV_ROWS");
  g->gemv_rows = rows ? strtol(rows, NULL, 10) : -1;
  if (g->gemv_rows < 0 || g->gemv_rows > LB_CUDA_GEMV_MAX) g->gemv_rows = -1;
  const char *mrows = getenv("LOWBIT_CUDA_MMA_ROWS");
  g->mma_rows = mrows ? strtol(mrows, NULL, 10) : -1;
  if (g->mma_rows < 0) g->mma_rows = -1;
  const char *split = getenv("LOWBIT_CUDA_ATTN_SPLIT");
  g->split_keys = split ? strtol(split, NULL, 10) : 256;
  const char *flash = getenv("LOWBIT_CUDA_FLASH");
  const lb_cuda_attn fa = {.heads = c->num_attention_heads, .kv_heads = c->num_key_value_heads,
                           .head_dim = c->head_dim, .ctx = m->ctx};
  g->flash = !(flash && strcmp(flash, "0") == 0) && lb_cuda_flash_fits(&fa);
  lb_cuda_attn shape = {.head_dim = c->head_dim};
  LB_TRY(lb_cuda_alloc(g->cx, lb_cuda_attention_scratch(&shape), &g->attn_split, err));
  int64_t V = c->vocab_size, d = c->hidden_size, hd = c->head_dim;
  LB_TRY(lb_cuda_alloc(g->cx, (size_t)(V * d) * 2, &g->embed16, err));
  LB_TRY(to_f16(g, m->embed.data, m->embed.dtype, V * d, g->embed16, "the embeddings", err));
  g->head_tied = !m->lm_head.qw && !m->lm_head.pack && m->lm_head.data == m->embed.data;
  if (g->head_tied) {
    g->head = (glin){.rows = V, .cols = d, .w16 = g->embed16};
  } else {
    const lb_mat *h = &m->lm_head;
    LB_TRY(upload_lin(g, &h, 1, false, "the lm_head", &g->head, err));
    if (m->head_qw) { /* as for the layers: the host copy is not needed any more */
      lb_qweight_free(m->head_qw);
      free(m->head_qw);
      m->head_qw = NULL, m->lm_head.qw = NULL;
    }
  }
  LB_TRY(dev_f32(g, m->final_norm, d, &g->final_norm, err));
  if (!(g->layers = calloc((size_t)c->num_hidden_layers, sizeof *g->layers)))
    return lb_fail(err, LB_ENOMEM, "out of memory");
  g->nlayers = (int)c->num_hidden_layers;
  for (int l = 0; l < g->nlayers; l++) LB_TRY(upload_layer(m, g, l, err));
  /* the rope table of every position; dynamic NTK rewrites the rows of each call */
  g->dynamic_rope = c->rope.type == LB_ROPE_DYNAMIC;
  float *cs = malloc((size_t)(m->ctx * hd) * sizeof(float));
  if (!cs) return lb_fail(err, LB_ENOMEM, "out of host memory for the rope table");
  lb_rope_table(&m->rope, c, 0, m->ctx, c->max_position_embeddings, cs);
  lb_status s = dev_f32(g, cs, m->ctx * hd, &g->cs, err);
  free(cs);
  LB_TRY(s);
  if (g->dynamic_rope && !(g->host_cs = malloc((size_t)(g->chunk * hd) * sizeof(float))))
    return lb_fail(err, LB_ENOMEM, "out of host memory");
  LB_TRY(scratch(m, g, err));
  return lb_cuda_sync(g->cx, err);
}

lb_status lb_gpu_open(lb_model *m, lb_error *err) {
  lb_gpu *g = calloc(1, sizeof *g);
  if (!g) return lb_fail(err, LB_ENOMEM, "out of memory");
  m->gpu = g;
  return open_gpu(m, g, err);
}

void lb_gpu_free(lb_gpu *g) {
  if (!g) return;
  if (g->cx) lb_cuda_sync(g->cx, NULL);
  for (int i = 0; g->graph && i <= g->batch; i++) lb_cuda_graph_free(g->graph[i]);
  free(g->graph);
  for (int l = 0; g->layers && l < g->nlayers; l++) {
    glayer *G = &g->layers[l];
    free_lin(&G->qkv, NULL), free_lin(&G->o, NULL), free_lin(&G->gu, NULL), free_lin(&G->down, NULL);
    void *p[] = {G->attn_norm, G->mlp_norm, G->qkv_bias, G->gu_bias, G->kc, G->vc};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) lb_cuda_release(p[i]);
  }
  free(g->layers);
  free_lin(&g->head, g->embed16);
  void *p[] = {g->embed16, g->final_norm, g->cs, g->ids, g->x, g->qkv, g->gu, g->logits,
               g->xn16, g->att16, g->act16, g->deq16, g->q16, g->xperm16, g->S, g->P16, g->attn_split,
               g->probs, g->picks, g->next};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) lb_cuda_release(p[i]);
  lb_cuda_i8x_free(&g->i8x);
  lb_cuda_host_release(g->pinned);
  lb_cuda_host_release(g->pin_picks);
  free(g->host_cs);
  lb_cuda_close(g->cx);
  free(g);
}

/* Whether n rows of w go through the GEMV, or the tensor-core product (see GEMV_ROWS). */
static bool use_gemv(const lb_gpu *g, const glin *w, int64_t n) {
  return w->qw.codes && n <= (g->gemv_rows >= 0 ? g->gemv_rows : GEMV_ROWS[w->qw.kind]);
}
static bool use_mma(const lb_gpu *g, const glin *w, int64_t n) {
  return w->qw.codes && !use_gemv(g, w, n) && n <= (g->mma_rows >= 0 ? g->mma_rows : MMA_ROWS[w->qw.kind]);
}

/* x16 in w's column order: itself, or for an act-order weight its columns gathered into xperm16. */
static lb_status in_order(lb_gpu *g, const glin *w, const void **x16, int64_t n, lb_error *err) {
  if (!w->qw.perm || w->normed) return LB_OK;
  LB_TRY(lb_cuda_gather_cols(g->cx, *x16, w->qw.perm, n, w->cols, g->xperm16, err));
  *x16 = g->xperm16;
  return LB_OK;
}

/* The column order an RMSNorm writes for `reader`, the weight that reads its output (NULL: none). */
static const int32_t *norm_order(const glin *reader) { return reader && reader->normed ? reader->qw.perm : NULL; }

/* W8A8: the activations x16 of w in place as E4M3 codes times their scales (x16 is the scratch
 * row block that only w reads), unless the norm before w wrote them so (norm()); for weights that
 * are not W8A8, nothing. */
static lb_status act_fp8(lb_gpu *g, const glin *w, const void *x16, int64_t n, lb_error *err) {
  if (!w->act_group || (x16 == g->xn16 && g->xn_fp8 == w)) return LB_OK;
  return lb_cuda_fp8_act(g->cx, (void *)x16, n, w->cols, w->act_group, w->act_scale, NULL, NULL, err);
}

/* RMSNorm of n rows of x (ldx floats apart) into xn16 for `reader`, the weight that reads it
 * (NULL: none): in its column order, and for a W8A8 reader that takes the GEMV or the tensor-core
 * product, with its activations quantized in the same launch. */
static lb_status norm(lb_gpu *g, const float *x, int64_t ldx, const float *w, float eps, int64_t n, int64_t d,
                      const glin *reader, lb_error *err) {
  g->xn_fp8 = NULL;
  if (reader && reader->act_group && g->fuse_fp8norm && !reader->qw.perm &&
      (use_gemv(g, reader, n) || use_mma(g, reader, n))) {
    LB_TRY(lb_cuda_rmsnorm_fp8(g->cx, x, ldx, w, eps, n, d, reader->act_group, reader->act_scale, g->xn16, err));
    g->xn_fp8 = reader;
    return LB_OK;
  }
  return lb_cuda_rmsnorm(g->cx, x, ldx, w, eps, n, d, norm_order(reader), g->xn16, err);
}

/* W8A8 beyond the tensor-core product's rows: the activations as codes and w on the FP8 tensor
 * cores. *done false: not taken (no such kernel here: the fp16 path from now on). */
static lb_status fp8_tc(lb_gpu *g, const glin *w, const void *x16, int64_t n, float *y, bool acc,
                        bool *done, lb_error *err) {
  *done = false;
  if (!g->fp8_tc || !lb_cuda_fp8_tc_fits(&w->qw)) return LB_OK;
  LB_TRY(lb_cuda_fp8_act(g->cx, (void *)x16, n, w->cols, w->act_group, w->act_scale, g->f8x, g->f8xs,
                         err));
  lb_error e2;
  lb_status s = lb_cuda_gemm_fp8(g->cx, &w->qw, g->f8x, g->f8xs, g->f8ws, y, n, acc, &e2);
  if (s == LB_EUNSUPPORTED) {
    g->fp8_tc = false;
    return LB_OK;
  }
  if (s != LB_OK) return lb_fail(err, s, "%s", e2.msg);
  *done = true;
  return w->bias ? lb_cuda_add_bias(g->cx, y, w->bias, n, w->rows, err) : LB_OK;
}

/* y[n][rows] (= or += when acc) x16[n][cols] . W^T, then the bias. */
static lb_status linear(lb_gpu *g, const glin *w, const void *x16, int64_t n, float *y, bool acc,
                        lb_error *err) {
  if (w->act_group && !use_gemv(g, w, n) && !use_mma(g, w, n)) { /* (the norm quantizes for neither) */
    bool done = false;
    LB_TRY(fp8_tc(g, w, x16, n, y, acc, &done, err));
    if (done) return LB_OK;
  }
  LB_TRY(act_fp8(g, w, x16, n, err));
  LB_TRY(in_order(g, w, &x16, n, err));
  if (use_gemv(g, w, n)) {
    LB_TRY(lb_cuda_gemv(&w->qw, x16, &g->i8x, y, (int)n, acc, lb_cuda_stream(g->cx), err));
  } else if (use_mma(g, w, n)) {
    LB_TRY(lb_cuda_qmma(&w->qw, x16, &g->i8x, y, n, acc, lb_cuda_stream(g->cx), err));
  } else {
    const void *w16 = w->w16;
    if (w->qw.codes) {
      LB_TRY(lb_cuda_qw_dequant(g->cx, &w->qw, g->deq16, err));
      w16 = g->deq16;
    }
    LB_TRY(lb_cuda_gemm(g->cx, w16, x16, y, w->rows, w->cols, n, acc, err));
  }
  return w->bias ? lb_cuda_add_bias(g->cx, y, w->bias, n, w->rows, err) : LB_OK;
}

/* o_proj or down_proj adding into the residual stream, then the RMSNorm by `normw` (NULL: none)
 * into xn16 for `next`, the weight that reads it (NULL: none; norm()). (Doing the
 * norm in the GEMV's last block instead, found by a counter, cost 17% of the 7B decode speed on
 * the H100: BENCHMARKS.md.) */
static lb_status residual_linear(lb_gpu *g, const glin *w, const void *x16, int64_t n,
                                 const float *normw, const glin *next, float eps, int64_t d, lb_error *err) {
  LB_TRY(linear(g, w, x16, n, g->x, true, err));
  g->xn_fp8 = NULL; /* (also when LOWBIT_CUDA_SKIP leaves the norm out) */
  if (normw) STAGE(SK_NORM, norm(g, g->x, d, normw, eps, n, d, next, err));
  return LB_OK;
}

/* The gate/up product with SiLU-and-multiply into act16: in the epilogue of the GEMV or the
 * tensor-core product (pairs), or after. */
static lb_status gate_up(lb_gpu *g, const glayer *G, int64_t n, int64_t inter, lb_error *err) {
  if (!G->gu.pairs || (!use_mma(g, &G->gu, n) && !use_gemv(g, &G->gu, n))) {
    LB_TRY(linear(g, &G->gu, g->xn16, n, g->gu, false, err));
    return lb_cuda_silu_mul(g->cx, g->gu, G->gu_bias, n, inter, G->gu.pairs, g->act16, err);
  }
  const void *x = g->xn16;
  LB_TRY(act_fp8(g, &G->gu, x, n, err));
  LB_TRY(in_order(g, &G->gu, &x, n, err));
  if (use_mma(g, &G->gu, n))
    return lb_cuda_qmma_silu(&G->gu.qw, x, &g->i8x, G->gu_bias, g->act16, n, lb_cuda_stream(g->cx), err);
  return lb_cuda_gemv_silu(&G->gu.qw, x, &g->i8x, G->gu_bias, g->act16, (int)n, lb_cuda_stream(g->cx), err);
}

/* Everything of one chunk on the stream: n rows, `per` tokens of each of the sequences s0,
 * s0 + 1, ... at positions pos .. pos + per - 1, their ids and position from page-locked memory
 * (so a captured step reads the values of its replay); the blocks; the final norm of `out` rows:
 * all n, or the last of each sequence (n / per, into xn16's first rows). */
static lb_status issue_chunk(lb_model *m, lb_gpu *g, int64_t n, int64_t per, int64_t s0, int64_t pos,
                             int64_t out, lb_error *err) {
  const bool small = per <= SMALL_N; /* decode: the attention kernel reads the position on the device */
  const lb_config *c = m->cfg;
  int64_t d = c->hidden_size, inter = c->intermediate_size;
  const size_t seq_cache = (size_t)(m->ctx * c->num_key_value_heads * c->head_dim) * 2; /* bytes */
  float eps = (float)c->rms_norm_eps;
  LB_TRY(lb_cuda_put(g->cx, g->ids, g->pinned, (size_t)n * 4, err));
  LB_TRY(lb_cuda_put(g->cx, g->pos, g->pinned + g->chunk, 4, err));
  LB_TRY(lb_cuda_embed(g->cx, g->embed16, g->ids, n, d, g->x, err));
  g->xn_fp8 = NULL;
  STAGE(SK_NORM, norm(g, g->x, d, g->layers[0].attn_norm, eps, n, d, &g->layers[0].qkv, err));
  for (int l = 0; l < g->nlayers; l++) {
    glayer *G = &g->layers[l];
    char *kc = (char *)G->kc + s0 * seq_cache, *vc = (char *)G->vc + s0 * seq_cache;
    STAGE(SK_QKV, linear(g, &G->qkv, g->xn16, n, g->qkv, false, err));
    STAGE(SK_ROPE, lb_cuda_rope_kv(g->cx, g->qkv, G->qkv_bias, n, per, &G->attn, g->cs, g->pos, kc,
                                   vc, small ? NULL : g->q16, err));
    if (small) {
      STAGE(SK_ATTN, lb_cuda_attention(g->cx, g->qkv, kc, vc, n, per, g->pos, &G->attn, g->att16, err));
    } else if (g->flash) {
      STAGE(SK_ATTN, lb_cuda_flash_attention(g->cx, g->q16, kc, vc, (int64_t)(seq_cache / 2), n / per, per,
                                             pos, &G->attn, g->att16, err));
    } else {
      const size_t qrows = (size_t)(per * G->attn.heads * G->attn.head_dim) * 2; /* a sequence's q16 bytes */
      for (int64_t j = 0; j < n / per; j++)
        LB_TRY(lb_cuda_attention_gemm(g->cx, (char *)g->q16 + j * qrows, kc + j * seq_cache, vc + j * seq_cache, per,
                                      pos, &G->attn, g->S, g->P16, (char *)g->att16 + j * qrows, err));
    }
    STAGE(SK_O, residual_linear(g, &G->o, g->att16, n, G->mlp_norm, &G->gu, eps, d, err));
    STAGE(SK_GU, gate_up(g, G, n, inter, err));
    /* the next layer's norm, or the final norm when every row is wanted (else after the loop) */
    const float *next = l + 1 < g->nlayers ? g->layers[l + 1].attn_norm : out == n ? g->final_norm : NULL;
    const glin *reader = l + 1 < g->nlayers ? &g->layers[l + 1].qkv : NULL; /* the head gathers its own */
    STAGE(SK_DOWN, residual_linear(g, &G->down, g->act16, n, next, reader, eps, d, err));
  }
  if (out && out < n) /* the last row of each sequence */
    LB_TRY(norm(g, g->x + (per - 1) * d, per * d, g->final_norm, eps, out, d, NULL, err));
  return LB_OK;
}

/* One token of each of n sequences, with logits: the graph captured for n on first use, or plain
 * launches. */
static lb_status decode_step(lb_model *m, lb_gpu *g, int64_t n, lb_error *err) {
  if (!g->graphs || g->dynamic_rope) {
    LB_TRY(issue_chunk(m, g, n, 1, 0, m->pos, n, err));
    return g->skip & SK_HEAD ? LB_OK : linear(g, &g->head, g->xn16, n, g->logits, false, err);
  }
  if (!g->graph[n]) {
    LB_TRY(lb_cuda_sync(g->cx, err));
    LB_TRY(lb_cuda_capture_begin(g->cx, err));
    lb_status s = issue_chunk(m, g, n, 1, 0, m->pos, n, err);
    if (s == LB_OK && !(g->skip & SK_HEAD)) s = linear(g, &g->head, g->xn16, n, g->logits, false, err);
    void *graph = NULL;
    lb_error e2;
    lb_status s2 = lb_cuda_capture_end(g->cx, &graph, s == LB_OK ? err : &e2);
    LB_TRY(s);
    LB_TRY(s2);
    g->graph[n] = graph;
  }
  return lb_cuda_graph_launch(g->cx, g->graph[n], err);
}

/* next[r] for the logits of rows r < rows, chosen on the device by samplers[r]'s rule and draw. */
static lb_status sample(lb_gpu *g, int64_t V, int64_t rows, lb_sampler *const *samplers, int32_t *next,
                        lb_error *err) {
  if (!g->probs) {
    LB_TRY(lb_cuda_alloc(g->cx, (size_t)(g->batch * V) * 4, (void **)&g->probs, err));
    LB_TRY(lb_cuda_alloc(g->cx, (size_t)g->batch * sizeof *g->picks, (void **)&g->picks, err));
    LB_TRY(lb_cuda_alloc(g->cx, (size_t)g->batch * 4, (void **)&g->next, err));
    LB_TRY(lb_cuda_host_alloc((size_t)g->batch * sizeof *g->pin_picks, (void **)&g->pin_picks, err));
  }
  for (int64_t r = 0; r < rows; r++) {
    lb_cuda_pick *p = &g->pin_picks[r];
    lb_sampler_pick(samplers[r], &p->temperature, &p->top_p, &p->top_k, &p->u);
  }
  LB_TRY(lb_cuda_put(g->cx, g->picks, g->pin_picks, (size_t)rows * sizeof *g->picks, err));
  LB_TRY(lb_cuda_sample(g->cx, g->logits, g->probs, rows, V, g->picks, g->next, err));
  return lb_cuda_get(g->cx, next, g->next, (size_t)rows * 4, err); /* (waits: pin_picks is free again) */
}

bool lb_gpu_host_sample(const lb_gpu *g) { return g->host_sample; }

/* Chunks of up to g->chunk rows: whole sequences, as many as fit (k), or one sequence in pieces. */
lb_status lb_gpu_forward(lb_model *m, int64_t nseq, const int32_t *tokens, int64_t n, float *logits,
                         bool all, lb_sampler *const *samplers, int32_t *next, lb_error *err) {
  lb_gpu *g = m->gpu;
  const lb_config *c = m->cfg;
  const int64_t V = c->vocab_size, hd = c->head_dim;
  const int64_t per = n < g->chunk ? n : g->chunk, k = g->chunk / per;
  for (int64_t s0 = 0; s0 < nseq; s0 += k) {
    const int64_t ks = nseq - s0 < k ? nseq - s0 : k;
    for (int64_t t0 = 0; t0 < n; t0 += per) {
      const int64_t cn = n - t0 < per ? n - t0 : per, rows = ks * cn, pos = m->pos + t0;
      const bool last = t0 + cn == n, want = (logits || samplers) && (all || last);
      const int64_t out = !want ? 0 : all ? rows : ks;
      LB_TRY(lb_cuda_sync(g->cx, err)); /* the page-locked ids may still be read by the last chunk */
      for (int64_t j = 0; j < ks; j++)
        memcpy(g->pinned + j * cn, tokens + (s0 + j) * n + t0, (size_t)cn * sizeof(int32_t));
      g->pinned[g->chunk] = (int32_t)pos;
      if (g->dynamic_rope) {
        lb_rope_table(&m->rope, c, pos, cn, pos + cn, g->host_cs);
        LB_TRY(lb_cuda_put(g->cx, g->cs + pos * hd, g->host_cs, (size_t)(cn * hd) * sizeof(float), err));
        LB_TRY(lb_cuda_sync(g->cx, err)); /* host_cs is pageable and reused */
      }
      float *dst = !want || !logits ? NULL : logits + (all ? t0 : s0) * V;
      if (cn == 1 && out == rows && s0 == 0) {
        LB_TRY(decode_step(m, g, rows, err));
        if (dst) LB_TRY(lb_cuda_get(g->cx, dst, g->logits, (size_t)(rows * V) * sizeof(float), err));
        if (samplers) LB_TRY(sample(g, V, rows, samplers, next, err));
        continue;
      }
      LB_TRY(issue_chunk(m, g, rows, cn, s0, pos, out, err));
      for (int64_t r0 = 0; r0 < out; r0 += LOGIT_ROWS) { /* the lm_head in slices of rows */
        int64_t rn = out - r0 < LOGIT_ROWS ? out - r0 : LOGIT_ROWS;
        const char *x16 = (const char *)g->xn16 + (size_t)(r0 * c->hidden_size) * 2;
        LB_TRY(linear(g, &g->head, x16, rn, g->logits, false, err));
        if (dst) LB_TRY(lb_cuda_get(g->cx, dst + r0 * V, g->logits, (size_t)(rn * V) * sizeof(float), err));
        if (samplers && !all) LB_TRY(sample(g, V, rn, samplers + s0 + r0, next + s0 + r0, err));
      }
    }
  }
  m->pos += n;
  return lb_cuda_sync(g->cx, err);
}
