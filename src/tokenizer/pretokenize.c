/* Regexes and pre-tokenizers: Split, ByteLevel, Metaspace, Sequence.
 *
 * `tokenizers` runs its regexes with Oniguruma (Unicode 16.0 tables); lowbit uses PCRE2 (UTF+UCP).
 * Their classes differ on a few code points, so patterns are rewritten at load time:
 *   \s     Oniguruma: White_Space (25 code points). PCRE2 also counts U+180E: spelled out.
 *   \S     the complement: PCRE2's \S plus U+180E.
 *   \p{L}, \p{N}   PCRE2 10.42 has Unicode 14.0 tables: the letters and numbers added in Unicode
 *          15.0-16.0 are appended (a union, so a newer PCRE2 changes nothing). \pL without braces
 *          is the letter "p" then "L" in Ruby syntax.
 *   \h, \H Oniguruma (Ruby syntax): hexadecimal digit; PCRE2: horizontal space. Spelled out.
 *   ^ $    line anchors in Ruby syntax: PCRE2_MULTILINE.
 *   (?m)   Ruby's "dot matches newline" is PCRE2's (?s): option letters are translated.
 *   \w \W \b \B   Oniguruma's Unicode word class (Alphabetic, marks, Nd, Pc) is not PCRE2's:
 *          refused (LB_EUNSUPPORTED) rather than approximated.
 * tests/py/tokenizer_ref.py checks every code point against tokenizers. */
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

static const char SPACE_SET[] =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";
static const char EXTRA_L[] =
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}"
    "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}"
    "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}"
    "\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"
    "\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D40}-\\x{16D6C}"
    "\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}"
    "\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";
static const char EXTRA_N[] =
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}"
    "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}"
    "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}";

/* The GPT-2 pattern of ByteLevel(use_regex: true). */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Appends a class body: inside a class as is, outside wrapped in [ ] (or [^ ] when negated). */
static lb_status put_class(tk_buf *o, bool in_class, bool negate, const char *a, const char *b,
                           lb_error *err) {
  if (!in_class) LB_TRY(tk_buf_add(o, negate ? "[^" : "[", negate ? 2 : 1, err));
  LB_TRY(tk_buf_add(o, a, strlen(a), err));
  LB_TRY(tk_buf_add(o, b, strlen(b), err));
  if (!in_class) LB_TRY(tk_buf_add(o, "]", 1, err));
  return LB_OK;
}

