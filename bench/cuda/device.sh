#!/bin/bash
# The CUDA backend on the GPU machine (device tool), in calls on one warm machine:
#   bash bench/cuda/device.sh build [nosandbox]  # carry .deb .xfer/a (first call): lowbit with CUDA
#                                                # (sm_90), then the kernel sandbox (SANDBOX=int8:
#                                                # that format alone)
#   bash bench/cuda/device.sh check    # carry .xfer/b: pocket-llama rebuilt, tests/cuda/run.sh
#   bash bench/cuda/device.sh attn [REPS]     # flash prefill attention: checks, then timed
#   bash bench/cuda/device.sh sample [DRAWS]  # the device sampler against the host's, and timed
#   bash bench/cuda/device.sh genab DIR [N]   # generate: sampling on the device against the host
#   bash bench/cuda/device.sh synth SHAPE "METHOD ARGS|bf16"...  # 7B-class models, bench --device cuda
#                                      (KEEP=1: keep the models for the next call, and reuse them;
#                                       AB="A=0 B=0;C=0": tg128 again with those settings;
#                                       FLAGS="--fp8-act g128": more bench flags, results -f<flags>)
#   bash bench/cuda/device.sh breakdown DIR # decode tok/s with stages left out (LOWBIT_CUDA_SKIP)
#   bash bench/cuda/device.sh profile DIR   # ncu: time per kernel over 4 decode steps
#   bash bench/cuda/device.sh tiny          # test_cuda_model on synth's tiny shapes, bf16 and 4-bit
#   bash bench/cuda/device.sh stamps FORMAT...  # carry .deb: where the batch-1 GEMV's time goes
#                                      (a build with -DLB_GEMV_STAMPS, the sandbox's stamps table)
#   bash bench/cuda/device.sh lab [ITERS [floor|hol|chain]]  # bench/cuda/gemv_lab.cu: 4-bit GEMV launch shapes
#                                      against the library's, checked and timed (nvcc alone, no carry;
#                                      STAMPS=1: with the blocks' timestamps, which cost time)
#   bash bench/cuda/device.sh gen SHAPE "METHOD ARGS|bf16"...  # the guides' table (bench --gen):
#                                      LENS (default 32,...,2048) and BATCHES (1,4,16), KEEP as synth
# Everything lives under /tmp/lbc; results go to $OUT. (.deb and .xfer: bench/ecosystem/prepare.sh)
set -uo pipefail
E=/tmp/lbc
export LD_LIBRARY_PATH=$E/deb/usr/lib/x86_64-linux-gnu:$E/deb/usr/lib/x86_64-linux-gnu/openblas-pthread
export LOWBIT_SHARED=$E/shared
# make_synth DIR SHAPE bf16|"METHOD ARGS": lowbit synth, dense or quantized
make_synth() {
  if [[ $3 == bf16 ]]; then $E/build/lowbit synth "$1" --shape "$2" --force > /dev/null
  else $E/build/lowbit synth "$1" --shape "$2" --force $3 > /dev/null; fi
}
# configure DIR [CMAKE ARGS...]: a Release build with CUDA (sm_90) against the unpacked .deb
configure() {
  local dir=$1 L=$E/deb/usr/lib/x86_64-linux-gnu I=$E/deb/usr/include
  shift
  mkdir -p $E/deb
  [[ -d $E/deb/usr ]] || for f in .deb/*.deb; do dpkg -x "$f" $E/deb; done
  cmake -S . -B $dir -DCMAKE_BUILD_TYPE=Release -DLOWBIT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DJANSSON_INCLUDE_DIR=$I -DJANSSON_LIBRARY=$L/libjansson.so \
    -DPCRE2_INCLUDE_DIR=$I -DPCRE2_LIBRARY=$L/libpcre2-8.so \
    -DUTF8PROC_INCLUDE_DIR=$I -DUTF8PROC_LIBRARY=$L/libutf8proc.so \
    -DOPENBLAS_INCLUDE_DIR=$I/x86_64-linux-gnu/openblas-pthread \
    -DOPENBLAS_LIBRARY=$L/openblas-pthread/libopenblas.so "$@" > $E/cmake.log 2>&1 || { tail -30 $E/cmake.log; return 1; }
}
case "${1:-}" in
build)
  mkdir -p $E
  [[ -f $E/part00 || ! -d .xfer/a ]] || cp .xfer/a/part00 $E/ || exit 1
  configure $E/build || exit 1
  cmake --build $E/build -j16 --target lowbit-cli test_cuda_model lb_kernel_sandbox lb_sample_sandbox lb_attn_sandbox > $E/build.log 2>&1 ||
    { grep -m20 -B2 -A8 error $E/build.log; exit 1; }
  [[ ${2:-} == nosandbox ]] || $E/build/lb_kernel_sandbox 100 ${SANDBOX:+"$SANDBOX"} | tee $OUT/sandbox.md
  ;;
attn)
  # the flash prefill attention against float64, then timed against the GEMM path
  $E/build/lb_attn_sandbox ${2:-10} | tee $OUT/attn.md
  ;;
sample)
  # the device sampler against the host's, then timed (bench/cuda/sample_sandbox.c)
  $E/build/lb_sample_sandbox ${2:-40} | tee $OUT/sample.md
  ;;
genab)
  # generate on the device, choosing on the device and (LOWBIT_CUDA_SAMPLE=host) on the host, in
  # ROUNDS alternating rounds: decode tok/s and whether the chosen ids are the same
  m=$2 n=${3:-256}
  for set in "--temp 0" "--temp 0.7 --top-p 0.9" "--temp 1 --top-k 50" "--temp 0.8 --top-k 40 --top-p 0.95"; do
    for round in $(seq ${ROUNDS:-2}); do
      for mode in device host; do
        env $([[ $mode == host ]] && echo LOWBIT_CUDA_SAMPLE=host) $E/build/lowbit generate $m -p "Once upon a time" \
          -n $n $set --seed 5 --ignore-eos --json --device cuda > $E/gen-$mode.json 2> $E/gen.log || { cat $E/gen.log; exit 1; }
      done
      python3 - "$set" $E/gen-device.json $E/gen-host.json <<'PY'
import json, sys
d, h = (json.load(open(p)) for p in sys.argv[2:4])
print(f"| {sys.argv[1]} | {d['decode_tokens_per_s']:.1f} | {h['decode_tokens_per_s']:.1f} | "
      f"{'same' if d['ids'] == h['ids'] else 'DIFFERENT'} |")
PY
    done
  done | tee -a $OUT/genab.md
  ;;
stamps)
  # the batch-1 GEMV's block timestamps (gemv.cu, -DLB_GEMV_STAMPS) for each FORMAT named
  configure $E/stamps -DCMAKE_CUDA_FLAGS=-DLB_GEMV_STAMPS || exit 1
  cmake --build $E/stamps -j16 --target lb_kernel_sandbox > $E/build.log 2>&1 || { grep -m20 -A8 error $E/build.log; exit 1; }
  shift
  for f in "$@"; do
    SANDBOX_PART=gemvtime $E/stamps/lb_kernel_sandbox 100 "$f" > "$OUT/stamps-${f// /_}.md" 2>&1
    grep -h -A6 "^Stamps" "$OUT/stamps-${f// /_}.md" | grep "^|"
  done
  ;;
lab)
  mkdir -p $E
  nvcc -O3 -std=c++17 -arch=sm_90 -Isrc -Iinclude -Xptxas -v ${STAMPS:+-DLB_GEMV_STAMPS} bench/cuda/gemv_lab.cu \
    -o $E/gemv_lab > $E/lab-build.log 2>&1 || { grep -m20 -A4 error $E/lab-build.log; exit 1; }
  grep -E -A3 "Compiling entry" $E/lab-build.log | grep -E "Compiling|Used|spill" > $OUT/lab-regs.txt
  timeout 240 $E/gemv_lab ${2:-100} ${3:-} | tee $OUT/lab${3:+-$3}${STAMPS:+-stamps}.md
  ;;
check)
  M=$E/shared/models/pocket-llama-48m
  mkdir -p $M $E/shared/data/calibration
  [[ -f $M/model.safetensors ]] || cat $E/part00 .xfer/b/part01 | xz -d > $M/model.safetensors || exit 1
  if [[ -d .xfer/b ]]; then
    cp .xfer/b/*.json $M/ && cp .xfer/b/pocket-valid.txt $E/shared/data/
    cp .xfer/b/groups_merged.txt $E/shared/data/calibration/
  fi
  bash tests/cuda/run.sh $E/build $E/work 2>&1 | tee $OUT/check.md
  $E/build/lowbit bench $M $E/work/rtn4 $E/work/nf4-dq -p 512 -n 128 --device cuda 2>&1 | tee -a $OUT/check.md
  ;;
synth|gen)
  verb=$1; shift
  shape=$1; shift
  for spec in "$@"; do
    name=$E/syn/$shape-${spec// /}
    out=$OUT/$([[ $verb == gen ]] && echo gen || echo bench)-${name##*/}${FLAGS:+-f${FLAGS// /}}
    [[ -f $name/config.json && -n ${KEEP:-} ]] || make_synth $name $shape "$spec" || exit 1
    if [[ $verb == gen ]]; then # the guides' table
      L=${LENS:-32,64,128,256,512,1024,2048}
      $E/build/lowbit bench $name --gen -p $L -n $L -b ${BATCHES:-1,4,16} -r 1 --device cuda --json \
        > $out.json 2> $out.log
      tail -30 $out.log
    else
      df -h /tmp | tail -1
      $E/build/lowbit bench $name -p 512,2048 -n 128 -r 3 --device cuda ${FLAGS:-} --json > $out.json 2> $out.log
      cat $out.log
      for v in ${AB-LOWBIT_CUDA_GRAPH=0}; do # decode with a setting changed (AB="VAR=x VAR=y ...")
        echo "tg128 with $v: $(env ${v//;/ } $E/build/lowbit bench $name -p 0 -n 128 -r 3 --device cuda ${FLAGS:-} 2>&1 | tail -1 | awk -F'|' '{print $(NF-1)}')"
      done
    fi
    [[ -n ${KEEP:-} ]] || rm -rf $name
  done
  ;;
tiny)
  # GPU against CPU on lowbit synth's tiny shape (random ids; no pocket-llama needed)
  # (tiny-qwen2: q/k/v biases and a sliding window; tiny-llama-bias: a bias on every Linear)
  for spec in "tiny bf16" "tiny --method rtn --bits 4 --group 128" "tiny --method nf4 --double-quant" \
              "tiny --method fp8" "tiny --method int8" "tiny-qwen2 bf16" \
              "tiny-llama-bias bf16" "tiny-llama-bias --method rtn --bits 4 --group 128"; do
    shape=${spec%% *} rest=${spec#* } name=$E/syn/${spec// /}
    make_synth $name $shape "$rest" || exit 1
    # LLM.int8: a looser logit bound (tests/cuda/run.sh says why)
    [[ $rest == *int8* ]] && dirs+=("$name@0.05,1e-3") || dirs+=("$name")
  done
  $E/build/tests/test_cuda_model --random-ids "${dirs[@]}"
  echo "split-KV forced (LOWBIT_CUDA_ATTN_SPLIT=8):"
  LOWBIT_CUDA_ATTN_SPLIT=8 $E/build/tests/test_cuda_model --random-ids "${dirs[@]:0:3}"
  ;;
breakdown)
  # decode tok/s with stages left out (LOWBIT_CUDA_SKIP; SKIPS="norm attn ..." to choose), then
  # with settings changed (AB="VAR=x VAR=y;VAR2=z"), in ROUNDS interleaved rounds (default 1)
  m=$2
  tg() { env ${1//;/ } $E/build/lowbit bench $m -p 0 -n 128 -r 2 --device cuda 2>&1 | tail -1 | awk -F'|' '{print $(NF-1)}'; }
  for round in $(seq ${ROUNDS:-1}); do
    for v in LOWBIT_CUDA_SKIP=none ${SKIPS:-norm rope attn qkv o gu down head}; do
      [[ $v == *=* ]] || v=LOWBIT_CUDA_SKIP=$v
      echo "round $round $v: $(tg $v)"
    done
    for v in ${AB:-}; do echo "round $round $v: $(tg "$v")"; done
  done | tee $OUT/breakdown.md
  ;;
profile)
  ncu --print-summary per-kernel --metrics gpu__time_duration.sum \
    $E/build/lowbit bench "$2" -p 0 -n 4 -r 1 --device cuda > $OUT/ncu.txt 2>&1
  grep -E "^  [a-z_].*\(|gpu__time_duration|Invocations|^ *[0-9]+ .*[a-z_]+<" $OUT/ncu.txt | head -80
  ;;
*) echo "usage: device.sh build|attn|lab|check|sample|genab|synth|gen|tiny|stamps|breakdown|profile"; exit 2 ;;
esac
