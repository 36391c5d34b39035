#!/usr/bin/env bash
# The CUDA kernel sandbox on a GPU machine, built standalone with nvcc (no other library needed):
#   bench/cuda/sandbox.sh [ITERS]
# The CMake build makes the same program as build/lb_kernel_sandbox when the CUDA backend is on.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${TMPDIR:-/tmp}/lb_kernel_sandbox"
nvcc -O3 -arch=sm_90 -std=c++17 -Iinclude -Isrc -Xcompiler -D_DEFAULT_SOURCE \
  bench/cuda/gemv_sandbox.cu src/backend/cuda/gemv_q4.cu src/backend/cuda/runtime.cu src/quant/qweight.c src/base/status.c -lcublas \
  src/base/dtype.c -o "$out"
"$out" "${1:-200}"
