/* Memory footprint of a model under each method lowbit supports, computed from the config's Linear
 * shapes. Every stored companion tensor is counted (scales, zeros, absmax, g_idx, code books), so
 * these are the sizes of the checkpoints, a little above Transformers' get_memory_footprint, which
 * skips what bitsandbytes keeps outside parameters. Non-Linear weights stay in 16-bit. */
#include "lowbit.h"

typedef enum { F_DENSE16, F_INT8_ROW, F_FP8_ROW, F_GPTQ, F_BNB4, F_BNB4_DQ } fkind;

static const struct {
  const char *name;
  fkind kind;
  int bits, group;
} METHODS[] = {
    {"bf16 / fp16", F_DENSE16, 16, 0},
    {"int8 (LLM.int8, row scales)", F_INT8_ROW, 8, 0},
    {"fp8 e4m3 (per-channel)", F_FP8_ROW, 8, 0},
    {"int4 g128 (GPTQ/AWQ)", F_GPTQ, 4, 128},
    {"nf4 (bnb, block 64)", F_BNB4, 4, 64},
    {"nf4 + double quant", F_BNB4_DQ, 4, 64},
    {"int3 g128 (GPTQ)", F_GPTQ, 3, 128},
    {"int2 g64 (GPTQ)", F_GPTQ, 2, 64},
};
enum { N_METHODS = sizeof METHODS / sizeof METHODS[0] };

static uint64_t cdiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* Bytes of one [out, in] Linear weight with its companions under a method. */
static uint64_t linear_bytes(fkind k, int bits, int group, uint64_t out, uint64_t in) {
  uint64_t n = out * in;
  switch (k) {
  case F_DENSE16: return 2 * n;
  case F_INT8_ROW:
  case F_FP8_ROW: return n + 4 * out; /* one fp32 scale per output row */
  case F_GPTQ: {
    uint64_t groups = cdiv(in, (uint64_t)group);
    uint64_t qweight = cdiv(in, 32) * (uint64_t)bits * out * 4; /* int32 words along in */
    uint64_t qzeros = groups * cdiv(out * (uint64_t)bits, 32) * 4;
    return qweight + qzeros + groups * out * 2 /* fp16 scales */ + in * 4 /* g_idx */;
  }
  case F_BNB4: return cdiv(n, 2) + cdiv(n, 64) * 4 + 16 * 4;
  case F_BNB4_DQ: {
    uint64_t blocks = cdiv(n, 64);
    /* u8 absmax codes, fp32 absmax of absmax per 256, 256-entry nested code book, offset */
    return cdiv(n, 2) + blocks + cdiv(blocks, 256) * 4 + 256 * 4 + 16 * 4 + 4;
  }
  }
  return 0;
}

size_t lb_footprint_table(const lb_checkpoint *c, lb_footprint *rows, size_t cap) {
  const lb_config *g = lb_checkpoint_config(c);
  /* Everything outside the block Linear layers (embeddings, norms, lm_head, biases) stays 16-bit. */
  lb_param_count pc = lb_checkpoint_params(c);
  uint64_t linear_params = pc.linear, other = pc.total - pc.linear;
  for (size_t m = 0; m < N_METHODS && m < cap; m++) {
    uint64_t lin = 0;
    for (int k = 0; k < LB_LIN_COUNT; k++) {
      int64_t out, in;
      lb_arch_linear_shape(g, (lb_linear_kind)k, &out, &in);
      lin += linear_bytes(METHODS[m].kind, METHODS[m].bits, METHODS[m].group, (uint64_t)out,
                          (uint64_t)in) *
             (uint64_t)g->num_hidden_layers;
    }
    rows[m] = (lb_footprint){
        .method = METHODS[m].name,
        .linear_bytes = lin,
        .other_bytes = 2 * other,
        .total_bytes = lin + 2 * other,
        .linear_bits_per_weight = linear_params ? 8.0 * (double)lin / (double)linear_params : 0,
    };
  }
  return N_METHODS;
}
