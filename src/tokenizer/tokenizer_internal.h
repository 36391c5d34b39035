/* Internals of the tokenizer, shared by its files:
 *   tokenizer.c   loading tokenizer.json / tokenizer_config.json, added tokens, the encode pipeline
 *                 (added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor), getters
 *   normalize.c   UTF-8 helpers and repair, the normalizers (NFC/NFKC/..., Prepend, Replace, ...)
 *   pretokenize.c the Oniguruma-compatible regexes over PCRE2, Split, ByteLevel, Metaspace
 *   bpe.c         the BPE model: vocabulary, merges, Word::merge_all of `tokenizers`
 *   decode.c      the decoders and the streaming decoder
 * Each component mirrors the `tokenizers` (Rust) type of the same name; comments say where the
 * behaviour is subtle. Nothing here is mutated after loading: encode/decode are thread-safe. */
#ifndef LB_TOKENIZER_INTERNAL_H
#define LB_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define TK_MAX_ID (1 << 22)          /* ids beyond this are refused (no real vocab comes close) */
#define TK_MAX_TEXT ((size_t)1 << 30) /* bytes of text per encode call */

/* ---- growable buffers ------------------------------------------------------------------------ */

typedef struct tk_buf {
  char *p;
  size_t len, cap;
} tk_buf;

lb_status tk_buf_reserve(tk_buf *b, size_t extra, lb_error *err);
lb_status tk_buf_add(tk_buf *b, const void *s, size_t n, lb_error *err);
void tk_buf_free(tk_buf *b);

typedef struct tk_ids {
  int32_t *p;
  size_t n, cap;
} tk_ids;

lb_status tk_ids_push(tk_ids *v, int32_t id, lb_error *err);

/* Pieces of text: spans into one buffer (the splits of a pre-tokenizer, the tokens of a decoder). */
typedef struct tk_span {
  size_t off, len;
} tk_span;

typedef struct tk_pieces {
  tk_buf text;
  tk_span *s;
  size_t n, cap;
} tk_pieces;

lb_status tk_pieces_add(tk_pieces *p, const char *s, size_t len, lb_error *err);
/* Adds a span over text already appended to p->text (off..off+len). */
lb_status tk_pieces_span(tk_pieces *p, size_t off, size_t len, lb_error *err);
void tk_pieces_clear(tk_pieces *p);
void tk_pieces_free(tk_pieces *p);
/* The bytes of piece i (never NULL: an empty set of pieces may have no text buffer yet). */
static inline const char *tk_piece_at(const tk_pieces *p, size_t i) {
  return p->text.p ? p->text.p + p->s[i].off : "";
}

/* ---- UTF-8 (normalize.c) ----------------------------------------------------------------------- */

/* Decodes one code point of valid UTF-8; returns its length. */
size_t tk_utf8_next(const char *s, size_t len, uint32_t *cp);
/* Encodes cp; returns the length (1..4). */
size_t tk_utf8_put(uint32_t cp, char *out);
/* Length of the well-formed sequence at s[0..len), or 0 when ill-formed or truncated; *maximal gets
 * the length of the maximal subpart to replace by one U+FFFD (>= 1). */
size_t tk_utf8_check(const unsigned char *s, size_t len, size_t *maximal);
/* Whether the bytes end inside a truncated but so far valid sequence (more bytes may complete it). */
bool tk_utf8_incomplete_tail(const char *s, size_t len);
/* Appends s to out with ill-formed sequences replaced by U+FFFD per maximal subpart, like Python's
 * bytes.decode("utf-8", errors="replace") and Rust's String::from_utf8_lossy. */
lb_status tk_utf8_lossy(const char *s, size_t len, tk_buf *out, lb_error *err);
/* Rust's char::is_whitespace (the Unicode White_Space property). */
bool tk_is_white_space(uint32_t cp);

/* ---- regexes (pretokenize.c) ------------------------------------------------------------------- */

/* A pattern of tokenizers' Split/Replace: a literal string or an Oniguruma regex, compiled with
 * PCRE2 after rewriting the classes whose Unicode tables differ (\s, \p{L}, \p{N}, \h). */
typedef struct tk_regex {
  pcre2_code *re; /* NULL for a literal */
  char *lit;
  size_t lit_len;
} tk_regex;

/* Parses {"String": "..."} or {"Regex": "..."}; label names the key for messages. */
lb_status tk_regex_parse(const json_t *pattern, const char *label, tk_regex *out, lb_error *err);
void tk_regex_free(tk_regex *r);

/* Per-call matching state (match data, JIT stack); one per encode/decode call. */
typedef struct tk_match_ctx {
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit;
} tk_match_ctx;

