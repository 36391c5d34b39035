/* safetensors reader and streaming writer: round trips, sharding, alignment, cleanup.
 * (Compatibility with the reference safetensors package is checked by py/convert_roundtrip.py;
 *  malformed inputs by test_malformed.c.) */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/stat.h>

#include "test.h"

typedef struct {
  const char *name;
  lb_dtype dtype;
  int ndim;
  int64_t shape[3];
} spec;

/* Deliberately mixed element sizes, an odd-sized U8, a scalar and an empty tensor. */
static const spec SPECS[] = {
    {"a.u8", LB_U8, 1, {7}},          {"b.f32", LB_F32, 2, {3, 5}},
    {"c.bf16", LB_BF16, 2, {2, 3}},   {"d.i64", LB_I64, 1, {2}},
    {"e.bool", LB_BOOL, 0, {0}},      {"f.f16.empty", LB_F16, 2, {0, 4}},
    {"g.f64", LB_F64, 0, {0}},        {"h.e4m3", LB_F8_E4M3, 2, {4, 4}},
    {"i.i32", LB_I32, 3, {2, 2, 2}},  {"j.e5m2", LB_F8_E5M2, 1, {3}},
    {"k.i16", LB_I16, 1, {5}},        {"l.i8", LB_I8, 1, {9}},
};
enum { NSPEC = sizeof SPECS / sizeof SPECS[0] };

static uint64_t spec_bytes(const spec *s) {
  uint64_t n = lb_dtype_size(s->dtype);
  for (int d = 0; d < s->ndim; d++) n *= (uint64_t)s->shape[d];
  return n;
}

/* Deterministic, non-constant content per tensor. */
static void fill(uint8_t *p, uint64_t n, int seed) {
  for (uint64_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 31u + (unsigned)seed * 17u + 5u);
}

static char *mkdir_in_tmp(const char *name) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%s", lb_test_tmpdir(), name);
  mkdir(path, 0755);
  return path;
}

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

static void write_specs(const char *dir, uint64_t shard, lb_error *err) {
  lb_st_writer *w;
  CHECK_OK(lb_st_writer_open(dir, shard, &w, err), err);
  CHECK_OK(lb_st_writer_set_metadata(w, "producer", "lowbit-test", err), err);
  for (int i = 0; i < NSPEC; i++) {
    uint8_t buf[256];
    uint64_t n = spec_bytes(&SPECS[i]);
    fill(buf, n, i);
    CHECK_OK(lb_st_writer_add(w, SPECS[i].name, SPECS[i].dtype, SPECS[i].ndim, SPECS[i].shape, buf,
                              n, err),
             err);
  }
  CHECK_OK(lb_st_writer_finish(w, err), err);
}

/* Every spec is present with its dtype, shape, bytes, and aligned to its element size. */
static void check_specs(const lb_tensor *(*find)(const void *, const char *), const void *h) {
  for (int i = 0; i < NSPEC; i++) {
    const lb_tensor *t = find(h, SPECS[i].name);
    CHECK_MSG(t != NULL, "%s missing", SPECS[i].name);
    if (!t) continue;
    uint8_t want[256];
    uint64_t n = spec_bytes(&SPECS[i]);
    fill(want, n, i);
    CHECK(t->dtype == SPECS[i].dtype);
    CHECK(t->ndim == SPECS[i].ndim);
    for (int d = 0; d < t->ndim; d++) CHECK(t->shape[d] == SPECS[i].shape[d]);
    CHECK(t->nbytes == n);
    CHECK(n == 0 || memcmp(t->data, want, n) == 0);
    CHECK_MSG((uintptr_t)t->data % lb_dtype_size(t->dtype) == 0, "%s misaligned", t->name);
  }
}

static const lb_tensor *find_file(const void *h, const char *n) { return lb_st_find(h, n); }
static const lb_tensor *find_set(const void *h, const char *n) { return lb_tensors_find(h, n); }

