/* lowbit: quantize, store and run Hugging Face language models in C.
 *
 * Conventions (libuv-style):
 *  - Functions return LB_OK (0) or a negative lb_status. When they take an `lb_error *err`, a failure
 *    also writes a message there naming the file, the tensor or JSON key, and what was expected.
 *    `err` may be NULL when the caller does not want the text.
 *  - Callers own handles: every lb_x_open/lb_x_new has an lb_x_close/lb_x_free.
 *  - Nothing in the library exits or aborts.
 *  - Shapes are PyTorch order: a Linear weight is [out_features, in_features].
 */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Status and errors                                                                              */

typedef enum lb_status {
  LB_OK = 0,
  LB_EIO = -1,          /* a file could not be opened, read, written or renamed */
  LB_EFORMAT = -2,      /* a file's contents are malformed */
  LB_EINVAL = -3,       /* a bad argument or value (flag, shape, config number) */
  LB_ENOMEM = -4,       /* an allocation failed */
  LB_ENOTFOUND = -5,    /* a required file, tensor or key is missing */
  LB_EUNSUPPORTED = -6, /* well-formed but not supported (architecture, dtype pair, ...) */
  LB_EEXIST = -7,       /* the output already exists */
} lb_status;

#define LB_ERROR_MSG_MAX 1024

typedef struct lb_error {
  lb_status code;
  char msg[LB_ERROR_MSG_MAX];
} lb_error;

/* A short, static description of a status code. */
const char *lb_strerror(lb_status code);

/* ---------------------------------------------------------------------------------------------- */
/* Element types (safetensors spelling) and conversions                                           */

typedef enum lb_dtype {
  LB_F64,
  LB_F32,
  LB_F16,
  LB_BF16,
  LB_F8_E4M3, /* E4M3 "fn": bias 7, max 448, no infinities, NaN = S.1111.111 */
  LB_F8_E5M2, /* E5M2: bias 15, max 57344, IEEE-like infinities and NaNs */
  LB_I64,
  LB_I32,
  LB_I16,
  LB_I8,
  LB_U8,
  LB_BOOL,
  LB_DTYPE_COUNT
} lb_dtype;

const char *lb_dtype_name(lb_dtype t); /* "F32", "BF16", ... ; "?" for an invalid value */
/* Parses a safetensors dtype name; returns false if it is not one. */
bool lb_dtype_from_name(const char *name, lb_dtype *out);
size_t lb_dtype_size(lb_dtype t); /* bytes per element; 0 for an invalid value */
bool lb_dtype_is_float(lb_dtype t);

/* Scalar conversions. Narrowing conversions round to nearest, ties to even, with correct subnormals.
 * Plain (non-saturating) narrowing follows IEEE / ml_dtypes / PyTorch casts: a finite value that
 * rounds past the largest finite value becomes Inf (F16, BF16, E5M2) or NaN (E4M3, which has no Inf).
 * Saturating narrowing (what quantizers want) clamps finite values and infinities to +-max; NaN stays
 * NaN. Widening conversions are exact. */
float lb_f16_to_f32(uint16_t h);
float lb_bf16_to_f32(uint16_t h);
float lb_e4m3_to_f32(uint8_t v);
float lb_e5m2_to_f32(uint8_t v);
uint16_t lb_f32_to_f16(float f);
uint16_t lb_f32_to_bf16(float f);
uint8_t lb_f32_to_e4m3(float f, bool saturate);
uint8_t lb_f32_to_e5m2(float f, bool saturate);
/* From double, rounded once (no double rounding through float). */
uint16_t lb_f64_to_f16(double d);
uint16_t lb_f64_to_bf16(double d);
uint8_t lb_f64_to_e4m3(double d, bool saturate);
uint8_t lb_f64_to_e5m2(double d, bool saturate);

enum { LB_CONVERT_SATURATE = 1u << 0 };

/* Converts n elements between floating types (F64, F32, F16, BF16, F8_E4M3, F8_E5M2) with the rules
 * above; the same type is a copy. LB_CONVERT_SATURATE applies where the destination's range is
 * smaller than the source's (max: F64 > F32 > BF16 > F16 > E5M2 > E4M3); widening is always exact.
 * Buffers need no alignment. Integer types only convert to themselves. */
