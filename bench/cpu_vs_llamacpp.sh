#!/usr/bin/env bash
# lowbit bench and llama.cpp's llama-bench on the same machine, in alternating rounds (a busy
# machine drifts by 10-50% within minutes: compare within a round, report the rounds' ratios).
#
#   LLAMA_BENCH=/path/to/llama-bench GGUF_DIR=/path/to/ggufs ROUNDS=3 \
#     bench/cpu_vs_llamacpp.sh LOWBIT_INT4_DIR LOWBIT_INT8_DIR
#
# GGUF_DIR holds pocket-Q4_0.gguf, pocket-Q8_0.gguf and pocket-Q4_K_M.gguf. How they and llama-bench
# were made (llama.cpp from the llama-cpp-python sdist, its converter and llama-quantize) is in
# bench/BENCHMARKS.md; none of llama.cpp is kept in this repository. Threads: -t (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}"
: "${GGUF_DIR:?set GGUF_DIR to the folder of the pocket-*.gguf files}"
ROUNDS="${ROUNDS:-3}"
T="${T:-2}"
int4="${1:?lowbit 4-bit checkpoint folder}"
int8="${2:?lowbit 8-bit checkpoint folder}"
for r in $(seq "$ROUNDS"); do
  echo "## round $r ($(date -u +%H:%M:%S))"
  "$LLAMA_BENCH" -m "$GGUF_DIR/pocket-Q4_0.gguf" -m "$GGUF_DIR/pocket-Q8_0.gguf" \
    -m "$GGUF_DIR/pocket-Q4_K_M.gguf" -p 512 -n 128 -r 3 -t "$T" 2>/dev/null | grep -E '^\|'
  build/lowbit bench "$int4" "$int8" -p 512 -n 128 -r 3 -t "$T" 2>/dev/null | grep -E '^\|'
done
