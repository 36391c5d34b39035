/* Malformed checkpoint folders: missing or broken config, weights, shards and indexes, and tensors
 * that do not fit the config. Each case starts from a small valid checkpoint (the positive controls)
 * and breaks one thing. */
#include "malformed.h"

/* Positive controls: the checkpoints the cases below break, single file and sharded. */
static void ckpt_valid_control(void) {
  char dir[PATH_CAP];
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "ckpt_valid_control");
  write_checkpoint(dir, &l);
  lb_checkpoint *c = NULL;
  lb_error err = {0};
  CHECK_OK(lb_checkpoint_open(dir, &c, &err), &err);
  if (!c) return;
  CHECK(lb_tensors_count(lb_checkpoint_tensors(c)) == 20);
  CHECK(lb_checkpoint_config(c)->head_dim == 4);
  lb_param_count p = lb_checkpoint_params(c);
  CHECK(p.n_linear == 14 && p.linear == 2 * (16 * 16 * 2 + 8 * 16 * 2 + 32 * 16 * 3));
  lb_checkpoint_close(c);
}

static void ckpt_sharded_control(void) {
  char dir[PATH_CAP];
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "ckpt_sharded_control");
  write_sharded(dir, &l, 9);
  lb_checkpoint *c = NULL;
  lb_error err = {0};
  CHECK_OK(lb_checkpoint_open(dir, &c, &err), &err);
  if (!c) return;
  CHECK(lb_tensors_nfiles(lb_checkpoint_tensors(c)) == 2);
  CHECK(lb_tensors_count(lb_checkpoint_tensors(c)) == 20);
  lb_checkpoint_close(c);
}

static void dir_not_a_directory(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "dir_not_a_directory");
  join(path, dir, "model.safetensors");
  put_st(path, "{}", 0);
  EXPECT_FAIL(open_checkpoint(path, &err), LB_ENOTFOUND, &err, path, "not a directory");
  EXPECT_FAIL(open_tensors(path, &err), LB_ENOTFOUND, &err, path, "not a directory");
}

static void dir_no_config(void) {
  char dir[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "dir_no_config");
  write_checkpoint(dir, &l);
  char path[PATH_CAP];
  join(path, dir, "config.json");
  CHECK(remove(path) == 0);
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_ENOTFOUND, &err, dir, "config.json is missing");
}

static void dir_config_is_directory(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "dir_config_is_directory");
  join(path, dir, "config.json");
  CHECK(mkdir(path, 0755) == 0);
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EIO, &err, path, "not a regular file");
}

/* config.json errors inside a checkpoint name config.json's path. */
static void dir_config_nan(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "dir_config_nan");
  write_checkpoint(dir, &l);
  char *cfg = config_json(NULL, "rms_norm_eps", "NaN", NULL);
  put_text(dir, "config.json", cfg);
  free(cfg);
  join(path, dir, "config.json");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EFORMAT, &err, path, "invalid JSON", "NaN");
}

static void dir_no_safetensors(void) {
  char dir[PATH_CAP];
  lb_error err;
  case_dir(dir, "dir_no_safetensors");
  char *cfg = config_json(NULL, NULL);
  put_text(dir, "config.json", cfg);
  free(cfg);
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_ENOTFOUND, &err, dir,
              "no model.safetensors or model.safetensors.index.json");
  CHECK(!strstr(err.msg, "pytorch_model.bin"));
}

static void dir_pytorch_bin_only(void) {
  char dir[PATH_CAP];
  lb_error err;
  case_dir(dir, "dir_pytorch_bin_only");
  char *cfg = config_json(NULL, NULL);
  put_text(dir, "config.json", cfg);
  free(cfg);
  put_text(dir, "pytorch_model.bin", "PK\3\4 not really a zip");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_ENOTFOUND, &err, dir, "no model.safetensors",
              "pytorch_model.bin is a pickle; convert it to safetensors");
}

