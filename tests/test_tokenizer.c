/* The tokenizer: the README references of pocket-llama, the two byte-level families, special and
 * added tokens, empty and invalid input, decoding whole and streamed (random id sequences too), and
 * hostile tokenizer.json / tokenizer_config.json files, each failing with the right status and a
 * message naming the file and the key. The comparison with the `tokenizers` package on whole files
 * is tests/py/tokenizer_ref.py. */
#include <sys/stat.h>

#include "test.h"

static lb_tokenizer *load(const char *rel) {
  lb_tokenizer *t = NULL;
  lb_error err = {0};
  lb_status s = lb_tokenizer_load(lb_test_shared(rel), &t, &err);
  if (s != LB_OK) {
    fprintf(stderr, "FATAL: %s: %s\n", rel, err.msg);
    exit(2);
  }
  return t;
}

#define POCKET "models/pocket-llama-48m"
#define LLAMA3 "tokenizers/llama3_1"
#define QWEN3 "tokenizers/qwen3"

/* Encodes and compares with the expected ids. */
static bool encodes_to(const lb_tokenizer *t, const char *text, size_t len, unsigned flags,
                       const int32_t *want, size_t n_want) {
  int32_t *ids;
  size_t n;
  lb_error err = {0};
  lb_status s = lb_tokenize(t, text, len, flags, &ids, &n, &err);
  if (s != LB_OK) {
    fprintf(stderr, "  lb_tokenize: %s\n", err.msg);
    return false;
  }
  bool ok = n == n_want && (!n || !memcmp(ids, want, n * sizeof *ids));
  if (!ok) {
    fprintf(stderr, "  got %zu ids:", n);
    for (size_t i = 0; i < n && i < 24; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
  }
  free(ids);
  return ok;
}
#define ENCODES(t, text, flags, ...)                                                               \
  encodes_to(t, text, strlen(text), flags, (const int32_t[]){__VA_ARGS__},                         \
             sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static char *decode(const lb_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                    size_t *len) {
  char *text = NULL;
  lb_error err = {0};
  lb_status s = lb_detokenize(t, ids, n, flags, &text, len, &err);
  CHECK_OK(s, &err);
  return text;
}

static void test_pocket_readme_references(void) {
  lb_tokenizer *t = load(POCKET);
  CHECK(ENCODES(t, "The history of the city", LB_TOK_ADD_SPECIAL, 1, 415, 3340, 302, 272, 2990));
  CHECK(ENCODES(t, "Hello world", LB_TOK_ADD_SPECIAL, 1, 22557, 1526));
  CHECK(ENCODES(t, "a\nb\n\nc", LB_TOK_ADD_SPECIAL, 1, 264, 13, 28726, 13, 13, 28717));
  CHECK(ENCODES(t, "Hello world", 0, 22557, 1526));
  CHECK(lb_tokenizer_vocab_size(t) == 32000 && lb_tokenizer_bos(t) == 1 && lb_tokenizer_eos(t) == 2);
  CHECK(lb_tokenizer_is_special(t, 1) && lb_tokenizer_is_special(t, 0) && !lb_tokenizer_is_special(t, 3));
  CHECK(!lb_tokenizer_is_special(t, -1) && !lb_tokenizer_is_special(t, 32000));
  CHECK(!strcmp(lb_tokenizer_piece(t, 22557), "\u2581Hello") && !strcmp(lb_tokenizer_piece(t, 13), "<0x0A>"));
  CHECK(lb_tokenizer_piece(t, -1) == NULL && lb_tokenizer_piece(t, 32000) == NULL);
  size_t len;
  char *s = decode(t, (const int32_t[]){1, 22557, 1526}, 3, 0, &len);
  CHECK(s && !strcmp(s, "<s> Hello world") && len == 15);
  free(s);
  s = decode(t, (const int32_t[]){1, 22557, 1526}, 3, LB_DETOK_SKIP_SPECIAL, &len);
  CHECK(s && !strcmp(s, "Hello world"));
  free(s);
  /* a byte run that is not UTF-8 becomes one U+FFFD per byte, as tokenizers' ByteFallback does */
  s = decode(t, (const int32_t[]){3 + 0xE4, 3 + 0xB8, 22557}, 3, 0, &len);
  CHECK(s && !strcmp(s, "\xEF\xBF\xBD\xEF\xBF\xBD Hello"));
  free(s);
  lb_tokenizer_free(t);
}

static void test_byte_level_families(void) {
  lb_tokenizer *l = load(LLAMA3), *q = load(QWEN3);
  CHECK(ENCODES(l, "Hello world", LB_TOK_ADD_SPECIAL, 128000, 9906, 1917));
  CHECK(ENCODES(q, "Hello world", LB_TOK_ADD_SPECIAL, 9707, 1879)); /* no BOS for Qwen */
  CHECK(ENCODES(l, "The history of the city", 0, 791, 3925, 315, 279, 3363));
  CHECK(ENCODES(q, "a\nb\n\nc", 0, 64, 198, 65, 271, 66));
  CHECK(lb_tokenizer_bos(l) == 128000 && lb_tokenizer_eos(l) == 128009); /* <|eot_id|> */
  CHECK(lb_tokenizer_bos(q) == -1 && lb_tokenizer_eos(q) == 151645);     /* <|im_end|> */
  CHECK(lb_tokenizer_vocab_size(l) == 128256 && lb_tokenizer_vocab_size(q) == 151669);
  CHECK(!strcmp(lb_tokenizer_piece(l, 1917), "\xC4\xA0world")); /* "Ġworld" */
  lb_tokenizer_free(l);
  lb_tokenizer_free(q);
}

static void test_empty_input(void) {
  lb_tokenizer *t = load(POCKET), *q = load(QWEN3);
  CHECK(ENCODES(t, "", LB_TOK_ADD_SPECIAL, 1));
  int32_t *ids = NULL;
  size_t n = 7;
  lb_error err = {0};
  CHECK_OK(lb_tokenize(q, NULL, 0, LB_TOK_ADD_SPECIAL, &ids, &n, &err), &err);
  CHECK(n == 0 && ids != NULL);
  free(ids);
  size_t len = 9;
  char *s = decode(q, NULL, 0, 0, &len);
  CHECK(s && len == 0 && s[0] == 0);
  free(s);
  CHECK(lb_tokenize(NULL, "x", 1, 0, &ids, &n, &err) == LB_EINVAL);
  CHECK(lb_tokenize(q, "x", (size_t)1 << 31, 0, &ids, &n, &err) == LB_EINVAL); /* before reading */
  CHECK(strstr(err.msg, "limit") != NULL);
  CHECK(lb_tokenizer_vocab_size(NULL) == 0 && lb_tokenizer_piece(NULL, 0) == NULL);
  lb_tokenizer_free(NULL);
  lb_tokenizer_free(t);
  lb_tokenizer_free(q);
}

static void test_special_tokens_never_split(void) {
  lb_tokenizer *p = load(POCKET), *l = load(LLAMA3), *q = load(QWEN3);
  CHECK(ENCODES(p, "<s>Hello</s>", 0, 1, 22557, 2));
  CHECK(ENCODES(p, "Hello <s> world", 0, 22557, 28705, 1, 28705, 1526)); /* "▁" before each piece */
  CHECK(ENCODES(l, "<|begin_of_text|>x<|reserved_special_token_250|>", 0, 128000, 87, 128255));
  CHECK(ENCODES(l, "<|begin_of_text|>", LB_TOK_ADD_SPECIAL, 128000, 128000));
  CHECK(ENCODES(q, "<|im_start|>user<think>", 0, 151644, 872, 151667));
  /* as plain text: the special token's text is cut into ordinary tokens ... */
  int32_t *ids;
  size_t n;
  lb_error err = {0};
  CHECK_OK(lb_tokenize(l, "<|begin_of_text|>", 17, LB_TOK_SPLIT_SPECIAL, &ids, &n, &err), &err);
  CHECK(n > 1);
  for (size_t i = 0; i < n; i++) CHECK(ids[i] < 128000);
  free(ids);
  /* ... but Qwen's <think> is an added token that is not special: still one token */
  CHECK(ENCODES(q, "<think>", LB_TOK_SPLIT_SPECIAL, 151667));
  CHECK(lb_tokenizer_is_special(q, 151644) && !lb_tokenizer_is_special(q, 151667));
  size_t len;
  char *s = decode(q, (const int32_t[]){151644, 151667, 87, 151645}, 4, LB_DETOK_SKIP_SPECIAL, &len);
  CHECK(s && !strcmp(s, "<think>x")); /* skipping special tokens keeps non-special added ones */
  free(s);
  lb_tokenizer_free(p);
  lb_tokenizer_free(l);
  lb_tokenizer_free(q);
}

static void test_invalid_utf8_replaced(void) {
  const char *names[] = {POCKET, LLAMA3, QWEN3};
  const char bad[] = "a\xFF" "b\xE4\xB8" "c\xED\xA0\x80" "d\xF0\x9F\x98";
  const char good[] = "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                      "d\xEF\xBF\xBD";
  for (int k = 0; k < 3; k++) {
    lb_tokenizer *t = load(names[k]);
    int32_t *a, *b;
    size_t na, nb;
    lb_error err = {0};
    CHECK_OK(lb_tokenize(t, bad, sizeof bad - 1, LB_TOK_ADD_SPECIAL, &a, &na, &err), &err);
    CHECK_OK(lb_tokenize(t, good, sizeof good - 1, LB_TOK_ADD_SPECIAL, &b, &nb, &err), &err);
    CHECK_MSG(na == nb && !memcmp(a, b, na * sizeof *a), "%s", names[k]);
    free(a);
    free(b);
    lb_tokenizer_free(t);
  }
}

/* Streams ids through the streaming decoder; the concatenation must equal the whole decode. */
static void check_stream(const lb_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                         const char *what) {
  size_t whole_len;
  char *whole = decode(t, ids, n, flags, &whole_len);
  lb_detok_stream *s;
  lb_error err = {0};
  CHECK_OK(lb_detok_stream_new(t, flags, &s, &err), &err);
  char *cat = malloc(whole_len + 1);
  size_t at = 0;
  bool ok = whole && cat;
  for (size_t i = 0; ok && i <= n; i++) {
    const char *piece;
    size_t len;
    lb_status st = i < n ? lb_detok_stream_push(s, ids[i], &piece, &len, &err)
                         : lb_detok_stream_flush(s, &piece, &len, &err);
    ok = st == LB_OK && at + len <= whole_len && !memcmp(whole + at, piece, len);
    /* whatever is emitted before the end is whole UTF-8 characters */
    if (ok && i < n && len) {
      const unsigned char *u = (const unsigned char *)piece;
      size_t k = len;
      while (k > 0 && (u[k - 1] & 0xC0) == 0x80) k--;
      ok = k > 0 && (u[k - 1] < 0x80 || len - k + 1 == (u[k - 1] >= 0xF0 ? 4u : u[k - 1] >= 0xE0 ? 3u : 2u));
    }
    at += ok ? len : 0;
  }
  CHECK_MSG(ok && at == whole_len, "%s: streamed %zu of %zu bytes (%s)", what, at, whole_len, err.msg);
  free(cat);
  free(whole);
  lb_detok_stream_free(s);
}

static void test_streaming_equals_whole(void) {
  const char *names[] = {POCKET, LLAMA3, QWEN3};
  size_t tlen = 0, ulen = 0;
  char *text = lb_test_read_file(lb_test_shared("data/pocket-valid.txt"), &tlen);
  char *torture = lb_test_read_file(lb_test_data("unicode-torture.txt"), &ulen);
  CHECK(text && torture);
  uint64_t rng = 12345;
  for (int k = 0; k < 3 && text && torture; k++) {
    lb_tokenizer *t = load(names[k]);
    int32_t *ids;
    size_t n;
    lb_error err = {0};
    for (int which = 0; which < 2; which++) {
      CHECK_OK(lb_tokenize(t, which ? torture : text, which ? ulen : 20000, LB_TOK_ADD_SPECIAL,
                           &ids, &n, &err), &err);
      check_stream(t, ids, n, 0, names[k]);
      check_stream(t, ids, n, LB_DETOK_SKIP_SPECIAL, names[k]);
      free(ids);
    }
    /* random ids: byte tokens, partial UTF-8, special tokens, spaces, in any order */
    int32_t v = lb_tokenizer_vocab_size(t), r[3000];
    for (int rep = 0; rep < 20; rep++) {
      for (int i = 0; i < 3000; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t x = (uint32_t)(rng >> 33);
        r[i] = x % 4 == 0 ? (int32_t)(x / 4 % 300) : x % 4 == 1 ? v - 1 - (int32_t)(x / 4 % 30)
                                                                 : (int32_t)(x / 4 % (uint32_t)v);
      }
      size_t len = 1 + (size_t)(rng >> 40) % 3000;
      check_stream(t, r, len, rep % 2 ? LB_DETOK_SKIP_SPECIAL : 0, names[k]);
    }
    lb_tokenizer_free(t);
  }
  free(text);
  free(torture);
}

static void test_decode_errors(void) {
  lb_tokenizer *t = load(POCKET);
  char *s = (char *)1;
  size_t len;
  lb_error err = {0};
  CHECK(lb_detokenize(t, (const int32_t[]){1, 32000}, 2, 0, &s, &len, &err) == LB_EINVAL);
  CHECK(s == NULL && strstr(err.msg, "32000") && strstr(err.msg, "position 1"));
  CHECK(lb_detokenize(t, (const int32_t[]){-5}, 1, 0, &s, &len, &err) == LB_EINVAL);
  lb_detok_stream *st;
  CHECK_OK(lb_detok_stream_new(t, 0, &st, &err), &err);
  const char *p;
  CHECK(lb_detok_stream_push(st, 40000, &p, &len, &err) == LB_EINVAL && strstr(err.msg, "40000"));
  CHECK_OK(lb_detok_stream_push(st, 22557, &p, &len, &err), &err);
  CHECK(len == 5 && !memcmp(p, "Hello", 5)); /* the first space is stripped */
  CHECK_OK(lb_detok_stream_push(st, 1526, &p, &len, &err), &err);
  CHECK(len == 6 && !memcmp(p, " world", 6));
  CHECK_OK(lb_detok_stream_flush(st, &p, &len, &err), &err);
  CHECK(len == 0);
  lb_detok_stream_free(st);
  lb_tokenizer_free(t);
}

/* A huge single word (pocket-llama has no pre-tokenizer) and a huge invalid input. */
static void test_huge_inputs(void) {
  lb_tokenizer *p = load(POCKET), *l = load(LLAMA3);
  size_t n = (size_t)2 << 20;
  char *big = malloc(n);
  uint64_t rng = 99;
  for (size_t i = 0; i < n; i++) big[i] = "ab \n"[i % 7 == 0 ? 2 : i % 3 == 0];
  int32_t *ids;
  size_t k, len;
  lb_error err = {0};
  CHECK_OK(lb_tokenize(p, big, n, 0, &ids, &k, &err), &err);
  char *back = decode(p, ids, k, 0, &len);
  CHECK(back && len == n && !memcmp(back, big, n));
  free(back);
  free(ids);
  memset(big, 'a', n); /* one word of two million letters */
  CHECK_OK(lb_tokenize(p, big, n, 0, &ids, &k, &err), &err);
  back = decode(p, ids, k, 0, &len);
  CHECK(back && len == n && !memcmp(back, big, n));
  free(back);
  free(ids);
  for (size_t i = 0; i < n; i++) { /* random bytes: mostly invalid UTF-8 */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    big[i] = (char)(rng >> 56);
  }
  CHECK_OK(lb_tokenize(l, big, n / 4, LB_TOK_SPLIT_SPECIAL, &ids, &k, &err), &err);
  back = decode(l, ids, k, 0, &len);
  CHECK(back && len >= n / 4);
  free(back);
  free(ids);
  free(big);
  lb_tokenizer_free(p);
  lb_tokenizer_free(l);
}

/* ---- hostile files ------------------------------------------------------------------------------ */

static int g_case;

/* Writes tokenizer.json (and tokenizer_config.json when cfg is not NULL) into a fresh folder. */
static const char *write_case(const char *json, const char *cfg) {
  static char dir[1024];
  char path[1100];
  snprintf(dir, sizeof dir, "%s/case%d", lb_test_tmpdir(), g_case++);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  if (json) lb_test_write_file(path, json, strlen(json));
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  if (cfg) lb_test_write_file(path, cfg, strlen(cfg));
  return dir;
}

/* A small valid tokenizer.json with parts replaced (NULL: the default part). */
static char *tok_json(const char *model, const char *added, const char *normalizer, const char *pre,
                      const char *post, const char *decoder) {
  const char *m = "{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"<s>\":1,\"a\":2,"
                  "\"b\":3,\"ab\":4,\"c\":5},\"merges\":[\"a b\"]}";
  static char buf[8192];
  snprintf(buf, sizeof buf,
           "{\"version\":\"1.0\",\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":%s,"
           "\"post_processor\":%s,\"decoder\":%s,\"model\":%s}",
           added ? added : "[{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false}]",
           normalizer ? normalizer : "null", pre ? pre : "null", post ? post : "null",
           decoder ? decoder : "null", model ? model : m);
  return buf;
}

static void expect_fail(const char *json, const char *cfg, lb_status want, const char *n1,
                        const char *n2, int line) {
  const char *dir = write_case(json, cfg);
  lb_tokenizer *t = NULL;
  lb_error err = {0};
  lb_status s = lb_tokenizer_load(dir, &t, &err);
  bool ok = s == want && t == NULL && strstr(err.msg, dir) && (!n1 || strstr(err.msg, n1)) &&
            (!n2 || strstr(err.msg, n2));
  if (!ok)
    fprintf(stderr, "%s:%d: expected %s naming '%s' '%s', got %s: %s\n", __FILE__, line,
            lb_strerror(want), n1 ? n1 : "", n2 ? n2 : "", lb_strerror(s), err.msg);
  lb_test_failures_ += !ok;
  lb_tokenizer_free(t);
}
#define FAILS(json, cfg, want, n1, n2) expect_fail(json, cfg, want, n1, n2, __LINE__)

static void test_hostile_files(void) {
  /* the control case loads and works, merges given as arrays too */
  const char *arr = "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[[\"a\",\"b\"]]}";
  lb_tokenizer *t = NULL;
  lb_error err = {0};
  CHECK_OK(lb_tokenizer_load(write_case(tok_json(arr, "[]", NULL, NULL, NULL, NULL), NULL), &t, &err), &err);
  CHECK(t && ENCODES(t, "abab", 0, 2, 2));
  lb_tokenizer_free(t);

  FAILS(NULL, NULL, LB_ENOTFOUND, "tokenizer.json", NULL);
  char trunc[200];
  snprintf(trunc, sizeof trunc, "%.120s", tok_json(NULL, NULL, NULL, NULL, NULL, NULL));
  FAILS(trunc, NULL, LB_EFORMAT, "invalid JSON", NULL);
  FAILS("[1,2]", NULL, LB_EFORMAT, "expected a JSON object", NULL);
  FAILS("{\"model\":5}", NULL, LB_EFORMAT, "model", "expected an object");
  FAILS(tok_json("{\"type\":\"Unigram\",\"vocab\":[]}", NULL, NULL, NULL, NULL, NULL), NULL,
        LB_EUNSUPPORTED, "model.type", "Unigram");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":[1],\"merges\":[]}", NULL, NULL, NULL, NULL, NULL), NULL,
        LB_EFORMAT, "model.vocab", "array");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}", "[]", NULL, NULL, NULL,
                 NULL), NULL, LB_EFORMAT, "model.vocab['a']", "string");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}", "[]", NULL, NULL, NULL, NULL),
        NULL, LB_EFORMAT, "model.vocab['a']", "out of range");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":4000000000},\"merges\":[]}", "[]", NULL, NULL,
                 NULL, NULL), NULL, LB_EFORMAT, "model.vocab['a']", "out of range");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}", "[]", NULL, NULL,
                 NULL, NULL), NULL, LB_EFORMAT, "model.vocab['b']", "id 0");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a z\"]}", "[]", NULL, NULL, NULL,
                 NULL), NULL, LB_EFORMAT, "model.merges[0]", "'z' is not in model.vocab");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}", "[]", NULL,
                 NULL, NULL, NULL), NULL, LB_EFORMAT, "model.merges[0]", "'ab'");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[\"a a\",\"a  a\"]}", "[]", NULL,
                 NULL, NULL, NULL), NULL, LB_EFORMAT, "model.merges[1]", "one space");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[5]}", "[]", NULL, NULL, NULL, NULL),
        NULL, LB_EFORMAT, "model.merges[0]", "integer");
  FAILS(tok_json("{\"type\":\"BPE\",\"vocab\":{\"a\":0}}", "[]", NULL, NULL, NULL, NULL), NULL,
        LB_EFORMAT, "model.merges", NULL);
  FAILS(tok_json("{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}", "[]", NULL, NULL,
                 NULL, NULL), NULL, LB_EUNSUPPORTED, "model.dropout", NULL);
  FAILS(tok_json("{\"type\":\"BPE\",\"byte_fallback\":\"yes\",\"vocab\":{},\"merges\":[]}", "[]", NULL,
                 NULL, NULL, NULL), NULL, LB_EINVAL, "model", "'byte_fallback'");
  FAILS(tok_json(NULL, "{}", NULL, NULL, NULL, NULL), NULL, LB_EFORMAT, "added_tokens", "array");
  FAILS(tok_json(NULL, "[{\"id\":1}]", NULL, NULL, NULL, NULL), NULL, LB_EFORMAT,
        "added_tokens[0].content", NULL);
  FAILS(tok_json(NULL, "[{\"id\":\"1\",\"content\":\"<s>\"}]", NULL, NULL, NULL, NULL), NULL, LB_EINVAL,
        "added_tokens[0]", "'id'");
  FAILS(tok_json(NULL, "[{\"id\":6,\"content\":\"<x>\",\"single_word\":true}]", NULL, NULL, NULL, NULL),
        NULL, LB_EUNSUPPORTED, "added_tokens[0].single_word", NULL);
  FAILS(tok_json(NULL, NULL, "{\"type\":\"Lowercase\"}", NULL, NULL, NULL), NULL, LB_EUNSUPPORTED,
        "normalizer.type", "Lowercase");
  FAILS(tok_json(NULL, NULL, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":"
                 "\"Replace\",\"pattern\":{\"String\":\" \"}}]}", NULL, NULL, NULL), NULL, LB_ENOTFOUND,
        "normalizer.normalizers[1]", "'content'");
  FAILS(tok_json(NULL, NULL, NULL, "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":"
                 "\"Isolated\"}", NULL, NULL), NULL, LB_EFORMAT, "pre_tokenizer.pattern", "bad regex");
  FAILS(tok_json(NULL, NULL, NULL, "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},"
                 "\"behavior\":\"Isolated\"}", NULL, NULL), NULL, LB_EUNSUPPORTED, "pre_tokenizer.pattern",
        "\\w");
  FAILS(tok_json(NULL, NULL, NULL, "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":"
                 "\"Sideways\"}", NULL, NULL), NULL, LB_EFORMAT, "pre_tokenizer.behavior", NULL);
  FAILS(tok_json(NULL, NULL, NULL, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Whitespace\"}]}",
                 NULL, NULL), NULL, LB_EUNSUPPORTED, "pre_tokenizer.pretokenizers[0].type", "Whitespace");
  FAILS(tok_json(NULL, NULL, NULL, NULL, NULL, "{\"type\":\"WordPiece\"}"), NULL, LB_EUNSUPPORTED,
        "decoder.type", "WordPiece");
  FAILS(tok_json(NULL, NULL, NULL, NULL, NULL, "{\"type\":\"Strip\",\"content\":\" \",\"start\":-1,"
                 "\"stop\":0}"), NULL, LB_EINVAL, "decoder", "'start'");
