/* Calibration text for lowbit quantize (calib_input.h). */
#include "calib_input.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/json.h"

enum { MAX_CALIB = 1 << 30 };

void cli_docs_free(cli_docs *d) {
  free(d->docs), free(d->lens), free(d->buf);
  *d = (cli_docs){0};
}

static lb_status push(cli_docs *d, const char *p, size_t n, lb_error *err) {
  const char **docs = realloc(d->docs, (d->n + 1) * sizeof *docs);
  if (docs) d->docs = docs;
  size_t *lens = realloc(d->lens, (d->n + 1) * sizeof *lens);
  if (lens) d->lens = lens;
  if (!docs || !lens) return lb_fail(err, LB_ENOMEM, "out of memory");
  d->docs[d->n] = p, d->lens[d->n] = n, d->n++;
  return LB_OK;
}

/* The whole text, or its non-blank lines. */
static lb_status split(cli_docs *d, bool lines, const char *label, lb_error *err) {
  if (!lines) return push(d, d->buf, d->len, err);
  for (size_t i = 0; i < d->len;) {
    size_t j = i;
    while (j < d->len && d->buf[j] != '\n') j++;
    bool blank = true;
    for (size_t k = i; k < j && blank; k++) blank = d->buf[k] == ' ' || d->buf[k] == '\t' || d->buf[k] == '\r';
    if (!blank) LB_TRY(push(d, d->buf + i, j - i, err));
    i = j + 1;
  }
  if (!d->n) return lb_fail(err, LB_EINVAL, "%s: no text in the calibration file", label);
  return LB_OK;
}

lb_status cli_calib_docs_file(const char *path, bool lines, cli_docs *out, lb_error *err) {
  *out = (cli_docs){0};
  lb_status s = lb_read_file(path, MAX_CALIB, &out->buf, &out->len, err);
  if (s == LB_OK && out->len == 0) s = lb_fail(err, LB_EINVAL, "%s: the calibration file is empty", path);
  if (s == LB_OK) s = split(out, lines, path, err);
  if (s != LB_OK) cli_docs_free(out);
  return s;
}

lb_status cli_calib_docs_config(const char *config, bool lines, bool *found, cli_docs *out,
                                lb_error *err) {
  *out = (cli_docs){0};
  *found = false;
  json_t *root;
  LB_TRY(lb_json_load_file(config, 16u << 20, &root, err));
  const json_t *ds = json_object_get(root, "dataset");
  lb_status s = LB_OK;
  if (!ds || json_is_null(ds)) {
  } else if (json_is_string(ds)) {
    /* a text file: as given, else beside the config file */
    const char *p = json_string_value(ds);
    char *alt = NULL;
    if (!lb_path_exists(p) && p[0] != '/') {
      const char *slash = strrchr(config, '/');
      if (slash) {
        size_t n = (size_t)(slash - config);
        alt = malloc(n + strlen(p) + 2);
        if (alt) snprintf(alt, n + strlen(p) + 2, "%.*s/%s", (int)n, config, p);
      }
    }
    const char *use = alt && lb_path_exists(alt) ? alt : p;
    if (!lb_path_exists(use))
      s = lb_fail(err, LB_ENOTFOUND,
                  "%s: key 'dataset': \"%s\" is not a file (lowbit reads local text only: give "
                  "a text file's path or a list of strings, not a Hub dataset name)",
                  config, p);
    else
      s = cli_calib_docs_file(use, lines, out, err);
    free(alt);
    *found = s == LB_OK;
  } else if (json_is_array(ds)) {
    size_t i, total = 0;
    const json_t *e;
    json_array_foreach(ds, i, e) {
      if (!json_is_string(e)) {
        s = lb_fail(err, LB_EINVAL, "%s: key 'dataset'[%zu]: expected a string, got %s", config, i,
                    lb_json_type_name(e));
        break;
      }
      total += json_string_length(e) + 1;
    }
    if (s == LB_OK && json_array_size(ds) == 0)
      s = lb_fail(err, LB_EINVAL, "%s: key 'dataset': an empty list", config);
    if (s == LB_OK && !(out->buf = malloc(total ? total : 1))) s = lb_fail(err, LB_ENOMEM, "out of memory");
    size_t off = 0;
    json_array_foreach(ds, i, e) {
      if (s != LB_OK) break;
      size_t n = json_string_length(e);
      memcpy(out->buf + off, json_string_value(e), n);
      out->buf[off + n] = 0;
      off += n + 1;
    }
    out->len = off;
    for (size_t k = 0, o = 0; s == LB_OK && k < json_array_size(ds); k++) {
      size_t n = json_string_length(json_array_get(ds, k));
      s = push(out, out->buf + o, n, err);
      o += n + 1;
    }
    *found = s == LB_OK;
  } else {
    s = lb_fail(err, LB_EINVAL, "%s: key 'dataset': expected a file path or a list of strings, "
                "got %s", config, lb_json_type_name(ds));
  }
  json_decref(root);
  if (s != LB_OK) cli_docs_free(out);
  return s;
}
