/* Shared pieces of the malformed-input tests; see malformed.h. */
#include "malformed.h"

#include <sys/stat.h>

/* ---------------------------------------------------------------------------------------------- */
/* Helpers                                                                                        */


void sb_add(sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (k < 0) abort();
  if (b->n + (size_t)k + 1 > b->cap) {
    b->cap = 2 * (b->n + (size_t)k + 1);
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

/* A fresh sub-folder of the test's temporary folder, named after the case. */
void case_dir(char *dir, const char *name) {
  snprintf(dir, PATH_CAP, "%s/%s", lb_test_tmpdir(), name);
  CHECK_MSG(mkdir(dir, 0755) == 0, "mkdir %s", dir);
}

void join(char *out, const char *dir, const char *file) {
  snprintf(out, PATH_CAP, "%s/%s", dir, file);
}

void put_file(const char *path, const void *data, size_t len) {
  CHECK_MSG(lb_test_write_file(path, data, len) == 0, "cannot write %s", path);
}

void put_text(const char *dir, const char *file, const char *text) {
  char path[PATH_CAP];
  join(path, dir, file);
  put_file(path, text, strlen(text));
}

/* A safetensors file from its parts: the 8-byte little-endian length field `hlen` (which need not be
 * header_len), the header bytes, then data_len bytes of `fill`. */
void put_st_raw(const char *path, uint64_t hlen, const void *header, size_t header_len,
                       size_t data_len, uint8_t fill) {
  size_t n = 8 + header_len + data_len;
  uint8_t *buf = malloc(n);
  if (!buf) abort();
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));
  memcpy(buf + 8, header, header_len);
  memset(buf + 8 + header_len, fill, data_len);
  put_file(path, buf, n);
  free(buf);
}

void put_st(const char *path, const char *header, size_t data_len) {
  put_st_raw(path, strlen(header), header, strlen(header), data_len, 0);
}

/* Checks a failure: status `want` (also in err->code) and a message holding every substring given
 * (the list ends with NULL). */
void expect_fail_(const char *file, int line, lb_status got, lb_status want,
                         const lb_error *err, ...) {
  if (getenv("LB_TEST_VERBOSE")) printf("       [%s] %s\n", lb_strerror(got), err->msg);
  if (got != want) {
    fprintf(stderr, "%s:%d: status %d (%s), expected %d (%s); message: %s\n", file, line, got,
            lb_strerror(got), want, lb_strerror(want), err->msg);
    lb_test_failures_++;
    return;
  }
  if (err->code != want) {
    fprintf(stderr, "%s:%d: err.code %d, expected %d\n", file, line, err->code, want);
    lb_test_failures_++;
  }
  va_list ap;
  va_start(ap, err);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
    if (!strstr(err->msg, s)) {
      fprintf(stderr, "%s:%d: message lacks \"%s\": %s\n", file, line, s, err->msg);
      lb_test_failures_++;
    }
  va_end(ap);
}


/* ---------------------------------------------------------------------------------------------- */
/* config.json                                                                                    */

/* The tiny Llama the checkpoint cases use: head_dim 4, q [16, 16], k/v [8, 16], gate/up [32, 16]. */
static const char *const BASE_CONFIG[][2] = {
    {"architectures", "[\"LlamaForCausalLM\"]"},
    {"model_type", "\"llama\""},
    {"vocab_size", "64"},
    {"hidden_size", "16"},
    {"intermediate_size", "32"},
    {"num_hidden_layers", "2"},
    {"num_attention_heads", "4"},
    {"num_key_value_heads", "2"},
    {"max_position_embeddings", "128"},
    {"rms_norm_eps", "1e-05"},
    {"rope_theta", "10000.0"},
    {"tie_word_embeddings", "true"},
    {"torch_dtype", "\"float32\""},
};
enum { N_BASE_CONFIG = sizeof BASE_CONFIG / sizeof BASE_CONFIG[0] };


/* config.json text: the base config with overrides given as (key, raw JSON value) pairs ending with
 * NULL (a key not in the base is added; DROP removes it), then `extra` raw members. malloc'd. */
char *config_json(const char *extra, ...) {
  const char *keys[16], *vals[16];
  int n = 0;
  va_list ap;
  va_start(ap, extra);
  for (const char *k; (k = va_arg(ap, const char *)) != NULL && n < 16; n++) {
    keys[n] = k;
    vals[n] = va_arg(ap, const char *);
  }
  va_end(ap);
  bool used[16] = {false};
  sbuf b = {0};
  sb_add(&b, "{");
  bool first = true;
  for (int i = 0; i < N_BASE_CONFIG; i++) {
    const char *v = BASE_CONFIG[i][1];
    for (int j = 0; j < n; j++)
      if (strcmp(keys[j], BASE_CONFIG[i][0]) == 0) {
        v = vals[j];
        used[j] = true;
      }
    if (strcmp(v, DROP) == 0) continue;
    sb_add(&b, "%s\n  \"%s\": %s", first ? "" : ",", BASE_CONFIG[i][0], v);
    first = false;
  }
  for (int j = 0; j < n; j++)
    if (!used[j] && strcmp(vals[j], DROP) != 0) {
      sb_add(&b, "%s\n  \"%s\": %s", first ? "" : ",", keys[j], vals[j]);
      first = false;
    }
  if (extra) sb_add(&b, "%s\n  %s", first ? "" : ",", extra);
  sb_add(&b, "\n}\n");
  return b.p;
}


