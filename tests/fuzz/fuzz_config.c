/* libFuzzer target: config.json parsing over arbitrary bytes.
 *
 * lb_config_parse must either fail with a negative status and a message that names the label, or
 * fill a config that satisfies what its checks promise (positive sizes, heads a multiple of the
 * key-value heads, an even head_dim, terminated strings, at most 8 eos ids). A broken promise
 * aborts, which libFuzzer reports as a crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

#define LABEL "fuzz/config.json"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_config: %s\n", what);
  abort();
}

#define TERMINATED(a) (strnlen((a), sizeof(a)) < sizeof(a))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lb_config c;
  lb_error err;
  memset(&err, 0, sizeof err);
  lb_status s = lb_config_parse((const char *)data, size, LABEL, &c, &err);
  if (s != LB_OK) {
    if (s >= 0) fail("non-negative error status");
    if (err.code != s) fail("err.code differs from the status");
    if (!TERMINATED(err.msg)) fail("message not terminated");
    if (s != LB_ENOMEM && strncmp(err.msg, LABEL, strlen(LABEL)) != 0)
      fail("message does not name the input");
    return 0;
  }
  if (!TERMINATED(c.architecture) || !TERMINATED(c.model_type) || !TERMINATED(c.dtype) ||
      !TERMINATED(c.hidden_act))
    fail("unterminated string field");
  if (!lb_arch_find(c.architecture, c.model_type)) fail("accepted an unknown architecture");
  if (c.vocab_size < 1 || c.hidden_size < 1 || c.intermediate_size < 1 ||
      c.num_hidden_layers < 1 || c.num_attention_heads < 1 || c.num_key_value_heads < 1 ||
      c.head_dim < 1 || c.max_position_embeddings < 1)
    fail("non-positive size accepted");
  if (c.num_attention_heads % c.num_key_value_heads) fail("heads not a multiple of kv heads");
  if (c.head_dim % 2) fail("odd head_dim accepted");
  if (!(c.rms_norm_eps > 0) || !(c.rope.theta > 0) || !(c.rope.factor > 0))
    fail("non-positive eps, theta or factor accepted");
  if (c.n_eos < 0 || c.n_eos > 8) fail("n_eos out of range");
  if (c.sliding_window < 0) fail("negative sliding window");
  /* the shapes a checkpoint would be checked against must not overflow */
  for (int k = 0; k < LB_LIN_COUNT; k++) {
    int64_t out, in;
    lb_arch_linear_shape(&c, (lb_linear_kind)k, &out, &in);
    if (out < 1 || in < 1) fail("non-positive Linear shape");
  }
  return 0;
}
