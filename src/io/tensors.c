/* The tensors of a checkpoint directory, over one file or the shards of an index. */
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/json.h"
#include "io/tensor_index.h"

struct lb_tensors {
  lb_st_file **files;
  size_t n_files;
  const lb_tensor **sorted; /* by name, across files */
  size_t n;
};

void lb_tensors_close(lb_tensors *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n_files; i++) lb_st_close(t->files[i]);
  free(t->files);
  free(t->sorted);
  free(t);
}

/* A shard file name from an index must be a plain name inside the directory. */
static bool safe_file_name(const char *s) {
  return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

static lb_status open_index(lb_tensors *t, const char *dir, const char *index_path,
                            lb_error *err) {
  json_t *root;
  LB_TRY(lb_json_load_file(index_path, 64u << 20, &root, err));
  lb_status s = LB_OK;
  const json_t *map = json_object_get(root, "weight_map");
  if (!json_is_object(root) || !json_is_object(map)) {
    s = lb_fail(err, LB_EFORMAT, "%s: expected an object with a 'weight_map' object", index_path);
    goto out;
  }
  size_t n = json_object_size(map);
  if (n == 0) {
    s = lb_fail(err, LB_EFORMAT, "%s: 'weight_map' is empty", index_path);
    goto out;
  }
  const char **names = calloc(n ? n : 1, sizeof *names); /* distinct shard names, in order seen */
  t->files = calloc(n ? n : 1, sizeof *t->files);
  if (!names || !t->files) {
    free(names);
    s = lb_fail(err, LB_ENOMEM, "out of memory");
    goto out;
  }
  const char *key;
  const json_t *v;
  /* Open every distinct shard once. */
  json_object_foreach((json_t *)map, key, v) {
    if (!json_is_string(v) || !safe_file_name(json_string_value(v))) {
      s = lb_fail(err, LB_EFORMAT, "%s: weight_map['%s']: expected a file name in the folder",
                  index_path, key);
      break;
    }
    const char *file = json_string_value(v);
    size_t k = 0;
    while (k < t->n_files && strcmp(names[k], file) != 0) k++;
    if (k < t->n_files) continue;
    char *path = lb_path_join(dir, file);
    if (!path) {
      s = lb_fail(err, LB_ENOMEM, "out of memory");
      break;
    }
    if (!lb_path_exists(path))
      s = lb_fail(err, LB_ENOTFOUND, "%s: shard '%s' (holding '%s') does not exist", index_path,
                  file, key);
    else
      s = lb_st_open(path, &t->files[t->n_files], err);
    free(path);
    if (s != LB_OK) break;
    names[t->n_files++] = file;
  }
  /* Index and shards must agree both ways. */
  size_t total = 0;
  for (size_t k = 0; k < t->n_files && s == LB_OK; k++) total += lb_st_count(t->files[k]);
  if (s == LB_OK) json_object_foreach((json_t *)map, key, v) {
      size_t k = 0;
      while (strcmp(names[k], json_string_value(v)) != 0) k++;
      if (!lb_st_find(t->files[k], key)) {
        s = lb_fail(err, LB_ENOTFOUND, "%s: weight_map names '%s' in '%s', which does not hold it",
                    index_path, key, names[k]);
        break;
      }
    }
  if (s == LB_OK && total != n) {
    /* some shard holds a tensor the index does not list: name it */
    for (size_t k = 0; k < t->n_files && s == LB_OK; k++)
      for (size_t i = 0; i < lb_st_count(t->files[k]); i++) {
        const lb_tensor *x = lb_st_tensor(t->files[k], i);
        const json_t *m = json_object_get(map, x->name);
        if (!m) {
          s = lb_fail(err, LB_EFORMAT, "%s: tensor '%s' in '%s' is not listed by the index",
                      index_path, x->name, names[k]);
          break;
        }
        if (strcmp(json_string_value(m), names[k]) != 0) {
          s = lb_fail(err, LB_EFORMAT, "%s: tensor '%s' is stored twice, in '%s' and '%s'",
                      index_path, x->name, json_string_value(m), names[k]);
          break;
        }
      }
  }
  free(names);
out:
  json_decref(root);
  return s;
}

lb_status lb_tensors_open(const char *dir, lb_tensors **out, lb_error *err) {
  *out = NULL;
  if (!lb_is_dir(dir)) return lb_fail(err, LB_ENOTFOUND, "%s: not a directory", dir);
  lb_tensors *t = calloc(1, sizeof *t);
  char *index = lb_path_join(dir, "model.safetensors.index.json");
  char *single = lb_path_join(dir, "model.safetensors");
  lb_status s = LB_OK;
  if (!t || !index || !single) {
    s = lb_fail(err, LB_ENOMEM, "out of memory");
  } else if (lb_path_exists(index)) {
    s = open_index(t, dir, index, err);
  } else if (lb_path_exists(single)) {
    t->files = calloc(1, sizeof *t->files);
    s = t->files ? lb_st_open(single, &t->files[0], err) : lb_fail(err, LB_ENOMEM, "out of memory");
    if (s == LB_OK) t->n_files = 1;
  } else {
    char *bin = lb_path_join(dir, "pytorch_model.bin");
    bool has_bin = bin && lb_path_exists(bin);
    free(bin);
    s = lb_fail(err, LB_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json%s",
                dir, has_bin ? " (pytorch_model.bin is a pickle; convert it to safetensors)" : "");
  }
  free(index);
  free(single);
  if (s == LB_OK) {
    for (size_t k = 0; k < t->n_files; k++) t->n += lb_st_count(t->files[k]);
    t->sorted = malloc((t->n ? t->n : 1) * sizeof *t->sorted);
    if (!t->sorted) s = lb_fail(err, LB_ENOMEM, "out of memory");
  }
  if (s == LB_OK) {
    size_t i = 0;
    for (size_t k = 0; k < t->n_files; k++)
      for (size_t j = 0; j < lb_st_count(t->files[k]); j++)
        t->sorted[i++] = lb_st_tensor(t->files[k], j);
    qsort(t->sorted, t->n, sizeof *t->sorted, lb_tensor_cmp_name);
    for (i = 1; i < t->n && s == LB_OK; i++)
      if (strcmp(t->sorted[i - 1]->name, t->sorted[i]->name) == 0)
        s = lb_fail(err, LB_EFORMAT, "%s: tensor '%s' is stored twice (%s and %s)", dir,
                    t->sorted[i]->name, t->sorted[i - 1]->file, t->sorted[i]->file);
  }
  if (s != LB_OK) {
    lb_tensors_close(t);
    return s;
  }
  *out = t;
  return LB_OK;
}

size_t lb_tensors_count(const lb_tensors *t) { return t->n; }
size_t lb_tensors_nfiles(const lb_tensors *t) { return t->n_files; }

const lb_tensor *lb_tensors_at(const lb_tensors *t, size_t i) {
  return i < t->n ? t->sorted[i] : NULL;
}

const lb_tensor *lb_tensors_find(const lb_tensors *t, const char *name) {
  return lb_tensor_bsearch(t->sorted, t->n, name);
}
