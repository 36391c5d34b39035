/* lb_tokenizer: loading tokenizer.json (+ tokenizer_config.json), added tokens, the encode pipeline
 * and the getters. The pipeline is that of `tokenizers` (TokenizerImpl::encode_single_sequence):
 *   1. the text is cut on added tokens (leftmost-longest, on the raw text for normalized: false
 *      tokens; special ones are left as text under LB_TOK_SPLIT_SPECIAL),
 *   2. each remaining piece is normalized on its own (so Prepend "▁" applies per piece), then cut
 *      again on the added tokens with normalized: true,
 *   3. pre-tokenized into words, each word encoded by the BPE model,
 *   4. the post-processor adds the special tokens of its template (LB_TOK_ADD_SPECIAL).
 * Added tokens get the ids tokenizers gives them (AddedVocabulary::add_tokens): the model's id
 * when the content is in model.vocab, else the next id after the vocabulary; the "id" written in
 * the file is not used, as in tokenizers. */
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

#define TK_JSON_MAX ((size_t)512 << 20)

/* ---- added-token matcher: a byte trie, leftmost-longest ----------------------------------------- */

static lb_status trie_add(tk_trie *t, const char *s, size_t len, int32_t token, lb_error *err) {
  if (!len) return LB_OK;
  if (t->empty || !t->cap) {
    if (!t->cap) memset(t->root, 0xFF, sizeof t->root);
    t->empty = false;
  }
  int32_t parent = -1; /* the node whose children hold byte i; -1: the root table */
  for (size_t i = 0;; i++) {
    int32_t head = parent < 0 ? t->root[(unsigned char)s[0]] : t->node[parent].child, at = head;
    while (at >= 0 && t->node[at].byte != (unsigned char)s[i]) at = t->node[at].sibling;
    if (at < 0) { /* a new node at the head of the sibling list */
      if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tk_trie_node *p = realloc(t->node, cap * sizeof *p);
        if (!p) return lb_fail(err, LB_ENOMEM, "out of memory (added tokens)");
        t->node = p, t->cap = cap;
      }
      at = (int32_t)t->n++;
      t->node[at] = (tk_trie_node){-1, head, -1, (uint8_t)s[i]};
      if (parent < 0) t->root[(unsigned char)s[0]] = at;
      else t->node[parent].child = at;
    }
    if (i + 1 == len) {
      if (t->node[at].token < 0) t->node[at].token = token; /* the first of equal contents wins */
      return LB_OK;
    }
    parent = at;
  }
}

/* The longest token starting at s: its index into added[] and length, or -1. */
static int32_t trie_longest(const tk_trie *t, const char *s, size_t len, size_t *mlen) {
  int32_t best = -1, at = t->root[(unsigned char)s[0]];
  for (size_t i = 0; at >= 0;) {
    if (t->node[at].token >= 0) best = t->node[at].token, *mlen = i + 1;
    if (++i == len) break;
    at = t->node[at].child;
    while (at >= 0 && t->node[at].byte != (unsigned char)s[i]) at = t->node[at].sibling;
  }
  return best;
}

/* ---- the encode pipeline ------------------------------------------------------------------------ */

typedef struct enc {
  const lb_tokenizer *t;
  unsigned flags;
  tk_match_ctx m;
  tk_bpe_ctx *bpe;
  tk_buf norm;
  tk_pieces words, tmp;
  tk_ids out;
} enc;

typedef lb_status (*text_fn)(enc *e, const char *s, size_t len, bool first, lb_error *err);

/* AddedVocabulary::find_matches: calls on_text for the text between matches and pushes the ids
 * of the matches. `first`: s starts at offset 0 of the input. */