void tk_match_ctx_free(tk_match_ctx *m);
/* The matches of r in s (non-overlapping, left to right, Oniguruma's find_iter rules for empty
 * matches) as pairs (start, end) appended to *out (2 entries per match). */
typedef struct tk_offsets {
  size_t *p;
  size_t n, cap;
} tk_offsets;
lb_status tk_regex_find_all(const tk_regex *r, tk_match_ctx *m, const char *s, size_t len,
                            tk_offsets *out, lb_error *err);

/* ---- normalizer (normalize.c) ------------------------------------------------------------------ */

typedef enum tk_norm_kind {
  TK_NORM_NFC,
  TK_NORM_NFD,
  TK_NORM_NFKC,
  TK_NORM_NFKD,
  TK_NORM_PREPEND,
  TK_NORM_REPLACE,
  TK_NORM_STRIP,
} tk_norm_kind;

typedef struct tk_norm_step {
  tk_norm_kind kind;
  char *str; /* Prepend: the prefix; Replace: the content */
  size_t str_len;
  tk_regex pattern; /* Replace */
  bool left, right; /* Strip */
} tk_norm_step;

typedef struct tk_normalizer {
  tk_norm_step *steps; /* a Sequence flattened; none when the normalizer is null */
  size_t n;
} tk_normalizer;

lb_status tk_normalizer_parse(const json_t *j, const char *label, tk_normalizer *out,
                              lb_error *err);
void tk_normalizer_free(tk_normalizer *n);
/* Normalizes s into out (out is reset first). */
lb_status tk_normalize(const tk_normalizer *n, tk_match_ctx *m, const char *s, size_t len,
                       tk_buf *out, lb_error *err);

/* ---- pre-tokenizer (pretokenize.c) ------------------------------------------------------------- */

typedef enum tk_pre_kind { TK_PRE_SPLIT, TK_PRE_BYTELEVEL, TK_PRE_METASPACE } tk_pre_kind;
typedef enum tk_split_behavior {
  TK_SPLIT_REMOVED,
  TK_SPLIT_ISOLATED,
  TK_SPLIT_MERGED_WITH_PREVIOUS,
  TK_SPLIT_MERGED_WITH_NEXT,
  TK_SPLIT_CONTIGUOUS,
} tk_split_behavior;
typedef enum tk_prepend_scheme { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER } tk_prepend_scheme;

typedef struct tk_pre_step {
  tk_pre_kind kind;
  tk_regex pattern;            /* Split; ByteLevel with use_regex: the GPT-2 pattern */
  tk_split_behavior behavior;  /* Split */
  bool invert;                 /* Split */
  bool add_prefix_space;       /* ByteLevel */
  bool use_regex;              /* ByteLevel */
  uint32_t replacement;        /* Metaspace */
  tk_prepend_scheme prepend;   /* Metaspace */
  bool split;                  /* Metaspace */
} tk_pre_step;

typedef struct tk_pretok {
  tk_pre_step *steps;
  size_t n;
} tk_pretok;

lb_status tk_pretok_parse(const json_t *j, const char *label, tk_pretok *out, lb_error *err);
void tk_pretok_free(tk_pretok *p);
/* Splits s into words. `first` says the text begins at offset 0 of the input (Metaspace "first").
 * out and tmp are scratch lists owned by the caller; the words are left in *out. */
lb_status tk_pretokenize(const tk_pretok *p, tk_match_ctx *m, const char *s, size_t len,
                         bool first, tk_pieces *out, tk_pieces *tmp, lb_error *err);

/* The GPT-2 byte <-> unicode table of ByteLevel: byte b is code point tk_byte_cp(b). */
uint32_t tk_byte_cp(uint8_t b);
/* The byte of a code point of the table, or -1. */
int tk_cp_byte(uint32_t cp);

/* ---- BPE model (bpe.c) ------------------------------------------------------------------------- */

typedef struct tk_map { /* string -> id, open addressing over the ids of a piece table */
  int32_t *slot;        /* -1: empty */
  size_t mask;
} tk_map;

typedef struct tk_merge_slot {
  uint64_t key; /* left id << 32 | right id; UINT64_MAX: empty */
  uint32_t rank;
  int32_t new_id;
} tk_merge_slot;

typedef struct tk_merge_map { /* (left id, right id) -> (rank, new id) */
  tk_merge_slot *slot;
  size_t mask;
} tk_merge_map;

