/* Buffers, UTF-8 (validation, repair, helpers) and the normalizers of tokenizer.json.
 *
 * Unicode normalization follows `tokenizers`, which uses the crate unicode-normalization-alignments:
 * its tables are Unicode 9.0, older than utf8proc's. Characters assigned later are plain starters
 * there (no decomposition, combining class 0), so the few later characters that utf8proc gives a
 * decomposition or a combining class are patched below (tables found by probing every code point
 * with tokenizers 0.23.2; tests/py/tokenizer_ref.py checks them again). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- buffers ------------------------------------------------------------------------------------ */

lb_status tk_buf_reserve(tk_buf *b, size_t extra, lb_error *err) {
  if (extra <= b->cap - b->len) return LB_OK;
  if (extra > SIZE_MAX / 4 - b->len) return lb_fail(err, LB_ENOMEM, "text buffer too large");
  size_t cap = b->cap ? b->cap : 64;
  while (cap - b->len < extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) return lb_fail(err, LB_ENOMEM, "out of memory (%zu bytes of text)", cap);
  b->p = p;
  b->cap = cap;
  return LB_OK;
}

lb_status tk_buf_add(tk_buf *b, const void *s, size_t n, lb_error *err) {
  LB_TRY(tk_buf_reserve(b, n, err));
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  return LB_OK;
}

void tk_buf_free(tk_buf *b) {
  free(b->p);
  *b = (tk_buf){0};
}

lb_status tk_ids_push(tk_ids *v, int32_t id, lb_error *err) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 256;
    int32_t *p = cap < SIZE_MAX / 8 ? realloc(v->p, cap * sizeof *p) : NULL;
    if (!p) return lb_fail(err, LB_ENOMEM, "out of memory (%zu token ids)", cap);
    v->p = p;
    v->cap = cap;
  }
  v->p[v->n++] = id;
  return LB_OK;
}

lb_status tk_pieces_span(tk_pieces *p, size_t off, size_t len, lb_error *err) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 64;
    tk_span *s = cap < SIZE_MAX / 32 ? realloc(p->s, cap * sizeof *s) : NULL;
    if (!s) return lb_fail(err, LB_ENOMEM, "out of memory (%zu pieces)", cap);
    p->s = s;
    p->cap = cap;
  }
  p->s[p->n++] = (tk_span){off, len};
  return LB_OK;
}

lb_status tk_pieces_add(tk_pieces *p, const char *s, size_t len, lb_error *err) {
  size_t off = p->text.len;
  LB_TRY(tk_buf_add(&p->text, s, len, err));
  return tk_pieces_span(p, off, len, err);
}

void tk_pieces_clear(tk_pieces *p) {
  p->text.len = 0;
  p->n = 0;
}

void tk_pieces_free(tk_pieces *p) {
  tk_buf_free(&p->text);
  free(p->s);
  *p = (tk_pieces){0};
}

/* ---- UTF-8 -------------------------------------------------------------------------------------- */

size_t tk_utf8_next(const char *s, size_t len, uint32_t *cp) {
  const unsigned char *u = (const unsigned char *)s;
  size_t need = u[0] < 0xC0 ? 1 : u[0] < 0xE0 ? 2 : u[0] < 0xF0 ? 3 : 4;
  if (need > len) need = 1; /* (never for valid UTF-8; keeps a truncated tail in bounds) */
  if (need == 1) return *cp = u[0], 1;
  if (need == 2) return *cp = (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F), 2;
  if (need == 3)
    return *cp = (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F), 3;
  *cp = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
        (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
  return 4;
}

size_t tk_utf8_put(uint32_t cp, char *out) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) return o[0] = (unsigned char)cp, 1;
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | cp >> 12), o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | cp >> 18), o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)), o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The number of continuation bytes a lead byte needs and the range of the first one (Unicode
 * table 3-7); false for a byte that cannot start a sequence. */
