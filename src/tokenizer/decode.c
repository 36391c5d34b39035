/* Decoders of tokenizer.json (Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace)
 * as `tokenizers` chains them over the list of token strings, lb_detokenize, and the streaming
 * decoder.
 *
 * Streaming. The stream keeps the ids pushed since the last "cut" and decodes that window as a
 * continuation (`mid`: Strip/Metaspace rules for the start of the text no longer apply). A window
 * whose decoded end is final (no open byte-fallback run, no incomplete UTF-8 character from
 * ByteLevel, no stripped tail: `open` false) is emitted whole and the stream cuts after it. Every
 * decoder here then decodes the rest independently of what came before the cut, so the outputs
 * concatenate to exactly lb_detokenize of all the ids. The first cut waits for non-empty output, so
 * that a Strip of leading spaces has been spent. An open window is held back (it only grows while
 * a byte-fallback run or a UTF-8 character is unfinished). */
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

static lb_status add_step(tk_decoder *d, tk_dec_step st, lb_error *err) {
  tk_dec_step *p = realloc(d->steps, (d->n + 1) * sizeof *p);
  if (!p) {
    tk_regex_free(&st.pattern);
    free(st.content);
    return lb_fail(err, LB_ENOMEM, "out of memory");
  }
  d->steps = p;
  d->steps[d->n++] = st;
  return LB_OK;
}

static lb_status one_char(const json_t *j, const char *key, const char *label, uint32_t *cp,
                          lb_error *err) {
  const char *s = json_string_value(json_object_get(j, key));
  if (!s || !*s || tk_utf8_next(s, strlen(s), cp) != strlen(s))
    return lb_fail(err, LB_EFORMAT, "%s.%s: expected a one-character string", label, key);
  return LB_OK;
}

static lb_status parse_one(const json_t *j, const char *label, int depth, tk_decoder *d,
                           lb_error *err) {
  if (!json_is_object(j))
    return lb_fail(err, LB_EFORMAT, "%s: expected an object, got %s", label, lb_json_type_name(j));
  const char *type = json_string_value(json_object_get(j, "type"));
  if (!type) return lb_fail(err, LB_EFORMAT, "%s.type: missing or not a string", label);
  tk_dec_step st = {0};
  char sub[320];
  if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(j, "decoders");
    if (!json_is_array(list)) return lb_fail(err, LB_EFORMAT, "%s.decoders: expected an array", label);
    if (depth > 8) return lb_fail(err, LB_EUNSUPPORTED, "%s: Sequence nested too deeply", label);
    for (size_t i = 0; i < json_array_size(list); i++) {
      snprintf(sub, sizeof sub, "%.280s.decoders[%zu]", label, i);
      LB_TRY(parse_one(json_array_get(list, i), sub, depth + 1, d, err));
    }
    return LB_OK;
  }
  if (!strcmp(type, "Replace")) {
    st.kind = TK_DEC_REPLACE;
    const json_t *c = json_object_get(j, "content");
    if (!json_is_string(c)) return lb_fail(err, LB_EFORMAT, "%s.content: expected a string", label);
    snprintf(sub, sizeof sub, "%.300s.pattern", label);
    LB_TRY(tk_regex_parse(json_object_get(j, "pattern"), sub, &st.pattern, err));
    if (!st.pattern.re && !st.pattern.lit_len) {
      tk_regex_free(&st.pattern);
      return lb_fail(err, LB_EUNSUPPORTED, "%s.pattern: an empty pattern is not supported", label);
    }
    st.content_len = json_string_length(c);
    st.content = malloc(st.content_len + 1);
    if (!st.content) return tk_regex_free(&st.pattern), lb_fail(err, LB_ENOMEM, "out of memory");
    memcpy(st.content, json_string_value(c), st.content_len + 1);
  } else if (!strcmp(type, "ByteFallback")) {
    st.kind = TK_DEC_BYTE_FALLBACK;
  } else if (!strcmp(type, "Fuse")) {
    st.kind = TK_DEC_FUSE;
  } else if (!strcmp(type, "ByteLevel")) {
    st.kind = TK_DEC_BYTELEVEL;
  } else if (!strcmp(type, "Strip")) {
    st.kind = TK_DEC_STRIP;
    int64_t a, b;
    LB_TRY(one_char(j, "content", label, &st.ch, err));
    LB_TRY(lb_json_int(j, "start", label, true, 0, 0, 1 << 20, &a, err));
    LB_TRY(lb_json_int(j, "stop", label, true, 0, 0, 1 << 20, &b, err));
    st.start = (size_t)a, st.stop = (size_t)b;
  } else if (!strcmp(type, "Metaspace")) {
    st.kind = TK_DEC_METASPACE;
    LB_TRY(one_char(j, "replacement", label, &st.ch, err));
    const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
    bool add = true;
    if (!scheme) LB_TRY(lb_json_bool(j, "add_prefix_space", label, false, true, &add, err));
    st.prepend = (scheme ? strcmp(scheme, "never") != 0 : add) ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
  } else {
    return lb_fail(err, LB_EUNSUPPORTED, "%s.type: decoder '%s' is not supported", label, type);
  }
  return add_step(d, st, err);
}

