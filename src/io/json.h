/* JSON through jansson, with errors that name the file, line and key. */
#ifndef LB_IO_JSON_H
#define LB_IO_JSON_H

#include <jansson.h>

#include "base/status.h"

/* Parses `len` bytes (duplicates keys rejected, the whole text must be one value). */
lb_status lb_json_parse(const char *text, size_t len, const char *label, json_t **out,
                        lb_error *err);
/* Reads and parses a file of at most max_bytes. */
lb_status lb_json_load_file(const char *path, size_t max_bytes, json_t **out, lb_error *err);

/* Typed getters. A missing key or a JSON null is "absent": an error when `required`, else the
 * default is stored. Out-of-range, non-finite or mistyped values are errors naming label and key. */
lb_status lb_json_int(const json_t *obj, const char *key, const char *label, bool required,
                      int64_t def, int64_t min, int64_t max, int64_t *out, lb_error *err);
lb_status lb_json_real(const json_t *obj, const char *key, const char *label, bool required,
                       double def, double min, double max, double *out, lb_error *err);
lb_status lb_json_bool(const json_t *obj, const char *key, const char *label, bool required,
                       bool def, bool *out, lb_error *err);
lb_status lb_json_str(const json_t *obj, const char *key, const char *label, bool required,
                      const char *def, char *buf, size_t cap, lb_error *err);
/* A JSON value's type in words, for messages ("string", "array", ...). */
const char *lb_json_type_name(const json_t *v);
/* Whether `key` is present with a non-null value. */
bool lb_json_has(const json_t *obj, const char *key);

#endif
