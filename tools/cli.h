/* Shared pieces of the lowbit command-line program. */
#ifndef LB_TOOLS_CLI_H
#define LB_TOOLS_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "lowbit.h"

/* Every subcommand: argc/argv start at the subcommand name; returns the process exit status. */
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);

/* Prints "lowbit: error: <message>" and returns 1. */
int cli_fail(const lb_error *err);
/* Prints "lowbit <cmd>: <message>" with a usage hint and returns 2 (bad flags). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "95.7 MB" (decimal units, as in the guides' tables). */
const char *cli_bytes(uint64_t n, char *buf, size_t cap);
/* "47,852,032" */
const char *cli_count(uint64_t n, char *buf, size_t cap);
/* Whole strings only: "12" yes, "12x" / "" no; the value must lie in [lo, hi]. */
bool cli_parse_int(const char *s, long long lo, long long hi, long long *out);
bool cli_parse_double(const char *s, double lo, double hi, double *out);
/* Peak resident memory of this process in bytes (getrusage; mapped weight pages count). */
uint64_t cli_peak_rss(void);
/* Takes the value of option argv[*i] (advancing *i); NULL when it is missing. */
const char *cli_value(int argc, char **argv, int *i);
/* The value of option argv[*i] of `cmd`, which must be one of the n names in `valued` (options
 * that take a value), advancing *i; NULL after a usage error for an unknown option or a missing
 * value, with *rc its exit status. */
const char *cli_option_value(const char *cmd, int argc, char **argv, int *i, const char *const *valued, size_t n,
                             int *rc);
/* Builds the checkpoint folder dst: fill(ctx, tmp_dir) writes tensors and config.json into a fresh
 * temporary folder beside dst, then src's companion files (generation config, tokenizer; src may be
 * NULL: none) are copied
 * and the folder is renamed to dst. An existing dst is an error unless force, and is replaced only
 * once the new folder is complete; on any failure nothing is left behind. */
typedef lb_status (*cli_fill_fn)(void *ctx, const char *tmp_dir, lb_error *err);
lb_status cli_build_output(const char *dst, bool force, const lb_checkpoint *src, cli_fill_fn fill,
                           void *ctx, lb_error *err);
/* The text file at path, tokenized as a whole by the tokenizer of model_dir with BOS (as it adds
 * it): *tok (to free), *ids (malloc'd, *n of them), *seconds the tokenization took. */
lb_status cli_tokenize_file(const char *model_dir, const char *path, lb_tokenizer **tok, int32_t **ids, size_t *n,
                            double *seconds, lb_error *err);
/* A progress callback (lb_perplexity's) that moves the lb_progress bar at p, its total the one
 * the callback reports (so the caller need not work it out before). */
void cli_progress_cb(void *p, int64_t done, int64_t total);
/* kl's per-position statistics as JSON members kl_mean, kl_stderr, kl_median, kl_p99, kl_max and
 * same_top, added to obj (perplexity --kl-base, compare); false when out of memory. */
bool cli_kl_json(json_t *obj, const lb_kl_result *kl);
/* The open model's checkpoint: tensor bytes and parameters (bits per weight = 8 * bytes / params). */
void cli_model_size(const lb_model *m, double *bytes, double *params);
/* "cpu" or "cuda" (--device); false otherwise. */
bool cli_parse_device(const char *s, lb_device *out);
/* --fp8-act: "auto" (as the checkpoint declares), "off", "g128" (1 x 128 blocks), "token" or
 * "static" (the checkpoint's input scales) */
bool cli_parse_fp8_act(const char *s, lb_fp8_act *out);
/* "auto" or "off" (--kv-cache: a checkpoint's FP8 KV cache). */
bool cli_parse_kv_cache(const char *s, lb_kv_quant *out);
/* The W8A8 mode m runs, in words ("dynamic 1x128", "static per tensor", ...), or NULL when its
 * activations are not quantized (weights-only FP8, or no FP8 weights). */
const char *cli_fp8_act(const lb_model *m, char *buf, size_t cap);
/* A table's model cell: name, or "name (W8A8 act)" when act (cli_fp8_act's words) is not empty. */
const char *cli_w8a8_label(const char *name, const char *act, char *buf, size_t cap);
/* Parses "5GB", "500MB", "2GiB", "123" into bytes; false when malformed. */
bool cli_parse_size(const char *s, uint64_t *out);

#endif
