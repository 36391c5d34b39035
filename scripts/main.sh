#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, and run lowbit on the default
# model (the shared pocket-llama-48m when present, else the folder given as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dir=$(scripts/build.sh release)
model="${1:-${LOWBIT_SHARED:-../shared}/models/pocket-llama-48m}"
"$dir/lowbit" inspect "$model"
