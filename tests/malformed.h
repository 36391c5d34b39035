/* Shared pieces of the malformed-input tests (test_malformed_*.c): writing real files into a
 * fresh folder per case, the tiny Llama config and checkpoint the cases break one thing of, and the
 * check that a failure has the expected status and a message naming what it should. */
#ifndef LB_TEST_MALFORMED_H
#define LB_TEST_MALFORMED_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "test.h"

#define PATH_CAP 1024

/* A growable string. */
typedef struct {
  char *p;
  size_t n, cap;
} sbuf;

typedef struct {
  char name[96];
  const char *dtype;
  int ndim;
  int64_t shape[LB_MAX_DIMS];
} tdesc;

typedef struct {
  tdesc t[64];
  int n;
} tlist;

#define EXPECT_FAIL(got, want, err, ...)                                                           \
  expect_fail_(__FILE__, __LINE__, got, want, err, __VA_ARGS__, (const char *)NULL)

#define DROP "\x01(drop)" /* as a value: leave the key out */

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void case_dir(char *dir, const char *name);
void join(char *out, const char *dir, const char *file);
void put_file(const char *path, const void *data, size_t len);
void put_text(const char *dir, const char *file, const char *text);
void put_st_raw(const char *path, uint64_t hlen, const void *header, size_t header_len,
                       size_t data_len, uint8_t fill);
void put_st(const char *path, const char *header, size_t data_len);
void expect_fail_(const char *file, int line, lb_status got, lb_status want,
                         const lb_error *err, ...);
char *config_json(const char *extra, ...);
tdesc *tl_add(tlist *l, const char *name, int64_t d0, int64_t d1);
tdesc *tl_get(tlist *l, const char *name);
void tl_remove(tlist *l, const char *name);
void llama_tensors(tlist *l);
void write_tensors(const char *path, const tlist *l, int from, int to);
void write_checkpoint(const char *dir, const tlist *l);
void write_sharded(const char *dir, const tlist *l, int split);
lb_status open_checkpoint(const char *dir, lb_error *err);
lb_status open_tensors(const char *dir, lb_error *err);

#endif
