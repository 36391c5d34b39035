/* libFuzzer target: the three shared tokenizers over arbitrary bytes.
 *
 * The first byte picks the tokenizer (Mistral/Llama-2 SentencePiece-style BPE, Llama-3.1 and Qwen3
 * byte-level BPE) and the flags; the rest is the text. Encoding must succeed with ids in range, decoding
 * must succeed, the streaming decoder must produce exactly the full decode, and where the tokenizer
 * allows it (valid UTF-8, special-token text split as plain text, no normalizer that rewrites text)
 * decode(encode(x)) must give x back. A broken promise aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

static lb_tokenizer *TOK[3];
static const char *DIRS[3] = {"models/pocket-llama-48m", "tokenizers/llama3_1", "tokenizers/qwen3"};

static void fail(const char *what) {
  fprintf(stderr, "fuzz_tokenize: %s\n", what);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  const char *shared = getenv("LOWBIT_SHARED");
  if (!shared) shared = LB_FUZZ_SHARED;
  for (int i = 0; i < 3; i++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", shared, DIRS[i]);
    lb_error err = {0};
    if (lb_tokenizer_load(dir, &TOK[i], &err) != LB_OK) {
      fprintf(stderr, "fuzz_tokenize: %s\n", err.msg);
      abort();
    }
  }
  return 0;
}

static bool valid_utf8(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || i + len > n) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 31u : len == 3 ? c & 15u : c & 7u;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (s[i + k] & 63u);
    }
    static const uint32_t MIN[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < MIN[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int which = data[0] % 3;
  bool split = data[0] & 4, add = data[0] & 8;
  const lb_tokenizer *t = TOK[which];
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  unsigned flags = (split ? LB_TOK_SPLIT_SPECIAL : 0) | (add ? LB_TOK_ADD_SPECIAL : 0);
  int32_t *ids = NULL;
  size_t n = 0;
  lb_error err = {0};
  if (lb_tokenize(t, text, len, flags, &ids, &n, &err) != LB_OK) fail(err.msg);
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= lb_tokenizer_vocab_size(t)) fail("id out of range");
  char *out = NULL;
  size_t out_len = 0;
  if (lb_detokenize(t, ids, n, LB_DETOK_SKIP_SPECIAL, &out, &out_len, &err) != LB_OK) fail(err.msg);
  /* streaming = whole */
  lb_detok_stream *ds = NULL;
  if (lb_detok_stream_new(t, LB_DETOK_SKIP_SPECIAL, &ds, &err) != LB_OK) fail(err.msg);
  char *acc = malloc(out_len + 1 + 64 * (n + 1));
  size_t acc_len = 0;
  for (size_t i = 0; i <= n; i++) {
    const char *piece;
    size_t plen;
    lb_status s = i < n ? lb_detok_stream_push(ds, ids[i], &piece, &plen, &err)
                        : lb_detok_stream_flush(ds, &piece, &plen, &err);
    if (s != LB_OK) fail(err.msg);
    if (acc_len + plen > out_len) fail("stream produced more than the full decode");
    memcpy(acc + acc_len, piece, plen);
    acc_len += plen;
  }
  if (acc_len != out_len || memcmp(acc, out, out_len) != 0) fail("stream differs from full decode");
  /* round trip: valid UTF-8, special text kept as text, no NFC (qwen3 rewrites text), and for the
   * SentencePiece-style one no U+2581 in the text (its decoder turns every one into a space) */
  bool meta = false;
  for (size_t i = 0; which == 0 && i + 3 <= len; i++) meta |= !memcmp(text + i, "\xe2\x96\x81", 3);
  if (which != 2 && split && !meta && valid_utf8(data + 1, len) &&
      (out_len != len || memcmp(out, text, len)))
    fail("decode(encode(x)) != x");
  lb_detok_stream_free(ds);
  free(acc);
  free(out);
  free(ids);
  return 0;
}