lb_status tk_decoder_parse(const json_t *j, const char *label, tk_decoder *out, lb_error *err) {
  *out = (tk_decoder){0};
  if (!j || json_is_null(j)) return LB_OK;
  out->present = true;
  lb_status s = parse_one(j, label, 0, out, err);
  if (s != LB_OK) tk_decoder_free(out);
  return s;
}

void tk_decoder_free(tk_decoder *d) {
  for (size_t i = 0; i < d->n; i++) {
    tk_regex_free(&d->steps[i].pattern);
    free(d->steps[i].content);
  }
  free(d->steps);
  *d = (tk_decoder){0};
}

/* ---- the steps, each from list `in` to list `out` ----------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* "<0xXX>" -> the byte (u8::from_str_radix of the two characters, which accepts "+F"); else -1. */
static int byte_token(const char *s, size_t len) {
  if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
  int a = hexval(s[3]), b = hexval(s[4]);
  if (s[3] == '+' && b >= 0) return b;
  return a >= 0 && b >= 0 ? a * 16 + b : -1;
}

static lb_status byte_fallback(const tk_pieces *in, tk_pieces *out, bool *open, lb_error *err) {
  tk_buf run = {0};
  lb_status st = LB_OK;
  for (size_t i = 0; i <= in->n && st == LB_OK; i++) {
    const char *s = i < in->n ? tk_piece_at(in, i) : NULL;
    size_t len = i < in->n ? in->s[i].len : 0;
    int b = i < in->n ? byte_token(s, len) : -1;
    if (b >= 0) {
      char c = (char)b;
      st = tk_buf_add(&run, &c, 1, err);
      continue;
    }
    if (run.len) { /* a run of byte tokens: its text if valid UTF-8, else one U+FFFD per byte */
      size_t k = 0, maximal, step;
      while (k < run.len &&
             (step = tk_utf8_check((const unsigned char *)run.p + k, run.len - k, &maximal)))
        k += step;
      if (k == run.len) st = tk_pieces_add(out, run.p, run.len, err);
      else
        for (size_t j = 0; j < run.len && st == LB_OK; j++)
          st = tk_pieces_add(out, "\xEF\xBF\xBD", 3, err);
      run.len = 0;
    }
    if (i < in->n && st == LB_OK) st = tk_pieces_add(out, s, len, err);
  }
  if (in->n && byte_token(tk_piece_at(in, in->n - 1), in->s[in->n - 1].len) >= 0)
    *open = true; /* the run may go on */
  tk_buf_free(&run);
  return st;
}

static lb_status byte_level(const tk_pieces *in, tk_pieces *out, bool *open, lb_error *err) {
  tk_buf bytes = {0};
  lb_status st = LB_OK;
  for (size_t i = 0; i < in->n && st == LB_OK; i++) {
    const char *s = tk_piece_at(in, i);
    size_t len = in->s[i].len, k = 0, start = bytes.len;
    bool mapped = true;
    while (k < len && mapped && st == LB_OK) { /* every character in the table, else the raw token */
      uint32_t cp;
      k += tk_utf8_next(s + k, len - k, &cp);
      int b = tk_cp_byte(cp);
      char c = (char)b;
      if (b < 0) mapped = false;
      else st = tk_buf_add(&bytes, &c, 1, err);
    }
    if (!mapped && st == LB_OK) {
      bytes.len = start;
      st = tk_buf_add(&bytes, s, len, err);
    }
  }
  if (st == LB_OK) {
    *open = *open || tk_utf8_incomplete_tail(bytes.p, bytes.len);
    size_t off = out->text.len;
    st = tk_utf8_lossy(bytes.p, bytes.len, &out->text, err);
    if (st == LB_OK) st = tk_pieces_span(out, off, out->text.len - off, err);
  }
  tk_buf_free(&bytes);
  return st;
}

