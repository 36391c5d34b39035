#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, and run lowbit on the default
# model (the shared pocket-llama-48m when present, else the folder given as the first argument):
# inspect it, continue a prompt greedily, and measure WikiText-2 perplexity (about 5 minutes on 2
# cores; the model's README gives 283.50 from Transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dir=$(scripts/build.sh release)
shared="${LOWBIT_SHARED:-../shared}"
model="${1:-$shared/models/pocket-llama-48m}"
"$dir/lowbit" inspect "$model"
echo
"$dir/lowbit" generate "$model" -p "The history of the city" -n 64
echo
wiki="$shared/data/wikitext-2-raw/wiki.test.raw"
if [[ -f "$wiki" ]]; then
  "$dir/lowbit" perplexity "$model" -f "$wiki" --ctx 1024
else
  echo "main: $wiki not found: perplexity skipped (set LOWBIT_SHARED)" >&2
  exit 1
fi