static void test_single_file_roundtrip(void) {
  lb_error err = {0};
  char *dir = mkdir_in_tmp("single");
  write_specs(dir, 0, &err);
  CHECK(count_entries(dir) == 1); /* model.safetensors only: no index, no temporaries */
  char path[700];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  lb_st_file *f;
  CHECK_OK(lb_st_open(path, &f, &err), &err);
  if (!f) return;
  CHECK(lb_st_count(f) == NSPEC);
  check_specs(find_file, f);
  /* metadata: format=pt always, plus ours */
  int seen = 0;
  for (size_t i = 0; i < lb_st_metadata_count(f); i++) {
    const char *k, *v;
    lb_st_metadata_at(f, i, &k, &v);
    seen += !strcmp(k, "format") && !strcmp(v, "pt");
    seen += !strcmp(k, "producer") && !strcmp(v, "lowbit-test");
  }
  CHECK(seen == 2);
  /* the header is padded to 8 bytes and the tensors tile the buffer in descending element size */
  size_t len;
  char *raw = lb_test_read_file(path, &len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (uint8_t)raw[i];
  CHECK(hlen % 8 == 0);
  size_t last = 8;
  for (size_t i = 0; i < lb_st_count(f); i++) {
    size_t es = lb_dtype_size(lb_st_tensor(f, i)->dtype);
    CHECK(es <= last);
    last = es;
  }
  free(raw);
  lb_st_close(f);
}

static void test_sharded_roundtrip(void) {
  lb_error err = {0};
  char *dir = mkdir_in_tmp("sharded");
  write_specs(dir, 64, &err); /* a 64-byte limit forces many shards */
  char path[700];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  json_error_t je;
  json_t *idx = json_load_file(path, 0, &je);
  CHECK(idx != NULL);
  if (!idx) return;
  const json_t *map = json_object_get(idx, "weight_map");
  CHECK(json_object_size(map) == NSPEC);
  uint64_t total = 0;
  for (int i = 0; i < NSPEC; i++) total += spec_bytes(&SPECS[i]);
  CHECK((uint64_t)json_integer_value(json_object_get(json_object_get(idx, "metadata"),
                                                     "total_size")) == total);
  /* shard names: model-0000i-of-0000N.safetensors, N files, each non-empty but the limit kept
     unless a single tensor is larger */
  const char *first = json_string_value(json_object_get(map, "a.u8"));
  CHECK(first && strncmp(first, "model-00001-of-", 15) == 0);
  int nshards = first ? atoi(first + 15) : 0;
  CHECK(nshards > 2);
  CHECK(count_entries(dir) == nshards + 1);
  for (int s = 1; s <= nshards; s++) {
    char shard[800];
    snprintf(shard, sizeof shard, "%s/model-%05d-of-%05d.safetensors", dir, s, nshards);
    lb_st_file *f;
    CHECK_OK(lb_st_open(shard, &f, &err), &err);
    if (!f) continue;
    uint64_t bytes = 0;
    for (size_t i = 0; i < lb_st_count(f); i++) bytes += lb_st_tensor(f, i)->nbytes;
    CHECK(bytes <= 64 || lb_st_count(f) == 1);
    lb_st_close(f);
  }
  json_decref(idx);
  lb_tensors *ts;
  CHECK_OK(lb_tensors_open(dir, &ts, &err), &err);
  if (!ts) return;
  CHECK(lb_tensors_count(ts) == NSPEC);
  CHECK(lb_tensors_nfiles(ts) == (size_t)nshards);
  check_specs(find_set, ts);
  for (size_t i = 1; i < lb_tensors_count(ts); i++)
    CHECK(strcmp(lb_tensors_at(ts, i - 1)->name, lb_tensors_at(ts, i)->name) < 0);
  lb_tensors_close(ts);
}

static void test_abort_leaves_nothing(void) {
  lb_error err = {0};
  char *dir = mkdir_in_tmp("abort");
  lb_st_writer *w;
  CHECK_OK(lb_st_writer_open(dir, 16, &w, &err), &err);
  uint8_t buf[64] = {1};
  int64_t shape[1] = {16};
  CHECK_OK(lb_st_writer_add(w, "x", LB_F32, 1, shape, buf, 64, &err), &err);
  CHECK_OK(lb_st_writer_add(w, "y", LB_F32, 1, shape, buf, 64, &err), &err);
  CHECK(count_entries(dir) > 0); /* spill files exist while writing */
  lb_st_writer_abort(w);
  CHECK(count_entries(dir) == 0);
}

static void test_duplicate_name_fails_cleanly(void) {
  lb_error err = {0};
  char *dir = mkdir_in_tmp("dup");
  lb_st_writer *w;
  CHECK_OK(lb_st_writer_open(dir, 0, &w, &err), &err);
  uint8_t buf[8] = {0};
  int64_t shape[1] = {2};
  CHECK_OK(lb_st_writer_add(w, "w", LB_F32, 1, shape, buf, 8, &err), &err);
  CHECK_OK(lb_st_writer_add(w, "w", LB_F32, 1, shape, buf, 8, &err), &err);
  CHECK(lb_st_writer_finish(w, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "'w'") && strstr(err.msg, "twice"));
  CHECK(count_entries(dir) == 0);
}

static void test_writer_rejects_bad_arguments(void) {
  lb_error err = {0};
  char *dir = mkdir_in_tmp("badargs");
  lb_st_writer *w;
  CHECK_OK(lb_st_writer_open(dir, 0, &w, &err), &err);
  uint8_t buf[16] = {0};
  int64_t shape[9] = {2, 2, 1, 1, 1, 1, 1, 1, 1};
  CHECK(lb_st_writer_add(w, "short", LB_F32, 1, shape, buf, 7, &err) == LB_EINVAL);
  CHECK(strstr(err.msg, "'short'") && strstr(err.msg, "need 8 bytes"));
  CHECK(lb_st_writer_add(w, "deep", LB_U8, 9, shape, buf, 4, &err) == LB_EINVAL);
  CHECK(lb_st_writer_add(w, "__metadata__", LB_U8, 1, shape, buf, 2, &err) == LB_EINVAL);
  int64_t neg[1] = {-1};
  CHECK(lb_st_writer_add(w, "neg", LB_U8, 1, neg, buf, 0, &err) == LB_EINVAL);
  lb_st_writer_abort(w);
  CHECK(lb_st_writer_open("/nonexistent/dir", 0, &w, &err) == LB_EIO);
  CHECK(strstr(err.msg, "/nonexistent/dir") != NULL);
}

static void test_empty_writer_makes_valid_file(void) {
  lb_error err = {0};
  char *dir = mkdir_in_tmp("empty");
  lb_st_writer *w;
  CHECK_OK(lb_st_writer_open(dir, 0, &w, &err), &err);
  CHECK_OK(lb_st_writer_finish(w, &err), &err);
  lb_tensors *ts;
  CHECK_OK(lb_tensors_open(dir, &ts, &err), &err);
  if (ts) CHECK(lb_tensors_count(ts) == 0);
  lb_tensors_close(ts);
}

/* The shared model: a real file written by the Python safetensors package. */
static void test_reads_pocket_llama(void) {
  lb_error err = {0};
  lb_st_file *f;
  CHECK_OK(lb_st_open(lb_test_shared("models/pocket-llama-48m/model.safetensors"), &f, &err), &err);
  if (!f) return;
  CHECK(lb_st_count(f) == 92); /* embed + final norm + 10 x (7 Linear + 2 norms) */
  const lb_tensor *e = lb_st_find(f, "model.embed_tokens.weight");
  CHECK(e && e->dtype == LB_BF16 && e->ndim == 2 && e->shape[0] == 32000 && e->shape[1] == 512);
  const lb_tensor *k = lb_st_find(f, "model.layers.9.self_attn.k_proj.weight");
  CHECK(k && k->shape[0] == 256 && k->shape[1] == 512 && k->nbytes == 256 * 512 * 2);
  CHECK(lb_st_find(f, "lm_head.weight") == NULL); /* tied */
  CHECK(lb_st_find(f, "model.layers.10.mlp.up_proj.weight") == NULL);
  uint64_t total = 0;
  for (size_t i = 0; i < lb_st_count(f); i++) total += lb_st_tensor(f, i)->nbytes;
  CHECK(total == 95704064);
  lb_st_close(f);
}

int main(int argc, char **argv) {
  static const lb_test_case cases[] = {
      {"single_file_roundtrip", test_single_file_roundtrip},
      {"sharded_roundtrip", test_sharded_roundtrip},
      {"abort_leaves_nothing", test_abort_leaves_nothing},
      {"duplicate_name_fails_cleanly", test_duplicate_name_fails_cleanly},
      {"writer_rejects_bad_arguments", test_writer_rejects_bad_arguments},
      {"empty_writer_makes_valid_file", test_empty_writer_makes_valid_file},
      {"reads_pocket_llama", test_reads_pocket_llama},
  };
  return lb_test_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
