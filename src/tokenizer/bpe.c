/* The BPE model of tokenizer.json, as `tokenizers` runs it (models/bpe/{model,word}.rs):
 * a word starts as its characters (unknown ones become <0xXX> byte tokens with byte_fallback, else
 * the unk token, fused with fuse_unk), then merges are applied from a min-heap ordered by (rank,
 * position), skipping entries made stale by earlier merges: O(n log n) in the word length, which
 * matters when a SentencePiece-style tokenizer without pre-tokenizer sees a whole file as one word.
 * Such a long word is also cut where no token of the vocabulary holds the two characters on either
 * side: no merge can ever cross that point, so the parts merge exactly as they would together (the
 * order of merges within a part is unchanged), and repeated parts come from the cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

uint64_t tk_hash(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

int32_t tk_map_get(const tk_map *m, char *const *piece, const uint32_t *plen, const char *s,
                   size_t len) {
  if (!m->slot) return -1;
  for (size_t i = tk_hash(s, len) & m->mask;; i = (i + 1) & m->mask) {
    int32_t id = m->slot[i];
    if (id < 0) return -1;
    if (plen[id] == len && !memcmp(piece[id], s, len)) return id;
  }
}

int32_t tk_bpe_id(const tk_bpe *b, const char *s, size_t len) {
  return tk_map_get(&b->map, b->piece, b->piece_len, s, len);
}

static size_t pow2_at_least(size_t n) {
  size_t c = 16;
  while (c < n) c *= 2;
  return c;
}

/* ---- loading ------------------------------------------------------------------------------------ */

static lb_status parse_vocab(const json_t *vocab, const char *label, tk_bpe *b, lb_error *err) {
  if (!json_is_object(vocab))
    return lb_fail(err, LB_EFORMAT, "%s: model.vocab: expected an object of token: id, got %s",
                   label, vocab ? lb_json_type_name(vocab) : "nothing");
  const char *key;
  const json_t *v;
  size_t bytes = 0;
  int64_t max_id = -1;
  json_object_foreach((json_t *)vocab, key, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TK_MAX_ID)
      return lb_fail(err, LB_EFORMAT, "%s: model.vocab['%.100s']: expected an id in [0, %d), got %s",
                     label, key, TK_MAX_ID, json_is_integer(v) ? "a number out of range"
                                                               : lb_json_type_name(v));
    if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    bytes += strlen(key) + 1;
  }
  b->n_ids = (int32_t)(max_id + 1);
  b->n_entries = (int32_t)json_object_size(vocab);
  size_t n = (size_t)b->n_ids;
  b->piece = calloc(n ? n : 1, sizeof *b->piece);
  b->piece_len = calloc(n ? n : 1, sizeof *b->piece_len);
  b->arena = malloc(bytes ? bytes : 1);
  size_t cap = pow2_at_least(2 * json_object_size(vocab) + 2);
  b->map.slot = malloc(cap * sizeof *b->map.slot);
  if (!b->piece || !b->piece_len || !b->arena || !b->map.slot)
    return lb_fail(err, LB_ENOMEM, "%s: out of memory for the vocabulary", label);
  memset(b->map.slot, 0xFF, cap * sizeof *b->map.slot);
  b->map.mask = cap - 1;
  size_t at = 0;
  json_object_foreach((json_t *)vocab, key, v) {
    int32_t id = (int32_t)json_integer_value(v);
    size_t len = strlen(key);
    if (b->piece[id])
      return lb_fail(err, LB_EFORMAT, "%s: model.vocab['%.100s']: id %d is also the id of '%.100s'",
                     label, key, id, b->piece[id]);
    memcpy(b->arena + at, key, len + 1);
    b->piece[id] = b->arena + at;
    b->piece_len[id] = (uint32_t)len;
    at += len + 1;
    size_t i = tk_hash(key, len) & b->map.mask;
    while (b->map.slot[i] >= 0) i = (i + 1) & b->map.mask;
    b->map.slot[i] = id;
  }
  return LB_OK;
}

static size_t merge_hash(uint64_t k) { return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 17); }

static void merge_put(tk_merge_map *m, int32_t a, int32_t c, uint32_t rank, int32_t id) {
  uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)c;
  size_t i = merge_hash(k) & m->mask;
  while (m->slot[i].key != UINT64_MAX && m->slot[i].key != k) i = (i + 1) & m->mask;
  /* a repeated pair keeps the last rank, as tokenizers' HashMap collect does */
  m->slot[i] = (tk_merge_slot){k, rank, id};
}

