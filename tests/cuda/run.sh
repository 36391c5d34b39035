#!/usr/bin/env bash
# The CUDA backend against the CPU on a GPU machine (ctest label "cuda"; scripts/test.sh --cuda):
#   tests/cuda/run.sh BUILD_DIR WORK_DIR
# Quantizes the shared pocket-llama into every method's layout under WORK_DIR (kept between runs),
# then: test_cuda_model (logits of prefill, graph-replayed decode, a chunk on the cache and a batch
# of 12 sequences, GPU vs the CPU's reference path) on bf16 and each, again for three of them with
# split-KV decode attention forced, for five with GEMVs up to 32 rows, for four with the
# tensor-core 4-bit GEMV forced and for three with the GEMM prefill attention instead of flash,
# and perplexity on pocket-valid (20 windows of 512) on both devices (CPU: --ref-kernels), which
# must agree within 0.1% (the issue's bound; the logits bound is the test's own, see its header).
#
# LLM.int8 has looser logit bounds (5%, KL 1e-3): the CPU follows bitsandbytes' int8 product
# (activations rounded to int8 per row, outlier columns apart), and so do the GPU's decode GEMV
# (up to 8 rows) and its tensor-core product (9-16 rows, the 12-sequence batch), but longer
# calls multiply by the fp16 dequantized weight without rounding the activations (measured 2.3e-2
# and 6.6e-4, 2026-11-23). Where both sides round, they round inputs that differ by the GPU's fp16 rounding,
# each int8 code that flips moves a product by a whole step, and a call's outlier columns are
# those of all its rows (the CPU runs a batch's sequences one by one): with the 12-row batch and
# the 20-row chunk through the GEMV the worst row measured 3.0e-2 (KL 7.8e-4), hence 5%.
set -euo pipefail
B=$(cd "$1" && pwd) W=$2 C=$(cd "$(dirname "$0")" && pwd)
S=${LOWBIT_SHARED:-$(dirname "$0")/../../../shared}
M=$S/models/pocket-llama-48m TEXT=$S/data/pocket-valid.txt CAL=$S/data/calibration/groups_merged.txt
for f in "$M/config.json" "$M/model.safetensors" "$TEXT" "$CAL"; do
  [[ -f $f ]] || { echo "tests/cuda/run.sh: missing $f (LOWBIT_SHARED=$S)"; exit 1; }
