/* Element types: names and sizes, and conversions between the floating formats.
 *
 * Narrowing to F16 / BF16 / F8 goes through one routine, narrow(), that rounds a double (given by
 * its bits) to a format with E exponent and M mantissa bits: round to nearest, ties to even,
 * subnormals exact. A float source is widened to a double first, which is exact, so every value is
 * rounded once. F32 -> BF16 has a bit-twiddling fast path; F64 -> F32 is the C cast.
 * NaN results follow the references the tests compare with: numpy keeps the top payload bits when
 * it narrows to F16 (a payload that vanishes becomes 1, so that the NaN stays a NaN); ml_dtypes
 * writes the canonical quiet NaN of BF16 / F8 with the sign kept. */
#include <float.h>
#include <string.h>

#include "base/status.h"

static const struct {
  const char *name;
  size_t size;
} k_types[LB_DTYPE_COUNT] = {
    [LB_F64] = {"F64", 8},     [LB_F32] = {"F32", 4},         [LB_F16] = {"F16", 2},
    [LB_BF16] = {"BF16", 2},   [LB_F8_E4M3] = {"F8_E4M3", 1}, [LB_F8_E5M2] = {"F8_E5M2", 1},
    [LB_I64] = {"I64", 8},     [LB_I32] = {"I32", 4},         [LB_I16] = {"I16", 2},
    [LB_I8] = {"I8", 1},       [LB_U8] = {"U8", 1},           [LB_BOOL] = {"BOOL", 1},
};

const char *lb_dtype_name(lb_dtype t) {
  return (unsigned)t < LB_DTYPE_COUNT ? k_types[t].name : "?";
}

bool lb_dtype_from_name(const char *name, lb_dtype *out) {
  for (int t = 0; name && t < LB_DTYPE_COUNT; t++) {
    if (strcmp(name, k_types[t].name) == 0) {
      if (out) *out = (lb_dtype)t;
      return true;
    }
  }
  return false;
}

size_t lb_dtype_size(lb_dtype t) { return (unsigned)t < LB_DTYPE_COUNT ? k_types[t].size : 0; }

bool lb_dtype_is_float(lb_dtype t) { return (unsigned)t <= LB_F8_E5M2; }

/* ---------------------------------------------------------------------------------------------- */
/* Bits */

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint64_t f64_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static bool nan32(uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }
static bool nan64(uint64_t x) { return (x & ~(1ull << 63)) > 0x7FFull << 52; }

/* float bits -> double bits, exact; a NaN keeps its payload and stays signalling if it was (a
 * hardware conversion would set the quiet bit, and numpy's f32 -> f16 keeps the payload as is). */
static uint64_t widen32(uint32_t u) {
  if (nan32(u)) return (uint64_t)(u >> 31) << 63 | 0x7FFull << 52 | (uint64_t)(u & 0x7FFFFF) << 29;
  return f64_bits((double)bits_f32(u));
}

/* ---------------------------------------------------------------------------------------------- */
/* Narrow formats */

typedef struct fmt {
  int e, m;         /* exponent and mantissa bits; the bias is 2^(e-1) - 1 */
  bool fn;          /* "finite" (E4M3fn): no Inf, S.1111.111 is the only NaN */
  bool nan_payload; /* a NaN keeps its top payload bits (numpy F16), else the canonical quiet NaN */
} fmt;

static const fmt k_f16 = {5, 10, false, true};
static const fmt k_bf16 = {8, 7, false, false};
static const fmt k_e4m3 = {4, 3, true, false};
static const fmt k_e5m2 = {5, 2, false, false};

/* Rounds the double with bits x to format f; saturating clamps finite values and Inf to +-max. */
static uint32_t narrow(uint64_t x, const fmt *f, bool sat) {
  const int E = f->e, M = f->m;
  const uint32_t sign = (uint32_t)(x >> 63) << (E + M);
  const uint32_t expmask = ((1u << E) - 1) << M; /* exponent all ones: Inf (or NaN) */
  const uint32_t nan_fn = (1u << (E + M)) - 1;   /* E4M3fn's NaN */
  const uint32_t maxfin = f->fn ? nan_fn - 1 : expmask - 1;
  const uint32_t overflow = sat ? maxfin : f->fn ? nan_fn : expmask;
  const int xe = (int)(x >> 52 & 0x7FF);
  uint64_t sig = x & ((1ull << 52) - 1);
  if (xe == 0x7FF) {
    if (sig == 0) return sign | overflow; /* Inf */
    if (f->fn) return sign | nan_fn;
    if (!f->nan_payload) return sign | expmask | 1u << (M - 1);
    uint32_t payload = (uint32_t)(sig >> (52 - M));
    return sign | expmask | (payload ? payload : 1);
  }
  /* the value is sig * 2^(e - 52), with the implicit bit for a normal double */
  const int e = xe ? xe - 1023 : -1022;
  if (xe) sig |= 1ull << 52;
  /* quantum of the target at this magnitude: 2^(te - M), te clamped to the smallest normal
   * exponent so that subnormals get the fixed quantum; shift = low bits of sig dropped (>= 52-M).
   * A shift clamped to 63 still rounds tiny values to zero: sig < 2^53 < half a quantum. */
  const int emin = 2 - (1 << (E - 1));
  const int te = e > emin ? e : emin;
  int shift = te - M - (e - 52);
  if (shift > 63) shift = 63;
  /* round to nearest, ties to even */
  uint64_t q = sig >> shift;
  const uint64_t rem = sig & ((1ull << shift) - 1), half = 1ull << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) q++;
  /* q quanta at exponent te: adding (te - emin) << M gives the encoding, including a carry of q
   * into the next binade and the subnormal -> normal step (q = 2^M with te = emin) */
  const uint64_t mag = ((uint64_t)(te - emin) << M) + q;
  if (mag > maxfin) return sign | overflow; /* rounded past the largest finite value */
  return sign | (uint32_t)mag;
}