static lb_status split_added(enc *e, const tk_trie *trie, const char *s, size_t len, bool first,
                             text_fn on_text, lb_error *err) {
  const lb_tokenizer *t = e->t;
  size_t seg = 0; /* start of the text not yet handed on */
  for (size_t p = 0; p < len && !trie->empty;) {
    size_t mlen = 0;
    int32_t k = trie->root[(unsigned char)s[p]] >= 0 ? trie_longest(trie, s + p, len - p, &mlen) : -1;
    if (k < 0) {
      p++;
      continue;
    }
    const tk_added *a = &t->added[k];
    size_t start = p, stop = p + mlen;
    p = stop;
    if ((e->flags & LB_TOK_SPLIT_SPECIAL) && a->special) continue;
    if (a->lstrip) { /* swallow the white space before it */
      size_t b = start;
      while (b > seg) {
        size_t c = b - 1;
        while (c > seg && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
        uint32_t cp;
        tk_utf8_next(s + c, b - c, &cp);
        if (!tk_is_white_space(cp)) break;
        b = c;
      }
      start = b;
    }
    if (a->rstrip)
      while (stop < len) {
        uint32_t cp;
        size_t n = tk_utf8_next(s + stop, len - stop, &cp);
        if (!tk_is_white_space(cp)) break;
        stop += n;
      }
    if (start > seg) LB_TRY(on_text(e, s + seg, start - seg, first && seg == 0, err));
    LB_TRY(tk_ids_push(&e->out, a->id, err));
    if (stop > seg) seg = stop;
  }
  if (seg < len) LB_TRY(on_text(e, s + seg, len - seg, first && seg == 0, err));
  return LB_OK;
}

static lb_status encode_normalized(enc *e, const char *s, size_t len, bool first, lb_error *err) {
  LB_TRY(tk_pretokenize(&e->t->pre, &e->m, s, len, first, &e->words, &e->tmp, err));
  for (size_t i = 0; i < e->words.n; i++)
    LB_TRY(tk_bpe_word(&e->t->bpe, e->bpe, tk_piece_at(&e->words, i),
                       e->words.s[i].len, &e->out, err));
  return LB_OK;
}

static lb_status encode_text(enc *e, const char *s, size_t len, bool first, lb_error *err) {
  LB_TRY(tk_normalize(&e->t->norm, &e->m, s, len, &e->norm, err));
  /* (encode_normalized leaves e->norm alone) */
  return split_added(e, &e->t->norm_trie, e->norm.p, e->norm.len, first, encode_normalized, err);
}

static bool valid_utf8(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0, maximal, k; i < len; i += k) {
    if (u[i] < 0x80) {
      k = 1;
      continue;
    }
    if (!(k = tk_utf8_check(u + i, len - i, &maximal))) return false;
  }
  return true;
}

lb_status lb_tokenize(const lb_tokenizer *t, const char *text, size_t len, unsigned flags,
                      int32_t **ids, size_t *n, lb_error *err) {
  *ids = NULL;
  *n = 0;
  if (!t || (len && !text)) return lb_fail(err, LB_EINVAL, "lb_tokenize: NULL argument");
  if (len > TK_MAX_TEXT)
    return lb_fail(err, LB_EINVAL, "lb_tokenize: %zu bytes of text is more than the %zu-byte limit",
                   len, TK_MAX_TEXT);
  enc e = {.t = t, .flags = flags};
  tk_buf fixed = {0};
  lb_status st = tk_bpe_ctx_new(&e.bpe, err);
  if (st == LB_OK && len && !valid_utf8(text, len)) {
    st = tk_utf8_lossy(text, len, &fixed, err);
    text = fixed.p, len = fixed.len;
  }
  for (size_t i = 0; st == LB_OK && (flags & LB_TOK_ADD_SPECIAL) && i < t->n_prefix; i++)
    st = tk_ids_push(&e.out, t->prefix[i], err);
  if (st == LB_OK) st = split_added(&e, &t->raw_trie, text ? text : "", len, true, encode_text, err);
  for (size_t i = 0; st == LB_OK && (flags & LB_TOK_ADD_SPECIAL) && i < t->n_suffix; i++)
    st = tk_ids_push(&e.out, t->suffix[i], err);
  if (st != LB_OK) lb_error_prefix(err, "%s: encoding %zu bytes", t->path, len);
  tk_buf_free(&fixed);
  tk_buf_free(&e.norm);
  tk_pieces_free(&e.words);
  tk_pieces_free(&e.tmp);
  tk_bpe_ctx_free(e.bpe);
  tk_match_ctx_free(&e.m);
  if (st != LB_OK) {
    free(e.out.p);
    return st;
  }
  *ids = e.out.p ? e.out.p : malloc(sizeof(int32_t));
  *n = e.out.n;
  return *ids ? LB_OK : lb_fail(err, LB_ENOMEM, "out of memory");
}

/* ---- loading ------------------------------------------------------------------------------------ */

/* tokenizers' token_to_id: added tokens first, then the model. */
static int32_t token_id(const lb_tokenizer *t, const char *s, size_t len) {
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].len == len && !memcmp(t->added[i].content, s, len)) return t->added[i].id;
  return tk_bpe_id(&t->bpe, s, len);
}