lb_status lb_convert(void *dst, lb_dtype dst_type, const void *src, lb_dtype src_type, size_t n,
                     unsigned flags, lb_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Tensors and safetensors files                                                                  */

#define LB_MAX_DIMS 8

typedef struct lb_tensor {
  const char *name;
  lb_dtype dtype;
  int ndim;
  int64_t shape[LB_MAX_DIMS];
  uint64_t numel;
  uint64_t nbytes;
  const void *data; /* zero-copy view into the mapped file; aligned to the element size when the
                       file was written by lowbit or the safetensors package, not guaranteed */
  const char *file; /* path of the file holding it */
} lb_tensor;

/* "[32000, 512]" into buf (always terminated; "..." marks a cut). Returns buf. */
const char *lb_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

typedef struct lb_st_file lb_st_file;

/* Largest accepted header, as in the safetensors reference implementation. */
#define LB_ST_MAX_HEADER 100000000u

/* Maps a .safetensors file and validates its whole header: length bound, well-formed JSON, known
 * dtypes, shape x dtype size = byte length, offsets inside the buffer, contiguous and
 * non-overlapping, no duplicate names, `__metadata__` a map of strings. */
lb_status lb_st_open(const char *path, lb_st_file **out, lb_error *err);
/* The same over a caller-owned buffer (kept borrowed until lb_st_close); `label` names it in errors. */
lb_status lb_st_parse(const void *buf, size_t len, const char *label, lb_st_file **out,
                      lb_error *err);
void lb_st_close(lb_st_file *f);
size_t lb_st_count(const lb_st_file *f);
const lb_tensor *lb_st_tensor(const lb_st_file *f, size_t i); /* in data-offset order */
const lb_tensor *lb_st_find(const lb_st_file *f, const char *name);
size_t lb_st_metadata_count(const lb_st_file *f);
void lb_st_metadata_at(const lb_st_file *f, size_t i, const char **key, const char **value);

/* All tensors of a checkpoint directory: model.safetensors, or the shards named by
 * model.safetensors.index.json (every shard mapped once; index and shards must agree). */
typedef struct lb_tensors lb_tensors;
lb_status lb_tensors_open(const char *dir, lb_tensors **out, lb_error *err);
void lb_tensors_close(lb_tensors *t);
size_t lb_tensors_count(const lb_tensors *t);
const lb_tensor *lb_tensors_at(const lb_tensors *t, size_t i); /* sorted by name */
const lb_tensor *lb_tensors_find(const lb_tensors *t, const char *name);
size_t lb_tensors_nfiles(const lb_tensors *t);

/* Streaming sharded writer. Tensors are appended as they are produced and are not kept in memory.
 * A new shard starts when the next tensor would push the current one past max_shard_bytes (0 = one
 * file). One shard is written as model.safetensors; several as model-0000i-of-0000N.safetensors plus
 * model.safetensors.index.json. Every file is written under a temporary name in `dir` and renamed
 * by lb_st_writer_finish; lb_st_writer_abort (or a failed finish) removes them. Inside a file,
 * tensors are laid out by descending element size so that every view is aligned. */
typedef struct lb_st_writer lb_st_writer;
lb_status lb_st_writer_open(const char *dir, uint64_t max_shard_bytes, lb_st_writer **out,
                            lb_error *err);
/* Adds a `__metadata__` entry (every file gets {"format":"pt"} already). */
lb_status lb_st_writer_set_metadata(lb_st_writer *w, const char *key, const char *value,
                                    lb_error *err);
lb_status lb_st_writer_add(lb_st_writer *w, const char *name, lb_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, uint64_t nbytes, lb_error *err);
/* Writes headers, shards and index, renames them into place and frees the writer (also on error). */
lb_status lb_st_writer_finish(lb_st_writer *w, lb_error *err);
void lb_st_writer_abort(lb_st_writer *w);

/* ---------------------------------------------------------------------------------------------- */
/* Model configuration (config.json) and checkpoint directories                                   */

typedef enum lb_rope_type {
  LB_ROPE_DEFAULT,
  LB_ROPE_LINEAR,
  LB_ROPE_DYNAMIC, /* dynamic NTK */
  LB_ROPE_LLAMA3,
  LB_ROPE_YARN,
} lb_rope_type;

typedef struct lb_rope {
  lb_rope_type type;
  double theta;
  double factor;                         /* linear, dynamic, llama3, yarn */
  double low_freq_factor;                /* llama3 */
  double high_freq_factor;               /* llama3 */
  int64_t original_max_position_embeddings; /* llama3, yarn; 0 when absent */
} lb_rope;

typedef struct lb_config {
  char architecture[64]; /* architectures[0], e.g. "LlamaForCausalLM" */
  char model_type[32];   /* "llama", "mistral", "qwen2" */
  char dtype[16];        /* "bfloat16", ... from dtype or torch_dtype; "" when absent */
  char hidden_act[16];   /* "silu" */
  int64_t vocab_size;
  int64_t hidden_size;
  int64_t intermediate_size;
  int64_t num_hidden_layers;
  int64_t num_attention_heads;
  int64_t num_key_value_heads; /* defaults to num_attention_heads */
  int64_t head_dim;            /* defaults to hidden_size / num_attention_heads */
  int64_t max_position_embeddings;
  double rms_norm_eps;
  lb_rope rope;
  bool tie_word_embeddings;
  bool attention_bias; /* q/k/v (and o for Llama) carry a bias; Qwen2: q/k/v always do */
  bool mlp_bias;
  int64_t sliding_window;   /* 0 = full attention (Mistral, Qwen2 with use_sliding_window) */
  int64_t max_window_layers; /* Qwen2: layers at or above this index use the window */
  int64_t bos_token_id;      /* -1 when absent */
  int64_t eos_token_ids[8];  /* eos_token_id may be a list */
  int n_eos;
} lb_config;

/* Parses config.json text (`label` names it in errors). Shape-defining keys are required; the
 * others get the defaults of the architecture's Transformers config class. */
lb_status lb_config_parse(const char *text, size_t len, const char *label, lb_config *out,
                          lb_error *err);

typedef struct lb_generation_config {
  bool present;
  int64_t bos_token_id, pad_token_id; /* -1 when absent */
  int64_t eos_token_ids[8];
  int n_eos;
  bool do_sample;
  double temperature, top_p; /* 1.0 when absent */
  int64_t top_k;             /* 50 when absent, as in Transformers */
  int64_t max_new_tokens;    /* -1 when absent */
} lb_generation_config;

typedef struct lb_checkpoint lb_checkpoint;
typedef struct lb_arch lb_arch;

/* Opens a Hugging Face checkpoint directory: config.json (required), generation_config.json and
 * tokenizer files (optional), tensors (model.safetensors or the sharded index). Checks that the
 * tensors the architecture needs exist with the shapes the config implies. */
lb_status lb_checkpoint_open(const char *dir, lb_checkpoint **out, lb_error *err);
void lb_checkpoint_close(lb_checkpoint *c);
const char *lb_checkpoint_dir(const lb_checkpoint *c);
const lb_config *lb_checkpoint_config(const lb_checkpoint *c);
const lb_generation_config *lb_checkpoint_generation(const lb_checkpoint *c);
const lb_tensors *lb_checkpoint_tensors(const lb_checkpoint *c);
/* The quantization_config object of config.json as compact JSON text, or NULL when there is none. */
const char *lb_checkpoint_quant_config(const lb_checkpoint *c);
const lb_arch *lb_checkpoint_arch(const lb_checkpoint *c);
bool lb_checkpoint_has_file(const lb_checkpoint *c, const char *name); /* tokenizer.json, ... */
/* The companion files a checkpoint folder may hold besides config.json and the weights
 * (generation_config.json, tokenizer files): the i-th name, or NULL past the end. */
const char *lb_checkpoint_companion(size_t i);

typedef struct lb_param_count {
  uint64_t total;      /* parameters of the model (tied weights once); for a quantized checkpoint
                          the Linear weights are counted by their logical [out, in] shape */
  uint64_t linear;     /* parameters in the quantizable decoder Linear layers */
  uint64_t n_linear;   /* how many such layers (7 per block for these families) */
} lb_param_count;
lb_param_count lb_checkpoint_params(const lb_checkpoint *c);

/* ---------------------------------------------------------------------------------------------- */
/* Architectures (table 3 of DESIGN.md)                                                           */

typedef enum lb_linear_kind {
  LB_LIN_Q,
  LB_LIN_K,
  LB_LIN_V,
  LB_LIN_O,
  LB_LIN_GATE,
  LB_LIN_UP,
  LB_LIN_DOWN,
  LB_LIN_COUNT
} lb_linear_kind;

struct lb_arch {
  const char *name;       /* architectures[0] */
  const char *model_type; /* config.json model_type */
  const char *embed;      /* "model.embed_tokens" */
  const char *final_norm; /* "model.norm" */
  const char *lm_head;    /* "lm_head" */
  const char *blocks;     /* prefix of the decoder blocks: block l is "<blocks>.<l>" */
  const char *linear[LB_LIN_COUNT]; /* module names inside a block, "self_attn.q_proj", ... */
  const char *attn_norm;  /* "input_layernorm" */
  const char *mlp_norm;   /* "post_attention_layernorm" */
  bool qkv_bias;          /* q/k/v projections always carry a bias (Qwen2) */
  bool sliding_window;    /* config may set a sliding attention window */
  /* Transformers config class defaults for keys that may be absent */
  double default_rms_norm_eps;
  double default_rope_theta;
  int64_t default_max_position_embeddings;
  bool default_tie_word_embeddings;
};

size_t lb_arch_count(void);
const lb_arch *lb_arch_at(size_t i);
/* Looks up by architectures[0] first, then by model_type; NULL when neither is known. */
const lb_arch *lb_arch_find(const char *architecture, const char *model_type);
/* "model.layers.<l>" into buf. */
const char *lb_arch_block(const lb_arch *a, int l, char *buf, size_t cap);
/* [out, in] of a block's Linear layer under a config. */
void lb_arch_linear_shape(const lb_config *cfg, lb_linear_kind k, int64_t *out, int64_t *in);
/* Whether a block's Linear has a bias under a config (Qwen2 q/k/v; attention_bias; mlp_bias). */
bool lb_arch_linear_has_bias(const lb_arch *a, const lb_config *cfg, lb_linear_kind k);

/* ---------------------------------------------------------------------------------------------- */
/* Memory footprint under each quantization method (like Transformers' get_memory_footprint, but
 * counting every stored companion tensor: scales, zeros, absmax, g_idx ...)                      */

typedef struct lb_footprint {
  const char *method;      /* "bf16", "int8 (LLM.int8)", "int4 g128 (GPTQ)", "nf4", ... */
  uint64_t linear_bytes;   /* the quantized Linear layers with their companions */
  uint64_t other_bytes;    /* embeddings, norms, lm_head: kept in 16-bit */
  uint64_t total_bytes;
  double linear_bits_per_weight;
} lb_footprint;

/* Fills up to `cap` rows; returns how many methods there are. */
size_t lb_footprint_table(const lb_checkpoint *c, lb_footprint *rows, size_t cap);

/* ---------------------------------------------------------------------------------------------- */
/* Tokenizer (tokenizer.json + tokenizer_config.json), the same ids as the `tokenizers` package     */

typedef struct lb_tokenizer lb_tokenizer;

/* Loads DIR/tokenizer.json (required) and DIR/tokenizer_config.json (optional: bos/eos names,
 * add_bos_token/add_eos_token). Models: BPE, either SentencePiece-style (Prepend/Replace normalizer,
 * byte fallback; Llama-2, Mistral) or byte-level (Split regex + ByteLevel pre-tokenizer; GPT-2,
 * Llama-3, Qwen); normalizers NFC/NFKC/Prepend/Replace/Sequence; added tokens. Anything else is
 * LB_EUNSUPPORTED naming the JSON key. */
lb_status lb_tokenizer_load(const char *dir, lb_tokenizer **out, lb_error *err);
void lb_tokenizer_free(lb_tokenizer *t);
int32_t lb_tokenizer_vocab_size(const lb_tokenizer *t); /* largest id + 1, added tokens included */
int32_t lb_tokenizer_bos(const lb_tokenizer *t);        /* -1 when there is none */
int32_t lb_tokenizer_eos(const lb_tokenizer *t);        /* -1 when there is none */
bool lb_tokenizer_is_special(const lb_tokenizer *t, int32_t id);
/* The vocabulary string of an id as stored in tokenizer.json ("▁the", "Ġthe", "<0x0A>", "<s>"),
 * NULL for an id out of range. */
const char *lb_tokenizer_piece(const lb_tokenizer *t, int32_t id);

enum {
  LB_TOK_ADD_SPECIAL = 1u << 0,   /* add BOS/EOS as the post-processor / tokenizer_config.json say */
  LB_TOK_SPLIT_SPECIAL = 1u << 1, /* treat special-token text ("<s>") as plain text */
};
/* Encodes `len` bytes of text (invalid UTF-8 is first replaced by U+FFFD per maximal subpart, as
 * Python's bytes.decode(errors="replace") does). *ids is malloc'd; the caller frees it. */
lb_status lb_tokenize(const lb_tokenizer *t, const char *text, size_t len, unsigned flags,
                      int32_t **ids, size_t *n, lb_error *err);

enum { LB_DETOK_SKIP_SPECIAL = 1u << 0 };
/* Decodes ids to text as tokenizers' decode() does (the decoder of tokenizer.json: byte fallback,
 * ByteLevel, Replace, Strip, Fuse). *text is malloc'd and NUL-terminated; *len excludes the NUL. */
lb_status lb_detokenize(const lb_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                        char **text, size_t *len, lb_error *err);

/* Streaming decode for generation: push one id at a time, get the bytes that became final (whole
 * UTF-8 characters only; a character split over several byte tokens is held back until complete).
 * The concatenation of all outputs plus lb_detok_stream_flush equals lb_detokenize of all ids. */
typedef struct lb_detok_stream lb_detok_stream;
lb_status lb_detok_stream_new(const lb_tokenizer *t, unsigned flags, lb_detok_stream **out,
                              lb_error *err);
/* *text points into the stream's buffer, valid until the next call; *len may be 0. */
lb_status lb_detok_stream_push(lb_detok_stream *s, int32_t id, const char **text, size_t *len,
                               lb_error *err);
lb_status lb_detok_stream_flush(lb_detok_stream *s, const char **text, size_t *len, lb_error *err);
void lb_detok_stream_free(lb_detok_stream *s);

/* ---------------------------------------------------------------------------------------------- */
/* Running a model: weights, the KV caches of one or more sequences, the forward pass              */

typedef struct lb_model lb_model;

typedef enum lb_device { LB_DEVICE_CPU, LB_DEVICE_CUDA } lb_device;

/* W8A8 for FP8 checkpoints: whether and how the activations of FP8 weights are quantized to E4M3
 * before the product (lb_fp8_act_quant), as the runtimes of these checkpoints (Transformers, vLLM)
 * run them.
 *   AUTO (the default): what the checkpoint's quantization_config declares: Transformers' "fp8"
 *     (activation_scheme "dynamic") 1 x block_c blocks; compressed-tensors input_activations
 *     dynamic per token (FP8_DYNAMIC) or per group, or static per tensor (FP8: the checkpoint's
 *     input_scale); none where it declares none, and for checkpoints without FP8 weights.
 *   OFF: activations stay fp32 (CPU) / fp16 (GPU): weights-only FP8, whatever the checkpoint says.
 *   GROUP128: dynamic 1 x 128 blocks. TOKEN: dynamic, one scale a row.
 *   STATIC: each Linear's input_scale (a checkpoint with static input_activations only); q/k/v and
 *     gate/up, which share their input, take the largest of their scales (as vLLM fuses them).
 * Modes other than AUTO and OFF are refused for a checkpoint without FP8 weights. */
typedef enum lb_fp8_act {
  LB_FP8_ACT_AUTO,
  LB_FP8_ACT_OFF,
  LB_FP8_ACT_GROUP128,
  LB_FP8_ACT_TOKEN,
  LB_FP8_ACT_STATIC,
} lb_fp8_act;

/* An FP8 KV cache (compressed-tensors kv_cache_scheme, static per tensor):
 *   AUTO (the default): as the checkpoint declares: each layer's keys (after RoPE) and values are
 *     rounded to E4M3 times the attention's k_scale / v_scale before they enter the cache, as
 *     Transformers + compressed-tensors run such checkpoints; nothing for checkpoints without one.
 *   OFF: keys and values enter the cache as computed (vLLM's kv_cache_dtype "auto").
 * The cache keeps its storage (fp32 on the CPU, fp16 on CUDA): the rounding, not the memory. */
typedef enum lb_kv_quant { LB_KV_AUTO, LB_KV_OFF } lb_kv_quant;

typedef struct lb_model_options {
  int n_threads;   /* <= 0: one per logical core */
  int64_t max_ctx; /* KV cache length; <= 0: max_position_embeddings, capped at 4096 */
  bool reference;  /* quantized weights through the scalar reference dequantization instead of
                      the packed kernels (to measure what the kernels change) */
  lb_device device; /* LB_DEVICE_CUDA: weights, KV cache and the forward pass on CUDA device 0
                       (a build with the CUDA backend); the host keeps the checkpoint mapped */
  int batch;        /* sequences, each with a KV cache of max_ctx (lb_model_forward_batch);
                       <= 0: 1; at most LB_MAX_BATCH */
  lb_fp8_act fp8_act; /* FP8 weights (LB_QK_FP8): their activations' E4M3 quantization (W8A8), on
                         the CPU and the GPU alike; the GPU then runs prefill on its FP8 tensor
                         cores. AUTO (0): as the checkpoint declares. */
  lb_kv_quant kv_quant; /* the FP8 KV cache a checkpoint declares: AUTO (0) runs it, OFF does not */
} lb_model_options;

enum { LB_MAX_BATCH = 256 };

/* Opens a checkpoint folder and prepares it to run (weights stay mmap'd in their dtype). */
lb_status lb_model_open(const char *dir, const lb_model_options *opt, lb_model **out,
                        lb_error *err);
void lb_model_free(lb_model *m);
const lb_config *lb_model_config(const lb_model *m);
const lb_checkpoint *lb_model_checkpoint(const lb_model *m);
int64_t lb_model_ctx(const lb_model *m);  /* KV cache capacity in tokens */
int64_t lb_model_pos(const lb_model *m);  /* tokens in the KV cache now (of each sequence) */
int lb_model_batch(const lb_model *m);    /* sequences (lb_model_options.batch) */
/* Bytes of KV cache one token of one sequence takes (fp16 on CUDA, fp32 on the CPU). */
uint64_t lb_model_kv_bytes(const lb_model *m);
/* The W8A8 mode the model runs (never AUTO): OFF, GROUP128 (dynamic blocks of *group columns: 128,
 * or the checkpoint's weight_block_size[1] / group_size), TOKEN or STATIC. group may be NULL. */
lb_fp8_act lb_model_fp8_act(const lb_model *m, int64_t *group);
/* Whether the model rounds its KV cache to E4M3 (lb_model_options.kv_quant resolved). */
bool lb_model_kv_fp8(const lb_model *m);
int lb_model_threads(const lb_model *m);
void lb_model_reset(lb_model *m);         /* empties the KV cache */
lb_device lb_model_device(const lb_model *m);
/* Bytes of device memory the model holds (weights, KV cache, scratch); 0 on the CPU. */
uint64_t lb_model_device_bytes(const lb_model *m);

/* Wall-clock seconds spent per op by lb_model_forward while profiling is on (enable resets them). */
typedef struct lb_model_profile {
  double qkv, attention, o_proj, gate_up, down, lm_head, other; /* other: embed, norms, rope, adds */
} lb_model_profile;
void lb_model_profile_enable(lb_model *m, bool on);
void lb_model_profile_get(const lb_model *m, lb_model_profile *out);

/* Runs n tokens at positions pos .. pos+n-1, appending them to the KV cache. logits: NULL, or
 * room for vocab_size floats (all=false: the last position) or n*vocab_size (all=true). */
lb_status lb_model_forward(lb_model *m, const int32_t *tokens, int64_t n, float *logits, bool all,
                           lb_error *err);
/* Several sequences in lockstep: n tokens of each of sequences 0 .. nseq-1 (tokens [nseq][n], nseq
 * <= lb_model_batch) at positions pos .. pos+n-1 of each one's own KV cache; logits NULL or
 * [nseq][vocab_size], each sequence's last position. The sequences share the position, so
 * sequences past nseq fall behind (their caches hold nothing at these positions) until a reset.
 * lb_model_forward is sequence 0 alone. On CUDA the sequences' rows go through each weight
 * together (one read of the weights per step for all of them); on the CPU so do decode steps
 * (n <= 4), up to 4 rows of sequences a pass, while longer calls run the sequences one after
 * another. Stacked rows go through a Linear together, so a sequence's logits may differ from
 * its run alone by fp32 rounding, and LLM.int8 takes the outlier columns of all the rows of the
 * pass, as bitsandbytes does for a batch. */
lb_status lb_model_forward_batch(lb_model *m, int64_t nseq, const int32_t *tokens, int64_t n,
                                 float *logits, lb_error *err);

/* Sampling: temperature 0 is greedy (argmax, lowest id on ties); else softmax(logits / T) cut to the
 * top_k most likely (0 = all) and to the smallest set whose mass reaches top_p (1 = all). */
typedef struct lb_sampler_params {
  double temperature, top_p;
  int64_t top_k;
  uint64_t seed;
} lb_sampler_params;
typedef struct lb_sampler lb_sampler;
lb_status lb_sampler_new(const lb_sampler_params *p, int64_t vocab, lb_sampler **out, lb_error *err);
void lb_sampler_free(lb_sampler *s);
int32_t lb_sampler_next(lb_sampler *s, const float *logits);

/* As lb_model_forward_batch, then next[q] = lb_sampler_next(samplers[q], sequence q's last
 * logits) for each of the nseq sequences (one sampler each, for the model's vocabulary). On CUDA
 * the choice is made on the device (the same rule and the sampler's own draw; the logits are
 * copied back only when logits is not NULL: [nseq][vocab_size]). */
lb_status lb_model_forward_sample(lb_model *m, int64_t nseq, const int32_t *tokens, int64_t n,
                                  lb_sampler *const *samplers, int32_t *next, float *logits,
                                  lb_error *err);

/* Perplexity over non-overlapping windows of ctx tokens of an already tokenized text: each window is
 * run from an empty cache and every position but the first predicts its next token. */
typedef struct lb_ppl_result {
  double ppl, ppl_stderr; /* exp(mean NLL); stderr by the delta method: ppl * sd(NLL) / sqrt(n) */
  double mean_nll;
  int64_t tokens;  /* predictions scored */
  int64_t windows;
  double seconds, tokens_per_s; /* tokens run through the model per second */
} lb_ppl_result;
/* progress(ctx, windows done, windows total) after each window; may be NULL. */
lb_status lb_perplexity(lb_model *m, const int32_t *tokens, int64_t n, int64_t ctx,
                        int64_t max_windows, void (*progress)(void *, int64_t, int64_t),
                        void *progress_ctx, lb_ppl_result *out, lb_error *err);
/* How far m's next-token distributions are from those of `base` (the model m was quantized from,
 * of the same vocabulary) over the same windows: at every scored position the Kullback-Leibler
 * divergence KL(base || m) in nats, from both models' log-softmax in double. */
typedef struct lb_kl_result {
  double kl_mean, kl_stderr;       /* over the positions; stderr = sd / sqrt(positions) */
  double kl_median, kl_p99, kl_max;
  double same_top;                 /* share of positions whose most likely token is the same */
  double base_ppl, base_ppl_stderr; /* base's perplexity on the same windows */
} lb_kl_result;
/* lb_perplexity of m (out), with base run on each window too (kl); base NULL: lb_perplexity. */
lb_status lb_perplexity_kl(lb_model *m, lb_model *base, const int32_t *tokens, int64_t n, int64_t ctx,
                           int64_t max_windows, void (*progress)(void *, int64_t, int64_t),
                           void *progress_ctx, lb_ppl_result *out, lb_kl_result *kl, lb_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Devices                                                                                        */

typedef struct lb_cpu_info {
  int logical_cores;
  bool avx2, fma, f16c;
  bool avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16, avx512_fp16;
  bool amx_tile, amx_int8, amx_bf16; /* CPU support; the OS must also grant tile state */
  char brand[64];
} lb_cpu_info;

/* Reads the CPU's features (cpuid with the OS's xgetbv state on x86-64; all false elsewhere). */
void lb_cpu_detect(lb_cpu_info *out);

typedef struct lb_gpu_info {
  char name[128];
  int cc_major, cc_minor;
  int sm_count;
  uint64_t memory_bytes;
} lb_gpu_info;

/* Whether this build has the CUDA backend. */
bool lb_cuda_built(void);
/* Lists up to cap CUDA devices; *count gets how many there are. A build without CUDA, or a machine
 * without a driver or device, gives count 0 and LB_OK; a driver error is LB_EIO. */
lb_status lb_cuda_devices(lb_gpu_info *out, int cap, int *count, lb_error *err);

#ifdef __cplusplus
}
#endif
#endif /* LOWBIT_H */