/* Rewrites an Oniguruma pattern into PCRE2 syntax with Oniguruma's classes (see the top). */
static lb_status rewrite(const char *p, size_t n, const char *label, tk_buf *o, lb_error *err) {
  bool in_class = false;
  for (size_t i = 0; i < n;) {
    char c = p[i];
    if (!in_class && c == '(' && i + 2 < n && p[i + 1] == '?') { /* an option group (?imx-imx) */
      size_t j = i + 2;
      while (j < n && strchr("imx-", p[j])) j++;
      if (j > i + 2 && j < n && (p[j] == ')' || p[j] == ':')) {
        for (size_t k = i; k <= j; k++) LB_TRY(tk_buf_add(o, p[k] == 'm' ? "s" : p + k, 1, err));
        i = j + 1;
        continue;
      }
    }
    if (c == '\\' && i + 1 < n) {
      char e = p[i + 1];
      if (strchr("wWbB", e))
        return lb_fail(err, LB_EUNSUPPORTED, "%s: \\%c is not supported (Oniguruma's Unicode word "
                       "class differs from PCRE2's)", label, e);
      if (e == 's' || e == 'h') {
        LB_TRY(put_class(o, in_class, false, e == 's' ? SPACE_SET : "0-9a-fA-F", "", err));
        i += 2;
        continue;
      }
      if (e == 'S' && !in_class) {
        LB_TRY(tk_buf_add(o, "[\\S\\x{180E}]", 12, err));
        i += 2;
        continue;
      }
      if (e == 'S') {
        LB_TRY(tk_buf_add(o, "\\S\\x{180E}", 10, err));
        i += 2;
        continue;
      }
      if (e == 'H') {
        if (in_class)
          return lb_fail(err, LB_EUNSUPPORTED, "%s: \\H inside a character class", label);
        LB_TRY(tk_buf_add(o, "[^0-9a-fA-F]", 12, err));
        i += 2;
        continue;
      }
      if ((e == 'p' || e == 'P') && (i + 2 >= n || p[i + 2] != '{')) { /* Ruby: a plain letter */
        LB_TRY(tk_buf_add(o, &e, 1, err));
        i += 2;
        continue;
      }
      if (e == 'p' || e == 'P') {
        size_t j = i + 3;
        const char *name = p + j;
        while (j < n && p[j] != '}') j++;
        size_t nlen = (size_t)(p + j - name);
        bool neg = e == 'P';
        const char *extra = NULL;
        if (nlen == 1 && (*name == 'L' || *name == 'N')) extra = *name == 'L' ? EXTRA_L : EXTRA_N;
        if ((nlen == 6 && !strncmp(name, "Letter", 6))) extra = EXTRA_L;
        if (extra && j < n) {
          if (neg && in_class)
            return lb_fail(err, LB_EUNSUPPORTED, "%s: \\P{%.*s} inside a character class", label,
                           (int)nlen, name);
          char base[8];
          snprintf(base, sizeof base, "\\p{%c}", extra == EXTRA_L ? 'L' : 'N');
          LB_TRY(put_class(o, in_class, neg, base, extra, err));
          i = j + 1;
          continue;
        }
      }
      /* any other escape: copy the backslash and the whole character after it */
      size_t k = 2;
      while (i + k < n && ((unsigned char)p[i + k] & 0xC0) == 0x80) k++;
      LB_TRY(tk_buf_add(o, p + i, k, err));
      i += k;
      continue;
    }
    if (in_class && c == '[') {
      if (i + 1 < n && p[i + 1] == ':') { /* POSIX bracket [:alpha:] */
        const char *end = strstr(p + i, ":]");
        if (!end || (size_t)(end - p) >= n)
          return lb_fail(err, LB_EFORMAT, "%s: unterminated [: in a character class", label);
        LB_TRY(tk_buf_add(o, p + i, (size_t)(end - p) + 2 - i, err));
        i = (size_t)(end - p) + 2;
        continue;
      }
      return lb_fail(err, LB_EUNSUPPORTED, "%s: nested character classes are not supported",
                     label);
    }
    if (in_class && c == '&' && i + 1 < n && p[i + 1] == '&')
      return lb_fail(err, LB_EUNSUPPORTED, "%s: class intersection '&&' is not supported", label);
    if (!in_class && c == '[') {
      in_class = true;
      LB_TRY(tk_buf_add(o, "[", 1, err));
      i++;
      if (i < n && p[i] == '^') {
        LB_TRY(tk_buf_add(o, "^", 1, err));
        i++;
      }
      if (i < n && p[i] == ']') { /* a literal ] */
        LB_TRY(tk_buf_add(o, "]", 1, err));
        i++;
      }
      continue;
    }
    if (in_class && c == ']') in_class = false;
    LB_TRY(tk_buf_add(o, &c, 1, err));
    i++;
  }
  return LB_OK;
}

static lb_status compile(const char *pat, size_t n, const char *label, tk_regex *out,
                         lb_error *err) {
  tk_buf o = {0};
  lb_status s = rewrite(pat, n, label, &o, err);
  if (s != LB_OK) return tk_buf_free(&o), s;
  int code;
  PCRE2_SIZE off;
  out->re = pcre2_compile((PCRE2_SPTR)o.p, o.len,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_ALT_CIRCUMFLEX, &code, &off,
                          NULL);
  tk_buf_free(&o);
  if (!out->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(code, msg, sizeof msg);
    return lb_fail(err, LB_EFORMAT, "%s: bad regex '%.200s': %s", label, pat, (char *)msg);
  }
  pcre2_jit_compile(out->re, PCRE2_JIT_COMPLETE); /* the interpreter runs it otherwise */
  return LB_OK;
}