/* ---------------------------------------------------------------------------------------------- */
/* Checkpoint directories                                                                         */


static size_t dtype_bytes(const char *dtype) {
  if (!strcmp(dtype, "F64") || !strcmp(dtype, "I64")) return 8;
  if (!strcmp(dtype, "F32") || !strcmp(dtype, "I32")) return 4;
  if (!strcmp(dtype, "F16") || !strcmp(dtype, "BF16") || !strcmp(dtype, "I16")) return 2;
  return 1;
}

static uint64_t tdesc_bytes(const tdesc *t) {
  uint64_t n = dtype_bytes(t->dtype);
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] == 0) return 0;
  for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
  return n;
}

tdesc *tl_add(tlist *l, const char *name, int64_t d0, int64_t d1) {
  if (l->n == (int)(sizeof l->t / sizeof l->t[0])) abort();
  tdesc *t = &l->t[l->n++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->dtype = "F32";
  t->ndim = d1 ? 2 : 1;
  t->shape[0] = d0;
  t->shape[1] = d1;
  return t;
}

tdesc *tl_get(tlist *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->t[i].name, name)) return &l->t[i];
  fprintf(stderr, "test bug: no tensor %s\n", name);
  abort();
}

void tl_remove(tlist *l, const char *name) {
  tdesc *t = tl_get(l, name);
  memmove(t, t + 1, (size_t)(&l->t[l->n] - (t + 1)) * sizeof *t);
  l->n--;
}

/* The tensors of the tiny Llama of BASE_CONFIG (tied embeddings: no lm_head). */
void llama_tensors(tlist *l) {
  l->n = 0;
  tl_add(l, "model.embed_tokens.weight", 64, 16);
  tl_add(l, "model.norm.weight", 16, 0);
  static const struct {
    const char *name;
    int64_t out, in;
  } LIN[] = {{"self_attn.q_proj", 16, 16}, {"self_attn.k_proj", 8, 16}, {"self_attn.v_proj", 8, 16},
             {"self_attn.o_proj", 16, 16}, {"mlp.gate_proj", 32, 16},   {"mlp.up_proj", 32, 16},
             {"mlp.down_proj", 16, 32}};
  char name[96];
  for (int b = 0; b < 2; b++) {
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", b);
    tl_add(l, name, 16, 0);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", b);
    tl_add(l, name, 16, 0);
    for (size_t k = 0; k < sizeof LIN / sizeof LIN[0]; k++) {
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", b, LIN[k].name);
      tl_add(l, name, LIN[k].out, LIN[k].in);
    }
  }
}

/* Writes tensors [from, to) of l as one safetensors file, contiguous, zero-filled. */
void write_tensors(const char *path, const tlist *l, int from, int to) {
  sbuf h = {0};
  sb_add(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
  uint64_t at = 0;
  for (int i = from; i < to; i++) {
    const tdesc *t = &l->t[i];
    sb_add(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype);
    for (int d = 0; d < t->ndim; d++) sb_add(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    uint64_t n = tdesc_bytes(t);
    sb_add(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
           (unsigned long long)(at + n));
    at += n;
  }
  sb_add(&h, "}");
  while (h.n % 8) sb_add(&h, " ");
  put_st(path, h.p, (size_t)at);
  free(h.p);
}

/* <dir>/config.json (BASE_CONFIG) and <dir>/model.safetensors holding l. */
void write_checkpoint(const char *dir, const tlist *l) {
  char path[PATH_CAP];
  char *cfg = config_json(NULL, NULL);
  put_text(dir, "config.json", cfg);
  free(cfg);
  join(path, dir, "model.safetensors");
  write_tensors(path, l, 0, l->n);
}


/* The same checkpoint in two shards (tensors [0, split) and [split, n)) with its index. */
void write_sharded(const char *dir, const tlist *l, int split) {
  char path[PATH_CAP];
  char *cfg = config_json(NULL, NULL);
  put_text(dir, "config.json", cfg);
  free(cfg);
  join(path, dir, SHARD1);
  write_tensors(path, l, 0, split);
  join(path, dir, SHARD2);
  write_tensors(path, l, split, l->n);
  sbuf ix = {0};
  sb_add(&ix, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
  for (int i = 0; i < l->n; i++)
    sb_add(&ix, "%s\n  \"%s\": \"%s\"", i ? "," : "", l->t[i].name, i < split ? SHARD1 : SHARD2);
  sb_add(&ix, "\n}}\n");
  put_text(dir, "model.safetensors.index.json", ix.p);
  free(ix.p);
}

lb_status open_checkpoint(const char *dir, lb_error *err) {
  lb_checkpoint *c = NULL;
  memset(err, 0, sizeof *err);
  lb_status s = lb_checkpoint_open(dir, &c, err);
  if (s == LB_OK) lb_checkpoint_close(c);
  else CHECK(c == NULL);
  return s;
}

lb_status open_tensors(const char *dir, lb_error *err) {
  lb_tensors *t = NULL;
  memset(err, 0, sizeof *err);
  lb_status s = lb_tensors_open(dir, &t, err);
  if (s == LB_OK) lb_tensors_close(t);
  else CHECK(t == NULL);
  return s;
}
