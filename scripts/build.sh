#!/usr/bin/env bash
# Configures and builds one configuration: scripts/build.sh [release|asan] -> build/ or build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-release}"
case "$kind" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOWBIT_SANITIZE=ON) ;;
  *) echo "usage: scripts/build.sh [release|asan]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${flags[@]}" -DPython3_EXECUTABLE="$(command -v python3)" >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
echo "$dir"
