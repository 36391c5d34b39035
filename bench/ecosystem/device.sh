#!/bin/bash
# Runs on the GPU machine (device tool), in the repository root, in two calls on one warm machine:
#   bash bench/ecosystem/device.sh stage1   # carry .deb .whl .xfer/a: wheels, lowbit build, half model
#   bash bench/ecosystem/device.sh stage2 [check.py args]   # carry .xfer/b: model, then check.py
#   bash bench/ecosystem/device.sh stage3 [quant_bench.py args]   # perplexity table on its CPU cores
# Everything lives under /tmp/eco; results go to $OUT.
set -uo pipefail
E=/tmp/eco
export PYTHONPATH=$E/site LD_LIBRARY_PATH=$E/deb/usr/lib/x86_64-linux-gnu:$E/deb/usr/lib/x86_64-linux-gnu/openblas-pthread
case "${1:-}" in
stage1)
  mkdir -p $E/site $E/deb
  cp .xfer/a/part00 $E/ || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $E/site .whl/*.whl || exit 1
  for f in .deb/*.deb; do dpkg -x "$f" $E/deb; done
  L=$E/deb/usr/lib/x86_64-linux-gnu I=$E/deb/usr/include
  cmake -S . -B $E/build -DCMAKE_BUILD_TYPE=Release -DLOWBIT_CUDA=OFF \
    -DJANSSON_INCLUDE_DIR=$I -DJANSSON_LIBRARY=$L/libjansson.so \
    -DPCRE2_INCLUDE_DIR=$I -DPCRE2_LIBRARY=$L/libpcre2-8.so \
    -DUTF8PROC_INCLUDE_DIR=$I -DUTF8PROC_LIBRARY=$L/libutf8proc.so \
    -DOPENBLAS_INCLUDE_DIR=$I/x86_64-linux-gnu/openblas-pthread \
    -DOPENBLAS_LIBRARY=$L/openblas-pthread/libopenblas.so > $E/cmake.log 2>&1 || { tail -30 $E/cmake.log; exit 1; }
  cmake --build $E/build -j16 --target lowbit-cli lowbit-dump > $E/build.log 2>&1 || { grep -m20 -B2 -A8 error $E/build.log; exit 1; }
  ls -la $E/build/lowbit $E/build/lowbit-dump
  python3 -c "import bitsandbytes, hqq, compressed_tensors, transformers, torch; print('bnb', bitsandbytes.__version__, 'ct', compressed_tensors.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
  ;;
stage2)
  # rebuilds ../shared's layout under $E/shared, then the ecosystem checks
  shift
  S=$E/shared M=$E/shared/models/pocket-llama-48m
  mkdir -p $M $S/data/wikitext-2-raw
  cat $E/part00 .xfer/b/part01 | xz -d > $M/model.safetensors || exit 1
  cp .xfer/b/*.json $M/ && cp .xfer/b/wiki.test.raw $S/data/wikitext-2-raw/ && cp .xfer/b/pocket-valid.txt $S/data/
  sha256sum $M/model.safetensors
  PYTHONUNBUFFERED=1 python3 bench/ecosystem/check.py --lowbit $E/build --model $M \
    --text $S/data/wikitext-2-raw/wiki.test.raw --work $E/work --out $OUT "$@" 2>&1 | tee $OUT/check.log
  ;;
stage3)
  # the perplexity table of every method on the machine's CPU cores (lowbit's CPU path)
  shift
  LOWBIT_SHARED=$E/shared PYTHONUNBUFFERED=1 python3 bench/quant_bench.py --bin $E/build/lowbit \
    --json $OUT/quant_bench.json "$@" 2>&1 | tee $OUT/quant_bench.log
  ;;
*) echo "usage: device.sh stage1|stage2"; exit 2 ;;
esac
