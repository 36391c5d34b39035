/* Malformed single safetensors files: each case writes real bytes, opens them with lb_st_open (and
 * lb_st_parse over the same bytes) and checks the status and that the message names the file, the
 * tensor and what was expected. LB_TEST_VERBOSE=1 prints every message. */
#include "malformed.h"


/* Opens <case>/model.safetensors with lb_st_open; the path goes to `path`. The in-memory parser,
 * given the same bytes and the path as label, must fail with the same status and message. */
static lb_status open_st(const char *path, lb_error *err) {
  lb_st_file *f = NULL;
  memset(err, 0, sizeof *err);
  lb_status s = lb_st_open(path, &f, err);
  if (s == LB_OK) {
    lb_st_close(f);
    return s;
  }
  CHECK(f == NULL);
  size_t len = 0;
  char *bytes = lb_test_read_file(path, &len);
  CHECK(bytes != NULL);
  if (bytes) {
    lb_error e2 = {0};
    lb_st_file *g = NULL;
    lb_status s2 = lb_st_parse(bytes, len, path, &g, &e2);
    if (s2 == LB_OK) lb_st_close(g);
    CHECK_MSG(s2 == s && strcmp(e2.msg, err->msg) == 0, "lb_st_parse: %d %s vs lb_st_open: %d %s",
              s2, e2.msg, s, err->msg);
    free(bytes);
  }
  return s;
}

/* Writes header + data_len zero bytes as <case>/model.safetensors and opens it. */
static lb_status st_header_case(const char *name, const char *header, size_t data_len, char *path,
                                lb_error *err) {
  char dir[PATH_CAP];
  case_dir(dir, name);
  join(path, dir, "model.safetensors");
  put_st(path, header, data_len);
  return open_st(path, err);
}

/* The valid file the header cases below break one thing of. */
#define ST_VALID                                                                                   \
  "{\"__metadata__\":{\"format\":\"pt\"},"                                                         \
  "\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"                    \
  "\"norm.weight\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}"

static void st_valid_control(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  case_dir(dir, "st_valid_control");
  join(path, dir, "model.safetensors");
  put_st(path, ST_VALID, 32);
  lb_st_file *f = NULL;
  lb_error err = {0};
  CHECK_OK(lb_st_open(path, &f, &err), &err);
  if (!f) return;
  CHECK(lb_st_count(f) == 2);
  const lb_tensor *t = lb_st_find(f, "norm.weight");
  CHECK(t && t->dtype == LB_BF16 && t->ndim == 1 && t->shape[0] == 4 && t->nbytes == 8);
  CHECK(lb_st_metadata_count(f) == 1);
  lb_st_close(f);
}

static void st_empty_file(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "st_empty_file");
  join(path, dir, "model.safetensors");
  put_file(path, "", 0);
  EXPECT_FAIL(open_st(path, &err), LB_EFORMAT, &err, path, "file is 0 bytes",
              "8-byte header length");
}

static void st_seven_bytes(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "st_seven_bytes");
  join(path, dir, "model.safetensors");
  put_file(path, "\x02\0\0\0\0\0\0", 7);
  EXPECT_FAIL(open_st(path, &err), LB_EFORMAT, &err, path, "file is 7 bytes", "too short");
}

/* The length field promises 4096 bytes of header; the file ends after 20. */
static void st_header_past_eof(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "st_header_past_eof");
  join(path, dir, "model.safetensors");
  put_st_raw(path, 4096, "{\"a\":{\"dtype\":", 14, 0, 0);
  EXPECT_FAIL(open_st(path, &err), LB_EFORMAT, &err, path, "header length 4096",
              "runs past the end of the file (22 bytes); truncated?");
}

/* 100 MiB is more than the 100,000,000-byte limit; only the length field says so. */
static void st_header_over_limit(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "st_header_over_limit");
  join(path, dir, "model.safetensors");
  put_st_raw(path, 100u << 20, "{}", 2, 0, 0);
  EXPECT_FAIL(open_st(path, &err), LB_EFORMAT, &err, path, "header length 104857600",
              "exceeds the 100000000-byte limit");
}