static lb_status parse_added(lb_tokenizer *t, const json_t *arr, lb_error *err) {
  const char *path = t->path;
  if (!arr || json_is_null(arr)) return LB_OK;
  if (!json_is_array(arr))
    return lb_fail(err, LB_EFORMAT, "%s: added_tokens: expected an array, got %s", path,
                   lb_json_type_name(arr));
  size_t n = json_array_size(arr);
  t->added = calloc(n ? n : 1, sizeof *t->added);
  if (!t->added) return lb_fail(err, LB_ENOMEM, "out of memory");
  int32_t vsize = t->bpe.n_entries, max_id = -1; /* model.get_vocab_size(), largest added id */
  for (size_t i = 0; i < n; i++) {
    const json_t *o = json_array_get(arr, i);
    char lab[300];
    snprintf(lab, sizeof lab, "%.250s: added_tokens[%zu]", path, i);
    if (!json_is_object(o))
      return lb_fail(err, LB_EFORMAT, "%s: expected an object, got %s", lab, lb_json_type_name(o));
    const json_t *c = json_object_get(o, "content");
    if (!json_is_string(c))
      return lb_fail(err, LB_EFORMAT, "%s.content: expected a string, got %s", lab,
                     c ? lb_json_type_name(c) : "nothing");
    int64_t file_id;
    bool single_word;
    tk_added a = {.len = json_string_length(c)};
    LB_TRY(lb_json_int(o, "id", lab, true, 0, 0, TK_MAX_ID - 1, &file_id, err));
    LB_TRY(lb_json_bool(o, "special", lab, false, false, &a.special, err));
    LB_TRY(lb_json_bool(o, "normalized", lab, false, !a.special, &a.normalized, err));
    LB_TRY(lb_json_bool(o, "lstrip", lab, false, false, &a.lstrip, err));
    LB_TRY(lb_json_bool(o, "rstrip", lab, false, false, &a.rstrip, err));
    LB_TRY(lb_json_bool(o, "single_word", lab, false, false, &single_word, err));
    if (single_word)
      return lb_fail(err, LB_EUNSUPPORTED, "%s.single_word: true is not supported", lab);
    const char *content = json_string_value(c);
    bool skip = !a.len; /* AddedVocabulary::add_tokens skips empty and repeated contents */
    for (size_t k = 0; k < t->n_added && !skip; k++)
      skip = t->added[k].len == a.len && !memcmp(t->added[k].content, content, a.len);
    if (skip) continue;
    a.id = tk_bpe_id(&t->bpe, content, a.len);
    if (a.id < 0) {
      a.id = max_id < 0 ? vsize : (max_id >= vsize || vsize == 0 ? max_id + 1 : vsize);
      if (a.id >= TK_MAX_ID) return lb_fail(err, LB_EFORMAT, "%s: too many added tokens", lab);
      if (a.id < t->bpe.n_ids && t->bpe.piece[a.id])
        return lb_fail(err, LB_EFORMAT, "%s: '%.100s' would get id %d (tokenizers numbers new "
                       "added tokens after the vocabulary), but model.vocab gives it to '%.100s'",
                       lab, content, a.id, t->bpe.piece[a.id]);
    }
    if (a.id > max_id) max_id = a.id;
    a.content = malloc(a.len + 1);
    if (!a.content) return lb_fail(err, LB_ENOMEM, "out of memory");
    memcpy(a.content, content, a.len + 1);
    t->added[t->n_added++] = a;
  }
  return LB_OK;
}

/* ---- post-processor ----------------------------------------------------------------------------- */

static lb_status check_id(const lb_tokenizer *t, int64_t id, const char *lab, lb_error *err) {
  if (id < 0 || id >= t->n_ids || !t->piece[id])
    return lb_fail(err, LB_EFORMAT, "%s: id %lld is not in the vocabulary", lab, (long long)id);
  return LB_OK;
}

/* Wraps the current prefix/suffix: prefix = pre + prefix, suffix = suffix + post. */
static lb_status wrap(lb_tokenizer *t, const int32_t *pre, size_t npre, const int32_t *post,
                      size_t npost, lb_error *err) {
  int32_t *p = malloc((t->n_prefix + npre + 1) * sizeof *p);
  int32_t *s = malloc((t->n_suffix + npost + 1) * sizeof *s);
  if (!p || !s) return free(p), free(s), lb_fail(err, LB_ENOMEM, "out of memory");
  if (npre) memcpy(p, pre, npre * sizeof *p);
  if (t->n_prefix) memcpy(p + npre, t->prefix, t->n_prefix * sizeof *p);
  if (t->n_suffix) memcpy(s, t->suffix, t->n_suffix * sizeof *s);
  if (npost) memcpy(s + t->n_suffix, post, npost * sizeof *s);
  free(t->prefix);
  free(t->suffix);
  t->prefix = p, t->n_prefix += npre;
  t->suffix = s, t->n_suffix += npost;
  return LB_OK;
}

