/* Relative L2 error ||W - deq(Q(W))|| / ||W|| of RTN (g64, g128, asym) and HQQ (g64) at 4 and 3 bits on
 * three Linear layers of pocket-llama: a per-layer view beside bench/quant_bench.py's perplexities.
 *   gcc -O2 -Iinclude -Isrc bench/quant_layer_error.c build/liblowbit.a -ljansson -lpcre2-8 \
 *       -lutf8proc -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas -lm -lpthread \
 *       -o /tmp/quant_layer_error && /tmp/quant_layer_error [MODEL_DIR] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lowbit.h"
#include "quant/gptq.h"
#include "quant/hqq.h"

static double rel_err(const lb_qweight *q, const float *w) {
  double n = 0, d = 0;
  float *row = malloc((size_t)q->cols * sizeof *row);
  for (int64_t r = 0; r < q->rows; r++) {
    lb_qweight_dequant_row(q, r, row);
    for (int64_t c = 0; c < q->cols; c++) {
      double e = row[c] - w[r * q->cols + c];
      n += e * e, d += (double)w[r * q->cols + c] * w[r * q->cols + c];
    }
  }
  free(row);
  return sqrt(n / d);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "../shared/models/pocket-llama-48m";
  static const char *NAMES[] = {"model.layers.0.self_attn.q_proj.weight",
                                "model.layers.3.mlp.down_proj.weight",
                                "model.layers.5.mlp.up_proj.weight"};
  lb_error e = {0};
  lb_tensors *t;
  if (lb_tensors_open(dir, &t, &e) != LB_OK) return fprintf(stderr, "%s\n", e.msg), 1;
  printf("| layer | bits | rtn g64 | rtn g128 | hqq g64 |\n| --- | --- | --- | --- | --- |\n");
  for (int k = 0; k < 3; k++) {
    const lb_tensor *x = lb_tensors_find(t, NAMES[k]);
    if (!x || x->dtype != LB_BF16) return fprintf(stderr, "%s: missing or not BF16\n", NAMES[k]), 1;
    int64_t R = x->shape[0], C = x->shape[1];
    float *w = malloc((size_t)(R * C) * sizeof *w);
    const uint16_t *d = x->data;
    for (int64_t i = 0; i < R * C; i++) w[i] = lb_bf16_to_f32(d[i]);
    for (int bits = 4; bits >= 3; bits--) {
      lb_qweight a, b, h;
      if (lb_rtn_quantize(w, R, C, bits, 64, false, NAMES[k], &a, &e) ||
          lb_rtn_quantize(w, R, C, bits, 128, false, NAMES[k], &b, &e) ||
          lb_hqq_quantize(w, R, C, bits, 64, 1, &h, &e))
        return fprintf(stderr, "%s\n", e.msg), 1;
      printf("| %s | %d | %.4f | %.4f | %.4f |\n", NAMES[k] + 13, bits, rel_err(&a, w),
             rel_err(&b, w), rel_err(&h, w));
      lb_qweight_free(&a), lb_qweight_free(&b), lb_qweight_free(&h);
    }
    free(w);
  }
  lb_tensors_close(t);
  return 0;
}
