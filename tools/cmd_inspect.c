/* lowbit inspect DIR [--json] [--tensors]: what a checkpoint is and what it would weigh quantized. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "quant/spec.h"

static const char *HELP =
    "usage: lowbit inspect DIR [--json] [--tensors]\n"
    "  Architecture and hyper-parameters, parameter count, bytes per dtype, the modules of a\n"
    "  decoder block with their tensors and shapes; for a dense checkpoint the memory footprint under\n"
    "  each method lowbit supports, for a quantized one its quantization_config and the bits per\n"
    "  weight its files really hold.\n"
    "  --json     one JSON object instead of text\n"
    "  --tensors  also list every tensor (name, dtype, shape, bytes, file)\n";

static const char *shape_str(const lb_tensor *t, char *buf, size_t cap) {
  return lb_shape_str(t->shape, t->ndim, buf, cap);
}

static const char *rope_name(lb_rope_type t) {
  static const char *N[] = {"default", "linear", "dynamic", "llama3", "yarn"};
  return (unsigned)t < 5 ? N[t] : "?";
}

/* The tensors of block l: names with the block prefix stripped, in name order. A block "matches"
 * block 0 when it has the same suffixes, dtypes and shapes. */
static bool block_matches(const lb_tensors *ts, const char *p0, const char *pl) {
  size_t n0 = strlen(p0), nl = strlen(pl), i = 0, j = 0, n = lb_tensors_count(ts);
  for (;;) {
    while (i < n && strncmp(lb_tensors_at(ts, i)->name, p0, n0)) i++;
    while (j < n && strncmp(lb_tensors_at(ts, j)->name, pl, nl)) j++;
    if (i == n || j == n) return i == n && j == n;
    const lb_tensor *a = lb_tensors_at(ts, i++), *b = lb_tensors_at(ts, j++);
    if (strcmp(a->name + n0, b->name + nl) || a->dtype != b->dtype || a->ndim != b->ndim ||
        memcmp(a->shape, b->shape, sizeof a->shape[0] * (size_t)a->ndim))
      return false;
  }
}

static void print_tensor(const lb_tensor *t, const char *label) {
  char sh[96], b[32];
  printf("    %-36s %-8s %-16s %10s\n", label, lb_dtype_name(t->dtype), shape_str(t, sh, sizeof sh),
         cli_bytes(t->nbytes, b, sizeof b));
}

/* A block's tensors in model order: attention norm, q, k, v, o, MLP norm, gate, up, down (each
 * module's tensors: weight, bias, or a quantized layout's qweight, scales ...), then anything else. */
static void print_block(const lb_tensors *ts, const lb_arch *a, const char *prefix) {
  const char *order[LB_LIN_COUNT + 2] = {a->attn_norm};
  int n = 1;
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    order[n++] = a->linear[k];
    if (k == LB_LIN_O) order[n++] = a->mlp_norm;
  }
  size_t plen = strlen(prefix);
  for (int m = 0; m <= n; m++) /* m == n: what no module claimed */
    for (size_t i = 0; i < lb_tensors_count(ts); i++) {
      const lb_tensor *t = lb_tensors_at(ts, i);
      if (strncmp(t->name, prefix, plen)) continue;
      const char *rest = t->name + plen;
      int owner = n;
      for (int k = 0; k < n && owner == n; k++) {
        size_t len = strlen(order[k]);
        if (!strncmp(rest, order[k], len) && rest[len] == '.') owner = k;
      }
      if (owner == m) print_tensor(t, rest);
    }
}

/* Bytes and tensor count per dtype over all tensors. */
typedef struct {
  uint64_t bytes[LB_DTYPE_COUNT], count[LB_DTYPE_COUNT];
} dtype_totals;

static dtype_totals totals_by_dtype(const lb_tensors *ts) {
  dtype_totals r = {{0}, {0}};
  for (size_t i = 0; i < lb_tensors_count(ts); i++) {
    const lb_tensor *t = lb_tensors_at(ts, i);
    r.bytes[t->dtype] += t->nbytes;
    r.count[t->dtype]++;
  }
  return r;
}