/* The (rank, new id) of a pair; false when the pair does not merge. */
static inline bool merge_get(const tk_merge_map *m, int32_t a, int32_t c, uint32_t *rank,
                             int32_t *id) {
  uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)c;
  for (size_t i = merge_hash(k) & m->mask;; i = (i + 1) & m->mask) {
    const tk_merge_slot *sl = &m->slot[i];
    if (sl->key == k) return *rank = sl->rank, *id = sl->new_id, true;
    if (sl->key == UINT64_MAX) return false;
  }
}

static lb_status parse_merges(const json_t *merges, const char *label, tk_bpe *b, lb_error *err) {
  if (!json_is_array(merges))
    return lb_fail(err, LB_EFORMAT, "%s: model.merges: expected an array, got %s", label,
                   merges ? lb_json_type_name(merges) : "nothing");
  size_t n = json_array_size(merges);
  if (n >= UINT32_MAX / 4) return lb_fail(err, LB_EFORMAT, "%s: model.merges: too many", label);
  size_t cap = pow2_at_least(2 * n + 2);
  tk_merge_map *m = &b->merges;
  m->slot = malloc(cap * sizeof *m->slot);
  if (!m->slot) return lb_fail(err, LB_ENOMEM, "%s: out of memory for the merges", label);
  for (size_t i = 0; i < cap; i++) m->slot[i].key = UINT64_MAX;
  m->mask = cap - 1;
  size_t plen = b->prefix ? strlen(b->prefix) : 0;
  tk_buf joined = {0};
  lb_status st = LB_OK;
  for (size_t i = 0; i < n && st == LB_OK; i++) {
    const json_t *e = json_array_get(merges, i);
    const char *l, *r;
    size_t ll, rl;
    if (json_is_string(e)) { /* "a b": exactly one space */
      l = json_string_value(e);
      const char *sp = strchr(l, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        st = lb_fail(err, LB_EFORMAT, "%s: model.merges[%zu]: '%.100s' is not two tokens "
                     "separated by one space", label, i, l);
        break;
      }
      ll = (size_t)(sp - l), r = sp + 1, rl = strlen(r);
    } else if (json_is_array(e) && json_array_size(e) == 2 &&
               json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
      l = json_string_value(json_array_get(e, 0)), ll = json_string_length(json_array_get(e, 0));
      r = json_string_value(json_array_get(e, 1)), rl = json_string_length(json_array_get(e, 1));
    } else {
      st = lb_fail(err, LB_EFORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"], "
                   "got %s", label, i, lb_json_type_name(e));
      break;
    }
    int32_t a = tk_bpe_id(b, l, ll), c = tk_bpe_id(b, r, rl);
    if (a < 0 || c < 0) {
      st = lb_fail(err, LB_EFORMAT, "%s: model.merges[%zu]: '%.*s' is not in model.vocab", label,
                   i, (int)(a < 0 ? ll : rl), a < 0 ? l : r);
      break;
    }
    if (rl < plen) {
      st = lb_fail(err, LB_EFORMAT, "%s: model.merges[%zu]: '%.*s' is shorter than "
                   "continuing_subword_prefix", label, i, (int)rl, r);
      break;
    }
    joined.len = 0;
    st = tk_buf_add(&joined, l, ll, err);
    if (st == LB_OK) st = tk_buf_add(&joined, r + plen, rl - plen, err);
    if (st != LB_OK) break;
    int32_t id = tk_bpe_id(b, joined.p, joined.len);
    if (id < 0) {
      st = lb_fail(err, LB_EFORMAT, "%s: model.merges[%zu]: the merged token '%.*s' is not in "
                   "model.vocab", label, i, (int)joined.len, joined.p);
      break;
    }
    merge_put(m, a, c, (uint32_t)i, id);
  }
  tk_buf_free(&joined);
  return st;
}

static size_t pair_hash(uint64_t k) { return (size_t)((k * 0xD6E8FEB86659FD93ull) >> 20); }

