/* safetensors reader: mmap the file, validate every header field, hand out zero-copy views.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON (UTF-8, starting with '{', possibly
 * padded with spaces), then the byte buffer. The JSON maps tensor names to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the buffer) and may hold
 * "__metadata__": {string: string}. As in the reference implementation, the tensors must tile the
 * buffer exactly: sorted by offset they start at 0, follow each other without gap or overlap, and
 * end at the end of the file. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"
#include "io/tensor_index.h"

struct lb_st_file {
  char *label;
  void *map; /* owned mapping, NULL for lb_st_parse */
  size_t map_len;
  lb_tensor *tensors; /* sorted by data offset */
  size_t n;
  const lb_tensor **by_name; /* the same tensors, sorted by name */
  char **meta_keys, **meta_vals;
  size_t n_meta;
};

/* A tensor's byte range in the buffer, sorted to check that the tensors tile it. */
typedef struct {
  uint64_t begin, end;
  size_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

void lb_st_close(lb_st_file *f) {
  if (!f) return;
  for (size_t i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
  for (size_t i = 0; i < f->n_meta; i++) {
    free(f->meta_keys[i]);
    free(f->meta_vals[i]);
  }
  free(f->meta_keys);
  free(f->meta_vals);
  free(f->tensors);
  free(f->by_name);
  if (f->map) munmap(f->map, f->map_len);
  free(f->label);
  free(f);
}

static lb_status parse_metadata(lb_st_file *f, const json_t *meta, lb_error *err) {
  if (!json_is_object(meta))
    return lb_fail(err, LB_EFORMAT, "%s: __metadata__: expected an object of strings, got %s",
                   f->label, lb_json_type_name(meta));
  size_t n = json_object_size(meta);
  f->meta_keys = calloc(n ? n : 1, sizeof *f->meta_keys);
  f->meta_vals = calloc(n ? n : 1, sizeof *f->meta_vals);
  if (!f->meta_keys || !f->meta_vals) return lb_fail(err, LB_ENOMEM, "%s: out of memory", f->label);
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)meta, k, v) {
    if (!json_is_string(v))
      return lb_fail(err, LB_EFORMAT, "%s: __metadata__['%s']: expected a string, got %s",
                     f->label, k, lb_json_type_name(v));
    f->meta_keys[f->n_meta] = strdup(k);
    f->meta_vals[f->n_meta] = strdup(json_string_value(v));
    if (!f->meta_keys[f->n_meta] || !f->meta_vals[f->n_meta])
      return lb_fail(err, LB_ENOMEM, "%s: out of memory", f->label);
    f->n_meta++;
  }
  return LB_OK;
}