static bool lead_info(unsigned c, size_t *need, unsigned *lo, unsigned *hi) {
  *lo = 0x80, *hi = 0xBF;
  if (c >= 0xC2 && c < 0xE0) return *need = 1, true;
  if (c >= 0xE0 && c < 0xF0) {
    *need = 2;
    if (c == 0xE0) *lo = 0xA0;
    if (c == 0xED) *hi = 0x9F; /* no surrogates */
    return true;
  }
  if (c >= 0xF0 && c < 0xF5) {
    *need = 3;
    if (c == 0xF0) *lo = 0x90;
    if (c == 0xF4) *hi = 0x8F; /* nothing past U+10FFFF */
    return true;
  }
  return false;
}

size_t tk_utf8_check(const unsigned char *s, size_t len, size_t *maximal) {
  if (s[0] < 0x80) return 1;
  size_t need;
  unsigned lo, hi;
  *maximal = 1;
  if (!lead_info(s[0], &need, &lo, &hi)) return 0;
  for (size_t i = 1; i <= need; i++) {
    if (i >= len || s[i] < lo || s[i] > hi) return *maximal = i, 0;
    lo = 0x80, hi = 0xBF;
  }
  return need + 1;
}

bool tk_utf8_incomplete_tail(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t k = 1; k <= 3 && k <= len; k++) {
    unsigned c = u[len - k];
    if (c >= 0x80 && c < 0xC0) continue; /* a continuation byte: look further back */
    size_t need;
    unsigned lo, hi;
    if (!lead_info(c, &need, &lo, &hi) || k > need) return false;
    for (size_t i = 1; i < k; i++) {
      if (u[len - k + i] < lo || u[len - k + i] > hi) return false;
      lo = 0x80, hi = 0xBF;
    }
    return true;
  }
  return false;
}

lb_status tk_utf8_lossy(const char *s, size_t len, tk_buf *out, lb_error *err) {
  const unsigned char *u = (const unsigned char *)s;
  LB_TRY(tk_buf_reserve(out, len, err));
  size_t i = 0;
  while (i < len) {
    size_t run = i;
    while (run < len && u[run] < 0x80) run++;
    LB_TRY(tk_buf_add(out, s + i, run - i, err));
    i = run;
    while (i < len && u[i] >= 0x80) {
      size_t maximal, n = tk_utf8_check(u + i, len - i, &maximal);
      if (n) {
        LB_TRY(tk_buf_add(out, s + i, n, err));
        i += n;
      } else {
        LB_TRY(tk_buf_add(out, "\xEF\xBF\xBD", 3, err));
        i += maximal;
      }
    }
  }
  return LB_OK;
}

bool tk_is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/* ---- Unicode normalization ---------------------------------------------------------------------- */

typedef struct {
  uint32_t lo, hi;
} cp_range;

/* Marks that utf8proc gives a combining class but tokenizers' Unicode 9.0 tables do not. */
static const cp_range CCC_ZERO[] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8D3},     {0x9FE, 0x9FE},
    {0xC3C, 0xC3C},     {0xD3B, 0xD3C},     {0xEBA, 0xEBA},     {0x1715, 0x1715},
    {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},   {0xA82C, 0xA82C},   {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50}, {0x10F82, 0x10F85},
    {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45},
    {0x11D97, 0x11D97}, {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};
/* Characters that utf8proc decomposes (canonically or for compatibility) but tokenizers does not. */
static const cp_range NO_DECOMP[] = {
    {0x32FF, 0x32FF},   {0xA7F2, 0xA7F4},   {0xAB69, 0xAB69},   {0x10781, 0x10785},
    {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x11938, 0x11938}, {0x1E030, 0x1E06D},
    {0x1F16C, 0x1F16C}, {0x1FBF0, 0x1FBF9},
};

static bool in_ranges(const cp_range *r, size_t n, uint32_t c) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (c < r[mid].lo) hi = mid;
    else if (c > r[mid].hi) lo = mid + 1;
    else return true;
  }
  return false;
}
#define IN(table, c) in_ranges(table, sizeof table / sizeof table[0], c)