static bool pair_has(const tk_bpe *b, uint32_t x, uint32_t y) {
  uint64_t k = (uint64_t)x << 32 | y;
  for (size_t i = pair_hash(k) & b->pairs_mask;; i = (i + 1) & b->pairs_mask) {
    if (b->pairs[i] == k) return true;
    if (b->pairs[i] == UINT64_MAX) return false;
  }
}

static lb_status pairs_grow(tk_bpe *b, size_t cap, lb_error *err) {
  uint64_t *old = b->pairs, *p = malloc(cap * sizeof *p);
  size_t old_cap = old ? b->pairs_mask + 1 : 0;
  if (!p) return lb_fail(err, LB_ENOMEM, "out of memory (token pairs)");
  memset(p, 0xFF, cap * sizeof *p);
  b->pairs = p;
  b->pairs_mask = cap - 1;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i] == UINT64_MAX) continue;
    size_t h = pair_hash(old[i]) & b->pairs_mask;
    while (p[h] != UINT64_MAX) h = (h + 1) & b->pairs_mask;
    p[h] = old[i];
  }
  free(old);
  return LB_OK;
}

/* The adjacent character pairs of all tokens (see the top of the file). */
static lb_status build_pairs(tk_bpe *b, lb_error *err) {
  size_t n = 0;
  LB_TRY(pairs_grow(b, 4096, err));
  for (int32_t id = 0; id < b->n_ids; id++) {
    const char *s = b->piece[id];
    size_t len = b->piece_len[id];
    if (!s || !len) continue;
    uint32_t prev, cp;
    for (size_t i = tk_utf8_next(s, len, &prev); i < len; prev = cp) {
      i += tk_utf8_next(s + i, len - i, &cp);
      uint64_t k = (uint64_t)prev << 32 | cp;
      size_t h = pair_hash(k) & b->pairs_mask;
      while (b->pairs[h] != UINT64_MAX && b->pairs[h] != k) h = (h + 1) & b->pairs_mask;
      if (b->pairs[h] == k) continue;
      b->pairs[h] = k;
      if (++n * 2 > b->pairs_mask) LB_TRY(pairs_grow(b, 2 * (b->pairs_mask + 1), err));
    }
  }
  return LB_OK;
}

static lb_status opt_string(const json_t *model, const char *key, const char *label, char **out,
                            lb_error *err) {
  const json_t *v = json_object_get(model, key);
  *out = NULL;
  if (!v || json_is_null(v)) return LB_OK;
  if (!json_is_string(v))
    return lb_fail(err, LB_EFORMAT, "%s: model.%s: expected a string or null, got %s", label, key,
                   lb_json_type_name(v));
  *out = strdup(json_string_value(v));
  return *out ? LB_OK : lb_fail(err, LB_ENOMEM, "out of memory");
}

lb_status tk_bpe_parse(const json_t *model, const char *label, tk_bpe *b, lb_error *err) {
  *b = (tk_bpe){.unk = -1};
  if (!json_is_object(model))
    return lb_fail(err, LB_EFORMAT, "%s: model: expected an object, got %s", label,
                   model ? lb_json_type_name(model) : "nothing");
  const json_t *type = json_object_get(model, "type");
  if (type && !json_is_string(type))
    return lb_fail(err, LB_EFORMAT, "%s: model.type: expected a string", label);
  if (type ? strcmp(json_string_value(type), "BPE") != 0 : !json_object_get(model, "merges"))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: model.type: '%s' is not supported (only BPE)",
                   label, type ? json_string_value(type) : "(none)");
  const json_t *dropout = json_object_get(model, "dropout");
  if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
    return lb_fail(err, LB_EUNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", label);
  char lab[300];
  snprintf(lab, sizeof lab, "%.250s: model", label);
  lb_status s = LB_OK;
  char *unk = NULL;
  if ((s = lb_json_bool(model, "fuse_unk", lab, false, false, &b->fuse_unk, err)) ||
      (s = lb_json_bool(model, "byte_fallback", lab, false, false, &b->byte_fallback, err)) ||
      (s = lb_json_bool(model, "ignore_merges", lab, false, false, &b->ignore_merges, err)) ||
      (s = opt_string(model, "continuing_subword_prefix", label, &b->prefix, err)) ||
      (s = opt_string(model, "end_of_word_suffix", label, &b->suffix, err)) ||
      (s = opt_string(model, "unk_token", label, &unk, err)) ||
      (s = parse_vocab(json_object_get(model, "vocab"), label, b, err)) ||
      (s = parse_merges(json_object_get(model, "merges"), label, b, err))) {
    free(unk);
    tk_bpe_free(b);
    return s;
  }
  if (unk) { /* a missing unk token only fails when it is needed, as in tokenizers */
    b->unk = tk_bpe_id(b, unk, strlen(unk));
    if (b->unk < 0) b->unk = -2;
    free(unk);
  }
  if ((!b->prefix || !*b->prefix) && (!b->suffix || !*b->suffix)) {
    lb_status ps = build_pairs(b, err);
    if (ps != LB_OK) return tk_bpe_free(b), ps;
  }
  for (int i = 0; i < 256; i++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", i);
    b->byte_id[i] = tk_bpe_id(b, name, 6);
  }
  return LB_OK;
}

