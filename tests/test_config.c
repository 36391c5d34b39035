/* config.json parsing over the key sets of real published configs (tests/data/configs), both key
 * styles, the family defaults of Transformers' config classes, and the architecture table. */
#include "test.h"

static lb_status parse_fixture(const char *name, lb_config *c, lb_error *err) {
  size_t len;
  char *text = lb_test_read_file(lb_test_data(name), &len);
  if (!text) {
    fprintf(stderr, "FATAL: fixture %s missing\n", lb_test_data(name));
    exit(2);
  }
  lb_status s = lb_config_parse(text, len, name, c, err);
  free(text);
  return s;
}

static lb_status parse_text(const char *text, lb_config *c, lb_error *err) {
  return lb_config_parse(text, strlen(text), "config.json", c, err);
}

static void test_old_style_llama2(void) {
  lb_config c;
  lb_error err = {0};
  CHECK_OK(parse_fixture("configs/llama2-7b.json", &c, &err), &err);
  CHECK(!strcmp(c.architecture, "LlamaForCausalLM") && !strcmp(c.model_type, "llama"));
  CHECK(c.hidden_size == 4096 && c.intermediate_size == 11008 && c.num_hidden_layers == 32);
  CHECK(c.num_attention_heads == 32 && c.num_key_value_heads == 32);
  CHECK(c.head_dim == 128); /* hidden_size / num_attention_heads when head_dim is absent */
  CHECK(c.rope.type == LB_ROPE_DEFAULT && c.rope.theta == 10000.0); /* LlamaConfig default */
  CHECK(!strcmp(c.dtype, "float16"));                               /* from torch_dtype */
  CHECK(c.rms_norm_eps == 1e-5 && !c.tie_word_embeddings && c.max_position_embeddings == 4096);
  CHECK(c.bos_token_id == 1 && c.n_eos == 1 && c.eos_token_ids[0] == 2);
  CHECK(c.sliding_window == 0 && !c.attention_bias && !c.mlp_bias);
}

static void test_llama3_rope_scaling_old_style(void) {
  lb_config c;
  lb_error err = {0};
  CHECK_OK(parse_fixture("configs/llama3.1-8b-instruct.json", &c, &err), &err);
  CHECK(c.rope.type == LB_ROPE_LLAMA3 && c.rope.theta == 500000.0 && c.rope.factor == 8.0);
  CHECK(c.rope.low_freq_factor == 1.0 && c.rope.high_freq_factor == 4.0);
  CHECK(c.rope.original_max_position_embeddings == 8192);
  CHECK(c.n_eos == 3 && c.eos_token_ids[0] == 128001 && c.eos_token_ids[2] == 128009);
  CHECK(c.num_key_value_heads == 8 && c.vocab_size == 128256);
}

static void test_new_style_rope_parameters(void) {
  lb_config c;
  lb_error err = {0};
  CHECK_OK(parse_fixture("configs/llama3.2-1b-v5.json", &c, &err), &err);
  CHECK(c.rope.type == LB_ROPE_LLAMA3 && c.rope.theta == 500000.0 && c.rope.factor == 32.0);
  CHECK(!strcmp(c.dtype, "bfloat16")); /* from dtype */
  CHECK(c.tie_word_embeddings && c.head_dim == 64);
  /* the shared model is written in this style too */
  size_t len;
  char *text = lb_test_read_file(lb_test_shared("models/pocket-llama-48m/config.json"), &len);
  CHECK_OK(lb_config_parse(text, len, "pocket", &c, &err), &err);
  free(text);
  CHECK(c.rope.type == LB_ROPE_DEFAULT && c.rope.theta == 10000.0 && c.head_dim == 64);
  CHECK(c.num_key_value_heads == 4 && c.tie_word_embeddings && !strcmp(c.dtype, "bfloat16"));
}

static void test_other_rope_types(void) {
  lb_config c;
  lb_error err = {0};
  const char *base = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,"
                     "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                     "\"vocab_size\":100,";
  char buf[1024];
  snprintf(buf, sizeof buf, "%s\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}", base);
  CHECK_OK(parse_text(buf, &c, &err), &err);
  CHECK(c.rope.type == LB_ROPE_LINEAR && c.rope.factor == 2.0);
  snprintf(buf, sizeof buf, "%s\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":4}}", base);
  CHECK_OK(parse_text(buf, &c, &err), &err);
  CHECK(c.rope.type == LB_ROPE_DYNAMIC && c.rope.factor == 4.0);
  snprintf(buf, sizeof buf, "%s\"rope_scaling\":{\"type\":\"su\",\"factor\":4}}", base);
  CHECK(parse_text(buf, &c, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "rope type 'su'") != NULL);
  snprintf(buf, sizeof buf, "%s\"rope_scaling\":{\"rope_type\":\"linear\"}}", base);
  CHECK(parse_text(buf, &c, &err) == LB_ENOTFOUND);
  CHECK(strstr(err.msg, "rope_scaling") && strstr(err.msg, "'factor'"));
  /* defaults of LlamaConfig for absent keys */
  snprintf(buf, sizeof buf, "%s\"model_type\":\"llama\"}", base);
  CHECK_OK(parse_text(buf, &c, &err), &err);
  CHECK(c.rms_norm_eps == 1e-6 && c.max_position_embeddings == 2048 && !c.tie_word_embeddings);
  CHECK(c.num_key_value_heads == 4 && c.head_dim == 16 && c.bos_token_id == -1 && c.n_eos == 0);
}