static int ccc(uint32_t c) {
  if (c < 0x300) return 0;
  int k = utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
  return k && IN(CCC_ZERO, c) ? 0 : k;
}

/* The canonical composition of a starter and the next character, or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
  utf8proc_int32_t buf[2] = {(utf8proc_int32_t)a, (utf8proc_int32_t)b};
  if (utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE | UTF8PROC_STABLE) != 1) return 0;
  return IN(NO_DECOMP, (uint32_t)buf[0]) ? 0 : (uint32_t)buf[0];
}

typedef struct {
  uint32_t *p;
  size_t n, cap;
} cp_vec;

static lb_status cp_push(cp_vec *v, uint32_t c, lb_error *err) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    uint32_t *p = realloc(v->p, cap * sizeof *p);
    if (!p) return lb_fail(err, LB_ENOMEM, "out of memory normalizing text");
    v->p = p, v->cap = cap;
  }
  v->p[v->n++] = c;
  return LB_OK;
}

/* Normalizes one chunk (a character and the non-ASCII characters after it) into out. */
static lb_status normalize_chunk(const char *s, size_t len, bool compat, bool compose, cp_vec *v,
                                 tk_buf *out, lb_error *err) {
  v->n = 0;
  utf8proc_option_t opt = UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0);
  for (size_t i = 0; i < len;) {
    uint32_t c;
    i += tk_utf8_next(s + i, len - i, &c);
    utf8proc_int32_t d[32];
    int bound = 0;
    utf8proc_ssize_t nd = 1;
    if (c < 0x80 || IN(NO_DECOMP, c)) d[0] = (utf8proc_int32_t)c;
    else nd = utf8proc_decompose_char((utf8proc_int32_t)c, d, 32, opt, &bound);
    if (nd < 1 || nd > 32) d[0] = (utf8proc_int32_t)c, nd = 1;
    for (utf8proc_ssize_t k = 0; k < nd; k++) {
      LB_TRY(cp_push(v, (uint32_t)d[k], err));
      /* canonical ordering: a stable insertion of the new mark among the marks before it */
      int cc = ccc((uint32_t)d[k]);
      for (size_t j = v->n - 1; cc && j > 0 && ccc(v->p[j - 1]) > cc; j--) {
        uint32_t t = v->p[j];
        v->p[j] = v->p[j - 1], v->p[j - 1] = t;
      }
    }
  }
  size_t n = v->n;
  if (compose && n > 1) {
    size_t w = 1, starter = ccc(v->p[0]) == 0 ? 0 : SIZE_MAX;
    for (size_t r = 1; r < n; r++) {
      uint32_t c = v->p[r];
      int cc = ccc(c);
      if (starter != SIZE_MAX && c >= 0x300) {
        int last = w - 1 == starter ? -1 : ccc(v->p[w - 1]);
        if (last == -1 || (last != 0 && last < cc)) { /* not blocked */
          uint32_t k = compose_pair(v->p[starter], c);
          if (k) {
            v->p[starter] = k;
            continue;
          }
        }
      }
      if (cc == 0) starter = w;
      v->p[w++] = c;
    }
    n = w;
  }
  LB_TRY(tk_buf_reserve(out, n * 4, err));
  for (size_t i = 0; i < n; i++) out->len += tk_utf8_put(v->p[i], out->p + out->len);
  return LB_OK;
}

/* NFC/NFD/NFKC/NFKD. The text is cut before each ASCII character: ASCII characters have no
 * decomposition, combining class 0, and never compose with what precedes them, so no step of the
 * algorithm crosses such a cut, and lone ASCII characters are copied as they are. */
