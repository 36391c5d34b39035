#include "io/json.h"

#include <math.h>
#include <string.h>

#include "io/fs.h"

lb_status lb_json_parse(const char *text, size_t len, const char *label, json_t **out,
                        lb_error *err) {
  json_error_t je;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return lb_fail(err, LB_EFORMAT, "%s:%d:%d: invalid JSON: %s", label, je.line, je.column,
                   je.text);
  *out = root;
  return LB_OK;
}

lb_status lb_json_load_file(const char *path, size_t max_bytes, json_t **out, lb_error *err) {
  char *text;
  size_t len;
  LB_TRY(lb_read_file(path, max_bytes, &text, &len, err));
  lb_status s = lb_json_parse(text, len, path, out, err);
  free(text);
  return s;
}

const char *lb_json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER: return "integer";
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "boolean";
  case JSON_NULL: return "null";
  }
  return "?";
}

bool lb_json_has(const json_t *obj, const char *key) {
  const json_t *v = json_object_get(obj, key);
  return v && !json_is_null(v);
}

/* Looks the key up; returns NULL (absent) for a missing key or null, failing when required. */
static lb_status lookup(const json_t *obj, const char *key, const char *label, bool required,
                        const json_t **v, lb_error *err) {
  *v = json_object_get(obj, key);
  if (*v && json_is_null(*v)) *v = NULL;
  if (!*v && required)
    return lb_fail(err, LB_ENOTFOUND, "%s: required key '%s' is missing", label, key);
  return LB_OK;
}

lb_status lb_json_int(const json_t *obj, const char *key, const char *label, bool required,
                      int64_t def, int64_t min, int64_t max, int64_t *out, lb_error *err) {
  const json_t *v;
  LB_TRY(lookup(obj, key, label, required, &v, err));
  if (!v) {
    *out = def;
    return LB_OK;
  }
  int64_t x;
  if (json_is_integer(v)) {
    x = (int64_t)json_integer_value(v);
  } else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) &&
             fabs(json_real_value(v)) < 9e15) {
    x = (int64_t)json_real_value(v); /* 4096.0 is an integer too */
  } else {
    return lb_fail(err, LB_EINVAL, "%s: key '%s': expected an integer, got %s", label, key,
                   lb_json_type_name(v));
  }
  if (x < min || x > max)
    return lb_fail(err, LB_EINVAL, "%s: key '%s': %lld is outside [%lld, %lld]", label, key,
                   (long long)x, (long long)min, (long long)max);
  *out = x;
  return LB_OK;
}

lb_status lb_json_real(const json_t *obj, const char *key, const char *label, bool required,
                       double def, double min, double max, double *out, lb_error *err) {
  const json_t *v;
  LB_TRY(lookup(obj, key, label, required, &v, err));
  if (!v) {
    *out = def;
    return LB_OK;
  }
  if (!json_is_number(v))
    return lb_fail(err, LB_EINVAL, "%s: key '%s': expected a number, got %s", label, key,
                   lb_json_type_name(v));
  double x = json_number_value(v);
  if (!isfinite(x) || x < min || x > max)
    return lb_fail(err, LB_EINVAL, "%s: key '%s': %g is outside [%g, %g]", label, key, x, min,
                   max);
  *out = x;
  return LB_OK;
}

lb_status lb_json_bool(const json_t *obj, const char *key, const char *label, bool required,
                       bool def, bool *out, lb_error *err) {
  const json_t *v;
  LB_TRY(lookup(obj, key, label, required, &v, err));
  if (!v) {
    *out = def;
    return LB_OK;
  }
  if (!json_is_boolean(v))
    return lb_fail(err, LB_EINVAL, "%s: key '%s': expected true or false, got %s", label, key,
                   lb_json_type_name(v));
  *out = json_is_true(v);
  return LB_OK;
}

lb_status lb_json_str(const json_t *obj, const char *key, const char *label, bool required,
                      const char *def, char *buf, size_t cap, lb_error *err) {
  const json_t *v;
  LB_TRY(lookup(obj, key, label, required, &v, err));
  const char *s = def ? def : "";
  if (v) {
    if (!json_is_string(v))
      return lb_fail(err, LB_EINVAL, "%s: key '%s': expected a string, got %s", label, key,
                     lb_json_type_name(v));
    s = json_string_value(v);
  }
  if (strlen(s) >= cap)
    return lb_fail(err, LB_EINVAL, "%s: key '%s': string longer than %zu bytes", label, key,
                   cap - 1);
  memcpy(buf, s, strlen(s) + 1);
  return LB_OK;
}