typedef struct tk_bpe {
  int32_t n_ids;     /* largest model id + 1 */
  int32_t n_entries; /* tokens in model.vocab (tokenizers' get_vocab_size of the model) */
  char **piece;  /* [n_ids]: NULL for holes; strings live in `arena` */
  uint32_t *piece_len;
  char *arena;
  tk_map map;
  tk_merge_map merges;
  int32_t unk;                 /* -1 when none */
  bool byte_fallback, fuse_unk, ignore_merges;
  char *prefix, *suffix;       /* continuing_subword_prefix, end_of_word_suffix (NULL: null) */
  uint64_t *pairs;             /* set of adjacent code point pairs (a << 32 | b) inside tokens */
  size_t pairs_mask;           /* (built when there is no subword prefix/suffix; UINT64_MAX: empty) */
  int32_t byte_id[256];        /* ids of <0xXX>, -1 when missing */
} tk_bpe;

uint64_t tk_hash(const char *s, size_t len);
int32_t tk_map_get(const tk_map *m, char *const *piece, const uint32_t *plen, const char *s,
                   size_t len);

lb_status tk_bpe_parse(const json_t *model, const char *label, tk_bpe *out, lb_error *err);
void tk_bpe_free(tk_bpe *b);
int32_t tk_bpe_id(const tk_bpe *b, const char *s, size_t len); /* -1 when absent */

/* Per-call BPE state: symbols, heap, and a cache of words already seen. */
typedef struct tk_bpe_ctx tk_bpe_ctx;
lb_status tk_bpe_ctx_new(tk_bpe_ctx **out, lb_error *err);
void tk_bpe_ctx_free(tk_bpe_ctx *c);
/* Appends the ids of one word. */
lb_status tk_bpe_word(const tk_bpe *b, tk_bpe_ctx *c, const char *s, size_t len, tk_ids *out,
                      lb_error *err);

/* ---- decoder (decode.c) ------------------------------------------------------------------------ */

typedef enum tk_dec_kind {
  TK_DEC_REPLACE,
  TK_DEC_BYTE_FALLBACK,
  TK_DEC_FUSE,
  TK_DEC_STRIP,
  TK_DEC_BYTELEVEL,
  TK_DEC_METASPACE,
} tk_dec_kind;

typedef struct tk_dec_step {
  tk_dec_kind kind;
  tk_regex pattern; /* Replace */
  char *content;    /* Replace */
  size_t content_len;
  uint32_t ch;      /* Strip: content; Metaspace: replacement */
  size_t start, stop;
  tk_prepend_scheme prepend; /* Metaspace */
} tk_dec_step;

typedef struct tk_decoder {
  bool present; /* a null decoder joins the tokens with spaces */
  tk_dec_step *steps;
  size_t n;
} tk_decoder;

lb_status tk_decoder_parse(const json_t *j, const char *label, tk_decoder *out, lb_error *err);
void tk_decoder_free(tk_decoder *d);

/* ---- the tokenizer (tokenizer.c) --------------------------------------------------------------- */

typedef struct tk_added {
  char *content;
  size_t len;
  char *norm; /* normalized content (tokens with normalized: true) */
  size_t norm_len;
  int32_t id;
  bool special, normalized, lstrip, rstrip;
} tk_added;

typedef struct tk_trie_node {
  int32_t child, sibling; /* -1: none */
  int32_t token;          /* index into added[], -1: none */
  uint8_t byte;
} tk_trie_node;

typedef struct tk_trie { /* leftmost-longest matcher over added-token contents */
  tk_trie_node *node;
  size_t n, cap;
  int32_t root[256]; /* first-level nodes by byte, -1: none */
  bool empty;
} tk_trie;

struct lb_tokenizer {
  char *path; /* DIR/tokenizer.json, for messages */
  tk_bpe bpe;
  tk_normalizer norm;
  tk_pretok pre;
  tk_decoder dec;
  tk_added *added;
  size_t n_added;
  tk_trie raw_trie, norm_trie; /* added tokens matched before / after normalization */
  int32_t n_ids;              /* largest id + 1, added tokens included */
  const char **piece;         /* [n_ids]: model pieces and added contents */
  uint32_t *piece_len;
  uint8_t *flags;             /* [n_ids]: TK_F_* */
  int32_t *prefix, *suffix;   /* the post-processor's ids around the sequence */
  size_t n_prefix, n_suffix;
  int32_t bos, eos;
};

enum { TK_F_ADDED = 1, TK_F_SPECIAL = 2 };

/* Decodes ids into text (decode.c). `mid` says the ids continue a sequence already decoded up to
 * a hard boundary (streaming); *open (optional) says the end of the text may still change when
 * more ids follow (an unfinished byte run, an incomplete UTF-8 character, a strippable tail). */
lb_status tk_decode(const lb_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, bool mid,
                    tk_buf *out, bool *open, lb_error *err);

#endif
