/* Opening a model: the checkpoint's tensors resolved by architecture names, norms and biases widened
 * to fp32, the KV cache and scratch allocated, the thread pool started. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/qpack.h"
#include "base/status.h"
#include "model/model_internal.h"
#include "quant/fp8.h"
#include "quant/spec.h"

/* OpenBLAS's own thread count (declared by its cblas.h in some builds, not all). */
void openblas_set_num_threads(int num_threads);

static lb_status find(const lb_model *m, const char *name, const lb_tensor **out, lb_error *err) {
  *out = lb_tensors_find(lb_checkpoint_tensors(m->ck), name);
  if (!*out)
    return lb_fail(err, LB_ENOTFOUND, "%s: tensor '%s' is missing", lb_checkpoint_dir(m->ck), name);
  lb_dtype d = (*out)->dtype;
  if (d != LB_F32 && d != LB_F16 && d != LB_BF16)
    return lb_fail(err, LB_EUNSUPPORTED, "%s: tensor '%s' is %s; this runtime takes F32, F16, BF16",
                   (*out)->file, name, lb_dtype_name(d));
  return LB_OK;
}

static lb_status mat(const lb_model *m, const char *name, int64_t rows, int64_t cols, lb_mat *out,
                     lb_error *err) {
  const lb_tensor *t;
  LB_TRY(find(m, name, &t, err));
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' is not [%lld, %lld]", t->file, name,
                   (long long)rows, (long long)cols);
  *out = (lb_mat){.dtype = t->dtype, .rows = rows, .cols = cols, .data = t->data};
  return LB_OK;
}

/* A 1-D tensor of n elements, widened to a new fp32 array. */
static lb_status vec(const lb_model *m, const char *name, int64_t n, float **out, lb_error *err) {
  const lb_tensor *t;
  LB_TRY(find(m, name, &t, err));
  if (t->ndim != 1 || t->shape[0] != n)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s' is not [%lld]", t->file, name, (long long)n);
  if (!(*out = malloc((size_t)n * sizeof(float))))
    return lb_fail(err, LB_ENOMEM, "out of memory for '%s'", name);
  lb_cvt_f32_ref(*out, t->data, t->dtype, n);
  return LB_OK;
}

/* A quantized Linear of the checkpoint's method, owned by the model. */
static lb_status load_quantized(const lb_model *m, const char *mod, int64_t rows, int64_t cols,
                                lb_qweight **out, lb_error *err) {
  lb_qweight *q = calloc(1, sizeof *q);
  if (!q) return lb_fail(err, LB_ENOMEM, "out of memory for '%s'", mod);
  lb_status s = lb_quant_spec_read(m->qspec, lb_checkpoint_tensors(m->ck), mod, q, err);
  if (s == LB_OK && (q->rows != rows || q->cols != cols)) {
    s = lb_fail(err, LB_EFORMAT, "%s: quantized '%s' is [%lld, %lld], the config says [%lld, %lld]",
                lb_checkpoint_dir(m->ck), mod, (long long)q->rows, (long long)q->cols,
                (long long)rows, (long long)cols);
    lb_qweight_free(q);
  }
  if (s != LB_OK) {
    free(q);
    return s;
  }
  *out = q;
  return LB_OK;
}

/* The activations' E4M3 block of a W8A8 weight (lb_mat.act_group), 0 for weights-only. */
static int64_t act_group(const lb_model *m, const lb_qweight *w) {
  if (w->kind != LB_QK_FP8 || m->fp8_act == LB_FP8_ACT_OFF) return 0;
  return m->fp8_act == LB_FP8_ACT_GROUP128 ? m->act_group : w->cols;
}

/* Static W8A8: each FP8 Linear's input_scale; the Linears that share one input (q/k/v, gate/up)
 * take the largest of theirs, as vLLM does when it fuses them, so that one quantization of the
 * input serves all (the GPU's stacked weights) and the CPU computes the same. */
