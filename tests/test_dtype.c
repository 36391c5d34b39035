/* dtype names and conversions. The conversions are compared bit for bit with reference tables that
 * tests/py/dtype_ref.py writes from numpy and ml_dtypes (see its header for the file layout):
 * every bit pattern of F16, BF16, F8_E4M3 and F8_E5M2 converted to every other float type, and
 * millions of F32 and F64 inputs at and around every rounding boundary, plus random ones.
 *
 * Usage: test_dtype REFDIR [test names]. A missing reference table fails the run (exit 2). */
#include <float.h>
#include <stdint.h>

#include "test.h"

static const char *g_dir;

typedef struct {
  const char *key; /* file name part */
  lb_dtype t;
  size_t size;
} ref_type;

static const ref_type k_types[] = {{"f64", LB_F64, 8},  {"f32", LB_F32, 4},
                                   {"f16", LB_F16, 2},  {"bf16", LB_BF16, 2},
                                   {"e4m3", LB_F8_E4M3, 1}, {"e5m2", LB_F8_E5M2, 1}};
#define NTYPES (sizeof k_types / sizeof k_types[0])

/* Reads REFDIR/name.bin, an array of `elem`-byte values; ends the run when it is not there. */
static unsigned char *load(const char *name, size_t elem, size_t *count) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.bin", g_dir, name);
  size_t len = 0;
  char *buf = lb_test_read_file(path, &len);
  if (!buf || len == 0 || len % elem != 0) {
    fprintf(stderr, "FATAL: reference table %s is missing or malformed (%zu bytes); write it with "
            "python3 tests/py/dtype_ref.py %s\n", path, len, g_dir);
    exit(2);
  }
  *count = len / elem;
  return (unsigned char *)buf;
}

static uint64_t at(const unsigned char *p, size_t size, size_t i) {
  uint64_t v = 0;
  memcpy(&v, p + size * i, size); /* little-endian host (checked in main) */
  return v;
}

/* Compares n values bit for bit; prints the first mismatches (input, expected, got) and a count. */
static void compare(const char *what, const unsigned char *in, size_t in_size,
                    const unsigned char *want, const unsigned char *got, size_t size, size_t n) {
  if (memcmp(want, got, n * size) == 0) return;
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (memcmp(want + i * size, got + i * size, size) == 0) continue;
    if (bad++ < 8)
      fprintf(stderr, "  %s: input 0x%0*llx: expected 0x%0*llx, got 0x%0*llx\n", what,
              (int)(2 * in_size), (unsigned long long)at(in, in_size, i), (int)(2 * size),
              (unsigned long long)at(want, size, i), (int)(2 * size),
              (unsigned long long)at(got, size, i));
  }
  CHECK_MSG(bad == 0, "%s: %zu of %zu values differ", what, bad, n);
}