done
mkdir -p "$W"
q() { # name, quantize flags
  local name=$1; shift
  [[ -f $W/$name/config.json ]] || "$B/lowbit" quantize "$M" "$W/$name" "$@" > "$W/$name.log" 2>&1 ||
    { cat "$W/$name.log"; exit 1; }
}
cal=(--calib "$CAL" --nsamples 16 --seqlen 256)
q rtn4 --method rtn --bits 4 --group 128
q rtn4-head --method rtn --bits 4 --group 128 --lm-head
q rtn8 --method rtn --bits 8 --group 128
q gptq4-act --method gptq --bits 4 --group 128 --desc-act "${cal[@]}"
q awq4 --method awq "${cal[@]}"
q nf4-dq --method nf4 --double-quant
q fp4 --method fp4
q int8 --method int8
q fp8 --method fp8
# compressed-tensors FP8 W8A8: llm-compressor's FP8 preset (per-tensor weights, static input scales
# calibrated), per-channel weights with per-token activations, and FP8_BLOCK
q fp8-static --method fp8 --format compressed-tensors --scheme FP8 "${cal[@]}"
q fp8-dynamic --config "$C/ct-fp8-dynamic.json"
q fp8-block --method fp8 --format compressed-tensors --scheme FP8_BLOCK
q hqq4 --method hqq --bits 4
dirs=("$M")
for d in rtn4 rtn4-head rtn8 gptq4-act awq4 nf4-dq fp4 int8 fp8 hqq4; do dirs+=("$W/$d"); done
fail=0
args=()
for d in "${dirs[@]}"; do [[ $d == */int8 ]] && args+=("$d@0.05,1e-3") || args+=("$d"); done
"$B/tests/test_cuda_model" "$TEXT" "${args[@]}" || fail=1
# split-KV decode attention (it starts at 256 keys a split: pocket-llama's 128 would never split)
echo "split-KV forced (LOWBIT_CUDA_ATTN_SPLIT=16):"
LOWBIT_CUDA_ATTN_SPLIT=16 "$B/tests/test_cuda_model" "$TEXT" "$M" "$W/rtn4" "$W/nf4-dq" || fail=1
# GEMVs of up to 32 rows (12-sequence decode, the 20-row chunk; by default cuBLAS takes them)
echo "GEMV up to 32 rows (LOWBIT_CUDA_GEMV_ROWS=32):"
LOWBIT_CUDA_GEMV_ROWS=32 "$B/tests/test_cuda_model" "$TEXT" "$W/rtn4" "$W/gptq4-act" "$W/hqq4" "$W/fp8" "$W/int8@0.05,1e-3" || fail=1
# one row's 4-bit g128 GEMV on the tensor cores (gemv_tc.cu): by default only weights of many more
# rows than pocket-llama's take it, so it is forced here
echo "4-bit GEMV on the tensor cores forced (LOWBIT_CUDA_GEMV_TC=force):"
LOWBIT_CUDA_GEMV_TC=force "$B/tests/test_cuda_model" "$TEXT" "$W/rtn4" "$W/rtn4-head" "$W/awq4" "$W/gptq4-act" || fail=1
# NF4's one-row GEMV with a warp a row pair (gemv.cu: tall_fits): by default only weights of many
# more rows than pocket-llama's take it, so it is forced here
echo "NF4 GEMV a warp a row pair forced (LOWBIT_CUDA_GEMV_TALL=force):"
LOWBIT_CUDA_GEMV_TALL=force "$B/tests/test_cuda_model" "$TEXT" "$W/nf4-dq" "$W/fp4" || fail=1
# one row's GEMV staged in shared memory (gemv.cu: gemv_staged): pocket-llama's weights all fit the
# rule, so the passes above take it for every format but NF4/FP4 (not staged by default); this
# pass turns it off (the register GEMV) and the next forces it for NF4/FP4 too
echo "one-row GEMV not staged (LOWBIT_CUDA_GEMV_STAGE=0):"
LOWBIT_CUDA_GEMV_STAGE=0 "$B/tests/test_cuda_model" "$TEXT" "$W/rtn4" "$W/hqq4" "$W/fp8" "$W/rtn8" "$W/int8@0.05,1e-3" || fail=1
echo "one-row GEMV staged, forced (LOWBIT_CUDA_GEMV_STAGE=force):"
LOWBIT_CUDA_GEMV_STAGE=force "$B/tests/test_cuda_model" "$TEXT" "$W/nf4-dq" "$W/fp4" || fail=1
echo "one-row 4-bit GEMV staged on the tensor cores (LOWBIT_CUDA_GEMV_STAGE_TC=force):"
LOWBIT_CUDA_GEMV_STAGE_TC=force "$B/tests/test_cuda_model" "$TEXT" "$W/rtn4" "$W/rtn4-head" "$W/awq4" "$W/gptq4-act" || fail=1
# prefill attention through cuBLAS and the softmax kernel (the flash kernel takes pocket-llama's
# head_dim of 64 by default; the GEMM path stays for the head dims it does not take)
echo "GEMM prefill attention (LOWBIT_CUDA_FLASH=0):"
LOWBIT_CUDA_FLASH=0 "$B/tests/test_cuda_model" "$TEXT" "$M" "$W/rtn4" "$W/fp8" || fail=1
# W8A8 (--fp8-act): both sides quantize FP8 weights' activations to E4M3. With the tensor-core
# product off, the 64-token prefill and the chunks go to the FP8 tensor cores (cuBLASLt); the
# decode GEMV and the tensor-core product read the activations quantized in place; and the fp16
# path for the FP8 tensor cores turned off.
# Bounds 10% and KL 1e-2, as for LLM.int8 and for the same reason: the GPU quantizes its fp16
# activations, the CPU its fp32 ones, so about one code in 2^8 (fp16's 2^-11 against E4M3's
# 2^-3 steps) lands on the other side of a midpoint and moves by a whole E4M3 step; through 10
# blocks that moved logits by up to 7.4e-2 of their range, KL 4.6e-3 (H100, 2026-11-24; the
# same with the fp16 path, so not the FP8 tensor cores' doing). For the same reason the argmax may
# swap where the top two logits are within that 10% (two rows of the per-token batch did, at more
# than 1%). Perplexity still agrees within 0.1% (the table below).
w8a8=("$W/fp8@0.1,1e-2,0.1")
echo "W8A8 in 1 x 128 blocks (LOWBIT_TEST_FP8_ACT=g128), FP8 tensor cores from 3 rows:"
LOWBIT_TEST_FP8_ACT=g128 LOWBIT_CUDA_MMA_ROWS=0 "$B/tests/test_cuda_model" "$TEXT" "${w8a8[@]}" || fail=1
echo "W8A8 per token, FP8 tensor cores from 3 rows:"
LOWBIT_TEST_FP8_ACT=token LOWBIT_CUDA_MMA_ROWS=0 "$B/tests/test_cuda_model" "$TEXT" "${w8a8[@]}" || fail=1
echo "W8A8 in 1 x 128 blocks, the GEMV, the tensor-core product and fp16 cuBLAS (LOWBIT_CUDA_FP8_TC=0):"
LOWBIT_TEST_FP8_ACT=g128 LOWBIT_CUDA_FP8_TC=0 "$B/tests/test_cuda_model" "$TEXT" "${w8a8[@]}" || fail=1
# compressed-tensors W8A8 checkpoints run as their config declares (the default, auto): a static
# input_scale per Linear (calibrated by lowbit quantize) on per-tensor weights, per-token scales on
# per-channel weights, and 1 x 128 groups on 128 x 128 blocks. The same cause of differences, so
# the same KL bound; the worst row measured 8.0e-2 (static, per-channel weights) and 1.09e-1 (per
# token; KL 5.0e-3, H100, 2026-11-24, before the norm quantized from fp32), hence 15% for the logits. (tests/data/tiny's
# random models, on which test_model checks the CPU against Transformers + compressed-tensors,
# amplify the flips too much for a GPU check: 0.33 of the range, KL 0.03; their dense logits
# already move by 1.2e-2 in fp16.)
echo "compressed-tensors W8A8 as declared (LOWBIT_TEST_FP8_ACT=auto): static input_scale, per token, FP8_BLOCK:"
LOWBIT_TEST_FP8_ACT=auto "$B/tests/test_cuda_model" "$TEXT" "$W/fp8-static@0.15,1e-2,0.1" \
  "$W/fp8-dynamic@0.15,1e-2,0.1" "$W/fp8-block@0.15,1e-2,0.1" || fail=1