static lb_status static_scales(const lb_model *m, lb_layer *L, const char *blk, lb_error *err) {
  if (m->fp8_act != LB_FP8_ACT_STATIC) return LB_OK;
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    if (!L->lin[k].act_group) continue;
    char mod[200];
    snprintf(mod, sizeof mod, "%s.%s", blk, m->arch->linear[k]);
    LB_TRY(lb_fp8_input_scale(lb_checkpoint_tensors(m->ck), mod, &L->lin[k].act_scale, err));
  }
  static const int groups[2][4] = {{LB_LIN_Q, LB_LIN_K, LB_LIN_V, -1},
                                   {LB_LIN_GATE, LB_LIN_UP, -1, -1}};
  for (int g = 0; g < 2; g++) {
    float mx = 0.0f;
    for (int i = 0; groups[g][i] >= 0; i++)
      if (L->lin[groups[g][i]].act_scale > mx) mx = L->lin[groups[g][i]].act_scale;
    for (int i = 0; groups[g][i] >= 0; i++)
      if (L->lin[groups[g][i]].act_group) L->lin[groups[g][i]].act_scale = mx;
  }
  return LB_OK;
}

/* FP8 KV cache: the attention module's k_scale and v_scale (the module q/k/v's names share). */
static lb_status kv_scales(const lb_model *m, lb_layer *L, const char *blk, lb_error *err) {
  if (!m->kv_fp8) return LB_OK;
  const char *k = m->arch->linear[LB_LIN_K], *dot = strrchr(k, '.');
  char attn[200];
  snprintf(attn, sizeof attn, "%s.%.*s", blk, dot ? (int)(dot - k) : 0, k);
  LB_TRY(lb_fp8_scale_scalar(lb_checkpoint_tensors(m->ck), attn, ".k_scale", &L->kv_scale[0], err));
  return lb_fp8_scale_scalar(lb_checkpoint_tensors(m->ck), attn, ".v_scale", &L->kv_scale[1], err);
}

static lb_status load_layer(lb_model *m, int l, lb_error *err) {
  const lb_config *c = m->cfg;
  lb_layer *L = &m->layers[l];
  char blk[64], name[256];
  lb_arch_block(m->arch, l, blk, sizeof blk);
  snprintf(name, sizeof name, "%s.%s.weight", blk, m->arch->attn_norm);
  LB_TRY(vec(m, name, c->hidden_size, &L->attn_norm, err));
  snprintf(name, sizeof name, "%s.%s.weight", blk, m->arch->mlp_norm);
  LB_TRY(vec(m, name, c->hidden_size, &L->mlp_norm, err));
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    int64_t out, in;
    lb_arch_linear_shape(c, (lb_linear_kind)k, &out, &in);
    char mod[200];
    snprintf(mod, sizeof mod, "%s.%s", blk, m->arch->linear[k]);
    snprintf(name, sizeof name, "%s.weight", mod);
    if (m->qspec && !lb_quant_spec_skips(m->qspec, mod)) {
      LB_TRY(load_quantized(m, mod, out, in, &L->qw[k], err));
      L->lin[k] = (lb_mat){.dtype = LB_F32, .rows = out, .cols = in, .qw = L->qw[k],
                           .act_group = act_group(m, L->qw[k])};
    } else {
      LB_TRY(mat(m, name, out, in, &L->lin[k], err));
    }
    if (lb_arch_linear_has_bias(m->arch, c, (lb_linear_kind)k)) {
      snprintf(name, sizeof name, "%s.bias", mod);
      if (!(L->qw[k] && L->qw[k]->bias)) LB_TRY(vec(m, name, out, &L->bias[k], err));
    }
    /* A bias read with the quantized weight becomes the layer's bias: lb_linear adds it once. */
    if (L->qw[k] && L->qw[k]->bias) {
      if (!L->bias[k]) L->bias[k] = L->qw[k]->bias;
      else free(L->qw[k]->bias);
      L->qw[k]->bias = NULL;
    }
    /* Packed once for the kernels; the canonical codes (a byte each) are dropped then. */
    if (L->qw[k] && !m->reference && !m->on_gpu) {
      LB_TRY(lb_qpack_new(L->qw[k], &L->pack[k], err));
      if (L->pack[k]) {
        lb_qweight_free(L->qw[k]);
        free(L->qw[k]);
        L->qw[k] = NULL;
        L->lin[k].qw = NULL;
        L->lin[k].pack = L->pack[k];
      }
    }
  }
  LB_TRY(static_scales(m, L, blk, err));
  LB_TRY(kv_scales(m, L, blk, err));
  /* Mistral: every layer; Qwen2 (use_sliding_window): layers from max_window_layers on */
  L->sliding = c->sliding_window > 0 &&
               (strcmp(c->model_type, "qwen2") != 0 || l >= c->max_window_layers);
  return LB_OK;
}