/* What a quantized checkpoint really stores: the decoder Linear layers the quantization_config
 * converts (all tensors under "<module>." -- codes, scales, zeros, g_idx, absmax, meta, bias)
 * against their logical weights; everything else is "other". */
typedef struct {
  bool ok;
  char method[160];
  uint64_t n_quant, n_dense, weights, bytes, other;
} quant_real;

static quant_real quant_summary(const lb_checkpoint *c) {
  quant_real r = {0};
  const char *q = lb_checkpoint_quant_config(c);
  lb_quant_spec spec;
  lb_error err = {0};
  if (!q || lb_quant_spec_parse(q, strlen(q), "quantization_config", &spec, &err) != LB_OK) {
    if (q) snprintf(r.method, sizeof r.method, "(not readable: %.120s)", err.msg);
    return r;
  }
  lb_quant_spec_describe(&spec, r.method, sizeof r.method);
  const lb_config *g = lb_checkpoint_config(c);
  const lb_arch *a = lb_checkpoint_arch(c);
  const lb_tensors *ts = lb_checkpoint_tensors(c);
  uint64_t total = 0;
  for (size_t i = 0; i < lb_tensors_count(ts); i++) total += lb_tensors_at(ts, i)->nbytes;
  for (int l = 0; l < g->num_hidden_layers; l++)
    for (int k = 0; k < LB_LIN_COUNT; k++) {
      char mod[256], blk[64];
      snprintf(mod, sizeof mod, "%s.%s", lb_arch_block(a, l, blk, sizeof blk), a->linear[k]);
      if (lb_quant_spec_skips(&spec, mod)) {
        r.n_dense++;
        continue;
      }
      int64_t out, in;
      lb_arch_linear_shape(g, (lb_linear_kind)k, &out, &in);
      r.n_quant++;
      r.weights += (uint64_t)(out * in);
      size_t len = strlen(mod);
      for (size_t i = 0; i < lb_tensors_count(ts); i++) {
        const lb_tensor *t = lb_tensors_at(ts, i);
        if (!strncmp(t->name, mod, len) && t->name[len] == '.') r.bytes += t->nbytes;
      }
    }
  r.other = total - r.bytes;
  r.ok = r.weights > 0;
  lb_quant_spec_free(&spec);
  return r;
}

