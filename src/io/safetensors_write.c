/* Streaming sharded safetensors writer.
 *
 * The header (which lists every tensor's offsets) comes first in a safetensors file, but tensors
 * arrive one at a time and are not kept in memory. So each shard's bytes go to temporary spill
 * files as they arrive, one per element size (8, 4, 2, 1 bytes), and lb_st_writer_finish writes
 * each final file as: length, header (space-padded to a multiple of 8), then the spill files in
 * descending element size, so every tensor is aligned to its element size. Final files are
 * written under a temporary name and renamed only when all of them are complete. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fs.h"
#include "io/json.h"

enum { N_CLASS = 4 }; /* element sizes 8, 4, 2, 1 */

typedef struct wtensor {
  char *name;
  lb_dtype dtype;
  int ndim;
  int64_t shape[LB_MAX_DIMS];
  uint64_t nbytes;
} wtensor;

typedef struct wshard {
  wtensor *t;
  size_t n, cap;
  uint64_t bytes;
  FILE *spill[N_CLASS];
  char *spill_path[N_CLASS];
  char *final_tmp; /* set during finish */
} wshard;

struct lb_st_writer {
  char *dir;
  uint64_t max_shard;
  wshard *shards;
  size_t n_shards, cap_shards;
  json_t *meta;
  long pid;
  unsigned serial;
};

static int size_class(lb_dtype t) {
  switch (lb_dtype_size(t)) {
  case 8: return 0;
  case 4: return 1;
  case 2: return 2;
  default: return 3;
  }
}

lb_status lb_st_writer_open(const char *dir, uint64_t max_shard_bytes, lb_st_writer **out,
                            lb_error *err) {
  *out = NULL;
  if (!lb_is_dir(dir)) return lb_fail(err, LB_EIO, "%s: not a directory", dir);
  lb_st_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->dir = strdup(dir)) || !(w->meta = json_object())) {
    if (w) free(w->dir);
    free(w);
    return lb_fail(err, LB_ENOMEM, "out of memory");
  }
  json_object_set_new(w->meta, "format", json_string("pt"));
  w->max_shard = max_shard_bytes;
  w->pid = (long)getpid();
  *out = w;
  return LB_OK;
}

lb_status lb_st_writer_set_metadata(lb_st_writer *w, const char *key, const char *value,
                                    lb_error *err) {
  json_t *v = json_string(value);
  if (!v || json_object_set_new(w->meta, key, v) != 0)
    return lb_fail(err, LB_EINVAL, "safetensors metadata '%s': not valid UTF-8", key);
  return LB_OK;
}

static void shard_free(wshard *s, bool remove_files) {
  for (int c = 0; c < N_CLASS; c++) {
    if (s->spill[c]) fclose(s->spill[c]);
    if (s->spill_path[c]) {
      remove(s->spill_path[c]);
      free(s->spill_path[c]);
    }
  }
  if (s->final_tmp) {
    if (remove_files) remove(s->final_tmp);
    free(s->final_tmp);
  }
  for (size_t i = 0; i < s->n; i++) free(s->t[i].name);
  free(s->t);
}

static void writer_free(lb_st_writer *w, bool remove_files) {
  for (size_t i = 0; i < w->n_shards; i++) shard_free(&w->shards[i], remove_files);
  free(w->shards);
  json_decref(w->meta);
  free(w->dir);
  free(w);
}

void lb_st_writer_abort(lb_st_writer *w) {
  if (w) writer_free(w, true);
}

static char *tmp_path(lb_st_writer *w, const char *what) {
  char name[96];
  snprintf(name, sizeof name, ".lowbit-%s-%ld-%u.tmp", what, w->pid, w->serial++);
  return lb_path_join(w->dir, name);
}

/* Makes room for one more element in a growing array of `n` used of `*cap`. */
static lb_status reserve(void **arr, size_t n, size_t *cap, size_t elem, lb_error *err) {
  if (n < *cap) return LB_OK;
  size_t c = *cap ? 2 * *cap : 16;
  void *p = realloc(*arr, c * elem);
  if (!p) return lb_fail(err, LB_ENOMEM, "out of memory");
  *arr = p;
  *cap = c;
  return LB_OK;
}

static lb_status new_shard(lb_st_writer *w, lb_error *err) {
  LB_TRY(reserve((void **)&w->shards, w->n_shards, &w->cap_shards, sizeof(wshard), err));
  memset(&w->shards[w->n_shards++], 0, sizeof(wshard));
  return LB_OK;
}