static lb_status strip(const tk_dec_step *d, bool skip_first_start, bool merged,
                       const tk_pieces *in, tk_pieces *out, bool *open, lb_error *err) {
  char ch[4];
  size_t cl = tk_utf8_put(d->ch, ch);
  for (size_t i = 0; i < in->n; i++) {
    const char *s = tk_piece_at(in, i);
    size_t a = 0, b = in->s[i].len;
    for (size_t k = 0; k < d->start && !(i == 0 && skip_first_start); k++) {
      if (b - a < cl || memcmp(s + a, ch, cl)) break;
      a += cl;
    }
    for (size_t k = 0; k < d->stop && b - a >= cl && !memcmp(s + b - cl, ch, cl); k++) {
      b -= cl;
      if (merged && i + 1 == in->n) *open = true; /* the stripped tail returns if text follows */
    }
    LB_TRY(tk_pieces_add(out, s + a, b - a, err));
  }
  return LB_OK;
}

static lb_status run_step(const tk_dec_step *d, tk_match_ctx *m, bool mid, bool *merged,
                          const tk_pieces *in, tk_pieces *out, bool *open, lb_error *err) {
  switch (d->kind) {
  case TK_DEC_BYTE_FALLBACK: return byte_fallback(in, out, open, err);
  case TK_DEC_BYTELEVEL: *merged = true; return byte_level(in, out, open, err);
  case TK_DEC_STRIP: return strip(d, mid && *merged, *merged, in, out, open, err);
  case TK_DEC_FUSE: {
    *merged = true;
    size_t off = out->text.len;
    for (size_t i = 0; i < in->n; i++)
      LB_TRY(tk_buf_add(&out->text, tk_piece_at(in, i), in->s[i].len, err));
    return tk_pieces_span(out, off, out->text.len - off, err);
  }
  case TK_DEC_REPLACE: {
    tk_offsets mt = {0};
    lb_status st = LB_OK;
    for (size_t i = 0; i < in->n && st == LB_OK; i++) {
      const char *s = tk_piece_at(in, i);
      size_t off = out->text.len, prev = 0;
      st = tk_regex_find_all(&d->pattern, m, s, in->s[i].len, &mt, err);
      for (size_t k = 0; k < mt.n && st == LB_OK; k += 2) {
        st = tk_buf_add(&out->text, s + prev, mt.p[k] - prev, err);
        if (st == LB_OK) st = tk_buf_add(&out->text, d->content, d->content_len, err);
        prev = mt.p[k + 1];
      }
      if (st == LB_OK) st = tk_buf_add(&out->text, s + prev, in->s[i].len - prev, err);
      if (st == LB_OK) st = tk_pieces_span(out, off, out->text.len - off, err);
    }
    free(mt.p);
    return st;
  }
  case TK_DEC_METASPACE: { /* every replacement char becomes a space, dropped in the first token */
    char rep[4];
    size_t rl = tk_utf8_put(d->ch, rep);
    bool drop_first = d->prepend != TK_PREPEND_NEVER && (!mid || *merged);
    for (size_t i = 0; i < in->n; i++) {
      const char *s = tk_piece_at(in, i);
      size_t len = in->s[i].len, off = out->text.len;
      for (size_t k = 0; k < len;) {
        if (len - k >= rl && !memcmp(s + k, rep, rl)) {
          if (!(i == 0 && drop_first)) LB_TRY(tk_buf_add(&out->text, " ", 1, err));
          k += rl;
        } else {
          LB_TRY(tk_buf_add(&out->text, s + k, 1, err));
          k++;
        }
      }
      LB_TRY(tk_pieces_span(out, off, out->text.len - off, err));
    }
    return LB_OK;
  }
  }
  return lb_fail(err, LB_EINVAL, "decoder: bad step");
}