static lb_status alloc_f32(float **p, size_t n, lb_error *err) {
  if (!(*p = calloc(n ? n : 1, sizeof(float))))
    return lb_fail(err, LB_ENOMEM, "out of memory for %zu floats of model state", n);
  return LB_OK;
}

/* The W8A8 mode asked for (lb_model_options.fp8_act) against what the checkpoint declares. */
static lb_status fp8_act_mode(lb_model *m, const char *dir, lb_fp8_act want, lb_error *err) {
  if ((unsigned)want > LB_FP8_ACT_STATIC)
    return lb_fail(err, LB_EINVAL, "lb_model_options.fp8_act: %d is not a mode", (int)want);
  const bool fp8 = m->qspec && (m->qspec->method == LB_QM_FP8 || m->qspec->method == LB_QM_CT_FP8);
  m->fp8_act = LB_FP8_ACT_OFF;
  m->act_group = 0;
  if (want == LB_FP8_ACT_OFF || (want == LB_FP8_ACT_AUTO && !fp8)) return LB_OK;
  if (!fp8)
    return lb_fail(err, LB_EINVAL, "%s: FP8 activations (W8A8) asked for, but the checkpoint has no "
                   "FP8 weights (quantization_config: %s)", dir, m->qspec ? "another method" : "none");
  char d[48];
  if (want == LB_FP8_ACT_STATIC && m->qspec->act != LB_FP8_ACT_STATIC)
    return lb_fail(err, LB_EINVAL,
                   "%s/config.json: static FP8 activations asked for, but quantization_config "
                   "declares activations %s (static input scales are calibrated into the checkpoint)",
                   dir, lb_fp8_act_describe(m->qspec->act, m->qspec->act_group, d, sizeof d));
  m->fp8_act = want == LB_FP8_ACT_AUTO ? m->qspec->act : want;
  m->act_group = want == LB_FP8_ACT_AUTO ? m->qspec->act_group : 128;
  return LB_OK;
}