lb_status lb_st_writer_add(lb_st_writer *w, const char *name, lb_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, uint64_t nbytes,
                           lb_error *err) {
  if ((unsigned)dtype >= LB_DTYPE_COUNT)
    return lb_fail(err, LB_EINVAL, "tensor '%s': invalid dtype %d", name, (int)dtype);
  if (ndim < 0 || ndim > LB_MAX_DIMS)
    return lb_fail(err, LB_EINVAL, "tensor '%s': %d dimensions (at most %d)", name, ndim,
                   LB_MAX_DIMS);
  if (!name[0] || strcmp(name, "__metadata__") == 0)
    return lb_fail(err, LB_EINVAL, "tensor name '%s' is reserved or empty", name);
  uint64_t numel = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return lb_fail(err, LB_EINVAL, "tensor '%s': negative shape[%d]", name, d);
    if (shape[d] && numel > UINT64_MAX / (uint64_t)shape[d])
      return lb_fail(err, LB_EINVAL, "tensor '%s': shape product overflows", name);
    numel *= (uint64_t)shape[d];
  }
  if (numel > UINT64_MAX / lb_dtype_size(dtype) || numel * lb_dtype_size(dtype) != nbytes)
    return lb_fail(err, LB_EINVAL, "tensor '%s': shape and %s need %llu bytes, got %llu", name,
                   lb_dtype_name(dtype), (unsigned long long)(numel * lb_dtype_size(dtype)),
                   (unsigned long long)nbytes);
  if (!w->n_shards || (w->max_shard && w->shards[w->n_shards - 1].n &&
                       w->shards[w->n_shards - 1].bytes + nbytes > w->max_shard))
    LB_TRY(new_shard(w, err));
  wshard *s = &w->shards[w->n_shards - 1];
  int c = size_class(dtype);
  if (!s->spill[c]) {
    s->spill_path[c] = tmp_path(w, "spill");
    if (!s->spill_path[c]) return lb_fail(err, LB_ENOMEM, "out of memory");
    s->spill[c] = fopen(s->spill_path[c], "w+b");
    if (!s->spill[c])
      return lb_fail(err, LB_EIO, "%s: cannot create: %s", s->spill_path[c], strerror(errno));
  }
  LB_TRY(reserve((void **)&s->t, s->n, &s->cap, sizeof(wtensor), err));
  wtensor *t = &s->t[s->n];
  memset(t, 0, sizeof *t);
  if (!(t->name = strdup(name))) return lb_fail(err, LB_ENOMEM, "out of memory");
  t->dtype = dtype;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->nbytes = nbytes;
  s->n++;
  s->bytes += nbytes;
  return lb_fwrite_all(s->spill[c], data, (size_t)nbytes, s->spill_path[c], err);
}

/* Builds the JSON header of a shard: metadata first, then tensors in file order. */
static char *shard_header(const lb_st_writer *w, const wshard *s, size_t *len) {
  json_t *h = json_object();
  json_object_set(h, "__metadata__", w->meta);
  uint64_t at = 0;
  for (int c = 0; c < N_CLASS; c++)
    for (size_t i = 0; i < s->n; i++) {
      const wtensor *t = &s->t[i];
      if (size_class(t->dtype) != c) continue;
      json_t *shape = json_array();
      for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
      json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", lb_dtype_name(t->dtype), "shape",
                            shape, "data_offsets", (json_int_t)at, (json_int_t)(at + t->nbytes));
      json_object_set_new(h, t->name, e);
      at += t->nbytes;
    }
  char *text = json_dumps(h, JSON_COMPACT);
  json_decref(h);
  if (!text) return NULL;
  size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
  char *out = realloc(text, padded + 1);
  if (!out) {
    free(text);
    return NULL;
  }
  memset(out + n, ' ', padded - n);
  out[padded] = 0;
  *len = padded;
  return out;
}