lb_status tk_regex_parse(const json_t *pattern, const char *label, tk_regex *out, lb_error *err) {
  *out = (tk_regex){0};
  if (!json_is_object(pattern) || json_object_size(pattern) != 1)
    return lb_fail(err, LB_EFORMAT, "%s: expected {\"String\": ...} or {\"Regex\": ...}", label);
  const json_t *v = json_object_get(pattern, "String");
  bool is_re = !v;
  if (is_re) v = json_object_get(pattern, "Regex");
  if (!json_is_string(v))
    return lb_fail(err, LB_EFORMAT, "%s: expected {\"String\": ...} or {\"Regex\": ...}", label);
  if (is_re) return compile(json_string_value(v), json_string_length(v), label, out, err);
  out->lit_len = json_string_length(v);
  out->lit = malloc(out->lit_len + 1);
  if (!out->lit) return lb_fail(err, LB_ENOMEM, "out of memory");
  memcpy(out->lit, json_string_value(v), out->lit_len + 1);
  return LB_OK;
}

void tk_regex_free(tk_regex *r) {
  if (r->re) pcre2_code_free(r->re);
  free(r->lit);
  *r = (tk_regex){0};
}

void tk_match_ctx_free(tk_match_ctx *m) {
  if (m->md) pcre2_match_data_free(m->md);
  if (m->mctx) pcre2_match_context_free(m->mctx);
  if (m->jit) pcre2_jit_stack_free(m->jit);
  *m = (tk_match_ctx){0};
}

static lb_status push_match(tk_offsets *o, size_t a, size_t b, lb_error *err) {
  if (o->n + 2 > o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 64;
    size_t *p = realloc(o->p, cap * sizeof *p);
    if (!p) return lb_fail(err, LB_ENOMEM, "out of memory matching a regex");
    o->p = p, o->cap = cap;
  }
  o->p[o->n++] = a;
  o->p[o->n++] = b;
  return LB_OK;
}