/* TemplateProcessing: the "single" template around sequence $A. */
static lb_status parse_template(lb_tokenizer *t, const json_t *j, const char *label,
                                lb_error *err) {
  const json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
  if (!json_is_array(single))
    return lb_fail(err, LB_EFORMAT, "%s.single: expected an array", label);
  int32_t ids[2][64];
  size_t nids[2] = {0, 0};
  int side = 0; /* 0 before $A, 1 after */
  for (size_t i = 0; i < json_array_size(single); i++) {
    const json_t *item = json_array_get(single, i), *sp = json_object_get(item, "SpecialToken");
    char lab[400];
    snprintf(lab, sizeof lab, "%.300s.single[%zu]", label, i);
    if (json_object_get(item, "Sequence")) {
      const char *which = json_string_value(json_object_get(json_object_get(item, "Sequence"), "id"));
      if (!which || strcmp(which, "A") || side)
        return lb_fail(err, LB_EUNSUPPORTED, "%s: only one sequence $A is supported", lab);
      side = 1;
      continue;
    }
    const char *name = json_string_value(json_object_get(sp, "id"));
    if (!name)
      return lb_fail(err, LB_EFORMAT, "%s: expected {\"SpecialToken\": {\"id\": ...}} or "
                     "{\"Sequence\": ...}", lab);
    const json_t *def = json_object_get(json_object_get(specials, name), "ids");
    if (!json_is_array(def))
      return lb_fail(err, LB_EFORMAT, "%s.special_tokens['%.100s'].ids: missing or not an array",
                     label, name);
    for (size_t k = 0; k < json_array_size(def); k++) {
      const json_t *v = json_array_get(def, k);
      snprintf(lab, sizeof lab, "%.300s.special_tokens['%.20s'].ids[%zu]", label, name, k);
      if (!json_is_integer(v)) return lb_fail(err, LB_EFORMAT, "%s: expected an integer", lab);
      LB_TRY(check_id(t, json_integer_value(v), lab, err));
      if (nids[side] == 64) return lb_fail(err, LB_EUNSUPPORTED, "%s: too many special tokens", label);
      ids[side][nids[side]++] = (int32_t)json_integer_value(v);
    }
  }
  if (!side) return lb_fail(err, LB_EFORMAT, "%s.single: no sequence $A", label);
  return wrap(t, ids[0], nids[0], ids[1], nids[1], err);
}

/* BertProcessing / RobertaProcessing: cls $A sep, with "cls": [token, id], "sep": [token, id]. */
static lb_status parse_cls_sep(lb_tokenizer *t, const json_t *j, const char *label, lb_error *err) {
  int32_t v[2];
  const char *keys[2] = {"cls", "sep"};
  for (int i = 0; i < 2; i++) {
    const json_t *p = json_object_get(j, keys[i]);
    char lab[340];
    snprintf(lab, sizeof lab, "%.300s.%s", label, keys[i]);
    if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(json_array_get(p, 1)))
      return lb_fail(err, LB_EFORMAT, "%s: expected [token, id]", lab);
    LB_TRY(check_id(t, json_integer_value(json_array_get(p, 1)), lab, err));
    v[i] = (int32_t)json_integer_value(json_array_get(p, 1));
  }
  return wrap(t, &v[0], 1, &v[1], 1, err);
}

static lb_status parse_post(lb_tokenizer *t, const json_t *j, const char *label, int depth,
                            lb_error *err) {
  if (!j || json_is_null(j)) return LB_OK;
  const char *type = json_string_value(json_object_get(j, "type"));
  if (!type) return lb_fail(err, LB_EFORMAT, "%s.type: missing or not a string", label);
  if (!strcmp(type, "TemplateProcessing")) return parse_template(t, j, label, err);
  if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing"))
    return parse_cls_sep(t, j, label, err);
  if (!strcmp(type, "ByteLevel")) return LB_OK; /* offsets only */
  if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(j, "processors");
    if (!json_is_array(list)) return lb_fail(err, LB_EFORMAT, "%s.processors: expected an array", label);
    if (depth > 8) return lb_fail(err, LB_EUNSUPPORTED, "%s: Sequence nested too deeply", label);
    for (size_t i = 0; i < json_array_size(list); i++) {
      char sub[320];
      snprintf(sub, sizeof sub, "%.280s.processors[%zu]", label, i);
      LB_TRY(parse_post(t, json_array_get(list, i), sub, depth + 1, err));
    }
    return LB_OK;
  }
  return lb_fail(err, LB_EUNSUPPORTED, "%s.type: post-processor '%s' is not supported", label, type);
}