static float f32_of(uint64_t x) {
  uint32_t u = (uint32_t)x;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint64_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* The scalar function for a pair, if the API has one: *ok = false when it does not. */
static uint64_t scalar(lb_dtype src, lb_dtype dst, uint64_t x, bool sat, bool *ok) {
  double d;
  memcpy(&d, &x, 8);
  *ok = true;
  if (dst == LB_F32 && !sat) {
    if (src == LB_F16) return bits_of(lb_f16_to_f32((uint16_t)x));
    if (src == LB_BF16) return bits_of(lb_bf16_to_f32((uint16_t)x));
    if (src == LB_F8_E4M3) return bits_of(lb_e4m3_to_f32((uint8_t)x));
    if (src == LB_F8_E5M2) return bits_of(lb_e5m2_to_f32((uint8_t)x));
  }
  if (src == LB_F32) {
    if (dst == LB_F16 && !sat) return lb_f32_to_f16(f32_of(x));
    if (dst == LB_BF16 && !sat) return lb_f32_to_bf16(f32_of(x));
    if (dst == LB_F8_E4M3) return lb_f32_to_e4m3(f32_of(x), sat);
    if (dst == LB_F8_E5M2) return lb_f32_to_e5m2(f32_of(x), sat);
  }
  if (src == LB_F64) {
    if (dst == LB_F16 && !sat) return lb_f64_to_f16(d);
    if (dst == LB_BF16 && !sat) return lb_f64_to_bf16(d);
    if (dst == LB_F8_E4M3) return lb_f64_to_e4m3(d, sat);
    if (dst == LB_F8_E5M2) return lb_f64_to_e5m2(d, sat);
  }
  *ok = false;
  return 0;
}

/* Checks every conversion from one source type against its tables: the scalar functions where the
 * API has them, and lb_convert (plain and saturating) over unaligned buffers. */
static void check_source(const ref_type *s) {
  size_t n = 0;
  unsigned char *in;
  char name[64];
  if (s->t == LB_F32 || s->t == LB_F64) {
    snprintf(name, sizeof name, "%s_in", s->key);
    in = load(name, s->size, &n);
  } else { /* every bit pattern */
    n = (size_t)1 << (8 * s->size);
    in = malloc(n * s->size);
    for (size_t i = 0; i < n; i++) memcpy(in + i * s->size, &i, s->size);
  }
  unsigned char *src = malloc(n * s->size + 1);
  memcpy(src + 1, in, n * s->size);
  for (size_t k = 0; k < NTYPES; k++) {
    const ref_type *d = &k_types[k];
    if (d == s) continue;
    for (int sat = 0; sat < 2; sat++) {
      size_t m = 0;
      snprintf(name, sizeof name, "%s_%s%s", s->key, d->key, sat ? "_sat" : "");
      unsigned char *want = load(name, d->size, &m);
      /* f32_f64 covers the first inputs only; every other table has one value per input */
      CHECK_MSG(m == n || (s->t == LB_F32 && d->t == LB_F64 && m < n), "%s: %zu values for %zu"
                " inputs", name, m, n);
      if (m > n) m = n;
      unsigned char *got = malloc(m * d->size + 3);
      bool ok = false;
      scalar(s->t, d->t, 0, sat, &ok);
      if (ok) {
        for (size_t i = 0; i < m; i++) {
          uint64_t v = scalar(s->t, d->t, at(in, s->size, i), sat, &ok);
          memcpy(got + i * d->size, &v, d->size);
        }
        char what[96];
        snprintf(what, sizeof what, "scalar %s", name);
        compare(what, in, s->size, want, got, d->size, m);
      }
      lb_error err = {0};
      CHECK_OK(lb_convert(got + 3, d->t, src + 1, s->t, m, sat ? LB_CONVERT_SATURATE : 0, &err),
               &err);
      char what[96];
      snprintf(what, sizeof what, "lb_convert %s", name);
      compare(what, in, s->size, want, got + 3, d->size, m);
      free(got);
      free(want);
    }
  }
  free(src);
  free(in);
}

static void test_from_f64(void) { check_source(&k_types[0]); }
static void test_from_f32(void) { check_source(&k_types[1]); }
static void test_from_f16(void) { check_source(&k_types[2]); }
static void test_from_bf16(void) { check_source(&k_types[3]); }
static void test_from_e4m3(void) { check_source(&k_types[4]); }
static void test_from_e5m2(void) { check_source(&k_types[5]); }

static void test_names(void) {
  static const struct {
    lb_dtype t;
    const char *name;
    size_t size;
    bool is_float;
  } want[] = {{LB_F64, "F64", 8, true},         {LB_F32, "F32", 4, true},
              {LB_F16, "F16", 2, true},         {LB_BF16, "BF16", 2, true},
              {LB_F8_E4M3, "F8_E4M3", 1, true}, {LB_F8_E5M2, "F8_E5M2", 1, true},
              {LB_I64, "I64", 8, false},        {LB_I32, "I32", 4, false},
              {LB_I16, "I16", 2, false},        {LB_I8, "I8", 1, false},
              {LB_U8, "U8", 1, false},          {LB_BOOL, "BOOL", 1, false}};
  CHECK(sizeof want / sizeof want[0] == LB_DTYPE_COUNT);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    lb_dtype t = LB_DTYPE_COUNT;
    CHECK_MSG(strcmp(lb_dtype_name(want[i].t), want[i].name) == 0, "%s", want[i].name);
    CHECK_MSG(lb_dtype_from_name(want[i].name, &t) && t == want[i].t, "%s", want[i].name);
    CHECK_MSG(lb_dtype_size(want[i].t) == want[i].size, "%s", want[i].name);
    CHECK_MSG(lb_dtype_is_float(want[i].t) == want[i].is_float, "%s", want[i].name);
  }
  lb_dtype t = LB_F32;
  CHECK(!lb_dtype_from_name("f32", &t) && !lb_dtype_from_name("F8_E4M3FN", &t));
  CHECK(!lb_dtype_from_name("", &t) && !lb_dtype_from_name(NULL, &t) && t == LB_F32);
  CHECK(strcmp(lb_dtype_name(LB_DTYPE_COUNT), "?") == 0 && lb_dtype_size(LB_DTYPE_COUNT) == 0);
  CHECK(strcmp(lb_dtype_name((lb_dtype)-1), "?") == 0 && !lb_dtype_is_float(LB_DTYPE_COUNT));
}