/* Validates one tensor entry and fills t (except data); begin/end returned separately. */
static lb_status parse_entry(const lb_st_file *f, const char *name, const json_t *e,
                             uint64_t buf_len, lb_tensor *t, uint64_t *begin, lb_error *err) {
  const char *L = f->label;
  if (!json_is_object(e))
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s': expected an object, got %s", L, name,
                   lb_json_type_name(e));
  const json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
               *off = json_object_get(e, "data_offsets");
  if (!dt || !sh || !off)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s': missing '%s'", L, name,
                   !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (!json_is_string(dt) || !lb_dtype_from_name(json_string_value(dt), &t->dtype))
    return lb_fail(err, LB_EFORMAT,
                   "%s: tensor '%s': unknown dtype %s%s%s (expected one of F64 F32 F16 BF16 "
                   "F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL)",
                   L, name, json_is_string(dt) ? "'" : "",
                   json_is_string(dt) ? json_string_value(dt) : lb_json_type_name(dt),
                   json_is_string(dt) ? "'" : "");
  if (!json_is_array(sh) || json_array_size(sh) > LB_MAX_DIMS)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s': shape must be an array of at most %d sizes",
                   L, name, LB_MAX_DIMS);
  t->ndim = (int)json_array_size(sh);
  uint64_t numel = 1;
  for (int d = 0; d < t->ndim; d++) {
    const json_t *v = json_array_get(sh, (size_t)d);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
      return lb_fail(err, LB_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                     L, name, d);
    uint64_t s = (uint64_t)json_integer_value(v);
    t->shape[d] = (int64_t)s;
    if (s && numel > UINT64_MAX / s)
      return lb_fail(err, LB_EFORMAT, "%s: tensor '%s': shape product overflows", L, name);
    numel *= s;
  }
  if (!json_is_array(off) || json_array_size(off) != 2 ||
      !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)) ||
      json_integer_value(json_array_get(off, 0)) < 0 ||
      json_integer_value(json_array_get(off, 1)) < 0)
    return lb_fail(err, LB_EFORMAT,
                   "%s: tensor '%s': data_offsets must be two non-negative integers", L, name);
  uint64_t b = (uint64_t)json_integer_value(json_array_get(off, 0));
  uint64_t en = (uint64_t)json_integer_value(json_array_get(off, 1));
  if (en < b)
    return lb_fail(err, LB_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                   L, name, (unsigned long long)b, (unsigned long long)en);
  if (en > buf_len)
    return lb_fail(err, LB_EFORMAT,
                   "%s: tensor '%s': data_offsets [%llu, %llu] run past the data buffer (%llu bytes)",
                   L, name, (unsigned long long)b, (unsigned long long)en,
                   (unsigned long long)buf_len);
  size_t es = lb_dtype_size(t->dtype);
  if (numel > UINT64_MAX / es)
    return lb_fail(err, LB_EFORMAT,
                   "%s: tensor '%s': shape holds %llu elements of %s, more than 2^64 bytes", L, name,
                   (unsigned long long)numel, lb_dtype_name(t->dtype));
  if (numel * es != en - b)
    return lb_fail(err, LB_EFORMAT,
                   "%s: tensor '%s': shape holds %llu elements of %s (%llu bytes) but data_offsets "
                   "span %llu bytes",
                   L, name, (unsigned long long)numel, lb_dtype_name(t->dtype),
                   (unsigned long long)(numel * es), (unsigned long long)(en - b));
  t->numel = numel;
  t->nbytes = en - b;
  *begin = b;
  return LB_OK;
}

static lb_status parse_header(lb_st_file *f, const uint8_t *buf, size_t len, lb_error *err) {
  const char *L = f->label;
  if (len < 8)
    return lb_fail(err, LB_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                   L, len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
  if (hlen > LB_ST_MAX_HEADER)
    return lb_fail(err, LB_EFORMAT, "%s: header length %llu exceeds the %u-byte limit", L,
                   (unsigned long long)hlen, LB_ST_MAX_HEADER);
  if (hlen > len - 8)
    return lb_fail(err, LB_EFORMAT,
                   "%s: header length %llu runs past the end of the file (%zu bytes); truncated?",
                   L, (unsigned long long)hlen, len);
  if (hlen < 2 || buf[8] != '{')
    return lb_fail(err, LB_EFORMAT, "%s: header does not start with '{'", L);
  json_t *root;
  LB_TRY(lb_json_parse((const char *)buf + 8, (size_t)hlen, L, &root, err));
  lb_status s = LB_OK;
  span *spans = NULL;
  /* starts with '{' and parsed whole: an object */
  const uint8_t *data = buf + 8 + hlen;
  uint64_t buf_len = len - 8 - hlen;
  size_t cap = json_object_size(root);
  f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
  spans = calloc(cap ? cap : 1, sizeof *spans);
  if (!f->tensors || !spans) {
    s = lb_fail(err, LB_ENOMEM, "%s: out of memory for %zu tensors", L, cap);
    goto out;
  }
  lb_tensor *tmp = calloc(cap ? cap : 1, sizeof *tmp);
  if (!tmp) {
    s = lb_fail(err, LB_ENOMEM, "%s: out of memory", L);
    goto out;
  }
  size_t n = 0;
  const char *key;
  const json_t *val;
  json_object_foreach(root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      s = parse_metadata(f, val, err);
    } else {
      uint64_t b = 0;
      s = parse_entry(f, key, val, buf_len, &tmp[n], &b, err);
      if (s == LB_OK) {
        tmp[n].name = strdup(key);
        if (!tmp[n].name) s = lb_fail(err, LB_ENOMEM, "%s: out of memory", L);
        spans[n] = (span){b, b + tmp[n].nbytes, n};
        if (s == LB_OK) n++;
      }
    }
    if (s != LB_OK) break;
  }
  if (s == LB_OK) {
    /* The tensors must tile the buffer: sorted by offset, each begins where the last ended. */
    qsort(spans, n, sizeof *spans, cmp_span);
    uint64_t at = 0;
    for (size_t i = 0; i < n && s == LB_OK; i++) {
      const lb_tensor *t = &tmp[spans[i].idx];
      if (spans[i].begin < at)
        s = lb_fail(err, LB_EFORMAT, "%s: tensor '%s' [%llu, %llu] overlaps tensor '%s' (ends at %llu)",
                    L, t->name, (unsigned long long)spans[i].begin,
                    (unsigned long long)spans[i].end, tmp[spans[i - 1].idx].name,
                    (unsigned long long)at);
      else if (spans[i].begin > at)
        s = lb_fail(err, LB_EFORMAT, "%s: %llu-byte gap before tensor '%s' at offset %llu", L,
                    (unsigned long long)(spans[i].begin - at), t->name,
                    (unsigned long long)spans[i].begin);
      at = spans[i].end;
    }
    if (s == LB_OK && at != buf_len)
      s = lb_fail(err, LB_EFORMAT,
                  "%s: the tensors cover %llu bytes but the data buffer holds %llu (trailing data)",
                  L, (unsigned long long)at, (unsigned long long)buf_len);
  }
  if (s == LB_OK) {
    for (size_t i = 0; i < n; i++) {
      f->tensors[i] = tmp[spans[i].idx];
      f->tensors[i].data = data + spans[i].begin;
      f->tensors[i].file = f->label;
    }
    f->n = n;
  } else {
    for (size_t i = 0; i < n; i++) free((char *)tmp[i].name);
  }
  free(tmp);
out:
  free(spans);
  json_decref(root);
  return s;
}

