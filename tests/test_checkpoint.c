/* Checkpoint directories: the shared model's facts (README of pocket-llama-48m), sharded input,
 * quantization_config kept as-is, Qwen2 biases, and the footprint table. */
#include <sys/stat.h>

#include "test.h"

static void test_pocket_llama_facts(void) {
  lb_error err = {0};
  lb_checkpoint *c;
  CHECK_OK(lb_checkpoint_open(lb_test_shared("models/pocket-llama-48m"), &c, &err), &err);
  if (!c) return;
  const lb_config *g = lb_checkpoint_config(c);
  CHECK(!strcmp(g->architecture, "LlamaForCausalLM"));
  CHECK(g->tie_word_embeddings && g->num_hidden_layers == 10 && g->hidden_size == 512);
  lb_param_count pc = lb_checkpoint_params(c);
  CHECK(pc.total == 47852032);  /* the model README: 47.85M parameters */
  CHECK(pc.n_linear == 70);     /* "the 70 Linear layers that quantization targets" */
  CHECK(pc.linear == 31457280); /* "31.5M of them in the 70 Linear layers" */
  CHECK(lb_checkpoint_quant_config(c) == NULL);
  CHECK(lb_checkpoint_has_file(c, "tokenizer.json") && lb_checkpoint_has_file(c, "tokenizer_config.json"));
  const lb_generation_config *gen = lb_checkpoint_generation(c);
  CHECK(gen->present && gen->bos_token_id == 1 && gen->n_eos >= 1 && gen->eos_token_ids[0] == 2);
  /* footprint: the 16-bit row is exactly the bytes stored (all BF16) */
  lb_footprint rows[16];
  size_t n = lb_footprint_table(c, rows, 16);
  CHECK(n >= 8);
  CHECK(rows[0].total_bytes == 95704064 && rows[0].linear_bits_per_weight == 16.0);
  for (size_t i = 1; i < n; i++) {
    CHECK(rows[i].total_bytes < rows[0].total_bytes);
    CHECK(rows[i].other_bytes == rows[0].other_bytes);
  }
  /* int8 with one fp32 scale per output row: 8 + 32 * rows / weights, with 5120 output rows per
     block (q 512, k 256, v 256, o 512, gate 1536, up 1536, down 512) */
  /* 1e-9: both sides are a few double operations on exact integers (rounding ~1e-15); the
     quantities checked differ from the wrong answers by more than 1e-3 */
  CHECK(fabs(rows[1].linear_bits_per_weight - (8.0 + 32.0 * 51200.0 / 31457280.0)) < 1e-9);
  /* NF4 with fp32 absmax per 64: 4.5 bits plus the 16-entry code book per layer */
  CHECK(fabs(rows[4].linear_bits_per_weight - (4.5 + 70.0 * 16 * 32 / 31457280.0)) < 1e-9);
  lb_checkpoint_close(c);
}

/* Copies the shared model's config and writes its tensors through the sharded writer. */
static const char *sharded_copy(const char *name, const char *config_text) {
  static char dir[600];
  snprintf(dir, sizeof dir, "%s/%s", lb_test_tmpdir(), name);
  mkdir(dir, 0755);
  lb_error err = {0};
  lb_tensors *src;
  CHECK_OK(lb_tensors_open(lb_test_shared("models/pocket-llama-48m"), &src, &err), &err);
  lb_st_writer *w;
  CHECK_OK(lb_st_writer_open(dir, 10u << 20, &w, &err), &err);
  for (size_t i = 0; src && i < lb_tensors_count(src); i++) {
    const lb_tensor *t = lb_tensors_at(src, i);
    CHECK_OK(lb_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, &err),
             &err);
  }
  CHECK_OK(lb_st_writer_finish(w, &err), &err);
  lb_tensors_close(src);
  char path[700];
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK(lb_test_write_file(path, config_text, strlen(config_text)) == 0);
  return dir;
}

static void test_sharded_checkpoint_opens(void) {
  size_t len;
  char *cfg = lb_test_read_file(lb_test_shared("models/pocket-llama-48m/config.json"), &len);
  const char *dir = sharded_copy("sharded", cfg);
  free(cfg);
  lb_error err = {0};
  lb_checkpoint *c;
  CHECK_OK(lb_checkpoint_open(dir, &c, &err), &err);
  if (!c) return;
  /* The 32.8 MB embedding, larger than the 10 MiB limit, sits alone in its own shard; the other
     62.9 MB need at least ceil(62.9 / 10.49) = 6 more. */
  const lb_tensors *ts = lb_checkpoint_tensors(c);
  CHECK(lb_tensors_nfiles(ts) >= 7);
  const char *efile = lb_tensors_find(ts, "model.embed_tokens.weight")->file;
  for (size_t i = 0; i < lb_tensors_count(ts); i++)
    CHECK(lb_tensors_at(ts, i)->file != efile ||
          !strcmp(lb_tensors_at(ts, i)->name, "model.embed_tokens.weight"));
  CHECK(lb_checkpoint_params(c).total == 47852032);
  CHECK(!lb_checkpoint_has_file(c, "tokenizer.json"));
  CHECK(!lb_checkpoint_generation(c)->present);
  lb_checkpoint_close(c);
}

static void test_quantization_config_kept(void) {
  size_t len;
  char *cfg = lb_test_read_file(lb_test_shared("models/pocket-llama-48m/config.json"), &len);
  char *brace = strrchr(cfg, '}');
  const char *q = ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,"
                  "\"group_size\":128,\"desc_act\":false,\"sym\":true}}";
  char *text = malloc(len + strlen(q) + 1);
  memcpy(text, cfg, (size_t)(brace - cfg));
  strcpy(text + (brace - cfg), q);
  const char *dir = sharded_copy("quantcfg", text);
  lb_error err = {0};
  lb_checkpoint *c;
  CHECK_OK(lb_checkpoint_open(dir, &c, &err), &err);
  if (c) {
    const char *kept = lb_checkpoint_quant_config(c);
    CHECK(kept && !strcmp(kept, "{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":128,"
                                "\"desc_act\":false,\"sym\":true}"));
    lb_checkpoint_close(c);
  }
  free(text);
  free(cfg);
}

int main(int argc, char **argv) {
  static const lb_test_case cases[] = {
      {"pocket_llama_facts", test_pocket_llama_facts},
      {"sharded_checkpoint_opens", test_sharded_checkpoint_opens},
      {"quantization_config_kept", test_quantization_config_kept},
  };
  return lb_test_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