/* Decodes format f to float bits, exactly. */
static inline uint32_t widen_fmt(uint32_t v, const fmt *f) {
  const int E = f->e, M = f->m, bias = (1 << (E - 1)) - 1;
  const uint32_t s = (v >> (E + M) & 1) << 31, ex = v >> M & ((1u << E) - 1);
  const uint32_t man = v & ((1u << M) - 1), exmax = (1u << E) - 1;
  if (ex == exmax && (!f->fn || man == (1u << M) - 1)) {
    if (!f->fn && man == 0) return s | 0x7F800000u;                       /* Inf */
    return s | 0x7F800000u | (f->nan_payload ? man << (23 - M) : 1u << 22); /* NaN */
  }
  if (ex == 0) { /* subnormal: man * 2^(1 - bias - M), exact in float */
    const float scale = bits_f32((uint32_t)(127 + 1 - bias - M) << 23);
    return s | f32_bits((float)man * scale);
  }
  return s | (ex - bias + 127) << 23 | man << (23 - M); /* rebias the exponent */
}

/* ---------------------------------------------------------------------------------------------- */
/* Scalar conversions */

float lb_f16_to_f32(uint16_t h) { return bits_f32(widen_fmt(h, &k_f16)); }
float lb_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); } /* BF16 = top half */
float lb_e4m3_to_f32(uint8_t v) { return bits_f32(widen_fmt(v, &k_e4m3)); }
float lb_e5m2_to_f32(uint8_t v) { return bits_f32(widen_fmt(v, &k_e5m2)); }

static uint16_t bf16_from_bits(uint32_t u, bool sat) {
  if (nan32(u)) return (uint16_t)((u >> 16 & 0x8000) | 0x7FC0); /* canonical quiet NaN */
  /* round to nearest even on the 16 dropped bits; a carry may step into the exponent, and
   * the largest values round up to Inf (0x7F80) */
  uint16_t h = (uint16_t)((u + 0x7FFFu + (u >> 16 & 1)) >> 16);
  if (sat && (h & 0x7FFF) == 0x7F80) h--; /* Inf -> max finite 0x7F7F, sign kept */
  return h;
}

uint16_t lb_f32_to_f16(float f) { return (uint16_t)narrow(widen32(f32_bits(f)), &k_f16, false); }
uint16_t lb_f32_to_bf16(float f) { return bf16_from_bits(f32_bits(f), false); }
uint8_t lb_f32_to_e4m3(float f, bool saturate) {
  return (uint8_t)narrow(widen32(f32_bits(f)), &k_e4m3, saturate);
}
uint8_t lb_f32_to_e5m2(float f, bool saturate) {
  return (uint8_t)narrow(widen32(f32_bits(f)), &k_e5m2, saturate);
}
uint16_t lb_f64_to_f16(double d) { return (uint16_t)narrow(f64_bits(d), &k_f16, false); }
uint16_t lb_f64_to_bf16(double d) { return (uint16_t)narrow(f64_bits(d), &k_bf16, false); }
uint8_t lb_f64_to_e4m3(double d, bool saturate) {
  return (uint8_t)narrow(f64_bits(d), &k_e4m3, saturate);
}
uint8_t lb_f64_to_e5m2(double d, bool saturate) {
  return (uint8_t)narrow(f64_bits(d), &k_e5m2, saturate);
}

/* ---------------------------------------------------------------------------------------------- */
/* Bulk conversion. A non-F64 source is decoded to float bits (exact) and narrowed from there; an
 * F64 source is narrowed directly. Saturating means: clip to +-max of the destination, then cast,
 * for every pair of different types (so an Inf widened to F32/F64 becomes +-FLT_MAX/DBL_MAX). */

static const fmt *small_fmt(lb_dtype t) {
  return t == LB_F16 ? &k_f16 : t == LB_BF16 ? &k_bf16 : t == LB_F8_E4M3 ? &k_e4m3 : &k_e5m2;
}

