#!/usr/bin/env bash
# The CUDA kernel sandbox on a GPU machine, built standalone with nvcc (no other library needed):
#   bench/cuda/sandbox.sh [ITERS]   variants: LB_Q4_ROWS=R LB_Q4_DEPTH=P bench/cuda/sandbox.sh
# The CMake build makes the same program as build/lb_kernel_sandbox when the CUDA backend is on.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${TMPDIR:-/tmp}/lb_kernel_sandbox_r${LB_Q4_ROWS:-2}p${LB_Q4_DEPTH:-4}"
nvcc -O3 -arch=sm_90 -std=c++17 -Iinclude -Isrc -Xcompiler -D_DEFAULT_SOURCE \
  -DLB_Q4_ROWS="${LB_Q4_ROWS:-2}" -DLB_Q4_DEPTH="${LB_Q4_DEPTH:-4}" \
  bench/cuda/gemv_sandbox.cu src/backend/cuda/gemv_q4.cu src/backend/cuda/runtime.cu src/quant/qweight.c src/base/status.c -lcublas \
  src/base/dtype.c -o "$out"
"$out" "${1:-200}"