lb_status tk_decode(const lb_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, bool mid,
                    tk_buf *out, bool *open, lb_error *err) {
  bool open_ = false;
  out->len = 0;
  tk_pieces a = {0}, b = {0};
  tk_match_ctx m = {0};
  lb_status st = LB_OK;
  for (size_t i = 0; i < n && st == LB_OK; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= t->n_ids || !t->piece[id]) {
      st = lb_fail(err, LB_EINVAL, "token id %d at position %zu is not in the vocabulary "
                   "(%d ids)", id, i, t->n_ids);
      break;
    }
    if ((flags & LB_DETOK_SKIP_SPECIAL) && (t->flags[id] & TK_F_SPECIAL)) continue;
    st = tk_pieces_add(&a, t->piece[id], t->piece_len[id], err);
  }
  bool merged = false;
  for (size_t k = 0; k < t->dec.n && st == LB_OK; k++) {
    tk_pieces_clear(&b);
    st = run_step(&t->dec.steps[k], &m, mid, &merged, &a, &b, &open_, err);
    tk_pieces tmp = a;
    a = b, b = tmp;
  }
  /* the tokens are joined: with nothing by a decoder, with spaces when there is none */
  for (size_t i = 0; i < a.n && st == LB_OK; i++) {
    if (!t->dec.present && (i || mid)) st = tk_buf_add(out, " ", 1, err);
    if (st == LB_OK) st = tk_buf_add(out, tk_piece_at(&a, i), a.s[i].len, err);
  }
  if (st == LB_OK) st = tk_buf_reserve(out, 1, err);
  if (st == LB_OK) out->p[out->len] = 0;
  if (open) *open = open_;
  tk_pieces_free(&a);
  tk_pieces_free(&b);
  tk_match_ctx_free(&m);
  return st;
}

lb_status lb_detokenize(const lb_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                        char **text, size_t *len, lb_error *err) {
  *text = NULL;
  *len = 0;
  if (!t || (n && !ids)) return lb_fail(err, LB_EINVAL, "lb_detokenize: NULL argument");
  tk_buf out = {0};
  lb_status st = tk_decode(t, ids, n, flags, false, &out, NULL, err);
  if (st != LB_OK) return tk_buf_free(&out), st;
  *text = out.p;
  *len = out.len;
  return LB_OK;
}

/* ---- streaming ---------------------------------------------------------------------------------- */

struct lb_detok_stream {
  const lb_tokenizer *t;
  unsigned flags;
  tk_ids win; /* ids since the last cut */
  bool mid;   /* a cut happened: the window continues earlier text */
  tk_buf text;
};

lb_status lb_detok_stream_new(const lb_tokenizer *t, unsigned flags, lb_detok_stream **out,
                              lb_error *err) {
  *out = NULL;
  if (!t) return lb_fail(err, LB_EINVAL, "lb_detok_stream_new: NULL tokenizer");
  lb_detok_stream *s = calloc(1, sizeof *s);
  if (!s) return lb_fail(err, LB_ENOMEM, "out of memory");
  s->t = t;
  s->flags = flags;
  *out = s;
  return LB_OK;
}

lb_status lb_detok_stream_push(lb_detok_stream *s, int32_t id, const char **text, size_t *len,
                               lb_error *err) {
  *text = "";
  *len = 0;
  const lb_tokenizer *t = s->t;
  if (id < 0 || id >= t->n_ids || !t->piece[id])
    return lb_fail(err, LB_EINVAL, "token id %d is not in the vocabulary (%d ids)", id, t->n_ids);
  if ((s->flags & LB_DETOK_SKIP_SPECIAL) && (t->flags[id] & TK_F_SPECIAL)) return LB_OK;
  LB_TRY(tk_ids_push(&s->win, id, err));
  bool open;
  LB_TRY(tk_decode(t, s->win.p, s->win.n, s->flags, s->mid, &s->text, &open, err));
  if (open) return LB_OK;
  *text = s->text.p;
  *len = s->text.len;
  if (s->mid || s->text.len) s->win.n = 0, s->mid = true; /* cut */
  return LB_OK;
}

lb_status lb_detok_stream_flush(lb_detok_stream *s, const char **text, size_t *len,
                                lb_error *err) {
  *text = "";
  *len = 0;
  if (!s->win.n) return LB_OK;
  LB_TRY(tk_decode(s->t, s->win.p, s->win.n, s->flags, s->mid, &s->text, NULL, err));
  *text = s->text.p;
  *len = s->text.len;
  if (s->mid || s->text.len) s->win.n = 0, s->mid = true;
  return LB_OK;
}

void lb_detok_stream_free(lb_detok_stream *s) {
  if (!s) return;
  free(s->win.p);
  tk_buf_free(&s->text);
  free(s);
}
