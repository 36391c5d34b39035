#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 60) from its seed
# corpus. A crash fails the run; the crashing input is left in build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
scripts/setup.sh --fuzz
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOWBIT_FUZZ=ON \
  -DPython3_EXECUTABLE="$(command -v python3)" >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
ctest --test-dir build-fuzz --output-on-failure -R "^fuzz_"  # replays each seed corpus (past crashes included)
mkdir -p build-fuzz/artifacts
for target in fuzz_safetensors fuzz_config fuzz_tokenize; do
  work="build-fuzz/corpus-$target"
  rm -rf "$work" && mkdir -p "$work"
  cp tests/fuzz/corpus/"$target"/* "$work"/
  echo "fuzz: $target for ${secs}s"
  "build-fuzz/tests/fuzz/$target" "$work" -max_total_time="$secs" -max_len=65536 \
    -dict=tests/fuzz/"${target#fuzz_}".dict \
    -artifact_prefix=build-fuzz/artifacts/"$target"- -print_final_stats=1 2>&1 | tail -n 12
done