/* A length of 2^64 - 1 must not wrap around in any bound check. */
static void st_header_len_u64_max(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "st_header_len_u64_max");
  join(path, dir, "model.safetensors");
  put_st_raw(path, UINT64_MAX, "{}", 2, 0, 0);
  EXPECT_FAIL(open_st(path, &err), LB_EFORMAT, &err, path, "header length 18446744073709551615",
              "exceeds the 100000000-byte limit");
}

static void st_header_len_zero(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "st_header_len_zero");
  join(path, dir, "model.safetensors");
  put_st_raw(path, 0, "", 0, 16, 0);
  EXPECT_FAIL(open_st(path, &err), LB_EFORMAT, &err, path, "header does not start with '{'");
}

/* Leading whitespace is not allowed (the reference implementation requires '{' first). */
static void st_header_not_brace(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_header_not_brace", " {}", 0, path, &err), LB_EFORMAT, &err, path,
              "header does not start with '{'");
}

static void st_header_json_array(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_header_json_array",
                             "[{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}]", 4, path,
                             &err),
              LB_EFORMAT, &err, path, "header does not start with '{'");
}

static void st_bad_json_syntax(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_bad_json_syntax",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],}}", 4,
                             path, &err),
              LB_EFORMAT, &err, path, "invalid JSON", ":1:");
}

/* A tensor name holding the byte 0xff, which cannot start a UTF-8 sequence. */
static void st_invalid_utf8(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_invalid_utf8",
                             "{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "invalid JSON", "0xff");
}

/* Padding must be spaces; NUL bytes after the object are not JSON. */
static void st_header_nul_padding(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  lb_error err;
  case_dir(dir, "st_header_nul_padding");
  join(path, dir, "model.safetensors");
  put_st_raw(path, 8, "{}\0\0\0\0\0\0", 8, 0, 0);
  EXPECT_FAIL(open_st(path, &err), LB_EFORMAT, &err, path, "invalid JSON", "end of file expected");
}

static void st_header_trailing_garbage(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_header_trailing_garbage", "{} {}", 0, path, &err), LB_EFORMAT,
              &err, path, "invalid JSON", "end of file expected");
}

static void st_entry_not_object(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_entry_not_object", "{\"emb.weight\":[\"F32\",[1],[0,4]]}", 4, path,
                             &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "expected an object, got array");
}

static void st_dtype_f4(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_dtype_f4",
                             "{\"emb.weight\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}",
                             1, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "unknown dtype 'F4'",
              "expected one of F64");
}

/* Names are case sensitive and spelled the safetensors way ("I8", not "int8"). */
static void st_dtype_int8(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_dtype_int8",
                             "{\"emb.weight\":{\"dtype\":\"int8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
                             2, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "unknown dtype 'int8'",
              "expected one of");
}

static void st_dtype_lowercase(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_dtype_lowercase",
                             "{\"emb.weight\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "unknown dtype 'f32'");
}

static void st_dtype_number(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_dtype_number",
                             "{\"emb.weight\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                             path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "unknown dtype integer",
              "expected one of");
}

static void st_missing_dtype(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_missing_dtype",
                             "{\"emb.weight\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "missing 'dtype'");
}

static void st_missing_shape(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_missing_shape",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, path,
                             &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "missing 'shape'");
}

static void st_missing_offsets(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_missing_offsets", "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "missing 'data_offsets'");
}

static void st_shape_negative(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_negative",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}",
                             16, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "shape[1] is not a non-negative integer");
}

static void st_shape_fraction(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_fraction",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}",
                             8, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "shape[0] is not a non-negative integer");
}

/* 2.0 is a JSON real, not an integer: rejected like safetensors' serde parser does. */
static void st_shape_real_integral(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_real_integral",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}",
                             8, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "shape[0] is not a non-negative integer");
}

static void st_shape_string(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_string",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}}",
                             8, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "shape[1] is not a non-negative integer");
}

