/* libFuzzer target: the safetensors header parser over arbitrary bytes.
 *
 * lb_st_parse must either fail with a negative status, no handle and a message naming the label, or
 * succeed with tensors that obey everything the format promises: names unique and findable, shapes
 * of at most 8 non-negative sizes whose product times the element size is nbytes, views that tile
 * the data buffer in offset order and end exactly at the end of the input. Every view's first and
 * last byte is read, so ASan reports a view that points outside the input. A broken promise
 * aborts, which libFuzzer reports as a crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

#define LABEL "fuzz.safetensors"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_safetensors: %s\n", what);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lb_st_file *f = (lb_st_file *)&f; /* must be reset to NULL on failure */
  lb_error err;
  memset(&err, 0, sizeof err);
  lb_status s = lb_st_parse(data, size, LABEL, &f, &err);
  if (s != LB_OK) {
    if (s >= 0) fail("non-negative error status");
    if (f != NULL) fail("handle returned on failure");
    if (err.code != s) fail("err.code differs from the status");
    if (strnlen(err.msg, sizeof err.msg) == sizeof err.msg) fail("message not terminated");
    if (s != LB_ENOMEM && strncmp(err.msg, LABEL, strlen(LABEL)) != 0)
      fail("message does not name the input");
    return 0;
  }
  if (!f) fail("LB_OK without a handle");
  if (size < 8) fail("LB_OK for an input shorter than the length field");
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
  if (hlen > size - 8) fail("LB_OK with a header longer than the input");
  volatile uint8_t sink = 0;
  size_t n = lb_st_count(f);
  const uint8_t *at = data + 8 + hlen; /* where the next tensor must start */
  for (size_t i = 0; i < n; i++) {
    const lb_tensor *t = lb_st_tensor(f, i);
    if (!t || !t->name || !t->file) fail("null tensor, name or file");
    size_t len = strlen(t->name);
    if (strcmp(t->name, "__metadata__") == 0) fail("__metadata__ taken as a tensor");
    if (lb_st_find(f, t->name) != t) fail("lb_st_find does not return the tensor");
    if (t->ndim < 0 || t->ndim > LB_MAX_DIMS) fail("ndim out of range");
    if ((unsigned)t->dtype >= LB_DTYPE_COUNT) fail("invalid dtype");
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
      if (t->shape[d] < 0) fail("negative size");
      numel *= (uint64_t)t->shape[d]; /* cannot wrap: the parser rejected overflow */
    }
    if (numel != t->numel) fail("numel is not the shape product");
    if (t->numel * lb_dtype_size(t->dtype) != t->nbytes) fail("nbytes is not numel x size");
    const uint8_t *p = t->data;
    if (p < data + 8 + hlen || p > data + size || t->nbytes > (uint64_t)(data + size - p))
      fail("view outside the input");
    if (p != at) fail("tensors do not tile the buffer");
    at = p + t->nbytes;
    if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1];
    sink ^= (uint8_t)len;
  }
  if (at != data + size) fail("tensors do not end at the end of the input");
  if (lb_st_tensor(f, n) != NULL) fail("lb_st_tensor past the end");
  for (size_t i = 0; i < lb_st_metadata_count(f); i++) {
    const char *k, *v;
    lb_st_metadata_at(f, i, &k, &v);
    if (!k || !v) fail("null metadata entry");
    sink ^= (uint8_t)(strlen(k) + strlen(v));
  }
  const char *k = "", *v = "";
  lb_st_metadata_at(f, lb_st_metadata_count(f), &k, &v);
  if (k || v) fail("metadata past the end");
  (void)sink;
  lb_st_close(f);
  return 0;
}