/* ---- tokenizer_config.json ---------------------------------------------------------------------- */

/* bos_token / eos_token: a string, {"content": ...}, or null/absent (*id left as it is). */
static lb_status config_token(const lb_tokenizer *t, const json_t *cfg, const char *key,
                              const char *path, int32_t *id, lb_error *err) {
  const json_t *v = json_object_get(cfg, key);
  if (!v || json_is_null(v)) return LB_OK;
  if (json_is_object(v)) v = json_object_get(v, "content");
  if (!json_is_string(v))
    return lb_fail(err, LB_EFORMAT, "%s: %s: expected a string or {\"content\": ...}", path, key);
  int32_t k = token_id(t, json_string_value(v), json_string_length(v));
  if (k < 0)
    return lb_fail(err, LB_EFORMAT, "%s: %s: '%.100s' is not a token of tokenizer.json", path,
                   key, json_string_value(v));
  *id = k;
  return LB_OK;
}

static lb_status load_config(lb_tokenizer *t, const char *dir, lb_error *err) {
  /* defaults from the template: its first token before $A and its first after */
  t->bos = t->n_prefix ? t->prefix[0] : -1;
  t->eos = t->n_suffix ? t->suffix[0] : -1;
  char *path = lb_path_join(dir, "tokenizer_config.json");
  if (!path) return lb_fail(err, LB_ENOMEM, "out of memory");
  json_t *cfg = NULL;
  lb_status s = LB_OK;
  char *text = NULL;
  size_t len;
  if (lb_path_exists(path)) s = lb_read_file(path, 64u << 20, &text, &len, err);
  if (text && s == LB_OK) { /* model_max_length is often 1e30 written as an integer: as a real */
    json_error_t je;
    cfg = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
    if (!cfg)
      s = lb_fail(err, LB_EFORMAT, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
  }
  free(text);
  if (s == LB_OK && cfg && !json_is_object(cfg))
    s = lb_fail(err, LB_EFORMAT, "%s: expected a JSON object", path);
  bool b;
  if (s == LB_OK && cfg) s = config_token(t, cfg, "bos_token", path, &t->bos, err);
  if (s == LB_OK && cfg) s = config_token(t, cfg, "eos_token", path, &t->eos, err);
  if (s == LB_OK && cfg) s = lb_json_bool(cfg, "add_bos_token", path, false, false, &b, err);
  if (s == LB_OK && cfg) s = lb_json_bool(cfg, "add_eos_token", path, false, false, &b, err);
  json_decref(cfg);
  free(path);
  return s;
}

/* ---- load / free / getters ---------------------------------------------------------------------- */

static lb_status build_tables(lb_tokenizer *t, lb_error *err) {
  t->n_ids = t->bpe.n_ids;
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].id >= t->n_ids) t->n_ids = t->added[i].id + 1;
  size_t n = (size_t)(t->n_ids ? t->n_ids : 1);
  t->piece = calloc(n, sizeof *t->piece);
  t->piece_len = calloc(n, sizeof *t->piece_len);
  t->flags = calloc(n, 1);
  if (!t->piece || !t->piece_len || !t->flags) return lb_fail(err, LB_ENOMEM, "out of memory");
  for (int32_t i = 0; i < t->bpe.n_ids; i++) {
    t->piece[i] = t->bpe.piece[i];
    t->piece_len[i] = t->bpe.piece_len[i];
  }
  tk_match_ctx m = {0};
  tk_buf norm = {0};
  lb_status s = LB_OK;
  for (size_t i = 0; i < t->n_added && s == LB_OK; i++) {
    tk_added *a = &t->added[i];
    t->piece[a->id] = a->content; /* id_to_token: added tokens first */
    t->piece_len[a->id] = (uint32_t)a->len;
    t->flags[a->id] |= TK_F_ADDED | (a->special ? TK_F_SPECIAL : 0);
    if (!a->normalized) {
      s = trie_add(&t->raw_trie, a->content, a->len, (int32_t)i, err);
      continue;
    }
    s = tk_normalize(&t->norm, &m, a->content, a->len, &norm, err);
    if (s == LB_OK && !(a->norm = malloc(norm.len + 1))) s = lb_fail(err, LB_ENOMEM, "out of memory");
    if (s != LB_OK) break;
    memcpy(a->norm, norm.p, norm.len);
    a->norm[norm.len] = 0;
    a->norm_len = norm.len;
    s = trie_add(&t->norm_trie, a->norm, a->norm_len, (int32_t)i, err);
  }
  tk_buf_free(&norm);
  tk_match_ctx_free(&m);
  return s;
}