/* A malformed model.safetensors inside a checkpoint: the message names that file. */
static void dir_truncated_model(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "dir_truncated_model");
  write_checkpoint(dir, &l);
  join(path, dir, "model.safetensors");
  size_t len = 0;
  char *bytes = lb_test_read_file(path, &len);
  CHECK(bytes && len > 100);
  if (!bytes) return;
  put_file(path, bytes, len - 100);
  free(bytes);
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EFORMAT, &err, path, "run past the data buffer",
              "model.layers.1.mlp.down_proj.weight");
}

static void idx_missing_shard(void) {
  char dir[PATH_CAP], path[PATH_CAP], index[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "idx_missing_shard");
  write_sharded(dir, &l, 9);
  join(path, dir, SHARD2);
  CHECK(remove(path) == 0);
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_ENOTFOUND, &err, index,
              "shard '" SHARD2 "' (holding 'model.layers.0.mlp.up_proj.weight') does not exist");
}

/* The index puts a tensor in a shard that does not hold it (it holds nothing by that name). */
static void idx_tensor_not_in_shard(void) {
  char dir[PATH_CAP], index[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "idx_tensor_not_in_shard");
  write_sharded(dir, &l, 9);
  tl_remove(&l, "model.layers.1.mlp.up_proj.weight");
  char path[PATH_CAP];
  join(path, dir, SHARD2);
  write_tensors(path, &l, 9, l.n); /* the index still lists up_proj in shard 2 */
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_ENOTFOUND, &err, index,
              "weight_map names 'model.layers.1.mlp.up_proj.weight' in '" SHARD2 "'",
              "does not hold it");
}

static void idx_path_traversal(void) {
  char dir[PATH_CAP], index[PATH_CAP];
  lb_error err;
  case_dir(dir, "idx_path_traversal");
  put_text(dir, "model.safetensors.index.json",
           "{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}");
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, index, "weight_map['model.norm.weight']",
              "expected a file name in the folder");
}

static void idx_absolute_path(void) {
  char dir[PATH_CAP], index[PATH_CAP];
  lb_error err;
  case_dir(dir, "idx_absolute_path");
  put_text(dir, "model.safetensors.index.json",
           "{\"weight_map\": {\"model.norm.weight\": \"/etc/passwd\"}}");
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, index, "weight_map['model.norm.weight']",
              "expected a file name in the folder");
}

static void idx_value_not_string(void) {
  char dir[PATH_CAP], index[PATH_CAP];
  lb_error err;
  case_dir(dir, "idx_value_not_string");
  put_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": 1}}");
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, index, "weight_map['model.norm.weight']",
              "expected a file name");
}

static void idx_no_weight_map(void) {
  char dir[PATH_CAP], index[PATH_CAP];
  lb_error err;
  case_dir(dir, "idx_no_weight_map");
  put_text(dir, "model.safetensors.index.json", "{\"metadata\": {\"total_size\": 0}}");
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, index,
              "expected an object with a 'weight_map' object");
}

static void idx_bad_json(void) {
  char dir[PATH_CAP], index[PATH_CAP];
  lb_error err;
  case_dir(dir, "idx_bad_json");
  put_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"b\",}}");
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, index, "invalid JSON", ":1:");
}

/* A shard holds a tensor the index does not list at all. */
static void idx_unlisted_tensor(void) {
  char dir[PATH_CAP], index[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "idx_unlisted_tensor");
  write_sharded(dir, &l, 9);
  tl_add(&l, "model.extra.weight", 16, 0);
  join(path, dir, SHARD2);
  write_tensors(path, &l, 9, l.n);
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, index,
              "tensor 'model.extra.weight' in '" SHARD2 "'", "not listed by the index");
}

/* The same tensor in both shards; the index names shard 1 for it. */
static void idx_tensor_in_two_shards(void) {
  char dir[PATH_CAP], index[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "idx_tensor_in_two_shards");
  write_sharded(dir, &l, 9);
  /* shard 2 gets a copy of model.norm.weight (tensor 1, in shard 1) */
  tlist l2;
  l2.n = 0;
  for (int i = 9; i < l.n; i++) l2.t[l2.n++] = l.t[i];
  l2.t[l2.n++] = l.t[1];
  join(path, dir, SHARD2);
  write_tensors(path, &l2, 0, l2.n);
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, index,
              "tensor 'model.norm.weight' is stored twice", "in '" SHARD1 "' and '" SHARD2 "'");
}