void tk_bpe_free(tk_bpe *b) {
  free(b->piece);
  free(b->piece_len);
  free(b->arena);
  free(b->map.slot);
  free(b->merges.slot);
  free(b->pairs);
  free(b->prefix);
  free(b->suffix);
  *b = (tk_bpe){.unk = -1};
}

/* ---- encoding ----------------------------------------------------------------------------------- */

typedef struct {
  int32_t c, prev, next;
  uint32_t len; /* bytes; 0 once merged into the symbol on its left */
} sym;

#define CACHE_WORD_MAX 128
#define CACHE_MAX_ENTRIES (1u << 16)

typedef struct {
  uint64_t h;
  uint32_t koff, klen, ioff, n;
} cache_ent;

struct tk_bpe_ctx {
  sym *sym;
  size_t sym_cap;
  uint64_t *heap; /* rank << 32 | position: the smallest pops first */
  size_t heap_n, heap_cap;
  tk_buf tmp;
  uint32_t *slot; /* cache: entry index + 1, 0 = empty */
  size_t mask;
  cache_ent *ent;
  size_t n_ent;
  tk_buf keys;
  tk_ids ids;
};

lb_status tk_bpe_ctx_new(tk_bpe_ctx **out, lb_error *err) {
  *out = calloc(1, sizeof **out);
  return *out ? LB_OK : lb_fail(err, LB_ENOMEM, "out of memory");
}

void tk_bpe_ctx_free(tk_bpe_ctx *c) {
  if (!c) return;
  free(c->sym);
  free(c->heap);
  tk_buf_free(&c->tmp);
  free(c->slot);
  free(c->ent);
  tk_buf_free(&c->keys);
  free(c->ids.p);
  free(c);
}

static lb_status heap_reserve(tk_bpe_ctx *c, size_t n, lb_error *err) {
  if (n <= c->heap_cap) return LB_OK;
  size_t cap = c->heap_cap ? c->heap_cap : 256;
  while (cap < n) cap *= 2;
  uint64_t *h = realloc(c->heap, cap * sizeof *h);
  if (!h) return lb_fail(err, LB_ENOMEM, "out of memory (BPE merge queue)");
  c->heap = h, c->heap_cap = cap;
  return LB_OK;
}

static void sift_down(uint64_t *h, size_t n, size_t i, uint64_t v) {
  for (;;) {
    size_t k = 2 * i + 1;
    if (k >= n) break;
    if (k + 1 < n && h[k + 1] < h[k]) k++;
    if (h[k] >= v) break;
    h[i] = h[k], i = k;
  }
  h[i] = v;
}

static lb_status heap_push(tk_bpe_ctx *c, uint64_t key, lb_error *err) {
  LB_TRY(heap_reserve(c, c->heap_n + 1, err));
  size_t i = c->heap_n++;
  while (i && c->heap[(i - 1) / 2] > key) c->heap[i] = c->heap[(i - 1) / 2], i = (i - 1) / 2;
  c->heap[i] = key;
  return LB_OK;
}

static uint64_t heap_pop(tk_bpe_ctx *c) {
  uint64_t top = c->heap[0], last = c->heap[--c->heap_n];
  if (c->heap_n) sift_down(c->heap, c->heap_n, 0, last);
  return top;
}