static void print_text(const lb_checkpoint *c, bool tensors) {
  const lb_config *g = lb_checkpoint_config(c);
  const lb_arch *a = lb_checkpoint_arch(c);
  const lb_tensors *ts = lb_checkpoint_tensors(c);
  lb_param_count pc = lb_checkpoint_params(c);
  char b1[32], b2[32], b3[32], sh[96];
  printf("%-18s %s\n", "checkpoint", lb_checkpoint_dir(c));
  printf("%-18s %s (model_type %s)\n", "architecture", g->architecture, g->model_type);
  printf("%-18s %s (%s in %llu quantizable Linear layers)\n", "parameters",
         cli_count(pc.total, b1, sizeof b1), cli_count(pc.linear, b2, sizeof b2),
         (unsigned long long)pc.n_linear);
  printf("%-18s %s\n", "dtype", g->dtype[0] ? g->dtype : "(not stated)");
  printf("%-18s %lld layers, hidden %lld, intermediate %lld, vocab %lld\n", "shape",
         (long long)g->num_hidden_layers, (long long)g->hidden_size,
         (long long)g->intermediate_size, (long long)g->vocab_size);
  printf("%-18s %lld heads, %lld KV heads%s, head_dim %lld\n", "attention",
         (long long)g->num_attention_heads, (long long)g->num_key_value_heads,
         g->num_key_value_heads < g->num_attention_heads ? " (GQA)" : "", (long long)g->head_dim);
  if (g->sliding_window)
    printf("%-18s %lld tokens\n", "sliding window", (long long)g->sliding_window);
  printf("%-18s %s, theta %g", "rope", rope_name(g->rope.type), g->rope.theta);
  if (g->rope.type != LB_ROPE_DEFAULT) printf(", factor %g", g->rope.factor);
  printf(", max positions %lld\n", (long long)g->max_position_embeddings);
  printf("%-18s rms_norm_eps %g, act %s\n", "norm", g->rms_norm_eps, g->hidden_act);
  printf("%-18s %s\n", "embeddings",
         g->tie_word_embeddings ? "tied (lm_head shares the input embedding)" : "separate lm_head");
  printf("%-18s %zu tensors in %zu file%s\n", "files", lb_tensors_count(ts), lb_tensors_nfiles(ts),
         lb_tensors_nfiles(ts) == 1 ? "" : "s");
  printf("%-18s tokenizer.json %s, tokenizer_config.json %s, generation_config.json %s\n",
         "companions", lb_checkpoint_has_file(c, "tokenizer.json") ? "yes" : "MISSING",
         lb_checkpoint_has_file(c, "tokenizer_config.json") ? "yes" : "no",
         lb_checkpoint_has_file(c, "generation_config.json") ? "yes" : "no");
  const char *q = lb_checkpoint_quant_config(c);
  quant_real qr = quant_summary(c);
  if (q) {
    printf("%-18s %s\n", "quantization", qr.method);
    printf("%-18s %s\n", "  config", q);
  } else
    printf("%-18s none\n", "quantization");
  if (qr.ok) {
    printf("%-18s %llu Linear layers quantized, %llu kept dense: %s for %s weights\n", "  stored",
           (unsigned long long)qr.n_quant, (unsigned long long)qr.n_dense,
           cli_bytes(qr.bytes, b1, sizeof b1), cli_count(qr.weights, b2, sizeof b2));
    printf("%-18s %.3f in the quantized layers (scales, zeros, indices included); other tensors "
           "%s\n",
           "  bits per weight", 8.0 * (double)qr.bytes / (double)qr.weights,
           cli_bytes(qr.other, b3, sizeof b3));
  }

  printf("\nbytes by dtype\n");
  dtype_totals dt = totals_by_dtype(ts);
  for (int d = 0; d < LB_DTYPE_COUNT; d++)
    if (dt.count[d])
      printf("  %-8s %16s B  %10s  %5llu tensors\n", lb_dtype_name((lb_dtype)d),
             cli_count(dt.bytes[d], b1, sizeof b1), cli_bytes(dt.bytes[d], b2, sizeof b2),
             (unsigned long long)dt.count[d]);

  printf("\nmodules\n");
  char name[256];
  snprintf(name, sizeof name, "%s.weight", a->embed);
  const lb_tensor *e = lb_tensors_find(ts, name);
  printf("  %-38s %-8s %s\n", a->embed, lb_dtype_name(e->dtype), shape_str(e, sh, sizeof sh));
  char p0[64], pl[64];
  lb_arch_block(a, 0, p0, sizeof p0 - 1);
  strcat(p0, ".");
  int l0 = 0;
  for (int l = 1; l <= g->num_hidden_layers; l++) {
    lb_arch_block(a, l, pl, sizeof pl - 1);
    strcat(pl, ".");
    if (l < g->num_hidden_layers && block_matches(ts, p0, pl)) continue;
    /* blocks l0 .. l-1 are alike: print them once */
    char head[64];
    lb_arch_block(a, l0, head, sizeof head);
    if (l - 1 > l0) printf("  %s-%d (each of %d blocks)\n", head, l - 1, l - l0);
    else printf("  %s\n", head);
    print_block(ts, a, p0);
    l0 = l;
    strcpy(p0, pl);
  }
  snprintf(name, sizeof name, "%s.weight", a->final_norm);
  e = lb_tensors_find(ts, name);
  printf("  %-38s %-8s %s\n", a->final_norm, lb_dtype_name(e->dtype), shape_str(e, sh, sizeof sh));
  snprintf(name, sizeof name, "%s.weight", a->lm_head);
  e = lb_tensors_find(ts, name);
  if (e) printf("  %-38s %-8s %s\n", a->lm_head, lb_dtype_name(e->dtype), shape_str(e, sh, sizeof sh));
  else printf("  %-38s tied to %s.weight\n", a->lm_head, a->embed);

  lb_footprint rows[16];
  size_t nr = q ? 0 : lb_footprint_table(c, rows, 16); /* a prediction for dense checkpoints */
  if (nr) printf("\nmemory footprint by method (Linear layers quantized, the rest in 16-bit)\n");
  if (nr)
    printf("  %-30s %8s %11s %11s %11s %7s\n", "method", "bits/w", "Linear", "other", "total",
           "vs 16b");
  for (size_t i = 0; i < nr; i++)
    printf("  %-30s %8.3f %11s %11s %11s %6.2fx\n", rows[i].method, rows[i].linear_bits_per_weight,
           cli_bytes(rows[i].linear_bytes, b1, sizeof b1),
           cli_bytes(rows[i].other_bytes, b2, sizeof b2),
           cli_bytes(rows[i].total_bytes, b3, sizeof b3),
           (double)rows[0].total_bytes / (double)rows[i].total_bytes);

  if (tensors) {
    printf("\ntensors\n");
    for (size_t i = 0; i < lb_tensors_count(ts); i++) {
      const lb_tensor *t = lb_tensors_at(ts, i);
      const char *file = strrchr(t->file, '/');
      printf("  %-56s %-8s %-16s %12s  %s\n", t->name, lb_dtype_name(t->dtype),
             shape_str(t, sh, sizeof sh), cli_count(t->nbytes, b1, sizeof b1),
             file ? file + 1 : t->file);
    }
  }
}