static lb_status load(lb_tokenizer *t, const char *dir, lb_error *err) {
  json_t *root = NULL;
  LB_TRY(lb_json_load_file(t->path, TK_JSON_MAX, &root, err));
  lb_status s = LB_OK;
  char lab[4][300];
  const char *keys[4] = {"normalizer", "pre_tokenizer", "decoder", "post_processor"};
  for (int i = 0; i < 4; i++) snprintf(lab[i], sizeof lab[i], "%.250s: %s", t->path, keys[i]);
  /* truncation and padding are batch settings: Transformers resets them too, lowbit ignores them */
  if (!json_is_object(root)) s = lb_fail(err, LB_EFORMAT, "%s: expected a JSON object", t->path);
  if (s == LB_OK) s = tk_bpe_parse(json_object_get(root, "model"), t->path, &t->bpe, err);
  if (s == LB_OK) s = tk_normalizer_parse(json_object_get(root, keys[0]), lab[0], &t->norm, err);
  if (s == LB_OK) s = tk_pretok_parse(json_object_get(root, keys[1]), lab[1], &t->pre, err);
  if (s == LB_OK) s = tk_decoder_parse(json_object_get(root, keys[2]), lab[2], &t->dec, err);
  if (s == LB_OK) s = parse_added(t, json_object_get(root, "added_tokens"), err);
  t->raw_trie.empty = t->norm_trie.empty = true;
  if (s == LB_OK) s = build_tables(t, err);
  if (s == LB_OK) s = parse_post(t, json_object_get(root, keys[3]), lab[3], 0, err);
  if (s == LB_OK) s = load_config(t, dir, err);
  json_decref(root);
  return s;
}

lb_status lb_tokenizer_load(const char *dir, lb_tokenizer **out, lb_error *err) {
  *out = NULL;
  if (!dir) return lb_fail(err, LB_EINVAL, "lb_tokenizer_load: NULL folder");
  lb_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return lb_fail(err, LB_ENOMEM, "out of memory");
  t->bpe.unk = -1;
  t->path = lb_path_join(dir, "tokenizer.json");
  lb_status s = t->path ? LB_OK : lb_fail(err, LB_ENOMEM, "out of memory");
  if (s == LB_OK && !lb_path_exists(t->path))
    s = lb_fail(err, LB_ENOTFOUND, "%s: no such file (a tokenizer folder needs tokenizer.json)",
                t->path);
  if (s == LB_OK) s = load(t, dir, err);
  if (s != LB_OK) {
    lb_tokenizer_free(t);
    return s;
  }
  *out = t;
  return LB_OK;
}

void lb_tokenizer_free(lb_tokenizer *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n_added; i++) {
    free(t->added[i].content);
    free(t->added[i].norm);
  }
  free(t->added);
  free(t->raw_trie.node);
  free(t->norm_trie.node);
  tk_bpe_free(&t->bpe);
  tk_normalizer_free(&t->norm);
  tk_pretok_free(&t->pre);
  tk_decoder_free(&t->dec);
  free(t->piece);
  free(t->piece_len);
  free(t->flags);
  free(t->prefix);
  free(t->suffix);
  free(t->path);
  free(t);
}

int32_t lb_tokenizer_vocab_size(const lb_tokenizer *t) { return t ? t->n_ids : 0; }
int32_t lb_tokenizer_bos(const lb_tokenizer *t) { return t ? t->bos : -1; }
int32_t lb_tokenizer_eos(const lb_tokenizer *t) { return t ? t->eos : -1; }

bool lb_tokenizer_is_special(const lb_tokenizer *t, int32_t id) {
  return t && id >= 0 && id < t->n_ids && (t->flags[id] & TK_F_SPECIAL);
}

const char *lb_tokenizer_piece(const lb_tokenizer *t, int32_t id) {
  return t && id >= 0 && id < t->n_ids ? t->piece[id] : NULL;
}
