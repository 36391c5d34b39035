/* A quantization method with its options (lb_quant_spec), as a Transformers quantization_config
 * describes it, and the per-Linear dispatch to the method's quantizer and on-disk layout.
 *
 *   method        quant_method written         layout of one Linear
 *   LB_QM_GPTQ    "gptq" (rtn: desc_act false) qweight / qzeros / scales / g_idx (gptq.h)
 *   LB_QM_BNB4    "bitsandbytes" load_in_4bit  weight + absmax + quant_map + quant_state (bnb.h)
 *   LB_QM_INT8    "bitsandbytes" load_in_8bit  weight I8 + SCB + weight_format (bnb.h)
 *   LB_QM_FP8     "fp8"                        weight F8_E4M3 + weight_scale_inv (fp8.h)
 *   LB_QM_CT_FP8  "compressed-tensors"         weight F8_E4M3 + weight_scale (float-quantized)
 *   LB_QM_CT_INT  "compressed-tensors"         weight_packed / weight_shape / weight_scale
 *                 (rtn --format compressed-tensors) [+ weight_zero_point] (pack-quantized, ct.h)
 *   LB_QM_HQQ     "hqq"                        HQQLinear's encoded state_dict (hqq.h)
 *   LB_QM_AWQ     "awq" (calibrated only)      AutoAWQ qweight / qzeros / scales, gemm or gemv (awq.h)
 *
 * LB_QM_GPTQ with rtn false is GPTQ proper (calibrated, quant/calib.h); rtn true the
 * calibration-free round-to-nearest written in the same layout. */
#ifndef LB_QUANT_SPEC_H
#define LB_QUANT_SPEC_H

#include "quant/awq.h"
#include "quant/fp8.h"
#include "quant/gptq.h"
#include "quant/qweight.h"

typedef enum lb_qmethod {
  LB_QM_GPTQ,
  LB_QM_BNB4,
  LB_QM_INT8,
  LB_QM_FP8,
  LB_QM_CT_FP8,
  LB_QM_HQQ,
  LB_QM_CT_INT,
  LB_QM_AWQ,
} lb_qmethod;

#define LB_QSPEC_MAX_SKIP 64
#define LB_QSPEC_MAX_OVERRIDE 64

/* One per-module rule of GPTQModel's `dynamic` (quantization_config["dynamic"], as vLLM's
 * gptq_utils.get_dynamic_override reads it): a Python regex tried with re.match semantics (anchored
 * at the start of the full module name, not at the end); "+:" (or no prefix) gives the module the
 * overrides set here, "-:" keeps it dense. Rules are tried in order; the first match wins. */
typedef struct lb_quant_override {
  char *pattern;        /* the regex text, without the "+:" / "-:" prefix */
  void *re;             /* compiled pattern (pcre2_code, PCRE2_ANCHORED | PCRE2_UTF | PCRE2_UCP) */
  bool skip;            /* "-:": not quantized */
  bool has_bits, has_group, has_sym, has_desc_act; /* keys present; others keep the base's */
  int bits;
  int64_t group;
  bool sym, desc_act;
} lb_quant_override;

typedef struct lb_quant_spec {
  lb_qmethod method;
  bool rtn;             /* GPTQ layout produced by round-to-nearest (quant_method "rtn" on input) */
  /* GPTQ / RTN */
  int bits;             /* 2, 3, 4, 8 (GPTQ); 1..8 (HQQ nbits, CT int); 8 for INT8 / FP8; 4 for BNB4 */
  int64_t group;        /* group_size; -1 = per channel (GPTQ, CT int), hqq group_size */
  bool sym;
  bool desc_act;
  lb_gptq_version gptq_version;
  double damp;          /* GPTQ damp_percent (0.01) */
  bool static_groups;   /* GPTQ static_groups */
  bool lm_head;         /* GPTQ layout: the lm_head is quantized too (GPTQModel's "lm_head": true;
                           the checkpoint holds lm_head.qweight ... and is not tied) */
  /* bitsandbytes */
  bool nf4;             /* bnb_4bit_quant_type "nf4" (else "fp4") */
  bool double_quant;    /* bnb_4bit_use_double_quant */
  lb_dtype compute_dtype; /* bnb_4bit_compute_dtype (F32 default) */
  double int8_threshold;  /* llm_int8_threshold (6.0) */
  /* fp8 */
  int64_t block_r, block_c;   /* weight_block_size (fine-grained); CT block strategy */
  lb_fp8_strategy ct_strategy;
  /* the activations the checkpoint declares for its FP8 weights (W8A8): LB_FP8_ACT_OFF (none),
   * GROUP128 (dynamic 1 x act_group blocks: "fp8" activation_scheme "dynamic" with its
   * weight_block_size[1]; compressed-tensors strategy "group"), TOKEN (dynamic per row) or STATIC
   * (per tensor: each Linear's <module>.input_scale). Never AUTO. */
  lb_fp8_act act;
  int64_t act_group;
  /* compressed-tensors kv_cache_scheme: an FP8 KV cache with static per-tensor scales (each
   * attention's k_scale and v_scale); false: none (null) */
  bool kv_fp8;
  /* hqq */
  int axis;
  /* awq */
  lb_awq_version awq_version; /* "version": gemm (default) or gemv */
  bool awq_ct;                /* AWQ written as compressed-tensors pack-quantized (any bits, as
                                 llm-compressor's AWQ does); the config is then compressed-tensors */
  /* compressed-tensors int: the dtype of the weights being quantized (LB_F32 default; the caller
   * sets it per Linear): scales and zero points are computed in it and weight_scale stored in it */
  lb_dtype wdtype;
  /* modules kept dense: modules_to_not_convert / llm_int8_skip_modules / skip_modules / ignore */
  char *skip[LB_QSPEC_MAX_SKIP];
  size_t n_skip;
  /* per-module overrides (GPTQ layout only; "dynamic"), in rule order. Owned like skip[]: a copy of
   * the struct by value shares them and must not be freed (only the original is). */
  lb_quant_override *ov;
  size_t n_ov;
} lb_quant_spec;