static lb_status add_sym(tk_bpe_ctx *c, size_t *n, int32_t id, size_t len, lb_error *err) {
  if (*n == c->sym_cap) {
    size_t cap = c->sym_cap ? c->sym_cap * 2 : 256;
    sym *s = realloc(c->sym, cap * sizeof *s);
    if (!s) return lb_fail(err, LB_ENOMEM, "out of memory (BPE symbols)");
    c->sym = s, c->sym_cap = cap;
  }
  if (*n) c->sym[*n - 1].next = (int32_t)*n;
  c->sym[*n] = (sym){id, (int32_t)*n - 1, -1, (uint32_t)len};
  (*n)++;
  return LB_OK;
}

/* BPE::merge_word: the initial symbols of a word. */
static lb_status initial_symbols(const tk_bpe *b, tk_bpe_ctx *c, const char *w, size_t len,
                                 size_t *n, lb_error *err) {
  *n = 0;
  int32_t unk_id = -1;
  size_t unk_len = 0;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t k = tk_utf8_next(w + i, len - i, &cp);
    const char *s = w + i;
    size_t sl = k;
    if ((i > 0 && b->prefix && *b->prefix) || (i + k == len && b->suffix && *b->suffix)) {
      c->tmp.len = 0;
      if (i > 0 && b->prefix) LB_TRY(tk_buf_add(&c->tmp, b->prefix, strlen(b->prefix), err));
      LB_TRY(tk_buf_add(&c->tmp, s, k, err));
      if (i + k == len && b->suffix) LB_TRY(tk_buf_add(&c->tmp, b->suffix, strlen(b->suffix), err));
      s = c->tmp.p, sl = c->tmp.len;
    }
    int32_t id = tk_bpe_id(b, s, sl);
    i += k;
    if (id >= 0) {
      if (unk_id >= 0) LB_TRY(add_sym(c, n, unk_id, unk_len, err));
      unk_id = -1;
      LB_TRY(add_sym(c, n, id, k, err));
      continue;
    }
    if (b->byte_fallback) {
      bool all = true;
      for (size_t j = 0; j < sl && all; j++) all = b->byte_id[(unsigned char)s[j]] >= 0;
      if (all) { /* (a pending unk is added after these, as in tokenizers) */
        for (size_t j = 0; j < sl; j++) LB_TRY(add_sym(c, n, b->byte_id[(unsigned char)s[j]], 1, err));
        continue;
      }
    }
    if (b->unk == -1) continue; /* no unk token: the character is dropped */
    if (b->unk == -2)
      return lb_fail(err, LB_EFORMAT, "model.unk_token is not in model.vocab (needed for U+%04X)",
                     cp);
    if (unk_id >= 0 && b->fuse_unk) {
      unk_len += k;
    } else {
      if (unk_id >= 0) LB_TRY(add_sym(c, n, unk_id, unk_len, err));
      unk_id = b->unk, unk_len = k;
    }
  }
  if (unk_id >= 0) LB_TRY(add_sym(c, n, unk_id, unk_len, err));
  return LB_OK;
}

/* Word::merge_all. An entry is stale when the pair now at its position has another rank; ranks
 * name merges one to one, so this is tokenizers' check that the pair still gives the same id. */
static lb_status merge_all(const tk_bpe *b, tk_bpe_ctx *c, size_t n, lb_error *err) {
  sym *s = c->sym;
  uint32_t rank;
  int32_t id;
  LB_TRY(heap_reserve(c, n, err));
  c->heap_n = 0;
  for (size_t i = 0; i + 1 < n; i++) /* in position order, then heapified in O(n) */
    if (merge_get(&b->merges, s[i].c, s[i + 1].c, &rank, &id))
      c->heap[c->heap_n++] = (uint64_t)rank << 32 | i;
  for (size_t i = c->heap_n / 2; i-- > 0;) sift_down(c->heap, c->heap_n, i, c->heap[i]);
  while (c->heap_n) {
    uint64_t top = heap_pop(c);
    size_t pos = (size_t)(top & 0xFFFFFFFFu);
    if (s[pos].len == 0 || s[pos].next == -1) continue;
    size_t nx = (size_t)s[pos].next;
    if (!merge_get(&b->merges, s[pos].c, s[nx].c, &rank, &id) || rank != (uint32_t)(top >> 32))
      continue;
    s[pos].c = id; /* merge the right symbol into this one */
    s[pos].len += s[nx].len;
    s[pos].next = s[nx].next;
    s[nx].len = 0;
    if (s[nx].next >= 0) s[s[nx].next].prev = (int32_t)pos;
    if (s[pos].prev >= 0) {
      size_t pv = (size_t)s[pos].prev;
      if (merge_get(&b->merges, s[pv].c, s[pos].c, &rank, &id))
        LB_TRY(heap_push(c, (uint64_t)rank << 32 | pv, err));
    }
    if (s[pos].next >= 0 && merge_get(&b->merges, s[pos].c, s[s[pos].next].c, &rank, &id))
      LB_TRY(heap_push(c, (uint64_t)rank << 32 | pos, err));
  }
  return LB_OK;
}