lb_status tk_regex_find_all(const tk_regex *r, tk_match_ctx *m, const char *s, size_t len,
                            tk_offsets *out, lb_error *err) {
  out->n = 0;
  if (!r->re) {
    if (!r->lit_len) return LB_OK;
    for (size_t i = 0; i + r->lit_len <= len;) {
      const char *h = memchr(s + i, r->lit[0], len - i - r->lit_len + 1);
      if (!h) break;
      i = (size_t)(h - s);
      if (!memcmp(h, r->lit, r->lit_len)) {
        LB_TRY(push_match(out, i, i + r->lit_len, err));
        i += r->lit_len;
      } else {
        i++;
      }
    }
    return LB_OK;
  }
  if (!m->md) {
    m->md = pcre2_match_data_create(16, NULL);
    m->mctx = pcre2_match_context_create(NULL);
    m->jit = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
    if (!m->md || !m->mctx) return lb_fail(err, LB_ENOMEM, "out of memory (regex match data)");
    if (m->jit) pcre2_jit_stack_assign(m->mctx, NULL, m->jit);
  }
  size_t start = 0, last_end = SIZE_MAX;
  while (start <= len) {
    int rc = pcre2_match(r->re, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK, m->md, m->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return lb_fail(err, LB_EINVAL, "regex match failed at byte %zu: %s", start, (char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
    size_t a = ov[0], b = ov[1];
    if (a == b && b == last_end) { /* no empty match right after the previous match */
      if (start >= len) break;
      uint32_t c;
      start += tk_utf8_next(s + start, len - start, &c);
      continue;
    }
    LB_TRY(push_match(out, a, b, err));
    start = last_end = b;
  }
  return LB_OK;
}

/* ---- byte-level table --------------------------------------------------------------------------- */

uint32_t tk_byte_cp(uint8_t b) {
  /* printable Latin-1 bytes map to themselves; the 68 others to U+0100.. in byte order */
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
  if (b <= 0x20) return 0x100 + b;
  if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
  return 0x100 + 33 + 34; /* 0xAD */
}

int tk_cp_byte(uint32_t cp) {
  if (cp < 0x100) return tk_byte_cp((uint8_t)cp) == cp ? (int)cp : -1;
  if (cp < 0x100 + 33) return (int)(cp - 0x100);
  if (cp < 0x100 + 67) return (int)(cp - 0x100 - 33 + 0x7F);
  return cp == 0x100 + 67 ? 0xAD : -1;
}

/* ---- parsing ------------------------------------------------------------------------------------ */

static lb_status add_step(tk_pretok *p, tk_pre_step st, lb_error *err) {
  tk_pre_step *s = realloc(p->steps, (p->n + 1) * sizeof *s);
  if (!s) {
    tk_regex_free(&st.pattern);
    return lb_fail(err, LB_ENOMEM, "out of memory");
  }
  p->steps = s;
  p->steps[p->n++] = st;
  return LB_OK;
}

static lb_status parse_behavior(const json_t *j, const char *label, tk_split_behavior *out,
                                lb_error *err) {
  static const char *N[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                            "Contiguous"};
  const char *b = json_string_value(json_object_get(j, "behavior"));
  for (int i = 0; b && i < 5; i++)
    if (!strcmp(b, N[i])) return *out = (tk_split_behavior)i, LB_OK;
  return lb_fail(err, LB_EFORMAT, "%s.behavior: expected one of Removed, Isolated, "
                                  "MergedWithPrevious, MergedWithNext, Contiguous", label);
}

static lb_status parse_metaspace(const json_t *j, const char *label, tk_pre_step *st,
                                 lb_error *err) {
  const char *r = json_string_value(json_object_get(j, "replacement"));
  uint32_t cp;
  if (!r || !*r || tk_utf8_next(r, strlen(r), &cp) != strlen(r))
    return lb_fail(err, LB_EFORMAT, "%s.replacement: expected a one-character string", label);
  st->replacement = cp;
  LB_TRY(lb_json_bool(j, "split", label, false, true, &st->split, err));
  const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
  if (scheme) {
    if (!strcmp(scheme, "always")) st->prepend = TK_PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first")) st->prepend = TK_PREPEND_FIRST;
    else if (!strcmp(scheme, "never")) st->prepend = TK_PREPEND_NEVER;
    else return lb_fail(err, LB_EFORMAT, "%s.prepend_scheme: unknown value '%s'", label, scheme);
  } else { /* files before 0.19: add_prefix_space */
    bool add;
    LB_TRY(lb_json_bool(j, "add_prefix_space", label, false, true, &add, err));
    st->prepend = add ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
  }
  return LB_OK;
}

static lb_status parse_one(const json_t *j, const char *label, int depth, tk_pretok *p,
                           lb_error *err) {
  if (!json_is_object(j))
    return lb_fail(err, LB_EFORMAT, "%s: expected an object, got %s", label, lb_json_type_name(j));
  const char *type = json_string_value(json_object_get(j, "type"));
  if (!type) return lb_fail(err, LB_EFORMAT, "%s.type: missing or not a string", label);
  tk_pre_step st = {0};
  char sub[320];
  if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(j, "pretokenizers");
    if (!json_is_array(list))
      return lb_fail(err, LB_EFORMAT, "%s.pretokenizers: expected an array", label);
    if (depth > 8) return lb_fail(err, LB_EUNSUPPORTED, "%s: Sequence nested too deeply", label);
    for (size_t i = 0; i < json_array_size(list); i++) {
      snprintf(sub, sizeof sub, "%.280s.pretokenizers[%zu]", label, i);
      LB_TRY(parse_one(json_array_get(list, i), sub, depth + 1, p, err));
    }
    return LB_OK;
  }
  if (!strcmp(type, "Split")) {
    st.kind = TK_PRE_SPLIT;
    LB_TRY(parse_behavior(j, label, &st.behavior, err));
    LB_TRY(lb_json_bool(j, "invert", label, false, false, &st.invert, err));
    snprintf(sub, sizeof sub, "%.300s.pattern", label);
    LB_TRY(tk_regex_parse(json_object_get(j, "pattern"), sub, &st.pattern, err));
  } else if (!strcmp(type, "ByteLevel")) {
    st.kind = TK_PRE_BYTELEVEL;
    LB_TRY(lb_json_bool(j, "add_prefix_space", label, false, true, &st.add_prefix_space, err));
    LB_TRY(lb_json_bool(j, "use_regex", label, false, true, &st.use_regex, err));
    if (st.use_regex) LB_TRY(compile(GPT2_PATTERN, strlen(GPT2_PATTERN), label, &st.pattern, err));
  } else if (!strcmp(type, "Metaspace")) {
    st.kind = TK_PRE_METASPACE;
    LB_TRY(parse_metaspace(j, label, &st, err));
  } else {
    return lb_fail(err, LB_EUNSUPPORTED, "%s.type: pre-tokenizer '%s' is not supported", label,
                   type);
  }
  return add_step(p, st, err);
}

lb_status tk_pretok_parse(const json_t *j, const char *label, tk_pretok *out, lb_error *err) {
  *out = (tk_pretok){0};
  if (!j || json_is_null(j)) return LB_OK;
  lb_status s = parse_one(j, label, 0, out, err);
  if (s != LB_OK) tk_pretok_free(out);
  return s;
}

void tk_pretok_free(tk_pretok *p) {
  for (size_t i = 0; i < p->n; i++) tk_regex_free(&p->steps[i].pattern);
  free(p->steps);
  *p = (tk_pretok){0};
}

/* ---- running ------------------------------------------------------------------------------------ */

/* The splits of `s` by the matches of r, under a behavior of tokenizers' SplitDelimiterBehavior:
 * appended to out (non-empty pieces only). *at0 (optional) gets whether the first piece kept
 * starts at offset 0 of s. */
static lb_status split(const tk_regex *r, tk_split_behavior beh, bool invert, tk_match_ctx *m,
                       const char *s, size_t len, tk_pieces *out, tk_offsets *mt, bool *at0,
                       lb_error *err) {
  LB_TRY(tk_regex_find_all(r, m, s, len, mt, err));
  /* (start, end, is_match) segments covering s: at most one per match and one between */
  size_t nseg = 0, prev = 0;
  size_t *seg = malloc(3 * (mt->n + 1) * sizeof *seg);
  if (!seg) return lb_fail(err, LB_ENOMEM, "out of memory splitting text");
  for (size_t i = 0; i < mt->n; i += 2) {
    if (mt->p[i] > prev) seg[3 * nseg] = prev, seg[3 * nseg + 1] = mt->p[i], seg[3 * nseg++ + 2] = 0;
    seg[3 * nseg] = mt->p[i], seg[3 * nseg + 1] = mt->p[i + 1], seg[3 * nseg++ + 2] = 1;
    prev = mt->p[i + 1];
  }
  if (prev < len) seg[3 * nseg] = prev, seg[3 * nseg + 1] = len, seg[3 * nseg++ + 2] = 0;
  if (invert)
    for (size_t i = 0; i < nseg; i++) seg[3 * i + 2] ^= 1;
  /* merge according to the behavior, in place: pieces [a, b) at seg[3 * i] for i in [lo, hi) */
  size_t lo = 0, hi = 0;
  bool prev_match = false;
  if (beh == TK_SPLIT_MERGED_WITH_NEXT) { /* walk backwards as tokenizers does, writing downwards */
    lo = hi = nseg;
    for (size_t i = nseg; i-- > 0;) {
      bool is_match = seg[3 * i + 2];
      if (is_match && !prev_match && lo < hi) seg[3 * lo] = seg[3 * i];
      else lo--, seg[3 * lo] = seg[3 * i], seg[3 * lo + 1] = seg[3 * i + 1];
      prev_match = is_match;
    }
  } else {
    for (size_t i = 0; i < nseg; i++) {
      bool is_match = seg[3 * i + 2];
      bool merge = (beh == TK_SPLIT_MERGED_WITH_PREVIOUS && is_match && !prev_match) ||
                   (beh == TK_SPLIT_CONTIGUOUS && is_match == prev_match);
      if (beh == TK_SPLIT_REMOVED && is_match) {
        prev_match = is_match;
        continue;
      }
      if (merge && hi) seg[3 * (hi - 1) + 1] = seg[3 * i + 1];
      else seg[3 * hi] = seg[3 * i], seg[3 * hi + 1] = seg[3 * i + 1], hi++;
      prev_match = is_match;
    }
  }
  lb_status st = LB_OK;
  bool first = true;
  for (size_t i = lo; i < hi && st == LB_OK; i++)
    if (seg[3 * i + 1] > seg[3 * i]) {
      if (first && at0) *at0 = seg[3 * i] == 0;
      first = false;
      st = tk_pieces_add(out, s + seg[3 * i], seg[3 * i + 1] - seg[3 * i], err);
    }
  free(seg);
  return st;
}

static lb_status byte_map(const char *s, size_t len, tk_pieces *out, lb_error *err) {
  size_t off = out->text.len;
  LB_TRY(tk_buf_reserve(&out->text, 2 * len, err));
  for (size_t i = 0; i < len; i++)
    out->text.len += tk_utf8_put(tk_byte_cp((uint8_t)s[i]), out->text.p + out->text.len);
  return tk_pieces_span(out, off, out->text.len - off, err);
}

static lb_status metaspace(const tk_pre_step *st, const char *s, size_t len, bool origin,
                           tk_pieces *out, tk_match_ctx *m, tk_offsets *mt, lb_error *err) {
  char rep[4];
  size_t rl = tk_utf8_put(st->replacement, rep);
  tk_buf b = {0};
  bool pre = st->prepend == TK_PREPEND_ALWAYS || (st->prepend == TK_PREPEND_FIRST && origin);
  lb_status r = LB_OK;
  bool starts = (len && s[0] == ' ') || (len >= rl && !memcmp(s, rep, rl)); /* after the replace */
  if (pre && !starts) r = tk_buf_add(&b, rep, rl, err);
  for (size_t i = 0; i < len && r == LB_OK; i++)
    r = s[i] == ' ' ? tk_buf_add(&b, rep, rl, err) : tk_buf_add(&b, s + i, 1, err);
  if (r == LB_OK) {
    if (!st->split) r = b.len ? tk_pieces_add(out, b.p, b.len, err) : LB_OK;
    else {
      tk_regex lit = {.lit = rep, .lit_len = rl};
      r = split(&lit, TK_SPLIT_MERGED_WITH_NEXT, false, m, b.p, b.len, out, mt, NULL, err);
    }
  }
  tk_buf_free(&b);
  return r;
}

lb_status tk_pretokenize(const tk_pretok *p, tk_match_ctx *m, const char *s, size_t len,
                         bool first, tk_pieces *out, tk_pieces *tmp, lb_error *err) {
  tk_pieces_clear(out);
  if (!len) return LB_OK;
  LB_TRY(tk_pieces_add(out, s, len, err));
  tk_offsets mt = {0};
  lb_status r = LB_OK;
  bool origin = first; /* the first piece starts at offset 0 of the input */
  for (size_t k = 0; k < p->n && r == LB_OK; k++) {
    const tk_pre_step *st = &p->steps[k];
    tk_pieces_clear(tmp);
    for (size_t i = 0; i < out->n && r == LB_OK; i++) {
      const char *w = tk_piece_at(out, i);
      size_t wl = out->s[i].len;
      if (st->kind == TK_PRE_SPLIT) {
        bool at0 = false;
        r = split(&st->pattern, st->behavior, st->invert, m, w, wl, tmp, &mt, &at0, err);
        if (i == 0) origin = origin && at0;
      } else if (st->kind == TK_PRE_METASPACE) {
        r = metaspace(st, w, wl, origin && i == 0, tmp, m, &mt, err);
      } else { /* ByteLevel: optional prefix space, optional GPT-2 split, then the byte map */
        tk_buf pre = {0};
        if (st->add_prefix_space && w[0] != ' ') {
          r = tk_buf_add(&pre, " ", 1, err);
          if (r == LB_OK) r = tk_buf_add(&pre, w, wl, err);
          w = pre.p, wl = pre.len;
        }
        if (r == LB_OK && st->use_regex) {
          tk_pieces words = {0};
          r = split(&st->pattern, TK_SPLIT_ISOLATED, false, m, w, wl, &words, &mt, NULL, err);
          for (size_t j = 0; j < words.n && r == LB_OK; j++)
            r = byte_map(tk_piece_at(&words, j), words.s[j].len, tmp, err);
          tk_pieces_free(&words);
        } else if (r == LB_OK) {
          r = byte_map(w, wl, tmp, err);
        }
        tk_buf_free(&pre);
      }
    }
    tk_pieces t = *out;
    *out = *tmp;
    *tmp = t;
  }
  free(mt.p);
  return r;
}