lb_status lb_st_parse(const void *buf, size_t len, const char *label, lb_st_file **out,
                      lb_error *err) {
  *out = NULL;
  lb_st_file *f = calloc(1, sizeof *f);
  if (!f || !(f->label = strdup(label ? label : "<memory>"))) {
    free(f);
    return lb_fail(err, LB_ENOMEM, "out of memory");
  }
  lb_status s = parse_header(f, buf, len, err);
  if (s == LB_OK) {
    f->by_name = malloc((f->n ? f->n : 1) * sizeof *f->by_name);
    if (!f->by_name) s = lb_fail(err, LB_ENOMEM, "%s: out of memory", f->label);
  }
  if (s == LB_OK) {
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, f->n, sizeof *f->by_name, lb_tensor_cmp_name);
  }
  if (s != LB_OK) {
    lb_st_close(f);
    return s;
  }
  *out = f;
  return LB_OK;
}

lb_status lb_st_open(const char *path, lb_st_file **out, lb_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return lb_fail(err, LB_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return lb_fail(err, LB_EIO, "%s: not a regular file", path);
  }
  size_t len = (size_t)st.st_size;
  if (len < 8) {
    close(fd);
    return lb_fail(err, LB_EFORMAT,
                   "%s: file is %zu bytes, too short for the 8-byte header length", path, len);
  }
  void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return lb_fail(err, LB_EIO, "%s: mmap failed: %s", path, strerror(errno));
  lb_status s = lb_st_parse(map, len, path, out, err);
  if (s != LB_OK) {
    munmap(map, len);
    return s;
  }
  (*out)->map = map;
  (*out)->map_len = len;
  return LB_OK;
}

size_t lb_st_count(const lb_st_file *f) { return f->n; }

const lb_tensor *lb_st_tensor(const lb_st_file *f, size_t i) {
  return i < f->n ? &f->tensors[i] : NULL;
}

const lb_tensor *lb_st_find(const lb_st_file *f, const char *name) {
  return lb_tensor_bsearch(f->by_name, f->n, name);
}

size_t lb_st_metadata_count(const lb_st_file *f) { return f->n_meta; }

void lb_st_metadata_at(const lb_st_file *f, size_t i, const char **key, const char **value) {
  *key = i < f->n_meta ? f->meta_keys[i] : NULL;
  *value = i < f->n_meta ? f->meta_vals[i] : NULL;
}