/* A shard itself malformed: the message names the shard, not the index. */
static void idx_shard_malformed(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "idx_shard_malformed");
  write_sharded(dir, &l, 9);
  l.t[0].dtype = "F31";
  join(path, dir, SHARD1);
  write_tensors(path, &l, 0, 9);
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, path,
              "tensor 'model.embed_tokens.weight'", "unknown dtype 'F31'");
}

static void ckpt_q_proj_wrong_shape(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  tl_get(&l, "model.layers.1.self_attn.q_proj.weight")->shape[1] = 15;
  case_dir(dir, "ckpt_q_proj_wrong_shape");
  write_checkpoint(dir, &l);
  join(path, dir, "model.safetensors");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EFORMAT, &err, path,
              "tensor 'model.layers.1.self_attn.q_proj.weight' has shape [16, 15]",
              "config.json implies [16, 16]");
}

/* A transposed Linear weight ([in, out]) is the classic conversion mistake. */
static void ckpt_transposed_weight(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  tdesc *t = tl_get(&l, "model.layers.0.mlp.down_proj.weight");
  t->shape[0] = 32, t->shape[1] = 16;
  case_dir(dir, "ckpt_transposed_weight");
  write_checkpoint(dir, &l);
  join(path, dir, "model.safetensors");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EFORMAT, &err, path,
              "tensor 'model.layers.0.mlp.down_proj.weight' has shape [32, 16]",
              "config.json implies [16, 32]");
}

static void ckpt_norm_two_dims(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  tdesc *t = tl_get(&l, "model.norm.weight");
  t->ndim = 2, t->shape[0] = 1, t->shape[1] = 16;
  case_dir(dir, "ckpt_norm_two_dims");
  write_checkpoint(dir, &l);
  join(path, dir, "model.safetensors");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EFORMAT, &err, path,
              "tensor 'model.norm.weight' has shape [1, 16]", "config.json implies [16]");
}

static void ckpt_missing_layer_weight(void) {
  char dir[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  tl_remove(&l, "model.layers.1.self_attn.v_proj.weight");
  case_dir(dir, "ckpt_missing_layer_weight");
  write_checkpoint(dir, &l);
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_ENOTFOUND, &err, dir,
              "tensor 'model.layers.1.self_attn.v_proj.weight' is missing");
}

/* tie_word_embeddings false needs lm_head.weight, which the tiny checkpoint does not have. */
static void ckpt_missing_lm_head(void) {
  char dir[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "ckpt_missing_lm_head");
  write_checkpoint(dir, &l);
  char *cfg = config_json(NULL, "tie_word_embeddings", "false", NULL);
  put_text(dir, "config.json", cfg);
  free(cfg);
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_ENOTFOUND, &err, dir,
              "tensor 'lm_head.weight' is missing");
}

/* attention_bias true needs q/k/v/o biases. */
static void ckpt_missing_bias(void) {
  char dir[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "ckpt_missing_bias");
  write_checkpoint(dir, &l);
  char *cfg = config_json(NULL, "attention_bias", "true", NULL);
  put_text(dir, "config.json", cfg);
  free(cfg);
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_ENOTFOUND, &err, dir,
              "tensor 'model.layers.0.self_attn.q_proj.bias' is missing");
}

static void ckpt_integer_dtype(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  tl_get(&l, "model.layers.0.mlp.gate_proj.weight")->dtype = "I32";
  case_dir(dir, "ckpt_integer_dtype");
  write_checkpoint(dir, &l);
  join(path, dir, "model.safetensors");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EFORMAT, &err, path,
              "tensor 'model.layers.0.mlp.gate_proj.weight' is I32",
              "expected a floating-point type");
}

static void ckpt_quant_config_not_object(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "ckpt_quant_config_not_object");
  write_checkpoint(dir, &l);
  char *cfg = config_json(NULL, "quantization_config", "\"gptq\"", NULL);
  put_text(dir, "config.json", cfg);
  free(cfg);
  join(path, dir, "config.json");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EINVAL, &err, path, "key 'quantization_config'",
              "expected an object, got string");
}