static lb_status setup(lb_model *m, const char *dir, const lb_model_options *opt, lb_error *err) {
  LB_TRY(lb_checkpoint_open(dir, &m->ck, err));
  m->cfg = lb_checkpoint_config(m->ck);
  m->arch = lb_checkpoint_arch(m->ck);
  const lb_config *c = m->cfg;
  const char *qc = lb_checkpoint_quant_config(m->ck);
  if (qc) {
    if (!(m->qspec = calloc(1, sizeof *m->qspec))) return lb_fail(err, LB_ENOMEM, "out of memory");
    char label[300];
    snprintf(label, sizeof label, "%s/config.json: quantization_config", dir);
    lb_status s = lb_quant_spec_parse(qc, strlen(qc), label, m->qspec, err);
    if (s != LB_OK) {
      free(m->qspec);
      m->qspec = NULL;
      return s;
    }
  }
  if (strcmp(c->hidden_act, "silu") != 0)
    return lb_fail(err, LB_EUNSUPPORTED, "%s/config.json: hidden_act \"%s\" (only silu)", dir,
                   c->hidden_act);
  if (c->head_dim > 1024 || c->num_attention_heads % c->num_key_value_heads)
    return lb_fail(err, LB_EUNSUPPORTED, "%s/config.json: head_dim %lld with %lld/%lld heads", dir,
                   (long long)c->head_dim, (long long)c->num_attention_heads,
                   (long long)c->num_key_value_heads);
  LB_TRY(lb_rope_init(&m->rope, c, err));
  LB_TRY(lb_pool_new(opt ? opt->n_threads : 0, &m->pool, err));
  m->reference = opt && opt->reference;
  LB_TRY(fp8_act_mode(m, dir, opt ? opt->fp8_act : LB_FP8_ACT_AUTO, err));
  const lb_kv_quant kv = opt ? opt->kv_quant : LB_KV_AUTO;
  if ((unsigned)kv > LB_KV_OFF)
    return lb_fail(err, LB_EINVAL, "lb_model_options.kv_quant: %d is not a mode", (int)kv);
  m->kv_fp8 = kv == LB_KV_AUTO && m->qspec && m->qspec->kv_fp8;
  m->on_gpu = opt && opt->device == LB_DEVICE_CUDA;
  openblas_set_num_threads(lb_pool_size(m->pool));

  char name[256];
  snprintf(name, sizeof name, "%s.weight", m->arch->embed);
  LB_TRY(mat(m, name, c->vocab_size, c->hidden_size, &m->embed, err));
  if (m->qspec && m->qspec->lm_head) { /* GPTQModel's quantized lm_head */
    LB_TRY(load_quantized(m, m->arch->lm_head, c->vocab_size, c->hidden_size, &m->head_qw, err));
    if (m->head_qw->bias)
      return lb_fail(err, LB_EUNSUPPORTED, "%s: the quantized lm_head has a bias", dir);
    m->lm_head = (lb_mat){.dtype = LB_F32, .rows = c->vocab_size, .cols = c->hidden_size,
                          .qw = m->head_qw, .act_group = act_group(m, m->head_qw)};
    if (!m->reference && !m->on_gpu) LB_TRY(lb_qpack_new(m->head_qw, &m->head_pack, err));
    if (m->head_pack) {
      lb_qweight_free(m->head_qw);
      free(m->head_qw);
      m->head_qw = NULL;
      m->lm_head.qw = NULL, m->lm_head.pack = m->head_pack;
    }
  } else if (c->tie_word_embeddings) {
    m->lm_head = m->embed;
  } else {
    snprintf(name, sizeof name, "%s.weight", m->arch->lm_head);
    LB_TRY(mat(m, name, c->vocab_size, c->hidden_size, &m->lm_head, err));
  }
  snprintf(name, sizeof name, "%s.weight", m->arch->final_norm);
  LB_TRY(vec(m, name, c->hidden_size, &m->final_norm, err));
  if (!(m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers)))
    return lb_fail(err, LB_ENOMEM, "out of memory");
  for (int l = 0; l < c->num_hidden_layers; l++) LB_TRY(load_layer(m, l, err));

  int64_t ctx = opt && opt->max_ctx > 0 ? opt->max_ctx : c->max_position_embeddings;
  if (!(opt && opt->max_ctx > 0) && ctx > 4096) ctx = 4096;
  if (ctx < 1 || ctx > (1 << 20))
    return lb_fail(err, LB_EINVAL, "context length %lld is out of range", (long long)ctx);
  m->ctx = ctx;
  m->chunk = ctx < 512 ? ctx : 512;
  m->batch = opt && opt->batch > 0 ? opt->batch : 1;
  if (m->batch > LB_MAX_BATCH)
    return lb_fail(err, LB_EINVAL, "batch %d is over the limit of %d sequences", m->batch, LB_MAX_BATCH);
  if (m->on_gpu && m->kv_fp8) /* (the GPU's KV store would need the rounding in its RoPE kernel) */
    return lb_fail(err, LB_EUNSUPPORTED, "%s/config.json: quantization_config.kv_cache_scheme: the "
                   "CUDA backend does not round the KV cache to E4M3 yet; --kv-cache off runs it with "
                   "keys and values as computed (as vLLM's kv_cache_dtype \"auto\")", dir);
  if (m->on_gpu) return lb_gpu_open(m, err); /* the CPU's cache and scratch are not needed */
  int64_t kvd = c->num_key_value_heads * c->head_dim, qd = c->num_attention_heads * c->head_dim;
  size_t cache = (size_t)c->num_hidden_layers * (size_t)ctx * (size_t)kvd;
  size_t ch = (size_t)m->chunk, h = (size_t)c->hidden_size, inter = (size_t)c->intermediate_size;
  LB_TRY(alloc_f32(&m->kc_all, cache * (size_t)m->batch, err));
  LB_TRY(alloc_f32(&m->vc_all, cache * (size_t)m->batch, err));
  m->kcache = m->kc_all, m->vcache = m->vc_all;
  LB_TRY(alloc_f32(&m->x, ch * h, err));
  LB_TRY(alloc_f32(&m->xn, ch * h, err));
  LB_TRY(alloc_f32(&m->q, ch * (size_t)qd, err));
  LB_TRY(alloc_f32(&m->k, ch * (size_t)kvd, err));
  LB_TRY(alloc_f32(&m->v, ch * (size_t)kvd, err));
  LB_TRY(alloc_f32(&m->att, ch * (size_t)qd, err));
  LB_TRY(alloc_f32(&m->gate, ch * inter, err));
  LB_TRY(alloc_f32(&m->up, ch * inter, err));
  /* attention scores: a block of query rows per share (prefill), or one row per share (decode) */
  size_t rows = (size_t)lb_pool_size(m->pool) * 64; /* forward.c's QB query rows per share */
  rows = rows > ch ? rows : ch;
  LB_TRY(alloc_f32(&m->scores, rows * (size_t)ctx, err));
  return LB_OK;
}