/* Defaults of a method (what the CLI starts from): rtn and gptq 4-bit g128 asym (GPTQ layout v1);
 * nf4/fp4 (bnb4, blocksize 64); int8 (threshold 6.0); fp8 (fine-grained 128 x 128); hqq 4-bit g64
 * axis 1; awq 4-bit g128 zero point, gemm. `name` is one of "rtn", "gptq", "awq", "nf4", "fp4",
 * "int8", "fp8", "hqq". */
lb_status lb_quant_spec_default(const char *name, lb_quant_spec *out, lb_error *err);

/* Parses a quantization_config object (JSON text, Transformers key names). `label` names it in
 * errors. Unknown keys and unsupported values are refused naming the key. */
lb_status lb_quant_spec_parse(const char *json, size_t len, const char *label, lb_quant_spec *out,
                              lb_error *err);
void lb_quant_spec_free(lb_quant_spec *s);
/* Adds a module name (or regex text) to the skip list. */
lb_status lb_quant_spec_add_skip(lb_quant_spec *s, const char *name, lb_error *err);
/* Whether module `name` ("model.layers.0.mlp.up_proj") stays dense: a skip entry equal to the
 * name, or to one of its dot-separated suffixes/components (Transformers' substring rule), or a
 * "-:" override that is the first rule matching it. */
bool lb_quant_spec_skips(const lb_quant_spec *s, const char *name);

/* Appends a "+:" rule (skip false: `bits` 2/3/4/8, `group` -1 or a positive size, both required)
 * or a "-:" rule (skip true; bits and group ignored) for Python regex `pattern`. GPTQ layout only.
 * A bad regex or value is refused naming the pattern. */
lb_status lb_quant_spec_add_override(lb_quant_spec *s, const char *pattern, bool skip, int bits,
                                     int64_t group, lb_error *err);
/* The first override whose pattern matches module `name` (re.match), or NULL. */
const lb_quant_override *lb_quant_spec_match(const lb_quant_spec *s, const char *name);
/* The effective spec of module `name`: s with the first matching "+:" rule's keys applied and no
 * overrides of its own (so it is final). A shallow copy: never lb_quant_spec_free it. */
lb_quant_spec lb_quant_spec_for(const lb_quant_spec *s, const char *name);

/* The quantization_config lowbit writes, as compact JSON text (malloc'd). */
lb_status lb_quant_spec_to_json(const lb_quant_spec *s, char **json, lb_error *err);
/* A short description ("rtn int4 g128 asym", "+ N overrides" when there are). */
const char *lb_quant_spec_describe(const lb_quant_spec *s, char *buf, size_t cap);

/* The four functions below take the module name ("model.layers.0.mlp.down_proj") and apply its
 * override (lb_quant_spec_for) when s has any. */
/* Checks that a [rows, cols] Linear can be quantized by s (group divides cols, packing widths);
 * the error says why and names the module. */
lb_status lb_quant_spec_check_shape(const lb_quant_spec *s, int64_t rows, int64_t cols,
                                    const char *name, lb_error *err);
/* fp32 W [rows, cols] -> q. NaN/Inf weights are refused naming `name`. */
lb_status lb_quant_spec_quantize(const lb_quant_spec *s, const float *w, int64_t rows, int64_t cols,
                                 const char *name, lb_qweight *out, lb_error *err);
/* Writes q under the module prefix in the method's layout. orig_dtype: the checkpoint's float
 * dtype (bnb quant_state, hqq compute dtype). */
lb_status lb_quant_spec_write(const lb_quant_spec *s, lb_st_writer *w, const char *prefix,
                              const lb_qweight *q, lb_dtype orig_dtype, lb_error *err);
/* Reads the Linear under `prefix` back (caller frees with lb_qweight_free). */
lb_status lb_quant_spec_read(const lb_quant_spec *s, const lb_tensors *t, const char *prefix,
                             lb_qweight *out, lb_error *err);

#endif
