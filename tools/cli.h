/* Shared pieces of the lowbit command-line program. */
#ifndef LB_TOOLS_CLI_H
#define LB_TOOLS_CLI_H

#include <stdio.h>

#include "lowbit.h"

/* Every subcommand: argc/argv start at the subcommand name; returns the process exit status. */
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_devices(int argc, char **argv);

/* Prints "lowbit: error: <message>" and returns 1. */
int cli_fail(const lb_error *err);
/* Prints "lowbit <cmd>: <message>" with a usage hint and returns 2 (bad flags). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "95.7 MB" (decimal units, as in the guides' tables). */
const char *cli_bytes(uint64_t n, char *buf, size_t cap);
/* "47,852,032" */
const char *cli_count(uint64_t n, char *buf, size_t cap);
/* Parses "5GB", "500MB", "2GiB", "123" into bytes; false when malformed. */
bool cli_parse_size(const char *s, uint64_t *out);

#endif
