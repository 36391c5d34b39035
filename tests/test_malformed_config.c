/* Malformed config.json: NaN/Infinity, wrong types, out-of-range and missing keys, inconsistent
 * heads, unsupported architectures and RoPE types. Each message must name the file and the key. */
#include "malformed.h"

/* Writes `text` as <case>/config.json, reads it back and parses it with the path as label. */
static lb_status config_case(const char *name, const char *text, char *path, lb_config *cfg,
                             lb_error *err) {
  char dir[PATH_CAP];
  case_dir(dir, name);
  join(path, dir, "config.json");
  put_file(path, text, strlen(text));
  size_t len = 0;
  char *back = lb_test_read_file(path, &len);
  CHECK(back != NULL);
  memset(err, 0, sizeof *err);
  memset(cfg, 0, sizeof *cfg);
  lb_status s = back ? lb_config_parse(back, len, path, cfg, err) : LB_EIO;
  free(back);
  return s;
}

/* The common shape of a config case: build, parse, expect a failure naming the path and the rest. */
static void cfg_expect(const char *name, char *text, lb_status want, const char *s1,
                       const char *s2) {
  char path[PATH_CAP];
  lb_config cfg;
  lb_error err;
  lb_status s = config_case(name, text, path, &cfg, &err);
  free(text);
  EXPECT_FAIL(s, want, &err, path, s1 ? s1 : "", s2 ? s2 : "");
}

static void cfg_valid_control(void) {
  char path[PATH_CAP];
  lb_config cfg;
  lb_error err;
  char *text = config_json(NULL, NULL);
  CHECK_OK(config_case("cfg_valid_control", text, path, &cfg, &err), &err);
  free(text);
  CHECK(strcmp(cfg.architecture, "LlamaForCausalLM") == 0);
  CHECK(cfg.hidden_size == 16 && cfg.head_dim == 4 && cfg.num_key_value_heads == 2);
  CHECK(cfg.vocab_size == 64 && cfg.num_hidden_layers == 2 && cfg.tie_word_embeddings);
}

/* Python's json module writes NaN and Infinity, which are not JSON. */
static void cfg_nan(void) {
  cfg_expect("cfg_nan", config_json(NULL, "rms_norm_eps", "NaN", NULL), LB_EFORMAT, "invalid JSON",
             "near 'NaN'");
}

static void cfg_infinity(void) {
  cfg_expect("cfg_infinity", config_json(NULL, "rope_theta", "Infinity", NULL), LB_EFORMAT,
             "invalid JSON", "near 'Infinity'");
}

static void cfg_neg_infinity(void) {
  cfg_expect("cfg_neg_infinity", config_json(NULL, "rms_norm_eps", "-Infinity", NULL), LB_EFORMAT,
             "invalid JSON", "near '-'");
}

static void cfg_huge_number(void) {
  cfg_expect("cfg_huge_number", config_json(NULL, "rope_theta", "1e999", NULL), LB_EFORMAT,
             "invalid JSON", "real number overflow");
}

/* 1e-999 underflows to 0, which the range check must catch. */
static void cfg_eps_underflow(void) {
  cfg_expect("cfg_eps_underflow", config_json(NULL, "rms_norm_eps", "1e-999", NULL), LB_EINVAL,
             "key 'rms_norm_eps'", "is outside");
}

static void cfg_hidden_string(void) {
  cfg_expect("cfg_hidden_string", config_json(NULL, "hidden_size", "\"512\"", NULL), LB_EINVAL,
             "key 'hidden_size'", "expected an integer, got string");
}

static void cfg_hidden_zero(void) {
  cfg_expect("cfg_hidden_zero", config_json(NULL, "hidden_size", "0", NULL), LB_EINVAL,
             "key 'hidden_size'", "0 is outside [1, ");
}

static void cfg_hidden_negative(void) {
  cfg_expect("cfg_hidden_negative", config_json(NULL, "hidden_size", "-16", NULL), LB_EINVAL,
             "key 'hidden_size'", "-16 is outside [1, ");
}

static void cfg_hidden_fraction(void) {
  cfg_expect("cfg_hidden_fraction", config_json(NULL, "hidden_size", "16.5", NULL), LB_EINVAL,
             "key 'hidden_size'", "expected an integer, got number");
}

static void cfg_layers_bool(void) {
  cfg_expect("cfg_layers_bool", config_json(NULL, "num_hidden_layers", "true", NULL), LB_EINVAL,
             "key 'num_hidden_layers'", "expected an integer, got boolean");
}

