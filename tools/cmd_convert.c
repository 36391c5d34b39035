/* lowbit convert SRC DST [--shard-size SIZE] [--dtype bf16|f16|f32] [--force]
 * Reads a checkpoint and writes it back (optionally re-sharded or in another float dtype). The whole
 * output folder is built under a temporary name beside DST and renamed when complete. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/progress.h"
#include "cli.h"
#include "io/fs.h"
#include "io/json.h"

static const char *HELP =
    "usage: lowbit convert SRC DST [--shard-size SIZE] [--dtype bf16|f16|f32] [--force]\n"
    "  Rewrites the checkpoint SRC as DST: config, generation config and tokenizer files copied,\n"
    "  tensors streamed into safetensors shards (byte-identical unless --dtype is given).\n"
    "  --shard-size SIZE  cut shards at SIZE (e.g. 5GB, 500MB, 2GiB; default: one file)\n"
    "  --dtype T          convert floating-point tensors to bf16, f16 or f32 (dense models only)\n"
    "  --force            replace DST if it exists\n";

typedef struct {
  const char *src, *dst;
  uint64_t shard;
  bool has_dtype, force;
  lb_dtype dtype;
} opts;

/* config.json, with dtype/torch_dtype set to the new type when converting. */
static lb_status write_config(const opts *o, const char *out_dir, lb_error *err) {
  char *in = lb_path_join(o->src, "config.json"), *out = lb_path_join(out_dir, "config.json");
  lb_status s = LB_OK;
  if (!in || !out) s = lb_fail(err, LB_ENOMEM, "out of memory");
  else if (!o->has_dtype) s = lb_copy_file(in, out, err);
  else {
    json_t *root;
    s = lb_json_load_file(in, 16u << 20, &root, err);
    if (s == LB_OK) {
      const char *name = o->dtype == LB_BF16 ? "bfloat16" : o->dtype == LB_F16 ? "float16" : "float32";
      json_object_set_new(root, json_object_get(root, "torch_dtype") ? "torch_dtype" : "dtype",
                          json_string(name));
      char *text = json_dumps(root, JSON_INDENT(2));
      json_decref(root);
      if (!text) s = lb_fail(err, LB_ENOMEM, "out of memory");
      else {
        size_t len = strlen(text);
        text[len] = '\n';
        s = lb_write_file_atomic(out, text, len + 1, err);
        free(text);
      }
    }
  }
  free(in);
  free(out);
  return s;
}

static lb_status write_tensors(const opts *o, const lb_checkpoint *c, const char *out_dir,
                               lb_error *err) {
  const lb_tensors *ts = lb_checkpoint_tensors(c);
  lb_st_writer *w;
  LB_TRY(lb_st_writer_open(out_dir, o->shard, &w, err));
  uint64_t total = 0, done = 0;
  for (size_t i = 0; i < lb_tensors_count(ts); i++) total += lb_tensors_at(ts, i)->nbytes;
  lb_progress bar;
  lb_progress_start(&bar, "convert", total, "MB", 1e6);
  lb_status s = LB_OK;
  void *buf = NULL;
  for (size_t i = 0; i < lb_tensors_count(ts) && s == LB_OK; i++) {
    const lb_tensor *t = lb_tensors_at(ts, i);
    const void *data = t->data;
    lb_dtype dt = t->dtype;
    uint64_t nbytes = t->nbytes;
    bool widen_or_narrow = o->has_dtype && t->dtype != o->dtype &&
                           (t->dtype == LB_F32 || t->dtype == LB_F16 || t->dtype == LB_BF16);
    if (widen_or_narrow) {
      nbytes = t->numel * lb_dtype_size(o->dtype);
      free(buf);
      buf = malloc(nbytes ? nbytes : 1);
      if (!buf) {
        s = lb_fail(err, LB_ENOMEM, "tensor '%s': out of memory", t->name);
        break;
      }
      s = lb_convert(buf, o->dtype, t->data, t->dtype, t->numel, 0, err);
      data = buf;
      dt = o->dtype;
    }
    if (s == LB_OK) s = lb_st_writer_add(w, t->name, dt, t->ndim, t->shape, data, nbytes, err);
    done += t->nbytes;
    lb_progress_update(&bar, done);
  }
  free(buf);
  if (s != LB_OK) {
    lb_st_writer_abort(w);
    return s;
  }
  lb_progress_finish(&bar);
  return lb_st_writer_finish(w, err);
}

typedef struct {
  const opts *o;
  const lb_checkpoint *c;
} convert_ctx;

static lb_status fill(void *p, const char *tmp, lb_error *err) {
  convert_ctx *x = p;
  LB_TRY(write_tensors(x->o, x->c, tmp, err));
  return write_config(x->o, tmp, err);
}

static lb_status convert(const opts *o, lb_error *err) {
  lb_checkpoint *c;
  LB_TRY(lb_checkpoint_open(o->src, &c, err));
  lb_status s = LB_OK;
  if (o->has_dtype && lb_checkpoint_quant_config(c))
    s = lb_fail(err, LB_EINVAL, "%s: --dtype would corrupt a quantized checkpoint's scales", o->src);
  convert_ctx x = {o, c};
  if (s == LB_OK) s = cli_build_output(o->dst, o->force, c, fill, &x, err);
  lb_checkpoint_close(c);
  return s;
}

int cmd_convert(int argc, char **argv) {
  opts o = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else if (!strcmp(a, "--force")) {
      o.force = true;
    } else if (!strcmp(a, "--shard-size")) {
      if (++i == argc) return cli_usage_error("convert", "--shard-size needs a value");
      if (!cli_parse_size(argv[i], &o.shard) || o.shard == 0)
        return cli_usage_error("convert", "--shard-size '%s': expected a size like 5GB or 500MB",
                               argv[i]);
    } else if (!strcmp(a, "--dtype")) {
      if (++i == argc) return cli_usage_error("convert", "--dtype needs a value");
      const char *d = argv[i];
      o.has_dtype = true;
      if (!strcmp(d, "bf16") || !strcmp(d, "bfloat16")) o.dtype = LB_BF16;
      else if (!strcmp(d, "f16") || !strcmp(d, "fp16") || !strcmp(d, "float16")) o.dtype = LB_F16;
      else if (!strcmp(d, "f32") || !strcmp(d, "fp32") || !strcmp(d, "float32")) o.dtype = LB_F32;
      else return cli_usage_error("convert", "--dtype '%s': expected bf16, f16 or f32", d);
    } else if (a[0] == '-') {
      return cli_usage_error("convert", "unknown option '%s'", a);
    } else if (!o.src) {
      o.src = a;
    } else if (!o.dst) {
      o.dst = a;
    } else {
      return cli_usage_error("convert", "unexpected argument '%s'", a);
    }
  }
  if (!o.src || !o.dst) return cli_usage_error("convert", "needs SRC and DST");
  lb_error err = {0};
  if (convert(&o, &err) != LB_OK) return cli_fail(&err);
  return 0;
}