echo
echo "| model | ppl cpu | ppl cuda | cuda/cpu - 1 | cpu tok/s | cuda tok/s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for d in "${dirs[@]}" "$W/fp8@g128" "$W/fp8@token" "$W/fp8-static@auto" "$W/fp8-dynamic@auto" \
         "$W/fp8-block@auto"; do
  act=off
  [[ $d == *@* ]] && act=${d#*@} d=${d%@*}
  "$B/lowbit" perplexity "$d" -f "$TEXT" --ctx 512 --max-windows 20 --json --ref-kernels --fp8-act $act \
    > "$W/ppl-cpu.json" 2> "$W/ppl-cpu.log" || { cat "$W/ppl-cpu.log"; fail=1; }
  "$B/lowbit" perplexity "$d" -f "$TEXT" --ctx 512 --max-windows 20 --json --device cuda --fp8-act $act \
    > "$W/ppl-cuda.json" 2> "$W/ppl-cuda.log" || { cat "$W/ppl-cuda.log"; fail=1; }
  [[ $act != off ]] && d="$d ($act)"
  python3 - "$d" "$W/ppl-cpu.json" "$W/ppl-cuda.json" <<'PY' || fail=1
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[2:4])
r = b["ppl"] / a["ppl"] - 1
print(f"| {sys.argv[1].rstrip('/').split('/')[-1]} | {a['ppl']:.4f} | {b['ppl']:.4f} | {r:+.2e} | "
      f"{a['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} |")
sys.exit(0 if abs(r) <= 1e-3 else 1)
PY
done
[[ $fail == 0 ]] && echo "cuda: all checks passed" || echo "cuda: FAILED"
exit $fail