static void cfg_missing_hidden(void) {
  cfg_expect("cfg_missing_hidden", config_json(NULL, "hidden_size", DROP, NULL), LB_ENOTFOUND,
             "required key 'hidden_size' is missing", NULL);
}

/* null counts as absent */
static void cfg_null_hidden(void) {
  cfg_expect("cfg_null_hidden", config_json(NULL, "hidden_size", "null", NULL), LB_ENOTFOUND,
             "required key 'hidden_size' is missing", NULL);
}

static void cfg_missing_layers(void) {
  cfg_expect("cfg_missing_layers", config_json(NULL, "num_hidden_layers", DROP, NULL),
             LB_ENOTFOUND, "required key 'num_hidden_layers' is missing", NULL);
}

static void cfg_missing_vocab(void) {
  cfg_expect("cfg_missing_vocab", config_json(NULL, "vocab_size", DROP, NULL), LB_ENOTFOUND,
             "required key 'vocab_size' is missing", NULL);
}

static void cfg_missing_intermediate(void) {
  cfg_expect("cfg_missing_intermediate", config_json(NULL, "intermediate_size", DROP, NULL),
             LB_ENOTFOUND, "required key 'intermediate_size' is missing", NULL);
}

static void cfg_vocab_too_big(void) {
  cfg_expect("cfg_vocab_too_big", config_json(NULL, "vocab_size", "16777217", NULL), LB_EINVAL,
             "key 'vocab_size'", "16777217 is outside");
}

static void cfg_heads_not_multiple_of_kv(void) {
  cfg_expect("cfg_heads_not_multiple_of_kv",
             config_json(NULL, "num_key_value_heads", "3", NULL), LB_EINVAL,
             "num_attention_heads 4 is not a multiple of num_key_value_heads 3", NULL);
}

static void cfg_hidden_not_multiple_of_heads(void) {
  cfg_expect("cfg_hidden_not_multiple_of_heads", config_json(NULL, "hidden_size", "18", NULL),
             LB_EINVAL, "hidden_size 18 is not a multiple of num_attention_heads 4",
             "no head_dim");
}

static void cfg_head_dim_odd(void) {
  cfg_expect("cfg_head_dim_odd", config_json(NULL, "head_dim", "5", NULL), LB_EINVAL,
             "head_dim 5 is odd", NULL);
}

static void cfg_unknown_architecture(void) {
  cfg_expect("cfg_unknown_architecture",
             config_json(NULL, "architectures", "[\"GPT2LMHeadModel\"]", "model_type", "\"gpt2\"",
                         NULL),
             LB_EUNSUPPORTED, "architecture 'GPT2LMHeadModel' (model_type 'gpt2') is not supported",
             "known: LlamaForCausalLM");
}

static void cfg_no_architecture(void) {
  cfg_expect("cfg_no_architecture",
             config_json(NULL, "architectures", DROP, "model_type", DROP, NULL), LB_ENOTFOUND,
             "neither 'architectures' nor 'model_type'", NULL);
}

static void cfg_architectures_not_list(void) {
  cfg_expect("cfg_architectures_not_list",
             config_json(NULL, "architectures", "\"LlamaForCausalLM\"", NULL), LB_EINVAL,
             "key 'architectures'", "expected a list of names");
}

static void cfg_model_type_too_long(void) {
  cfg_expect("cfg_model_type_too_long",
             config_json(NULL, "model_type", "\"llama-llama-llama-llama-llama-llama\"", NULL),
             LB_EINVAL, "key 'model_type'", "string longer than 31 bytes");
}

static void cfg_rope_type_unsupported(void) {
  cfg_expect("cfg_rope_type_unsupported",
             config_json("\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 4.0}", NULL),
             LB_EUNSUPPORTED, "rope_scaling: rope type 'longrope' is not supported", "llama3");
}

static void cfg_rope_factor_missing(void) {
  cfg_expect("cfg_rope_factor_missing",
             config_json("\"rope_scaling\": {\"type\": \"linear\"}", NULL), LB_ENOTFOUND,
             "rope_scaling: required key 'factor' is missing", NULL);
}

static void cfg_rope_llama3_freq_order(void) {
  cfg_expect("cfg_rope_llama3_freq_order",
             config_json("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
                         "\"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0, "
                         "\"original_max_position_embeddings\": 8192}",
                         NULL),
             LB_EINVAL, "rope_scaling", "high_freq_factor must exceed low_freq_factor");
}

static void cfg_rope_scaling_not_object(void) {
  cfg_expect("cfg_rope_scaling_not_object", config_json("\"rope_scaling\": \"linear\"", NULL),
             LB_EINVAL, "key 'rope_scaling'", "expected an object or null, got string");
}