static void st_shape_nine_dims(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_nine_dims",
                             "{\"emb.weight\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                             "\"data_offsets\":[0,1]}}",
                             1, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "at most 8 sizes");
}

static void st_shape_not_array(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_not_array",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}",
                             16, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "shape must be an array");
}

/* 2^32 x 2^32 elements: the element count itself overflows 64 bits. */
static void st_shape_product_overflow(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_product_overflow",
                             "{\"emb.weight\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                             "\"data_offsets\":[0,0]}}",
                             0, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "shape product overflows");
}

/* 2^62 F32 elements: the count fits, the byte size (2^64) does not. */
static void st_shape_bytes_overflow(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_bytes_overflow",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                             "\"data_offsets\":[0,0]}}",
                             0, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "shape holds 4611686018427387904 elements of F32", "more than 2^64 bytes");
}

static void st_shape_length_mismatch(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_shape_length_mismatch",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
                             12, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "shape holds 4 elements of F32 (16 bytes) but data_offsets span 12 bytes");
}

static void st_offsets_one(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_offsets_one",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "data_offsets must be two non-negative integers");
}

static void st_offsets_three(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_offsets_three",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
                             8, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "data_offsets must be two non-negative integers");
}

static void st_offsets_negative(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_offsets_negative",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "data_offsets must be two non-negative integers");
}

static void st_offsets_strings(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_offsets_strings",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'",
              "data_offsets must be two non-negative integers");
}

static void st_offsets_reversed(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_offsets_reversed",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "data_offsets [4, 0]",
              "end before they begin");
}

static void st_offsets_past_end(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_offsets_past_end",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                             8, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "data_offsets [0, 16]",
              "run past the data buffer (8 bytes)");
}

/* An end offset near 2^63 must not wrap around when added to anything. */
static void st_offsets_huge(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_offsets_huge",
                             "{\"emb.weight\":{\"dtype\":\"U8\",\"shape\":[4],"
                             "\"data_offsets\":[9223372036854775803,9223372036854775807]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "tensor 'emb.weight'", "run past the data buffer");
}

static void st_overlap(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_overlap",
                             "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                             12, path, &err),
              LB_EFORMAT, &err, path, "tensor 'b.weight' [4, 12] overlaps tensor 'a.weight'");
}

/* Two tensors over the very same bytes (an alias) are an overlap too. */
static void st_alias(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_alias",
                             "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                             8, path, &err),
              LB_EFORMAT, &err, path, "overlaps tensor", "'a.weight'");
}

static void st_gap(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_gap",
                             "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                             20, path, &err),
              LB_EFORMAT, &err, path, "4-byte gap before tensor 'b.weight' at offset 12");
}

static void st_gap_at_start(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_gap_at_start",
                             "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                             16, path, &err),
              LB_EFORMAT, &err, path, "8-byte gap before tensor 'a.weight' at offset 8");
}

static void st_trailing_bytes(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_trailing_bytes",
                             "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                             11, path, &err),
              LB_EFORMAT, &err, path, "cover 8 bytes but the data buffer holds 11",
              "trailing data");
}

/* An empty header with data after it: nothing covers those bytes. */
static void st_no_tensors_but_data(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_no_tensors_but_data", "{}", 5, path, &err), LB_EFORMAT, &err, path,
              "cover 0 bytes but the data buffer holds 5");
}

/* The same tensor name twice in the header object. */
static void st_duplicate_names(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_duplicate_names",
                             "{\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                             "\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                             8, path, &err),
              LB_EFORMAT, &err, path, "duplicate object key", "emb.weight");
}

static void st_metadata_not_object(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_metadata_not_object",
                             "{\"__metadata__\":[\"format\",\"pt\"],"
                             "\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "__metadata__", "expected an object of strings, got array");
}

static void st_metadata_non_string(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_metadata_non_string",
                             "{\"__metadata__\":{\"format\":\"pt\",\"step\":1000},"
                             "\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                             4, path, &err),
              LB_EFORMAT, &err, path, "__metadata__['step']", "expected a string, got integer");
}