static lb_status cache_put(tk_bpe_ctx *c, uint64_t h, const char *w, size_t len,
                           const int32_t *ids, size_t n, lb_error *err) {
  if (c->n_ent >= CACHE_MAX_ENTRIES) return LB_OK;
  if (!c->slot) {
    c->mask = 2 * CACHE_MAX_ENTRIES - 1;
    c->slot = calloc(c->mask + 1, sizeof *c->slot);
    c->ent = malloc(CACHE_MAX_ENTRIES * sizeof *c->ent);
    if (!c->slot || !c->ent) return lb_fail(err, LB_ENOMEM, "out of memory (BPE cache)");
  }
  cache_ent e = {h, (uint32_t)c->keys.len, (uint32_t)len, (uint32_t)c->ids.n, (uint32_t)n};
  if (c->keys.len > UINT32_MAX / 2 || c->ids.n > UINT32_MAX / 2) return LB_OK;
  LB_TRY(tk_buf_add(&c->keys, w, len, err));
  for (size_t i = 0; i < n; i++) LB_TRY(tk_ids_push(&c->ids, ids[i], err));
  size_t i = h & c->mask;
  while (c->slot[i]) i = (i + 1) & c->mask;
  c->ent[c->n_ent++] = e;
  c->slot[i] = (uint32_t)c->n_ent;
  return LB_OK;
}

/* One word (or part of a word) through the cache and merge_all. */
static lb_status merge_word(const tk_bpe *b, tk_bpe_ctx *c, const char *w, size_t len,
                            tk_ids *out, lb_error *err) {
  uint64_t h = 0;
  if (len <= CACHE_WORD_MAX) {
    h = tk_hash(w, len);
    for (size_t i = h & c->mask; c->slot && c->slot[i]; i = (i + 1) & c->mask) {
      const cache_ent *e = &c->ent[c->slot[i] - 1];
      if (e->h == h && e->klen == len && !memcmp(c->keys.p + e->koff, w, len)) {
        for (uint32_t k = 0; k < e->n; k++) LB_TRY(tk_ids_push(out, c->ids.p[e->ioff + k], err));
        return LB_OK;
      }
    }
  }
  size_t n;
  LB_TRY(initial_symbols(b, c, w, len, &n, err));
  LB_TRY(merge_all(b, c, n, err));
  size_t first = out->n;
  for (size_t i = 0; i < n; i++)
    if (c->sym[i].len) LB_TRY(tk_ids_push(out, c->sym[i].c, err));
  if (len <= CACHE_WORD_MAX) LB_TRY(cache_put(c, h, w, len, out->p + first, out->n - first, err));
  return LB_OK;
}

#define CHUNK_MIN 64 /* words longer than this are cut where no merge can cross */

lb_status tk_bpe_word(const tk_bpe *b, tk_bpe_ctx *c, const char *w, size_t len, tk_ids *out,
                      lb_error *err) {
  if (!len) return LB_OK;
  if (b->ignore_merges) {
    int32_t id = tk_bpe_id(b, w, len);
    if (id >= 0) return tk_ids_push(out, id, err);
  }
  if (len <= CHUNK_MIN || !b->pairs) return merge_word(b, c, w, len, out, err);
  size_t start = 0, i = 0;
  uint32_t prev = 0;
  bool prev_known = false;
  while (i < len) {
    uint32_t cp;
    size_t k = tk_utf8_next(w + i, len - i, &cp);
    /* a character without its own token (byte fallback, unk) may join its neighbours */
    bool known = tk_bpe_id(b, w + i, k) >= 0;
    if (i > start && prev_known && known && !pair_has(b, prev, cp)) {
      LB_TRY(merge_word(b, c, w + start, i - start, out, err));
      start = i;
    }
    prev = cp, prev_known = known;
    i += k;
  }
  return merge_word(b, c, w + start, len - start, out, err);
}