/* Facts from the format definitions (OCP FP8, IEEE binary16, bfloat16). */
static void test_format_facts(void) {
  CHECK(lb_e4m3_to_f32(0x7E) == 448.0f && lb_e4m3_to_f32(0xFE) == -448.0f);
  CHECK(isnan(lb_e4m3_to_f32(0x7F)) && isnan(lb_e4m3_to_f32(0xFF)));
  CHECK(lb_e4m3_to_f32(0x78) == 256.0f && lb_e4m3_to_f32(0x38) == 1.0f);
  CHECK(lb_e4m3_to_f32(0x01) == 0x1p-9f && lb_e4m3_to_f32(0x08) == 0x1p-6f);
  CHECK(lb_e4m3_to_f32(0x80) == 0.0f && signbit(lb_e4m3_to_f32(0x80)));
  CHECK(lb_f32_to_e4m3(448.0f, false) == 0x7E && lb_f32_to_e4m3(460.0f, false) == 0x7E);
  CHECK(lb_f32_to_e4m3(464.0f, false) == 0x7E); /* tie between 448 and 480: even */
  CHECK(lb_f32_to_e4m3(465.0f, false) == 0x7F && lb_f32_to_e4m3(INFINITY, false) == 0x7F);
  CHECK(lb_f32_to_e4m3(465.0f, true) == 0x7E && lb_f32_to_e4m3(-INFINITY, true) == 0xFE);
  CHECK(lb_f32_to_e4m3(NAN, true) == 0x7F && lb_f32_to_e4m3(-1e30f, true) == 0xFE);
  CHECK(lb_f32_to_e4m3(0x1p-10f, false) == 0x00 && lb_f32_to_e4m3(0x1.8p-10f, false) == 0x01);
  CHECK(lb_f32_to_e4m3(-0.0f, false) == 0x80 && lb_f32_to_e4m3(1.0625f, false) == 0x38);

  CHECK(lb_e5m2_to_f32(0x7C) == INFINITY && lb_e5m2_to_f32(0xFC) == -INFINITY);
  CHECK(lb_e5m2_to_f32(0x7B) == 57344.0f && lb_e5m2_to_f32(0x01) == 0x1p-16f);
  CHECK(isnan(lb_e5m2_to_f32(0x7D)) && isnan(lb_e5m2_to_f32(0x7E)) && isnan(lb_e5m2_to_f32(0xFF)));
  CHECK(lb_f32_to_e5m2(61439.0f, false) == 0x7B && lb_f32_to_e5m2(61440.0f, false) == 0x7C);
  CHECK(lb_f32_to_e5m2(61440.0f, true) == 0x7B && lb_f32_to_e5m2(-INFINITY, true) == 0xFB);
  CHECK(lb_f32_to_e5m2(INFINITY, false) == 0x7C && lb_f32_to_e5m2(NAN, false) == 0x7E);

  CHECK(lb_f16_to_f32(0x7BFF) == 65504.0f && lb_f16_to_f32(0x7C00) == INFINITY);
  CHECK(lb_f16_to_f32(0x0001) == 0x1p-24f && lb_f16_to_f32(0x0400) == 0x1p-14f);
  CHECK(lb_f16_to_f32(0x3C00) == 1.0f && lb_f16_to_f32(0xC000) == -2.0f);
  CHECK(lb_f32_to_f16(65504.0f) == 0x7BFF && lb_f32_to_f16(65519.99f) == 0x7BFF);
  CHECK(lb_f32_to_f16(65520.0f) == 0x7C00 && lb_f32_to_f16(-1e9f) == 0xFC00);
  CHECK(lb_f32_to_f16(0x1p-25f) == 0x0000 && lb_f32_to_f16(0x1.8p-25f) == 0x0001);
  CHECK(lb_f32_to_f16(1.0f + 0x1p-11f) == 0x3C00 && lb_f32_to_f16(1.0f + 0x3p-11f) == 0x3C02);

  CHECK(lb_bf16_to_f32(0x3F80) == 1.0f && lb_bf16_to_f32(0x7F7F) == 0x1.FEp127f);
  CHECK(lb_f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80 && lb_f32_to_bf16(1.0f + 0x3p-8f) == 0x3F82);
  CHECK(lb_f32_to_bf16(FLT_MAX) == 0x7F80 && lb_f32_to_bf16(-NAN) == 0xFFC0);

  /* from double, rounded once: 1 + 2^-8 + 2^-40 is a tie as a float, but above it as a double */
  const double d = 1.0 + 0x1p-8 + 0x1p-40;
  CHECK(lb_f64_to_bf16(d) == 0x3F81 && lb_f32_to_bf16((float)d) == 0x3F80);
  CHECK(lb_f64_to_f16(1.0 + 0x1p-11 + 0x1p-40) == 0x3C01);
  CHECK(lb_f64_to_e4m3(1.0 + 0x1p-4 + 0x1p-40, false) == 0x39);
  CHECK(lb_f64_to_e5m2(1e300, false) == 0x7C && lb_f64_to_e5m2(1e300, true) == 0x7B);
  CHECK(lb_f64_to_e4m3(1e-300, false) == 0x00 && lb_f64_to_e4m3(-1e-300, false) == 0x80);
}