static lb_status unicode_normalize(const char *s, size_t len, bool compat, bool compose,
                                   tk_buf *out, lb_error *err) {
  cp_vec v = {0};
  lb_status st = LB_OK;
  for (size_t i = 0; i < len && st == LB_OK;) {
    size_t j = i + 1;
    while (j < len && (unsigned char)s[j] >= 0x80) j++;
    if (j == i + 1 && (unsigned char)s[i] < 0x80) st = tk_buf_add(out, s + i, 1, err);
    else st = normalize_chunk(s + i, j - i, compat, compose, &v, out, err);
    i = j;
  }
  free(v.p);
  return st;
}

/* ---- the normalizers ---------------------------------------------------------------------------- */

static lb_status add_step(tk_normalizer *n, tk_norm_step st, lb_error *err) {
  tk_norm_step *p = realloc(n->steps, (n->n + 1) * sizeof *p);
  if (!p) return lb_fail(err, LB_ENOMEM, "out of memory");
  n->steps = p;
  n->steps[n->n++] = st;
  return LB_OK;
}

static lb_status get_string(const json_t *j, const char *key, const char *label, char **out,
                            size_t *len, lb_error *err) {
  const json_t *v = json_object_get(j, key);
  if (!v) return lb_fail(err, LB_ENOTFOUND, "%s: required key '%s' is missing", label, key);
  if (!json_is_string(v))
    return lb_fail(err, LB_EINVAL, "%s.%s: expected a string, got %s", label, key,
                   lb_json_type_name(v));
  *len = json_string_length(v);
  *out = malloc(*len + 1);
  if (!*out) return lb_fail(err, LB_ENOMEM, "out of memory");
  memcpy(*out, json_string_value(v), *len + 1);
  return LB_OK;
}

static lb_status parse_one(const json_t *j, const char *label, int depth, tk_normalizer *n,
                           lb_error *err) {
  if (!json_is_object(j))
    return lb_fail(err, LB_EFORMAT, "%s: expected an object, got %s", label, lb_json_type_name(j));
  const char *type = json_string_value(json_object_get(j, "type"));
  if (!type) return lb_fail(err, LB_EFORMAT, "%s.type: missing or not a string", label);
  static const struct {
    const char *name;
    tk_norm_kind kind;
  } FORMS[] = {{"NFC", TK_NORM_NFC}, {"NFD", TK_NORM_NFD}, {"NFKC", TK_NORM_NFKC},
               {"NFKD", TK_NORM_NFKD}};
  for (size_t i = 0; i < 4; i++)
    if (!strcmp(type, FORMS[i].name)) return add_step(n, (tk_norm_step){.kind = FORMS[i].kind}, err);
  tk_norm_step st = {0};
  lb_status s;
  char sub[320];
  if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(j, "normalizers");
    if (!json_is_array(list))
      return lb_fail(err, LB_EFORMAT, "%s.normalizers: expected an array", label);
    if (depth > 8) return lb_fail(err, LB_EUNSUPPORTED, "%s: Sequence nested too deeply", label);
    for (size_t i = 0; i < json_array_size(list); i++) {
      snprintf(sub, sizeof sub, "%.280s.normalizers[%zu]", label, i);
      LB_TRY(parse_one(json_array_get(list, i), sub, depth + 1, n, err));
    }
    return LB_OK;
  } else if (!strcmp(type, "Prepend")) {
    st.kind = TK_NORM_PREPEND;
    s = get_string(j, "prepend", label, &st.str, &st.str_len, err);
  } else if (!strcmp(type, "Replace")) {
    st.kind = TK_NORM_REPLACE;
    snprintf(sub, sizeof sub, "%.300s.pattern", label);
    s = get_string(j, "content", label, &st.str, &st.str_len, err);
    if (s == LB_OK) s = tk_regex_parse(json_object_get(j, "pattern"), sub, &st.pattern, err);
  } else if (!strcmp(type, "Strip")) {
    st.kind = TK_NORM_STRIP;
    s = lb_json_bool(j, "strip_left", label, false, true, &st.left, err);
    if (s == LB_OK) s = lb_json_bool(j, "strip_right", label, false, true, &st.right, err);
  } else {
    return lb_fail(err, LB_EUNSUPPORTED, "%s.type: normalizer '%s' is not supported", label, type);
  }
  if (s == LB_OK) s = add_step(n, st, err);
  if (s != LB_OK) {
    free(st.str);
    tk_regex_free(&st.pattern);
  }
  return s;
}

