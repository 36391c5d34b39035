/* A minimal test harness: each test executable runs its TEST functions and prints one closing
 * line "N passed, N failed". A check that fails prints file:line and the expression. */
#ifndef LB_TEST_H
#define LB_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

extern int lb_test_failures_;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
      lb_test_failures_++;                                                                         \
    }                                                                                              \
  } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                     \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
      lb_test_failures_++;                                                                         \
    }                                                                                              \
  } while (0)

/* An lb_status call that must succeed; prints the library's message when it does not. */
#define CHECK_OK(call, errp)                                                                       \
  do {                                                                                             \
    lb_status s_ = (call);                                                                         \
    if (s_ != LB_OK) {                                                                             \
      fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call, lb_strerror(s_),         \
              (errp)->msg);                                                                        \
      lb_test_failures_++;                                                                         \
    }                                                                                              \
  } while (0)

typedef void (*lb_test_fn)(void);
typedef struct {
  const char *name;
  lb_test_fn fn;
} lb_test_case;

/* Runs the tests (all, or those named in argv) and returns the process exit status. */
int lb_test_main(int argc, char **argv, const lb_test_case *cases, size_t n);

/* The shared data folder: $LOWBIT_SHARED, else the compiled-in default (../shared beside the
 * repository). A missing file is a failure, never a skip. Returns a static buffer. */
const char *lb_test_shared(const char *relpath);
/* A file under tests/data of the source tree (fixtures committed with the tests). */
const char *lb_test_data(const char *relpath);
/* A fresh empty temporary directory for this test process (removed at exit unless KEEP_TMP). */
const char *lb_test_tmpdir(void);
/* Reads a whole file into a malloc'd buffer (NUL-terminated); NULL on failure. */
char *lb_test_read_file(const char *path, size_t *len);
/* Writes a buffer to a file; returns 0 on success. */
int lb_test_write_file(const char *path, const void *data, size_t len);
/* Parses JSON text that a test expects to be valid (a failure is a test failure; NULL then). */
struct json_t;
struct json_t *lb_test_json(const char *text);

#endif