static void test_mistral_sliding_window(void) {
  lb_config c;
  lb_error err = {0};
  CHECK_OK(parse_fixture("configs/mistral-7b-v0.1.json", &c, &err), &err);
  CHECK(!strcmp(c.architecture, "MistralForCausalLM") && c.sliding_window == 4096);
  CHECK_OK(parse_fixture("configs/mistral-7b-instruct-v0.3.json", &c, &err), &err);
  CHECK(c.sliding_window == 0); /* explicit null: full attention */
  CHECK(c.rope.theta == 1e6 && c.vocab_size == 32768 && c.head_dim == 128);
  /* absent: MistralConfig's default window of 4096 */
  const char *t = "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,"
                  "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}";
  CHECK_OK(parse_text(t, &c, &err), &err);
  CHECK(c.sliding_window == 4096 && !strcmp(c.architecture, "MistralForCausalLM"));
}

static void test_qwen2(void) {
  lb_config c;
  lb_error err = {0};
  CHECK_OK(parse_fixture("configs/qwen2-0.5b.json", &c, &err), &err);
  CHECK(c.sliding_window == 0); /* use_sliding_window false */
  CHECK(c.head_dim == 64 && c.num_key_value_heads == 2 && c.tie_word_embeddings);
  CHECK(c.rms_norm_eps == 1e-6 && c.rope.theta == 1e6 && c.max_window_layers == 24);
  const lb_arch *a = lb_arch_find(c.architecture, c.model_type);
  CHECK(a && !strcmp(a->name, "Qwen2ForCausalLM"));
  CHECK(lb_arch_linear_has_bias(a, &c, LB_LIN_Q) && lb_arch_linear_has_bias(a, &c, LB_LIN_V));
  CHECK(!lb_arch_linear_has_bias(a, &c, LB_LIN_O) && !lb_arch_linear_has_bias(a, &c, LB_LIN_DOWN));
  CHECK_OK(parse_fixture("configs/qwen2.5-7b-instruct-awq.json", &c, &err), &err);
  CHECK(c.hidden_size == 3584 && c.num_attention_heads == 28 && c.head_dim == 128);
}

static void test_arch_table(void) {
  CHECK(lb_arch_count() == 3);
  for (size_t i = 0; i < lb_arch_count(); i++) {
    const lb_arch *a = lb_arch_at(i);
    CHECK(lb_arch_find(a->name, NULL) == a && lb_arch_find(NULL, a->model_type) == a);
    for (int k = 0; k < LB_LIN_COUNT; k++) CHECK(a->linear[k] && a->linear[k][0]);
    char b[64];
    CHECK(!strcmp(lb_arch_block(a, 7, b, sizeof b), "model.layers.7"));
  }
  CHECK(lb_arch_find("GPT2LMHeadModel", "gpt2") == NULL);
  /* GQA shapes of Llama-3.1-8B: q 4096x4096, k/v 1024x4096, o 4096x4096, MLP 14336 */
  lb_config c;
  lb_error err = {0};
  CHECK_OK(parse_fixture("configs/llama3.1-8b-instruct.json", &c, &err), &err);
  int64_t o, in;
  lb_arch_linear_shape(&c, LB_LIN_K, &o, &in);
  CHECK(o == 1024 && in == 4096);
  lb_arch_linear_shape(&c, LB_LIN_O, &o, &in);
  CHECK(o == 4096 && in == 4096);
  lb_arch_linear_shape(&c, LB_LIN_DOWN, &o, &in);
  CHECK(o == 4096 && in == 14336);
  lb_arch_linear_shape(&c, LB_LIN_GATE, &o, &in);
  CHECK(o == 14336 && in == 4096);
  const lb_arch *llama = lb_arch_find("LlamaForCausalLM", NULL);
  CHECK(!lb_arch_linear_has_bias(llama, &c, LB_LIN_Q));
  c.attention_bias = true;
  CHECK(lb_arch_linear_has_bias(llama, &c, LB_LIN_O) && !lb_arch_linear_has_bias(llama, &c, LB_LIN_UP));
}

static void test_errors_name_key(void) {
  lb_config c;
  lb_error err = {0};
  CHECK(parse_text("{\"model_type\":\"llama\",\"vocab_size\":9,\"hidden_size\":\"512\"}", &c, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "config.json") && strstr(err.msg, "'hidden_size'") &&
        strstr(err.msg, "expected an integer"));
  CHECK(parse_text("{\"model_type\":\"llama\",\"hidden_size\":64}", &c, &err) == LB_ENOTFOUND);
  CHECK(strstr(err.msg, "'vocab_size'") != NULL);
  CHECK(parse_text("{\"model_type\":\"llama\",\"hidden_size\":NaN}", &c, &err) == LB_EFORMAT);
  CHECK(strstr(err.msg, "config.json:1:") != NULL); /* line and column of the bad token */
  CHECK(parse_text("{\"architectures\":[\"FalconForCausalLM\"]}", &c, &err) == LB_EUNSUPPORTED);
  CHECK(strstr(err.msg, "FalconForCausalLM") && strstr(err.msg, "LlamaForCausalLM"));
}

int main(int argc, char **argv) {
  static const lb_test_case cases[] = {
      {"old_style_llama2", test_old_style_llama2},
      {"llama3_rope_scaling_old_style", test_llama3_rope_scaling_old_style},
      {"new_style_rope_parameters", test_new_style_rope_parameters},
      {"other_rope_types", test_other_rope_types},
      {"mistral_sliding_window", test_mistral_sliding_window},
      {"qwen2", test_qwen2},
      {"arch_table", test_arch_table},
      {"errors_name_key", test_errors_name_key},
  };
  return lb_test_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