static void test_convert_rules(void) {
  lb_error err = {0};
  unsigned char src[17] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, dst[17];
  for (int t = 0; t < LB_DTYPE_COUNT; t++) { /* the same type is a copy, integers included */
    memset(dst, 0, sizeof dst);
    CHECK_OK(lb_convert(dst + 1, (lb_dtype)t, src + 1, (lb_dtype)t, 16 / lb_dtype_size(t),
                        LB_CONVERT_SATURATE, &err), &err);
    CHECK_MSG(memcmp(dst + 1, src + 1, 16) == 0 && dst[0] == 0, "%s", lb_dtype_name(t));
  }
  CHECK(lb_convert(dst, LB_F32, src, LB_I32, 4, 0, &err) == LB_EUNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "I32 -> F32") != NULL, "message: %s", err.msg);
  CHECK(lb_convert(dst, LB_I8, src, LB_F16, 4, 0, &err) == LB_EUNSUPPORTED);
  CHECK_MSG(strstr(err.msg, "F16 -> I8") != NULL, "message: %s", err.msg);
  CHECK(lb_convert(dst, LB_U8, src, LB_BOOL, 4, 0, NULL) == LB_EUNSUPPORTED);
  CHECK(lb_convert(dst, LB_F32, src, LB_DTYPE_COUNT, 1, 0, &err) == LB_EINVAL && err.msg[0]);
  CHECK(lb_convert(dst, LB_F32, src, LB_F16, 1, 1u << 5, &err) == LB_EINVAL && err.msg[0]);
  CHECK(lb_convert(NULL, LB_F32, NULL, LB_F16, 0, 0, &err) == LB_OK);
  CHECK(lb_convert(NULL, LB_F32, src, LB_F16, 1, 0, &err) == LB_EINVAL);
}

int main(int argc, char **argv) {
  const uint16_t one = 1;
  if (argc < 2) {
    fprintf(stderr, "usage: %s REFDIR [tests] (REFDIR: written by tests/py/dtype_ref.py)\n",
            argv[0]);
    return 2;
  }
  if (*(const unsigned char *)&one != 1) {
    fprintf(stderr, "FATAL: the reference tables are little-endian; this host is not\n");
    return 2;
  }
  g_dir = argv[1];
  static const lb_test_case cases[] = {
      {"names", test_names},         {"format_facts", test_format_facts},
      {"convert_rules", test_convert_rules}, {"from_f16", test_from_f16},
      {"from_bf16", test_from_bf16}, {"from_e4m3", test_from_e4m3},
      {"from_e5m2", test_from_e5m2}, {"from_f32", test_from_f32},
      {"from_f64", test_from_f64},
  };
  argv[1] = argv[0]; /* the harness sees the program name and the optional test names */
  return lb_test_main(argc - 1, argv + 1, cases, sizeof cases / sizeof cases[0]);
}
