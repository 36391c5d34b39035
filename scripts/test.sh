#!/usr/bin/env bash
# Every test on a fresh machine: install what is missing, build, run ctest.
#   scripts/test.sh          the Release build (build/)
#   scripts/test.sh --asan   the AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/)
#   scripts/test.sh --cuda   only the tests that need a GPU (ctest label "cuda"; Release build):
#                            the others leave them out, as a machine without a GPU cannot run them
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
kind=release
[[ "${1:-}" == "--asan" ]] && kind=asan
labels=(-LE cuda)
[[ "${1:-}" == "--cuda" ]] && labels=(-L cuda)
dir=$(scripts/build.sh "$kind")
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" "${labels[@]}"
