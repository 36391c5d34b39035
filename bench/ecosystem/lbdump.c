/* lowbit-dump: what the ecosystem checks (bench/ecosystem/) compare against the reference packages.
 *
 *   lowbit-dump logits DIR IDS.txt OUT.npy [-t N]
 *       IDS.txt: one sequence of token ids per line, all of the same length. Each sequence is run from
 *       an empty KV cache; OUT.npy holds float32 logits [sequences, length, vocab].
 *   lowbit-dump dequant DIR OUTDIR
 *       For every decoder Linear of a quantized checkpoint: lowbit's reading of it (the format's
 *       reader, then the scalar reference dequantization) as OUTDIR/<module>.npy, float32 [out, in].
 *
 * A developer tool, not part of the CLI: it exists so that a script can hold lowbit's numbers beside
 * Transformers' and the quantization packages' numbers for the same files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lowbit.h"
#include "quant/spec.h"

static int fail(const char *what, const lb_error *err) {
  fprintf(stderr, "lowbit-dump: error: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
  return 1;
}

/* .npy version 1.0, little-endian float32, C order. */
static int npy_write(const char *path, const float *data, const int64_t *shape, int ndim) {
  char dims[128] = "", hdr[256];
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    size_t l = strlen(dims);
    snprintf(dims + l, sizeof dims - l, "%lld%s", (long long)shape[i], ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
    n *= (size_t)shape[i];
  }
  int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
  int total = 10 + hl + 1;
  int pad = (64 - total % 64) % 64;
  FILE *f = fopen(path, "wb");
  if (!f) return fprintf(stderr, "lowbit-dump: error: %s: %s\n", path, strerror(errno)), 1;
  unsigned short hlen = (unsigned short)(hl + pad + 1);
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  fputc(hlen & 0xff, f), fputc(hlen >> 8, f);
  fwrite(hdr, 1, (size_t)hl, f);
  for (int i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  size_t w = fwrite(data, sizeof(float), n, f);
  if (fclose(f) != 0 || w != n) return fprintf(stderr, "lowbit-dump: error: %s: write failed\n", path), 1;
  return 0;
}

static int cmd_logits(int argc, char **argv) {
  if (argc < 5) return fprintf(stderr, "usage: lowbit-dump logits DIR IDS.txt OUT.npy [-t N]\n"), 2;
  int threads = argc >= 7 && !strcmp(argv[5], "-t") ? atoi(argv[6]) : 0;
  FILE *f = fopen(argv[3], "r");
  if (!f) return fprintf(stderr, "lowbit-dump: error: %s: %s\n", argv[3], strerror(errno)), 1;
  int32_t *ids = NULL;
  size_t n = 0, cap = 0, nseq = 0, len = 0, cur = 0;
  char line[1 << 16];
  while (fgets(line, sizeof line, f)) {
    char *p = line, *e;
    cur = 0;
    for (long v; (v = strtol(p, &e, 10)), e != p; p = e) {
      if (n == cap) ids = realloc(ids, (cap = cap ? 2 * cap : 4096) * sizeof *ids);
      ids[n++] = (int32_t)v, cur++;
    }
    if (!cur) continue;
    if (nseq && cur != len) return fprintf(stderr, "lowbit-dump: error: %s: sequences differ in length\n", argv[3]), 1;
    len = cur, nseq++;
  }
  fclose(f);
  if (!nseq) return fprintf(stderr, "lowbit-dump: error: %s: no ids\n", argv[3]), 1;
  lb_error err = {0};
  lb_model *m;
  lb_model_options o = {.n_threads = threads, .max_ctx = (int64_t)len};
  if (lb_model_open(argv[2], &o, &m, &err) != LB_OK) return fail(argv[2], &err);
  int64_t vocab = lb_model_config(m)->vocab_size;
  float *logits = malloc(nseq * len * (size_t)vocab * sizeof(float));
  if (!logits) return fail("out of memory", NULL);
  for (size_t s = 0; s < nseq; s++) {
    lb_model_reset(m);
    if (lb_model_forward(m, ids + s * len, (int64_t)len, logits + s * len * (size_t)vocab, true, &err))
      return fail(argv[2], &err);
  }
  int64_t shape[3] = {(int64_t)nseq, (int64_t)len, vocab};
  int rc = npy_write(argv[4], logits, shape, 3);
  free(logits), free(ids), lb_model_free(m);
  return rc;
}

static int cmd_dequant(int argc, char **argv) {
  if (argc != 4) return fprintf(stderr, "usage: lowbit-dump dequant DIR OUTDIR\n"), 2;
  lb_error err = {0};
  lb_checkpoint *c;
  if (lb_checkpoint_open(argv[2], &c, &err) != LB_OK) return fail(argv[2], &err);
  const char *qc = lb_checkpoint_quant_config(c);
  if (!qc) return fprintf(stderr, "lowbit-dump: error: %s: not quantized\n", argv[2]), 1;
  lb_quant_spec spec;
  if (lb_quant_spec_parse(qc, strlen(qc), "quantization_config", &spec, &err)) return fail(argv[2], &err);
  mkdir(argv[3], 0755);
  const lb_arch *a = lb_checkpoint_arch(c);
  int rc = 0, written = 0;
  for (int l = 0; !rc && l < lb_checkpoint_config(c)->num_hidden_layers; l++)
    for (int k = 0; !rc && k < LB_LIN_COUNT; k++) {
      char blk[64], name[256], path[1024];
      snprintf(name, sizeof name, "%s.%s", lb_arch_block(a, l, blk, sizeof blk), a->linear[k]);
      if (lb_quant_spec_skips(&spec, name)) continue;
      lb_qweight q;
      if (lb_quant_spec_read(&spec, lb_checkpoint_tensors(c), name, &q, &err)) return fail(name, &err);
      float *w = malloc((size_t)(q.rows * q.cols) * sizeof *w);
      for (int64_t r = 0; r < q.rows; r++) lb_qweight_dequant_row(&q, r, w + r * q.cols);
      snprintf(path, sizeof path, "%s/%s.npy", argv[3], name);
      int64_t shape[2] = {q.rows, q.cols};
      rc = npy_write(path, w, shape, 2);
      written += !rc;
      free(w), lb_qweight_free(&q);
    }
  printf("%d Linear weights dequantized into %s\n", written, argv[3]);
  lb_quant_spec_free(&spec), lb_checkpoint_close(c);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "logits")) return cmd_logits(argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "dequant")) return cmd_dequant(argc, argv);
  fprintf(stderr, "usage: lowbit-dump logits DIR IDS.txt OUT.npy [-t N] | dequant DIR OUTDIR\n");
  return 2;
}