lb_status lb_model_open(const char *dir, const lb_model_options *opt, lb_model **out,
                        lb_error *err) {
  *out = NULL;
  lb_model *m = calloc(1, sizeof *m);
  if (!m) return lb_fail(err, LB_ENOMEM, "out of memory");
  lb_status s = setup(m, dir, opt, err);
  if (s != LB_OK) {
    lb_model_free(m);
    return s;
  }
  *out = m;
  return LB_OK;
}

void lb_model_free(lb_model *m) {
  if (!m) return;
  lb_gpu_free(m->gpu);
  for (int l = 0; m->layers && l < m->cfg->num_hidden_layers; l++) {
    free(m->layers[l].attn_norm);
    free(m->layers[l].mlp_norm);
    for (int k = 0; k < LB_LIN_COUNT; k++) {
      free(m->layers[l].bias[k]);
      if (m->layers[l].qw[k]) lb_qweight_free(m->layers[l].qw[k]);
      free(m->layers[l].qw[k]);
      lb_qpack_free(m->layers[l].pack[k]);
    }
  }
  free(m->layers);
  free(m->final_norm);
  free(m->sample_logits);
  if (m->head_qw) lb_qweight_free(m->head_qw);
  free(m->head_qw);
  lb_qpack_free(m->head_pack);
  if (m->qspec) lb_quant_spec_free(m->qspec);
  free(m->qspec);
  lb_rope_free(&m->rope);
  float *bufs[] = {m->kc_all, m->vc_all, m->x,    m->xn, m->q,     m->k,
                   m->v,      m->att,    m->gate, m->up, m->scores};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  lb_pool_free(m->pool);
  lb_checkpoint_close(m->ck);
  free(m);
}

const lb_config *lb_model_config(const lb_model *m) { return m->cfg; }
const lb_checkpoint *lb_model_checkpoint(const lb_model *m) { return m->ck; }
int64_t lb_model_ctx(const lb_model *m) { return m->ctx; }
int64_t lb_model_pos(const lb_model *m) { return m->pos; }
int lb_model_batch(const lb_model *m) { return m->batch; }
lb_fp8_act lb_model_fp8_act(const lb_model *m, int64_t *group) {
  if (group) *group = m->fp8_act == LB_FP8_ACT_GROUP128 ? m->act_group : 0;
  return m->fp8_act;
}
bool lb_model_kv_fp8(const lb_model *m) { return m->kv_fp8; }
uint64_t lb_model_kv_bytes(const lb_model *m) {
  const lb_config *c = m->cfg;
  return (uint64_t)(c->num_hidden_layers * 2 * c->num_key_value_heads * c->head_dim) * (m->gpu ? 2 : 4);
}
int lb_model_threads(const lb_model *m) { return lb_pool_size(m->pool); }
void lb_model_reset(lb_model *m) { m->pos = 0; }
lb_device lb_model_device(const lb_model *m) { return m->gpu ? LB_DEVICE_CUDA : LB_DEVICE_CPU; }
uint64_t lb_model_device_bytes(const lb_model *m) { return lb_gpu_bytes(m->gpu); }