#define TPL "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"," \
            "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":%s}"
  char post[512];
  snprintf(post, sizeof post, TPL, "{}");
  FAILS(tok_json(NULL, NULL, NULL, NULL, post, NULL), NULL, LB_EFORMAT, "post_processor",
        "special_tokens['<s>']");
  snprintf(post, sizeof post, TPL, "{\"<s>\":{\"id\":\"<s>\",\"ids\":[77],\"tokens\":[\"<s>\"]}}");
  FAILS(tok_json(NULL, NULL, NULL, NULL, post, NULL), NULL, LB_EFORMAT, "ids[0]", "77");
  FAILS(tok_json(NULL, NULL, NULL, NULL, "{\"type\":\"Mystery\"}", NULL), NULL, LB_EUNSUPPORTED,
        "post_processor.type", "Mystery");
  /* tokenizer_config.json */
  const char *ok = tok_json(NULL, NULL, NULL, NULL, NULL, NULL);
  FAILS(ok, "{\"bos_token\":\"<nope>\"}", LB_EFORMAT, "tokenizer_config.json", "bos_token");
  FAILS(ok, "{\"eos_token\":5}", LB_EFORMAT, "tokenizer_config.json", "eos_token");
  FAILS(ok, "{\"bos_token\":", LB_EFORMAT, "tokenizer_config.json", "invalid JSON");
  FAILS(ok, "{\"add_bos_token\":\"yes\"}", LB_EINVAL, "tokenizer_config.json", "add_bos_token");
  /* bos/eos: {"content": ...} objects; the template's BOS when the config has none */
  snprintf(post, sizeof post, TPL, "{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}");
  CHECK_OK(lb_tokenizer_load(write_case(tok_json(NULL, NULL, NULL, NULL, post, NULL),
                                        "{\"eos_token\":{\"content\":\"c\",\"lstrip\":false}}"),
                             &t, &err), &err);
  CHECK(t && lb_tokenizer_bos(t) == 1 && lb_tokenizer_eos(t) == 5);
  CHECK(t && ENCODES(t, "abc", LB_TOK_ADD_SPECIAL, 1, 4, 5));
  /* a character the vocabulary lacks needs the unk token, which is not there: an encode error */
  lb_tokenizer_free(t);
  CHECK_OK(lb_tokenizer_load(write_case(tok_json("{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":"
                                                 "{\"a\":0},\"merges\":[]}", "[]", NULL, NULL, NULL, NULL),
                                        NULL), &t, &err), &err);
  CHECK(t && ENCODES(t, "aa", 0, 0, 0));
  int32_t *ids = NULL;
  size_t n;
  CHECK(t && lb_tokenize(t, "ax", 2, 0, &ids, &n, &err) == LB_EFORMAT && ids == NULL);
  CHECK(strstr(err.msg, "unk_token") && strstr(err.msg, "tokenizer.json"));
  lb_tokenizer_free(t);
}

