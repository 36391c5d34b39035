#include "test.h"

#include "io/fs.h"
#include "io/json.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef LB_TEST_DATA_DIR
#define LB_TEST_DATA_DIR "tests/data" /* when built by hand from the repository root */
#endif

int lb_test_failures_ = 0;

static char g_tmpdir[512];

static void cleanup_tmp(void) {
  if (g_tmpdir[0] && !getenv("KEEP_TMP")) lb_remove_tree(g_tmpdir);
}

const char *lb_test_tmpdir(void) {
  if (!g_tmpdir[0]) {
    const char *base = getenv("TMPDIR");
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/lowbit-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(g_tmpdir)) {
      perror("mkdtemp");
      exit(2);
    }
    atexit(cleanup_tmp);
  }
  return g_tmpdir;
}

const char *lb_test_shared(const char *relpath) {
  static char buf[4096];
  const char *root = getenv("LOWBIT_SHARED");
#ifdef LB_TEST_SHARED_DEFAULT
  if (!root || !*root) root = LB_TEST_SHARED_DEFAULT;
#endif
  if (!root) root = "../shared";
  snprintf(buf, sizeof buf, "%s/%s", root, relpath);
  if (access(buf, R_OK) != 0) {
    fprintf(stderr, "FATAL: shared file missing: %s (set LOWBIT_SHARED to the shared folder)\n",
            buf);
    exit(2); /* a missing fixture fails the test loudly; it is never a skip */
  }
  return buf;
}

const char *lb_test_data(const char *relpath) {
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/%s", LB_TEST_DATA_DIR, relpath);
  return buf;
}

char *lb_test_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) {
    buf[n] = 0;
    if (len) *len = (size_t)n;
  }
  return buf;
}

int lb_test_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, len, f);
  return (fclose(f) == 0 && w == len) ? 0 : -1;
}

int lb_test_main(int argc, char **argv, const lb_test_case *cases, size_t n) {
  int passed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    if (argc > 1) {
      int want = 0;
      for (int a = 1; a < argc; a++) want |= strcmp(argv[a], cases[i].name) == 0;
      if (!want) continue;
    }
    int before = lb_test_failures_;
    cases[i].fn();
    if (lb_test_failures_ == before) {
      passed++;
      printf("ok   %s\n", cases[i].name);
    } else {
      failed++;
      printf("FAIL %s\n", cases[i].name);
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

json_t *lb_test_json(const char *text) {
  json_t *j = NULL;
  lb_error err = {0};
  CHECK_OK(lb_json_parse(text, strlen(text), "config", &j, &err), &err);
  return j;
}
