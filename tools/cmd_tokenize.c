/* lowbit tokenize DIR (-p TEXT | -f FILE) [--ids | --json] [--no-special] ...: token ids and pieces
 * of a text, and the decoder's way back (--roundtrip, --decode). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "io/fs.h"

static const char *HELP =
    "usage: lowbit tokenize DIR (-p TEXT | -f FILE) [--ids | --json] [--no-special]\n"
    "       lowbit tokenize DIR (-p TEXT | -f FILE) --roundtrip [--stream] [--keep-special]\n"
    "       lowbit tokenize DIR (-p IDS | -f FILE) --decode [--stream] [--keep-special]\n"
    "  Encodes a text with DIR/tokenizer.json (and tokenizer_config.json), giving the ids of the\n"
    "  Hugging Face `tokenizers` package. Invalid UTF-8 is replaced by U+FFFD first.\n"
    "  -p TEXT          the text (or, with --decode, the ids)\n"
    "  -f FILE          read it from FILE ('-' for standard input)\n"
    "  (default)        one line per token: id, TAB, the piece (escaped), then the count\n"
    "  --ids            the ids on one line, separated by spaces\n"
    "  --json           {\"ids\": [...], \"pieces\": [...], \"count\": N}\n"
    "  --no-special     do not add the post-processor's BOS/EOS\n"
    "  --split-special  treat the text of special tokens (\"<s>\") as plain text\n"
    "  --roundtrip      print decode(encode(TEXT)) (special tokens skipped unless --keep-special)\n"
    "  --decode         the input is ids (separated by spaces or commas): print their text\n"
    "  --stream         decode through the streaming decoder, one id at a time\n"
    "  --time           print load and encode times to standard error\n";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int read_input(const char *file, char **text, size_t *len, lb_error *err) {
  if (strcmp(file, "-")) return lb_read_file(file, (size_t)1 << 30, text, len, err);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - n - 1, stdin);
    if (n + 1 < cap) break;
    char *p = cap < ((size_t)1 << 30) ? realloc(buf, cap *= 2) : NULL;
    if (!p) free(buf);
    buf = p;
  }
  if (!buf) return lb_fail(err, LB_ENOMEM, "standard input: out of memory or too large");
  buf[n] = 0;
  *text = buf, *len = n;
  return LB_OK;
}

/* Ids separated by spaces, commas, brackets; false on anything else. */
static bool parse_ids(const char *s, int32_t **ids, size_t *n) {
  size_t cap = 64;
  *n = 0;
  *ids = malloc(cap * sizeof **ids);
  while (*ids) {
    while (*s && strchr(" \t\r\n,[]", *s)) s++;
    if (!*s) return true;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno || v < INT32_MIN || v > INT32_MAX) break;
    if (*n == cap) {
      int32_t *p = realloc(*ids, (cap *= 2) * sizeof *p);
      if (!p) break;
      *ids = p;
    }
    (*ids)[(*n)++] = (int32_t)v;
    s = end;
  }
  free(*ids);
  *ids = NULL;
  return false;
}

/* A piece with control characters, backslash and DEL escaped; UTF-8 kept. */
static void put_escaped(const char *p) {
  for (; p && *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '\n') fputs("\\n", stdout);
    else if (c == '\t') fputs("\\t", stdout);
    else if (c == '\r') fputs("\\r", stdout);
    else if (c == '\\') fputs("\\\\", stdout);
    else if (c < 0x20 || c == 0x7F) printf("\\x%02X", c);
    else putchar(c);
  }
}

static int decode_out(const lb_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                      bool stream, lb_error *err) {
  if (!stream) {
    char *text;
    size_t len;
    if (lb_detokenize(t, ids, n, flags, &text, &len, err) != LB_OK) return cli_fail(err);
    fwrite(text, 1, len, stdout);
    free(text);
    return 0;
  }
  lb_detok_stream *s;
  if (lb_detok_stream_new(t, flags, &s, err) != LB_OK) return cli_fail(err);
  const char *piece;
  size_t len;
  for (size_t i = 0; i <= n; i++) {
    lb_status st = i < n ? lb_detok_stream_push(s, ids[i], &piece, &len, err)
                         : lb_detok_stream_flush(s, &piece, &len, err);
    if (st != LB_OK) {
      lb_detok_stream_free(s);
      return cli_fail(err);
    }
    fwrite(piece, 1, len, stdout);
  }
  lb_detok_stream_free(s);
  return 0;
}