lb_status tk_normalizer_parse(const json_t *j, const char *label, tk_normalizer *out,
                              lb_error *err) {
  *out = (tk_normalizer){0};
  if (!j || json_is_null(j)) return LB_OK;
  lb_status s = parse_one(j, label, 0, out, err);
  if (s != LB_OK) tk_normalizer_free(out);
  return s;
}

void tk_normalizer_free(tk_normalizer *n) {
  for (size_t i = 0; i < n->n; i++) {
    free(n->steps[i].str);
    tk_regex_free(&n->steps[i].pattern);
  }
  free(n->steps);
  *n = (tk_normalizer){0};
}

static lb_status run_step(const tk_norm_step *st, tk_match_ctx *m, const char *s, size_t len,
                          tk_buf *out, lb_error *err) {
  switch (st->kind) {
  case TK_NORM_NFC: return unicode_normalize(s, len, false, true, out, err);
  case TK_NORM_NFD: return unicode_normalize(s, len, false, false, out, err);
  case TK_NORM_NFKC: return unicode_normalize(s, len, true, true, out, err);
  case TK_NORM_NFKD: return unicode_normalize(s, len, true, false, out, err);
  case TK_NORM_PREPEND: /* only a non-empty string gets the prefix */
    if (len) LB_TRY(tk_buf_add(out, st->str, st->str_len, err));
    return tk_buf_add(out, s, len, err);
  case TK_NORM_REPLACE: {
    tk_offsets mt = {0};
    lb_status r = tk_regex_find_all(&st->pattern, m, s, len, &mt, err);
    size_t prev = 0;
    for (size_t i = 0; r == LB_OK && i < mt.n; i += 2) {
      r = tk_buf_add(out, s + prev, mt.p[i] - prev, err);
      if (r == LB_OK) r = tk_buf_add(out, st->str, st->str_len, err);
      prev = mt.p[i + 1];
    }
    if (r == LB_OK) r = tk_buf_add(out, s + prev, len - prev, err);
    free(mt.p);
    return r;
  }
  case TK_NORM_STRIP: {
    size_t a = 0, b = len;
    uint32_t c;
    while (st->left && a < b) {
      size_t k = tk_utf8_next(s + a, b - a, &c);
      if (!tk_is_white_space(c)) break;
      a += k;
    }
    while (st->right && b > a) {
      size_t k = 1;
      while (k < b - a && ((unsigned char)s[b - k] & 0xC0) == 0x80) k++;
      tk_utf8_next(s + b - k, k, &c);
      if (!tk_is_white_space(c)) break;
      b -= k;
    }
    return tk_buf_add(out, s + a, b - a, err);
  }
  }
  return lb_fail(err, LB_EINVAL, "normalizer: bad step");
}

lb_status tk_normalize(const tk_normalizer *n, tk_match_ctx *m, const char *s, size_t len,
                       tk_buf *out, lb_error *err) {
  out->len = 0;
  if (!n->n) return tk_buf_add(out, s, len, err);
  tk_buf tmp = {0};
  lb_status st = tk_buf_add(&tmp, s, len, err);
  for (size_t i = 0; i < n->n && st == LB_OK; i++) {
    out->len = 0;
    st = run_step(&n->steps[i], m, tmp.p, tmp.len, out, err);
    if (st == LB_OK && i + 1 < n->n) {
      tk_buf t = tmp;
      tmp = *out;
      *out = t;
    }
  }
  tk_buf_free(&tmp);
  return st;
}