/* A valid header whose tensor data was cut short (an interrupted download). */
static void st_truncated_data(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_truncated_data", ST_VALID, 28, path, &err), LB_EFORMAT, &err, path,
              "tensor 'norm.weight'", "data_offsets [24, 32] run past the data buffer (28 bytes)");
}

/* An integer beyond int64 inside the header. */
static void st_integer_too_big(void) {
  char path[PATH_CAP];
  lb_error err;
  EXPECT_FAIL(st_header_case("st_integer_too_big",
                             "{\"emb.weight\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],"
                             "\"data_offsets\":[0,0]}}",
                             0, path, &err),
              LB_EFORMAT, &err, path, "invalid JSON", "too big integer");
}

/* err may be NULL: the status still comes back and nothing is written anywhere. */
static void st_null_err(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  case_dir(dir, "st_null_err");
  join(path, dir, "model.safetensors");
  put_st(path, "{\"w\":{\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
  lb_st_file *f = NULL;
  CHECK(lb_st_open(path, &f, NULL) == LB_EFORMAT && f == NULL);
  CHECK(lb_st_parse("\1\0\0\0\0\0\0\0{", 9, NULL, &f, NULL) == LB_EFORMAT && f == NULL);
}

static void st_missing_file(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  case_dir(dir, "st_missing_file");
  join(path, dir, "model.safetensors");
  lb_st_file *f = NULL;
  lb_error err = {0};
  EXPECT_FAIL(lb_st_open(path, &f, &err), LB_EIO, &err, path, "cannot open");
  CHECK(f == NULL);
}

static void st_directory(void) {
  char dir[PATH_CAP], path[PATH_CAP];
  case_dir(dir, "st_directory");
  join(path, dir, "model.safetensors");
  CHECK(mkdir(path, 0755) == 0);
  lb_st_file *f = NULL;
  lb_error err = {0};
  EXPECT_FAIL(lb_st_open(path, &f, &err), LB_EIO, &err, path, "not a regular file");
  CHECK(f == NULL);
}


#define T(f) {#f, f}
static const lb_test_case CASES[] = {
    T(st_valid_control),
    T(st_empty_file),
    T(st_seven_bytes),
    T(st_header_past_eof),
    T(st_header_over_limit),
    T(st_header_len_u64_max),
    T(st_header_len_zero),
    T(st_header_not_brace),
    T(st_header_json_array),
    T(st_bad_json_syntax),
    T(st_invalid_utf8),
    T(st_header_nul_padding),
    T(st_header_trailing_garbage),
    T(st_entry_not_object),
    T(st_dtype_f4),
    T(st_dtype_int8),
    T(st_dtype_lowercase),
    T(st_dtype_number),
    T(st_missing_dtype),
    T(st_missing_shape),
    T(st_missing_offsets),
    T(st_shape_negative),
    T(st_shape_fraction),
    T(st_shape_real_integral),
    T(st_shape_string),
    T(st_shape_nine_dims),
    T(st_shape_not_array),
    T(st_shape_product_overflow),
    T(st_shape_bytes_overflow),
    T(st_shape_length_mismatch),
    T(st_offsets_one),
    T(st_offsets_three),
    T(st_offsets_negative),
    T(st_offsets_strings),
    T(st_offsets_reversed),
    T(st_offsets_past_end),
    T(st_offsets_huge),
    T(st_overlap),
    T(st_alias),
    T(st_gap),
    T(st_gap_at_start),
    T(st_trailing_bytes),
    T(st_no_tensors_but_data),
    T(st_duplicate_names),
    T(st_metadata_not_object),
    T(st_metadata_non_string),
    T(st_truncated_data),
    T(st_integer_too_big),
    T(st_null_err),
    T(st_missing_file),
    T(st_directory),
};

int main(int argc, char **argv) {
  return lb_test_main(argc, argv, CASES, sizeof CASES / sizeof CASES[0]);
}