static int print_ids(const lb_tokenizer *t, const int32_t *ids, size_t n, int mode) {
  if (mode == 1) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    return 0;
  }
  if (mode == 2) {
    json_t *o = json_object(), *a = json_array(), *p = json_array();
    for (size_t i = 0; i < n; i++) {
      const char *s = lb_tokenizer_piece(t, ids[i]);
      json_array_append_new(a, json_integer(ids[i]));
      json_array_append_new(p, s ? json_string(s) : json_null());
    }
    json_object_set_new(o, "ids", a);
    json_object_set_new(o, "pieces", p);
    json_object_set_new(o, "count", json_integer((json_int_t)n));
    char *s = json_dumps(o, JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) {
      fprintf(stderr, "lowbit: error: out of memory writing JSON\n");
      return 1;
    }
    puts(s);
    free(s);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    printf("%d\t", ids[i]);
    put_escaped(lb_tokenizer_piece(t, ids[i]));
    putchar('\n');
  }
  printf("%zu tokens\n", n);
  return 0;
}

int cmd_tokenize(int argc, char **argv) {
  const char *dir = NULL, *text = NULL, *file = NULL;
  int mode = 0; /* 0 table, 1 ids, 2 json */
  bool roundtrip = false, decode = false, stream = false, keep = false, timing = false;
  unsigned flags = LB_TOK_ADD_SPECIAL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(HELP, stdout);
      return 0;
    } else if (!strcmp(a, "-p") || !strcmp(a, "-f")) {
      if (i + 1 >= argc) return cli_usage_error("tokenize", "%s needs a value", a);
      if (text || file) return cli_usage_error("tokenize", "give one of -p and -f, once");
      *(a[1] == 'p' ? &text : &file) = argv[++i];
    } else if (!strcmp(a, "--ids") || !strcmp(a, "--json")) {
      if (mode) return cli_usage_error("tokenize", "--ids and --json exclude each other");
      mode = a[2] == 'i' ? 1 : 2;
    } else if (!strcmp(a, "--no-special")) flags &= ~(unsigned)LB_TOK_ADD_SPECIAL;
    else if (!strcmp(a, "--split-special")) flags |= LB_TOK_SPLIT_SPECIAL;
    else if (!strcmp(a, "--roundtrip")) roundtrip = true;
    else if (!strcmp(a, "--decode")) decode = true;
    else if (!strcmp(a, "--stream")) stream = true;
    else if (!strcmp(a, "--keep-special")) keep = true;
    else if (!strcmp(a, "--time")) timing = true;
    else if (a[0] == '-' && a[1]) return cli_usage_error("tokenize", "unknown option '%s'", a);
    else if (dir) return cli_usage_error("tokenize", "more than one DIR given ('%s')", a);
    else dir = a;
  }
  if (!dir) return cli_usage_error("tokenize", "missing DIR");
  if (!text && !file) return cli_usage_error("tokenize", "give the text with -p TEXT or -f FILE");
  if (roundtrip && decode) return cli_usage_error("tokenize", "--roundtrip and --decode exclude each other");
  if ((roundtrip || decode) && mode)
    return cli_usage_error("tokenize", "--ids/--json do not apply to --roundtrip/--decode");
  if (stream && !roundtrip && !decode)
    return cli_usage_error("tokenize", "--stream applies to --roundtrip and --decode");

  lb_error err = {0};
  char *buf = NULL;
  size_t len = text ? strlen(text) : 0;
  if (file && read_input(file, &buf, &len, &err) != LB_OK) return cli_fail(&err);
  const char *input = file ? buf : text;
  double t0 = now_s();
  lb_tokenizer *t;
  if (lb_tokenizer_load(dir, &t, &err) != LB_OK) {
    free(buf);
    return cli_fail(&err);
  }
  double t1 = now_s();
  unsigned dflags = keep ? 0 : LB_DETOK_SKIP_SPECIAL;
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = 0;
  if (decode) {
    if (!parse_ids(input, &ids, &n))
      rc = cli_usage_error("tokenize", "--decode: the input is not a list of integer ids");
    else rc = decode_out(t, ids, n, dflags, stream, &err);
  } else if (lb_tokenize(t, input, len, flags, &ids, &n, &err) != LB_OK) {
    rc = cli_fail(&err);
  } else {
    double t2 = now_s();
    if (timing)
      fprintf(stderr, "load %.3f s, encode %.3f s (%zu bytes -> %zu tokens)\n", t1 - t0, t2 - t1,
              len, n);
    rc = roundtrip ? decode_out(t, ids, n, dflags, stream, &err) : print_ids(t, ids, n, mode);
  }
  free(ids);
  free(buf);
  lb_tokenizer_free(t);
  return rc;
}