static json_t *tensor_json(const lb_tensor *t) {
  json_t *shape = json_array();
  for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
  const char *file = strrchr(t->file, '/');
  return json_pack("{s:s, s:s, s:o, s:I, s:s}", "name", t->name, "dtype", lb_dtype_name(t->dtype),
                   "shape", shape, "bytes", (json_int_t)t->nbytes, "file", file ? file + 1 : t->file);
}

static int print_json(const lb_checkpoint *c, bool tensors) {
  const lb_config *g = lb_checkpoint_config(c);
  const lb_tensors *ts = lb_checkpoint_tensors(c);
  lb_param_count pc = lb_checkpoint_params(c);
  json_t *o = json_object();
  json_object_set_new(o, "dir", json_string(lb_checkpoint_dir(c)));
  json_object_set_new(o, "architecture", json_string(g->architecture));
  json_object_set_new(o, "model_type", json_string(g->model_type));
  json_object_set_new(o, "parameters", json_integer((json_int_t)pc.total));
  json_object_set_new(o, "linear_parameters", json_integer((json_int_t)pc.linear));
  json_object_set_new(o, "quantizable_linear_layers", json_integer((json_int_t)pc.n_linear));
  json_object_set_new(o, "tied_embeddings", json_boolean(g->tie_word_embeddings));
  json_t *cfg = json_pack(
      "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:s, s:f, s:f, s:b, s:b, s:I, s:s, s:s}",
      "vocab_size", (json_int_t)g->vocab_size, "hidden_size", (json_int_t)g->hidden_size,
      "intermediate_size", (json_int_t)g->intermediate_size, "num_hidden_layers",
      (json_int_t)g->num_hidden_layers, "num_attention_heads", (json_int_t)g->num_attention_heads,
      "num_key_value_heads", (json_int_t)g->num_key_value_heads, "head_dim",
      (json_int_t)g->head_dim, "max_position_embeddings", (json_int_t)g->max_position_embeddings,
      "rms_norm_eps", g->rms_norm_eps, "rope_type", rope_name(g->rope.type), "rope_theta",
      g->rope.theta, "rope_factor", g->rope.factor, "attention_bias", g->attention_bias,
      "mlp_bias", g->mlp_bias, "sliding_window", (json_int_t)g->sliding_window, "dtype", g->dtype,
      "hidden_act", g->hidden_act);
  json_object_set_new(o, "config", cfg);
  json_t *by = json_object();
  dtype_totals dt = totals_by_dtype(ts);
  uint64_t total_bytes = 0;
  for (int d = 0; d < LB_DTYPE_COUNT; d++) {
    if (dt.count[d])
      json_object_set_new(by, lb_dtype_name((lb_dtype)d), json_integer((json_int_t)dt.bytes[d]));
    total_bytes += dt.bytes[d];
  }
  json_object_set_new(o, "bytes_by_dtype", by);
  json_object_set_new(o, "tensor_bytes", json_integer((json_int_t)total_bytes));
  json_object_set_new(o, "tensor_count", json_integer((json_int_t)lb_tensors_count(ts)));
  json_object_set_new(o, "files", json_integer((json_int_t)lb_tensors_nfiles(ts)));
  const char *q = lb_checkpoint_quant_config(c);
  json_t *qj = q ? json_loads(q, 0, NULL) : NULL;
  json_object_set_new(o, "quantization_config", qj ? qj : json_null());
  quant_real qr = quant_summary(c);
  if (qr.ok)
    json_object_set_new(
        o, "quantized",
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:I}", "method", qr.method, "linear_quantized",
                  (json_int_t)qr.n_quant, "linear_dense", (json_int_t)qr.n_dense, "weights",
                  (json_int_t)qr.weights, "bytes", (json_int_t)qr.bytes, "bits_per_weight",
                  8.0 * (double)qr.bytes / (double)qr.weights, "other_bytes",
                  (json_int_t)qr.other));
  json_object_set_new(o, "tokenizer",
                      json_pack("{s:b, s:b, s:b}", "tokenizer.json",
                                lb_checkpoint_has_file(c, "tokenizer.json"), "tokenizer_config.json",
                                lb_checkpoint_has_file(c, "tokenizer_config.json"),
                                "generation_config.json",
                                lb_checkpoint_has_file(c, "generation_config.json")));
  lb_footprint rows[16];
  size_t nr = q ? 0 : lb_footprint_table(c, rows, 16);
  json_t *fp = json_array();
  for (size_t i = 0; i < nr; i++)
    json_array_append_new(fp, json_pack("{s:s, s:f, s:I, s:I, s:I}", "method", rows[i].method,
                                        "linear_bits_per_weight", rows[i].linear_bits_per_weight,
                                        "linear_bytes", (json_int_t)rows[i].linear_bytes,
                                        "other_bytes", (json_int_t)rows[i].other_bytes,
                                        "total_bytes", (json_int_t)rows[i].total_bytes));
  json_object_set_new(o, "footprint", fp);
  if (tensors) {
    json_t *arr = json_array();
    for (size_t i = 0; i < lb_tensors_count(ts); i++)
      json_array_append_new(arr, tensor_json(lb_tensors_at(ts, i)));
    json_object_set_new(o, "tensors", arr);
  }
  int rc = json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) == 0 ? 0 : 1;
  putchar('\n');
  json_decref(o);
  return rc;
}

int cmd_inspect(int argc, char **argv) {
  const char *dir = NULL;
  bool json = false, tensors = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = true;
    else if (!strcmp(argv[i], "--tensors")) tensors = true;
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else if (argv[i][0] == '-') return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
    else if (dir) return cli_usage_error("inspect", "more than one DIR given ('%s')", argv[i]);
    else dir = argv[i];
  }
  if (!dir) return cli_usage_error("inspect", "missing DIR");
  lb_error err = {0};
  lb_checkpoint *c;
  if (lb_checkpoint_open(dir, &c, &err) != LB_OK) return cli_fail(&err);
  int rc = 0;
  if (json) rc = print_json(c, tensors);
  else print_text(c, tensors);
  lb_checkpoint_close(c);
  return rc;
}