/* Added tokens get the ids tokenizers gives them: the model's id, else the next after the vocab. */
static void test_added_token_ids(void) {
  const char *model = "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":10},\"merges\":[\"a b\"]}";
  const char *added = "[{\"id\":500,\"content\":\"<x>\",\"special\":true,\"normalized\":false},"
                      "{\"id\":7,\"content\":\"b\",\"special\":false,\"normalized\":false},"
                      "{\"id\":3,\"content\":\"<y>\",\"special\":false,\"normalized\":false}]";
  lb_tokenizer *t = NULL;
  lb_error err = {0};
  CHECK_OK(lb_tokenizer_load(write_case(tok_json(model, added, NULL, NULL, NULL, NULL), NULL), &t, &err),
           &err);
  CHECK(t && ENCODES(t, "ab<x>b<y>a", 0, 0, 1, 3, 1, 4, 0)); /* as tokenizers 0.23.2 gives */
  CHECK(t && lb_tokenizer_vocab_size(t) == 11 && !strcmp(lb_tokenizer_piece(t, 3), "<x>"));
  CHECK(t && lb_tokenizer_piece(t, 5) == NULL && lb_tokenizer_is_special(t, 3));
  lb_tokenizer_free(t);
}

int main(int argc, char **argv) {
  static const lb_test_case cases[] = {
      {"pocket_readme_references", test_pocket_readme_references},
      {"byte_level_families", test_byte_level_families},
      {"empty_input", test_empty_input},
      {"special_tokens_never_split", test_special_tokens_never_split},
      {"invalid_utf8_replaced", test_invalid_utf8_replaced},
      {"streaming_equals_whole", test_streaming_equals_whole},
      {"decode_errors", test_decode_errors},
      {"huge_inputs", test_huge_inputs},
      {"hostile_files", test_hostile_files},
      {"added_token_ids", test_added_token_ids},
  };
  return lb_test_main(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