static uint32_t load32(const unsigned char *p, lb_dtype t) {
  uint16_t h;
  uint32_t u;
  switch (t) {
  case LB_F32: memcpy(&u, p, 4); return u;
  case LB_F16: memcpy(&h, p, 2); return f32_bits(lb_f16_to_f32(h));
  case LB_BF16: memcpy(&h, p, 2); return (uint32_t)h << 16;
  default: return widen_fmt(*p, small_fmt(t)); /* F8 */
  }
}

/* Stores the double with bits x to a type other than the source's (F32: only from F64). */
static void store(unsigned char *p, lb_dtype t, uint64_t x, bool sat) {
  const bool inf = (x & ~(1ull << 63)) == 0x7FFull << 52;
  const uint64_t sign = x & (1ull << 63);
  if (t == LB_F64) {
    if (nan64(x)) x |= 1ull << 51; /* quiet, as a hardware f32 -> f64 cast (numpy) does */
    if (sat && inf) x = sign | f64_bits(DBL_MAX);
    memcpy(p, &x, 8);
  } else if (t == LB_F32) {
    uint32_t u;
    if (nan64(x)) /* quiet, top payload bits: the hardware f64 -> f32 cast (numpy) */
      u = (uint32_t)(x >> 32 & 0x80000000u) | 0x7FC00000u | (uint32_t)(x >> 29 & 0x7FFFFF);
    else {
      double d;
      memcpy(&d, &x, 8);
      if (sat && (d > FLT_MAX || d < -FLT_MAX)) d = d > 0 ? FLT_MAX : -FLT_MAX;
      u = f32_bits((float)d); /* round to nearest even (the default rounding mode) */
    }
    memcpy(p, &u, 4);
  } else if (t == LB_F16 || t == LB_BF16) {
    const uint16_t h = (uint16_t)narrow(x, small_fmt(t), sat);
    memcpy(p, &h, 2);
  } else {
    *p = (uint8_t)narrow(x, small_fmt(t), sat);
  }
}

lb_status lb_convert(void *dst, lb_dtype dst_type, const void *src, lb_dtype src_type, size_t n,
                     unsigned flags, lb_error *err) {
  if (!lb_dtype_size(dst_type) || !lb_dtype_size(src_type))
    return lb_fail(err, LB_EINVAL, "convert: invalid dtype value (%d -> %d)", (int)src_type,
                   (int)dst_type);
  if (flags & ~(unsigned)LB_CONVERT_SATURATE)
    return lb_fail(err, LB_EINVAL, "convert: unknown flags 0x%x", flags);
  if (src_type != dst_type && (!lb_dtype_is_float(src_type) || !lb_dtype_is_float(dst_type)))
    return lb_fail(err, LB_EUNSUPPORTED, "convert: %s -> %s is not supported",
                   lb_dtype_name(src_type), lb_dtype_name(dst_type));
  if (n == 0) return LB_OK;
  if (!dst || !src) return lb_fail(err, LB_EINVAL, "convert: NULL buffer for %zu elements", n);
  if (src_type == dst_type) {
    memmove(dst, src, n * lb_dtype_size(src_type));
    return LB_OK;
  }
  /* Saturation applies only where the destination's range is smaller than the source's. */
  static const int range_rank[] = {[LB_F64] = 5, [LB_F32] = 4, [LB_BF16] = 3, [LB_F16] = 2,
                                   [LB_F8_E5M2] = 1, [LB_F8_E4M3] = 0};
  const bool sat = (flags & LB_CONVERT_SATURATE) && range_rank[dst_type] < range_rank[src_type];
  const size_t ss = lb_dtype_size(src_type), ds = lb_dtype_size(dst_type);
  const unsigned char *s = src;
  unsigned char *d = dst;
  if (src_type == LB_F32 && dst_type == LB_BF16) { /* hot path: weights to BF16 */
    for (size_t i = 0; i < n; i++) {
      uint32_t u;
      memcpy(&u, s + 4 * i, 4);
      const uint16_t h = bf16_from_bits(u, sat);
      memcpy(d + 2 * i, &h, 2);
    }
  } else if (src_type == LB_BF16 && dst_type == LB_F32 && !sat) { /* hot path: BF16 weights in */
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, s + 2 * i, 2);
      const uint32_t u = (uint32_t)h << 16;
      memcpy(d + 4 * i, &u, 4);
    }
  } else if (src_type == LB_F64) {
    for (size_t i = 0; i < n; i++) {
      uint64_t x;
      memcpy(&x, s + 8 * i, 8);
      store(d + ds * i, dst_type, x, sat);
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      uint32_t u = load32(s + ss * i, src_type);
      if (dst_type != LB_F32) {
        store(d + ds * i, dst_type, widen32(u), sat);
        continue;
      }
      if (sat && (u & 0x7FFFFFFFu) == 0x7F800000u) u = (u & 0x80000000u) | 0x7F7FFFFFu; /* max */
      memcpy(d + 4 * i, &u, 4); /* decoding is exact; a NaN keeps its bits */
    }
  }
  return LB_OK;
}
