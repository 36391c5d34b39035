/* Calibration text for lowbit quantize: a file given with --calib (the whole text as one document,
 * or one document per non-blank line), or the "dataset" key of a --config file (a text file's
 * path, relative to the working folder or to the config file, or a list of strings). */
#ifndef LB_TOOLS_CALIB_INPUT_H
#define LB_TOOLS_CALIB_INPUT_H

#include "lowbit.h"

typedef struct cli_docs {
  const char **docs; /* into buf */
  size_t *lens;
  size_t n;
  char *buf;
  size_t len;
} cli_docs;

lb_status cli_calib_docs_file(const char *path, bool lines, cli_docs *out, lb_error *err);
/* *found false (and nothing allocated) when the config has no "dataset". */
lb_status cli_calib_docs_config(const char *config, bool lines, bool *found, cli_docs *out,
                                lb_error *err);
void cli_docs_free(cli_docs *d);

#endif