static void cfg_rope_theta_zero(void) {
  cfg_expect("cfg_rope_theta_zero", config_json(NULL, "rope_theta", "0", NULL), LB_EINVAL,
             "key 'rope_theta'", "is outside");
}

static void cfg_bool_as_string(void) {
  cfg_expect("cfg_bool_as_string", config_json(NULL, "tie_word_embeddings", "\"true\"", NULL),
             LB_EINVAL, "key 'tie_word_embeddings'", "expected true or false, got string");
}

static void cfg_eos_too_many(void) {
  cfg_expect("cfg_eos_too_many",
             config_json(NULL, "eos_token_id", "[1,2,3,4,5,6,7,8,9]", NULL), LB_EINVAL,
             "key 'eos_token_id'", "more than 8 ids");
}

static void cfg_eos_negative(void) {
  cfg_expect("cfg_eos_negative", config_json(NULL, "eos_token_id", "[2, -1]", NULL), LB_EINVAL,
             "key 'eos_token_id'[1]", "expected a token id");
}

static void cfg_sliding_window_zero(void) {
  cfg_expect("cfg_sliding_window_zero",
             config_json(NULL, "architectures", "[\"MistralForCausalLM\"]", "model_type",
                         "\"mistral\"", "sliding_window", "0", NULL),
             LB_EINVAL, "key 'sliding_window'", "0 is outside");
}

static void cfg_bad_json(void) {
  cfg_expect("cfg_bad_json", config_json("\"hidden_act\": \"silu\",", NULL), LB_EFORMAT,
             "invalid JSON", NULL);
}

/* A key given twice (a hand-edited config) is an error, not a silent last-one-wins. */
static void cfg_duplicate_key(void) {
  cfg_expect("cfg_duplicate_key", config_json("\"hidden_size\": 32", NULL), LB_EFORMAT,
             "duplicate object key", "hidden_size");
}

static void cfg_root_array(void) {
  char *t = malloc(64);
  if (!t) abort();
  strcpy(t, "[{\"hidden_size\": 16}]");
  cfg_expect("cfg_root_array", t, LB_EFORMAT, "expected a JSON object", NULL);
}

static void cfg_empty(void) {
  char *t = calloc(1, 1);
  if (!t) abort();
  cfg_expect("cfg_empty", t, LB_EFORMAT, "invalid JSON", NULL);
}

/* Regression (truncated message, fixed): config.c parse_rope builds "<path>: rope_scaling" in char label[160],
 * so under a long path the message loses the key name and the end of the path. */
static void cfg_rope_error_long_path(void) {
  char name[200];
  memset(name, 'd', 150);
  strcpy(name + 150, "_cfg_rope_error_long_path");
  cfg_expect(name, config_json("\"rope_scaling\": {\"type\": \"linear\"}", NULL), LB_ENOTFOUND,
             "rope_scaling: required key 'factor' is missing", NULL);
}

#define T(f) {#f, f}
static const lb_test_case CASES[] = {
    T(cfg_valid_control),
    T(cfg_nan),
    T(cfg_infinity),
    T(cfg_neg_infinity),
    T(cfg_huge_number),
    T(cfg_eps_underflow),
    T(cfg_hidden_string),
    T(cfg_hidden_zero),
    T(cfg_hidden_negative),
    T(cfg_hidden_fraction),
    T(cfg_layers_bool),
    T(cfg_missing_hidden),
    T(cfg_null_hidden),
    T(cfg_missing_layers),
    T(cfg_missing_vocab),
    T(cfg_missing_intermediate),
    T(cfg_vocab_too_big),
    T(cfg_heads_not_multiple_of_kv),
    T(cfg_hidden_not_multiple_of_heads),
    T(cfg_head_dim_odd),
    T(cfg_unknown_architecture),
    T(cfg_no_architecture),
    T(cfg_architectures_not_list),
    T(cfg_model_type_too_long),
    T(cfg_rope_type_unsupported),
    T(cfg_rope_factor_missing),
    T(cfg_rope_llama3_freq_order),
    T(cfg_rope_scaling_not_object),
    T(cfg_rope_theta_zero),
    T(cfg_bool_as_string),
    T(cfg_eos_too_many),
    T(cfg_eos_negative),
    T(cfg_sliding_window_zero),
    T(cfg_bad_json),
    T(cfg_duplicate_key),
    T(cfg_root_array),
    T(cfg_empty),
    T(cfg_rope_error_long_path),
};

int main(int argc, char **argv) {
  return lb_test_main(argc, argv, CASES, sizeof CASES / sizeof CASES[0]);
}