/* generation_config.json that is not JSON (the failure happens while loading it). */
static void ckpt_generation_config_bad_json(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "ckpt_generation_config_bad_json");
  write_checkpoint(dir, &l);
  put_text(dir, "generation_config.json", "{\"temperature\": 0.7,}");
  join(path, dir, "generation_config.json");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EFORMAT, &err, path, "invalid JSON");
}

/* Regression (leak, fixed): checkpoint.c load_configs only calls json_decref(root) on generation_config.json when
 * lb_generation_config_from_json succeeds; a valid JSON file with a bad value leaks the tree. */
static void ckpt_generation_config_bad_value(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "ckpt_generation_config_bad_value");
  write_checkpoint(dir, &l);
  put_text(dir, "generation_config.json", "{\"temperature\": \"hot\", \"top_k\": 20}");
  join(path, dir, "generation_config.json");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EINVAL, &err, path, "key 'temperature'",
              "expected a number, got string");
}

/* Regression (stack buffer overflow, fixed): checkpoint.c expect() formats the stored shape into char got[96]
 * with snprintf, then strcat(got, "]") writes past the end when the shape text filled it. A legal
 * 8-dim shape with a zero (0 bytes of data) and large sizes does that. */
static void ckpt_long_shape_message(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  tdesc *t = tl_get(&l, "model.embed_tokens.weight");
  t->ndim = 8;
  t->shape[0] = 0;
  for (int d = 1; d < 8; d++) t->shape[d] = 1000000000000000000;
  case_dir(dir, "ckpt_long_shape_message");
  write_checkpoint(dir, &l);
  join(path, dir, "model.safetensors");
  EXPECT_FAIL(open_checkpoint(dir, &err), LB_EFORMAT, &err, path,
              "tensor 'model.embed_tokens.weight' has shape [0, 1000000000000000000",
              "config.json implies [64, 16]");
}

/* Regression (wrong acceptance, fixed): tensors.c open_index accepts {"weight_map": {}} and opens a checkpoint
 * with no files and no tensors, although model.safetensors sits beside it. lb_checkpoint_open then
 * fails later with "tensor 'model.embed_tokens.weight' is missing", which points the wrong way. */
static void idx_empty_weight_map(void) {
  char dir[PATH_CAP], index[PATH_CAP];
  lb_error err;
  tlist l;
  llama_tensors(&l);
  case_dir(dir, "idx_empty_weight_map");
  write_checkpoint(dir, &l);
  put_text(dir, "model.safetensors.index.json", "{\"weight_map\": {}}");
  join(index, dir, "model.safetensors.index.json");
  EXPECT_FAIL(open_tensors(dir, &err), LB_EFORMAT, &err, index, "weight_map");
}

#define T(f) {#f, f}
static const lb_test_case CASES[] = {
    T(ckpt_valid_control),
    T(ckpt_sharded_control),
    T(dir_not_a_directory),
    T(dir_no_config),
    T(dir_config_is_directory),
    T(dir_config_nan),
    T(dir_no_safetensors),
    T(dir_pytorch_bin_only),
    T(dir_truncated_model),
    T(idx_missing_shard),
    T(idx_tensor_not_in_shard),
    T(idx_path_traversal),
    T(idx_absolute_path),
    T(idx_value_not_string),
    T(idx_no_weight_map),
    T(idx_bad_json),
    T(idx_unlisted_tensor),
    T(idx_tensor_in_two_shards),
    T(idx_shard_malformed),
    T(ckpt_q_proj_wrong_shape),
    T(ckpt_transposed_weight),
    T(ckpt_norm_two_dims),
    T(ckpt_missing_layer_weight),
    T(ckpt_missing_lm_head),
    T(ckpt_missing_bias),
    T(ckpt_integer_dtype),
    T(ckpt_quant_config_not_object),
    T(ckpt_generation_config_bad_json),
    T(ckpt_generation_config_bad_value),
    T(ckpt_long_shape_message),
    T(idx_empty_weight_map),
};

int main(int argc, char **argv) {
  return lb_test_main(argc, argv, CASES, sizeof CASES / sizeof CASES[0]);
}