static lb_status write_shard(lb_st_writer *w, wshard *s, const char *final_name, lb_error *err) {
  char *path = lb_path_join(w->dir, final_name);
  s->final_tmp = tmp_path(w, "shard");
  if (!path || !s->final_tmp) {
    free(path);
    return lb_fail(err, LB_ENOMEM, "out of memory");
  }
  size_t hlen = 0;
  char *header = shard_header(w, s, &hlen);
  FILE *f = header ? fopen(s->final_tmp, "wb") : NULL;
  lb_status st = LB_OK;
  if (!header) st = lb_fail(err, LB_ENOMEM, "%s: out of memory building the header", path);
  else if (!f) st = lb_fail(err, LB_EIO, "%s: cannot create: %s", s->final_tmp, strerror(errno));
  if (st == LB_OK) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    st = lb_fwrite_all(f, le, 8, s->final_tmp, err);
    if (st == LB_OK) st = lb_fwrite_all(f, header, hlen, s->final_tmp, err);
    for (int c = 0; c < N_CLASS && st == LB_OK; c++) {
      if (!s->spill[c]) continue;
      long size = ftell(s->spill[c]);
      if (size < 0 || fseek(s->spill[c], 0, SEEK_SET) != 0)
        st = lb_fail(err, LB_EIO, "%s: cannot rewind: %s", s->spill_path[c], strerror(errno));
      else
        st = lb_fcopy_range(f, s->final_tmp, s->spill[c], s->spill_path[c], (size_t)size, err);
    }
  }
  if (f) {
    lb_status c = lb_fclose_sync(f, s->final_tmp, err);
    if (st == LB_OK) st = c;
  }
  free(header);
  free(path);
  return st;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every tensor name must be unique across all shards. */
static lb_status check_unique(const lb_st_writer *w, lb_error *err) {
  size_t n = 0;
  for (size_t i = 0; i < w->n_shards; i++) n += w->shards[i].n;
  const char **names = malloc((n ? n : 1) * sizeof *names);
  if (!names) return lb_fail(err, LB_ENOMEM, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < w->n_shards; i++)
    for (size_t j = 0; j < w->shards[i].n; j++) names[k++] = w->shards[i].t[j].name;
  qsort(names, n, sizeof *names, cmp_str);
  lb_status s = LB_OK;
  for (size_t i = 1; i < n && s == LB_OK; i++)
    if (strcmp(names[i - 1], names[i]) == 0)
      s = lb_fail(err, LB_EINVAL, "%s: tensor '%s' was written twice", w->dir, names[i]);
  free(names);
  return s;
}

static lb_status write_index(lb_st_writer *w, char **names, lb_error *err) {
  json_t *map = json_object();
  uint64_t total = 0;
  for (size_t i = 0; i < w->n_shards; i++)
    for (size_t j = 0; j < w->shards[i].n; j++) {
      json_object_set_new(map, w->shards[i].t[j].name, json_string(names[i]));
      total += w->shards[i].t[j].nbytes;
    }
  json_t *idx = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total,
                          "weight_map", map);
  char *text = idx ? json_dumps(idx, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
  json_decref(idx);
  if (!text) return lb_fail(err, LB_ENOMEM, "out of memory building the index");
  char *path = lb_path_join(w->dir, "model.safetensors.index.json");
  size_t len = strlen(text);
  text[len] = '\n'; /* json_dumps' terminator becomes the final newline */
  lb_status s = path ? lb_write_file_atomic(path, text, len + 1, err)
                     : lb_fail(err, LB_ENOMEM, "out of memory");
  free(path);
  free(text);
  return s;
}

lb_status lb_st_writer_finish(lb_st_writer *w, lb_error *err) {
  if (!w->n_shards) {
    lb_status s = new_shard(w, err); /* an empty model still gets a valid, empty file */
    if (s != LB_OK) {
      writer_free(w, true);
      return s;
    }
  }
  size_t n = w->n_shards;
  char **names = calloc(n, sizeof *names);
  lb_status s = names ? check_unique(w, err) : lb_fail(err, LB_ENOMEM, "out of memory");
  for (size_t i = 0; i < n && s == LB_OK; i++) {
    names[i] = malloc(64);
    if (!names[i]) {
      s = lb_fail(err, LB_ENOMEM, "out of memory");
      break;
    }
    if (n == 1) snprintf(names[i], 64, "model.safetensors");
    else snprintf(names[i], 64, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    s = write_shard(w, &w->shards[i], names[i], err);
  }
  /* All shards are complete: move them into place, then the index (which names them). */
  for (size_t i = 0; i < n && s == LB_OK; i++) {
    char *path = lb_path_join(w->dir, names[i]);
    if (!path || rename(w->shards[i].final_tmp, path) != 0)
      s = lb_fail(err, LB_EIO, "%s/%s: cannot rename into place: %s", w->dir, names[i],
                  strerror(errno));
    free(path);
    if (s == LB_OK) {
      free(w->shards[i].final_tmp);
      w->shards[i].final_tmp = NULL;
    }
  }
  if (s == LB_OK && n > 1) s = write_index(w, names, err);
  for (size_t i = 0; names && i < n; i++) free(names[i]);
  free(names);
  writer_free(w, true);
  return s;
}
